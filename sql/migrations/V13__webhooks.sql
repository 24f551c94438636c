-- tenantry, migration 13: webhooks. An organization's ADMINs register HTTPS endpoints; every
-- activity entry of the kinds an endpoint chose is sent to it, signed (Standard Webhooks),
-- retried, in activity order, at least once.
--
-- - Never lost. An endpoint's obligation is its place in the activity log: position, the
--   last entry it has been given (or skipped, not being of its kinds), and head, the
--   organization's last entry. app.log_activity raises head in the transaction that writes
--   the entry, under the counters row lock, only for organizations that have webhooks
--   (organization_counters.webhooks: nothing is written for the others). Work exists while
--   position < head. position moves only when an attempt succeeded, in the transaction that
--   records it: a crash at any moment leaves the entry to send again.
-- - Deliveries run as their own role, tenantry_webhooks: no superuser, no bypassrls, owns
--   nothing. Across organizations it sees only leases: the columns of app.webhook_queue
--   and app.webhook_requests that say what is due (organization, endpoint, times), which
--   it claims with a short transaction (FOR UPDATE SKIP LOCKED, claimed_until = now() +
--   the lease) committed before the HTTP call. Everything else (the entry, the URL, the
--   secrets) it reads, and each attempt it records, in a transaction scoped to the claimed
--   organization, under the same tenant policies as every request. tenantry_api gains no
--   policy that reaches another organization.
-- - Secrets are rows of app.webhook_secrets that only tenantry_webhooks may read (the API
--   role writes them and reads only their times; no dba role has any grant: 42501).
-- - Role rules: every webhook function requires ADMIN (TN403), and the policies of
--   app.webhooks, app.webhook_secrets, app.webhook_deliveries and app.webhook_requests
--   require it of tenantry_api too. app.webhook_queue is the exception: any role's write
--   raises its endpoints' head (app.log_activity); a trigger refuses every other change
--   by a non-ADMIN (TN403).
-- Reserved SQLSTATE reused: TN460 (quota exceeded: WEBHOOK_MAX_PER_ORG endpoints).

------------------------------------------------------------------------------------------
-- The delivery role
------------------------------------------------------------------------------------------
do $$
begin
  if not exists (select from pg_catalog.pg_roles where rolname = 'tenantry_webhooks') then
    create role tenantry_webhooks login nosuperuser nobypassrls nocreatedb nocreaterole noinherit;
  end if;
  -- As for tenantry_api (migration 1): a migrating role that is not a superuser must be a
  -- member to switch to it per transaction.
  if not (select rolsuper from pg_catalog.pg_roles where rolname = current_user) then
    execute format('grant tenantry_webhooks to %I', current_user);
  end if;
end
$$;
comment on role tenantry_webhooks is
  'The role webhook deliveries run as: owns nothing, cannot bypass row-level security. '
  'Across organizations it sees and claims only the leases of app.webhook_queue and '
  'app.webhook_requests; it reads entries, URLs and secrets, and records attempts, only '
  'inside a transaction scoped to one organization (app.org_id). The service refuses to '
  'start if it could bypass RLS.';

grant usage on schema app, api to tenantry_webhooks;
grant execute on function app.current_org_id(), app.current_user_id(), app.current_user_role(),
  app.is_valid_id(text) to tenantry_webhooks;

------------------------------------------------------------------------------------------
-- Counters
------------------------------------------------------------------------------------------
alter table app.organization_counters
  add column webhooks integer not null default 0,
  add column last_webhook_id bigint not null default 0,
  add constraint organization_counters_webhooks_check check (webhooks >= 0),
  add constraint organization_counters_last_webhook_id_check check (last_webhook_id >= 0);
comment on column app.organization_counters.webhooks is
  'How many webhook endpoints the organization has: while above 0, app.log_activity raises '
  'their head in app.webhook_queue.';
comment on column app.organization_counters.last_webhook_id is
  'The last webhook endpoint number given in the organization.';
grant update (webhooks, last_webhook_id) on app.organization_counters to tenantry_api;

------------------------------------------------------------------------------------------
-- Tables
------------------------------------------------------------------------------------------
create table app.webhooks (
  organization_id text not null check (app.is_valid_id(organization_id)),
  id              bigint not null check (id > 0),
  url             text not null check (pg_catalog.length(url) between 1 and 2048),
  events          text[] not null check (pg_catalog.cardinality(events) between 1 and 4
                    and events <@ array['issue.created', 'issue.updated', 'issue.deleted', 'issue.restored']),
  description     text not null default '' check (pg_catalog.length(description) <= 1000),
  created_by      text not null check (app.is_valid_id(created_by)),
  created_at      timestamptz not null default pg_catalog.now(),
  updated_at      timestamptz not null default pg_catalog.now(),
  primary key (organization_id, id)
);
comment on table app.webhooks is
  'Webhook endpoints: where an organization''s activity is sent, and which kinds. Visible '
  'and writable only for the organization in app.org_id, and for tenantry_api only with '
  'app.role = ADMIN (forced row-level security). Delivery state: app.webhook_queue.';
comment on column app.webhooks.id is 'Per-organization endpoint number, from app.organization_counters.';
comment on column app.webhooks.url is 'Where events are POSTed: https:// (checked by the service, which also refuses private addresses when it connects).';
comment on column app.webhooks.events is 'The kinds sent: issue.created, issue.updated, issue.deleted, issue.restored.';
comment on column app.webhooks.description is 'Free text for people, up to 1,000 characters.';
comment on column app.webhooks.created_by is 'The ADMIN who created it.';
comment on column app.webhooks.created_at is 'When it was created.';
comment on column app.webhooks.updated_at is 'When it was last changed (PATCH, rotation).';
comment on column app.webhooks.organization_id is 'The organization it belongs to.';

create table app.webhook_secrets (
  organization_id text not null check (app.is_valid_id(organization_id)),
  webhook_id      bigint not null,
  created_at      timestamptz not null default pg_catalog.clock_timestamp(),
  secret          text not null check (secret ~ '^whsec_[A-Za-z0-9+/]{43}=$'),
  expires_at      timestamptz,
  primary key (organization_id, webhook_id, created_at),
  foreign key (organization_id, webhook_id) references app.webhooks on delete cascade
);
comment on table app.webhook_secrets is
  'Signing secrets of webhook endpoints: the current one (expires_at NULL) and, for 24 hours '
  'after a rotation, the one before it. Every unexpired secret signs each attempt. Only '
  'tenantry_webhooks may read secret (in a transaction scoped to its organization); the API '
  'role writes secrets and reads only their times; no dba role has any grant.';
