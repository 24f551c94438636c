//! Webhooks: the ADMIN-only endpoints, and deliveries to a real receiver on loopback
//! (WEBHOOK_ALLOW_INSECURE_TARGETS=1, except where the refused addresses are the point),
//! signatures checked with the Standard Webhooks library for Python, not our code.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use poem::{
    EndpointExt, Request, Response, Server, handler,
    listener::{Acceptor, Listener, TcpListener},
    web::Data,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tenantry::config::Config;
use tokio::sync::oneshot;

use crate::helpers::{
    Mode, TestApp, admin, assert_problem, error_fields, member, set_tenant_sql, spawn_app, spawn_app_on,
    spawn_app_with, sqlstate, wait_until,
};

/// What a receiver answers, request by request (then 200 for the rest).
#[derive(Clone, Copy, Debug)]
pub enum Reply {
    Status(u16),
    RetryAfter(u16, u64),
    /// Never answers (the attempt times out, or the sender dies first).
    Hang,
}

/// One request a receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub body: String,
    pub answered: u16,
}

#[derive(Default)]
struct ReceiverState {
    got: Mutex<Vec<Received>>,
    script: Mutex<VecDeque<Reply>>,
}

/// An HTTP receiver on loopback recording every request.
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<ReceiverState>,
    _stop: oneshot::Sender<()>,
}

#[handler]
async fn receive(request: &Request, body: poem::Body, state: Data<&Arc<ReceiverState>>) -> Response {
    let header = |name: &str| request.header(name).unwrap_or_default().to_owned();
    let body = body.into_string().await.unwrap_or_default();
    let reply = state.script.lock().unwrap().pop_front().unwrap_or(Reply::Status(200));
    let answered = match reply {
        Reply::Status(code) | Reply::RetryAfter(code, _) => code,
        Reply::Hang => 0,
    };
    state.got.lock().unwrap().push(Received {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        body,
        answered,
    });
    match reply {
        Reply::Status(code) => Response::builder().status(StatusCode::from_u16(code).unwrap()).body("ok"),
        Reply::RetryAfter(code, seconds) => Response::builder()
            .status(StatusCode::from_u16(code).unwrap())
            .header("Retry-After", seconds.to_string())
            .body("later"),
        Reply::Hang => std::future::pending().await,
    }
}

impl Receiver {
    pub async fn start(script: &[Reply]) -> Receiver {
        let state = Arc::new(ReceiverState::default());
        state.script.lock().unwrap().extend(script.iter().copied());
        let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await.unwrap();
        let addr = *acceptor.local_addr()[0].as_socket_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let app = poem::Route::new().at("/*", receive).data(state.clone());
        tokio::spawn(Server::new_with_acceptor(acceptor).run_with_graceful_shutdown(
            app,
            async {
                let _ = stopped.await;
            },
            Some(Duration::from_millis(10)),
        ));
        Receiver { addr, state, _stop: stop }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn got(&self) -> Vec<Received> {
        self.state.got.lock().unwrap().clone()
    }

    /// Waits until `n` requests answered 2xx arrived; returns every request so far.
    pub async fn wait_for_successes(&self, n: usize) -> Vec<Received> {
        wait_until(&format!("{n} successful deliveries"), || async {
            self.got().iter().filter(|r| (200..300).contains(&r.answered)).count() >= n
        })
        .await;
        self.got()
    }

    pub fn script(&self, replies: &[Reply]) {
        self.state.script.lock().unwrap().extend(replies.iter().copied());
    }
}

/// Settings for delivery tests: loopback receivers allowed, quick polls, short retries.
pub fn quick(config: &mut Config) {
    config.webhooks.webhook_allow_insecure_targets = true;
    config.webhooks.webhook_poll_interval_ms = 20;
    config.webhooks.webhook_retry_schedule =
        tenantry::webhooks::schedule::RetrySchedule::parse("10ms,10ms,10ms").unwrap();
}

pub async fn create_webhook(app: &TestApp, org: &str, body: Value) -> Value {
    let response =
        app.request(Method::POST, "/api/webhooks", Some(&admin(org))).json(&body).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED, "{:?}", response.text().await);
    response.json().await.unwrap()
}

/// The attempts the service has recorded, once there are `n`: a receiver's answer comes
/// before the service records it, so a test that saw the answer waits for the record.
async fn recorded_deliveries(app: &TestApp, org: &str, id: i64, n: usize) -> Vec<Value> {
    wait_until(&format!("{n} attempts are recorded"), || async { deliveries(app, org, id).await.len() >= n })
        .await;
    deliveries(app, org, id).await
}

