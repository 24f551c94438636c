//! How list pages cost as the data grows: median and p99 latency over HTTP of the first
//! page, a deep page (after following 50 cursors), a filtered page, a search page and the
//! activity feed, with 10,000 issues in total and with 10,000 organizations holding
//! 1,000,000 issues (plus their activity). The target: large at most 1.5x small.
//!
//!     cargo run --release -p tenantry-bench --bin list_benchmark
//!
//! It starts its own PostgreSQL (kept in `target/list-benchmark`, so a second run skips
//! the seeding), seeds both datasets in SQL as the owner (`sql/seed/organizations.sql`),
//! serves each with the real service, and measures from one HTTP client, one request at
//! a time. Small and large requests alternate one by one, so both see the same noise of
//! a shared machine; each round reports its own figures and the summary takes the median
//! of the rounds.
//!
//! Both datasets hold "probe" organizations of the same size (3,000 issues: 3 in the small
//! one, 20 in the large one), which are the ones measured, round robin: what changes is
//! everything around them. The large dataset also holds one organization of 100,000
//! issues, reported on its own line. `--help` lists the sizes that can be changed.

use std::{
    path::PathBuf,
    str::FromStr,
    time::{Duration, Instant},
};

use clap::Parser;
use pg_sandbox::postgres::{LocalPostgres, Options, SUPERUSER};
use tenantry::{App, config::Config, db};

const SEED: &str = include_str!("../../../sql/seed/organizations.sql");

#[derive(Parser)]
#[command(about = "Latency of list pages: 10,000 issues vs 1,000,000 issues in 10,000 organizations")]
struct Args {
    /// Measurement rounds.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Requests per kind of page, per dataset, per round.
    #[arg(long, default_value_t = 600)]
    requests: usize,
    /// Issues in the small dataset.
    #[arg(long, default_value_t = 10_000)]
    small_issues: i64,
    /// Organizations in the small dataset.
    #[arg(long, default_value_t = 100)]
    small_organizations: i64,
    /// Issues in the large dataset.
    #[arg(long, default_value_t = 1_000_000)]
    large_issues: i64,
    /// Organizations in the large dataset.
    #[arg(long, default_value_t = 10_000)]
    large_organizations: i64,
    /// Issues of each measured ("probe") organization, in both datasets.
    #[arg(long, default_value_t = 3_000)]
    probe_issues: i64,
    /// Issues of the one huge organization of the large dataset (0: none).
    #[arg(long, default_value_t = 100_000)]
    huge_issues: i64,
    /// Where the benchmark's PostgreSQL lives.
    #[arg(long, default_value = "target/list-benchmark")]
    dir: PathBuf,
}

/// One dataset: its organizations' sizes, and the organizations measured.
struct Dataset {
    name: String,
    /// (organization, issues)
    organizations: Vec<(String, i64)>,
    probes: Vec<String>,
    huge: Option<String>,
}

impl Dataset {
    /// `probes` organizations of `probe_issues`, maybe one of `huge_issues`, and the rest
    /// of the issues spread evenly over the rest of the organizations.
    fn new(
        label: &str,
        organizations: i64,
        issues: i64,
        probes: i64,
        probe_issues: i64,
        huge_issues: i64,
    ) -> Dataset {
        let mut sizes: Vec<(String, i64)> =
            (1..=probes).map(|n| (format!("probe-{n}"), probe_issues)).collect();
        let huge = huge_issues > 0;
        if huge {
            sizes.push(("huge".into(), huge_issues));
        }
        let others = organizations - sizes.len() as i64;
        let left = issues - sizes.iter().map(|(_, n)| n).sum::<i64>();
        assert!(others > 0 && left >= others, "{label}: too few issues for the organizations");
        for n in 0..others {
            sizes.push((format!("org-{n}"), left / others + i64::from(n < left % others)));
        }
        let probes = (1..=probes).map(|n| format!("probe-{n}")).collect();
        Dataset {
            name: format!("bench_{label}_{organizations}_{issues}_{probe_issues}_{huge_issues}"),
            organizations: sizes,
            probes,
            huge: huge.then(|| "huge".to_owned()),
        }
    }

