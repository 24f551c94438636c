//! The OpenAPI document: committed, served and shown by Swagger UI, all the same, and
//! saying what the service really requires.

use reqwest::StatusCode;
use serde_json::Value;
use tenantry::domain::rules;

use crate::helpers::*;

const COMMITTED: &str = include_str!("../../openapi/openapi.json");

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
    assert!(!html.contains("<script src=\"http"), "no external script");
}

#[test]
fn every_operation_requires_all_three_identity_headers_together() {
    let spec: Value = serde_json::from_str(COMMITTED).unwrap();
    let schemes = &spec["components"]["securitySchemes"];
    for (scheme, header) in
        [("organizationId", "x-organization-id"), ("userId", "x-user-id"), ("userRole", "x-user-role")]
    {
        assert_eq!(schemes[scheme]["type"], "apiKey");
        assert_eq!(schemes[scheme]["in"], "header");
        assert_eq!(schemes[scheme]["name"], header);
    }
    let mut operations = 0;
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            operations += 1;
            let security = operation["security"].as_array().unwrap_or_else(|| panic!("{method} {path}"));
            assert_eq!(security.len(), 1, "{method} {path}: one requirement object, not alternatives");
            let mut names: Vec<&String> = security[0].as_object().unwrap().keys().collect();
            names.sort();
            assert_eq!(names, ["organizationId", "userId", "userRole"], "{method} {path}");
        }
    }
    assert_eq!(operations, 8);
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

#[test]
fn the_query_parameters_each_operation_accepts_are_exactly_the_documented_ones() {
    use tenantry::http::{
        activity::{FeedParameters, HistoryParameters},
        issues::IssueListParameters,
        query::{NoParameters, QuerySpec},
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
