-- tenantry, migration 19: deleting a webhook takes its locks in the order deliveries do.
--
-- Recording an attempt (api.record_webhook_attempt, tenantry_webhooks) updates the
-- endpoint's app.webhook_queue row, then inserts into app.webhook_deliveries, whose
-- foreign key takes a KEY SHARE lock on the app.webhooks row. api.delete_webhook deleted
-- the app.webhooks row first and reached the queue row through the cascade: the opposite
-- order, so a deletion while an attempt was being recorded could deadlock (40P01; the
-- request got a 503, measured with bench --webhooks). It now locks the queue row first.

create or replace function api.delete_webhook(webhook_id bigint) returns void
  language plpgsql volatile
  as $$
declare
  org text := app.current_org_id();
begin
  perform app.require_context();
  perform app.require_admin('delete webhooks');
  -- The counters row first, as every write of the organization takes it.
  update app.organization_counters c set webhooks = c.webhooks - 1
   where c.organization_id = org
     and exists (select from app.webhooks w where w.organization_id = org and w.id = delete_webhook.webhook_id);
  if not found then
    raise exception 'webhook % not found', webhook_id using errcode = 'TN404';
  end if;
  -- Then the queue row, as a delivery recording its attempt does, then the endpoint.
  perform from app.webhook_queue q
   where q.organization_id = org and q.webhook_id = delete_webhook.webhook_id
     for update;
  delete from app.webhooks w where w.organization_id = org and w.id = delete_webhook.webhook_id;
end
$$;
comment on function api.delete_webhook(bigint) is
  'Deletes a webhook endpoint with its secrets, delivery state and attempts (ADMIN only, '
  'TN403; TN404). Nothing more is sent to it. Locks the counters row, then the queue row, '
  'then the endpoint: the order of every other writer, so it never deadlocks with them.';