    fn issues(&self) -> i64 {
        self.organizations.iter().map(|(_, n)| n).sum()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    First,
    Deep,
    Filtered,
    Search,
    Feed,
}

impl Kind {
    const ALL: [Kind; 5] = [Kind::First, Kind::Deep, Kind::Filtered, Kind::Search, Kind::Feed];

    fn label(self) -> &'static str {
        match self {
            Kind::First => "first page (`/api/issues`)",
            Kind::Deep => "deep page (after 50 cursors)",
            Kind::Filtered => "filtered (`status=OPEN&priority=HIGH`)",
            Kind::Search => "search (`q=logi`)",
            Kind::Feed => "activity feed (`/api/activity`)",
        }
    }
}

/// The URLs measured for one organization, by kind.
struct Targets {
    org: String,
    urls: Vec<(Kind, String)>,
}

struct Served {
    address: String,
    targets: Vec<Targets>,
    huge: Option<Targets>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    let small = Dataset::new("small", args.small_organizations, args.small_issues, 3, args.probe_issues, 0);
    let large = Dataset::new(
        "large",
        args.large_organizations,
        args.large_issues,
        20,
        args.probe_issues,
        args.huge_issues,
    );

    let pg = tokio::task::block_in_place(|| {
        LocalPostgres::start(&Options {
            dir: args.dir.clone(),
            port: 0,
            ephemeral: true,
            socket_rejecting: None,
            ..Default::default()
        })
    })
    .expect("starting PostgreSQL");
    eprintln!("PostgreSQL: {}", pg.url(SUPERUSER, "postgres"));
    let client = reqwest::Client::new();
    let mut served = Vec::new();
    for dataset in [&small, &large] {
        prepare(&pg, dataset).await;
        served.push(serve(&pg, dataset, &client).await);
    }
    let (small_served, large_served) = (&served[0], &served[1]);

    // results[round][kind] = (small, large, huge) latencies
    let mut rounds = Vec::new();
    for round in 1..=args.rounds {
        eprintln!("round {round}/{}", args.rounds);
        let mut by_kind = Vec::new();
        for kind in Kind::ALL {
            let (mut s, mut l, mut h) = (Vec::new(), Vec::new(), Vec::new());
            for i in 0..args.requests + args.requests / 10 {
                let warm = i < args.requests / 10;
                let small_time = time(&client, small_served, &small_served.targets, kind, i).await;
                let large_time = time(&client, large_served, &large_served.targets, kind, i).await;
                let huge_time = match &large_served.huge {
                    Some(huge) => {
                        Some(time(&client, large_served, std::slice::from_ref(huge), kind, i).await)
                    }
                    None => None,
                };
                if !warm {
                    s.push(small_time);
                    l.push(large_time);
                    h.extend(huge_time);
                }
            }
            by_kind.push(KindResult { kind, small: Stats::of(s), large: Stats::of(l), huge: Stats::of(h) });
        }
        print_round(round, &small, &large, &by_kind);
        rounds.push(by_kind);
    }
    print_summary(&args, &small, &large, &rounds);
}

