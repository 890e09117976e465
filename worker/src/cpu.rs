//! The bridge from async code to the worker's CPU pool.
//!
//! Task bodies (decode, map, combine, partition, sort, encode) are CPU work: they run on a
//! dedicated rayon pool with one thread per slot, never on tokio's reactor threads, and the
//! caller awaits the result. The current tracing span goes along.

use std::sync::Arc;

use tokio::sync::oneshot;

/// A pool of CPU threads for task bodies.
#[derive(Clone)]
pub struct CpuPool {
    pool: Arc<rayon::ThreadPool>,
}

impl CpuPool {
    /// A pool of `threads` threads named `sluice-cpu-N`.
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .thread_name(|i| format!("sluice-cpu-{i}"))
            .build()
            .map_err(std::io::Error::other)?;
        Ok(CpuPool {
            pool: Arc::new(pool),
        })
    }

    /// Runs `f` on the pool and awaits its result. A panic in `f` comes back as `Err`.
    pub async fn run<T, F>(&self, f: F) -> Result<T, String>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let span = tracing::Span::current();
        let queue = &crate::metrics::METRICS.cpu_queue;
        queue.inc();
        self.pool.spawn(move || {
            crate::metrics::METRICS.cpu_queue.dec();
            let _entered = span.enter();
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            let _ = tx.send(out);
        });
        match rx.await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(panic)) => Err(panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "task panicked".into())),
            Err(_) => Err("cpu pool dropped the task".into()),
        }
    }
}
