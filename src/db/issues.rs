//! The issue operations: one `api` function each, called through [`Database::call`], and
//! the mapping of their rows to [`Issue`] (and to pages of them).

use serde_json::{Map, Value};
use tokio_postgres::Row;

use super::{Database, Error};
use crate::domain::{Issue, IssuePatch, IssueQuery, NewIssue, Page, Priority, Status, TenantContext};

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
/// The issue columns, then `next_cursor` (column 11).
const LIST: &str = "select id, title, description, status, priority, assignee_id, organization_id, \
     created_by, created_at, updated_at, version, next_cursor \
     from api.list_issues(page_size => $1, sort => $2, after => $3, status => $4, priority => $5, \
     assignee_id => $6, created_by => $7, created_after => $8, created_before => $9, \
     updated_after => $10, search => $11)";
const UPDATE: &str = issue_sql!("api.update_issue($1, $2)");
const DELETE: &str = "select id from api.delete_issue($1)";
const RESTORE: &str = issue_sql!("api.restore_issue($1)");

pub async fn create(db: &Database, ctx: &TenantContext, new: &NewIssue) -> Result<Issue, Error> {
    let status = new.status.map(Status::as_str);
    let priority = new.priority.map(Priority::as_str);
    let rows =
        db.call(ctx, CREATE, &[&new.title, &new.description, &status, &priority, &new.assignee_id]).await?;
    one_issue(&rows)
}

pub async fn get(db: &Database, ctx: &TenantContext, id: i64) -> Result<Issue, Error> {
    one_issue(&db.call(ctx, GET, &[&id]).await?)
}

/// One page of the organization's issues.
pub async fn list(db: &Database, ctx: &TenantContext, query: &IssueQuery) -> Result<Page<Issue>, Error> {
    let non_empty = |values: Vec<&'static str>| (!values.is_empty()).then_some(values);
    let statuses = non_empty(query.statuses.iter().map(|s| s.as_str()).collect());
    let priorities = non_empty(query.priorities.iter().map(|p| p.as_str()).collect());
    let sort = query.sort.map(|s| s.as_str());
    let rows = db
        .call(
            ctx,
            LIST,
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
            ],
        )
        .await?;
    let items = rows.iter().map(issue_from_row).collect::<Result<_, _>>()?;
    Ok(Page { items, next_cursor: next_cursor(&rows, 11)? })
}

/// The cursor the last row of a page carries when another page follows.
pub(super) fn next_cursor(rows: &[Row], column: usize) -> Result<Option<String>, Error> {
    Ok(rows.last().map(|row| row.try_get::<_, Option<String>>(column)).transpose()?.flatten())
}

pub async fn update(db: &Database, ctx: &TenantContext, id: i64, patch: &IssuePatch) -> Result<Issue, Error> {
    one_issue(&db.call(ctx, UPDATE, &[&id, &patch_json(patch)]).await?)
}

pub async fn delete(db: &Database, ctx: &TenantContext, id: i64) -> Result<(), Error> {
    db.call(ctx, DELETE, &[&id]).await?;
    Ok(())
}

/// Brings a deleted issue back from its `deleted` activity entry.
pub async fn restore(db: &Database, ctx: &TenantContext, id: i64) -> Result<Issue, Error> {
    one_issue(&db.call(ctx, RESTORE, &[&id]).await?)
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