comment on column app.webhook_secrets.organization_id is 'The organization of the endpoint.';
comment on column app.webhook_secrets.webhook_id is 'The endpoint (app.webhooks.id).';
comment on column app.webhook_secrets.created_at is 'When the secret was made.';
comment on column app.webhook_secrets.secret is 'whsec_ and the base64 of 32 random bytes, made by the service.';
comment on column app.webhook_secrets.expires_at is 'NULL for the current secret; for the previous one, when it stops signing.';

create table app.webhook_queue (
  organization_id text not null check (app.is_valid_id(organization_id)),
  webhook_id      bigint not null,
  head            bigint not null check (head >= 0),
  position        bigint not null check (position >= 0),
  active          boolean not null default true,
  disabled_reason text,
  attempt         integer not null default 0 check (attempt >= 0),
  next_attempt_at timestamptz not null default pg_catalog.now(),
  claimed_until   timestamptz,
  claim           uuid,
  last_delivery_id bigint not null default 0,
  last_request_id bigint not null default 0,
  owed_since      timestamptz,
  primary key (organization_id, webhook_id),
  foreign key (organization_id, webhook_id) references app.webhooks on delete cascade
);
comment on table app.webhook_queue is
  'The delivery state of each webhook endpoint: it owes the organization''s activity entries '
  'after position up to head, one at a time, in order. tenantry_webhooks claims due rows '
  'across organizations (a lease: claimed_until, claim) and sees only these columns; '
  'tenantry_api sees its own organization''s rows, raises head with each activity entry '
  '(any role), and changes the rest as an ADMIN only (trigger app.guard_webhook_queue).';
comment on column app.webhook_queue.organization_id is 'The organization of the endpoint.';
comment on column app.webhook_queue.webhook_id is 'The endpoint (app.webhooks.id).';
comment on column app.webhook_queue.head is 'The organization''s last activity entry id, raised by app.log_activity in the transaction of each entry.';
comment on column app.webhook_queue.position is 'The last entry id delivered or skipped (not of the endpoint''s kinds): entries after it are owed. Starts at the organization''s last entry when the endpoint is created.';
comment on column app.webhook_queue.active is 'false: nothing is sent (disabled by an ADMIN, by a 410, or after the last retry); entries stay owed and go out in order once true again.';
comment on column app.webhook_queue.disabled_reason is 'Why the service disabled the endpoint (NULL when active, or disabled by an ADMIN).';
comment on column app.webhook_queue.attempt is 'Failed attempts of the entry after position so far (0: none yet).';
comment on column app.webhook_queue.next_attempt_at is 'Not before this time: the next retry (with jitter, or Retry-After).';
comment on column app.webhook_queue.claimed_until is 'A delivery in progress holds the row until then (its lease); afterwards anyone may claim it again.';
comment on column app.webhook_queue.claim is 'The token of the current lease: an attempt''s result counts only with it.';
comment on column app.webhook_queue.last_delivery_id is 'The last attempt number given (app.webhook_deliveries.id).';
comment on column app.webhook_queue.owed_since is 'The time of the oldest entry owed (position + 1), while one is: how far behind the endpoint is.';
comment on column app.webhook_queue.last_request_id is 'The last out-of-band request number given (app.webhook_requests.id).';
create index webhook_queue_due_idx on app.webhook_queue (organization_id, next_attempt_at)
  where active and head > position;
comment on index app.webhook_queue_due_idx is
  'The endpoints that owe something: a claim scans only these, whatever the number of idle '
  'endpoints (led by organization_id like every key, for Citus).';

create table app.webhook_requests (
  organization_id text not null check (app.is_valid_id(organization_id)),
  webhook_id      bigint not null,
  id              bigint not null check (id > 0),
  kind            text not null check (kind in ('ping', 'redeliver')),
  activity_id     bigint check ((kind = 'redeliver') = (activity_id is not null)),
  ping_event_id   text check ((kind = 'ping') = (ping_event_id is not null)),
  requested_by    text not null check (app.is_valid_id(requested_by)),
  requested_at    timestamptz not null default pg_catalog.now(),
  claimed_until   timestamptz,
  claim           uuid,
  primary key (organization_id, webhook_id, id),
  foreign key (organization_id, webhook_id) references app.webhooks on delete cascade
);
comment on table app.webhook_requests is
  'Out-of-band attempts an ADMIN asked for (a ping, a redelivery): each is sent once, outside '
  'the endpoint''s order, then deleted; its attempt is in app.webhook_deliveries. Leases as in '
  'app.webhook_queue.';
comment on column app.webhook_requests.organization_id is 'The organization of the endpoint.';
comment on column app.webhook_requests.webhook_id is 'The endpoint (app.webhooks.id).';
comment on column app.webhook_requests.id is 'Per-endpoint number (app.webhook_queue.last_request_id).';
comment on column app.webhook_requests.kind is 'ping (a webhook.ping event) or redeliver (the entry activity_id again).';
comment on column app.webhook_requests.activity_id is 'For redeliver: the activity entry to send again.';
comment on column app.webhook_requests.ping_event_id is 'For ping: the webhook-id of the ping.';
comment on column app.webhook_requests.requested_by is 'The ADMIN who asked.';
comment on column app.webhook_requests.requested_at is 'When.';
comment on column app.webhook_requests.claimed_until is 'As app.webhook_queue.claimed_until.';
comment on column app.webhook_requests.claim is 'As app.webhook_queue.claim.';

create table app.webhook_deliveries (
  organization_id text not null check (app.is_valid_id(organization_id)),
  webhook_id      bigint not null,
  id              bigint not null check (id > 0),
  event_id        text not null check (pg_catalog.length(event_id) between 1 and 100),
  event_type      text not null,
  activity_id     bigint,
  attempt         integer not null check (attempt > 0),
  out_of_band     boolean not null,
  attempted_at    timestamptz not null,
  duration_ms     integer not null check (duration_ms >= 0),
  status          integer check (status between 100 and 999),
  error           text check (pg_catalog.length(error) <= 1000),
  succeeded       boolean not null,
  next_attempt_at timestamptz,
  primary key (organization_id, webhook_id, id),
  foreign key (organization_id, webhook_id) references app.webhooks on delete cascade
);
comment on table app.webhook_deliveries is
  'Every attempt to deliver an event to a webhook endpoint, written by tenantry_webhooks in '
  'a transaction scoped to the organization; ADMINs read them (GET /api/webhooks/{id}/deliveries).';
