//! Live streams keep tenants apart: a stream carries its own organization's entries and
//! nothing else, and the wake-ups PostgreSQL sends (NOTIFY, which any role that can
//! LISTEN hears) say nothing about organizations or issues: an opaque routing value, and
//! only for organizations someone streams.

use std::{str::FromStr, time::Duration};

use futures::StreamExt;
use pg_sandbox::postgres::SUPERUSER;
use reqwest::StatusCode;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::{
    helpers::*,
    http::stream::{Stream, event_ids, log_of},
};

#[tokio::test]
async fn a_stream_carries_only_its_own_organizations_entries() {
    let app = spawn_app().await;
    let (acme, globex) = (admin("acme"), admin("globex"));
    for n in 0..3 {
        app.create_ok(&globex, &format!("globex {n}")).await;
    }
    app.create_ok(&acme, "acme's first").await;
    // Catching up from the start: acme's one entry, none of globex's three.
    let mut stream = Stream::open(&app, &member("acme"), "?after=0", None).await;
    assert_eq!(stream.opening().await, 0);
    let first = stream.events(1).await;
    assert_eq!(first[0].data.as_ref().unwrap()["changes"]["organizationId"], "acme");
    // Live: globex's changes never arrive; acme's next one does, numbered in acme's log.
    let id = app.create_ok(&globex, "globex again").await["id"].as_i64().unwrap();
    assert_eq!(app.patch(&globex, id, json!({"status": "DONE"})).await.status(), StatusCode::OK);
    app.create_ok(&acme, "acme's second").await;
    let next = stream.events(1).await;
    assert_eq!(event_ids(&next), [2]);
    assert_eq!(next[0].data.as_ref().unwrap()["changes"]["title"], "acme's second");
    let log = log_of(&app, &member("acme")).await;
    assert_eq!(vec![first[0].data.clone().unwrap(), next[0].data.clone().unwrap()], log);
}

/// A session that LISTENs on the channel, as `role` when given (after logging in), and
/// the notifications it hears: (channel, payload).
async fn listening(
    url: &str,
    role: Option<&str>,
) -> (tokio_postgres::Client, mpsc::UnboundedReceiver<(String, String)>) {
    let config = tokio_postgres::Config::from_str(url).unwrap();
    let (client, mut connection) = config.connect(NoTls).await.unwrap();
    let (heard, notifications) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notification(n) = message {
                let _ = heard.send((n.channel().to_owned(), n.payload().to_owned()));
            }
        }
    });
    if let Some(role) = role {
        client.batch_execute(&format!("set role {role}")).await.unwrap();
    }
    client.batch_execute(&format!("listen {}", tenantry::db::ACTIVITY_CHANNEL)).await.unwrap();
    (client, notifications)
}

async fn heard(notifications: &mut mpsc::UnboundedReceiver<(String, String)>) -> (String, String) {
    tokio::time::timeout(Duration::from_secs(20), notifications.recv())
        .await
        .expect("waited 20 s for a notification")
        .unwrap()
}

/// Nothing more has arrived: a round trip on the session first, so whatever PostgreSQL
/// had queued for it is in.
async fn nothing_more(
    client: &tokio_postgres::Client,
    notifications: &mut mpsc::UnboundedReceiver<(String, String)>,
) {
    client.batch_execute("select 1").await.unwrap();
    assert!(notifications.try_recv().is_err(), "an unexpected notification");
}

