//! # sluice-sdk: what a Sluice job links
//!
//! A job is a Rust type implementing [`Job`], built as a `cdylib` and exported with
//! [`export_job!`]. The engine loads the library with `dlopen`, checks its ABI version and
//! calls it once per record batch, never once per row.
//!
//! ```ignore
//! use sluice_sdk::prelude::*;
//!
//! #[derive(Default)]
//! struct Lengths;
//!
//! impl Job for Lengths {
//!     fn name(&self) -> &str { "lengths" }
//!     fn key_columns(&self) -> Vec<String> { vec!["line".into()] }
//!     fn aggregates(&self) -> Vec<Aggregate> { vec![Aggregate::count("n")] }
//!     fn map(&self, batch: RecordBatch, _ctx: &TaskContext) -> JobResult<RecordBatch> {
//!         Ok(batch)
//!     }
//! }
//! export_job!(Lengths);
//! ```
//!
//! # Layout
//! - [`Job`], [`TaskContext`], [`Aggregate`]: the author's API.
//! - [`abi`]: the versioned `extern "C"` function table and the helpers `export_job!` expands
//!   to. Batches cross the boundary through the Arrow C Data Interface only.
//! - [`describe`]: the job description (keys, aggregates, reduce kind).
//! - [`codec`]: the versioned serde + bincode form the description and the task context
//!   cross the boundary in, shared by plugin and host so both read it the same way.

#![warn(missing_docs)]

pub mod abi;
pub mod codec;
pub mod counters;
pub mod describe;
pub mod rules;
pub mod side;

use std::collections::BTreeMap;
use std::fmt;

pub use arrow_array;
pub use arrow_schema;

use arrow_array::RecordBatch;
use arrow_schema::{ArrowError, SchemaRef};

pub use describe::{AggFunc, Aggregate, JobDescription, ReduceKind};
pub use rules::{Check, Rule};

/// The items a job author needs, in one import.
pub mod prelude {
    pub use crate::{
        AggFunc, Aggregate, Job, JobError, JobResult, Rule, TaskContext, TaskKind, export_job,
    };
    pub use arrow_array::{self, Array, ArrayRef, RecordBatch};
    pub use arrow_schema::{self, DataType, Field, Schema, SchemaRef};
}

/// An error a job returns to the engine; the attempt fails with this message.
///
/// [`JobError::new`] (or `?` on a `String`, `&str` or `ArrowError`) is an error another
/// attempt may not hit (a resource, a flaky machine): the engine retries the task, as
/// Hadoop does, up to the job's attempts. [`JobError::invalid_input`] says that the input
/// itself cannot be processed (a column of the wrong type, a value the job refuses): every
/// attempt would fail the same way, so the job fails at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobError {
    message: String,
    invalid_input: bool,
}

impl JobError {
    /// An error another attempt may not hit: retried.
    pub fn new(message: impl Into<String>) -> Self {
        JobError {
            message: message.into(),
            invalid_input: false,
        }
    }

    /// The input cannot be processed by this job: not retried.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        JobError {
            message: message.into(),
            invalid_input: true,
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether every attempt would fail the same way.
    pub fn is_invalid_input(&self) -> bool {
        self.invalid_input
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for JobError {}

impl From<String> for JobError {
    fn from(s: String) -> Self {
        JobError::new(s)
    }
}

impl From<&str> for JobError {
    fn from(s: &str) -> Self {
        JobError::new(s)
    }
}

impl From<ArrowError> for JobError {
    fn from(e: ArrowError) -> Self {
        JobError::new(e.to_string())
    }
}

/// Result type of job callbacks.
pub type JobResult<T> = Result<T, JobError>;

/// Which side of the shuffle a call runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TaskKind {
    /// A map task reading one input split.
    Map,
    /// A reduce task producing one output partition.
    Reduce,
}

/// Format of the encoded [`TaskContext`]: bump it when the type changes shape.
pub const CONTEXT_FORMAT: u32 = 2;

/// What a job knows about the task calling it: ids and the job's `--param key=value` pairs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TaskContext {
    /// The job id assigned by the coordinator.
    pub job_id: String,
    /// Map or reduce.
    pub kind: TaskKind,
    /// Map task index (split number) or reduce partition.
    pub task_index: u32,
    /// Attempt number of this task, starting at 0.
    pub attempt: u32,
    /// Job parameters given at submission.
    pub params: BTreeMap<String, String>,
    /// The named input the map's batches come from (`--input NAME=PATH`); empty for an
    /// unnamed input and in a reduce.
    pub input: String,
    /// What the call counted ([`TaskContext::counter`]); not sent to the plugin.
    #[serde(skip)]
    pub counters: counters::Counters,
    /// The job's side inputs ([`TaskContext::side_input`]); the plugin finds them by job,
    /// so they never cross the boundary with a call.
    #[serde(skip)]
    pub sides: side::SideInputs,
}

