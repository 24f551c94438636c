//! A hostile tenant: one MEMBER of one organization trying to make every other
//! organization's requests fail. Each test attacks, then measures what the *other*
//! organizations experience.

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tenantry::db::{self, PANIC_MID_PIPELINE};

use crate::helpers::*;

/// An app with one pooled connection (every request shares it), reached directly or
/// through a transaction-mode PgBouncer with one server connection. `None`: PgBouncer is
/// missing (skipped unless REQUIRE_PGBOUNCER=1).
async fn app_with_one_connection(route: Route, name: &str) -> Option<TestApp> {
    let database = fresh_database().await;
    let bouncer = match route {
        Route::Direct => None,
        Route::PgBouncer => Some(start_pgbouncer(name, 1)?),
    };
    let url = bouncer.as_ref().map(|b| b.url(db::API_ROLE, &database));
    let mut app = spawn_app_on(&database, Mode::ApiLogin, |config| {
        config.pool_size = 1;
        if let Some(url) = url {
            config.api_database_url = Some(url);
            config.statements = statements_for_pgbouncer();
        }
    })
    .await;
    app.pgbouncer = bouncer;
    Some(app)
}

/// The victim's requests: a create and a read, both of which must work.
async fn victim_is_served(app: &TestApp) {
    let created = app.create_ok(&member("victim"), "still served").await;
    let read = app.get(&member("victim"), &format!("/api/issues/{}", created["id"])).await;
    assert_eq!(read.status(), StatusCode::OK);
    assert_eq!(read.json::<Value>().await.unwrap()["title"], "still served");
}

/// Connections of the app's database left inside a transaction, as the server sees them.
async fn idle_in_transaction(app: &TestApp) -> i64 {
    let sql = "select count(*) from pg_stat_activity where datname = current_database() \
               and state like 'idle in transaction%'";
    app.owner_sql().await.query_one(sql, &[]).await.unwrap().get(0)
}

/// `9999-12-31T23:59:00-00:01` is valid RFC 3339 whose UTC instant is in year 10000:
/// encoding it panicked after BEGIN and the tenant were queued, and the poisoned
/// connection went back to the pool (every later request on it: 503; behind PgBouncer,
/// server connections pinned idle in transaction for everyone).
#[tokio::test]
async fn an_out_of_range_timestamp_is_a_400_naming_it_and_the_next_organization_is_served() {
    for route in [Route::Direct, Route::PgBouncer] {
        let Some(app) = app_with_one_connection(route, "timestamp").await else { continue };
        let attacks = [
            ("/api/issues?createdAfter=9999-12-31T23:59:00-00:01", vec!["createdAfter"]),
            ("/api/issues?createdBefore=0001-01-01T00:00:00%2B00:01", vec!["createdBefore"]),
            (
                "/api/issues?updatedAfter=9999-12-31T23:59:59.9999999Z&createdAfter=9999-12-31T23:59:00-00:01",
                vec!["createdAfter", "updatedAfter"],
            ),
            ("/api/activity?since=9999-12-31T23:59:00-00:01", vec!["since"]),
            ("/api/activity?until=0001-01-01T00:00:00%2B23:59", vec!["until"]),
        ];
        for (path, named) in attacks {
            for _ in 0..4 {
                let problem =
                    assert_problem(app.get(&member("attacker"), path).await, StatusCode::BAD_REQUEST).await;
                let mut fields = error_fields(&problem);
                fields.sort();
                assert_eq!(fields, named, "{route:?} {path}");
                assert!(
                    problem["errors"][0]["message"].as_str().unwrap().contains("9999-12-31T23:59:59.999999Z")
                );
            }
            victim_is_served(&app).await;
        }
        // The edges themselves are accepted.
        for path in [
            "/api/issues?createdAfter=0001-01-01T00:00:00Z&createdBefore=9999-12-31T23:59:59.999999Z",
            "/api/issues?createdAfter=0001-01-01T00:59:00%2B00:59",
            "/api/activity?since=0001-01-01T00:00:00Z&until=9999-12-31T23:59:59.999999Z",
        ] {
            assert_eq!(app.get(&member("attacker"), path).await.status(), StatusCode::OK, "{route:?} {path}");
        }
        assert_eq!(idle_in_transaction(&app).await, 0, "{route:?}");
    }
}

