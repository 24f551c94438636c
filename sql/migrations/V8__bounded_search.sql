-- tenantry, migration 8: a search's cost is bounded before it runs.
--
-- Every search word is a prefix, and api.list_issues reads, per word, every term row of
-- the organization that starts with it. One organization filling itself with words, then
-- searching for a one-letter prefix, made each search read hundreds of thousands of rows
-- (seconds each), and a dozen of those at once starved every other organization.
-- app.checked_search() is applied to the search text before api.list_issues sees it (the
-- service passes `search => app.checked_search(q, limit)`): each word needs at least two
-- characters, and a search whose words would read more than `max_candidates` term rows in
-- all is refused (TN400, column search) rather than answered in part. Counting stops one
-- row past the limit, so the check itself is bounded too.

create function app.checked_search(search text, max_candidates integer) returns text
  language plpgsql stable
  as $$
declare
  org     text := app.current_org_id();
  -- The same words api.list_issues searches for.
  words   text[] := array(select t.lexeme from pg_catalog.unnest(pg_catalog.to_tsvector('simple', search)) t);
  word    text;
  counted bigint := 0;
begin
  if search is null or org is null then
    return search;
  end if;
  select w into word from pg_catalog.unnest(words) w where pg_catalog.char_length(w) < 2 limit 1;
  if found then
    raise exception 'search words must have at least 2 characters, not %', pg_catalog.quote_literal(word)
      using errcode = 'TN400', column = 'search';
  end if;
  foreach word in array words loop
    if max_candidates is not null then
      counted := counted + (
        select pg_catalog.count(*) from (
          select from app.issue_terms t
           where t.organization_id = org and t.term >= word and t.term < word || pg_catalog.chr(1114111)
           limit max_candidates - counted + 1) c);
      if counted > max_candidates then
        raise exception 'search is too broad: its words start more than % indexed words; use longer or fewer words',
          max_candidates using errcode = 'TN400', column = 'search';
      end if;
    end if;
  end loop;
  return search;
end
$$;
comment on function app.checked_search(text, integer) is
  'The search text unchanged, if every word has at least 2 characters and all its words '
  'together start at most max_candidates term rows of the organization (NULL: no bound); '
  'TN400 (column search) otherwise. The service wraps api.list_issues''s search in it, so a '
  'search never costs more than a bounded read.';

grant execute on function app.checked_search(text, integer) to tenantry_api;
