//! tenantry: a multi-tenant issue and activity API whose tenant isolation lives in
//! PostgreSQL. See README.md for the design; `http` is the surface, `db` the only way to
//! the database, `domain` the vocabulary both share.

pub mod config;
pub mod db;
pub mod domain;
pub mod http;
pub mod logging;
pub mod telemetry;
pub mod trace;
pub mod webhooks;

use std::{future::Future, io, net::SocketAddr, str::FromStr, sync::Arc, time::Duration};

use poem::{
    Server,
    listener::{Acceptor, TcpAcceptor},
};

use pg_sandbox::postgres::{self as local_postgres, LocalPostgres, LocalPostgresError};

use crate::{
    config::{AuthMode, Config},
    db::{ConnectionTarget, Database, PoolSettings, RoleProblem, migrate::MigrationError},
    http::{
        Services, api,
        connections::GuardedAcceptor,
        cors::{Cors, CorsSetupError},
        extract::{
            auth::{Authenticator, Gate},
            jwt::JwtSetupError,
            preconditions::EntityTags,
        },
        metrics::Metrics,
        rate_limit::{self, RateLimits},
    },
};

/// Tokio worker threads when TOKIO_WORKER_THREADS is unset: one per core but one, at
/// least one. The core left over goes to PostgreSQL and the kernel's loopback work, which
/// usually share the machine in development and small deployments; one worker also spares
/// cross-thread wake-ups (docs/performance.md, "Settings").
pub fn default_worker_threads(cores: usize) -> usize {
    cores.saturating_sub(1).max(1)
}

/// Name of the database in the private cluster.
pub const LOCAL_DATABASE: &str = "tenantry";

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    LocalPostgres(#[from] LocalPostgresError),
    #[error("{name} is not a valid PostgreSQL URL: {source}")]
    InvalidUrl { name: &'static str, source: db::tls::UrlError },
    #[error("could not connect to PostgreSQL as the owner: {0}")]
    Connect(#[source] tokio_postgres::Error),
    #[error("could not create the database {LOCAL_DATABASE}: {0}")]
    CreateDatabase(#[source] tokio_postgres::Error),
    #[error("could not delete the tenant data: {0}")]
    Reset(#[source] tokio_postgres::Error),
    #[error("{0}")]
    LocalCluster(String),
    #[error("migrations failed: {0}")]
    Migrate(#[from] MigrationError),
    #[error("refusing to serve: {0}")]
    UnsafeRequestRole(#[from] RoleProblem),
    #[error("AUTH_MODE=jwt: {0}")]
    Jwt(#[from] JwtSetupError),
    #[error(transparent)]
    Cors(#[from] CorsSetupError),
    #[error("could not listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error(
        "AUTH_MODE=headers trusts whoever connects, and HOST={host} is not a loopback address: \
         use AUTH_MODE=jwt, serve on 127.0.0.1, or set ALLOW_HEADER_AUTH_ON_NETWORK=1 if every \
         client that can reach it may act as anyone"
    )]
    HeaderAuthOnNetwork { host: std::net::IpAddr },
    #[error(
        "requests must not run as DATABASE_URL's user, and logging in as {role} on the same \
         server failed: {source}. Set API_DATABASE_URL to a login for {role} (production), or \
         ALLOW_OWNER_REQUEST_LOGIN=1 (development only)",
        role = db::API_ROLE
    )]
    ApiLogin { source: tokio_postgres::Error },
    #[error("ETAG_KEY must be 32 bytes in base64 (e.g. `openssl rand -base64 32`)")]
    EtagKey,
    #[error(
        "STREAM_HEARTBEAT_MS={heartbeat_ms} must be above 0 and below IDLE_TIMEOUT_MS={idle_ms}: a \
         stream that writes nothing for IDLE_TIMEOUT_MS is closed as idle"
    )]
    StreamHeartbeat { heartbeat_ms: u64, idle_ms: u64 },
    #[error("could not read the ETag key from the database: {0}")]
    ReadEtagKey(#[source] tokio_postgres::Error),
    #[error(
        "webhook deliveries must not run as DATABASE_URL's user, and logging in as {role} on the same \
         server failed: {source}. Set WEBHOOKS_DATABASE_URL to a login for {role} (production), or \
         ALLOW_OWNER_REQUEST_LOGIN=1 (development only)",
        role = db::WEBHOOKS_ROLE
    )]
    WebhooksLogin { source: tokio_postgres::Error },
    #[error("refusing to deliver webhooks: {0}")]
    UnsafeWebhooksRole(RoleProblem),
    #[error(
        "WEBHOOK_LEASE_MS={lease_ms} must be longer than WEBHOOK_TIMEOUT_MS={timeout_ms}: a delivery still under way would be sent again"
    )]
    WebhookLease { lease_ms: u64, timeout_ms: u64 },
    #[error("the webhook HTTP client: {0}")]
    WebhookClient(String),
    #[error(
        "LISTEN_DATABASE_URL names the database {listen:?}, but the service's database is {owner:?}: \
         PostgreSQL delivers notifications only within one database, so the live streams would \
         never wake"
    )]
    ListenDatabase { listen: String, owner: String },
}

