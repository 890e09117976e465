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

pub mod commit;
pub mod failure;
pub mod lineage;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sluice_common::failure::{FailureReason, TaskFailure};
use sluice_common::ids::{JobId, WorkerId};
use sluice_common::spec::JobSpec;
use sluice_common::split::Split;
use sluice_proto::pb;
use sluice_sdk::JobDescription;

pub use failure::MAX_LOST_ATTEMPTS;
use failure::{FetchReport, FetchVerdict};
use lineage::Lineage;

use crate::store::{Event, Journal};

/// Default attempts a task gets before its failure fails the job.
pub const MAX_ATTEMPTS: u32 = 4;
/// Share of a stage that must be done before stragglers get backups.
pub const SPECULATION_STAGE_DONE: f64 = 0.75;
/// A running attempt slower than this multiple of its finished peers' median gets a backup.
pub const SPECULATION_SLOWNESS: f64 = 1.5;
/// ... and only once it has run this long: for tasks of milliseconds, scheduling noise
/// (a heartbeat interval) is larger than any straggling, and a backup costs more than it
/// saves (Spark's `spark.speculation.minTaskRuntime` plays this part).
pub const SPECULATION_MIN_RUNTIME: Duration = Duration::from_secs(1);

/// Scheduling policy of a job.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Failed attempts before the job fails.
    pub max_attempts: u32,
    /// Whether stragglers get backup attempts.
    pub speculation: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_attempts: MAX_ATTEMPTS,
            speculation: true,
        }
    }
}

/// One running attempt of a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningAttempt {
    /// The attempt.
    pub attempt: u32,
    /// Its worker.
    pub worker: WorkerId,
    /// When it was assigned.
    pub started: Instant,
}

/// Where a task is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskStatus {
    /// Waiting for a worker.
    Pending,
    /// One attempt runs, or two when the first got a speculative backup.
    Running(Vec<RunningAttempt>),
    /// An attempt finished.
    Done {
        /// The attempt.
        attempt: u32,
        /// Its worker.
        worker: WorkerId,
        /// How long it ran.
        took: Duration,
    },
}

/// A map or reduce task.
#[derive(Debug, Clone)]
pub struct TaskState {
    /// Where it is.
    pub status: TaskStatus,
    /// Attempts started so far (the next attempt's number: attempt ids are never reused).
    pub attempts: u32,
    /// Failed attempts that count against the policy's `max_attempts` (fetch failures and
    /// lost workers do not: they are not this task's fault; a map whose output a live worker
    /// could not serve does count). See [`failure`].
    pub failures: u32,
    /// Attempts lost with their workers.
    pub lost: u32,
    /// Workers an attempt of this task failed on: not retried there while others exist.
    pub failed_on: HashSet<WorkerId>,
    /// Whether a backup attempt was started (at most one per task).
    pub speculated: bool,
}

impl TaskState {
    fn new() -> Self {
        TaskState {
            status: TaskStatus::Pending,
            attempts: 0,
            failures: 0,
            lost: 0,
            failed_on: HashSet::new(),
            speculated: false,
        }
    }

    fn done_attempt(&self) -> Option<(u32, &WorkerId)> {
        match &self.status {
            TaskStatus::Done {
                attempt, worker, ..
            } => Some((*attempt, worker)),
            _ => None,
        }
    }

    fn is_done(&self) -> bool {
        matches!(self.status, TaskStatus::Done { .. })
    }

    fn running(&self) -> &[RunningAttempt] {
        match &self.status {
            TaskStatus::Running(r) => r,
            _ => &[],
        }
    }

    fn is_running(&self, attempt: u32, worker: &WorkerId) -> bool {
        self.running()
            .iter()
            .any(|r| r.attempt == attempt && r.worker == *worker)
    }

    /// Whether `worker` may run this task: not where it failed, unless every live worker
    /// has failed it.
    fn allowed_on(&self, worker: &WorkerId, live_workers: usize) -> bool {
        !self.failed_on.contains(worker) || self.failed_on.len() >= live_workers
    }
}

/// What the scheduler knows of the cluster when a worker asks for work.
#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    /// Workers taking tasks: a task that failed on a worker goes elsewhere while it can.
    pub live_workers: usize,
    /// Workers a reducer could not reach since their last heartbeat: their running attempts
    /// get a backup at once, whether speculation is on or not (it is recovery, not a bet on
    /// a straggler).
    pub suspects: HashSet<WorkerId>,
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

/// An attempt a worker must stop (a speculation loser, or a task of an ended job).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancel {
    /// The worker running it.
    pub worker: WorkerId,
    /// What to stop.
    pub attempt: pb::AttemptRef,
}

