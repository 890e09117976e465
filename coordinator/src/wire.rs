//! The job core's types to and from their wire forms: the service converts requests and
//! replies here, and the job store its rows, so [`crate::job`] never sees a protobuf.

use prost::Message;
use sluice_common::ids::JobId;
use sluice_common::spec::JobSpec;
use sluice_common::split::Split;
use sluice_proto::pb;
use sluice_sdk::JobDescription;

use crate::job::{
    AssignedTask, Assignment, AttemptRef, JobInfo, JobStatus, MapOutput, Outcome, OutputLocation,
    PartFile, PartitionRows, PastAttempt, ReduceOutput, Resumed, TaskKind,
};
use crate::store::ResumableJob;

/// A stored job that cannot be rebuilt: what of it failed to decode, and why.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("job {job}: its stored {part} cannot be read: {reason}")]
pub struct StoredJobError {
    /// The job.
    pub job: String,
    /// `spec`, `plugin description`, `splits` or `attempt result`.
    pub part: &'static str,
    /// The decoder's message.
    pub reason: String,
}

impl From<&pb::MapDone> for MapOutput {
    fn from(d: &pb::MapDone) -> Self {
        MapOutput {
            partitions: d
                .partitions
                .iter()
                .map(|p| PartitionRows {
                    partition: p.partition,
                    rows: p.rows,
                    bytes: p.bytes,
                })
                .collect(),
            rows_in: d.rows_in,
            rows_out: d.rows_out,
            spill_path: d.spill_path.clone(),
            output_token: d.output_token,
            host_id: d.host_id.clone(),
            bad_records: d.bad_records,
            bad_by_kind: d.bad_by_kind.clone().into_iter().collect(),
            rejects_file: d.rejects_file.clone(),
            input_sums: d.input_sums.clone().into_iter().collect(),
            counters: d.counters.clone().into_iter().collect(),
        }
    }
}

impl From<&MapOutput> for pb::MapDone {
    fn from(d: &MapOutput) -> Self {
        pb::MapDone {
            partitions: d
                .partitions
                .iter()
                .map(|p| pb::PartitionStat {
                    partition: p.partition,
                    rows: p.rows,
                    bytes: p.bytes,
                })
                .collect(),
            rows_in: d.rows_in,
            rows_out: d.rows_out,
            spill_path: d.spill_path.clone(),
            output_token: d.output_token,
            host_id: d.host_id.clone(),
            bad_records: d.bad_records,
            bad_by_kind: d.bad_by_kind.clone().into_iter().collect(),
            rejects_file: d.rejects_file.clone(),
            input_sums: d.input_sums.clone().into_iter().collect(),
            counters: d.counters.clone().into_iter().collect(),
        }
    }
}

impl From<&pb::ReduceDone> for ReduceOutput {
    fn from(d: &pb::ReduceDone) -> Self {
        ReduceOutput {
            file: d.file.clone(),
            rows: d.rows,
            bytes: d.bytes,
            local_outputs: d.local_outputs,
            remote_outputs: d.remote_outputs,
            fetch_streams: d.fetch_streams,
            counters: d.counters.clone().into_iter().collect(),
            files: d
                .files
                .iter()
                .map(|f| PartFile {
                    file: f.file.clone(),
                    rows: f.rows,
                    bytes: f.bytes,
                })
                .collect(),
        }
    }
}

impl From<&ReduceOutput> for pb::ReduceDone {
    fn from(d: &ReduceOutput) -> Self {
        pb::ReduceDone {
            file: d.file.clone(),
            rows: d.rows,
            bytes: d.bytes,
            local_outputs: d.local_outputs,
            remote_outputs: d.remote_outputs,
            fetch_streams: d.fetch_streams,
            counters: d.counters.clone().into_iter().collect(),
            files: d
                .files
                .iter()
                .map(|f| pb::PartFile {
                    file: f.file.clone(),
                    rows: f.rows,
                    bytes: f.bytes,
                })
                .collect(),
        }
    }
}

/// A report's outcome.
pub fn outcome(o: &pb::report_task_request::Outcome) -> Outcome {
    use pb::report_task_request::Outcome as O;
    match o {
        O::MapDone(d) => Outcome::MapDone(d.into()),
        O::ReduceDone(d) => Outcome::ReduceDone(d.into()),
        O::Failed(f) => Outcome::Failed(f.into()),
    }
}