/// Whatever panics mid-pipeline (here a test hook, after BEGIN and the tenant's settings
/// were queued), the connection is closed, never handed to the next request, and the
/// panicking request is a 500 problem.
#[tokio::test]
async fn a_panic_mid_pipeline_is_a_500_and_the_connection_never_serves_again() {
    for route in [Route::Direct, Route::PgBouncer] {
        let Some(app) = app_with_one_connection(route, "panic").await else { continue };
        victim_is_served(&app).await;
        for _ in 0..4 {
            let response = app.get(&member(PANIC_MID_PIPELINE), "/api/issues").await;
            let problem = assert_problem(response, StatusCode::INTERNAL_SERVER_ERROR).await;
            assert_eq!(problem["detail"], "an unexpected error occurred", "nothing of the cause leaks");
            victim_is_served(&app).await;
        }
        let writes = app.request(Method::POST, "/api/issues", Some(&member(PANIC_MID_PIPELINE)));
        let response =
            writes.json(&serde_json::json!({"title": "t", "description": "d"})).send().await.unwrap();
        assert_problem(response, StatusCode::INTERNAL_SERVER_ERROR).await;
        victim_is_served(&app).await;
        assert_eq!(count(&app, "select count(*) from app.issues where organization_id <> 'victim'").await, 0);
        // The closed connections' transactions are gone from the server, PgBouncer's too.
        wait_until("no connection is idle in a transaction", || async {
            idle_in_transaction(&app).await == 0
        })
        .await;
    }
}