comment on column app.webhook_deliveries.organization_id is 'The organization of the endpoint.';
comment on column app.webhook_deliveries.webhook_id is 'The endpoint (app.webhooks.id).';
comment on column app.webhook_deliveries.id is 'Per-endpoint attempt number (app.webhook_queue.last_delivery_id).';
comment on column app.webhook_deliveries.event_id is 'The webhook-id header: the same on every attempt of one event to one endpoint.';
comment on column app.webhook_deliveries.event_type is 'issue.created, issue.updated, issue.deleted, issue.restored or webhook.ping.';
comment on column app.webhook_deliveries.activity_id is 'The activity entry sent (NULL for a ping).';
comment on column app.webhook_deliveries.attempt is 'Which attempt of this event to this endpoint (1 the first).';
comment on column app.webhook_deliveries.out_of_band is 'A ping or redelivery an ADMIN asked for, outside the endpoint''s order.';
comment on column app.webhook_deliveries.attempted_at is 'When the request was sent.';
comment on column app.webhook_deliveries.duration_ms is 'How long until the answer (or the failure).';
comment on column app.webhook_deliveries.status is 'The HTTP status answered (NULL if none came).';
comment on column app.webhook_deliveries.error is 'Why it failed without a status (time-out, refused address, TLS, ...).';
comment on column app.webhook_deliveries.succeeded is 'A 2xx within the time-out.';
comment on column app.webhook_deliveries.next_attempt_at is 'When the event is tried again (NULL: delivered, out of band, or the endpoint was disabled).';
create index webhook_deliveries_event_idx on app.webhook_deliveries (organization_id, webhook_id, event_id);
comment on index app.webhook_deliveries_event_idx is 'The attempts of one event, to number a redelivery.';

------------------------------------------------------------------------------------------
-- Row-level security. Tenant policies as for every table (the organization in app.org_id),
-- ADMIN required for the API role; the delivery role's cross-organization policies are
-- about leases only, and its column grants keep it to the lease columns.
------------------------------------------------------------------------------------------
alter table app.webhooks enable row level security;
alter table app.webhooks force row level security;
create policy webhooks_admin on app.webhooks to tenantry_api
  using (organization_id = (select app.current_org_id()) and (select app.current_user_role()) = 'ADMIN')
  with check (organization_id = (select app.current_org_id()) and (select app.current_user_role()) = 'ADMIN');
comment on policy webhooks_admin on app.webhooks is 'The API role: the organization in app.org_id, as an ADMIN.';
create policy webhooks_delivery_read on app.webhooks for select to tenantry_webhooks
  using (organization_id = (select app.current_org_id()));
comment on policy webhooks_delivery_read on app.webhooks is 'Deliveries read the URL and kinds of the claimed organization''s endpoint.';
create policy webhooks_dba_read on app.webhooks for select to tenantry_dba using (true);
comment on policy webhooks_dba_read on app.webhooks is 'DBAs read every organization''s endpoints (never their secrets).';

alter table app.webhook_secrets enable row level security;
alter table app.webhook_secrets force row level security;
create policy webhook_secrets_admin on app.webhook_secrets to tenantry_api
  using (organization_id = (select app.current_org_id()) and (select app.current_user_role()) = 'ADMIN')
  with check (organization_id = (select app.current_org_id()) and (select app.current_user_role()) = 'ADMIN');
comment on policy webhook_secrets_admin on app.webhook_secrets is 'The API role writes the organization''s secrets as an ADMIN (and reads their times only: column grants).';
create policy webhook_secrets_delivery_read on app.webhook_secrets for select to tenantry_webhooks
  using (organization_id = (select app.current_org_id()));
comment on policy webhook_secrets_delivery_read on app.webhook_secrets is 'Deliveries read the claimed organization''s secrets to sign.';

alter table app.webhook_queue enable row level security;
alter table app.webhook_queue force row level security;
create policy webhook_queue_tenant on app.webhook_queue to tenantry_api
  using (organization_id = (select app.current_org_id()))
  with check (organization_id = (select app.current_org_id()));
comment on policy webhook_queue_tenant on app.webhook_queue is 'The API role: the organization in app.org_id (any role raises head with its writes; app.guard_webhook_queue keeps the rest to ADMINs).';
create policy webhook_queue_leases on app.webhook_queue for select to tenantry_webhooks using (true);
comment on policy webhook_queue_leases on app.webhook_queue is 'Deliveries see what is due in every organization (lease columns only: column grants).';
create policy webhook_queue_claim on app.webhook_queue for update to tenantry_webhooks using (true) with check (true);
comment on policy webhook_queue_claim on app.webhook_queue is 'Deliveries claim and record in every organization (lease and progress columns only: column grants; api.record_webhook_attempt checks the claim).';
create policy webhook_queue_dba_read on app.webhook_queue for select to tenantry_dba using (true);
comment on policy webhook_queue_dba_read on app.webhook_queue is 'DBAs read every organization''s delivery state.';

alter table app.webhook_requests enable row level security;
alter table app.webhook_requests force row level security;
create policy webhook_requests_admin on app.webhook_requests to tenantry_api
  using (organization_id = (select app.current_org_id()) and (select app.current_user_role()) = 'ADMIN')
  with check (organization_id = (select app.current_org_id()) and (select app.current_user_role()) = 'ADMIN');
comment on policy webhook_requests_admin on app.webhook_requests is 'The API role: the organization in app.org_id, as an ADMIN.';
create policy webhook_requests_leases on app.webhook_requests for select to tenantry_webhooks using (true);
comment on policy webhook_requests_leases on app.webhook_requests is 'Deliveries see the due requests of every organization (lease columns only: column grants).';
create policy webhook_requests_claim on app.webhook_requests for update to tenantry_webhooks using (true) with check (true);
comment on policy webhook_requests_claim on app.webhook_requests is 'Deliveries claim requests (the lease columns only: column grants).';
create policy webhook_requests_done on app.webhook_requests for delete to tenantry_webhooks
  using (organization_id = (select app.current_org_id()));
comment on policy webhook_requests_done on app.webhook_requests is 'A delivery deletes the request it sent, in a transaction scoped to its organization.';
create policy webhook_requests_dba_read on app.webhook_requests for select to tenantry_dba using (true);
comment on policy webhook_requests_dba_read on app.webhook_requests is 'DBAs read every organization''s pending requests.';

alter table app.webhook_deliveries enable row level security;
alter table app.webhook_deliveries force row level security;
create policy webhook_deliveries_admin_read on app.webhook_deliveries for select to tenantry_api
  using (organization_id = (select app.current_org_id()) and (select app.current_user_role()) = 'ADMIN');
comment on policy webhook_deliveries_admin_read on app.webhook_deliveries is 'The API role reads the organization''s attempts as an ADMIN.';
create policy webhook_deliveries_record on app.webhook_deliveries to tenantry_webhooks
  using (organization_id = (select app.current_org_id()))
  with check (organization_id = (select app.current_org_id()));
comment on policy webhook_deliveries_record on app.webhook_deliveries is 'Deliveries record attempts for the organization in app.org_id.';
create policy webhook_deliveries_dba_read on app.webhook_deliveries for select to tenantry_dba using (true);
comment on policy webhook_deliveries_dba_read on app.webhook_deliveries is 'DBAs read every organization''s attempts.';

