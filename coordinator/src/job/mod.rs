//! One job's state and its transitions.
//!
//! ```text
//! task:  Pending ──assign──► Running{attempt, worker} ──done──► Done{attempt, worker}
//!           ▲                      │ failed (retryable, attempts left)
//!           └──────────────────────┘
//!        a Done map whose output cannot be fetched goes back to Pending (lineage)
//!
//! job:   Running ──all reduces committed──► Succeeded (_SUCCESS written)
//!           ├──── a task fails for good ───► Failed(message)
//!           └──── cancel ──────────────────► Cancelled
//! ```
//! Reduces are assigned once every map is done (Hadoop's slow-start of 1.0): a reduce task
//! carries the locations of all map outputs.

pub mod commit;
pub mod lineage;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use sluice_common::failure::{FailureReason, TaskFailure};
use sluice_common::ids::{JobId, WorkerId};
use sluice_common::spec::JobSpec;
use sluice_common::split::Split;
use sluice_proto::pb;
use sluice_sdk::JobDescription;

use lineage::Lineage;

use crate::store::{Event, Journal};

/// Attempts a task gets before its failure fails the job.
pub const MAX_ATTEMPTS: u32 = 4;

/// Where a task is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskStatus {
    /// Waiting for a worker.
    Pending,
    /// An attempt is running.
    Running {
        /// The attempt.
        attempt: u32,
        /// Its worker.
        worker: WorkerId,
    },
    /// An attempt finished.
    Done {
        /// The attempt.
        attempt: u32,
        /// Its worker.
        worker: WorkerId,
    },
}

/// A map or reduce task.
#[derive(Debug, Clone)]
pub struct TaskState {
    /// Where it is.
    pub status: TaskStatus,
    /// Attempts started so far (the next attempt's number: attempt ids are never reused).
    pub attempts: u32,
    /// Failed attempts that count against [`MAX_ATTEMPTS`] (fetch failures do not: they are
    /// the map's fault, not this task's).
    pub failures: u32,
    /// Fetch failures reported by this (reduce) task; past [`MAX_ATTEMPTS`] the job fails
    /// rather than re-running maps forever against an unreachable worker.
    pub fetch_failures: u32,
}

impl TaskState {
    fn new() -> Self {
        TaskState {
            status: TaskStatus::Pending,
            attempts: 0,
            failures: 0,
            fetch_failures: 0,
        }
    }

    fn done_attempt(&self) -> Option<u32> {
        match &self.status {
            TaskStatus::Done { attempt, .. } => Some(*attempt),
            _ => None,
        }
    }

    fn is_done(&self) -> bool {
        matches!(self.status, TaskStatus::Done { .. })
    }

    fn is_running(&self, attempt: u32) -> bool {
        matches!(&self.status, TaskStatus::Running { attempt: a, .. } if *a == attempt)
    }
}

/// Where a job is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobStatus {
    /// Tasks are being scheduled.
    Running,
    /// Every partition is committed and `_SUCCESS` written.
    Succeeded,
    /// A task failed for good.
    Failed(String),
    /// Cancelled by a client.
    Cancelled,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A submitted job.
pub struct Job {
    /// Its id.
    pub id: JobId,
    /// As submitted.
    pub spec: Arc<JobSpec>,
    /// What the plugin declared.
    pub description: JobDescription,
    /// Sent with every assignment.
    runtime: pb::JobRuntime,
    splits: Vec<Split>,
    maps: Vec<TaskState>,
    reduces: Vec<TaskState>,
    lineage: Lineage,
    commits: commit::Commits,
    /// Where it is.
    pub status: JobStatus,
    submitted_ms: u64,
    finished_ms: u64,
    failed_attempts: u32,
    journal: Journal,
}

/// What a worker reported for one attempt.
pub enum Outcome {
    /// A map attempt finished.
    MapDone(pb::MapDone),
    /// A reduce attempt committed.
    ReduceDone(pb::ReduceDone),
    /// The attempt failed.
    Failed(TaskFailure),
}

impl Job {
    /// A new running job over planned splits.
    pub fn new(
        id: JobId,
        spec: JobSpec,
        description: JobDescription,
        input_schema_ipc: Vec<u8>,
        splits: Vec<Split>,
    ) -> Self {
        let reducers = spec.reducers as usize;
        let runtime = pb::JobRuntime {
            spec: Some(pb::JobSpec::from(&spec)),
            input_schema_ipc,
        };
        Job {
            id,
            spec: Arc::new(spec),
            description,
            runtime,
            maps: vec![TaskState::new(); splits.len()],
            reduces: vec![TaskState::new(); reducers],
            lineage: Lineage::new(splits.len()),
            commits: commit::Commits::new(reducers),
            splits,
            status: JobStatus::Running,
            submitted_ms: now_ms(),
            finished_ms: 0,
            failed_attempts: 0,
            journal: Journal::disabled(),
        }
    }