/// The database side of a start: where it is, and the private cluster if we run one.
pub struct DatabaseSetup {
    pub target: ConnectionTarget,
    pub local: Option<LocalPostgres>,
    /// The owner's connection URL, for `psql` (DATABASE_URL, or the private cluster's).
    pub psql_url: String,
    /// Requests log in as the API role on DATABASE_URL's server, a login nobody
    /// configured: [`App::build`] tries it once the migrations made the role.
    derived_api_login: bool,
}

impl DatabaseSetup {
    /// Uses DATABASE_URL (and API_DATABASE_URL), or starts the private cluster.
    pub async fn prepare(config: &Config) -> Result<DatabaseSetup, StartupError> {
        let parse = |name, url: &str| {
            db::Endpoint::parse(url).map_err(|source| StartupError::InvalidUrl { name, source })
        };
        let (owner, local, psql_url) = match &config.database_url {
            Some(url) => (parse("DATABASE_URL", url)?, None, url.clone()),
            None => {
                let options = local_postgres::Options {
                    dir: config.local_pg_dir.clone(),
                    port: config.local_pg_port,
                    ephemeral: false,
                    socket_rejecting: None,
                    ..Default::default()
                };
                let local = tokio::task::block_in_place(|| LocalPostgres::start(&options))?;
                create_local_database(&local).await?;
                let url = local.url(local_postgres::SUPERUSER, LOCAL_DATABASE);
                tracing::info!(
                    data = %local_postgres::display(local.data_dir()),
                    "private PostgreSQL is up; inspect it with: psql {url}"
                );
                (parse("the private cluster's URL", &url)?, Some(local), url)
            }
        };
        let (target, derived_api_login) = match &config.api_database_url {
            Some(url) => (
                ConnectionTarget {
                    owner,
                    requests: parse("API_DATABASE_URL", url)?,
                    request_role: db::RequestRole::LoggedIn,
                },
                false,
            ),
            // Never the owner's login for requests: a session that can RESET ROLE reads
            // every tenant. The private cluster trusts loopback, so this always works there.
            None => (ConnectionTarget::api_login_on(owner), local.is_none()),
        };
        Ok(DatabaseSetup { target, local, psql_url, derived_api_login })
    }

