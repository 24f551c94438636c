//! Every response the suite receives is checked against the committed OpenAPI document:
//! the status is documented for that operation, the content type is the documented one,
//! the body matches the schema and the required headers are there. `helpers::TestRequest`
//! calls [`check_response`] on each response, so every test checks the document too.
//!
//! The schema check is a small validator for OpenAPI 3.0 Schema Objects (which are not
//! JSON Schema: `nullable`, boolean `exclusiveMinimum`, `$ref` siblings ignored). It
//! refuses keywords it does not know rather than passing them silently.

use std::sync::OnceLock;

use reqwest::{Method, StatusCode, header::HeaderMap};
use serde_json::{Map, Value, json};

pub const COMMITTED: &str = include_str!("../../../openapi/openapi.json");

/// Paths served outside the document: the document itself and Swagger UI.
const UNDOCUMENTED_PATHS: &[&str] = &["/openapi.json", "/docs"];

/// The committed document, parsed once.
pub fn spec() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| serde_json::from_str(COMMITTED).expect("openapi/openapi.json is JSON"))
}

/// The path template of the document matching a concrete path, preferring literal
/// segments over templated ones (as OpenAPI says).
pub fn match_path<'a>(spec: &'a Value, path: &str) -> Option<(&'a str, &'a Value)> {
    let segments: Vec<&str> = path.split('/').collect();
    let mut best: Option<(usize, &str, &Value)> = None;
    for (template, item) in spec["paths"].as_object()? {
        let parts: Vec<&str> = template.split('/').collect();
        if parts.len() != segments.len() {
            continue;
        }
        let mut literals = 0;
        let matches = parts.iter().zip(&segments).all(|(part, segment)| {
            if part.starts_with('{') && part.ends_with('}') {
                !segment.is_empty()
            } else {
                literals += 1;
                part == segment
            }
        });
        if matches && best.is_none_or(|(l, ..)| literals > l) {
            best = Some((literals, template, item));
        }
    }
    best.map(|(_, template, item)| (template, item))
}