/// One organization's requests stuck behind a slow transaction (here: its own row lock,
/// held by the test) used to fill every pooled connection; another organization then got
/// 503 after the pool's time-out. Each organization now holds at most its share.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_flooding_the_database_keeps_to_its_share_and_the_victim_is_served() {
    let app = spawn_app_with(Mode::ApiLogin, |config| config.org_max_transactions = None).await;
    app.create_ok(&member("noisy"), "contended").await;
    let mut owner = app.owner_sql().await;
    let blocker = owner.transaction().await.unwrap();
    blocker
        .execute("select 1 from app.issues where organization_id = 'noisy' for update", &[])
        .await
        .unwrap();

    // Twelve writers flat out on the locked issue, until the victim is done.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let refused = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let attackers: Vec<_> = (0..12)
        .map(|n| {
            let (done, refused, client, address) =
                (done.clone(), refused.clone(), app.client.clone(), app.address.clone());
            tokio::spawn(async move {
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let response = client
                        .patch(format!("{address}/api/issues/1"))
                        .header("x-organization-id", "noisy")
                        .header("x-user-id", "mallory")
                        .header("x-user-role", "ADMIN")
                        .json(&serde_json::json!({"title": format!("attacker {n}")}))
                        .send()
                        .await
                        .unwrap();
                    if response.status() == StatusCode::TOO_MANY_REQUESTS {
                        assert_eq!(response.headers()["retry-after"], "1");
                        refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    // The attack is in place: the noisy organization's share waits on its lock.
    wait_for_lock_waiters(&app.owner_sql().await, &app.database, 4).await;

    let mut statuses = Vec::new();
    let mut every = tokio::time::interval(std::time::Duration::from_millis(50));
    for n in 0..40 {
        every.tick().await;
        let response = if n % 2 == 0 {
            app.create(&member("victim"), serde_json::json!({"title": format!("v{n}"), "description": "d"}))
                .await
        } else {
            app.get(&member("victim"), "/api/issues").await
        };
        statuses.push(response.status().as_u16());
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    blocker.rollback().await.unwrap();
    for attacker in attackers {
        attacker.await.unwrap();
    }
    assert!(statuses.iter().all(|s| (200..300).contains(s)), "the victim saw {statuses:?}");
    assert!(refused.load(std::sync::atomic::Ordering::Relaxed) > 0, "the attacker was held to its share");
    // Never more than its share at once.
    let waiting: i64 = app
        .owner_sql()
        .await
        .query_one(
            "select count(*) from pg_stat_activity where datname = $1 and wait_event_type = 'Lock'",
            &[&app.database],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(waiting, 0);
}

/// Raises this process's open-file limit to at least `wanted`, failing (never skipping)
/// when it cannot: the slowloris tests need thousands of sockets on both ends.
fn raise_file_limit(wanted: u64) {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) }, 0);
    if limit.rlim_cur >= wanted {
        return;
    }
    limit.rlim_cur = wanted.max(limit.rlim_cur);
    limit.rlim_max = limit.rlim_max.max(wanted);
    let raised = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    assert_eq!(raised, 0, "could not raise RLIMIT_NOFILE to {wanted}: {}", std::io::Error::last_os_error());
}

/// A client that connects and sends its headers a line every 300 ms, forever (which
/// defeats an idle timer). Returns how long the server kept it, or `None` if it did not
/// close it within 30 s.
async fn slowloris(address: std::net::SocketAddr) -> Option<std::time::Duration> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.expect("connects");
    let connected = std::time::Instant::now();
    let _ = stream.write_all(b"GET /api/issues HTTP/1.1\r\nHost: x\r\n").await;
    let mut every = tokio::time::interval(std::time::Duration::from_millis(300));
    let mut buffer = [0u8; 256];
    while connected.elapsed() < std::time::Duration::from_secs(30) {
        tokio::select! {
            read = stream.read(&mut buffer) => match read {
                // Closed (or answered: it must not be, the headers never end).
                Ok(0) => return Some(connected.elapsed()),
                Err(_) => return Some(connected.elapsed()),
                Ok(_) => panic!("a request whose headers never ended was answered"),
            },
            _ = every.tick() => {
                if stream.write_all(b"X-Slow: 1\r\n").await.is_err() {
                    return Some(connected.elapsed());
                }
            }
        }
    }
    None
}

/// Thousands of connections that never finish their headers, each sending a byte now and
/// then, used to be kept forever (3,000 held for 45 s; about 1,000 stopped the server
/// accepting under `ulimit -n 1024`). A normal client must be served all along, and every
/// slow one is closed within HEADER_READ_TIMEOUT_MS plus a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_are_closed_at_the_header_deadline_and_others_are_served() {
    const SLOW: usize = 2000;
    raise_file_limit(8 * 1024);
    // A deadline well above the lag described below, so "not closed at once" has margin.
    let app = spawn_app_with(Mode::ApiLogin, |config| config.header_read_timeout_ms = 2000).await;
    app.create_ok(&member("victim"), "served").await;
    let address: std::net::SocketAddr = app.address.trim_start_matches("http://").parse().unwrap();
    let slow: Vec<_> = (0..SLOW).map(|_| tokio::spawn(slowloris(address))).collect();

    let client = reqwest::Client::new();
    for _ in 0..100 {
        let response = client
            .get(format!("{}/api/issues", app.address))
            .header("x-organization-id", "victim")
            .header("x-user-id", "v")
            .header("x-user-role", "MEMBER")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let mut kept = Vec::new();
    for task in slow {
        kept.push(task.await.unwrap().expect("closed by the server"));
    }
    kept.sort();
    let slowest = *kept.last().unwrap();
    // Timed from when each client saw its connection, which lags the server's accept when
    // thousands connect at once (by up to 600 ms on a loaded 2-core machine, so the first
    // ones to be closed can look early): the typical one was kept until the deadline, not
    // closed at once. Every one was closed (the bug kept them forever), well before the
    // clients give up at 30 s; how soon after the deadline depends on the machine's load
    // (2.4 s seen with other builds running), so that is not what this checks.
    let typical = kept[kept.len() / 2];
    assert!(typical >= std::time::Duration::from_millis(500), "closed at once: {typical:?} (median)");
    assert!(slowest <= std::time::Duration::from_secs(10), "the last one was kept {slowest:?}");
}

/// At MAX_CONNECTIONS, a new connection is accepted and closed at once; one comes free
/// when another closes.
#[tokio::test]
async fn past_max_connections_a_new_connection_is_closed_at_once() {
    use tokio::io::AsyncReadExt;
    let app = spawn_app_with(Mode::ApiLogin, |config| config.max_connections = 50).await;
    let address: std::net::SocketAddr = app.address.trim_start_matches("http://").parse().unwrap();
    let mut held = Vec::new();
    for _ in 0..50 {
        held.push(tokio::net::TcpStream::connect(address).await.unwrap());
    }
    // Those 50 are open (a request on one of them is answered) ...
    let mut probe = held.pop().unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut probe, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = [0u8; 12];
    probe.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200");
    held.push(probe);
    // ... the 51st is closed without a byte.
    let mut extra = tokio::net::TcpStream::connect(address).await.unwrap();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), extra.read(&mut byte)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "closed at once: {read:?}");
    // One closes; a new one is served.
    drop(held.pop());
    wait_until("a place to come free", || async {
        app.client
            .get(format!("{}/healthz", app.address))
            .send()
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK)
    })
    .await;
}

