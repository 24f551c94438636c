//! The activity log, read a page at a time: the organization's feed
//! (`api.list_activity`) and one issue's history (`api.issue_activity`).

use tokio_postgres::{Row, types::Type};

use super::{
    Database, Error, Sql,
    page::{self, PageBody},
};
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
pub async fn feed(db: &Database, ctx: &TenantContext, query: &ActivityQuery) -> Result<PageBody, Error> {
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
    page(&rows, db.page_max_bytes())
}

/// One page of one issue's history, oldest first (also of a deleted issue).
pub async fn history(
    db: &Database,
    ctx: &TenantContext,
    issue_id: i64,
    limit: i32,
    cursor: Option<&str>,
) -> Result<PageBody, Error> {
    let max_bytes = db.page_max_bytes();
    page(&db.call(ctx, &HISTORY, &[&issue_id, &limit, &cursor, &max_bytes]).await?, max_bytes)
}

/// The JSON array of `ActivityEntry` the API sends, ended at the byte bound.
fn page(rows: &[Row], max_bytes: Option<i32>) -> Result<PageBody, Error> {
    page::write(rows, 6, max_bytes, |out, row| {
        serde_json::to_writer(out, &entry_from_row(row)?).map_err(|err| Error::Internal(err.into()))
    })
}

fn entry_from_row(row: &Row) -> Result<ActivityEntry, Error> {
    let action: &str = row.try_get(3)?;
    Ok(ActivityEntry {
        id: row.try_get(0)?,
        issue_id: row.try_get(1)?,
        actor_id: row.try_get(2)?,
        action: Action::parse(action)
            .ok_or_else(|| Error::Internal(format!("unknown action {action:?}").into()))?,
        changes: row.try_get(4)?,
        created_at: row.try_get(5)?,
    })
}
