//! The scoped transaction: the only way a request reaches PostgreSQL.
//!
//! One call is one transaction on one pooled connection, sent as a single pipeline:
//!
//! ```sql
//! begin;
//! select set_config('app.org_id', $1, true), set_config('app.user_id', $2, true),
//!        set_config('app.role', $3, true), set_config('statement_timeout', $4, true);
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
//! Hygiene: if this future is dropped (client gone, timeout) before the pipeline is
//! polled, nothing was sent; after, all four statements are queued and the connection
//! ends the transaction by itself before it serves anyone else. The one state we cannot
//! vouch for is a COMMIT that failed without a server answer: that connection is
//! detached from the pool and closed, never reused.

use std::{sync::Arc, time::Duration};

use deadpool_postgres::{Object, Pool};
use tokio_postgres::{Row, types::ToSql};

use super::{Error, pool::RequestRole};
use crate::domain::TenantContext;

/// Settings for one transaction, in one statement with bound parameters. The statement
/// time-out is transaction-local too: it bounds the function call that follows.
const SET_CONTEXT: &str = "select set_config('app.org_id', $1, true), \
     set_config('app.user_id', $2, true), set_config('app.role', $3, true), \
     set_config('statement_timeout', $4, true)";
/// The same, when the connection logged in as another role and switches to the API role
/// for this transaction only (as PostgREST does).
const SET_CONTEXT_AND_ROLE: &str = "select set_config('role', 'tenantry_api', true), \
     set_config('app.org_id', $1, true), set_config('app.user_id', $2, true), \
     set_config('app.role', $3, true), set_config('statement_timeout', $4, true)";

/// The request pool plus how its connections become the API role.
#[derive(Clone)]
pub struct Database {
    pool: Pool,
    set_context: &'static str,
    /// `statement_timeout` for every request transaction, in milliseconds ("0": none).
    statement_timeout: Arc<str>,
}

impl Database {
    pub fn new(pool: Pool, role: RequestRole) -> Self {
        let set_context = match role {
            RequestRole::LoggedIn => SET_CONTEXT,
            RequestRole::SwitchPerTransaction => SET_CONTEXT_AND_ROLE,
        };
        Database { pool, set_context, statement_timeout: "0".into() }
    }

    /// Bounds every statement of a request transaction (PostgreSQL cancels it: 57014).
    pub fn with_statement_timeout(mut self, timeout: Duration) -> Self {
        self.statement_timeout = timeout.as_millis().to_string().into();
        self
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Runs `sql` (a call of one `api` function) in a transaction scoped to `ctx`.
    pub async fn call(
        &self,
        ctx: &TenantContext,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, Error> {
        let settings = [ctx.org_id.as_str(), ctx.user_id.as_str(), ctx.role.as_str()];
        self.run(settings, sql, params).await
    }

    /// Like [`Database::call`] with every setting empty, i.e. no tenant: for checks of
    /// the role itself (see `safety.rs`).
    pub(super) async fn call_without_tenant(
        &self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, Error> {
        self.run(["", "", ""], sql, params).await
    }

    async fn run(
        &self,
        settings: [&str; 3],
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, Error> {
        let conn = self.pool.get().await?;
        // Prepared once per connection; the first use prepares both in one round trip.
        let (set_context, call) =
            futures::try_join!(conn.prepare_cached(self.set_context), conn.prepare_cached(sql))?;
        let timeout = &*self.statement_timeout;
        let settings: [&(dyn ToSql + Sync); 4] = [&settings[0], &settings[1], &settings[2], &timeout];

        let (begun, context_set, rows, committed) = futures::join!(
            conn.batch_execute("begin"),
            conn.query(&set_context, &settings),
            conn.query(&call, params),
            conn.batch_execute("commit"),
        );

        if committed.as_ref().is_err_and(|e| e.as_db_error().is_none()) {
            discard(conn);
        }
        begun?;
        context_set?;
        let rows = rows?;
        committed?;
        Ok(rows)
    }
}

/// Closes a connection whose transaction state is unknown instead of returning it.
fn discard(conn: Object) {
    drop(Object::take(conn));
}
