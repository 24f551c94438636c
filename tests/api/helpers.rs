//! Test fixtures: a private PostgreSQL cluster for this test binary, a migrated template
//! database, and `spawn_app()` giving each test its own database and server.

use std::{
    str::FromStr,
    sync::{
        OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
};

use pg_sandbox::{
    pgbouncer::{self as local_pgbouncer, LocalPgBouncer},
    postgres::{LocalPostgres, Options, SUPERUSER},
};
use reqwest::{
    Method, RequestBuilder, Response, StatusCode,
    header::{HeaderName, HeaderValue},
};
use serde_json::Value;
use tenantry::{
    App,
    config::Config,
    db::{self, ContextMode, StatementMode},
};
use tokio::sync::oneshot;

use crate::http::conformance;

const TEMPLATE: &str = "tenantry_template";

pub struct TestCluster {
    pub pg: LocalPostgres,
}

/// The cluster shared by every test of this binary, started on first use. Its server
/// dies with the test process (see `local_postgres`); leftovers of earlier runs are
/// removed here.
pub fn cluster() -> &'static TestCluster {
    static CLUSTER: OnceLock<TestCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        // A thread of its own: this may be called from inside a runtime.
        std::thread::spawn(|| {
            remove_stale_test_dirs();
            let dir = std::env::temp_dir().join(format!("tenantry-test-{}", std::process::id()));
            let pg = LocalPostgres::start(&Options {
                dir,
                port: 0,
                ephemeral: true,
                socket_rejecting: Some(tenantry::db::API_ROLE.into()),
                ..Default::default()
            })
            .expect("starting the test PostgreSQL");
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(create_template(&pg));
            TestCluster { pg }
        })
        .join()
        .expect("the cluster starts")
    })
}

fn remove_stale_test_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("tenantry-test-")) else {
            continue;
        };
        if !std::path::Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

async fn create_template(pg: &LocalPostgres) {
    let admin = connect(&pg.url(SUPERUSER, "postgres")).await;
    admin.batch_execute(&format!("create database {TEMPLATE}")).await.unwrap();
    let mut owner = connect(&pg.url(SUPERUSER, TEMPLATE)).await;
    db::migrate::run(&mut owner).await.expect("migrations apply");
    if citus_policies() {
        owner.batch_execute("select app.use_policies_without_subqueries()").await.unwrap();
    }
}

/// `TEST_CITUS_POLICIES=1`: every test database has the policies Citus accepts (no
/// sub-queries, see migration 5), as the coordinator of a Citus cluster would.
pub fn citus_policies() -> bool {
    std::env::var_os("TEST_CITUS_POLICIES").is_some_and(|v| v == "1")
}

pub async fn connect(url: &str) -> tokio_postgres::Client {
    let config = tokio_postgres::Config::from_str(url).unwrap();
    db::connect_owner(&config).await.unwrap_or_else(|e| panic!("connecting to {url}: {e}"))
}

/// A fresh database copied from the migrated template.
pub async fn fresh_database() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let name = format!("test_{}", NEXT.fetch_add(1, Ordering::SeqCst));
    let admin = connect(&cluster().pg.url(SUPERUSER, "postgres")).await;
    admin
        .batch_execute(&format!("create database {name} template {TEMPLATE} strategy file_copy"))
        .await
        .unwrap();
    name
}

/// How the app under test reaches PostgreSQL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Requests log in as tenantry_api (production's API_DATABASE_URL).
    ApiLogin,
    /// Only DATABASE_URL (a superuser), on a socket where tenantry_api may not log in, and
    /// ALLOW_OWNER_REQUEST_LOGIN=1: requests switch role per transaction.
    SwitchRole,
}

pub struct TestApp {
    pub address: String,
    pub database: String,
    pub client: reqwest::Client,
    pub app_db: tenantry::db::Database,
    /// The PgBouncer requests go through, if any (see [`spawn_app_via`]).
    pub pgbouncer: Option<LocalPgBouncer>,
    _shutdown: oneshot::Sender<()>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Mode::ApiLogin, |_| {}).await
}

