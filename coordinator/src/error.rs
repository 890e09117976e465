//! The coordinator's error type; turned into `tonic::Status` in one place.

/// Errors of planning and scheduling.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// The submission is unusable (inputs, output, spec).
    #[error(transparent)]
    Plan(#[from] crate::plan::PlanError),
    /// Loading the plugin or reading a file failed.
    #[error(transparent)]
    Common(#[from] sluice_common::Error),
    /// No such job.
    #[error("no job {0}")]
    UnknownJob(String),
    /// The job store could not be read.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
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
    /// A worker speaking another protocol version registered.
    #[error("worker speaks protocol {worker}, this coordinator {coordinator}")]
    Protocol {
        /// The worker's version.
        worker: u32,
        /// Ours.
        coordinator: u32,
    },
    /// A request lacks a part it cannot do without.
    #[error("{request} without {missing}")]
    Missing {
        /// The request, as users know it.
        request: &'static str,
        /// What it lacks.
        missing: &'static str,
    },
    /// A report's outcome is of the other task kind.
    #[error("job {job}: the report of {kind} {index} carries another kind's outcome")]
    OutcomeKind {
        /// The job.
        job: String,
        /// The task kind the report names.
        kind: crate::job::TaskKind,
        /// The task index.
        index: u32,
    },
    /// The plugin a submission names is not stored.
    #[error("no plugin with sha256 {sha256} is stored: upload it first")]
    PluginNotStored {
        /// The plugin's hash.
        sha256: String,
    },
    /// No registered worker gives a task slot the memory the job asks for.
    #[error("{reason}")]
    NoRoom {
        /// Which worker comes closest, and what to change.
        reason: String,
    },
    /// Something on the coordinator's side failed (a thread, the random source).
    #[error("{doing}: {reason}")]
    Internal {
        /// What the coordinator was doing.
        doing: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// A call made as a worker that the caller cannot prove to be.
    #[error(transparent)]
    WorkerAuth(#[from] crate::cluster::workers::WorkerAuthError),
    /// Storing or serving a plugin failed.
    #[error(transparent)]
    Plugin(#[from] crate::plugins::PluginError),
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
            CoordinatorError::Journal(_) | CoordinatorError::Store(_) => {
                tonic::Status::unavailable(e.to_string())
            }
            CoordinatorError::Protocol { .. } | CoordinatorError::PluginNotStored { .. } => {
                tonic::Status::failed_precondition(e.to_string())
            }
            CoordinatorError::Internal { .. } => tonic::Status::internal(e.to_string()),
            CoordinatorError::WorkerAuth(_) => tonic::Status::permission_denied(e.to_string()),
            CoordinatorError::Plugin(p) => plugin_status(p),
            _ => tonic::Status::invalid_argument(e.to_string()),
        }
    }
}

impl From<crate::plugins::PluginError> for tonic::Status {
    fn from(e: crate::plugins::PluginError) -> Self {
        plugin_status(e)
    }
}

fn plugin_status(e: crate::plugins::PluginError) -> tonic::Status {
    use crate::plugins::PluginError as P;
    match e {
        P::Stream(status) => status,
        P::NotStored { .. } => tonic::Status::not_found(e.to_string()),
        P::UploadIdle => tonic::Status::deadline_exceeded(e.to_string()),
        P::TooLarge { .. } => tonic::Status::resource_exhausted(e.to_string()),
        P::Io { .. } => tonic::Status::internal(e.to_string()),
        P::BadHash { .. }
        | P::EmptyUpload
        | P::TooLong { .. }
        | P::CutShort { .. }
        | P::HashMismatch { .. } => tonic::Status::invalid_argument(e.to_string()),
    }
}

/// Result with [`CoordinatorError`].
pub type Result<T, E = CoordinatorError> = std::result::Result<T, E>;
