//! Everything that touches PostgreSQL. Requests reach it only through [`Database::call`]
//! (the scoped transaction in `scoped.rs`); the rest sets the database up.

pub mod activity;
mod error;
pub mod health;
pub mod issues;
pub mod keys;
mod listen;
pub mod live;
pub mod maintenance;
pub mod migrate;
mod pool;
mod reconnect;
mod safety;
mod scoped;
mod shares;
pub mod stream;
pub mod tls;
pub mod webhooks;

pub use error::Error;
pub use listen::CHANNEL as ACTIVITY_CHANNEL;
pub use pool::{ConnectionTarget, PoolSettings, RequestRole, connect_owner, request_pool};
pub use safety::{RoleProblem, verify_request_role};
#[cfg(feature = "test-hooks")]
pub use scoped::PANIC_MID_PIPELINE;
pub use scoped::{ContextMode, Database, SET_CONTEXT, Sql, StatementMode, push_literal};
pub use shares::Shares;
pub use tls::Endpoint;

/// The login (or switched-to) role every request runs as. Created by migration 1.
pub const API_ROLE: &str = "tenantry_api";
/// The role webhook deliveries run as. Created by migration 13.
pub const WEBHOOKS_ROLE: &str = "tenantry_webhooks";
/// The read-only inspection role. Created by migration 1.
pub const DBA_ROLE: &str = "tenantry_dba";
