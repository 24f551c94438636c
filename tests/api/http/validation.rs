//! Bad input: always a 4xx problem, naming what is wrong, and never a stored change.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

fn valid() -> Value {
    json!({"title": "A title", "description": "A description"})
}

fn with(field: &str, value: Value) -> Value {
    let mut body = valid();
    body[field] = value;
    body
}

/// Each body is refused with 400 naming exactly `fields`, and nothing is stored.
async fn assert_refused(app: &TestApp, body: Value, fields: &[&str]) {
    let problem =
        assert_problem(app.create(&member("acme"), body.clone()).await, StatusCode::BAD_REQUEST).await;
    assert_eq!(error_fields(&problem), fields, "for {body}");
    for error in problem["errors"].as_array().unwrap() {
        assert!(!error["message"].as_str().unwrap().is_empty());
    }
}

#[tokio::test]
async fn titles_must_be_1_to_255_characters_not_blank_without_control_characters() {
    let app = spawn_app().await;
    for bad in [
        json!(""),
        json!("   "),
        json!("\u{3000}\u{a0}"),
        json!("x".repeat(256)),
        json!("a\tb"),
        json!("a\nb"),
        json!("nul\u{0}"),
        json!("del\u{7f}"),
        json!("c1\u{85}"),
    ] {
        assert_refused(&app, with("title", bad), &["title"]).await;
    }
    assert_refused(&app, with("title", json!(null)), &["title"]).await;
    assert_refused(&app, with("title", json!(7)), &["title"]).await;
    assert!(app.list(&member("acme")).await.is_empty(), "nothing was stored");

    // The limits themselves are fine, counted in characters, not bytes.
    for good in ["é".repeat(255), "x".to_owned(), "zero\u{200b}width".to_owned()] {
        let response = app.create(&member("acme"), with("title", json!(good))).await;
        assert_eq!(response.status(), StatusCode::CREATED, "{good:?}");
        assert_eq!(response.json::<Value>().await.unwrap()["title"], json!(good), "stored whole");
    }
}

#[tokio::test]
async fn descriptions_allow_tabs_and_line_breaks_up_to_50000_characters() {
    let app = spawn_app().await;
    for bad in [json!(""), json!("\n\t "), json!("x".repeat(50_001)), json!("bell\u{7}"), json!("nul\u{0}")] {
        assert_refused(&app, with("description", bad), &["description"]).await;
    }
    for good in ["line 1\nline 2\r\n\tindented".to_owned(), "é".repeat(50_000)] {
        let response = app.create(&member("acme"), with("description", json!(good))).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        assert_eq!(response.json::<Value>().await.unwrap()["description"], json!(good));
    }
}

