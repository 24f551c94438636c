//! Every setting, from flags or environment variables (flags win).

use std::{net::IpAddr, path::PathBuf, time::Duration};

use clap::builder::BoolishValueParser;

use crate::db::{ContextMode, StatementMode};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where a request's identity comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    /// The x-organization-id, x-user-id and x-user-role headers, trusted as sent:
    /// development only, anyone can claim ADMIN.
    Headers,
    /// `Authorization: Bearer <JWT>`, verified; the x-* headers are ignored.
    Jwt,
}

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Port to serve HTTP on (0 picks a free one).
    #[arg(long, env = "PORT", default_value_t = 5000)]
    pub port: u16,

    /// Address to serve HTTP on. Use 0.0.0.0 to accept connections from other machines
    /// (with AUTH_MODE=jwt, or see ALLOW_HEADER_AUTH_ON_NETWORK).
    #[arg(long, env = "HOST", default_value = "127.0.0.1", value_parser = parse_host)]
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

    /// Connections in the request pool. The default suits a small database server shared
    /// with the service (docs/performance.md, "Settings"); a larger server may want more,
    /// as may a workload that often waits on row locks.
    #[arg(long, env = "DATABASE_POOL_SIZE", default_value_t = 8)]
    pub pool_size: usize,

    /// `auto`: named statements when requests provably reach PostgreSQL itself, unnamed
    /// otherwise (a pooler may be in between). `prepared`: named statements prepared once
    /// per connection (fastest). `unnamed`: nothing prepared outlives a transaction, for
    /// transaction-mode poolers (PgBouncer before 1.21).
    #[arg(long, env = "DATABASE_STATEMENTS", value_enum, default_value = "auto")]
    pub statements: StatementMode,

    /// `set_config`: the tenant is set with `select set_config(..., true)` and bound
    /// parameters. `set_local`: with `SET LOCAL` and quoted literals, which Citus forwards
    /// to its workers (set_config stays on the coordinator). Both transaction-local.
    #[arg(long, env = "DATABASE_CONTEXT", value_enum, default_value = "set_config")]
    pub context: ContextMode,

    /// Months after the current one whose activity partitions must already exist (the
    /// service makes them at start and every hour, as the schema owner).
    #[arg(long, env = "ACTIVITY_PARTITIONS_AHEAD", default_value_t = 3)]
    pub activity_partitions_ahead: u32,

    /// Keep activity entries this many months, then drop whole months of them (0: keep
    /// everything). Restoring a deleted issue needs its history: only within retention.
    #[arg(long, env = "ACTIVITY_RETENTION_MONTHS", default_value_t = 0)]
    pub activity_retention_months: u32,

    /// Directory of the private PostgreSQL (without DATABASE_URL); kept across restarts.
    #[arg(long, env = "LOCAL_PG_DIR", default_value = ".tenantry")]
    pub local_pg_dir: PathBuf,

    /// Port of the private PostgreSQL on 127.0.0.1 (0 picks a free one).
    #[arg(long, env = "LOCAL_PG_PORT", default_value_t = 0)]
    pub local_pg_port: u16,

    /// Log lines as text or JSON. The level comes from RUST_LOG (default: info).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// An OpenTelemetry collector's OTLP/HTTP base URL (e.g. http://localhost:4318): one
    /// span per request and per database transaction, joined to the caller's traceparent.
    /// Unset: no exporter. OTEL_EXPORTER_OTLP_PROTOCOL (http/protobuf or http/json) and
    /// OTEL_SERVICE_NAME are read too.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,

    /// Transactions one organization may have in flight at once on this instance (unset:
    /// half the request pool, at least 1). Over it a request waits up to
    /// ORG_QUEUE_TIMEOUT_MS, then gets 429.
    #[arg(long, env = "ORG_MAX_TRANSACTIONS")]
    pub org_max_transactions: Option<usize>,

    /// Term rows one search may read in all (its words' prefixes); a search that would
    /// read more is a 400, never partial results (0: no bound).
    #[arg(long, env = "SEARCH_MAX_CANDIDATES", default_value_t = 20_000)]
    pub search_max_candidates: u32,

    /// The most bytes of JSON one page of a list may hold: the page ends at the last whole
    /// item that fits (always at least one) and its `Link` continues from there (0: none).
    #[arg(long, env = "PAGE_MAX_BYTES", default_value_t = 1 << 20)]
    pub page_max_bytes: u32,

    /// Issues one organization may have at once (0: no limit); past it a create or a
    /// restore is a 403 (quota exceeded).
    #[arg(long, env = "ORG_MAX_ISSUES", default_value_t = 1_000_000)]
    pub org_max_issues: u64,

    /// Activity entries (changes) one organization may make per UTC day (0: no limit); past
    /// it a change is a 429 until midnight UTC.
    #[arg(long, env = "ORG_MAX_ACTIVITY_PER_DAY", default_value_t = 1_000_000)]
    pub org_max_activity_per_day: u64,

    /// How long a request over its organization's share waits for a place, in milliseconds.
    #[arg(long, env = "ORG_QUEUE_TIMEOUT_MS", default_value_t = 200)]
    pub org_queue_timeout_ms: u64,

    /// Longest wait for a pooled connection (or a new one), in milliseconds; then 503.
    #[arg(long, env = "DATABASE_POOL_TIMEOUT_MS", default_value_t = 2000)]
    pub pool_timeout_ms: u64,

    /// statement_timeout of every request transaction, in milliseconds (0: none); a
    /// statement cancelled by it is a 503.
    #[arg(long, env = "DATABASE_STATEMENT_TIMEOUT_MS", default_value_t = 5000)]
    pub statement_timeout_ms: u64,

    /// A request without an answer after this many milliseconds gets 503 (0: no limit).
    #[arg(long, env = "REQUEST_TIMEOUT_MS", default_value_t = 10_000)]
    pub request_timeout_ms: u64,

    /// Connections kept open at once (at least 1); over it a new connection is accepted
    /// and closed at once.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,

    /// Milliseconds a client gets to send a request's headers, from its first byte (or
    /// from connecting); then the connection is closed (0: no limit).
    #[arg(long, env = "HEADER_READ_TIMEOUT_MS", default_value_t = 5000)]
    pub header_read_timeout_ms: u64,

    /// Milliseconds a connection may wait, after a response, for its next request (0: no
    /// limit).
    #[arg(long, env = "IDLE_TIMEOUT_MS", default_value_t = 60_000)]
    pub idle_timeout_ms: u64,

    /// On SIGTERM or SIGINT: seconds requests in flight get to finish.
    #[arg(long, env = "SHUTDOWN_TIMEOUT_SECONDS", default_value_t = 10)]
    pub shutdown_timeout_seconds: u64,

    /// headers (development) or jwt.
    #[arg(long, env = "AUTH_MODE", value_enum, default_value = "headers")]
    pub auth_mode: AuthMode,

    /// AUTH_MODE=headers trusts whoever connects, so it serves only on a loopback HOST
    /// unless this is set (1): then it warns at start.
    #[arg(long, env = "ALLOW_HEADER_AUTH_ON_NETWORK", default_value_t = false, value_parser = BoolishValueParser::new(), num_args = 0..=1, default_missing_value = "true")]
    pub allow_header_auth_on_network: bool,

    /// Origins whose web pages may call the API from a browser (CORS), comma-separated,
    /// each scheme://host[:port] as browsers send it (https://app.example.com), or `*` for
    /// any (refused with AUTH_MODE=headers unless ALLOW_HEADER_AUTH_ON_NETWORK=1). Unset:
    /// no CORS headers at all.
    #[arg(long, env = "CORS_ALLOWED_ORIGINS")]
    pub cors_allowed_origins: Option<String>,

    /// With DATABASE_URL alone, requests log in as tenantry_api on the same server; if
    /// that login fails the service refuses to start, unless this is set (1, development
    /// only): then requests log in as DATABASE_URL's user and switch role per transaction.
    #[arg(long, env = "ALLOW_OWNER_REQUEST_LOGIN", default_value_t = false, value_parser = BoolishValueParser::new(), num_args = 0..=1, default_missing_value = "true")]
    pub allow_owner_request_login: bool,

    /// The HMAC key of issue ETags, base64 of 32 bytes. Unset: the key migration 7 made in
    /// the database, which every instance on that database shares.
    #[arg(long, env = "ETAG_KEY", hide_env_values = true)]
    pub etag_key: Option<String>,

    #[command(flatten)]
    pub jwt: JwtConfig,

    #[command(flatten)]
    pub rate_limits: RateLimitConfig,

    #[command(flatten)]
    pub streams: StreamConfig,

    #[command(flatten)]
    pub webhooks: WebhookConfig,
}

