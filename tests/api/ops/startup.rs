//! Start-up: the safety check on the request role, both ways of becoming the API role,
//! migrations, and what clients get while the database is away.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use pg_sandbox::postgres::{LocalPostgres, Options, SUPERUSER};
use reqwest::StatusCode;
use tenantry::{App, DatabaseSetup, StartupError, config::Config, db::RoleProblem};

use crate::helpers::*;

async fn build_with_request_login(role: &str) -> Result<App, StartupError> {
    let database = fresh_database().await;
    let pg = &cluster().pg;
    let config = Config {
        port: 0,
        database_url: Some(pg.url(SUPERUSER, &database)),
        api_database_url: Some(pg.url(role, &database)),
        ..Config::default()
    };
    App::build(&config).await
}

async fn create_role(statement: &str) {
    let admin = connect(&cluster().pg.url(SUPERUSER, "postgres")).await;
    // Roles are cluster-wide: another test run in this cluster may have made it.
    let _ = admin.batch_execute(statement).await;
}

#[tokio::test]
async fn it_refuses_to_serve_requests_as_a_superuser() {
    let err = build_with_request_login(SUPERUSER).await.err().expect("refused");
    assert!(matches!(err, StartupError::UnsafeRequestRole(RoleProblem::Superuser { .. })), "{err}");
}

#[tokio::test]
async fn it_refuses_a_request_role_that_bypasses_rls() {
    create_role("create role sneaky_bypass login bypassrls").await;
    let err = build_with_request_login("sneaky_bypass").await.err().expect("refused");
    assert!(matches!(err, StartupError::UnsafeRequestRole(RoleProblem::BypassesRls { .. })), "{err}");
}

#[tokio::test]
async fn it_refuses_a_request_role_that_could_act_as_a_table_owner() {
    create_role("create role table_keeper nologin").await;
    create_role("create role keeper_member login in role table_keeper").await;
    let database = fresh_database().await;
    let owner = connect(&cluster().pg.url(SUPERUSER, &database)).await;
    owner.batch_execute("alter table app.issues owner to table_keeper").await.unwrap();
    let pg = &cluster().pg;
    let config = Config {
        port: 0,
        database_url: Some(pg.url(SUPERUSER, &database)),
        api_database_url: Some(pg.url("keeper_member", &database)),
        ..Config::default()
    };
    let indexes: i64 = owner
        .query_one("select count(*) from pg_index where indrelid = 'app.issues'::regclass", &[])
        .await
        .unwrap()
        .get(0);
    let err = App::build(&config).await.err().expect("refused");
    // The table and its indexes.
    assert!(
        matches!(err, StartupError::UnsafeRequestRole(RoleProblem::OwnsObjects { count, .. }) if count == 1 + indexes),
        "{err}"
    );
}

#[tokio::test]
async fn with_only_a_superuser_url_requests_still_run_as_the_api_role_under_rls() {
    let app = spawn_app_with(Mode::SwitchRole, |_| {}).await;
    app.create_ok(&member("alpha"), "switched").await;
    assert_problem(app.get(&member("bravo"), "/api/issues/1").await, StatusCode::NOT_FOUND).await;
    assert!(app.list(&member("bravo")).await.is_empty());
    assert_eq!(app.list(&member("alpha")).await.len(), 1);
    assert_problem(app.delete(&member("alpha"), 1).await, StatusCode::FORBIDDEN).await;
    assert_eq!(tenantry::db::verify_request_role(&app.app_db).await.unwrap(), "tenantry_api");
}