/// Creates, migrates and seeds the dataset's database unless a complete one, migrated
/// by these very migrations, exists.
async fn prepare(pg: &LocalPostgres, dataset: &Dataset) {
    let admin = connect(&pg.url(SUPERUSER, "postgres")).await;
    let exists = admin
        .query_opt("select 1 from pg_database where datname = $1", &[&dataset.name])
        .await
        .unwrap()
        .is_some();
    if exists {
        let mut owner = connect(&pg.url(SUPERUSER, &dataset.name)).await;
        let seeded = owner
            .query_opt("select 1 from pg_class where relname = 'benchmark_seeded'", &[])
            .await
            .unwrap()
            .is_some();
        // An edited migration (divergent) or a new one: seed again.
        let current = db::migrate::run(&mut owner).await.is_ok_and(|applied| applied.is_empty());
        if seeded && current {
            eprintln!("{}: seeded already", dataset.name);
            return;
        }
        drop(owner);
        admin.batch_execute(&format!("drop database {} with (force)", dataset.name)).await.unwrap();
    }
    admin.batch_execute(&format!("create database {}", dataset.name)).await.unwrap();
    let mut owner = connect(&pg.url(SUPERUSER, &dataset.name)).await;
    db::migrate::run(&mut owner).await.expect("migrations apply");

    let started = Instant::now();
    eprintln!(
        "{}: seeding {} organizations, {} issues and their activity...",
        dataset.name,
        dataset.organizations.len(),
        dataset.issues()
    );
    owner
        .batch_execute("create temporary table seed_organizations (organization_id text, issues integer)")
        .await
        .unwrap();
    let insert = owner.prepare("insert into seed_organizations values ($1, $2)").await.unwrap();
    for (org, issues) in &dataset.organizations {
        let issues = i32::try_from(*issues).unwrap();
        owner.execute(&insert, &[org, &issues]).await.unwrap();
    }
    owner.batch_execute(SEED).await.unwrap();
    owner.batch_execute("vacuum analyze").await.unwrap();
    owner
        .batch_execute(
            "create table public.benchmark_seeded (at timestamptz default now());
             insert into public.benchmark_seeded default values",
        )
        .await
        .unwrap();
    let counts = owner
        .query_one(
            "select (select count(*) from app.issues), (select count(*) from app.activity_logs),
                    (select count(*) from app.issue_terms), pg_size_pretty(pg_database_size(current_database()))",
            &[],
        )
        .await
        .unwrap();
    eprintln!(
        "{}: {} issues, {} activity entries, {} words, {} on disk, seeded in {:.0?}",
        dataset.name,
        counts.get::<_, i64>(0),
        counts.get::<_, i64>(1),
        counts.get::<_, i64>(2),
        counts.get::<_, String>(3),
        started.elapsed()
    );
}

/// Serves the dataset with the real service, and finds the URLs to measure.
async fn serve(pg: &LocalPostgres, dataset: &Dataset, client: &reqwest::Client) -> Served {
    let config = Config {
        port: 0,
        database_url: Some(pg.url(SUPERUSER, &dataset.name)),
        api_database_url: Some(pg.url(db::API_ROLE, &dataset.name)),
        pool_size: 8,
        ..Config::default()
    };
    let app = App::build(&config).await.expect("the service starts");
    let address = format!("http://{}", app.addr());
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    let mut targets = Vec::new();
    for org in &dataset.probes {
        targets.push(find_targets(client, &address, org).await);
    }
    let huge = match &dataset.huge {
        Some(org) => Some(find_targets(client, &address, org).await),
        None => None,
    };
    Served { address, targets, huge, _shutdown: shutdown }
}

async fn find_targets(client: &reqwest::Client, address: &str, org: &str) -> Targets {
    // The deep page: follow 50 Link headers from the first page.
    let mut url = "/api/issues".to_owned();
    for _ in 0..50 {
        let response = get(client, address, org, &url).await;
        let link = response.headers().get("link").expect("more pages").to_str().unwrap().to_owned();
        url = link.strip_prefix('<').and_then(|l| l.split_once('>')).unwrap().0.to_owned();
    }
    let urls = vec![
        (Kind::First, "/api/issues".to_owned()),
        (Kind::Deep, url),
        (Kind::Filtered, "/api/issues?status=OPEN&priority=HIGH".to_owned()),
        (Kind::Search, "/api/issues?q=logi".to_owned()),
        (Kind::Feed, "/api/activity".to_owned()),
    ];
    for (_, url) in &urls {
        let response = get(client, address, org, url).await;
        assert_eq!(response.status(), reqwest::StatusCode::OK, "{url}");
        let body: Vec<serde_json::Value> = response.json().await.unwrap();
        assert!(!body.is_empty(), "{org} {url}: a non-empty page");
    }
    Targets { org: org.to_owned(), urls }
}

