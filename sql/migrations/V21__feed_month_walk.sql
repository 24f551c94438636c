-- tenantry, migration 21: feed and history pages walk the months (issue 19, item 4).
--
-- Since migration 17 the feed without filters and one issue's history are static
-- statements whose plans are kept, but a page still started an index scan in every
-- monthly partition of app.activity_logs it could touch: 28 in bench/scale growth, where a
-- feed page cost about 3.5 list pages. A page now reads its months one at a time, newest
-- first (oldest first with oldest_first, as a history is read), one statement bounded to
-- one month ([lo, hi) on created_at, as parameters: the statement reads that partition
-- alone) until the page is full; after three months it reads the rest of the range in one
-- statement, so a sparse feed (one actor, one issue) costs at most three cheap statements
-- more than before. A first page newest first starts at the current month and reads every
-- month after it too (entries are never stamped later than the partitions made ahead of
-- time); a page after a cursor starts in the month of the cursor's entry (the cursor holds
-- that entry's time). A first page oldest first does not know where the
-- organization's log starts: it reads the whole range at once, as before.
--
-- Why the months can be read one after the other and the rows still come in id order:
-- within an organization, an entry never sits in an earlier month than an entry with a
-- smaller id. app.log_activity numbers an entry and stamps its time in one statement, under
-- the organization's counters row lock, with the later of now() and the previous entry's
-- time (migration 12): times never decrease with ids, so neither do their months. An
-- entry whose transaction began before a month boundary, behind one that began after it,
-- is stamped with that entry's time and lands in the later month with it
-- (tests/api/http/activity.rs shows it over HTTP, page by page, both ways).
--
-- Entries stamped before migration 12 carried their transaction's start: one that waited
-- for the counters row lock could hold an earlier time than its predecessor, so near a
-- month boundary a newer id could sit in the older month. Those few entries (none on a
-- database made since migration 12) are given the time of the latest entry before them,
-- the rule app.log_activity has followed since then, so the order above holds for every
-- entry. Finding them is one pass over the log, under this migration's lock (about a
-- second for 600,000 entries on the project's 2-core machine). Entries written by hand
-- keep the order too: sql/seed/organizations.sql now numbers its entries in time order.
--
-- app.encode_cursor is declared stable, as its body is (convert_to and jsonb_build_array
-- are stable), as migration 20 declared app.json_time: PostgreSQL inlines a SQL function
-- only when its body is no more volatile than the function claims. Declared immutable,
-- each ran as a SQL function of its own, parsed and planned again in every transaction
-- that made a cursor: 13% of a feed page's backend time (perf). Lists with a next page
-- gain alike.
--
-- The cursors are unchanged: existing ones keep working. The function keeps its
-- signature, so it is replaced in place; its comment and grant are repeated.

create function app.utc_month(t timestamptz, months integer) returns timestamptz
  language sql immutable parallel safe
  as $$ select (pg_catalog.date_trunc('month', t at time zone 'UTC')
                + pg_catalog.make_interval(months => months)) at time zone 'UTC' $$;
comment on function app.utc_month(timestamptz, integer) is
  'The start of the UTC month months after the month of t (0: its own month, -1: the one '
  'before), as the monthly partitions of app.activity_logs are bounded. Infinite t stays infinite.';
revoke all on function app.utc_month(timestamptz, integer) from public;
grant execute on function app.utc_month(timestamptz, integer) to tenantry_api;

alter function app.encode_cursor(text, text, jsonb, bigint) stable;

