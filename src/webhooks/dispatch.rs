//! The delivery loop: claim due deliveries (leases), send each, record the outcome.
//!
//! Each claim is a short transaction committed before the HTTP call; the outcome is a
//! second one. Between them the instance holds no connection, only the lease: if it dies,
//! the lease runs out and any instance sends the event again (same `webhook-id`).

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use time::OffsetDateTime;
use tokio::sync::{Notify, watch};

use super::{
    client::{Attempt, Deliverer},
    schedule::{RetrySchedule, random_unit},
    signing,
};
use crate::db::{
    self, Database,
    webhooks::{AttemptRecord, ClaimLimits, Lease, Outgoing, Work},
};

/// How deliveries are made (WEBHOOK_* settings).
#[derive(Debug, Clone)]
pub struct Settings {
    pub max_in_flight: u32,
    pub max_in_flight_per_org: u32,
    pub schedule: RetrySchedule,
    pub lease: Duration,
    pub poll_interval: Duration,
}

/// Counters for /metrics.
#[derive(Debug, Default)]
pub struct Stats {
    /// Attempts by outcome: delivered, failed (retried), disabled, lost (the lease had
    /// expired), out-of-band.
    outcomes: [AtomicU64; 5],
    in_flight: AtomicU64,
    owing: AtomicU64,
    /// The age of the oldest owed entry, in milliseconds (0: none).
    oldest_ms: AtomicU64,
    claim_errors: AtomicU64,
}

/// What happened to an attempt, for /metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    Retried,
    Disabled,
    Lost,
    OutOfBand,
}

impl Outcome {
    pub const ALL: [Outcome; 5] =
        [Outcome::Delivered, Outcome::Retried, Outcome::Disabled, Outcome::Lost, Outcome::OutOfBand];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Retried => "failed_will_retry",
            Outcome::Disabled => "failed_endpoint_disabled",
            Outcome::Lost => "lease_lost",
            Outcome::OutOfBand => "out_of_band",
        }
    }
}

/// A snapshot of [`Stats`].
#[derive(Debug, Clone, Default)]
pub struct StatsSnapshot {
    pub outcomes: [u64; 5],
    pub in_flight: u64,
    pub owing: u64,
    pub oldest_seconds: f64,
    pub claim_errors: u64,
}

impl Stats {
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            outcomes: std::array::from_fn(|i| self.outcomes[i].load(Ordering::Relaxed)),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            owing: self.owing.load(Ordering::Relaxed),
            oldest_seconds: self.oldest_ms.load(Ordering::Relaxed) as f64 / 1000.0,
            claim_errors: self.claim_errors.load(Ordering::Relaxed),
        }
    }

    fn count(&self, outcome: Outcome) {
        let index = Outcome::ALL.iter().position(|o| *o == outcome).expect("listed");
        self.outcomes[index].fetch_add(1, Ordering::Relaxed);
    }
}

/// The running deliveries of one instance.
pub struct Dispatcher {
    db: Database,
    deliverer: Deliverer,
    settings: Settings,
    /// Deliveries in flight per organization.
    in_flight: Mutex<HashMap<String, u32>>,
    /// A delivery ended: a slot is free, and its endpoint may owe more.
    wake: Notify,
    stats: Arc<Stats>,
}

/// Stops the delivery loop when dropped or closed; deliveries under way are abandoned
/// (their leases run out, and any instance sends them again).
pub struct Handle {
    stop: watch::Sender<bool>,
    stats: Arc<Stats>,
}

impl Handle {
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    pub fn close(&self) {
        let _ = self.stop.send(true);
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.close();
    }
}

/// Starts delivering (nothing when WEBHOOK_MAX_IN_FLIGHT is 0: other instances send).
pub fn start(db: Database, deliverer: Deliverer, settings: Settings) -> Handle {
    let stats = Arc::new(Stats::default());
    let (stop, stopped) = watch::channel(false);
    if settings.max_in_flight > 0 {
        let dispatcher = Arc::new(Dispatcher {
            db,
            deliverer,
            settings,
            in_flight: Mutex::default(),
            wake: Notify::new(),
            stats: stats.clone(),
        });
        tokio::spawn(dispatcher.run(stopped));
    }
    Handle { stop, stats }
}