-- The delivery role reads the claimed organization's activity (tenant policy, to public),
-- and each existing monthly partition gets the parent's grants (later ones copy them).
grant select on app.activity_logs to tenantry_webhooks;
do $$
declare
  partition regclass;
begin
  for partition in select i.inhrelid::regclass from pg_catalog.pg_inherits i
                    where i.inhparent = 'app.activity_logs'::regclass
  loop
    execute format('grant select on %s to tenantry_webhooks', partition);
  end loop;
end
$$;
grant select (organization_id, last_activity_id) on app.organization_counters to tenantry_webhooks;

grant select, insert, update (url, events, description, updated_at), delete on app.webhooks to tenantry_api;
grant select on app.webhooks to tenantry_webhooks, tenantry_dba;
grant select (organization_id, webhook_id, created_at, expires_at), insert, update (expires_at), delete
  on app.webhook_secrets to tenantry_api;
grant select on app.webhook_secrets to tenantry_webhooks;
grant select, insert, delete,
  update (head, owed_since, active, disabled_reason, attempt, next_attempt_at, claimed_until, claim, last_request_id)
  on app.webhook_queue to tenantry_api;
grant select (organization_id, webhook_id, head, position, active, disabled_reason, attempt, next_attempt_at, claimed_until, claim,
          last_delivery_id, owed_since),
  update (position, owed_since, active, disabled_reason, attempt, next_attempt_at, claimed_until, claim, last_delivery_id)
  on app.webhook_queue to tenantry_webhooks;
grant select on app.webhook_queue to tenantry_dba;
grant select, insert, delete on app.webhook_requests to tenantry_api;
grant select, update (claimed_until, claim), delete on app.webhook_requests to tenantry_webhooks;
grant select on app.webhook_requests to tenantry_dba;
grant select on app.webhook_deliveries to tenantry_api, tenantry_dba;
grant select, insert on app.webhook_deliveries to tenantry_webhooks;

-- Role rules on the queue: any role raises head; the rest is an ADMIN's (or the delivery
-- role's, which reaches only its columns).
create function app.guard_webhook_queue() returns trigger
  language plpgsql
  as $$
begin
  if current_user = 'tenantry_api'
     and app.current_user_role() is distinct from 'ADMIN'
     and (new.active, new.disabled_reason, new.attempt, new.next_attempt_at, new.claimed_until, new.claim, new.last_request_id)
         is distinct from
         (old.active, old.disabled_reason, old.attempt, old.next_attempt_at, old.claimed_until, old.claim, old.last_request_id)
  then
    raise exception 'only an ADMIN may change a webhook''s delivery state'
      using errcode = 'TN403',
            detail = format('app.role is %s', coalesce(app.current_user_role(), 'unset'));
  end if;
  -- head is an entry the organization has: a raised head that is not would make the
  -- deliveries skip entries that come later.
  if new.head is distinct from old.head
     and new.head > (select c.last_activity_id from app.organization_counters c
                      where c.organization_id = new.organization_id) then
    raise exception 'head must be an activity entry id of the organization'
      using errcode = 'TN403';
  end if;
  if new.head < old.head then
    new.head := old.head;
  end if;
  return new;
end
$$;
comment on function app.guard_webhook_queue() is
  'Trigger: on app.webhook_queue, the API role changes anything but head only as an ADMIN '
  '(TN403); head never goes down, nor above the organization''s last activity entry.';
grant execute on function app.guard_webhook_queue() to tenantry_api, tenantry_webhooks;
create trigger webhook_queue_guard before update on app.webhook_queue
  for each row execute function app.guard_webhook_queue();
comment on trigger webhook_queue_guard on app.webhook_queue is
  'Role rules of the delivery state (app.guard_webhook_queue).';

------------------------------------------------------------------------------------------
-- The log owes each new entry to the organization's endpoints.
------------------------------------------------------------------------------------------
create or replace function app.log_activity(issue_id bigint, action text, changes jsonb) returns void
  language plpgsql volatile
  as $$
declare
  entry_id bigint;
  entry_at timestamptz;
  route    text;
  hooks    integer;
begin
  -- Numbered and timed under the counters row lock: the time never runs behind the
  -- previous entry's, so ids and times grow together.
  insert into app.organization_counters as c (organization_id, last_activity_id, last_activity_at)
  values (app.current_org_id(), 1, pg_catalog.now())
  on conflict (organization_id) do update
    set last_activity_id = c.last_activity_id + 1,
        last_activity_at = greatest(c.last_activity_at, pg_catalog.now())
  returning c.last_activity_id, c.last_activity_at,
            case when c.listened_until > pg_catalog.now() then c.stream_route end, c.webhooks
    into entry_id, entry_at, route, hooks;

  insert into app.activity_logs (organization_id, id, issue_id, actor_id, action, changes, created_at)
  values (app.current_org_id(), entry_id, log_activity.issue_id, app.current_user_id(),
          log_activity.action, log_activity.changes, entry_at);

  -- Only while an instance listens, and only the opaque route (migration 12).
  if route is not null then
    perform pg_catalog.pg_notify('tenantry_activity', route);
  end if;
  -- The entry is owed to every endpoint, in this transaction (migration 13).
  if hooks > 0 then
    update app.webhook_queue q set head = entry_id, owed_since = coalesce(q.owed_since, entry_at)
     where q.organization_id = app.current_org_id();
  end if;
end
$$;
comment on function app.log_activity(bigint, text, jsonb) is
  'Appends an activity entry for the current organization and actor, numbered and timed from '
  'app.organization_counters (times never run behind the previous entry''s); wakes the '
  'instances that stream the organization (NOTIFY tenantry_activity with its opaque route, '
  'only while one listens); and owes the entry to the organization''s webhook endpoints '
  '(app.webhook_queue.head, only when it has some). Called by the api functions in the '
  'transaction of the change.';

------------------------------------------------------------------------------------------
-- The API: ADMINs manage endpoints (every function requires ADMIN, like the policies).
------------------------------------------------------------------------------------------
create type api.webhook as (
  id              bigint,
  url             text,
  events          text[],
  description     text,
  active          boolean,
  disabled_reason text,
  created_by      text,
  created_at      timestamptz,
  updated_at      timestamptz,
  secret_rotated_until timestamptz,
  next_cursor     text
);
comment on type api.webhook is
  'A webhook endpoint as the api functions return it (never its secret): secret_rotated_until '
  'is when the previous secret stops signing (NULL: only one signs); next_cursor as in '
  'api.issue_page_row.';

create function app.webhook_row(w app.webhooks, q app.webhook_queue) returns api.webhook
  language sql stable
  as $$
    select w.id, w.url, w.events, w.description, q.active, q.disabled_reason, w.created_by,
           w.created_at, w.updated_at,
           (select pg_catalog.max(s.expires_at) from app.webhook_secrets s
             where s.organization_id = w.organization_id and s.webhook_id = w.id
               and s.expires_at > pg_catalog.now()),
           null::text
  $$;