#[tokio::test]
async fn enums_and_assignee_ids_are_checked() {
    let app = spawn_app().await;
    assert_refused(&app, with("status", json!("open")), &["status"]).await;
    assert_refused(&app, with("status", json!(null)), &["status"]).await;
    assert_refused(&app, with("priority", json!("URGENT")), &["priority"]).await;
    assert_refused(&app, with("assigneeId", json!("bob smith")), &["assigneeId"]).await;
    assert_refused(&app, with("assigneeId", json!("x".repeat(65))), &["assigneeId"]).await;
    assert_refused(&app, with("assigneeId", json!(12)), &["assigneeId"]).await;
    let response = app.create(&member("acme"), with("assigneeId", json!(null))).await;
    assert_eq!(response.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn missing_fields_and_every_other_field_are_named() {
    let app = spawn_app().await;
    assert_refused(&app, json!({}), &["title", "description"]).await;
    assert_refused(&app, json!({"description": "d"}), &["title"]).await;
    for field in ["id", "organizationId", "createdAt", "updatedAt", "createdBy", "version", "colour"] {
        assert_refused(&app, with(field, json!("x")), &[field]).await;
    }
    let problem = assert_problem(
        app.create(&member("acme"), with("organizationId", json!("other"))).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    // Said so that it holds in both AUTH_MODEs (a header or a token's claim).
    assert_eq!(
        problem["errors"][0]["message"],
        "cannot be sent: the server sets it to the caller's organization"
    );
    assert!(app.list(&member("acme")).await.is_empty());
    assert!(app.list(&member("other")).await.is_empty());
}

#[tokio::test]
async fn patches_are_validated_the_same_way_and_change_nothing_when_refused() {
    let app = spawn_app().await;
    let before = app.create_ok(&member("acme"), "Original").await;
    for (body, field) in [
        (json!({"title": ""}), "title"),
        (json!({"title": null}), "title"),
        (json!({"description": "x".repeat(50_001)}), "description"),
        (json!({"status": "CLOSED"}), "status"),
        (json!({"priority": 1}), "priority"),
        (json!({"assigneeId": "no spaces"}), "assigneeId"),
        (json!({"organizationId": "other"}), "organizationId"),
        (json!({"id": 2}), "id"),
    ] {
        let problem =
            assert_problem(app.patch(&admin("acme"), 1, body.clone()).await, StatusCode::BAD_REQUEST).await;
        assert_eq!(error_fields(&problem), [field], "for {body}");
    }
    assert_eq!(app.get(&admin("acme"), "/api/issues/1").await.json::<Value>().await.unwrap(), before);
}

#[tokio::test]
async fn bodies_that_are_not_json_objects_are_400() {
    let app = spawn_app().await;
    let actor = member("acme");
    for raw in ["{\"title\": ", "[]", "\"text\"", "null", "", "{\"title\":\"a\"} trailing"] {
        let response = app
            .request(Method::POST, "/api/issues", Some(&actor))
            .header("content-type", "application/json")
            .body(raw)
            .send()
            .await
            .unwrap();
        let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(error_fields(&problem), ["body"], "for {raw:?}");
    }
}

#[tokio::test]
async fn a_body_that_is_not_json_is_415() {
    let app = spawn_app().await;
    let actor = member("acme");
    let text = app
        .request(Method::POST, "/api/issues", Some(&actor))
        .header("content-type", "text/plain")
        .body(valid().to_string())
        .send()
        .await
        .unwrap();
    assert_problem(text, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    let untyped = app
        .request(Method::POST, "/api/issues", Some(&actor))
        .body(valid().to_string())
        .send()
        .await
        .unwrap();
    assert_problem(untyped, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    let with_charset = app
        .request(Method::POST, "/api/issues", Some(&actor))
        .header("content-type", "application/json; charset=utf-8")
        .body(valid().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(with_charset.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn a_body_over_1_mib_is_413_whether_or_not_its_length_is_declared() {
    let app = spawn_app().await;
    let actor = member("acme");
    let huge = format!("{{\"title\":\"t\",\"description\":\"{}\"}}", "x".repeat(1024 * 1024));
    let declared = app
        .request(Method::POST, "/api/issues", Some(&actor))
        .header("content-type", "application/json")
        .body(huge.clone())
        .send()
        .await
        .unwrap();
    assert_problem(declared, StatusCode::PAYLOAD_TOO_LARGE).await;

    // Chunked: no Content-Length, so the limit applies while reading.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        huge.into_bytes().chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    let chunked = app
        .request(Method::POST, "/api/issues", Some(&actor))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_problem(chunked, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert!(app.list(&actor).await.is_empty());
}

#[tokio::test]
async fn ids_that_are_not_positive_64_bit_integers_are_400() {
    let app = spawn_app().await;
    for id in ["abc", "0", "-1", "1.5", "9223372036854775808", "1e3"] {
        let problem = assert_problem(
            app.get(&member("acme"), &format!("/api/issues/{id}")).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert_eq!(error_fields(&problem), ["id"], "for {id}");
        let problem = assert_problem(
            app.request(Method::DELETE, &format!("/api/issues/{id}"), Some(&admin("acme")))
                .send()
                .await
                .unwrap(),
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert_eq!(error_fields(&problem), ["id"], "for {id}");
    }
    assert_problem(app.get(&member("acme"), "/api/issues/9223372036854775807").await, StatusCode::NOT_FOUND)
        .await;
}

#[tokio::test]
async fn each_missing_or_malformed_identity_header_is_a_401_naming_it() {
    let app = spawn_app().await;
    type Headers<'a> = &'a [(&'a str, &'a str)];
    let cases: [(Headers, &[&str]); 8] = [
        (&[], &["x-organization-id", "x-user-id", "x-user-role"]),
        (&[("x-user-id", "u"), ("x-user-role", "ADMIN")], &["x-organization-id"]),
        (&[("x-organization-id", "o"), ("x-user-role", "ADMIN")], &["x-user-id"]),
        (&[("x-organization-id", "o"), ("x-user-id", "u")], &["x-user-role"]),
        (&[("x-organization-id", "o"), ("x-user-id", "u"), ("x-user-role", "admin")], &["x-user-role"]),
        (&[("x-organization-id", "o"), ("x-user-id", "u"), ("x-user-role", "OWNER")], &["x-user-role"]),
        (
            &[("x-organization-id", "o p"), ("x-user-id", "u"), ("x-user-role", "ADMIN")],
            &["x-organization-id"],
        ),
        (
            &[("x-organization-id", "o"), ("x-user-id", &"u".repeat(65)), ("x-user-role", "MEMBER")],
            &["x-user-id"],
        ),
    ];
    for (headers, named) in cases {
        let mut request = app.request(Method::GET, "/api/issues", None);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        // RFC 9110: a 401 says how to authenticate; never Basic (a browser's login dialog).
        assert_eq!(
            response.headers()["www-authenticate"],
            r#"Headers realm="tenantry", headers="x-organization-id x-user-id x-user-role""#
        );
        let problem = assert_problem(response, StatusCode::UNAUTHORIZED).await;
        assert_eq!(error_fields(&problem), named, "for {headers:?}");
        for header in named {
            assert!(problem["detail"].as_str().unwrap().contains(header));
        }
    }
}

#[tokio::test]
async fn without_identity_nothing_else_is_evaluated() {
    let app = spawn_app().await;
    let anonymous = [
        app.request(Method::POST, "/api/issues", None).header("content-type", "text/plain").body("x"),
        app.request(Method::POST, "/api/issues", None).json(&json!({"id": 1})),
        app.request(Method::GET, "/api/issues/abc", None),
        app.request(Method::GET, "/api/issues/77", None),
        app.request(Method::PATCH, "/api/issues/0", None).json(&json!({"title": ""})),
        app.request(Method::DELETE, "/api/issues/1", None),
    ];
    for request in anonymous {
        assert_problem(request.send().await.unwrap(), StatusCode::UNAUTHORIZED).await;
    }
    let owner = app.owner_sql().await;
    let count: i64 = owner.query_one("select count(*) from app.issues", &[]).await.unwrap().get(0);
    assert_eq!(count, 0);
}

#[tokio::test]
async fn every_operation_refuses_query_parameters_it_does_not_have() {
    let app = spawn_app().await;
    app.create_ok(&member("acme"), "exists").await;
    let cases = [
        (Method::POST, "/api/issues?dryRun=true"),
        (Method::GET, "/api/issues/1?fields=title"),
        (Method::PATCH, "/api/issues/1?force=1"),
        (Method::DELETE, "/api/issues/1?soft=true"),
        (Method::GET, "/api/issues?colour=red"),
    ];
    for (method, path) in cases {
        let response = app
            .request(method.clone(), path, Some(&admin("acme")))
            .json(&json!({"title": "x"}))
            .send()
            .await
            .unwrap();
        let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
        let name = path.split('?').nth(1).unwrap().split('=').next().unwrap();
        assert_eq!(error_fields(&problem), [name], "{method} {path}");
    }
    assert_eq!(app.list(&member("acme")).await.len(), 1, "nothing created, nothing deleted");
    let issue = app.get(&member("acme"), "/api/issues/1").await.json::<Value>().await.unwrap();
    assert_eq!(issue["title"], "exists");
}

/// `{"title": "a", "title": "b"}` is valid JSON that readers disagree on (first or last
/// wins): refused, in any object of the body, so no two readers see two requests.
#[tokio::test]
async fn a_body_that_names_a_key_twice_is_refused_and_nothing_is_written() {
    let app = spawn_app().await;
    let bodies = [
        r#"{"title": "a", "title": "b", "description": "d"}"#,
        r#"{"title": "a", "description": "d", "\u0074itle": "b"}"#,
        r#"{"title": "a", "description": "d", "status": "OPEN", "status": "DONE"}"#,
    ];
    for body in bodies {
        let response = app
            .request(Method::POST, "/api/issues", Some(&member("acme")))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(error_fields(&problem), ["body"], "{body}");
        assert!(problem["detail"].as_str().unwrap().contains("twice"), "{problem}");
    }
    assert_eq!(count(&app, "select count(*) from app.issues").await, 0);
    app.create_ok(&member("acme"), "the control").await;
    let patch = app
        .request(Method::PATCH, "/api/issues/1", Some(&admin("acme")))
        .header("content-type", "application/json")
        .body(r#"{"assigneeId": "ann", "assigneeId": null}"#)
        .send()
        .await
        .unwrap();
    assert_problem(patch, StatusCode::BAD_REQUEST).await;
    let issue: Value = app.get(&member("acme"), "/api/issues/1").await.json().await.unwrap();
    assert_eq!(issue["assigneeId"], Value::Null);
}
