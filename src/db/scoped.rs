//! The scoped transaction: the only way a request reaches PostgreSQL.
//!
//! One call is one transaction on one pooled connection, sent as a single pipeline:
//!
//! ```sql
//! begin;
//! select set_config('app.org_id', $1, true), set_config('app.user_id', $2, true),
//!        set_config('app.role', $3, true), set_config('statement_timeout', $4, true),
//!        set_config('app.max_issues', $5, true), set_config('app.max_activity_per_day', $6, true);
//! select ... from api.<function>(...);
//! commit;
//! ```
//!
//! tokio-postgres writes requests in the order their futures are first polled, so polling
//! the four together puts them on the wire in one round trip. `join!` (not `try_join!`)
//! makes sure the COMMIT is queued even when an earlier step fails at once; PostgreSQL
//! answers a COMMIT in a failed transaction with a rollback. The settings are
//! transaction-local (`true`), so after the COMMIT the connection carries no tenant.
//!
//! Statements: named statements are prepared once per pooled connection and reused;
//! unnamed ones go with their parameter types on every call, so nothing outlives the
//! transaction (what a transaction-mode pooler needs); either way one round trip
//! (`tests/api/sql/round_trips.rs` counts them). `StatementMode::Auto`, the default, uses
//! named statements only where the connection is provably direct (see [`connection_is_direct`]):
//! behind PgBouncer before 1.21, two instances' statements named `s0, s1, …` would meet
//! on one server connection, and one could bind the other's (`api.get_issue($1)` and
//! `api.restore_issue($1)` both take an int8: a read could restore an issue).
//!
//! Context: by default the settings go in one `select set_config(..., true), ...` with bound
//! parameters. `ContextMode::SetLocal` (DATABASE_CONTEXT=set_local) sends them as
//! `set local app.org_id = E'...'; ...` instead, with quoted literals, in the simple-query
//! message that also carries the BEGIN: what Citus forwards to its workers (with
//! `citus.propagate_set_commands = 'local'`), where `set_config()` stays on the
//! coordinator. Both are transaction-local and cost the same single round trip.
//!
//! Hygiene: parameters are encoded before the checkout, so nothing of ours can fail or
//! panic halfway through writing the pipeline. The pipeline runs in a task that owns the
//! connection through a [`Lease`]: if the request goes away (client gone, time-out), the
//! transaction still runs to its end and the connection keeps its pool slot until then.
//! The lease returns the connection to the pool only once the end of the transaction was
//! answered; after a panic, or a COMMIT without a server answer, the connection is
//! detached from the pool and closed, never reused.

use std::{
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use deadpool_postgres::{Object, Pool};
use futures::TryStreamExt;
use tokio_postgres::{
    Client, Row,
    types::{IsNull, ToSql, Type},
};

use super::{Error, Shares, pool::RequestRole, reconnect::Reconnect};
use crate::{
    domain::TenantContext,
    trace::{RequestTrace, TransactionClock},
};

/// A statement the scoped transaction runs, with the PostgreSQL types of its parameters.
/// Stating the types keeps both [`StatementMode`]s typing parameters identically, and lets
/// an unnamed statement go out without a describe round trip first.
#[derive(Debug, Clone, Copy)]
pub struct Sql {
    pub text: &'static str,
    pub param_types: &'static [Type],
}

/// How statements reach PostgreSQL (DATABASE_STATEMENTS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum StatementMode {
    /// Named statements when the request connections provably reach PostgreSQL itself,
    /// unnamed otherwise; and should a named statement go missing anyway (26000, 42P05,
    /// 08P01, 42P08), unnamed from then on, that request retried once.
    #[default]
    Auto,
    /// Named statements, prepared once per pooled connection and reused: the fastest,
    /// for direct connections and session-mode poolers.
    Prepared,
    /// Unnamed statements, parsed again on every call (Parse, Bind, Execute in one
    /// message; nothing outlives the call): for transaction-mode poolers such as
    /// PgBouncer, where consecutive transactions may run on different server connections.
    Unnamed,
}

/// How a transaction names its tenant, actor and role (DATABASE_CONTEXT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ContextMode {
    /// `select set_config('app.org_id', $1, true), ...`: one statement with bound
    /// parameters (PostgREST's way).
    #[default]
    #[value(name = "set_config", alias = "set-config")]
    SetConfig,
    /// `set local app.org_id = E'...'; ...` with quoted literals, sent with the BEGIN:
    /// for Citus, which forwards SET LOCAL (not set_config) to the workers.
    #[value(name = "set_local", alias = "set-local")]
    SetLocal,
}