impl TaskContext {
    /// The named input this map task reads (`--input NAME=PATH`): `""` for an unnamed
    /// input, and in a reduce, whose key groups hold the rows of every input.
    pub fn input_name(&self) -> &str {
        &self.input
    }

    /// Adds `n` to the job's counter `name`. Only the attempt that finishes a task counts,
    /// so the job's totals (in `sluice status` and `_SUCCESS`) are exact under retries.
    pub fn counter(&self, name: &str, n: i64) {
        self.counters.add(name, n);
    }

    /// The side input `name` (`--side NAME=PATH`): the whole table, read once per worker
    /// and shared by every map call of the job. `None` in a reduce, and when the job was
    /// not given a side input of that name.
    pub fn side_input(&self, name: &str) -> Option<&RecordBatch> {
        self.sides.get(name)
    }

    /// The value of job parameter `key`, if given.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params.get(key).map(String::as_str)
    }

    /// Parses job parameter `key`, or returns `default` when it is absent.
    pub fn param_parse<T: std::str::FromStr>(&self, key: &str, default: T) -> JobResult<T>
    where
        T::Err: fmt::Display,
    {
        match self.param(key) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|e| JobError::new(format!("job parameter {key}={v:?}: {e}"))),
        }
    }

    /// The binary form it crosses the plugin boundary in (see [`codec`]).
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(CONTEXT_FORMAT, self)
    }

    /// Decodes what [`TaskContext::encode`] wrote.
    pub fn decode(bytes: &[u8]) -> Result<Self, codec::DecodeError> {
        codec::decode(CONTEXT_FORMAT, "the task context", bytes)
    }
}

