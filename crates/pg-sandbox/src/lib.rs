//! Private PostgreSQL clusters ([`postgres`]) and PgBouncers in transaction mode
//! ([`pgbouncer`]), run from the locally installed binaries as children that die with
//! this process ([`child`]): the zero-setup database of `cargo run`, the test suite's
//! cluster, and the benchmarks'. Nothing here is used by a deployed service.

mod child;
pub mod pgbouncer;
pub mod postgres;