/// How the apps under test set the tenant: `DATABASE_CONTEXT=set_local cargo test` runs
/// the whole suite with SET LOCAL (CI runs it both ways). Binaries the tests start read
/// the same variable themselves.
pub fn context_mode() -> ContextMode {
    match std::env::var("DATABASE_CONTEXT") {
        Ok(value) => clap::ValueEnum::from_str(&value, false)
            .unwrap_or_else(|e| panic!("DATABASE_CONTEXT={value}: {e}")),
        Err(_) => ContextMode::default(),
    }
}

pub async fn spawn_app_with(mode: Mode, adjust: impl FnOnce(&mut Config)) -> TestApp {
    let database = fresh_database().await;
    spawn_app_on(&database, mode, adjust).await
}

/// An app on an existing database (several instances may share one).
pub async fn spawn_app_on(database: &str, mode: Mode, adjust: impl FnOnce(&mut Config)) -> TestApp {
    let database = database.to_owned();
    let pg = &cluster().pg;
    let mut config = match mode {
        Mode::ApiLogin => Config {
            database_url: Some(pg.url(SUPERUSER, &database)),
            api_database_url: Some(pg.url(db::API_ROLE, &database)),
            ..Config::default()
        },
        Mode::SwitchRole => Config {
            database_url: pg.socket_url(SUPERUSER, &database),
            allow_owner_request_login: true,
            ..Config::default()
        },
    };
    config.port = 0;
    config.pool_size = 8;
    config.context = context_mode();
    // Most tests load one or two organizations with concurrent requests on purpose (row
    // locks, races): no fair share there. The hostile suite sets it back (None: default).
    config.org_max_transactions = Some(1000);
    adjust(&mut config);
    let app = App::build(&config).await.expect("the app starts");
    let address = format!("http://{}", app.addr());
    let app_db = app.database().clone();
    let (shutdown, stopped) = oneshot::channel::<()>();
    tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    TestApp {
        address,
        database,
        client: reqwest::Client::new(),
        app_db,
        pgbouncer: None,
        _shutdown: shutdown,
    }
}

/// How requests reach PostgreSQL: straight, or through PgBouncer in transaction mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Direct,
    PgBouncer,
}

/// A PgBouncer (transaction mode, `pool_size` server connections) in front of the test
/// cluster, or `None` when it is not installed and REQUIRE_PGBOUNCER=1 (CI) is not set.
pub fn start_pgbouncer(name: &str, pool_size: u32) -> Option<LocalPgBouncer> {
    if local_pgbouncer::find_binary().is_none() {
        let message = "pgbouncer is not installed (apt-get install -y pgbouncer): skipping";
        assert!(
            std::env::var_os("REQUIRE_PGBOUNCER").is_none_or(|v| v != "1"),
            "REQUIRE_PGBOUNCER=1 but {message}"
        );
        eprintln!("{message}");
        return None;
    }
    let options = local_pgbouncer::Options {
        dir: crate::ops::startup::tempdir(&format!("pgbouncer-{name}")),
        pool_size,
        max_clients: 1000,
        users: vec![db::API_ROLE.into()],
    };
    Some(LocalPgBouncer::start(&cluster().pg, &options).expect("PgBouncer starts"))
}

/// Transactions PgBouncer has passed on to the app's database so far (its `show stats`).
pub async fn pgbouncer_transactions(app: &TestApp) -> i64 {
    let bouncer = app.pgbouncer.as_ref().expect("the app goes through PgBouncer");
    // The admin console speaks the simple query protocol only.
    let admin = connect(&bouncer.admin_url()).await;
    let messages = admin.simple_query("show stats").await.unwrap();
    messages
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row)
                if row.get("database") == Some(app.database.as_str()) =>
            {
                row.get("total_xact_count")?.parse().ok()
            }
            _ => None,
        })
        .unwrap_or(0)
}

