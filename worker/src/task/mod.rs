//! Task execution: turning an assignment into a map or reduce attempt and its report.

mod combiner;
pub mod hive;
mod input_checks;
pub mod map_task;
mod reduce_body;
pub mod reduce_task;
pub mod rejects;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sluice_common::failure::TaskFailure;
use sluice_common::input_plan::InputPlan;
use sluice_common::spec::JobSpec;
use sluice_common::split::Split;
use sluice_proto::convert::decode_input_plan;
use sluice_proto::pb;
use sluice_proto::transport::{CoordinatorClient, Security};
use sluice_sdk::{TaskContext, TaskKind};
use tracing::Instrument;

use crate::cpu::CpuPool;
use crate::error::{TaskError, TaskResult};
use crate::plugin_cache::PluginCache;
use crate::shuffle::{MapOutputId, ShuffleRegistry};

/// What every task on this worker shares.
#[derive(Clone)]
pub struct TaskEnv {
    /// This worker's id as the coordinator assigned it.
    pub worker_id: String,
    /// The secret issued with `worker_id`, sent with reports and commit requests.
    pub secret: String,
    /// Root of this worker's local files.
    pub work_dir: PathBuf,
    /// Map outputs this worker serves.
    pub registry: ShuffleRegistry,
    /// Where task bodies run.
    pub cpu: CpuPool,
    /// The coordinator.
    pub coordinator: CoordinatorClient,
    /// Token and TLS for calls to other workers.
    pub security: Security,
    /// The machine this worker runs on.
    pub host_id: String,
    /// Memory a task may use at most (the worker's memory over its slots).
    pub slot_memory: u64,
    /// Plugins downloaded from the coordinator.
    pub plugins: PluginCache,
    /// Set when the coordinator cancels this attempt.
    pub cancelled: Arc<AtomicBool>,
    /// Where a report's reply hands over the freed slot's next attempts.
    pub next_tasks: tokio::sync::mpsc::UnboundedSender<pb::TaskAssignment>,
}

/// The job-level part of an assignment, decoded.
#[derive(Clone)]
pub struct JobInfo {
    /// The job id.
    pub job_id: String,
    /// The spec as submitted.
    pub spec: Arc<JobSpec>,
    /// The schema of each input and side input, and the side inputs.
    pub inputs: Arc<InputPlan>,
}

impl JobInfo {
    fn context(&self, kind: TaskKind, task_index: u32, attempt: u32) -> TaskContext {
        TaskContext {
            job_id: self.job_id.clone(),
            kind,
            task_index,
            attempt,
            params: self
                .spec
                .params
                .clone()
                .into_iter()
                .collect::<BTreeMap<_, _>>(),
            input: String::new(),
            counters: Default::default(),
            sides: Default::default(),
        }
    }
}

async fn decode_job(env: &TaskEnv, a: &pb::TaskAssignment) -> TaskResult<JobInfo> {
    let runtime = a
        .job
        .as_ref()
        .ok_or_else(|| TaskError::Assignment("no job runtime".into()))?;
    let spec = runtime
        .spec
        .as_ref()
        .ok_or_else(|| TaskError::Assignment("no job spec".into()))?;
    let mut spec = JobSpec::try_from(spec).map_err(|e| TaskError::Assignment(e.to_string()))?;
    if !spec.plugin_sha256.is_empty() {
        // Load this worker's verified copy, whatever path the client had.
        let path = env
            .plugins
            .get(&env.coordinator, &spec.plugin_sha256)
            .await?;
        spec.plugin = path.to_string_lossy().into_owned();
    }
    let inputs =
        decode_input_plan(&runtime.input_plan).map_err(|e| TaskError::Assignment(e.to_string()))?;
    Ok(JobInfo {
        job_id: a.job_id.clone(),
        spec: Arc::new(spec),
        inputs: Arc::new(inputs),
    })
}

