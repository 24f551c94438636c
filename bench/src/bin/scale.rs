//! Scaling runs, in one command each (`bench/scale`, which builds the release binary first):
//!
//! - `bench/scale pgbouncer`: 10,000 organizations, 256 concurrent HTTP clients, the
//!   service's requests through PgBouncer in transaction mode with at most 20 server
//!   connections, next to the same load with the service connected straight to
//!   PostgreSQL (also 20 connections). Every response is checked: its status, that it
//!   belongs to the organization that asked (organizationId) and that its content is that
//!   organization's (titles carry the organization's name). Any error or foreign row is
//!   counted and printed; the run fails if there is one. The highest number of server
//!   connections seen (pg_stat_activity, sampled every 20 ms) is reported.
//! - `bench/scale growth`: the same requests while the data grows from 100 to 10,000
//!   organizations (and the activity log to tens of millions of rows, seeded in SQL as
//!   the owner, in bulk), measured at each step; prints a Markdown table and writes an
//!   SVG chart (docs/scaling.svg).
//!
//! Load generator, service and PostgreSQL share the machine: compare rows of one run,
//! not absolute numbers across machines. Each figure is the median of `--runs` runs.

use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    str::FromStr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};
use tenantry_bench::process;

use clap::{Parser, Subcommand};
use pg_sandbox::{
    pgbouncer::{self as local_pgbouncer, LocalPgBouncer},
    postgres::{self as local_postgres, LocalPostgres},
};
use serde_json::{Value, json};
use tenantry::db;

#[derive(Parser, Debug)]
#[command(about = "Scaling runs: PgBouncer with 10,000 organizations, and latency as data grows")]
struct Args {
    #[command(subcommand)]
    run: Run,
    /// The service binary (bench/scale builds target/release/tenantry).
    #[arg(long, global = true, default_value = "target/release/tenantry")]
    bin: PathBuf,
    /// Keep the temporary directory (cluster, logs) for inspection.
    #[arg(long, global = true)]
    keep: bool,
}

#[derive(Subcommand, Debug)]
enum Run {
    /// Many organizations and clients through PgBouncer, next to a direct connection.
    Pgbouncer(PgbouncerArgs),
    /// Throughput and latency at each size, as the data grows.
    Growth(GrowthArgs),
}

#[derive(clap::Args, Debug)]
struct PgbouncerArgs {
    #[arg(long, default_value_t = 10_000)]
    orgs: u32,
    #[arg(long, default_value_t = 10)]
    issues_per_org: u32,
    /// Concurrent HTTP clients (each its own connection).
    #[arg(long, default_value_t = 256)]
    clients: usize,
    /// PostgreSQL connections: PgBouncer's pool, and the direct service's pool.
    #[arg(long, default_value_t = 20)]
    server_connections: u32,
    /// Seconds per measured run.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Runs per route (the report shows medians).
    #[arg(long, default_value_t = 2)]
    runs: usize,
}

#[derive(clap::Args, Debug)]
struct GrowthArgs {
    /// Organizations at each step.
    #[arg(long, value_delimiter = ',', default_value = "100,1000,3000,10000")]
    steps: Vec<u32>,
    #[arg(long, default_value_t = 20)]
    issues_per_org: u32,
    /// Activity entries per organization, spread over `--months` months.
    #[arg(long, default_value_t = 2000)]
    activity_per_org: u32,
    #[arg(long, default_value_t = 24)]
    months: u32,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Seconds per measured run of each scenario.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Runs per scenario and step (the report shows medians).
    #[arg(long, default_value_t = 2)]
    runs: usize,
    /// Where to write the chart.
    #[arg(long, default_value = "docs/scaling.svg")]
    chart: PathBuf,
}

