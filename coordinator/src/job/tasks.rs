//! The task table: where each map and reduce task is, and its attempts.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use sluice_common::ids::WorkerId;

/// Which stage a task belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskKind {
    /// Reads a split, writes a map output.
    Map,
    /// Reads one partition of every map output, commits a part file.
    Reduce,
}

impl TaskKind {
    /// The kind of a task named on the wire by `is_map`.
    pub fn of(is_map: bool) -> Self {
        if is_map {
            TaskKind::Map
        } else {
            TaskKind::Reduce
        }
    }

    /// Whether this is a map task (the wire's `is_map`).
    pub fn is_map(self) -> bool {
        self == TaskKind::Map
    }

    /// "map" or "reduce", for messages and logs.
    pub fn name(self) -> &'static str {
        match self {
            TaskKind::Map => "map",
            TaskKind::Reduce => "reduce",
        }
    }
}

impl std::fmt::Display for TaskKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
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
    /// could not serve does count). See [`failure`](super::failure).
    pub failures: u32,
    /// Attempts lost with their workers.
    pub lost: u32,
    /// Of those, attempts that were the job's only attempt on their worker: a loss the task
    /// alone may have caused (see [`failure::MAX_LOST_ATTEMPTS`](super::failure::MAX_LOST_ATTEMPTS)).
    pub lost_alone: u32,
    /// Workers an attempt of this task failed on: not retried there while others exist.
    pub failed_on: HashSet<WorkerId>,
    /// Whether a backup attempt was started (at most one per task).
    pub speculated: bool,
}

impl TaskState {
    pub(super) fn new() -> Self {
        TaskState {
            status: TaskStatus::Pending,
            attempts: 0,
            failures: 0,
            lost: 0,
            lost_alone: 0,
            failed_on: HashSet::new(),
            speculated: false,
        }
    }

    pub(super) fn done_attempt(&self) -> Option<(u32, &WorkerId)> {
        match &self.status {
            TaskStatus::Done {
                attempt, worker, ..
            } => Some((*attempt, worker)),
            _ => None,
        }
    }

    pub(super) fn is_done(&self) -> bool {
        matches!(self.status, TaskStatus::Done { .. })
    }

    pub(super) fn running(&self) -> &[RunningAttempt] {
        match &self.status {
            TaskStatus::Running(r) => r,
            _ => &[],
        }
    }

    pub(super) fn is_running(&self, attempt: u32, worker: &WorkerId) -> bool {
        self.running()
            .iter()
            .any(|r| r.attempt == attempt && r.worker == *worker)
    }

    /// Whether `worker` may run this task: not where it failed, unless every live worker
    /// has failed it.
    pub(super) fn allowed_on(&self, worker: &WorkerId, live_workers: usize) -> bool {
        !self.failed_on.contains(worker) || self.failed_on.len() >= live_workers
    }
}
