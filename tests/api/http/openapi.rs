//! The OpenAPI document: committed, served and shown by Swagger UI, all the same, and
//! saying what the service really requires.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tenantry::domain::rules;

use crate::helpers::*;

const COMMITTED: &str = include_str!("../../../openapi/openapi.json");

#[tokio::test]
async fn the_committed_document_is_exactly_what_the_server_serves() {
    let app = spawn_app().await;
    let response = app.client.get(format!("{}/openapi.json", app.address)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    let served = response.text().await.unwrap();
    assert!(
        served == COMMITTED,
        "openapi/openapi.json is out of date; regenerate it with: cargo run -- openapi > openapi/openapi.json"
    );
}

#[tokio::test]
async fn swagger_ui_is_served_offline_with_the_same_document() {
    let app = spawn_app().await;
    let response = app.client.get(format!("{}/docs", app.address)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let html = response.text().await.unwrap();
    assert!(html.contains("SwaggerUIBundle"), "the UI's script is inlined");
    assert!(html.contains(COMMITTED), "the document shown is the served one");
    for external in ["<script src=", "<link ", "<img ", "@import"] {
        assert!(!html.contains(external), "nothing loaded from elsewhere: {external}");
    }
    assert!(html.contains("<title>tenantry API</title>"));
    assert!(html.contains("<a id=\"openapi-link\" href=\"/openapi.json\">/openapi.json</a>"));
}

/// AUTH_MODE=headers (the default): one form for the three identity headers, kept across
/// reloads. The browser test uses it; this says it is served.
#[tokio::test]
async fn in_headers_mode_swagger_ui_has_one_form_for_the_three_identity_headers_kept_across_reloads() {
    let app = spawn_app().await;
    let html = app.client.get(format!("{}/docs", app.address)).send().await.unwrap().text().await.unwrap();
    assert_eq!(html.matches("<form id=\"identity\"").count(), 1);
    for header in ["x-organization-id", "x-user-id", "x-user-role"] {
        assert!(html.contains(&format!("data-header=\"{header}\"")), "{header}");
    }
    assert!(html.contains("persistAuthorization: true"));
    assert!(html.find("<form id=\"identity\"") < html.find("<div id=\"ui\">"), "the form comes first");
}

#[test]
fn every_operation_requires_all_three_identity_headers_together_or_a_bearer_token() {
    let spec: Value = serde_json::from_str(COMMITTED).unwrap();
    let schemes = &spec["components"]["securitySchemes"];
    for (scheme, header) in
        [("organizationId", "x-organization-id"), ("userId", "x-user-id"), ("userRole", "x-user-role")]
    {
        assert_eq!(schemes[scheme]["type"], "apiKey");
        assert_eq!(schemes[scheme]["in"], "header");
        assert_eq!(schemes[scheme]["name"], header);
    }
    assert_eq!(schemes["bearerAuth"]["type"], "http");
    assert_eq!(schemes["bearerAuth"]["scheme"], "bearer");
    assert_eq!(schemes["bearerAuth"]["bearerFormat"], "JWT");
    let mut operations = 0;
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            operations += 1;
            let security = operation["security"].as_array().unwrap_or_else(|| panic!("{method} {path}"));
            // Two alternatives: the three headers together, or the token.
            assert_eq!(security.len(), 2, "{method} {path}: {security:?}");
            let mut names: Vec<&String> = security[0].as_object().unwrap().keys().collect();
            names.sort();
            assert_eq!(names, ["organizationId", "userId", "userRole"], "{method} {path}");
            let names: Vec<&String> = security[1].as_object().unwrap().keys().collect();
            assert_eq!(names, ["bearerAuth"], "{method} {path}");
            // Every API operation is rate limited.
            assert!(operation["responses"]["429"]["headers"]["Retry-After"].is_object(), "{method} {path}");
        }
    }
    assert_eq!(operations, 18);
}