    /// Like [`DatabaseSetup::prepare`], for a command that may run next to a serving
    /// instance (`tenantry reset`, `psql`, `migrate`, `maintain`, and a second `serve`): a
    /// private cluster another process runs is used as it is (and left running; it stops
    /// with the process that started it).
    pub async fn prepare_alongside(config: &Config) -> Result<DatabaseSetup, StartupError> {
        if config.database_url.is_none()
            && let Some((port, data_dir)) = local_postgres::running(&config.local_pg_dir)
        {
            let url = format!("postgresql://{}@127.0.0.1:{port}/{LOCAL_DATABASE}", local_postgres::SUPERUSER);
            let owner = tokio_postgres::Config::from_str(&url).expect("our own URL parses");
            // The server on that port must be this cluster (not another that took the port
            // after a crash left the pid file behind).
            let client = db::connect_owner(&owner).await.map_err(StartupError::Connect)?;
            let serving: String = client
                .query_one("select current_setting('data_directory')", &[])
                .await
                .map_err(StartupError::Connect)?
                .get(0);
            if std::path::Path::new(&serving) != data_dir {
                return Err(StartupError::LocalCluster(format!(
                    "{} names port {port}, but the server there keeps {serving}: stop it, or remove the \
                     stale pid file",
                    data_dir.join("postmaster.pid").display()
                )));
            }
            tracing::info!(url, "the private PostgreSQL is already running; using it");
            let target = ConnectionTarget::api_login_on(db::Endpoint::plain(owner));
            return Ok(DatabaseSetup { target, local: None, psql_url: url, derived_api_login: false });
        }
        Self::prepare(config).await
    }

    /// Deletes every organization's data (`app.reset_tenant_data`) as the owner, after
    /// applying pending migrations; the schema and the service's key stay. Requests running
    /// meanwhile wait for it, then see no data.
    pub async fn reset_tenant_data(&self) -> Result<(), StartupError> {
        let mut owner = db::connect_owner(&self.target.owner).await.map_err(StartupError::Connect)?;
        db::migrate::run(&mut owner).await?;
        owner.batch_execute("select app.reset_tenant_data()").await.map_err(StartupError::Reset)
    }

    /// Applies pending migrations as the owner; returns what was applied.
    pub async fn migrate(&self) -> Result<Vec<String>, StartupError> {
        let mut owner = db::connect_owner(&self.target.owner).await.map_err(StartupError::Connect)?;
        Ok(db::migrate::run(&mut owner).await?)
    }
}

async fn create_local_database(local: &LocalPostgres) -> Result<(), StartupError> {
    let url = local.url(local_postgres::SUPERUSER, "postgres");
    let config = tokio_postgres::Config::from_str(&url).expect("our own URL parses");
    let client = db::connect_owner(&config).await.map_err(StartupError::Connect)?;
    let exists = client
        .query_opt("select 1 from pg_database where datname = $1", &[&LOCAL_DATABASE])
        .await
        .map_err(StartupError::CreateDatabase)?
        .is_some();
    if !exists {
        client
            .batch_execute(&format!("create database {LOCAL_DATABASE}"))
            .await
            .map_err(StartupError::CreateDatabase)?;
    }
    Ok(())
}

/// A migrated database, a checked request pool and a bound listener: ready to serve.
pub struct App {
    acceptor: GuardedAcceptor<TcpAcceptor>,
    addr: SocketAddr,
    db: Database,
    live: Arc<db::live::LiveActivity>,
    webhooks: webhooks::dispatch::Handle,
    webhook_db: Database,
    endpoint_rules: webhooks::EndpointRules,
    setup: DatabaseSetup,
    services: Arc<Services>,
    tags: EntityTags,
    auth_mode: AuthMode,
    shutdown_timeout: Duration,
    upkeep: db::maintenance::ActivityUpkeep,
    /// When the periodic upkeep runs first: soon if the one at start failed.
    next_upkeep: Duration,
}

