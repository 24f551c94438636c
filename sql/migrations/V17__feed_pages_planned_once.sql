-- tenantry, migration 17: feed and history pages planned once (issue 19, item 4, in part).
--
-- api.list_activity ran its page through EXECUTE: parsed, rewritten and planned on every
-- call, over every monthly partition of app.activity_logs (its cost growing with their
-- number), which made a feed page several times a list page. The feed
-- without filters (newest first, as GET /api/activity asks by default) and one issue's
-- history (oldest first, api.issue_activity) are now static statements whose plans
-- PL/pgSQL keeps for the session; since and until stay run-time bounds that leave out the
-- months outside them when the statement starts. Every other filter combination is the
-- dynamic statement, as before. The rows, the cursors and where a page ends are
-- unchanged (compared page by page with the previous version).
--
-- What remains: a page still starts an index scan in every month it may touch (all of
-- them without since/until). docs/performance.md has the figures.
--
-- The function keeps its signature, so it is replaced in place; its comment and grant
-- are repeated.

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
  -- The bounds of the planned-once statements (see below).
  from_id     bigint;
  from_at     timestamptz := coalesce(since, '-infinity');
  until_at    timestamptz := coalesce(until, 'infinity');
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

  query := 'select a.id, a.issue_id, a.actor_id, a.action, a.changes, a.created_at, '
        || case when max_bytes is null then '0' else 'pg_catalog.octet_length(a.changes::text)' end
        || ' as text_bytes '
        || 'from app.activity_logs a where a.organization_id = $1'
        || case when actor_id is not null then ' and a.actor_id = $2' else '' end
        || case when pg_catalog.cardinality(action) = 1 then ' and a.action = ($3)[1]'
                when action is not null then ' and a.action = any ($3)' else '' end
        || case when issue_id is not null then ' and a.issue_id = $4' else '' end
        || case when since is not null then ' and a.created_at >= $5' else '' end
        || case when until is not null then ' and a.created_at < $6' else '' end
        || case when position.id is null then ''
                when oldest_first then ' and a.id > $7' else ' and a.id < $7' end
        || ' order by a.id' || case when oldest_first then '' else ' desc' end || ' limit $8';

  -- The feed without filters (newest first) and one issue's history (oldest first), the
  -- pages asked for most: static statements, whose plans PL/pgSQL keeps for the session
  -- (a generic plan after the first few calls). The dynamic statement above is planned
  -- on every call, over every monthly partition of the log; these
  -- are not, and since and until, as parameters, still leave out the months outside
  -- them when the statement starts (run-time partition pruning). Plain variables for the
  -- bounds: row-level security lets only leakproof conditions into an index scan, and
  -- PostgreSQL counts COALESCE as leaky. Every other feed is the dynamic statement.
  if actor_id is null and action is null and issue_id is null and not oldest_first then
    from_id := coalesce(position.id, 9223372036854775807);
    open entries for
      select a.id, a.issue_id, a.actor_id, a.action, a.changes, a.created_at,
             case when max_bytes is null then 0 else pg_catalog.octet_length(a.changes::text) end as text_bytes
      from app.activity_logs a
      where a.organization_id = org and a.id < from_id
        and a.created_at >= from_at and a.created_at < until_at
      order by a.id desc
      limit list_activity.page_size + 1;
  elsif actor_id is null and action is null and issue_id is not null and oldest_first then
    from_id := coalesce(position.id, 0);
    open entries for
      select a.id, a.issue_id, a.actor_id, a.action, a.changes, a.created_at,
             case when max_bytes is null then 0 else pg_catalog.octet_length(a.changes::text) end as text_bytes
      from app.activity_logs a
      where a.organization_id = org and a.issue_id = list_activity.issue_id and a.id > from_id
        and a.created_at >= from_at and a.created_at < until_at
      order by a.id
      limit list_activity.page_size + 1;
  else
    open entries for execute query
      using org, actor_id, action, issue_id, since, until, position.id, page_size + 1;
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
  'with the same filters and order. max_bytes: see api.list_issues.';

grant execute on function
  api.list_activity(integer, text, text, text[], bigint, timestamptz, timestamptz, boolean, integer)
  to tenantry_api;