/// Webhooks: how many endpoints, how deliveries are made, retried and bounded.
#[derive(Debug, Clone, clap::Args)]
pub struct WebhookConfig {
    /// Webhook endpoints one organization may have; past it a new one is a 403.
    #[arg(long, env = "WEBHOOK_MAX_PER_ORG", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub webhook_max_per_org: u32,

    /// Connections of the deliveries' own pool (as tenantry_webhooks): deliveries never
    /// take a connection from requests.
    #[arg(long, env = "WEBHOOK_DB_POOL_SIZE", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub webhook_db_pool_size: u32,

    /// Deliveries this instance makes at once (0: none: this instance sends nothing, others
    /// on the same database do).
    #[arg(long, env = "WEBHOOK_MAX_IN_FLIGHT", default_value_t = 32, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub webhook_max_in_flight: u32,

    /// Deliveries one organization may have in flight on this instance, so that its slow
    /// endpoints cannot take every slot.
    #[arg(long, env = "WEBHOOK_MAX_IN_FLIGHT_PER_ORG", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub webhook_max_in_flight_per_org: u32,

    /// Waits before each retry of a failed event, comma-separated, each a number with ms,
    /// s, m or h (±20 % jitter; a longer Retry-After wins). After the last, the endpoint is
    /// disabled.
    #[arg(long, env = "WEBHOOK_RETRY_SCHEDULE", default_value = "5s,5m,30m,2h,5h,10h,10h", value_parser = crate::webhooks::schedule::RetrySchedule::parse)]
    pub webhook_retry_schedule: crate::webhooks::schedule::RetrySchedule,

