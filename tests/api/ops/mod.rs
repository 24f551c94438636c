//! Operating the binary: start-up and its safety checks, signals, logs, health and metrics.

pub mod binary;
mod operations;
pub mod startup;
mod telemetry;
pub mod tls;
