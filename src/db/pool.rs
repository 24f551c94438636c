//! Connections: the owner's (migrations) and the request pool (everything else).

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::{Client, Config, NoTls};

use super::API_ROLE;

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
    pub owner: Config,
    pub requests: Config,
    pub request_role: RequestRole,
}

impl ConnectionTarget {
    /// Requests log in as the API role on the owner's server and database
    /// (passwordless: the private cluster trusts loopback connections).
    pub fn api_login_on(owner: Config) -> Self {
        let mut requests = owner.clone();
        requests.user(API_ROLE);
        requests.password(Vec::<u8>::new());
        ConnectionTarget { owner, requests, request_role: RequestRole::LoggedIn }
    }

    /// Requests use the owner's own login and switch role per transaction.
    pub fn switching_role_on(owner: Config) -> Self {
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

/// One direct connection, driven on the runtime until the client is dropped.
pub async fn connect_owner(config: &Config) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tune(config.clone()).connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(error = %err, "owner connection ended");
        }
    });
    Ok(client)
}

/// The pool every request checks a connection out of. `Fast` recycling only checks that
/// the connection is open; the scoped transaction keeps it clean (see `scoped.rs`).
pub fn request_pool(config: &Config, size: usize) -> Pool {
    let manager = Manager::from_config(
        tune(config.clone()),
        NoTls,
        ManagerConfig { recycling_method: RecyclingMethod::Fast },
    );
    Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        // Waiting longer than this for a connection means the database is saturated or
        // gone: answer 503 rather than hang.
        .wait_timeout(Some(Duration::from_secs(5)))
        .create_timeout(Some(Duration::from_secs(3)))
        .recycle_timeout(Some(Duration::from_secs(3)))
        .build()
        .expect("a runtime is configured, so building the pool cannot fail")
}
