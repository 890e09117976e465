//! One job's state and its transitions.
//!
//! ```text
//! task:  Pending ──assign──► Running{attempts} ──first done──► Done{attempt, worker}
//!           ▲                 │  │ (a slow task near the end of its stage gets one backup
//!           │                 │  │  attempt on another worker: speculation; the loser is
//!           │                 │  │  cancelled)
//!           └─────────────────┘  failed (retryable, attempts left) or its worker was lost
//!        a Done map whose output is lost (fetch failure, lost worker) goes back to Pending
//!        while a reduce still needs it (lineage); a reducer that cannot reach a worker gets
//!        every output of that worker re-run at once (the worker is then suspect, and its
//!        running attempts get backups)
//!
//! job:   Running ──all reduces committed──► Succeeded (_SUCCESS written)
//!           ├──── a task fails for good ───► Failed(message): running attempts cancelled
//!           └──── cancel ──────────────────► Cancelled
//! ```
//! Reduces are assigned once every map is done (Hadoop's slow-start of 1.0): a reduce task
//! carries the locations of all map outputs.
//!
//! The job never reads the clock: every transition that depends on time (assignment,
//! reports, reconciliation, resumption) takes `now` from its caller, so tests drive time
//! themselves. By concern: `tasks` is the task table, `schedule` picks the next task
//! (speculation included), [`failure`] prices failures and lost workers, `recovery`
//! rebuilds a job after a coordinator restart, [`lineage`] and [`commit`] track map outputs
//! and committed partitions. It never sees a protobuf either: `report` holds the plain types
//! it hands out and receives, converted at the service and store edges by [`crate::wire`].

pub mod bad_records;
pub mod commit;
mod effects;
pub mod events;
pub mod failure;
pub mod lineage;
mod recovery;
mod report;
mod schedule;
mod tasks;
mod view;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_common::bad_records::Limit;
use sluice_common::ids::{JobId, WorkerId};
use sluice_common::spec::JobSpec;
use sluice_common::split::Split;
use sluice_sdk::JobDescription;

pub use commit::BadPartFile;
pub use effects::{Cancel, OutputEffect};
pub use failure::MAX_LOST_ATTEMPTS;
use lineage::Lineage;
pub use report::{
    AssignedTask, Assignment, AttemptRef, JobInfo, MapOutput, Outcome, OutputLocation, PartFile,
    PartitionRows, PastAttempt, ReduceOutput, Resumed,
};
pub use schedule::{
    ClusterView, MAX_ATTEMPTS, Policy, SPECULATION_MIN_RUNTIME, SPECULATION_SLOWNESS,
    SPECULATION_STAGE_DONE,
};
pub use tasks::{RunningAttempt, TaskKind, TaskState, TaskStatus};

use crate::store::{Event, Journal};
use events::EventKind;

/// Where a job is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobStatus {
    /// Tasks are being scheduled.
    Running,
    /// Every partition is committed; `_SUCCESS` is being written (off the scheduler's lock).
    Committing,
    /// Every partition is committed and `_SUCCESS` written.
    Succeeded,
    /// A task failed for good.
    Failed(String),
    /// Cancelled by a client.
    Cancelled,
    /// Every partition is committed but `_SUCCESS` could not be written: the part files
    /// stay, and [`Job::begin_success`] may try again (`sluice commit`, or a restart).
    CommitFailed(String),
}

/// One moment on both clocks: the monotonic one the job schedules by, and the wall clock its
/// history is stamped with. Given by the caller, so the job itself never reads a clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Epoch {
    /// The moment on the monotonic clock.
    pub at: Instant,
    /// The same moment, milliseconds since the Unix epoch.
    pub unix_ms: u64,
}

impl Epoch {
    /// Wall time of `now`, counted from this epoch (never before it).
    pub fn unix_ms_at(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.at).as_millis();
        self.unix_ms
            .saturating_add(u64::try_from(since).unwrap_or(u64::MAX))
    }
}

