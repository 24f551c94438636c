//! Every error response, in one place: [`ApiError`] decides the status, and everything
//! leaves as RFC 9457 `application/problem+json`. Errors raised by poem or poem-openapi
//! themselves (unknown route, unparsable path parameter...) are converted by
//! [`render`] so they look the same.

use std::{error::Error as StdError, marker::PhantomData};

use poem::{Response, error::ResponseError, http::StatusCode};
use poem_openapi::{
    ApiResponse, Object, OperationId,
    error::{ContentTypeError, ParseParamError, ParsePathError},
    registry::{MetaHeader, MetaMediaType, MetaResponse, MetaResponses, Registry},
    types::Type,
};
use serde::Serialize;

use super::openapi;
use crate::db;

pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// Seconds a client should wait before retrying after a 503.
const RETRY_AFTER_SECONDS: &str = "2";

/// One problem with one input: a body field, a header or a parameter.
#[derive(Object, Serialize, Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The JSON field, header or parameter at fault, e.g. `title` or `x-user-role`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError { field: field.into(), message: message.into() }
    }
}

/// An RFC 9457 problem document.
#[derive(Object, Serialize, Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Always `about:blank`: the status code says what kind of problem this is.
    #[oai(rename = "type")]
    #[serde(rename = "type")]
    pub problem_type: String,
    /// The HTTP status phrase.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong, for a human.
    pub detail: String,
    /// For invalid input: each offending field, header or parameter.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{detail}")]
    Invalid { detail: String, errors: Vec<FieldError> },
    #[error("missing or malformed identity headers")]
    Unauthenticated(Vec<FieldError>),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Any other client error poem reports, with its status.
    #[error("{1}")]
    Client(StatusCode, String),
    #[error("the database is unavailable; retry shortly")]
    Unavailable(#[source] db::Error),
    #[error("an unexpected error occurred")]
    Internal(#[source] Box<dyn StdError + Send + Sync>),
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        let error = FieldError::new(field, message);
        ApiError::Invalid { detail: format!("{}: {}", error.field, error.message), errors: vec![error] }
    }

    pub fn invalid_fields(errors: Vec<FieldError>) -> Self {
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        ApiError::Invalid { detail: format!("invalid fields: {}", fields.join(", ")), errors }
    }

    pub fn problem(&self) -> Problem {
        let status = self.status();
        let errors = match self {
            ApiError::Invalid { errors, .. } | ApiError::Unauthenticated(errors) => Some(errors.clone()),
            _ => None,
        };
        let detail = match self {
            ApiError::Unauthenticated(errors) => format!(
                "missing or malformed identity header: {}",
                errors.iter().map(|e| e.field.as_str()).collect::<Vec<_>>().join(", ")
            ),
            other => other.to_string(),
        };
        Problem {
            problem_type: "about:blank".into(),
            title: status.canonical_reason().unwrap_or("Error").into(),
            status: status.as_u16(),
            detail,
            errors,
        }
    }
}

impl ResponseError for ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::Invalid { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Client(status, _) => *status,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn as_response(&self) -> Response {
        match self {
            // The whole cause chain goes to the log; the client gets the short message.
            ApiError::Unavailable(source) => {
                tracing::warn!(error = %chain(source), "database unavailable")
            }
            ApiError::Internal(source) => tracing::error!(error = %chain(source.as_ref()), "internal error"),
            _ => {}
        }
        let body = serde_json::to_vec(&self.problem()).expect("a problem always serializes");
        let mut response =
            Response::builder().status(self.status()).content_type(PROBLEM_CONTENT_TYPE).body(body);
        if matches!(self, ApiError::Unavailable(_)) {
            response.headers_mut().insert("retry-after", RETRY_AFTER_SECONDS.parse().expect("valid"));
        }
        response
    }
}

