//! Control threads: where a data-plane thread sends work it must never do
//! itself — name resolution, signing certificates, file I/O.
//!
//! One small pool serves every runtime of the process (edge workers and
//! connector runtimes attach it when they start). A worker hands work over
//! with [`run`] and goes on serving other connections until the answer
//! comes back.

use std::sync::OnceLock;

use monoio::blocking::DefaultThreadPool;

/// Threads in the pool: blocking name lookups can take seconds each, so a
/// few run side by side; callers bound how many they queue.
const THREADS: usize = 8;

/// The pool, to attach to a runtime as it is built.
pub fn pool() -> Box<DefaultThreadPool> {
    static POOL: OnceLock<DefaultThreadPool> = OnceLock::new();
    Box::new(POOL.get_or_init(|| DefaultThreadPool::new(THREADS)).clone())
}

/// Runs `f` on a control thread and waits for it without blocking the
/// calling runtime. `None` if the pool dropped the work.
pub async fn run<R, F>(f: F) -> Option<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    monoio::spawn_blocking(f).await.ok()
}