/// The statement mode a PgBouncer of this version needs (see `local_pgbouncer`).
pub fn statements_for_pgbouncer() -> StatementMode {
    match local_pgbouncer::version() {
        Some(version) if local_pgbouncer::supports_prepared_statements(version) => StatementMode::Prepared,
        _ => StatementMode::Unnamed,
    }
}

/// An app whose requests take `route`; through PgBouncer, its pool of 8 shares 2 server
/// connections, so consecutive transactions of one pooled connection land on different
/// server connections and each server connection serves many. `None`: PgBouncer missing
/// (the test is skipped, see [`start_pgbouncer`]).
pub async fn spawn_app_via(route: Route, name: &str) -> Option<TestApp> {
    match route {
        Route::Direct => Some(spawn_app().await),
        Route::PgBouncer => {
            let bouncer = start_pgbouncer(name, 2)?;
            let database = fresh_database().await;
            let url = bouncer.url(db::API_ROLE, &database);
            let mut app = spawn_app_on(&database, Mode::ApiLogin, |config| {
                config.api_database_url = Some(url);
                config.statements = statements_for_pgbouncer();
            })
            .await;
            app.pgbouncer = Some(bouncer);
            Some(app)
        }
    }
}

/// Who makes a request.
#[derive(Clone, Debug)]
pub struct Actor {
    pub org: String,
    pub user: String,
    pub role: &'static str,
}

pub fn admin(org: &str) -> Actor {
    Actor { org: org.into(), user: format!("admin-of-{org}"), role: "ADMIN" }
}

pub fn member(org: &str) -> Actor {
    Actor { org: org.into(), user: format!("member-of-{org}"), role: "MEMBER" }
}

/// A request to the app under test whose response is checked against the committed
/// OpenAPI document (see `conformance`): an undocumented status, content type, body or
/// missing header fails the test that received it. Builds like reqwest's `RequestBuilder`.
pub struct TestRequest {
    builder: RequestBuilder,
}

impl TestRequest {
    pub fn header<K, V>(self, key: K, value: V) -> Self
    where
        HeaderName: TryFrom<K>,
        <HeaderName as TryFrom<K>>::Error: Into<http::Error>,
        HeaderValue: TryFrom<V>,
        <HeaderValue as TryFrom<V>>::Error: Into<http::Error>,
    {
        TestRequest { builder: self.builder.header(key, value) }
    }

    pub fn json<T: serde::Serialize + ?Sized>(self, json: &T) -> Self {
        TestRequest { builder: self.builder.json(json) }
    }

    pub fn body<T: Into<reqwest::Body>>(self, body: T) -> Self {
        TestRequest { builder: self.builder.body(body) }
    }

    // The rest of RequestBuilder's surface that tests reach for (not all used yet).
    #[allow(dead_code)]
    pub fn query<T: serde::Serialize + ?Sized>(self, query: &T) -> Self {
        TestRequest { builder: self.builder.query(query) }
    }

    #[allow(dead_code)]
    pub fn headers(self, headers: reqwest::header::HeaderMap) -> Self {
        TestRequest { builder: self.builder.headers(headers) }
    }

    #[allow(dead_code)]
    pub fn bearer_auth<T: std::fmt::Display>(self, token: T) -> Self {
        TestRequest { builder: self.builder.bearer_auth(token) }
    }

    #[allow(dead_code)]
    pub fn timeout(self, timeout: std::time::Duration) -> Self {
        TestRequest { builder: self.builder.timeout(timeout) }
    }

    /// Sends the request, reads the whole response, checks it against the document
    /// (panicking with every difference), and hands it back unread.
    pub async fn send(self) -> reqwest::Result<Response> {
        let (client, request) = self.builder.build_split();
        let request = request?;
        let (method, path) = (request.method().clone(), request.url().path().to_owned());
        let response = client.execute(request).await?;
        let (status, version, headers) = (response.status(), response.version(), response.headers().clone());
        let body = response.bytes().await?;
        if let Err(problems) = conformance::check_response(&method, &path, status, &headers, &body) {
            panic!(
                "the response to {method} {path} does not match openapi/openapi.json:\n  {}",
                problems.join("\n  ")
            );
        }
        let mut rebuilt = http::Response::new(body);
        *rebuilt.status_mut() = status;
        *rebuilt.version_mut() = version;
        *rebuilt.headers_mut() = headers;
        Ok(Response::from(rebuilt))
    }
}

