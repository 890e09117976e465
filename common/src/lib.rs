//! # sluice-common: what the coordinator and the worker share
//!
//! Neither side of the wire imports the other; both build on these types.
//!
//! # Layout
//! - [`ids`]: newtypes for job and worker ids.
//! - [`spec`]: the job as submitted ([`spec::JobSpec`]) and its input/output formats.
//! - [`split`]: one unit of map input (a byte range of a text file or row groups of Parquet).
//! - [`format`]: reading a split as Arrow record batches, line-aligned ranges, writing part
//!   files, schemas as bytes.
//! - [`partition`]: the fixed hash that assigns a key to a reduce partition.
//! - [`agg`]: the hash aggregation behind declared aggregates (combiner and reducer).
//! - [`rules`]: data-quality rules checked on each batch read.
//! - [`plugin`]: loading a job plugin with `dlopen` and calling it over the C ABI.
//! - [`storage`]: input and output locations: local paths (`std::fs`) and object-store URLs
//!   (`s3://`, `gs://`, `az://`, `http(s)://`) through the `object_store` crate.
//! - [`bad_records`]: bad-record policies and limits, and the records readers set aside.
//! - [`failure`]: why a task attempt failed, typed, with its retryability.
//! - [`control`]: control totals (records and column sums) checked before publishing.
//! - [`config`]: the TOML configuration file shared by every process.
//! - [`digest`]: sha256 of plugin libraries, their identity across the cluster.
//! - [`error`]: this crate's error type.

#![warn(missing_docs)]

pub mod agg;
pub mod bad_records;
pub mod config;
pub mod control;
pub mod digest;
pub mod error;
pub mod failure;
pub mod format;
pub mod ids;
pub mod input_plan;
pub mod metrics;
pub mod partition;
pub mod plugin;
pub mod rules;
pub mod spec;
pub mod split;
pub mod storage;

pub use error::{Error, Result};
