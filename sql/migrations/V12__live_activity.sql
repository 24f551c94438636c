-- tenantry, migration 12: live activity, the database side of GET /api/activity/stream
-- (a resumable Server-Sent Events stream of an organization's activity).
--
-- - Times that never run backwards. An entry's id comes from the organization's counters
--   row, under its lock, so ids are in commit order; its time was the transaction's start
--   (now()), which a transaction that waited for that lock can hold from before the
--   previous entry's. app.log_activity now stamps each entry with the later of now() and
--   the previous entry's time (organization_counters.last_activity_at, written in the
--   statement that numbers it), so within an organization ids and times grow together.
--   A read of "the entries after id N" can then bound created_at from below by entry N's
--   time and touch only the monthly partitions from there on (api.activity_stream).
-- - Wake-ups that say nothing. An instance serving streams of an organization registers
--   it (api.watch_activity, refreshed while it has streams): organization_counters gets a
--   routing value and a time until which someone listens. While that holds,
--   app.log_activity sends NOTIFY tenantry_activity with the routing value as payload:
--   an opaque keyed hash of the organization id made by the service (any role that can
--   LISTEN reads every notification, so it carries no organization or entry data).
--   Nothing is sent for an organization nobody listens to: a transaction that notified
--   takes a database-wide lock at commit, which would otherwise serialise every commit.
--   PostgreSQL folds the identical notifications of one transaction into one.
-- - The registration takes the counters row lock, like every change: a change numbered
--   before it is in the registering instance's first read (the last id it returns), a
--   change numbered after it sees the registration and notifies.

alter table app.organization_counters
  add column last_activity_at timestamptz,
  add column stream_route text,
  add column listened_until timestamptz,
  add constraint organization_counters_stream_route_check check (stream_route ~ '^[A-Za-z0-9_-]{22}$');
comment on column app.organization_counters.last_activity_at is
  'The time of the last activity entry: entry times never decrease with their ids (app.log_activity).';
comment on column app.organization_counters.stream_route is
  'The routing value of the organization''s wake-ups (NOTIFY tenantry_activity payload): a keyed '
  'hash of the organization id, made by the service; opaque to anyone without its key.';
comment on column app.organization_counters.listened_until is
  'Until when an instance serves live streams of this organization (api.watch_activity): '
  'changes notify only before this time.';

