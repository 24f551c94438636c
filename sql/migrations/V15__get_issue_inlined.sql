-- tenantry, migration 15: api.get_issue as a SQL function PostgreSQL inlines (issue 19).
--
-- api.get_issue was a PL/pgSQL function: every call set up its interpreter, ran its query
-- as a nested statement and handed the row back through a tuple store, about as much
-- work again as reading the row (docs/performance.md). A `language sql` set-returning
-- function whose body is one SELECT is inlined into the statement that calls it: the
-- service's prepared `select ... from api.get_issue($1)` then plans, once per connection,
-- as the indexed read itself. It still raises TN404 for a missing issue: the row is taken
-- with coalesce, whose second argument, app.issue_not_found (which raises), is evaluated
-- only when the first is NULL, i.e. when no row was found. Same result, same error, same
-- comment and grant.

create function app.issue_not_found(issue_id bigint) returns api.issue
  language plpgsql stable
  as $$
begin
  raise exception 'issue % not found', issue_id using errcode = 'TN404';
end
$$;
comment on function app.issue_not_found(bigint) is
  'Raises TN404 (issue issue_id not found); declared to return an issue so that a query can '
  'put it where the issue would be, e.g. coalesce((select the issue), app.issue_not_found(id)). '
  'Used by api.get_issue.';
revoke all on function app.issue_not_found(bigint) from public;
grant execute on function app.issue_not_found(bigint) to tenantry_api;

-- Replaced in place: the same signature and result.
create or replace function api.get_issue(issue_id bigint) returns setof api.issue
  language sql stable
  as $$
    -- offset 0 keeps the sub-query whole: its one value is taken apart into columns
    -- after it is computed, not recomputed per column.
    select (f.found).*
    from (select coalesce(
                   (select row(i.id, i.title, i.description, i.status, i.priority, i.assignee_id,
                               i.organization_id, i.created_by, i.created_at, i.updated_at,
                               i.version)::api.issue
                    from app.issues i
                    where i.organization_id = app.current_org_id() and i.id = get_issue.issue_id),
                   app.issue_not_found(get_issue.issue_id)) as found
          offset 0) f
  $$;
comment on function api.get_issue(bigint) is
  'One issue of the organization in app.org_id; raises TN404 when it has no such issue '
  '(another organization''s issue is indistinguishable from a missing one).';
grant execute on function api.get_issue(bigint) to tenantry_api;
