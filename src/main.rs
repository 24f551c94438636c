//! The `tenantry` binary: parse settings, set up logging, run a subcommand.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use tenantry::{
    App, DatabaseSetup,
    config::Config,
    domain::{
        Role, TenantContext,
        rules::{ID_RULE, is_valid_id},
    },
};

#[derive(Parser)]
#[command(version, about = "Multi-tenant issue API with tenant isolation in PostgreSQL")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: Config,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Apply pending migrations, then exit.
    Migrate,
    /// Print the OpenAPI document, then exit.
    Openapi,
    /// One round of activity-log upkeep as the owner (partitions ahead, retention), then
    /// exit: for cron, when no instance of the service runs.
    Maintain,
    /// Delete every organization's data (issues, activity, counters, idempotency keys) as
    /// the owner, also while the server runs; the schema and the service's key stay.
    Reset {
        /// Required: nothing brings the data back.
        #[arg(long)]
        yes: bool,
    },
    /// Open psql as the owner on the service's database (DATABASE_URL, or the private
    /// cluster: the running one, or started for the session); arguments after `--` go to
    /// psql.
    Psql {
        /// Arguments for psql, e.g. `-- -c 'select * from dba.organizations'`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Print a JWT for AUTH_MODE=jwt, signed with JWT_SECRET (HS256) or a private key,
    /// with the configured claim names, audience and issuer.
    Token {
        /// The organization.
        #[arg(long)]
        org: String,
        /// The user.
        #[arg(long)]
        user: String,
        /// ADMIN or MEMBER.
        #[arg(long, default_value = "MEMBER")]
        role: String,
        /// Seconds the token stays valid.
        #[arg(long, default_value_t = 3600)]
        ttl_seconds: u64,
        /// Sign with this RSA (RS256) or EC P-256 (ES256) private key in PEM instead of JWT_SECRET.
        #[arg(long)]
        private_key_file: Option<PathBuf>,
    },
}

// mimalloc, without transparent huge pages (which inflate resident memory): less CPU per
// request than glibc's malloc (docs/performance.md, "Settings").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Commands a person runs at a prompt say what they did themselves; their logs only
    // warn (a migration's progress is news to an operator, not to someone resetting).
    let interactive = matches!(
        cli.command,
        Some(Command::Reset { .. } | Command::Psql { .. } | Command::Token { .. } | Command::Openapi)
    );
    let _log = tenantry::logging::init(cli.config.log_format, if interactive { "warn" } else { "info" });
    // Before the runtime: the exporter's HTTP client blocks. Dropped before the log guard,
    // so its last export (at exit) can still log.
    let _telemetry = match tenantry::telemetry::init(cli.config.otlp_endpoint.as_deref()) {
        Ok(telemetry) => telemetry,
        Err(err) => {
            tracing::error!("{err}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!("could not start the tokio runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli))
}

/// Tokio's multi-threaded runtime with [`tenantry::default_worker_threads`] workers, or
/// TOKIO_WORKER_THREADS when set (which tokio reads itself).
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        builder.worker_threads(tenantry::default_worker_threads(cores));
    }
    builder.build()
}

async fn run(cli: Cli) -> ExitCode {
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Openapi => write_stdout(&tenantry::http::openapi_document()),
        Command::Token { org, user, role, ttl_seconds, private_key_file } => {
            token(&cli.config, org, user, &role, ttl_seconds, private_key_file)
        }
        Command::Migrate => migrate(&cli.config).await,
        Command::Reset { yes } => reset(&cli.config, yes).await,
        Command::Psql { args } => psql(&cli.config, &args).await,
        Command::Maintain => maintain(&cli.config).await,
        Command::Serve => serve(&cli.config).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{}", with_causes(&*err));
            ExitCode::FAILURE
        }
    }
}

/// An error and what caused it, each cause once: tokio-postgres says only "error
/// performing TLS handshake" or "db error", and the why (the certificate, the server's
/// FATAL) is in the causes.
fn with_causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

async fn serve(config: &Config) -> Result<(), Box<dyn std::error::Error>> {
    let app = App::build(config).await?;
    // Handlers first: a SIGTERM right after the "serving" line must stop it gracefully.
    let shutdown = shutdown_signal()?;
    let addr = app.addr();
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    tracing::info!(workers, "serving http://{addr}/api/issues (Swagger UI: http://{addr}/docs)");
    app.run_until(shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}

fn token(
    config: &Config,
    org_id: String,
    user_id: String,
    role: &str,
    ttl_seconds: u64,
    private_key_file: Option<PathBuf>,
) -> Result<(), Box<dyn std::error::Error>> {
    if !is_valid_id(&org_id) || !is_valid_id(&user_id) {
        return Err(format!("--org and --user must be {ID_RULE}").into());
    }
    let role = Role::parse(role).ok_or("--role must be ADMIN or MEMBER")?;
    let ctx = TenantContext { org_id, user_id, role };
    let ttl = Duration::from_secs(ttl_seconds);
    println!("{}", tenantry::http::extract::jwt::mint(&config.jwt, private_key_file.as_deref(), &ctx, ttl)?);
    Ok(())
}

/// Writes `text` to standard output; a reader that stops early (`| head`) is not an error.
fn write_stdout(text: &str) -> Result<(), Box<dyn std::error::Error>> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => Err(err.into()),
        _ => Ok(()),
    }
}

async fn reset(config: &Config, yes: bool) -> Result<(), Box<dyn std::error::Error>> {
    if !yes {
        return Err(
            "reset deletes the data of every organization, for good: run `tenantry reset --yes`".into()
        );
    }
    DatabaseSetup::prepare_alongside(config).await?.reset_tenant_data().await?;
    println!("reset: every organization's issues and activity are deleted");
    Ok(())
}

async fn psql(config: &Config, args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    // Kept until psql exits: a private cluster started here stops with it.
    let setup = DatabaseSetup::prepare_alongside(config).await?;
    setup.migrate().await?;
    eprintln!("psql {}", setup.psql_url);
    let status = tokio::process::Command::new("psql")
        .arg(&setup.psql_url)
        .args(args)
        .status()
        .await
        .map_err(|err| format!("running psql (Debian: apt-get install -y postgresql-client): {err}"))?;
    if status.success() { Ok(()) } else { Err(format!("psql exited with {status}").into()) }
}

async fn migrate(config: &Config) -> Result<(), Box<dyn std::error::Error>> {
    let setup = DatabaseSetup::prepare_alongside(config).await?;
    let applied = setup.migrate().await?;
    tracing::info!(applied = applied.len(), "migrations are current");
    Ok(())
}

async fn maintain(config: &Config) -> Result<(), Box<dyn std::error::Error>> {
    let setup = DatabaseSetup::prepare_alongside(config).await?;
    let done = tenantry::db::maintenance::run_once(&setup.target.owner, config.activity_upkeep()).await?;
    for action in &done {
        println!("{action}");
    }
    tracing::info!(actions = done.len(), "activity partitions are in shape");
    Ok(())
}

/// Ctrl-C (SIGINT) or SIGTERM; both handlers are installed when this returns.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("shutting down");
    })
}