/// Settings for one transaction, in one statement with bound parameters: the caller, then
/// the [`LIMIT_SETTINGS`], transaction-local too (the statement time-out bounds the
/// function call that follows; the quotas are read by migration 9's triggers).
pub const SET_CONTEXT: Sql = Sql {
    text: "select set_config('app.org_id', $1, true), \
           set_config('app.user_id', $2, true), set_config('app.role', $3, true), \
           set_config('statement_timeout', $4, true), set_config('app.max_issues', $5, true), \
           set_config('app.max_activity_per_day', $6, true)",
    param_types: &[Type::TEXT, Type::TEXT, Type::TEXT, Type::TEXT, Type::TEXT, Type::TEXT],
};
/// The same, when the connection logged in as another role and switches to the API role
/// for this transaction only (as PostgREST does).
const SET_CONTEXT_AND_ROLE: Sql = Sql {
    text: "select set_config('role', 'tenantry_api', true), \
           set_config('app.org_id', $1, true), set_config('app.user_id', $2, true), \
           set_config('app.role', $3, true), set_config('statement_timeout', $4, true), \
           set_config('app.max_issues', $5, true), set_config('app.max_activity_per_day', $6, true)",
    param_types: SET_CONTEXT.param_types,
};

/// [`SET_CONTEXT_AND_ROLE`] for the webhook deliveries' role.
const SET_CONTEXT_AND_WEBHOOKS_ROLE: Sql = Sql {
    text: "select set_config('role', 'tenantry_webhooks', true), \
           set_config('app.org_id', $1, true), set_config('app.user_id', $2, true), \
           set_config('app.role', $3, true), set_config('statement_timeout', $4, true), \
           set_config('app.max_issues', $5, true), set_config('app.max_activity_per_day', $6, true)",
    param_types: SET_CONTEXT.param_types,
};

/// The settings [`SET_CONTEXT`] sets, in its order: `app.org_id`, `app.user_id`, `app.role`.
const CONTEXT_SETTINGS: [&str; 3] = ["app.org_id", "app.user_id", "app.role"];
/// The settings that are the same for every transaction, in [`SET_CONTEXT`]'s order.
const LIMIT_SETTINGS: [&str; 3] = ["statement_timeout", "app.max_issues", "app.max_activity_per_day"];

/// The request pool plus how its connections become the API role and send statements.
#[derive(Clone)]
pub struct Database {
    pool: Pool,
    role: RequestRole,
    /// The role its transactions run as (`tenantry_api`, or `tenantry_webhooks`).
    role_name: &'static str,
    set_context: Sql,
    /// What DATABASE_STATEMENTS asked for.
    statements: StatementMode,
    /// What requests use now: unnamed statements (`Auto` starts so, until
    /// [`Database::settle_statements`] finds the connection direct).
    unnamed: Arc<AtomicBool>,
    context: ContextMode,
    /// The [`LIMIT_SETTINGS`] of every request transaction: `statement_timeout` in
    /// milliseconds, the quotas ("0": none).
    limits: Arc<[String; 3]>,
    /// Each organization's share of the pool (none: no limit but the pool's size).
    shares: Option<Arc<Shares>>,
    reconnect: Arc<Reconnect>,
    /// Term rows a search may read in all (SEARCH_MAX_CANDIDATES; `None`: no bound).
    search_max_candidates: Option<i32>,
    /// The most bytes of JSON one list page may hold (PAGE_MAX_BYTES; `None`: no bound).
    page_max_bytes: Option<i32>,
}

impl Database {
    pub fn new(pool: Pool, role: RequestRole, statements: StatementMode) -> Self {
        let set_context = match role {
            RequestRole::LoggedIn => SET_CONTEXT,
            RequestRole::SwitchPerTransaction => SET_CONTEXT_AND_ROLE,
        };
        Database {
            pool,
            role,
            role_name: super::API_ROLE,
            set_context,
            statements,
            unnamed: Arc::new(AtomicBool::new(statements != StatementMode::Prepared)),
            context: ContextMode::SetConfig,
            limits: Arc::new(["0".into(), "0".into(), "0".into()]),
            shares: None,
            reconnect: Arc::default(),
            search_max_candidates: None,
            page_max_bytes: None,
        }
    }

