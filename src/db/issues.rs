//! The issue operations: one `api` function each, called through [`Database::call`], and
//! the mapping of their rows to [`Issue`] (or, for list pages, straight to JSON:
//! [`IssueRows`]).

use serde_json::{Map, Value};
use time::OffsetDateTime;
use tokio_postgres::{Row, types::Type};

use super::{
    Database, Error, Sql,
    page::{self, PageBody},
};
use crate::domain::{Issue, IssuePatch, IssueQuery, NewIssue, Priority, Status, TenantContext, timestamp};

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

/// Issues as PostgreSQL returned them, to be written as the API's JSON straight from the
/// rows' buffers ([`IssueRows::to_json`]): no `String` per field, no intermediate `Issue`,
/// no serde machinery per field. Lists are the one large body on the hot path
/// (docs/performance.md, "Settings").
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

    /// The same rows as [`Issue`]s.
    pub fn to_issues(&self) -> Result<Vec<Issue>, Error> {
        self.rows.iter().map(issue_from_row).collect()
    }

    /// The page the API sends: the JSON array of `Issue`, byte for byte what serde_json
    /// writes for `Vec<Issue>` (tested) but written by hand, ended at the byte bound.
    pub fn page(&self) -> Result<PageBody, Error> {
        page::write(&self.rows, 11, self.max_bytes, write_issue)
    }
}

/// One issue, fields in `Issue`'s order and spelling (`version` is not part of the body).
fn write_issue(out: &mut Vec<u8>, row: &Row) -> Result<(), Error> {
    let status: &str = row.try_get(3)?;
    let priority: &str = row.try_get(4)?;
    // Known values only: they need no escaping.
    let status =
        Status::parse(status).ok_or_else(|| Error::Internal(format!("unknown status {status:?}").into()))?;
    let priority = Priority::parse(priority)
        .ok_or_else(|| Error::Internal(format!("unknown priority {priority:?}").into()))?;
    let id: i64 = row.try_get(0)?;
    let assignee: Option<&str> = row.try_get(5)?;

    out.extend_from_slice(b"{\"id\":");
    out.extend_from_slice(id.to_string().as_bytes());
    out.extend_from_slice(b",\"title\":");
    write_json_string(out, row.try_get(1)?);
    out.extend_from_slice(b",\"description\":");
    write_json_string(out, row.try_get(2)?);
    out.extend_from_slice(b",\"status\":\"");
    out.extend_from_slice(status.as_str().as_bytes());
    out.extend_from_slice(b"\",\"priority\":\"");
    out.extend_from_slice(priority.as_str().as_bytes());
    out.extend_from_slice(b"\",\"assigneeId\":");
    match assignee {
        Some(assignee) => write_json_string(out, assignee),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"organizationId\":");
    write_json_string(out, row.try_get(6)?);
    out.extend_from_slice(b",\"createdBy\":");
    write_json_string(out, row.try_get(7)?);
    out.extend_from_slice(b",\"createdAt\":\"");
    out.extend_from_slice(&timestamp::digits(row.try_get::<_, OffsetDateTime>(8)?));
    out.extend_from_slice(b"\",\"updatedAt\":\"");
    out.extend_from_slice(&timestamp::digits(row.try_get::<_, OffsetDateTime>(9)?));
    out.extend_from_slice(b"\"}");
    Ok(())
}

/// A JSON string exactly as serde_json writes one: `"` and `\` escaped, control characters
/// as `\b \t \n \f \r` or `\u00xx`, everything else (non-ASCII too) as it is. Eight bytes
/// at a time while none of them needs escaping, which is nearly always.
fn write_json_string(out: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = text.as_bytes();
    out.push(b'"');
    let (mut start, mut i) = (0, 0);
    while i < bytes.len() {
        if let Some(word) = bytes.get(i..i + 8)
            && !word_needs_escape(u64::from_le_bytes(word.try_into().expect("eight bytes")))
        {
            i += 8;
            continue;
        }
        let escaped: &[u8] = match bytes[i] {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            control @ 0x00..=0x1f => {
                &[b'\\', b'u', b'0', b'0', HEX[usize::from(control >> 4)], HEX[usize::from(control & 0xf)]]
            }
            _ => {
                i += 1;
                continue;
            }
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escaped);
        i += 1;
        start = i;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Whether any of the eight bytes is below 0x20, `"` or `\` (the classic SWAR tests for a
/// byte below n and for a zero byte).
fn word_needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
    let below = |n: u8| word.wrapping_sub(ONES * u64::from(n)) & !word;
    let equal = |c: u8| {
        let x = word ^ (ONES * u64::from(c));
        x.wrapping_sub(ONES) & !x
    };
    (below(0x20) | equal(b'"') | equal(b'\\')) & HIGH_BITS != 0
}

#[cfg(test)]
mod tests {
    use super::write_json_string;

    fn written(text: &str) -> String {
        let mut out = Vec::new();
        write_json_string(&mut out, text);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strings_are_escaped_exactly_as_serde_json_escapes_them() {
        let every_ascii: String = (0u8..=0x7f).map(char::from).collect();
        let samples = [
            "",
            "plain",
            "exactly8",
            "sixteen bytes!!!",
            "\"",
            "a\\b",
            "tab\there and\nthere\r",
            "ünïcödé 🚀 \u{2028} </script>",
            "quote after eight bytes: \"",
            &every_ascii,
        ];
        for sample in samples {
            assert_eq!(written(sample), serde_json::to_string(sample).unwrap(), "{sample:?}");
        }
        for byte in 0u8..=0x7f {
            let text = format!("01234567{}89", char::from(byte));
            assert_eq!(written(&text), serde_json::to_string(&text).unwrap(), "{byte:#x}");
        }
    }
}
