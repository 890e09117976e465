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
}

impl From<CoordinatorError> for tonic::Status {
    fn from(e: CoordinatorError) -> Self {
        match e {
            CoordinatorError::UnknownJob(_) => tonic::Status::not_found(e.to_string()),
            _ => tonic::Status::invalid_argument(e.to_string()),
        }
    }
}

/// Result with [`CoordinatorError`].
pub type Result<T, E = CoordinatorError> = std::result::Result<T, E>;
