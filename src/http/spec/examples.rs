//! The examples the OpenAPI document shows (and Swagger UI pre-fills), built from the real
//! types and error paths, so they are exactly what the service sends and accepts: an
//! issue is serialized by the same serde code as a response, a 400 comes from the real
//! body reader, a 401 from the real header (or token) check.
//!
//! [`for_operation`] holds the per-operation examples; [`problem`] a generic example for
//! each error status, used where an operation has no example of its own. `spec/mod.rs`
//! puts them into the document, and a test lists every operation, status, parameter or
//! header still without one.

use poem::{
    error::ResponseError,
    http::{HeaderMap, header::WWW_AUTHENTICATE},
};
use serde_json::{Map, Value, json};
use time::macros::datetime;

use crate::http::{
    error::{ApiError, parameter_error},
    extract::{
        auth::{self, Authenticator, ORGANIZATION_HEADER, ROLE_HEADER, USER_HEADER},
        json::{FromJsonObject, MAX_BODY_BYTES},
        preconditions::EntityTags,
    },
};
use crate::{
    config::{AuthMode, JwtConfig},
    db,
    domain::{Action, ActivityEntry, Issue, IssuePatch, NewIssue, Priority, Status},
};

/// One named example of a body, as OpenAPI's Example Object.
pub struct Example {
    pub name: &'static str,
    pub summary: &'static str,
    pub value: Value,
}

impl Example {
    fn new(name: &'static str, summary: &'static str, value: Value) -> Self {
        Example { name, summary, value }
    }

    fn problem(name: &'static str, summary: &'static str, error: ApiError) -> Self {
        Example::new(name, summary, serde_json::to_value(error.problem()).expect("a problem serializes"))
    }
}

/// Everything one operation shows as examples.
#[derive(Default)]
pub struct OperationExamples {
    /// Parameter name and example value.
    pub parameters: Vec<(&'static str, Value)>,
    pub request: Vec<Example>,
    /// Status and the examples of its body.
    pub responses: Vec<(u16, Vec<Example>)>,
}

impl OperationExamples {
    pub fn response(&self, status: u16) -> Option<&[Example]> {
        self.responses.iter().find(|(s, _)| *s == status).map(|(_, examples)| examples.as_slice())
    }

