-- tenantry, migration 3: what production traffic needs from the database.
--
--   * Optimistic concurrency: api.update_issue and api.delete_issue take the version the
--     caller last saw (HTTP If-Match) and refuse a stale one with TN412, checked under the
--     row lock by the very statement that writes, so two writers holding the same
--     version cannot both win.
--   * Idempotent creates: api.create_issue_idempotently remembers an Idempotency-Key per
--     organization for 24 hours (app.idempotency_keys, row-level security forced) and
--     replays the original issue instead of creating a second one.
--   * Readiness: api.schema_version() tells the service which migrations the database has.
--
-- New reserved SQLSTATEs: TN412 stale version (the DETAIL carries current_version=N),
-- TN422 an idempotency key reused for a different request.

------------------------------------------------------------------------------------------
-- Optimistic concurrency. Dropped and re-created (not overloaded): with an overload, a
-- two-argument call would be ambiguous. The new parameter is defaulted, so
-- `select * from api.update_issue(1, '{"status": "DONE"}')` in psql works as before.
------------------------------------------------------------------------------------------
drop function api.update_issue(bigint, jsonb);

create function api.update_issue(issue_id bigint, patch jsonb, expected_version bigint default null)
  returns setof api.issue
  language plpgsql volatile
  as $$
declare
  bad_key text;
  before  app.issues;
  after   app.issues;
  changes jsonb;
begin
  perform app.require_context();
  perform app.require_admin('update issues');

  if jsonb_typeof(patch) is distinct from 'object' then
    raise exception 'patch must be a JSON object' using errcode = 'TN400';
  end if;
  select key into bad_key from jsonb_object_keys(patch) as key
  where key not in ('title', 'description', 'status', 'priority', 'assignee_id')
  limit 1;
  if found then
    raise exception '% cannot be changed', bad_key using errcode = 'TN400', column = bad_key;
  end if;
  select key into bad_key from jsonb_each(patch) as e(key, value)
  where jsonb_typeof(value) <> 'string' and not (key = 'assignee_id' and jsonb_typeof(value) = 'null')
  limit 1;
  if found then
    raise exception '% must be a string', bad_key using errcode = 'TN400', column = bad_key;
  end if;

  -- The row lock makes every writer of this issue wait here for the one before it, and
  -- then read the version that one committed.
  select i.* into before
  from app.issues i
  where i.organization_id = app.current_org_id() and i.id = update_issue.issue_id
  for update;
  if not found then
    raise exception 'issue % not found', issue_id using errcode = 'TN404';
  end if;
  if expected_version is not null and before.version <> expected_version then
    perform app.raise_stale(issue_id, before.version, expected_version);
  end if;

  after := jsonb_populate_record(before, patch);
  select coalesce(jsonb_object_agg(f.field, jsonb_build_object('from', f.old, 'to', f.new)), '{}')
  into changes
  from (values ('title', to_jsonb(before.title), to_jsonb(after.title)),
               ('description', to_jsonb(before.description), to_jsonb(after.description)),
               ('status', to_jsonb(before.status), to_jsonb(after.status)),
               ('priority', to_jsonb(before.priority), to_jsonb(after.priority)),
               ('assigneeId', to_jsonb(before.assignee_id), to_jsonb(after.assignee_id))
       ) as f(field, old, new)
  where f.old is distinct from f.new;

  if changes = '{}' then
    return next app.to_api_issue(before);  -- a no-op: no write, no activity entry
    return;
  end if;

  -- The version condition again, in the statement that writes: it holds by the lock
  -- above, and stays true should the lock ever go.
  update app.issues i
  set title = after.title, description = after.description, status = after.status,
      priority = after.priority, assignee_id = after.assignee_id,
      updated_at = now(), version = i.version + 1
  where i.organization_id = app.current_org_id() and i.id = update_issue.issue_id
    and (update_issue.expected_version is null or i.version = update_issue.expected_version)
  returning i.* into after;
  if not found then
    perform app.raise_stale(issue_id, null, expected_version);
  end if;

  perform app.log_activity(after.id, 'updated', changes);
  return next app.to_api_issue(after);
end
$$;
comment on function api.update_issue(bigint, jsonb, bigint) is
  'ADMIN only (else TN403). Applies patch, a JSON object of column names (title, description, '
  'status, priority, assignee_id; assignee_id may be null) to one issue of the organization '
  'in app.org_id (TN404 when missing), and logs an updated entry with each changed field''s '
  'from and to. A patch that changes nothing writes nothing and returns the issue. With '
  'expected_version (HTTP If-Match), an issue at any other version is left alone and TN412 '
  'is raised, its DETAIL naming the current version.';

drop function api.delete_issue(bigint);

create function api.delete_issue(issue_id bigint, expected_version bigint default null)
  returns setof api.issue
  language plpgsql volatile
  as $$