    /// Journals this job's changes to the job store from now on.
    pub fn with_journal(mut self, journal: Journal) -> Self {
        self.journal = journal;
        self
    }

    /// Sends the job's current state to the store.
    fn journal_progress(&self) {
        self.journal.send(Event::JobUpdated(self.info()));
    }

    /// Whether the job has ended (any way).
    pub fn is_finished(&self) -> bool {
        self.status != JobStatus::Running
    }

    fn assignment(&self, attempt: u32, task: pb::task_assignment::Task) -> pb::TaskAssignment {
        pb::TaskAssignment {
            job_id: self.id.0.clone(),
            attempt,
            job: Some(self.runtime.clone()),
            task: Some(task),
        }
    }

    /// The next task this job can give `worker`, if any.
    pub fn next_task(&mut self, worker: &WorkerId) -> Option<pb::TaskAssignment> {
        if self.is_finished() {
            return None;
        }
        let start = |t: &mut TaskState| {
            let attempt = t.attempts;
            t.attempts += 1;
            t.status = TaskStatus::Running {
                attempt,
                worker: worker.clone(),
            };
            attempt
        };
        if let Some(i) = self
            .maps
            .iter()
            .position(|t| t.status == TaskStatus::Pending)
        {
            let attempt = start(&mut self.maps[i]);
            self.journal_start(true, i, attempt, worker);
            let task = pb::task_assignment::Task::Map(pb::MapTask {
                split: Some(pb::Split::from(&self.splits[i])),
                index: i as u32,
            });
            return Some(self.assignment(attempt, task));
        }
        if !self.maps.iter().all(TaskState::is_done) {
            return None;
        }
        let i = self
            .reduces
            .iter()
            .position(|t| t.status == TaskStatus::Pending)?;
        let attempt = start(&mut self.reduces[i]);
        self.journal_start(false, i, attempt, worker);
        let task = pb::task_assignment::Task::Reduce(pb::ReduceTask {
            partition: i as u32,
            map_outputs: self.lineage.locations(i as u32),
        });
        Some(self.assignment(attempt, task))
    }

    fn journal_start(&self, is_map: bool, index: usize, attempt: u32, worker: &WorkerId) {
        self.journal.send(Event::AttemptStarted {
            job: self.id.0.clone(),
            is_map,
            index: index as u32,
            attempt,
            worker: worker.0.clone(),
        });
    }

    /// Applies one attempt's report. Stale reports (an attempt that is no longer the running
    /// one) are ignored. Returns true when the job just completed all its reduces.
    pub fn on_report(
        &mut self,
        is_map: bool,
        index: u32,
        attempt: u32,
        worker: &WorkerId,
        shuffle_addr: &str,
        outcome: Outcome,
    ) -> bool {
        if self.is_finished() {
            return false;
        }
        let i = index as usize;
        let tasks = if is_map {
            &mut self.maps
        } else {
            &mut self.reduces
        };
        let Some(task) = tasks.get_mut(i) else {
            return false;
        };
        if !task.is_running(attempt) {
            tracing::debug!(job = %self.id, index, attempt, "ignoring a stale report");
            return false;
        }
        self.journal.send(Event::AttemptFinished {
            job: self.id.0.clone(),
            is_map,
            index,
            attempt,
            error: match &outcome {
                Outcome::Failed(f) => Some(f.message.clone()),
                _ => None,
            },
        });
        let all_done = self.apply_outcome(is_map, index, attempt, worker, shuffle_addr, outcome);
        self.journal_progress();
        all_done
    }

    fn apply_outcome(
        &mut self,
        is_map: bool,
        index: u32,
        attempt: u32,
        worker: &WorkerId,
        shuffle_addr: &str,
        outcome: Outcome,
    ) -> bool {
        let i = index as usize;
        let tasks = if is_map {
            &mut self.maps
        } else {
            &mut self.reduces
        };
        let task = &mut tasks[i];
        match outcome {
            Outcome::MapDone(done) => {
                task.status = TaskStatus::Done {
                    attempt,
                    worker: worker.clone(),
                };
                self.lineage
                    .record(index, attempt, worker, shuffle_addr, &done);
                false
            }
            Outcome::ReduceDone(done) => {
                task.status = TaskStatus::Done {
                    attempt,
                    worker: worker.clone(),
                };
                self.commits.record_done(index, done);
                self.reduces.iter().all(TaskState::is_done)
            }
            Outcome::Failed(failure) => {
                self.failed_attempts += 1;
                self.on_failure(is_map, i, failure);
                false
            }
        }
    }