    /// The pool of webhook deliveries: its transactions run as `tenantry_webhooks`.
    pub fn for_webhooks(pool: Pool, role: RequestRole, statements: StatementMode) -> Self {
        let mut db = Database::new(pool, role, statements);
        db.role_name = super::WEBHOOKS_ROLE;
        if role == RequestRole::SwitchPerTransaction {
            db.set_context = SET_CONTEXT_AND_WEBHOOKS_ROLE;
        }
        db
    }

    /// Quotas of every organization (0: none): issues it may have, activity entries per
    /// UTC day.
    pub fn with_quotas(mut self, max_issues: u64, max_activity_per_day: u64) -> Self {
        // SQL reads them as bigint: a larger setting would make every write fail to cast.
        let limits = Arc::make_mut(&mut self.limits);
        limits[1] = max_issues.min(i64::MAX as u64).to_string();
        limits[2] = max_activity_per_day.min(i64::MAX as u64).to_string();
        self
    }

    /// Bounds what one search may read (0: no bound).
    pub fn with_search_max_candidates(mut self, candidates: u32) -> Self {
        self.search_max_candidates = (candidates > 0).then(|| i32::try_from(candidates).unwrap_or(i32::MAX));
        self
    }

    pub fn search_max_candidates(&self) -> Option<i32> {
        self.search_max_candidates
    }

    /// Bounds the JSON of one list page (0: no bound).
    pub fn with_page_max_bytes(mut self, bytes: u32) -> Self {
        self.page_max_bytes = (bytes > 0).then(|| i32::try_from(bytes).unwrap_or(i32::MAX));
        self
    }

    pub fn page_max_bytes(&self) -> Option<i32> {
        self.page_max_bytes
    }

    /// Bounds the transactions one organization may have in flight at once.
    pub fn with_shares(mut self, shares: Arc<Shares>) -> Self {
        self.shares = Some(shares);
        self
    }

    /// How each transaction sets its context (default: `set_config`).
    pub fn with_context_mode(mut self, context: ContextMode) -> Self {
        self.context = context;
        self
    }

    /// Bounds every statement of a request transaction (PostgreSQL cancels it: 57014).
    pub fn with_statement_timeout(mut self, timeout: Duration) -> Self {
        Arc::make_mut(&mut self.limits)[0] = timeout.as_millis().to_string();
        self
    }

    /// How its connections become the API role.
    pub fn role(&self) -> RequestRole {
        self.role
    }

    /// The pool's connections: how many, how many in use, how many waited for.
    pub fn pool_status(&self) -> deadpool_postgres::Status {
        self.pool.status()
    }

    /// Closes the pool: no new checkouts; idle connections close now, the others when
    /// their requests end.
    pub fn close(&self) {
        self.pool.close();
    }

