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
//! header schemes, its texts and 401 examples about the token only, so Swagger UI offers
//! and says only what that server accepts. [`page`] is the Swagger UI page around it.

use poem_openapi::OpenApiService;
use serde_json::{Map, Value};

mod examples;
mod page;

use examples::Example;

use super::{
    api::{self, Api},
    extract::auth::{BEARER_SCHEME, HEADER_SCHEMES},
};
use crate::{config::AuthMode, domain::rules};

/// The document's description: what the service is, who calls as `mode` says, then the
/// contract every mode shares.
fn description(mode: AuthMode) -> String {
    let who_calls = match mode {
        AuthMode::Headers => WHO_CALLS_EITHER_WAY,
        AuthMode::Jwt => WHO_CALLS_WITH_A_TOKEN,
    };
    format!("{INTRO}\n\n{who_calls}\n\n{CONTRACT}")
}

const INTRO: &str = "\
A multi-tenant issue tracker whose tenant isolation lives in PostgreSQL: every request runs \
in a transaction scoped to the caller's organization, and row-level security decides what it \
can see and change.";

/// The committed document is the whole contract, so it states both modes.
const WHO_CALLS_EITHER_WAY: &str = "\
Who calls is said one of two ways, depending on the server's `AUTH_MODE`:

- `headers` (the default, for development): all three identity headers, \
`x-organization-id`, `x-user-id` and `x-user-role` (`ADMIN` or `MEMBER`), trusted as sent.
- `jwt` (production): `Authorization: Bearer <JWT>`, whose claims name the organization, \
the user and the role; the identity headers are ignored.

In Swagger UI (`/docs`): with AUTH_MODE=headers, type the organization, user and role into \
the form at the top of the page and press its **Authorize** once; with AUTH_MODE=jwt, press \
**Authorize** and paste the token.";

const WHO_CALLS_WITH_A_TOKEN: &str = "\
Every call carries `Authorization: Bearer <JWT>`: a token whose claims name the organization, \
the user and the role (`ADMIN` or `MEMBER`). In Swagger UI (`/docs`), press **Authorize** and \
paste the token.";

const CONTRACT: &str = "\
Issues carry a strong `ETag`, made for one issue of one organization at one version: send \
it back exactly as received (quotes included) in `If-None-Match` on GET (304 when unchanged) \
and in `If-Match` on PATCH and DELETE (412 when someone changed the issue since; a value \
that is not an entity tag is a 400). Every `/api` response carries `Vary` on the headers \
that say who calls, and `Cache-Control: no-store`, except an issue's (`private, \
no-cache`: a browser may keep it and must revalidate). A POST \
with an `Idempotency-Key` can be retried safely for 24 hours. Every API response carries \
`RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`; over the limit is 429.

Lists come a page at a time: the body is a plain JSON array, and while more follow the \
`Link` header (RFC 8288) holds the next page's URL with `rel=\"next\"`. Unknown query \
parameters are refused (400), not ignored.

Errors are `application/problem+json` (RFC 9457).";

/// The API's operations with `mode`'s description and the license.
fn service(mode: AuthMode) -> OpenApiService<Api, ()> {
    api::service().description(description(mode)).license("MIT OR Apache-2.0")
}

/// The document committed in openapi/openapi.json, served by AUTH_MODE=headers.
pub fn document() -> String {
    document_for(AuthMode::Headers)
}

/// The document a server in `mode` serves at /openapi.json.
pub fn document_for(mode: AuthMode) -> String {
    let mut spec: Value = serde_json::from_str(&service(mode).spec()).expect("poem-openapi emits valid JSON");
    require_identity_headers_together(&mut spec);
    if mode == AuthMode::Jwt {
        keep_only_bearer(&mut spec);
        describe_401_as_the_token(&mut spec);
    }
    refine_schemas(&mut spec);
    add_examples(&mut spec, mode);
    canonical_header_names(&mut spec);
    tags_in_working_order(&mut spec);
    let mut text = serde_json::to_string_pretty(&spec).expect("a Value always serializes");
    text.push('\n');
    text
}

/// The Swagger UI page of a server in `mode`, with [`document_for`] `mode` inlined.
pub fn swagger_ui_html(mode: AuthMode) -> String {
    page::swagger_ui(mode, &document_for(mode), &api::service().swagger_ui_html())
}