    fn on_failure(&mut self, is_map: bool, i: usize, failure: TaskFailure) {
        let kind = if is_map { "map" } else { "reduce" };
        if !is_map {
            // Whatever failed, this attempt will not commit: free its grant.
            self.commits.revoke(i as u32);
        }
        if let (
            false,
            FailureReason::FetchFailed {
                map_index,
                map_attempt,
                ..
            },
        ) = (is_map, &failure.reason)
        {
            let task = &mut self.reduces[i];
            task.fetch_failures += 1;
            if task.fetch_failures > MAX_ATTEMPTS {
                let why = format!(
                    "reduce task {i} could not fetch map output {} times; last error: {}",
                    task.fetch_failures, failure.message
                );
                self.fail(why);
                return;
            }
            task.status = TaskStatus::Pending;
            // The map output is gone: re-run that map from its split (lineage), once per
            // lost output: a report about an older attempt than the one now done is stale.
            let m = *map_index as usize;
            if let Some(map) = self.maps.get_mut(m)
                && map.done_attempt() == Some(*map_attempt)
            {
                tracing::info!(job = %self.id, map = m, "map output lost, re-running the map");
                map.status = TaskStatus::Pending;
                self.lineage.forget(*map_index);
            }
            return;
        }
        let task = if is_map {
            &mut self.maps[i]
        } else {
            &mut self.reduces[i]
        };
        task.failures += 1;
        if !failure.retryable || task.failures >= MAX_ATTEMPTS {
            let why = if failure.retryable {
                format!(
                    "{kind} task {i} failed {} times; last error: {}",
                    task.failures, failure.message
                )
            } else {
                format!("{kind} task {i} failed: {}", failure.message)
            };
            self.fail(why);
        } else {
            tracing::info!(job = %self.id, kind, index = i, error = %failure.message, "retrying task");
            task.status = TaskStatus::Pending;
        }
    }

    /// Ends the job as failed and removes its temporary output.
    pub fn fail(&mut self, message: String) {
        tracing::warn!(job = %self.id, error = %message, "job failed");
        self.status = JobStatus::Failed(message);
        self.finished_ms = now_ms();
        self.commits.abort_output(&self.spec.output);
        self.journal_progress();
    }

    /// Ends the job as cancelled.
    pub fn cancel(&mut self) {
        if !self.is_finished() {
            self.status = JobStatus::Cancelled;
            self.finished_ms = now_ms();
            self.commits.abort_output(&self.spec.output);
            self.journal_progress();
        }
    }

    /// Whether `attempt` may commit `partition`: only the running attempt, and of those the
    /// first to ask.
    pub fn can_commit(&mut self, partition: u32, attempt: u32) -> bool {
        let running = self
            .reduces
            .get(partition as usize)
            .is_some_and(|t| t.is_running(attempt));
        !self.is_finished() && running && self.commits.authorize(partition, attempt)
    }

    /// Writes `_SUCCESS` and marks the job succeeded (or failed if that is impossible).
    pub fn succeed(&mut self) {
        match self.commits.write_success(&self.id, &self.spec.output) {
            Ok(()) => {
                self.status = JobStatus::Succeeded;
                self.finished_ms = now_ms();
                tracing::info!(job = %self.id, "job succeeded");
                self.journal_progress();
            }
            Err(e) => self.fail(format!("writing _SUCCESS: {e}")),
        }
    }