    /// The raw pool, for tests that inspect a pooled connection (`test-hooks`; requests
    /// go through [`Database::call`] only).
    #[cfg(feature = "test-hooks")]
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Runs `sql` (a call of one `api` function) in a transaction scoped to `ctx`.
    pub async fn call(
        &self,
        ctx: &TenantContext,
        sql: &Sql,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, Error> {
        let settings = [ctx.org_id.as_str(), ctx.user_id.as_str(), ctx.role.as_str()];
        self.run(settings, sql, params).await
    }

    /// Like [`Database::call`] with every setting empty, i.e. no tenant: for checks of
    /// the role itself (see `safety.rs`), and the webhook deliveries' claims, which see
    /// only leases across organizations (`webhooks.rs`).
    pub async fn call_without_tenant(
        &self,
        sql: &Sql,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, Error> {
        self.run(["", "", ""], sql, params).await
    }

    async fn run(
        &self,
        settings: [&str; 3],
        sql: &Sql,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, Error> {
        // Everything that could fail on our side happens before the checkout: a value
        // refused (or a panic while encoding it) never reaches a connection.
        let params = encode(sql, params)?;
        let set_local = match self.context {
            ContextMode::SetConfig => None,
            ContextMode::SetLocal => {
                Some(set_local_script(self.role, self.role_name, settings, &self.limits)?)
            }
        };
        let work = Arc::new(Pipeline {
            settings: settings.map(str::to_owned),
            limits: self.limits.clone(),
            set_context: self.set_context,
            call: *sql,
            params,
            set_local,
        });
        let named = !self.unnamed.load(Ordering::Relaxed);
        let result = self.execute(work.clone(), named).await;
        if named
            && self.statements == StatementMode::Auto
            && result.as_ref().is_err_and(statement_went_missing)
        {
            self.fall_back_to_unnamed(result.as_ref().expect_err("checked above"));
            // The failed transaction changed nothing: it never reached its COMMIT.
            return self.execute(work, false).await;
        }
        result.inspect_err(|err| self.explain_missing_statement(err))
    }

    /// Runs one transaction's pipeline on a pooled connection, in a task of its own.
    async fn execute(&self, work: Arc<Pipeline>, named: bool) -> Result<Vec<Row>, Error> {
        let settings = &work.settings;
        // The organization's place first: one over its share waits for its own
        // transactions, not in the pool's queue ahead of everyone else.
        let share = match (&self.shares, settings[0].as_str()) {
            (Some(shares), organization) if !organization.is_empty() => {
                Some(shares.take(organization).await?)
            }
            _ => None,
        };
        let attempt = self.reconnect.admit()?;
        let checkout = self.pool.get().await;
        attempt.observe(&checkout);
        let lease = Lease(Some(checkout?));
        // The pipeline runs in a task of its own that owns the connection: if this request
        // goes away (client gone, time-out), the transaction still runs to its end, and the
        // connection holds its pool slot until then (the pool size keeps its meaning).
        let (sender, answer) = tokio::sync::oneshot::channel();
        let trace = RequestTrace::current();
        let clock = trace.as_ref().map(|trace| trace.transaction_started());
        tokio::spawn(async move {
            // Ends the transaction for the trace even if `run` panics.
            let ended = TransactionEnd(trace.zip(clock), false);
            let result = work.run(lease, named).await;
            drop(share);
            let mut ended = ended;
            ended.1 = result.is_ok();
            // Before the answer: the request's Server-Timing counts this transaction.
            drop(ended);
            let _ = sender.send(result);
        });
        match answer.await {
            Ok(result) => result,
            // The task panicked; its lease closed the connection.
            Err(_) => Err(Error::Internal("the database call panicked (see the log)".into())),
        }
    }

    /// With `Auto`, decides between named and unnamed statements once, before the first
    /// request: named only if [`connection_is_direct`] says so for a pooled connection.
    /// A wrong "pooler" costs only speed, and the log says which setting pins `prepared`.
    pub async fn settle_statements(&self, target: &tokio_postgres::Config) {
        if self.statements != StatementMode::Auto {
            return;
        }
        let direct = match self.pool.get().await {
            Ok(conn) => connection_is_direct(&conn, target).await,
            Err(err) => Err(err.to_string()),
        };
        match direct {
            Ok(true) => {
                self.unnamed.store(false, Ordering::Relaxed);
                tracing::info!("statements: prepared (requests reach PostgreSQL directly)");
            }
            Ok(false) => tracing::warn!(
                "statements: unnamed (the server answering is not the address requests connect to: a                  pooler such as PgBouncer, or an address translation); if it is PostgreSQL itself, set                  DATABASE_STATEMENTS=prepared"
            ),
            Err(err) => {
                tracing::warn!(error = %err, "statements: unnamed (could not tell whether requests reach PostgreSQL directly)")
            }
        }
    }

    /// Takes the connection for direct, as `Auto` would on a direct connection (for tests
    /// of the fallback behind a pooler).
    #[cfg(feature = "test-hooks")]
    pub fn assume_direct(&self) {
        self.unnamed.store(false, Ordering::Relaxed);
    }

    /// Whether requests use unnamed statements now.
    pub fn uses_unnamed_statements(&self) -> bool {
        self.unnamed.load(Ordering::Relaxed)
    }

    /// A named statement went missing after all: unnamed from now on, said once.
    fn fall_back_to_unnamed(&self, err: &Error) {
        if !self.unnamed.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                error = %err,
                "a prepared statement is missing or belongs to another client on the server: a                  transaction-mode pooler is in between. Statements are unnamed from now on (set                  DATABASE_STATEMENTS=unnamed to start so)"
            );
        }
    }

    /// A named statement that is missing (26000) or already there (42P05) means that one
    /// pooled connection reaches several server connections: a transaction-mode pooler
    /// that does not track prepared statements (PgBouncer before 1.21). With
    /// DATABASE_STATEMENTS=prepared that is what was asked for: said once, loudly.
    fn explain_missing_statement(&self, err: &Error) {
        static SAID: AtomicBool = AtomicBool::new(false);
        if self.statements == StatementMode::Prepared
            && statement_went_missing(err)
            && !SAID.swap(true, Ordering::Relaxed)
        {
            tracing::error!(
                error = %err,
                "a prepared statement is missing or duplicated on the server: is a transaction-mode \
                 pooler (PgBouncer before 1.21, or without max_prepared_statements) between the \
                 service and PostgreSQL? Set DATABASE_STATEMENTS=unnamed"
            );
        }
    }
}

/// One transaction's work, owned, so that a task of its own can finish it.
struct Pipeline {
    settings: [String; 3],
    limits: Arc<[String; 3]>,
    set_context: Sql,
    call: Sql,
    params: Vec<Encoded>,
    /// `begin; set local ...;` in [`ContextMode::SetLocal`].
    set_local: Option<String>,
}

/// What a named statement looks like when a pooler hands it to the wrong server
/// connection: missing (26000), already there (42P05), or another client's with other
/// parameters (08P01 for a count that differs, 42P08 for types).
fn statement_went_missing(err: &Error) -> bool {
    matches!(err.sqlstate(), Some("26000" | "42P05" | "08P01" | "42P08"))
}

/// Whether `conn` reaches the PostgreSQL server `target` names, not a pooler in between:
/// over TCP, the server's own address and port (`inet_server_addr()`, `inet_server_port()`)
/// are one of the addresses the host resolves to and the port connected to; over a Unix
/// socket, the server is on a Unix socket too, with that port. Asked in the simple-query
/// protocol, which every pooler passes.
pub async fn connection_is_direct(conn: &Client, target: &tokio_postgres::Config) -> Result<bool, String> {
    use tokio_postgres::{SimpleQueryMessage, config::Host};
    let messages = conn
        .simple_query("select host(inet_server_addr()), inet_server_port()::text, current_setting('port')")
        .await
        .map_err(|err| err.to_string())?;
    let Some(SimpleQueryMessage::Row(row)) =
        messages.into_iter().find(|m| matches!(m, SimpleQueryMessage::Row(_)))
    else {
        return Err("no answer".into());
    };
    let (server_addr, server_port) = (row.get(0), row.get(1));
    let listening_port = row.get(2).unwrap_or_default();
    let ports = target.get_ports();
    let port_of = |i: usize| ports.get(i).or(ports.first()).copied().unwrap_or(5432).to_string();
    for (i, host) in target.get_hosts().iter().enumerate() {
        let port = port_of(i);
        let direct = match host {
            // (Which directories it listens in is for superusers to read.)
            Host::Unix(_) => server_addr.is_none() && listening_port == port,
            Host::Tcp(name) => {
                let (Some(addr), Some(server_port)) = (server_addr, server_port) else { continue };
                let Ok(addr) = addr.parse::<IpAddr>() else { continue };
                let resolved: Vec<IpAddr> = match tokio::net::lookup_host((name.as_str(), 0)).await {
                    Ok(found) => found.map(|a| a.ip()).collect(),
                    Err(_) => continue,
                };
                server_port == port && resolved.contains(&addr)
            }
        };
        if direct {
            return Ok(true);
        }
    }
    Ok(false)
}

impl Pipeline {
    /// The same steps, polled together, in every mode: one round trip. BEGIN and COMMIT go
    /// as simple queries: nothing to prepare, fine for any pooler. The lease goes back to
    /// the pool only once the end of the transaction was answered.
    async fn run(&self, lease: Lease, named: bool) -> Result<Vec<Row>, Error> {
        let conn: &Client = lease.client();
        let [org, user, role] = &self.settings;
        let [timeout, max_issues, max_activity] = &*self.limits;
        let settings: [&(dyn ToSql + Sync); 6] = [org, user, role, timeout, max_issues, max_activity];
        let mut params: Vec<&(dyn ToSql + Sync)> =
            self.params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        hooks::mid_pipeline(org, &mut params);

        let (begun, context_set, rows, committed) = match (&self.set_local, named) {
            (None, true) => {
                // Prepared once per connection; the first use prepares both in one round
                // trip. Nothing is in a transaction yet: a failure leaves the connection idle.
                let prepared = futures::try_join!(
                    lease.object().prepare_typed_cached(self.set_context.text, self.set_context.param_types),
                    lease.object().prepare_typed_cached(self.call.text, self.call.param_types),
                );
                let (set_context, call) = match prepared {
                    Ok(statements) => statements,
                    Err(err) => return lease.answered(Err(err.into())),
                };
                let (begun, context_set, rows, committed) = futures::join!(
                    conn.batch_execute("begin"),
                    conn.query(&set_context, &settings),
                    conn.query(&call, &params),
                    conn.batch_execute("commit"),
                );
                (begun, context_set.map(drop), rows, committed)
            }
            (None, false) => {
                let (begun, context_set, rows, committed) = futures::join!(
                    conn.batch_execute("begin"),
                    query_unnamed(conn, &self.set_context, &settings),
                    query_unnamed(conn, &self.call, &params),
                    conn.batch_execute("commit"),
                );
                (begun, context_set.map(drop), rows, committed)
            }
            // The BEGIN carries the settings: three messages instead of four.
            (Some(begin), true) => {
                let call =
                    match lease.object().prepare_typed_cached(self.call.text, self.call.param_types).await {
                        Ok(call) => call,
                        Err(err) => return lease.answered(Err(err.into())),
                    };
                let (begun, rows, committed) = futures::join!(
                    conn.batch_execute(begin),
                    conn.query(&call, &params),
                    conn.batch_execute("commit"),
                );
                (begun, Ok(()), rows, committed)
            }
            (Some(begin), false) => {
                let (begun, rows, committed) = futures::join!(
                    conn.batch_execute(begin),
                    query_unnamed(conn, &self.call, &params),
                    conn.batch_execute("commit"),
                );
                (begun, Ok(()), rows, committed)
            }
        };

        // A COMMIT the server answered (even with an error: then it rolled back) leaves the
        // connection idle and clean; without an answer its state is unknown.
        if committed.as_ref().is_err_and(|e| e.as_db_error().is_none()) {
            return Err(committed.expect_err("checked above").into());
        }
        let result = (|| {
            begun?;
            context_set?;
            let rows = rows?;
            committed?;
            Ok(rows)
        })();
        lease.answered(result)
    }
}

/// Tells the request's trace how its transaction ended, when dropped (`.1`: committed).
struct TransactionEnd(Option<(Arc<RequestTrace>, TransactionClock)>, bool);

impl Drop for TransactionEnd {
    fn drop(&mut self) {
        if let Some((trace, clock)) = self.0.take() {
            trace.transaction_ended(clock, self.1);
        }
    }
}

/// A pooled connection checked out for one transaction. It goes back to the pool only
/// through [`Lease::answered`], i.e. once the transaction's end was answered; dropped any
/// other way (a panic, an error without a server answer) it is detached from the pool and
/// closed: never reused with a transaction open or half a message in its buffer.
struct Lease(Option<Object>);

impl Lease {
    fn object(&self) -> &Object {
        self.0.as_ref().expect("a lease holds its connection until it ends")
    }

