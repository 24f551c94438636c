//! Idempotent creates: an Idempotency-Key makes a POST safe to retry, per organization,
//! for 24 hours, also when the retries race each other.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

fn body(title: &str) -> Value {
    json!({"title": title, "description": "retried"})
}

async fn post_with_key(app: &TestApp, actor: &Actor, key: &str, body: &Value) -> reqwest::Response {
    app.request(Method::POST, "/api/issues", Some(actor))
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_retry_with_the_same_key_and_body_replays_the_first_201_and_creates_nothing() {
    let app = spawn_app().await;
    let first = post_with_key(&app, &member("acme"), "key-1", &body("once")).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let (location, tag) = (first.headers()["location"].clone(), first.headers()["etag"].clone());
    let original: Value = first.json().await.unwrap();

    // The issue changes meanwhile; the replay is still the original response.
    app.patch(&admin("acme"), 1, json!({"status": "DONE"})).await;
    // Key order and white space do not make another request; neither does sending a default.
    let same = json!({"description": "retried", "title": "once", "status": "OPEN"});
    for _ in 0..2 {
        let retry = post_with_key(&app, &member("acme"), "key-1", &same).await;
        assert_eq!(retry.status(), StatusCode::CREATED);
        assert_eq!(retry.headers()["idempotent-replayed"], "true");
        assert_eq!(retry.headers()["location"], location);
        assert_eq!(retry.headers()["etag"], tag);
        assert_eq!(retry.json::<Value>().await.unwrap(), original);
    }
    assert_eq!(count(&app, "select count(*) from app.issues").await, 1);
    assert_eq!(count(&app, "select count(*) from app.activity_logs where action = 'created'").await, 1);

    // Without a key, or with another, a POST creates.
    assert_eq!(app.create(&member("acme"), body("once")).await.status(), StatusCode::CREATED);
    let other = post_with_key(&app, &member("acme"), "key-2", &body("once")).await;
    assert_eq!(other.json::<Value>().await.unwrap()["id"], 3);
}

#[tokio::test]
async fn the_same_key_with_another_body_or_user_is_422_and_creates_nothing() {
    let app = spawn_app().await;
    post_with_key(&app, &member("acme"), "k", &body("first")).await;

    let problem = assert_problem(
        post_with_key(&app, &member("acme"), "k", &body("second")).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(problem["detail"], "this Idempotency-Key was used for a different request");
    // A colleague reusing the key does not get someone else's issue.
    assert_problem(
        post_with_key(&app, &admin("acme"), "k", &body("first")).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(count(&app, "select count(*) from app.issues").await, 1);
}

#[tokio::test]
async fn keys_belong_to_one_organization() {
    let app = spawn_app().await;
    let acme: Value = post_with_key(&app, &member("acme"), "shared", &body("a")).await.json().await.unwrap();
    let globex = post_with_key(&app, &member("globex"), "shared", &body("b")).await;
    assert_eq!(globex.status(), StatusCode::CREATED);
    assert!(globex.headers().get("idempotent-replayed").is_none());
    let globex: Value = globex.json().await.unwrap();
    assert_eq!(
        (acme["organizationId"].clone(), globex["organizationId"].clone()),
        (json!("acme"), json!("globex"))
    );

    // In SQL, as the API role: a tenant sees its own keys only; none without a tenant.
    let mut sql = app.api_role_sql().await;
    let tx = sql.transaction().await.unwrap();
    tx.batch_execute(&set_tenant_sql("globex", "x", "MEMBER")).await.unwrap();
    let orgs: Vec<String> = first_column(&tx, "select organization_id from app.idempotency_keys", &[]).await;
    assert_eq!(orgs, ["globex"]);
    let err = tx
        .execute(
            "insert into app.idempotency_keys (organization_id, key, fingerprint) values ('acme', 'x', sha256('x'))",
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "42501", "row-level security refuses another tenant's key");
}

#[tokio::test]
async fn an_expired_key_is_forgotten_and_may_be_used_again() {
    let app = spawn_app().await;
    post_with_key(&app, &member("acme"), "old", &body("first")).await;
    post_with_key(&app, &member("acme"), "older", &body("first")).await;
    app.owner_sql()
        .await
        .execute(
            "update app.idempotency_keys set created_at = now() - interval '25 hours', \
             expires_at = now() - interval '1 hour'",
            &[],
        )
        .await
        .unwrap();

    let again = post_with_key(&app, &member("acme"), "old", &body("another request")).await;
    assert_eq!(again.status(), StatusCode::CREATED);
    assert!(again.headers().get("idempotent-replayed").is_none());
    assert_eq!(again.json::<Value>().await.unwrap()["id"], 3);
    // ... and the organization's other expired keys were cleared on the way.
    assert_eq!(count(&app, "select count(*) from app.idempotency_keys").await, 1);
}

#[tokio::test]
async fn concurrent_requests_with_one_key_create_one_issue() {
    const CLIENTS: usize = 6;
    let app = spawn_app().await;
    app.create_ok(&member("acme"), "before").await;

    // Hold acme's counter row: the first request to claim the key stops there, inside
    // its transaction, and the others must meet its claim while it is undecided.
    let mut owner = app.owner_sql().await;
    let blocker = owner.transaction().await.unwrap();
    blocker
        .execute("select 1 from app.organization_counters where organization_id = 'acme' for update", &[])
        .await
        .unwrap();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let request = app
                .request(Method::POST, "/api/issues", Some(&member("acme")))
                .header("idempotency-key", "raced")
                .json(&body("raced"));
            tokio::spawn(async move { request.send().await.unwrap() })
        })
        .collect();
    wait_for_lock_waiters(&app.owner_sql().await, &app.database, CLIENTS as i64).await;
    blocker.rollback().await.unwrap();

    let mut replays = 0;
    for client in clients {
        let response = client.await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        replays += usize::from(response.headers().get("idempotent-replayed").is_some());
        assert_eq!(response.json::<Value>().await.unwrap()["id"], 2, "everyone gets the same issue");
    }
    assert_eq!(replays, CLIENTS - 1);
    assert_eq!(count(&app, "select count(*) from app.issues").await, 2);
    assert_eq!(count(&app, "select count(*) from app.activity_logs").await, 2);
}

#[tokio::test]
async fn a_malformed_key_is_400_naming_the_header() {
    let app = spawn_app().await;
    for key in ["x".repeat(256), "tab\there".into()] {
        let problem = assert_problem(
            post_with_key(&app, &member("acme"), &key, &body("t")).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert_eq!(error_fields(&problem), ["Idempotency-Key"], "{key:?}");
    }
    let longest = post_with_key(&app, &member("acme"), &"x".repeat(255), &body("t")).await;
    assert_eq!(longest.status(), StatusCode::CREATED);
    assert_eq!(count(&app, "select count(*) from app.issues").await, 1);
}

/// poem-openapi reads an unreadable header value as absent; for Idempotency-Key that
/// would make a retry create a second issue.
#[tokio::test]
async fn an_idempotency_key_that_is_not_ascii_is_refused_not_ignored() {
    let app = spawn_app().await;
    for key in [&b"caf\xe9"[..], &b"\xff\xfe"[..]] {
        let response = app
            .request(Method::POST, "/api/issues", Some(&member("acme")))
            .header("idempotency-key", reqwest::header::HeaderValue::from_bytes(key).unwrap())
            .json(&json!({"title": "t", "description": "d"}))
            .send()
            .await
            .unwrap();
        let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(error_fields(&problem), ["Idempotency-Key"]);
    }
    assert!(app.list(&member("acme")).await.is_empty(), "nothing was created");
}