    pub fn parameter(&self, name: &str) -> Option<&Value> {
        self.parameters.iter().find(|(n, _)| *n == name).map(|(_, value)| value)
    }
}

/// The examples of one operation, by operation id. An operation missing here gets only
/// the generic problem examples (and the completeness test names what it lacks).
/// Only required parameters get examples: Swagger UI puts a parameter's example in its
/// "Try it out" form, and an optional one (a filter, a cursor, `If-Match`, an
/// `Idempotency-Key`) must stay empty there.
pub fn for_operation(operation_id: &str) -> OperationExamples {
    let id = || vec![("id", json!(1))];
    match operation_id {
        "createIssue" => OperationExamples {
            request: vec![
                Example::new(
                    "minimal",
                    "Title and description; status OPEN and priority MEDIUM by default",
                    json!({"title": "Login page returns 500", "description": "Open /login and submit: 500."}),
                ),
                Example::new(
                    "complete",
                    "Every field a client may set",
                    json!({
                        "title": "Invoice PDF is blank",
                        "description": "Since Monday every invoice PDF is an empty page.\nSteps: open any invoice, press Download.",
                        "status": "IN_PROGRESS",
                        "priority": "HIGH",
                        "assigneeId": "mo"
                    }),
                ),
            ],
            responses: vec![
                (
                    201,
                    vec![Example::new(
                        "created",
                        "The new issue, number 1 of its organization",
                        issue_json(new_issue()),
                    )],
                ),
                (
                    400,
                    vec![invalid_body_example(
                        json!({"title": " ", "priority": "URGENT", "organizationId": "globex"}),
                    )],
                ),
            ],
            ..Default::default()
        },
        "listIssues" => OperationExamples {
            responses: vec![(
                200,
                vec![
                    Example::new(
                        "issues",
                        "Two issues, newest first",
                        json!([issue_json(second_issue()), issue_json(new_issue())]),
                    ),
                    Example::new("none", "An organization without issues", json!([])),
                ],
            )],
            ..Default::default()
        },
        "getIssue" => OperationExamples {
            parameters: id(),
            responses: vec![
                (200, vec![Example::new("issue", "One issue", issue_json(new_issue()))]),
                (400, vec![invalid_id_example()]),
            ],
            ..Default::default()
        },
        "updateIssue" => OperationExamples {
            parameters: id(),
            request: vec![
                Example::new(
                    "start",
                    "Start work and assign it",
                    json!({"status": "IN_PROGRESS", "assigneeId": "mo"}),
                ),
                Example::new("unassign", "null removes the assignee", json!({"assigneeId": null})),
                Example::new(
                    "retitle",
                    "Change only the title",
                    json!({"title": "Login page returns 500 on Safari"}),
                ),
                Example::new("nothing", "An empty patch changes and records nothing", json!({})),
            ],
            responses: vec![
                (
                    200,
                    vec![Example::new("updated", "The issue after the change", issue_json(updated_issue()))],
                ),
                (400, vec![invalid_patch_example()]),
            ],
        },
        "deleteIssue" => OperationExamples {
            parameters: id(),
            responses: vec![(400, vec![invalid_id_example()])],
            ..Default::default()
        },
        "restoreIssue" => OperationExamples {
            parameters: vec![("id", json!(2))],
            responses: vec![
                (
                    200,
                    vec![Example::new(
                        "restored",
                        "Back under its own number, as it was when deleted; updatedAt is now",
                        issue_json(restored_issue()),
                    )],
                ),
                (
                    409,
                    vec![Example::problem(
                        "not deleted",
                        "The issue exists: there is nothing to restore",
                        db::Error::Conflict("issue 2 is not deleted".into()).into(),
                    )],
                ),
                (400, vec![invalid_id_example()]),
            ],
            ..Default::default()
        },
        "listIssueActivity" => OperationExamples {
            parameters: id(),
            responses: vec![(
                200,
                vec![Example::new(
                    "history",
                    "Issue 1's history, oldest first",
                    json!([entry_json(created_entry()), entry_json(updated_entry())]),
                )],
            )],
            ..Default::default()
        },
        "listActivity" => OperationExamples {
            responses: vec![(
                200,
                vec![
                    Example::new(
                        "feed",
                        "The organization's activity, newest first",
                        json!([entry_json(updated_entry()), entry_json(created_entry())]),
                    ),
                    Example::new("none", "Nothing matches", json!([])),
                ],
            )],
            ..Default::default()
        },
        "streamActivity" => OperationExamples {
            responses: vec![
                (
                    200,
                    vec![Example::new(
                        "events",
                        "The data of two events (`id: 1` and `id: 3`, each `event: activity`)",
                        json!([entry_json(created_entry()), entry_json(updated_entry())]),
                    )],
                ),
                (
                    400,
                    vec![Example::problem(
                        "past the end",
                        "Last-Event-ID names an entry the organization does not have (yet)",
                        ApiError::invalid(
                            "Last-Event-ID",
                            "9 is past the organization's last activity entry, 3",
                        ),
                    )],
                ),
                (
                    429,
                    vec![Example::problem(
                        "streams",
                        "The organization has STREAM_MAX_PER_ORG streams open on this instance",
                        ApiError::TooManyStreams(
                            "the organization has as many activity streams open on this instance as it \
                             may (STREAM_MAX_PER_ORG): close one, or retry later"
                                .into(),
                        ),
                    )],
                ),
            ],
            ..Default::default()
        },
        "createWebhook" => OperationExamples {
            request: vec![
                Example::new(
                    "everything",
                    "Every kind of event, to one URL",
                    json!({"url": "https://hooks.example.com/tenantry", "description": "Chat notifier"}),
                ),
                Example::new(
                    "some kinds",
                    "Only new and deleted issues",
                    json!({"url": "https://ci.example.com/hooks/issues", "events": ["issue.created", "issue.deleted"]}),
                ),
            ],
            responses: vec![
                (
                    201,
                    vec![Example::new(
                        "created",
                        "The endpoint and its secret, shown this once",
                        with_secret(),
                    )],
                ),
                (
                    400,
                    vec![Example::problem(
                        "http",
                        "Only https:// URLs, to public addresses",
                        ApiError::invalid("url", "url must use https://"),
                    )],
                ),
            ],
            ..Default::default()
        },
        "listWebhooks" => OperationExamples {
            responses: vec![(
                200,
                vec![
                    Example::new(
                        "endpoints",
                        "The organization's endpoints",
                        json!([webhook_json(webhook())]),
                    ),
                    Example::new("none", "No endpoints yet", json!([])),
                ],
            )],
            ..Default::default()
        },
        "getWebhook" | "deleteWebhook" => OperationExamples {
            parameters: id(),
            responses: vec![
                (
                    200,
                    vec![Example::new(
                        "endpoint",
                        "One endpoint (never its secret)",
                        webhook_json(webhook()),
                    )],
                ),
                (400, vec![invalid_id_example()]),
            ],
            ..Default::default()
        },
        "updateWebhook" => OperationExamples {
            parameters: id(),
            request: vec![
                Example::new("pause", "Stop sending; events are kept", json!({"active": false})),
                Example::new("resume", "Send what is owed since, in order", json!({"active": true})),
                Example::new("kinds", "Only updates from now on", json!({"events": ["issue.updated"]})),
            ],
            responses: vec![
                (
                    200,
                    vec![Example::new(
                        "paused",
                        "The endpoint after the change",
                        webhook_json(crate::domain::Webhook { active: false, ..webhook() }),
                    )],
                ),
                (400, vec![invalid_id_example()]),
            ],
        },
        "rotateWebhookSecret" => OperationExamples {
            parameters: id(),
            responses: vec![
                (
                    200,
                    vec![Example::new(
                        "rotated",
                        "The new secret, shown this once; the old one signs 24 h more",
                        {
                            let mut value = with_secret();
                            value["previousSecretExpiresAt"] = json!("2026-02-02T09:30:00.000000Z");
                            value
                        },
                    )],
                ),
                (400, vec![invalid_id_example()]),
            ],
            ..Default::default()
        },
        "listWebhookDeliveries" => OperationExamples {
            parameters: id(),
            responses: vec![(
                200,
                vec![Example::new("attempts", "A failed attempt and its retry", deliveries())],
            )],
            ..Default::default()
        },
        "redeliverWebhookEvent" => OperationExamples {
            parameters: vec![("id", json!(1)), ("deliveryId", json!(1))],
            responses: vec![
                (202, vec![Example::new("queued", "Sent shortly", json!({"eventId": "msg_1_1"}))]),
                (400, vec![invalid_id_example()]),
            ],
            ..Default::default()
        },
        "pingWebhook" => OperationExamples {
            parameters: id(),
            responses: vec![
                (202, vec![Example::new("queued", "Sent shortly", json!({"eventId": "msg_1_ping_1"}))]),
                (400, vec![invalid_id_example()]),
            ],
            ..Default::default()
        },
        _ => OperationExamples::default(),
    }
}

/// A generic example for an error status, from the error the service really raises (in
/// `mode`: a 401 says what is wrong with the headers, or with the token).
pub fn problem(status: u16, mode: AuthMode) -> Option<Example> {
    Some(match status {
        400 => invalid_body_example(json!({"title": ""})),
        401 if mode == AuthMode::Jwt => {
            Example::problem("no token", "No `Authorization: Bearer` header", missing_token_error())
        }
        401 => {
            let mut headers = HeaderMap::new();
            headers.insert(ORGANIZATION_HEADER, "acme".parse().expect("valid"));
            headers.insert(ROLE_HEADER, "admin".parse().expect("valid"));
            let error = auth::tenant_from_headers(&headers).expect_err("a missing user and a bad role");
            debug_assert!(!headers.contains_key(USER_HEADER));
            Example::problem(
                "unauthenticated",
                "x-user-id missing and x-user-role not ADMIN or MEMBER",
                error,
            )
        }
        403 => Example::problem("member", "A MEMBER tried it", auth::admin_only_error()),
        404 => Example::problem(
            "missing",
            "No such issue in this organization (another organization's looks the same)",
            db::Error::NotFound("issue 42 not found".into()).into(),
        ),
        413 => Example::problem(
            "too large",
            "A body over 1 MiB",
            ApiError::PayloadTooLarge { limit: MAX_BODY_BYTES },
        ),
        408 => Example::problem(
            "slow body",
            "The body trickled in past REQUEST_TIMEOUT_MS",
            ApiError::RequestTimeout,
        ),
        415 => Example::problem(
            "not json",
            "A body sent as text/plain",
            ApiError::UnsupportedMediaType("the body must be application/json, not text/plain".into()),
        ),
        412 => Example::problem(
            "stale",
            "If-Match named version 1; the issue is at version 2 (the ETag header says so)",
            example_tags().precondition_failed(
                db::Error::Stale {
                    message: "issue 1 is at version 2, not 1".into(),
                    current_version: Some(2),
                },
                "acme",
                1,
            ),
        ),
        422 => Example::problem(
            "key reused",
            "The Idempotency-Key came with a different body within 24 hours",
            db::Error::IdempotencyKeyReused("this Idempotency-Key was used for a different request".into())
                .into(),
        ),
        429 => Example::problem(
            "rate limited",
            "The organization is over its rate limit",
            ApiError::TooManyRequests { scope: "organization", retry_after: 1 },
        ),
        500 => Example::problem(
            "internal",
            "A bug: the cause is logged, never sent",
            ApiError::Internal("the cause, logged only".into()),
        ),
        503 => Example::problem(
            "unavailable",
            "PostgreSQL cannot be reached",
            db::Error::Unavailable("connection refused".into()).into(),
        ),
        _ => return None,
    })
}

/// Tags made with a fixed key: they look like a real server's (whose key is its own).
fn example_tags() -> EntityTags {
    EntityTags::new(&[0x5a; 32])
}

/// An example value for a response header, by its (case-insensitive) name, as a server
/// in `mode` sends it.
pub fn header(name: &str, mode: AuthMode) -> Option<Value> {
    Some(match name.to_ascii_lowercase().as_str() {
        "www-authenticate" if mode == AuthMode::Jwt => {
            let response = missing_token_error().as_response();
            let challenge = response.headers().get(WWW_AUTHENTICATE).expect("a 401 names its scheme");
            json!(challenge.to_str().expect("an ASCII challenge"))
        }
        "location" => json!("/api/issues/1"),
        "retry-after" => json!(2),
        "etag" => json!(example_tags().tag("acme", 1, 1)),
        "idempotent-replayed" => json!(true),
        "www-authenticate" => json!(crate::http::error::HEADERS_CHALLENGE),
        "ratelimit-limit" => json!(1000),
        "ratelimit-remaining" => json!(0),
        "ratelimit-reset" => json!(1),
        "link" => json!(format!("</api/issues?limit=2&cursor={CURSOR}>; rel=\"next\"")),
        _ => return None,
    })
}

/// AUTH_MODE=jwt's answer to a call without a token, from the real check.
fn missing_token_error() -> ApiError {
    let config = JwtConfig {
        jwt_secret: Some("a secret for the examples only, never a server's".into()),
        jwt_audience_optional: true,
        ..JwtConfig::default()
    };
    let authenticator = Authenticator::new(AuthMode::Jwt, &config).expect("a usable example key");
    authenticator.authenticate(&HeaderMap::new()).expect_err("no token")
}

fn invalid_body_example(body: Value) -> Example {
    let Value::Object(object) = body else { unreachable!("examples are objects") };
    let errors = NewIssue::from_json_object(object).expect_err("an invalid example body");
    Example::problem("invalid", "Every offending field is named", ApiError::invalid_fields(errors))
}

fn invalid_patch_example() -> Example {
    let object: Map<String, Value> =
        serde_json::from_value(json!({"status": "CLOSED", "id": 7})).expect("an object");
    let errors = IssuePatch::from_json_object(object).expect_err("an invalid patch");
    Example::problem("invalid", "Every offending field is named", ApiError::invalid_fields(errors))
}

fn invalid_id_example() -> Example {
    Example::problem("bad id", "The id is not a positive 64-bit integer", parameter_error("id", "abc"))
}

/// A cursor as the service writes them (base64url of the page position); opaque to clients.
const CURSOR: &str = "WzEsIi1jcmVhdGVkQXQiLCI4ZjE0ZTQ1ZiIsbnVsbCwyXQ";

fn entry_json(entry: ActivityEntry) -> Value {
    serde_json::to_value(entry).expect("an entry serializes")
}

/// The issue as activity entries keep it: the API's fields plus `version`.
fn issue_with_version(issue: Issue) -> Value {
    let version = issue.version;
    let mut value = issue_json(issue);
    value["version"] = json!(version);
    value
}

fn created_entry() -> ActivityEntry {
    let issue = new_issue();
    ActivityEntry {
        id: 1,
        issue_id: 1,
        actor_id: "ann".into(),
        action: Action::Created,
        created_at: issue.created_at,
        changes: issue_with_version(issue),
    }
}

fn updated_entry() -> ActivityEntry {
    ActivityEntry {
        id: 3,
        issue_id: 1,
        actor_id: "ann".into(),
        action: Action::Updated,
        changes: json!({"status": {"from": "OPEN", "to": "IN_PROGRESS"}, "assigneeId": {"from": null, "to": "mo"}}),
        created_at: updated_issue().updated_at,
    }
}

fn restored_issue() -> Issue {
    Issue { updated_at: datetime!(2026-02-02 14:00:00.25 UTC), version: 2, ..second_issue() }
}

fn issue_json(issue: Issue) -> Value {
    serde_json::to_value(issue).expect("an issue serializes")
}

fn new_issue() -> Issue {
    Issue {
        id: 1,
        title: "Login page returns 500".into(),
        description: "Open /login and submit: 500.".into(),
        status: Status::Open,
        priority: Priority::Medium,
        assignee_id: None,
        organization_id: "acme".into(),
        created_by: "ann".into(),
        created_at: datetime!(2026-01-31 09:30:00.123456 UTC),
        updated_at: datetime!(2026-01-31 09:30:00.123456 UTC),
        version: 1,
    }
}

fn second_issue() -> Issue {
    Issue {
        id: 2,
        title: "Typo on pricing page".into(),
        description: "\"Recieve\" should be \"receive\".".into(),
        priority: Priority::Low,
        assignee_id: Some("mo".into()),
        created_by: "mo".into(),
        created_at: datetime!(2026-01-31 10:02:17.000042 UTC),
        updated_at: datetime!(2026-01-31 10:02:17.000042 UTC),
        ..new_issue()
    }
}

fn updated_issue() -> Issue {
    Issue {
        status: Status::InProgress,
        assignee_id: Some("mo".into()),
        updated_at: datetime!(2026-02-01 08:15:00.5 UTC),
        version: 2,
        ..new_issue()
    }
}

fn webhook() -> crate::domain::Webhook {
    crate::domain::Webhook {
        id: 1,
        url: "https://hooks.example.com/tenantry".into(),
        events: crate::domain::EventType::ALL.to_vec(),
        description: "Chat notifier".into(),
        active: true,
        disabled_reason: None,
        created_by: "ann".into(),
        created_at: datetime!(2026-01-31 09:30:00.123456 UTC),
        updated_at: datetime!(2026-01-31 09:30:00.123456 UTC),
        previous_secret_expires_at: None,
    }
}

fn webhook_json(webhook: crate::domain::Webhook) -> Value {
    serde_json::to_value(webhook).expect("a webhook serializes")
}

fn with_secret() -> Value {
    let created = crate::domain::CreatedWebhook {
        webhook: webhook(),
        secret: "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD8hjUCHMrz4E=".into(),
    };
    serde_json::to_value(created).expect("a webhook serializes")
}

fn deliveries() -> Value {
    let failed = crate::domain::WebhookDelivery {
        id: 1,
        event_id: "msg_1_1".into(),
        event_type: "issue.created".into(),
        activity_id: Some(1),
        attempt: 1,
        out_of_band: false,
        attempted_at: datetime!(2026-01-31 09:30:00.5 UTC),
        duration_ms: 31,
        status: Some(503),
        error: None,
        succeeded: false,
        next_attempt_at: Some(datetime!(2026-01-31 09:30:05.4 UTC)),
    };
    let delivered = crate::domain::WebhookDelivery {
        id: 2,
        attempt: 2,
        attempted_at: datetime!(2026-01-31 09:30:05.4 UTC),
        duration_ms: 12,
        status: Some(200),
        succeeded: true,
        next_attempt_at: None,
        ..failed.clone()
    };
    json!([delivered, failed])
}

/// The body of a webhook request, for the document's `WebhookEvent` example.
pub fn webhook_event() -> Value {
    json!({"type": "issue.created", "timestamp": "2026-01-31T09:30:00.123456Z", "data": entry_json(created_entry())})
}