    fn client(&self) -> &Client {
        self.object()
    }

    /// The transaction ended and the server said so: the connection is clean.
    fn answered<T>(mut self, result: Result<T, Error>) -> Result<T, Error> {
        drop(self.0.take());
        result
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(conn) = self.0.take() {
            drop(Object::take(conn));
        }
    }
}

/// A parameter encoded before any connection is touched: the encoding of a value can
/// fail, or panic (postgres-types converts a timestamp to UTC with a `to_offset` that
/// panics on overflow), and either must happen before BEGIN is queued.
#[derive(Debug)]
struct Encoded {
    ty: Type,
    /// `None`: SQL NULL.
    value: Option<Bytes>,
}

impl ToSql for Encoded {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match &self.value {
            None => Ok(IsNull::Yes),
            Some(bytes) => {
                out.extend_from_slice(bytes);
                Ok(IsNull::No)
            }
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    /// Sent only as the type it was encoded for.
    fn to_sql_checked(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        if *ty != self.ty {
            return Err(format!("a parameter encoded as {} was to be sent as {ty}", self.ty).into());
        }
        self.to_sql(ty, out)
    }
}

/// Encodes `params` as `sql` declares their types.
fn encode(sql: &Sql, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Encoded>, Error> {
    debug_assert_eq!(params.len(), sql.param_types.len(), "{}", sql.text);
    params
        .iter()
        .zip(sql.param_types)
        .map(|(param, ty)| {
            let mut buf = BytesMut::new();
            let encoded =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| param.to_sql_checked(ty, &mut buf)))
                    .map_err(|_| Error::InvalidInput {
                        column: None,
                        message: "a value is outside the range PostgreSQL can store".into(),
                    })?
                    .map_err(Error::Internal)?;
            Ok(Encoded { ty: ty.clone(), value: matches!(encoded, IsNull::No).then(|| buf.freeze()) })
        })
        .collect()
}

/// Test hooks (the `test-hooks` feature, which only `cargo test` enables): faults the
/// suite injects where no input can reach.
mod hooks {
    use tokio_postgres::types::ToSql;