async fn deliveries(app: &TestApp, org: &str, id: i64) -> Vec<Value> {
    let path = format!("/api/webhooks/{id}/deliveries?limit=200");
    let response = app.request(Method::GET, &path, Some(&admin(org))).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

async fn feed(app: &TestApp, org: &str) -> Vec<Value> {
    let response =
        app.request(Method::GET, "/api/activity?limit=200", Some(&admin(org))).send().await.unwrap();
    let mut entries: Vec<Value> = response.json().await.unwrap();
    entries.reverse();
    entries
}

/// Checks every request's signature with the Standard Webhooks library for Python (the
/// tools virtualenv), once per secret given; panics on any that does not verify.
pub fn verify_with_standard_webhooks(secret: &str, received: &[Received]) {
    let venv = std::env::var_os("TENANTRY_TOOLS_VENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tools-venv"));
    let python = venv.join("bin/python");
    let ok = python.exists()
        && std::process::Command::new(&python)
            .args(["-c", "import standardwebhooks"])
            .status()
            .is_ok_and(|s| s.success());
    if !ok {
        let hint = "target/tools-venv/bin/pip install -r tools/requirements.txt";
        assert!(
            std::env::var_os("REQUIRE_SPEC_VALIDATOR").is_none_or(|v| v != "1"),
            "REQUIRE_SPEC_VALIDATOR=1 but the standardwebhooks library is missing: {hint}"
        );
        eprintln!("SKIPPED: signatures not checked independently ({hint})");
        return;
    }
    let items: Vec<Value> = received
        .iter()
        .map(|r| json!({"id": r.id, "timestamp": r.timestamp, "signature": r.signature, "body": r.body}))
        .collect();
    let dir = crate::ops::startup::tempdir("webhook-signatures");
    let file = dir.join("received.json");
    std::fs::write(&file, serde_json::to_vec(&json!({"secret": secret, "items": items})).unwrap()).unwrap();
    let script = "import json, sys\n\
                  from standardwebhooks.webhooks import Webhook\n\
                  given = json.load(open(sys.argv[1]))\n\
                  hook = Webhook(given['secret'])\n\
                  for item in given['items']:\n\
                  \x20   hook.verify(item['body'].encode(), {'webhook-id': item['id'], \
                  'webhook-timestamp': item['timestamp'], 'webhook-signature': item['signature']})\n\
                  print('verified', len(given['items']))\n";
    let output = std::process::Command::new(python).args(["-c", script]).arg(&file).output().unwrap();
    assert!(
        output.status.success(),
        "standardwebhooks refused a signature: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn admins_manage_webhooks_members_get_403_and_other_organizations_404() {
    let app = spawn_app_with(Mode::ApiLogin, quick).await;
    let created = create_webhook(
        &app,
        "wh-a",
        json!({"url": "https://hooks.example.com/in", "events": ["issue.deleted", "issue.created"], "description": "CI"}),
    )
    .await;
    let secret = created["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_") && secret.len() == 50, "{secret}");
    assert_eq!(created["id"], 1);
    assert_eq!(created["events"], json!(["issue.created", "issue.deleted"]), "listed in a fixed order");
    assert_eq!(created["active"], true);
    assert_eq!(created["disabledReason"], Value::Null);

    let path = "/api/webhooks/1";
    let got: Value =
        app.request(Method::GET, path, Some(&admin("wh-a"))).send().await.unwrap().json().await.unwrap();
    assert!(got.get("secret").is_none(), "the secret is shown once only: {got}");
    assert_eq!(got["url"], "https://hooks.example.com/in");

    // A MEMBER: 403 on every operation; another organization: 404 (or an empty list).
    for (method, path) in [
        (Method::GET, "/api/webhooks"),
        (Method::GET, path),
        (Method::PATCH, path),
        (Method::DELETE, path),
        (Method::POST, "/api/webhooks/1/rotate-secret"),
        (Method::GET, "/api/webhooks/1/deliveries"),
        (Method::POST, "/api/webhooks/1/ping"),
    ] {
        let request = app.request(method.clone(), path, Some(&member("wh-a")));
        let request = if method == Method::PATCH { request.json(&json!({"active": false})) } else { request };
        assert_problem(request.send().await.unwrap(), StatusCode::FORBIDDEN).await;
        if path != "/api/webhooks" {
            let request = app.request(method.clone(), path, Some(&admin("wh-b")));
            let request =
                if method == Method::PATCH { request.json(&json!({"active": false})) } else { request };
            assert_problem(request.send().await.unwrap(), StatusCode::NOT_FOUND).await;
        }
    }
    let others: Vec<Value> = app
        .request(Method::GET, "/api/webhooks", Some(&admin("wh-b")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(others.is_empty());

    let patched: Value = app
        .request(Method::PATCH, path, Some(&admin("wh-a")))
        .json(&json!({"events": ["issue.updated"], "active": false, "description": ""}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (patched["events"].clone(), patched["active"].clone()),
        (json!(["issue.updated"]), json!(false))
    );

    let rotated: Value = app
        .request(Method::POST, "/api/webhooks/1/rotate-secret", Some(&admin("wh-a")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_ne!(rotated["secret"], created["secret"]);
    assert!(rotated["previousSecretExpiresAt"].is_string(), "{rotated}");

    // Pages of the list.
    for n in 0..3 {
        create_webhook(&app, "wh-a", json!({"url": format!("https://hooks.example.com/{n}")})).await;
    }
    let pages = app.walk(&admin("wh-a"), "/api/webhooks?limit=3").await;
    let ids: Vec<i64> = pages.iter().flatten().map(|w| w["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, vec![1, 2, 3, 4]);

    let deleted = app.request(Method::DELETE, path, Some(&admin("wh-a"))).send().await.unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_problem(
        app.request(Method::GET, path, Some(&admin("wh-a"))).send().await.unwrap(),
        StatusCode::NOT_FOUND,
    )
    .await;
}

#[tokio::test]
async fn bad_webhook_input_is_a_400_naming_the_field() {
    // Insecure targets NOT allowed here: the address rules are the point.
    let app = spawn_app().await;
    let long = format!("https://example.com/{}", "a".repeat(2040));
    let cases = [
        (json!({"url": "http://example.com/"}), "url"),
        (json!({"url": "https://127.0.0.1/"}), "url"),
        (json!({"url": "https://[::ffff:127.0.0.1]/"}), "url"),
        (json!({"url": "https://169.254.169.254/latest/meta-data"}), "url"),
        (json!({"url": "https://10.1.2.3/"}), "url"),
        (json!({"url": "https://user:pw@example.com/"}), "url"),
        (json!({"url": "ftp://example.com/"}), "url"),
        (json!({"url": ""}), "url"),
        (json!({"url": long}), "url"),
        (json!({"url": 5}), "url"),
        (json!({}), "url"),
        (json!({"url": "https://example.com/", "events": []}), "events"),
        (json!({"url": "https://example.com/", "events": ["issue.created", "issue.created"]}), "events"),
        (json!({"url": "https://example.com/", "events": ["issue.exploded"]}), "events"),
        (json!({"url": "https://example.com/", "events": "issue.created"}), "events"),
        (json!({"url": "https://example.com/", "events": [null]}), "events"),
        (json!({"url": "https://example.com/", "description": "x".repeat(1001)}), "description"),
        (json!({"url": "https://example.com/", "description": "bell\u{7}"}), "description"),
        (json!({"url": "https://example.com/", "secret": "whsec_mine"}), "secret"),
        (json!({"url": "https://example.com/", "active": true}), "active"),
    ];
    for (body, field) in cases {
        let response = app
            .request(Method::POST, "/api/webhooks", Some(&admin("wh-bad")))
            .json(&body)
            .send()
            .await
            .unwrap();
        let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(error_fields(&problem), vec![field.to_owned()], "{body}: {problem}");
    }
    // Unicode hosts are fine (IDNA), and a description may hold any text.
    let created = create_webhook(
        &app,
        "wh-bad",
        json!({"url": "https://bücher.example/hook?x=1", "description": "Ünïcode 🎉\nline two"}),
    )
    .await;
    assert!(created["url"].as_str().unwrap().starts_with("https://xn--"), "{created}");
    let response = app
        .request(Method::PATCH, "/api/webhooks/1", Some(&admin("wh-bad")))
        .json(&json!({"active": "yes"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_fields(&assert_problem(response, StatusCode::BAD_REQUEST).await), vec!["active"]);
    for id in ["0", "-1", "9223372036854775808", "x"] {
        let response = app
            .request(Method::GET, &format!("/api/webhooks/{id}"), Some(&admin("wh-bad")))
            .send()
            .await
            .unwrap();
        assert_problem(response, StatusCode::BAD_REQUEST).await;
    }
    let response = app
        .request(Method::GET, "/api/webhooks/9223372036854775807", Some(&admin("wh-bad")))
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn an_organization_has_at_most_webhook_max_per_org_endpoints() {
    let app = spawn_app_with(Mode::ApiLogin, |config| config.webhooks.webhook_max_per_org = 2).await;
    for _ in 0..2 {
        create_webhook(&app, "wh-max", json!({"url": "https://example.com/"})).await;
    }
    let response = app
        .request(Method::POST, "/api/webhooks", Some(&admin("wh-max")))
        .json(&json!({"url": "https://example.com/"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["type"], "urn:tenantry:problem:quota-exceeded");
    assert!(problem["detail"].as_str().unwrap().contains("WEBHOOK_MAX_PER_ORG"), "{problem}");
    // Another organization is not affected, and deleting one makes room.
    create_webhook(&app, "wh-max-2", json!({"url": "https://example.com/"})).await;
    app.request(Method::DELETE, "/api/webhooks/1", Some(&admin("wh-max"))).send().await.unwrap();
    create_webhook(&app, "wh-max", json!({"url": "https://example.com/"})).await;
}

#[tokio::test]
async fn secrets_are_readable_by_no_dba_role_and_never_by_the_api_role() {
    let app = spawn_app().await;
    create_webhook(&app, "wh-sec", json!({"url": "https://example.com/"})).await;
    let owner = app.owner_sql().await;
    for role in ["tenantry_dba", "tenantry_api", "tenantry_tenant_view"] {
        owner.batch_execute("begin").await.unwrap();
        owner.batch_execute(&format!("set local role {role}")).await.unwrap();
        owner.batch_execute(&set_tenant_sql("wh-sec", "u", "ADMIN")).await.unwrap();
        let err = owner.query("select secret from app.webhook_secrets", &[]).await.unwrap_err();
        assert_eq!(sqlstate(&err), "42501", "{role}: {err}");
        owner.batch_execute("rollback").await.unwrap();
    }
    // The DBA sees the endpoints and their delivery state, not the secret.
    owner.batch_execute("begin; set local role tenantry_dba").await.unwrap();
    let urls = owner.query("select url from app.webhooks", &[]).await.unwrap();
    assert_eq!(urls.len(), 1);
    owner.batch_execute("rollback").await.unwrap();
}

#[tokio::test]
async fn a_member_cannot_change_delivery_state_in_sql_and_head_cannot_be_forged() {
    let app = spawn_app().await;
    create_webhook(&app, "wh-sql", json!({"url": "https://example.com/"})).await;
    app.create_ok(&member("wh-sql"), "one").await;
    let sql = app.api_role_sql().await;
    for statement in [
        "update app.webhook_queue set active = false",
        "update app.webhook_queue set next_attempt_at = now() + interval '1 year'",
        "update app.webhook_queue set head = head + 1000",
    ] {
        sql.batch_execute("begin").await.unwrap();
        sql.batch_execute(&set_tenant_sql("wh-sql", "m", "MEMBER")).await.unwrap();
        let err = sql.batch_execute(statement).await.unwrap_err();
        assert_eq!(sqlstate(&err), "TN403", "{statement}: {err}");
        sql.batch_execute("rollback").await.unwrap();
    }
    for statement in ["update app.webhook_queue set position = 0", "select secret from app.webhook_secrets"] {
        sql.batch_execute("begin").await.unwrap();
        sql.batch_execute(&set_tenant_sql("wh-sql", "a", "ADMIN")).await.unwrap();
        let err = sql.batch_execute(statement).await.unwrap_err();
        assert_eq!(sqlstate(&err), "42501", "{statement}: {err}");
        sql.batch_execute("rollback").await.unwrap();
    }
}

#[tokio::test]
async fn events_arrive_in_activity_order_signed_and_verified_by_the_standard_webhooks_library() {
    let receiver = Receiver::start(&[]).await;
    let app = spawn_app_with(Mode::ApiLogin, quick).await;
    let created = create_webhook(&app, "wh-order", json!({"url": receiver.url("/hook")})).await;
    // Before the endpoint existed: not sent. Another organization's: never sent.
    let first = app.create_ok(&admin("wh-order-other"), "not ours").await;
    let issue = app.create_ok(&admin("wh-order"), "ours").await;
    let id = issue["id"].as_i64().unwrap();
    app.patch(&admin("wh-order"), id, json!({"status": "DONE"})).await;
    app.delete(&admin("wh-order"), id).await;
    app.restore(&admin("wh-order"), id).await;
    let got = receiver.wait_for_successes(4).await;
    assert_eq!(got.len(), 4, "{got:?}");
    let entries = feed(&app, "wh-order").await;
    for (request, entry) in got.iter().zip(&entries) {
        let body: Value = serde_json::from_str(&request.body).unwrap();
        assert_eq!(body["type"], format!("issue.{}", entry["action"].as_str().unwrap()));
        assert_eq!(body["timestamp"], entry["createdAt"]);
        assert_eq!(body["data"], *entry, "data is the entry as GET /api/activity shows it");
        assert_eq!(request.id, format!("msg_1_{}", entry["id"]));
        assert_eq!(request.signature.split(' ').count(), 1);
    }
    assert!(!got.iter().any(|r| r.body.contains(&first["title"].as_str().unwrap().to_string())));
    verify_with_standard_webhooks(created["secret"].as_str().unwrap(), &got);

    // The check can fail: a changed body does not verify.
    let mut forged = got[0].clone();
    forged.body = forged.body.replace("ours", "0urs");
    let refused = std::panic::catch_unwind(|| {
        verify_with_standard_webhooks(created["secret"].as_str().unwrap(), &[forged])
    });
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tools-venv/bin/python");
    if venv.exists() {
        assert!(refused.is_err(), "a forged body verified");
    }

    let attempts = recorded_deliveries(&app, "wh-order", 1, 4).await;
    assert_eq!(attempts.len(), 4);
    assert!(attempts.iter().all(|a| a["succeeded"] == true && a["status"] == 200 && a["attempt"] == 1));
}

#[tokio::test]
async fn a_receiver_that_is_down_gets_every_event_later_in_order_with_the_same_webhook_id() {
    let receiver = Receiver::start(&[
        Reply::Status(503),
        Reply::RetryAfter(503, 0),
        Reply::Status(500),
        Reply::Status(200),
    ])
    .await;
    let app = spawn_app_with(Mode::ApiLogin, quick).await;
    let created = create_webhook(&app, "wh-down", json!({"url": receiver.url("/")})).await;
    for title in ["one", "two", "three"] {
        app.create_ok(&admin("wh-down"), title).await;
    }
    let got = receiver.wait_for_successes(3).await;
    let ids: Vec<&str> = got.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["msg_1_1", "msg_1_1", "msg_1_1", "msg_1_1", "msg_1_2", "msg_1_3"], "held back in order");
    // The body is the same on every attempt; each attempt is signed again.
    assert!(got[..4].iter().all(|r| r.body == got[0].body));
    verify_with_standard_webhooks(created["secret"].as_str().unwrap(), &got);
    let attempts = recorded_deliveries(&app, "wh-down", 1, 6).await;
    let numbers: Vec<(i64, bool)> =
        attempts.iter().rev().map(|a| (a["attempt"].as_i64().unwrap(), a["succeeded"] == true)).collect();
    assert_eq!(numbers, [(1, false), (2, false), (3, false), (4, true), (1, true), (1, true)]);
    assert!(attempts.last().unwrap()["nextAttemptAt"].is_string(), "a failure says when it is tried again");
}

#[tokio::test]
async fn the_last_failed_retry_disables_the_endpoint_and_enabling_it_sends_what_is_owed_in_order() {
    // Three retries: four failures disable it.
    let receiver = Receiver::start(&[Reply::Status(500); 4]).await;
    let app = spawn_app_with(Mode::ApiLogin, quick).await;
    create_webhook(&app, "wh-off", json!({"url": receiver.url("/")})).await;
    app.create_ok(&admin("wh-off"), "one").await;
    let path = "/api/webhooks/1";
    wait_until("the endpoint is disabled", || async {
        let hook: Value = app
            .request(Method::GET, path, Some(&admin("wh-off")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        hook["active"] == false
    })
    .await;
    let hook: Value =
        app.request(Method::GET, path, Some(&admin("wh-off"))).send().await.unwrap().json().await.unwrap();
    assert!(hook["disabledReason"].as_str().unwrap().contains("4 attempts"), "{hook}");
    // Events while disabled are kept.
    app.create_ok(&admin("wh-off"), "two").await;
    assert_eq!(receiver.got().len(), 4);
    app.request(Method::PATCH, path, Some(&admin("wh-off")))
        .json(&json!({"active": true}))
        .send()
        .await
        .unwrap();
    let got = receiver.wait_for_successes(2).await;
    let ids: Vec<&str> = got.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["msg_1_1"; 4].iter().copied().chain(["msg_1_1", "msg_1_2"]).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_410_disables_at_once_and_kinds_not_chosen_are_skipped() {
    let receiver = Receiver::start(&[]).await;
    let gone = Receiver::start(&[Reply::Status(410)]).await;
    let app = spawn_app_with(Mode::ApiLogin, quick).await;
    create_webhook(&app, "wh-410", json!({"url": receiver.url("/"), "events": ["issue.deleted"]})).await;
    create_webhook(&app, "wh-410", json!({"url": gone.url("/")})).await;
    let issue = app.create_ok(&admin("wh-410"), "x").await;
    app.patch(&admin("wh-410"), issue["id"].as_i64().unwrap(), json!({"title": "y"})).await;
    app.delete(&admin("wh-410"), issue["id"].as_i64().unwrap()).await;
    let got = receiver.wait_for_successes(1).await;
    assert_eq!(got.len(), 1);
    assert!(got[0].body.contains("\"issue.deleted\""), "{}", got[0].body);
    assert_eq!(got[0].id, "msg_1_3");
    wait_until("the 410 endpoint is disabled", || async {
        let hook: Value = app
            .request(Method::GET, "/api/webhooks/2", Some(&admin("wh-410")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        hook["active"] == false && hook["disabledReason"].as_str().is_some_and(|r| r.contains("410"))
    })
    .await;
    assert_eq!(gone.got().len(), 1, "no retry after a 410");
}

#[tokio::test]
async fn ping_and_redeliver_are_extra_attempts_outside_the_order() {
    let receiver = Receiver::start(&[]).await;
    let app = spawn_app_with(Mode::ApiLogin, quick).await;
    let created = create_webhook(&app, "wh-ping", json!({"url": receiver.url("/")})).await;
    let ping =
        app.request(Method::POST, "/api/webhooks/1/ping", Some(&admin("wh-ping"))).send().await.unwrap();
    assert_eq!(ping.status(), StatusCode::ACCEPTED);
    let ping: Value = ping.json().await.unwrap();
    let got = receiver.wait_for_successes(1).await;
    assert_eq!(got[0].id, ping["eventId"].as_str().unwrap());
    let body: Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(
        (body["type"].clone(), body["data"].clone()),
        (json!("webhook.ping"), json!({"webhookId": 1}))
    );

    app.create_ok(&admin("wh-ping"), "one").await;
    receiver.wait_for_successes(2).await;
    let attempts = recorded_deliveries(&app, "wh-ping", 1, 2).await;
    let event = attempts.iter().find(|a| a["eventType"] == "issue.created").unwrap();
    let path = format!("/api/webhooks/1/deliveries/{}/redeliver", event["id"]);
    let again = app.request(Method::POST, &path, Some(&admin("wh-ping"))).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    let got = receiver.wait_for_successes(3).await;
    assert_eq!(got[2].id, got[1].id, "a redelivery keeps the webhook-id");
    assert_eq!(got[2].body, got[1].body);
    verify_with_standard_webhooks(created["secret"].as_str().unwrap(), &got);
    wait_until("the redelivery is recorded", || async {
        deliveries(&app, "wh-ping", 1).await.iter().any(|a| a["outOfBand"] == true && a["attempt"] == 2)
    })
    .await;
    for path in ["/api/webhooks/1/deliveries/999/redeliver", "/api/webhooks/2/ping"] {
        let response = app.request(Method::POST, path, Some(&admin("wh-ping"))).send().await.unwrap();
        assert_problem(response, StatusCode::NOT_FOUND).await;
    }
}

#[tokio::test]
async fn during_a_rotation_both_secrets_sign() {
    let receiver = Receiver::start(&[]).await;
    let app = spawn_app_with(Mode::ApiLogin, quick).await;
    let created = create_webhook(&app, "wh-rot", json!({"url": receiver.url("/")})).await;
    let rotated: Value = app
        .request(Method::POST, "/api/webhooks/1/rotate-secret", Some(&admin("wh-rot")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    app.create_ok(&admin("wh-rot"), "one").await;
    let got = receiver.wait_for_successes(1).await;
    assert_eq!(got[0].signature.split(' ').count(), 2, "{}", got[0].signature);
    verify_with_standard_webhooks(created["secret"].as_str().unwrap(), &got);
    verify_with_standard_webhooks(rotated["secret"].as_str().unwrap(), &got);
}

#[tokio::test]
async fn a_name_that_resolves_to_loopback_is_never_connected_to() {
    // Insecure targets NOT allowed: `localhost` passes the URL check (a name), and the
    // resolver refuses its addresses when the attempt is made.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = spawn_app_with(Mode::ApiLogin, |config| {
        config.webhooks.webhook_poll_interval_ms = 20;
    })
    .await;
    create_webhook(&app, "wh-local", json!({"url": format!("https://localhost:{port}/")})).await;
    app.create_ok(&admin("wh-local"), "one").await;
    wait_until("the refused attempt is recorded", || async {
        !deliveries(&app, "wh-local", 1).await.is_empty()
    })
    .await;
    let attempt = deliveries(&app, "wh-local", 1).await.remove(0);
    assert_eq!(attempt["status"], Value::Null);
    assert!(attempt["error"].as_str().unwrap().contains("no public address"), "{attempt}");
    assert!(listener.accept().is_err(), "the service connected to a loopback address");
}

#[tokio::test]
async fn two_instances_deliver_each_event_once() {
    let receiver = Receiver::start(&[]).await;
    let first = spawn_app_with(Mode::ApiLogin, quick).await;
    let second = spawn_app_on(&first.database, Mode::ApiLogin, quick).await;
    for org in ["wh-two-a", "wh-two-b", "wh-two-c"] {
        create_webhook(&first, org, json!({"url": receiver.url("/")})).await;
    }
    let writes = (0..30).map(|n| {
        let app = if n % 2 == 0 { &first } else { &second };
        let org = ["wh-two-a", "wh-two-b", "wh-two-c"][n % 3];
        async move { app.create_ok(&admin(org), &format!("issue {n}")).await }
    });
    futures::future::join_all(writes).await;
    let got = receiver.wait_for_successes(30).await;
    // Titles are unique: each event once, and nothing twice.
    let mut titles: Vec<String> = got
        .iter()
        .map(|r| serde_json::from_str::<Value>(&r.body).unwrap()["data"]["changes"]["title"].to_string())
        .collect();
    titles.sort();
    titles.dedup();
    assert_eq!(titles.len(), 30);
    // Both instances got a chance to deliver: wait until every attempt is recorded, then
    // no more requests may have come.
    for org in ["wh-two-a", "wh-two-b", "wh-two-c"] {
        wait_until("every attempt is recorded", || async { deliveries(&first, org, 1).await.len() == 10 })
            .await;
    }
    assert_eq!(receiver.got().len(), 30, "every event once");
}

#[tokio::test]
async fn one_organizations_hanging_endpoints_do_not_hold_back_another_organizations_deliveries() {
    let tarpit = Receiver::start(&[Reply::Hang; 10]).await;
    let receiver = Receiver::start(&[]).await;
    let app = spawn_app_with(Mode::ApiLogin, |config| {
        quick(config);
        config.webhooks.webhook_max_in_flight = 2;
        config.webhooks.webhook_max_in_flight_per_org = 1;
        config.webhooks.webhook_timeout_ms = 60_000;
        config.webhooks.webhook_lease_ms = 120_000;
    })
    .await;
    // More endpoints owing than a claim looks at for one free slot: an organization at
    // its limit must not crowd the others out of the candidates.
    for _ in 0..6 {
        create_webhook(&app, "wh-slow", json!({"url": tarpit.url("/")})).await;
    }
    create_webhook(&app, "wh-fast", json!({"url": receiver.url("/")})).await;
    app.create_ok(&admin("wh-slow"), "slow").await;
    wait_until("the tarpit holds an attempt", || async { !tarpit.got().is_empty() }).await;
    app.create_ok(&admin("wh-fast"), "fast").await;
    let got = receiver.wait_for_successes(1).await;
    assert_eq!(got[0].id, "msg_1_1");
    assert_eq!(tarpit.got().len(), 1, "one organization holds at most WEBHOOK_MAX_IN_FLIGHT_PER_ORG");
}

#[tokio::test]
async fn pings_and_redeliveries_waiting_are_bounded_per_endpoint() {
    // This instance sends nothing: the requests stay waiting.
    let app = spawn_app_with(Mode::ApiLogin, |config| config.webhooks.webhook_max_in_flight = 0).await;
    create_webhook(&app, "wh-flood", json!({"url": "https://example.com/"})).await;
    for _ in 0..100 {
        let ping =
            app.request(Method::POST, "/api/webhooks/1/ping", Some(&admin("wh-flood"))).send().await.unwrap();
        assert_eq!(ping.status(), StatusCode::ACCEPTED);
    }
    let refused =
        app.request(Method::POST, "/api/webhooks/1/ping", Some(&admin("wh-flood"))).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["type"], "urn:tenantry:problem:quota-exceeded");
    // Another endpoint is not affected.
    create_webhook(&app, "wh-flood", json!({"url": "https://example.com/2"})).await;
    let ping =
        app.request(Method::POST, "/api/webhooks/2/ping", Some(&admin("wh-flood"))).send().await.unwrap();
    assert_eq!(ping.status(), StatusCode::ACCEPTED);
}

/// Issues and deliveries the hostile reviewer would try: a huge description is delivered
/// whole (bodies up to about 100 KB: see docs/api.md), and the service reads no more
/// than 4 KiB of an answer.
#[tokio::test]
async fn a_large_event_is_delivered_whole() {
    let receiver = Receiver::start(&[]).await;
    let app = spawn_app_with(Mode::ApiLogin, quick).await;
    let created = create_webhook(&app, "wh-big", json!({"url": receiver.url("/")})).await;
    let description = "ü".repeat(50_000);
    let response = app.create(&admin("wh-big"), json!({"title": "big", "description": description})).await;
    let issue: Value = response.json().await.unwrap();
    app.delete(&admin("wh-big"), issue["id"].as_i64().unwrap()).await;
    let got = receiver.wait_for_successes(2).await;
    assert!(got.iter().all(|r| r.body.contains(&description)));
    verify_with_standard_webhooks(created["secret"].as_str().unwrap(), &got);
}

#[tokio::test]
async fn metrics_count_deliveries_by_outcome() {
    let receiver = Receiver::start(&[Reply::Status(500)]).await;
    let app = spawn_app_with(Mode::ApiLogin, quick).await;
    create_webhook(&app, "wh-metrics", json!({"url": receiver.url("/")})).await;
    app.create_ok(&admin("wh-metrics"), "one").await;
    receiver.wait_for_successes(1).await;
    wait_until("both outcomes are counted", || async {
        let text =
            app.client.get(format!("{}/metrics", app.address)).send().await.unwrap().text().await.unwrap();
        text.contains("tenantry_webhook_deliveries_total{outcome=\"delivered\"} 1")
            && text.contains("tenantry_webhook_deliveries_total{outcome=\"failed_will_retry\"} 1")
            && text.contains("tenantry_webhook_oldest_undelivered_seconds")
    })
    .await;
}

/// The real binary on `database`, delivering webhooks to loopback with a short lease;
/// returns it, its address once it serves, and its log (every line, once it has exited).
fn serve_binary(database: &str) -> (std::process::Child, String, std::thread::JoinHandle<Vec<String>>) {
    let pg = &crate::helpers::cluster().pg;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .env("DATABASE_URL", pg.url(pg_sandbox::postgres::SUPERUSER, database))
        .env("API_DATABASE_URL", pg.url(tenantry::db::API_ROLE, database))
        .env("PORT", "0")
        .env("RUST_LOG", "info")
        .env("WEBHOOK_ALLOW_INSECURE_TARGETS", "1")
        .env("WEBHOOK_POLL_INTERVAL_MS", "20")
        .env("WEBHOOK_TIMEOUT_MS", "2000")
        .env("WEBHOOK_LEASE_MS", "3000")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = crate::ops::binary::stderr_lines(&mut child);
    let mut seen = Vec::new();
    loop {
        let line = lines.recv_timeout(Duration::from_secs(60)).expect("the server starts and says so");
        seen.push(line.clone());
        if let Some(rest) = line.split("serving ").nth(1) {
            let address = rest.split("/api").next().unwrap().to_owned();
            // Keep reading its output (it must never block on a full pipe), to the end.
            let log = std::thread::spawn(move || {
                seen.extend(lines.iter());
                seen
            });
            return (child, address, log);
        }
    }
}

async fn post(address: &str, path: &str, org: &str, body: Value) -> Value {
    let actor = admin(org);
    let response = reqwest::Client::new()
        .post(format!("{address}{path}"))
        .header("x-organization-id", &actor.org)
        .header("x-user-id", &actor.user)
        .header("x-user-role", actor.role)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{path}: {}", response.status());
    response.json().await.unwrap()
}

#[tokio::test]
async fn a_service_killed_mid_delivery_loses_nothing_the_next_one_sends_it_with_the_same_webhook_id() {
    let database = crate::helpers::fresh_database().await;
    let receiver = Receiver::start(&[Reply::Hang]).await;
    let (mut first, address, first_log) = serve_binary(&database);
    let created = post(&address, "/api/webhooks", "wh-kill", json!({"url": receiver.url("/")})).await;
    for title in ["one", "two", "three"] {
        post(&address, "/api/issues", "wh-kill", json!({"title": title, "description": "d"})).await;
    }
    wait_until("the first attempt reached the receiver", || async { !receiver.got().is_empty() }).await;
    unsafe { libc::kill(first.id() as i32, libc::SIGKILL) };
    first.wait().unwrap();
    // After the kill, answer at once.
    receiver.script(&[Reply::Status(200)]);
    let (mut second, _, second_log) = serve_binary(&database);
    let got = receiver.wait_for_successes(3).await;
    unsafe { libc::kill(second.id() as i32, libc::SIGTERM) };
    second.wait().unwrap();
    // Both logs, read to their end: attempts are logged with their ids, the secret never.
    // msg_1_2's line, not msg_1_3's: the SIGTERM may come after the receiver answered msg_1_3
    // but before the service recorded (and logged) it, and an attempt in flight at shutdown
    // is abandoned to its lease. msg_1_3 was sent only after msg_1_2 was recorded and logged.
    let log: Vec<String> = [first_log, second_log].into_iter().flat_map(|log| log.join().unwrap()).collect();
    let secret = created["secret"].as_str().unwrap();
    assert!(log.iter().any(|line| line.contains("webhook attempt") && line.contains("msg_1_2")), "{log:?}");
    assert!(!log.iter().any(|line| line.contains(&secret[6..])), "the secret was logged");
    let ids: Vec<&str> = got.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        ["msg_1_1", "msg_1_1", "msg_1_2", "msg_1_3"],
        "the killed attempt again, then the rest in order"
    );
    assert_eq!(got[0].body, got[1].body);
    verify_with_standard_webhooks(created["secret"].as_str().unwrap(), &got[1..]);
}

/// A `Retry-After` longer than the schedule's wait is honoured: the retry is scheduled
/// that far out (read from the recorded attempt, not timed).
#[tokio::test]
async fn a_longer_retry_after_is_honoured() {
    let receiver = Receiver::start(&[Reply::RetryAfter(503, 120)]).await;
    let app = spawn_app_with(Mode::ApiLogin, quick).await;
    create_webhook(&app, "wh-later", json!({"url": receiver.url("/")})).await;
    app.create_ok(&admin("wh-later"), "one").await;
    wait_until("the attempt is recorded", || async { !deliveries(&app, "wh-later", 1).await.is_empty() })
        .await;
    let attempt = deliveries(&app, "wh-later", 1).await.remove(0);
    let parse = |field: &str| {
        time::OffsetDateTime::parse(
            attempt[field].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    };
    let wait = parse("nextAttemptAt") - parse("attemptedAt");
    assert!(wait >= time::Duration::seconds(119), "retried after {wait}, not after Retry-After: 120");
    assert!(wait < time::Duration::seconds(130), "{wait}");
    assert_eq!(receiver.got().len(), 1, "not retried before then");
}

/// The deliveries' login is checked like the request role's: one that is (or can become)
/// a superuser, or could bypass row-level security, is refused at start.
#[tokio::test]
async fn a_delivery_login_that_could_bypass_rls_is_refused_at_start() {
    let database = crate::helpers::fresh_database().await;
    let pg = &crate::helpers::cluster().pg;
    let config = Config {
        database_url: Some(pg.url(pg_sandbox::postgres::SUPERUSER, &database)),
        api_database_url: Some(pg.url(tenantry::db::API_ROLE, &database)),
        port: 0,
        webhooks: tenantry::config::WebhookConfig {
            webhooks_database_url: Some(pg.url(pg_sandbox::postgres::SUPERUSER, &database)),
            ..Config::default().webhooks
        },
        ..Config::default()
    };
    let refused = tenantry::App::build(&config).await.err().expect("the start is refused").to_string();
    assert!(
        refused.starts_with("refusing to deliver webhooks:") && refused.contains("superuser"),
        "{refused}"
    );
}

/// Deleting an endpoint while an attempt is being recorded waits for it, never deadlocks
/// (the recording locks the queue row, then the endpoint through its foreign key; the
/// deletion used to take them the other way round: a 503 under load).
#[tokio::test]
async fn deleting_a_webhook_while_an_attempt_is_recorded_waits_and_never_deadlocks() {
    let app = spawn_app_with(Mode::ApiLogin, |config| config.webhooks.webhook_max_in_flight = 0).await;
    create_webhook(&app, "wh-del", json!({"url": "https://example.com/"})).await;
    // As a delivery records an attempt: the queue row first ...
    let sql = app.owner_sql().await;
    sql.batch_execute("begin; set local role tenantry_webhooks").await.unwrap();
    sql.batch_execute(&set_tenant_sql("wh-del", "tenantry-webhooks", "")).await.unwrap();
    sql.batch_execute("update app.webhook_queue set attempt = attempt where organization_id = 'wh-del'")
        .await
        .unwrap();
    let deletion = tokio::spawn({
        let request = app.request(Method::DELETE, "/api/webhooks/1", Some(&admin("wh-del")));
        async move { request.send().await.unwrap().status() }
    });
    crate::helpers::wait_for_lock_waiters(&app.owner_sql().await, &app.database, 1).await;
    // ... then the endpoint, through the foreign key of the attempt it inserts.
    sql.batch_execute(
        "insert into app.webhook_deliveries (organization_id, webhook_id, id, event_id, event_type, attempt, \
         out_of_band, attempted_at, duration_ms, succeeded) \
         values ('wh-del', 1, 1, 'msg_1_1', 'issue.created', 1, false, now(), 1, true)",
    )
    .await
    .expect("no deadlock");
    sql.batch_execute("commit").await.unwrap();
    assert_eq!(deletion.await.unwrap(), StatusCode::NO_CONTENT);
}