    /// Milliseconds an endpoint has to answer with a 2xx.
    #[arg(long, env = "WEBHOOK_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub webhook_timeout_ms: u64,

    /// Milliseconds a claimed delivery stays this instance's (its lease) before another
    /// may take it over; longer than WEBHOOK_TIMEOUT_MS.
    #[arg(long, env = "WEBHOOK_LEASE_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub webhook_lease_ms: u64,

    /// How often (milliseconds) the instance looks for due deliveries when it has none
    /// under way.
    #[arg(long, env = "WEBHOOK_POLL_INTERVAL_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub webhook_poll_interval_ms: u64,

    /// Allow http:// URLs and loopback, private and link-local addresses (1): for
    /// development and tests only; a production service must never reach its own network.
    #[arg(long, env = "WEBHOOK_ALLOW_INSECURE_TARGETS", default_value_t = false, value_parser = BoolishValueParser::new(), num_args = 0..=1, default_missing_value = "true")]
    pub webhook_allow_insecure_targets: bool,

    /// PostgreSQL URL of a login for tenantry_webhooks. Unset: that role on DATABASE_URL's
    /// server (passwordless, as the private cluster allows), else the request login's way
    /// (see ALLOW_OWNER_REQUEST_LOGIN).
    #[arg(long, env = "WEBHOOKS_DATABASE_URL", hide_env_values = true)]
    pub webhooks_database_url: Option<String>,
}

/// Live activity streams (`GET /api/activity/stream`): limits, timings, and the LISTEN
/// connection that wakes them.
#[derive(Debug, Clone, clap::Args)]
pub struct StreamConfig {
    /// Streams this instance serves at once (0: no limit); past it a new one is a 503.
    /// Each also holds one of MAX_CONNECTIONS.
    #[arg(long, env = "STREAM_MAX", default_value_t = 2000)]
    pub stream_max: usize,

    /// Streams one organization may have open on this instance (0: no limit); past it a
    /// new one is a 429.
    #[arg(long, env = "STREAM_MAX_PER_ORG", default_value_t = 100)]
    pub stream_max_per_org: usize,

    /// Events a stream may have waiting for its client; a client further behind is
    /// disconnected (it resumes with Last-Event-ID), never buffered without bound.
    #[arg(long, env = "STREAM_MAX_QUEUED", default_value_t = 1000)]
    pub stream_max_queued: usize,

    /// Bytes of entries (as JSON) a stream may have waiting for its client; a client
    /// further behind is disconnected as above (large entries reach the byte bound before
    /// the count).
    #[arg(long, env = "STREAM_MAX_QUEUED_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub stream_max_queued_bytes: usize,

    /// Milliseconds without a write after which a stream sends a `: keep-alive` comment
    /// (must be shorter than IDLE_TIMEOUT_MS).
    #[arg(long, env = "STREAM_HEARTBEAT_MS", default_value_t = 15_000)]
    pub stream_heartbeat_ms: u64,

    /// The `retry:` hint a stream opens with: milliseconds a client waits before
    /// reconnecting.
    #[arg(long, env = "STREAM_RETRY_MS", default_value_t = 2000)]
    pub stream_retry_ms: u64,

    /// Without a LISTEN connection, how often (milliseconds) each organization with open
    /// streams has its log read.
    #[arg(long, env = "STREAM_POLL_INTERVAL_MS", default_value_t = 1000)]
    pub stream_poll_interval_ms: u64,