/// (Its stream's opening block comes after its organization's registration, so the
/// change made after it must notify: once a race when the handler did not wait for it.)
#[tokio::test]
async fn a_listen_session_hears_an_opaque_route_only_for_organizations_someone_streams() {
    let app = spawn_app().await;
    let owner = app.owner_sql().await;
    // A login with nothing but CONNECT (PUBLIC's), and the DBA role.
    owner
        .batch_execute(
            "do $$ begin create role listen_only_role login; \
             exception when duplicate_object then null; end $$",
        )
        .await
        .unwrap();
    let pg = &cluster().pg;
    let (connect_only, mut connect_only_heard) =
        listening(&pg.url("listen_only_role", &app.database), None).await;
    let refused = connect_only.simple_query("select * from app.organization_counters").await.unwrap_err();
    assert_eq!(sqlstate(&refused), "42501", "it cannot read what the routes map to");
    let (dba, mut dba_heard) =
        listening(&pg.url(SUPERUSER, &app.database), Some(tenantry::db::DBA_ROLE)).await;

    // No stream of "quiet": its change notifies no one.
    app.create_ok(&admin("quiet"), "unheard").await;
    let mut loud = Stream::open(&app, &member("loud"), "", None).await;
    loud.opening().await;
    let issue = app.create_ok(&admin("loud"), "the secret plan").await["id"].as_i64().unwrap();
    assert_eq!(event_ids(&loud.events(1).await), [1]);

    let mut routes = Vec::new();
    let opaque = regex::Regex::new("^[A-Za-z0-9_-]{22}$").unwrap();
    for (client, notifications) in [(&connect_only, &mut connect_only_heard), (&dba, &mut dba_heard)] {
        let (channel, payload) = heard(notifications).await;
        assert_eq!(channel, "tenantry_activity");
        assert!(opaque.is_match(&payload), "{payload}");
        for secret in ["loud", "quiet", "secret", "plan"] {
            assert!(!payload.to_lowercase().contains(secret), "{payload} names {secret}");
        }
        nothing_more(client, notifications).await;
        routes.push(payload);
    }
    assert_eq!(routes[0], routes[1], "one value, whoever listens");

    // The same organization, the same route; one transaction, one notification however
    // many entries it writes; another organization, another route.
    owner
        .batch_execute(&format!(
            "begin; set local role tenantry_api; {}; \
             select app.log_activity({issue}, 'updated', '{{}}'); select app.log_activity({issue}, 'updated', '{{}}'); \
             commit;",
            set_tenant_sql("loud", "ann", "ADMIN")
        ))
        .await
        .unwrap();
    assert_eq!(event_ids(&loud.events(2).await), [2, 3]);
    assert_eq!(heard(&mut connect_only_heard).await.1, routes[0]);
    nothing_more(&connect_only, &mut connect_only_heard).await;
    let mut other = Stream::open(&app, &member("other"), "", None).await;
    other.opening().await;
    app.create_ok(&admin("other"), "another organization").await;
    assert_eq!(event_ids(&other.events(1).await), [1]);
    let (_, other_route) = heard(&mut connect_only_heard).await;
    assert_ne!(other_route, routes[0]);
}

/// One organization's reader stuck in PostgreSQL (its registration waits for a row lock
/// held elsewhere, with no statement time-out) holds up no other organization's streams:
/// each organization has its own reader, and none holds a lock another needs across a read.
#[tokio::test]
async fn an_organizations_stuck_reader_holds_up_no_other_organizations_streams() {
    let app = std::sync::Arc::new(
        spawn_app_with(Mode::ApiLogin, |config| {
            config.statement_timeout_ms = 0;
            config.request_timeout_ms = 0;
        })
        .await,
    );
    let (acme, globex) = (admin("acme"), admin("globex"));
    app.create_ok(&acme, "acme's counters row").await;
    let locker = app.owner_sql().await;
    locker
        .batch_execute(
            "begin; select from app.organization_counters where organization_id = 'acme' for update",
        )
        .await
        .unwrap();
    // acme's first stream: its reader's registration waits for the lock, and its response
    // waits for the registration.
    let stuck = tokio::spawn({
        let app = app.clone();
        async move {
            let mut stream = Stream::open(&app, &member("acme"), "", None).await;
            stream.opening().await
        }
    });
    wait_for_lock_waiters(&app.owner_sql().await, &app.database, 1).await;
    let mut stream = Stream::open(&app, &member("globex"), "", None).await;
    assert_eq!(stream.opening().await, 0);
    app.create_ok(&globex, "globex goes on").await;
    assert_eq!(event_ids(&stream.events(1).await), [1]);
    assert!(!stuck.is_finished(), "acme's stream still waits for its registration");
    locker.batch_execute("commit").await.unwrap();
    assert_eq!(stuck.await.unwrap(), 1, "then it opens, after acme's one entry");
}
