//! What a job's transitions ask of the world: attempts to stop, and output I/O. The job only
//! decides; the service delivers the cancels with heartbeats and carries out the output
//! effects off its lock.

use sluice_common::ids::{JobId, WorkerId};

use super::report::AttemptRef;
use super::tasks::{RunningAttempt, TaskKind};

/// Output I/O a transition asks for. The job only decides; the service carries the effects
/// out (`crate::output`) after releasing the scheduler's lock, on a blocking thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputEffect {
    /// Remove what a failed or cancelled job wrote: `_SUCCESS`, `_temporary` and the
    /// `committed` part files.
    Abort {
        /// The job's output.
        output: String,
        /// Its committed part files, relative to the output.
        committed: Vec<String>,
    },
    /// Write `_SUCCESS` holding `manifest`; the outcome goes back to
    /// [`Job::success_written`](super::Job::success_written).
    WriteSuccess {
        /// The job.
        job: JobId,
        /// Its output.
        output: String,
        /// The manifest (JSON).
        manifest: Vec<u8>,
        /// Quarantine files to commit first: `(attempt's file, committed name)`, relative
        /// to the output.
        rejects: Vec<(String, String)>,
    },
}

/// An attempt a worker must stop (a speculation loser, or a task of an ended job).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancel {
    /// The worker running it.
    pub worker: WorkerId,
    /// What to stop.
    pub attempt: AttemptRef,
}

impl Cancel {
    /// Stopping running attempt `r` of task `index` of `job`.
    pub(super) fn of(job: &JobId, kind: TaskKind, index: usize, r: &RunningAttempt) -> Self {
        Cancel {
            worker: r.worker.clone(),
            attempt: AttemptRef {
                job: job.clone(),
                kind,
                index: index as u32,
                attempt: r.attempt,
            },
        }
    }
}