#[tokio::test]
async fn migrations_apply_once() {
    let database = fresh_database().await;
    let config = Config { database_url: Some(cluster().pg.url(SUPERUSER, &database)), ..Config::default() };
    let setup = DatabaseSetup::prepare(&config).await.unwrap();
    assert!(setup.migrate().await.unwrap().is_empty(), "the template is migrated already");
    assert!(setup.migrate().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_database_is_down_requests_get_503_and_it_recovers_by_itself() {
    let dir = tempdir("outage");
    let options = Options { dir: dir.clone(), port: 0, ephemeral: true, ..Default::default() };
    let pg = tokio::task::block_in_place(|| LocalPostgres::start(&options)).unwrap();
    let options = Options { port: pg.port(), ..options };
    connect(&pg.url(SUPERUSER, "postgres")).await.batch_execute("create database outage").await.unwrap();
    let app = {
        let config = Config {
            port: 0,
            database_url: Some(pg.url(SUPERUSER, "outage")),
            api_database_url: Some(pg.url("tenantry_api", "outage")),
            pool_size: 4,
            ..Config::default()
        };
        App::build(&config).await.unwrap()
    };
    let address = format!("http://{}", app.addr());
    tokio::spawn(app.run_until(std::future::pending()));
    let client = reqwest::Client::new();
    let as_admin = |request: reqwest::RequestBuilder| {
        request.header("x-organization-id", "o").header("x-user-id", "u").header("x-user-role", "ADMIN")
    };
    let list = || as_admin(client.get(format!("{address}/api/issues"))).send();
    let create = |title: String| {
        as_admin(client.post(format!("{address}/api/issues")))
            .json(&serde_json::json!({"title": title, "description": "written across an outage"}))
            .send()
    };
    let ready = || client.get(format!("{address}/readyz")).send();
    assert_eq!(list().await.unwrap().status(), StatusCode::OK);
    assert_eq!(ready().await.unwrap().status(), StatusCode::OK);

    // A writer that keeps creating across the outage and remembers what it was told.
    let done = Arc::new(AtomicBool::new(false));
    let (created_so_far, refused_so_far) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let writer = {
        let (client, address, done) = (client.clone(), address.clone(), done.clone());
        let (created_so_far, refused_so_far) = (created_so_far.clone(), refused_so_far.clone());
        tokio::spawn(async move {
            let mut told = Vec::new();
            for n in 0.. {
                if done.load(Ordering::Relaxed) {
                    break;
                }
                let response = client
                    .post(format!("{address}/api/issues"))
                    .header("x-organization-id", "o")
                    .header("x-user-id", "w")
                    .header("x-user-role", "MEMBER")
                    .json(&serde_json::json!({"title": format!("w{n}"), "description": "d"}))
                    .send()
                    .await
                    .unwrap();
                match response.status() {
                    StatusCode::CREATED => created_so_far.fetch_add(1, Ordering::SeqCst),
                    StatusCode::SERVICE_UNAVAILABLE => refused_so_far.fetch_add(1, Ordering::SeqCst),
                    _ => 0,
                };
                told.push((format!("w{n}"), response.status()));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            told
        })
    };
    let created = || created_so_far.load(Ordering::SeqCst);
    wait_until("the writer was told 201 before the outage", || async { created() >= 1 }).await;

    tokio::task::block_in_place(|| drop(pg));
    for attempt in 0..3 {
        for (what, response) in [
            ("list", list().await.unwrap()),
            ("create", create(format!("during outage {attempt}")).await.unwrap()),
            ("ready", ready().await.unwrap()),
        ] {
            assert_eq!(response.headers()["retry-after"], "2", "{what}");
            let problem = assert_problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
            assert!(!problem["detail"].as_str().unwrap().contains("127.0.0.1"), "no internals: {problem}");
        }
    }
    let started = Instant::now();
    let response = create("timed".into()).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(2), "answered quickly: {:?}", started.elapsed());
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        as_admin(client.get(format!("{address}/healthz"))).send().await.unwrap().status(),
        StatusCode::OK
    );

    wait_until("the writer was told 503 during the outage", || async {
        refused_so_far.load(Ordering::SeqCst) > 0
    })
    .await;
    let pg = tokio::task::block_in_place(|| LocalPostgres::start(&options)).unwrap();
    // Reconnects back off during an outage (at most a few seconds apart): recovered
    // without a restart once one goes through.
    wait_until("the service to reach the database again", || async {
        list().await.unwrap().status() == StatusCode::OK
    })
    .await;
    assert_eq!(ready().await.unwrap().status(), StatusCode::OK);
    let before = created();
    wait_until("the writer was told 201 twice after the outage", || async { created() >= before + 2 }).await;
    done.store(true, Ordering::Relaxed);
    let told = writer.await.unwrap();

    // Nothing written during the outage, and every 201 the writer got is in the database.
    let sql = connect(&pg.url(SUPERUSER, "outage")).await;
    let stored: Vec<String> = first_column(&sql, "select title from app.issues", &[]).await;
    assert!(!stored.iter().any(|t| t.starts_with("during outage") || t == "timed"), "{stored:?}");
    let created: Vec<&String> =
        told.iter().filter(|(_, status)| *status == StatusCode::CREATED).map(|(title, _)| title).collect();
    for title in &created {
        assert!(stored.contains(title), "{title} was answered 201 but is not stored");
    }
    for (title, status) in &told {
        assert!([StatusCode::CREATED, StatusCode::SERVICE_UNAVAILABLE].contains(status), "{title}: {status}");
    }
    let unavailable = told.iter().filter(|(_, status)| *status == StatusCode::SERVICE_UNAVAILABLE).count();
    assert!(unavailable > 0 && created.len() > 2, "the writer saw both sides: {told:?}");
    drop(pg);
    let _ = std::fs::remove_dir_all(dir);
}

pub fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tenantry-test-{}", std::process::id())).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A login that is a member of tenantry_api and of something else could SET ROLE to that
/// something else: refused, naming it. A member of tenantry_api only is fine.
#[tokio::test]
async fn it_refuses_a_request_login_that_is_a_member_of_any_role_but_tenantry_api() {
    create_role("create role api_and_stats login in role tenantry_api, pg_read_all_stats").await;
    let err = build_with_request_login("api_and_stats").await.err().expect("refused");
    assert!(
        matches!(&err, StartupError::UnsafeRequestRole(RoleProblem::MemberOfOtherRoles { others, .. }) if others == "pg_read_all_stats"),
        "{err}"
    );
    create_role("create role api_only login in role tenantry_api").await;
    build_with_request_login("api_only").await.expect("a member of tenantry_api only may serve");
}

/// With DATABASE_URL alone, requests never log in as its (here: superuser) user.
#[tokio::test]
async fn with_only_database_url_requests_log_in_as_tenantry_api_not_as_the_owner() {
    let database = fresh_database().await;
    let config =
        Config { port: 0, database_url: Some(cluster().pg.url(SUPERUSER, &database)), ..Config::default() };
    let app = App::build(&config).await.expect("starts");
    let conn = app.database().pool().get().await.unwrap();
    let row = conn.query_one("select session_user::text, current_user::text", &[]).await.unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("tenantry_api".into(), "tenantry_api".into())
    );
}

