//! The benchmark: the service under wrk, side by side with pgbench running the same SQL on
//! the same PostgreSQL, in one run. Start it with `bench/run` (it installs wrk when missing
//! and builds the release binary first); `bench/run --help` lists the options.
//!
//! 1. Starts a private PostgreSQL (durable settings, as `tenantry serve` runs it) and one
//!    service process per variant (`--variant`), each logging in as tenantry_api.
//! 2. Seeds 100 organizations × 100 issues through the HTTP API.
//! 3. Per scenario: wrk against each variant, then pgbench with the service's own SQL text
//!    (`db::SET_CONTEXT`, `db::issues::*`) in the same transaction shape: begin; the
//!    set_config statement; the api function; commit.
//!    Then, unless `--no-reference`, pgbench runs the fixed reference
//!    (`../shared/perf-reference/`, see its README: a plain indexed schema without row-level
//!    security, functions or search words) for the same scenario, on the same server, in a
//!    database of its own that is re-created from `bound-schema.sql` before each scenario
//!    (its creates would otherwise grow the lists it reads); the row counts it saw are
//!    printed. The table then shows both ratios: the same-SQL one (how thin the Rust layer
//!    is) and the one against the reference (what the SQL itself costs).
//! 4. The hostile scenario (`--scenarios hostile`, part of the default run): a victim
//!    organization makes one request every 50 ms, first on an idle service, then while one
//!    MEMBER of another organization runs expensive-but-valid searches flat out (wrk);
//!    reports the victim's p99 under attack divided by its idle p99 (target: at most 3).
//! 5. Prints one Markdown table (and the hostile scenario's). Ratios compare numbers taken minutes apart on the same
//!    machine; compare ratios, not absolute numbers, across machines or runs.
//!
//! Organizations "1".."100" hold the seeded issues and serve get-one, list and update;
//! creates (create, and the create share of mixed) go to organizations "101".."200" so the
//! listed organizations keep exactly 100 issues throughout.

use std::{
    collections::BTreeMap,
    fs,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    str::FromStr,
    time::{Duration, Instant},
};
use tenantry_bench::{process, streams::Listeners};

use clap::Parser;
use futures::{StreamExt, stream};
use pg_sandbox::postgres::{self as local_postgres, LocalPostgres};
use serde_json::json;
use tenantry::db::{self, SET_CONTEXT, Sql};

/// The service's default `statement_timeout`, set by both sides in the same statement.
const STATEMENT_TIMEOUT_MS: u32 = 5000;
const ORGS: u32 = 100;
const ISSUES_PER_ORG: u32 = 100;
/// Creates go to organizations WRITE_ORG_OFFSET + 1 ..= WRITE_ORG_OFFSET + ORGS.
const WRITE_ORG_OFFSET: u32 = 100;
const USER: &str = "bench-user";
const ROLE: &str = "ADMIN";
/// The issue every create sends (all five parameters set, so pgbench passes the same five).
const NEW_TITLE: &str = "Checkout button does nothing on mobile Safari";
const NEW_DESCRIPTION: &str = "Steps: add any item to the cart, open the cart on an iPhone, tap \
     Checkout. Nothing happens; the console shows a TypeError in cart.js. Desktop works.";
const NEW_STATUS: &str = "IN_PROGRESS";
const NEW_PRIORITY: &str = "HIGH";
const NEW_ASSIGNEE: &str = "dev-7";
const STATUSES: [&str; 3] = ["OPEN", "IN_PROGRESS", "DONE"];
/// The hostile scenario's attacker: one organization whose issues all hold the same ten
/// words, searched by two-letter prefixes of all ten (every issue matches: each search
/// reads HOSTILE_ISSUES × 10 term rows, under SEARCH_MAX_CANDIDATES), a page of 200.
const HOSTILE_ORG: &str = "hostile";
const HOSTILE_ISSUES: u32 = 1500;
const HOSTILE_TITLE_WORDS: &str = "alpha bravo charlie delta echo";
const HOSTILE_DESCRIPTION_WORDS: &str = "foxtrot golf hotel india juliet";
const HOSTILE_PATH: &str = "/api/issues?limit=200&q=al%20br%20ch%20de%20ec%20fo%20go%20ho%20in%20ju";
/// How often the victim of the hostile scenario asks for one of its issues.
const VICTIM_EVERY: Duration = Duration::from_millis(50);

#[derive(Parser, Debug)]
#[command(about = "Benchmark the service against pgbench running the same SQL")]
struct Args {
    /// The service binary (bench/run builds target/release/tenantry).
    #[arg(long, default_value = "target/release/tenantry")]
    bin: PathBuf,
    /// Seconds per measured run (wrk per variant, and pgbench) of each scenario.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Connections (wrk) and clients (pgbench).
    #[arg(long, default_value_t = 64)]
    connections: u32,
    /// wrk threads and pgbench threads.
    #[arg(long, default_value_t = 2)]
    threads: u32,
    /// Scenarios to run, in order.
    #[arg(long, value_delimiter = ',', default_value = "get-one,list,create,update,mixed,hostile")]
    scenarios: Vec<Scenario>,
    /// The list request: one page of 100 issues (an organization's all), what pgbench's
    /// list statement selects too.
    #[arg(long, default_value = "/api/issues?limit=100")]
    list_path: String,
    /// The list statement pgbench runs (default: the service's own, db::issues::LIST);
    /// it must take no parameters.
    #[arg(long)]
    list_sql: Option<String>,
    /// A service process to measure: NAME or NAME:VAR=VALUE,VAR=VALUE (environment for
    /// that process; BIN=path picks another binary). Repeat to compare variants in one
    /// run. Default: one variant, "service", with the default settings.
    #[arg(long = "variant")]
    variants: Vec<Variant>,
    /// Skip pgbench (quick A/B runs between variants); also skips the reference.
    #[arg(long)]
    no_pgbench: bool,
    /// The fixed reference's directory (bound-schema.sql, get-one.sql, list.sql,
    /// create.sql, update.sql), relative to the repository.
    #[arg(long, default_value = "../shared/perf-reference")]
    reference: PathBuf,
    /// Skip the fixed reference.
    #[arg(long)]
    no_reference: bool,
    /// Keep the temporary directory (cluster, logs, scripts) for inspection.
    #[arg(long)]
    keep: bool,
    /// After the scenarios, measure create and update again (first variant) with a live
    /// activity stream open, and read, on each of this many of the organizations they
    /// write to: their changes then also wake the streams (a NOTIFY, and one read per
    /// organization and wake-up). Rows "<variant> +N listening".
    #[arg(long, default_value_t = 0)]
    listening: u32,
    /// After the scenarios, measure create and update again (first variant) with one
    /// webhook endpoint on each of this many of the organizations they write to (a local
    /// receiver that answers 204): each change then also owes a delivery, which the
    /// service makes meanwhile. Rows "<variant> +N webhooks".
    #[arg(long, default_value_t = 0)]
    webhooks: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
enum Scenario {
    GetOne,
    List,
    Create,
    Update,
    Mixed,
    Hostile,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::GetOne => "get-one",
            Scenario::List => "list",
            Scenario::Create => "create",
            Scenario::Update => "update",
            Scenario::Mixed => "mixed",
            Scenario::Hostile => "hostile",
        }
    }
}

