//! What happened to a job, in the words an operator reads: the job's event journal.
//!
//! Each transition that matters when a job is looked at afterwards (an attempt started,
//! finished, failed or was lost with its worker, a map output re-run, a backup launched, a
//! reduce's part file committed, the job's end) sends one [`JobEvent`] to the job store, which
//! keeps them in order (`job_events`). `sluice events JOB` prints them and the web UI draws
//! its task timeline from them. They are history, not state: recovery never reads them.

use std::time::Instant;

use sluice_common::ids::WorkerId;

use super::Job;
use super::report::Outcome;
use super::tasks::TaskKind;
use crate::store::Event;

/// What kind of thing happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The job was planned and accepted (journaled with the submission).
    Planned,
    /// The job was rebuilt after a coordinator restart.
    Resumed,
    /// An attempt was given to a worker.
    Started,
    /// A backup attempt of a slow task (or one on a suspect worker) was given to a worker.
    Backup,
    /// An attempt finished its task.
    Finished,
    /// An attempt failed (its error is the detail).
    Failed,
    /// An attempt was lost with its worker.
    Lost,
    /// An attempt was stopped: another attempt of its task finished first, or the job
    /// ended.
    Killed,
    /// An attempt a reducer ran could not fetch a map output.
    FetchFailed,
    /// A worker running or holding something of the job was lost.
    WorkerLost,
    /// A reducer could not reach a worker: its map outputs are re-run at once.
    WorkerUnreachable,
    /// A finished map runs again because its output was lost.
    MapRerun,
    /// `_SUCCESS` was written: the job succeeded.
    Succeeded,
    /// The job failed (the reason is the detail).
    JobFailed,
    /// The job was cancelled.
    Cancelled,
    /// Every partition is committed but `_SUCCESS` could not be written.
    CommitFailed,
}

impl EventKind {
    /// Its name in the store, on the wire and on screen.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Planned => "planned",
            EventKind::Resumed => "resumed",
            EventKind::Started => "started",
            EventKind::Backup => "backup",
            EventKind::Finished => "finished",
            EventKind::Failed => "failed",
            EventKind::Lost => "lost",
            EventKind::Killed => "killed",
            EventKind::FetchFailed => "fetch-failed",
            EventKind::WorkerLost => "worker-lost",
            EventKind::WorkerUnreachable => "worker-unreachable",
            EventKind::MapRerun => "map-rerun",
            EventKind::Succeeded => "succeeded",
            EventKind::JobFailed => "job-failed",
            EventKind::Cancelled => "cancelled",
            EventKind::CommitFailed => "commit-failed",
        }
    }

    /// Whether this ends an attempt on the timeline.
    pub fn ends_attempt(self) -> bool {
        matches!(
            self,
            EventKind::Finished
                | EventKind::Failed
                | EventKind::FetchFailed
                | EventKind::Lost
                | EventKind::Killed
        )
    }
}

/// One event of one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobEvent {
    /// The job.
    pub job: String,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// What happened.
    pub kind: EventKind,
    /// The task it happened to, if any.
    pub task: Option<(TaskKind, u32)>,
    /// The attempt, when `task` is set.
    pub attempt: u32,
    /// The worker involved, if any.
    pub worker: String,
    /// Why or how much, in a few words.
    pub detail: String,
}

impl JobEvent {
    /// The task as `map-3`, or empty.
    pub fn task_name(&self) -> String {
        self.task
            .map(|(k, i)| format!("{}-{i}", k.name()))
            .unwrap_or_default()
    }
}

/// The event an attempt's report makes, and its detail.
pub fn describe(outcome: &Outcome) -> (EventKind, String) {
    match outcome {
        Outcome::MapDone(d) => {
            let bytes: u64 = d.partitions.iter().map(|p| p.bytes).sum();
            let mut detail = format!(
                "{} rows read, {} rows and {bytes} bytes to the shuffle",
                d.rows_in, d.rows_out
            );
            if d.bad_records > 0 {
                detail.push_str(&format!(", {} bad records set aside", d.bad_records));
            }
            (EventKind::Finished, detail)
        }
        Outcome::ReduceDone(d) => {
            let files = if d.files.is_empty() {
                d.file.clone()
            } else {
                format!("{} files", d.files.len())
            };
            let detail = format!(
                "committed {files}: {} rows, {} bytes; read {} local and {} remote map outputs",
                d.rows, d.bytes, d.local_outputs, d.remote_outputs
            );
            (EventKind::Finished, detail)
        }
        Outcome::Failed(f) => {
            let kind = match f.reason {
                sluice_common::failure::FailureReason::FetchFailed { .. } => EventKind::FetchFailed,
                _ => EventKind::Failed,
            };
            (kind, f.message.clone())
        }
    }
}

impl Job {
    /// Journals an event about task `task` (or the job, with `None`) at `now`.
    pub(super) fn event(
        &self,
        now: Instant,
        kind: EventKind,
        task: Option<(TaskKind, usize)>,
        attempt: u32,
        worker: Option<&WorkerId>,
        detail: String,
    ) {
        self.journal.send(Event::Job(JobEvent {
            job: self.id.to_string(),
            at_ms: self.epoch.unix_ms_at(now),
            kind,
            task: task.map(|(k, i)| (k, i as u32)),
            attempt,
            worker: worker.map(ToString::to_string).unwrap_or_default(),
            detail,
        }));
    }

    /// Journals that the attempt `cancel` stops (of task `i` of stage `kind`) was killed.
    pub(super) fn killed(
        &self,
        now: Instant,
        kind: TaskKind,
        i: usize,
        cancel: &super::Cancel,
        why: String,
    ) {
        let (attempt, worker) = (cancel.attempt.attempt, Some(&cancel.worker));
        self.event(
            now,
            EventKind::Killed,
            Some((kind, i)),
            attempt,
            worker,
            why,
        );
    }

    /// Journals an event about the job as a whole.
    pub(super) fn job_event(&self, now: Instant, kind: EventKind, detail: String) {
        self.event(now, kind, None, 0, None, detail);
    }
}
