//! The integration suite: one binary (one build, one PostgreSQL cluster) with a module per
//! concern. Every test gets a fresh database and a server on a free port.

mod binary;
mod helpers;
mod hygiene;
mod isolation;
mod issues;
mod list_body;
mod openapi;
mod plans;
mod round_trips;
mod schema;
mod sql_rls;
mod startup;
mod validation;