comment on function app.webhook_row(app.webhooks, app.webhook_queue) is
  'An endpoint and its delivery state as api.webhook.';
grant execute on function app.webhook_row(app.webhooks, app.webhook_queue) to tenantry_api;

create function app.checked_webhook(url text, events text[], description text) returns void
  language plpgsql immutable
  as $$
begin
  if url is not null and (pg_catalog.length(url) not between 1 and 2048 or url !~ '^https?://') then
    raise exception 'url must be an https:// URL of at most 2048 characters'
      using errcode = 'TN400', column = 'url';
  end if;
  if events is not null and (pg_catalog.cardinality(events) not between 1 and 4
      or not events <@ array['issue.created', 'issue.updated', 'issue.deleted', 'issue.restored']
      or array_position(events, null) is not null) then
    raise exception 'events must be one or more of issue.created, issue.updated, issue.deleted, issue.restored'
      using errcode = 'TN400', column = 'events';
  end if;
  if description is not null and (pg_catalog.length(description) > 1000
      or app.has_control_chars(description, true)) then
    raise exception 'description must be at most 1000 characters, without control characters'
      using errcode = 'TN400', column = 'description';
  end if;
end
$$;
comment on function app.checked_webhook(text, text[], text) is
  'Raises TN400 (COLUMN url, events or description) for a value a webhook endpoint cannot '
  'take. The service checks the URL further (https only, a public host).';
grant execute on function app.checked_webhook(text, text[], text) to tenantry_api;
grant execute on function app.has_control_chars(text, boolean) to tenantry_api;

create function api.create_webhook(url text, events text[], description text, secret text, max_per_org integer)
  returns setof api.webhook
  language plpgsql volatile
  as $$
declare
  org     text := app.current_org_id();
  new_id  bigint;
  hooks   integer;
  last_id bigint;
  created app.webhooks;
begin
  perform app.require_context();
  perform app.require_admin('create webhooks');
  events := coalesce(events, array['issue.created', 'issue.updated', 'issue.deleted', 'issue.restored']);
  perform app.checked_webhook(url, events, coalesce(description, ''));
  -- Numbered under the counters row lock, which app.log_activity holds too: an entry
  -- numbered before this is not owed to the endpoint; every later one raises its head.
  insert into app.organization_counters as c (organization_id, last_webhook_id, webhooks)
  values (org, 1, 1)
  on conflict (organization_id) do update
    set last_webhook_id = c.last_webhook_id + 1, webhooks = c.webhooks + 1
  returning c.last_webhook_id, c.webhooks, c.last_activity_id into new_id, hooks, last_id;
  if hooks > coalesce(max_per_org, 20) then
    raise exception 'the organization has % webhooks, as many as WEBHOOK_MAX_PER_ORG allows', hooks - 1
      using errcode = 'TN460', hint = 'delete a webhook first';
  end if;
  -- The events listed once each, in a fixed order.
  events := array(select e from unnest(array['issue.created', 'issue.updated', 'issue.deleted', 'issue.restored']) e
                  where e = any (create_webhook.events));
  insert into app.webhooks (organization_id, id, url, events, description, created_by)
  values (org, new_id, url, events, coalesce(description, ''), app.current_user_id())
  returning * into created;
  insert into app.webhook_secrets (organization_id, webhook_id, secret)
  values (org, new_id, secret);
  insert into app.webhook_queue (organization_id, webhook_id, head, position)
  values (org, new_id, last_id, last_id);
  return query select r.* from app.webhook_queue q cross join lateral app.webhook_row(created, q) r
    where q.organization_id = org and q.webhook_id = new_id;
end
$$;
comment on function api.create_webhook(text, text[], text, text, integer) is
  'Creates a webhook endpoint (ADMIN only, TN403) for the activity entries after now, of the '
  'given kinds (NULL: all), signed with secret (made by the service, never returned). At most '
  'max_per_org endpoints per organization (TN460).';

create function api.list_webhooks(page_size integer default 50, after text default null) returns setof api.webhook
  language plpgsql stable
  as $$
declare
  org      text := app.current_org_id();
  page_at  app.page_position;
  fingerprint text := app.list_fingerprint('webhooks', '{}'::jsonb);
  item     api.webhook;
  n        integer := 0;
  pending  api.webhook;
begin
  perform app.require_admin('list webhooks');
  if page_size is null or page_size not between 1 and 200 then
    raise exception 'page_size must be from 1 to 200' using errcode = 'TN400', column = 'page_size';
  end if;
  page_at := app.decode_cursor(after, 'id', fingerprint);
  for item in
    select r.* from app.webhooks w
      join app.webhook_queue q on q.organization_id = w.organization_id and q.webhook_id = w.id
      cross join lateral app.webhook_row(w, q) r
     where w.organization_id = org and (page_at.id is null or w.id > page_at.id)
     order by w.id limit page_size + 1
  loop
    n := n + 1;
    if n > page_size then
      pending.next_cursor := app.encode_cursor('id', fingerprint, pg_catalog.to_jsonb(pending.id), pending.id);
      exit;
    end if;
    if n > 1 then
      return next pending;
    end if;
    pending := item;
  end loop;
  if n > 0 then
    return next pending;
  end if;
end
$$;
comment on function api.list_webhooks(integer, text) is
  'One page of the organization''s webhook endpoints by id (ADMIN only, TN403); after: the '
  'next_cursor of the previous page.';

create function api.get_webhook(webhook_id bigint) returns setof api.webhook
  language plpgsql stable
  as $$
declare
  found api.webhook;
begin
  perform app.require_admin('read webhooks');
  select r.* into found from app.webhooks w
    join app.webhook_queue q on q.organization_id = w.organization_id and q.webhook_id = w.id
    cross join lateral app.webhook_row(w, q) r
   where w.organization_id = app.current_org_id() and w.id = get_webhook.webhook_id;
  if found.id is null then
    raise exception 'webhook % not found', webhook_id using errcode = 'TN404';
  end if;
  return next found;
end
$$;
comment on function api.get_webhook(bigint) is
  'One webhook endpoint of the organization (ADMIN only, TN403; TN404 if it has no such one).';

create function api.update_webhook(webhook_id bigint, url text default null, events text[] default null,
                                   description text default null, active boolean default null)
  returns setof api.webhook
  language plpgsql volatile
  as $$
declare
  org     text := app.current_org_id();
  changed app.webhooks;
