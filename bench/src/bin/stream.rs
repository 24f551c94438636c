//! The live stream benchmark (`bench/stream`): how late events reach their streams.
//!
//! Starts a private PostgreSQL and the release service, opens `--streams` live activity
//! streams spread over `--orgs` organizations (each stream read as fast as it arrives),
//! then creates issues at `--writes-per-second`, spread over the organizations, for
//! `--warmup` + `--duration` seconds. On one clock (this process's), each event's latency
//! is the time from the writer receiving its 201 to the stream receiving the event (0
//! when the event came first); over every (event, stream) pair of the measured part it
//! prints the median, p99 and maximum, what never arrived, and the service's memory and
//! CPU. docs/performance.md keeps the latest table. Not a test: it wants a quiet machine.

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    str::FromStr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use clap::Parser;
use pg_sandbox::postgres::{self as local_postgres, LocalPostgres};
use serde_json::{Value, json};
use tenantry::db;
use tenantry_bench::{process, streams::Listeners};

#[derive(Parser, Debug)]
#[command(about = "How late live activity events reach their streams, under a steady write load")]
struct Args {
    /// The service binary (bench/stream builds target/release/tenantry).
    #[arg(long, default_value = "target/release/tenantry")]
    bin: PathBuf,
    /// Streams open at once, spread evenly over the organizations.
    #[arg(long, default_value_t = 1000)]
    streams: usize,
    /// Organizations the streams and the writes are spread over.
    #[arg(long, default_value_t = 100)]
    orgs: usize,
    /// Issues created per second, in all.
    #[arg(long, default_value_t = 200)]
    writes_per_second: u32,
    /// Seconds of writes before the measured part.
    #[arg(long, default_value_t = 10)]
    warmup: u64,
    /// Seconds of writes measured.
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// Keep the temporary directory (cluster, service log) for inspection.
    #[arg(long)]
    keep: bool,
}

/// An event as it arrived: which stream, which organization's issue, when.
type Arrival = (usize, String, i64, Instant);
/// A write that was answered 201: the organization, the issue, when the answer came.
type Write = (String, i64, Instant);

fn main() {
    let args = Args::parse();
    let work = std::env::temp_dir().join(format!("tenantry-stream-bench-{}", std::process::id()));
    fs::create_dir_all(&work).expect("creating the work directory");
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
    if args.orgs == 0 || !args.streams.is_multiple_of(args.orgs) {
        return Err("--streams must be a multiple of --orgs".into());
    }
    let options =
        local_postgres::Options { dir: work.join("pg"), port: 0, ephemeral: false, ..Default::default() };
    let pg = LocalPostgres::start(&options).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    runtime.block_on(async {
        let config =
            tokio_postgres::Config::from_str(&pg.url(local_postgres::SUPERUSER, "postgres")).unwrap();
        let client = db::connect_owner(&config).await.map_err(|e| e.to_string())?;
        client
            .batch_execute(&format!("create database {}", tenantry::LOCAL_DATABASE))
            .await
            .map_err(|e| e.to_string())
    })?;
    let mut service = start_service(args, work, &pg)?;
    let address = service.1.clone();
    let pid = service.0.id() as i32;

    let orgs: Vec<String> = (1..=args.orgs).map(|n| format!("org-{n}")).collect();
    let arrivals: Arc<Mutex<Vec<Arrival>>> = Arc::default();
    let record = arrivals.clone();
    let on_event: tenantry_bench::streams::OnEvent = Arc::new(move |stream, org, data, at| {
        let issue = serde_json::from_str::<Value>(data).ok().and_then(|entry| entry["issueId"].as_i64());
        if let Some(issue) = issue {
            record.lock().unwrap().push((stream, org.to_owned(), issue, at));
        }
    });
    eprintln!("opening {} streams over {} organizations ...", args.streams, args.orgs);
    let listeners = Listeners::open(&address, &orgs, args.streams / args.orgs, Some(on_event))?;
    let rss_open = rss_mb(pid, "VmRSS");

    eprintln!(
        "creating {} issues/s for {} s of warm-up and {} s measured ...",
        args.writes_per_second, args.warmup, args.duration
    );
    let cpu_before = process_cpu_ms(pid);
    let (writes, measured_from, errors) = runtime.block_on(write(args, &address, &orgs));
    let cpu_ms = process_cpu_ms(pid).zip(cpu_before).map(|(after, before)| after - before);
    // Every measured event should arrive within moments; give stragglers 10 s at most.
    let per_org = args.streams / args.orgs;
    let expected = writes.len() * per_org;
    let drain = Instant::now() + Duration::from_secs(10);
    while (arrivals.lock().unwrap().len()) < expected && Instant::now() < drain {
        std::thread::sleep(Duration::from_millis(50));
    }
    let rss_peak = rss_mb(pid, "VmHWM");
    drop(listeners);
    process::stop_gracefully(&mut service.0);

    // Latency of each (event, stream) pair whose write is in the measured part.
    let written: HashMap<(String, i64), Instant> =
        writes.iter().map(|(org, issue, at)| ((org.clone(), *issue), *at)).collect();
    let mut latencies: Vec<f64> = Vec::new();
    // The slowest pairs: latency, and when (seconds into the measured part) the write was answered.
    let mut slowest: Vec<(f64, f64)> = Vec::new();
    let mut seen_pairs = 0usize;
    for (_, org, issue, at) in arrivals.lock().unwrap().iter() {
        let Some(written_at) = written.get(&(org.clone(), *issue)) else { continue };
        seen_pairs += 1;
        if *written_at >= measured_from {
            let latency = at.saturating_duration_since(*written_at).as_secs_f64() * 1000.0;
            latencies.push(latency);
            slowest.push((latency, written_at.duration_since(measured_from).as_secs_f64()));
        }
    }
    slowest.sort_by(|a, b| b.0.total_cmp(&a.0));
    let measured_writes = writes.iter().filter(|(_, _, at)| *at >= measured_from).count();
    let missing = expected.saturating_sub(seen_pairs);
    latencies.sort_by(f64::total_cmp);
    let quantile = |q: f64| {
        if latencies.is_empty() {
            return f64::NAN;
        }
        latencies[((latencies.len() - 1) as f64 * q).round() as usize]
    };
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "\n{} streams over {} organizations; {} creates/s for {} s (after {} s of warm-up); {cores} cores",
        args.streams, args.orgs, args.writes_per_second, args.duration, args.warmup
    );
    println!();
    println!(
        "| measured writes | (event, stream) pairs | median ms | p99 ms | max ms | missing | write errors | \
         service RSS MB with the streams open / peak | service CPU ms per write |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {measured_writes} | {} | {:.1} | {:.1} | {:.1} | {missing} | {errors} | {} / {} | {} |",
        latencies.len(),
        quantile(0.5),
        quantile(0.99),
        latencies.last().copied().unwrap_or(f64::NAN),
        rss_open.map_or("-".into(), |mb| format!("{mb:.1}")),
        rss_peak.map_or("-".into(), |mb| format!("{mb:.1}")),
        cpu_ms.map_or("-".into(), |ms| format!("{:.2}", ms / writes.len().max(1) as f64)),
    );
    let moments: Vec<String> =
        slowest.iter().take(10).map(|(ms, at)| format!("{ms:.0} ms at {at:.1} s")).collect();
    println!("\nslowest pairs: {}", moments.join(", "));
    let targets = quantile(0.5) <= 20.0 && quantile(0.99) <= 150.0 && rss_peak.is_some_and(|mb| mb <= 100.0);
    println!(
        "\ntargets (median <= 20 ms, p99 <= 150 ms, service memory <= 100 MB, nothing missing): {}",
        if targets && missing == 0 && errors == 0 { "all met" } else { "missed" }
    );
    Ok(())
}