/// How the job store keeps a finished attempt's result: the encoded `MapDone` or
/// `ReduceDone`, nothing for a failure.
pub fn encode_result(outcome: &Outcome) -> Vec<u8> {
    match outcome {
        Outcome::MapDone(d) => pb::MapDone::from(d).encode_to_vec(),
        Outcome::ReduceDone(d) => pb::ReduceDone::from(d).encode_to_vec(),
        Outcome::Failed(_) => Vec::new(),
    }
}

impl From<&pb::AttemptRef> for AttemptRef {
    fn from(a: &pb::AttemptRef) -> Self {
        AttemptRef {
            job: JobId::new(a.job_id.clone()),
            kind: TaskKind::of(a.is_map),
            index: a.index,
            attempt: a.attempt,
        }
    }
}

impl From<&AttemptRef> for pb::AttemptRef {
    fn from(a: &AttemptRef) -> Self {
        pb::AttemptRef {
            job_id: a.job.to_string(),
            is_map: a.kind.is_map(),
            index: a.index,
            attempt: a.attempt,
        }
    }
}

/// Attempts as a worker lists them.
pub fn attempt_refs(refs: &[pb::AttemptRef]) -> Vec<AttemptRef> {
    refs.iter().map(AttemptRef::from).collect()
}

impl From<&OutputLocation> for pb::MapOutputLocation {
    fn from(l: &OutputLocation) -> Self {
        pb::MapOutputLocation {
            map_index: l.map_index,
            attempt: l.attempt,
            worker_id: l.worker.to_string(),
            shuffle_addr: l.shuffle_addr.clone(),
            expected_rows: l.expected_rows,
            path: l.path.clone(),
            output_token: l.output_token,
            host_id: l.host_id.clone(),
        }
    }
}

/// An assignment as the worker receives it; `runtime` is what every attempt of the job
/// needs besides its task.
pub fn assignment(a: &Assignment, runtime: &pb::JobRuntime) -> pb::TaskAssignment {
    use pb::task_assignment::Task;
    let task = match &a.task {
        AssignedTask::Map { index, split } => Task::Map(pb::MapTask {
            split: Some(pb::Split::from(split)),
            index: *index,
        }),
        AssignedTask::Reduce {
            partition,
            map_outputs,
        } => Task::Reduce(pb::ReduceTask {
            partition: *partition,
            map_outputs: map_outputs.iter().map(Into::into).collect(),
        }),
    };
    pb::TaskAssignment {
        job_id: a.job.to_string(),
        attempt: a.attempt,
        job: Some(runtime.clone()),
        task: Some(task),
    }
}

/// What every attempt of a job needs besides its task.
pub fn runtime(spec: &JobSpec, input_plan: &[u8]) -> pb::JobRuntime {
    pb::JobRuntime {
        spec: Some(pb::JobSpec::from(spec)),
        input_plan: input_plan.to_vec(),
    }
}

/// A job's status as clients see it: its state and error message. A job writing
/// `_SUCCESS` is still running to them.
pub fn state(status: &JobStatus) -> (pb::JobState, String) {
    match status {
        JobStatus::Running | JobStatus::Committing => (pb::JobState::Running, String::new()),
        JobStatus::Succeeded => (pb::JobState::Succeeded, String::new()),
        JobStatus::Failed(e) => (pb::JobState::Failed, e.clone()),
        JobStatus::Cancelled => (pb::JobState::Cancelled, "cancelled".into()),
        JobStatus::CommitFailed(e) => (pb::JobState::CommitFailed, e.clone()),
    }
}

impl From<&JobInfo> for pb::JobInfo {
    fn from(i: &JobInfo) -> Self {
        let (state, error) = state(&i.status);
        pb::JobInfo {
            job_id: i.id.to_string(),
            name: i.name.clone(),
            state: state as i32,
            error,
            maps_total: i.maps_total,
            maps_done: i.maps_done,
            reduces_total: i.reduces_total,
            reduces_done: i.reduces_done,
            rows_in: i.rows_in,
            rows_out: i.rows_out,
            output: i.output.clone(),
            submitted_ms: i.submitted_ms,
            finished_ms: i.finished_ms,
            shuffle_bytes: i.shuffle_bytes,
            plugin_sha256: i.plugin_sha256.clone(),
            attempts: i.attempts,
            failed_attempts: i.failed_attempts,
            shuffle_local_outputs: i.shuffle_local_outputs,
            shuffle_remote_outputs: i.shuffle_remote_outputs,
            shuffle_streams: i.shuffle_streams,
            bad_records: i.bad_records,
            bad_by_kind: i.bad_by_kind.clone().into_iter().collect(),
            counters: i.counters.clone().into_iter().collect(),
            run_key: i.run_key.clone(),
        }
    }
}