fn chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Which API field a database column or constraint is about, and the rule it states.
/// Reached only if SQL and Rust rules drift apart (Rust checks first); kept exact anyway.
const CONSTRAINTS: &[(&str, &str, &str)] = &[
    ("issues_title_check", "title", "must be 1-255 characters, not blank, without control characters"),
    (
        "issues_description_check",
        "description",
        "must be 1-50000 characters, not blank, without control characters other than tab and line breaks",
    ),
    ("issues_status_check", "status", "must be one of OPEN, IN_PROGRESS, DONE"),
    ("issues_priority_check", "priority", "must be one of LOW, MEDIUM, HIGH"),
    ("issues_assignee_id_check", "assigneeId", "must be 1-64 characters of A-Z a-z 0-9 . _ : @ -"),
];

/// Database column names as API field names.
fn api_field(column: &str) -> String {
    match column {
        "assignee_id" => "assigneeId".into(),
        "organization_id" => "organizationId".into(),
        "created_at" => "createdAt".into(),
        "updated_at" => "updatedAt".into(),
        "created_by" => "createdBy".into(),
        // The parameters of the api.list_* functions, as the HTTP query names them.
        "page_size" => "limit".into(),
        "after" => "cursor".into(),
        "search" => "q".into(),
        "created_after" => "createdAfter".into(),
        "created_before" => "createdBefore".into(),
        "updated_after" => "updatedAfter".into(),
        "actor_id" => "actorId".into(),
        "issue_id" => "issueId".into(),
        other => other.into(),
    }
}

/// The one table from database outcomes to HTTP.
impl From<db::Error> for ApiError {
    fn from(err: db::Error) -> Self {
        match err {
            db::Error::NotFound(message) => ApiError::NotFound(message),
            db::Error::Forbidden(message) => ApiError::Forbidden(message),
            db::Error::InvalidInput { column: Some(column), message } => {
                ApiError::invalid(api_field(&column), message)
            }
            db::Error::InvalidInput { column: None, message } => {
                ApiError::Invalid { detail: message, errors: vec![] }
            }
            db::Error::CheckViolation { constraint } => {
                match CONSTRAINTS.iter().find(|(name, ..)| *name == constraint) {
                    Some((_, field, rule)) => ApiError::invalid(*field, *rule),
                    None => ApiError::Invalid { detail: "a value breaks a rule".into(), errors: vec![] },
                }
            }
            db::Error::Conflict(message) => ApiError::Conflict(message),
            err @ db::Error::Unavailable(_) => ApiError::Unavailable(err),
            db::Error::Internal(source) => ApiError::Internal(source),
        }
    }
}

/// Friendlier words for poem-openapi's parameter errors, by parameter name.
const PARAMETER_RULES: &[(&str, &str)] = &[
    ("id", "must be a positive 64-bit integer"),
    ("limit", "must be an integer from 1 to 200"),
    ("cursor", "must be the cursor of a Link header this API sent"),
    ("status", "must be OPEN, IN_PROGRESS or DONE (repeat the parameter or separate values with commas)"),
    ("priority", "must be LOW, MEDIUM or HIGH (repeat the parameter or separate values with commas)"),
    (
        "action",
        "must be created, updated, deleted or restored (repeat the parameter or separate values with commas)",
    ),
    ("assigneeId", "must be none or a user id: 1-64 characters of A-Z a-z 0-9 . _ : @ -"),
    ("createdBy", "must be a user id: 1-64 characters of A-Z a-z 0-9 . _ : @ -"),
    ("actorId", "must be a user id: 1-64 characters of A-Z a-z 0-9 . _ : @ -"),
    ("issueId", "must be a positive 64-bit integer"),
    ("createdAfter", TIMESTAMP_RULE),
    ("createdBefore", TIMESTAMP_RULE),
    ("updatedAfter", TIMESTAMP_RULE),
    ("since", TIMESTAMP_RULE),
    ("until", TIMESTAMP_RULE),
    ("sort", "must be one of createdAt, -createdAt, updatedAt, -updatedAt, priority, -priority, relevance"),
];
const TIMESTAMP_RULE: &str =
    "must be an RFC 3339 timestamp such as 2026-01-31T12:00:00Z (in a URL, write + as %2B)";

/// Turns any error that reached the top into a problem response.
pub fn render(err: poem::Error) -> Response {
    // Keep the operation for the request log.
    let operation = err.data::<OperationId>().copied();
    let mut response = problem_response(err, operation);
    if let Some(operation) = operation {
        response.set_data(operation);
    }
    response
}

