//! Which task a worker gets next: pending tasks first, then backups of tasks on suspect
//! workers and of stragglers (speculation).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use sluice_common::ids::WorkerId;

use super::Job;
use super::events::EventKind;
use super::report::{AssignedTask, Assignment};
use super::tasks::{RunningAttempt, TaskKind, TaskState, TaskStatus};
use crate::store::Event;

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

fn median(mut xs: Vec<Duration>) -> Option<Duration> {
    if xs.is_empty() {
        return None;
    }
    xs.sort();
    Some(xs[xs.len() / 2])
}

impl Job {
    fn assignment(&self, now: Instant, kind: TaskKind, i: usize, attempt: u32) -> Assignment {
        // Retries and backups wait for reasons of their own; only first attempts measure
        // how long a runnable task waited for a slot.
        let ready = match kind {
            TaskKind::Map => Some(self.epoch.at),
            TaskKind::Reduce => self.maps_done_at,
        };
        let waited = ready
            .filter(|_| attempt == 0)
            .map(|t| now.saturating_duration_since(t));
        let task = match kind {
            TaskKind::Map => AssignedTask::Map {
                index: i as u32,
                split: self.splits[i].clone(),
            },
            TaskKind::Reduce => AssignedTask::Reduce {
                partition: i as u32,
                map_outputs: self.lineage.locations(i as u32),
            },
        };
        Assignment {
            job: self.id.clone(),
            attempt,
            task,
            waited,
        }
    }

    /// The next task this job can give `worker` at `now`, if any.
    pub fn next_task(
        &mut self,
        now: Instant,
        worker: &WorkerId,
        cluster: &ClusterView,
    ) -> Option<Assignment> {
        let live_workers = cluster.live_workers;
        if self.is_finished() {
            return None;
        }
        let maps_done = self.maps_done();
        let (kind, tasks) = if maps_done {
            (TaskKind::Reduce, &mut self.reduces)
        } else {
            (TaskKind::Map, &mut self.maps)
        };
        let holding = kind == TaskKind::Map && self.hold_claimable_until.is_some_and(|t| now < t);
        let claimable = &self.claimable;
        let stage = usize::from(!kind.is_map());
        let first_from = |from: usize| {
            tasks[from..]
                .iter()
                .position(|t| t.status == TaskStatus::Pending)
                .map_or(tasks.len(), |p| from + p)
        };
        let from = self.pending_from[stage].min(tasks.len());
        let mut first = first_from(from);
        if first == tasks.len() && from > 0 {
            // Nothing pending past the mark: look again from the start, so that a task
            // re-queued by a path that did not say so is late, never lost.
            first = first_from(0);
        }
        self.pending_from[stage] = first;
        let pending = tasks[first..]
            .iter()
            .zip(first..)
            .position(|(t, i)| {
                t.status == TaskStatus::Pending
                    && t.allowed_on(worker, live_workers)
                    && !(holding && claimable.get(i).is_some_and(Option::is_some))
            })
            .map(|p| first + p);
        let (i, backup) = match pending {
            Some(i) => (i, false),
            None => (
                Self::backup_candidate(now, tasks, worker, self.policy.speculation, cluster)?,
                true,
            ),
        };
        let t = &mut tasks[i];
        let attempt = t.attempts;
        t.attempts += 1;
        let run = RunningAttempt {
            attempt,
            worker: worker.clone(),
            started: now,
        };
        if backup {
            t.speculated = true;
            if let TaskStatus::Running(r) = &mut t.status {
                r.push(run);
            }
            tracing::info!(job = %self.id, %kind, index = i, attempt, %worker, "speculative backup attempt");
        } else {
            t.status = TaskStatus::Running(vec![run]);
        }
        self.journal_start(kind, i, attempt, worker);
        let event = if backup {
            EventKind::Backup
        } else {
            EventKind::Started
        };
        self.event(
            now,
            event,
            Some((kind, i)),
            attempt,
            Some(worker),
            String::new(),
        );
        Some(self.assignment(now, kind, i, attempt))
    }

    /// A running task of the stage that deserves a backup on `worker`: first one whose only
    /// attempt runs on a suspect worker, then a [`Self::straggler`] if speculation is on.
    pub(super) fn backup_candidate(
        now: Instant,
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
                .then(|| Self::straggler(now, tasks, worker, cluster.live_workers))
                .flatten()
        })
    }

    /// A running task of the stage that deserves a backup on `worker`: the stage is at
    /// least [`SPECULATION_STAGE_DONE`] done, the task has run longer than
    /// [`SPECULATION_SLOWNESS`] × the median of its finished peers, has no backup yet, and
    /// does not run on `worker` already. The slowest such task first.
    pub(super) fn straggler(
        now: Instant,
        tasks: &[TaskState],
        worker: &WorkerId,
        live_workers: usize,
    ) -> Option<usize> {
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
                [only] if only.worker != *worker => {
                    let ran = now.saturating_duration_since(only.started);
                    (ran > threshold).then_some((i, ran))
                }
                _ => None,
            })
            .max_by_key(|(_, elapsed)| *elapsed)
            .map(|(i, _)| i)
    }

    pub(super) fn journal_start(
        &self,
        kind: TaskKind,
        index: usize,
        attempt: u32,
        worker: &WorkerId,
    ) {
        self.journal.send(Event::AttemptStarted {
            job: self.id.to_string(),
            is_map: kind.is_map(),
            index: index as u32,
            attempt,
            worker: worker.to_string(),
        });
    }
}
