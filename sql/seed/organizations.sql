-- Synthetic organizations for the list benchmark and the query-plan tests. Run as the
-- schema owner (a superuser: row-level security does not apply) after filling
--   create temporary table seed_organizations (organization_id text, issues integer);
-- Every organization gets that many issues, numbered from 1 (deterministic pseudo-random
-- titles, descriptions, statuses, priorities, assignees, creators and times), a created and
-- an updated activity entry per issue (numbered in time order), and about 2% of its issues
-- deleted (with their deleted entries). Words come from a fixed vocabulary, so searches have realistic hits.

create temporary table seed_vocabulary as
select pg_catalog.string_to_array(
  'login logout logging page error timeout crash slow button form field email password '
  'reset token session cookie cache database query index migration deploy release build '
  'test flaky pipeline docker kubernetes memory leak cpu disk network latency request '
  'response header payload json parser encoding unicode emoji upload download image pdf '
  'invoice billing payment refund subscription plan trial customer account profile avatar '
  'settings notification webhook retry queue worker cron schedule report export import csv '
  'dashboard chart filter sort search pagination cursor api endpoint client server proxy '
  'certificate tls dns domain redirect link typo label translation locale timezone date '
  'calendar reminder comment mention thread reply attachment permission role admin member '
  'invite onboarding signup verification captcha spam abuse audit history backup restore '
  'archive delete duplicate merge conflict sync offline mobile android ios desktop browser '
  'safari firefox chrome layout css style theme dark accessibility keyboard shortcut modal '
  'tooltip dropdown table column row scroll performance regression crashloop alert monitor '
  'metric log trace incident outage hotfix rollback feature flag experiment analytics event '
  'tracking consent privacy gdpr security vulnerability patch upgrade dependency license',
  ' ') as words;

create temporary table seeded_issues as
select o.organization_id, g.n as id,
       pg_catalog.hashtextextended(o.organization_id || ':' || g.n, 42) as h,
       pg_catalog.timestamptz '2025-01-01 00:00:00+00' + g.n * interval '7 minutes'
         + (pg_catalog.hashtext(o.organization_id) % 1000) * interval '1 second' as created_at
from seed_organizations o, pg_catalog.generate_series(1, o.issues) g (n);

-- The activity log is partitioned by month (migration 6): months for the back-dated entries.
select pg_catalog.count(*) from app.create_activity_partitions(0, (select pg_catalog.min(created_at) from seeded_issues));

insert into app.issues (organization_id, id, title, description, status, priority, assignee_id,
                        created_by, created_at, updated_at)
select s.organization_id, s.id,
       (select pg_catalog.string_agg(v.words[1 + pg_catalog.abs(pg_catalog.hashtextextended(s.h::text || 't' || k, 0))
                                        % pg_catalog.cardinality(v.words)], ' ')
          from seed_vocabulary v, pg_catalog.generate_series(1, 4) k),
       (select pg_catalog.string_agg(v.words[1 + pg_catalog.abs(pg_catalog.hashtextextended(s.h::text || 'd' || k, 0))
                                        % pg_catalog.cardinality(v.words)], ' ')
          from seed_vocabulary v, pg_catalog.generate_series(1, 12) k),
       (array['OPEN', 'OPEN', 'IN_PROGRESS', 'DONE', 'DONE'])[1 + pg_catalog.abs(s.h) % 5],
       (array['LOW', 'MEDIUM', 'HIGH'])[1 + pg_catalog.abs(s.h / 7) % 3],
       case when s.h % 4 = 0 then null else 'user-' || pg_catalog.abs(s.h / 11) % 20 end,
       'user-' || pg_catalog.abs(s.h / 13) % 20,
       s.created_at,
       s.created_at + pg_catalog.abs(s.h / 17) % 2000000 * interval '1 second'
from seeded_issues s;

-- Numbered in time order, as app.log_activity numbers them: within an organization an
-- entry's time never runs behind an earlier entry's (feed pages read a month at a time
-- on it, migration 21).
insert into app.activity_logs (organization_id, id, issue_id, actor_id, action, changes, created_at)
select e.organization_id,
       pg_catalog.row_number() over (partition by e.organization_id order by e.created_at, e.issue_id, e.action),
       e.issue_id, e.actor_id, e.action, e.changes, e.created_at
from (select i.organization_id, i.id as issue_id, i.created_by as actor_id, 'created' as action,
             app.issue_json(i) || pg_catalog.jsonb_build_object('status', 'OPEN', 'updatedAt', app.json_time(i.created_at)) as changes,
             i.created_at
      from app.issues i join seed_organizations o using (organization_id)
      union all
      select i.organization_id, i.id, 'admin', 'updated',
             pg_catalog.jsonb_build_object('status', pg_catalog.jsonb_build_object('from', 'OPEN', 'to', i.status)),
             i.updated_at
      from app.issues i join seed_organizations o using (organization_id)) e;

-- About 2% deleted, with the entry a delete writes.
create temporary table seed_deleted as
with gone as (
  delete from app.issues i
  using seed_organizations o
  where i.organization_id = o.organization_id
    and pg_catalog.abs(pg_catalog.hashtextextended(i.organization_id || ':' || i.id, 7)) % 50 = 0
  returning i.organization_id, i.id, app.issue_json(i) as snapshot
)
select * from gone;

insert into app.activity_logs (organization_id, id, issue_id, actor_id, action, changes, created_at)
select d.organization_id, 2 * o.issues + pg_catalog.row_number() over (partition by d.organization_id order by d.id),
       d.id, 'admin', 'deleted', d.snapshot, pg_catalog.now()
from seed_deleted d join seed_organizations o using (organization_id);

insert into app.organization_counters (organization_id, last_issue_id, last_activity_id)
select o.organization_id, o.issues,
       2 * o.issues + (select pg_catalog.count(*) from seed_deleted d where d.organization_id = o.organization_id)
from seed_organizations o;

drop table seed_vocabulary, seeded_issues, seed_deleted;