/// Creates issues at the set rate, round-robin over the organizations; returns each
/// write's organization, issue number and when its 201 arrived, when the measured part
/// began, and how many writes failed.
async fn write(args: &Args, address: &str, orgs: &[String]) -> (Vec<Write>, Instant, usize) {
    let client = reqwest::Client::new();
    let every = Duration::from_secs_f64(1.0 / f64::from(args.writes_per_second.max(1)));
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let measured_from = started + Duration::from_secs(args.warmup);
    let end = measured_from + Duration::from_secs(args.duration);
    let done: Arc<Mutex<(Vec<Write>, usize)>> = Arc::default();
    let mut tasks = Vec::new();
    let mut n = 0usize;
    while Instant::now() < end {
        ticks.tick().await;
        let org = orgs[n % orgs.len()].clone();
        n += 1;
        let (client, done, url) = (client.clone(), done.clone(), format!("{address}/api/issues"));
        tasks.push(tokio::spawn(async move {
            let response = client
                .post(url)
                .header("x-organization-id", &org)
                .header("x-user-id", "writer")
                .header("x-user-role", "ADMIN")
                .json(&json!({"title": "Streamed", "description": "Watched by the stream benchmark."}))
                .send()
                .await;
            let at = Instant::now();
            let issue = match response {
                Ok(response) if response.status() == reqwest::StatusCode::CREATED => {
                    response.json::<Value>().await.ok().and_then(|issue| issue["id"].as_i64())
                }
                _ => None,
            };
            let mut done = done.lock().unwrap();
            match issue {
                Some(issue) => done.0.push((org, issue, at)),
                None => done.1 += 1,
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let (writes, errors) = std::mem::take(&mut *done.lock().unwrap());
    (writes, measured_from, errors)
}

fn start_service(
    args: &Args,
    work: &Path,
    pg: &LocalPostgres,
) -> Result<(std::process::Child, String), String> {
    let log_path = work.join("service.log");
    let log = fs::File::create(&log_path).map_err(|e| e.to_string())?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map_err(|e| format!("finding a free port: {e}"))?
        .port();
    let mut command = Command::new(&args.bin);
    for (name, _) in std::env::vars() {
        let ours =
            ["DATABASE_", "API_DATABASE_URL", "STREAM_", "LISTEN_", "RATE_LIMIT_", "RUST_LOG", "TOKIO_"];
        if ours.iter().any(|prefix| name.starts_with(prefix)) {
            command.env_remove(name);
        }
    }
    // The rate limits far above the load: the writer is one user of each organization.
    for name in [
        "RATE_LIMIT_ORG_PER_SECOND",
        "RATE_LIMIT_ORG_BURST",
        "RATE_LIMIT_USER_PER_SECOND",
        "RATE_LIMIT_USER_BURST",
    ] {
        command.env(name, "1000000");
    }
    command
        .env("DATABASE_URL", pg.url(local_postgres::SUPERUSER, tenantry::LOCAL_DATABASE))
        .env("API_DATABASE_URL", pg.url(db::API_ROLE, tenantry::LOCAL_DATABASE))
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    let mut child = command.spawn().map_err(|e| format!("starting {}: {e}", args.bin.display()))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        let log = || fs::read_to_string(&log_path).unwrap_or_default();
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("the service exited ({status}):\n{}", log()));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(format!("the service did not start:\n{}", log()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((child, format!("http://127.0.0.1:{port}")))
}

/// A memory figure of `/proc/<pid>/status` (`VmRSS`, `VmHWM`), in MB.
fn rss_mb(pid: i32, field: &str) -> Option<f64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// The process's user + system CPU so far, in ms.
fn process_cpu_ms(pid: i32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks * 1000.0 / per_second)
}
