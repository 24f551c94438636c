-- tenantry, migration 23: times the feed takes must be times the API could give.
--
-- api.list_activity computes month bounds from its time bounds (migration 21). At the
-- edges of PostgreSQL's range that arithmetic overflows: since => '294276-12-31' with
-- oldest_first, until => the first instant PostgreSQL can hold, or a cursor re-encoded
-- with such a time (cursors are opaque, not secret) raised "timestamp out of range"
-- (22008) without saying which parameter, where the HTTP API refuses such values before
-- the call (src/domain/rules.rs, timestamp_in_range). The rule is now one SQL function,
-- app.is_api_time, held by api.list_activity for since and until (TN400 naming the
-- parameter) and by app.decode_cursor for a cursor's time (TN400, column after, as for
-- any cursor the API did not issue). The other functions that take times only compare
-- with them, so any timestamptz stays a meaningful bound for them.

create function app.is_api_time(t timestamptz)
  returns boolean
  language sql immutable parallel safe
  as $$ select t is null or t between '0001-01-01 00:00:00+00' and '9999-12-31 23:59:59.999999+00' $$;
comment on function app.is_api_time(timestamptz) is
  'True for a time the API takes and gives: from 0001-01-01T00:00:00Z to '
  '9999-12-31T23:59:59.999999Z (infinities excluded), or NULL (no time). Month arithmetic on '
  'such a time never leaves PostgreSQL''s range.';
revoke all on function app.is_api_time(timestamptz) from public;
grant execute on function app.is_api_time(timestamptz) to tenantry_api;

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
  if not app.is_api_time(since) then
    raise exception 'since must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z'
      using errcode = 'TN400', column = 'since';
  end if;
  if not app.is_api_time(until) then
    raise exception 'until must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z'
      using errcode = 'TN400', column = 'until';
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
  '(exclusive) on created_at, each from 0001-01-01 to 9999-12-31 UTC (app.is_api_time; TN400 '
  'otherwise). page_size 1-200; after: the next_cursor of the previous page, '
  'with the same filters and order. max_bytes: see api.list_issues. Reads one month at a '
  'time (three at most, then the rest at once) until the page is full.';


create or replace function app.decode_cursor(cursor text, sort text, fingerprint text)
  returns app.page_position
  language plpgsql stable
  as $$
declare
  payload  jsonb;
  position app.page_position;
begin
  if cursor is null then
    return null;
  end if;
  if pg_catalog.length(cursor) > 1024 or cursor !~ '^[A-Za-z0-9_-]+$' then
    raise exception 'cursor is not one this API issued' using errcode = 'TN400', column = 'after';
  end if;
  begin
    payload := pg_catalog.convert_from(pg_catalog.decode(
      pg_catalog.translate(cursor, '-_', '+/') || pg_catalog.repeat('=', (4 - pg_catalog.length(cursor) % 4) % 4),
      'base64'), 'UTF8')::jsonb;
    if pg_catalog.jsonb_array_length(payload) <> 5 or payload->>0 is distinct from '1' then
      raise exception using errcode = 'invalid_parameter_value';
    end if;
    position.id := (payload->>4)::bigint;
    case pg_catalog.jsonb_typeof(payload->3)
      when 'string' then
        position.at := (payload->>3)::timestamptz;
        -- The API issues times it stored; one at the edge of PostgreSQL's range would
        -- overflow the month bounds a feed page computes from it (migration 21).
        if not app.is_api_time(position.at) then
          raise exception using errcode = 'invalid_parameter_value';
        end if;
      when 'number' then position.rank := (payload->>3)::bigint;
      else raise exception using errcode = 'invalid_parameter_value';
    end case;
  exception when data_exception then
    raise exception 'cursor is not one this API issued' using errcode = 'TN400', column = 'after';
  end;
  if payload->>1 is distinct from sort then
    raise exception 'cursor was issued for sort %, not %: start again without it', payload->>1, sort
      using errcode = 'TN400', column = 'after';
  end if;
  if payload->>2 is distinct from fingerprint or position.id is null then
    raise exception 'cursor was issued for other filters: start again without it'
      using errcode = 'TN400', column = 'after';
  end if;
  return position;
end
$$;
comment on function app.decode_cursor(text, text, text) is
  'Reads a cursor made by app.encode_cursor for this sort and these filters (fingerprint); '
  'raises TN400 (column after) for anything else.';
