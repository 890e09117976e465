//! # sluice-worker: runs map and reduce tasks and serves shuffle data
//!
//! A worker registers with the coordinator, then pulls work: each heartbeat reports its free
//! slots and the reply carries task assignments. A task body is CPU work and runs on the
//! worker's rayon pool (one thread per slot, see [`cpu`]); network I/O stays on tokio.
//!
//! # Layout, in the order data flows
//! - [`task::map_task`]: read a split, call the plugin's `map`, combine, partition, spill.
//! - [`shuffle::spill`]: the Parquet spill file of one map attempt (format in [`shuffle`]).
//! - [`shuffle::serve`]: the gRPC service streaming one partition of one map output.
//! - [`shuffle::fetch`]: a reducer's client side of it.
//! - [`shuffle::merge`]: grouping fetched rows by key for a custom reduce.
//! - [`task::reduce_task`]: fetch, aggregate or reduce, write the part file, commit.
//! - [`runner`]: registration, the heartbeat loop, task dispatch and draining on stop.
//! - [`plugin_cache`]: plugins downloaded from the coordinator, verified by sha256.
//! - [`logs`]: each attempt's log lines, kept in the work dir and served to the coordinator.

#![warn(missing_docs)]

pub mod cpu;
pub mod error;
pub mod http;
pub mod logs;
pub mod metrics;
pub mod plugin_cache;
pub mod runner;
pub mod shuffle;
pub mod task;

pub use runner::{WorkerConfig, run_worker};