#[derive(Debug, Clone)]
struct Variant {
    name: String,
    bin: Option<PathBuf>,
    env: Vec<(String, String)>,
}

impl FromStr for Variant {
    type Err = String;

    fn from_str(spec: &str) -> Result<Self, String> {
        let (name, settings) = spec.split_once(':').unwrap_or((spec, ""));
        let mut variant = Variant { name: name.to_owned(), bin: None, env: Vec::new() };
        // Settings are separated by commas; a comma not followed by VAR= belongs to the
        // value before it (RUST_LOG=info,tenantry::http=warn).
        let mut settings_list: Vec<String> = Vec::new();
        for part in settings.split(',').filter(|s| !s.is_empty()) {
            let starts_setting = part.split_once('=').is_some_and(|(key, _)| {
                !key.is_empty()
                    && key.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
            });
            match settings_list.last_mut() {
                Some(last) if !starts_setting => *last = format!("{last},{part}"),
                _ => settings_list.push(part.to_owned()),
            }
        }
        for setting in settings_list {
            let (key, value) = setting.split_once('=').ok_or(format!("{setting}: expected VAR=VALUE"))?;
            match key {
                "BIN" => variant.bin = Some(PathBuf::from(value)),
                _ => variant.env.push((key.to_owned(), value.to_owned())),
            }
        }
        Ok(variant)
    }
}

/// What one measured run produced.
#[derive(Debug, Default, Clone)]
struct Measured {
    per_second: f64,
    count: u64,
    p50_ms: f64,
    p99_ms: f64,
    non_2xx: u64,
    socket_errors: u64,
    /// Peak resident memory of the service during the run.
    rss_mb: Option<f64>,
    /// CPU per request (ms): the service, PostgreSQL (all its processes), the load generator.
    service_cpu: Option<f64>,
    postgres_cpu: f64,
    client_cpu: f64,
}

struct Service {
    name: String,
    child: Child,
    address: String,
}

impl Drop for Service {
    fn drop(&mut self) {
        process::stop_gracefully(&mut self.child);
    }
}

