//! What `/readyz` asks the database: is it reachable through the request pool, as the
//! request role, and which migrations does it have.

use super::{Database, Error, scoped::Sql};

const SCHEMA_VERSION: Sql = Sql { text: "select api.schema_version()", param_types: &[] };

/// The newest migration applied to the database (`api.schema_version()`, migration 3).
pub async fn schema_version(db: &Database) -> Result<i32, Error> {
    let rows = db.call_without_tenant(&SCHEMA_VERSION, &[]).await?;
    let version: Option<i32> = rows.first().map(|row| row.try_get(0)).transpose()?.flatten();
    Ok(version.unwrap_or(0))
}