    /// The job as clients see it.
    pub fn info(&self) -> pb::JobInfo {
        let done = |ts: &[TaskState]| ts.iter().filter(|t| t.is_done()).count() as u32;
        let (state, error) = match &self.status {
            JobStatus::Running => (pb::JobState::Running, String::new()),
            JobStatus::Succeeded => (pb::JobState::Succeeded, String::new()),
            JobStatus::Failed(e) => (pb::JobState::Failed, e.clone()),
            JobStatus::Cancelled => (pb::JobState::Cancelled, "cancelled".into()),
        };
        pb::JobInfo {
            job_id: self.id.0.clone(),
            name: self.description.name.clone(),
            state: state as i32,
            error,
            maps_total: self.maps.len() as u32,
            maps_done: done(&self.maps),
            reduces_total: self.reduces.len() as u32,
            reduces_done: done(&self.reduces),
            rows_in: self.lineage.rows_in(),
            rows_out: self.commits.rows_out(),
            output: self.spec.output.clone(),
            submitted_ms: self.submitted_ms,
            finished_ms: self.finished_ms,
            shuffle_bytes: self.lineage.shuffle_bytes(),
            plugin_sha256: self.spec.plugin_sha256.clone(),
            attempts: self
                .maps
                .iter()
                .chain(&self.reduces)
                .map(|t| t.attempts)
                .sum(),
            failed_attempts: self.failed_attempts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_common::spec::InputFormat;
    use sluice_common::split::SplitRange;

    fn job(maps: usize, reducers: u32, output: &std::path::Path) -> Job {
        let mut spec = JobSpec::new(
            "p.so".into(),
            vec!["in".into()],
            InputFormat::Text,
            output.to_string_lossy().into_owned(),
        );
        spec.reducers = reducers;
        let splits = (0..maps)
            .map(|i| Split {
                path: format!("f{i}"),
                range: SplitRange::Bytes { start: 0, end: 1 },
            })
            .collect();
        let description = JobDescription {
            name: "t".into(),
            key_columns: vec!["k".into()],
            reduce: sluice_sdk::ReduceKind::Custom,
        };
        Job::new(JobId("job-1".into()), spec, description, Vec::new(), splits)
    }

    fn finish_map(j: &mut Job, w: &WorkerId, index: u32, attempt: u32) {
        j.on_report(
            true,
            index,
            attempt,
            w,
            "addr",
            Outcome::MapDone(pb::MapDone::default()),
        );
    }

    fn fetch_failed(map_index: u32, map_attempt: u32) -> Outcome {
        Outcome::Failed(TaskFailure {
            message: "unreachable".into(),
            retryable: true,
            reason: FailureReason::FetchFailed {
                map_index,
                map_attempt,
                worker_id: "w1".into(),
            },
        })
    }

    #[test]
    fn a_lost_map_output_reruns_the_map_once_and_the_reduce_waits() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = job(2, 2, dir.path());
        let w = WorkerId("w1".into());
        for _ in 0..2 {
            let a = j.next_task(&w).unwrap();
            let Some(pb::task_assignment::Task::Map(m)) = a.task else {
                panic!("maps come first")
            };
            finish_map(&mut j, &w, m.index, a.attempt);
        }
        let (r0, r1) = (j.next_task(&w).unwrap(), j.next_task(&w).unwrap());
        // Both reducers lose the same output of map 1 (attempt 0): it re-runs once.
        j.on_report(false, 0, r0.attempt, &w, "addr", fetch_failed(1, 0));
        let a = j.next_task(&w).unwrap();
        let Some(pb::task_assignment::Task::Map(m)) = a.task else {
            panic!("the lost map re-runs")
        };
        assert_eq!((m.index, a.attempt), (1, 1));
        j.on_report(false, 1, r1.attempt, &w, "addr", fetch_failed(1, 0));
        assert!(
            j.next_task(&w).is_none(),
            "no second re-run; reduces wait for the map"
        );
        finish_map(&mut j, &w, 1, 1);
        let again = j.next_task(&w).unwrap();
        assert!(matches!(
            again.task,
            Some(pb::task_assignment::Task::Reduce(_))
        ));
        assert!(again.attempt > r0.attempt, "attempt ids are never reused");
        assert!(!j.is_finished());
    }

    #[test]
    fn repeated_fetch_failures_fail_the_job_instead_of_looping() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = job(1, 1, dir.path());
        let w = WorkerId("w1".into());
        for round in 0..=MAX_ATTEMPTS {
            let a = j.next_task(&w).unwrap();
            finish_map(&mut j, &w, 0, a.attempt);
            let r = j.next_task(&w).unwrap();
            j.on_report(false, 0, r.attempt, &w, "addr", fetch_failed(0, round));
        }
        assert!(
            matches!(&j.status, JobStatus::Failed(m) if m.contains("could not fetch")),
            "{:?}",
            j.status
        );
    }

    #[test]
    fn only_the_running_attempt_may_commit_and_a_failed_grant_is_freed() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = job(1, 1, dir.path());
        let w = WorkerId("w1".into());
        let a = j.next_task(&w).unwrap();
        finish_map(&mut j, &w, 0, a.attempt);
        let r0 = j.next_task(&w).unwrap();
        assert!(!j.can_commit(0, r0.attempt + 1), "not a running attempt");
        assert!(j.can_commit(0, r0.attempt));
        let io = Outcome::Failed(TaskFailure {
            message: "rename failed".into(),
            retryable: true,
            reason: FailureReason::Io,
        });
        j.on_report(false, 0, r0.attempt, &w, "addr", io);
        let r1 = j.next_task(&w).unwrap();
        assert!(
            !j.can_commit(0, r0.attempt),
            "the failed attempt lost its grant"
        );
        assert!(j.can_commit(0, r1.attempt), "the retry may commit");
    }
}
