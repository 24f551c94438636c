//! The integration suite: one binary (one build, one PostgreSQL cluster) with a module per
//! concern. Every test gets a fresh database and a server on a free port.

mod activity;
mod binary;
mod explain;
mod filters;
mod helpers;
mod hygiene;
mod isolation;
mod issues;
mod openapi;
mod pagination;
mod schema;
mod sql_rls;
mod startup;
mod validation;
