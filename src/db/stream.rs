//! The reads behind the live activity stream (migration 12): the entries after an id,
//! oldest first (`api.activity_stream`), and an instance's registration as a listener of an
//! organization (`api.watch_activity`). Both run through the scoped transaction, as the
//! caller's tenant, so row-level security and the filters are PostgreSQL's.

use time::OffsetDateTime;
use tokio_postgres::types::Type;

use super::{Database, Error, Sql};
use crate::domain::{Action, ActivityEntry, TenantContext};

const READ: Sql = Sql {
    text: "select id, issue_id, actor_id, action, changes, created_at, through, through_at \
           from api.activity_stream(after_id => $1, after_at => $2, issue_id => $3, action => $4, \
           page_size => $5, max_bytes => $6)",
    param_types: &[Type::INT8, Type::TIMESTAMPTZ, Type::INT8, Type::TEXT_ARRAY, Type::INT4, Type::INT4],
};

const WATCH: Sql = Sql {
    text: "select last_id, last_at from api.watch_activity($1, $2)",
    param_types: &[Type::TEXT, Type::INT4],
};

/// Which entries a stream sends: all of them, or those of one issue and/or some actions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    pub issue_id: Option<i64>,
    /// Any of these actions; empty: every action.
    pub actions: Vec<Action>,
}

impl Filters {
    /// The same test as the SQL's, for entries fanned out in memory.
    pub fn matches(&self, entry: &ActivityEntry) -> bool {
        self.issue_id.is_none_or(|id| id == entry.issue_id)
            && (self.actions.is_empty() || self.actions.contains(&entry.action))
    }
}

/// A position in an organization's log: an entry's id (0: before the first), and that
/// entry's time when known (it lets the next read start in its month).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub id: i64,
    pub at: Option<OffsetDateTime>,
}

/// What one read returned: the entries (oldest first), how far the log was read, and the
/// organization's last entry then (`through` is short of it when the page was full).
#[derive(Debug)]
pub struct Page {
    pub entries: Vec<ActivityEntry>,
    pub through: Position,
    pub last: i64,
}

/// The entries after `after` that pass `filters`, oldest first, at most `page_size` and
/// `max_bytes` of changes (at least one). Without `after`: no entries, and the
/// organization's last entry as `through`. An `after` past the last entry is refused
/// (`InvalidInput` naming `after_id`).
pub async fn read(
    db: &Database,
    ctx: &TenantContext,
    after: Option<Position>,
    filters: &Filters,
    page_size: i32,
    max_bytes: Option<i32>,
) -> Result<Page, Error> {
    let actions: Vec<&str> = filters.actions.iter().map(|a| a.as_str()).collect();
    let actions = (!actions.is_empty()).then_some(actions);
    let (after_id, after_at) = (after.map(|p| p.id), after.and_then(|p| p.at));
    let rows = db
        .call(ctx, &READ, &[&after_id, &after_at, &filters.issue_id, &actions, &page_size, &max_bytes])
        .await?;
    let Some((last, entries)) = rows.split_last() else {
        return Err(Error::Internal("api.activity_stream returned no position (no tenant?)".into()));
    };
    let through = Position { id: last.try_get(6)?, at: last.try_get(7)? };
    let last: i64 = last.try_get(0)?;
    let entries = entries.iter().map(super::activity::entry_from_row).collect::<Result<Vec<_>, _>>()?;
    Ok(Page { entries, through, last })
}

/// Registers this instance as streaming `ctx`'s organization for `seconds`: until then
/// every change notifies `route`. Returns the organization's last entry as of then.
pub async fn watch(db: &Database, ctx: &TenantContext, route: &str, seconds: i32) -> Result<Position, Error> {
    let rows = db.call(ctx, &WATCH, &[&route, &seconds]).await?;
    let row = rows.first().ok_or_else(|| Error::Internal("api.watch_activity returned no row".into()))?;
    Ok(Position { id: row.try_get(0)?, at: row.try_get(1)? })
}