/// Where tenantry_api cannot log in (here: a socket whose pg_hba.conf rejects it), the
/// service refuses to start, saying what to do; ALLOW_OWNER_REQUEST_LOGIN=1 accepts the
/// owner's login, switching role per transaction, for development.
#[tokio::test]
async fn when_the_api_login_fails_it_refuses_to_start_unless_the_owner_login_is_allowed() {
    let database = fresh_database().await;
    let config =
        Config { port: 0, database_url: cluster().pg.socket_url(SUPERUSER, &database), ..Config::default() };
    let err = App::build(&config).await.err().expect("refused");
    assert!(matches!(err, StartupError::ApiLogin { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("API_DATABASE_URL") && message.contains("ALLOW_OWNER_REQUEST_LOGIN=1"),
        "{message}"
    );

    let allowed = App::build(&Config { allow_owner_request_login: true, ..config }).await.expect("starts");
    let conn = allowed.database().pool().get().await.unwrap();
    let session: String = conn.query_one("select session_user::text", &[]).await.unwrap().get(0);
    assert_eq!(session, SUPERUSER);
    assert_eq!(tenantry::db::verify_request_role(allowed.database()).await.unwrap(), "tenantry_api");
}

/// AUTH_MODE=headers believes whatever the headers say: only on loopback, unless asked.
#[tokio::test]
async fn header_authentication_refuses_a_network_address_unless_allowed() {
    let database = fresh_database().await;
    let config = |host: &str, mode, allow| Config {
        port: 0,
        host: host.parse().unwrap(),
        auth_mode: mode,
        allow_header_auth_on_network: allow,
        database_url: Some(cluster().pg.url(SUPERUSER, &database)),
        jwt: tenantry::config::JwtConfig {
            jwt_secret: Some("a test secret that is long enough for HS256".into()),
            jwt_audience: Some("tenantry-api".into()),
            ..Default::default()
        },
        ..Config::default()
    };
    use tenantry::config::AuthMode::{Headers, Jwt};
    for host in ["0.0.0.0", "::", "192.0.2.1"] {
        let err = App::build(&config(host, Headers, false)).await.err().expect("refused");
        assert!(matches!(err, StartupError::HeaderAuthOnNetwork { .. }), "{host}: {err}");
        assert!(err.to_string().contains("ALLOW_HEADER_AUTH_ON_NETWORK=1"), "{err}");
    }
    for host in ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"] {
        App::build(&config(host, Headers, false)).await.unwrap_or_else(|e| panic!("{host}: {e}"));
    }
    App::build(&config("0.0.0.0", Headers, true)).await.expect("allowed");
    App::build(&config("0.0.0.0", Jwt, false)).await.expect("jwt needs no permission");
}
