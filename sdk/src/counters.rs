//! Counters a job adds to while it runs (`ctx.counter("name", n)`), as Hadoop's and
//! Spark's accumulators: each call's counts go back to the engine with the call's result,
//! and only the attempt that finishes a task counts, so totals are exact under retries.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Format of the encoded counters: bump it when their shape changes.
pub const COUNTERS_FORMAT: u32 = 1;

/// Named counts, added to from any thread of one call.
#[derive(Default)]
pub struct Counters(Mutex<BTreeMap<String, i64>>);

impl Counters {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, i64>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds `n` to counter `name` (saturating).
    pub fn add(&self, name: &str, n: i64) {
        let mut counts = self.lock();
        let c = counts.entry(name.to_string()).or_default();
        *c = c.saturating_add(n);
    }

    /// The counts so far, emptying them.
    pub fn take(&self) -> BTreeMap<String, i64> {
        std::mem::take(&mut *self.lock())
    }
}

impl Clone for Counters {
    fn clone(&self) -> Self {
        Counters(Mutex::new(self.lock().clone()))
    }
}

impl PartialEq for Counters {
    fn eq(&self, other: &Self) -> bool {
        *self.lock() == *other.lock()
    }
}

impl Eq for Counters {}

impl std::fmt::Debug for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.lock().fmt(f)
    }
}

/// Adds `more` into `into` (saturating).
pub fn merge(into: &mut BTreeMap<String, i64>, more: BTreeMap<String, i64>) {
    for (name, n) in more {
        let c = into.entry(name).or_default();
        *c = c.saturating_add(n);
    }
}
