//! The activity log, read a page at a time: the organization's feed
//! (`api.list_activity`) and one issue's history (`api.issue_activity`).

use tokio_postgres::{Row, types::Type};

use super::{Database, Error, Sql};
use crate::domain::{Action, ActivityEntry, ActivityQuery, TenantContext};

/// The entry columns, then `next_cursor` (column 6).
macro_rules! entry_sql {
    ($call:literal) => {
        concat!("select id, issue_id, actor_id, action, changes, created_at, next_cursor from ", $call)
    };
}

const FEED: Sql = Sql {
    text: entry_sql!(
        "api.list_activity(page_size => $1, after => $2, actor_id => $3, action => $4, issue_id => $5, \
         since => $6, until => $7, max_bytes => $8)"
    ),
    param_types: &[
        Type::INT4,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT_ARRAY,
        Type::INT8,
        Type::TIMESTAMPTZ,
        Type::TIMESTAMPTZ,
        Type::INT4,
    ],
};
const HISTORY: Sql = Sql {
    text: entry_sql!("api.issue_activity($1, page_size => $2, after => $3, max_bytes => $4)"),
    param_types: &[Type::INT8, Type::INT4, Type::TEXT, Type::INT4],
};

/// One page of the organization's activity, newest first.
pub async fn feed(db: &Database, ctx: &TenantContext, query: &ActivityQuery) -> Result<ActivityRows, Error> {
    let actions: Vec<&str> = query.actions.iter().map(|a| a.as_str()).collect();
    let actions = (!actions.is_empty()).then_some(actions);
    let rows = db
        .call(
            ctx,
            &FEED,
            &[
                &query.limit,
                &query.cursor,
                &query.actor_id,
                &actions,
                &query.issue_id,
                &query.since,
                &query.until,
                &db.page_max_bytes(),
            ],
        )
        .await?;
    page(rows, db.page_max_bytes())
}

/// One page of one issue's history, oldest first (also of a deleted issue).
pub async fn history(
    db: &Database,
    ctx: &TenantContext,
    issue_id: i64,
    limit: i32,
    cursor: Option<&str>,
) -> Result<ActivityRows, Error> {
    let max_bytes = db.page_max_bytes();
    page(db.call(ctx, &HISTORY, &[&issue_id, &limit, &cursor, &max_bytes]).await?, max_bytes)
}

fn page(rows: Vec<Row>, max_bytes: Option<i32>) -> Result<ActivityRows, Error> {
    Ok(ActivityRows { rows, max_bytes })
}

/// A page of activity entries as PostgreSQL returned them.
pub struct ActivityRows {
    rows: Vec<Row>,
    max_bytes: Option<i32>,
}

impl ActivityRows {
    /// The page's byte bound (PAGE_MAX_BYTES), as in [`super::issues::IssueRows::max_bytes`].
    pub fn max_bytes(&self) -> Option<i32> {
        self.max_bytes
    }

    /// Each entry, with the cursor of the page after it (set on the entries the page may
    /// end at).
    pub fn items(&self) -> impl Iterator<Item = Result<(ActivityEntry, Option<&str>), Error>> {
        self.rows.iter().map(|row| Ok((entry_from_row(row)?, row.try_get(6)?)))
    }
}

pub(super) fn entry_from_row(row: &Row) -> Result<ActivityEntry, Error> {
    entry_from_row_at(row, 0)
}

/// An entry whose six columns start at column `first`.
pub(super) fn entry_from_row_at(row: &Row, first: usize) -> Result<ActivityEntry, Error> {
    let action: &str = row.try_get(first + 3)?;
    Ok(ActivityEntry {
        id: row.try_get(first)?,
        issue_id: row.try_get(first + 1)?,
        actor_id: row.try_get(first + 2)?,
        action: Action::parse(action)
            .ok_or_else(|| Error::Internal(format!("unknown action {action:?}").into()))?,
        changes: row.try_get(first + 4)?,
        created_at: row.try_get(first + 5)?,
    })
}
