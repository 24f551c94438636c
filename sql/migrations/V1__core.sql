-- tenantry, migration 1: roles, schemas, tenant tables under forced row-level security,
-- and the api functions the HTTP service calls.
--
-- Conventions: lowercase SQL; every object carries a comment (see \d+ and \df+ in psql);
-- every tenant table leads its keys with organization_id; functions run as their caller
-- (security invoker), so row-level security and the caller's grants apply inside them.
-- Reserved SQLSTATEs raised on purpose, mapped to HTTP by the service:
--   TN400 invalid input · TN401 no tenant/actor set · TN403 forbidden by role
--   TN404 no such row in this organization.

------------------------------------------------------------------------------------------
-- Roles. Roles belong to the whole cluster, so they are created only when missing: every
-- database of the cluster can run this migration.
------------------------------------------------------------------------------------------
do $$
begin
  if not exists (select from pg_catalog.pg_roles where rolname = 'tenantry_api') then
    create role tenantry_api login nosuperuser nobypassrls nocreatedb nocreaterole noinherit;
  end if;
  if not exists (select from pg_catalog.pg_roles where rolname = 'tenantry_dba') then
    create role tenantry_dba nologin nosuperuser nobypassrls nocreatedb nocreaterole;
  end if;
  -- When the migrating role is not a superuser it must be a member of tenantry_api to
  -- switch to it per transaction (the service's mode when DATABASE_URL names the owner).
  if not (select rolsuper from pg_catalog.pg_roles where rolname = current_user) then
    execute format('grant tenantry_api to %I', current_user);
  end if;
end
$$;

comment on role tenantry_api is
  'The role every HTTP request runs as: owns nothing, cannot bypass row-level security, '
  'reaches tenant rows only for the organization in app.org_id. The service refuses to '
  'start if this role could bypass RLS.';
comment on role tenantry_dba is
  'Read-only inspection role for DBAs: SELECT on the tenant tables through a policy that '
  'shows every organization. Grant it to a person''s login role; it cannot write.';

------------------------------------------------------------------------------------------
-- Schemas
------------------------------------------------------------------------------------------
create schema app;
comment on schema app is
  'Private schema: the tenant tables and their helpers. Row-level security is enabled and '
  'forced on every table, keyed on the transaction setting app.org_id.';

create schema api;
comment on schema api is
  'The functions the HTTP service calls, one per operation. They run as the caller, read '
  'the tenant, actor and role from the transaction settings app.org_id, app.user_id and '
  'app.role, enforce the role rules and write the activity log.';

-- Functions are executable by PUBLIC by default; here only the roles granted below may.
alter default privileges revoke execute on functions from public;

------------------------------------------------------------------------------------------
-- Request context. The service sets these with set_config(..., true) at the start of each
-- transaction. After a transaction ends a setting reads '' (before any set, NULL): both
-- mean "unset", and unset matches no row.
------------------------------------------------------------------------------------------
create function app.current_org_id() returns text
  language sql stable parallel safe
  as $$ select nullif(pg_catalog.current_setting('app.org_id', true), '') $$;
comment on function app.current_org_id() is
  'The organization of the current transaction (setting app.org_id), NULL when unset. '
  'Every row-level security policy compares organization_id with it: unset sees nothing.';

create function app.current_user_id() returns text
  language sql stable parallel safe
  as $$ select nullif(pg_catalog.current_setting('app.user_id', true), '') $$;
comment on function app.current_user_id() is
  'The acting user of the current transaction (setting app.user_id), NULL when unset.';

create function app.current_user_role() returns text
  language sql stable parallel safe
  as $$ select nullif(pg_catalog.current_setting('app.role', true), '') $$;
comment on function app.current_user_role() is
  'The acting user''s role in the organization (setting app.role): ADMIN or MEMBER; NULL when unset.';

create function app.require_context() returns void
  language plpgsql stable
  as $$
begin
  if app.current_org_id() is null or app.current_user_id() is null then
    raise exception 'no tenant context: set app.org_id and app.user_id first'
      using errcode = 'TN401',
            hint = 'select set_config(''app.org_id'', ''org-1'', true), set_config(''app.user_id'', ''u-1'', true), set_config(''app.role'', ''ADMIN'', true);';
  end if;
end
$$;
comment on function app.require_context() is
  'Raises TN401 unless app.org_id and app.user_id are set: writes always name a tenant and an actor.';

create function app.require_admin(action text) returns void
  language plpgsql stable
  as $$
begin
  if app.current_user_role() is distinct from 'ADMIN' then
    raise exception 'only an ADMIN may %', action
      using errcode = 'TN403',
            detail = format('app.role is %s', coalesce(app.current_user_role(), 'unset'));
  end if;
end
$$;
comment on function app.require_admin(text) is
  'Raises TN403 (forbidden) unless app.role is ADMIN. Called by the api functions that '
  'change or remove issues; the same rule is in the row-level security policies.';

------------------------------------------------------------------------------------------
-- Value rules, shared by the CHECK constraints below. The HTTP service applies the very
-- same rules (src/domain/rules.rs) so curl and psql users meet the same limits.
------------------------------------------------------------------------------------------
create function app.is_valid_id(value text) returns boolean
  language sql immutable strict parallel safe
  as $$ select value ~ '^[A-Za-z0-9._:@-]{1,64}$' $$;
comment on function app.is_valid_id(text) is
  'Organization and user ids: 1 to 64 characters of A-Z a-z 0-9 . _ : @ -';

-- Exactly Unicode's White_Space property, which is what Rust's char::is_whitespace uses.
create function app.is_blank(value text) returns boolean
  language sql immutable strict parallel safe
  as $$
    select pg_catalog.btrim(value, E' \t\n\r\u000b\u000c\u0085\u00a0\u1680\u2000\u2001\u2002'
      '\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000') = ''
  $$;
comment on function app.is_blank(text) is
  'True when the text is empty or only white space (Unicode White_Space).';

-- Control characters are Unicode category Cc: U+0000-U+001F and U+007F-U+009F.
-- (PostgreSQL cannot store U+0000 at all.)
create function app.has_control_chars(value text, allow_line_breaks boolean) returns boolean
  language sql immutable strict parallel safe
  as $$
    select case when allow_line_breaks
      then value ~ '[\u0001-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]'
      else value ~ '[\u0001-\u001f\u007f-\u009f]'
    end
  $$;
comment on function app.has_control_chars(text, boolean) is
  'True when the text holds a control character; with allow_line_breaks, tab, line feed '
  'and carriage return are allowed.';

------------------------------------------------------------------------------------------
-- Tables
------------------------------------------------------------------------------------------
create table app.organization_counters (
  organization_id  text   not null,
  last_issue_id    bigint not null default 0,
  last_activity_id bigint not null default 0,
  constraint organization_counters_pkey primary key (organization_id),
  constraint organization_counters_organization_id_check check (app.is_valid_id(organization_id)),
  constraint organization_counters_last_issue_id_check check (last_issue_id >= 0),
  constraint organization_counters_last_activity_id_check check (last_activity_id >= 0)
);
comment on table app.organization_counters is
  'Per-organization sequences for issue and activity numbers. A row is created with the '
  'organization''s first issue; its row lock orders the organization''s writes, so numbers '
  'are gap-free in commit order and no organization can infer another''s volume.';
comment on column app.organization_counters.organization_id is 'The organization (tenant) these counters belong to.';
comment on column app.organization_counters.last_issue_id is 'The last issue number handed out; never decreases, so numbers are not reused after a delete.';
comment on column app.organization_counters.last_activity_id is 'The last activity entry number handed out.';

create table app.issues (
  organization_id text        not null,
  id              bigint      not null,
  title           text        not null,
  description     text        not null,
  status          text        not null default 'OPEN',
  priority        text        not null default 'MEDIUM',
  assignee_id     text,
  created_by      text        not null,
  created_at      timestamptz not null default now(),
  updated_at      timestamptz not null default now(),
  version         bigint      not null default 1,
  constraint issues_pkey primary key (organization_id, id),
  constraint issues_organization_id_check check (app.is_valid_id(organization_id)),
  constraint issues_id_check check (id > 0),
  constraint issues_title_check check (
    char_length(title) between 1 and 255
    and not app.is_blank(title)
    and not app.has_control_chars(title, false)),
  constraint issues_description_check check (
    char_length(description) between 1 and 50000
    and not app.is_blank(description)
    and not app.has_control_chars(description, true)),
  constraint issues_status_check check (status in ('OPEN', 'IN_PROGRESS', 'DONE')),
  constraint issues_priority_check check (priority in ('LOW', 'MEDIUM', 'HIGH')),
  constraint issues_assignee_id_check check (app.is_valid_id(assignee_id)),
  constraint issues_created_by_check check (app.is_valid_id(created_by)),
  constraint issues_version_check check (version > 0)
);
comment on table app.issues is
  'Issues, one set per organization. Rows are visible and writable only for the organization '
  'in app.org_id (forced row-level security); updates and deletes also need app.role = ADMIN.';
comment on column app.issues.organization_id is 'The owning organization (tenant); set from the request''s x-organization-id, never from a body.';
comment on column app.issues.id is 'Per-organization issue number starting at 1 (like GitHub''s issue number), from app.organization_counters.';
comment on column app.issues.title is 'Short summary: 1-255 characters, not blank, no control characters.';
comment on column app.issues.description is 'Body text: 1-50000 characters, not blank, no control characters except tab and line breaks.';
comment on column app.issues.status is 'OPEN, IN_PROGRESS or DONE.';
comment on column app.issues.priority is 'LOW, MEDIUM or HIGH.';
comment on column app.issues.assignee_id is 'The user the issue is assigned to, or NULL; same format as a user id.';
comment on column app.issues.created_by is 'The user (app.user_id) who created the issue.';
comment on column app.issues.created_at is 'When the issue was created.';
comment on column app.issues.updated_at is 'When the issue last changed; moves on every real change, not on a no-op update.';
comment on column app.issues.version is 'Incremented on every real change; the basis of the HTTP ETag.';

create table app.activity_logs (
  organization_id text        not null,
  id              bigint      not null,
  issue_id        bigint      not null,
  actor_id        text        not null,
  action          text        not null,
  changes         jsonb       not null,
  created_at      timestamptz not null default now(),
  constraint activity_logs_pkey primary key (organization_id, id),
  constraint activity_logs_organization_id_check check (app.is_valid_id(organization_id)),
  constraint activity_logs_actor_id_check check (app.is_valid_id(actor_id)),
  constraint activity_logs_action_check check (action in ('created', 'updated', 'deleted', 'restored')),
  constraint activity_logs_changes_check check (jsonb_typeof(changes) = 'object')
);
-- No foreign key to app.issues on purpose: the history of a deleted issue stays.
create index activity_logs_issue_idx on app.activity_logs (organization_id, issue_id, id);
comment on table app.activity_logs is
  'Append-only history of every change to an issue, written in the same transaction as the '
  'change. The API role may insert and read (its own organization) but never update or delete.';
comment on column app.activity_logs.organization_id is 'The organization (tenant) of the issue.';
comment on column app.activity_logs.id is 'Per-organization entry number, from app.organization_counters.';
comment on column app.activity_logs.issue_id is 'The issue''s number; the issue itself may since have been deleted.';
comment on column app.activity_logs.actor_id is 'The user (app.user_id) who made the change.';
comment on column app.activity_logs.action is 'created, updated, deleted or restored.';
comment on column app.activity_logs.changes is
  'For updated: {field: {from, to}} for each changed field (API field names). For created '
  'and deleted: the whole issue as the API shows it, so a deleted issue can be rebuilt.';
comment on column app.activity_logs.created_at is 'When the change was made.';
comment on index app.activity_logs_issue_idx is 'One issue''s history in order.';

------------------------------------------------------------------------------------------
-- Row-level security: enabled AND forced (so even the table owner is subject to it),
-- keyed on app.current_org_id(). "(select ...)" makes the planner evaluate the setting
-- once per statement instead of once per row.
------------------------------------------------------------------------------------------
alter table app.organization_counters enable row level security;
alter table app.organization_counters force row level security;
alter table app.issues enable row level security;
alter table app.issues force row level security;
alter table app.activity_logs enable row level security;
alter table app.activity_logs force row level security;

create policy organization_counters_tenant on app.organization_counters
  using (organization_id = (select app.current_org_id()))
  with check (organization_id = (select app.current_org_id()));
comment on policy organization_counters_tenant on app.organization_counters is
  'Only the counters of the organization in app.org_id are visible or writable.';

create policy issues_tenant_select on app.issues for select
  using (organization_id = (select app.current_org_id()));
comment on policy issues_tenant_select on app.issues is
  'Only the issues of the organization in app.org_id are visible.';

create policy issues_tenant_insert on app.issues for insert
  with check (organization_id = (select app.current_org_id())
              and created_by = (select app.current_user_id()));
comment on policy issues_tenant_insert on app.issues is
  'New issues belong to the organization in app.org_id and name app.user_id as creator.';

create policy issues_admin_update on app.issues for update
  using (organization_id = (select app.current_org_id())
         and (select app.current_user_role()) = 'ADMIN')
  with check (organization_id = (select app.current_org_id()));
comment on policy issues_admin_update on app.issues is
  'Only an ADMIN changes issues, and only within the organization in app.org_id.';

create policy issues_admin_delete on app.issues for delete
  using (organization_id = (select app.current_org_id())
         and (select app.current_user_role()) = 'ADMIN');
comment on policy issues_admin_delete on app.issues is
  'Only an ADMIN deletes issues, and only within the organization in app.org_id.';

create policy activity_logs_tenant_select on app.activity_logs for select
  using (organization_id = (select app.current_org_id()));
comment on policy activity_logs_tenant_select on app.activity_logs is
  'Only the activity of the organization in app.org_id is visible.';

create policy activity_logs_tenant_insert on app.activity_logs for insert
  with check (organization_id = (select app.current_org_id())
              and actor_id = (select app.current_user_id()));
comment on policy activity_logs_tenant_insert on app.activity_logs is
  'Entries are written for the organization in app.org_id, by app.user_id.';

-- The DBA role reads everything; it has no write grant at all.
create policy organization_counters_dba_read on app.organization_counters for select to tenantry_dba using (true);
comment on policy organization_counters_dba_read on app.organization_counters is 'tenantry_dba reads the counters of every organization.';
create policy issues_dba_read on app.issues for select to tenantry_dba using (true);
comment on policy issues_dba_read on app.issues is 'tenantry_dba reads the issues of every organization.';
create policy activity_logs_dba_read on app.activity_logs for select to tenantry_dba using (true);
comment on policy activity_logs_dba_read on app.activity_logs is 'tenantry_dba reads the activity of every organization.';

------------------------------------------------------------------------------------------
-- The shape the API returns for an issue, and the JSON kept in the activity log.
------------------------------------------------------------------------------------------
create type api.issue as (
  id              bigint,
  title           text,
  description     text,
  status          text,
  priority        text,
  assignee_id     text,
  organization_id text,
  created_by      text,
  created_at      timestamptz,
  updated_at      timestamptz,
  version         bigint
);
comment on type api.issue is 'An issue as the api functions return it.';

create function app.to_api_issue(i app.issues) returns api.issue
  language sql immutable parallel safe
  as $$
    select row(i.id, i.title, i.description, i.status, i.priority, i.assignee_id,
               i.organization_id, i.created_by, i.created_at, i.updated_at, i.version)::api.issue
  $$;
comment on function app.to_api_issue(app.issues) is 'A table row in the api.issue shape.';

-- Timestamps as the HTTP API prints them: UTC, microseconds, "Z".
create function app.json_time(t timestamptz) returns text
  language sql immutable strict parallel safe
  as $$ select pg_catalog.to_char(t at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') $$;
comment on function app.json_time(timestamptz) is 'A timestamp as the HTTP API prints it, e.g. 2026-01-31T12:00:00.000000Z.';

create function app.issue_json(i app.issues) returns jsonb
  language sql immutable parallel safe
  as $$
    select jsonb_build_object(
      'id', i.id, 'title', i.title, 'description', i.description, 'status', i.status,
      'priority', i.priority, 'assigneeId', i.assignee_id, 'organizationId', i.organization_id,
      'createdBy', i.created_by, 'createdAt', app.json_time(i.created_at),
      'updatedAt', app.json_time(i.updated_at), 'version', i.version)
  $$;
comment on function app.issue_json(app.issues) is
  'The whole issue as the HTTP API shows it (camelCase), as kept in created and deleted activity entries.';

create function app.log_activity(issue_id bigint, action text, changes jsonb) returns void
  language plpgsql volatile
  as $$
declare
  entry_id bigint;
begin
  insert into app.organization_counters as c (organization_id, last_activity_id)
  values (app.current_org_id(), 1)
  on conflict (organization_id) do update set last_activity_id = c.last_activity_id + 1
  returning c.last_activity_id into entry_id;

  insert into app.activity_logs (organization_id, id, issue_id, actor_id, action, changes)
  values (app.current_org_id(), entry_id, log_activity.issue_id, app.current_user_id(),
          log_activity.action, log_activity.changes);
end
$$;
comment on function app.log_activity(bigint, text, jsonb) is
  'Appends an activity entry for the current organization and actor, numbered from '
  'app.organization_counters. Called by the api functions in the transaction of the change.';

------------------------------------------------------------------------------------------
-- The api functions: one per HTTP operation.
------------------------------------------------------------------------------------------
create function api.create_issue(
  title       text,
  description text,
  status      text default 'OPEN',
  priority    text default 'MEDIUM',
  assignee_id text default null
) returns setof api.issue
  language plpgsql volatile
  as $$
declare
  new_id  bigint;
  created app.issues;
begin
  perform app.require_context();

  insert into app.organization_counters as c (organization_id, last_issue_id)
  values (app.current_org_id(), 1)
  on conflict (organization_id) do update set last_issue_id = c.last_issue_id + 1
  returning c.last_issue_id into new_id;

  insert into app.issues as i (organization_id, id, title, description, status, priority,
                               assignee_id, created_by)
  values (app.current_org_id(), new_id, create_issue.title, create_issue.description,
          coalesce(create_issue.status, 'OPEN'), coalesce(create_issue.priority, 'MEDIUM'),
          create_issue.assignee_id, app.current_user_id())
  returning i.* into created;

  perform app.log_activity(created.id, 'created', app.issue_json(created));
  return next app.to_api_issue(created);
end
$$;
comment on function api.create_issue(text, text, text, text, text) is
  'Creates an issue in the organization in app.org_id with the next issue number, created by '
  'app.user_id, and logs a created entry holding the new issue. Any role may create.';

create function api.get_issue(issue_id bigint) returns setof api.issue
  language plpgsql stable
  as $$
begin
  return query
    select (app.to_api_issue(i)).*
    from app.issues i
    where i.organization_id = app.current_org_id() and i.id = get_issue.issue_id;
  if not found then
    raise exception 'issue % not found', issue_id using errcode = 'TN404';
  end if;
end
$$;
comment on function api.get_issue(bigint) is
  'One issue of the organization in app.org_id; raises TN404 when it has no such issue '
  '(another organization''s issue is indistinguishable from a missing one).';

create function api.list_issues() returns setof api.issue
  language sql stable
  as $$
    select (app.to_api_issue(i)).*
    from app.issues i
    where i.organization_id = app.current_org_id()
    order by i.id desc
  $$;
comment on function api.list_issues() is
  'The issues of the organization in app.org_id, newest first. Empty when no tenant is set.';

create function api.update_issue(issue_id bigint, patch jsonb) returns setof api.issue
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

  select i.* into before
  from app.issues i
  where i.organization_id = app.current_org_id() and i.id = update_issue.issue_id
  for update;
  if not found then
    raise exception 'issue % not found', issue_id using errcode = 'TN404';
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

  update app.issues i
  set title = after.title, description = after.description, status = after.status,
      priority = after.priority, assignee_id = after.assignee_id,
      updated_at = now(), version = i.version + 1
  where i.organization_id = app.current_org_id() and i.id = update_issue.issue_id
  returning i.* into after;

  perform app.log_activity(after.id, 'updated', changes);
  return next app.to_api_issue(after);
end
$$;
comment on function api.update_issue(bigint, jsonb) is
  'ADMIN only (else TN403). Applies patch, a JSON object of column names (title, description, '
  'status, priority, assignee_id; assignee_id may be null) to one issue of the organization '
  'in app.org_id (TN404 when missing), and logs an updated entry with each changed field''s '
  'from and to. A patch that changes nothing writes nothing and returns the issue.';

create function api.delete_issue(issue_id bigint) returns setof api.issue
  language plpgsql volatile
  as $$
declare
  gone app.issues;
begin
  perform app.require_context();
  perform app.require_admin('delete issues');

  delete from app.issues i
  where i.organization_id = app.current_org_id() and i.id = delete_issue.issue_id
  returning i.* into gone;
  if not found then
    raise exception 'issue % not found', issue_id using errcode = 'TN404';
  end if;

  perform app.log_activity(gone.id, 'deleted', app.issue_json(gone));
  return next app.to_api_issue(gone);
end
$$;
comment on function api.delete_issue(bigint) is
  'ADMIN only (else TN403). Deletes one issue of the organization in app.org_id (TN404 when '
  'missing), logs a deleted entry holding the whole final issue, and returns it.';

------------------------------------------------------------------------------------------
-- Grants: usage and exactly the privileges each role needs; activity is append-only.
------------------------------------------------------------------------------------------
grant usage on schema app, api to tenantry_api;
grant select, insert, update (last_issue_id, last_activity_id) on app.organization_counters to tenantry_api;
grant select, insert, delete on app.issues to tenantry_api;
grant update (title, description, status, priority, assignee_id, updated_at, version) on app.issues to tenantry_api;
grant select, insert on app.activity_logs to tenantry_api;
grant execute on all functions in schema app, api to tenantry_api;

grant usage on schema app to tenantry_dba;
grant select on app.organization_counters, app.issues, app.activity_logs to tenantry_dba;