-- Entries whose month runs behind an earlier entry's (see the header): the time of the
-- latest entry before them. Row-level security is forced on the table: lifted for this
-- statement only (the migration's transaction), then forced again, as in migration 12.
alter table app.activity_logs no force row level security;
with ordered as (
  select a.organization_id, a.id, a.created_at,
         pg_catalog.max(a.created_at) over (partition by a.organization_id order by a.id
                                             rows between unbounded preceding and 1 preceding) as latest_before
    from app.activity_logs a
)
update app.activity_logs a
   set created_at = o.latest_before
  from ordered o
 where a.organization_id = o.organization_id and a.id = o.id and a.created_at = o.created_at
   and app.utc_month(o.latest_before, 0) > app.utc_month(o.created_at, 0);
alter table app.activity_logs force row level security;

create or replace function api.list_activity(
  page_size integer     default 50,
  after     text        default null,
  actor_id  text        default null,
  action    text[]      default null,
  issue_id  bigint      default null,
  since     timestamptz default null,
  until     timestamptz default null,
  oldest_first boolean  default false,
  max_bytes integer     default null
) returns setof api.activity_entry
  language plpgsql stable
  as $$
declare
  org         text := app.current_org_id();
  order_by    text := case when oldest_first then 'id' else '-id' end;
  fingerprint text;
  position    app.page_position;
  query       text;
  found_entry record;
  entries     refcursor;
  -- The id bound of every statement, and the time bounds of the one at hand (see below).
  from_id     bigint;
  from_at     timestamptz;
  until_at    timestamptz;
  -- The whole range asked for: since (inclusive) to until (exclusive).
  range_from  timestamptz := coalesce(since, '-infinity');
  range_until timestamptz := coalesce(until, 'infinity');
  -- Months read one at a time before the rest of the range is read at once.
  month_steps constant integer := 3;
  steps       integer := 0;
  page_done   boolean := false;
  pending     api.activity_entry;
  rows_read   integer := 0;
  -- The most the page's JSON may weigh, and what its entries so far may weigh at most.
  byte_budget bigint := coalesce(max_bytes, 9223372036854775807);
  most_bytes  bigint := 0;
begin
  if org is null then
    return;
  end if;
  if page_size is null or page_size not between 1 and 200 then
    raise exception 'page_size must be from 1 to 200' using errcode = 'TN400', column = 'page_size';
  end if;
  if max_bytes < 1 then
    raise exception 'max_bytes must be at least 1' using errcode = 'TN400', column = 'max_bytes';
  end if;
  if actor_id is not null and not app.is_valid_id(actor_id) then
    raise exception 'actor_id must be 1-64 characters of A-Z a-z 0-9 . _ : @ -'
      using errcode = 'TN400', column = 'actor_id';
  end if;
  action := app.checked_choices(action, array['created', 'updated', 'deleted', 'restored'], 'action');
  if issue_id is not null and issue_id < 1 then
    raise exception 'issue_id must be a positive number' using errcode = 'TN400', column = 'issue_id';
  end if;
  fingerprint := app.list_fingerprint('activity', pg_catalog.jsonb_build_object(
    'actorId', actor_id, 'action', action, 'issueId', issue_id,
    'since', app.json_time(since), 'until', app.json_time(until)));
  position := app.decode_cursor(after, order_by, fingerprint);

  -- The statement for the filters that have no static one below: planned on every call,
  -- but bounded to the months at hand ($5, $6), so planned over those alone.
  query := 'select a.id, a.issue_id, a.actor_id, a.action, a.changes, a.created_at, '
        || case when max_bytes is null then '0' else 'pg_catalog.octet_length(a.changes::text)' end
        || ' as text_bytes '
        || 'from app.activity_logs a where a.organization_id = $1'
        || case when actor_id is not null then ' and a.actor_id = $2' else '' end
        || case when pg_catalog.cardinality(action) = 1 then ' and a.action = ($3)[1]'
                when action is not null then ' and a.action = any ($3)' else '' end
        || case when issue_id is not null then ' and a.issue_id = $4' else '' end
        || ' and a.created_at >= $5 and a.created_at < $6'
        || case when oldest_first then ' and a.id > $7' else ' and a.id < $7' end
        || ' order by a.id' || case when oldest_first then '' else ' desc' end || ' limit $8';

  -- The months to read first. Within an organization an entry never sits in an earlier
  -- month than an entry with a smaller id (migration 21's header): the months, read in
  -- turn, give the entries in id order. Entries before a cursor (newest first) are in
  -- its entry's month or earlier; entries after it (oldest first), in that month or later.
  -- A month that holds now() is read together with every later one (the partitions made
  -- ahead of time), so an entry stamped past the current month is never missed.
  if oldest_first then
    from_id := coalesce(position.id, 0);
    from_at := range_from;
    if position.at is not null then
      from_at := greatest(from_at, app.utc_month(position.at, 0));
    end if;
    -- Without a cursor or since, where the log starts is unknown: the whole range at once.
    until_at := case when from_at = '-infinity' or app.utc_month(from_at, 1) > pg_catalog.now()
                     then range_until else least(range_until, app.utc_month(from_at, 1)) end;
  else
    from_id := coalesce(position.id, 9223372036854775807);
    until_at := range_until;
    if position.at is not null then
      until_at := least(until_at, app.utc_month(position.at, 1));
    end if;
    -- The month of the cursor's entry, or the current one (its start, at most until).
    from_at := greatest(range_from, app.utc_month(least(coalesce(position.at, pg_catalog.now()),
                                                        until_at - interval '1 microsecond'), 0));
  end if;

  loop
    steps := steps + 1;
    -- The feed without filters (newest first, as GET /api/activity asks by default) and
    -- one issue's history (oldest first), the pages asked for most: static statements,
    -- whose plans PL/pgSQL keeps for the session (migration 17). from_at and until_at, as
    -- parameters, leave out every month outside them when the statement starts (run-time
    -- partition pruning). Plain variables for the bounds: row-level security lets only
    -- leakproof conditions into an index scan, and PostgreSQL counts COALESCE as leaky.
    if actor_id is null and action is null and issue_id is null and not oldest_first then
      open entries for
        select a.id, a.issue_id, a.actor_id, a.action, a.changes, a.created_at,
               case when max_bytes is null then 0 else pg_catalog.octet_length(a.changes::text) end as text_bytes
        from app.activity_logs a
        where a.organization_id = org and a.id < from_id
          and a.created_at >= from_at and a.created_at < until_at
        order by a.id desc
        limit list_activity.page_size + 1 - rows_read;
    elsif actor_id is null and action is null and issue_id is not null and oldest_first then
      open entries for
        select a.id, a.issue_id, a.actor_id, a.action, a.changes, a.created_at,
               case when max_bytes is null then 0 else pg_catalog.octet_length(a.changes::text) end as text_bytes
        from app.activity_logs a
        where a.organization_id = org and a.issue_id = list_activity.issue_id and a.id > from_id
          and a.created_at >= from_at and a.created_at < until_at
        order by a.id
        limit list_activity.page_size + 1 - rows_read;
    else
      open entries for execute query
        using org, actor_id, action, issue_id, from_at, until_at, from_id, page_size + 1 - rows_read;
    end if;

    -- Read one row more than the page: if it exists, the page's last row gets a cursor.
    -- With max_bytes, as in api.list_issues: every entry the page may end at gets a cursor.
    -- An entry's JSON holds at most twice the bytes of its changes as text (text_bytes)
    -- plus 1024 for the other fields (strings are escaped alike; a number may come out
    -- longer, e.g. 12345678901234567.0 as 1.2345678901234566e+16), and about half of them
    -- (the text adds one space per ':' and ','; a long number may come out shorter, which
    -- only ends a page early).
    loop
      fetch entries into found_entry;
      exit when not found;
      rows_read := rows_read + 1;
      most_bytes := most_bytes + 2 * found_entry.text_bytes + 1024;
      if rows_read > page_size or (most_bytes > byte_budget and rows_read > 1) then
        pending.next_cursor := app.encode_cursor(order_by, fingerprint,
          pg_catalog.to_jsonb(app.json_time(pending.created_at)), pending.id);
        if rows_read > page_size or (most_bytes - 1024 * rows_read) / 4 > byte_budget then
          page_done := true;
          exit;
        end if;
      end if;
      if rows_read > 1 then
        return next pending;
      end if;
      pending := row(found_entry.id, found_entry.issue_id, found_entry.actor_id, found_entry.action,
                     found_entry.changes, found_entry.created_at, null)::api.activity_entry;
    end loop;
    close entries;
    exit when page_done;

    -- The next month, or after month_steps of them the rest of the range at once.
    if oldest_first then
      exit when until_at >= range_until;
      from_at := until_at;
      until_at := case when steps >= month_steps or app.utc_month(from_at, 1) > pg_catalog.now()
                       then range_until else least(range_until, app.utc_month(from_at, 1)) end;
    else
      exit when from_at <= range_from;
      until_at := from_at;
      from_at := case when steps >= month_steps then range_from
                      else greatest(range_from, app.utc_month(from_at, -1)) end;
    end if;
  end loop;

  if rows_read > 0 then
    return next pending;
  end if;
end
$$;
comment on function api.list_activity(integer, text, text, text[], bigint, timestamptz, timestamptz, boolean, integer) is
  'One page of the activity of the organization in app.org_id, newest first, or oldest first '
  'with oldest_first (empty when no tenant is set). Filters, all combinable: actor_id, action '
  '(array: any of created, updated, deleted, restored), issue_id, since (inclusive) and until '
  '(exclusive) on created_at. page_size 1-200; after: the next_cursor of the previous page, '
  'with the same filters and order. max_bytes: see api.list_issues. Reads one month at a '
  'time (three at most, then the rest at once) until the page is full.';

grant execute on function
  api.list_activity(integer, text, text, text[], bigint, timestamptz, timestamptz, boolean, integer)
  to tenantry_api;
