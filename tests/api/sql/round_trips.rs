//! One network round trip to PostgreSQL per request, in both statement modes, counted on
//! the wire by a relay between the pool and the server; and what each mode leaves on a
//! connection (named statements, or nothing: what a transaction-mode pooler needs).

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
};

use reqwest::StatusCode;
use serde_json::json;
use tenantry::db::{self, ContextMode, StatementMode};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use crate::helpers::*;

/// A TCP relay to PostgreSQL that counts flights: a flight starts whenever the client
/// sends after the server has spoken (or first). A pipelined transaction is one flight;
/// statements awaited one by one are one flight each.
struct Relay {
    port: u16,
    flights: Arc<AtomicUsize>,
}

impl Relay {
    async fn start(upstream_port: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let flights = Arc::new(AtomicUsize::new(0));
        let counter = flights.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server =
                    TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], upstream_port))).await.unwrap();
                tokio::spawn(relay(client, server, counter.clone()));
            }
        });
        Relay { port, flights }
    }

    fn flights(&self) -> usize {
        self.flights.load(Ordering::SeqCst)
    }
}

async fn relay(client: TcpStream, server: TcpStream, flights: Arc<AtomicUsize>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    // Whether the server spoke last; true at the start so the first send is a flight.
    let server_spoke = Arc::new(AtomicBool::new(true));
    let spoke = server_spoke.clone();
    let upstream = async move {
        let mut buf = vec![0; 64 * 1024];
        while let Ok(n @ 1..) = client_read.read(&mut buf).await {
            if spoke.swap(false, Ordering::SeqCst) {
                flights.fetch_add(1, Ordering::SeqCst);
            }
            if server_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    };
    let downstream = async move {
        let mut buf = vec![0; 64 * 1024];
        while let Ok(n @ 1..) = server_read.read(&mut buf).await {
            server_spoke.store(true, Ordering::SeqCst);
            if client_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    };
    futures::join!(upstream, downstream);
}

/// An app with one pooled connection whose requests go through a relay.
async fn app_through_relay(statements: StatementMode) -> (TestApp, Relay) {
    app_through_relay_in(statements, context_mode()).await
}

async fn app_through_relay_in(statements: StatementMode, context: ContextMode) -> (TestApp, Relay) {
    let relay = Relay::start(cluster().pg.port()).await;
    let pg_port = format!(":{}/", cluster().pg.port());
    let relay_port = format!(":{}/", relay.port);
    let app = spawn_app_with(Mode::ApiLogin, |config| {
        config.pool_size = 1;
        config.statements = statements;
        config.context = context;
        config.api_database_url =
            config.api_database_url.as_ref().map(|url| url.replace(&pg_port, &relay_port));
    })
    .await;
    (app, relay)
}

/// Every endpoint once; returns the flights they took.
async fn one_request_of_each_kind(app: &TestApp, relay: &Relay) -> usize {
    let before = relay.flights();
    let id = app.create_ok(&member("alpha"), "counted").await["id"].as_i64().unwrap();
    let path = format!("/api/issues/{id}");
    assert_eq!(app.get(&member("alpha"), &path).await.status(), StatusCode::OK);
    assert_eq!(app.list(&member("alpha")).await.len(), 1);
    assert_eq!(app.patch(&admin("alpha"), id, json!({"status": "DONE"})).await.status(), StatusCode::OK);
    assert_eq!(app.delete(&admin("alpha"), id).await.status(), StatusCode::NO_CONTENT);
    // A failing call too: its rollback rides on the same flight.
    assert_eq!(app.get(&member("alpha"), &path).await.status(), StatusCode::NOT_FOUND);
    relay.flights() - before
}

#[tokio::test]
async fn with_prepared_statements_each_request_is_one_round_trip_after_the_first_prepare() {
    let (app, relay) = app_through_relay(StatementMode::Prepared).await;
    // First use of each statement on the connection: one extra flight to prepare it.
    let first = one_request_of_each_kind(&app, &relay).await;
    assert!(first > 6, "the first calls also prepare: {first} flights");
    assert_eq!(one_request_of_each_kind(&app, &relay).await, 6, "six requests, six round trips");
}

/// With no setting, a connection through anything that is not PostgreSQL itself (here a
/// relay on another port, as a pooler would be) gets unnamed statements, still one round
/// trip each; a direct connection, over TCP or a Unix socket, gets prepared ones.
#[tokio::test]
async fn with_no_setting_statements_are_named_only_on_a_direct_connection() {
    let (app, relay) = app_through_relay(StatementMode::Auto).await;
    assert!(app.app_db.uses_unnamed_statements(), "through a relay");
    assert_eq!(one_request_of_each_kind(&app, &relay).await, 6);
    assert_eq!(one_request_of_each_kind(&app, &relay).await, 6);
    let direct = spawn_app().await;
    assert!(!direct.app_db.uses_unnamed_statements(), "over TCP to PostgreSQL itself");
    let socket = spawn_app_with(Mode::SwitchRole, |_| {}).await;
    assert!(!socket.app_db.uses_unnamed_statements(), "over PostgreSQL's own Unix socket");
}

#[tokio::test]
async fn with_unnamed_statements_every_request_is_one_round_trip() {
    let (app, relay) = app_through_relay(StatementMode::Unnamed).await;
    assert_eq!(one_request_of_each_kind(&app, &relay).await, 6);
    assert_eq!(one_request_of_each_kind(&app, &relay).await, 6);
}

#[tokio::test]
async fn with_set_local_every_request_is_one_round_trip_in_both_statement_modes() {
    let (app, relay) = app_through_relay_in(StatementMode::Prepared, ContextMode::SetLocal).await;
    one_request_of_each_kind(&app, &relay).await;
    assert_eq!(one_request_of_each_kind(&app, &relay).await, 6, "prepared");
    let (app, relay) = app_through_relay_in(StatementMode::Unnamed, ContextMode::SetLocal).await;
    assert_eq!(one_request_of_each_kind(&app, &relay).await, 6, "unnamed");
}

#[tokio::test]
async fn the_relay_counts_a_transaction_awaited_statement_by_statement_as_four_round_trips() {
    // The control for the two tests above: the same steps, awaited one by one.
    let relay = Relay::start(cluster().pg.port()).await;
    let database = fresh_database().await;
    let client = connect(&format!("postgresql://{}@127.0.0.1:{}/{database}", db::API_ROLE, relay.port)).await;
    let before = relay.flights();
    client.batch_execute("begin").await.unwrap();
    client.batch_execute(&set_tenant_sql("alpha", "a", "MEMBER")).await.unwrap();
    client.batch_execute("select * from api.list_issues()").await.unwrap();
    client.batch_execute("commit").await.unwrap();
    assert_eq!(relay.flights() - before, 4);
}

/// The named statements the next checkout's session holds.
async fn prepared_on_connection(app: &TestApp) -> Vec<String> {
    let conn = app.app_db.pool().get().await.unwrap();
    conn.query("select statement from pg_prepared_statements where from_sql = false order by 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[tokio::test]
async fn prepared_mode_prepares_each_statement_once_per_connection() {
    let app = spawn_app_with(Mode::ApiLogin, |config| config.pool_size = 1).await;
    for _ in 0..3 {
        app.create_ok(&member("alpha"), "again").await;
    }
    let prepared = prepared_on_connection(&app).await;
    let creates = prepared.iter().filter(|s| s.contains("api.create_issue")).count();
    assert_eq!(creates, 1, "{prepared:#?}");
    // SET LOCAL cannot be prepared: in that mode the settings ride on the BEGIN.
    let set_config_statements = match context_mode() {
        ContextMode::SetConfig => 1,
        ContextMode::SetLocal => 0,
    };
    let set_configs = prepared.iter().filter(|s| s.contains("set_config('app.org_id'")).count();
    assert_eq!(set_configs, set_config_statements, "{prepared:#?}");
}

#[tokio::test]
async fn unnamed_mode_leaves_no_named_statement_on_the_connection() {
    let app = spawn_app_with(Mode::ApiLogin, |config| {
        config.pool_size = 1;
        config.statements = StatementMode::Unnamed;
    })
    .await;
    app.create_ok(&member("alpha"), "one").await;
    app.list(&member("alpha")).await;
    assert_eq!(app.patch(&admin("alpha"), 1, json!({"title": "two"})).await.status(), StatusCode::OK);
    // pg_prepared_statements also lists the query reading it (an unnamed statement
    // has no row): whatever the service prepared would be here.
    let prepared = prepared_on_connection(&app).await;
    assert!(
        prepared.iter().all(|s| s.contains("pg_prepared_statements")),
        "named statements left behind: {prepared:#?}"
    );
}

#[tokio::test]
async fn in_both_modes_the_call_runs_in_the_transaction_that_set_the_tenant_and_rolls_back_with_it() {
    for statements in [StatementMode::Prepared, StatementMode::Unnamed] {
        let app = spawn_app_with(Mode::ApiLogin, |config| {
            config.pool_size = 1;
            config.statements = statements;
        })
        .await;
        // set_config(..., true) lasts one transaction: the function sees the tenant only
        // if BEGIN opened one around both statements.
        app.create_ok(&member("alpha"), "alpha's").await;
        app.create_ok(&member("bravo"), "bravo's").await;
        let titles: Vec<_> = app.list(&member("alpha")).await.iter().map(|i| i["title"].clone()).collect();
        assert_eq!(titles, [json!("alpha's")], "{statements:?}");

        // A call that fails after writing: nothing of it stays, and the connection is
        // outside any transaction afterwards.
        let sql = app.owner_sql().await;
        sql.batch_execute(
            "alter table app.activity_logs add constraint no_updates_today check (action <> 'updated')",
        )
        .await
        .unwrap();
        let failed = app.patch(&admin("alpha"), 1, json!({"title": "never"})).await;
        assert!(failed.status().is_server_error() || failed.status().is_client_error(), "{statements:?}");
        let issue: serde_json::Value = app.get(&member("alpha"), "/api/issues/1").await.json().await.unwrap();
        assert_eq!(
            issue["title"], "alpha's",
            "{statements:?}: the issue update rolled back with the log insert"
        );
        // (The simple query protocol: a fresh statement starts its own transaction.)
        let conn = app.app_db.pool().get().await.unwrap();
        let rows = conn.simple_query("select now() <> statement_timestamp()").await.unwrap();
        let in_transaction = rows.iter().any(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0) == Some("t"),
            _ => false,
        });
        assert!(!in_transaction, "{statements:?}");
    }
}