/// A submitted job.
pub struct Job {
    /// Its id.
    pub id: JobId,
    /// As submitted.
    pub spec: Arc<JobSpec>,
    /// What the plugin declared.
    pub description: JobDescription,
    /// The encoded input plan (schemas, side inputs), sent with every assignment unread.
    input_plan: Vec<u8>,
    /// Maps the job's monotonic `now` to wall time for its history.
    epoch: Epoch,
    splits: Vec<Split>,
    maps: Vec<TaskState>,
    reduces: Vec<TaskState>,
    lineage: Lineage,
    commits: commit::Commits,
    /// Bad records of the finished maps.
    bad: bad_records::Tally,
    /// Where it is.
    pub status: JobStatus,
    submitted_ms: u64,
    finished_ms: u64,
    failed_attempts: u32,
    /// Reports applied since progress was last journaled.
    unjournaled_reports: u32,
    policy: Policy,
    /// Attempts to cancel, collected by the service into heartbeat replies.
    cancels: Vec<Cancel>,
    /// Output I/O to carry out, collected by the service after each transition.
    effects: Vec<OutputEffect>,
    /// How often this job declared each worker unreachable (see [`failure`]).
    unreachable: HashMap<WorkerId, u32>,
    /// Workers declared unreachable since the service last asked: it marks them suspect and
    /// re-runs their outputs in every job.
    found_unreachable: Vec<WorkerId>,
    /// After a coordinator restart: map outputs finished before it, which a re-registering
    /// worker may still hold (attempt and statistics), by map index.
    claimable: Vec<Option<(u32, MapOutput)>>,
    /// Until then, maps with a claimable output are not re-run: their worker may be about to
    /// re-register.
    hold_claimable_until: Option<Instant>,
    /// When the last map finished (reduces could run from then): for scheduling delays.
    maps_done_at: Option<Instant>,
    /// Per stage (maps, reduces): no task before this index is pending, so the search for
    /// the next task starts there. Tasks leave Pending in index order as they are assigned;
    /// only a failure puts one back, and every failure path resets this (see
    /// [`Job::requeued`]). A search from 0 at every assignment made a job of 20,000 maps
    /// quadratic.
    pending_from: [usize; 2],
    journal: Journal,
}

/// Whether a job of `tasks` tasks journals its progress after `reports` unjournaled task
/// reports: about a hundred times over the job. Computing and storing the job's summary
/// costs in proportion to its tasks, so doing it on every report made a job of 20,000 tiny
/// tasks quadratic; recovery does not need it (it replays the attempts).
pub fn progress_due(reports: u32, tasks: usize) -> bool {
    reports as usize >= (tasks / 100).max(1)
}

impl Job {
    /// A new running job over planned splits, submitted at `submitted`.
    pub fn new(
        id: JobId,
        spec: JobSpec,
        description: JobDescription,
        input_plan: Vec<u8>,
        splits: Vec<Split>,
        submitted: Epoch,
    ) -> Self {
        let reducers = spec.reducers as usize;
        Job {
            id,
            spec: Arc::new(spec),
            description,
            input_plan,
            epoch: submitted,
            maps: vec![TaskState::new(); splits.len()],
            reduces: vec![TaskState::new(); reducers],
            lineage: Lineage::new(splits.len()),
            bad: bad_records::Tally::new(splits.len()),
            commits: commit::Commits::new(reducers),
            splits,
            status: JobStatus::Running,
            submitted_ms: submitted.unix_ms,
            finished_ms: 0,
            failed_attempts: 0,
            unjournaled_reports: 0,
            policy: Policy::default(),
            cancels: Vec::new(),
            effects: Vec::new(),
            unreachable: HashMap::new(),
            found_unreachable: Vec::new(),
            claimable: Vec::new(),
            hold_claimable_until: None,
            maps_done_at: None,
            pending_from: [0; 2],
            journal: Journal::disabled(),
        }
    }

    /// Whether every partition is committed (a resumed job may be complete but for
    /// `_SUCCESS`).
    pub fn all_committed(&self) -> bool {
        self.reduces.iter().all(TaskState::is_done)
    }

    /// The planned splits.
    pub fn splits(&self) -> &[Split] {
        &self.splits
    }

    /// The encoded input plan (`sluice_proto::convert::encode_input_plan`).
    pub fn input_plan(&self) -> &[u8] {
        &self.input_plan
    }

