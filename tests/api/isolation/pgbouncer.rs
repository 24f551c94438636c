//! PgBouncer in transaction mode: a server connection serves one client for one
//! transaction, then another client. What keeps tenants apart there is that every setting
//! the service makes is transaction-local (`set_config(..., true)` or `SET LOCAL`). These
//! tests show it on one shared server connection, with the control that a session-level
//! setting does leak; and why the service sends unnamed statements to a PgBouncer older
//! than 1.21. (`isolation.rs` runs the isolation tests through PgBouncer too.)

use pg_sandbox::pgbouncer as local_pgbouncer;
use tenantry::db::{self, ContextMode};
use tokio_postgres::SimpleQueryMessage;

use reqwest::StatusCode;

use crate::helpers::*;

/// The last row a simple query (of one or more statements) returned, as text.
async fn last_row(client: &tokio_postgres::Client, sql: &str) -> Vec<Option<String>> {
    let messages = client.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    messages
        .iter()
        .rev()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => {
                Some((0..row.len()).map(|i| row.get(i).map(str::to_owned)).collect())
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("{sql}: no row"))
}

/// How a request sets alpha as its tenant, in each context mode.
fn set_alpha(context: ContextMode) -> String {
    match context {
        ContextMode::SetConfig => set_tenant_sql("alpha", "ann", "MEMBER"),
        ContextMode::SetLocal => {
            "set local app.org_id = 'alpha'; set local app.user_id = 'ann'; set local app.role = 'MEMBER'"
                .into()
        }
    }
}

const WHAT_THE_NEXT_CLIENT_SEES: &str =
    "select pg_backend_pid(), current_setting('app.org_id', true), (select count(*) from app.issues)";

#[tokio::test]
async fn a_tenant_set_in_a_transaction_never_reaches_the_next_client_of_the_shared_server_connection() {
    let Some(bouncer) = start_pgbouncer("no-leak", 1) else { return };
    let seeded = spawn_app().await;
    seeded.create_ok(&member("alpha"), "alpha's first").await;
    seeded.create_ok(&member("alpha"), "alpha's second").await;
    seeded.create_ok(&member("bravo"), "bravo's").await;
    let url = bouncer.url(db::API_ROLE, &seeded.database);

    for context in [ContextMode::SetConfig, ContextMode::SetLocal] {
        // Two clients of PgBouncer, one server connection behind them.
        let (a, b) = (connect(&url).await, connect(&url).await);
        let during = last_row(
            &a,
            &format!(
                "begin; {}; select pg_backend_pid(), current_setting('app.org_id'), \
                 (select count(*) from app.issues); commit;",
                set_alpha(context)
            ),
        )
        .await;
        assert_eq!(during[1..], [Some("alpha".into()), Some("2".into())], "{context:?}");
        let after = last_row(&b, WHAT_THE_NEXT_CLIENT_SEES).await;
        assert_eq!(after[0], during[0], "{context:?}: the same server connection served both clients");
        assert_eq!(after[1..], [Some(String::new()), Some("0".into())], "{context:?}: no tenant, no rows");
    }

    // The same through the service: its pool of 8 shares the one server connection.
    let app = spawn_app_on(&seeded.database, Mode::ApiLogin, |config| {
        config.api_database_url = Some(url.clone());
        config.statements = statements_for_pgbouncer();
    })
    .await;
    for _ in 0..5 {
        assert_eq!(app.list(&member("alpha")).await.len(), 2);
        let next = last_row(&connect(&url).await, WHAT_THE_NEXT_CLIENT_SEES).await;
        assert_eq!(next[1..], [Some(String::new()), Some("0".into())]);
    }

    // The control: a session-level setting (`false`) stays on the server connection and
    // the next client, whoever it is, reads alpha's issues. This is what a service that
    // set its tenant per session would do behind a transaction-mode pooler.
    let (a, b) = (connect(&url).await, connect(&url).await);
    let set = last_row(&a, "select pg_backend_pid(), set_config('app.org_id', 'alpha', false)").await;
    let leaked = last_row(&b, WHAT_THE_NEXT_CLIENT_SEES).await;
    assert_eq!(leaked[0], set[0]);
    assert_eq!(leaked[1..], [Some("alpha".into()), Some("2".into())], "a session setting leaks");
}

