//! The coordinator's error type; turned into `tonic::Status` in one place.

/// Errors of planning and scheduling.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// The submission is unusable (inputs, output, spec).
    #[error("{0}")]
    Input(String),
    /// Loading the plugin or reading a file failed.
    #[error(transparent)]
    Common(#[from] sluice_common::Error),
    /// No such job.
    #[error("no job {0}")]
    UnknownJob(String),
    /// A task report the coordinator will not record.
    #[error("job {job}: {source}")]
    BadReport {
        /// The job reported on.
        job: String,
        /// What is wrong with it.
        #[source]
        source: crate::job::BadPartFile,
    },
    /// `sluice commit` of a job that is not commit-failed.
    #[error("job {job} is {state}: only a commit-failed job can be committed again")]
    NothingToCommit {
        /// The job.
        job: String,
        /// Its state.
        state: &'static str,
    },
    /// The job store did not record a change: it is not acknowledged.
    #[error(transparent)]
    Journal(#[from] crate::store::JournalError),
    /// A call made as a worker that the caller cannot prove to be.
    #[error(transparent)]
    WorkerAuth(#[from] crate::cluster::workers::WorkerAuthError),
}

impl From<CoordinatorError> for tonic::Status {
    fn from(e: CoordinatorError) -> Self {
        match e {
            CoordinatorError::UnknownJob(_) => tonic::Status::not_found(e.to_string()),
            CoordinatorError::WorkerAuth(crate::cluster::workers::WorkerAuthError::Unknown {
                ..
            }) => tonic::Status::failed_precondition(e.to_string()),
            CoordinatorError::NothingToCommit { .. } => {
                tonic::Status::failed_precondition(e.to_string())
            }
            CoordinatorError::Journal(_) => tonic::Status::unavailable(e.to_string()),
            CoordinatorError::WorkerAuth(_) => tonic::Status::permission_denied(e.to_string()),
            _ => tonic::Status::invalid_argument(e.to_string()),
        }
    }
}

/// Result with [`CoordinatorError`].
pub type Result<T, E = CoordinatorError> = std::result::Result<T, E>;
