//! The benchmark drivers' shared parts (`bench/run`, `bench/scale` and the list
//! benchmark are the binaries of this crate).

pub mod process;