impl App {
    pub async fn build(config: &Config) -> Result<App, StartupError> {
        // Settings first: a bad key file should not wait for a database.
        if config.auth_mode == AuthMode::Headers && !config::is_loopback(config.host) {
            if !config.allow_header_auth_on_network {
                return Err(StartupError::HeaderAuthOnNetwork { host: config.host });
            }
            tracing::warn!(
                host = %config.host,
                "AUTH_MODE=headers on a network address (ALLOW_HEADER_AUTH_ON_NETWORK=1): anyone who \
                 can connect can act as any user of any organization"
            );
        }
        let configured_etag_key = config.etag_key.as_deref().map(config::decode_key).transpose()?;
        let streams = &config.streams;
        if streams.stream_heartbeat_ms == 0
            || (config.idle_timeout_ms > 0 && streams.stream_heartbeat_ms >= config.idle_timeout_ms)
        {
            let (heartbeat_ms, idle_ms) = (streams.stream_heartbeat_ms, config.idle_timeout_ms);
            return Err(StartupError::StreamHeartbeat { heartbeat_ms, idle_ms });
        }
        let listen_url = streams
            .listen_database_url
            .as_deref()
            .map(|url| {
                db::Endpoint::parse(url)
                    .map_err(|source| StartupError::InvalidUrl { name: "LISTEN_DATABASE_URL", source })
            })
            .transpose()?;
        let hooks = &config.webhooks;
        if hooks.webhook_lease_ms <= hooks.webhook_timeout_ms {
            let (lease_ms, timeout_ms) = (hooks.webhook_lease_ms, hooks.webhook_timeout_ms);
            return Err(StartupError::WebhookLease { lease_ms, timeout_ms });
        }
        let targets = webhooks::client::Targets::new(hooks.webhook_allow_insecure_targets);
        let deliverer = webhooks::client::Deliverer::with_timeout(
            targets,
            Duration::from_millis(hooks.webhook_timeout_ms),
        )
        .map_err(|err| StartupError::WebhookClient(err.to_string()))?;
        let webhooks_url = hooks
            .webhooks_database_url
            .as_deref()
            .map(|url| {
                db::Endpoint::parse(url)
                    .map_err(|source| StartupError::InvalidUrl { name: "WEBHOOKS_DATABASE_URL", source })
            })
            .transpose()?;
        let authenticator = Authenticator::new(config.auth_mode, &config.jwt)?;
        let cors = Cors::from_settings(
            config.cors_allowed_origins.as_deref(),
            config.auth_mode,
            config.allow_header_auth_on_network,
        )?;
        let routes = Arc::new(api::route_table());
        let services = Arc::new(Services {
            gate: Arc::new(Gate { authenticator, limits: RateLimits::new(&config.rate_limits) }),
            metrics: Metrics::new(routes.clone()),
            routes,
            cors,
            request_timeout: config.request_timeout(),
            in_flight: Default::default(),
        });
        let mut setup = DatabaseSetup::prepare_alongside(config).await?;
        for applied in setup.migrate().await? {
            tracing::info!(migration = applied, "applied");
        }
        if setup.derived_api_login
            && let Err(source) = db::connect_owner(&setup.target.requests).await
        {
            if !config.allow_owner_request_login {
                return Err(StartupError::ApiLogin { source });
            }
            tracing::warn!(
                error = %source,
                "ALLOW_OWNER_REQUEST_LOGIN=1: requests log in as DATABASE_URL's user and switch to \
                 tenantry_api per transaction; such a session could RESET ROLE (development only)"
            );
            setup.target = ConnectionTarget::switching_role_on(setup.target.owner.clone());
        }
        // The database's own key, which every instance on it shares: the routing values of
        // live streams' wake-ups must agree across instances even when ETAG_KEY differs.
        let database_key =
            db::keys::etag_key(&setup.target.owner).await.map_err(StartupError::ReadEtagKey)?;
        let etag_key = configured_etag_key.unwrap_or(database_key);
        // Partitions for this month and ahead before the first request. A failure here is
        // not fatal: migration 6 made some ahead, and the periodic task retries.
        let upkeep = config.activity_upkeep();
        let next_upkeep = match db::maintenance::run_once(&setup.target.owner, upkeep).await {
            Ok(done) => {
                done.iter().for_each(|action| tracing::info!(action, "activity partitions"));
                db::maintenance::EVERY
            }
            Err(err) => {
                tracing::warn!(error = %err, "activity partition upkeep failed; retrying in the background");
                db::maintenance::RETRY_AFTER
            }
        };
        let pool = db::request_pool(
            &setup.target.requests,
            PoolSettings { size: config.pool_size, wait_timeout: config.pool_timeout() },
        );
        let db = Database::new(pool, setup.target.request_role, config.statements)
            .with_statement_timeout(config.statement_timeout())
            .with_context_mode(config.context)
            .with_shares(config.org_shares())
            .with_search_max_candidates(config.search_max_candidates)
            .with_page_max_bytes(config.page_max_bytes)
            .with_quotas(config.org_max_issues, config.org_max_activity_per_day);
        db.settle_statements(&setup.target.requests.config).await;
        let role = db::verify_request_role(&db).await?;
        let webhook_db = webhook_database(config, &setup, webhooks_url).await?;
        let webhooks = webhooks::dispatch::start(
            webhook_db.clone(),
            deliverer,
            webhooks::dispatch::Settings {
                max_in_flight: hooks.webhook_max_in_flight,
                max_in_flight_per_org: hooks.webhook_max_in_flight_per_org,
                schedule: hooks.webhook_retry_schedule.clone(),
                lease: Duration::from_millis(hooks.webhook_lease_ms),
                poll_interval: Duration::from_millis(hooks.webhook_poll_interval_ms),
            },
        );
        let endpoint_rules = webhooks::EndpointRules { targets, max_per_org: hooks.webhook_max_per_org };
        if let Some(listen) = &listen_url {
            check_listen_database(listen, &setup.target.owner).await?;
        }
        let live = db::live::LiveActivity::new(
            db.clone(),
            config.streams.live_settings(),
            &database_key,
            listen_url.unwrap_or_else(|| setup.target.owner.clone()),
        );
        tracing::info!(
            role,
            mode = ?setup.target.request_role,
            statements = if db.uses_unnamed_statements() { "unnamed" } else { "prepared" },
            context = ?config.context,
            "requests run under row-level security"
        );

        let addr = SocketAddr::new(config.host, config.port);
        let acceptor =
            http::connections::listen(addr).map_err(|source| StartupError::Bind { addr, source })?;
        let addr = acceptor.local_addr().first().and_then(|a| a.as_socket_addr().copied()).unwrap_or(addr);
        let acceptor = GuardedAcceptor::new(acceptor, config.connection_limits());
        tracing::info!(auth = ?config.auth_mode, "authentication mode");
        Ok(App {
            acceptor,
            addr,
            db,
            live,
            webhooks,
            webhook_db,
            endpoint_rules,
            setup,
            services,
            tags: EntityTags::new(&etag_key),
            auth_mode: config.auth_mode,
            shutdown_timeout: config.shutdown_timeout(),
            upkeep,
            next_upkeep,
        })
    }

