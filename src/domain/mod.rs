//! The vocabulary shared by the HTTP and database layers: who is asking
//! ([`TenantContext`]), what an issue is, and the value rules both layers (and the SQL
//! CHECK constraints) apply.

mod context;
mod issue;
pub mod rules;

pub use context::{Role, TenantContext};
pub use issue::{Issue, IssuePatch, NewIssue, Priority, Status, timestamp};
