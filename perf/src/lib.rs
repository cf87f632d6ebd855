//! Shared by Postern's benchmark tools and its micro-benchmarks
//! (`cargo bench -p postern-perf`): the inputs they measure with and the
//! timing loop, so every figure for the same path is taken on the same
//! bytes.

#![forbid(unsafe_code)]

pub mod fixtures;

use std::time::Instant;

/// Nanoseconds per call of `f`: the median of 9 batches of `iterations`.
pub fn ns_per_op(iterations: u32, mut f: impl FnMut()) -> f64 {
    let mut batches: Vec<f64> = (0..9)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iterations {
                f();
            }
            start.elapsed().as_nanos() as f64 / f64::from(iterations.max(1))
        })
        .collect();
    batches.sort_by(f64::total_cmp);
    batches[4]
}