fn problem_response(err: poem::Error, operation: Option<OperationId>) -> Response {
    if err.is::<ApiError>() {
        return err.into_response();
    }
    let parameter = |name: &str, reason: &str| {
        let message = PARAMETER_RULES
            .iter()
            .find(|(rule_name, _)| *rule_name == name)
            .map_or_else(|| reason.to_owned(), |(_, rule)| (*rule).to_owned());
        ApiError::invalid(name, message)
    };
    let api_error = if let Some(param) = err.downcast_ref::<ParseParamError>() {
        parameter(param.name, &param.reason)
    } else if let Some(path) = err.downcast_ref::<ParsePathError>() {
        let name = path
            .name
            .strip_prefix("param")
            .and_then(|index| index.parse().ok())
            .zip(operation)
            .and_then(|(index, operation)| openapi::path_parameter(operation.0, index))
            .unwrap_or(path.name);
        parameter(name, &path.reason)
    } else if let Some(content_type) = err.downcast_ref::<ContentTypeError>() {
        ApiError::UnsupportedMediaType(content_type.to_string())
    } else {
        match err.status() {
            StatusCode::NOT_FOUND => ApiError::NotFound("no such resource".into()),
            StatusCode::METHOD_NOT_ALLOWED => {
                ApiError::MethodNotAllowed("this method is not allowed on this resource".into())
            }
            status if status.is_client_error() => ApiError::Client(status, err.to_string()),
            _ => ApiError::Internal(err.to_string().into()),
        }
    };
    api_error.as_response()
}

/// The error statuses one operation can answer, for its OpenAPI document.
pub trait ErrorStatuses {
    const STATUSES: &'static [(u16, &'static str)];
}

pub const BAD_REQUEST: (u16, &str) =
    (400, "Invalid input: malformed JSON, a wrong type, a broken rule or an unknown field.");
pub const UNAUTHORIZED: (u16, &str) =
    (401, "`x-organization-id`, `x-user-id` or `x-user-role` is missing or malformed.");
pub const FORBIDDEN: (u16, &str) = (403, "Only an ADMIN may do this.");
pub const NOT_FOUND: (u16, &str) = (404, "The organization has no such issue.");
pub const PAYLOAD_TOO_LARGE: (u16, &str) = (413, "The body is larger than 1 MiB.");
pub const UNSUPPORTED_MEDIA_TYPE: (u16, &str) = (415, "The body is not `application/json`.");
pub const SERVICE_UNAVAILABLE: (u16, &str) =
    (503, "The database cannot be reached; retry after `Retry-After` seconds.");

/// An [`ApiError`] returned by an operation whose possible statuses are `S`.
pub struct Failure<S>(pub ApiError, PhantomData<fn() -> S>);

impl<S> From<ApiError> for Failure<S> {
    fn from(err: ApiError) -> Self {
        Failure(err, PhantomData)
    }
}

impl<S> From<db::Error> for Failure<S> {
    fn from(err: db::Error) -> Self {
        Failure(err.into(), PhantomData)
    }
}

impl<S> From<Failure<S>> for poem::Error {
    fn from(failure: Failure<S>) -> Self {
        poem::Error::from(failure.0)
    }
}

impl<S: ErrorStatuses> ApiResponse for Failure<S> {
    fn meta() -> MetaResponses {
        let responses = S::STATUSES
            .iter()
            .map(|&(status, description)| MetaResponse {
                description,
                status: Some(status),
                status_range: None,
                content: vec![MetaMediaType {
                    content_type: PROBLEM_CONTENT_TYPE,
                    schema: Problem::schema_ref(),
                }],
                headers: match status {
                    503 => vec![MetaHeader {
                        name: "Retry-After".into(),
                        description: Some("Seconds to wait before retrying.".into()),
                        required: true,
                        deprecated: false,
                        schema: u32::schema_ref(),
                    }],
                    _ => vec![],
                },
            })
            .collect();
        MetaResponses { responses }
    }

    fn register(registry: &mut Registry) {
        Problem::register(registry);
    }
}