impl Dispatcher {
    async fn run(self: Arc<Self>, mut stopped: watch::Receiver<bool>) {
        let mut tasks = tokio::task::JoinSet::new();
        let mut backlog_read = Instant::now() - self.settings.poll_interval;
        loop {
            if *stopped.borrow() {
                break;
            }
            let claimed_all = self.claim_and_start(&mut tasks, &stopped).await;
            if backlog_read.elapsed() >= self.settings.poll_interval {
                backlog_read = Instant::now();
                self.read_backlog().await;
            }
            // Reap finished tasks (their panics are logged, never silent).
            while let Some(done) = tasks.try_join_next() {
                if let Err(err) = done
                    && err.is_panic()
                {
                    tracing::error!(error = %err, "a webhook delivery panicked");
                }
            }
            if claimed_all {
                // Every slot asked for was filled: more may be due right now.
                tokio::task::yield_now().await;
                continue;
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.settings.poll_interval) => {}
                _ = stopped.changed() => {}
            }
        }
        tasks.abort_all();
    }

    /// Claims as many due deliveries as there are free slots and starts each; `true` when
    /// it got all it asked for.
    async fn claim_and_start(
        self: &Arc<Self>,
        tasks: &mut tokio::task::JoinSet<()>,
        stopped: &watch::Receiver<bool>,
    ) -> bool {
        let (free, busy) = {
            let in_flight = self.in_flight.lock().expect("not poisoned");
            let total: u32 = in_flight.values().sum();
            let busy: Vec<(String, i32)> = in_flight
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(org, n)| (org.clone(), i32::try_from(*n).unwrap_or(i32::MAX)))
                .collect();
            (self.settings.max_in_flight.saturating_sub(total), busy)
        };
        if free == 0 || *stopped.borrow() {
            return false;
        }
        let limits = ClaimLimits {
            lease_ms: i32::try_from(self.settings.lease.as_millis()).unwrap_or(i32::MAX),
            max: i32::try_from(free).unwrap_or(i32::MAX),
            busy: &busy,
            per_org: i32::try_from(self.settings.max_in_flight_per_org).unwrap_or(i32::MAX),
        };
        let leases = match db::webhooks::claim(&self.db, &limits).await {
            Ok(leases) => leases,
            Err(err) => {
                self.stats.claim_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %err, "could not claim webhook deliveries; trying again");
                return false;
            }
        };
        let got_all = leases.len() as u32 >= free;
        for lease in leases {
            *self
                .in_flight
                .lock()
                .expect("not poisoned")
                .entry(lease.organization_id.clone())
                .or_default() += 1;
            self.stats.in_flight.fetch_add(1, Ordering::Relaxed);
            let dispatcher = self.clone();
            tasks.spawn(async move {
                let org = lease.organization_id.clone();
                // Ends the slot even if the delivery panics.
                let _slot = Slot { dispatcher: &dispatcher, org };
                dispatcher.deliver(lease).await;
            });
        }
        got_all
    }

    async fn read_backlog(&self) {
        const BACKLOG: db::Sql =
            db::Sql { text: "select owing, oldest_seconds from api.webhook_backlog()", param_types: &[] };
        if let Ok(rows) = self.db.call_without_tenant(&BACKLOG, &[]).await
            && let Some(row) = rows.first()
        {
            let owing: i64 = row.get(0);
            let oldest: Option<f64> = row.get(1);
            self.stats.owing.store(owing.max(0) as u64, Ordering::Relaxed);
            self.stats.oldest_ms.store((oldest.unwrap_or(0.0).max(0.0) * 1000.0) as u64, Ordering::Relaxed);
        }
    }

    async fn deliver(&self, lease: Lease) {
        if let Err(err) = self.deliver_once(&lease).await {
            // The lease runs out and the delivery is tried again.
            tracing::warn!(webhook_id = lease.webhook_id, error = %err, "webhook delivery could not be recorded");
        }
    }

    async fn deliver_once(&self, lease: &Lease) -> Result<(), db::Error> {
        let outgoing = match db::webhooks::work(&self.db, lease).await? {
            None => {
                self.stats.count(Outcome::Lost);
                return Ok(());
            }
            Some(Work::Skip { through }) => {
                db::webhooks::skip(&self.db, lease, through).await?;
                return Ok(());
            }
            Some(Work::Send(outgoing)) => outgoing,
        };
        let Outgoing { url, secrets, event_id, event_type, attempt, entry, occurred_at } = *outgoing;
        let body = match &entry {
            Some(entry) => signing::event_body(&event_type, entry),
            None => signing::ping_body(lease.webhook_id, occurred_at),
        };
        let attempted_at = OffsetDateTime::now_utc();
        let timestamp = attempted_at.unix_timestamp();
        let headers = [
            ("webhook-id", event_id.clone()),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", signing::signature(&secrets, &event_id, timestamp, &body)),
        ];
        let result = self.deliverer.attempt(&url, &headers, body.into()).await;
        let out_of_band = lease.request_id.is_some();
        let (outcome, next_attempt_at, disable_reason) = self.judge(&result, attempt, out_of_band, &event_id);
        let record = AttemptRecord {
            event_id: &event_id,
            event_type: &event_type,
            activity_id: entry.as_ref().map(|e| e.id),
            attempt,
            attempted_at,
            duration_ms: i32::try_from(result.duration.as_millis()).unwrap_or(i32::MAX),
            status: result.status.map(i32::from),
            error: result.error.as_deref(),
            succeeded: result.success(),
            next_attempt_at,
            disable_reason,
        };
        let held = db::webhooks::record(&self.db, lease, &record).await?;
        let outcome = if held { outcome } else { Outcome::Lost };
        self.stats.count(outcome);
        tracing::info!(
            organization = %lease.organization_id,
            webhook_id = lease.webhook_id,
            event_id = %event_id,
            attempt,
            status = result.status,
            error = result.error.as_deref(),
            duration_ms = record.duration_ms,
            outcome = outcome.as_str(),
            "webhook attempt"
        );
        Ok(())
    }

    /// What follows a result: the outcome, when to retry, and why to disable.
    fn judge(
        &self,
        result: &Attempt,
        attempt: i32,
        out_of_band: bool,
        event_id: &str,
    ) -> (Outcome, Option<OffsetDateTime>, Option<String>) {
        if out_of_band {
            return (Outcome::OutOfBand, None, None);
        }
        if result.success() {
            return (Outcome::Delivered, None, None);
        }
        if result.status == Some(410) {
            return (Outcome::Disabled, None, Some("the endpoint answered 410 Gone".into()));
        }
        match self.settings.schedule.wait_after(attempt, random_unit()) {
            Some(wait) => {
                let wait = wait.max(result.retry_after.unwrap_or_default());
                let next = OffsetDateTime::now_utc() + wait;
                (Outcome::Retried, Some(next), None)
            }
            None => {
                let last = match (result.status, &result.error) {
                    (Some(status), _) => format!("HTTP {status}"),
                    (None, Some(error)) => error.clone(),
                    (None, None) => "no answer".into(),
                };
                let reason = format!("{attempt} attempts to deliver {event_id} failed; the last: {last}");
                (Outcome::Disabled, None, Some(reason))
            }
        }
    }
}

/// One delivery's place in the in-flight counts, given back when it ends.
struct Slot<'a> {
    dispatcher: &'a Dispatcher,
    org: String,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut in_flight = self.dispatcher.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = in_flight.get_mut(&self.org) {
            *n -= 1;
            if *n == 0 {
                in_flight.remove(&self.org);
            }
        }
        drop(in_flight);
        self.dispatcher.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.dispatcher.wake.notify_one();
    }
}
