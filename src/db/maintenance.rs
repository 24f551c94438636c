//! Upkeep of the partitioned activity log (migration 6): monthly partitions made ahead of
//! time and, with a retention, old months dropped whole.
//!
//! It runs as the schema owner, on a short-lived connection of its own, never in a
//! request: partitions are tables, and the API role owns nothing (the server refuses to
//! start if it does), so it cannot create them. Each instance runs it at start and every
//! hour; `app.maintain_activity_partitions` lets one caller at a time do the work (an
//! advisory lock) and waits at most two seconds for a table lock, so a busy log is never
//! stalled: the next round retries. `tenantry maintain` runs one round (for cron).

use std::time::Duration;

use super::connect_owner;

/// How far ahead partitions exist, and how long entries are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActivityUpkeep {
    /// Months after the current one that must already have a partition.
    pub months_ahead: u32,
    /// Whole months older than this are dropped; 0 keeps everything.
    pub retention_months: u32,
}

/// How often each instance runs the upkeep, and how soon it retries a failed round.
pub const EVERY: Duration = Duration::from_secs(3600);
pub const RETRY_AFTER: Duration = Duration::from_secs(60);

/// One round: returns what it did ("created activity_logs_y2027m02", "dropped ..."), or
/// nothing when another instance holds the lock.
pub async fn run_once(
    owner: impl Into<super::Endpoint>,
    upkeep: ActivityUpkeep,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let client = connect_owner(owner).await?;
    let months_ahead = i32::try_from(upkeep.months_ahead).unwrap_or(i32::MAX);
    let retention = i32::try_from(upkeep.retention_months).unwrap_or(i32::MAX);
    let rows =
        client.query("select app.maintain_activity_partitions($1, $2)", &[&months_ahead, &retention]).await?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// Runs [`run_once`] now and then every [`EVERY`] (after a failure: [`RETRY_AFTER`]), logging
/// what it did, until the task is dropped.
pub async fn run_periodically(owner: super::Endpoint, upkeep: ActivityUpkeep) {
    loop {
        let wait = match run_once(&owner, upkeep).await {
            Ok(done) => {
                for action in done {
                    tracing::info!(action, "activity partitions");
                }
                EVERY
            }
            Err(err) => {
                tracing::warn!(error = %err, retry_in = ?RETRY_AFTER, "activity partition upkeep failed");
                RETRY_AFTER
            }
        };
        tokio::time::sleep(wait).await;
    }
}