declare
  gone app.issues;
  current_version bigint;
begin
  perform app.require_context();
  perform app.require_admin('delete issues');

  delete from app.issues i
  where i.organization_id = app.current_org_id() and i.id = delete_issue.issue_id
    and (delete_issue.expected_version is null or i.version = delete_issue.expected_version)
  returning i.* into gone;
  if not found then
    -- Missing, or at another version: tell the two apart.
    select i.version into current_version
    from app.issues i
    where i.organization_id = app.current_org_id() and i.id = delete_issue.issue_id;
    if found then
      perform app.raise_stale(issue_id, current_version, expected_version);
    end if;
    raise exception 'issue % not found', issue_id using errcode = 'TN404';
  end if;

  perform app.log_activity(gone.id, 'deleted', app.issue_json(gone));
  return next app.to_api_issue(gone);
end
$$;
comment on function api.delete_issue(bigint, bigint) is
  'ADMIN only (else TN403). Deletes one issue of the organization in app.org_id (TN404 when '
  'missing), logs a deleted entry holding the whole final issue, and returns it. With '
  'expected_version (HTTP If-Match), an issue at any other version is left alone and TN412 '
  'is raised, its DETAIL naming the current version.';

create function app.raise_stale(issue_id bigint, current_version bigint, expected_version bigint)
  returns void
  language plpgsql stable
  as $$
declare
  latest bigint := current_version;
begin
  if latest is null then
    select i.version into latest
    from app.issues i
    where i.organization_id = app.current_org_id() and i.id = raise_stale.issue_id;
  end if;
  raise exception 'issue % is at version %, not %', issue_id, latest, expected_version
    using errcode = 'TN412',
          detail = format('current_version=%s', latest),
          hint = 'read the issue again and re-apply the change to its current version';
end
$$;
comment on function app.raise_stale(bigint, bigint, bigint) is
  'Raises TN412 (precondition failed) for an issue whose version is not the one the caller '
  'expected. DETAIL is current_version=N, which the service turns into the ETag of its 412.';

------------------------------------------------------------------------------------------
-- Idempotent creates.
------------------------------------------------------------------------------------------
create function app.is_valid_idempotency_key(value text) returns boolean
  language sql immutable strict parallel safe
  as $$ select value ~ '^[\u0020-\u007e]{1,255}$' $$;
comment on function app.is_valid_idempotency_key(text) is
  'Idempotency keys: 1 to 255 printable ASCII characters (space to ~), as HTTP headers carry them.';

create table app.idempotency_keys (
  organization_id text        not null,
  key             text        not null,
  fingerprint     bytea       not null,
  issue           api.issue,
  created_at      timestamptz not null default now(),
  expires_at      timestamptz not null default now() + interval '24 hours',
  constraint idempotency_keys_pkey primary key (organization_id, key),
  constraint idempotency_keys_organization_id_check check (app.is_valid_id(organization_id)),
  constraint idempotency_keys_key_check check (app.is_valid_idempotency_key(key)),
  constraint idempotency_keys_fingerprint_check check (octet_length(fingerprint) = 32),
  constraint idempotency_keys_expires_at_check check (expires_at > created_at)
);
create index idempotency_keys_expiry_idx on app.idempotency_keys (organization_id, expires_at);
comment on table app.idempotency_keys is
  'Idempotency-Key values of recent creates, per organization, kept 24 hours: a retry with '
  'the same key and the same request gets the issue the first one created, instead of a '
  'second issue. Rows are visible and writable only for the organization in app.org_id.';
comment on column app.idempotency_keys.organization_id is 'The organization (tenant) that sent the key; keys of different organizations never meet.';
comment on column app.idempotency_keys.key is 'The client''s Idempotency-Key: 1-255 printable ASCII characters.';
comment on column app.idempotency_keys.fingerprint is
  'SHA-256 of the request as the database received it (the effective field values and the '
  'acting user, see api.create_issue_idempotently): the same key with another request is refused.';
comment on column app.idempotency_keys.issue is
  'The issue as the first request''s response showed it; replayed as it was, even if the issue has changed or gone since.';
comment on column app.idempotency_keys.created_at is 'When the key was first used.';
comment on column app.idempotency_keys.expires_at is 'After this the key is forgotten: it may be used again, for anything.';
comment on index app.idempotency_keys_expiry_idx is 'Finds an organization''s expired keys, which every keyed create removes.';

alter table app.idempotency_keys enable row level security;
alter table app.idempotency_keys force row level security;

create policy idempotency_keys_tenant on app.idempotency_keys
  using (organization_id = (select app.current_org_id()))
  with check (organization_id = (select app.current_org_id()));
comment on policy idempotency_keys_tenant on app.idempotency_keys is
  'Only the keys of the organization in app.org_id are visible or writable.';