fn main() {
    let mut args = Args::parse();
    if args.variants.is_empty() {
        args.variants.push(Variant { name: "service".into(), bin: None, env: Vec::new() });
    }
    let work = std::env::temp_dir().join(format!("tenantry-bench-{}", std::process::id()));
    fs::create_dir_all(&work).expect("creating the work directory");
    // The postgres user (as root) needs to reach the cluster directory.
    fs::set_permissions(&work, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let result = run(&args, &work);
    if args.keep {
        eprintln!("kept {}", work.display());
    } else {
        let _ = fs::remove_dir_all(&work);
    }
    if let Err(message) = result {
        eprintln!("benchmark failed: {message}");
        std::process::exit(1);
    }
}

fn run(args: &Args, work: &Path) -> Result<(), String> {
    let started = Instant::now();
    let load_before = loadavg();
    let wrk = which("wrk").ok_or("wrk is not installed (bench/run installs it)")?;

    let options =
        local_postgres::Options { dir: work.join("pg"), port: 0, ephemeral: false, ..Default::default() };
    let pg = LocalPostgres::start(&options).map_err(|e| e.to_string())?;
    let pgbench = [pg.bin_dir().join("pgbench")]
        .into_iter()
        .find(|p| p.is_file())
        .or_else(|| which("pgbench"))
        .ok_or("pgbench not found next to postgres or on PATH")?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(create_database(&pg))?;
    let owner_url = pg.url(local_postgres::SUPERUSER, tenantry::LOCAL_DATABASE);
    let api_url = pg.url(db::API_ROLE, tenantry::LOCAL_DATABASE);
    let postmaster = postmaster_pid(pg.data_dir())?;
    // Checkpoints only when asked (before each run): a timed or WAL-size checkpoint in the
    // middle of one run would charge its writes to whichever side happened to be running.
    for setting in ["alter system set checkpoint_timeout = '1h'", "alter system set max_wal_size = '8GB'"] {
        runtime.block_on(superuser_sql(&pg, setting))?;
    }
    runtime.block_on(superuser_sql(&pg, "select pg_reload_conf()"))?;
    let checkpoint = || runtime.block_on(superuser_sql(&pg, "checkpoint"));

    // One process per variant; the first one migrates.
    let mut services = Vec::new();
    for variant in &args.variants {
        services.push(start_service(args, variant, work, &owner_url, &api_url)?);
    }
    eprintln!("seeding {ORGS} organizations x {ISSUES_PER_ORG} issues through the API ...");
    runtime.block_on(seed(&services[0].address))?;
    if args.scenarios.contains(&Scenario::Hostile) {
        eprintln!("seeding organization {HOSTILE_ORG} with {HOSTILE_ISSUES} issues ...");
        runtime.block_on(seed_hostile(&services[0].address))?;
    }
    // Warm every variant: fill its pool, prepare its statements.
    let scripts = Scripts::write(args, work)?;
    for service in &services {
        let warm = args.duration.clamp(1, 3);
        wrk_run(&wrk, args, &scripts.wrk[&Scenario::Mixed], &service.address, warm)?;
    }

    let mut rows: Vec<(Scenario, String, Measured, Option<Measured>)> = Vec::new();
    let mut references: BTreeMap<Scenario, Measured> = BTreeMap::new();
    let mut fixed: BTreeMap<Scenario, FixedReference> = BTreeMap::new();
    let fixed_dir = fixed_reference_dir(args)?;
    if fixed_dir.is_some() {
        runtime.block_on(superuser_sql(&pg, &format!("create database {FIXED_DATABASE}")))?;
    }
    let mut hostile = Vec::new();
    for &scenario in &args.scenarios {
        if scenario == Scenario::Hostile {
            for service in &services {
                eprintln!("hostile: the victim alone, then under attack, against {} ...", service.name);
                checkpoint()?;
                hostile.push((service.name.clone(), hostile_run(&wrk, args, &scripts, service, &runtime)?));
            }
            continue;
        }
        let mut measured = Vec::new();
        for service in &services {
            eprintln!("{}: wrk against {} ...", scenario.name(), service.name);
            let script = &scripts.wrk[&scenario];
            let pid = service.child.id() as i32;
            checkpoint()?;
            let sample = Sample::take(Some(pid), postmaster);
            let mut result = wrk_run(&wrk, args, script, &service.address, args.duration)?;
            sample.finish(&mut result, Some(pid), postmaster);
            measured.push((service.name.clone(), result));
        }
        let reference = if args.no_pgbench {
            None
        } else {
            eprintln!("{}: pgbench ...", scenario.name());
            checkpoint()?;
            let sample = Sample::take(None, postmaster);
            let mut result = pgbench_run(&pgbench, args, &scripts, scenario, &pg, work)?;
            sample.finish(&mut result, None, postmaster);
            Some(result)
        };
        if let Some(reference) = &reference {
            references.insert(scenario, reference.clone());
        }
        if let Some(dir) = &fixed_dir {
            eprintln!("{}: pgbench on the fixed reference ...", scenario.name());
            let before = runtime.block_on(recreate_fixed_reference(&pg, dir))?;
            checkpoint()?;
            let sample = Sample::take(None, postmaster);
            let mut result = fixed_reference_run(&pgbench, args, dir, scenario, &pg, work)?;
            sample.finish(&mut result, None, postmaster);
            let after = runtime.block_on(fixed_reference_rows(&pg))?;
            eprintln!(
                "{}: the reference held {} issues and {} activity rows ({} in org-1) before, {} and {} ({} in org-1) after",
                scenario.name(),
                before.issues,
                before.activity,
                before.org_issues,
                after.issues,
                after.activity,
                after.org_issues
            );
            fixed.insert(scenario, FixedReference { measured: result, before, after });
        }
        for (name, result) in measured {
            rows.push((scenario, name, result, reference.clone()));
        }
    }
    // Last, so that no scenario above runs while organizations are still registered as
    // listened to (a registration outlives its streams by up to a minute).
    for scenario in [Scenario::Create, Scenario::Update].into_iter().filter(|s| args.scenarios.contains(s)) {
        if args.listening == 0 {
            break;
        }
        let service = &services[0];
        let first = if scenario == Scenario::Create { WRITE_ORG_OFFSET + 1 } else { 1 };
        let orgs: Vec<String> = (first..first + args.listening).map(|org| org.to_string()).collect();
        eprintln!(
            "{}: {} organizations listening, wrk against {} ...",
            scenario.name(),
            orgs.len(),
            service.name
        );
        let listeners = Listeners::open(&service.address, &orgs, 1, None)?;
        let pid = service.child.id() as i32;
        checkpoint()?;
        let sample = Sample::take(Some(pid), postmaster);
        let mut result = wrk_run(&wrk, args, &scripts.wrk[&scenario], &service.address, args.duration)?;
        sample.finish(&mut result, Some(pid), postmaster);
        let events = listeners.events.load(std::sync::atomic::Ordering::Relaxed);
        drop(listeners);
        eprintln!("{}: the streams received {events} events", scenario.name());
        let name = format!("{} +{} listening", service.name, args.listening);
        rows.push((scenario, name, result, references.get(&scenario).cloned()));
    }
    for scenario in [Scenario::Create, Scenario::Update].into_iter().filter(|s| args.scenarios.contains(s)) {
        if args.webhooks == 0 {
            break;
        }
        let service = &services[0];
        let first = if scenario == Scenario::Create { WRITE_ORG_OFFSET + 1 } else { 1 };
        let orgs: Vec<String> = (first..first + args.webhooks).map(|org| org.to_string()).collect();
        let receiver = Receiver::start()?;
        runtime.block_on(register_webhooks(&service.address, &orgs, &receiver.url, "POST"))?;
        eprintln!(
            "{}: {} organizations with a webhook, wrk against {} ...",
            scenario.name(),
            orgs.len(),
            service.name
        );
        let pid = service.child.id() as i32;
        checkpoint()?;
        let sample = Sample::take(Some(pid), postmaster);
        let mut result = wrk_run(&wrk, args, &scripts.wrk[&scenario], &service.address, args.duration)?;
        sample.finish(&mut result, Some(pid), postmaster);
        runtime.block_on(register_webhooks(&service.address, &orgs, &receiver.url, "DELETE"))?;
        let received = receiver.received.load(std::sync::atomic::Ordering::Relaxed);
        eprintln!("{}: the receiver got {received} deliveries during the run", scenario.name());
        let name = format!("{} +{} webhooks", service.name, args.webhooks);
        rows.push((scenario, name, result, references.get(&scenario).cloned()));
    }
    // Each scenario's rows together.
    rows.sort_by_key(|(scenario, ..)| *scenario);
    drop(services);

    print_report(args, &rows, &fixed, started.elapsed(), load_before, loadavg());
    print_hostile_report(&hostile);
    Ok(())
}

/// A webhook receiver on loopback that answers every request 204 and counts them.
struct Receiver {
    url: String,
    received: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Receiver {
    /// Serves on a thread of its own (the benchmark's runtime runs only while it awaits).
    fn start() -> Result<Receiver, String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let url = format!("http://{}/hooks", listener.local_addr().map_err(|e| e.to_string())?);
        let received = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = received.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                while let Ok((mut socket, _)) = listener.accept().await {
                    let counter = counter.clone();
                    tokio::spawn(async move {
                        // The headers, then content-length bytes of body; then 204 and close.
                        let mut buffer = Vec::new();
                        let mut chunk = [0u8; 8192];
                        loop {
                            let Ok(n) = socket.read(&mut chunk).await else { return };
                            if n == 0 {
                                return;
                            }
                            buffer.extend_from_slice(&chunk[..n]);
                            let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
                                continue;
                            };
                            let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
                            let length: usize = head
                                .lines()
                                .find_map(|line| line.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse().ok())
                                .unwrap_or(0);
                            if buffer.len() >= end + 4 + length {
                                break;
                            }
                        }
                        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let _ =
                            socket.write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n").await;
                    });
                }
            });
        });
        Ok(Receiver { url, received })
    }
}

/// Creates (POST) or deletes (DELETE) webhook 1 of each organization, as its ADMIN.
async fn register_webhooks(address: &str, orgs: &[String], url: &str, method: &str) -> Result<(), String> {
    let client = reqwest::Client::new();
    for org in orgs {
        let request = match method {
            "POST" => client.post(format!("{address}/api/webhooks")).json(&json!({"url": url})),
            _ => client.delete(format!("{address}/api/webhooks/1")),
        };
        let response = request
            .header("x-organization-id", org)
            .header("x-user-id", "bench-admin")
            .header("x-user-role", "ADMIN")
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("{method} webhook of {org}: {}", response.status()));
        }
    }
    Ok(())
}

async fn create_database(pg: &LocalPostgres) -> Result<(), String> {
    superuser_sql(pg, &format!("create database {}", tenantry::LOCAL_DATABASE)).await
}

async fn superuser_sql(pg: &LocalPostgres, sql: &str) -> Result<(), String> {
    let config = tokio_postgres::Config::from_str(&pg.url(local_postgres::SUPERUSER, "postgres")).unwrap();
    let client = db::connect_owner(&config).await.map_err(|e| e.to_string())?;
    client.batch_execute(sql).await.map_err(|e| e.to_string())
}

