//! What can go wrong in the database, decided from the SQLSTATE in one table.
//! `http::error` turns these into statuses; nothing here knows about HTTP.

use std::error::Error as StdError;

use tokio_postgres::error::SqlState;

type BoxError = Box<dyn StdError + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// TN404: the organization has no such row (another tenant's row looks the same).
    #[error("{0}")]
    NotFound(String),
    /// TN403: the role in `app.role` may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// TN400, or a data exception (class 22): the input itself is unacceptable.
    /// `column` is the offending column when PostgreSQL names one.
    #[error("invalid input: {message}")]
    InvalidInput { column: Option<String>, message: String },
    /// 23514: a CHECK constraint refused a value.
    #[error("check constraint {constraint} refused a value")]
    CheckViolation { constraint: String },
    /// TN412: the row is not at the version the caller expected (an HTTP If-Match);
    /// `current_version` is the version it is at.
    #[error("{message}")]
    Stale { message: String, current_version: Option<i64> },
    /// TN422: an idempotency key already used for a different request.
    #[error("{0}")]
    IdempotencyKeyReused(String),
    /// TN409, 23505 and friends: the write conflicts with the current state or with
    /// existing data.
    #[error("conflict: {0}")]
    Conflict(String),
    /// TN460: the organization has as many issues as its quota allows.
    #[error("{0}")]
    QuotaExceeded(String),
    /// TN429: the organization made as many changes today (UTC) as its quota allows.
    #[error("{0}")]
    DailyQuotaExhausted(String),
    /// The organization already holds its share of the request pool, and none came free
    /// within ORG_QUEUE_TIMEOUT_MS.
    #[error("this organization already has {share} requests at the database; retry shortly")]
    OverShare { organization: String, share: usize },
    /// The database cannot be reached or is shutting down, overloaded or timed out:
    /// worth retrying later.
    #[error("database unavailable")]
    Unavailable(#[source] BoxError),
    /// A bug or a broken invariant: logged, never shown to the client.
    #[error("unexpected database error")]
    Internal(#[source] BoxError),
}

impl Error {
    /// The SQLSTATE PostgreSQL answered with, if this came from a server answer.
    pub fn sqlstate(&self) -> Option<&str> {
        let source = match self {
            Error::Unavailable(source) | Error::Internal(source) => source,
            _ => return None,
        };
        Some(source.downcast_ref::<tokio_postgres::Error>()?.code()?.code())
    }
}

/// SQLSTATEs our functions raise on purpose (sql/ERRORS.md).
const NOT_FOUND: &str = "TN404";
const FORBIDDEN: &str = "TN403";
const INVALID_INPUT: &str = "TN400";
const STALE: &str = "TN412";
const KEY_REUSED: &str = "TN422";
const CONFLICT: &str = "TN409";
const QUOTA_EXCEEDED: &str = "TN460";
const DAILY_QUOTA_EXHAUSTED: &str = "TN429";
const NO_TENANT: &str = "TN401";

impl From<tokio_postgres::Error> for Error {
    fn from(err: tokio_postgres::Error) -> Self {
        let Some(db) = err.as_db_error() else {
            // No server response: the connection broke, or could not be made.
            return if err.is_closed() || err.source().is_some_and(|s| s.is::<std::io::Error>()) {
                Error::Unavailable(err.into())
            } else {
                Error::Internal(err.into())
            };
        };
        let code = db.code().code();
        match code {
            NOT_FOUND => Error::NotFound(db.message().to_owned()),
            FORBIDDEN => Error::Forbidden(db.message().to_owned()),
            // app.raise_stale writes DETAIL as `current_version=N`.
            STALE => Error::Stale {
                message: db.message().to_owned(),
                current_version: db
                    .detail()
                    .and_then(|detail| detail.strip_prefix("current_version="))
                    .and_then(|version| version.parse().ok()),
            },
            KEY_REUSED => Error::IdempotencyKeyReused(db.message().to_owned()),
            CONFLICT => Error::Conflict(db.message().to_owned()),
            QUOTA_EXCEEDED => Error::QuotaExceeded(db.message().to_owned()),
            DAILY_QUOTA_EXHAUSTED => Error::DailyQuotaExhausted(db.message().to_owned()),
            // A write reached the database without a tenant: every request sets one, so
            // this is the service's bug, never the client's fault.
            NO_TENANT => Error::Internal(err.into()),
            INVALID_INPUT => Error::InvalidInput {
                column: db.column().map(str::to_owned),
                message: db.message().to_owned(),
            },
            _ if *db.code() == SqlState::CHECK_VIOLATION => {
                Error::CheckViolation { constraint: db.constraint().unwrap_or_default().to_owned() }
            }
            _ if *db.code() == SqlState::UNIQUE_VIOLATION || *db.code() == SqlState::EXCLUSION_VIOLATION => {
                Error::Conflict(db.message().to_owned())
            }
            // Data exceptions: values PostgreSQL cannot take (e.g. NUL in text).
            _ if code.starts_with("22") => Error::InvalidInput {
                column: db.column().map(str::to_owned),
                message: "a value cannot be stored".to_owned(),
            },
            // A read-only database (a standby after a fail-over, default_transaction_read_only)
            // refuses writes until it is writable again: not the request's fault, nor a bug.
            _ if *db.code() == SqlState::READ_ONLY_SQL_TRANSACTION => Error::Unavailable(err.into()),
            // Connection exceptions, operator intervention (shutdown, statement timeout,
            // cannot connect now), insufficient resources, and transaction rollbacks
            // (serialization failure, deadlock): transient, retry later.
            _ if ["08", "57", "53", "40"].iter().any(|class| code.starts_with(class)) => {
                Error::Unavailable(err.into())
            }
            _ => Error::Internal(err.into()),
        }
    }
}

impl From<deadpool_postgres::PoolError> for Error {
    fn from(err: deadpool_postgres::PoolError) -> Self {
        use deadpool_postgres::PoolError;
        match err {
            PoolError::Backend(pg) => pg.into(),
            // Waiting for a connection or for PostgreSQL to accept one took too long.
            PoolError::Timeout(_) => Error::Unavailable(err.into()),
            PoolError::Closed | PoolError::NoRuntimeSpecified | PoolError::PostCreateHook(_) => {
                Error::Internal(err.into())
            }
        }
    }
}