    /// PostgreSQL URL of the LISTEN connection that wakes the streams: it must reach
    /// PostgreSQL itself (not a transaction-mode pooler). Unset: DATABASE_URL (the private
    /// cluster's without it).
    #[arg(long, env = "LISTEN_DATABASE_URL", hide_env_values = true)]
    pub listen_database_url: Option<String>,
}

impl StreamConfig {
    pub fn live_settings(&self) -> crate::db::live::LiveSettings {
        crate::db::live::LiveSettings {
            max_streams: self.stream_max,
            max_per_org: self.stream_max_per_org,
            max_queued: self.stream_max_queued.max(1),
            max_queued_bytes: self.stream_max_queued_bytes.max(1),
            poll_interval: Duration::from_millis(self.stream_poll_interval_ms.max(1)),
            heartbeat: Duration::from_millis(self.stream_heartbeat_ms),
            retry: Duration::from_millis(self.stream_retry_ms),
        }
    }
}

/// AUTH_MODE=jwt: how tokens are verified and what their claims mean.
#[derive(Debug, Clone, clap::Args)]
pub struct JwtConfig {
    /// HS256: the shared secret (at least 32 bytes).
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// RS256 or ES256 (P-256): a PEM file with the issuer's public key.
    #[arg(long, env = "JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<PathBuf>,

    /// Tokens must carry this `aud`. Required in jwt mode (a token minted for another
    /// service must not work here) unless JWT_AUDIENCE_OPTIONAL=1.
    #[arg(long, env = "JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Accept tokens without checking `aud` when JWT_AUDIENCE is unset (1).
    #[arg(long, env = "JWT_AUDIENCE_OPTIONAL", default_value_t = false, value_parser = BoolishValueParser::new(), num_args = 0..=1, default_missing_value = "true")]
    pub jwt_audience_optional: bool,

    /// Longest token lifetime accepted, in seconds: `exp - iat`, or `exp - now` without
    /// `iat` (0: no cap).
    #[arg(long, env = "JWT_MAX_TTL_SECONDS", default_value_t = 86_400)]
    pub jwt_max_ttl_seconds: u64,

    /// When set, tokens must carry this `iss`.
    #[arg(long, env = "JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// The claim naming the organization.
    #[arg(long, env = "JWT_ORG_CLAIM", default_value = "org")]
    pub jwt_org_claim: String,

    /// The claim naming the user.
    #[arg(long, env = "JWT_USER_CLAIM", default_value = "sub")]
    pub jwt_user_claim: String,

    /// The claim holding the role, ADMIN or MEMBER.
    #[arg(long, env = "JWT_ROLE_CLAIM", default_value = "role")]
    pub jwt_role_claim: String,

    /// Clock skew tolerated on exp and nbf, in seconds.
    #[arg(long, env = "JWT_LEEWAY_SECONDS", default_value_t = 30)]
    pub jwt_leeway_seconds: u64,
}

/// Requests per second allowed per organization and per user within it (token buckets;
/// a rate of 0 turns that limit off).
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct RateLimitConfig {
    /// Sustained requests per second of one organization.
    #[arg(long, env = "RATE_LIMIT_ORG_PER_SECOND", default_value_t = 1000)]
    pub org_per_second: u32,

    /// Requests one organization may send at once above its sustained rate.
    #[arg(long, env = "RATE_LIMIT_ORG_BURST", default_value_t = 2000)]
    pub org_burst: u32,

    /// Sustained requests per second of one user in one organization.
    #[arg(long, env = "RATE_LIMIT_USER_PER_SECOND", default_value_t = 200)]
    pub user_per_second: u32,

    /// Requests one user may send at once above its sustained rate.
    #[arg(long, env = "RATE_LIMIT_USER_BURST", default_value_t = 400)]
    pub user_burst: u32,
}

impl Default for JwtConfig {
    /// The defaults in the attributes above, ignoring the environment.
    fn default() -> Self {
        defaults_of()
    }
}

impl Default for RateLimitConfig {
    /// The defaults in the attributes above, ignoring the environment.
    fn default() -> Self {
        defaults_of()
    }
}

impl Default for StreamConfig {
    /// The defaults in the attributes above, ignoring the environment.
    fn default() -> Self {
        defaults_of()
    }
}

impl Config {
    pub fn pool_timeout(&self) -> Duration {
        Duration::from_millis(self.pool_timeout_ms)
    }

    /// Each organization's share of the request pool.
    pub fn org_shares(&self) -> std::sync::Arc<crate::db::Shares> {
        let share = self.org_max_transactions.unwrap_or(self.pool_size / 2).max(1);
        crate::db::Shares::new(share, Duration::from_millis(self.org_queue_timeout_ms))
    }