/// A Sluice job. Implement it, then `export_job!(YourType)`.
///
/// The engine reads each input split as Arrow record batches (`batch_rows` rows each) and
/// calls [`Job::map`] once per batch. The map output is partitioned by
/// [`Job::key_columns`]. Then either the declared [`Job::aggregates`] are applied per key
/// group (map-side as a combiner too, as Spark does), or, when there are none,
/// [`Job::reduce`] is called with batches sorted by key that never split a key group.
pub trait Job: Send + Sync + 'static {
    /// A short name for logs and the job list.
    fn name(&self) -> &str;

    /// The schema to read CSV or JSON-lines input with. `None` lets the engine infer it
    /// (CSV from the header and first rows, JSON from the first lines).
    fn input_schema(&self) -> Option<SchemaRef> {
        None
    }

    /// The schema to read the named input (or side input) `name` with, when it is CSV or
    /// JSON lines (`--input NAME=PATH`, `--side NAME=PATH`); `""` is the unnamed input.
    /// The default is [`Job::input_schema`] for every name: inputs of different shapes
    /// (a ledger and a rate table) each declare their own here.
    fn named_input_schema(&self, name: &str) -> Option<SchemaRef> {
        let _ = name;
        self.input_schema()
    }

    /// The input columns [`Job::map`] reads. Columnar input (Parquet) is read with only
    /// these, which saves decoding the others; `None` (the default) reads every column.
    /// The columns [`Job::rules`] check are read as well, so they need not be listed: a
    /// Parquet row group whose statistics prove a column's rules (`not_null` on a column
    /// with no nulls) skips that column, and `map` then gets a batch without it: a column
    /// `map` needs, or [`Job::check`] reads, must be listed here. A control file's columns
    /// (`--control`) are always read.
    fn input_columns(&self) -> Option<Vec<String>> {
        None
    }

    /// Columns of the map output that form the grouping key.
    fn key_columns(&self) -> Vec<String>;

    /// Aggregates computed per key group. Empty means the job has a custom [`Job::reduce`].
    fn aggregates(&self) -> Vec<Aggregate> {
        Vec::new()
    }

    /// Transforms one input batch into rows carrying the key columns (and the aggregate
    /// inputs). Vectorised: use arrow kernels, not a call per row.
    fn map(&self, batch: RecordBatch, ctx: &TaskContext) -> JobResult<RecordBatch>;

    /// Reduces whole key groups: `groups` is sorted by the key columns and a key group is
    /// never split across two calls. Only called when [`Job::aggregates`] is empty.
    fn reduce(&self, groups: RecordBatch, ctx: &TaskContext) -> JobResult<RecordBatch> {
        let _ = (groups, ctx);
        Err(JobError::new(format!(
            "job {} declares neither aggregates nor a reduce",
            self.name()
        )))
    }

    /// Data-quality rules on the input columns, checked on every batch before [`Job::map`]:
    /// a record failing one is a bad record (see the engine's `--on-bad-record`).
    fn rules(&self) -> Vec<Rule> {
        Vec::new()
    }

    /// Columns of the map output that order the rows of each key group when they reach
    /// [`Job::reduce`] (a secondary sort, as Hadoop's grouping comparator gives): empty, the
    /// rows of a group come in no particular order.
    fn sort_columns(&self) -> Vec<String> {
        Vec::new()
    }

    /// Names of the job's own data-quality checks, computed by [`Job::check`].
    fn checks(&self) -> Vec<String> {
        Vec::new()
    }

    /// The job's own data-quality checks of one input batch, run after [`Job::rules`] and
    /// before [`Job::map`] when [`Job::checks`] names any: one `Boolean` column per name, in
    /// that order, `true` where the row passes (a null passes). A row failing one is a bad
    /// record whose kind is the check's name.
    fn check(&self, batch: &RecordBatch, ctx: &TaskContext) -> JobResult<RecordBatch> {
        let _ = (batch, ctx);
        Err(JobError::new(format!(
            "job {} names checks but does not compute them",
            self.name()
        )))
    }

    /// The description the engine plans with; derived from the methods above.
    fn describe(&self) -> JobDescription {
        let aggregates = self.aggregates();
        JobDescription {
            name: self.name().to_string(),
            key_columns: self.key_columns(),
            reduce: if aggregates.is_empty() {
                ReduceKind::Custom
            } else {
                ReduceKind::Aggregate(aggregates)
            },
            input_columns: self.input_columns(),
            rules: self.rules(),
            checks: self.checks(),
            sort_columns: self.sort_columns(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_round_trips_with_awkward_values() {
        let mut params = BTreeMap::new();
        params.insert("a=b".to_string(), "line1\nline2\\x\0".to_string());
        params.insert("empty".to_string(), String::new());
        let ctx = TaskContext {
            job_id: "job-7".into(),
            kind: TaskKind::Reduce,
            task_index: 3,
            attempt: 2,
            params,
            input: String::new(),
            counters: Default::default(),
            sides: Default::default(),
        };
        assert_eq!(TaskContext::decode(&ctx.encode()).unwrap(), ctx);
    }

    #[test]
    fn param_parse_reports_the_bad_value() {
        let mut params = BTreeMap::new();
        params.insert("p".into(), "x".into());
        let ctx = TaskContext {
            job_id: "j".into(),
            kind: TaskKind::Map,
            task_index: 0,
            attempt: 0,
            params,
            input: String::new(),
            counters: Default::default(),
            sides: Default::default(),
        };
        let err = ctx.param_parse::<f64>("p", 0.0).unwrap_err();
        assert!(err.message().contains("p=\"x\""), "{err}");
        assert_eq!(ctx.param_parse::<u32>("missing", 5).unwrap(), 5);
    }
}
