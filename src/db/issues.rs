//! The issue operations: one `api` function each, called through [`Database::call`], and
//! the mapping of their rows to [`Issue`] (or, for list pages, straight to JSON:
//! [`IssueRows`]).

use serde_json::{Map, Value};
use tokio_postgres::{Row, types::Type};

use super::{Database, Error, Sql};
use crate::domain::{Issue, IssuePatch, IssueQuery, IssueRef, NewIssue, Priority, Status, TenantContext};

/// The columns of `api.issue`, in the order [`issue_from_row`] reads them.
macro_rules! issue_sql {
    ($call:literal) => {
        concat!(
            "select id, title, description, status, priority, assignee_id, organization_id, \
             created_by, created_at, updated_at, version from ",
            $call
        )
    };
}

// Public so the benchmark's pgbench runs exactly the statements the service runs.
pub const CREATE: Sql = Sql {
    text: issue_sql!("api.create_issue($1, $2, $3, $4, $5)"),
    param_types: &[Type::TEXT, Type::TEXT, Type::TEXT, Type::TEXT, Type::TEXT],
};
pub const GET: Sql = Sql { text: issue_sql!("api.get_issue($1)"), param_types: &[Type::INT8] };
/// The issue columns, then `next_cursor` (column 11), which [`IssueRows`] skips. The search
/// goes through `app.checked_search` (migration 8), bounded by `$12` candidate term rows;
/// `$13`: the page's byte bound (migration 10).
pub const LIST: Sql = Sql {
    text: "select id, title, description, status, priority, assignee_id, organization_id, \
      created_by, created_at, updated_at, version, next_cursor \
      from api.list_issues(page_size => $1, sort => $2, after => $3, status => $4, priority => $5, \
      assignee_id => $6, created_by => $7, created_after => $8, created_before => $9, \
      updated_after => $10, search => app.checked_search($11, $12), max_bytes => $13)",
    param_types: &[
        Type::INT4,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT_ARRAY,
        Type::TEXT_ARRAY,
        Type::TEXT,
        Type::TEXT,
        Type::TIMESTAMPTZ,
        Type::TIMESTAMPTZ,
        Type::TIMESTAMPTZ,
        Type::TEXT,
        Type::INT4,
        Type::INT4,
    ],
};
/// `$3`: the version `If-Match` named, or NULL.
pub const UPDATE: Sql = Sql {
    text: issue_sql!("api.update_issue($1, $2, $3)"),
    param_types: &[Type::INT8, Type::JSONB, Type::INT8],
};
pub const DELETE: Sql =
    Sql { text: "select id from api.delete_issue($1, $2)", param_types: &[Type::INT8, Type::INT8] };
/// `api.create_issue_idempotently` returns `(replayed, issue)`: the issue's columns in
/// [`issue_from_row`]'s order, then `replayed`.
const CREATE_IDEMPOTENTLY: Sql = Sql {
    text: "select (c.issue).id, (c.issue).title, (c.issue).description, \
     (c.issue).status, (c.issue).priority, (c.issue).assignee_id, (c.issue).organization_id, \
     (c.issue).created_by, (c.issue).created_at, (c.issue).updated_at, (c.issue).version, \
     c.replayed from api.create_issue_idempotently($1, $2, $3, $4, $5, $6) c",
    param_types: &[Type::TEXT, Type::TEXT, Type::TEXT, Type::TEXT, Type::TEXT, Type::TEXT],
};
const RESTORE: Sql = Sql { text: issue_sql!("api.restore_issue($1)"), param_types: &[Type::INT8] };

pub async fn create(db: &Database, ctx: &TenantContext, new: &NewIssue) -> Result<Issue, Error> {
    let status = new.status.map(Status::as_str);
    let priority = new.priority.map(Priority::as_str);
    let rows =
        db.call(ctx, &CREATE, &[&new.title, &new.description, &status, &priority, &new.assignee_id]).await?;
    one_issue(&rows)
}

/// Creates an issue under an idempotency key, or finds the one an earlier request with
/// the same key and the same content created (`true`: replayed).
pub async fn create_idempotently(
    db: &Database,
    ctx: &TenantContext,
    key: &str,
    new: &NewIssue,
) -> Result<(Issue, bool), Error> {
    let status = new.status.map(Status::as_str);
    let priority = new.priority.map(Priority::as_str);
    let rows = db
        .call(
            ctx,
            &CREATE_IDEMPOTENTLY,
            &[&key, &new.title, &new.description, &status, &priority, &new.assignee_id],
        )
        .await?;
    let issue = one_issue(&rows)?;
    Ok((issue, rows[0].try_get(11)?))
}

pub async fn get(db: &Database, ctx: &TenantContext, id: i64) -> Result<Issue, Error> {
    one_issue(&db.call(ctx, &GET, &[&id]).await?)
}

/// One page of the organization's issues.
pub async fn list(db: &Database, ctx: &TenantContext, query: &IssueQuery) -> Result<IssueRows, Error> {
    let non_empty = |values: Vec<&'static str>| (!values.is_empty()).then_some(values);
    let statuses = non_empty(query.statuses.iter().map(|s| s.as_str()).collect());
    let priorities = non_empty(query.priorities.iter().map(|p| p.as_str()).collect());
    let sort = query.sort.map(|s| s.as_str());
    let rows = db
        .call(
            ctx,
            &LIST,
            &[
                &query.limit,
                &sort,
                &query.cursor,
                &statuses,
                &priorities,
                &query.assignee_id,
                &query.created_by,
                &query.created_after,
                &query.created_before,
                &query.updated_after,
                &query.search,
                &db.search_max_candidates(),
                &db.page_max_bytes(),
            ],
        )
        .await?;
    Ok(IssueRows { rows, max_bytes: db.page_max_bytes() })
}

