//! A pooled connection never carries a tenant or an open transaction into the next
//! request: not after a normal request, not after a failed one, and not when a request
//! is abandoned (client gone, future dropped) while its transaction is in flight.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use tenantry::{
    db::{self, StatementMode},
    domain::{IssuePatch, Role, TenantContext},
};

use crate::helpers::*;

/// With a pool of one, every checkout is the same connection.
async fn app_with_one_connection() -> TestApp {
    app_with_one_connection_in(StatementMode::Prepared).await
}

async fn app_with_one_connection_in(statements: StatementMode) -> TestApp {
    spawn_app_with(Mode::ApiLogin, |config| {
        config.pool_size = 1;
        config.statements = statements;
    })
    .await
}

/// What the next checkout sees: its backend pid, `app.org_id`, and whether a transaction
/// was already open. Inside one, now() is the transaction's start, earlier than this
/// statement's; the simple query protocol makes a fresh statement its own transaction's
/// first (the extended protocol would start the transaction at Bind, before Execute).
async fn inspect_next_checkout(app: &TestApp) -> (i32, Option<String>, bool) {
    let conn = app.app_db.pool().get().await.unwrap();
    let messages = conn
        .simple_query(
            "select pg_backend_pid(), current_setting('app.org_id', true), now() <> statement_timestamp()",
        )
        .await
        .unwrap();
    let row = messages
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .unwrap();
    (row.get(0).unwrap().parse().unwrap(), row.get(1).map(str::to_owned), row.get(2) == Some("t"))
}

fn alpha_admin() -> TenantContext {
    TenantContext { org_id: "alpha".into(), user_id: "a".into(), role: Role::Admin }
}

#[tokio::test]
async fn after_a_request_the_connection_carries_no_tenant() {
    let app = app_with_one_connection().await;
    let (pid, ..) = inspect_next_checkout(&app).await;

    app.create_ok(&member("alpha"), "t").await;
    let (same_pid, org, in_transaction) = inspect_next_checkout(&app).await;
    assert_eq!(same_pid, pid, "the same pooled connection");
    assert_eq!(org.as_deref(), Some(""), "set during the request, reset by its commit");
    assert!(!in_transaction);

    // A request whose function fails (404, 403 in SQL) ends its transaction too.
    assert_problem(app.get(&member("alpha"), "/api/issues/99").await, StatusCode::NOT_FOUND).await;
    let err =
        db::issues::delete(&app.app_db, &TenantContext { role: Role::Member, ..alpha_admin() }, 1).await;
    assert!(matches!(err, Err(db::Error::Forbidden(_))), "{err:?}");
    assert_eq!(inspect_next_checkout(&app).await, (pid, Some(String::new()), false));
}

#[tokio::test]
async fn a_request_dropped_mid_transaction_leaves_the_connection_clean() {
    a_request_dropped_mid_transaction_leaves_the_connection_clean_in(StatementMode::Prepared).await;
}

#[tokio::test]
async fn a_request_dropped_mid_transaction_leaves_the_connection_clean_with_unnamed_statements() {
    a_request_dropped_mid_transaction_leaves_the_connection_clean_in(StatementMode::Unnamed).await;
}

async fn a_request_dropped_mid_transaction_leaves_the_connection_clean_in(statements: StatementMode) {
    let app = app_with_one_connection_in(statements).await;
    app.create_ok(&member("alpha"), "contended").await;
    let (pid, ..) = inspect_next_checkout(&app).await;

    // Hold the issue's row lock so the update blocks inside its transaction...
    let mut owner = app.owner_sql().await;
    let blocker = owner.transaction().await.unwrap();
    blocker.execute("select 1 from app.issues where id = 1 for update", &[]).await.unwrap();

    // ... then give up on it once it waits there, inside its transaction: the future is
    // dropped after begin and set_config ran.
    let patch = IssuePatch { title: Some("late".into()), ..Default::default() };
    let update = tokio::spawn({
        let db = app.app_db.clone();
        async move { db::issues::update(&db, &alpha_admin(), 1, &patch).await }
    });
    wait_for_lock_waiters(&app.owner_sql().await, &app.database, 1).await;
    update.abort();
    assert!(update.await.unwrap_err().is_cancelled(), "dropped while it waited");
    blocker.rollback().await.unwrap();

    let (same_pid, org, in_transaction) = inspect_next_checkout(&app).await;
    assert_eq!(same_pid, pid);
    assert_eq!(org.as_deref(), Some(""), "no tenant carried over");
    assert!(!in_transaction, "no transaction carried over");
    // Its COMMIT was already queued, so the change it asked for is complete, not half-done.
    let issue = db::issues::get(&app.app_db, &alpha_admin(), 1).await.unwrap();
    assert_eq!(issue.title, "late");
}

#[tokio::test]
async fn a_client_that_disconnects_mid_request_leaves_the_connection_clean() {
    let app = app_with_one_connection().await;
    app.create_ok(&member("alpha"), "contended").await;
    let (pid, ..) = inspect_next_checkout(&app).await;

    let mut owner = app.owner_sql().await;
    let blocker = owner.transaction().await.unwrap();
    blocker.execute("select 1 from app.issues where id = 1 for update", &[]).await.unwrap();

    // The client goes away once its request waits on the lock inside its transaction (so
    // the request certainly reached the database: the test fails otherwise).
    let client = tokio::spawn({
        let address = app.address.clone();
        async move {
            reqwest::Client::new()
                .patch(format!("{address}/api/issues/1"))
                .header("x-organization-id", "alpha")
                .header("x-user-id", "a")
                .header("x-user-role", "ADMIN")
                .json(&json!({"status": "DONE"}))
                .send()
                .await
        }
    });
    wait_for_lock_waiters(&app.owner_sql().await, &app.database, 1).await;
    client.abort();
    assert!(client.await.unwrap_err().is_cancelled(), "the client left before any answer");
    blocker.rollback().await.unwrap();

    let (same_pid, org, in_transaction) = inspect_next_checkout(&app).await;
    assert_eq!((same_pid, org.as_deref(), in_transaction), (pid, Some(""), false));
    // Its transaction ran to its end (the change it sent is whole), on that connection.
    let issue = db::issues::get(&app.app_db, &alpha_admin(), 1).await.unwrap();
    assert_eq!(issue.status, tenantry::domain::Status::Done);
    // And the next tenant on that connection sees only its own rows.
    assert!(app.list(&member("bravo")).await.is_empty());
}

#[tokio::test]
async fn a_request_dropped_while_waiting_for_a_connection_sends_nothing() {
    let app = app_with_one_connection().await;
    let held = app.app_db.pool().get().await.unwrap();
    let pid: i32 = held.query_one("select pg_backend_pid()", &[]).await.unwrap().get(0);
    let waited = tokio::time::timeout(
        Duration::from_millis(200),
        db::issues::list(&app.app_db, &alpha_admin(), &Default::default()),
    )
    .await;
    assert!(waited.is_err(), "no connection was free");
    drop(held);
    // Only the start-up check (no tenant) ever ran on it.
    assert_eq!(inspect_next_checkout(&app).await, (pid, Some(String::new()), false));
}