-- Existing organizations start from the time of their latest entry. Row-level security is
-- forced on both tables; lifted for this statement only (the migration's transaction),
-- then forced again.
alter table app.organization_counters no force row level security;
alter table app.activity_logs no force row level security;
update app.organization_counters c
   set last_activity_at = (select pg_catalog.max(a.created_at) from app.activity_logs a
                            where a.organization_id = c.organization_id);
alter table app.organization_counters force row level security;
alter table app.activity_logs force row level security;

grant update (last_activity_at, stream_route, listened_until) on app.organization_counters to tenantry_api;

create or replace function app.log_activity(issue_id bigint, action text, changes jsonb) returns void
  language plpgsql volatile
  as $$
declare
  entry_id bigint;
  entry_at timestamptz;
  route    text;
begin
  -- Numbered and timed under the counters row lock: the time never runs behind the
  -- previous entry's, so ids and times grow together.
  insert into app.organization_counters as c (organization_id, last_activity_id, last_activity_at)
  values (app.current_org_id(), 1, pg_catalog.now())
  on conflict (organization_id) do update
    set last_activity_id = c.last_activity_id + 1,
        last_activity_at = greatest(c.last_activity_at, pg_catalog.now())
  returning c.last_activity_id, c.last_activity_at,
            case when c.listened_until > pg_catalog.now() then c.stream_route end
    into entry_id, entry_at, route;

  insert into app.activity_logs (organization_id, id, issue_id, actor_id, action, changes, created_at)
  values (app.current_org_id(), entry_id, log_activity.issue_id, app.current_user_id(),
          log_activity.action, log_activity.changes, entry_at);

  -- Only while an instance listens, and only the opaque route: see the header.
  if route is not null then
    perform pg_catalog.pg_notify('tenantry_activity', route);
  end if;
end
$$;
comment on function app.log_activity(bigint, text, jsonb) is
  'Appends an activity entry for the current organization and actor, numbered and timed from '
  'app.organization_counters (times never run behind the previous entry''s), and wakes the '
  'instances that stream the organization (NOTIFY tenantry_activity with its opaque route, '
  'only while one listens). Called by the api functions in the transaction of the change.';

create function api.watch_activity(route text, seconds integer) returns table (last_id bigint, last_at timestamptz)
  language plpgsql volatile
  as $$
declare
  org text := app.current_org_id();
begin
  if org is null then
    return;
  end if;
  if route is null or route !~ '^[A-Za-z0-9_-]{22}$' then
    raise exception 'route must be 22 characters of A-Z a-z 0-9 _ -' using errcode = 'TN400', column = 'route';
  end if;
  if seconds is null or seconds not between 1 and 3600 then
    raise exception 'seconds must be from 1 to 3600' using errcode = 'TN400', column = 'seconds';
  end if;
  -- Under the counters row lock, as every change is numbered: see the migration's header.
  insert into app.organization_counters as c (organization_id, stream_route, listened_until)
  values (org, watch_activity.route, pg_catalog.now() + pg_catalog.make_interval(secs => watch_activity.seconds))
  on conflict (organization_id) do update
    set stream_route = excluded.stream_route,
        listened_until = greatest(c.listened_until, excluded.listened_until)
  returning c.last_activity_id, c.last_activity_at into last_id, last_at;
  return next;
end
$$;
comment on function api.watch_activity(text, integer) is
  'Registers an instance streaming the organization in app.org_id for the next seconds (1-3600). '
  'Until then every change sends NOTIFY tenantry_activity with route (a keyed hash of the '
  'organization id, 22 characters of base64url). Takes the counters row lock, like a change; '
  'returns the last entry''s id and time as of then (0 and NULL before any entry).';

create type api.stream_entry as (
  id          bigint,
  issue_id    bigint,
  actor_id    text,
  action      text,
  changes     jsonb,
  created_at  timestamptz,
  through     bigint,
  through_at  timestamptz
);
comment on type api.stream_entry is
  'A row of api.activity_stream: an activity entry (through and through_at NULL), or the last '
  'row, with only id (the organization''s last entry), through and through_at (how far the log '
  'was read, and that entry''s time).';

create function api.activity_stream(
  after_id  bigint      default null,
  after_at  timestamptz default null,
  issue_id  bigint      default null,
  action    text[]      default null,
  page_size integer     default 100,
  max_bytes integer     default null
) returns setof api.stream_entry
  language plpgsql stable
  as $$
declare
  org         text := app.current_org_id();
  latest      bigint;
  latest_at   timestamptz;
  floor_at    timestamptz;
  query       text;
  found_entry record;
  returned    integer := 0;
  spent       bigint := 0;
  byte_budget bigint := coalesce(max_bytes, 9223372036854775807);
  last_id     bigint;
  last_at     timestamptz;
  full_page   boolean := false;
begin
  if org is null then
    return;
  end if;
  if after_id < 0 then
    raise exception 'after_id must be 0 or more' using errcode = 'TN400', column = 'after_id';
  end if;
  if page_size is null or page_size not between 1 and 1000 then
    raise exception 'page_size must be from 1 to 1000' using errcode = 'TN400', column = 'page_size';
  end if;
  if max_bytes < 1 then
    raise exception 'max_bytes must be at least 1' using errcode = 'TN400', column = 'max_bytes';
  end if;
  if activity_stream.issue_id is not null and activity_stream.issue_id < 1 then
    raise exception 'issue_id must be a positive number' using errcode = 'TN400', column = 'issue_id';
  end if;
  action := app.checked_choices(action, array['created', 'updated', 'deleted', 'restored'], 'action');

  -- One snapshot (a stable function): every entry up to the counters' last id is visible
  -- (ids are handed out in commit order), none after it.
  select c.last_activity_id, c.last_activity_at into latest, latest_at
    from app.organization_counters c where c.organization_id = org;
  latest := coalesce(latest, 0);
  if after_id > latest then
    raise exception 'after_id % is past the organization''s last activity entry, %', after_id, latest
      using errcode = 'TN400', column = 'after_id';
  end if;

  if after_id is not null and after_id < latest then
    -- Every later entry was made at or after entry after_id's time (migration 12); an hour
    -- earlier covers entries made before that, whose times could run behind by as long as
    -- a transaction waited for the counters row. after_at, when given, spares the look-up
    -- across every month; it is used only if it is that entry's time.
    if after_at is not null and exists (select from app.activity_logs a
                                         where a.organization_id = org and a.id = after_id
                                           and a.created_at = after_at) then
      floor_at := after_at;
    else
      select a.created_at into floor_at from app.activity_logs a
       where a.organization_id = org and a.id = after_id;
    end if;
    floor_at := floor_at - interval '1 hour';

    query := 'select a.id, a.issue_id, a.actor_id, a.action, a.changes, a.created_at, '
          || case when max_bytes is null then '0' else 'pg_catalog.octet_length(a.changes::text)' end
          || ' as text_bytes '
          || 'from app.activity_logs a where a.organization_id = $1 and a.id > $2 and a.id <= $3'
          || case when floor_at is not null then ' and a.created_at >= $4' else '' end
          || case when latest_at is not null then ' and a.created_at <= $5' else '' end
          || case when activity_stream.issue_id is not null then ' and a.issue_id = $6' else '' end
          || case when pg_catalog.cardinality(action) = 1 then ' and a.action = ($7)[1]'
                  when action is not null then ' and a.action = any ($7)' else '' end
          || ' order by a.id limit $8';
    for found_entry in execute query
      using org, after_id, latest, floor_at, latest_at, activity_stream.issue_id, action, page_size
    loop
      -- A page ends at the entry that takes it past max_bytes of changes (at least one).
      spent := spent + found_entry.text_bytes;
      if returned > 0 and spent > byte_budget then
        full_page := true;
        exit;
      end if;
      returned := returned + 1;
      last_id := found_entry.id;
      last_at := found_entry.created_at;
      return next row(found_entry.id, found_entry.issue_id, found_entry.actor_id, found_entry.action,
                      found_entry.changes, found_entry.created_at, null, null)::api.stream_entry;
    end loop;
    full_page := full_page or returned = page_size;
  end if;

  -- The position: the organization's last entry (id), and how far this read got.
  if full_page then
    return next row(latest, null, null, null, null, null, last_id, last_at)::api.stream_entry;
  else
    return next row(latest, null, null, null, null, null, latest, latest_at)::api.stream_entry;
  end if;
end
$$;
comment on function api.activity_stream(bigint, timestamptz, bigint, text[], integer, integer) is
  'The activity of the organization in app.org_id after entry after_id, oldest first. At most '
  'page_size (1-1000) entries and, with max_bytes, the entries whose changes fit in it (at least '
  'one); filters: issue_id, action (any of created, updated, deleted, restored). Then one last row '
  'with only id, the organization''s last entry, and through and through_at: how far the log was '
  'read (the last entry returned when the page is full, else the last entry) and that entry''s '
  'time. Without after_id, only that row. TN400 for an after_id past the last entry. after_at: '
  'entry after_id''s time, when known (a through_at), so the read starts in its month.';

grant execute on function
  api.watch_activity(text, integer),
  api.activity_stream(bigint, timestamptz, bigint, text[], integer, integer)
  to tenantry_api;