    /// The address actually bound (port 0 becomes a real port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// The live activity streams this instance serves.
    pub fn live(&self) -> &Arc<db::live::LiveActivity> {
        &self.live
    }

    pub fn local_postgres(&self) -> Option<&LocalPostgres> {
        self.setup.local.as_ref()
    }

    /// Serves until `shutdown` completes; then stops accepting, lets requests in flight
    /// finish (up to SHUTDOWN_TIMEOUT_SECONDS), closes the pool and stops the private
    /// cluster, if any.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> io::Result<()> {
        let App {
            acceptor,
            db,
            live,
            webhooks,
            webhook_db,
            endpoint_rules,
            setup,
            services,
            tags,
            auth_mode,
            shutdown_timeout,
            upkeep,
            next_upkeep,
            ..
        } = self;
        let housekeeping = tokio::spawn(forget_idle_rate_limit_keys(Arc::downgrade(&services)));
        let owner = setup.target.owner.clone();
        let partitions = tokio::spawn(async move {
            tokio::time::sleep(next_upkeep).await;
            db::maintenance::run_periodically(owner, upkeep).await
        });
        let routes = poem::EndpointExt::data(
            poem::EndpointExt::data(
                poem::EndpointExt::data(http::routes(db.clone(), services, tags, auth_mode), live.clone()),
                endpoint_rules,
            ),
            webhooks.stats().clone(),
        );
        // Streams never finish on their own: on shutdown they end at once, so the graceful
        // shutdown waits only for ordinary requests.
        let streams = live.clone();
        let shutdown = async move {
            shutdown.await;
            streams.close();
        };
        let result = Server::new_with_acceptor(acceptor)
            .run_with_graceful_shutdown(routes, shutdown, Some(shutdown_timeout))
            .await;
        live.close();
        webhooks.close();
        webhook_db.close();
        housekeeping.abort();
        partitions.abort();
        db.close();
        tracing::info!("request pool closed");
        drop(setup);
        result
    }
}

