-- tenantry, migration 2: issue lists and the activity log that stay fast at any size.
--
-- - api.list_issues: keyset (cursor) pages, filters, sorts and word-prefix search;
--   api.list_activity (the organization's feed) and api.issue_activity (one issue's
--   history); api.restore_issue (brings a deleted issue back from its deleted entry).
-- - Every page is one index range scan bounded by the page size, under row-level
--   security: the indexes below all lead with organization_id, and the queries use only
--   leakproof operators on indexed columns (PostgreSQL may apply a condition inside an
--   index scan, before the row-level security check, only when its operator is leakproof).
-- - Search does not use a GIN index on a tsvector: text search's @@ is not leakproof, so
--   under row-level security it can never be an index condition and a GIN index would
--   sit unused (every search would read all of the organization's issues). Instead the
--   words of each issue (PostgreSQL's text search parser, configuration 'simple') are
--   kept in app.issue_terms, a btree posting list led by organization_id, where a word
--   prefix is a plain range of leakproof text comparisons.
-- - Cursors are opaque to clients: base64url of [version, sort, filter fingerprint,
--   sort key, id]. A cursor is a position, not a row: deleting the row it came from
--   changes nothing, and a cursor made for another sort or other filters is refused.
--
-- New reserved SQLSTATE: TN409 conflict with the current state (restoring an issue that
-- is not deleted).

------------------------------------------------------------------------------------------
-- Issues: a sortable priority and one index per sort order and selective filter.
------------------------------------------------------------------------------------------
alter table app.issues add column priority_rank smallint generated always as (
  case priority when 'LOW' then 1 when 'MEDIUM' then 2 when 'HIGH' then 3 end) stored;
comment on column app.issues.priority_rank is
  'priority as a number (LOW 1, MEDIUM 2, HIGH 3), kept by PostgreSQL, so the priority sort '
  'is an index range scan (the text values do not sort in priority order).';

create index issues_created_idx on app.issues (organization_id, created_at, id);
comment on index app.issues_created_idx is
  'Pages sorted by createdAt (the default, newest first), and createdAfter/createdBefore ranges.';
create index issues_updated_idx on app.issues (organization_id, updated_at, id);
comment on index app.issues_updated_idx is 'Pages sorted by updatedAt, and updatedAfter ranges.';
create index issues_priority_idx on app.issues (organization_id, priority_rank, id);
comment on index app.issues_priority_idx is 'Pages sorted by priority (then by number).';
create index issues_status_idx on app.issues (organization_id, status, created_at, id);
comment on index app.issues_status_idx is 'Pages of one status, newest first (e.g. the open issues).';
create index issues_assignee_idx on app.issues (organization_id, assignee_id, created_at, id);
comment on index app.issues_assignee_idx is 'Pages of one assignee (or the unassigned: NULL), newest first.';
create index issues_created_by_idx on app.issues (organization_id, created_by, created_at, id);
comment on index app.issues_created_by_idx is 'Pages of the issues one user created, newest first.';

------------------------------------------------------------------------------------------
-- Search: the words of every issue, kept by triggers in the transaction of the change.
------------------------------------------------------------------------------------------
create function app.search_terms(title text, description text)
  returns table (term text, weight integer)
  language sql immutable parallel safe
  as $$
    select coalesce(t.lexeme, d.lexeme),
           10 * least(coalesce(pg_catalog.cardinality(t.positions), 0), 3)
         + 4 * least(coalesce(pg_catalog.cardinality(d.positions), 0), 3)
    from pg_catalog.unnest(pg_catalog.to_tsvector('simple', coalesce(title, ''))) as t (lexeme, positions, weights)
    full join pg_catalog.unnest(pg_catalog.to_tsvector('simple', coalesce(description, ''))) as d (lexeme, positions, weights)
      on d.lexeme = t.lexeme
  $$;
comment on function app.search_terms(text, text) is
  'The distinct words of an issue as PostgreSQL''s text search parser finds them (configuration '
  'simple: lower-cased, no stemming, no stop words, any language), each with a weight: 10 per '
  'occurrence in the title plus 4 per occurrence in the description, counting at most 3 of each.';

create table app.issue_terms (
  organization_id text    not null,
  issue_id        bigint  not null,
  term            text    collate "C" not null,
  weight          integer not null,
  constraint issue_terms_pkey primary key (organization_id, issue_id, term),
  constraint issue_terms_organization_id_check check (app.is_valid_id(organization_id)),
  constraint issue_terms_weight_check check (weight > 0)
);
-- No foreign key to app.issues: the triggers below keep the two in step, and a foreign
-- key would cost a lookup of the issue for every word written.
create index issue_terms_search_idx on app.issue_terms (organization_id, term, issue_id) include (weight);
comment on table app.issue_terms is
  'The search index of issues: one row per distinct word of an issue''s title and description '
  '(from app.search_terms), written only by the triggers on app.issues, in the same '
  'transaction. A word prefix is a range of term, so a search is a btree range scan that '
  'row-level security allows (a GIN index on a tsvector cannot be used under row-level '
  'security). The API role may read it, never write it.';
comment on column app.issue_terms.organization_id is 'The organization (tenant) of the issue.';
comment on column app.issue_terms.issue_id is 'The issue''s number.';
comment on column app.issue_terms.term is
  'One word, lower-cased, in the C collation so that the words sharing a prefix form one range.';
comment on column app.issue_terms.weight is
  'How strongly the word marks the issue: 10 per occurrence in the title, 4 per occurrence in '
  'the description (at most 3 of each counted). A search ranks by the sum over its words.';
comment on index app.issue_terms_search_idx is
  'Word prefix -> issues, with the weight: a search reads only this index.';

alter table app.issue_terms enable row level security;
alter table app.issue_terms force row level security;

create policy issue_terms_tenant_select on app.issue_terms for select
  using (organization_id = (select app.current_org_id()));
comment on policy issue_terms_tenant_select on app.issue_terms is
  'Only the words of the organization in app.org_id are visible.';
create policy issue_terms_tenant_insert on app.issue_terms for insert
  with check (organization_id = (select app.current_org_id()));
comment on policy issue_terms_tenant_insert on app.issue_terms is
  'Words are written for the organization in app.org_id (only the triggers on app.issues write).';
create policy issue_terms_tenant_delete on app.issue_terms for delete
  using (organization_id = (select app.current_org_id()));
comment on policy issue_terms_tenant_delete on app.issue_terms is
  'Words are removed for the organization in app.org_id (only the triggers on app.issues remove).';
create policy issue_terms_dba_read on app.issue_terms for select to tenantry_dba using (true);
comment on policy issue_terms_dba_read on app.issue_terms is 'tenantry_dba reads the words of every organization.';

create function app.index_issue_terms() returns trigger
  language plpgsql volatile security definer set search_path = pg_catalog, pg_temp
  as $$
begin
  if tg_op in ('UPDATE', 'DELETE') then
    delete from app.issue_terms t where t.organization_id = old.organization_id and t.issue_id = old.id;
  end if;
  if tg_op in ('INSERT', 'UPDATE') then
    insert into app.issue_terms (organization_id, issue_id, term, weight)
    select new.organization_id, new.id, s.term, s.weight
    from app.search_terms(new.title, new.description) s;
  end if;
  return null;
end
$$;
comment on function app.index_issue_terms() is
  'Trigger: keeps an issue''s words in app.issue_terms: written when the issue is inserted '
  '(created or restored), rewritten when its title or description changes, removed when it '
  'is deleted. Runs as its owner (the only writer of app.issue_terms), search_path pinned.';

-- Row triggers: the update trigger fires only when the text changed (the WHEN clause is
-- checked without calling the function), so status or assignee changes cost nothing
-- here. The trigger function runs as its owner (security definer): it is the only
-- writer of app.issue_terms, the API role may only read it. Row-level security still
-- applies to it unless the owner is a superuser, and it only copies the words of the
-- row the statement wrote.
create trigger issues_index_terms after insert or delete on app.issues
  for each row execute function app.index_issue_terms();
comment on trigger issues_index_terms on app.issues is 'Writes or removes the words of an inserted or deleted issue.';
create trigger issues_reindex_terms after update of title, description on app.issues
  for each row when (old.title is distinct from new.title or old.description is distinct from new.description)
  execute function app.index_issue_terms();
comment on trigger issues_reindex_terms on app.issues is 'Rewrites the words of an issue whose title or description changed.';

-- Words of the issues that exist already. Row-level security is forced on app.issues,
-- so a migrating owner that is not a superuser would see no rows: lift it for the owner
-- within this transaction only (ALTER TABLE's lock keeps everyone else out until the
-- commit, when it is forced again).
alter table app.issues no force row level security;
alter table app.issue_terms no force row level security;
insert into app.issue_terms (organization_id, issue_id, term, weight)
select i.organization_id, i.id, s.term, s.weight
from app.issues i, app.search_terms(i.title, i.description) s;
alter table app.issues force row level security;
alter table app.issue_terms force row level security;

------------------------------------------------------------------------------------------
-- Activity: the feed's filters.
------------------------------------------------------------------------------------------
create index activity_logs_actor_idx on app.activity_logs (organization_id, actor_id, id);
comment on index app.activity_logs_actor_idx is 'The feed of one actor, newest first.';
create index activity_logs_action_idx on app.activity_logs (organization_id, action, id);
comment on index app.activity_logs_action_idx is 'The feed of one action (e.g. every deletion), newest first.';

------------------------------------------------------------------------------------------
-- Cursors
------------------------------------------------------------------------------------------
create type app.page_position as (
  at   timestamptz,
  rank bigint,
  id   bigint
);
comment on type app.page_position is
  'Where a page ends, decoded from a cursor: the sort key (a timestamp in at, or a number in '
  'rank) and the id that breaks ties.';

create function app.list_fingerprint(list text, filters jsonb) returns text
  language sql immutable parallel safe
  as $$ select pg_catalog.left(pg_catalog.md5(list || ' ' || filters::text), 16) $$;
comment on function app.list_fingerprint(text, jsonb) is
  'A short digest of a list and its normalized filters, kept in its cursors: a cursor is '
  'refused by a query with other filters.';

create function app.encode_cursor(sort text, fingerprint text, sort_key jsonb, id bigint) returns text
  language sql immutable parallel safe
  as $$
    select pg_catalog.rtrim(pg_catalog.translate(pg_catalog.encode(pg_catalog.convert_to(
             pg_catalog.jsonb_build_array(1, sort, fingerprint, sort_key, id)::text, 'UTF8'), 'base64'),
           E'+/\n', '-_'), '=')
  $$;
comment on function app.encode_cursor(text, text, jsonb, bigint) is
  'The cursor of the page after the row with this sort key and id: base64url (no padding) '
  'of [1, sort, fingerprint, sort key, id]. Opaque to clients, not secret.';

create function app.decode_cursor(cursor text, sort text, fingerprint text) returns app.page_position
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
      when 'string' then position.at := (payload->>3)::timestamptz;
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

create function app.checked_choices(chosen text[], allowed text[], parameter text) returns text[]
  language plpgsql immutable
  as $$
declare
  bad text;
begin
  if chosen is null then
    return null;
  end if;
  if pg_catalog.cardinality(chosen) = 0 then
    raise exception '% must name at least one value', parameter using errcode = 'TN400', column = parameter;
  end if;
  select c into bad from pg_catalog.unnest(chosen) c where c is null or c <> all (allowed) limit 1;
  if found then
    raise exception '% must be among %, not %', parameter, pg_catalog.array_to_string(allowed, ', '),
      coalesce(bad, 'null') using errcode = 'TN400', column = parameter;
  end if;
  return array(select distinct c from pg_catalog.unnest(chosen) c order by c);
end
$$;
comment on function app.checked_choices(text[], text[], text) is
  'A filter list checked against the allowed values (TN400 naming the parameter otherwise), '
  'without duplicates and sorted, so equal filters have equal fingerprints.';

------------------------------------------------------------------------------------------
-- Pages of issues
------------------------------------------------------------------------------------------
create type api.issue_page_row as (
  id              bigint,
  title           text,
  description     text,
  status          text,
  priority        text,
  assignee_id     text,
  organization_id text,
  created_by      text,
  created_at      timestamptz,
  updated_at      timestamptz,
  version         bigint,
  next_cursor     text
);
comment on type api.issue_page_row is
  'An issue in a page (the api.issue columns), plus next_cursor: set on the last row of a '
  'page when another page follows, NULL otherwise.';

drop function api.list_issues();

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
  search         text        default null
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
begin
  if org is null then
    return;  -- no tenant, no rows
  end if;

  if page_size is null or page_size not between 1 and 200 then
    raise exception 'page_size must be from 1 to 200' using errcode = 'TN400', column = 'page_size';
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
  for found_row in execute query
    using org, status, priority, assignee_id, created_by, created_after, created_before,
          updated_after, position.at, position.rank, position.id, words, word_ends, page_size + 1
  loop
    rows_read := rows_read + 1;
    if rows_read > page_size then
      pending.next_cursor := app.encode_cursor(sort_by, fingerprint,
        case when by_time then pg_catalog.to_jsonb(app.json_time(pending_at))
             else pg_catalog.to_jsonb(pending_rank) end,
        pending.id);
      exit;
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
comment on function api.list_issues(integer, text, text, text[], text[], text, text, timestamptz, timestamptz, timestamptz, text) is
  'One page of the issues of the organization in app.org_id (empty when no tenant is set). '
  'page_size 1-200 rows. sort: createdAt, updatedAt or priority, "-" first for descending '
  '(ties broken by number in the same direction); default -createdAt, or relevance when '
  'searching (score, then newest). Filters, all combinable: status and priority (arrays: any '
  'of), assignee_id (''none'': unassigned), created_by, created_after, created_before, '
  'updated_after (exclusive bounds), search (every word a prefix; at most 10 words, 200 '
  'characters). after: the next_cursor of the previous page, valid only with the same sort '
  'and filters. Invalid input raises TN400 naming the parameter in COLUMN.';

------------------------------------------------------------------------------------------
-- Activity: the organization's feed (newest first) and one issue's history (oldest first).
-- Both are ordered by id: ids are handed out under the organization_counters row lock,
-- so in commit order, and a page boundary never moves. The cursors also carry
-- created_at for a future partitioning of the log by time.
------------------------------------------------------------------------------------------
create type api.activity_entry as (
  id          bigint,
  issue_id    bigint,
  actor_id    text,
  action      text,
  changes     jsonb,
  created_at  timestamptz,
  next_cursor text
);
comment on type api.activity_entry is
  'An activity entry as the api functions return it, plus next_cursor: set on the last '
  'entry of a page when another page follows, NULL otherwise.';

create function api.list_activity(
  page_size integer     default 50,
  after     text        default null,
  actor_id  text        default null,
  action    text[]      default null,
  issue_id  bigint      default null,
  since     timestamptz default null,
  until     timestamptz default null,
  oldest_first boolean  default false
) returns setof api.activity_entry
  language plpgsql stable
  as $$
declare
  org         text := app.current_org_id();
  order_by    text := case when oldest_first then 'id' else '-id' end;
  fingerprint text;
  position    app.page_position;
  query       text;
  entry       api.activity_entry;
  pending     api.activity_entry;
  rows_read   integer := 0;
begin
  if org is null then
    return;
  end if;
  if page_size is null or page_size not between 1 and 200 then
    raise exception 'page_size must be from 1 to 200' using errcode = 'TN400', column = 'page_size';
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

  query := 'select a.id, a.issue_id, a.actor_id, a.action, a.changes, a.created_at, null::text '
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

  for entry in execute query
    using org, actor_id, action, issue_id, since, until, position.id, page_size + 1
  loop
    rows_read := rows_read + 1;
    if rows_read > page_size then
      pending.next_cursor := app.encode_cursor(order_by, fingerprint,
        pg_catalog.to_jsonb(app.json_time(pending.created_at)), pending.id);
      exit;
    end if;
    if rows_read > 1 then
      return next pending;
    end if;
    pending := entry;
  end loop;
  if rows_read > 0 then
    return next pending;
  end if;
end
$$;
comment on function api.list_activity(integer, text, text, text[], bigint, timestamptz, timestamptz, boolean) is
  'One page of the activity of the organization in app.org_id, newest first, or oldest first '
  'with oldest_first (empty when no tenant is set). Filters, all combinable: actor_id, action '
  '(array: any of created, updated, deleted, restored), issue_id, since (inclusive) and until '
  '(exclusive) on created_at. page_size 1-200; after: the next_cursor of the previous page, '
  'with the same filters and order.';

create function api.issue_activity(
  issue_id  bigint,
  page_size integer default 50,
  after     text    default null
) returns setof api.activity_entry
  language plpgsql stable
  as $$
begin
  return query
    select * from api.list_activity(page_size => issue_activity.page_size, after => issue_activity.after,
                                    issue_id => issue_activity.issue_id, oldest_first => true);
  if not found and after is null then
    -- Every issue has a created entry: no entry at all means no such issue, ever.
    raise exception 'issue % not found', issue_id using errcode = 'TN404';
  end if;
end
$$;
comment on function api.issue_activity(bigint, integer, text) is
  'One page of the history of one issue of the organization in app.org_id, oldest first; '
  'also of a deleted issue (its deleted entry holds the final issue). TN404 when the '
  'organization never had the issue. page_size 1-200; after: the next_cursor of the '
  'previous page of the same issue.';

------------------------------------------------------------------------------------------
-- Restore: nothing deleted is lost.
------------------------------------------------------------------------------------------
create policy issues_admin_restore on app.issues for insert
  with check (
    organization_id = (select app.current_org_id())
    and (select app.current_user_role()) = 'ADMIN'
    and exists (
      select from app.activity_logs a
      where a.organization_id = issues.organization_id and a.issue_id = issues.id
        and a.action = 'deleted' and a.changes->>'createdBy' = issues.created_by));
comment on policy issues_admin_restore on app.issues is
  'An ADMIN may put a deleted issue back under its own number with its original creator '
  '(what api.restore_issue does); any other insert must name app.user_id as the creator.';

create function api.restore_issue(issue_id bigint) returns setof api.issue
  language plpgsql volatile
  as $$
declare
  org      text := app.current_org_id();
  last_entry app.activity_logs;
  snapshot jsonb;
  restored app.issues;
begin
  perform app.require_context();
  perform app.require_admin('restore issues');

  -- The organization's write lock (as every change takes it, via app.log_activity):
  -- two restores of one issue cannot both pass the checks below.
  perform from app.organization_counters c where c.organization_id = org for update;

  if exists (select from app.issues i where i.organization_id = org and i.id = restore_issue.issue_id) then
    raise exception 'issue % is not deleted', issue_id using errcode = 'TN409';
  end if;
  select a.* into last_entry
  from app.activity_logs a
  where a.organization_id = org and a.issue_id = restore_issue.issue_id
  order by a.id desc
  limit 1;
  if not found then
    raise exception 'issue % not found', issue_id using errcode = 'TN404';
  end if;
  if last_entry.action <> 'deleted' then
    raise exception 'issue % is missing but its last entry (%) is %, not deleted', issue_id, last_entry.id, last_entry.action;
  end if;

  snapshot := last_entry.changes;
  insert into app.issues as i (organization_id, id, title, description, status, priority,
                               assignee_id, created_by, created_at, updated_at, version)
  values (org, restore_issue.issue_id, snapshot->>'title', snapshot->>'description',
          snapshot->>'status', snapshot->>'priority', snapshot->>'assigneeId',
          snapshot->>'createdBy', (snapshot->>'createdAt')::timestamptz, now(),
          coalesce((snapshot->>'version')::bigint, 0) + 1)
  returning i.* into restored;

  perform app.log_activity(restored.id, 'restored', app.issue_json(restored));
  return next app.to_api_issue(restored);
end
$$;
comment on function api.restore_issue(bigint) is
  'ADMIN only (else TN403). Brings a deleted issue of the organization in app.org_id back '
  'under its own number, as its deleted entry recorded it (creator and createdAt kept, '
  'updatedAt now, version one more), and logs a restored entry holding it. TN404 when the '
  'organization never had the issue, TN409 when it is not deleted.';

------------------------------------------------------------------------------------------
-- Grants: the new functions and the search table; activity stays append-only.
------------------------------------------------------------------------------------------
-- The words are written by the triggers only (as the owner); requests just read them.
grant select on app.issue_terms to tenantry_api;
grant select on app.issue_terms to tenantry_dba;
grant execute on all functions in schema app, api to tenantry_api;
