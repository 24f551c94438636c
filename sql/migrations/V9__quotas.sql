-- tenantry, migration 9: quotas per organization, so one tenant cannot fill the disk for
-- everyone (a 50,000-character description costs about 1.2 MB with its search words and
-- its activity snapshot).
--
-- - Issues: app.organization_counters.live_issues counts the organization's issues (kept
--   by row triggers on app.issues: a create or a restore adds one, a delete takes one
--   away). Past the transaction setting app.max_issues, the insert is refused with TN460
--   (quota exceeded; the service answers 403).
-- - Activity: app.organization_counters.activity_today counts the entries of the current
--   UTC day (activity_day). It is kept by a trigger on the counters row itself, in the
--   statement that numbers each entry, under that row's lock: past app.max_activity_per_day
--   the change is refused with TN429 (the service answers 429, retry after midnight UTC).
-- - Both limits come from the transaction, like the tenant: the service sets them with the
--   tenant (ORG_MAX_ISSUES, ORG_MAX_ACTIVITY_PER_DAY). Unset, empty or 0 means no limit,
--   so psql sessions and tools that set only the tenant are not limited.
-- Reserved SQLSTATEs added: TN460 quota exceeded, TN429 daily activity quota exhausted.

alter table app.organization_counters
  add column live_issues bigint not null default 0,
  add column activity_day date,
  add column activity_today bigint not null default 0,
  add constraint organization_counters_live_issues_check check (live_issues >= 0),
  add constraint organization_counters_activity_today_check check (activity_today >= 0);
comment on column app.organization_counters.live_issues is
  'How many issues the organization has now (deleted ones not counted): checked against app.max_issues.';
comment on column app.organization_counters.activity_day is
  'The UTC day activity_today counts entries of.';
comment on column app.organization_counters.activity_today is
  'Activity entries the organization made on activity_day: checked against app.max_activity_per_day.';

-- Existing organizations start with their current count. Row-level security is forced on
-- both tables; lifted for this statement only (the migration's transaction), then forced
-- again.
alter table app.organization_counters no force row level security;
alter table app.issues no force row level security;
update app.organization_counters c
   set live_issues = (select pg_catalog.count(*) from app.issues i where i.organization_id = c.organization_id);
alter table app.organization_counters force row level security;
alter table app.issues force row level security;

grant update (live_issues, activity_day, activity_today) on app.organization_counters to tenantry_api;

create function app.quota(name text) returns bigint
  language sql stable parallel safe
  as $$ select nullif(nullif(pg_catalog.current_setting('app.' || name, true), ''), '0')::bigint $$;
comment on function app.quota(text) is
  'The limit the transaction setting app.<name> holds (max_issues, max_activity_per_day); '
  'NULL (no limit) when unset, empty or 0.';

create function app.count_live_issues() returns trigger
  language plpgsql volatile
  as $$
declare
  live  bigint;
  limit_ bigint := app.quota('max_issues');
begin
  update app.organization_counters c
     set live_issues = c.live_issues + case tg_op when 'INSERT' then 1 else -1 end
   where c.organization_id = coalesce(new.organization_id, old.organization_id)
  returning c.live_issues into live;
  if tg_op = 'INSERT' and live > limit_ then
    raise exception 'the organization has % issues, its quota (ORG_MAX_ISSUES)', limit_
      using errcode = 'TN460',
            hint = 'delete issues, or ask the operator for a larger quota';
  end if;
  return null;
end
$$;
comment on function app.count_live_issues() is
  'Trigger: keeps app.organization_counters.live_issues equal to the organization''s number '
  'of issues, and refuses (TN460) an issue past app.max_issues. Runs as the caller.';

create trigger issues_count_live after insert or delete on app.issues
  for each row execute function app.count_live_issues();
comment on trigger issues_count_live on app.issues is
  'Counts the organization''s issues in app.organization_counters (creates, restores, deletes).';

create function app.count_activity_today() returns trigger
  language plpgsql volatile
  as $$
declare
  today  date := (pg_catalog.now() at time zone 'UTC')::date;
  limit_ bigint := app.quota('max_activity_per_day');
begin
  if new.last_activity_id > coalesce(old.last_activity_id, 0) then
    if new.activity_day is distinct from today then
      new.activity_day := today;
      new.activity_today := 0;
    end if;
    new.activity_today := new.activity_today + (new.last_activity_id - coalesce(old.last_activity_id, 0));
    if new.activity_today > limit_ then
      raise exception 'the organization made its % changes of today (UTC), its quota (ORG_MAX_ACTIVITY_PER_DAY)', limit_
        using errcode = 'TN429',
              hint = 'retry after midnight UTC';
    end if;
  end if;
  return new;
end
$$;
comment on function app.count_activity_today() is
  'Trigger: counts the organization''s activity entries per UTC day as they are numbered, '
  'and refuses (TN429) one past app.max_activity_per_day. Runs as the caller.';

create trigger organization_counters_count_activity before insert or update on app.organization_counters
  for each row execute function app.count_activity_today();
comment on trigger organization_counters_count_activity on app.organization_counters is
  'Counts activity entries per UTC day in the statement that numbers them.';

grant execute on function app.quota(text), app.count_live_issues(), app.count_activity_today() to tenantry_api;