impl Cancel {
    /// Stopping running attempt `r` of task `index` of `job`.
    fn of(job: &str, is_map: bool, index: usize, r: &RunningAttempt) -> Self {
        Cancel {
            worker: r.worker.clone(),
            attempt: pb::AttemptRef {
                job_id: job.to_string(),
                is_map,
                index: index as u32,
                attempt: r.attempt,
            },
        }
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
    /// Reports applied since progress was last journaled.
    unjournaled_reports: u32,
    policy: Policy,
    /// Attempts to cancel, collected by the service into heartbeat replies.
    cancels: Vec<Cancel>,
    /// How often this job declared each worker unreachable (see [`failure`]).
    unreachable: HashMap<WorkerId, u32>,
    /// Workers declared unreachable since the service last asked: it marks them suspect and
    /// re-runs their outputs in every job.
    found_unreachable: Vec<WorkerId>,
    /// After a coordinator restart: map outputs finished before it, which a re-registering
    /// worker may still hold (attempt and statistics), by map index.
    claimable: Vec<Option<(u32, pb::MapDone)>>,
    /// Until then, maps with a claimable output are not re-run: their worker may be about to
    /// re-register.
    hold_claimable_until: Option<Instant>,
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

/// Whether a job of `tasks` tasks journals its progress after `reports` unjournaled task
/// reports: about a hundred times over the job. Computing and storing the job's summary
/// costs in proportion to its tasks, so doing it on every report made a job of 20,000 tiny
/// tasks quadratic; recovery does not need it (it replays the attempts).
pub fn progress_due(reports: u32, tasks: usize) -> bool {
    reports as usize >= (tasks / 100).max(1)
}

fn median(mut xs: Vec<Duration>) -> Option<Duration> {
    if xs.is_empty() {
        return None;
    }
    xs.sort();
    Some(xs[xs.len() / 2])
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
            unjournaled_reports: 0,
            policy: Policy::default(),
            cancels: Vec::new(),
            unreachable: HashMap::new(),
            found_unreachable: Vec::new(),
            claimable: Vec::new(),
            hold_claimable_until: None,
            journal: Journal::disabled(),
        }
    }

    /// Rebuilds a job the coordinator was running when it stopped, from the job store:
    /// committed partitions stay committed, attempt numbers continue where they stopped,
    /// and finished map outputs wait up to `grace` for their workers to re-register and
    /// claim them before they are re-run.
    pub fn resume(
        stored: crate::store::ResumableJob,
        policy: Policy,
        grace: Duration,
    ) -> Result<Self, String> {
        use prost::Message;
        let spec = JobSpec::try_from(&stored.spec).map_err(|e| e.to_string())?;
        let description = JobDescription::decode(&stored.description)?;
        let splits = stored
            .splits
            .iter()
            .map(Split::try_from)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let mut job = Job::new(
            JobId(stored.info.job_id.clone()),
            spec,
            description,
            stored.schema_ipc,
            splits,
        )
        .with_policy(policy);
        job.submitted_ms = stored.info.submitted_ms;
        job.claimable = vec![None; job.maps.len()];
        job.hold_claimable_until = Some(Instant::now() + grace);
        let before = WorkerId("(before the restart)".into());
        for a in &stored.attempts {
            let tasks = if a.is_map {
                &mut job.maps
            } else {
                &mut job.reduces
            };
            let Some(task) = tasks.get_mut(a.index as usize) else {
                continue;
            };
            task.attempts = task.attempts.max(a.attempt + 1);
            // Failures before the restart are not counted again: the store does not keep
            // their reasons, and fetch failures or refused commits are not the task's fault.
            match (a.state.as_str(), a.is_map) {
                ("done", true) => {
                    let done =
                        pb::MapDone::decode(a.result.as_slice()).map_err(|e| e.to_string())?;
                    job.claimable[a.index as usize] = Some((a.attempt, done));
                }
                ("done", false) => {
                    let done =
                        pb::ReduceDone::decode(a.result.as_slice()).map_err(|e| e.to_string())?;
                    task.status = TaskStatus::Done {
                        attempt: a.attempt,
                        worker: before.clone(),
                        took: Duration::ZERO,
                    };
                    job.commits.record_done(a.index, done);
                }
                _ => {}
            }
        }
        if let Ok(sluice_common::storage::Location::Local(out)) =
            sluice_common::storage::Location::parse(&job.spec.output)
        {
            // Reduces stage under `_temporary`, created at submit; a crash may have come
            // between a `_SUCCESS` that removed it and the journal hearing of it.
            let _ = std::fs::create_dir_all(out.join("_temporary"));
        }
        tracing::info!(
            job = %job.id,
            claimable = job.claimable.iter().flatten().count(),
            committed = job.reduces.iter().filter(|t| t.is_done()).count(),
            "job resumed after a coordinator restart"
        );
        Ok(job)
    }

    /// A worker re-registered holding `held` map outputs: those of this job finished before
    /// a coordinator restart are done again, at the worker's new id and address. Returns how
    /// many it claimed.
    pub fn claim(&mut self, worker: &WorkerId, addr: &str, held: &[pb::AttemptRef]) -> usize {
        let mut claimed = 0;
        for h in held.iter().filter(|h| h.is_map && h.job_id == self.id.0) {
            let i = h.index as usize;
            let Some(Some((attempt, _))) = self.claimable.get(i) else {
                continue;
            };
            if *attempt != h.attempt || self.maps[i].status != TaskStatus::Pending {
                continue;
            }
            let Some((attempt, done)) = self.claimable[i].take() else {
                continue;
            };
            self.maps[i].status = TaskStatus::Done {
                attempt,
                worker: worker.clone(),
                took: Duration::ZERO,
            };
            self.lineage.record(h.index, attempt, worker, addr, &done);
            claimed += 1;
        }
        if claimed > 0 {
            tracing::info!(job = %self.id, %worker, claimed, "map outputs claimed after the restart");
        }
        claimed
    }

    /// Whether every partition is committed (a resumed job may be complete but for
    /// `_SUCCESS`).
    pub fn all_committed(&self) -> bool {
        self.reduces.iter().all(TaskState::is_done)
    }

    /// The planned splits, as the job store keeps them.
    pub fn wire_splits(&self) -> Vec<pb::Split> {
        self.splits.iter().map(pb::Split::from).collect()
    }