#[test]
fn the_documented_limits_are_the_enforced_ones() {
    let spec: Value = serde_json::from_str(COMMITTED).unwrap();
    for schema in ["NewIssue", "IssuePatch"] {
        let properties = &spec["components"]["schemas"][schema]["properties"];
        assert_eq!(properties["title"]["maxLength"], rules::TITLE_MAX_CHARS, "{schema}");
        assert_eq!(properties["description"]["maxLength"], rules::DESCRIPTION_MAX_CHARS, "{schema}");
        assert_eq!(properties["assigneeId"]["maxLength"], rules::ID_MAX_CHARS, "{schema}");
        assert_eq!(properties["assigneeId"]["nullable"], true, "{schema}");
        assert_eq!(spec["components"]["schemas"][schema]["additionalProperties"], false, "{schema}");
    }
    assert_eq!(spec["components"]["schemas"]["Issue"]["properties"]["assigneeId"]["nullable"], true);
}

/// Every operation in the document, as (`METHOD /path (operationId)`, operation).
fn operations(spec: &Value) -> Vec<(String, &Value)> {
    let mut operations = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let id = operation["operationId"].as_str().unwrap_or("no operationId");
            operations.push((format!("{} {path} ({id})", method.to_uppercase()), operation));
        }
    }
    operations
}

fn non_empty_text(value: &Value) -> bool {
    value.as_str().is_some_and(|text| !text.trim().is_empty())
}

fn has_examples(media: &Value) -> bool {
    media["examples"].as_object().is_some_and(|examples| !examples.is_empty())
        || media.get("example").is_some()
}

/// The statuses an operation can answer, from its shape: identity headers can be
/// wrong (401), parameters and bodies can be invalid (400), bodies too large or not
/// JSON (413, 415), an id can name nothing (404), and the database can be away (503) or
/// a bug can strike (500). Statuses that depend on the handler (403 for ADMIN-only
/// operations, 409...) are caught when a test or schemathesis receives them.
fn statuses_it_can_return(path: &str, operation: &Value) -> Vec<&'static str> {
    let mut statuses = vec!["500", "503"];
    if operation["security"].as_array().is_some_and(|s| !s.is_empty()) {
        statuses.push("401");
    }
    let has_parameters = operation["parameters"].as_array().is_some_and(|p| !p.is_empty());
    let has_body = operation.get("requestBody").is_some();
    if has_parameters || has_body {
        statuses.push("400");
    }
    if has_body {
        statuses.extend(["413", "415"]);
    }
    if path.contains('{') {
        statuses.push("404");
    }
    statuses
}

#[test]
fn every_operation_is_documented_completely() {
    let spec: Value = serde_json::from_str(COMMITTED).unwrap();
    let mut missing = Vec::new();
    for (name, operation) in operations(&spec) {
        let mut lacks = |what: String| missing.push(format!("{name}: {what}"));
        for field in ["operationId", "summary", "description"] {
            if !non_empty_text(&operation[field]) {
                lacks(format!("no {field}"));
            }
        }
        if operation["tags"].as_array().is_none_or(|tags| tags.is_empty()) {
            lacks("no tags".into());
        }
        for parameter in operation["parameters"].as_array().into_iter().flatten() {
            let parameter_name = parameter["name"].as_str().unwrap_or("?");
            if !non_empty_text(&parameter["description"]) {
                lacks(format!("parameter {parameter_name} has no description"));
            }
            // Swagger UI fills "Try it out" with a parameter's example: a required one gets
            // a working value; an optional one (a filter, a cursor, If-Match, an
            // Idempotency-Key) must stay empty, or trying an operation would send it.
            let has_example = parameter.get("example").is_some() || parameter.get("examples").is_some();
            match (parameter["required"] == true, has_example) {
                (true, false) => lacks(format!("required parameter {parameter_name} has no example")),
                (false, true) => lacks(format!(
                    "optional parameter {parameter_name} has an example, which Swagger UI would send"
                )),
                _ => {}
            }
        }
        for (media_type, media) in operation["requestBody"]["content"].as_object().into_iter().flatten() {
            if !has_examples(media) {
                lacks(format!("request body {media_type} has no examples"));
            }
        }
        let responses = operation["responses"].as_object().cloned().unwrap_or_default();
        if !responses.keys().any(|status| status.starts_with('2') || status.starts_with('3')) {
            lacks("no success response".into());
        }
        let path = name.split(' ').nth(1).unwrap();
        for status in statuses_it_can_return(path, operation) {
            if !responses.contains_key(status) {
                lacks(format!("status {status} is not documented"));
            }
        }
        for (status, response) in &responses {
            if !non_empty_text(&response["description"]) {
                lacks(format!("response {status} has no description"));
            }
            let content = response["content"].as_object().cloned().unwrap_or_default();
            for (media_type, media) in &content {
                if !has_examples(media) {
                    lacks(format!("response {status} {media_type} has no examples"));
                }
            }
            if status.starts_with('4') || status.starts_with('5') {
                let problem = &content.get("application/problem+json").map(|m| m["schema"]["$ref"].clone());
                if content.len() != 1 || problem.as_ref() != Some(&json!("#/components/schemas/Problem")) {
                    lacks(format!(
                        "response {status} is not application/problem+json with the Problem schema"
                    ));
                }
            }
            for (header, definition) in response["headers"].as_object().into_iter().flatten() {
                if !non_empty_text(&definition["description"]) {
                    lacks(format!("response {status} header {header} has no description"));
                }
                if definition.get("example").is_none() {
                    lacks(format!("response {status} header {header} has no example"));
                }
            }
        }
        if responses.get("201").is_some_and(|created| created["headers"].get("Location").is_none()) {
            lacks("response 201 has no Location header".into());
        }
        if responses.get("503").is_some_and(|unavailable| unavailable["headers"].get("Retry-After").is_none())
        {
            lacks("response 503 has no Retry-After header".into());
        }
    }
    assert!(
        missing.is_empty(),
        "the OpenAPI document is incomplete (examples: src/http/spec/examples.rs; statuses: each \
         operation's ErrorStatuses; words: the handler's doc comment):\n  {}",
        missing.join("\n  ")
    );
}

