//! The OpenAPI document and Swagger UI, both served by the binary (no network needed).
//!
//! poem-openapi writes one security requirement object per scheme, which OpenAPI reads
//! as "any one of them". Ours are required together, so [`document`] merges the three
//! identity-header schemes into one requirement object before anyone sees the document.

use std::{collections::HashMap, sync::OnceLock};

use poem_openapi::OpenApiService;
use serde_json::{Map, Value};

use super::{activity::ActivityApi, auth::HEADER_SCHEMES, issues::IssuesApi};

const DESCRIPTION: &str = "\
A multi-tenant issue tracker whose tenant isolation lives in PostgreSQL: every request runs \
in a transaction scoped to the organization in `x-organization-id`, and row-level security \
decides what it can see and change.

Every call needs all three identity headers: `x-organization-id`, `x-user-id` and \
`x-user-role` (`ADMIN` or `MEMBER`). In Swagger UI, press **Authorize** and fill in all three.

Lists come a page at a time: the body is a plain JSON array, and while more follow the \
`Link` header (RFC 8288) holds the next page's URL with `rel=\"next\"`. Unknown query \
parameters are refused (400), not ignored.

Errors are `application/problem+json` (RFC 9457).";

pub fn service() -> OpenApiService<(IssuesApi, ActivityApi), ()> {
    OpenApiService::new((IssuesApi, ActivityApi), "tenantry", env!("CARGO_PKG_VERSION"))
        .description(DESCRIPTION)
        .license("MIT OR Apache-2.0")
}

/// The document as served at /openapi.json and committed in openapi/openapi.json.
pub fn document() -> String {
    let mut spec: Value = serde_json::from_str(&service().spec()).expect("poem-openapi emits valid JSON");
    require_identity_headers_together(&mut spec);
    refine_schemas(&mut spec);
    let mut text = serde_json::to_string_pretty(&spec).expect("a Value always serializes");
    text.push('\n');
    text
}

/// Swagger UI with [`document`] inlined.
pub fn swagger_ui_html() -> String {
    let service = service();
    service.swagger_ui_html().replacen(&service.spec(), &document(), 1)
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
    describe_activity_changes(schemas);
}

/// `ActivityEntry.changes` is a `serde_json::Value` (any JSON) to poem-openapi; say what
/// it really holds: a field-by-field diff, or a whole issue (with its `version`).
fn describe_activity_changes(schemas: &mut Value) {
    schemas["FieldChange"] = serde_json::json!({
        "type": "object",
        "description": "One changed field of an `updated` entry: its value before and after \
                        (`null` for an unassigned `assigneeId`).",
        "required": ["from", "to"],
        "properties": {
            "from": {"description": "The value before the change.", "nullable": true},
            "to": {"description": "The value after the change.", "nullable": true}
        }
    });
    let changes = &mut schemas["ActivityEntry"]["properties"]["changes"];
    let description = changes["description"].take();
    *changes = serde_json::json!({
        "description": description,
        "oneOf": [
            {
                "type": "object",
                "title": "Changed fields (updated)",
                "additionalProperties": {"$ref": "#/components/schemas/FieldChange"}
            },
            {
                "allOf": [{"$ref": "#/components/schemas/Issue"}],
                "title": "The whole issue (created, deleted, restored)",
                "properties": {"version": {"type": "integer", "format": "int64"}}
            }
        ]
    });
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

/// The path template of an operation, e.g. `getIssue` -> `/api/issues/{id}`.
pub fn operation_path(operation_id: &str) -> Option<&'static str> {
    static PATHS: OnceLock<HashMap<String, String>> = OnceLock::new();
    PATHS
        .get_or_init(|| {
            let spec: Value = serde_json::from_str(&document()).expect("our own document");
            let mut paths = HashMap::new();
            for (path, item) in spec["paths"].as_object().into_iter().flatten() {
                for operation in item.as_object().into_iter().flat_map(|o| o.values()) {
                    if let Some(id) = operation["operationId"].as_str() {
                        paths.insert(id.to_owned(), path.clone());
                    }
                }
            }
            paths
        })
        .get(operation_id)
        .map(String::as_str)
}

/// The name of the `index`-th path parameter of an operation (poem-openapi reports path
/// parameters as `param0`, `param1`, ...).
pub fn path_parameter(operation_id: &str, index: usize) -> Option<&'static str> {
    operation_path(operation_id)?
        .split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .nth(index)
}
