//! Running nightly, with real processes: run keys, pipelines, schedules and file triggers,
//! incremental runs, input snapshots, timeouts, queues and alerts. One test binary, so the
//! engine is linked once for all of them.

#[path = "../common/mod.rs"]
mod common;

mod alerts;
mod incremental;
mod input_snapshot;
mod job_timeout;
mod pipelines;
mod queues;
mod run_keys;
mod schedules;