pub async fn update(db: &Database, ctx: &TenantContext, id: i64, patch: &IssuePatch) -> Result<Issue, Error> {
    update_at(db, ctx, id, patch, None).await
}

/// Like [`update`], only if the issue is at `expected_version` (else [`Error::Stale`]).
pub async fn update_at(
    db: &Database,
    ctx: &TenantContext,
    id: i64,
    patch: &IssuePatch,
    expected_version: Option<i64>,
) -> Result<Issue, Error> {
    one_issue(&db.call(ctx, &UPDATE, &[&id, &patch_json(patch), &expected_version]).await?)
}

pub async fn delete(db: &Database, ctx: &TenantContext, id: i64) -> Result<(), Error> {
    delete_at(db, ctx, id, None).await
}

/// Like [`delete`], only if the issue is at `expected_version` (else [`Error::Stale`]).
pub async fn delete_at(
    db: &Database,
    ctx: &TenantContext,
    id: i64,
    expected_version: Option<i64>,
) -> Result<(), Error> {
    db.call(ctx, &DELETE, &[&id, &expected_version]).await?;
    Ok(())
}

/// Brings a deleted issue back from its `deleted` activity entry.
pub async fn restore(db: &Database, ctx: &TenantContext, id: i64) -> Result<Issue, Error> {
    one_issue(&db.call(ctx, &RESTORE, &[&id]).await?)
}

/// The patch as `api.update_issue` takes it: column names; a present key is a change.
fn patch_json(patch: &IssuePatch) -> Value {
    let mut object = Map::new();
    let mut put = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            object.insert(key.to_owned(), value);
        }
    };
    put("title", patch.title.clone().map(Value::String));
    put("description", patch.description.clone().map(Value::String));
    put("status", patch.status.map(|s| Value::String(s.as_str().to_owned())));
    put("priority", patch.priority.map(|p| Value::String(p.as_str().to_owned())));
    if !patch.assignee_id.is_undefined() {
        put("assignee_id", Some(patch.assignee_id.value().map_or(Value::Null, |a| Value::String(a.clone()))));
    }
    Value::Object(object)
}

fn one_issue(rows: &[Row]) -> Result<Issue, Error> {
    match rows {
        [row] => issue_from_row(row),
        _ => Err(Error::Internal(format!("expected one issue row, got {}", rows.len()).into())),
    }
}

fn issue_from_row(row: &Row) -> Result<Issue, Error> {
    let issue = issue_ref(row)?;
    Ok(Issue {
        id: issue.id,
        title: issue.title.to_owned(),
        description: issue.description.to_owned(),
        status: issue.status,
        priority: issue.priority,
        assignee_id: issue.assignee_id.map(str::to_owned),
        organization_id: issue.organization_id.to_owned(),
        created_by: issue.created_by.to_owned(),
        created_at: issue.created_at,
        updated_at: issue.updated_at,
        version: row.try_get(10)?,
    })
}

/// A page of issues as PostgreSQL returned them: the API writes its JSON from the rows'
/// buffers ([`IssueRows::items`]), with no `String` per field and no intermediate `Issue`.
pub struct IssueRows {
    rows: Vec<Row>,
    /// The page's byte bound, as `api.list_issues` was told.
    max_bytes: Option<i32>,
}

impl IssueRows {
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The page's byte bound (PAGE_MAX_BYTES): the page ends at the last whole issue
    /// within it, and `api.list_issues` put a cursor on each issue it may end at.
    pub fn max_bytes(&self) -> Option<i32> {
        self.max_bytes
    }

    /// Each issue, borrowed from its row, with the cursor of the page after it (set on the
    /// issues the page may end at).
    pub fn items(&self) -> impl Iterator<Item = Result<(IssueRef<'_>, Option<&str>), Error>> {
        self.rows.iter().map(|row| Ok((issue_ref(row)?, row.try_get(11)?)))
    }

    /// The same rows as [`Issue`]s.
    pub fn to_issues(&self) -> Result<Vec<Issue>, Error> {
        self.rows.iter().map(issue_from_row).collect()
    }
}

fn issue_ref(row: &Row) -> Result<IssueRef<'_>, Error> {
    let status: &str = row.try_get(3)?;
    let priority: &str = row.try_get(4)?;
    Ok(IssueRef {
        id: row.try_get(0)?,
        title: row.try_get(1)?,
        description: row.try_get(2)?,
        status: Status::parse(status)
            .ok_or_else(|| Error::Internal(format!("unknown status {status:?}").into()))?,
        priority: Priority::parse(priority)
            .ok_or_else(|| Error::Internal(format!("unknown priority {priority:?}").into()))?,
        assignee_id: row.try_get(5)?,
        organization_id: row.try_get(6)?,
        created_by: row.try_get(7)?,
        created_at: row.try_get(8)?,
        updated_at: row.try_get(9)?,
    })
}