async fn get(client: &reqwest::Client, address: &str, org: &str, url: &str) -> reqwest::Response {
    client
        .get(format!("{address}{url}"))
        .header("x-organization-id", org)
        .header("x-user-id", "benchmark")
        .header("x-user-role", "MEMBER")
        .send()
        .await
        .expect("the service answers")
}

/// One request of `kind` to the `i`-th organization (round robin), timed to the last byte.
async fn time(
    client: &reqwest::Client,
    served: &Served,
    targets: &[Targets],
    kind: Kind,
    i: usize,
) -> Duration {
    let target = &targets[i % targets.len()];
    let url = &target.urls.iter().find(|(k, _)| *k == kind).unwrap().1;
    let started = Instant::now();
    let response = get(client, &served.address, &target.org, url).await;
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    response.bytes().await.unwrap();
    started.elapsed()
}

async fn connect(url: &str) -> tokio_postgres::Client {
    db::connect_owner(&tokio_postgres::Config::from_str(url).unwrap()).await.expect("connecting")
}

#[derive(Clone, Copy)]
struct Stats {
    median: f64,
    p99: f64,
}

impl Stats {
    fn of(mut samples: Vec<Duration>) -> Option<Stats> {
        if samples.is_empty() {
            return None;
        }
        samples.sort();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1000.0;
        Some(Stats { median: at(0.5), p99: at(0.99) })
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 }
}

/// One kind of page in one round: the latencies of each dataset (and the huge org).
struct KindResult {
    kind: Kind,
    small: Option<Stats>,
    large: Option<Stats>,
    huge: Option<Stats>,
}

type Round = Vec<KindResult>;

fn print_round(round: usize, small: &Dataset, large: &Dataset, results: &Round) {
    println!("\nround {round}: {} issues vs {} issues", small.issues(), large.issues());
    for KindResult { kind, small: s, large: l, huge: h } in results {
        let (s, l) = (s.unwrap(), l.unwrap());
        println!(
            "  {:<40} small {:>6.2} / {:>6.2} ms   large {:>6.2} / {:>6.2} ms   ratio {:.2} / {:.2}   huge org {}",
            kind.label(),
            s.median,
            s.p99,
            l.median,
            l.p99,
            l.median / s.median,
            l.p99 / s.p99,
            h.map_or("-".into(), |h| format!("{:.2} / {:.2} ms", h.median, h.p99)),
        );
    }
}

fn print_summary(args: &Args, small: &Dataset, large: &Dataset, rounds: &[Round]) {
    println!(
        "\nMedian of {} rounds ({} requests per page kind, dataset and round; latency median / p99 in ms):\n",
        rounds.len(),
        args.requests
    );
    println!(
        "| page | {} issues, {} orgs | {} issues, {} orgs | large ÷ small | one org of {} issues (large) |",
        small.issues(),
        small.organizations.len(),
        large.issues(),
        large.organizations.len(),
        args.huge_issues
    );
    println!("| --- | --- | --- | --- | --- |");
    for (index, kind) in Kind::ALL.iter().enumerate() {
        let pick = |f: &dyn Fn(&KindResult) -> Option<f64>| {
            median(rounds.iter().filter_map(|round| f(&round[index])).collect())
        };
        let (sm, sp) = (pick(&|r| r.small.map(|s| s.median)), pick(&|r| r.small.map(|s| s.p99)));
        let (lm, lp) = (pick(&|r| r.large.map(|s| s.median)), pick(&|r| r.large.map(|s| s.p99)));
        let (rm, rp) = (
            pick(&|r| Some(r.large?.median / r.small?.median)),
            pick(&|r| Some(r.large?.p99 / r.small?.p99)),
        );
        let huge = if rounds.iter().all(|round| round[index].huge.is_some()) {
            format!("{:.2} / {:.2}", pick(&|r| r.huge.map(|s| s.median)), pick(&|r| r.huge.map(|s| s.p99)))
        } else {
            "-".into()
        };
        println!("| {} | {sm:.2} / {sp:.2} | {lm:.2} / {lp:.2} | {rm:.2} / {rp:.2} | {huge} |", kind.label());
    }
}