    /// The input schema IPC bytes.
    pub fn schema_ipc(&self) -> &[u8] {
        &self.runtime.input_schema_ipc
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

    /// Whether the job has ended (any way).
    pub fn is_finished(&self) -> bool {
        self.status != JobStatus::Running
    }

    /// Attempts workers must stop, taken out of the job.
    pub fn take_cancels(&mut self) -> Vec<Cancel> {
        std::mem::take(&mut self.cancels)
    }

    /// Workers a reducer of this job could not reach, taken out of the job: the service
    /// marks them suspect and calls [`Job::on_worker_unreachable`] on every job.
    pub fn take_unreachable(&mut self) -> Vec<WorkerId> {
        std::mem::take(&mut self.found_unreachable)
    }

    fn assignment(&self, attempt: u32, task: pb::task_assignment::Task) -> pb::TaskAssignment {
        pb::TaskAssignment {
            job_id: self.id.0.clone(),
            attempt,
            job: Some(self.runtime.clone()),
            task: Some(task),
        }
    }

    fn map_assignment(&self, i: usize, attempt: u32) -> pb::TaskAssignment {
        let task = pb::task_assignment::Task::Map(pb::MapTask {
            split: Some(pb::Split::from(&self.splits[i])),
            index: i as u32,
        });
        self.assignment(attempt, task)
    }

    fn reduce_assignment(&self, i: usize, attempt: u32) -> pb::TaskAssignment {
        let task = pb::task_assignment::Task::Reduce(pb::ReduceTask {
            partition: i as u32,
            map_outputs: self.lineage.locations(i as u32),
        });
        self.assignment(attempt, task)
    }

    /// The next task this job can give `worker`, if any.
    pub fn next_task(
        &mut self,
        worker: &WorkerId,
        cluster: &ClusterView,
    ) -> Option<pb::TaskAssignment> {
        let live_workers = cluster.live_workers;
        if self.is_finished() {
            return None;
        }
        let maps_done = self.maps.iter().all(TaskState::is_done);
        let (is_map, tasks) = if maps_done {
            (false, &mut self.reduces)
        } else {
            (true, &mut self.maps)
        };
        let holding = is_map
            && self
                .hold_claimable_until
                .is_some_and(|t| Instant::now() < t);
        let claimable = &self.claimable;
        let pending = tasks.iter().enumerate().position(|(i, t)| {
            t.status == TaskStatus::Pending
                && t.allowed_on(worker, live_workers)
                && !(holding && claimable.get(i).is_some_and(Option::is_some))
        });
        let (i, backup) = match pending {
            Some(i) => (i, false),
            None => (
                Self::backup_candidate(tasks, worker, self.policy.speculation, cluster)?,
                true,
            ),
        };
        let t = &mut tasks[i];
        let attempt = t.attempts;
        t.attempts += 1;
        let run = RunningAttempt {
            attempt,
            worker: worker.clone(),
            started: Instant::now(),
        };
        if backup {
            t.speculated = true;
            if let TaskStatus::Running(r) = &mut t.status {
                r.push(run);
            }
            tracing::info!(job = %self.id, kind = if is_map { "map" } else { "reduce" }, index = i, attempt, %worker, "speculative backup attempt");
        } else {
            t.status = TaskStatus::Running(vec![run]);
        }
        self.journal_start(is_map, i, attempt, worker);
        Some(if is_map {
            self.map_assignment(i, attempt)
        } else {
            self.reduce_assignment(i, attempt)
        })
    }

    /// A running task of the stage that deserves a backup on `worker`: first one whose only
    /// attempt runs on a suspect worker, then a [`Self::straggler`] if speculation is on.
    fn backup_candidate(
        tasks: &[TaskState],
        worker: &WorkerId,
        speculation: bool,
        cluster: &ClusterView,
    ) -> Option<usize> {
        let on_suspect = tasks.iter().position(|t| {
            !t.speculated
                && t.allowed_on(worker, cluster.live_workers)
                && matches!(t.running(), [only] if only.worker != *worker
                    && cluster.suspects.contains(&only.worker))
        });
        on_suspect.or_else(|| {
            speculation
                .then(|| Self::straggler(tasks, worker, cluster.live_workers))
                .flatten()
        })
    }

    /// A running task of the stage that deserves a backup on `worker`: the stage is at
    /// least [`SPECULATION_STAGE_DONE`] done, the task has run longer than
    /// [`SPECULATION_SLOWNESS`] × the median of its finished peers, has no backup yet, and
    /// does not run on `worker` already. The slowest such task first.
    fn straggler(tasks: &[TaskState], worker: &WorkerId, live_workers: usize) -> Option<usize> {
        if tasks.is_empty() {
            return None;
        }
        let took: Vec<Duration> = tasks
            .iter()
            .filter_map(|t| match t.status {
                // Zero: done before a coordinator restart, duration unknown.
                TaskStatus::Done { took, .. } if took > Duration::ZERO => Some(took),
                TaskStatus::Done { .. } => None,
                _ => None,
            })
            .collect();
        if (took.len() as f64) < SPECULATION_STAGE_DONE * tasks.len() as f64 {
            return None;
        }
        let threshold = median(took)?
            .mul_f64(SPECULATION_SLOWNESS)
            .max(SPECULATION_MIN_RUNTIME);
        tasks
            .iter()
            .enumerate()
            .filter(|(_, t)| !t.speculated && t.allowed_on(worker, live_workers))
            .filter_map(|(i, t)| match t.running() {
                [only] if only.worker != *worker && only.started.elapsed() > threshold => {
                    Some((i, only.started.elapsed()))
                }
                _ => None,
            })
            .max_by_key(|(_, elapsed)| *elapsed)
            .map(|(i, _)| i)
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

    /// Applies one attempt's report. Stale reports (an attempt that is no longer running:
    /// a speculation loser, an attempt of a lost worker) are ignored. Returns true when the
    /// job just completed all its reduces.
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
        let tasks = if is_map { &self.maps } else { &self.reduces };
        let Some(task) = tasks.get(index as usize) else {
            return false;
        };
        if !task.is_running(attempt, worker) {
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
            result: {
                use prost::Message;
                match &outcome {
                    Outcome::MapDone(d) => d.encode_to_vec(),
                    Outcome::ReduceDone(d) => d.encode_to_vec(),
                    Outcome::Failed(_) => Vec::new(),
                }
            },
        });
        let all_done = self.apply_outcome(is_map, index, attempt, worker, shuffle_addr, outcome);
        self.unjournaled_reports += 1;
        let tasks = self.maps.len() + self.reduces.len();
        if all_done || progress_due(self.unjournaled_reports, tasks) {
            self.unjournaled_reports = 0;
            self.journal_progress();
        }
        all_done
    }

