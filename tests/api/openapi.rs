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
