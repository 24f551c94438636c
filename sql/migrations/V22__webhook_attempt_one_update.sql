-- tenantry, migration 22: recording a webhook attempt updates the endpoint's queue row once.
--
-- api.record_webhook_attempt released the lease and moved the endpoint's position in one
-- UPDATE of app.webhook_queue, then gave the attempt its number (last_delivery_id) in a
-- second: two row versions, and two runs of the queue's guard trigger, per attempt. The
-- number is now taken in the first UPDATE when the lease is still held; an out-of-band
-- attempt (ping, redelivery) or one whose lease expired still takes it on its own.
-- Numbers, results and the lock order (queue row, then deliveries) stay the same.

create or replace function api.record_webhook_attempt(
  webhook_id bigint, request_id bigint, claim uuid, event_id text, event_type text, activity_id bigint,
  attempt integer, attempted_at timestamptz, duration_ms integer, status integer, error text,
  succeeded boolean, next_attempt_at timestamptz, disable_reason text, skipped_to bigint default null)
  returns boolean
  language plpgsql volatile
  as $$
declare
  org     text := app.current_org_id();
  held     boolean;
  number   bigint;
  state    record;
  moved_to bigint;
begin
  if request_id is not null then
    delete from app.webhook_requests r
     where r.organization_id = org and r.webhook_id = record_webhook_attempt.webhook_id
       and r.id = request_id and r.claim = record_webhook_attempt.claim;
    held := found;
  else
    -- The lease must still be ours: after it expired another instance may have sent the
    -- entry and moved on; then this attempt is only recorded.
    select q.position, q.head into state from app.webhook_queue q
     where q.organization_id = org and q.webhook_id = record_webhook_attempt.webhook_id
       and q.claim = record_webhook_attempt.claim
       for update;
    moved_to := case when succeeded then activity_id
                     when skipped_to is not null then greatest(state.position, skipped_to)
                     else state.position end;
    update app.webhook_queue q
       set position = moved_to,
           owed_since = case when q.head <= moved_to then null
                             when moved_to = q.position then q.owed_since
                             else (select a.created_at from app.activity_logs a
                                    where a.organization_id = org and a.id = moved_to + 1) end,
           attempt = case when record_webhook_attempt.succeeded or record_webhook_attempt.skipped_to is not null then 0
                          else q.attempt + 1 end,
           next_attempt_at = coalesce(record_webhook_attempt.next_attempt_at, pg_catalog.now()),
           active = q.active and record_webhook_attempt.disable_reason is null,
           disabled_reason = coalesce(record_webhook_attempt.disable_reason, q.disabled_reason),
           claimed_until = null,
           claim = null,
           -- The attempt's number, in the same row version (none for a skip).
           last_delivery_id = q.last_delivery_id + case when record_webhook_attempt.skipped_to is null then 1 else 0 end
     where q.organization_id = org and q.webhook_id = record_webhook_attempt.webhook_id
       and q.claim = record_webhook_attempt.claim
    returning q.last_delivery_id into number;
    held := found;
  end if;
  if skipped_to is not null then
    return held;
  end if;
  if not held or request_id is not null then
    -- An out-of-band attempt, or a lease that expired: the attempt is still recorded.
    update app.webhook_queue q set last_delivery_id = q.last_delivery_id + 1
     where q.organization_id = org and q.webhook_id = record_webhook_attempt.webhook_id
    returning q.last_delivery_id into number;
  end if;
  if number is null then
    return false;
  end if;
  insert into app.webhook_deliveries (organization_id, webhook_id, id, event_id, event_type, activity_id,
    attempt, out_of_band, attempted_at, duration_ms, status, error, succeeded, next_attempt_at)
  values (org, record_webhook_attempt.webhook_id, number, event_id, event_type, activity_id, attempt,
          request_id is not null, attempted_at, duration_ms, status, pg_catalog.left(error, 1000), succeeded,
          case when held and not succeeded and disable_reason is null and request_id is null
               then record_webhook_attempt.next_attempt_at end);
  return held;
end
$$;
comment on function api.record_webhook_attempt(bigint, bigint, uuid, text, text, bigint, integer, timestamptz,
  integer, integer, text, boolean, timestamptz, text, bigint) is
  'Records an attempt of a lease (tenantry_webhooks, scoped to the organization) and releases '
  'it: success moves the endpoint past the entry; failure schedules the retry at '
  'next_attempt_at, or disables the endpoint with disable_reason; skipped_to (no attempt made) '
  'moves past entries not of its kinds. Returns whether the lease was still held.';