begin
  perform app.require_context();
  perform app.require_admin('change webhooks');
  perform app.checked_webhook(url, events, description);
  update app.webhooks w
     set url = coalesce(update_webhook.url, w.url),
         events = case when update_webhook.events is null then w.events
                       else array(select e from unnest(array['issue.created', 'issue.updated', 'issue.deleted', 'issue.restored']) e
                                   where e = any (update_webhook.events)) end,
         description = coalesce(update_webhook.description, w.description),
         updated_at = pg_catalog.now()
   where w.organization_id = org and w.id = update_webhook.webhook_id
  returning * into changed;
  if changed.id is null then
    raise exception 'webhook % not found', webhook_id using errcode = 'TN404';
  end if;
  -- Enabling again: the owed entries go out from the first, retries counted anew.
  if active is not null then
    update app.webhook_queue q
       set active = update_webhook.active,
           disabled_reason = null,
           attempt = case when update_webhook.active and not q.active then 0 else q.attempt end,
           next_attempt_at = case when update_webhook.active and not q.active then pg_catalog.now()
                                  else q.next_attempt_at end
     where q.organization_id = org and q.webhook_id = update_webhook.webhook_id;
  end if;
  return query select r.* from app.webhook_queue q cross join lateral app.webhook_row(changed, q) r
    where q.organization_id = org and q.webhook_id = update_webhook.webhook_id;
end
$$;
comment on function api.update_webhook(bigint, text, text[], text, boolean) is
  'Changes a webhook endpoint''s url, events, description or active (NULL: unchanged; ADMIN '
  'only, TN403; TN404). Setting active true again sends the entries owed since, in order, '
  'with the retries counted anew.';

create function api.delete_webhook(webhook_id bigint) returns void
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
  delete from app.webhooks w where w.organization_id = org and w.id = delete_webhook.webhook_id;
end
$$;
comment on function api.delete_webhook(bigint) is
  'Deletes a webhook endpoint with its secrets, delivery state and attempts (ADMIN only, '
  'TN403; TN404). Nothing more is sent to it.';

create function api.rotate_webhook_secret(webhook_id bigint, secret text) returns setof api.webhook
  language plpgsql volatile
  as $$
declare
  org     text := app.current_org_id();
  changed app.webhooks;
begin
  perform app.require_context();
  perform app.require_admin('rotate webhook secrets');
  update app.webhooks w set updated_at = pg_catalog.now()
   where w.organization_id = org and w.id = rotate_webhook_secret.webhook_id
  returning * into changed;
  if changed.id is null then
    raise exception 'webhook % not found', webhook_id using errcode = 'TN404';
  end if;
  -- Two sign at most: a secret still in its 24 hours stops now; the current one gets them.
  delete from app.webhook_secrets s
   where s.organization_id = org and s.webhook_id = rotate_webhook_secret.webhook_id
     and s.expires_at is not null;
  update app.webhook_secrets s set expires_at = pg_catalog.now() + interval '24 hours'
   where s.organization_id = org and s.webhook_id = rotate_webhook_secret.webhook_id
     and s.expires_at is null;
  insert into app.webhook_secrets (organization_id, webhook_id, secret)
  values (org, rotate_webhook_secret.webhook_id, rotate_webhook_secret.secret);
  return query select r.* from app.webhook_queue q cross join lateral app.webhook_row(changed, q) r
    where q.organization_id = org and q.webhook_id = rotate_webhook_secret.webhook_id;
end
$$;
comment on function api.rotate_webhook_secret(bigint, text) is
  'Makes secret the endpoint''s signing secret (ADMIN only, TN403; TN404); the one before '
  'keeps signing alongside it for 24 hours (an older one still in its 24 hours stops now).';

create type api.webhook_delivery as (
  id              bigint,
  event_id        text,
  event_type      text,
  activity_id     bigint,
  attempt         integer,
  out_of_band     boolean,
  attempted_at    timestamptz,
  duration_ms     integer,
  status          integer,
  error           text,
  succeeded       boolean,
  next_attempt_at timestamptz,
  next_cursor     text
);
comment on type api.webhook_delivery is
  'An attempt to deliver an event, as the api functions return it; next_cursor as in api.issue_page_row.';

create function api.list_webhook_deliveries(webhook_id bigint, page_size integer default 50, after text default null)
  returns setof api.webhook_delivery
  language plpgsql stable
  as $$
declare
  org      text := app.current_org_id();
  fingerprint text := app.list_fingerprint('webhook_deliveries', pg_catalog.jsonb_build_object('webhookId', webhook_id));
  page_at  app.page_position;
  item     api.webhook_delivery;
  pending  api.webhook_delivery;
  n        integer := 0;
begin
  perform app.require_admin('read webhook deliveries');
  if page_size is null or page_size not between 1 and 200 then
    raise exception 'page_size must be from 1 to 200' using errcode = 'TN400', column = 'page_size';
  end if;
  page_at := app.decode_cursor(after, '-id', fingerprint);
  if not exists (select from app.webhooks w where w.organization_id = org and w.id = list_webhook_deliveries.webhook_id) then
    raise exception 'webhook % not found', webhook_id using errcode = 'TN404';
  end if;
  for item in
    select d.id, d.event_id, d.event_type, d.activity_id, d.attempt, d.out_of_band, d.attempted_at,
           d.duration_ms, d.status, d.error, d.succeeded, d.next_attempt_at, null::text
      from app.webhook_deliveries d
     where d.organization_id = org and d.webhook_id = list_webhook_deliveries.webhook_id
       and (page_at.id is null or d.id < page_at.id)
     order by d.id desc limit page_size + 1
  loop
    n := n + 1;
    if n > page_size then
      pending.next_cursor := app.encode_cursor('-id', fingerprint, pg_catalog.to_jsonb(pending.id), pending.id);
      exit;
    end if;
    if n > 1 then
      return next pending;
    end if;
    pending := item;
  end loop;
  if n > 0 then
    return next pending;
  end if;
end
$$;
comment on function api.list_webhook_deliveries(bigint, integer, text) is
  'One page of an endpoint''s attempts, newest first (ADMIN only, TN403; TN404).';

create function api.request_webhook_attempt(webhook_id bigint, kind text, delivery_id bigint default null)
  returns table (request_id bigint, event_id text)
  language plpgsql volatile
  as $$
declare
  org        text := app.current_org_id();
  entry      bigint;
  request    bigint;
  ping_id    text;