/// The pool webhook deliveries run on, as `tenantry_webhooks`: WEBHOOKS_DATABASE_URL, else
/// that role's login on the owner's server, else (ALLOW_OWNER_REQUEST_LOGIN=1, as requests)
/// the owner's login switching role per transaction. Checked like the request role.
async fn webhook_database(
    config: &Config,
    setup: &DatabaseSetup,
    url: Option<db::Endpoint>,
) -> Result<Database, StartupError> {
    let (target, role) = match url {
        Some(url) => (url, db::RequestRole::LoggedIn),
        None => {
            let mut login = setup.target.owner.clone();
            login.config.user(db::WEBHOOKS_ROLE);
            login.config.password(Vec::<u8>::new());
            match db::connect_owner(&login).await {
                Ok(_) => (login, db::RequestRole::LoggedIn),
                Err(source) if !config.allow_owner_request_login => {
                    return Err(StartupError::WebhooksLogin { source });
                }
                Err(_) => (setup.target.owner.clone(), db::RequestRole::SwitchPerTransaction),
            }
        }
    };
    let size = usize::try_from(config.webhooks.webhook_db_pool_size).unwrap_or(usize::MAX);
    let pool = db::request_pool(&target, PoolSettings { size, wait_timeout: config.pool_timeout() });
    // Deliveries are few and short: unnamed statements work behind any pooler.
    let db = Database::for_webhooks(pool, role, db::StatementMode::Unnamed)
        .with_statement_timeout(config.statement_timeout())
        .with_context_mode(config.context);
    db::verify_request_role(&db).await.map_err(StartupError::UnsafeWebhooksRole)?;
    Ok(db)
}

/// LISTEN_DATABASE_URL must reach the service's own database (notifications do not cross
/// databases). When it cannot be reached now, the streams poll until it can: not fatal.
async fn check_listen_database(listen: &db::Endpoint, owner: &db::Endpoint) -> Result<(), StartupError> {
    const CURRENT: &str = "select current_database()::text";
    let name = |client: tokio_postgres::Client| async move {
        client.query_one(CURRENT, &[]).await.map(|row| row.get::<_, String>(0))
    };
    let listen_db = match db::connect_owner(listen).await {
        Ok(client) => name(client).await,
        Err(err) => Err(err),
    };
    let listen_db = match listen_db {
        Ok(found) => found,
        Err(err) => {
            tracing::warn!(error = %err, "LISTEN_DATABASE_URL cannot be reached now; live streams poll until it can");
            return Ok(());
        }
    };
    let client = db::connect_owner(owner).await.map_err(StartupError::Connect)?;
    let owner_db = name(client).await.map_err(StartupError::Connect)?;
    if listen_db != owner_db {
        return Err(StartupError::ListenDatabase { listen: listen_db, owner: owner_db });
    }
    Ok(())
}

async fn forget_idle_rate_limit_keys(services: std::sync::Weak<Services>) {
    let mut every = tokio::time::interval(rate_limit::FORGET_IDLE_EVERY);
    every.tick().await;
    loop {
        every.tick().await;
        let Some(services) = services.upgrade() else { return };
        services.gate.limits.forget_idle();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_worker_per_core_but_one_and_never_none() {
        assert_eq!(super::default_worker_threads(0), 1);
        assert_eq!(super::default_worker_threads(1), 1);
        assert_eq!(super::default_worker_threads(2), 1);
        assert_eq!(super::default_worker_threads(16), 15);
    }
}
