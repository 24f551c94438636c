//! Connections: the owner's (migrations) and the request pool (everything else).

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::{Client, Config};

use super::{API_ROLE, Endpoint};

/// How pooled connections come to run as the API role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestRole {
    /// They log in as it (API_DATABASE_URL, or the private cluster): the fast path.
    LoggedIn,
    /// They log in as the owner and `set_config('role', 'tenantry_api', true)` in the
    /// statement that sets the tenant: one credential for a development server.
    SwitchPerTransaction,
}

/// Where to migrate and where requests go.
#[derive(Debug, Clone)]
pub struct ConnectionTarget {
    pub owner: Endpoint,
    pub requests: Endpoint,
    pub request_role: RequestRole,
}

impl ConnectionTarget {
    /// Requests log in as the API role on the owner's server and database
    /// (passwordless: the private cluster trusts loopback connections).
    pub fn api_login_on(owner: Endpoint) -> Self {
        let mut requests = owner.clone();
        requests.config.user(API_ROLE);
        requests.config.password(Vec::<u8>::new());
        ConnectionTarget { owner, requests, request_role: RequestRole::LoggedIn }
    }

    /// Requests use the owner's own login and switch role per transaction.
    pub fn switching_role_on(owner: Endpoint) -> Self {
        ConnectionTarget { requests: owner.clone(), owner, request_role: RequestRole::SwitchPerTransaction }
    }
}

/// Applies the settings every connection of ours gets.
pub fn tune(mut config: Config) -> Config {
    if config.get_application_name().is_none() {
        config.application_name("tenantry");
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(3));
    }
    config
}

/// One direct connection, driven on the runtime until the client is dropped. A bare
/// `Config` gets TLS when the server offers it, certificates unchecked (libpq's default).
pub async fn connect_owner(target: impl Into<Endpoint>) -> Result<Client, tokio_postgres::Error> {
    let target = target.into();
    let (client, connection) = tune(target.config).connect(target.tls).await?;
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(error = %err, "owner connection ended");
        }
    });
    Ok(client)
}

/// How long a request may wait for the pool, and how large it is.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    /// Connections in the pool.
    pub size: usize,
    /// Longest wait for a free connection, or for a new one to be made. Past it the
    /// database is saturated or gone: the request gets 503 rather than hang.
    pub wait_timeout: Duration,
}

/// The pool every request checks a connection out of. `Fast` recycling only checks that
/// the connection is open; the scoped transaction keeps it clean (see `scoped.rs`).
pub fn request_pool(target: &Endpoint, settings: PoolSettings) -> Pool {
    let mut config = tune(target.config.clone());
    // A server that accepts TCP but never answers must not hold a request longer either.
    config.connect_timeout(
        settings.wait_timeout.min(config.get_connect_timeout().copied().unwrap_or(settings.wait_timeout)),
    );
    let manager = Manager::from_config(
        config,
        target.tls.clone(),
        ManagerConfig { recycling_method: RecyclingMethod::Fast },
    );
    Pool::builder(manager)
        .max_size(settings.size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(settings.wait_timeout))
        .create_timeout(Some(settings.wait_timeout))
        .recycle_timeout(Some(settings.wait_timeout))
        .build()
        .expect("a runtime is configured, so building the pool cannot fail")
}
