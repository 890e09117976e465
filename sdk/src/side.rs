//! Side inputs: small tables (`--side NAME=PATH`) the engine reads once per worker and
//! hands to every map call of the job, as Hadoop's distributed cache and Spark's broadcast
//! variables do: a currency's exchange rate, an account's branch, a list of codes to keep.
//!
//! The host reads each table and gives it to the plugin once per job
//! ([`crate::abi::SetSideInputFn`]); the plugin keeps it here, by job, until the host
//! drops the job's tables ([`crate::abi::DropSideInputsFn`]) when the job ends. A map call
//! finds its job's tables in its [`crate::TaskContext`] without a copy.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use arrow_array::RecordBatch;

/// The side inputs of one job, by name: cheap to clone (shared, never copied).
#[derive(Clone, Default)]
pub struct SideInputs(Option<Arc<BTreeMap<String, RecordBatch>>>);

impl SideInputs {
    /// The table named `name`, if the job was given one.
    pub fn get(&self, name: &str) -> Option<&RecordBatch> {
        self.0.as_ref().and_then(|t| t.get(name))
    }

    /// The names of the tables, in order.
    pub fn names(&self) -> Vec<&str> {
        self.0
            .as_ref()
            .map(|t| t.keys().map(String::as_str).collect())
            .unwrap_or_default()
    }
}

/// Two contexts hold the same side inputs when they share them (tables are never compared
/// row by row: a context compares by what it was handed).
impl PartialEq for SideInputs {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for SideInputs {}

impl std::fmt::Debug for SideInputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

type Registry = Mutex<HashMap<String, Arc<BTreeMap<String, RecordBatch>>>>;

/// This plugin's side inputs, by job id.
fn registry() -> &'static Registry {
    static TABLES: OnceLock<Registry> = OnceLock::new();
    TABLES.get_or_init(Default::default)
}

fn lock() -> std::sync::MutexGuard<'static, HashMap<String, Arc<BTreeMap<String, RecordBatch>>>> {
    registry().lock().unwrap_or_else(|p| p.into_inner())
}

/// Keeps `table` as side input `name` of job `job` (replacing one of that name).
pub(crate) fn set(job: &str, name: &str, table: RecordBatch) {
    let mut all = lock();
    // Copy on write: calls running now keep the tables they were handed.
    let tables = all.entry(job.to_string()).or_default();
    Arc::make_mut(tables).insert(name.to_string(), table);
}

/// The side inputs of job `job` (none if it was given none).
pub(crate) fn of(job: &str) -> SideInputs {
    SideInputs(lock().get(job).cloned())
}

/// Forgets the side inputs of job `job`; their memory goes with the last call using them.
pub(crate) fn drop_job(job: &str) {
    lock().remove(job);
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Int64Array;

    fn table(n: i64) -> RecordBatch {
        RecordBatch::try_from_iter([(
            "x",
            Arc::new(Int64Array::from(vec![n])) as arrow_array::ArrayRef,
        )])
        .unwrap()
    }

    #[test]
    fn tables_are_kept_by_job_and_dropped_with_it() {
        set("job-a", "fx", table(1));
        set("job-a", "branches", table(2));
        set("job-b", "fx", table(3));
        let a = of("job-a");
        assert_eq!(a.names(), ["branches", "fx"]);
        assert_eq!(a.get("fx"), Some(&table(1)));
        assert_eq!(of("job-b").get("fx"), Some(&table(3)));
        drop_job("job-a");
        assert!(of("job-a").get("fx").is_none());
        // A call that was handed the tables keeps them.
        assert_eq!(a.get("branches"), Some(&table(2)));
        assert_eq!(of("job-b").names(), ["fx"]);
        drop_job("job-b");
    }
}
