//! The integration suite: one binary (one build, one PostgreSQL cluster), grouped by the
//! boundary each test checks: isolation/ (the tenant-isolation proofs, in one place),
//! http/, sql/, ops/ and docs/. Every test gets a fresh database and a server on a free
//! port.

mod docs;
mod helpers;
mod http;
mod isolation;
mod ops;
mod sql;
