//! Operating the binary: start-up and its safety checks, signals, logs, health and metrics.

pub mod binary;
mod operations;
pub mod startup;
pub mod tls;