/// A read-only database (a standby after a fail-over, or default_transaction_read_only)
/// made every write a 500 while /readyz said ready. Writes are a 503 with Retry-After (the
/// client should retry; nothing is wrong with its request), reads still work, and /readyz
/// is 503 until writes can succeed again.
#[tokio::test]
async fn a_read_only_database_makes_writes_503_and_readyz_not_ready() {
    let app = spawn_app().await;
    app.create_ok(&member("acme"), "before").await;
    let owner = app.owner_sql().await;
    let reconnect = || async {
        // New sessions read the new default; end the pool's current ones.
        owner
            .execute(
                "select pg_terminate_backend(pid) from pg_stat_activity \
                 where datname = current_database() and usename = 'tenantry_api'",
                &[],
            )
            .await
            .unwrap();
    };
    let database = &app.database;
    owner
        .batch_execute(&format!(
            "alter role tenantry_api in database {database} set default_transaction_read_only = on"
        ))
        .await
        .unwrap();
    reconnect().await;
    let ready = || app.client.get(format!("{}/readyz", app.address)).send();
    // Until the pool has replaced the connections it lost, readyz says "unavailable":
    // wait for the answer about the read-only database itself.
    wait_until("readyz to see the read-only database", || async {
        let answer = ready().await.unwrap();
        answer.status() == StatusCode::SERVICE_UNAVAILABLE
            && answer.text().await.unwrap().contains("read-only")
    })
    .await;
    let write = app.create(&member("acme"), serde_json::json!({"title": "t", "description": "d"})).await;
    assert_eq!(write.headers()["retry-after"], "2");
    assert_problem(write, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_problem(
        app.patch(&admin("acme"), 1, serde_json::json!({"title": "x"})).await,
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    assert_eq!(app.get(&member("acme"), "/api/issues/1").await.status(), StatusCode::OK, "reads work");

    owner
        .batch_execute(&format!(
            "alter role tenantry_api in database {database} reset default_transaction_read_only"
        ))
        .await
        .unwrap();
    reconnect().await;
    wait_until("readyz to see a writable database", || async {
        ready().await.unwrap().status() == StatusCode::OK
    })
    .await;
    app.create_ok(&member("acme"), "after").await;
}

/// A client that sends its body slowly got "the database is unavailable" (503) after
/// REQUEST_TIMEOUT_MS, and a warning blaming the database. It is the client's doing: 408,
/// and the connection closed (the rest of its body may still be on its way).
#[tokio::test]
async fn a_body_that_trickles_in_is_a_408_that_closes_the_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app_with(Mode::ApiLogin, |config| config.request_timeout_ms = 1000).await;
    let address: std::net::SocketAddr = app.address.trim_start_matches("http://").parse().unwrap();
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = "POST /api/issues HTTP/1.1\r\nHost: x\r\nx-organization-id: acme\r\nx-user-id: u\r\n\
                x-user-role: MEMBER\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"title\": ";
    stream.write_all(head.as_bytes()).await.unwrap();
    // ... and nothing more: the answer comes, then the end of the connection.
    let mut answer = String::new();
    let read =
        tokio::time::timeout(std::time::Duration::from_secs(20), stream.read_to_string(&mut answer)).await;
    assert!(matches!(read, Ok(Ok(_))), "the connection was closed: {read:?}");
    assert!(answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("\r\nconnection: close\r\n"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(answer.contains("REQUEST_TIMEOUT_MS"), "{answer}");
    assert_eq!(count(&app, "select count(*) from app.issues").await, 0);
}

/// During an outage every request used to open its own connection attempt (8,400 FATAL
/// lines in 27 s). Requests are answered 503 at once, and reconnects back off: one in
/// flight, after a doubling delay. Here the database's port answers with a listener that
/// counts connection attempts and closes each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_an_outage_requests_get_503_at_once_and_reconnects_back_off() {
    use pg_sandbox::postgres::{LocalPostgres, Options, SUPERUSER};
    let dir = crate::ops::startup::tempdir("backoff");
    let options = Options { dir: dir.clone(), port: 0, ephemeral: true, ..Default::default() };
    let pg = tokio::task::block_in_place(|| LocalPostgres::start(&options)).unwrap();
    let options = Options { port: pg.port(), ..options };
    connect(&pg.url(SUPERUSER, "postgres")).await.batch_execute("create database backoff").await.unwrap();
    let config = tenantry::config::Config {
        port: 0,
        database_url: Some(pg.url(SUPERUSER, "backoff")),
        api_database_url: Some(pg.url("tenantry_api", "backoff")),
        pool_size: 4,
        ..Default::default()
    };
    let app = tenantry::App::build(&config).await.unwrap();
    let address = format!("http://{}", app.addr());
    tokio::spawn(app.run_until(std::future::pending()));
    let client = reqwest::Client::new();
    let list = || {
        client
            .get(format!("{address}/api/issues"))
            .header("x-organization-id", "o")
            .header("x-user-id", "u")
            .header("x-user-role", "MEMBER")
            .send()
    };
    assert_eq!(list().await.unwrap().status(), StatusCode::OK);

    tokio::task::block_in_place(|| drop(pg));
    let port = options.port;
    let impostor = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("the port is free again");
    let attempts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = {
        let attempts = attempts.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = impostor.accept().await.unwrap();
                attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                drop(stream);
            }
        })
    };
    let mut statuses = Vec::new();
    for _ in 0..300 {
        statuses.push(list().await.unwrap().status());
    }
    assert!(statuses.iter().all(|s| *s == StatusCode::SERVICE_UNAVAILABLE), "{statuses:?}");
    let made = attempts.load(std::sync::atomic::Ordering::Relaxed);
    assert!(made < 30, "300 requests made {made} connection attempts");
    counter.abort();
    let _ = counter.await;

    let pg = tokio::task::block_in_place(|| LocalPostgres::start(&options)).unwrap();
    wait_until("the service to reconnect by itself", || async {
        list().await.unwrap().status() == StatusCode::OK
    })
    .await;
    drop(pg);
    let _ = std::fs::remove_dir_all(dir);
}

