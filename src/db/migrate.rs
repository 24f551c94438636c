//! Schema migrations from `sql/migrations`, applied by refinery as the owner.

use refinery::embed_migrations;
use tokio_postgres::Client;

embed_migrations!("sql/migrations");

/// Any fixed number: the advisory lock that keeps two starting instances from migrating
/// the same database at once.
const MIGRATION_LOCK: i64 = 0x7465_6e61_6e74; // "tenant"

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("could not take the migration lock")]
    Lock(#[source] tokio_postgres::Error),
    #[error(transparent)]
    Refinery(#[from] refinery::Error),
}

/// Applies every migration not yet applied. Returns the applied versions' names.
pub async fn run(client: &mut Client) -> Result<Vec<String>, MigrationError> {
    client.execute("select pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await.map_err(MigrationError::Lock)?;
    let report = migrations::runner().run_async(client).await;
    // Unlocking can only fail with the connection, which ends the lock anyway.
    let _ = client.execute("select pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).await;
    Ok(report?.applied_migrations().iter().map(|m| format!("V{}__{}", m.version(), m.name())).collect())
}

/// The newest migration version this binary carries.
pub fn latest_version() -> i32 {
    migrations::runner().get_migrations().iter().map(|m| m.version()).max().unwrap_or(0)
}
