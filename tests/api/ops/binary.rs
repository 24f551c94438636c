//! The README's serve command, for real: the binary with no DATABASE_URL starts its own
//! PostgreSQL, says how to psql into it, serves, stops it on SIGTERM, and finds its data
//! again on the next start.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::ops::startup::tempdir;

struct Served {
    child: Child,
    address: String,
    psql_url: String,
    lines: mpsc::Receiver<String>,
}

/// The child's stderr, a line at a time, read by a thread of its own; the channel ends
/// (disconnects) when the child's stderr reaches end of file.
pub fn stderr_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, lines) = mpsc::channel();
    let stderr = child.stderr.take().expect("stderr is piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    lines
}

fn serve(dir: &std::path::Path) -> Served {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .env_remove("DATABASE_URL")
        .env_remove("API_DATABASE_URL")
        .env("PORT", "0")
        .env("LOCAL_PG_DIR", dir)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = stderr_lines(&mut child);
    let (mut address, mut psql_url) = (None, None);
    while address.is_none() {
        let line = lines.recv_timeout(Duration::from_secs(60)).expect("the server starts and says so");
        if let Some(rest) = line.split("inspect it with: psql ").nth(1) {
            psql_url = Some(rest.split_whitespace().next().unwrap().to_owned());
        }
        if let Some(rest) = line.split("serving ").nth(1) {
            address = Some(rest.split("/api").next().unwrap().to_owned());
        }
    }
    Served { child, address: address.unwrap(), psql_url: psql_url.expect("a psql command"), lines }
}

impl Served {
    fn stop(mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        assert!(status.success(), "a clean exit on SIGTERM: {status}");
        let rest = until_end_of_file(&self.lines);
        assert!(rest.iter().any(|l| l.contains("stopped")), "{rest:?}");
    }
}

/// Every line the child wrote after those already received, once its output reached end of
/// file (the reader thread then drops its sender). Reading only what has arrived so far
/// (`try_iter`) races the reader thread: right after the child exits, its last lines may
/// still be in the pipe.
fn until_end_of_file<T>(lines: &mpsc::Receiver<T>) -> Vec<T> {
    let mut rest = Vec::new();
    loop {
        match lines.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => rest.push(line),
            Err(mpsc::RecvTimeoutError::Disconnected) => return rest,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("the child's output never ended: {}", rest.len()),
        }
    }
}

