-- tenantry, migration 16: search words that do not multiply writes (issue 19).
--
-- Every distinct word of an issue was a row of app.issue_terms, each with two index
-- entries, written in the transaction of the create, so a create's cost grew with its text
-- without bound (figures: docs/performance.md, "Search words and the cost of a create").
-- Now the searchable words of an issue are every word of its title and the words of its
-- description that occur among its first 1,000 words (the 1,000 first words the text
-- search parser finds; a word that occurs there and again later still counts every
-- occurrence, at most 3, for ranking). A description of up to 1,000 words is searchable
-- as before; a longer one writes no more word rows than one of 1,000 words, whatever its
-- length. docs/api.md says which words are searchable.
--
-- Prefix search, every-word matching and the ranking are unchanged. app.search_terms is
-- replaced in place (the triggers that write app.issue_terms call it); the words of the
-- existing issues past the cap are removed, so every issue follows the same rule.

create or replace function app.search_terms(title text, description text)
  returns table (term text, weight integer)
  language sql immutable parallel safe
  as $$
    -- A lexeme's positions are sorted: positions[1] is its first occurrence (positions are
    -- word numbers, 1 for the first word).
    select coalesce(t.lexeme, d.lexeme),
           10 * least(coalesce(pg_catalog.cardinality(t.positions), 0), 3)
         + 4 * least(coalesce(pg_catalog.cardinality(d.positions), 0), 3)
    from pg_catalog.unnest(pg_catalog.to_tsvector('simple', coalesce(title, ''))) as t (lexeme, positions, weights)
    full join (select u.lexeme, u.positions
                 from pg_catalog.unnest(pg_catalog.to_tsvector('simple', coalesce(description, ''))) as u (lexeme, positions, weights)
                where u.positions[1] <= 1000) as d
      on d.lexeme = t.lexeme
  $$;
comment on function app.search_terms(text, text) is
  'The searchable words of an issue as PostgreSQL''s text search parser finds them (configuration '
  'simple: lower-cased, no stemming, no stop words, any language): every word of the title, and '
  'the words of the description that occur among its first 1000 words. Each with a weight: 10 '
  'per occurrence in the title plus 4 per occurrence in the description, counting at most 3 of each.';
revoke all on function app.search_terms(text, text) from public;
grant execute on function app.search_terms(text, text) to tenantry_api;

comment on table app.issue_terms is
  'The search index of issues: one row per searchable word of an issue''s title and description '
  '(from app.search_terms: the title''s words and the description''s first 1000 words), written '
  'only by the triggers on app.issues, in the same transaction. A word prefix is a range of term, '
  'so a search is a btree range scan that row-level security allows (a GIN index on a tsvector '
  'cannot be used under row-level security). The API role may read it, never write it.';

-- The words of existing issues past the cap. Only a description of 1,000 words or more
-- can have any (a word takes at least one character and one separator). Row-level
-- security is forced on both tables, so a migrating owner that is not a superuser would
-- see no rows: lifted for the owner within this transaction only (as migration 6 did).
alter table app.issues no force row level security;
alter table app.issue_terms no force row level security;
with long as (
  select i.organization_id, i.id, i.title, i.description
    from app.issues i
   where pg_catalog.char_length(i.description) >= 1999
), kept as (
  select l.organization_id, l.id, s.term
    from long l cross join lateral app.search_terms(l.title, l.description) s
)
delete from app.issue_terms t
using long l
where t.organization_id = l.organization_id and t.issue_id = l.id
  and not exists (select from kept k
                   where k.organization_id = t.organization_id and k.id = t.issue_id and k.term = t.term);
alter table app.issues force row level security;
alter table app.issue_terms force row level security;