impl TestApp {
    /// A request with the actor's identity headers (none for `None`); its response is
    /// checked against the OpenAPI document.
    pub fn request(&self, method: Method, path: &str, actor: Option<&Actor>) -> TestRequest {
        let mut request = self.client.request(method, format!("{}{path}", self.address));
        if let Some(actor) = actor {
            request = request
                .header("x-organization-id", &actor.org)
                .header("x-user-id", &actor.user)
                .header("x-user-role", actor.role);
        }
        TestRequest { builder: request }
    }

    pub async fn create(&self, actor: &Actor, body: Value) -> Response {
        self.request(Method::POST, "/api/issues", Some(actor)).json(&body).send().await.unwrap()
    }

    /// Creates an issue and returns its JSON, failing the test unless it was a 201.
    pub async fn create_ok(&self, actor: &Actor, title: &str) -> Value {
        let response = self
            .create(actor, serde_json::json!({"title": title, "description": format!("about {title}")}))
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json().await.unwrap()
    }

    pub async fn get(&self, actor: &Actor, path: &str) -> Response {
        self.request(Method::GET, path, Some(actor)).send().await.unwrap()
    }

    pub async fn patch(&self, actor: &Actor, id: i64, body: Value) -> Response {
        self.request(Method::PATCH, &format!("/api/issues/{id}"), Some(actor))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn delete(&self, actor: &Actor, id: i64) -> Response {
        self.request(Method::DELETE, &format!("/api/issues/{id}"), Some(actor)).send().await.unwrap()
    }

    pub async fn list(&self, actor: &Actor) -> Vec<Value> {
        let response = self.get(actor, "/api/issues").await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    /// A connection as the superuser that owns the schema (bypasses RLS: for setting up
    /// and inspecting only).
    pub async fn owner_sql(&self) -> tokio_postgres::Client {
        connect(&cluster().pg.url(SUPERUSER, &self.database)).await
    }

    /// A connection as the API role, exactly what requests run as.
    pub async fn api_role_sql(&self) -> tokio_postgres::Client {
        connect(&cluster().pg.url(db::API_ROLE, &self.database)).await
    }
}

/// Asserts a problem+json response with `status`, and returns its body.
pub async fn assert_problem(response: Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status, "unexpected status");
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "about:blank");
    assert_eq!(body["status"], status.as_u16());
    assert_eq!(body["title"], status.canonical_reason().unwrap());
    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()), "a detail: {body}");
    body
}

/// The `field`s named in a problem's `errors`, in order.
pub fn error_fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("an errors list in {problem}"))
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect()
}

/// The SQLSTATE of a failed statement.
pub fn sqlstate(err: &tokio_postgres::Error) -> String {
    err.as_db_error().map(|e| e.code().code().to_owned()).unwrap_or_else(|| format!("not a db error: {err}"))
}

/// `select set_config(...)` for a tenant, as a request does (transaction-local).
pub fn set_tenant_sql(org: &str, user: &str, role: &str) -> String {
    tenant_settings_sql(org, user, role, true)
}

/// As [`set_tenant_sql`], for the whole session (a psql user's `set`, not `set local`).
pub fn set_session_tenant_sql(org: &str, user: &str, role: &str) -> String {
    tenant_settings_sql(org, user, role, false)
}

fn tenant_settings_sql(org: &str, user: &str, role: &str, transaction_local: bool) -> String {
    format!(
        "select set_config('app.org_id', '{org}', {transaction_local}), \
         set_config('app.user_id', '{user}', {transaction_local}), \
         set_config('app.role', '{role}', {transaction_local})"
    )
}