/// A prefix search reads every term row its words start: one organization could make each
/// of its searches cost seconds. Words need two characters, and a search that would read
/// more than SEARCH_MAX_CANDIDATES term rows is refused, never answered in part.
#[tokio::test]
async fn a_search_too_broad_to_be_cheap_is_refused_before_it_runs() {
    let app = spawn_app_with(Mode::ApiLogin, |config| config.search_max_candidates = 50).await;
    app.insert_issues("wordy", 60).await;
    let search = |q: &str| {
        let path = format!("/api/issues?q={q}");
        let app = &app;
        async move { app.get(&member("wordy"), &path).await }
    };
    let sql = app.owner_sql().await;
    let rows_for = |prefix: &'static str| {
        let sql = &sql;
        async move {
            let count: i64 = sql
                .query_one(
                    "select count(*) from app.issue_terms where organization_id = 'wordy' and term like $1 || '%'",
                    &[&prefix],
                )
                .await
                .unwrap()
                .get(0);
            count
        }
    };
    // Pick a prefix over the bound and one under it, from the data itself.
    let broad = ["is", "de", "ab", "ti"].into_iter();
    let mut too_broad = None;
    for prefix in broad {
        if rows_for(prefix).await > 50 {
            too_broad = Some(prefix);
            break;
        }
    }
    let too_broad = too_broad.expect("a prefix that starts more than 50 term rows");
    let problem = assert_problem(search(too_broad).await, StatusCode::BAD_REQUEST).await;
    assert_eq!(error_fields(&problem), ["q"]);
    assert!(problem["detail"].as_str().unwrap().contains("too broad"), "{problem}");
    for short in ["x", "x%20issue", "%C3%A9"] {
        let problem = assert_problem(search(short).await, StatusCode::BAD_REQUEST).await;
        assert!(problem["detail"].as_str().unwrap().contains("at least 2 characters"), "{short}: {problem}");
    }
    // Narrow enough: answered, and a victim organization's broad words never count here.
    assert_eq!(search("zzzz").await.status(), StatusCode::OK);
    let unbounded =
        spawn_app_on(&app.database, Mode::ApiLogin, |config| config.search_max_candidates = 0).await;
    let answered = unbounded.get(&member("wordy"), &format!("/api/issues?q={too_broad}")).await;
    assert_eq!(answered.status(), StatusCode::OK, "0 lifts the bound");
}

