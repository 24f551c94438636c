//! The vocabulary shared by the HTTP and database layers: who is asking
//! ([`TenantContext`]), what an issue and an activity entry are, how lists are asked for
//! and paged, and the value rules both layers (and the SQL CHECK constraints) apply.

mod activity;
mod context;
mod issue;
pub mod page;
pub mod rules;
mod webhook;

pub use activity::{Action, ActivityEntry};
pub use context::{Role, TenantContext};
pub use issue::{Issue, IssuePatch, IssueRef, NewIssue, Priority, Status, timestamp};
pub use page::{ActivityQuery, IssueQuery, IssueSort};
pub use webhook::{
    CreatedWebhook, EventType, NewWebhook, PING, QueuedAttempt, Webhook, WebhookDelivery, WebhookPatch,
};
