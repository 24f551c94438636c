-- tenantry, migration 18: no per-word check of the organization id (issue 19).
--
-- app.issue_terms checked every word row's organization_id against app.is_valid_id (a
-- regular expression) once per word row, in the transaction of every create and every
-- change of a title or description. The rows are written only by app.index_issue_terms
-- (the API role cannot write the table), which copies organization_id from the
-- app.issues row it was fired for, and that row passed the same check
-- (issues_organization_id_check) in the same statement: the second check could never
-- fail, and it was a noticeable part of a create's work (docs/performance.md, the
-- journal). Row-level security still requires organization_id to be the transaction's
-- organization (issue_terms_tenant_insert), and NOT NULL stays.

alter table app.issue_terms drop constraint issue_terms_organization_id_check;
comment on column app.issue_terms.organization_id is
  'The organization (tenant) of the issue: copied from the app.issues row, which checked it '
  '(app.is_valid_id), by the only writer, app.index_issue_terms.';
