//! Why a submission cannot be planned. Each variant names the input, file or output at
//! fault; the service answers all of them as an invalid argument.

/// A submission refused at planning, before any task runs.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// A setting is out of range or inconsistent (see `JobSpec::validate`, `Limits`).
    #[error("{reason}")]
    Spec {
        /// Which setting, and its bounds.
        reason: String,
    },
    /// An input path, URL or glob cannot be expanded or read.
    #[error("input {input}: {reason}")]
    Input {
        /// The input as given, or the file found under it.
        input: String,
        /// What went wrong.
        reason: String,
    },
    /// An input matches no file.
    #[error("input {input} matches no file")]
    NoMatch {
        /// The input as given.
        input: String,
    },
    /// Every input file is empty.
    #[error("the input ({inputs}) holds no data: every file is empty")]
    Empty {
        /// The inputs as given, space-separated.
        inputs: String,
    },
    /// A CSV file's header differs from the job's input columns.
    #[error("{file} line 1: header {found:?} does not match the job's input columns {expected:?}")]
    Header {
        /// The file.
        file: String,
        /// Its header.
        found: Vec<String>,
        /// The columns the job reads.
        expected: Vec<String>,
    },
    /// The output cannot be used: it exists, `--overwrite` may not delete it, or it cannot
    /// be prepared.
    #[error("output {output}: {reason}")]
    Output {
        /// The output as given.
        output: String,
        /// Why.
        reason: String,
    },
    /// Loading the plugin, inferring the schema or reading a header failed (the error names
    /// the file).
    #[error(transparent)]
    Common(#[from] sluice_common::Error),
}

impl PlanError {
    /// A setting refused by `JobSpec::validate` or `Limits`.
    pub fn spec(reason: String) -> Self {
        PlanError::Spec { reason }
    }

    /// An input that cannot be expanded or read.
    pub fn input(input: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        PlanError::Input {
            input: input.into(),
            reason: reason.to_string(),
        }
    }

    /// An output that cannot be used.
    pub fn output(output: impl std::fmt::Display, reason: impl std::fmt::Display) -> Self {
        PlanError::Output {
            output: output.to_string(),
            reason: reason.to_string(),
        }
    }
}

/// Result with [`PlanError`].
pub type Result<T, E = PlanError> = std::result::Result<T, E>;