fn start_service(
    args: &Args,
    variant: &Variant,
    work: &Path,
    owner_url: &str,
    api_url: &str,
) -> Result<Service, String> {
    let bin = variant.bin.as_ref().unwrap_or(&args.bin);
    let log_path = work.join(format!("service-{}.log", variant.name));
    let log = fs::File::create(&log_path).map_err(|e| e.to_string())?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map_err(|e| format!("finding a free port: {e}"))?
        .port();
    let mut command = Command::new(bin);
    // Only the variant's settings: nothing inherited from the caller's environment.
    for name in [
        "DATABASE_POOL_SIZE",
        "DATABASE_STATEMENTS",
        "DATABASE_STATEMENT_TIMEOUT_MS",
        "RUST_LOG",
        "LOG_FORMAT",
        "TOKIO_WORKER_THREADS",
        "AUTH_MODE",
    ] {
        command.env_remove(name);
    }
    // The limiter stays in the path (its cost is part of the measurement) but far above
    // what two cores can send: a benchmark user would otherwise meet its 200 req/s.
    for (name, value) in [
        ("RATE_LIMIT_ORG_PER_SECOND", "1000000"),
        ("RATE_LIMIT_ORG_BURST", "1000000"),
        ("RATE_LIMIT_USER_PER_SECOND", "1000000"),
        ("RATE_LIMIT_USER_BURST", "1000000"),
        // --webhooks: the receiver is on loopback.
        ("WEBHOOK_ALLOW_INSECURE_TARGETS", "1"),
    ] {
        command.env(name, value);
    }
    command.env("DATABASE_STATEMENT_TIMEOUT_MS", STATEMENT_TIMEOUT_MS.to_string());
    command
        .env("DATABASE_URL", owner_url)
        .env("API_DATABASE_URL", api_url)
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .envs(variant.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        // A file, the cheapest sink: the access log is part of the measured work.
        .stderr(log);
    let mut child = command.spawn().map_err(|e| format!("starting {}: {e}", bin.display()))?;
    // Ready once it accepts connections (it binds after migrating and checking its role).
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        let log = || fs::read_to_string(&log_path).unwrap_or_default();
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("variant {} exited ({status}):\n{}", variant.name, log()));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(format!("variant {} did not start:\n{}", variant.name, log()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let address = format!("http://127.0.0.1:{port}");
    eprintln!("variant {} ({}) serves {address}", variant.name, bin.display());
    Ok(Service { name: variant.name.clone(), child, address })
}

/// 100 organizations × 100 issues through POST /api/issues, 32 at a time.
async fn seed(address: &str) -> Result<(), String> {
    let jobs = (1..=ORGS).flat_map(|org| (1..=ISSUES_PER_ORG).map(move |n| (org, n)));
    let creates = jobs.map(|(org, n)| {
        let priority = ["LOW", "MEDIUM", "HIGH"][n as usize % 3];
        let body = json!({
            "title": format!("Issue {n} of organization {org}: search results miss archived items"),
            "description": format!(
                "Searching for an archived project by name returns nothing (seed {org}/{n}). \
                 Expected: archived items listed after active ones, greyed out."
            ),
            "priority": priority,
        });
        (org.to_string(), USER, body)
    });
    create_all(address, creates).await
}

/// Every create, 32 at a time; fails with the first failure's cause.
async fn create_all(
    address: &str,
    creates: impl Iterator<Item = (String, &'static str, serde_json::Value)>,
) -> Result<(), String> {
    let client = reqwest::Client::new();
    let failures: Vec<String> = stream::iter(creates)
        .map(|(org, user, body)| {
            let client = &client;
            async move {
                match create_retrying(client, address, &org, user, &body).await {
                    Ok(r) if r.status() == reqwest::StatusCode::CREATED => None,
                    Ok(r) => Some(format!("org {org} {}: {}", body["title"], r.status())),
                    Err(e) => Some(format!("org {org} {}: {e}", body["title"])),
                }
            }
        })
        .buffer_unordered(32)
        .filter_map(|failure| async move { failure })
        .collect()
        .await;
    match failures.first() {
        None => Ok(()),
        Some(first) => Err(format!("{} seeding requests failed, first: {first}", failures.len())),
    }
}

/// POST /api/issues, again after a 429 (seeding 32 at a time can exceed one
/// organization's share of the pool on a busy machine).
async fn create_retrying(
    client: &reqwest::Client,
    address: &str,
    org: &str,
    user: &str,
    body: &serde_json::Value,
) -> reqwest::Result<reqwest::Response> {
    loop {
        let response = client
            .post(format!("{address}/api/issues"))
            .header("x-organization-id", org)
            .header("x-user-id", user)
            .header("x-user-role", ROLE)
            .json(body)
            .send()
            .await?;
        if response.status() != reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Ok(response);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The wrk Lua scripts and pgbench scripts of every scenario.
struct Scripts {
    wrk: BTreeMap<Scenario, PathBuf>,
    /// pgbench `-f file@weight` arguments per scenario.
    pgbench: BTreeMap<Scenario, Vec<String>>,
}

impl Scripts {
    fn write(args: &Args, work: &Path) -> Result<Scripts, String> {
        let write = |name: &str, text: String| -> Result<PathBuf, String> {
            let path = work.join(name);
            fs::write(&path, text).map_err(|e| e.to_string())?;
            Ok(path)
        };
        let mut wrk = BTreeMap::new();
        wrk.insert(Scenario::Hostile, write("hostile.lua", hostile_wrk_script())?);
        for scenario in
            [Scenario::GetOne, Scenario::List, Scenario::Create, Scenario::Update, Scenario::Mixed]
        {
            let path = write(&format!("{}.lua", scenario.name()), wrk_script(scenario, &args.list_path))?;
            wrk.insert(scenario, path);
        }

        // pgbench: the service's statements, $n turned into pgbench variables.
        let context = pgbench_sql(SET_CONTEXT, &[":org", ":user", ":role", ":timeout", "'0'", "'0'"]);
        let transaction = |org: &str, call: String| {
            format!(
                "\\set org {org}\n\\set id random(1, {ISSUES_PER_ORG})\n\\set timeout {STATEMENT_TIMEOUT_MS}\n\
                 begin;\n{context};\n{call};\ncommit;\n"
            )
        };
        let read_org = format!("random(1, {ORGS})");
        let write_org = format!("{WRITE_ORG_OFFSET} + random(1, {ORGS})");
        let list_sql = match &args.list_sql {
            Some(sql) => sql.clone(),
            // As the service calls it for `?limit=100`: a page of 100, nothing else set.
            None => pgbench_sql(
                db::issues::LIST,
                &[
                    "100", "null", "null", "null", "null", "null", "null", "null", "null", "null", "null",
                    "null", "1048576",
                ],
            ),
        };
        let get = write("get-one.sql", transaction(&read_org, pgbench_sql(db::issues::GET, &[":id"])))?;
        let list = write("list.sql", transaction(&read_org, list_sql))?;
        let create = write(
            "create.sql",
            transaction(
                &write_org,
                pgbench_sql(
                    db::issues::CREATE,
                    &[":title", ":description", ":status", ":priority", ":assignee"],
                ),
            ),
        )?;
        let mut updates = Vec::new();
        for status in STATUSES {
            // No If-Match: the service binds NULL as the expected version.
            let call = pgbench_sql(db::issues::UPDATE, &[":id", &format!(":patch_{status}"), "null"]);
            updates.push(write(&format!("update-{status}.sql"), transaction(&read_org, call))?);
        }
        let weighted = |path: &PathBuf, weight: u32| format!("{}@{weight}", path.display());
        let mut pgbench = BTreeMap::new();
        pgbench.insert(Scenario::GetOne, vec![weighted(&get, 1)]);
        pgbench.insert(Scenario::List, vec![weighted(&list, 1)]);
        pgbench.insert(Scenario::Create, vec![weighted(&create, 1)]);
        pgbench.insert(Scenario::Update, updates.iter().map(|u| weighted(u, 1)).collect());
        // 70 / 10 / 10 / 10, the update tenth split evenly over the three statuses.
        let mut mixed = vec![weighted(&get, 210), weighted(&list, 30), weighted(&create, 30)];
        mixed.extend(updates.iter().map(|u| weighted(u, 10)));
        pgbench.insert(Scenario::Mixed, mixed);
        Ok(Scripts { wrk, pgbench })
    }
}

/// `sql` with `$1`, `$2`, ... replaced by pgbench variables (with -M prepared pgbench binds
/// them as parameters again).
fn pgbench_sql(sql: Sql, variables: &[&str]) -> String {
    assert_eq!(
        sql.param_types.len(),
        variables.len(),
        "the benchmark's pgbench mapping is out of date for: {}",
        sql.text
    );
    let mut text = sql.text.to_owned();
    // Highest first, so $1 does not eat the start of $10.
    for (n, variable) in variables.iter().enumerate().rev() {
        text = text.replace(&format!("${}", n + 1), variable);
    }
    text
}

/// A wrk script: requests prepared in `init` (so wrk spends little per request), spread
/// at random over organizations and issues, and a `done` that prints one parsable line.
fn wrk_script(scenario: Scenario, list_path: &str) -> String {
    let body = json!({
        "title": NEW_TITLE, "description": NEW_DESCRIPTION, "status": NEW_STATUS,
        "priority": NEW_PRIORITY, "assigneeId": NEW_ASSIGNEE,
    })
    .to_string();
    let mix = match scenario {
        Scenario::GetOne => "return gets[math.random(#gets)]",
        Scenario::List => "return lists[math.random(#lists)]",
        Scenario::Create => "return creates[math.random(#creates)]",
        Scenario::Update => "return updates[math.random(#updates)]",
        Scenario::Mixed => {
            "local r = math.random(100)
  if r <= 70 then return gets[math.random(#gets)]
  elseif r <= 80 then return lists[math.random(#lists)]
  elseif r <= 90 then return creates[math.random(#creates)]
  else return updates[math.random(#updates)] end"
        }
        Scenario::Hostile => unreachable!("the hostile scenario has its own script"),
    };
    format!(
        r#"-- Generated by bench/src/bin/bench.rs ({scenario}).
local orgs, issues, write_offset = {ORGS}, {ISSUES_PER_ORG}, {WRITE_ORG_OFFSET}
local statuses = {{ "OPEN", "IN_PROGRESS", "DONE" }}
local gets, lists, creates, updates = {{}}, {{}}, {{}}, {{}}
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("thread_number", threads)
end

local function headers(org, json)
  local h = {{ ["x-organization-id"] = tostring(org), ["x-user-id"] = "{USER}", ["x-user-role"] = "{ROLE}" }}
  if json then h["content-type"] = "application/json" end
  return h
end

function init(args)
  math.randomseed(os.time() * 1000 + (thread_number or 0) * 7919)
  for i = 1, 4096 do
    local org, id = math.random(orgs), math.random(issues)
    gets[i] = wrk.format("GET", "/api/issues/" .. id, headers(org))
    lists[i] = wrk.format("GET", "{list_path}", headers(org))
    creates[i] = wrk.format("POST", "/api/issues", headers(write_offset + math.random(orgs), true), '{body}')
    updates[i] = wrk.format("PATCH", "/api/issues/" .. id, headers(org, true),
      '{{"status":"' .. statuses[math.random(3)] .. '"}}')
  end
end

function request()
  {mix}
end

{WRK_DONE}"#,
        scenario = scenario.name(),
    )
}

/// The `done` of every wrk script: one line wrk_run parses.
const WRK_DONE: &str = r#"
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK_RESULT %d %d %d %d %d %d %d %d %d\n", summary.requests, summary.duration,
    e.connect, e.read, e.write, e.status, e.timeout, latency:percentile(50), latency:percentile(99)))
end
"#;

/// The attacker: one MEMBER of HOSTILE_ORG asking for the same expensive search.
fn hostile_wrk_script() -> String {
    format!(
        r#"-- Generated by bench/src/bin/bench.rs (hostile).
local request_text
function init(args)
  request_text = wrk.format("GET", "{HOSTILE_PATH}",
    {{ ["x-organization-id"] = "{HOSTILE_ORG}", ["x-user-id"] = "hoarder", ["x-user-role"] = "MEMBER" }})
end

function request()
  return request_text
end
{WRK_DONE}"#
    )
}

/// HOSTILE_ISSUES issues in HOSTILE_ORG, 32 creates at a time.
async fn seed_hostile(address: &str) -> Result<(), String> {
    let creates = (1..=HOSTILE_ISSUES).map(|n| {
        let body =
            json!({"title": format!("{HOSTILE_TITLE_WORDS} {n}"), "description": HOSTILE_DESCRIPTION_WORDS});
        (HOSTILE_ORG.to_owned(), "hoarder", body)
    });
    create_all(address, creates).await
}

/// What the victim of the hostile scenario saw.
#[derive(Debug, Default, Clone)]
struct VictimLatencies {
    count: usize,
    p50_ms: f64,
    p99_ms: f64,
    /// Answers other than 200, and requests that failed outright.
    failures: usize,
}

struct HostileResult {
    idle: VictimLatencies,
    attacked: VictimLatencies,
    attacker: Measured,
}

/// The victim alone for `--duration` seconds, then again while wrk runs the attacker.
fn hostile_run(
    wrk: &Path,
    args: &Args,
    scripts: &Scripts,
    service: &Service,
    runtime: &tokio::runtime::Runtime,
) -> Result<HostileResult, String> {
    let seconds = Duration::from_secs(args.duration);
    let idle = runtime.block_on(victim(&service.address, seconds));
    let attack = std::thread::scope(|scope| {
        let attacker = scope.spawn(|| {
            wrk_run(wrk, args, &scripts.wrk[&Scenario::Hostile], &service.address, args.duration + 2)
        });
        // The attacker at full speed first (wrk connects all its connections at once).
        let attacked = runtime.block_on(async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            victim(&service.address, seconds).await
        });
        attacker.join().expect("the wrk thread").map(|attacker| (attacked, attacker))
    });
    let (attacked, attacker) = attack?;
    Ok(HostileResult { idle, attacked, attacker })
}

/// One GET of one of its issues every VICTIM_EVERY, from organizations 1..=ORGS in turn.
async fn victim(address: &str, duration: Duration) -> VictimLatencies {
    let client = reqwest::Client::new();
    let mut every = tokio::time::interval(VICTIM_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let end = Instant::now() + duration;
    let (mut latencies, mut failures) = (Vec::new(), 0);
    for n in 0u32.. {
        every.tick().await;
        if Instant::now() >= end {
            break;
        }
        let (org, id) = (n % ORGS + 1, n * 7 % ISSUES_PER_ORG + 1);
        let started = Instant::now();
        let response = client
            .get(format!("{address}/api/issues/{id}"))
            .header("x-organization-id", org.to_string())
            .header("x-user-id", USER)
            .header("x-user-role", ROLE)
            .send()
            .await;
        let ok = match response {
            Ok(response) => response.status() == reqwest::StatusCode::OK && response.bytes().await.is_ok(),
            Err(_) => false,
        };
        latencies.push(started.elapsed());
        failures += usize::from(!ok);
    }
    latencies.sort_unstable();
    let percentile = |p: f64| {
        let index =
            ((latencies.len() as f64 * p / 100.0).ceil() as usize).clamp(1, latencies.len().max(1)) - 1;
        latencies.get(index).map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    };
    VictimLatencies { count: latencies.len(), p50_ms: percentile(50.0), p99_ms: percentile(99.0), failures }
}

fn print_hostile_report(results: &[(String, HostileResult)]) {
    if results.is_empty() {
        return;
    }
    println!(
        "\nhostile: a victim organization's GET every {} ms, alone, then while one MEMBER of another runs \
         GET {HOSTILE_PATH} flat out\n",
        VICTIM_EVERY.as_millis()
    );
    println!(
        "| variant | victim p50 / p99 ms, idle | victim p50 / p99 ms, under attack | p99 under attack ÷ idle | \
         victim requests | victim failures | attacker req/s | attacker non-2xx |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut misses = Vec::new();
    for (variant, result) in results {
        let ratio = result.attacked.p99_ms / result.idle.p99_ms;
        println!(
            "| {variant} | {:.2} / {:.2} | {:.2} / {:.2} | {ratio:.2} | {} + {} | {} + {} | {:.0} | {} |",
            result.idle.p50_ms,
            result.idle.p99_ms,
            result.attacked.p50_ms,
            result.attacked.p99_ms,
            result.idle.count,
            result.attacked.count,
            result.idle.failures,
            result.attacked.failures,
            result.attacker.per_second,
            result.attacker.non_2xx,
        );
        if ratio > 3.0 {
            misses
                .push(format!("{variant}: the victim's p99 under attack is {ratio:.2} × its idle p99 (> 3)"));
        }
        if result.idle.failures + result.attacked.failures > 0 {
            misses.push(format!("{variant}: the victim had failures"));
        }
    }
    println!();
    if misses.is_empty() {
        println!("hostile targets (p99 under attack <= 3 × idle, no victim failure): all met");
    } else {
        println!("hostile targets missed:");
        for miss in misses {
            println!("- {miss}");
        }
    }
}

fn wrk_run(wrk: &Path, args: &Args, script: &Path, address: &str, seconds: u64) -> Result<Measured, String> {
    let before = children_cpu_ms();
    let output = Command::new(wrk)
        .args(["-t", &args.threads.to_string(), "-c", &args.connections.to_string()])
        .args(["-d", &format!("{seconds}s"), "--timeout", "10s", "-s"])
        .arg(script)
        .arg(address)
        .output()
        .map_err(|e| format!("running wrk: {e}"))?;
    let client_ms = children_cpu_ms() - before;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().find_map(|l| l.strip_prefix("WRK_RESULT ")).ok_or_else(|| {
        format!("wrk printed no result:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr))
    })?;
    let n: Vec<f64> = line.split_whitespace().map(|v| v.parse().unwrap_or(f64::NAN)).collect();
    let [requests, duration_us, connect, read, write, status, timeout, p50, p99] = n[..] else {
        return Err(format!("unexpected wrk result: {line}"));
    };
    Ok(Measured {
        per_second: requests / (duration_us / 1e6),
        count: requests as u64,
        p50_ms: p50 / 1000.0,
        p99_ms: p99 / 1000.0,
        non_2xx: status as u64,
        socket_errors: (connect + read + write + timeout) as u64,
        client_cpu: client_ms / requests,
        ..Measured::default()
    })
}

fn pgbench_run(
    pgbench: &Path,
    args: &Args,
    scripts: &Scripts,
    scenario: Scenario,
    pg: &LocalPostgres,
    work: &Path,
) -> Result<Measured, String> {
    let log_dir = work.join(format!("pgbench-{}", scenario.name()));
    let mut command = Command::new(pgbench);
    command
        .args(["-h", "127.0.0.1", "-p", &pg.port().to_string(), "-U", db::API_ROLE])
        .args(["-D", &format!("user={USER}"), "-D", &format!("role={ROLE}")])
        .args(["-D", &format!("title={NEW_TITLE}"), "-D", &format!("description={NEW_DESCRIPTION}")])
        .args(["-D", &format!("status={NEW_STATUS}"), "-D", &format!("priority={NEW_PRIORITY}")])
        .args(["-D", &format!("assignee={NEW_ASSIGNEE}")]);
    for status in STATUSES {
        command.args(["-D", &format!("patch_{status}={}", json!({ "status": status }))]);
    }
    for script in &scripts.pgbench[&scenario] {
        command.args(["-f", script]);
    }
    run_pgbench(command, args, &log_dir, tenantry::LOCAL_DATABASE)
}

/// Runs pgbench (connection and scripts already given) with the run's clients, threads and
/// duration, prepared statements and a per-transaction log in log_dir, against database.
fn run_pgbench(
    mut command: Command,
    args: &Args,
    log_dir: &Path,
    database: &str,
) -> Result<Measured, String> {
    fs::create_dir_all(log_dir).map_err(|e| e.to_string())?;
    command
        .args(["-n", "-M", "prepared", "-c", &args.connections.to_string(), "-j", &args.threads.to_string()])
        .args(["-T", &args.duration.to_string(), "-l", "--log-prefix"])
        .arg(log_dir.join("tx"))
        .arg(database)
        .env("PGOPTIONS", "")
        .current_dir(log_dir);
    let before = children_cpu_ms();
    let output = command.output().map_err(|e| format!("running pgbench: {e}"))?;
    let client_ms = children_cpu_ms() - before;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        return Err(format!("pgbench failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr)));
    }
    let value = |prefix: &str| -> Option<f64> {
        stdout.lines().find_map(|l| l.trim().strip_prefix(prefix))?.split_whitespace().next()?.parse().ok()
    };
    let tps = value("tps = ").ok_or_else(|| format!("no tps in pgbench output:\n{stdout}"))?;
    let failed = value("number of failed transactions: ").unwrap_or(0.0);
    let count = value("number of transactions actually processed: ").unwrap_or(0.0);

    // Per-transaction log lines: client, transaction, latency (µs), script, epoch s, µs.
    let mut latencies = Vec::new();
    for entry in fs::read_dir(log_dir).map_err(|e| e.to_string())?.flatten() {
        let file = fs::File::open(entry.path()).map_err(|e| e.to_string())?;
        for line in BufReader::new(file).lines().map_while(Result::ok) {
            if let Some(latency) = line.split_whitespace().nth(2).and_then(|v| v.parse::<u64>().ok()) {
                latencies.push(latency);
            }
        }
    }
    let _ = fs::remove_dir_all(log_dir);
    latencies.sort_unstable();
    let percentile = |p: f64| -> f64 {
        if latencies.is_empty() {
            return f64::NAN;
        }
        let index = ((latencies.len() as f64 * p / 100.0).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[index] as f64 / 1000.0
    };
    Ok(Measured {
        per_second: tps,
        count: count as u64,
        p50_ms: percentile(50.0),
        p99_ms: percentile(99.0),
        non_2xx: failed as u64,
        socket_errors: 0,
        client_cpu: client_ms / count.max(1.0),
        ..Measured::default()
    })
}

/// The database the fixed reference runs in, on the benchmark's server.
const FIXED_DATABASE: &str = "fixed_reference";
/// The reference's own organization ids ("org-1" ..): its scripts address its issues by
/// number, (org - 1) * per + i.
const FIXED_ORG: &str = "org-1";
/// The least each scenario should reach against the fixed reference (issue 19).
const FIXED_TARGETS: [(Scenario, f64); 5] = [
    (Scenario::GetOne, 0.8),
    (Scenario::List, 0.6),
    (Scenario::Create, 0.5),
    (Scenario::Update, 0.8),
    (Scenario::Mixed, 0.8),
];

/// A pgbench run of the fixed reference, and the rows its database held around it.
struct FixedReference {
    measured: Measured,
    before: FixedRows,
    after: FixedRows,
}

/// Row counts of the reference database.
#[derive(Debug, Clone, Copy)]
struct FixedRows {
    issues: i64,
    activity: i64,
    /// Issues of one organization: what a reference list returns.
    org_issues: i64,
}

/// The reference's directory, or None when it is skipped (or, when it is the default and
/// missing, with a message).
fn fixed_reference_dir(args: &Args) -> Result<Option<PathBuf>, String> {
    if args.no_pgbench || args.no_reference {
        return Ok(None);
    }
    let dir = &args.reference;
    let files = ["bound-schema.sql", "get-one.sql", "list.sql", "create.sql", "update.sql"];
    if let Some(missing) = files.iter().find(|f| !dir.join(f).is_file()) {
        return Err(format!(
            "the fixed reference lacks {} (--reference {}; --no-reference to skip it)",
            missing,
            dir.display()
        ));
    }
    Ok(Some(fs::canonicalize(dir).map_err(|e| e.to_string())?))
}

/// Re-creates the reference's tables from bound-schema.sql (ORGS × ISSUES_PER_ORG issues,
/// one activity row each) and returns the rows it then holds.
async fn recreate_fixed_reference(pg: &LocalPostgres, dir: &Path) -> Result<FixedRows, String> {
    let psql = pg.bin_dir().join("psql");
    let psql = if psql.is_file() { psql } else { which("psql").ok_or("psql not found")? };
    let output = Command::new(psql)
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", &format!("orgs={ORGS}")])
        .args(["-v", &format!("per={ISSUES_PER_ORG}"), "-f"])
        .arg(dir.join("bound-schema.sql"))
        .arg(pg.url(local_postgres::SUPERUSER, FIXED_DATABASE))
        .env("PGOPTIONS", "-c client_min_messages=warning")
        .output()
        .map_err(|e| format!("running psql: {e}"))?;
    if !output.status.success() {
        return Err(format!("bound-schema.sql failed:\n{}", String::from_utf8_lossy(&output.stderr)));
    }
    let rows = fixed_reference_rows(pg).await?;
    let expected = i64::from(ORGS * ISSUES_PER_ORG);
    if rows.issues != expected || rows.org_issues != i64::from(ISSUES_PER_ORG) {
        return Err(format!("the re-created reference holds {rows:?}, not {expected} issues"));
    }
    Ok(rows)
}

async fn fixed_reference_rows(pg: &LocalPostgres) -> Result<FixedRows, String> {
    let config =
        tokio_postgres::Config::from_str(&pg.url(local_postgres::SUPERUSER, FIXED_DATABASE)).unwrap();
    let client = db::connect_owner(&config).await.map_err(|e| e.to_string())?;
    let row = client
        .query_one(
            "select (select count(*) from issues), (select count(*) from activity_logs), \
             (select count(*) from issues where organization_id = $1)",
            &[&FIXED_ORG],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(FixedRows { issues: row.get(0), activity: row.get(1), org_issues: row.get(2) })
}

/// pgbench with the reference's scripts for one scenario (mixed: 70/10/10/10, as its
/// README says), as the superuser (the reference has no row-level security).
fn fixed_reference_run(
    pgbench: &Path,
    args: &Args,
    dir: &Path,
    scenario: Scenario,
    pg: &LocalPostgres,
    work: &Path,
) -> Result<Measured, String> {
    let file = |name: &str, weight: u32| format!("{}@{weight}", dir.join(name).display());
    let scripts = match scenario {
        Scenario::GetOne => vec![file("get-one.sql", 1)],
        Scenario::List => vec![file("list.sql", 1)],
        Scenario::Create => vec![file("create.sql", 1)],
        Scenario::Update => vec![file("update.sql", 1)],
        Scenario::Mixed => {
            vec![
                file("get-one.sql", 70),
                file("list.sql", 10),
                file("create.sql", 10),
                file("update.sql", 10),
            ]
        }
        Scenario::Hostile => unreachable!("the hostile scenario has no reference"),
    };
    let log_dir = work.join(format!("reference-{}", scenario.name()));
    let mut command = Command::new(pgbench);
    command.args(["-h", "127.0.0.1", "-p", &pg.port().to_string(), "-U", local_postgres::SUPERUSER]).args([
        "-D",
        &format!("orgs={ORGS}"),
        "-D",
        &format!("per={ISSUES_PER_ORG}"),
    ]);
    for script in &scripts {
        command.args(["-f", script]);
    }
    run_pgbench(command, args, &log_dir, FIXED_DATABASE)
}

/// CPU counters before a run.
struct Sample {
    service_ms: Option<f64>,
    postgres_ms: f64,
}

impl Sample {
    fn take(service: Option<i32>, postmaster: i32) -> Sample {
        if let Some(pid) = service {
            // Resets the peak resident size (VmHWM) to the current one.
            let _ = fs::write(format!("/proc/{pid}/clear_refs"), "5");
        }
        Sample { service_ms: service.and_then(process_cpu_ms), postgres_ms: postgres_cpu_ms(postmaster) }
    }

    fn finish(self, result: &mut Measured, service: Option<i32>, postmaster: i32) {
        let count = result.count.max(1) as f64;
        if let (Some(pid), Some(before)) = (service, self.service_ms) {
            result.service_cpu = process_cpu_ms(pid).map(|after| (after - before) / count);
            result.rss_mb = peak_rss_mb(pid);
        }
        result.postgres_cpu = (postgres_cpu_ms(postmaster) - self.postgres_ms) / count;
    }
}

fn ticks_per_ms() -> f64 {
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64 / 1000.0
}

/// utime, stime, cutime, cstime of a process (clock ticks), from /proc/PID/stat.
fn cpu_fields(pid: i32) -> Option<(i32, [f64; 4])> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may hold spaces: state is field 3.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ppid = fields.get(1)?.parse().ok()?;
    let time = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    Some((ppid, [time(11), time(12), time(13), time(14)]))
}

fn process_cpu_ms(pid: i32) -> Option<f64> {
    let (_, [user, system, ..]) = cpu_fields(pid)?;
    Some((user + system) / ticks_per_ms())
}

/// All CPU PostgreSQL used so far: the postmaster with its exited children, plus the
/// children alive now (backends, background workers).
fn postgres_cpu_ms(postmaster: i32) -> f64 {
    let mut ticks = cpu_fields(postmaster).map_or(0.0, |(_, t)| t.iter().sum());
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        if let Some((ppid, [user, system, ..])) = cpu_fields(pid)
            && ppid == postmaster
        {
            ticks += user + system;
        }
    }
    ticks / ticks_per_ms()
}

fn peak_rss_mb(pid: i32) -> Option<f64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// CPU of every child process waited for so far (wrk and pgbench runs).
fn children_cpu_ms() -> f64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1000.0 + t.tv_usec as f64 / 1000.0;
    ms(usage.ru_utime) + ms(usage.ru_stime)
}

fn postmaster_pid(data_dir: &Path) -> Result<i32, String> {
    let text = fs::read_to_string(data_dir.join("postmaster.pid")).map_err(|e| e.to_string())?;
    text.lines().next().and_then(|l| l.trim().parse().ok()).ok_or("no pid in postmaster.pid".into())
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(program)).find(|p| p.is_file())
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn print_report(
    args: &Args,
    rows: &[(Scenario, String, Measured, Option<Measured>)],
    fixed: &BTreeMap<Scenario, FixedReference>,
    elapsed: Duration,
    load_before: String,
    load_after: String,
) {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    if rows.is_empty() {
        println!("\n{cores} cores; load average {load_before} before, {load_after} after");
        return;
    }
    println!(
        "\n{} s per run, {} connections, {} threads; {cores} cores; load average {load_before} before, \
         {load_after} after; {:.0} s in all. list: GET {}",
        args.duration,
        args.connections,
        args.threads,
        elapsed.as_secs_f64(),
        args.list_path
    );
    println!();
    println!(
        "| scenario | variant | service req/s | pgbench tps (same SQL) | ratio | reference tps | ÷ reference | \
         p50 ms svc / pg | p99 ms svc / pg | \
         non-2xx | socket errors | service peak RSS MB | service CPU ms/req | PostgreSQL CPU ms/req svc / pg / ref | \
         load generator CPU ms/req wrk / pgbench |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut misses = Vec::new();
    for (scenario, variant, svc, pg) in rows {
        let opt = |v: Option<f64>, digits: usize| v.map_or("-".to_owned(), |v| format!("{v:.digits$}"));
        let pg_value = |f: fn(&Measured) -> f64, digits: usize| opt(pg.as_ref().map(f), digits);
        let ratio = pg.as_ref().map(|pg| svc.per_second / pg.per_second);
        let reference = fixed.get(scenario).map(|f| &f.measured);
        let reference_ratio = reference.map(|r| svc.per_second / r.per_second);
        println!(
            "| {} | {variant} | {:.0} | {} | {} | {} | {} | {:.2} / {} | {:.2} / {} | {} | {} | {} | {} | {:.3} / {} / {} | {:.3} / {} |",
            scenario.name(),
            svc.per_second,
            pg_value(|m| m.per_second, 0),
            opt(ratio, 2),
            opt(reference.map(|r| r.per_second), 0),
            opt(reference_ratio, 2),
            svc.p50_ms,
            pg_value(|m| m.p50_ms, 2),
            svc.p99_ms,
            pg_value(|m| m.p99_ms, 2),
            svc.non_2xx,
            svc.socket_errors,
            opt(svc.rss_mb, 1),
            opt(svc.service_cpu, 3),
            svc.postgres_cpu,
            pg_value(|m| m.postgres_cpu, 3),
            opt(reference.map(|r| r.postgres_cpu), 3),
            svc.client_cpu,
            pg_value(|m| m.client_cpu, 3),
        );
        let what = format!("{} ({variant})", scenario.name());
        if let Some(pg) = pg {
            if svc.per_second < 0.8 * pg.per_second {
                misses.push(format!("{what}: ratio {:.2} < 0.8", svc.per_second / pg.per_second));
            }
            if svc.p99_ms > 1.5 * pg.p99_ms {
                misses
                    .push(format!("{what}: p99 {:.2} ms > 1.5 × pgbench's {:.2} ms", svc.p99_ms, pg.p99_ms));
            }
            if pg.non_2xx > 0 {
                misses.push(format!("{what}: pgbench had {} failed transactions", pg.non_2xx));
            }
        }
        if let (Some(ratio), Some((_, target))) =
            (reference_ratio, FIXED_TARGETS.iter().find(|(s, _)| s == scenario))
            && ratio < *target
        {
            misses.push(format!("{what}: {ratio:.2} of the fixed reference < {target}"));
        }
        if svc.non_2xx + svc.socket_errors > 0 {
            misses.push(format!("{what}: {} non-2xx, {} socket errors", svc.non_2xx, svc.socket_errors));
        }
        if svc.rss_mb.is_some_and(|mb| mb > 50.0) {
            misses.push(format!("{what}: peak RSS {:.1} MB > 50", svc.rss_mb.unwrap_or_default()));
        }
    }
    if !fixed.is_empty() {
        println!();
        println!(
            "The fixed reference ({FIXED_DATABASE}, re-created from bound-schema.sql before each scenario): \
             rows it held before and after each run"
        );
        println!();
        println!(
            "| scenario | issues before → after | activity rows before → after | issues of {FIXED_ORG} before → after | failed transactions |"
        );
        println!("|---|---:|---:|---:|---:|");
        for (scenario, f) in fixed {
            println!(
                "| {} | {} → {} | {} → {} | {} → {} | {} |",
                scenario.name(),
                f.before.issues,
                f.after.issues,
                f.before.activity,
                f.after.activity,
                f.before.org_issues,
                f.after.org_issues,
                f.measured.non_2xx
            );
            if f.measured.non_2xx > 0 {
                misses.push(format!(
                    "{}: the reference had {} failed transactions",
                    scenario.name(),
                    f.measured.non_2xx
                ));
            }
        }
    }
    println!();
    if misses.is_empty() {
        println!(
            "targets (ratio >= 0.8, p99 <= 1.5x pgbench, RSS <= 50 MB, no errors; against the reference: \
             get-one, update, mixed >= 0.8, list >= 0.6, create >= 0.5): all met"
        );
    } else {
        println!("targets missed:");
        for miss in misses {
            println!("- {miss}");
        }
    }
}