    /// Marks the task done by `attempt` and cancels its other running attempt, if any.
    fn finish_task(&mut self, is_map: bool, i: usize, attempt: u32, worker: &WorkerId) {
        let job = self.id.0.clone();
        let tasks = if is_map {
            &mut self.maps
        } else {
            &mut self.reduces
        };
        let task = &mut tasks[i];
        let mut took = Duration::ZERO;
        for r in task.running() {
            if r.attempt == attempt {
                took = r.started.elapsed();
            } else {
                tracing::info!(job = %job, index = i, loser = r.attempt, winner = attempt, "cancelling the slower attempt");
                self.cancels.push(Cancel::of(&job, is_map, i, r));
            }
        }
        task.status = TaskStatus::Done {
            attempt,
            worker: worker.clone(),
            took,
        };
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
        match outcome {
            Outcome::MapDone(done) => {
                self.finish_task(true, i, attempt, worker);
                self.lineage
                    .record(index, attempt, worker, shuffle_addr, &done);
                false
            }
            Outcome::ReduceDone(done) => {
                self.finish_task(false, i, attempt, worker);
                self.commits.record_done(index, done);
                self.reduces.iter().all(TaskState::is_done)
            }
            Outcome::Failed(failure) => {
                self.failed_attempts += 1;
                self.on_failure(is_map, i, attempt, worker, failure);
                false
            }
        }
    }

    fn on_failure(
        &mut self,
        is_map: bool,
        i: usize,
        attempt: u32,
        worker: &WorkerId,
        failure: TaskFailure,
    ) {
        let kind = if is_map { "map" } else { "reduce" };
        let max_attempts = self.policy.max_attempts;
        if !is_map && self.commits.authorized(i as u32) == Some(attempt) {
            // This attempt will not commit: free its grant.
            self.commits.revoke(i as u32);
        }
        let task = if is_map {
            &mut self.maps[i]
        } else {
            &mut self.reduces[i]
        };
        // Drop the failed attempt; a backup still running carries on alone.
        if let TaskStatus::Running(r) = &mut task.status {
            r.retain(|r| r.attempt != attempt);
        }
        let others_running = !task.running().is_empty();
        if let (
            false,
            FailureReason::FetchFailed {
                map_index,
                map_attempt,
                worker_id,
                worker_unreachable,
            },
        ) = (is_map, &failure.reason)
        {
            // Not the reducer's fault: it runs again once the output is back.
            if !others_running {
                task.status = TaskStatus::Pending;
            }
            let report = FetchReport {
                map_index: *map_index,
                map_attempt: *map_attempt,
                worker: worker_id,
                worker_unreachable: *worker_unreachable,
                message: &failure.message,
            };
            self.on_fetch_failure(&report);
            return;
        }
        let lost_the_commit = !is_map
            && self
                .commits
                .authorized(i as u32)
                .is_some_and(|a| a != attempt);
        if lost_the_commit {
            // Another attempt holds the commit (a speculation race): not this task's fault.
            if !others_running && !task.is_done() {
                task.status = TaskStatus::Pending;
            }
            self.release_orphan_grants();
            return;
        }
        task.failures += 1;
        if matches!(failure.reason, FailureReason::Plugin) {
            task.failed_on.insert(worker.clone());
        }
        if !failure.retryable || task.failures >= max_attempts {
            let why = if failure.retryable {
                format!(
                    "{kind} task {i} failed {} times; last error: {}",
                    task.failures, failure.message
                )
            } else {
                format!("{kind} task {i} failed: {}", failure.message)
            };
            self.fail(why);
        } else if !others_running {
            tracing::info!(job = %self.id, kind, index = i, error = %failure.message, "retrying task");
            task.status = TaskStatus::Pending;
        }
        self.release_orphan_grants();
    }

    /// Applies a reducer's fetch failure: see [`failure`] for what it costs.
    fn on_fetch_failure(&mut self, report: &FetchReport<'_>) {
        let m = report.map_index as usize;
        let Some(map) = self.maps.get(m) else {
            return;
        };
        let declared = self
            .unreachable
            .get(&WorkerId(report.worker.to_string()))
            .copied()
            .unwrap_or(0);
        let verdict = failure::judge_fetch_failure(
            report,
            map.done_attempt(),
            map.failures,
            declared,
            self.policy.max_attempts,
        );
        match verdict {
            FetchVerdict::Stale => {}
            FetchVerdict::OutputLost => {
                tracing::info!(job = %self.id, map = m, worker = report.worker, error = report.message, "map output unreadable on a live worker, re-running the map");
                let map = &mut self.maps[m];
                map.failures += 1;
                map.failed_on.insert(WorkerId(report.worker.to_string()));
                map.status = TaskStatus::Pending;
                self.lineage.forget(report.map_index);
            }
            FetchVerdict::WorkerUnreachable(worker) => {
                tracing::warn!(job = %self.id, %worker, error = report.message, "worker unreachable from a reducer: all its map outputs re-run");
                *self.unreachable.entry(worker.clone()).or_default() += 1;
                self.found_unreachable.push(worker);
            }
            FetchVerdict::GiveUp(why) => self.fail(why),
        }
    }