/// Runs one assignment to its end and reports the outcome to the coordinator; returns
/// whether the reply handed this slot its next attempt (sent to [`TaskEnv::next_tasks`]).
pub async fn run_assignment(env: TaskEnv, a: pb::TaskAssignment) -> bool {
    let (is_map, index) = match &a.task {
        Some(pb::task_assignment::Task::Map(m)) => (true, m.index),
        Some(pb::task_assignment::Task::Reduce(r)) => (false, r.partition),
        None => (true, 0),
    };
    // The span's `log` field is the attempt's own log file (see `crate::logs`); job ids
    // that cannot name a file were refused before the attempt started.
    let log = crate::logs::files::attempt_path(
        &env.work_dir.join("logs"),
        &a.job_id,
        is_map,
        index,
        a.attempt,
    );
    let span = tracing::info_span!(
        crate::logs::SPAN,
        job = %a.job_id,
        kind = if is_map { "map" } else { "reduce" },
        index,
        attempt = a.attempt,
        log = %log.display()
    );
    span.in_scope(|| tracing::info!(worker = %env.worker_id, "attempt started"));
    let metrics = &crate::metrics::METRICS;
    let kind = if is_map { "map" } else { "reduce" };
    let started = std::time::Instant::now();
    let reserved = i64::try_from(env.slot_memory).unwrap_or(i64::MAX);
    metrics.slots_busy.inc();
    metrics.memory_reserved.inc_by(reserved);
    let outcome = execute(&env, &a).instrument(span.clone()).await;
    metrics.slots_busy.dec();
    metrics.memory_reserved.dec_by(reserved);
    let ended = match (&outcome, env.cancelled.load(Ordering::SeqCst)) {
        (_, true) => "cancelled",
        (Ok(_), false) => "succeeded",
        (Err(_), false) => "failed",
    };
    metrics.attempt_ended(kind, ended, started.elapsed());
    if outcome.is_ok() {
        span.in_scope(|| tracing::info!("attempt finished"));
    }
    if env.cancelled.load(Ordering::SeqCst) {
        // Nobody waits for this attempt: drop what it wrote instead of reporting it.
        if is_map {
            if outcome.is_ok() {
                env.registry.remove(&MapOutputId {
                    job_id: a.job_id.clone(),
                    map_index: index,
                    attempt: a.attempt,
                });
            }
            let job_dir = env.work_dir.join("shuffle").join(&a.job_id);
            let spill =
                crate::task::map_task::spill_path(&env.work_dir, &a.job_id, index, a.attempt);
            let _ = tokio::fs::remove_file(spill).await;
            // Cancelled because its job ended, it may have made the job's directory again
            // after the job's files were removed: an empty one goes too.
            let _ = tokio::fs::remove_dir(&job_dir).await;
        }
        tracing::info!(job = %a.job_id, index, attempt = a.attempt, "cancelled attempt ended");
        return false;
    }
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            span.in_scope(|| tracing::warn!(job = %a.job_id, index, attempt = a.attempt, error = %e, "task attempt failed"));
            pb::report_task_request::Outcome::Failed(pb::TaskFailure::from(&TaskFailure::from(&e)))
        }
    };
    let report = pb::ReportTaskRequest {
        worker_id: env.worker_id.clone(),
        secret: env.secret.clone(),
        job_id: a.job_id.clone(),
        is_map,
        index,
        attempt: a.attempt,
        outcome: Some(outcome),
        want_task: true,
    };
    // Reports are keyed by attempt, so repeating one is harmless; losing one would leave the
    // task running forever in the coordinator's eyes.
    for retry in 0..5u32 {
        match env.coordinator.clone().report_task(report.clone()).await {
            Ok(reply) => {
                let mut handed = false;
                for next in reply.into_inner().assignments {
                    handed |= env.next_tasks.send(next).is_ok();
                }
                return handed;
            }
            Err(e) => {
                tracing::warn!(error = %e, retry, "reporting task outcome failed");
                tokio::time::sleep(std::time::Duration::from_millis(200 << retry)).await;
            }
        }
    }
    false
}

async fn execute(
    env: &TaskEnv,
    a: &pb::TaskAssignment,
) -> TaskResult<pb::report_task_request::Outcome> {
    let job = decode_job(env, a).await?;
    // The coordinator assigns only jobs that fit; this guards against one that does not.
    if job.spec.task_memory > env.slot_memory {
        return Err(TaskError::Assignment(format!(
            "the job's task memory ({} bytes) exceeds this worker's share per slot ({} bytes)",
            job.spec.task_memory, env.slot_memory
        )));
    }
    match &a.task {
        Some(pb::task_assignment::Task::Map(m)) => {
            let split = m
                .split
                .as_ref()
                .ok_or_else(|| TaskError::Assignment("map task without a split".into()))
                .and_then(|s| {
                    Split::try_from(s).map_err(|e| TaskError::Assignment(e.to_string()))
                })?;
            let bytes = split.planned_bytes();
            let done = map_task::run(env, &job, m.index, a.attempt, split).await?;
            let m = &crate::metrics::METRICS;
            m.input_bytes.inc_by(bytes);
            m.spilled_bytes
                .inc_by(done.partitions.iter().map(|p| p.bytes).sum());
            m.rejected_records.inc_by(done.bad_records);
            Ok(pb::report_task_request::Outcome::MapDone(done))
        }
        Some(pb::task_assignment::Task::Reduce(r)) => {
            let done = reduce_task::run(env, &job, r.partition, a.attempt, &r.map_outputs).await?;
            crate::metrics::METRICS.outputs_read(
                u64::from(done.local_outputs),
                u64::from(done.remote_outputs),
            );
            Ok(pb::report_task_request::Outcome::ReduceDone(done))
        }
        None => Err(TaskError::Assignment("assignment without a task".into())),
    }
}
