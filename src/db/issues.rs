//! The issue operations: one `api` function each, called through [`Database::call`], and
//! the mapping of their rows to [`Issue`].

use serde_json::{Map, Value};
use tokio_postgres::Row;

use super::{Database, Error};
use crate::domain::{Issue, IssuePatch, NewIssue, Priority, Status, TenantContext};

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

const CREATE: &str = issue_sql!("api.create_issue($1, $2, $3, $4, $5)");
const GET: &str = issue_sql!("api.get_issue($1)");
const LIST: &str = issue_sql!("api.list_issues()");
const UPDATE: &str = issue_sql!("api.update_issue($1, $2, $3)");
const DELETE: &str = "select id from api.delete_issue($1, $2)";
/// `api.create_issue_idempotently` returns `(replayed, issue)`: the issue's columns in
/// [`issue_from_row`]'s order, then `replayed`.
const CREATE_IDEMPOTENTLY: &str = "select (c.issue).id, (c.issue).title, (c.issue).description, \
     (c.issue).status, (c.issue).priority, (c.issue).assignee_id, (c.issue).organization_id, \
     (c.issue).created_by, (c.issue).created_at, (c.issue).updated_at, (c.issue).version, \
     c.replayed from api.create_issue_idempotently($1, $2, $3, $4, $5, $6) c";

pub async fn create(db: &Database, ctx: &TenantContext, new: &NewIssue) -> Result<Issue, Error> {
    let status = new.status.map(Status::as_str);
    let priority = new.priority.map(Priority::as_str);
    let rows =
        db.call(ctx, CREATE, &[&new.title, &new.description, &status, &priority, &new.assignee_id]).await?;
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
            CREATE_IDEMPOTENTLY,
            &[&key, &new.title, &new.description, &status, &priority, &new.assignee_id],
        )
        .await?;
    let issue = one_issue(&rows)?;
    Ok((issue, rows[0].try_get(11)?))
}

pub async fn get(db: &Database, ctx: &TenantContext, id: i64) -> Result<Issue, Error> {
    one_issue(&db.call(ctx, GET, &[&id]).await?)
}

pub async fn list(db: &Database, ctx: &TenantContext) -> Result<Vec<Issue>, Error> {
    db.call(ctx, LIST, &[]).await?.iter().map(issue_from_row).collect()
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
    one_issue(&db.call(ctx, UPDATE, &[&id, &patch_json(patch), &expected_version]).await?)
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
    db.call(ctx, DELETE, &[&id, &expected_version]).await?;
    Ok(())
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
    let status: &str = row.try_get(3)?;
    let priority: &str = row.try_get(4)?;
    Ok(Issue {
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
        version: row.try_get(10)?,
    })
}