fn psql(url: &str, sql: &str) -> String {
    let output = Command::new("psql").args([url, "-qXAtc", sql]).output().expect("psql is installed");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[tokio::test]
async fn the_binary_runs_its_own_postgres_keeps_its_data_and_stops_it() {
    let dir = tempdir("binary");
    let client = reqwest::Client::new();
    let headers = |r: reqwest::RequestBuilder| {
        r.header("x-organization-id", "acme").header("x-user-id", "ann").header("x-user-role", "ADMIN")
    };

    let first = serve(&dir);
    let created = headers(client.post(format!("{}/api/issues", first.address)))
        .json(&json!({"title": "Persisted", "description": "across restarts"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    // The printed psql command works, and shows what RLS hides from the API role.
    assert_eq!(psql(&first.psql_url, "select title from app.issues"), "Persisted");
    assert_eq!(psql(&first.psql_url, "set role tenantry_api; select count(*) from app.issues"), "0");
    let first_psql_url = first.psql_url.clone();
    first.stop();
    let pid_file = dir.join("pgdata/postmaster.pid");
    assert!(!pid_file.exists(), "PostgreSQL stopped with the server");

    let second = serve(&dir);
    assert_eq!(
        second.psql_url, first_psql_url,
        "the private cluster keeps its port, so yesterday's psql URL works"
    );
    let list = || async {
        let listed: Vec<Value> = headers(client.get(format!("{}/api/issues", second.address)))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        listed
    };
    let listed = list().await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["title"], "Persisted");

    // `tenantry reset --yes` next to the running server: it uses the running cluster.
    let reset = Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .args(["reset", "--yes"])
        .env_remove("DATABASE_URL")
        .env_remove("API_DATABASE_URL")
        .env("LOCAL_PG_DIR", &dir)
        .output()
        .unwrap();
    assert!(reset.status.success(), "{}", String::from_utf8_lossy(&reset.stderr));
    assert!(String::from_utf8_lossy(&reset.stdout).starts_with("reset: "));
    assert!(list().await.is_empty(), "the running server sees the reset");
    // `tenantry psql` opens the same cluster, as the owner.
    let psql = Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .args(["psql", "--", "-XAtc", "select current_user, current_setting('port')"])
        .env_remove("DATABASE_URL")
        .env("LOCAL_PG_DIR", &dir)
        .output()
        .unwrap();
    assert!(psql.status.success(), "{}", String::from_utf8_lossy(&psql.stderr));
    let port = first_psql_url.rsplit(':').next().unwrap().split('/').next().unwrap();
    assert_eq!(String::from_utf8_lossy(&psql.stdout).trim(), format!("postgres|{port}"));
    second.stop();
    let _ = std::fs::remove_dir_all(dir);
}

/// The binary against the test cluster (DATABASE_URL mode), logging JSON.
fn serve_json_logs(database: &str, shutdown_timeout_seconds: u32) -> (Child, String, mpsc::Receiver<Value>) {
    let (child, address, lines, _) = serve_json_logs_with(database, shutdown_timeout_seconds, &[]);
    (child, address, lines)
}

pub(crate) fn serve_json_logs_with(
    database: &str,
    shutdown_timeout_seconds: u32,
    env: &[(&str, &str)],
) -> (Child, String, mpsc::Receiver<Value>, Vec<Value>) {
    let pg = &crate::helpers::cluster().pg;
    let mut child = Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .env_remove("TOKIO_WORKER_THREADS")
        .envs(env.iter().copied())
        .env("DATABASE_URL", pg.url(pg_sandbox::postgres::SUPERUSER, database))
        .env("API_DATABASE_URL", pg.url(tenantry::db::API_ROLE, database))
        .env("PORT", "0")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .env("SHUTDOWN_TIMEOUT_SECONDS", shutdown_timeout_seconds.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, lines) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            // A line that is not JSON stays a string, and fails the check below.
            let parsed: Value = serde_json::from_str(&line).unwrap_or(Value::String(line));
            let _ = tx.send(parsed);
        }
    });
    let mut start = Vec::new();
    loop {
        let Ok(line) = lines.recv_timeout(Duration::from_secs(60)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server did not say it was serving: {start:?}");
        };
        let serving = line["fields"]["message"].as_str().and_then(|m| m.strip_prefix("serving "));
        if let Some(rest) = serving {
            let address = rest.split("/api").next().unwrap().to_owned();
            start.push(line);
            return (child, address, lines, start);
        }
        start.push(line);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sigterm_it_stops_accepting_finishes_requests_in_flight_and_closes_the_pool() {
    let database = crate::helpers::fresh_database().await;
    let (mut child, address, lines) = serve_json_logs(&database, 20);
    let client = reqwest::Client::new();
    let admin = |r: reqwest::RequestBuilder| {
        r.header("x-organization-id", "acme").header("x-user-id", "ann").header("x-user-role", "ADMIN")
    };
    let created = admin(client.post(format!("{address}/api/issues")))
        .header("x-request-id", "trace-create-1")
        .json(&json!({"title": "in flight", "description": "d"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);

    // A PATCH held inside PostgreSQL behind a row lock: in flight when SIGTERM comes.
    let pg = &crate::helpers::cluster().pg;
    let mut owner = crate::helpers::connect(&pg.url(pg_sandbox::postgres::SUPERUSER, &database)).await;
    let blocker = owner.transaction().await.unwrap();
    blocker.execute("select 1 from app.issues where id = 1 for update", &[]).await.unwrap();
    let in_flight = tokio::spawn(
        admin(reqwest::Client::new().patch(format!("{address}/api/issues/1")))
            .header("x-request-id", "trace-in-flight")
            .json(&json!({"status": "DONE"}))
            .send(),
    );
    let watcher = crate::helpers::connect(&pg.url(pg_sandbox::postgres::SUPERUSER, "postgres")).await;
    crate::helpers::wait_for_lock_waiters(&watcher, &database, 1).await;

    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    // It stops accepting at once...
    crate::helpers::wait_until("new connections are refused after SIGTERM", || async {
        reqwest::Client::new().get(format!("{address}/healthz")).send().await.is_err()
    })
    .await;
    assert!(child.try_wait().unwrap().is_none(), "still finishing the request in flight");
    // ... and finishes what it started.
    blocker.rollback().await.unwrap();
    let finished = in_flight.await.unwrap().unwrap();
    assert_eq!(finished.status(), StatusCode::OK);
    assert_eq!(finished.headers()["x-request-id"], "trace-in-flight");
    let status = tokio::task::block_in_place(|| child.wait()).unwrap();
    assert!(status.success(), "a clean exit: {status}");

    let logs = until_end_of_file(&lines);
    assert!(logs.iter().all(Value::is_object), "every line is JSON: {logs:?}");
    let message = |line: &Value| line["fields"]["message"].as_str().unwrap_or_default().to_owned();
    // Every request line carries its id.
    let request_lines: Vec<&Value> = logs.iter().filter(|l| message(l) == "request").collect();
    for (id, status) in [("trace-create-1", 201), ("trace-in-flight", 200)] {
        let line = request_lines
            .iter()
            .find(|l| l["fields"]["request_id"] == id)
            .unwrap_or_else(|| panic!("no request line for {id} in {request_lines:?}"));
        assert_eq!(line["fields"]["status"], status);
        assert_eq!(line["fields"]["organization"], "acme");
    }
    let order: Vec<String> = logs.iter().map(message).collect();
    let position =
        |text: &str| order.iter().position(|m| m == text).unwrap_or_else(|| panic!("{text}: {order:?}"));
    assert!(position("request pool closed") < position("stopped"), "{order:?}");

    // The pool's connections are gone from the server (ours too, now).
    drop(owner);
    crate::helpers::wait_until("no connection of the pool is left on the server", || async {
        let left: i64 = watcher
            .query_one(
                "select count(*) from pg_stat_activity where datname = $1 and application_name = 'tenantry'",
                &[&database],
            )
            .await
            .unwrap()
            .get(0);
        left == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sigint_a_request_stuck_past_the_shutdown_deadline_does_not_keep_it_running() {
    let database = crate::helpers::fresh_database().await;
    let (mut child, address, lines) = serve_json_logs(&database, 1);
    let admin = |r: reqwest::RequestBuilder| {
        r.header("x-organization-id", "acme").header("x-user-id", "ann").header("x-user-role", "ADMIN")
    };
    let client = reqwest::Client::new();
    let created = admin(client.post(format!("{address}/api/issues")))
        .json(&json!({"title": "stuck", "description": "d"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let pg = &crate::helpers::cluster().pg;
    let mut owner = crate::helpers::connect(&pg.url(pg_sandbox::postgres::SUPERUSER, &database)).await;
    let blocker = owner.transaction().await.unwrap();
    blocker.execute("select 1 from app.issues where id = 1 for update", &[]).await.unwrap();
    let stuck = tokio::spawn(admin(client.delete(format!("{address}/api/issues/1"))).send());
    let watcher = crate::helpers::connect(&pg.url(pg_sandbox::postgres::SUPERUSER, "postgres")).await;
    crate::helpers::wait_for_lock_waiters(&watcher, &database, 1).await;

    let signalled = std::time::Instant::now();
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = tokio::task::block_in_place(|| child.wait()).unwrap();
    assert!(status.success(), "{status}");
    assert!(
        signalled.elapsed() < Duration::from_secs(10),
        "the 1 s deadline held: {:?}",
        signalled.elapsed()
    );
    // The stuck client got no answer at all, certainly not a success.
    let answer = stuck.await.unwrap();
    assert!(answer.is_err(), "{answer:?}");
    blocker.rollback().await.unwrap();
    let logs = until_end_of_file(&lines);
    assert!(logs.iter().any(|l| l["fields"]["message"] == "stopped"), "{logs:?}");
}

/// The log is buffered (src/logging.rs): request lines still show up within moments while
/// the service runs, and the cause of a 503 goes out at once, with the request's id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_lines_arrive_while_it_runs_and_a_503_cause_is_logged_with_the_request_id() {
    let database = crate::helpers::fresh_database().await;
    let (mut child, address, lines, _) =
        serve_json_logs_with(&database, 5, &[("DATABASE_STATEMENT_TIMEOUT_MS", "300")]);
    let admin = |r: reqwest::RequestBuilder| {
        r.header("x-organization-id", "acme").header("x-user-id", "ann").header("x-user-role", "ADMIN")
    };
    let client = reqwest::Client::new();
    let created = admin(client.post(format!("{address}/api/issues")))
        .header("x-request-id", "trace-logged-create")
        .json(&json!({"title": "logged", "description": "d"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let next_line = |what: &str| loop {
        let line = lines
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| panic!("no {what} in the log within 5 s while the service runs"));
        if line["fields"]["request_id"].is_string() {
            return line;
        }
    };
    let line = tokio::task::block_in_place(|| next_line("request line"));
    assert_eq!(line["fields"]["message"], "request");
    assert_eq!(line["fields"]["request_id"], "trace-logged-create");
    assert_eq!(line["fields"]["status"], 201);

    // A PATCH behind a row lock, past DATABASE_STATEMENT_TIMEOUT_MS: 503.
    let pg = &crate::helpers::cluster().pg;
    let mut owner = crate::helpers::connect(&pg.url(pg_sandbox::postgres::SUPERUSER, &database)).await;
    let blocker = owner.transaction().await.unwrap();
    blocker.execute("select 1 from app.issues where id = 1 for update", &[]).await.unwrap();
    let patched = admin(client.patch(format!("{address}/api/issues/1")))
        .header("x-request-id", "trace-timed-out")
        .json(&json!({"status": "DONE"}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), StatusCode::SERVICE_UNAVAILABLE);
    blocker.rollback().await.unwrap();
    let cause = tokio::task::block_in_place(|| next_line("503 cause"));
    assert_eq!(cause["level"], "WARN", "{cause}");
    assert_eq!(cause["fields"]["message"], "database unavailable", "{cause}");
    assert_eq!(cause["fields"]["request_id"], "trace-timed-out", "{cause}");
    assert!(
        cause["fields"]["error"].as_str().unwrap_or_default().contains("statement timeout"),
        "the whole cause chain, PostgreSQL's message included: {cause}"
    );
    let line = tokio::task::block_in_place(|| next_line("request line of the 503"));
    assert_eq!(line["fields"]["request_id"], "trace-timed-out");
    assert_eq!(line["fields"]["status"], 503);

    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = tokio::task::block_in_place(|| child.wait()).unwrap();
    assert!(status.success(), "{status}");
}

/// The log's three promises (src/logging.rs), checked on the real binary: a request line
/// shows up within moments (at most the flush interval, 100 ms, plus scheduling; the bound
/// asserted is looser for a loaded machine, the delays are printed), a warning comes out
/// after every line logged before it, and a clean exit (SIGTERM) right after a burst of
/// 1,000 requests writes every one of their lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_lines_wait_moments_a_warning_follows_the_lines_before_it_and_a_clean_exit_writes_them_all() {
    use futures::StreamExt;
    let database = crate::helpers::fresh_database().await;
    // The burst is far above one user's rate limit: lifted, as bench/run does.
    let env = [
        ("DATABASE_STATEMENT_TIMEOUT_MS", "300"),
        ("RATE_LIMIT_ORG_PER_SECOND", "1000000"),
        ("RATE_LIMIT_ORG_BURST", "1000000"),
        ("RATE_LIMIT_USER_PER_SECOND", "1000000"),
        ("RATE_LIMIT_USER_BURST", "1000000"),
    ];
    let (mut child, address, lines, _) = serve_json_logs_with(&database, 5, &env);
    let admin = |r: reqwest::RequestBuilder| {
        r.header("x-organization-id", "acme").header("x-user-id", "ann").header("x-user-role", "ADMIN")
    };
    let client = reqwest::Client::new();
    let created = admin(client.post(format!("{address}/api/issues")))
        .json(&json!({"title": "logged", "description": "d"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let line_of = |id: &str| loop {
        let line = lines.recv_timeout(Duration::from_secs(5)).expect("a line within 5 s");
        if line["fields"]["request_id"] == id {
            return line;
        }
    };

    // 1. How long a request line waits: from its response to the line, read here.
    let mut delays = Vec::new();
    for n in 0..20 {
        let id = format!("delay-{n}");
        let answered = admin(client.get(format!("{address}/api/issues/1"))).header("x-request-id", &id);
        assert_eq!(answered.send().await.unwrap().status(), StatusCode::OK);
        let sent = std::time::Instant::now();
        tokio::task::block_in_place(|| line_of(&id));
        delays.push(sent.elapsed());
    }
    delays.sort();
    eprintln!("request line delays: {delays:?}");
    assert!(delays[delays.len() / 2] < Duration::from_millis(300), "median: {delays:?}");
    assert!(delays[delays.len() - 1] < Duration::from_secs(2), "{delays:?}");

    // 2. A request line, then at once a warning (a 503's cause): the line comes first.
    let pg = &crate::helpers::cluster().pg;
    let mut owner = crate::helpers::connect(&pg.url(pg_sandbox::postgres::SUPERUSER, &database)).await;
    let blocker = owner.transaction().await.unwrap();
    blocker.execute("select 1 from app.issues where id = 1 for update", &[]).await.unwrap();
    let before = admin(client.get(format!("{address}/api/issues"))).header("x-request-id", "before-warning");
    assert_eq!(before.send().await.unwrap().status(), StatusCode::OK);
    let patched = admin(client.patch(format!("{address}/api/issues/1")))
        .header("x-request-id", "warned")
        .json(&json!({"status": "DONE"}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), StatusCode::SERVICE_UNAVAILABLE);
    let answered = std::time::Instant::now();
    blocker.rollback().await.unwrap();
    let read = tokio::task::block_in_place(|| {
        let mut read = Vec::new();
        loop {
            let line = lines.recv_timeout(Duration::from_secs(5)).expect("the 503's cause within 5 s");
            read.push(line["fields"]["request_id"].as_str().unwrap_or_default().to_owned());
            if line["fields"]["request_id"] == "warned" {
                assert_eq!(line["level"], "WARN", "{line}");
                return read;
            }
        }
    });
    eprintln!("warning line after its response: {:?}", answered.elapsed());
    assert!(read.iter().any(|id| id == "before-warning"), "the earlier line first: {read:?}");

    // 3. A burst of 1,000 requests, SIGTERM the moment the last is answered: all logged.
    let ids: Vec<String> = (0..1000).map(|n| format!("burst-{n}")).collect();
    let statuses: Vec<StatusCode> = futures::stream::iter(&ids)
        .map(|id| {
            let request = admin(client.get(format!("{address}/api/issues/1"))).header("x-request-id", id);
            async move { request.send().await.unwrap().status() }
        })
        // Within the organization's share of the pool (ORG_MAX_TRANSACTIONS), so none waits for a 429.
        .buffer_unordered(4)
        .collect()
        .await;
    let refused = statuses.iter().filter(|s| **s != StatusCode::OK).count();
    assert_eq!(refused, 0, "answers other than 200 in the burst");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = tokio::task::block_in_place(|| child.wait()).unwrap();
    assert!(status.success(), "{status}");
    let logs = until_end_of_file(&lines);
    let logged: std::collections::HashSet<&str> =
        logs.iter().filter_map(|l| l["fields"]["request_id"].as_str()).collect();
    let missing: Vec<&String> = ids.iter().filter(|id| !logged.contains(id.as_str())).collect();
    assert!(
        missing.is_empty(),
        "{} of 1,000 request lines missing: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert!(logs.iter().any(|l| l["fields"]["message"] == "stopped"), "{:?}", logs.last());
}

/// Worker threads: one per core but one by default (measured, README "Performance"), or
/// what TOKIO_WORKER_THREADS says. The "serving" line tells which.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_runs_one_worker_per_core_but_one_unless_told_otherwise() {
    let database = crate::helpers::fresh_database().await;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    for (env, expected) in [(None, tenantry::default_worker_threads(cores)), (Some("3"), 3)] {
        let env: Vec<(&str, &str)> = env.map(|n| ("TOKIO_WORKER_THREADS", n)).into_iter().collect();
        let (mut child, _, _, start) = serve_json_logs_with(&database, 5, &env);
        let serving = start.last().unwrap();
        assert_eq!(serving["fields"]["workers"], expected, "{env:?}: {serving}");
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let status = tokio::task::block_in_place(|| child.wait()).unwrap();
        assert!(status.success(), "{status}");
    }
}

/// ALLOW_HEADER_AUTH_ON_NETWORK=1 serves the trusting headers mode on a network address,
/// and says so once, at start, before serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_authentication_on_a_network_address_is_warned_about_once_at_start() {
    let database = crate::helpers::fresh_database().await;
    let env = [("HOST", "0.0.0.0"), ("ALLOW_HEADER_AUTH_ON_NETWORK", "1")];
    let (mut child, _, lines, start) = serve_json_logs_with(&database, 5, &env);
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = tokio::task::block_in_place(|| child.wait()).unwrap();
    assert!(status.success(), "{status}");
    let all: Vec<Value> = start.into_iter().chain(until_end_of_file(&lines)).collect();
    let warnings: Vec<&Value> = all
        .iter()
        .filter(|l| {
            l["level"] == "WARN"
                && l["fields"]["message"].as_str().unwrap_or("").contains("ALLOW_HEADER_AUTH_ON_NETWORK")
        })
        .collect();
    assert_eq!(warnings.len(), 1, "{all:?}");
}

/// A write that outlives its request (REQUEST_TIMEOUT_MS answered 503 while it waited
/// inside PostgreSQL): it still runs to its end, its connection stays out of the pool until
/// then (so the pool size still caps the database's work), and the log says the request
/// was abandoned and that its transaction committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_write_keeps_its_connection_until_it_commits_and_the_log_says_so() {
    let database = crate::helpers::fresh_database().await;
    let env = [
        ("DATABASE_POOL_SIZE", "2"),
        ("ORG_MAX_TRANSACTIONS", "2"),
        ("REQUEST_TIMEOUT_MS", "2000"),
        ("DATABASE_STATEMENT_TIMEOUT_MS", "60000"),
    ];
    let (mut child, address, lines, _) = serve_json_logs_with(&database, 5, &env);
    let client = reqwest::Client::new();
    let as_org = |r: reqwest::RequestBuilder, org: &str| {
        r.header("x-organization-id", org).header("x-user-id", "ann").header("x-user-role", "ADMIN")
    };
    let created = as_org(client.post(format!("{address}/api/issues")), "acme")
        .json(&json!({"title": "before", "description": "d"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let in_use = || {
        let (client, address) = (client.clone(), address.clone());
        async move {
            let text = client.get(format!("{address}/metrics")).send().await.unwrap().text().await.unwrap();
            let series = "tenantry_db_pool_connections{state=\"in_use\"} ";
            text.lines().find_map(|l| l.strip_prefix(series)).expect("the series").parse::<u32>().unwrap()
        }
    };

    let pg = &crate::helpers::cluster().pg;
    let mut owner = crate::helpers::connect(&pg.url(pg_sandbox::postgres::SUPERUSER, &database)).await;
    let blocker = owner.transaction().await.unwrap();
    blocker.execute("select 1 from app.issues where id = 1 for update", &[]).await.unwrap();
    let late = tokio::spawn(
        as_org(client.patch(format!("{address}/api/issues/1")), "acme")
            .header("x-request-id", "abandoned-write")
            .json(&json!({"title": "after"}))
            .send(),
    );
    // Its transaction reaches the lock (well before the request's time-out) ...
    let watcher = crate::helpers::connect(&pg.url(pg_sandbox::postgres::SUPERUSER, "postgres")).await;
    crate::helpers::wait_for_lock_waiters(&watcher, &database, 1).await;
    // ... the request is answered at REQUEST_TIMEOUT_MS, and the transaction still waits for
    // the lock, on a connection it still holds.
    let late = late.await.unwrap().unwrap();
    assert_eq!(late.status(), StatusCode::SERVICE_UNAVAILABLE, "answered at REQUEST_TIMEOUT_MS");
    assert_eq!(watcher_lock_waiters(&watcher, &database).await, 1);
    assert_eq!(in_use().await, 1, "the abandoned transaction keeps its pool slot");
    let other = as_org(client.get(format!("{address}/api/issues")), "globex").send().await.unwrap();
    assert_eq!(other.status(), StatusCode::OK, "the other connection serves the others");

    blocker.commit().await.unwrap();
    let line = loop {
        let line = lines.recv_timeout(Duration::from_secs(60)).expect("the abandoned request is logged");
        if line["fields"]["message"] == "request abandoned" {
            break line;
        }
    };
    assert_eq!(line["fields"]["request_id"], "abandoned-write", "{line}");
    assert_eq!(line["fields"]["reason"], "timed out", "{line}");
    assert_eq!(line["fields"]["transaction"], "committed", "{line}");
    let title: String =
        owner.query_one("select title from app.issues where id = 1", &[]).await.unwrap().get(0);
    assert_eq!(title, "after", "the write its client gave up on committed");
    crate::helpers::wait_until("the connection to come back to the pool", || async { in_use().await == 0 })
        .await;
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(tokio::task::block_in_place(|| child.wait()).unwrap().success());
}

async fn watcher_lock_waiters(watcher: &tokio_postgres::Client, database: &str) -> i64 {
    watcher
        .query_one(
            "select count(*) from pg_stat_activity where datname = $1 and wait_event_type = 'Lock'",
            &[&database],
        )
        .await
        .unwrap()
        .get(0)
}

/// `tenantry reset` refuses without `--yes`; with it, it deletes every organization's data
/// through DATABASE_URL while the server runs, and numbering starts over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_needs_yes_then_empties_every_organization_while_the_server_runs() {
    let database = crate::helpers::fresh_database().await;
    let (mut child, address, _lines) = serve_json_logs(&database, 5);
    let client = reqwest::Client::new();
    let as_org = |r: reqwest::RequestBuilder, org: &str| {
        r.header("x-organization-id", org).header("x-user-id", "ann").header("x-user-role", "ADMIN")
    };
    for org in ["acme", "globex"] {
        let created = as_org(client.post(format!("{address}/api/issues")), org)
            .json(&json!({"title": "before the reset", "description": "d"}))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), StatusCode::CREATED);
    }
    let pg = &crate::helpers::cluster().pg;
    let reset = |yes: bool| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tenantry"));
        command.arg("reset");
        if yes {
            command.arg("--yes");
        }
        command
            .env("DATABASE_URL", pg.url(pg_sandbox::postgres::SUPERUSER, &database))
            .env_remove("API_DATABASE_URL")
            .output()
            .unwrap()
    };
    let count = || async {
        let listed: Vec<Value> = as_org(client.get(format!("{address}/api/issues")), "acme")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        listed.len()
    };

    let owner = crate::helpers::connect(&pg.url(pg_sandbox::postgres::SUPERUSER, &database)).await;
    let etag_key =
        || async { owner.query_one("select key from secrets.keys", &[]).await.unwrap().get::<_, Vec<u8>>(0) };
    let key_before = etag_key().await;
    let refused = reset(false);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("tenantry reset --yes"), "{refused:?}");
    assert_eq!(count().await, 1, "nothing deleted without --yes");

    let done = reset(true);
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    assert_eq!(count().await, 0);
    let feed: Vec<Value> = as_org(client.get(format!("{address}/api/activity")), "globex")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(feed.is_empty());
    let again = as_org(client.post(format!("{address}/api/issues")), "acme")
        .json(&json!({"title": "after the reset", "description": "d"}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.json::<Value>().await.unwrap()["id"], 1, "numbering starts over");
    // Numbers start again, so the entity-tag key is new: old tags never match new issues.
    assert_ne!(etag_key().await, key_before);
    let _ = child.kill();
    let _ = child.wait();
}