    /// Journals this job's changes to the job store from now on.
    pub fn with_journal(mut self, journal: Journal) -> Self {
        self.journal = journal;
        self
    }

    /// Schedules with `policy`.
    pub fn with_policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Sends the job's current state to the store: at the job's end, and as it progresses
    /// (see [`progress_due`]).
    fn journal_progress(&self) {
        self.journal.send(Event::JobUpdated(self.info()));
    }

    /// Whether the job ended (any way): it owes nothing but its history.
    pub fn has_ended(&self) -> bool {
        matches!(
            self.status,
            JobStatus::Succeeded | JobStatus::Failed(_) | JobStatus::Cancelled
        )
    }

    /// Whether the job schedules nothing more: it ended (any way), or it is writing
    /// `_SUCCESS`.
    /// (A commit-failed job is finished but has not ended: it stays in the scheduler until
    /// `_SUCCESS` is written or it is cancelled.)
    pub fn is_finished(&self) -> bool {
        self.status != JobStatus::Running
    }

    /// Attempts workers must stop, taken out of the job.
    pub fn take_cancels(&mut self) -> Vec<Cancel> {
        std::mem::take(&mut self.cancels)
    }

    /// Output I/O the job asked for, taken out of the job: see [`OutputEffect`].
    pub fn take_effects(&mut self) -> Vec<OutputEffect> {
        std::mem::take(&mut self.effects)
    }

    /// Asks for the removal of what the job wrote (it failed or was cancelled).
    fn abort_output(&mut self) {
        self.effects.push(OutputEffect::Abort {
            output: self.spec.output.clone(),
            committed: self.commits.committed_files(),
        });
    }

    /// Workers a reducer of this job could not reach, taken out of the job: the service
    /// marks them suspect and calls [`Job::on_worker_unreachable`] on every job.
    pub fn take_unreachable(&mut self) -> Vec<WorkerId> {
        std::mem::take(&mut self.found_unreachable)
    }

    /// Refuses a report whose reduce names a file other than its partition's part file.
    pub fn check_report(&self, index: u32, outcome: &Outcome) -> Result<(), BadPartFile> {
        match outcome {
            Outcome::ReduceDone(d) if self.spec.partition_by.is_empty() => {
                commit::check_part_file(index, self.spec.output_format, &d.file)?;
                match d.files.first() {
                    None => Ok(()),
                    Some(f) => Err(BadPartFile {
                        partition: index,
                        file: f.file.clone(),
                        expected: sluice_common::format::write::part_file_name(
                            index,
                            self.spec.output_format,
                        ),
                    }),
                }
            }
            Outcome::ReduceDone(d) => commit::check_partitioned_files(
                index,
                self.spec.output_format,
                &self.spec.partition_by,
                d,
            ),
            _ => Ok(()),
        }
    }

    /// Applies one attempt's report. Stale reports (an attempt that is no longer running:
    /// a speculation loser, an attempt of a lost worker) are ignored. Returns true when the
    /// job just completed all its reduces.
    #[allow(clippy::too_many_arguments)]
    pub fn on_report(
        &mut self,
        now: Instant,
        kind: TaskKind,
        index: u32,
        attempt: u32,
        worker: &WorkerId,
        shuffle_addr: &str,
        outcome: Outcome,
    ) -> bool {
        if self.is_finished() {
            return false;
        }
        let Some(task) = self.tasks(kind).get(index as usize) else {
            return false;
        };
        if !task.is_running(attempt, worker) {
            tracing::debug!(job = %self.id, index, attempt, "ignoring a stale report");
            return false;
        }
        self.journal.send(Event::AttemptFinished {
            job: self.id.to_string(),
            is_map: kind.is_map(),
            index,
            attempt,
            outcome: outcome.clone(),
        });
        let (event, detail) = events::describe(&outcome);
        let task = Some((kind, index as usize));
        self.event(now, event, task, attempt, Some(worker), detail);
        let all_done = self.apply_outcome(now, kind, index, attempt, worker, shuffle_addr, outcome);
        self.unjournaled_reports += 1;
        let tasks = self.maps.len() + self.reduces.len();
        if all_done || progress_due(self.unjournaled_reports, tasks) {
            self.unjournaled_reports = 0;
            self.journal_progress();
        }
        all_done
    }