begin
  perform app.require_context();
  perform app.require_admin('send webhook events');
  if kind not in ('ping', 'redeliver') then
    raise exception 'kind must be ping or redeliver' using errcode = 'TN400', column = 'kind';
  end if;
  -- Bounded, so that asking faster than the endpoint answers cannot grow the table.
  if (select pg_catalog.count(*) from (select from app.webhook_requests r
        where r.organization_id = org and r.webhook_id = request_webhook_attempt.webhook_id limit 100) pending) >= 100 then
    raise exception 'webhook % already has 100 pings and redeliveries waiting', webhook_id
      using errcode = 'TN460', hint = 'wait until they are sent (GET /api/webhooks/{id}/deliveries)';
  end if;
  update app.webhook_queue q set last_request_id = q.last_request_id + 1
   where q.organization_id = org and q.webhook_id = request_webhook_attempt.webhook_id
  returning q.last_request_id into request;
  if request is null then
    raise exception 'webhook % not found', webhook_id using errcode = 'TN404';
  end if;
  if kind = 'redeliver' then
    select d.activity_id, d.event_id into entry, event_id from app.webhook_deliveries d
     where d.organization_id = org and d.webhook_id = request_webhook_attempt.webhook_id
       and d.id = request_webhook_attempt.delivery_id;
    if event_id is null then
      raise exception 'delivery % of webhook % not found', delivery_id, webhook_id using errcode = 'TN404';
    end if;
    if entry is null then
      kind := 'ping';
    end if;
  end if;
  if kind = 'ping' then
    ping_id := coalesce(event_id, format('msg_%s_ping_%s', webhook_id, request));
    event_id := ping_id;
  end if;
  insert into app.webhook_requests (organization_id, webhook_id, id, kind, activity_id, ping_event_id, requested_by)
  values (org, request_webhook_attempt.webhook_id, request, kind, entry, ping_id, app.current_user_id());
  request_id := request;
  return next;
end
$$;
comment on function api.request_webhook_attempt(bigint, text, bigint) is
  'Asks for one out-of-band attempt (ADMIN only, TN403; TN404): kind ping (a webhook.ping '
  'event), or redeliver (the event of attempt delivery_id again, with its webhook-id); at '
  'most 100 waiting per endpoint (TN460). Returns the request number and the webhook-id it '
  'will carry.';

------------------------------------------------------------------------------------------
-- Deliveries (tenantry_webhooks only).
------------------------------------------------------------------------------------------
create type api.webhook_claim as (
  organization_id text,
  webhook_id      bigint,
  request_id      bigint,
  claim           uuid
);
comment on type api.webhook_claim is
  'A lease api.claim_webhook_work handed out: an endpoint''s next owed entry (request_id NULL) '
  'or an out-of-band request.';

create function api.claim_webhook_work(lease_ms integer, max_claims integer, busy_orgs text[], busy_counts integer[],
                                       per_org integer)
  returns setof api.webhook_claim
  language plpgsql volatile
  as $$
declare
  -- Organizations with no slot left on the calling instance: not even looked at, so they
  -- cannot crowd the others out of the candidates.
  full_orgs text[] := array(select b.org from unnest(busy_orgs, busy_counts) as b(org, n) where b.n >= per_org);
begin
  if lease_ms < 1 or max_claims < 1 or per_org < 1 then
    raise exception 'lease_ms, max_claims and per_org must be positive' using errcode = 'TN400';
  end if;
  return query
  with busy as (
    select b.org, b.n from unnest(busy_orgs, busy_counts) as b(org, n)
  ), requests as (
    select r.organization_id, r.webhook_id, r.id, r.requested_at as due
      from app.webhook_requests r
     where (r.claimed_until is null or r.claimed_until < pg_catalog.now())
       and not r.organization_id = any (full_orgs)
     order by r.requested_at
     limit max_claims * 4
       for update skip locked
  ), owed as (
    select q.organization_id, q.webhook_id, null::bigint as id, q.next_attempt_at as due
      from app.webhook_queue q
     where q.active and q.head > q.position and q.next_attempt_at <= pg_catalog.now()
       and (q.claimed_until is null or q.claimed_until < pg_catalog.now())
       and not q.organization_id = any (full_orgs)
     order by q.next_attempt_at
     limit max_claims * 4
       for update skip locked
  ), ranked as (
    select c.*, pg_catalog.row_number() over (partition by c.organization_id order by c.due) as n
      from (select * from requests union all select * from owed) c
  ), chosen as (
    select r.organization_id, r.webhook_id, r.id, pg_catalog.gen_random_uuid() as claim
      from ranked r left join busy b on b.org = r.organization_id
     where r.n + coalesce(b.n, 0) <= per_org
     order by r.due
     limit max_claims
  ), claimed_requests as (
    update app.webhook_requests r
       set claimed_until = pg_catalog.now() + pg_catalog.make_interval(secs => lease_ms / 1000.0), claim = c.claim
      from chosen c
     where c.id is not null and r.organization_id = c.organization_id and r.webhook_id = c.webhook_id and r.id = c.id
    returning r.organization_id, r.webhook_id, r.id, r.claim
  ), claimed_owed as (
    update app.webhook_queue q
       set claimed_until = pg_catalog.now() + pg_catalog.make_interval(secs => lease_ms / 1000.0), claim = c.claim
      from chosen c
     where c.id is null and q.organization_id = c.organization_id and q.webhook_id = c.webhook_id
    returning q.organization_id, q.webhook_id, null::bigint, q.claim
  )
  select * from claimed_requests union all select * from claimed_owed;
end
$$;
comment on function api.claim_webhook_work(integer, integer, text[], integer[], integer) is
  'Claims up to max_claims due deliveries across organizations, oldest due first, for lease_ms '
  '(FOR UPDATE SKIP LOCKED: concurrent instances never claim the same), at most per_org per '
  'organization counting busy_counts already in flight for busy_orgs. Run as tenantry_webhooks '
  'with no tenant; commit before sending.';

create type api.webhook_work as (
  url         text,
  secrets     text[],
  event_id    text,
  event_type  text,
  attempt     integer,
  id          bigint,
  issue_id    bigint,
  actor_id    text,
  action      text,
  changes     jsonb,
  created_at  timestamptz,
  skipped_to  bigint
);
comment on type api.webhook_work is
  'What api.webhook_work returns for a lease: the URL, the signing secrets, the event''s '
  'webhook-id, type and attempt number, and the activity entry (NULL for a ping); or, when '
  'no entry after position is of the endpoint''s kinds, only skipped_to (the last one read).';

create function api.webhook_work(webhook_id bigint, request_id bigint, claim uuid) returns setof api.webhook_work
  language plpgsql stable
  as $$
declare
  org     text := app.current_org_id();
  q       record;
  r       record;
  hook    app.webhooks;
  work    api.webhook_work;
  entry   record;
  last_read bigint;
