//! Why a task attempt failed: decided once, at the task boundary, with its retryability.

use crate::Error;

/// The typed reason of a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureReason {
    /// The plugin returned an error or panicked (retried, as Hadoop does, preferably on
    /// another worker, until the task's attempts run out), or could not be loaded, or the
    /// job is invalid (not retried: see [`TaskFailure::retryable`]).
    Plugin,
    /// The worker could not use the task it was given (a malformed assignment, a plugin it
    /// could not fetch). Not retried.
    Assignment,
    /// The coordinator refused this attempt's commit: another attempt of the partition
    /// holds it (a speculation race). Never the task's fault.
    CommitDenied {
        /// The partition.
        partition: u32,
    },
    /// A malformed input record. Not retried.
    BadRecord {
        /// The input file.
        file: String,
        /// 1-based line.
        line: u64,
    },
    /// Local or remote I/O failed; another attempt may succeed.
    Io,
    /// A reducer could not fetch one map output. Not the reducer's fault: the coordinator
    /// re-runs that map, or every map output of the worker when it could not be reached.
    FetchFailed {
        /// The map task whose output is unreachable.
        map_index: u32,
        /// Its attempt.
        map_attempt: u32,
        /// The worker that held it.
        worker_id: String,
        /// The worker could not be reached at all (refused or broken connection), rather
        /// than answering that the output is missing or damaged.
        worker_unreachable: bool,
    },
}

/// A failed attempt as reported to the coordinator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFailure {
    /// Human-readable message, naming the file/line or map task where that applies.
    pub message: String,
    /// Whether another attempt may succeed.
    pub retryable: bool,
    /// The typed reason.
    pub reason: FailureReason,
}

impl From<&Error> for TaskFailure {
    fn from(e: &Error) -> Self {
        let (reason, retryable) = match e {
            Error::BadRecord { path, line, .. } => (
                FailureReason::BadRecord {
                    file: path.display().to_string(),
                    line: *line,
                },
                false,
            ),
            // User code failing is retried, as Hadoop does (a panic may come from a bad
            // machine or a transient resource); the coordinator prefers another worker and
            // fails the job after max_attempts. A plugin that cannot load, or an invalid
            // job, fails the same way every time.
            Error::Plugin { invalid_input, .. } => (FailureReason::Plugin, !invalid_input),
            Error::PluginLoad { .. }
            | Error::Mismatch { .. }
            | Error::Unsupported { .. }
            | Error::Damaged { .. }
            | Error::Overflow { .. }
            | Error::BadLocation { .. }
            | Error::TooManyBadRecords { .. }
            | Error::SideInputTooLarge { .. }
            | Error::InputChanged { .. } => (FailureReason::Plugin, false),
            Error::Io { .. }
            | Error::Storage { .. }
            | Error::Arrow { .. }
            | Error::Internal { .. } => (FailureReason::Io, true),
        };
        TaskFailure {
            message: e.to_string(),
            retryable,
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What every attempt would hit again fails the job at once; what a machine or the
    /// network may cause is retried.
    #[test]
    fn deterministic_errors_are_not_retried_and_transient_ones_are() {
        let mismatch = Error::Mismatch {
            subject: "day.parquet".into(),
            reason: "no column \"amount\"".into(),
        };
        let overflow = Error::Overflow {
            aggregate: "total".into(),
            detail: "",
        };
        for e in [&mismatch, &overflow] {
            let f = TaskFailure::from(e);
            assert!(!f.retryable, "{f:?}");
            assert_eq!(f.message, e.to_string());
        }
        let storage = Error::Storage {
            url: "s3://b/k".into(),
            message: "connection reset".into(),
        };
        let internal = Error::Internal {
            what: "an object-store call panicked".into(),
        };
        for e in [&storage, &internal] {
            let f = TaskFailure::from(e);
            assert!(f.retryable && f.reason == FailureReason::Io, "{f:?}");
        }
        assert_eq!(
            mismatch.to_string(),
            "day.parquet: no column \"amount\"",
            "the subject is named first"
        );
    }
}
