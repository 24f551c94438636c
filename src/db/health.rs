//! What `/readyz` asks the database: is it reachable through the request pool, as the
//! request role, and which migrations does it have.

use super::{Database, Error, scoped::Sql};

/// A standby (after a fail-over) or `default_transaction_read_only` takes reads but no
/// writes: not ready, since every write would fail.
const HEALTH: Sql = Sql {
    text: "select api.schema_version(), \
           pg_catalog.pg_is_in_recovery() or pg_catalog.current_setting('transaction_read_only') = 'on'",
    param_types: &[],
};

/// What `/readyz` needs to know of the database.
pub struct Health {
    /// The newest migration applied (`api.schema_version()`, migration 3).
    pub schema_version: i32,
    /// Whether a write would be refused (SQLSTATE 25006).
    pub read_only: bool,
}

pub async fn check(db: &Database) -> Result<Health, Error> {
    let rows = db.call_without_tenant(&HEALTH, &[]).await?;
    let row = rows.first().ok_or_else(|| Error::Internal("the health check returned no row".into()))?;
    let version: Option<i32> = row.try_get(0)?;
    Ok(Health { schema_version: version.unwrap_or(0), read_only: row.try_get(1)? })
}
