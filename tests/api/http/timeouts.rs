//! A slow or exhausted database: 503 with Retry-After within the configured time, never a
//! hung request; and bodies refused by size before they are read.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;

/// Generous bounds: the point is "not hung", not a benchmark.
const QUICKLY: Duration = Duration::from_secs(4);

#[tokio::test]
async fn a_statement_stuck_behind_a_lock_is_cancelled_by_the_statement_timeout_with_503() {
    let app = spawn_app_with(Mode::ApiLogin, |config| config.statement_timeout_ms = 300).await;
    app.create_ok(&member("acme"), "locked").await;
    let mut owner = app.owner_sql().await;
    let blocker = owner.transaction().await.unwrap();
    blocker.execute("select 1 from app.issues where id = 1 for update", &[]).await.unwrap();

    let started = Instant::now();
    let response = app.patch(&admin("acme"), 1, json!({"title": "late"})).await;
    assert!(started.elapsed() < QUICKLY, "{:?}", started.elapsed());
    assert_eq!(response.headers()["retry-after"], "2");
    assert_problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
    // Reads are not blocked by a row lock, and the time-out is per transaction only.
    assert_eq!(app.get(&member("acme"), "/api/issues/1").await.status(), StatusCode::OK);
    blocker.rollback().await.unwrap();

    let issue: Value = app.get(&member("acme"), "/api/issues/1").await.json().await.unwrap();
    assert_eq!(issue["title"], "locked", "the cancelled write did not happen");
    assert_eq!(app.patch(&admin("acme"), 1, json!({"title": "now"})).await.status(), StatusCode::OK);
    // The setting did not leak into the session: a fresh statement on the pooled
    // connection has PostgreSQL's default.
    let conn = app.app_db.pool().get().await.unwrap();
    let timeout: String = conn.query_one("show statement_timeout", &[]).await.unwrap().get(0);
    assert_eq!(timeout, "0");
}

#[tokio::test]
async fn with_every_connection_taken_requests_get_503_after_the_pool_timeout() {
    let app = spawn_app_with(Mode::ApiLogin, |config| {
        config.pool_size = 1;
        config.pool_timeout_ms = 300;
    })
    .await;
    let held = app.app_db.pool().get().await.unwrap();
    let started = Instant::now();
    let response = app.get(&member("acme"), "/api/issues").await;
    assert!(started.elapsed() < QUICKLY, "{:?}", started.elapsed());
    assert!(started.elapsed() >= Duration::from_millis(300), "it waited for the pool first");
    assert_eq!(response.headers()["retry-after"], "2");
    assert_problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
    drop(held);
    assert_eq!(app.get(&member("acme"), "/api/issues").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_request_still_unanswered_at_the_request_deadline_gets_503() {
    let app = spawn_app_with(Mode::ApiLogin, |config| {
        config.statement_timeout_ms = 0;
        config.request_timeout_ms = 400;
    })
    .await;
    app.create_ok(&member("acme"), "locked").await;
    let mut owner = app.owner_sql().await;
    let blocker = owner.transaction().await.unwrap();
    blocker.execute("select 1 from app.issues where id = 1 for update", &[]).await.unwrap();
    let started = Instant::now();
    let response = app.request(Method::DELETE, "/api/issues/1", Some(&admin("acme"))).send().await.unwrap();
    assert!(started.elapsed() < QUICKLY, "{:?}", started.elapsed());
    assert!(response.headers().contains_key("x-request-id"));
    assert_problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
    blocker.rollback().await.unwrap();
    // The abandoned DELETE had its COMMIT queued (see hygiene.rs): it completes on its
    // own once the lock is gone, and the connection serves the next request cleanly.
    // 503 promised nothing either way; the client retries, and gets a 404.
    wait_until("the abandoned DELETE has committed", || async {
        let status = app.get(&member("acme"), "/api/issues/1").await.status();
        assert!(matches!(status, StatusCode::OK | StatusCode::NOT_FOUND), "{status}");
        status == StatusCode::NOT_FOUND
    })
    .await;
}

#[tokio::test]
async fn a_body_declared_larger_than_1_mib_is_refused_before_a_byte_of_it_is_sent() {
    let app = spawn_app().await;
    let address = app.address.strip_prefix("http://").unwrap().to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    // Ten gigabytes announced, none sent: an answer proves nothing was waited for.
    let head = format!(
        "POST /api/issues HTTP/1.1\r\nhost: {address}\r\nx-organization-id: acme\r\nx-user-id: u\r\n\
         x-user-role: MEMBER\r\ncontent-type: application/json\r\ncontent-length: 10000000000\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0; 4096];
    let read = tokio::time::timeout(QUICKLY, stream.read(&mut answer)).await.expect("answered").unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}
