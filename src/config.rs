//! Every setting, from flags or environment variables (flags win).

use std::{net::IpAddr, path::PathBuf};

use crate::db::StatementMode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Port to serve HTTP on (0 picks a free one).
    #[arg(long, env = "PORT", default_value_t = 5000)]
    pub port: u16,

    /// Address to serve HTTP on. Use 0.0.0.0 to accept connections from other machines.
    #[arg(long, env = "HOST", default_value = "127.0.0.1")]
    pub host: IpAddr,

    /// PostgreSQL URL of the schema's owner, used to run migrations. Unset: start a
    /// private PostgreSQL from the locally installed server binaries.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// PostgreSQL URL for requests, logging in as tenantry_api (production). Unset with
    /// DATABASE_URL set: requests use DATABASE_URL's login and switch to tenantry_api in
    /// each transaction.
    #[arg(long, env = "API_DATABASE_URL", hide_env_values = true)]
    pub api_database_url: Option<String>,

    /// Connections in the request pool. 24 measured best on a 2-core machine shared with
    /// PostgreSQL (fewer: writes lose throughput; more: reads lose tail latency); a larger
    /// database server may want more.
    #[arg(long, env = "DATABASE_POOL_SIZE", default_value_t = 24)]
    pub pool_size: usize,

    /// `prepared`: named statements prepared once per connection (fastest). `unnamed`:
    /// nothing prepared outlives a transaction, for transaction-mode poolers (PgBouncer).
    #[arg(long, env = "DATABASE_STATEMENTS", value_enum, default_value = "prepared")]
    pub statements: StatementMode,

    /// Directory of the private PostgreSQL (without DATABASE_URL); kept across restarts.
    #[arg(long, env = "LOCAL_PG_DIR", default_value = ".tenantry")]
    pub local_pg_dir: PathBuf,

    /// Port of the private PostgreSQL on 127.0.0.1 (0 picks a free one).
    #[arg(long, env = "LOCAL_PG_PORT", default_value_t = 0)]
    pub local_pg_port: u16,

    /// Log lines as text or JSON. The level comes from RUST_LOG (default: info).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

impl Default for Config {
    /// The defaults above, ignoring the environment (for tests and embedding).
    fn default() -> Self {
        Config {
            port: 5000,
            host: IpAddr::from([127, 0, 0, 1]),
            database_url: None,
            api_database_url: None,
            pool_size: 24,
            statements: StatementMode::Prepared,
            local_pg_dir: PathBuf::from(".tenantry"),
            local_pg_port: 0,
            log_format: LogFormat::Text,
        }
    }
}
