//! The request a piece of work belongs to, for log lines written away from the HTTP layer:
//! the middleware runs each request inside [`RequestTrace::scope`], and the database layer
//! carries the trace into the task that finishes a transaction.
//!
//! One duty here: a request abandoned before its work was done (the client went away, or
//! REQUEST_TIMEOUT_MS answered 503 first) gets exactly one log line, `request abandoned`,
//! with its id and what became of its transaction: a write nobody waits for any more still
//! commits, and the line says so. It is written by whoever finishes last: the request, or
//! its last transaction.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering::Relaxed},
    },
    time::{Duration, Instant, SystemTime},
};

tokio::task_local! {
    static CURRENT: Arc<RequestTrace>;
}

/// One request, as far as its log lines are concerned.
#[derive(Debug)]
pub struct RequestTrace {
    id: Box<str>,
    state: Mutex<State>,
    /// The request's body is being received: a time-out now is the client's doing.
    receiving_body: AtomicBool,
}

#[derive(Debug, Default)]
struct State {
    /// Why the request ended without its response, once it did.
    gone: Option<&'static str>,
    /// Transactions started and not yet ended.
    open: u32,
    /// How the last transaction that ended, ended (`None`: none ended).
    committed: Option<bool>,
    logged: bool,
    /// Time spent in transactions that ended (the `Server-Timing` header's `db`).
    database_time: Duration,
    /// Each ended transaction (start, duration, committed), when spans are exported.
    transactions: Vec<(SystemTime, Duration, bool)>,
}

/// When a transaction started; the wall clock only when spans are exported.
#[derive(Debug, Clone, Copy)]
pub struct TransactionClock {
    started: Instant,
    wall: Option<SystemTime>,
}

impl RequestTrace {
    pub fn new(id: &str) -> Arc<RequestTrace> {
        Arc::new(RequestTrace {
            id: id.into(),
            state: Mutex::default(),
            receiving_body: AtomicBool::new(false),
        })
    }

    /// Runs `work` as this request's.
    pub async fn scope<F: Future>(self: Arc<Self>, work: F) -> F::Output {
        CURRENT.scope(self, work).await
    }

    /// The trace of the request the current task serves, if any.
    pub fn current() -> Option<Arc<RequestTrace>> {
        CURRENT.try_with(Arc::clone).ok()
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn receiving_body(&self, receiving: bool) {
        self.receiving_body.store(receiving, Relaxed);
    }

    /// Whether the request was still receiving its body (see [`Self::receiving_body`]).
    pub fn is_receiving_body(&self) -> bool {
        self.receiving_body.load(Relaxed)
    }

    /// The request was given up before its work was done (`reason`: "client gone",
    /// "timed out", "request body too slow").
    pub fn abandoned(&self, reason: &'static str) {
        let mut state = self.lock();
        state.gone.get_or_insert(reason);
        self.log_if_done(&mut state);
    }

    pub fn transaction_started(&self) -> TransactionClock {
        self.lock().open += 1;
        TransactionClock { started: Instant::now(), wall: crate::telemetry::enabled().then(SystemTime::now) }
    }

    pub fn transaction_ended(&self, clock: TransactionClock, committed: bool) {
        let took = clock.started.elapsed();
        let mut state = self.lock();
        state.open = state.open.saturating_sub(1);
        state.committed = Some(committed);
        state.database_time += took;
        if let Some(wall) = clock.wall {
            state.transactions.push((wall, took, committed));
        }
        self.log_if_done(&mut state);
    }

    /// Time spent in the request's transactions so far (`None`: it had none).
    pub fn database_time(&self) -> Option<Duration> {
        let state = self.lock();
        state.committed.is_some().then_some(state.database_time)
    }

    /// The request's transactions, for its span (see `telemetry`).
    pub fn transactions(&self) -> Vec<(SystemTime, Duration, bool)> {
        std::mem::take(&mut self.lock().transactions)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn log_if_done(&self, state: &mut State) {
        let Some(reason) = state.gone else { return };
        if state.open > 0 || state.logged {
            return;
        }
        state.logged = true;
        let transaction = match state.committed {
            None => "none",
            Some(true) => "committed",
            Some(false) => "not committed",
        };
        tracing::info!(request_id = &*self.id, reason, transaction, "request abandoned");
    }
}