/// Issues before Activity, as a user works (poem-openapi sorts tags by name); Swagger UI
/// shows the groups in this order.
fn tags_in_working_order(spec: &mut Value) {
    const ORDER: [&str; 2] = ["Issues", "Activity"];
    if let Some(tags) = spec.get_mut("tags").and_then(Value::as_array_mut) {
        tags.sort_by_key(|tag| ORDER.iter().position(|name| tag["name"] == *name).unwrap_or(ORDER.len()));
    }
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

/// 401 as AUTH_MODE=jwt answers it: the token, not the headers (error.rs' texts describe
/// both modes, as the committed document does). Its examples come from `add_examples`.
fn describe_401_as_the_token(spec: &mut Value) {
    const UNAUTHORIZED: &str = "Not authenticated: the bearer token is missing, expired, not yet \
        valid, for another audience or issuer, badly signed or lacks a claim; `WWW-Authenticate` \
        says which.";
    const CHALLENGE: &str = "How to authenticate: a `Bearer` challenge (RFC 6750), with `error` \
        and `error_description` when a token was refused.";
    for operation in operations_mut(spec) {
        let Some(response) = operation.get_mut("responses").and_then(|r| r.get_mut("401")) else {
            continue;
        };
        response["description"] = Value::from(UNAUTHORIZED);
        let headers = response.get_mut("headers").and_then(Value::as_object_mut);
        for (name, header) in headers.into_iter().flatten() {
            if name.eq_ignore_ascii_case("www-authenticate") {
                header["description"] = Value::from(CHALLENGE);
            }
        }
    }
}

/// Request bodies that refuse unknown fields (see `http::json::Fields::finish`).
const CLOSED_SCHEMAS: &[&str] = &["NewIssue", "IssuePatch", "NewWebhook", "WebhookPatch"];
/// Properties that may be `null` (poem-openapi marks `Option` as optional, not nullable).
const NULLABLE_PROPERTIES: &[(&str, &str)] = &[
    ("Issue", "assigneeId"),
    ("NewIssue", "assigneeId"),
    ("IssuePatch", "assigneeId"),
    ("Webhook", "disabledReason"),
    ("Webhook", "previousSecretExpiresAt"),
    ("CreatedWebhook", "disabledReason"),
    ("CreatedWebhook", "previousSecretExpiresAt"),
    ("WebhookDelivery", "activityId"),
    ("WebhookDelivery", "status"),
    ("WebhookDelivery", "error"),
    ("WebhookDelivery", "nextAttemptAt"),
];

/// Text rules the derives cannot state (a `pattern` there would be a second copy).
const TEXT_PATTERNS: &[(&str, &str, &str)] = &[
    ("NewIssue", "title", rules::TITLE_PATTERN),
    ("NewIssue", "description", rules::DESCRIPTION_PATTERN),
    ("IssuePatch", "title", rules::TITLE_PATTERN),
    ("IssuePatch", "description", rules::DESCRIPTION_PATTERN),
];

/// States in the schemas what poem-openapi's derives cannot express.
fn refine_schemas(spec: &mut Value) {
    let schemas = &mut spec["components"]["schemas"];
    for (schema, property, pattern) in TEXT_PATTERNS {
        schemas[schema]["properties"][property]["pattern"] = Value::from(*pattern);
    }
    for name in CLOSED_SCHEMAS {
        schemas[name]["additionalProperties"] = Value::Bool(false);
    }
    for (schema, property) in NULLABLE_PROPERTIES {
        schemas[schema]["properties"][property]["nullable"] = Value::Bool(true);
    }
    describe_activity_changes(schemas);
    describe_webhook_events(schemas);
}

/// `ActivityEntry.changes` is a `serde_json::Value` (any JSON) to poem-openapi; say what
/// it really holds: a field-by-field diff, or a whole issue (with its `version`).
/// OpenAPI 3.0 has no `webhooks` object: the body of a webhook request is the component
/// schema `WebhookEvent` (its headers are described in `createWebhook`).
fn describe_webhook_events(schemas: &mut Value) {
    schemas["WebhookEvent"] = serde_json::json!({
        "type": "object",
        "title": "WebhookEvent",
        "description": "The JSON body POSTed to a webhook endpoint (Standard Webhooks 1.0), with the headers \
            `webhook-id` (the same on every attempt of one event to one endpoint), `webhook-timestamp` (Unix \
            seconds of this attempt) and `webhook-signature` (`v1,` and the base64 HMAC-SHA256 of \
            `id.timestamp.body` keyed with the secret's bytes after `whsec_`; two, space-separated, during a \
            rotation).",
        "required": ["type", "timestamp", "data"],
        "properties": {
            "type": {
                "type": "string",
                "enum": ["issue.created", "issue.updated", "issue.deleted", "issue.restored", "webhook.ping"],
                "description": "The kind of event: `issue.` and the entry's action, or `webhook.ping`."
            },
            "timestamp": {
                "type": "string",
                "format": "date-time",
                "description": "When the change was made (the entry's createdAt), or the ping asked for."
            },
            "data": {
                "description": "The activity entry exactly as GET /api/activity shows it; for a ping, `{\"webhookId\": 1}`.",
                "oneOf": [
                    {"$ref": "#/components/schemas/ActivityEntry"},
                    {"type": "object", "required": ["webhookId"], "properties": {"webhookId": {"type": "integer", "format": "int64"}}}
                ]
            }
        },
        "example": examples::webhook_event()
    });
}

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
    for operation in operations_mut(spec) {
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

/// Every operation object in the document, mutable.
fn operations_mut(spec: &mut Value) -> impl Iterator<Item = &mut Map<String, Value>> {
    let paths = spec.get_mut("paths").and_then(Value::as_object_mut);
    paths
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(Value::as_object_mut)
        .flat_map(|item| item.values_mut())
        .filter_map(Value::as_object_mut)
}

/// OpenAPI's `examples` map: name -> {summary, value}.
fn examples_map(examples: &[Example]) -> Value {
    let map = examples
        .iter()
        .map(|e| (e.name.to_owned(), serde_json::json!({"summary": e.summary, "value": e.value})))
        .collect();
    Value::Object(map)
}

/// Puts `examples::for_operation` (and the generic problem examples) into parameters,
/// request bodies, responses and response headers.
fn add_examples(spec: &mut Value, mode: AuthMode) {
    for operation in operations_mut(spec) {
        let id = operation.get("operationId").and_then(Value::as_str).unwrap_or_default();
        let examples = examples::for_operation(id);
        for parameter in operation.get_mut("parameters").and_then(Value::as_array_mut).into_iter().flatten() {
            let name = parameter["name"].as_str().unwrap_or_default();
            if let Some(value) = examples.parameter(name) {
                parameter["example"] = value.clone();
            }
        }
        if let Some(content) = operation.get_mut("requestBody").and_then(|b| b.get_mut("content")) {
            for media in content.as_object_mut().into_iter().flat_map(|c| c.values_mut()) {
                if !examples.request.is_empty() {
                    media["examples"] = examples_map(&examples.request);
                }
            }
        }
        let responses = operation.get_mut("responses").and_then(Value::as_object_mut);
        for (status, response) in responses.into_iter().flatten() {
            let status: u16 = status.parse().unwrap_or_default();
            let generic = examples::problem(status, mode);
            let chosen = examples.response(status).or(generic.as_slice().get(..1));
            if let (Some(chosen), Some(content)) = (chosen, response.get_mut("content")) {
                for media in content.as_object_mut().into_iter().flat_map(|c| c.values_mut()) {
                    media["examples"] = examples_map(chosen);
                }
            }
            let headers = response.get_mut("headers").and_then(Value::as_object_mut);
            for (name, header) in headers.into_iter().flatten() {
                if let Some(value) = examples::header(name, mode) {
                    header["example"] = value;
                }
            }
        }
    }
}

/// poem-openapi upper-cases response header names (`LOCATION`); show them as HTTP
/// documents spell them.
fn canonical_header_names(spec: &mut Value) {
    const SPELLINGS: &[&str] = &[
        "ETag",
        "WWW-Authenticate",
        "RateLimit",
        "RateLimit-Policy",
        "RateLimit-Limit",
        "RateLimit-Remaining",
        "RateLimit-Reset",
        "X-RateLimit-Limit",
        "X-RateLimit-Remaining",
        "X-RateLimit-Reset",
    ];
    let canonical = |name: &str| {
        if let Some(known) = SPELLINGS.iter().find(|s| s.eq_ignore_ascii_case(name)) {
            return (*known).to_owned();
        }
        let words: Vec<String> = name
            .split('-')
            .map(|word| {
                let lower = word.to_ascii_lowercase();
                let mut chars = lower.chars();
                chars
                    .next()
                    .map_or_else(String::new, |first| first.to_ascii_uppercase().to_string() + chars.as_str())
            })
            .collect();
        words.join("-")
    };
    for operation in operations_mut(spec) {
        let responses = operation.get_mut("responses").and_then(Value::as_object_mut);
        for response in responses.into_iter().flat_map(|r| r.values_mut()) {
            if let Some(headers) = response.get_mut("headers").and_then(Value::as_object_mut) {
                *headers =
                    std::mem::take(headers).into_iter().map(|(name, h)| (canonical(&name), h)).collect();
            }
        }
    }
}