/// One user could grow the database without end (about 1.2 MB per create with a
/// 50,000-character description): a disk fills, for everyone. Issues per organization and
/// changes per organization per UTC day are bounded, counted by PostgreSQL.
#[tokio::test]
async fn quotas_stop_one_organization_and_no_other() {
    let app = spawn_app_with(Mode::ApiLogin, |config| {
        config.org_max_issues = 3;
        config.org_max_activity_per_day = 8;
    })
    .await;
    for n in 0..3 {
        app.create_ok(&member("hoarder"), &format!("kept {n}")).await;
    }
    let refused = app
        .create(&member("hoarder"), serde_json::json!({"title": "one too many", "description": "d"}))
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["type"], "urn:tenantry:problem:quota-exceeded", "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("quota"), "{problem}");
    victim_is_served(&app).await;
    assert_eq!(count(&app, "select count(*) from app.issues where organization_id = 'hoarder'").await, 3);

    // A delete makes room; a restore past the quota is refused like a create.
    assert_eq!(app.delete(&admin("hoarder"), 1).await.status(), StatusCode::NO_CONTENT);
    app.create_ok(&member("hoarder"), "in the freed place").await;
    let restore = app.restore(&admin("hoarder"), 1).await;
    assert_eq!(restore.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        count(&app, "select live_issues from app.organization_counters where organization_id = 'hoarder'")
            .await,
        3
    );

    // Changes per day: 3 creates, 1 delete, 1 create = 5 entries so far; 3 more fit.
    for n in 0..3 {
        let changed =
            app.patch(&admin("hoarder"), 2, serde_json::json!({"title": format!("edit {n}")})).await;
        assert_eq!(changed.status(), StatusCode::OK);
    }
    let over = app.patch(&admin("hoarder"), 2, serde_json::json!({"title": "edit past the quota"})).await;
    let retry_after: u64 = over.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=86_400).contains(&retry_after), "until midnight UTC: {retry_after}");
    assert_problem(over, StatusCode::TOO_MANY_REQUESTS).await;
    let title: Value = app.get(&member("hoarder"), "/api/issues/2").await.json().await.unwrap();
    assert_eq!(title["title"], "edit 2", "the refused change was not made");
    victim_is_served(&app).await;

    // A new UTC day starts over (here: the counter says its day was yesterday).
    app.owner_sql()
        .await
        .execute(
            "update app.organization_counters set activity_day = activity_day - 1 where organization_id = 'hoarder'",
            &[],
        )
        .await
        .unwrap();
    let next_day = app.patch(&admin("hoarder"), 2, serde_json::json!({"title": "the next day"})).await;
    assert_eq!(next_day.status(), StatusCode::OK);
}

/// The most memory (peak resident set) the service may reach while 200 clients hold pages
/// of huge issues they never read (docs/performance.md, "Memory").
const NON_READING_CLIENTS_PEAK_RSS_MB: u64 = 320;

/// A `/proc/<pid>/status` figure, in MB.
fn proc_status_mb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
        .trim()
        .trim_end_matches(" kB")
        .parse()
        .unwrap();
    kb / 1024
}

