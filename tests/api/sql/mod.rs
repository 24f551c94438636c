//! The SQL itself: plans, round trips on the wire, the SET LOCAL mode, sql/schema.sql and
//! sql/ERRORS.md kept equal to the migrations.

mod context_mode;
mod errors_md;
pub mod explain;
mod plans;
mod round_trips;
mod schema_sql;
