-- tenantry, migration 11: psql that explains itself, and a way back to an empty database.
--
-- - dba.organizations: the list of organizations (there is no table of them: an
--   organization exists once it has numbered something), with its issues now and its
--   last activity.
-- - dba.functions and dba.policies: one line per function and per policy, with the first
--   sentence of its comment, where `\df+` prints whole bodies.
-- - tenantry_tenant_view and dba.as_tenant(org): a DBA sees one organization the way the
--   API does, and can write nothing while doing so. tenantry_dba reads every organization
--   through its own read policies (migration 1), whatever app.org_id says; setting
--   app.org_id alone changes nothing for it. tenantry_tenant_view holds SELECT only and no
--   read policy of its own, so the tenant policies (app.org_id) decide what it sees. It is
--   granted to tenantry_dba, never tenantry_api (which can write). dba.as_tenant switches
--   role and tenant for the rest of the transaction: begin; select dba.as_tenant('acme');
--   ...; rollback;
-- - app.reset_tenant_data(): empties every tenant table (`tenantry reset --yes`), owner
--   only.

create view dba.organizations with (security_invoker = true) as
  select c.organization_id as id,
         c.live_issues as issues,
         c.last_activity_id as activity_entries,
         (select a.created_at from app.activity_logs a
           where a.organization_id = c.organization_id and a.id = c.last_activity_id) as last_activity_at
  from app.organization_counters c
  order by c.organization_id;
comment on view dba.organizations is
  'Every organization (one that has created something), with its issues now and when it last changed something.';
comment on column dba.organizations.id is 'The organization (tenant), as x-organization-id names it.';
comment on column dba.organizations.issues is 'Issues it has now (deleted ones not counted).';
comment on column dba.organizations.activity_entries is 'Activity entries it has written (its last entry number).';
comment on column dba.organizations.last_activity_at is 'When its last change was made (NULL if its activity was dropped by retention).';

create view dba.functions with (security_invoker = true) as
  select n.nspname as schema,
         p.oid::regprocedure::text as function,
         pg_catalog.split_part(pg_catalog.obj_description(p.oid, 'pg_proc'), '. ', 1) as summary
  from pg_catalog.pg_proc p
  join pg_catalog.pg_namespace n on n.oid = p.pronamespace
  where n.nspname in ('api', 'app', 'dba')
  order by n.nspname, p.proname, function;
comment on view dba.functions is
  'One line per function of api (what the service calls), app (helpers) and dba: its signature and the first sentence of its comment. \sf <function> shows a body.';
comment on column dba.functions.schema is 'api, app or dba.';
comment on column dba.functions.function is 'Name and argument types, as \sf and \df take them.';
comment on column dba.functions.summary is 'The first sentence of the function''s comment.';

create view dba.policies with (security_invoker = true) as
  select c.oid::regclass::text as "table",
         p.polname as policy,
         case p.polcmd when 'r' then 'SELECT' when 'a' then 'INSERT' when 'w' then 'UPDATE'
                       when 'd' then 'DELETE' else 'ALL' end as command,
         case when p.polroles = '{0}' then 'every role'
              else (select pg_catalog.string_agg(r.rolname, ', ') from pg_catalog.pg_roles r
                     where r.oid = any (p.polroles)) end as applies_to,
         pg_catalog.obj_description(p.oid, 'pg_policy') as meaning
  from pg_catalog.pg_policy p
  join pg_catalog.pg_class c on c.oid = p.polrelid
  where not c.relispartition
  order by "table", policy;
comment on view dba.policies is
  'Every row-level security policy on the tables (partitions left out: they copy their table''s), what it applies to and what it means (its comment). \d+ <table> shows the expressions.';
comment on column dba.policies."table" is 'The table the policy is on.';
comment on column dba.policies.policy is 'The policy''s name.';
comment on column dba.policies.command is 'SELECT, INSERT, UPDATE, DELETE or ALL.';
comment on column dba.policies.applies_to is 'The roles it applies to ("every role", or the roles named).';
comment on column dba.policies.meaning is 'The policy''s comment: what it allows, in words.';

grant select on dba.organizations, dba.functions, dba.policies to tenantry_dba;

do $$
begin
  if not exists (select from pg_catalog.pg_roles where rolname = 'tenantry_tenant_view') then
    create role tenantry_tenant_view nologin nosuperuser nobypassrls nocreatedb nocreaterole noinherit;
  end if;
end
$$;
comment on role tenantry_tenant_view is
  'Read-only view of one organization, the way the API sees it: SELECT on the tenant tables and no read policy of its own, so the tenant policies (app.org_id) decide. Granted to tenantry_dba; used through dba.as_tenant(org) inside a transaction.';
grant tenantry_tenant_view to tenantry_dba;
grant usage on schema app to tenantry_tenant_view;
grant select on app.organization_counters, app.issues, app.activity_logs, app.issue_terms, app.idempotency_keys
  to tenantry_tenant_view;
-- The activity partitions keep exactly their table's grants (new ones copy them,
-- app.copy_table_security); the existing ones get this one too.
do $$
declare
  partition regclass;
begin
  for partition in select i.inhrelid::regclass from pg_catalog.pg_inherits i
                    where i.inhparent = 'app.activity_logs'::regclass loop
    execute pg_catalog.format('grant select on %s to tenantry_tenant_view', partition);
  end loop;
end
$$;
grant execute on function app.current_org_id(), app.current_user_id(), app.current_user_role(),
  app.issue_was_deleted(text, bigint, text) to tenantry_tenant_view;

create function dba.as_tenant(org text) returns text
  language plpgsql volatile
  as $$
begin
  if not app.is_valid_id(org) then
    raise exception 'organization ids are 1-64 characters of A-Z a-z 0-9 . _ : @ -' using errcode = 'TN400';
  end if;
  perform pg_catalog.set_config('role', 'tenantry_tenant_view', true),
          pg_catalog.set_config('app.org_id', org, true);
  return pg_catalog.format('until this transaction ends: role tenantry_tenant_view (reads only), '
                           'seeing organization %s as the API does', org);
end
$$;
comment on function dba.as_tenant(text) is
  'Switches to role tenantry_tenant_view and organization org for the rest of the transaction: what the API would show that organization, with no right to write. Use inside begin; ... rollback;';
grant execute on function dba.as_tenant(text) to tenantry_dba;
grant execute on function app.is_valid_id(text) to tenantry_dba;

create function app.reset_tenant_data() returns void
  language plpgsql volatile
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
                 app.idempotency_keys in access exclusive mode nowait;
      exit;
    exception when lock_not_available then
      attempts := attempts + 1;
      if attempts >= 600 then
        raise exception 'the tenant tables stayed busy for 30 s; try again' using errcode = '55P03';
      end if;
      perform pg_catalog.pg_sleep(0.05);
    end;
  end loop;
  truncate app.issue_terms, app.idempotency_keys, app.activity_logs, app.issues, app.organization_counters;
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
  'Deletes the data of every organization (issues, search words, activity, counters, idempotency keys) and makes a new entity-tag key: `tenantry reset --yes`. Owner only. Takes every table at once without waiting (retrying for up to 30 s), so it never deadlocks with requests.';