/// Clients that ask for a page of 200 issues of 50,000 characters (10 MB of JSON) and
/// never read it pinned the whole body each: 40 such sockets took the service from 121 to
/// 551 MB. A page now holds at most PAGE_MAX_BYTES; with 200 such clients (a small receive
/// buffer each, as a remote client that stops reading) the service's peak memory stays
/// under the documented figure and another organization is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_read_huge_pages_pin_bounded_memory_and_others_are_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const CLIENTS: usize = 200;
    raise_file_limit(4096);
    let database = fresh_database().await;
    let pg = &cluster().pg;
    let owner = connect(&pg.url(pg_sandbox::postgres::SUPERUSER, &database)).await;
    owner
        .batch_execute(
            "insert into app.organization_counters (organization_id, last_issue_id) values ('hoarder', 200);
             insert into app.issues (organization_id, id, title, description, created_by)
             select 'hoarder', n, 'Huge ' || n, repeat('abcdefghi ', 5000), 'seeder'
             from generate_series(1, 200) n;",
        )
        .await
        .unwrap();
    let env = [
        ("RATE_LIMIT_ORG_PER_SECOND", "0"),
        ("RATE_LIMIT_USER_PER_SECOND", "0"),
        // Every one of them is served (none refused by the fair share): the worst case.
        ("ORG_QUEUE_TIMEOUT_MS", "60000"),
        ("REQUEST_TIMEOUT_MS", "60000"),
    ];
    let (mut child, address, _lines, _) = crate::ops::binary::serve_json_logs_with(&database, 5, &env);
    let pid = child.id();
    let client = reqwest::Client::new();
    let as_org = |r: reqwest::RequestBuilder, org: &str| {
        r.header("x-organization-id", org).header("x-user-id", "u").header("x-user-role", "MEMBER")
    };
    let created = as_org(client.post(format!("{address}/api/issues")), "victim")
        .json(&serde_json::json!({"title": "served", "description": "by every instance"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let before_mb = proc_status_mb(pid, "VmRSS");

    let socket_address: std::net::SocketAddr = address.trim_start_matches("http://").parse().unwrap();
    let mut streams = Vec::new();
    for _ in 0..CLIENTS {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut stream = socket.connect(socket_address).await.unwrap();
        stream
            .write_all(
                b"GET /api/issues?limit=200 HTTP/1.1\r\nHost: x\r\nx-organization-id: hoarder\r\n\
                  x-user-id: h\r\nx-user-role: MEMBER\r\n\r\n",
            )
            .await
            .unwrap();
        streams.push(stream);
    }
    // Every page made (the handler answered; its body is written, or waiting to be).
    let answered = || {
        let (client, address) = (client.clone(), address.clone());
        async move {
            let text = client.get(format!("{address}/metrics")).send().await.unwrap().text().await.unwrap();
            text.lines()
                .filter(|l| {
                    l.starts_with("tenantry_http_requests_total{method=\"GET\",route=\"/api/issues\",")
                })
                .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
                .sum::<u64>()
        }
    };
    wait_until("every page answered", || async { answered().await >= CLIENTS as u64 }).await;
    let victim = as_org(client.get(format!("{address}/api/issues")), "victim").send().await.unwrap();
    assert_eq!(victim.status(), StatusCode::OK);
    let peak_mb = proc_status_mb(pid, "VmHWM");
    eprintln!("{CLIENTS} non-reading clients: resident {before_mb} MB before, peak {peak_mb} MB");

    // Each of them was sent a page of 200, cut at PAGE_MAX_BYTES, with a Link to the rest.
    for stream in &mut streams {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(stream.read(&mut byte).await.unwrap(), 1, "the head arrives");
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(head.contains("\r\nlink: </api/issues?"), "{head}");
        let length: usize = head
            .split("\r\ncontent-length: ")
            .nth(1)
            .and_then(|rest| rest.split("\r\n").next())
            .unwrap()
            .parse()
            .unwrap();
        assert!(length <= 1 << 20 && length > (1 << 20) - 60_000, "a full page within 1 MiB: {length}");
    }
    drop(streams);
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        peak_mb < NON_READING_CLIENTS_PEAK_RSS_MB,
        "peak {peak_mb} MB (from {before_mb} MB) with {CLIENTS} clients not reading"
    );
}
