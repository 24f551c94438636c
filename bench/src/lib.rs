//! The benchmark drivers' shared parts (`bench/run`, `bench/scale`, the list benchmark
//! and the live stream benchmark are the binaries of this crate).

pub mod process;
pub mod streams;