    /// A reducer could not reach `worker`: every map output it holds is re-created from its
    /// split if an unfinished reduce still needs it, preferably elsewhere. Its running
    /// attempts stay until it is lost (they get backups meanwhile, see [`ClusterView`]).
    pub fn on_worker_unreachable(&mut self, worker: &WorkerId) {
        if self.is_finished() {
            return;
        }
        // It may be alive but unable to serve: the re-runs go elsewhere while they can.
        let rerun = self.forget_outputs_on(worker, true);
        if rerun > 0 {
            tracing::info!(job = %self.id, %worker, rerun, "map outputs of an unreachable worker re-run at once");
        }
    }

    /// Forgets every map output held by `worker`, while a reduce still needs them, and
    /// returns how many maps run again; with `avoid`, not on that worker while others can.
    fn forget_outputs_on(&mut self, worker: &WorkerId, avoid: bool) -> usize {
        if self.reduces.iter().all(TaskState::is_done) {
            return 0;
        }
        let mut rerun = 0;
        for (i, t) in self.maps.iter_mut().enumerate() {
            if t.done_attempt().is_some_and(|(_, w)| w == worker) {
                t.status = TaskStatus::Pending;
                if avoid {
                    t.failed_on.insert(worker.clone());
                }
                self.lineage.forget(i as u32);
                rerun += 1;
            }
        }
        rerun
    }

    /// Frees commit grants held by attempts that no longer run (a lost worker, a failure):
    /// otherwise no other attempt could ever commit that partition. Committing again is
    /// safe, the bytes are the same.
    fn release_orphan_grants(&mut self) {
        for (r, t) in self.reduces.iter().enumerate() {
            if t.is_done() {
                continue;
            }
            if let Some(a) = self.commits.authorized(r as u32)
                && !t.running().iter().any(|x| x.attempt == a)
            {
                self.commits.revoke(r as u32);
            }
        }
    }

    /// `worker` says which attempts it runs: attempts the coordinator gave it more than
    /// `settle` ago that it does not run (their report or the assignment itself was lost)
    /// are treated as lost.
    pub fn reconcile(&mut self, worker: &WorkerId, running: &[pb::AttemptRef], settle: Duration) {
        if self.is_finished() {
            return;
        }
        let mut changed = false;
        for (is_map, tasks) in [(true, &mut self.maps), (false, &mut self.reduces)] {
            for (i, t) in tasks.iter_mut().enumerate() {
                let TaskStatus::Running(r) = &mut t.status else {
                    continue;
                };
                let before = r.len();
                r.retain(|a| {
                    a.worker != *worker
                        || a.started.elapsed() < settle
                        || running.iter().any(|x| {
                            x.job_id == self.id.0
                                && x.is_map == is_map
                                && x.index as usize == i
                                && x.attempt == a.attempt
                        })
                });
                if r.len() != before {
                    tracing::warn!(job = %self.id, index = i, map = is_map, %worker, "attempt missing on its worker: re-queued");
                    t.lost += (before - r.len()) as u32;
                    changed = true;
                    if r.is_empty() {
                        t.status = TaskStatus::Pending;
                    }
                }
            }
        }
        if changed {
            self.release_orphan_grants();
        }
    }

    /// `worker` is gone: its running attempts are re-queued, and the map outputs it held are
    /// re-created from their splits if an unfinished reduce still needs them.
    pub fn on_worker_lost(&mut self, worker: &WorkerId) {
        if self.is_finished() {
            return;
        }
        let mut give_up = None;
        for (is_map, tasks) in [(true, &mut self.maps), (false, &mut self.reduces)] {
            for (i, t) in tasks.iter_mut().enumerate() {
                // A lost worker never comes back (a restarted one registers anew): it no
                // longer counts among the workers a task failed on.
                t.failed_on.remove(worker);
                if let TaskStatus::Running(r) = &mut t.status {
                    let before = r.len();
                    r.retain(|a| a.worker != *worker);
                    let lost = (before - r.len()) as u32;
                    t.lost += lost;
                    if lost > 0 && r.is_empty() {
                        t.status = TaskStatus::Pending;
                    }
                    if t.lost > MAX_LOST_ATTEMPTS {
                        give_up = Some(format!(
                            "{} task {i} lost {} attempts with their workers",
                            if is_map { "map" } else { "reduce" },
                            t.lost
                        ));
                    }
                }
            }
        }
        let rerun = self.forget_outputs_on(worker, false);
        if rerun > 0 {
            tracing::info!(job = %self.id, %worker, rerun, "map outputs lost with their worker, re-running the maps");
        }
        self.release_orphan_grants();
        if let Some(why) = give_up {
            self.fail(why);
        }
    }

    /// Cancels every running attempt (the job ended).
    fn cancel_running(&mut self) {
        for (is_map, tasks) in [(true, &self.maps), (false, &self.reduces)] {
            for (i, t) in tasks.iter().enumerate() {
                for r in t.running() {
                    self.cancels.push(Cancel::of(&self.id.0, is_map, i, r));
                }
            }
        }
    }