/// PgBouncer before 1.21 passes Parse/Bind through as they come: a statement prepared by
/// name on one server connection is missing on the next one the client gets. Hence
/// DATABASE_STATEMENTS=unnamed there (1.21+ with `max_prepared_statements` tracks them).
#[tokio::test]
async fn named_prepared_statements_need_a_pgbouncer_that_tracks_them() {
    let Some(bouncer) = start_pgbouncer("prepared", 2) else { return };
    let version = local_pgbouncer::version().expect("the version of an installed pgbouncer");
    let database = fresh_database().await;
    let url = bouncer.url(db::API_ROLE, &database);
    let (a, b) = (connect(&url).await, connect(&url).await);
    // Prepared on the first server connection (outside a transaction it is free again at once).
    let statement = a.prepare("select pg_backend_pid()").await.unwrap();
    let prepared_on: i32 = a.query_one(&statement, &[]).await.unwrap().get(0);
    // b holds that server connection in a transaction, so a's next use goes to the other.
    let holder = last_row(&b, "begin; select pg_backend_pid()").await;
    assert_eq!(holder[0].as_deref(), Some(prepared_on.to_string().as_str()));
    let elsewhere = a.query_one(&statement, &[]).await;
    if local_pgbouncer::supports_prepared_statements(version) {
        let pid: i32 = elsewhere.unwrap().get(0);
        assert_ne!(pid, prepared_on, "PgBouncer {version:?} re-prepared it on another server connection");
    } else {
        let err = elsewhere.expect_err("PgBouncer before 1.21 sends it to a connection without it");
        assert_eq!(sqlstate(&err), "26000", "prepared statement does not exist: {err}");
        assert_eq!(statements_for_pgbouncer(), tenantry::db::StatementMode::Unnamed);
    }
    b.batch_execute("commit").await.unwrap();
}

/// Two instances behind a PgBouncer that does not track prepared statements, with no
/// DATABASE_STATEMENTS setting: both see that the server answering is not the address they
/// connect to and send unnamed statements. With named ones, their statements `s0, s1, …`
/// would meet on shared server connections, and a GET (`api.get_issue($1)`) could run
/// another instance's `api.restore_issue($1)`: here every deleted issue stays deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_no_setting_two_instances_behind_pgbouncer_answer_every_organization_correctly() {
    let Some(bouncer) = start_pgbouncer("auto-statements", 2) else { return };
    let database = fresh_database().await;
    let url = bouncer.url(db::API_ROLE, &database);
    let spawn =
        || spawn_app_on(&database, Mode::ApiLogin, |config| config.api_database_url = Some(url.clone()));
    let apps = [spawn().await, spawn().await];
    assert!(apps.iter().all(|app| app.app_db.uses_unnamed_statements()), "behind PgBouncer: unnamed");

    let organizations: Vec<String> = (0..6).map(|i| format!("auto-{i}")).collect();
    for org in &organizations {
        for title in ["one", "two", "three"] {
            apps[0].create_ok(&member(org), &format!("{org} {title}")).await;
        }
        assert_eq!(apps[1].delete(&admin(org), 2).await.status(), StatusCode::NO_CONTENT);
    }
    let reads = organizations.iter().enumerate().flat_map(|(i, org)| {
        let apps = &apps;
        (0..10).map(move |round| async move {
            let app = &apps[(i + round) % 2];
            let id = [1, 2, 3][round % 3];
            let response = app.get(&member(org), &format!("/api/issues/{id}")).await;
            let status = response.status();
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            (org.clone(), id, status, body)
        })
    });
    for (org, id, status, body) in futures::future::join_all(reads).await {
        if id == 2 {
            assert_eq!(status, StatusCode::NOT_FOUND, "{org}'s issue 2 is deleted: {body}");
        } else {
            assert_eq!(status, StatusCode::OK, "{org} issue {id}: {body}");
            assert_eq!(
                (body["organizationId"].as_str(), body["id"].as_i64()),
                (Some(org.as_str()), Some(id))
            );
            assert_eq!(
                body["title"].as_str().unwrap(),
                format!("{org} {}", ["", "one", "", "three"][id as usize])
            );
        }
    }
    for org in &organizations {
        let titles: Vec<String> = apps[0]
            .list(&member(org))
            .await
            .iter()
            .map(|i| i["title"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            titles,
            [format!("{org} three"), format!("{org} one")],
            "no read restored or changed anything"
        );
    }
    drop(bouncer);
}

/// Should a named statement go missing after all (the connection looked direct, then a
/// pooler turned up), requests fall back to unnamed statements and the request that met
/// the missing statement is retried once: nobody sees an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_named_statement_switches_to_unnamed_and_the_request_is_retried() {
    let Some(bouncer) = start_pgbouncer("fallback", 2) else { return };
    if local_pgbouncer::supports_prepared_statements(local_pgbouncer::version().unwrap()) {
        return; // this PgBouncer keeps named statements working: nothing goes missing
    }
    let database = fresh_database().await;
    let url = bouncer.url(db::API_ROLE, &database);
    let app = spawn_app_on(&database, Mode::ApiLogin, |config| config.api_database_url = Some(url)).await;
    app.create_ok(&member("fallback"), "kept").await;
    app.app_db.assume_direct();
    // Eight pooled connections over two server connections: a statement prepared on one
    // is soon missing on the other. Every answer must still be right.
    let reader = member("fallback");
    for _ in 0..50 {
        let answers = futures::future::join_all((0..8).map(|_| app.get(&reader, "/api/issues/1"))).await;
        for answer in answers {
            assert_eq!(answer.status(), StatusCode::OK);
        }
        if app.app_db.uses_unnamed_statements() {
            return;
        }
    }
    panic!("400 reads through PgBouncer never met a missing statement");
}