    pub fn statement_timeout(&self) -> Duration {
        Duration::from_millis(self.statement_timeout_ms)
    }

    pub fn request_timeout(&self) -> Option<Duration> {
        (self.request_timeout_ms > 0).then(|| Duration::from_millis(self.request_timeout_ms))
    }

    pub fn activity_upkeep(&self) -> crate::db::maintenance::ActivityUpkeep {
        crate::db::maintenance::ActivityUpkeep {
            months_ahead: self.activity_partitions_ahead,
            retention_months: self.activity_retention_months,
        }
    }

    pub fn connection_limits(&self) -> crate::http::connections::ConnectionLimits {
        crate::http::connections::ConnectionLimits {
            max_connections: self.max_connections,
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
        }
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_seconds)
    }
}

impl Default for Config {
    /// The defaults written in the attributes above, ignoring the environment (for tests
    /// and embedding): clap's own, so they are written once.
    fn default() -> Self {
        defaults_of()
    }
}

/// A settings struct with clap's defaults and no environment variable read.
fn defaults_of<T: clap::Args + clap::FromArgMatches>() -> T {
    let command = T::augment_args(clap::Command::new("tenantry")).mut_args(|arg| arg.env(None::<&str>));
    let matches = command.try_get_matches_from(["tenantry"]).expect("every setting has a default");
    T::from_arg_matches(&matches).expect("the defaults are valid settings")
}

/// Whether `host` only accepts connections from this machine (127.0.0.0/8, ::1, and their
/// IPv4-mapped forms).
pub fn is_loopback(host: IpAddr) -> bool {
    host.to_canonical().is_loopback()
}

/// HOST: an address, or `localhost` for 127.0.0.1.
fn parse_host(value: &str) -> Result<IpAddr, String> {
    if value.eq_ignore_ascii_case("localhost") {
        return Ok(IpAddr::from([127, 0, 0, 1]));
    }
    value.parse().map_err(|err| format!("{err}: an IP address such as 127.0.0.1 or 0.0.0.0, or localhost"))
}

/// A 32-byte key given in base64 (standard or URL-safe alphabet, padded or not).
pub fn decode_key(text: &str) -> Result<[u8; 32], crate::StartupError> {
    use base64::{Engine, engine::general_purpose as b64};
    let text = text.trim();
    [b64::STANDARD, b64::URL_SAFE, b64::STANDARD_NO_PAD, b64::URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .ok_or(crate::StartupError::EtagKey)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_takes_an_address_or_localhost_and_loopback_means_this_machine_only() {
        assert_eq!(parse_host("localhost"), Ok(IpAddr::from([127, 0, 0, 1])));
        assert_eq!(parse_host("::1"), Ok("::1".parse().unwrap()));
        assert!(parse_host("example.com").is_err());
        for loopback in ["127.0.0.1", "127.255.0.1", "::1", "::ffff:127.0.0.1"] {
            assert!(is_loopback(loopback.parse().unwrap()), "{loopback}");
        }
        for network in ["0.0.0.0", "::", "10.0.0.1", "::ffff:10.0.0.1", "192.0.2.1"] {
            assert!(!is_loopback(network.parse().unwrap()), "{network}");
        }
    }

    #[test]
    fn a_key_is_32_bytes_in_either_base64_alphabet() {
        let key = [0xfbu8; 32];
        use base64::{Engine, engine::general_purpose as b64};
        for engine in [b64::STANDARD, b64::URL_SAFE, b64::STANDARD_NO_PAD, b64::URL_SAFE_NO_PAD] {
            assert_eq!(decode_key(&engine.encode(key)).ok(), Some(key));
        }
        assert!(decode_key(&b64::STANDARD.encode([1u8; 16])).is_err());
        assert!(decode_key("not base64!").is_err());
    }
}

#[cfg(test)]
mod default_tests {
    use super::*;

    #[test]
    fn the_defaults_are_claps_without_the_environment() {
        let config = Config::default();
        assert_eq!((config.port, config.host), (5000, IpAddr::from([127, 0, 0, 1])));
        assert_eq!(
            (config.pool_size, config.page_max_bytes, config.org_max_transactions),
            (8, 1 << 20, None)
        );
        assert_eq!((config.auth_mode, config.statements), (AuthMode::Headers, StatementMode::Auto));
        assert_eq!(config.local_pg_dir, PathBuf::from(".tenantry"));
        assert_eq!(config.rate_limits.org_per_second, 1000);
        // PATH is set in every test process: no setting reads it, and none read any other.
        assert!(config.database_url.is_none() && config.jwt.jwt_secret.is_none());
    }
}
