//! Why a task attempt failed on this worker, turned into the wire's typed failure once.

use sluice_common::failure::{FailureReason, TaskFailure};

/// A task attempt's error.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// Reading, mapping, writing or the plugin failed.
    #[error(transparent)]
    Common(#[from] sluice_common::Error),
    /// A map output could not be fetched.
    #[error("fetching map {map_index} attempt {map_attempt} from {worker_id} ({addr}): {message}")]
    FetchFailed {
        /// Map task index.
        map_index: u32,
        /// Its attempt.
        map_attempt: u32,
        /// Worker holding it.
        worker_id: String,
        /// Its shuffle address.
        addr: String,
        /// What went wrong.
        message: String,
        /// The worker could not be reached at all.
        worker_unreachable: bool,
    },
    /// The assignment itself was unusable.
    #[error("bad assignment: {0}")]
    Assignment(String),
    /// The coordinator gave the commit of this partition to another attempt.
    #[error("commit of partition {0} denied: another attempt committed it")]
    CommitDenied(u32),
    /// Talking to the coordinator failed.
    #[error("coordinator: {0}")]
    Coordinator(String),
}

impl From<&TaskError> for TaskFailure {
    fn from(e: &TaskError) -> Self {
        match e {
            TaskError::Common(c) => TaskFailure::from(c),
            TaskError::FetchFailed {
                map_index,
                map_attempt,
                worker_id,
                worker_unreachable,
                ..
            } => TaskFailure {
                message: e.to_string(),
                retryable: true,
                reason: FailureReason::FetchFailed {
                    map_index: *map_index,
                    map_attempt: *map_attempt,
                    worker_id: worker_id.clone(),
                    worker_unreachable: *worker_unreachable,
                },
            },
            TaskError::Assignment(_) => TaskFailure {
                message: e.to_string(),
                retryable: false,
                reason: FailureReason::Assignment,
            },
            TaskError::CommitDenied(partition) => TaskFailure {
                message: e.to_string(),
                retryable: true,
                reason: FailureReason::CommitDenied {
                    partition: *partition,
                },
            },
            TaskError::Coordinator(_) => TaskFailure {
                message: e.to_string(),
                retryable: true,
                reason: FailureReason::Io,
            },
        }
    }
}

/// Result of a task step.
pub type TaskResult<T> = Result<T, TaskError>;