create policy idempotency_keys_dba_read on app.idempotency_keys for select to tenantry_dba using (true);
comment on policy idempotency_keys_dba_read on app.idempotency_keys is 'tenantry_dba reads the keys of every organization.';

create function api.create_issue_idempotently(
  idempotency_key text,
  title           text,
  description     text,
  status          text default 'OPEN',
  priority        text default 'MEDIUM',
  assignee_id     text default null
) returns table (replayed boolean, issue api.issue)
  language plpgsql volatile
  as $$
declare
  -- The request as this function sees it: defaults applied, so a body that omits
  -- "status" and one that sends the default are the same request; the acting user
  -- included, so a colleague reusing the key does not receive someone else's issue.
  request_hash bytea := pg_catalog.sha256(pg_catalog.convert_to(jsonb_build_object(
    'title', title, 'description', description,
    'status', coalesce(status, 'OPEN'), 'priority', coalesce(priority, 'MEDIUM'),
    'assigneeId', assignee_id, 'createdBy', app.current_user_id())::text, 'UTF8'));
  claimed boolean;
  earlier app.idempotency_keys;
  created api.issue;
begin
  perform app.require_context();
  if idempotency_key is null or not app.is_valid_idempotency_key(idempotency_key) then
    raise exception 'an idempotency key is 1-255 printable ASCII characters'
      using errcode = 'TN400', column = 'idempotency_key';
  end if;

  delete from app.idempotency_keys k
  where k.organization_id = app.current_org_id() and k.expires_at <= now()
    and k.key <> idempotency_key;

  -- Claim the key: insert it, or take over an expired one. A concurrent request with
  -- the same key waits here on the primary key until this transaction ends, and then
  -- finds the key taken.
  insert into app.idempotency_keys as k (organization_id, key, fingerprint)
  values (app.current_org_id(), idempotency_key, request_hash)
  on conflict (organization_id, key) do update
    set fingerprint = excluded.fingerprint, issue = null,
        created_at = excluded.created_at, expires_at = excluded.expires_at
    where k.expires_at <= now()
  returning true into claimed;

  if claimed is null then
    -- A new statement: it sees the earlier request's committed row.
    select k.* into earlier
    from app.idempotency_keys k
    where k.organization_id = app.current_org_id() and k.key = idempotency_key;
    if earlier.fingerprint is distinct from request_hash then
      raise exception 'this Idempotency-Key was used for a different request'
        using errcode = 'TN422',
              hint = 'use a new key for a new request; keys are kept for 24 hours';
    end if;
    return query select true, earlier.issue;
    return;
  end if;

  select * into created
  from api.create_issue(title, description, status, priority, assignee_id);
  update app.idempotency_keys k
  set issue = created
  where k.organization_id = app.current_org_id() and k.key = idempotency_key;
  return query select false, created;
end
$$;
comment on function api.create_issue_idempotently(text, text, text, text, text, text) is
  'api.create_issue with an Idempotency-Key. The first call with a key creates the issue and '
  'remembers it for 24 hours (app.idempotency_keys); a later call with the same key and the '
  'same request (same values, same app.user_id) creates nothing and returns that issue with '
  'replayed = true; the same key with a different request raises TN422. Concurrent calls '
  'with one key create one issue. Removes the organization''s expired keys as it goes.';

------------------------------------------------------------------------------------------
-- Readiness: the newest migration the database has. refinery keeps its history in a table
-- only the owner reads; this function (running as its owner, with a pinned search path)
-- shows the API role that one number. The table's schema is resolved now, at migration.
------------------------------------------------------------------------------------------
do $$
declare
  history text;
begin
  select format('%I.%I', n.nspname, c.relname) into strict history
  from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
  where c.oid = pg_catalog.to_regclass('refinery_schema_history');
  execute format($f$
    create function api.schema_version() returns integer
      language sql stable security definer
      set search_path = pg_catalog, pg_temp
      as 'select max(version) from %s'
  $f$, history);
end
$$;
comment on function api.schema_version() is
  'The newest migration version applied to this database (from refinery''s history). The '
  'service''s /readyz compares it with the newest migration the binary carries.';

------------------------------------------------------------------------------------------
-- Grants. Functions are not executable by PUBLIC here (migration 1's default privileges).
------------------------------------------------------------------------------------------
grant select, insert, update (fingerprint, issue, created_at, expires_at), delete
  on app.idempotency_keys to tenantry_api;
grant select on app.idempotency_keys to tenantry_dba;
grant execute on function
  api.update_issue(bigint, jsonb, bigint),
  api.delete_issue(bigint, bigint),
  api.create_issue_idempotently(text, text, text, text, text, text),
  api.schema_version(),
  app.raise_stale(bigint, bigint, bigint),
  app.is_valid_idempotency_key(text)
  to tenantry_api;