/// Waits (up to 20 s) until `condition` holds, checking it again and again: a wait for
/// an event another process causes, not for a time.
pub async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !condition().await {
        assert!(std::time::Instant::now() < deadline, "waited 20 s for: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Waits (up to 20 s) until `n` request transactions of `database` wait for a lock,
/// i.e. they are all inside PostgreSQL, queued behind a lock the test holds.
pub async fn wait_for_lock_waiters(sql: &tokio_postgres::Client, database: &str, n: i64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let waiting: i64 = sql
            .query_one(
                "select count(*) from pg_stat_activity
                  where datname = $1 and usename = 'tenantry_api' and wait_event_type = 'Lock'",
                &[&database],
            )
            .await
            .unwrap()
            .get(0);
        if waiting >= n {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "only {waiting} of {n} requests reached the lock");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The number of rows of `sql` (a `select count(*) ...`), read as the owner.
/// The first column of every row `query` returns (as the client's role).
pub async fn first_column<T>(
    sql: &impl tokio_postgres::GenericClient,
    query: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Vec<T>
where
    T: for<'a> tokio_postgres::types::FromSql<'a>,
{
    sql.query(query, params)
        .await
        .unwrap_or_else(|e| panic!("{query}: {e}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

pub async fn count(app: &TestApp, sql: &str) -> i64 {
    app.owner_sql().await.query_one(sql, &[]).await.unwrap().get(0)
}

/// One page of a list: its items, and the URL of the next page from its `Link` header.
pub struct PageOf {
    pub items: Vec<Value>,
    pub next: Option<String>,
}

/// The target of a response's `Link: <...>; rel="next"`, checking the header's form.
pub fn next_link(response: &Response) -> Option<String> {
    let values: Vec<_> = response.headers().get_all("link").iter().collect();
    assert!(values.len() <= 1, "at most one Link header");
    let value = values.first()?.to_str().unwrap();
    let target = value
        .strip_prefix('<')
        .and_then(|rest| rest.strip_suffix(">; rel=\"next\""))
        .unwrap_or_else(|| panic!("an RFC 8288 next link: {value}"));
    Some(target.to_owned())
}

/// The `id`s of a list of issues or activity entries, in order.
pub fn ids(items: &[Value]) -> Vec<i64> {
    items.iter().map(|item| item["id"].as_i64().unwrap()).collect()
}

impl TestApp {
    /// GETs one page of a list, failing the test unless it was a 200.
    pub async fn page(&self, actor: &Actor, path: &str) -> PageOf {
        let response = self.get(actor, path).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        let next = next_link(&response);
        PageOf { items: response.json().await.unwrap(), next }
    }

    /// Follows the `Link` headers from `path` to the last page; returns every page.
    pub async fn walk(&self, actor: &Actor, path: &str) -> Vec<Vec<Value>> {
        let mut pages = Vec::new();
        let mut next = Some(path.to_owned());
        while let Some(path) = next {
            let page = self.page(actor, &path).await;
            assert!(!page.items.is_empty() || pages.is_empty(), "a Link never leads to an empty page");
            pages.push(page.items);
            next = page.next;
            assert!(pages.len() < 1000, "the walk ends");
        }
        pages
    }

    pub async fn restore(&self, actor: &Actor, id: i64) -> Response {
        self.request(Method::POST, &format!("/api/issues/{id}/restore"), Some(actor)).send().await.unwrap()
    }

    /// Inserts `count` issues numbered from 1 straight into the table as the owner (fast;
    /// no activity entries): "Issue n", created one minute apart, the newest now.
    pub async fn insert_issues(&self, org: &str, count: i64) {
        self.owner_sql()
            .await
            .execute(
                "with made as (
                   insert into app.issues (organization_id, id, title, description, created_by, created_at, updated_at)
                   select $1, n, 'Issue ' || n, 'About issue ' || n, 'seeder',
                          now() - ($2::bigint - n) * interval '1 minute', now() - ($2::bigint - n) * interval '1 minute'
                   from generate_series(1, $2::bigint) n
                   returning id)
                 insert into app.organization_counters (organization_id, last_issue_id)
                 select $1, max(id) from made",
                &[&org, &count],
            )
            .await
            .unwrap();
    }
}
