//! The OpenAPI document and Swagger UI, both served by the binary (no network needed).
//!
//! poem-openapi writes one security requirement object per scheme, which OpenAPI reads
//! as "any one of them". The three identity headers are required together, so
//! [`document`] merges them into one requirement object; the bearer scheme stays the
//! other alternative.
//!
//! Per mode: the committed document (and what AUTH_MODE=headers serves) declares both
//! alternatives, each scheme's description saying which mode accepts it: it is the
//! whole contract of the API. AUTH_MODE=jwt serves the same document without the
//! header schemes, so Swagger UI offers only what that server accepts.

use std::{collections::HashMap, sync::OnceLock};

use poem_openapi::OpenApiService;
use serde_json::{Map, Value};

use super::{
    auth::{BEARER_SCHEME, HEADER_SCHEMES},
    issues::IssuesApi,
};
use crate::config::AuthMode;

const DESCRIPTION: &str = "\
A multi-tenant issue tracker whose tenant isolation lives in PostgreSQL: every request runs \
in a transaction scoped to the organization in `x-organization-id`, and row-level security \
decides what it can see and change.

Who calls is said one of two ways, depending on the server's `AUTH_MODE`:

- `headers` (the default, for development): all three identity headers, \
`x-organization-id`, `x-user-id` and `x-user-role` (`ADMIN` or `MEMBER`), trusted as sent.
- `jwt` (production): `Authorization: Bearer <JWT>`, whose claims name the organization, \
the user and the role; the identity headers are ignored.

In Swagger UI, press **Authorize** and fill in all three headers, or the token.

Issues carry a strong `ETag`: send it back in `If-None-Match` on GET (304 when unchanged) \
and in `If-Match` on PATCH and DELETE (412 when someone changed the issue since). A POST \
with an `Idempotency-Key` can be retried safely for 24 hours. Every API response carries \
`RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`; over the limit is 429.

Errors are `application/problem+json` (RFC 9457).";

pub fn service() -> OpenApiService<IssuesApi, ()> {
    OpenApiService::new(IssuesApi, "tenantry", env!("CARGO_PKG_VERSION"))
        .description(DESCRIPTION)
        .license("MIT OR Apache-2.0")
}

/// The document committed in openapi/openapi.json, served by AUTH_MODE=headers.
pub fn document() -> String {
    document_for(AuthMode::Headers)
}

/// The document a server in `mode` serves at /openapi.json.
pub fn document_for(mode: AuthMode) -> String {
    let mut spec: Value = serde_json::from_str(&service().spec()).expect("poem-openapi emits valid JSON");
    require_identity_headers_together(&mut spec);
    if mode == AuthMode::Jwt {
        keep_only_bearer(&mut spec);
    }
    refine_schemas(&mut spec);
    let mut text = serde_json::to_string_pretty(&spec).expect("a Value always serializes");
    text.push('\n');
    text
}

/// Swagger UI with [`document_for`] `mode` inlined.
pub fn swagger_ui_html(mode: AuthMode) -> String {
    let service = service();
    service.swagger_ui_html().replacen(&service.spec(), &document_for(mode), 1)
}

/// Drops the identity-header requirement and schemes (AUTH_MODE=jwt ignores them).
fn keep_only_bearer(spec: &mut Value) {
    let is_identity = |name: &str| HEADER_SCHEMES.iter().any(|(scheme, ..)| *scheme == name);
    if let Some(schemes) = spec["components"]["securitySchemes"].as_object_mut() {
        schemes.retain(|name, _| !is_identity(name));
    }
    let Some(paths) = spec.get_mut("paths").and_then(Value::as_object_mut) else { return };
    for operation in paths.values_mut().filter_map(Value::as_object_mut).flat_map(|p| p.values_mut()) {
        if let Some(security) = operation.get_mut("security").and_then(Value::as_array_mut) {
            security.retain(|requirement| requirement.get(BEARER_SCHEME).is_some());
        }
    }
}

/// Request bodies that refuse unknown fields (see `http::json::Fields::finish`).
const CLOSED_SCHEMAS: &[&str] = &["NewIssue", "IssuePatch"];
/// Properties that may be `null` (poem-openapi marks `Option` as optional, not nullable).
const NULLABLE_PROPERTIES: &[(&str, &str)] =
    &[("Issue", "assigneeId"), ("NewIssue", "assigneeId"), ("IssuePatch", "assigneeId")];

/// States in the schemas what poem-openapi's derives cannot express.
fn refine_schemas(spec: &mut Value) {
    let schemas = &mut spec["components"]["schemas"];
    for name in CLOSED_SCHEMAS {
        schemas[name]["additionalProperties"] = Value::Bool(false);
    }
    for (schema, property) in NULLABLE_PROPERTIES {
        schemas[schema]["properties"][property]["nullable"] = Value::Bool(true);
    }
}

/// In every operation's `security`, replaces the separate identity-header requirements
/// with one requirement naming all three. Other schemes stay alternatives.
fn require_identity_headers_together(spec: &mut Value) {
    let is_identity = |name: &str| HEADER_SCHEMES.iter().any(|(scheme, ..)| *scheme == name);
    let Some(paths) = spec.get_mut("paths").and_then(Value::as_object_mut) else { return };
    for operation in paths.values_mut().filter_map(Value::as_object_mut).flat_map(|p| p.values_mut()) {
        let Some(security) = operation.get_mut("security").and_then(Value::as_array_mut) else {
            continue;
        };
        let mut together = Map::new();
        security.retain(|requirement| match requirement.as_object() {
            Some(schemes) if schemes.len() == 1 && schemes.keys().all(|k| is_identity(k)) => {
                together.extend(schemes.clone());
                false
            }
            _ => true,
        });
        if !together.is_empty() {
            security.insert(0, Value::Object(together));
        }
    }
}

/// One operation of the document.
pub struct Operation {
    pub id: String,
    /// Upper case, e.g. `GET`.
    pub method: String,
    /// The path template, e.g. `/api/issues/{id}`.
    pub path: String,
}

/// Every operation, in document order.
pub fn operations() -> &'static [Operation] {
    static OPERATIONS: OnceLock<Vec<Operation>> = OnceLock::new();
    OPERATIONS.get_or_init(|| {
        let spec: Value = serde_json::from_str(&document()).expect("our own document");
        let mut operations = Vec::new();
        for (path, item) in spec["paths"].as_object().into_iter().flatten() {
            for (method, operation) in item.as_object().into_iter().flatten() {
                if let Some(id) = operation["operationId"].as_str() {
                    let method = method.to_ascii_uppercase();
                    operations.push(Operation { id: id.to_owned(), method, path: path.clone() });
                }
            }
        }
        operations
    })
}

/// The path template of an operation, e.g. `getIssue` -> `/api/issues/{id}`.
pub fn operation_path(operation_id: &str) -> Option<&'static str> {
    static PATHS: OnceLock<HashMap<&'static str, &'static str>> = OnceLock::new();
    PATHS
        .get_or_init(|| operations().iter().map(|op| (op.id.as_str(), op.path.as_str())).collect())
        .get(operation_id)
        .copied()
}

/// The name of the `index`-th path parameter of an operation (poem-openapi reports path
/// parameters as `param0`, `param1`, ...).
pub fn path_parameter(operation_id: &str, index: usize) -> Option<&'static str> {
    operation_path(operation_id)?
        .split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .nth(index)
}
