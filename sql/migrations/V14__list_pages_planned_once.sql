-- tenantry, migration 14: the default list page without planning on every call (issue 19).
--
-- api.list_issues builds its statement for the filters, sort and search it is given and
-- runs it with EXECUTE, which parses, rewrites (row-level security) and plans it on every
-- call. For a page of 100 issues that planning cost several times what running the
-- statement did, and was most of what the function cost beyond the plain indexed SELECT
-- of the same rows (figures: docs/performance.md, "Where the SQL spends its time").
--
-- - The default page (newest first, no filter, no search), what most clients ask for, is
--   now one static statement: PL/pgSQL keeps its plan for the session (a generic plan
--   after the first few calls). It serves the first page and the pages after a cursor
--   alike, with the cursor position as an index condition. Every other list is the
--   dynamic statement, as before.
-- - Both compute the cursors and the max_bytes bound in the statement (window functions
--   over the rows read) instead of a PL/pgSQL loop over them; the rows, the cursors and
--   where a page ends are unchanged (compared page by page with the previous version).
--   Rows past the first that cannot fit are now read (up to page_size + 1) but not
--   returned; their text is never fetched (octet_length reads the stored size).
--
-- The function keeps its signature, so it is replaced in place; its comment and grant
-- are repeated.

create or replace function api.list_issues(
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
  -- Where the default page starts (see below).
  from_at     timestamptz;
  from_id     bigint;
  -- The most the page's JSON may weigh.
  byte_budget bigint := coalesce(max_bytes, 9223372036854775807);
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

  -- The default page (newest first, no filter, no search), by far the most asked for: a
  -- static statement, whose plan PL/pgSQL keeps for the session (a generic plan after
  -- the first few calls), where the dynamic statement below is planned on every call
  -- (which cost more than running it: docs/performance.md). One statement for
  -- the first page and the next ones: without a cursor, the row comparison is against a
  -- position past every issue, so it stays the index condition that starts a deep page
  -- at its cursor. The rows, the cursors and max_bytes are as for the dynamic statement.
  if words is null and sort_by = '-createdAt' and status is null and priority is null
     and assignee_id is null and created_by is null and created_after is null
     and created_before is null and updated_after is null then
    -- Plain variables, not coalesce(...) in the statement: row-level security lets only
    -- leakproof conditions into an index scan, and PostgreSQL counts COALESCE as leaky.
    from_at := coalesce(position.at, 'infinity');
    from_id := coalesce(position.id, 9223372036854775807);
    return query
      select r.id, r.title, r.description, r.status, r.priority, r.assignee_id,
             r.organization_id, r.created_by, r.created_at, r.updated_at, r.version,
             case when r.next_bytes is not null
                       and (r.k >= list_issues.page_size
                            or 6 * (r.text_sum + r.next_bytes) + 1024 * (r.k + 1) > byte_budget)
                  then app.encode_cursor(sort_by, fingerprint, pg_catalog.to_jsonb(app.json_time(r.created_at)), r.id)
             end
      from (select p.*, pg_catalog.row_number() over w as k, pg_catalog.sum(p.text_bytes) over w as text_sum,
                   pg_catalog.lead(p.text_bytes) over w as next_bytes
              from (select i.id, i.title, i.description, i.status, i.priority, i.assignee_id,
                           i.organization_id, i.created_by, i.created_at, i.updated_at, i.version,
                           pg_catalog.octet_length(i.title) + coalesce(pg_catalog.octet_length(i.description), 0) as text_bytes
                      from app.issues i
                     where i.organization_id = org
                       and (i.created_at, i.id) < (from_at, from_id)
                     order by i.created_at desc, i.id desc
                     limit list_issues.page_size + 1) p
            window w as (order by p.created_at desc, p.id desc rows between unbounded preceding and current row)) r
      where r.k <= list_issues.page_size and (r.k = 1 or r.text_sum <= byte_budget)
      limit list_issues.page_size;
    return;
  end if;

  -- One statement, planned for exactly the filters given (values are bound, never
  -- spliced): $1 org, $2 status, $3 priority, $4 assignee, $5 creator, $6-$8 times,
  -- $9-$11 cursor, $12-$13 search words, $14 rows to read.
  -- octet_length reads a stored value's size without decompressing or fetching it.
  query := 'select i.id, i.title, i.description, i.status, i.priority, i.assignee_id, '
        || 'i.organization_id, i.created_by, i.created_at, i.updated_at, i.version, '
        || 'pg_catalog.octet_length(i.title) + coalesce(pg_catalog.octet_length(i.description), 0) as text_bytes, '
        || key_column || ' as sort_key';
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
  -- escaped as \u00XX) plus 1024 for the other fields; no row is returned past the one
  -- that cannot fit by the least count (rows after it are read, not returned: their text
  -- is never fetched). The first row is always sent, whatever its size.
  -- All of it in the statement (window functions over the rows read, in their order)
  -- rather than row by row in PL/pgSQL: row k is
  -- returned when k <= page_size and, past the first, its running text_bytes fit;
  -- it gets a cursor when a row k + 1 was read and k + 1 > page_size or the upper
  -- bound of the rows up to k + 1 passes max_bytes. $15 page_size, $16 the byte budget,
  -- $17 the sort, $18 the fingerprint.
  query := 'select r.id, r.title, r.description, r.status, r.priority, r.assignee_id, '
        || 'r.organization_id, r.created_by, r.created_at, r.updated_at, r.version, '
        || 'case when r.next_bytes is not null and (r.k >= $15 '
        || 'or 6 * (r.text_sum + r.next_bytes) + 1024 * (r.k + 1) > $16) '
        || 'then app.encode_cursor($17, $18, '
        || case when by_time then 'pg_catalog.to_jsonb(app.json_time(r.sort_key))'
                else 'pg_catalog.to_jsonb(r.sort_key)' end
        || ', r.id) end '
        || 'from (select p.*, pg_catalog.row_number() over w as k, pg_catalog.sum(p.text_bytes) over w as text_sum, '
        || 'pg_catalog.lead(p.text_bytes) over w as next_bytes from (' || query || ') p '
        || 'window w as (order by p.sort_key' || case when descending then ' desc' else '' end
        || ', p.id' || case when descending then ' desc' else '' end
        || ' rows between unbounded preceding and current row)) r '
        || 'where r.k <= $15 and (r.k = 1 or r.text_sum <= $16) limit $15';
  return query execute query
    using org, status, priority, assignee_id, created_by, created_after, created_before,
          updated_after, position.at, position.rank, position.id, words, word_ends, page_size + 1,
          page_size, byte_budget, sort_by, fingerprint;
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
  'no row is returned past the first that cannot fit; the first row is always '
  'returned. Invalid input raises TN400 naming the parameter in COLUMN.';


grant execute on function
  api.list_issues(integer, text, text, text[], text[], text, text, timestamptz, timestamptz, timestamptz, text, integer)
  to tenantry_api;
