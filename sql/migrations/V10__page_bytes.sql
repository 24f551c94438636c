-- tenantry, migration 10: pages bounded in bytes (PAGE_MAX_BYTES), so a client that asks
-- for a page of huge issues and never reads it pins at most that many bytes.
--
-- api.list_issues, api.list_activity and api.issue_activity take max_bytes. The service
-- writes each page's JSON and ends it at the last whole item that fits; it needs the
-- cursor of the item it ends at, so the functions put one on every row the page may end
-- at (by an upper bound of the row's JSON size), and stop reading rows once a lower
-- bound says no further row can fit. Without max_bytes they behave as before.
-- The functions are re-created (a new parameter is a new signature); their bodies are
-- migration 2's but for the loop that reads the rows.

drop function api.issue_activity(bigint, integer, text);
drop function api.list_activity(integer, text, text, text[], bigint, timestamptz, timestamptz, boolean);
drop function api.list_issues(integer, text, text, text[], text[], text, text, timestamptz, timestamptz, timestamptz, text);

create function api.list_issues(
  page_size      integer     default 50,
  sort           text        default null,
  after          text        default null,
  status         text[]      default null,
  priority       text[]      default null,
  assignee_id    text        default null,
  created_by     text        default null,
  created_after  timestamptz default null,
  created_before timestamptz default null,
  updated_after  timestamptz default null,
  search         text        default null,
  max_bytes      integer     default null
) returns setof api.issue_page_row
  language plpgsql stable
  as $$
declare
  org         text := app.current_org_id();
  sort_by     text := coalesce(list_issues.sort,
                               case when list_issues.search is null then '-createdAt' else 'relevance' end);
  descending  boolean;
  by_time     boolean;
  key_column  text;
  words       text[];
  word_ends   text[];
  fingerprint text;
  position    app.page_position;
  query       text;
  found_row   record;
  pending     api.issue_page_row;
  pending_at  timestamptz;
  pending_rank bigint;
  rows_read   integer := 0;
  -- The most the page's JSON may weigh, and what its rows so far may weigh at most.
  byte_budget bigint := coalesce(max_bytes, 9223372036854775807);
  most_bytes  bigint := 0;
begin
  if org is null then
    return;  -- no tenant, no rows
  end if;

  if page_size is null or page_size not between 1 and 200 then
    raise exception 'page_size must be from 1 to 200' using errcode = 'TN400', column = 'page_size';
  end if;
  if max_bytes < 1 then
    raise exception 'max_bytes must be at least 1' using errcode = 'TN400', column = 'max_bytes';
  end if;
  if sort_by not in ('createdAt', '-createdAt', 'updatedAt', '-updatedAt', 'priority', '-priority', 'relevance') then
    raise exception 'sort must be one of createdAt, -createdAt, updatedAt, -updatedAt, priority, -priority, relevance'
      using errcode = 'TN400', column = 'sort';
  end if;
  status := app.checked_choices(status, array['OPEN', 'IN_PROGRESS', 'DONE'], 'status');
  priority := app.checked_choices(priority, array['LOW', 'MEDIUM', 'HIGH'], 'priority');
  if assignee_id is not null and assignee_id <> 'none' and not app.is_valid_id(assignee_id) then
    raise exception 'assignee_id must be none or 1-64 characters of A-Z a-z 0-9 . _ : @ -'
      using errcode = 'TN400', column = 'assignee_id';
  end if;
  if created_by is not null and not app.is_valid_id(created_by) then
    raise exception 'created_by must be 1-64 characters of A-Z a-z 0-9 . _ : @ -'
      using errcode = 'TN400', column = 'created_by';
  end if;
  if search is not null then
    if pg_catalog.char_length(search) > 200 then
      raise exception 'search must be at most 200 characters' using errcode = 'TN400', column = 'search';
    end if;
    words := array(select t.lexeme from pg_catalog.unnest(pg_catalog.to_tsvector('simple', search)) t);
    if pg_catalog.cardinality(words) = 0 then
      raise exception 'search must contain a word (letters or digits)' using errcode = 'TN400', column = 'search';
    end if;
    if pg_catalog.cardinality(words) > 10 then
      raise exception 'search may hold at most 10 words' using errcode = 'TN400', column = 'search';
    end if;
    -- Every word is a prefix: 'logi' finds login. In the C collation the words starting
    -- with w are exactly those in [w, w || U+10FFFF).
    word_ends := array(select w || pg_catalog.chr(1114111) from pg_catalog.unnest(words) w);
  elsif sort_by = 'relevance' then
    raise exception 'sort relevance needs search' using errcode = 'TN400', column = 'sort';
  end if;

  descending := sort_by like '-%' or sort_by = 'relevance';
  by_time := sort_by like '%At';
  key_column := case pg_catalog.ltrim(sort_by, '-')
                  when 'createdAt' then 'i.created_at'
                  when 'updatedAt' then 'i.updated_at'
                  when 'priority' then 'i.priority_rank'
                  else 'm.score'
                end;
  fingerprint := app.list_fingerprint('issues', pg_catalog.jsonb_build_object(
    'status', status, 'priority', priority, 'assigneeId', assignee_id, 'createdBy', created_by,
    'createdAfter', app.json_time(created_after), 'createdBefore', app.json_time(created_before),
    'updatedAfter', app.json_time(updated_after), 'search', words));
  position := app.decode_cursor(after, sort_by, fingerprint);
  if position.id is not null and (position.at is null) = by_time then
    raise exception 'cursor is not one this API issued' using errcode = 'TN400', column = 'after';
  end if;

  -- One statement, planned for exactly the filters given (values are bound, never
  -- spliced): $1 org, $2 status, $3 priority, $4 assignee, $5 creator, $6-$8 times,
  -- $9-$11 cursor, $12-$13 search words, $14 rows to read.
  query := 'select i.id, i.title, i.description, i.status, i.priority, i.assignee_id, '
        || 'i.organization_id, i.created_by, i.created_at, i.updated_at, i.version, '
        || 'pg_catalog.octet_length(i.title) + coalesce(pg_catalog.octet_length(i.description), 0) as text_bytes, '
        || case when by_time then key_column || ' as sort_at, null::bigint as sort_rank'
                else 'null::timestamptz as sort_at, ' || key_column || '::bigint as sort_rank' end;
  if words is null then
    query := query || ' from app.issues i where i.organization_id = $1';
  else
    -- Per word: the issues holding a word with that prefix, with its best weight; an
    -- issue matches when it holds every word, and scores the sum of their weights. By
    -- relevance, the page is cut from the matches before any issue is read (unless a
    -- filter on the issues must see them all first).
    query := query || '
      from (select w.issue_id, sum(w.best)::bigint as score
              from (select q.n, t.issue_id, max(t.weight) as best
                      from rows from (pg_catalog.unnest($12), pg_catalog.unnest($13)) with ordinality as q (low, high, n)
                      join app.issue_terms t
                        on t.organization_id = $1 and t.term >= q.low and t.term < q.high
                     group by q.n, t.issue_id) w
             group by w.issue_id
            having count(*) = pg_catalog.cardinality($12)'
      || case when sort_by = 'relevance' and position.id is not null
              then ' and (sum(w.best)::bigint, w.issue_id) < ($10, $11)' else '' end
      || case when sort_by = 'relevance' and status is null and priority is null and assignee_id is null
                   and created_by is null and created_after is null and created_before is null
                   and updated_after is null
              then ' order by score desc, w.issue_id desc limit $14' else '' end
      || ') m
      join app.issues i on i.organization_id = $1 and i.id = m.issue_id
      where true';
  end if;
  -- A single value is an equality, which keeps the index order of issues_status_idx.
  query := query
    || case when pg_catalog.cardinality(status) = 1 then ' and i.status = ($2)[1]'
            when status is not null then ' and i.status = any ($2)' else '' end
    || case when pg_catalog.cardinality(priority) = 1 then ' and i.priority = ($3)[1]'
            when priority is not null then ' and i.priority = any ($3)' else '' end
    || case when assignee_id = 'none' then ' and i.assignee_id is null'
            when assignee_id is not null then ' and i.assignee_id = $4' else '' end
    || case when created_by is not null then ' and i.created_by = $5' else '' end
    || case when created_after is not null then ' and i.created_at > $6' else '' end
    || case when created_before is not null then ' and i.created_at < $7' else '' end
    || case when updated_after is not null then ' and i.updated_at > $8' else '' end
    || case when position.id is null then ''
            else ' and (' || key_column || ', i.id) ' || case when descending then '<' else '>' end
                 || case when by_time then ' ($9, $11)'
                         when key_column = 'i.priority_rank' then ' ($10::smallint, $11)'
                         else ' ($10, $11)' end
       end
    || ' order by ' || key_column || case when descending then ' desc' else '' end
    || ', i.id' || case when descending then ' desc' else '' end
    || ' limit $14';

  -- Read one row more than the page: if it exists, the page's last row gets a cursor.
  -- With max_bytes, the client (the service) ends the page at the last whole row whose
  -- JSON fits, so every row it may end at gets a cursor too. A row's JSON holds its title
  -- and description bytes (text_bytes) at least, and at most 6 times them (each byte
  -- escaped as \u00XX) plus 1024 for the other fields; no row is read past the one that
  -- cannot fit by the least count. The first row is always sent, whatever its size.
  for found_row in execute query
    using org, status, priority, assignee_id, created_by, created_after, created_before,
          updated_after, position.at, position.rank, position.id, words, word_ends, page_size + 1
  loop
    rows_read := rows_read + 1;
    most_bytes := most_bytes + 6 * found_row.text_bytes + 1024;
    if rows_read > page_size or (most_bytes > byte_budget and rows_read > 1) then
      pending.next_cursor := app.encode_cursor(sort_by, fingerprint,
        case when by_time then pg_catalog.to_jsonb(app.json_time(pending_at))
             else pg_catalog.to_jsonb(pending_rank) end,
        pending.id);
      if rows_read > page_size or (most_bytes - 1024 * rows_read) / 6 > byte_budget then
        exit;
      end if;
    end if;
    if rows_read > 1 then
      return next pending;
    end if;
    pending := row(found_row.id, found_row.title, found_row.description, found_row.status,
                   found_row.priority, found_row.assignee_id, found_row.organization_id,
                   found_row.created_by, found_row.created_at, found_row.updated_at,
                   found_row.version, null)::api.issue_page_row;
    pending_at := found_row.sort_at;
    pending_rank := found_row.sort_rank;
  end loop;
  if rows_read > 0 then
    return next pending;
  end if;
end
$$;
comment on function api.list_issues(integer, text, text, text[], text[], text, text, timestamptz, timestamptz, timestamptz, text, integer) is
  'One page of the issues of the organization in app.org_id (empty when no tenant is set). '
  'page_size 1-200 rows. sort: createdAt, updatedAt or priority, "-" first for descending '
  '(ties broken by number in the same direction); default -createdAt, or relevance when '
  'searching (score, then newest). Filters, all combinable: status and priority (arrays: any '
  'of), assignee_id (''none'': unassigned), created_by, created_after, created_before, '
  'updated_after (exclusive bounds), search (every word a prefix; at most 10 words, 200 '
  'characters). after: the next_cursor of the previous page, valid only with the same sort '
  'and filters. max_bytes (for a client that caps its bodies): every row the page may have '
  'to end at to keep its JSON within max_bytes gets the cursor of the page after it, and '
  'rows are read no further than the first that cannot fit; the first row is always '
  'returned. Invalid input raises TN400 naming the parameter in COLUMN.';

create function api.list_activity(
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

  -- Read one row more than the page: if it exists, the page's last row gets a cursor.
  -- With max_bytes, as in api.list_issues: every entry the page may end at gets a cursor.
  -- An entry's JSON holds at most twice the bytes of its changes as text (text_bytes)
  -- plus 1024 for the other fields (strings are escaped alike; a number may come out
  -- longer, e.g. 12345678901234567.0 as 1.2345678901234566e+16), and about half of them
  -- (the text adds one space per ':' and ','; a long number may come out shorter, which
  -- only ends a page early).
  for found_entry in execute query
    using org, actor_id, action, issue_id, since, until, position.id, page_size + 1
  loop
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

create function api.issue_activity(
  issue_id  bigint,
  page_size integer default 50,
  after     text    default null,
  max_bytes integer default null
) returns setof api.activity_entry
  language plpgsql stable
  as $$
begin
  return query
    select * from api.list_activity(page_size => issue_activity.page_size, after => issue_activity.after,
                                    issue_id => issue_activity.issue_id, oldest_first => true,
                                    max_bytes => issue_activity.max_bytes);
  if not found and after is null then
    -- Every issue has a created entry: no entry at all means no such issue, ever.
    raise exception 'issue % not found', issue_id using errcode = 'TN404';
  end if;
end
$$;
comment on function api.issue_activity(bigint, integer, text, integer) is
  'One page of the history of one issue of the organization in app.org_id, oldest first; '
  'also of a deleted issue (its deleted entry holds the final issue). TN404 when the '
  'organization never had the issue. page_size 1-200; after: the next_cursor of the '
  'previous page of the same issue; max_bytes: see api.list_issues.';

grant execute on function
  api.list_issues(integer, text, text, text[], text[], text, text, timestamptz, timestamptz, timestamptz, text, integer),
  api.list_activity(integer, text, text, text[], bigint, timestamptz, timestamptz, boolean, integer),
  api.issue_activity(bigint, integer, text, integer)
  to tenantry_api;