fn essence(content_type: &str) -> String {
    content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

fn is_json_media(media: &str) -> bool {
    media == "application/json" || (media.starts_with("application/") && media.ends_with("+json"))
}

/// Checks one response against the document. `Err` lists every way it does not conform.
/// Every `/api` response depends on who asks: each one says so to every cache (`Vary` on
/// every identity header, both modes) and may be kept only privately and revalidated (one
/// issue, 200 or 304) or not at all (everything else, errors included).
fn check_private_to_the_caller(
    method: &Method,
    path: &str,
    status: StatusCode,
    headers: &HeaderMap,
    errors: &mut Vec<String>,
) {
    if !(path == "/api" || path.starts_with("/api/")) {
        return;
    }
    let one_issue = path.strip_prefix("/api/issues/").is_some_and(|id| !id.contains('/'));
    let revalidatable = matches!(*method, Method::GET | Method::HEAD)
        && one_issue
        && matches!(status, StatusCode::OK | StatusCode::NOT_MODIFIED);
    let expected = if revalidatable { "private, no-cache" } else { "no-store" };
    let cache_control: Vec<_> = headers.get_all("cache-control").iter().collect();
    if cache_control != [expected] {
        errors.push(format!("{method} {path} ({status}): Cache-Control {cache_control:?}, not {expected:?}"));
    }
    let vary: Vec<String> = headers
        .get_all("vary")
        .iter()
        .flat_map(|value| value.to_str().unwrap_or("").split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .collect();
    for name in ["authorization", "x-organization-id", "x-user-id", "x-user-role"] {
        if !vary.iter().any(|v| v == name) {
            errors.push(format!("{method} {path} ({status}): Vary {vary:?} lacks {name}"));
        }
    }
}

pub fn check_response(
    method: &Method,
    path: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), Vec<String>> {
    let spec = spec();
    let mut errors = Vec::new();
    check_private_to_the_caller(method, path, status, headers, &mut errors);
    let Some((template, item)) = match_path(spec, path) else {
        if UNDOCUMENTED_PATHS.contains(&path) {
            return Ok(());
        }
        // No such resource: it must still be our problem format.
        check_problem(spec, status, headers, body, &mut errors);
        if status.is_success() {
            errors.push(format!("{method} {path} answered {status}, but the document has no such path"));
        }
        return if errors.is_empty() { Ok(()) } else { Err(errors) };
    };
    // HEAD is GET without the body (poem answers it for every GET).
    let head = method == Method::HEAD;
    let method_key = if head { "get".to_owned() } else { method.as_str().to_ascii_lowercase() };
    let Some(operation) = item.get(&method_key) else {
        check_problem(spec, status, headers, body, &mut errors);
        if status.is_success() {
            errors.push(format!(
                "{method} {template} answered {status}, but the document has no such operation"
            ));
        }
        if status == StatusCode::METHOD_NOT_ALLOWED && !headers.contains_key("allow") {
            errors.push(format!("{method} {template}: a 405 without an Allow header (RFC 9110)"));
        }
        return if errors.is_empty() { Ok(()) } else { Err(errors) };
    };
    let operation_name =
        format!("{method} {template} ({})", operation["operationId"].as_str().unwrap_or("no operationId"));
    let responses = &operation["responses"];
    let code = status.as_str();
    let range = format!("{}XX", &code[..1]);
    let Some(response) =
        responses.get(code).or_else(|| responses.get(&range)).or_else(|| responses.get("default"))
    else {
        let documented: Vec<&String> = responses.as_object().map(|r| r.keys().collect()).unwrap_or_default();
        let body = String::from_utf8_lossy(body);
        return Err(vec![format!(
            "{operation_name} answered {status}, which the document does not list (it lists {documented:?}); body: {body}"
        )]);
    };
    let response = resolve(spec, response);
    if !head {
        check_content(spec, &operation_name, status, response, headers, body, &mut errors);
    }
    check_headers(spec, &operation_name, status, response, headers, &mut errors);
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

/// Checks the `data` of one Server-Sent Event of a `GET` on `path` against the document:
/// the operation's 200 is `text/event-stream`, whose schema is an `event-stream` array
/// whose `items` each event's data must match.
pub fn check_event_data(path: &str, data: &Value) -> Result<(), Vec<String>> {
    let spec = spec();
    let Some((template, item)) = match_path(spec, path) else {
        return Err(vec![format!("{path}: no such path in the document")]);
    };
    let media = &resolve(spec, &item["get"]["responses"]["200"])["content"]["text/event-stream"];
    let schema = &media["schema"];
    if schema["format"] != "event-stream" || schema.get("items").is_none() {
        return Err(vec![format!("GET {template}: 200 is not documented as an event stream: {media}")]);
    }
    let mut errors = Vec::new();
    validate(spec, &schema["items"], data, "event data", &mut errors);
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

/// A response outside any documented operation: an error must be a problem document.
fn check_problem(
    spec: &Value,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    errors: &mut Vec<String>,
) {
    if status.is_success() {
        return;
    }
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).map(essence);
    if content_type.as_deref() != Some("application/problem+json") {
        errors.push(format!("{status}: content type {content_type:?}, not application/problem+json"));
        return;
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(value) => validate(spec, &json!({"$ref": "#/components/schemas/Problem"}), &value, "body", errors),
        Err(err) => errors.push(format!("{status}: the body is not JSON: {err}")),
    }
}

fn check_content(
    spec: &Value,
    operation: &str,
    status: StatusCode,
    response: &Value,
    headers: &HeaderMap,
    body: &[u8],
    errors: &mut Vec<String>,
) {
    let content = response.get("content").and_then(Value::as_object).filter(|c| !c.is_empty());
    let Some(content) = content else {
        if !body.is_empty() {
            errors.push(format!(
                "{operation} {status}: documented without a body, but sent {} bytes",
                body.len()
            ));
        }
        return;
    };
    let Some(content_type) = headers.get("content-type").and_then(|v| v.to_str().ok()) else {
        errors.push(format!("{operation} {status}: no Content-Type; documented: {:?}", content.keys()));
        return;
    };
    let essence = essence(content_type);
    let Some((media, media_object)) = content.iter().find(|(media, _)| media.eq_ignore_ascii_case(&essence))
    else {
        errors.push(format!(
            "{operation} {status}: Content-Type {content_type} is not documented (documented: {:?})",
            content.keys().collect::<Vec<_>>()
        ));
        return;
    };
    if !is_json_media(media) {
        return;
    }
    let value: Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        Err(err) => {
            errors.push(format!("{operation} {status}: the {media} body is not JSON: {err}"));
            return;
        }
    };
    if let Some(schema) = media_object.get("schema") {
        let mut found = Vec::new();
        validate(spec, schema, &value, "body", &mut found);
        for error in found {
            errors.push(format!("{operation} {status}: {error}; body: {value}"));
        }
    }
}

fn check_headers(
    spec: &Value,
    operation: &str,
    status: StatusCode,
    response: &Value,
    headers: &HeaderMap,
    errors: &mut Vec<String>,
) {
    for (name, header) in response.get("headers").and_then(Value::as_object).into_iter().flatten() {
        let header = resolve(spec, header);
        let values: Vec<&str> =
            headers.get_all(name.as_str()).iter().filter_map(|v| v.to_str().ok()).collect();
        match values.as_slice() {
            [] if header["required"] == true => {
                errors.push(format!("{operation} {status}: the required header {name} is missing"))
            }
            [] => {}
            [value] => {
                let schema = &header["schema"];
                // A header value is text; compare it as the type its schema states.
                let typed = match resolve(spec, schema)["type"].as_str() {
                    Some("integer") => value.parse::<i64>().map(Value::from).unwrap_or(json!(value)),
                    Some("number") => value.parse::<f64>().map(Value::from).unwrap_or(json!(value)),
                    Some("boolean") => value.parse::<bool>().map(Value::from).unwrap_or(json!(value)),
                    _ => json!(value),
                };
                validate(spec, schema, &typed, &format!("header {name}"), errors);
            }
            _ => errors.push(format!("{operation} {status}: header {name} sent {} times", values.len())),
        }
    }
}

/// Follows a local `$ref` (`#/components/...`), repeatedly.
pub fn resolve<'a>(spec: &'a Value, mut value: &'a Value) -> &'a Value {
    for _ in 0..16 {
        let Some(reference) = value.get("$ref").and_then(Value::as_str) else { return value };
        let pointer = reference.strip_prefix('#').unwrap_or_else(|| panic!("only local $refs: {reference}"));
        value = spec.pointer(pointer).unwrap_or_else(|| panic!("$ref {reference} points nowhere"));
    }
    panic!("a $ref cycle")
}

/// Keywords that only annotate.
const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "example",
    "examples",
    "default",
    "deprecated",
    "readOnly",
    "writeOnly",
    "externalDocs",
];

/// Validates `value` against an OpenAPI 3.0 Schema Object; `at` names where the value is.
pub fn validate(spec: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    if schema.get("$ref").is_some() {
        return validate(spec, resolve(spec, schema), value, at, errors);
    }
    let Some(keywords) = schema.as_object() else {
        errors.push(format!("{at}: the schema is not an object: {schema}"));
        return;
    };
    let nullable = schema["nullable"] == true;
    if value.is_null() && nullable {
        return;
    }
    for (keyword, argument) in keywords {
        check_keyword(spec, keywords, keyword, argument, value, at, errors);
    }
}

fn check_keyword(
    spec: &Value,
    schema: &Map<String, Value>,
    keyword: &str,
    argument: &Value,
    value: &Value,
    at: &str,
    errors: &mut Vec<String>,
) {
    let mut fail = |message: String| errors.push(format!("{at}: {message}"));
    let number = value.as_f64();
    let text_len = value.as_str().map(|s| s.chars().count() as u64);
    let limit = argument.as_f64().unwrap_or(f64::NAN);
    match keyword {
        k if ANNOTATIONS.contains(&k) || k.starts_with("x-") || k == "nullable" => {}
        "type" => {
            let ok = match argument.as_str() {
                Some("object") => value.is_object(),
                Some("array") => value.is_array(),
                Some("string") => value.is_string(),
                Some("boolean") => value.is_boolean(),
                Some("integer") => value.is_i64() || value.is_u64(),
                Some("number") => value.is_number(),
                other => panic!("unknown type {other:?} in a schema"),
            };
            if !ok {
                fail(format!(
                    "{value} is not of type {argument}{}",
                    if value.is_null() { " (not nullable)" } else { "" }
                ));
            }
        }
        "format" => check_format(argument.as_str().unwrap_or_default(), value, &mut fail),
        "enum" => {
            if !argument.as_array().is_some_and(|allowed| allowed.contains(value)) {
                fail(format!("{value} is not one of {argument}"));
            }
        }
        "minLength" => {
            if text_len.is_some_and(|n| (n as f64) < limit) {
                fail(format!("{value} is shorter than {argument} characters"));
            }
        }
        "maxLength" => {
            if text_len.is_some_and(|n| (n as f64) > limit) {
                fail(format!("{value} is longer than {argument} characters"));
            }
        }
        "pattern" => {
            let pattern = argument.as_str().unwrap_or_default();
            let regex = regex::Regex::new(pattern).unwrap_or_else(|e| panic!("pattern {pattern}: {e}"));
            if value.as_str().is_some_and(|text| !regex.is_match(text)) {
                fail(format!("{value} does not match {pattern}"));
            }
        }
        "minimum" => {
            let exclusive = schema.get("exclusiveMinimum") == Some(&Value::Bool(true));
            if number.is_some_and(|n| n < limit || (exclusive && n == limit)) {
                fail(format!("{value} is below the minimum {argument}"));
            }
        }
        "maximum" => {
            let exclusive = schema.get("exclusiveMaximum") == Some(&Value::Bool(true));
            if number.is_some_and(|n| n > limit || (exclusive && n == limit)) {
                fail(format!("{value} is above the maximum {argument}"));
            }
        }
        "exclusiveMinimum" | "exclusiveMaximum" => {} // with minimum / maximum
        "multipleOf" => {
            if number.is_some_and(|n| (n / limit).fract() != 0.0) {
                fail(format!("{value} is not a multiple of {argument}"));
            }
        }
        "items" => {
            for (index, item) in value.as_array().into_iter().flatten().enumerate() {
                validate(spec, argument, item, &format!("{at}[{index}]"), errors);
            }
        }
        "minItems" | "maxItems" => {
            if let Some(n) = value.as_array().map(|a| a.len() as f64)
                && ((keyword == "minItems" && n < limit) || (keyword == "maxItems" && n > limit))
            {
                fail(format!("{n} items breaks {keyword} {argument}"));
            }
        }
        "uniqueItems" => {
            if let (Some(items), true) = (value.as_array(), argument == &Value::Bool(true))
                && items.iter().enumerate().any(|(i, item)| items[..i].contains(item))
            {
                fail("items are not unique".into());
            }
        }
        "required" => {
            if let Some(object) = value.as_object() {
                for name in argument.as_array().into_iter().flatten().filter_map(Value::as_str) {
                    if !object.contains_key(name) {
                        fail(format!("the required property {name} is missing"));
                    }
                }
            }
        }
        "properties" => {
            if let (Some(object), Some(properties)) = (value.as_object(), argument.as_object()) {
                for (name, property) in properties {
                    if let Some(field) = object.get(name) {
                        validate(spec, property, field, &format!("{at}.{name}"), errors);
                    }
                }
            }
        }
        "additionalProperties" => {
            let known = schema.get("properties").and_then(Value::as_object);
            for (name, field) in value.as_object().into_iter().flatten() {
                if known.is_some_and(|k| k.contains_key(name)) {
                    continue;
                }
                match argument {
                    Value::Bool(false) => errors.push(format!("{at}: the property {name} is not allowed")),
                    Value::Bool(true) => {}
                    schema => validate(spec, schema, field, &format!("{at}.{name}"), errors),
                }
            }
        }
        "minProperties" | "maxProperties" => {
            if let Some(n) = value.as_object().map(|o| o.len() as f64)
                && ((keyword == "minProperties" && n < limit) || (keyword == "maxProperties" && n > limit))
            {
                fail(format!("{n} properties breaks {keyword} {argument}"));
            }
        }
        "allOf" => {
            for sub in argument.as_array().into_iter().flatten() {
                validate(spec, sub, value, at, errors);
            }
        }
        "anyOf" | "oneOf" => {
            let passing = argument
                .as_array()
                .into_iter()
                .flatten()
                .filter(|sub| {
                    let mut sub_errors = Vec::new();
                    validate(spec, sub, value, at, &mut sub_errors);
                    sub_errors.is_empty()
                })
                .count();
            if passing == 0 || (keyword == "oneOf" && passing > 1) {
                fail(format!("{value} matches {passing} of the {keyword} schemas"));
            }
        }
        "not" => {
            let mut sub_errors = Vec::new();
            validate(spec, argument, value, at, &mut sub_errors);
            if sub_errors.is_empty() {
                fail(format!("{value} matches a schema it must not"));
            }
        }
        other => panic!("the conformance check does not understand the schema keyword {other:?}: teach it"),
    }
}

fn check_format(format: &str, value: &Value, fail: &mut impl FnMut(String)) {
    let in_range = |min: f64, max: f64| value.as_f64().is_none_or(|n| (min..=max).contains(&n));
    let ok = match format {
        "int32" => in_range(i32::MIN as f64, i32::MAX as f64),
        "int64" => !value.is_number() || value.is_i64(),
        "uint16" => in_range(0.0, u16::MAX as f64),
        "uint32" => in_range(0.0, u32::MAX as f64),
        "uint64" => !value.is_number() || value.is_u64(),
        "date-time" => value.as_str().is_none_or(|text| {
            time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).is_ok()
        }),
        // Other formats (uri, email...) are annotations here.
        _ => true,
    };
    if !ok {
        fail(format!("{value} is not a valid {format}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(schema: Value, value: Value) -> Vec<String> {
        let mut errors = Vec::new();
        validate(spec(), &schema, &value, "value", &mut errors);
        errors
    }

    fn issue() -> Value {
        json!({
            "id": 1, "title": "t", "description": "d", "status": "OPEN", "priority": "LOW",
            "assigneeId": null, "organizationId": "o", "createdBy": "u",
            "createdAt": "2026-01-01T00:00:00.000000Z", "updatedAt": "2026-01-01T00:00:00.000000Z"
        })
    }

    #[test]
    fn the_schema_check_accepts_a_real_issue_and_refuses_each_kind_of_drift() {
        let issue_ref = || json!({"$ref": "#/components/schemas/Issue"});
        assert_eq!(errors(issue_ref(), issue()), Vec::<String>::new());
        let drifted = |field: &str, value: Value| {
            let mut body = issue();
            body[field] = value;
            errors(issue_ref(), body)
        };
        assert_eq!(drifted("status", json!("CLOSED")).len(), 1, "enum via $ref");
        assert_eq!(drifted("id", json!("1")).len(), 1, "type");
        assert!(!drifted("id", json!(1.5)).is_empty(), "integer");
        assert_eq!(drifted("title", Value::Null).len(), 1, "not nullable");
        assert_eq!(drifted("createdAt", json!("yesterday")).len(), 1, "date-time");
        assert!(drifted("assigneeId", json!("bob")).is_empty(), "nullable string, set");
        let mut missing = issue();
        missing.as_object_mut().unwrap().remove("title");
        assert_eq!(errors(issue_ref(), missing).len(), 1, "required");
        let list = json!({"type": "array", "items": issue_ref()});
        assert_eq!(
            errors(list.clone(), json!([issue(), {"id": 2}])).len(),
            8,
            "each missing field of item 1"
        );
    }

    #[test]
    fn the_schema_check_handles_closed_objects_lengths_patterns_and_all_of() {
        let patch = json!({"$ref": "#/components/schemas/IssuePatch"});
        assert!(errors(patch.clone(), json!({"assigneeId": null})).is_empty());
        assert_eq!(errors(patch.clone(), json!({"colour": "red"})).len(), 1, "additionalProperties: false");
        assert_eq!(errors(patch.clone(), json!({"assigneeId": "a b"})).len(), 1, "pattern");
        assert_eq!(errors(patch.clone(), json!({"title": ""})).len(), 2, "minLength and the pattern");
        assert_eq!(errors(patch, json!({"title": "é".repeat(256)})).len(), 1, "maxLength in characters");
        let new_issue = json!({"$ref": "#/components/schemas/NewIssue"});
        assert_eq!(
            errors(new_issue, json!({"title": "t", "description": "d", "priority": "URGENT"})).len(),
            1,
            "allOf with a $ref"
        );
    }

    #[test]
    #[should_panic(expected = "does not understand the schema keyword")]
    fn the_schema_check_refuses_keywords_it_does_not_know() {
        errors(json!({"type": "string", "contentEncoding": "base64"}), json!("x"));
    }

    /// What every `/api` response that no cache may keep carries.
    fn api_headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("cache-control", "no-store".parse().unwrap());
        headers.append("vary", "Origin".parse().unwrap());
        headers.append("vary", "Authorization, x-organization-id, x-user-id, x-user-role".parse().unwrap());
        headers
    }

    fn json_headers(content_type: &str) -> HeaderMap {
        let mut headers = api_headers();
        headers.insert("content-type", content_type.parse().unwrap());
        headers
    }

    #[test]
    fn every_api_response_must_be_private_to_its_caller_in_every_cache() {
        let check = |method: Method, path: &str, status: StatusCode, headers: &HeaderMap| {
            let mut errors = Vec::new();
            check_private_to_the_caller(&method, path, status, headers, &mut errors);
            errors
        };
        let stored = api_headers();
        let mut revalidated = api_headers();
        revalidated.insert("cache-control", "private, no-cache".parse().unwrap());
        assert!(check(Method::GET, "/api/issues", StatusCode::OK, &stored).is_empty());
        assert!(check(Method::GET, "/api/issues/1", StatusCode::OK, &revalidated).is_empty());
        assert!(check(Method::GET, "/api/issues/1", StatusCode::NOT_MODIFIED, &revalidated).is_empty());
        assert!(check(Method::GET, "/api/issues/1", StatusCode::NOT_FOUND, &stored).is_empty());
        assert_eq!(
            check(Method::GET, "/api/issues/1", StatusCode::OK, &stored).len(),
            1,
            "not revalidatable"
        );
        assert_eq!(check(Method::GET, "/api/issues", StatusCode::OK, &revalidated).len(), 1, "a list");
        assert_eq!(check(Method::PATCH, "/api/issues/1", StatusCode::OK, &revalidated).len(), 1, "a write");
        assert_eq!(check(Method::GET, "/api/issues/1", StatusCode::NOT_FOUND, &revalidated).len(), 1);
        let mut partial_vary = api_headers();
        partial_vary.remove("vary");
        partial_vary.insert("vary", "x-organization-id, Origin".parse().unwrap());
        assert_eq!(check(Method::GET, "/api/issues", StatusCode::OK, &partial_vary).len(), 3);
        assert_eq!(check(Method::GET, "/api/issues", StatusCode::OK, &HeaderMap::new()).len(), 5);
        assert!(check(Method::GET, "/openapi.json", StatusCode::OK, &HeaderMap::new()).is_empty());
    }

    #[test]
    fn a_response_is_checked_for_status_content_type_body_and_headers() {
        let issue = issue().to_string();
        let post = Method::POST;
        let created = |headers: &HeaderMap, body: &str| {
            check_response(&post, "/api/issues", StatusCode::CREATED, headers, body.as_bytes())
        };
        let mut with_location = json_headers("application/json");
        with_location.insert("location", "/api/issues/1".parse().unwrap());
        with_location.insert("etag", "\"1\"".parse().unwrap());
        assert_eq!(created(&with_location, &issue), Ok(()));
        assert!(created(&json_headers("application/json"), &issue).is_err(), "Location is required");
        let mut as_text = json_headers("text/plain");
        as_text.insert("location", "/api/issues/1".parse().unwrap());
        as_text.insert("etag", "\"1\"".parse().unwrap());
        assert!(created(&as_text, &issue).is_err(), "undocumented content type");
        assert!(created(&with_location, "{}").is_err(), "body schema");

        let get = |status, body: &str, content_type| {
            check_response(
                &Method::GET,
                "/api/issues/7",
                status,
                &json_headers(content_type),
                body.as_bytes(),
            )
        };
        let problem = |status: u16| {
            json!({"type": "about:blank", "title": "x", "status": status, "detail": "d"}).to_string()
        };
        assert_eq!(get(StatusCode::NOT_FOUND, &problem(404), "application/problem+json"), Ok(()));
        let undocumented = get(StatusCode::CONFLICT, &problem(409), "application/problem+json");
        assert!(undocumented.unwrap_err()[0].contains("does not list"), "409 is not documented for getIssue");
        assert!(get(StatusCode::NOT_FOUND, &problem(404), "application/json").is_err(), "problem media type");

        let deleted = |body: &str| {
            check_response(
                &Method::DELETE,
                "/api/issues/7",
                StatusCode::NO_CONTENT,
                &api_headers(),
                body.as_bytes(),
            )
        };
        assert_eq!(deleted(""), Ok(()));
        assert!(deleted("{}").is_err(), "204 has no body");

        let unknown = |status, body: &str| {
            check_response(
                &Method::GET,
                "/api/nope",
                status,
                &json_headers("application/problem+json"),
                body.as_bytes(),
            )
        };
        assert_eq!(unknown(StatusCode::NOT_FOUND, &problem(404)), Ok(()));
        assert!(unknown(StatusCode::OK, "{}").is_err(), "an undocumented path that answers");
        assert!(unknown(StatusCode::NOT_FOUND, "{}").is_err(), "errors are problems everywhere");

        let head = check_response(
            &Method::HEAD,
            "/api/issues",
            StatusCode::OK,
            &json_headers("application/json"),
            b"",
        );
        assert_eq!(head, Ok(()), "HEAD is GET without a body");
    }

    #[test]
    fn concrete_paths_match_their_templates() {
        let spec = spec();
        assert_eq!(match_path(spec, "/api/issues/12").map(|m| m.0), Some("/api/issues/{id}"));
        assert_eq!(match_path(spec, "/api/issues").map(|m| m.0), Some("/api/issues"));
        assert_eq!(match_path(spec, "/api/issues/").map(|m| m.0), None);
        assert_eq!(match_path(spec, "/api/issues/1/x/y").map(|m| m.0), None);
    }
}