begin
  select * into hook from app.webhooks w where w.organization_id = org and w.id = webhook_work.webhook_id;
  if hook.id is null then
    return;
  end if;
  work.url := hook.url;
  work.secrets := array(select s.secret from app.webhook_secrets s
                         where s.organization_id = org and s.webhook_id = webhook_work.webhook_id
                           and (s.expires_at is null or s.expires_at > pg_catalog.now())
                         order by s.created_at desc);
  if request_id is not null then
    select * into r from app.webhook_requests x
     where x.organization_id = org and x.webhook_id = webhook_work.webhook_id and x.id = request_id
       and x.claim = webhook_work.claim;
    if r.id is null then
      return;
    end if;
    if r.kind = 'ping' then
      work.event_id := r.ping_event_id;
      work.event_type := 'webhook.ping';
      work.created_at := r.requested_at;
    else
      select a.id, a.issue_id, a.actor_id, a.action, a.changes, a.created_at into entry
        from app.activity_logs a where a.organization_id = org and a.id = r.activity_id;
      if entry.id is null then
        return;
      end if;
      work.event_id := format('msg_%s_%s', webhook_id, entry.id);
      work.event_type := 'issue.' || entry.action;
      work.id := entry.id; work.issue_id := entry.issue_id; work.actor_id := entry.actor_id;
      work.action := entry.action; work.changes := entry.changes; work.created_at := entry.created_at;
    end if;
    work.attempt := 1 + (select pg_catalog.count(*) from app.webhook_deliveries d
                          where d.organization_id = org and d.webhook_id = webhook_work.webhook_id
                            and d.event_id = work.event_id);
    return next work;
    return;
  end if;

  select x.position, x.head, x.attempt, x.claim into q from app.webhook_queue x
   where x.organization_id = org and x.webhook_id = webhook_work.webhook_id;
  if q.claim is distinct from webhook_work.claim then
    return;
  end if;
  -- The next entry of the endpoint's kinds, reading at most 1,000 (bounded by time too:
  -- entry times grow with ids, so only the months from the position's entry on are read).
  for entry in
    select a.id, a.issue_id, a.actor_id, a.action, a.changes, a.created_at
      from app.activity_logs a
     where a.organization_id = org and a.id > q.position and a.id <= q.head
       and a.created_at >= coalesce((select p.created_at from app.activity_logs p
                                      where p.organization_id = org and p.id = q.position), '-infinity')
     order by a.id
     limit 1000
  loop
    last_read := entry.id;
    if ('issue.' || entry.action) = any (hook.events) then
      work.event_id := format('msg_%s_%s', webhook_id, entry.id);
      work.event_type := 'issue.' || entry.action;
      work.attempt := q.attempt + 1;
      work.id := entry.id; work.issue_id := entry.issue_id; work.actor_id := entry.actor_id;
      work.action := entry.action; work.changes := entry.changes; work.created_at := entry.created_at;
      return next work;
      return;
    end if;
  end loop;
  -- Nothing of its kinds (or the entries are gone: dropped with their month): skip past.
  work.skipped_to := coalesce(last_read, q.head);
  return next work;
end
$$;
comment on function api.webhook_work(bigint, bigint, uuid) is
  'For a lease of api.claim_webhook_work, in a transaction scoped to its organization: what to '
  'send (see api.webhook_work). Nothing when the lease is no longer held or the endpoint is gone.';

create function api.record_webhook_attempt(
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
           claim = null
     where q.organization_id = org and q.webhook_id = record_webhook_attempt.webhook_id
       and q.claim = record_webhook_attempt.claim;
    held := found;
  end if;
  if skipped_to is not null then
    return held;
  end if;
  update app.webhook_queue q set last_delivery_id = q.last_delivery_id + 1
   where q.organization_id = org and q.webhook_id = record_webhook_attempt.webhook_id
  returning q.last_delivery_id into number;
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

create function api.webhook_backlog() returns table (owing bigint, oldest_seconds double precision)
  language sql stable
  as $$
    select pg_catalog.count(*), extract(epoch from pg_catalog.now() - pg_catalog.min(q.owed_since))::double precision
      from app.webhook_queue q
     where q.active and q.head > q.position
  $$;
comment on function api.webhook_backlog() is
  'For /metrics (tenantry_webhooks, no tenant): how many active endpoints are owed entries, and '
  'the age in seconds of the oldest entry owed (NULL: none).';

------------------------------------------------------------------------------------------
-- Grants
------------------------------------------------------------------------------------------
grant execute on function api.create_webhook(text, text[], text, text, integer), api.list_webhooks(integer, text),
  api.get_webhook(bigint), api.update_webhook(bigint, text, text[], text, boolean), api.delete_webhook(bigint),
  api.rotate_webhook_secret(bigint, text), api.list_webhook_deliveries(bigint, integer, text),
  api.request_webhook_attempt(bigint, text, bigint)
  to tenantry_api;
grant execute on function api.claim_webhook_work(integer, integer, text[], integer[], integer),
  api.webhook_work(bigint, bigint, uuid), api.webhook_backlog(),
  api.record_webhook_attempt(bigint, bigint, uuid, text, text, bigint, integer, timestamptz, integer, integer,
                             text, boolean, timestamptz, text, bigint)
  to tenantry_webhooks;
grant execute on function app.require_context(), app.list_fingerprint(text, jsonb), app.encode_cursor(text, text, jsonb, bigint),
  app.decode_cursor(text, text, text) to tenantry_api;

------------------------------------------------------------------------------------------
-- tenantry reset: webhooks go with the rest of the tenant data.
------------------------------------------------------------------------------------------
create or replace function app.reset_tenant_data() returns void
  language plpgsql
  as $$
declare
  attempts integer := 0;
begin
  -- Every table at once or none: requests lock these tables in different orders (a
  -- create numbers first, an update locks its issue first), so waiting for one table
  -- while holding another could deadlock with them. NOWAIT never waits: retry instead.
  loop
    begin
      lock table app.issues, app.organization_counters, app.activity_logs, app.issue_terms,
                 app.idempotency_keys, app.webhooks, app.webhook_secrets, app.webhook_queue,
                 app.webhook_requests, app.webhook_deliveries in access exclusive mode nowait;
      exit;
    exception when lock_not_available then
      attempts := attempts + 1;
      if attempts >= 600 then
        raise exception 'the tenant tables stayed busy for 30 s; try again' using errcode = '55P03';
      end if;
      perform pg_catalog.pg_sleep(0.05);
    end;
  end loop;
  truncate app.issue_terms, app.idempotency_keys, app.activity_logs, app.issues, app.organization_counters,
           app.webhook_deliveries, app.webhook_requests, app.webhook_queue, app.webhook_secrets, app.webhooks;
  -- Numbers start again at 1: a new key, so that entity tags of the old issues never match
  -- the new ones (a server running now keeps the key it read at start until it restarts).
  update secrets.keys
     set key = pg_catalog.sha256(pg_catalog.uuid_send(pg_catalog.gen_random_uuid())
                                 || pg_catalog.uuid_send(pg_catalog.gen_random_uuid())
                                 || pg_catalog.uuid_send(pg_catalog.gen_random_uuid())),
         created_at = pg_catalog.now()
   where name = 'etag';
end
$$;
comment on function app.reset_tenant_data() is
  'Deletes the data of every organization (issues, search words, activity, counters, '
  'idempotency keys, webhooks) and makes a new entity-tag key: `tenantry reset --yes`. Owner '
  'only. Takes every table at once without waiting (retrying for up to 30 s), so it never '
  'deadlocks with requests.';