#[test]
fn every_example_in_the_document_matches_its_schema() {
    let spec = crate::http::conformance::spec();
    // (where, schema, example, the status a problem example must state)
    let mut examples: Vec<(String, &Value, &Value, Option<u64>)> = Vec::new();
    for (name, operation) in operations(spec) {
        for parameter in operation["parameters"].as_array().into_iter().flatten() {
            if let Some(example) = parameter.get("example") {
                examples.push((
                    format!("{name} parameter {}", parameter["name"]),
                    &parameter["schema"],
                    example,
                    None,
                ));
            }
        }
        let mut media_types: Vec<(String, &Value, Option<u64>)> = Vec::new();
        for (media_type, media) in operation["requestBody"]["content"].as_object().into_iter().flatten() {
            media_types.push((format!("request {media_type}"), media, None));
        }
        for (status, response) in operation["responses"].as_object().into_iter().flatten() {
            for (header, definition) in response["headers"].as_object().into_iter().flatten() {
                if let Some(example) = definition.get("example") {
                    examples.push((
                        format!("{name} {status} header {header}"),
                        &definition["schema"],
                        example,
                        None,
                    ));
                }
            }
            for (media_type, media) in response["content"].as_object().into_iter().flatten() {
                let problem_status =
                    (media_type == "application/problem+json").then(|| status.parse().unwrap());
                media_types.push((format!("response {status} {media_type}"), media, problem_status));
            }
        }
        for (at, media, status) in media_types {
            for (example_name, example) in media["examples"].as_object().into_iter().flatten() {
                examples.push((
                    format!("{name} {at} example {example_name}"),
                    &media["schema"],
                    &example["value"],
                    status,
                ));
            }
        }
    }
    let mut wrong = Vec::new();
    for (at, schema, value, status) in &examples {
        crate::http::conformance::validate(spec, schema, value, at, &mut wrong);
        if status.is_some_and(|status| value["status"] != status) {
            wrong.push(format!("{at}: states status {}", value["status"]));
        }
    }
    assert!(wrong.is_empty(), "examples that do not match their schema:\n  {}", wrong.join("\n  "));
    assert!(examples.len() > 20, "only {} examples were checked", examples.len());
}

