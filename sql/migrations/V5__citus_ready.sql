-- tenantry, migration 5: the schema ready for Citus, distributed by organization_id
-- (docs/citus.md has the whole procedure). What Citus asks of a schema, and where it is:
--
--   1. Every primary key, unique key and foreign key includes the distribution column.
--      True of every table in app (tests/api/schema.rs checks the catalog after every
--      migration, so a future key without organization_id fails the build).
--   2. The tenant must reach the workers. Only SET LOCAL does (with
--      citus.propagate_set_commands = 'local'); set_config() stays on the coordinator.
--      That is the service's DATABASE_CONTEXT=set_local; nothing to do in SQL: the
--      policies read current_setting() either way.
--   3. No sub-query in a policy of a distributed table ("Subqueries are not supported in
--      policies on distributed tables"). On plain PostgreSQL our policies compare with
--      `(select app.current_org_id())`: an InitPlan, so the setting is read once per
--      statement whatever plan is chosen (tests/api/plans.rs relies on it). Citus refuses
--      exactly that form, so the coordinator runs app.use_policies_without_subqueries()
--      (below) once before distributing the tables. The test suite runs with the
--      rewritten policies too (TEST_CITUS_POLICIES=1, CI's second pass): same rules.

create function app.use_policies_without_subqueries() returns setof text
  language plpgsql volatile
  set search_path = pg_catalog, pg_temp
  as $$
declare
  policy    record;
  qual      text;
  checked   text;
  -- `(select app.current_org_id())` as PostgreSQL prints it back, for each context helper.
  wrapped   constant text := '\( SELECT (app\.current_(org_id|user_id|user_role)\(\)) AS current_\2\)';
begin
  for policy in
    select p.polname, p.polrelid::regclass as target,
           pg_get_expr(p.polqual, p.polrelid) as qual,
           pg_get_expr(p.polwithcheck, p.polrelid) as checked
    from pg_policy p join pg_class c on c.oid = p.polrelid
    where c.relnamespace = 'app'::regnamespace
    order by p.polrelid::regclass::text, p.polname
  loop
    qual := regexp_replace(policy.qual, wrapped, '\1', 'g');
    checked := regexp_replace(policy.checked, wrapped, '\1', 'g');
    if qual ~* '\mselect\M' or checked ~* '\mselect\M' then
      raise exception 'policy % on % holds a sub-query that is not a context helper', policy.polname, policy.target
        using hint = 'rewrite it by hand without the sub-query (e.g. call a function), then run this again';
    end if;
    if qual is distinct from policy.qual or checked is distinct from policy.checked then
      execute format('alter policy %I on %s', policy.polname, policy.target)
           || coalesce(' using (' || qual || ')', '')
           || coalesce(' with check (' || checked || ')', '');
      return next format('%s on %s', policy.polname, policy.target);
    end if;
  end loop;
end
$$;
comment on function app.use_policies_without_subqueries() is
  'For Citus: rewrites every policy of the app schema from (select app.current_org_id()) '
  '(and the user and role helpers) to a direct call, which Citus accepts on distributed '
  'tables, and returns the policies it changed. Same rules; on plain PostgreSQL the role '
  'check of the admin policies is then evaluated per row instead of once per statement. '
  'Raises on a policy holding any other sub-query. Run as the owner, once, before '
  'create_distributed_table (docs/citus.md). Not executable by the API role.';

-- Without sub-queries the policies call the context helpers as whoever queries, and the
-- policies apply to every role: tenantry_dba (which reads the settings through them like
-- any role) needs EXECUTE too, or a refused write would report the helper, not the table.
grant execute on function app.current_org_id(), app.current_user_id(), app.current_user_role() to tenantry_dba;

-- The restore policy (migration 2) asked for the deleted entry with an EXISTS sub-query,
-- which app.use_policies_without_subqueries() would refuse. The same question as a
-- function call, so every policy of the schema has a form Citus accepts.
create function app.issue_was_deleted(organization_id text, issue_id bigint, created_by text) returns boolean
  language sql stable
  set search_path = pg_catalog, pg_temp
  as $$
    select exists (
      select from app.activity_logs a
      where a.organization_id = issue_was_deleted.organization_id and a.issue_id = issue_was_deleted.issue_id
        and a.action = 'deleted' and a.changes->>'createdBy' = issue_was_deleted.created_by)
  $$;
comment on function app.issue_was_deleted(text, bigint, text) is
  'True when the organization''s issue issue_id was deleted while created by created_by (its '
  'deleted activity entry says so). Used by the policy issues_admin_restore; runs as the '
  'caller, so row-level security limits it to the caller''s organization.';
grant execute on function app.issue_was_deleted(text, bigint, text) to tenantry_api;

alter policy issues_admin_restore on app.issues
  with check (
    organization_id = (select app.current_org_id())
    and (select app.current_user_role()) = 'ADMIN'
    and app.issue_was_deleted(organization_id, id, created_by));
