//! Webhooks as the API shows them: endpoints an ADMIN registers, the events sent to them,
//! and each attempt to deliver one.

use poem_openapi::{Enum, Object};
use serde::Serialize;
use time::OffsetDateTime;

use super::Action;

/// The kinds of event an endpoint may receive (`webhook.ping` is sent only when asked).
#[derive(Enum, Serialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    #[oai(rename = "issue.created")]
    #[serde(rename = "issue.created")]
    IssueCreated,
    #[oai(rename = "issue.updated")]
    #[serde(rename = "issue.updated")]
    IssueUpdated,
    #[oai(rename = "issue.deleted")]
    #[serde(rename = "issue.deleted")]
    IssueDeleted,
    #[oai(rename = "issue.restored")]
    #[serde(rename = "issue.restored")]
    IssueRestored,
}

impl EventType {
    pub const ALL: [EventType; 4] =
        [EventType::IssueCreated, EventType::IssueUpdated, EventType::IssueDeleted, EventType::IssueRestored];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::IssueCreated => "issue.created",
            EventType::IssueUpdated => "issue.updated",
            EventType::IssueDeleted => "issue.deleted",
            EventType::IssueRestored => "issue.restored",
        }
    }

    pub fn parse(value: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|e| e.as_str() == value)
    }

    /// The event an activity entry of this action is.
    pub fn of(action: Action) -> EventType {
        match action {
            Action::Created => EventType::IssueCreated,
            Action::Updated => EventType::IssueUpdated,
            Action::Deleted => EventType::IssueDeleted,
            Action::Restored => EventType::IssueRestored,
        }
    }
}

/// The type of the one event that is not an activity entry: `POST .../ping` sends it.
pub const PING: &str = "webhook.ping";

/// A webhook endpoint of the caller's organization. Its secret is shown only when it is
/// made (create, rotate-secret).
#[derive(Object, Serialize, Debug, Clone, PartialEq)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    /// The endpoint's number within the organization.
    pub id: i64,
    /// Where events are POSTed (https://).
    pub url: String,
    /// The kinds of event sent to it.
    pub events: Vec<EventType>,
    /// Free text for people.
    pub description: String,
    /// `false`: nothing is sent; events are kept and go out in order once it is `true`
    /// again.
    pub active: bool,
    /// Why the service disabled it (the endpoint answered 410 Gone, or the last retry of
    /// an event failed); null otherwise.
    pub disabled_reason: Option<String>,
    /// The ADMIN who created it.
    pub created_by: String,
    #[serde(with = "crate::domain::issue::timestamp")]
    pub created_at: OffsetDateTime,
    #[serde(with = "crate::domain::issue::timestamp")]
    pub updated_at: OffsetDateTime,
    /// After a rotation, until when the previous secret still signs (alongside the new
    /// one); null otherwise.
    #[serde(with = "crate::domain::issue::timestamp::option")]
    pub previous_secret_expires_at: Option<OffsetDateTime>,
}

/// A webhook endpoint just created, with its signing secret: shown this once only.
#[derive(Object, Serialize, Debug, Clone, PartialEq)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct CreatedWebhook {
    #[oai(flatten)]
    #[serde(flatten)]
    pub webhook: Webhook,
    /// The signing secret (`whsec_` and the base64 of 32 random bytes): keep it now, it is
    /// never shown again. Each request carries `webhook-signature`, an HMAC-SHA256 of
    /// `webhook-id.webhook-timestamp.body` with the bytes this encodes (Standard Webhooks).
    pub secret: String,
}

/// A new webhook endpoint.
#[derive(Object, Debug, Clone, PartialEq)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewWebhook {
    /// Where to POST events: an `https://` URL of at most 2,048 characters whose host is
    /// public (loopback, private, link-local and similar addresses are refused, also when
    /// a name resolves to them).
    #[oai(validator(min_length = 1, max_length = 2048))]
    pub url: String,
    /// The kinds of event to send (default: all four).
    #[oai(validator(min_items = 1, max_items = 4, unique_items))]
    pub events: Option<Vec<EventType>>,
    /// Free text for people, up to 1,000 characters (default empty).
    #[oai(validator(max_length = 1000))]
    pub description: Option<String>,
}

/// A change to a webhook endpoint: any subset of its fields.
#[derive(Object, Debug, Clone, PartialEq, Default)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookPatch {
    /// As when created.
    #[oai(validator(min_length = 1, max_length = 2048))]
    pub url: Option<String>,
    #[oai(validator(min_items = 1, max_items = 4, unique_items))]
    pub events: Option<Vec<EventType>>,
    #[oai(validator(max_length = 1000))]
    pub description: Option<String>,
    /// `false` stops deliveries (events are kept); `true` sends what is owed since, in
    /// order, and clears `disabledReason`.
    pub active: Option<bool>,
}

/// One attempt to deliver an event to an endpoint.
#[derive(Object, Serialize, Debug, Clone, PartialEq)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct WebhookDelivery {
    /// The attempt's number for this endpoint (for `.../deliveries/{deliveryId}/redeliver`).
    pub id: i64,
    /// The event's `webhook-id`: the same on every attempt of one event to this endpoint.
    pub event_id: String,
    /// `issue.created`, `issue.updated`, `issue.deleted`, `issue.restored` or `webhook.ping`.
    pub event_type: String,
    /// The activity entry sent (null for a ping).
    pub activity_id: Option<i64>,
    /// Which attempt of this event to this endpoint (1 the first).
    pub attempt: i32,
    /// A ping or redelivery an ADMIN asked for, sent outside the endpoint's order.
    pub out_of_band: bool,
    /// When the request was sent.
    #[serde(with = "crate::domain::issue::timestamp")]
    pub attempted_at: OffsetDateTime,
    /// Milliseconds until the answer, or the failure.
    pub duration_ms: i32,
    /// The HTTP status the endpoint answered; null if none came.
    pub status: Option<i32>,
    /// Why the attempt failed without a status (time-out, refused address, TLS ...).
    pub error: Option<String>,
    /// A 2xx within the time-out.
    pub succeeded: bool,
    /// When the event is tried again; null when delivered, out of band, or the endpoint
    /// was disabled.
    #[serde(with = "crate::domain::issue::timestamp::option")]
    pub next_attempt_at: Option<OffsetDateTime>,
}

/// An out-of-band attempt, queued.
#[derive(Object, Serialize, Debug, Clone, PartialEq)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct QueuedAttempt {
    /// The `webhook-id` the request will carry; its attempt appears in
    /// `GET /api/webhooks/{id}/deliveries` once made.
    pub event_id: String,
}
