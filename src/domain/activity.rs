//! The activity log as the API shows it: who changed which issue, how, and when.

use poem_openapi::{Enum, Object};
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;

/// What happened to the issue.
#[derive(Enum, Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Created,
    Updated,
    Deleted,
    Restored,
}

impl Action {
    pub const ALL: [Action; 4] = [Action::Created, Action::Updated, Action::Deleted, Action::Restored];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Updated => "updated",
            Action::Deleted => "deleted",
            Action::Restored => "restored",
        }
    }

    pub fn parse(value: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == value)
    }
}

/// One change to one issue, written in the transaction of the change and never altered.
#[derive(Object, Serialize, Debug, Clone, PartialEq)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct ActivityEntry {
    /// The entry's number within the organization: entries are numbered in the order
    /// their changes were committed.
    pub id: i64,
    /// The number of the issue that changed (it may since have been deleted).
    pub issue_id: i64,
    /// The user who made the change.
    pub actor_id: String,
    pub action: Action,
    /// For `updated`: each changed field with its old and new value, e.g.
    /// `{"status": {"from": "OPEN", "to": "DONE"}}`. For `created`, `deleted` and
    /// `restored`: the whole issue as it was then (with its `version`).
    pub changes: Value,
    /// When the change was made (UTC, microseconds).
    #[serde(with = "super::issue::timestamp")]
    pub created_at: OffsetDateTime,
}
