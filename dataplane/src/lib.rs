//! The parts of the data plane that work without a runtime, as a library
//! so the benchmark harness (`perf/`) measures the same code the `postern`
//! binary runs.

pub mod translate;