    /// Marks the task done by `attempt` and cancels its other running attempt, if any.
    fn finish_task(
        &mut self,
        now: Instant,
        kind: TaskKind,
        i: usize,
        attempt: u32,
        worker: &WorkerId,
    ) {
        let job = self.id.clone();
        let task = &mut self.tasks_mut(kind)[i];
        let mut took = Duration::ZERO;
        let mut cancels = Vec::new();
        for r in task.running() {
            if r.attempt == attempt {
                took = now.saturating_duration_since(r.started);
            } else {
                tracing::info!(job = %job, index = i, loser = r.attempt, winner = attempt, "cancelling the slower attempt");
                cancels.push(Cancel::of(&job, kind, i, r));
            }
        }
        task.status = TaskStatus::Done {
            attempt,
            worker: worker.clone(),
            took,
        };
        for c in &cancels {
            self.killed(now, kind, i, c, format!("attempt {attempt} finished first"));
        }
        self.cancels.extend(cancels);
    }

    /// Whether every map is done. Looked at on every report and assignment, so it scans from
    /// the last map: maps are assigned in index order, so while the stage runs the scan stops
    /// at once at a map not yet done; from the first map it crossed every finished map, each
    /// time (8% of all the CPU samples of a job of 20,000 one-line maps).
    pub fn maps_done(&self) -> bool {
        self.maps.iter().rev().all(TaskState::is_done)
    }

    /// The tasks of one stage.
    fn tasks(&self, kind: TaskKind) -> &[TaskState] {
        match kind {
            TaskKind::Map => &self.maps,
            TaskKind::Reduce => &self.reduces,
        }
    }