/// The Python tools' virtualenv (`.ci/run` creates it; see README), or `None` when it is
/// missing here and REQUIRE_SPEC_VALIDATOR is not set.
fn spec_validator() -> Option<std::path::PathBuf> {
    let venv = std::env::var_os("TENANTRY_TOOLS_VENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tools-venv"));
    let validator = venv.join("bin/openapi-spec-validator");
    if validator.exists() {
        return Some(validator);
    }
    let hint =
        "python3 -m venv target/tools-venv && target/tools-venv/bin/pip install -r tools/requirements.txt";
    if std::env::var_os("REQUIRE_SPEC_VALIDATOR").is_some_and(|v| v == "1") {
        panic!("REQUIRE_SPEC_VALIDATOR=1 but {} is missing; create it with: {hint}", validator.display());
    }
    eprintln!(
        "SKIPPED: {} is missing, so the document was not run through a real OpenAPI validator; {hint}",
        validator.display()
    );
    None
}

fn run_validator(validator: &std::path::Path, document: &str) -> (bool, String) {
    let dir = crate::ops::startup::tempdir("openapi-validator");
    let file = dir.join("openapi.json");
    std::fs::write(&file, document).unwrap();
    let output =
        std::process::Command::new(validator).arg(&file).output().expect("running openapi-spec-validator");
    let text =
        String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

#[test]
fn the_committed_document_passes_a_real_openapi_validator() {
    let Some(validator) = spec_validator() else { return };
    let (valid, output) = run_validator(&validator, COMMITTED);
    assert!(valid, "openapi-spec-validator refused openapi/openapi.json:\n{output}");

    // And it does refuse a broken document, so the pass above means something.
    let mut broken: Value = serde_json::from_str(COMMITTED).unwrap();
    broken["paths"]["/api/issues"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["type"] =
        json!("list");
    let (valid, output) = run_validator(&validator, &broken.to_string());
    assert!(!valid, "a schema of type \"list\" was accepted:\n{output}");
}

#[test]
fn the_documented_text_patterns_accept_exactly_what_the_service_accepts() {
    let spec: Value = serde_json::from_str(COMMITTED).unwrap();
    let mut samples = crate::isolation::catalog::samples();
    samples.extend(
        [
            "\u{1680}",
            "\u{2000}\u{200a}",
            "\u{202f}x",
            "\u{205f}",
            "\u{2029}",
            "\u{180e}",
            "a\u{9f}",
            "\u{a1}",
        ]
        .map(String::from),
    );
    for schema in ["NewIssue", "IssuePatch"] {
        let properties = &spec["components"]["schemas"][schema]["properties"];
        let title = regex::Regex::new(properties["title"]["pattern"].as_str().unwrap()).unwrap();
        let description = regex::Regex::new(properties["description"]["pattern"].as_str().unwrap()).unwrap();
        for sample in &samples {
            let fits = |field: &str| {
                let (min, max) =
                    (properties[field]["minLength"].as_u64(), properties[field]["maxLength"].as_u64());
                let length = sample.chars().count() as u64;
                min.is_none_or(|min| length >= min) && max.is_none_or(|max| length <= max)
            };
            assert_eq!(
                title.is_match(sample) && fits("title"),
                rules::title_problem(sample).is_none(),
                "{schema} title {sample:?}"
            );
            assert_eq!(
                description.is_match(sample) && fits("description"),
                rules::description_problem(sample).is_none(),
                "{schema} description {sample:?}"
            );
        }
    }
}

#[test]
fn the_query_parameters_each_operation_accepts_are_exactly_the_documented_ones() {
    use tenantry::http::{
        api::{
            activity::{FeedParameters, HistoryParameters},
            issues::IssueListParameters,
            stream::StreamParameters,
        },
        extract::query::{NoParameters, QuerySpec},
    };
    fn accepted<S: QuerySpec>() -> (&'static [&'static str], &'static [&'static str]) {
        (S::PARAMETERS, S::LISTS)
    }
    let spec: Value = serde_json::from_str(COMMITTED).unwrap();
    for (path, method, (parameters, lists)) in [
        ("/api/issues", "get", accepted::<IssueListParameters>()),
        ("/api/activity", "get", accepted::<FeedParameters>()),
        ("/api/issues/{id}/activity", "get", accepted::<HistoryParameters>()),
        ("/api/issues/{id}/restore", "post", accepted::<NoParameters>()),
        ("/api/activity/stream", "get", accepted::<StreamParameters>()),
    ] {
        let documented: Vec<&Value> = spec["paths"][path][method]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["in"] == "query")
            .collect();
        let names: Vec<&str> = documented.iter().map(|p| p["name"].as_str().unwrap()).collect();
        assert_eq!(names, parameters, "{method} {path}");
        for parameter in documented {
            let name = parameter["name"].as_str().unwrap();
            assert!(
                parameter["description"].as_str().is_some_and(|d| d.len() > 10),
                "{path} {name} is described"
            );
            let is_list = parameter["schema"]["type"] == "array";
            assert_eq!(is_list, lists.contains(&name), "{path} {name}: a list exactly when it may repeat");
            if name == "limit" {
                assert_eq!(parameter["schema"]["minimum"].as_f64(), Some(1.0));
                assert_eq!(
                    parameter["schema"]["maximum"].as_f64(),
                    Some(f64::from(tenantry::domain::page::MAX_PAGE_SIZE))
                );
                assert_eq!(parameter["schema"]["default"], tenantry::domain::page::DEFAULT_PAGE_SIZE);
            }
        }
    }
}