    /// Ends the job as failed, cancels its running attempts and removes its output.
    pub fn fail(&mut self, message: String) {
        tracing::warn!(job = %self.id, error = %message, "job failed");
        self.cancel_running();
        self.status = JobStatus::Failed(message);
        self.finished_ms = now_ms();
        self.commits.abort_output(&self.spec.output);
        self.journal_progress();
    }

    /// Ends the job as cancelled.
    pub fn cancel(&mut self) {
        if !self.is_finished() {
            self.cancel_running();
            self.status = JobStatus::Cancelled;
            self.finished_ms = now_ms();
            self.commits.abort_output(&self.spec.output);
            self.journal_progress();
        }
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
        let (local, remote, streams) = self.commits.shuffle_reads();
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
            shuffle_local_outputs: local,
            shuffle_remote_outputs: remote,
            shuffle_streams: streams,
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn progress_is_journaled_about_a_hundred_times_a_job() {
        assert!(progress_due(1, 1));
        assert!(progress_due(1, 150));
        assert!(!progress_due(199, 20_000));
        assert!(progress_due(200, 20_000));
        let journaled = (0..20_000).fold((0, 0), |(since, n), _| {
            if progress_due(since + 1, 20_000) {
                (0, n + 1)
            } else {
                (since + 1, n)
            }
        });
        assert_eq!(journaled.1, 100);
    }
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
            input_columns: None,
        };
        Job::new(JobId("job-1".into()), spec, description, Vec::new(), splits)
    }

    fn live(workers: usize) -> ClusterView {
        ClusterView {
            live_workers: workers,
            suspects: HashSet::new(),
        }
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

    /// `w1` answered that the output of `map_index` attempt `map_attempt` is unreadable.
    fn fetch_failed(map_index: u32, map_attempt: u32) -> Outcome {
        fetch_failed_from("w1", map_index, map_attempt, false)
    }

    fn fetch_failed_from(
        worker: &str,
        map_index: u32,
        map_attempt: u32,
        unreachable: bool,
    ) -> Outcome {
        Outcome::Failed(TaskFailure {
            message: "no output here".into(),
            retryable: true,
            reason: FailureReason::FetchFailed {
                map_index,
                map_attempt,
                worker_id: worker.into(),
                worker_unreachable: unreachable,
            },
        })
    }

    #[test]
    fn a_lost_map_output_reruns_the_map_once_and_the_reduce_waits() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = job(2, 2, dir.path());
        let w = WorkerId("w1".into());
        for _ in 0..2 {
            let a = j.next_task(&w, &live(1)).unwrap();
            let Some(pb::task_assignment::Task::Map(m)) = a.task else {
                panic!("maps come first")
            };
            finish_map(&mut j, &w, m.index, a.attempt);
        }
        let (r0, r1) = (
            j.next_task(&w, &live(1)).unwrap(),
            j.next_task(&w, &live(1)).unwrap(),
        );
        // Both reducers lose the same output of map 1 (attempt 0): it re-runs once.
        j.on_report(false, 0, r0.attempt, &w, "addr", fetch_failed(1, 0));
        let a = j.next_task(&w, &live(1)).unwrap();
        let Some(pb::task_assignment::Task::Map(m)) = a.task else {
            panic!("the lost map re-runs")
        };
        assert_eq!((m.index, a.attempt), (1, 1));
        j.on_report(false, 1, r1.attempt, &w, "addr", fetch_failed(1, 0));
        assert!(
            j.next_task(&w, &live(1)).is_none(),
            "no second re-run; reduces wait for the map"
        );
        finish_map(&mut j, &w, 1, 1);
        let again = j.next_task(&w, &live(1)).unwrap();
        assert!(matches!(
            again.task,
            Some(pb::task_assignment::Task::Reduce(_))
        ));
        assert!(again.attempt > r0.attempt, "attempt ids are never reused");
        assert!(!j.is_finished());
    }

    #[test]
    fn an_output_a_live_worker_cannot_serve_counts_against_its_map() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = job(1, 1, dir.path());
        let w = WorkerId("w1".into());
        for round in 0..MAX_ATTEMPTS {
            assert!(!j.is_finished(), "round {round}: {:?}", j.status);
            let a = j.next_task(&w, &live(1)).unwrap();
            assert_eq!(a.attempt, round, "the map re-runs after each loss");
            finish_map(&mut j, &w, 0, a.attempt);
            let r = j.next_task(&w, &live(1)).unwrap();
            j.on_report(false, 0, r.attempt, &w, "addr", fetch_failed(0, round));
        }
        assert!(
            matches!(&j.status, JobStatus::Failed(m)
                if m.contains("map task 0 failed 4 times") && m.contains("no output here")),
            "{:?}",
            j.status
        );
        assert!(j.take_unreachable().is_empty(), "the worker answered");
    }

    /// Runs `maps` maps, map `i` on `on(i)`, and assigns `reduces` reduces to `reducer`.
    fn maps_done_then_reduces(
        j: &mut Job,
        maps: usize,
        on: impl Fn(usize) -> WorkerId,
        reducer: &WorkerId,
        reduces: usize,
    ) -> Vec<pb::TaskAssignment> {
        for i in 0..maps {
            let w = on(i);
            let a = j.next_task(&w, &live(2)).unwrap();
            assert_eq!(map_index(&a), i as u32);
            finish_map(j, &w, i as u32, a.attempt);
        }
        (0..reduces)
            .map(|_| j.next_task(reducer, &live(2)).unwrap())
            .collect()
    }

    #[test]
    fn an_unreachable_worker_has_every_output_rerun_at_once_and_the_reducer_is_not_charged() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = job(4, 2, dir.path());
        let (w1, w2) = (WorkerId("w1".into()), WorkerId("w2".into()));
        let on = |i: usize| if i < 3 { w1.clone() } else { w2.clone() };
        let r = maps_done_then_reduces(&mut j, 4, on, &w2, 2);
        j.on_report(
            false,
            0,
            r[0].attempt,
            &w2,
            "addr",
            fetch_failed_from("w1", 0, 0, true),
        );
        assert_eq!(j.take_unreachable(), vec![w1.clone()]);
        j.on_worker_unreachable(&w1);
        // The other reducer names another output of the same worker: already being re-run.
        j.on_report(
            false,
            1,
            r[1].attempt,
            &w2,
            "addr",
            fetch_failed_from("w1", 2, 0, true),
        );
        assert!(
            j.take_unreachable().is_empty(),
            "a dead worker is declared once"
        );
        let mut again: Vec<u32> = (0..3)
            .map(|_| map_index(&j.next_task(&w2, &live(2)).unwrap()))
            .collect();
        again.sort();
        assert_eq!(
            again,
            [0, 1, 2],
            "every output of w1 re-runs, map 3's is kept"
        );
        assert!(
            j.next_task(&w2, &live(2)).is_none(),
            "reduces wait for the maps"
        );
        assert!(j.reduces.iter().all(|t| t.failures == 0));
        assert!(!j.is_finished());
    }

    #[test]
    fn machines_lost_one_after_another_never_use_up_a_reducers_attempts() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = job(1, 1, dir.path());
        let reducer = WorkerId("reducer".into());
        // Each round the map runs on a new worker, which dies before the reducer fetches.
        for round in 0..3 * MAX_ATTEMPTS {
            let holder = WorkerId(format!("w{round}"));
            let a = j.next_task(&holder, &live(2)).unwrap();
            finish_map(&mut j, &holder, 0, a.attempt);
            let r = j.next_task(&reducer, &live(2)).unwrap();
            let failed = fetch_failed_from(&holder.0, 0, a.attempt, true);
            j.on_report(false, 0, r.attempt, &reducer, "addr", failed);
            for w in j.take_unreachable() {
                j.on_worker_unreachable(&w);
            }
            assert!(!j.is_finished(), "round {round}: {:?}", j.status);
        }
    }

    #[test]
    fn a_worker_that_keeps_coming_back_unreachable_fails_the_job() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = job(1, 1, dir.path());
        let (w1, w2) = (WorkerId("w1".into()), WorkerId("w2".into()));
        // w1 heartbeats but cannot serve; it is the only worker that can run the map.
        for round in 0..=MAX_ATTEMPTS {
            assert!(!j.is_finished(), "round {round}: {:?}", j.status);
            let a = j.next_task(&w1, &live(1)).unwrap();
            finish_map(&mut j, &w1, 0, a.attempt);
            let r = j.next_task(&w2, &live(1)).unwrap();
            j.on_report(
                false,
                0,
                r.attempt,
                &w2,
                "addr",
                fetch_failed_from("w1", 0, a.attempt, true),
            );
            for w in j.take_unreachable() {
                j.on_worker_unreachable(&w);
            }
        }
        assert!(
            matches!(&j.status, JobStatus::Failed(m) if m.contains("could not reach worker w1 5 times")),
            "{:?}",
            j.status
        );
    }

    #[test]
    fn an_attempt_on_a_suspect_worker_gets_a_backup_at_once_even_without_speculation() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = job(2, 1, dir.path()).with_policy(Policy {
            max_attempts: 4,
            speculation: false,
        });
        let (w1, w2) = (WorkerId("w1".into()), WorkerId("w2".into()));
        let a0 = j.next_task(&w1, &live(2)).unwrap();
        let a1 = j.next_task(&w2, &live(2)).unwrap();
        finish_map(&mut j, &w2, map_index(&a1), a1.attempt);
        assert!(j.next_task(&w2, &live(2)).is_none(), "no speculation");
        let suspect = ClusterView {
            live_workers: 1,
            suspects: HashSet::from([w1.clone()]),
        };
        let backup = j.next_task(&w2, &suspect).unwrap();
        assert_eq!(map_index(&backup), map_index(&a0));
        assert!(j.next_task(&w2, &suspect).is_none(), "one backup per task");
    }

    #[test]
    fn only_the_running_attempt_may_commit_and_a_failed_grant_is_freed() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = job(1, 1, dir.path());
        let w = WorkerId("w1".into());
        let a = j.next_task(&w, &live(1)).unwrap();
        finish_map(&mut j, &w, 0, a.attempt);
        let r0 = j.next_task(&w, &live(1)).unwrap();
        assert!(
            !j.can_commit(0, r0.attempt + 1, &w),
            "not a running attempt"
        );
        assert!(j.can_commit(0, r0.attempt, &w));
        let io = Outcome::Failed(TaskFailure {
            message: "rename failed".into(),
            retryable: true,
            reason: FailureReason::Io,
        });
        j.on_report(false, 0, r0.attempt, &w, "addr", io);
        let r1 = j.next_task(&w, &live(1)).unwrap();
        assert!(
            !j.can_commit(0, r0.attempt, &w),
            "the failed attempt lost its grant"
        );
        assert!(j.can_commit(0, r1.attempt, &w), "the retry may commit");
    }

    fn map_index(a: &pb::TaskAssignment) -> u32 {
        match &a.task {
            Some(pb::task_assignment::Task::Map(m)) => m.index,
            other => panic!("expected a map, got {other:?}"),
        }
    }

    #[test]
    fn a_lost_worker_requeues_its_attempts_and_the_outputs_reduces_still_need() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = job(3, 1, dir.path());
        let (w1, w2) = (WorkerId("w1".into()), WorkerId("w2".into()));
        let a0 = j.next_task(&w1, &live(2)).unwrap();
        finish_map(&mut j, &w1, map_index(&a0), a0.attempt);
        let a1 = j.next_task(&w2, &live(2)).unwrap();
        finish_map(&mut j, &w2, map_index(&a1), a1.attempt);
        let a2 = j.next_task(&w1, &live(2)).unwrap(); // still running on w1
        j.on_worker_lost(&w1);
        // Map 0 (done on w1) and map 2 (running on w1) run again; map 1 is kept.
        let mut again: Vec<u32> = (0..2)
            .map(|_| map_index(&j.next_task(&w2, &live(1)).unwrap()))
            .collect();
        again.sort();
        assert_eq!(again, [0, 2]);
        assert!(j.next_task(&w2, &live(1)).is_none());
        // The lost attempt's late report is ignored.
        finish_map(&mut j, &w1, 2, a2.attempt);
        assert!(
            j.next_task(&w2, &live(1)).is_none(),
            "map 2 is still running on w2"
        );
        assert!(!j.is_finished());
    }

    #[test]
    fn a_straggler_gets_one_backup_and_the_loser_is_cancelled() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = job(4, 1, dir.path());
        let (w1, w2) = (WorkerId("w1".into()), WorkerId("w2".into()));
        let attempts: Vec<_> = (0..4)
            .map(|_| j.next_task(&w1, &live(2)).unwrap())
            .collect();
        for a in &attempts[..3] {
            finish_map(&mut j, &w1, map_index(a), a.attempt);
        }
        std::thread::sleep(SPECULATION_MIN_RUNTIME + Duration::from_millis(100));
        // 3 of 4 done (75%), map 3 has run far longer than the median: a backup on w2.
        let backup = j.next_task(&w2, &live(2)).unwrap();
        assert_eq!(map_index(&backup), 3);
        assert!(backup.attempt > attempts[3].attempt);
        assert!(j.next_task(&w2, &live(2)).is_none(), "one backup per task");
        finish_map(&mut j, &w2, 3, backup.attempt);
        let cancels = j.take_cancels();
        assert_eq!(cancels.len(), 1);
        assert_eq!(cancels[0].worker, w1);
        assert_eq!(cancels[0].attempt.attempt, attempts[3].attempt);
        // The loser's report changes nothing.
        finish_map(&mut j, &w1, 3, attempts[3].attempt);
        let r = j.next_task(&w1, &live(2)).unwrap();
        let Some(pb::task_assignment::Task::Reduce(reduce)) = r.task else {
            panic!("reduces follow the maps")
        };
        let from_backup = reduce
            .map_outputs
            .iter()
            .find(|l| l.map_index == 3)
            .unwrap();
        assert_eq!(
            from_backup.attempt, backup.attempt,
            "lineage holds the winner"
        );
    }

    #[test]
    fn a_plugin_failure_is_retried_on_another_worker_while_one_exists() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = job(1, 1, dir.path()).with_policy(Policy {
            max_attempts: 4,
            speculation: false,
        });
        let (w1, w2) = (WorkerId("w1".into()), WorkerId("w2".into()));
        let a = j.next_task(&w1, &live(2)).unwrap();
        let plugin_error = || {
            Outcome::Failed(TaskFailure {
                message: "boom".into(),
                retryable: true,
                reason: FailureReason::Plugin,
            })
        };
        j.on_report(true, 0, a.attempt, &w1, "addr", plugin_error());
        assert!(j.next_task(&w1, &live(2)).is_none(), "not again on w1");
        let b = j.next_task(&w2, &live(2)).unwrap();
        j.on_report(true, 0, b.attempt, &w2, "addr", plugin_error());
        // Every live worker failed it: any may try again, until max_attempts.
        let c = j.next_task(&w1, &live(2)).unwrap();
        j.on_report(true, 0, c.attempt, &w1, "addr", plugin_error());
        let d = j.next_task(&w2, &live(2)).unwrap();
        j.on_report(true, 0, d.attempt, &w2, "addr", plugin_error());
        assert!(
            matches!(&j.status, JobStatus::Failed(m) if m.contains("failed 4 times") && m.contains("boom")),
            "{:?}",
            j.status
        );
    }

    #[test]
    fn a_grant_held_by_a_lost_attempt_is_released_for_the_backup() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = job(1, 4, dir.path());
        let (w1, w2) = (WorkerId("w1".into()), WorkerId("w2".into()));
        let m = j.next_task(&w1, &live(2)).unwrap();
        finish_map(&mut j, &w1, 0, m.attempt);
        let reduces: Vec<_> = (0..4)
            .map(|_| j.next_task(&w1, &live(2)).unwrap())
            .collect();
        for (p, r) in reduces.iter().enumerate().take(3) {
            let done = Outcome::ReduceDone(pb::ReduceDone::default());
            j.on_report(false, p as u32, r.attempt, &w1, "addr", done);
        }
        assert!(
            j.can_commit(3, reduces[3].attempt, &w1),
            "the first asker wins"
        );
        std::thread::sleep(SPECULATION_MIN_RUNTIME + Duration::from_millis(100));
        let backup = j.next_task(&w2, &live(2)).unwrap();
        assert!(!j.can_commit(3, backup.attempt, &w2), "the grant is taken");
        assert!(
            !j.can_commit(3, reduces[3].attempt, &w2),
            "an attempt number from another worker is not the running attempt"
        );
        j.on_worker_lost(&w1);
        assert!(
            j.can_commit(3, backup.attempt, &w2),
            "the lost attempt's grant is free"
        );
    }
}