fn main() {
    let args = Args::parse();
    let work = std::env::temp_dir().join(format!("tenantry-scale-{}", std::process::id()));
    fs::create_dir_all(&work).expect("creating the work directory");
    // The postgres user (as root) needs to reach the cluster and PgBouncer directories.
    fs::set_permissions(&work, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let result = match &args.run {
        Run::Pgbouncer(run) => runtime.block_on(pgbouncer(&args, run, &work)),
        Run::Growth(run) => runtime.block_on(growth(&args, run, &work)),
    };
    if args.keep {
        eprintln!("kept {}", work.display());
    } else {
        let _ = fs::remove_dir_all(&work);
    }
    if let Err(message) = result {
        eprintln!("scale run failed: {message}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------------
// bench/scale pgbouncer
// ---------------------------------------------------------------------------------------

async fn pgbouncer(args: &Args, run: &PgbouncerArgs, work: &Path) -> Result<(), String> {
    let started = Instant::now();
    let load_before = loadavg();
    let version = local_pgbouncer::version().ok_or("pgbouncer is not installed (bench/scale installs it)")?;
    let cluster = Cluster::start(work).await?;
    // The first service migrates; then the data goes in as the owner, in bulk.
    let routes = ["direct", "pgbouncer"];
    let bouncer = LocalPgBouncer::start(
        &cluster.pg,
        &local_pgbouncer::Options {
            dir: work.join("pgbouncer"),
            pool_size: run.server_connections,
            max_clients: run.clients as u32 + 64,
            users: vec![db::API_ROLE.into()],
        },
    )
    .map_err(|e| e.to_string())?;
    let statements =
        if local_pgbouncer::supports_prepared_statements(version) { "prepared" } else { "unnamed" };
    let bouncer_url = bouncer.url(db::API_ROLE, tenantry::LOCAL_DATABASE);
    // One service process at a time, so every API-role connection on the server is the
    // route's own. The first start migrates; then the data goes in as the owner, in bulk.
    let start = |route: &str| match route {
        "direct" => Service::start(
            args,
            work,
            route,
            &cluster,
            &cluster.api_url(),
            &[("DATABASE_POOL_SIZE", run.server_connections.to_string())],
        ),
        _ => Service::start(
            args,
            work,
            route,
            &cluster,
            &bouncer_url,
            &[
                // One PgBouncer client connection per HTTP client; PgBouncer multiplexes
                // them onto its server connections.
                ("DATABASE_POOL_SIZE", run.clients.to_string()),
                ("DATABASE_STATEMENTS", statements.into()),
            ],
        ),
    };
    drop(start("direct")?);
    eprintln!("seeding {} organizations x {} issues in SQL ...", run.orgs, run.issues_per_org);
    let seeding = Instant::now();
    cluster.seed(1, run.orgs, run.issues_per_org, run.issues_per_org, 1).await?;
    cluster.sql("vacuum analyze").await?;
    eprintln!("seeded in {:.0} s", seeding.elapsed().as_secs_f64());
    check_the_checks(&start("direct")?.address).await?;

    let plan = Plan { orgs: run.orgs, issues_per_org: run.issues_per_org, mix: MIXED.to_vec() };
    let mut results: Vec<(&str, Vec<Outcome>)> = routes.iter().map(|r| (*r, Vec::new())).collect();
    for round in 0..run.runs {
        for (route, outcomes) in results.iter_mut() {
            // No API-role connection left from the other route (PgBouncer keeps its idle
            // server connections open): the count below is this route's alone.
            cluster
                .sql(&format!(
                    "select count(pg_terminate_backend(pid)) from pg_stat_activity where usename = '{}'",
                    db::API_ROLE
                ))
                .await?;
            let service = start(route)?;
            // Warm up: connections made, statements planned; not measured.
            drive(&service.address, run.clients, Duration::from_secs(2), &plan, 999).await;
            cluster.checkpoint().await?;
            eprintln!("run {}/{}: {route} ...", round + 1, run.runs);
            let watcher = ServerConnections::watch(&cluster).await?;
            let mut outcome =
                drive(&service.address, run.clients, Duration::from_secs(run.duration), &plan, round as u64)
                    .await;
            outcome.max_server_connections = watcher.stop().await;
            eprintln!("  {}", outcome.summary());
            outcomes.push(outcome);
        }
    }
    drop(bouncer);

    let mut failed = Vec::new();
    println!(
        "\n{} organizations x {} issues; {} HTTP clients; {} s per run, medians of {} runs; PgBouncer {}.{} \
         (pool_mode=transaction, default_pool_size={}, DATABASE_STATEMENTS={statements}); 2 cores; load \
         average {load_before} before, {} after; {:.0} s in all. Mix: 60 % get-one, 20 % list, 10 % create, \
         10 % update, organizations at random.\n",
        run.orgs,
        run.issues_per_org,
        run.clients,
        run.duration,
        run.runs,
        version.0,
        version.1,
        run.server_connections,
        loadavg(),
        started.elapsed().as_secs_f64(),
    );
    println!(
        "| route | service pool | requests/s | p50 ms | p99 ms | requests | errors | foreign rows | most server connections |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (route, outcomes) in &results {
        let pool = if *route == "direct" { run.server_connections as usize } else { run.clients };
        let total: u64 = outcomes.iter().map(|o| o.requests).sum();
        let errors: u64 = outcomes.iter().map(|o| o.errors).sum();
        let foreign: u64 = outcomes.iter().map(|o| o.foreign).sum();
        let most = outcomes.iter().map(|o| o.max_server_connections).max().unwrap_or(0);
        println!(
            "| {route} | {pool} | {:.0} | {:.2} | {:.2} | {total} | {errors} | {foreign} | {most} |",
            median(outcomes.iter().map(|o| o.per_second())),
            median(outcomes.iter().map(|o| o.percentile(0.50))),
            median(outcomes.iter().map(|o| o.percentile(0.99))),
        );
        if errors > 0 || foreign > 0 {
            failed.push(format!("{route}: {errors} errors, {foreign} foreign rows"));
        }
        if most > run.server_connections as usize {
            failed.push(format!("{route}: {most} server connections > {}", run.server_connections));
        }
        for example in outcomes.iter().flat_map(|o| &o.examples).take(5) {
            eprintln!("{route}: {example}");
        }
    }
    if failed.is_empty() { Ok(()) } else { Err(failed.join("; ")) }
}

// ---------------------------------------------------------------------------------------
// bench/scale growth
// ---------------------------------------------------------------------------------------

async fn growth(args: &Args, run: &GrowthArgs, work: &Path) -> Result<(), String> {
    let started = Instant::now();
    let load_before = loadavg();
    let cluster = Cluster::start(work).await?;
    let service = Service::start(args, work, "service", &cluster, &cluster.api_url(), &[])?;
    let scenarios = GROWTH_SCENARIOS;
    let mut rows: Vec<GrowthRow> = Vec::new();
    let mut seeded = 0;
    for &orgs in &run.steps {
        let seeding = Instant::now();
        eprintln!("growing to {orgs} organizations ...");
        // In slices of 500 organizations: bounded transactions.
        while seeded < orgs {
            let to = (seeded + 500).min(orgs);
            cluster.seed(seeded + 1, to, run.issues_per_org, run.activity_per_org, run.months).await?;
            seeded = to;
        }
        cluster.sql("vacuum analyze").await?;
        let (activity, size) = cluster.activity_size().await?;
        let seed_seconds = seeding.elapsed().as_secs_f64();
        eprintln!(
            "  {orgs} organizations, {activity} activity entries, {size}; seeded in {seed_seconds:.0} s"
        );
        for scenario in scenarios {
            let plan = Plan { orgs, issues_per_org: run.issues_per_org, mix: vec![(scenario.op, 1)] };
            let mut outcomes = Vec::new();
            for round in 0..run.runs {
                cluster.checkpoint().await?;
                let outcome = drive(
                    &service.address,
                    run.clients,
                    Duration::from_secs(run.duration),
                    &plan,
                    round as u64,
                )
                .await;
                eprintln!("  {} run {}: {}", scenario.name, round + 1, outcome.summary());
                if outcome.errors > 0 || outcome.foreign > 0 {
                    return Err(format!("{}: {:?}", scenario.name, outcome.examples));
                }
                outcomes.push(outcome);
            }
            rows.push(GrowthRow {
                orgs,
                activity,
                scenario: scenario.name,
                per_second: median(outcomes.iter().map(|o| o.per_second())),
                p50: median(outcomes.iter().map(|o| o.percentile(0.50))),
                p99: median(outcomes.iter().map(|o| o.percentile(0.99))),
            });
        }
    }
    drop(service);

    println!(
        "\n{} issues and {} activity entries per organization (over {} months); {} HTTP clients; {} s per \
         run, medians of {} runs; 2 cores; load average {load_before} before, {} after; {:.0} s in all.\n",
        run.issues_per_org,
        run.activity_per_org,
        run.months,
        run.clients,
        run.duration,
        run.runs,
        loadavg(),
        started.elapsed().as_secs_f64(),
    );
    println!("| organizations | activity entries | scenario | requests/s | p50 ms | p99 ms |");
    println!("|---:|---:|---|---:|---:|---:|");
    for row in &rows {
        println!(
            "| {} | {} | {} | {:.0} | {:.2} | {:.2} |",
            row.orgs, row.activity, row.scenario, row.per_second, row.p50, row.p99
        );
    }
    if let Some(parent) = run.chart.parent() {
        fs::create_dir_all(parent).map_err(|e| e.to_string())?;
    }
    fs::write(&run.chart, chart(&rows, scenarios))
        .map_err(|e| format!("writing {}: {e}", run.chart.display()))?;
    eprintln!("chart: {}", run.chart.display());
    Ok(())
}

struct GrowthRow {
    orgs: u32,
    activity: i64,
    scenario: &'static str,
    per_second: f64,
    p50: f64,
    p99: f64,
}

struct GrowthScenario {
    name: &'static str,
    op: Op,
}

const GROWTH_SCENARIOS: &[GrowthScenario] = &[
    GrowthScenario { name: "get-one", op: Op::GetOne },
    GrowthScenario { name: "list", op: Op::List },
    GrowthScenario { name: "create", op: Op::Create },
    GrowthScenario { name: "feed", op: Op::Feed },
    GrowthScenario { name: "history", op: Op::History },
];

/// Two panels (requests/s, and p99 latency), organizations on a log scale.
fn chart(rows: &[GrowthRow], scenarios: &[GrowthScenario]) -> String {
    const COLORS: [&str; 6] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];
    let (width, height, panel_h, left, top) = (900.0, 640.0, 230.0, 80.0, 50.0);
    let plot_w = width - left - 180.0;
    let orgs: Vec<f64> = rows.iter().map(|r| f64::from(r.orgs)).collect();
    let (min_x, max_x) = orgs.iter().fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
    let x = |orgs: f64| {
        let span = (max_x.log10() - min_x.log10()).max(1e-9);
        left + (orgs.log10() - min_x.log10()) / span * plot_w
    };
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="24" font-size="16" text-anchor="middle">tenantry as the data grows (bench/scale growth)</text>"#,
        width / 2.0
    );
    type Metric = fn(&GrowthRow) -> f64;
    let panels: [(&str, Metric); 2] = [("requests/s", |r| r.per_second), ("p99 latency, ms", |r| r.p99)];
    for (panel, (label, value)) in panels.iter().enumerate() {
        let y0 = top + panel as f64 * (panel_h + 80.0);
        let max_y = rows.iter().map(value).fold(0.0, f64::max) * 1.15;
        let y = |v: f64| y0 + panel_h - v / max_y.max(1e-9) * panel_h;
        let _ = writeln!(
            svg,
            r##"<rect x="{left}" y="{y0}" width="{plot_w}" height="{panel_h}" fill="none" stroke="#999"/>"##
        );
        let _ = writeln!(
            svg,
            r#"<text x="20" y="{}" transform="rotate(-90 20 {})" text-anchor="middle">{label}</text>"#,
            y0 + panel_h / 2.0,
            y0 + panel_h / 2.0
        );
        for tick in 0..=4 {
            let v = max_y * f64::from(tick) / 4.0;
            let (right, line_y, label_x, label_y) = (left + plot_w, y(v), left - 6.0, y(v) + 4.0);
            let label = if max_y < 20.0 { format!("{v:.1}") } else { format!("{v:.0}") };
            let _ = writeln!(
                svg,
                r##"<line x1="{left}" x2="{right}" y1="{line_y}" y2="{line_y}" stroke="#eee"/><text x="{label_x}" y="{label_y}" text-anchor="end">{label}</text>"##,
            );
        }
        let mut steps: Vec<u32> = rows.iter().map(|r| r.orgs).collect();
        steps.dedup();
        for orgs in steps {
            let _ = writeln!(
                svg,
                r#"<text x="{}" y="{}" text-anchor="middle">{orgs}</text>"#,
                x(f64::from(orgs)),
                y0 + panel_h + 16.0
            );
        }
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">organizations (log scale)</text>"#,
            left + plot_w / 2.0,
            y0 + panel_h + 34.0
        );
        for (i, scenario) in scenarios.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let points: Vec<String> = rows
                .iter()
                .filter(|r| r.scenario == scenario.name)
                .map(|r| format!("{:.1},{:.1}", x(f64::from(r.orgs)), y(value(r))))
                .collect();
            let _ = writeln!(
                svg,
                r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
                points.join(" ")
            );
            for point in &points {
                let (px, py) = point.split_once(',').unwrap();
                let _ = writeln!(svg, r#"<circle cx="{px}" cy="{py}" r="3" fill="{color}"/>"#);
            }
            if panel == 0 {
                let ly = top + 14.0 + i as f64 * 18.0;
                let lx = left + plot_w + 20.0;
                let _ = writeln!(
                    svg,
                    r#"<line x1="{lx}" x2="{}" y1="{ly}" y2="{ly}" stroke="{color}" stroke-width="2"/><text x="{}" y="{}">{}</text>"#,
                    lx + 20.0,
                    lx + 26.0,
                    ly + 4.0,
                    scenario.name
                );
            }
        }
    }
    svg.push_str("</svg>\n");
    svg
}

// ---------------------------------------------------------------------------------------
// The database, the service
// ---------------------------------------------------------------------------------------

struct Cluster {
    pg: LocalPostgres,
    owner: tokio_postgres::Client,
}

impl Cluster {
    /// A private PostgreSQL with durable settings (as `tenantry serve` runs it), checkpoints
    /// only when asked (before each run), and the empty database.
    async fn start(work: &Path) -> Result<Cluster, String> {
        let options = local_postgres::Options {
            dir: work.join("pg"),
            port: 0,
            ephemeral: false,
            socket_rejecting: None,
            ..Default::default()
        };
        let pg = tokio::task::spawn_blocking(move || LocalPostgres::start(&options))
            .await
            .unwrap()
            .map_err(|e| e.to_string())?;
        let admin = connect(&pg.url(local_postgres::SUPERUSER, "postgres")).await?;
        for sql in [
            format!("create database {}", tenantry::LOCAL_DATABASE),
            "alter system set checkpoint_timeout = '1h'".into(),
            "alter system set max_wal_size = '8GB'".into(),
            "select pg_reload_conf()".into(),
        ] {
            admin.batch_execute(&sql).await.map_err(|e| format!("{sql}: {e}"))?;
        }
        let owner = connect(&pg.url(local_postgres::SUPERUSER, tenantry::LOCAL_DATABASE)).await?;
        Ok(Cluster { pg, owner })
    }

    fn owner_url(&self) -> String {
        self.pg.url(local_postgres::SUPERUSER, tenantry::LOCAL_DATABASE)
    }

    fn api_url(&self) -> String {
        self.pg.url(db::API_ROLE, tenantry::LOCAL_DATABASE)
    }

    async fn sql(&self, sql: &str) -> Result<(), String> {
        self.owner.batch_execute(sql).await.map_err(|e| {
            let reason = e.as_db_error().map_or_else(|| e.to_string(), |db| db.to_string());
            format!("{}: {reason}", sql.lines().next().unwrap_or(sql))
        })
    }

    async fn checkpoint(&self) -> Result<(), String> {
        self.sql("checkpoint").await
    }

    /// Organizations `o{from}`..`o{to}`: `issues` issues each (titled "o{n} issue {i}") and
    /// `activity` activity entries each, numbered in time order and spread evenly over the
    /// last `months` months; counters to match. As the owner (a superuser: no row-level
    /// security in the way), in one transaction.
    async fn seed(&self, from: u32, to: u32, issues: u32, activity: u32, months: u32) -> Result<(), String> {
        let (from, to, issues, activity, months) = (
            i64::from(from),
            i64::from(to),
            i64::from(issues),
            i64::from(activity.max(issues)),
            months.max(1),
        );
        let sql = format!(
            "begin;
             set local synchronous_commit = off;
             -- The months of the back-dated entries (the log is partitioned by month).
             select count(*) from app.create_activity_partitions(0, now() - interval '{months} months' - interval '1 day');
             insert into app.organization_counters (organization_id, last_issue_id, last_activity_id)
             select 'o' || o, {issues}, {activity} from generate_series({from}, {to}) o;
             insert into app.issues (organization_id, id, title, description, status, priority, assignee_id,
                                     created_by, created_at, updated_at)
             select 'o' || o, i, 'o' || o || ' issue ' || i,
                    'Seeded issue ' || i || ' of organization o' || o || ': exporting a large project times out.',
                    (array['OPEN', 'IN_PROGRESS', 'DONE'])[1 + i % 3], (array['LOW', 'MEDIUM', 'HIGH'])[1 + i % 3],
                    case when i % 4 = 0 then null else 'u' || (i % 7) end, 'u' || (i % 5),
                    now() - interval '{months} months', now() - interval '{months} months'
             from generate_series({from}, {to}) o, generate_series(1, {issues}) i;
             insert into app.activity_logs (organization_id, id, issue_id, actor_id, action, changes, created_at)
             select 'o' || o, a, 1 + (a - 1) % {issues}, 'u' || (a % 5),
                    case when a <= {issues} then 'created' else 'updated' end,
                    case when a <= {issues} then jsonb_build_object('title', 'o' || o || ' issue ' || a)
                         else jsonb_build_object('status', jsonb_build_object('from', 'OPEN', 'to', 'DONE')) end,
                    now() - interval '{months} months' + (interval '{months} months') * (a::float8 / {activity})
                          - interval '1 minute'
             from generate_series({from}, {to}) o, generate_series(1, {activity}) a;
             commit;"
        );
        self.sql(&sql).await
    }

    /// Activity entries, and the size of the activity log with its indexes.
    async fn activity_size(&self) -> Result<(i64, String), String> {
        let row = self
            .owner
            .query_one(
                "select (select count(*) from app.activity_logs),
                        pg_size_pretty((select sum(pg_total_relation_size(c.oid))
                                          from pg_class c
                                         where c.oid = 'app.activity_logs'::regclass
                                            or c.oid in (select inhrelid from pg_inherits
                                                          where inhparent = 'app.activity_logs'::regclass))::bigint)",
                &[],
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok((row.get(0), row.get(1)))
    }
}

async fn connect(url: &str) -> Result<tokio_postgres::Client, String> {
    let config = tokio_postgres::Config::from_str(url).map_err(|e| e.to_string())?;
    db::connect_owner(&config).await.map_err(|e| format!("connecting to {url}: {e}"))
}

/// The most connections the API role held on the server at once while it ran.
struct ServerConnections {
    stop: Arc<AtomicBool>,
    most: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl ServerConnections {
    async fn watch(cluster: &Cluster) -> Result<ServerConnections, String> {
        let client = connect(&cluster.owner_url()).await?;
        let (stop, most) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let (stopped, highest) = (stop.clone(), most.clone());
        let task = tokio::spawn(async move {
            while !stopped.load(Ordering::Relaxed) {
                if let Ok(row) = client
                    .query_one(
                        "select count(*) from pg_stat_activity where usename = $1 and backend_type = 'client backend'",
                        &[&db::API_ROLE],
                    )
                    .await
                {
                    highest.fetch_max(row.get::<_, i64>(0) as u64, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        Ok(ServerConnections { stop, most, task })
    }

    async fn stop(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        self.most.load(Ordering::Relaxed) as usize
    }
}

struct Service {
    child: Child,
    address: String,
}

impl Service {
    fn start(
        args: &Args,
        work: &Path,
        name: &str,
        cluster: &Cluster,
        api_url: &str,
        env: &[(&str, String)],
    ) -> Result<Service, String> {
        let log_path = work.join(format!("service-{name}.log"));
        let log = fs::File::create(&log_path).map_err(|e| e.to_string())?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|e| format!("finding a free port: {e}"))?
            .port();
        let mut command = Command::new(&args.bin);
        for name in ["DATABASE_POOL_SIZE", "DATABASE_STATEMENTS", "DATABASE_CONTEXT", "RUST_LOG", "AUTH_MODE"]
        {
            command.env_remove(name);
        }
        // Rate limits far above what two cores can send.
        for name in [
            "RATE_LIMIT_ORG_PER_SECOND",
            "RATE_LIMIT_ORG_BURST",
            "RATE_LIMIT_USER_PER_SECOND",
            "RATE_LIMIT_USER_BURST",
        ] {
            command.env(name, "1000000");
        }
        command
            .env("DATABASE_URL", cluster.owner_url())
            .env("API_DATABASE_URL", api_url)
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let mut child = command.spawn().map_err(|e| format!("starting {}: {e}", args.bin.display()))?;
        let deadline = Instant::now() + Duration::from_secs(120);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            let log = || fs::read_to_string(&log_path).unwrap_or_default();
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("service {name} exited ({status}):\n{}", log()));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err(format!("service {name} did not start:\n{}", log()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let address = format!("http://127.0.0.1:{port}");
        eprintln!("service {name} serves {address}");
        Ok(Service { child, address })
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        process::stop_gracefully(&mut self.child);
    }
}

// ---------------------------------------------------------------------------------------
// The load: requests, their checks, what they measured
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    GetOne,
    List,
    Create,
    Update,
    /// The organization's activity feed, newest first (every monthly partition).
    Feed,
    /// One issue's history, oldest first.
    History,
}

const STATUSES: [&str; 3] = ["OPEN", "IN_PROGRESS", "DONE"];

const MIXED: [(Op, u32); 4] = [(Op::GetOne, 60), (Op::List, 20), (Op::Create, 10), (Op::Update, 10)];

/// What to send: operations by weight, over organizations `o1`..`o{orgs}` holding issues
/// 1..=`issues_per_org` seeded as "o{n} issue {i}".
struct Plan {
    orgs: u32,
    issues_per_org: u32,
    mix: Vec<(Op, u32)>,
}

impl Plan {
    fn pick(&self, rng: &mut Rng) -> Op {
        let total: u32 = self.mix.iter().map(|(_, w)| w).sum();
        let mut roll = rng.below(u64::from(total)) as u32;
        for &(op, weight) in &self.mix {
            if roll < weight {
                return op;
            }
            roll -= weight;
        }
        self.mix[0].0
    }
}

/// What one run measured.
#[derive(Default)]
struct Outcome {
    requests: u64,
    errors: u64,
    /// Responses holding another organization's data (or not the data asked for).
    foreign: u64,
    elapsed: Duration,
    /// Microseconds, sorted.
    latencies: Vec<u32>,
    examples: Vec<String>,
    max_server_connections: usize,
}

impl Outcome {
    fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let index = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        f64::from(self.latencies[index]) / 1000.0
    }

    fn summary(&self) -> String {
        let connections = match self.max_server_connections {
            0 => String::new(), // not watched
            most => format!(", {most} server connections at most"),
        };
        format!(
            "{:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {} requests, {} errors, {} foreign{connections}",
            self.per_second(),
            self.percentile(0.5),
            self.percentile(0.99),
            self.requests,
            self.errors,
            self.foreign,
        )
    }
}

/// `clients` concurrent clients, each on its own HTTP connection, sending `plan`'s
/// requests for `duration`; every response checked.
async fn drive(address: &str, clients: usize, duration: Duration, plan: &Plan, seed: u64) -> Outcome {
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let workers = (0..clients).map(|worker| {
        let client = reqwest::Client::builder().pool_max_idle_per_host(1).build().unwrap();
        let mut rng = Rng::new(seed * 1_000_003 + worker as u64 + 1);
        async move {
            let mut outcome = Outcome::default();
            while Instant::now() < deadline {
                let org = format!("o{}", 1 + rng.below(u64::from(plan.orgs)));
                let op = plan.pick(&mut rng);
                let issue = 1 + rng.below(u64::from(plan.issues_per_org));
                let sent = Instant::now();
                let result = request(&client, address, op, &org, issue, worker).await;
                outcome.latencies.push(sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                outcome.requests += 1;
                match result {
                    Ok(()) => {}
                    Err(Problem::Error(message)) => {
                        outcome.errors += 1;
                        if outcome.examples.len() < 3 {
                            outcome.examples.push(format!("error: {message}"));
                        }
                    }
                    Err(Problem::Foreign(message)) => {
                        outcome.foreign += 1;
                        if outcome.examples.len() < 3 {
                            outcome.examples.push(format!("FOREIGN: {message}"));
                        }
                    }
                }
            }
            outcome
        }
    });
    let mut total = Outcome::default();
    for outcome in futures::future::join_all(workers).await {
        total.requests += outcome.requests;
        total.errors += outcome.errors;
        total.foreign += outcome.foreign;
        total.latencies.extend(outcome.latencies);
        total.examples.extend(outcome.examples);
    }
    total.elapsed = started.elapsed();
    total.latencies.sort_unstable();
    total
}

enum Problem {
    Error(String),
    Foreign(String),
}

/// One request as organization `org` (user `u{worker % 5}`), and its checks.
async fn request(
    client: &reqwest::Client,
    address: &str,
    op: Op,
    org: &str,
    issue: u64,
    worker: usize,
) -> Result<(), Problem> {
    let user = format!("u{}", worker % 5);
    let with_identity = |builder: reqwest::RequestBuilder| {
        builder.header("x-organization-id", org).header("x-user-id", &user).header("x-user-role", "ADMIN")
    };
    let (builder, expected) = match op {
        Op::GetOne => (client.get(format!("{address}/api/issues/{issue}")), 200),
        Op::List => (client.get(format!("{address}/api/issues")), 200),
        Op::Create => (
            client.post(format!("{address}/api/issues")).json(&json!({
                "title": format!("{org} created by {user}"),
                "description": format!("Created under load for {org}."),
            })),
            201,
        ),
        Op::Update => (
            client
                .patch(format!("{address}/api/issues/{issue}"))
                .json(&json!({"status": STATUSES[worker % 3]})),
            200,
        ),
        Op::Feed => (client.get(format!("{address}/api/activity?limit=20")), 200),
        Op::History => (client.get(format!("{address}/api/issues/{issue}/activity?limit=20")), 200),
    };
    let response =
        with_identity(builder).send().await.map_err(|e| Problem::Error(format!("{op:?} {org}: {e}")))?;
    let status = response.status().as_u16();
    let body: Value =
        response.json().await.map_err(|e| Problem::Error(format!("{op:?} {org}: body: {e}")))?;
    if status != expected {
        return Err(Problem::Error(format!("{op:?} {org}/{issue}: {status} {body}")));
    }
    verify(op, org, issue, &user, &body)
}

/// Whether `body`, the answer to `op` sent as `org` by `user`, is `org`'s own data.
fn verify(op: Op, org: &str, issue: u64, user: &str, body: &Value) -> Result<(), Problem> {
    let foreign = |what: &str| Problem::Foreign(format!("{op:?} as {org} (issue {issue}): {what}: {body}"));
    let own = |item: &Value| {
        item["organizationId"] == org
            && item["title"].as_str().is_some_and(|t| t.starts_with(&format!("{org} ")))
    };
    match op {
        Op::GetOne | Op::Update => {
            if !own(body) || body["id"] != issue {
                return Err(foreign("not the issue asked for"));
            }
            if op == Op::GetOne && body["title"].as_str() != Some(&format!("{org} issue {issue}")) {
                return Err(foreign("another title"));
            }
        }
        Op::Create => {
            if !own(body) || body["createdBy"] != user {
                return Err(foreign("not what was created"));
            }
        }
        Op::Feed => {
            // Entries name no organization; those holding an issue (created, deleted) must
            // hold one of this organization's.
            let items = body.as_array().filter(|items| !items.is_empty());
            let Some(items) = items else {
                return Err(Problem::Error(format!("Feed {org}: no entries: {body}")));
            };
            let own_entry = |entry: &Value| {
                let changes = &entry["changes"];
                (changes["organizationId"].is_null() || changes["organizationId"] == org)
                    && changes["title"].as_str().is_none_or(|t| t.starts_with(&format!("{org} ")))
            };
            if !items.iter().all(own_entry) {
                return Err(foreign("an entry of another organization"));
            }
        }
        Op::History => {
            // Oldest first: the seeded "created" entry of exactly this issue, then its own.
            let items = body.as_array().filter(|items| !items.is_empty());
            let Some(items) = items else {
                return Err(Problem::Error(format!("History {org}/{issue}: no entries: {body}")));
            };
            if items[0]["action"] != "created"
                || items[0]["changes"]["title"].as_str() != Some(&format!("{org} issue {issue}"))
                || !items.iter().all(|entry| entry["issueId"] == issue)
            {
                return Err(foreign("another issue's history"));
            }
        }
        Op::List => {
            // A plain array, or (paged lists) an object holding one.
            let items =
                body.as_array().or_else(|| body["items"].as_array()).or_else(|| body["data"].as_array());
            let Some(items) = items else {
                return Err(Problem::Error(format!("List {org}: not a list: {body}")));
            };
            if items.is_empty() || !items.iter().all(own) {
                return Err(foreign("a row of another organization, or none of its own"));
            }
        }
    }
    Ok(())
}

/// The control for [`verify`]: o1's answers, judged as if o2 had asked, are foreign.
async fn check_the_checks(address: &str) -> Result<(), String> {
    let client = reqwest::Client::new();
    let as_o1 = |builder: reqwest::RequestBuilder| {
        builder.header("x-organization-id", "o1").header("x-user-id", "u0").header("x-user-role", "ADMIN")
    };
    let created: Value = as_o1(client.post(format!("{address}/api/issues")))
        .json(&json!({"title": "o1 control", "description": "for the checks"}))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let listed: Value = as_o1(client.get(format!("{address}/api/issues")))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let id = created["id"].as_u64().unwrap_or(0);
    for (op, body) in [(Op::Create, &created), (Op::Update, &created), (Op::List, &listed)] {
        if verify(op, "o1", id, "u0", body).is_err() {
            return Err(format!("the checks refuse o1's own answer to {op:?}: {body}"));
        }
        if !matches!(verify(op, "o2", id, "u0", body), Err(Problem::Foreign(_))) {
            return Err(format!("the checks accept o1's answer to {op:?} as o2's: {body}"));
        }
    }
    Ok(())
}

/// xorshift64*: enough randomness to spread requests, no dependency.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|text| text.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