    /// The tasks of one stage, to change.
    fn tasks_mut(&mut self, kind: TaskKind) -> &mut [TaskState] {
        match kind {
            TaskKind::Map => &mut self.maps,
            TaskKind::Reduce => &mut self.reduces,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn apply_outcome(
        &mut self,
        now: Instant,
        kind: TaskKind,
        index: u32,
        attempt: u32,
        worker: &WorkerId,
        shuffle_addr: &str,
        outcome: Outcome,
    ) -> bool {
        let i = index as usize;
        match outcome {
            Outcome::MapDone(done) => {
                self.finish_task(now, TaskKind::Map, i, attempt, worker);
                if self.maps_done() {
                    self.maps_done_at = Some(now);
                }
                self.bad.record(index, &done);
                self.lineage
                    .record(index, attempt, worker, shuffle_addr, done);
                self.check_bad_records(now);
                false
            }
            Outcome::ReduceDone(done) => {
                self.finish_task(now, TaskKind::Reduce, i, attempt, worker);
                self.commits.record_done(index, done);
                self.reduces.iter().all(TaskState::is_done)
            }
            Outcome::Failed(failure) => {
                self.failed_attempts += 1;
                self.on_failure(now, kind, i, attempt, worker, failure);
                false
            }
        }
    }

    /// Fails the job once its maps set aside more bad records than it tolerates (a count as
    /// soon as it is passed, a percentage once every map is done), or once every map is done
    /// and the input does not add up to its control totals.
    fn check_bad_records(&mut self, now: Instant) {
        let limit = Limit::effective(self.spec.on_bad_record, self.spec.max_bad_records);
        let bad = self.bad.total();
        let all_read = self.maps_done();
        let records = all_read.then(|| self.lineage.rows_in() + bad);
        if let (Some(control), Some(records)) = (&self.spec.control, records) {
            let checked = self
                .bad
                .sums()
                .and_then(|sums| sluice_common::control::check(control, records, &sums));
            if let Err(why) = checked {
                self.fail(now, why);
                return;
            }
        }
        if let Err(why) = Limit::check(limit, bad, records) {
            let kinds: Vec<String> = self
                .bad
                .by_kind()
                .into_iter()
                .map(|(k, n)| format!("{k}: {n}"))
                .collect();
            self.fail(now, format!("{why}; by kind: {}", kinds.join(", ")));
        }
    }

    /// Cancels every running attempt (the job ended at `now`).
    fn cancel_running(&mut self, now: Instant) {
        let mut cancels = Vec::new();
        for (kind, tasks) in [
            (TaskKind::Map, &self.maps),
            (TaskKind::Reduce, &self.reduces),
        ] {
            for (i, t) in tasks.iter().enumerate() {
                for r in t.running() {
                    cancels.push((kind, i, Cancel::of(&self.id, kind, i, r)));
                }
            }
        }
        for (kind, i, c) in cancels {
            self.killed(now, kind, i, &c, "the job ended".into());
            self.cancels.push(c);
        }
    }

    /// Ends the job as failed at `now`, cancels its running attempts and removes its output.
    pub fn fail(&mut self, now: Instant, message: String) {
        tracing::warn!(job = %self.id, error = %message, "job failed");
        self.cancel_running(now);
        self.job_event(now, EventKind::JobFailed, message.clone());
        self.status = JobStatus::Failed(message);
        self.finished_ms = self.epoch.unix_ms_at(now);
        self.abort_output();
        self.journal_progress();
    }

    /// Ends the job as cancelled at `now`; false when it had already ended.
    pub fn cancel(&mut self, now: Instant) -> bool {
        if self.is_finished() && !matches!(self.status, JobStatus::CommitFailed(_)) {
            return false;
        }
        self.cancel_running(now);
        self.job_event(now, EventKind::Cancelled, String::new());
        self.status = JobStatus::Cancelled;
        self.finished_ms = self.epoch.unix_ms_at(now);
        self.abort_output();
        self.journal_progress();
        true
    }

    /// Whether `attempt` may commit `partition`: only a running attempt, and of those the
    /// first to ask.
    pub fn can_commit(&mut self, partition: u32, attempt: u32, worker: &WorkerId) -> bool {
        let running = self
            .reduces
            .get(partition as usize)
            .is_some_and(|t| t.is_running(attempt, worker));
        !self.is_finished() && running && self.commits.authorize(partition, attempt)
    }

    /// A running or commit-failed job whose partitions are all committed starts writing
    /// `_SUCCESS`: it is [`JobStatus::Committing`] and asks for
    /// [`OutputEffect::WriteSuccess`]. Returns whether it did (not for a job still running
    /// tasks, or ended).
    pub fn begin_success(&mut self) -> bool {
        let may = matches!(self.status, JobStatus::Running | JobStatus::CommitFailed(_));
        if !may || !self.all_committed() {
            return false;
        }
        self.status = JobStatus::Committing;
        self.effects.push(OutputEffect::WriteSuccess {
            job: self.id.clone(),
            output: self.spec.output.clone(),
            manifest: self
                .commits
                .manifest(&self.id, self.bad.summary(), self.counters()),
            rejects: self.bad.commits(),
        });
        true
    }

    /// The outcome of writing `_SUCCESS`: the job succeeded, or is commit-failed with its
    /// committed part files left in place (they are whole and committed; only the marker is
    /// missing, and deleting finished output over a marker would lose data).
    pub fn success_written(&mut self, now: Instant, result: Result<(), String>) {
        if self.status != JobStatus::Committing {
            return;
        }
        self.finished_ms = self.epoch.unix_ms_at(now);
        match result {
            Ok(()) => {
                self.status = JobStatus::Succeeded;
                tracing::info!(job = %self.id, "job succeeded");
                let detail = format!("_SUCCESS written in {}", self.spec.output);
                self.job_event(now, EventKind::Succeeded, detail);
            }
            Err(e) => {
                let message = format!(
                    "writing _SUCCESS failed after {} tries: {e}; every part file is committed \
                     and kept: run `sluice commit {}` once the output can be written",
                    crate::output::SUCCESS_WRITE_TRIES,
                    self.id
                );
                tracing::error!(job = %self.id, error = %message, "job commit failed");
                self.job_event(now, EventKind::CommitFailed, message.clone());
                self.status = JobStatus::CommitFailed(message);
            }
        }
        self.journal_progress();
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod properties;