/// A status from its wire state and error (an unknown state reads as failed: it is no
/// state a job can run on from).
pub fn status(state: i32, error: &str) -> JobStatus {
    match pb::JobState::try_from(state) {
        Ok(pb::JobState::Running) => JobStatus::Running,
        Ok(pb::JobState::Succeeded) => JobStatus::Succeeded,
        Ok(pb::JobState::Cancelled) => JobStatus::Cancelled,
        Ok(pb::JobState::CommitFailed) => JobStatus::CommitFailed(error.to_string()),
        Ok(pb::JobState::Failed | pb::JobState::Unspecified) | Err(_) => {
            JobStatus::Failed(error.to_string())
        }
    }
}

impl From<&pb::JobInfo> for JobInfo {
    fn from(i: &pb::JobInfo) -> Self {
        JobInfo {
            id: JobId::new(i.job_id.clone()),
            name: i.name.clone(),
            status: status(i.state, &i.error),
            maps_total: i.maps_total,
            maps_done: i.maps_done,
            reduces_total: i.reduces_total,
            reduces_done: i.reduces_done,
            rows_in: i.rows_in,
            rows_out: i.rows_out,
            output: i.output.clone(),
            submitted_ms: i.submitted_ms,
            finished_ms: i.finished_ms,
            shuffle_bytes: i.shuffle_bytes,
            plugin_sha256: i.plugin_sha256.clone(),
            attempts: i.attempts,
            failed_attempts: i.failed_attempts,
            shuffle_local_outputs: i.shuffle_local_outputs,
            shuffle_remote_outputs: i.shuffle_remote_outputs,
            shuffle_streams: i.shuffle_streams,
            bad_records: i.bad_records,
            bad_by_kind: i.bad_by_kind.clone().into_iter().collect(),
            counters: i.counters.clone().into_iter().collect(),
            run_key: i.run_key.clone(),
        }
    }
}

/// Decodes a job the store was running when the coordinator stopped.
pub fn resumed(stored: ResumableJob) -> Result<Resumed, StoredJobError> {
    let job = stored.info.job_id.clone();
    let err = |part: &'static str, reason: String| StoredJobError {
        job: job.clone(),
        part,
        reason,
    };
    let spec = JobSpec::try_from(&stored.spec).map_err(|e| err("spec", e.to_string()))?;
    let description = JobDescription::decode(&stored.description).map_err(|e| {
        let reason = if stored.description.starts_with(b"name=") {
            "it is in the text form of an earlier Sluice; submit the job again".to_string()
        } else {
            e.to_string()
        };
        err("plugin description", reason)
    })?;
    let splits = stored
        .splits
        .iter()
        .map(Split::try_from)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err("splits", e.to_string()))?;
    let mut attempts = Vec::with_capacity(stored.attempts.len());
    for a in &stored.attempts {
        let kind = TaskKind::of(a.is_map);
        let output = match (a.state.as_str(), kind) {
            ("done", TaskKind::Map) => Some(Outcome::MapDone(
                (&pb::MapDone::decode(a.result.as_slice())
                    .map_err(|e| err("attempt result", e.to_string()))?)
                    .into(),
            )),
            ("done", TaskKind::Reduce) => Some(Outcome::ReduceDone(
                (&pb::ReduceDone::decode(a.result.as_slice())
                    .map_err(|e| err("attempt result", e.to_string()))?)
                    .into(),
            )),
            _ => None,
        };
        attempts.push(PastAttempt {
            kind,
            index: a.index,
            attempt: a.attempt,
            output,
        });
    }
    Ok(Resumed {
        id: JobId::new(job.clone()),
        submitted_ms: stored.info.submitted_ms,
        spec,
        description,
        input_plan: stored.input_plan,
        splits,
        attempts,
    })
}
