//! Tenant isolation, proved at every layer: over HTTP, in SQL as the API role, in the
//! catalog, in the pool, behind PgBouncer, across partitions and the DBA views, on the
//! Citus-shaped policies, and against a hostile tenant.

pub mod catalog;
mod citus;
mod dba;
mod hostile;
pub mod http;
mod partitions;
mod pgbouncer;
mod pool_hygiene;
mod sql;
mod streams;
