//! Optimistic concurrency: strong ETags from the row's version, If-None-Match (304) on
//! GET, If-Match (412) on PATCH and DELETE, decided in SQL so that concurrent writers
//! holding the same ETag cannot both win.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

fn etag(response: &reqwest::Response) -> String {
    response.headers()["etag"].to_str().unwrap().to_owned()
}

async fn patch_if_match(app: &TestApp, if_match: &str, body: Value) -> reqwest::Response {
    app.request(Method::PATCH, "/api/issues/1", Some(&admin("acme")))
        .header("if-match", if_match)
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn issue_responses_carry_a_strong_etag_that_moves_with_each_change() {
    let app = spawn_app().await;
    let created = app.create(&member("acme"), json!({"title": "t", "description": "d"})).await;
    assert_eq!(etag(&created), "\"1\"");
    assert_eq!(etag(&app.get(&member("acme"), "/api/issues/1").await), "\"1\"");

    let changed = app.patch(&admin("acme"), 1, json!({"status": "DONE"})).await;
    assert_eq!(changed.status(), StatusCode::OK);
    assert_eq!(etag(&changed), "\"2\"");
    // A no-op patch changes nothing, the version included.
    assert_eq!(etag(&app.patch(&admin("acme"), 1, json!({"status": "DONE"})).await), "\"2\"");
    assert_eq!(etag(&app.get(&member("acme"), "/api/issues/1").await), "\"2\"");
}

#[tokio::test]
async fn if_none_match_with_the_current_etag_is_304_without_a_body() {
    let app = spawn_app().await;
    app.create_ok(&member("acme"), "cached").await;
    let get = |value: &'static str| {
        app.request(Method::GET, "/api/issues/1", Some(&member("acme"))).header("if-none-match", value).send()
    };
    for current in ["\"1\"", "W/\"1\"", "\"7\", \"1\"", "*"] {
        let response = get(current).await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED, "{current}");
        assert_eq!(etag(&response), "\"1\"");
        assert_eq!(response.text().await.unwrap(), "");
    }
    for stale in ["\"2\"", "\"0\"", "1", "nonsense"] {
        let response = get(stale).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{stale}");
        assert_eq!(response.json::<Value>().await.unwrap()["title"], "cached");
    }
    // Another organization's issue 1 is still a 404, whatever the client claims to have.
    let other = app
        .request(Method::GET, "/api/issues/1", Some(&member("globex")))
        .header("if-none-match", "*")
        .send()
        .await
        .unwrap();
    assert_problem(other, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn a_patch_with_a_stale_etag_is_412_with_the_current_one_and_changes_nothing() {
    let app = spawn_app().await;
    app.create_ok(&member("acme"), "original").await;
    assert_eq!(patch_if_match(&app, "\"1\"", json!({"title": "first"})).await.status(), StatusCode::OK);

    let stale = patch_if_match(&app, "\"1\"", json!({"title": "second"})).await;
    assert_eq!(etag(&stale), "\"2\"", "the 412 names the current version");
    let problem = assert_problem(stale, StatusCode::PRECONDITION_FAILED).await;
    assert_eq!(problem["detail"], "issue 1 is at version 2, not 1");
    // A weak or malformed tag never matches (strong comparison).
    for never in ["W/\"2\"", "2", "\"abc\""] {
        let refused = patch_if_match(&app, never, json!({"title": "second"})).await;
        assert_eq!(etag(&refused), "\"2\"");
        assert_problem(refused, StatusCode::PRECONDITION_FAILED).await;
    }
    // Even a patch that would change nothing is refused when stale.
    assert_problem(patch_if_match(&app, "\"1\"", json!({})).await, StatusCode::PRECONDITION_FAILED).await;

    let current: Value = app.get(&member("acme"), "/api/issues/1").await.json().await.unwrap();
    assert_eq!(current["title"], "first");
    assert_eq!(count(&app, "select count(*) from app.activity_logs where action = 'updated'").await, 1);

    // The current tag, or *, is accepted.
    let fresh = patch_if_match(&app, "\"2\"", json!({"title": "second"})).await;
    assert_eq!((fresh.status(), etag(&fresh)), (StatusCode::OK, "\"3\"".to_owned()));
    assert_eq!(patch_if_match(&app, "*", json!({"title": "third"})).await.status(), StatusCode::OK);
    // Several tags at once are not something one client copy can be based on.
    let problem =
        assert_problem(patch_if_match(&app, "\"4\", \"5\"", json!({})).await, StatusCode::BAD_REQUEST).await;
    assert_eq!(error_fields(&problem), ["If-Match"]);
}

#[tokio::test]
async fn a_delete_with_a_stale_etag_is_412_and_with_the_current_one_deletes() {
    let app = spawn_app().await;
    app.create_ok(&member("acme"), "doomed").await;
    app.patch(&admin("acme"), 1, json!({"priority": "HIGH"})).await;
    let delete = |value: &'static str| {
        app.request(Method::DELETE, "/api/issues/1", Some(&admin("acme"))).header("if-match", value).send()
    };
    let stale = delete("\"1\"").await.unwrap();
    assert_eq!(etag(&stale), "\"2\"");
    assert_problem(stale, StatusCode::PRECONDITION_FAILED).await;
    assert_eq!(app.get(&member("acme"), "/api/issues/1").await.status(), StatusCode::OK);

    assert_eq!(delete("\"2\"").await.unwrap().status(), StatusCode::NO_CONTENT);
    // Gone: a missing issue is a 404 whatever the precondition says.
    assert_problem(delete("\"2\"").await.unwrap(), StatusCode::NOT_FOUND).await;
    assert_problem(patch_if_match(&app, "\"2\"", json!({})).await, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn of_concurrent_patches_with_one_etag_exactly_one_wins() {
    const WRITERS: usize = 6;
    let app = spawn_app().await;
    app.create_ok(&member("acme"), "contended").await;

    // Hold the issue's row lock so every PATCH is inside PostgreSQL, queued behind it,
    // before any of them can decide.
    let mut owner = app.owner_sql().await;
    let blocker = owner.transaction().await.unwrap();
    blocker.execute("select 1 from app.issues where id = 1 for update", &[]).await.unwrap();
    let writers: Vec<_> = (0..WRITERS)
        .map(|n| {
            let request = app
                .request(Method::PATCH, "/api/issues/1", Some(&admin("acme")))
                .header("if-match", "\"1\"")
                .json(&json!({"title": format!("writer {n}")}));
            tokio::spawn(async move { request.send().await.unwrap() })
        })
        .collect();
    wait_for_lock_waiters(&app.owner_sql().await, &app.database, WRITERS as i64).await;
    blocker.rollback().await.unwrap();

    let mut winners = Vec::new();
    for writer in writers {
        let response = writer.await.unwrap();
        match response.status() {
            StatusCode::OK => winners.push(response.json::<Value>().await.unwrap()["title"].clone()),
            StatusCode::PRECONDITION_FAILED => assert_eq!(etag(&response), "\"2\""),
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one writer wins: {winners:?}");
    let current: Value = app.get(&member("acme"), "/api/issues/1").await.json().await.unwrap();
    assert_eq!(current["title"], winners[0]);
    assert_eq!(count(&app, "select count(*) from app.activity_logs where action = 'updated'").await, 1);
}

#[tokio::test]
async fn in_psql_the_version_check_is_optional_and_says_the_current_version() {
    let app = spawn_app().await;
    app.create_ok(&member("acme"), "psql").await;
    let mut sql = app.api_role_sql().await;
    let tx = sql.transaction().await.unwrap();
    tx.batch_execute(&set_tenant_sql("acme", "dba", "ADMIN")).await.unwrap();
    // The two-argument call of migration 1 still works.
    let rows =
        tx.query("select version from api.update_issue(1, '{\"status\": \"DONE\"}')", &[]).await.unwrap();
    assert_eq!(rows[0].get::<_, i64>(0), 2);
    let err =
        tx.query("select * from api.update_issue(1, '{\"status\": \"OPEN\"}', 1)", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&err), "TN412");
    assert_eq!(err.as_db_error().unwrap().detail(), Some("current_version=2"));
    tx.rollback().await.unwrap();

    let tx = sql.transaction().await.unwrap();
    tx.batch_execute(&set_tenant_sql("acme", "dba", "ADMIN")).await.unwrap();
    let err = tx.query("select * from api.delete_issue(1, 5)", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&err), "TN412");
    tx.rollback().await.unwrap();
    assert_eq!(count(&app, "select count(*) from app.issues").await, 1);
}

/// poem-openapi reads an unreadable header value as absent; for If-Match that would be a
/// write without its condition.
#[tokio::test]
async fn an_if_match_that_is_not_ascii_is_refused_not_ignored() {
    let app = spawn_app().await;
    let before = app.create_ok(&member("acme"), "guarded").await;
    for method in [Method::PATCH, Method::DELETE] {
        let response = app
            .request(method.clone(), "/api/issues/1", Some(&admin("acme")))
            .header("if-match", reqwest::header::HeaderValue::from_bytes(b"\"1\xe9\"").unwrap())
            .json(&json!({"title": "unconditional"}))
            .send()
            .await
            .unwrap();
        let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(error_fields(&problem), ["If-Match"], "{method}");
    }
    let twice = app
        .request(Method::PATCH, "/api/issues/1", Some(&admin("acme")))
        .header("if-match", "\"1\"")
        .header("if-match", "\"7\"")
        .json(&json!({"title": "unconditional"}))
        .send()
        .await
        .unwrap();
    assert_problem(twice, StatusCode::BAD_REQUEST).await;
    assert_eq!(app.get(&admin("acme"), "/api/issues/1").await.json::<Value>().await.unwrap(), before);
}

#[tokio::test]
async fn an_empty_if_match_matches_nothing() {
    let app = spawn_app().await;
    app.create_ok(&member("acme"), "guarded").await;
    let refused = patch_if_match(&app, "", json!({"title": "unconditional"})).await;
    assert_eq!(etag(&refused), "\"1\"");
    assert_problem(refused, StatusCode::PRECONDITION_FAILED).await;
}
