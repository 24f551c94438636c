//! Every error response, in one place: [`ApiError`] decides the status, and everything
//! leaves as RFC 9457 `application/problem+json`. Errors raised by poem or poem-openapi
//! themselves (unknown route, unparsable path parameter...) are converted by
//! [`render`] so they look the same.

use std::{error::Error as StdError, marker::PhantomData};

use poem::{
    Response,
    error::ResponseError,
    http::{HeaderValue, StatusCode, header},
};
use poem_openapi::{
    ApiResponse, Object, OperationId,
    error::{ContentTypeError, ParseParamError, ParsePathError},
    registry::{MetaHeader, MetaMediaType, MetaResponse, MetaResponses, MetaSchemaRef, Registry},
    types::Type,
};
use serde::Serialize;

use crate::{
    db,
    domain::rules::{DESCRIPTION_MAX_CHARS, ID_RULE, TITLE_MAX_CHARS, id_rule},
};

pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// Seconds a client should wait before retrying after a 503.
const RETRY_AFTER_SECONDS: &str = "2";
/// Seconds before another stream of an organization at its limit may open: one must close.
const STREAM_RETRY_AFTER_SECONDS: &str = "10";

/// One problem with one input: a body field, a header or a parameter.
#[derive(Object, Serialize, Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The JSON field, header or parameter at fault, e.g. `title` or `limit`.
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
    /// `about:blank` (the status code says what kind of problem this is), or
    /// `urn:tenantry:problem:quota-exceeded` for a 403 over an organization quota.
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
    /// AUTH_MODE=jwt: no bearer token (`error: None`), or one that does not verify
    /// (`error: Some(...)`, an RFC 6750 error code). Answered with `WWW-Authenticate`.
    #[error("{detail}")]
    BearerTokenRejected { detail: String, error: Option<&'static str> },
    #[error("{0}")]
    Forbidden(String),
    /// Over an organization quota (ORG_MAX_ISSUES): a 403 of its own problem type.
    #[error("{0}")]
    QuotaExceeded(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    /// If-Match named a version the issue is not at; `etag` is the one it is at.
    #[error("{detail}")]
    PreconditionFailed { detail: String, etag: Option<String> },
    #[error("{0}")]
    IdempotencyKeyReused(String),
    /// Over a rate limit; `retry_after` in whole seconds.
    #[error("too many requests for this {scope}; retry in {retry_after} s")]
    TooManyRequests { scope: &'static str, retry_after: u64 },
    /// The organization has as many live streams open as it may (STREAM_MAX_PER_ORG).
    #[error("{0}")]
    TooManyStreams(String),
    /// This instance serves as many live streams as it may (STREAM_MAX), or is stopping.
    #[error("{0}")]
    Overloaded(String),
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// The body did not arrive within REQUEST_TIMEOUT_MS: the client is too slow.
    #[error("the request body did not arrive in time (REQUEST_TIMEOUT_MS); the connection is closed")]
    RequestTimeout,
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Any other client error poem reports, with its status.
    #[error("{1}")]
    Client(StatusCode, String),
    #[error("the database is unavailable; retry shortly")]
    Unavailable(#[source] db::Error),
    /// `/readyz`: the service cannot take traffic yet.
    #[error("{0}")]
    NotReady(String),
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
            problem_type: match self {
                ApiError::QuotaExceeded(_) => QUOTA_EXCEEDED_TYPE.into(),
                _ => "about:blank".into(),
            },
            title: status.canonical_reason().unwrap_or("Error").into(),
            status: status.as_u16(),
            detail,
            errors,
        }
    }
}

/// Why a request got a 503 (the database) or a 500 (a bug): the whole cause chain, which
/// `observe.rs` logs with the request id. Kept on the response, never sent.
#[derive(Debug, Clone)]
pub enum Cause {
    Unavailable(String),
    Internal(String),
}

impl ApiError {
    /// What the log gets beyond the response: the cause chain of a 503 or a 500.
    fn cause(&self) -> Option<Cause> {
        match self {
            ApiError::Unavailable(source) => Some(Cause::Unavailable(chain(source))),
            ApiError::Internal(source) => Some(Cause::Internal(chain(source.as_ref()))),
            _ => None,
        }
    }
}

impl ResponseError for ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::Invalid { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthenticated(_) | ApiError::BearerTokenRejected { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::QuotaExceeded(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
            ApiError::IdempotencyKeyReused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooManyRequests { .. } | ApiError::TooManyStreams(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Client(status, _) => *status,
            ApiError::Unavailable(_) | ApiError::NotReady(_) | ApiError::Overloaded(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn as_response(&self) -> Response {
        let mut body = serde_json::to_vec(&self.problem()).expect("a problem always serializes");
        body.push(b'\n'); // as every body: see http::extract::json::PAGE_END
        let mut response =
            Response::builder().status(self.status()).content_type(PROBLEM_CONTENT_TYPE).body(body);
        let headers = response.headers_mut();
        match self {
            ApiError::Unavailable(_) | ApiError::NotReady(_) | ApiError::Overloaded(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
            }
            ApiError::TooManyStreams(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static(STREAM_RETRY_AFTER_SECONDS));
            }
            ApiError::TooManyRequests { retry_after, .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            ApiError::PreconditionFailed { etag: Some(etag), .. } => {
                if let Ok(value) = HeaderValue::from_str(etag) {
                    headers.insert(header::ETAG, value);
                }
            }
            ApiError::BearerTokenRejected { detail, error } => {
                headers.insert(header::WWW_AUTHENTICATE, bearer_challenge(*error, detail));
            }
            // What is left of the body may still be on its way: this connection is done.
            ApiError::RequestTimeout => {
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            // RFC 9110 §11.6.1: every 401 names a scheme. Ours, not Basic, which would make
            // a browser pop up a login dialog.
            ApiError::Unauthenticated(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(HEADERS_CHALLENGE));
            }
            _ => {}
        }
        response
    }
}

/// The challenge of AUTH_MODE=headers: which headers identify the caller.
pub const HEADERS_CHALLENGE: &str =
    "Headers realm=\"tenantry\", headers=\"x-organization-id x-user-id x-user-role\"";

/// An RFC 6750 challenge: `Bearer realm="tenantry"`, plus the error when a token was sent.
fn bearer_challenge(error: Option<&str>, detail: &str) -> HeaderValue {
    let mut challenge = String::from("Bearer realm=\"tenantry\"");
    if let Some(error) = error {
        // A quoted-string: our details never hold quotes or backslashes, but be sure.
        let description: String =
            detail.chars().filter(|c| *c != '"' && *c != '\\' && (' '..='~').contains(c)).collect();
        challenge.push_str(&format!(", error=\"{error}\", error_description=\"{description}\""));
    }
    HeaderValue::from_str(&challenge).unwrap_or(HeaderValue::from_static("Bearer realm=\"tenantry\""))
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

/// The problem type of a refusal for an organization quota.
pub const QUOTA_EXCEEDED_TYPE: &str = "urn:tenantry:problem:quota-exceeded";

/// Whole seconds until the next midnight UTC (at least 1), when daily quotas start over.
fn seconds_to_utc_midnight() -> u64 {
    let now = time::OffsetDateTime::now_utc();
    let midnight = now.date().next_day().map(|day| day.midnight().assume_utc());
    midnight.map_or(86_400, |midnight| (midnight - now).whole_seconds().max(1) as u64)
}

/// Which API field a CHECK constraint is about, and the rule it states (from
/// `domain::rules`). Reached only if SQL and Rust rules drift apart (Rust checks first);
/// kept exact anyway.
fn constraint_rule(constraint: &str) -> Option<(&'static str, String)> {
    Some(match constraint {
        "issues_title_check" => (
            "title",
            format!("must be 1-{TITLE_MAX_CHARS} characters, not blank, without control characters"),
        ),
        "issues_description_check" => (
            "description",
            format!(
                "must be 1-{DESCRIPTION_MAX_CHARS} characters, not blank, without control characters other \
                 than tab and line breaks"
            ),
        ),
        "issues_status_check" => ("status", "must be one of OPEN, IN_PROGRESS, DONE".into()),
        "issues_priority_check" => ("priority", "must be one of LOW, MEDIUM, HIGH".into()),
        "issues_assignee_id_check" => ("assigneeId", format!("must be {ID_RULE}")),
        _ => return None,
    })
}

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
            db::Error::CheckViolation { constraint } => match constraint_rule(&constraint) {
                Some((field, rule)) => ApiError::invalid(field, rule),
                None => ApiError::Invalid { detail: "a value breaks a rule".into(), errors: vec![] },
            },
            db::Error::Conflict(message) => ApiError::Conflict(message),
            // The handler adds the current tag (it knows the organization and the issue).
            db::Error::Stale { message, .. } => ApiError::PreconditionFailed { detail: message, etag: None },
            db::Error::IdempotencyKeyReused(message) => ApiError::IdempotencyKeyReused(message),
            db::Error::QuotaExceeded(message) => ApiError::QuotaExceeded(message),
            db::Error::DailyQuotaExhausted(_) => ApiError::TooManyRequests {
                scope: "organization's changes today (UTC)",
                retry_after: seconds_to_utc_midnight(),
            },
            db::Error::OverShare { .. } => {
                ApiError::TooManyRequests { scope: "organization's share of the database", retry_after: 1 }
            }
            err @ db::Error::Unavailable(_) => ApiError::Unavailable(err),
            db::Error::Internal(source) => ApiError::Internal(source),
        }
    }
}

/// Friendlier words for poem-openapi's parameter errors, by parameter name.
const PARAMETER_RULES: &[(&str, &str)] = &[
    ("id", "must be a positive 64-bit integer"),
    ("Idempotency-Key", "must be 1-255 printable ASCII characters"),
    // One entity-tag: the service compares it with the version (no lists).
    ("If-Match", "must be one entity tag exactly as the ETag header sent it, quotes included, or *"),
    (
        "If-None-Match",
        "must be * or a comma-separated list of entity tags exactly as the ETag header sent them, quotes included",
    ),
    ("limit", "must be an integer from 1 to 200"),
    ("cursor", "must be the cursor of a Link header this API sent"),
    ("status", "must be OPEN, IN_PROGRESS or DONE (repeat the parameter or separate values with commas)"),
    ("priority", "must be LOW, MEDIUM or HIGH (repeat the parameter or separate values with commas)"),
    (
        "action",
        "must be created, updated, deleted or restored (repeat the parameter or separate values with commas)",
    ),
    ("assigneeId", concat!("must be none or a user id: ", id_rule!())),
    ("createdBy", concat!("must be a user id: ", id_rule!())),
    ("actorId", concat!("must be a user id: ", id_rule!())),
    ("issueId", "must be a positive 64-bit integer"),
    ("after", "must be the id of an activity entry: a whole number, 0 or more"),
    ("Last-Event-ID", "must be the id of an event this stream sent: a whole number, 0 or more"),
    ("createdAfter", TIMESTAMP_RULE),
    ("createdBefore", TIMESTAMP_RULE),
    ("updatedAfter", TIMESTAMP_RULE),
    ("since", TIMESTAMP_RULE),
    ("until", TIMESTAMP_RULE),
    ("sort", "must be one of createdAt, -createdAt, updatedAt, -updatedAt, priority, -priority, relevance"),
];
const TIMESTAMP_RULE: &str =
    "must be an RFC 3339 timestamp such as 2026-01-31T12:00:00Z (in a URL, write + as %2B)";

/// A parameter poem-openapi could not parse, in our words where we have some.
pub fn parameter_error(name: &str, reason: &str) -> ApiError {
    let message = PARAMETER_RULES
        .iter()
        .find(|(rule_name, _)| *rule_name == name)
        .map_or_else(|| reason.to_owned(), |(_, rule)| (*rule).to_owned());
    ApiError::invalid(name, message)
}

/// The name of an operation's `index`-th path parameter (from the route table).
pub type PathParameterNames<'a> = &'a dyn Fn(&str, usize) -> Option<String>;

/// Turns any error that reached the top into a problem response.
pub fn render(mut err: poem::Error, path_parameter: PathParameterNames) -> Response {
    // The whole cause chain goes to the log (observe.rs, with the request id); the client
    // gets the short message. On the error, since poem gives the response its extensions.
    if let Some(cause) = err.downcast_ref::<ApiError>().and_then(ApiError::cause) {
        err.set_data(cause);
    }
    // Keep the operation for the request log.
    let operation = err.data::<OperationId>().copied();
    let mut response = problem_response(err, operation, path_parameter);
    if let Some(operation) = operation {
        response.set_data(operation);
    }
    response
}

fn problem_response(
    err: poem::Error,
    operation: Option<OperationId>,
    path_parameter: PathParameterNames,
) -> Response {
    if err.is::<ApiError>() {
        return err.into_response();
    }
    let api_error = if let Some(param) = err.downcast_ref::<ParseParamError>() {
        parameter_error(param.name, &param.reason)
    } else if let Some(path) = err.downcast_ref::<ParsePathError>() {
        let name = path
            .name
            .strip_prefix("param")
            .and_then(|index| index.parse().ok())
            .zip(operation)
            .and_then(|(index, operation)| path_parameter(operation.0, index))
            .unwrap_or_else(|| path.name.to_owned());
        parameter_error(&name, &path.reason)
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
    let mut response = api_error.as_response();
    if let Some(cause) = api_error.cause() {
        response.set_data(cause);
    }
    response
}

/// The error statuses one operation can answer, for its OpenAPI document.
pub trait ErrorStatuses {
    const STATUSES: &'static [(u16, &'static str)];
}

pub const BAD_REQUEST: (u16, &str) =
    (400, "Invalid input: malformed JSON, a wrong type, a broken rule or an unknown field.");
pub const UNAUTHORIZED: (u16, &str) = (
    401,
    "Not authenticated. With `AUTH_MODE=headers`: `x-organization-id`, `x-user-id` or \
     `x-user-role` is missing or malformed. With `AUTH_MODE=jwt`: the bearer token is missing, \
     expired, not yet valid, for another audience or issuer, badly signed or lacks a claim; \
     `WWW-Authenticate` says which.",
);
pub const FORBIDDEN: (u16, &str) = (403, "Only an ADMIN may do this.");
pub const NOT_FOUND: (u16, &str) = (404, "The organization has no such issue.");
pub const PAYLOAD_TOO_LARGE: (u16, &str) = (413, "The body is larger than 1 MiB.");
pub const REQUEST_TIMEOUT: (u16, &str) =
    (408, "The body did not arrive within `REQUEST_TIMEOUT_MS`; the connection is closed.");
pub const UNSUPPORTED_MEDIA_TYPE: (u16, &str) = (415, "The body is not `application/json`.");
pub const PRECONDITION_FAILED: (u16, &str) =
    (412, "`If-Match` names another version: the issue changed since. `ETag` is its current version.");
pub const UNPROCESSABLE_ENTITY: (u16, &str) =
    (422, "This `Idempotency-Key` was already used, within 24 hours, for a different request.");
pub const TOO_MANY_REQUESTS: (u16, &str) = (
    429,
    "The organization or the user is over its rate limit, the organization already has its share \
     of the database's connections in use (`ORG_MAX_TRANSACTIONS`), or (for a change) it made as many \
     changes today as its quota allows (`ORG_MAX_ACTIVITY_PER_DAY`, until midnight UTC); retry after \
     `Retry-After` seconds.",
);
pub const SERVICE_UNAVAILABLE: (u16, &str) =
    (503, "The database cannot be reached, is overloaded or too slow; retry after `Retry-After` seconds.");
/// Documented for every operation: a bug can happen anywhere.
pub const INTERNAL_SERVER_ERROR: (u16, &str) =
    (500, "An unexpected error. Its cause is logged; the response says nothing more.");

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
        // Every operation is rate limited (429), and a bug can happen anywhere (500).
        let mut statuses = S::STATUSES.to_vec();
        for always in [TOO_MANY_REQUESTS, INTERNAL_SERVER_ERROR] {
            if !statuses.iter().any(|(status, _)| *status == always.0) {
                statuses.push(always);
            }
        }
        statuses.sort_by_key(|(status, _)| *status);
        let responses = statuses
            .into_iter()
            .map(|(status, description)| MetaResponse {
                description,
                status: Some(status),
                status_range: None,
                content: vec![MetaMediaType {
                    content_type: PROBLEM_CONTENT_TYPE,
                    schema: Problem::schema_ref(),
                }],
                headers: match status {
                    503 => vec![header_meta(
                        "Retry-After",
                        "Seconds to wait before retrying.",
                        u32::schema_ref(),
                    )],
                    429 => vec![
                        header_meta("Retry-After", "Seconds until a request can succeed.", u32::schema_ref()),
                        header_meta("RateLimit-Limit", RATE_LIMIT_LIMIT, u32::schema_ref()),
                        header_meta("RateLimit-Remaining", RATE_LIMIT_REMAINING, u32::schema_ref()),
                        header_meta("RateLimit-Reset", RATE_LIMIT_RESET, u32::schema_ref()),
                    ],
                    412 => vec![header_meta("ETag", "The issue's current tag.", String::schema_ref())],
                    401 => vec![header_meta(
                        "WWW-Authenticate",
                        "How to authenticate: `Headers realm=\"tenantry\", headers=\"x-organization-id \
                         x-user-id x-user-role\"` (AUTH_MODE=headers) or a `Bearer` challenge, with the \
                         RFC 6750 error when a token was refused (AUTH_MODE=jwt).",
                        String::schema_ref(),
                    )],
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

/// Descriptions of the rate-limit headers, shared by the document and the README.
pub const RATE_LIMIT_LIMIT: &str =
    "Requests allowed in a burst (the tighter of the organization's and the user's limit).";
pub const RATE_LIMIT_REMAINING: &str = "Requests left in the current burst.";
pub const RATE_LIMIT_RESET: &str = "Seconds until the full burst is available again.";

fn header_meta(name: &str, description: &str, schema: MetaSchemaRef) -> MetaHeader {
    MetaHeader {
        name: name.into(),
        description: Some(description.into()),
        required: true,
        deprecated: false,
        schema,
    }
}
