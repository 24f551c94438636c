//! The examples the OpenAPI document shows (and Swagger UI pre-fills), built from the real
//! types and error paths, so they are exactly what the service sends and accepts: an
//! issue is serialized by the same serde code as a response, a 400 comes from the real
//! body reader, a 401 from the real header check.
//!
//! [`for_operation`] holds the per-operation examples; [`problem`] a generic example for
//! each error status, used where an operation has no example of its own. `openapi.rs`
//! puts them into the document, and a test lists every operation, status, parameter or
//! header still without one.

use poem::http::HeaderMap;
use serde_json::{Map, Value, json};
use time::macros::datetime;

use super::{
    auth::{self, ORGANIZATION_HEADER, ROLE_HEADER, USER_HEADER},
    error::{ApiError, parameter_error},
    json::{FromJsonObject, MAX_BODY_BYTES},
};
use crate::{
    db,
    domain::{Issue, IssuePatch, NewIssue, Priority, Status},
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
pub fn for_operation(operation_id: &str) -> OperationExamples {
    match operation_id {
        "createIssue" => OperationExamples {
            parameters: vec![("Idempotency-Key", json!("5f1c2e9a-create-login-bug"))],
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
            parameters: vec![("id", json!(1)), ("If-None-Match", json!("\"1\""))],
            responses: vec![
                (200, vec![Example::new("issue", "One issue", issue_json(new_issue()))]),
                (400, vec![invalid_id_example()]),
            ],
            ..Default::default()
        },
        "updateIssue" => OperationExamples {
            parameters: vec![("id", json!(1)), ("If-Match", json!("\"1\""))],
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
            parameters: vec![("id", json!(1)), ("If-Match", json!("\"2\""))],
            responses: vec![(400, vec![invalid_id_example()])],
            ..Default::default()
        },
        _ => OperationExamples::default(),
    }
}

/// A generic example for an error status, from the error the service really raises.
pub fn problem(status: u16) -> Option<Example> {
    Some(match status {
        400 => invalid_body_example(json!({"title": ""})),
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
        415 => Example::problem(
            "not json",
            "A body sent as text/plain",
            ApiError::UnsupportedMediaType("the body must be application/json, not text/plain".into()),
        ),
        412 => Example::problem(
            "stale",
            "If-Match named version 1; the issue is at version 2 (the ETag header says so)",
            db::Error::Stale { message: "issue 1 is at version 2, not 1".into(), current_version: Some(2) }
                .into(),
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

/// An example value for a response header, by its (case-insensitive) name.
pub fn header(name: &str) -> Option<Value> {
    Some(match name.to_ascii_lowercase().as_str() {
        "location" => json!("/api/issues/1"),
        "retry-after" => json!(2),
        "etag" => json!("\"1\""),
        "idempotent-replayed" => json!(true),
        "ratelimit-limit" => json!(1000),
        "ratelimit-remaining" => json!(0),
        "ratelimit-reset" => json!(1),
        _ => return None,
    })
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