    /// The organization whose calls panic while their parameters are written, after BEGIN
    /// and the tenant's settings were queued: half a Bind message is then in the
    /// connection's buffer (what an overflowing timestamp once did).
    #[cfg(feature = "test-hooks")]
    pub const PANIC_MID_PIPELINE: &str = "test-hook-panic-mid-pipeline";

    #[cfg(feature = "test-hooks")]
    #[derive(Debug)]
    struct PanicsWhenEncoded;

    #[cfg(feature = "test-hooks")]
    impl ToSql for PanicsWhenEncoded {
        fn to_sql(
            &self,
            _: &tokio_postgres::types::Type,
            _: &mut bytes::BytesMut,
        ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
            panic!("test hook: a panic mid-pipeline");
        }

        fn accepts(_: &tokio_postgres::types::Type) -> bool {
            true
        }

        tokio_postgres::types::to_sql_checked!();
    }

    #[inline(always)]
    pub fn mid_pipeline(_organization: &str, _params: &mut [&(dyn ToSql + Sync)]) {
        #[cfg(feature = "test-hooks")]
        if _organization == PANIC_MID_PIPELINE
            && let Some(last) = _params.last_mut()
        {
            *last = &PanicsWhenEncoded;
        }
    }
}

#[cfg(feature = "test-hooks")]
pub use hooks::PANIC_MID_PIPELINE;

/// Runs `sql` as an unnamed statement. Its messages are queued on the first poll (before
/// any await), so it pipelines exactly like a prepared statement. The result columns
/// must be built-in types: another type would cost a catalog lookup.
async fn query_unnamed(
    conn: &Client,
    sql: &Sql,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, tokio_postgres::Error> {
    debug_assert_eq!(params.len(), sql.param_types.len(), "{}", sql.text);
    let typed = params.iter().zip(sql.param_types).map(|(param, ty)| (*param, ty.clone()));
    conn.query_typed_raw(sql.text, typed).await?.try_collect().await
}

/// `begin; set local ...;` for [`ContextMode::SetLocal`]: one simple-query message (so it
/// pipelines like the BEGIN it replaces), every value a quoted literal. SET cannot take a
/// bound parameter; the literals are what make it safe, not the ids' validation.
fn set_local_script(
    role: RequestRole,
    role_name: &str,
    settings: [&str; 3],
    limits: &[String; 3],
) -> Result<String, Error> {
    let mut script = String::with_capacity(160);
    // First, so that Citus forwards the SET LOCALs after it to the workers; for this
    // transaction only, and a harmless placeholder on plain PostgreSQL.
    script.push_str("begin; set local citus.propagate_set_commands = 'local';");
    if role == RequestRole::SwitchPerTransaction {
        script.push_str(" set local role ");
        script.push_str(role_name);
        script.push(';');
    }
    let names = CONTEXT_SETTINGS.iter().chain(&LIMIT_SETTINGS);
    for (name, value) in names.zip(settings.into_iter().chain(limits.iter().map(String::as_str))) {
        script.push_str(" set local ");
        script.push_str(name);
        script.push_str(" = ");
        push_literal(&mut script, value)?;
        script.push(';');
    }
    Ok(script)
}

/// Appends `value` as a string literal that means exactly `value` whatever the server's
/// `standard_conforming_strings`: `E'...'` with quotes and backslashes doubled (what
/// libpq's PQescapeLiteral does). A NUL would end the message early (and no PostgreSQL
/// text holds one): refused.
pub fn push_literal(out: &mut String, value: &str) -> Result<(), Error> {
    if value.contains('\0') {
        return Err(Error::InvalidInput { column: None, message: "a setting cannot hold NUL".into() });
    }
    out.reserve(value.len() + 3);
    out.push_str("E'");
    for c in value.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
    Ok(())
}