#[test]
fn the_paged_lists_document_their_link_header_and_the_activity_schema() {
    let spec: Value = serde_json::from_str(COMMITTED).unwrap();
    for (path, item) in [
        ("/api/issues", "Issue"),
        ("/api/activity", "ActivityEntry"),
        ("/api/issues/{id}/activity", "ActivityEntry"),
    ] {
        let ok = &spec["paths"][path]["get"]["responses"]["200"];
        assert_eq!(ok["content"]["application/json"]["schema"]["type"], "array", "{path}: a plain array");
        assert_eq!(
            ok["content"]["application/json"]["schema"]["items"]["$ref"],
            format!("#/components/schemas/{item}")
        );
        let link = ok["headers"]
            .as_object()
            .unwrap()
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("link"))
            .map(|(_, header)| header)
            .unwrap_or_else(|| panic!("{path}: a Link header"));
        assert_eq!(link["required"], Value::Null, "{path}: absent on the last page");
        assert!(link["description"].as_str().unwrap().contains("rel=\"next\""), "{path}");
    }
    let entry = &spec["components"]["schemas"]["ActivityEntry"];
    let mut properties: Vec<&String> = entry["properties"].as_object().unwrap().keys().collect();
    properties.sort();
    assert_eq!(properties, ["action", "actorId", "changes", "createdAt", "id", "issueId"]);
    assert_eq!(
        spec["components"]["schemas"]["Action"]["enum"],
        serde_json::json!(["created", "updated", "deleted", "restored"])
    );
    let changes = &entry["properties"]["changes"];
    assert_eq!(changes["oneOf"].as_array().unwrap().len(), 2);
    assert_eq!(
        changes["oneOf"][0]["additionalProperties"]["$ref"], "#/components/schemas/FieldChange",
        "updated entries: field -> {{from, to}}"
    );
    assert_eq!(changes["oneOf"][1]["allOf"][0]["$ref"], "#/components/schemas/Issue", "the whole issue");
    let restore = &spec["paths"]["/api/issues/{id}/restore"]["post"]["responses"];
    for status in ["200", "403", "404", "409"] {
        assert!(restore[status].is_object(), "restore documents {status}");
    }
}

/// The id rule is written once (`domain::rules`): poem-openapi's validator attributes need
/// literal patterns, so every id pattern of the document must be exactly that rule.
/// The `Idempotency-Key` header is documented with the one rule `domain::rules` holds.
#[test]
fn the_idempotency_key_is_documented_with_the_one_rule() {
    use tenantry::domain::rules::{IDEMPOTENCY_KEY_MAX_CHARS, IDEMPOTENCY_KEY_PATTERN};
    let spec: Value = serde_json::from_str(COMMITTED).unwrap();
    let parameters = spec["paths"]["/api/issues"]["post"]["parameters"].as_array().unwrap();
    let header = parameters.iter().find(|p| p["name"] == "Idempotency-Key").expect("documented");
    assert_eq!(header["schema"]["pattern"], IDEMPOTENCY_KEY_PATTERN);
    assert_eq!(header["schema"]["maxLength"], IDEMPOTENCY_KEY_MAX_CHARS);
    assert_eq!(header["schema"]["minLength"], 1);
}

