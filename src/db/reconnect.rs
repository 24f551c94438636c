//! Backing off while the database cannot be reached. Without it, during an outage every
//! request made its own connection attempt (thousands of `FATAL` lines a minute in the
//! server's log, and a crowd of connects the moment it comes back). After a failed
//! connect, requests are answered 503 at once, and one request at a time may try again,
//! after a delay that doubles from [`FIRST_DELAY`] up to [`LONGEST_DELAY`].

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use deadpool_postgres::{PoolError, TimeoutType};

use super::Error;

const FIRST_DELAY: Duration = Duration::from_millis(100);
const LONGEST_DELAY: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
pub struct Reconnect(Mutex<Option<Outage>>);

#[derive(Debug)]
struct Outage {
    delay: Duration,
    next_try: Instant,
    trying: bool,
}

/// Leave to use the pool; tells [`Reconnect`] how a connect attempt went.
pub struct Attempt {
    reconnect: Arc<Reconnect>,
    /// This request is the one allowed to try during an outage.
    trial: bool,
}

impl Reconnect {
    /// Whether a request may go to the pool now; during an outage, only one in a while.
    pub fn admit(self: &Arc<Self>) -> Result<Attempt, Error> {
        let mut state = self.lock();
        let trial = match state.as_mut() {
            None => false,
            Some(outage) if !outage.trying && Instant::now() >= outage.next_try => {
                outage.trying = true;
                true
            }
            Some(outage) => {
                let wait = outage.next_try.saturating_duration_since(Instant::now());
                return Err(Error::Unavailable(
                    format!("the database could not be reached; reconnecting (next attempt in {wait:?})")
                        .into(),
                ));
            }
        };
        Ok(Attempt { reconnect: self.clone(), trial })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Outage>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Attempt {
    /// What the pool answered: a failed connect starts (or prolongs) an outage, anything
    /// else ends it.
    pub fn observe<T>(mut self, result: &Result<T, PoolError>) {
        let failed = matches!(result, Err(err) if is_connect_failure(err));
        let mut state = self.reconnect.lock();
        match (failed, state.as_mut()) {
            (false, _) => *state = None,
            (true, None) => {
                tracing::warn!("the database cannot be reached; backing off reconnects");
                *state = Some(Outage {
                    delay: FIRST_DELAY,
                    next_try: Instant::now() + FIRST_DELAY,
                    trying: false,
                });
            }
            (true, Some(outage)) => {
                if self.trial {
                    outage.delay = (outage.delay * 2).min(LONGEST_DELAY);
                    outage.trying = false;
                }
                outage.next_try = Instant::now() + outage.delay;
            }
        }
        self.trial = false;
    }
}

impl Drop for Attempt {
    /// A trial abandoned before the pool answered (the request went away): let another try.
    fn drop(&mut self) {
        if self.trial
            && let Some(outage) = self.reconnect.lock().as_mut()
        {
            outage.trying = false;
        }
    }
}

/// A new connection could not be made (refused, reset, timed out, the server starting
/// or shutting down), as opposed to a pool that is merely busy.
fn is_connect_failure(err: &PoolError) -> bool {
    match err {
        PoolError::Backend(err) => {
            err.as_db_error().is_none_or(|db| matches!(db.code().code(), "57P01" | "57P02" | "57P03"))
        }
        PoolError::Timeout(TimeoutType::Create) => true,
        _ => false,
    }
}
