//! The integration suite: one binary (one build, one PostgreSQL cluster) with a module per
//! concern. Every test gets a fresh database and a server on a free port.

mod activity;
mod binary;
mod browser;
mod citus;
mod concurrency;
mod conformance;
mod context_mode;
mod dba;
mod errors_md;
mod explain;
mod filters;
mod helpers;
mod hostile;
mod hygiene;
mod idempotency;
mod instances;
mod isolation;
mod issues;
mod jwt;
mod list_body;
mod openapi;
mod operations;
mod pagination;
mod partitions;
mod pgbouncer;
mod plans;
mod rate_limits;
mod readme;
mod round_trips;
mod schema;
mod schema_sql;
mod sql_rls;
mod startup;
mod timeouts;
mod validation;