#[test]
fn every_id_pattern_of_the_document_is_the_one_id_rule() {
    use tenantry::domain::rules::ID_PATTERN;
    let inner = ID_PATTERN.trim_start_matches('^').trim_end_matches('$');
    let mut found = 0;
    let mut wrong = Vec::new();
    fn walk(value: &Value, visit: &mut dyn FnMut(&str)) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(pattern)) = map.get("pattern") {
                    visit(pattern);
                }
                map.values().for_each(|v| walk(v, visit));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, visit)),
            _ => {}
        }
    }
    let spec: Value = serde_json::from_str(COMMITTED).unwrap();
    walk(&spec, &mut |pattern| {
        if pattern.contains("A-Za-z0-9.") || pattern.contains("{1,64}") {
            found += 1;
            if pattern != ID_PATTERN && pattern != format!("^(none|{inner})$") {
                wrong.push(pattern.to_owned());
            }
        }
    });
    assert!(found >= 5, "the document's id patterns: {found}");
    assert!(wrong.is_empty(), "id patterns other than {ID_PATTERN}: {wrong:?}");
}

/// Swagger UI shows the document in its own order: issues before activity, operations in
/// the order a user works (create, list, get, update, delete, restore), fields and
/// examples as written (the first PATCH example changes something).
#[test]
fn the_document_lists_operations_fields_and_examples_in_working_order() {
    let spec: Value = serde_json::from_str(COMMITTED).unwrap();
    let tags: Vec<&str> =
        spec["tags"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(tags, ["Issues", "Activity", "Webhooks"]);
    let operations: Vec<&str> = spec["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .map(|operation| operation["operationId"].as_str().unwrap())
        .collect();
    assert_eq!(
        operations,
        [
            "createIssue",
            "listIssues",
            "getIssue",
            "updateIssue",
            "deleteIssue",
            "restoreIssue",
            "listActivity",
            "listIssueActivity",
            "streamActivity",
            "createWebhook",
            "listWebhooks",
            "getWebhook",
            "updateWebhook",
            "deleteWebhook",
            "rotateWebhookSecret",
            "listWebhookDeliveries",
            "redeliverWebhookEvent",
            "pingWebhook"
        ]
    );
    let fields: Vec<&String> =
        spec["components"]["schemas"]["Issue"]["properties"].as_object().unwrap().keys().collect();
    assert_eq!(fields[..3], ["id", "title", "description"]);
    let patch =
        &spec["paths"]["/api/issues/{id}"]["patch"]["requestBody"]["content"]["application/json"]["examples"];
    let (_, first) = patch.as_object().unwrap().iter().next().unwrap();
    assert!(
        !first["value"].as_object().unwrap().is_empty(),
        "the first PATCH example changes something: {first}"
    );
}

/// The stream is documented as what it is: `text/event-stream` whose events' data are
/// activity entries, resumable with `Last-Event-ID`, refusals as problems before it starts.
#[test]
fn the_live_stream_is_documented_as_an_event_stream_of_activity_entries() {
    let spec: Value = serde_json::from_str(COMMITTED).unwrap();
    let operation = &spec["paths"]["/api/activity/stream"]["get"];
    assert_eq!(operation["operationId"], "streamActivity");
    let ok = &operation["responses"]["200"];
    let content: Vec<&String> = ok["content"].as_object().unwrap().keys().collect();
    assert_eq!(content, ["text/event-stream"]);
    let schema = &ok["content"]["text/event-stream"]["schema"];
    assert_eq!((&schema["type"], &schema["format"]), (&json!("array"), &json!("event-stream")));
    assert_eq!(schema["items"]["$ref"], "#/components/schemas/ActivityEntry");
    for words in ["event: activity", "retry:", "keep-alive", "`id:`"] {
        assert!(ok["description"].as_str().unwrap().contains(words), "the 200 describes {words}");
    }
    let header = operation["parameters"].as_array().unwrap().iter().find(|p| p["in"] == "header").unwrap();
    assert_eq!((&header["name"], &header["required"]), (&json!("Last-Event-ID"), &json!(false)));
    for status in ["400", "401", "429", "503"] {
        assert!(
            operation["responses"][status]["content"]["application/problem+json"].is_object(),
            "{status}"
        );
    }
}
