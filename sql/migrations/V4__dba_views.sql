-- tenantry, migration 4: a `dba` schema of read-only views for operations, across every
-- organization, for the DBA role only.
--
-- Who can read them, and why nobody else can:
-- - Only tenantry_dba has USAGE on the schema and SELECT on the views; PUBLIC, and so the
--   API role, has neither: `select * from dba.recent_activity` as tenantry_api is refused
--   with "permission denied for schema dba".
-- - Every view is `security_invoker` (PostgreSQL 15+): it reads the tables with the
--   privileges and row-level security of whoever queries it, not of its owner. The owner
--   is the migration role, often a superuser, which bypasses RLS; a view running with its
--   rights would show every tenant to anyone given SELECT on it. As invoker, tenantry_dba
--   sees every organization through its own read policies (migration 1), and a role
--   granted a view by mistake would still see only what RLS gives it: with no app.org_id,
--   nothing.
-- - The views only read: tenantry_dba has no write grant anywhere, and these views are not
--   auto-updatable targets for it (no INSERT/UPDATE/DELETE privilege on them).

create schema dba;
comment on schema dba is
  'Read-only views for operating tenantry across all organizations (issues and activity per '
  'organization, recent activity, largest organizations). Usable by tenantry_dba only; the '
  'views run with the reader''s own rights and row-level security (security_invoker).';

revoke all on schema dba from public;
grant usage on schema dba to tenantry_dba;

------------------------------------------------------------------------------------------
-- Issues per organization
------------------------------------------------------------------------------------------
create view dba.issues_per_organization with (security_invoker = true) as
  select i.organization_id,
         count(*)                                                     as issues,
         count(*) filter (where i.status = 'OPEN')                    as open,
         count(*) filter (where i.status = 'IN_PROGRESS')             as in_progress,
         count(*) filter (where i.status = 'DONE')                    as done,
         count(*) filter (where i.priority = 'HIGH' and i.status <> 'DONE') as high_priority_not_done,
         count(*) filter (where i.assignee_id is null and i.status <> 'DONE') as unassigned_not_done,
         max(i.updated_at)                                            as last_change_at
  from app.issues i
  group by i.organization_id
  order by i.organization_id;
comment on view dba.issues_per_organization is
  'One row per organization that has issues now: how many, by status, and what needs an owner.';
comment on column dba.issues_per_organization.organization_id is 'The organization (tenant).';
comment on column dba.issues_per_organization.issues is 'Issues it has now (deleted ones not counted).';
comment on column dba.issues_per_organization.open is 'Issues with status OPEN.';
comment on column dba.issues_per_organization.in_progress is 'Issues with status IN_PROGRESS.';
comment on column dba.issues_per_organization.done is 'Issues with status DONE.';
comment on column dba.issues_per_organization.high_priority_not_done is 'HIGH priority issues not yet DONE.';
comment on column dba.issues_per_organization.unassigned_not_done is 'Issues nobody is assigned to that are not yet DONE.';
comment on column dba.issues_per_organization.last_change_at is 'When one of its issues last changed.';

------------------------------------------------------------------------------------------
-- Activity per organization
------------------------------------------------------------------------------------------
create view dba.activity_per_organization with (security_invoker = true) as
  select a.organization_id,
         count(*)                                       as entries,
         count(*) filter (where a.action = 'created')   as created,
         count(*) filter (where a.action = 'updated')   as updated,
         count(*) filter (where a.action = 'deleted')   as deleted,
         count(*) filter (where a.action = 'restored')  as restored,
         count(distinct a.actor_id)                     as actors,
         min(a.created_at)                              as first_entry_at,
         max(a.created_at)                              as last_entry_at
  from app.activity_logs a
  group by a.organization_id
  order by a.organization_id;
comment on view dba.activity_per_organization is
  'One row per organization with history: activity entries by action, distinct actors, first and last entry.';
comment on column dba.activity_per_organization.organization_id is 'The organization (tenant).';
comment on column dba.activity_per_organization.entries is 'All its activity entries.';
comment on column dba.activity_per_organization.created is 'Entries for created issues.';
comment on column dba.activity_per_organization.updated is 'Entries for changed issues.';
comment on column dba.activity_per_organization.deleted is 'Entries for deleted issues.';
comment on column dba.activity_per_organization.restored is 'Entries for restored issues.';
comment on column dba.activity_per_organization.actors is 'Distinct users who changed something.';
comment on column dba.activity_per_organization.first_entry_at is 'Its first activity entry: roughly when it started.';
comment on column dba.activity_per_organization.last_entry_at is 'Its latest activity entry.';

------------------------------------------------------------------------------------------
-- Recent activity across tenants
------------------------------------------------------------------------------------------
create view dba.recent_activity with (security_invoker = true) as
  select a.created_at,
         a.organization_id,
         a.issue_id,
         a.id       as entry_id,
         a.actor_id,
         a.action,
         case a.action
           when 'updated' then (select string_agg(key, ', ' order by key) from jsonb_object_keys(a.changes) as key)
           else a.changes ->> 'title'
         end        as what
  from app.activity_logs a
  where a.created_at > now() - interval '24 hours'
  order by a.created_at desc, a.organization_id, a.id desc;
comment on view dba.recent_activity is
  'Activity entries of the last 24 hours across every organization, newest first. It reads '
  'activity_logs without an index on time (every index leads with organization_id): add a '
  'LIMIT on a large installation.';
comment on column dba.recent_activity.created_at is 'When the change was made.';
comment on column dba.recent_activity.organization_id is 'The organization (tenant).';
comment on column dba.recent_activity.issue_id is 'The issue''s number within its organization.';
comment on column dba.recent_activity.entry_id is 'The entry''s number within its organization (app.activity_logs.id).';
comment on column dba.recent_activity.actor_id is 'Who made the change.';
comment on column dba.recent_activity.action is 'created, updated, deleted or restored.';
comment on column dba.recent_activity.what is
  'For updated: the changed fields (API names); otherwise the issue''s title.';

------------------------------------------------------------------------------------------
-- Largest organizations
------------------------------------------------------------------------------------------
create view dba.largest_organizations with (security_invoker = true) as
  with issue_rows as (
    select i.organization_id, count(*) as issues, sum(pg_column_size(i.*)) as bytes
    from app.issues i group by i.organization_id
  ), activity_rows as (
    select a.organization_id, count(*) as entries, sum(pg_column_size(a.*)) as bytes
    from app.activity_logs a group by a.organization_id
  )
  select coalesce(i.organization_id, a.organization_id)                      as organization_id,
         coalesce(i.issues, 0)                                             as issues,
         coalesce(a.entries, 0)                                            as activity_entries,
         pg_size_pretty(coalesce(i.bytes, 0) + coalesce(a.bytes, 0))       as data_size,
         rank() over (order by coalesce(i.bytes, 0) + coalesce(a.bytes, 0) desc) as rank
  from issue_rows i
  full join activity_rows a on a.organization_id = i.organization_id
  order by rank, organization_id;
comment on view dba.largest_organizations is
  'Organizations by the size of their rows (issues and activity), largest first: who to watch '
  'for growth or to move first. Sizes are of the row data, without indexes and overhead.';
comment on column dba.largest_organizations.organization_id is 'The organization (tenant).';
comment on column dba.largest_organizations.issues is 'Issues it has now.';
comment on column dba.largest_organizations.activity_entries is 'Its activity entries.';
comment on column dba.largest_organizations.data_size is 'Size of its issue and activity rows, for humans.';
comment on column dba.largest_organizations.rank is '1 for the largest; ties share a rank.';

grant select on all tables in schema dba to tenantry_dba;
