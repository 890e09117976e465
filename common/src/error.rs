//! The error type of `sluice-common`.

use std::path::PathBuf;

/// Errors from reading inputs, writing outputs and calling plugins.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// An object-store request failed (or the URL cannot be used).
    #[error("{url}: {message}")]
    Storage {
        /// The object or prefix.
        url: String,
        /// What was being done and why it failed.
        message: String,
    },
    /// A record that does not fit the input schema.
    #[error("bad record in {path} line {line}: {reason}")]
    BadRecord {
        /// The input file.
        path: PathBuf,
        /// 1-based line number of the record's first line in the file.
        line: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The plugin file could not be used.
    #[error("plugin {path}: {reason}")]
    PluginLoad {
        /// The library file.
        path: PathBuf,
        /// Why it was refused.
        reason: String,
    },
    /// The plugin returned an error or panicked.
    #[error("job {job}: {message}")]
    Plugin {
        /// Job name.
        job: String,
        /// The plugin's message.
        message: String,
        /// The plugin said the input cannot be processed: no attempt would succeed.
        invalid_input: bool,
    },
    /// An Arrow or Parquet operation failed.
    #[error("{context}: {message}")]
    Arrow {
        /// What was being done.
        context: String,
        /// The library's message.
        message: String,
    },
    /// The data and the job do not fit together (a column missing or of another type, a
    /// row group the file lacks): every attempt would fail the same way.
    #[error("{subject}: {reason}")]
    Mismatch {
        /// The file, column or aggregate at fault.
        subject: String,
        /// What does not fit.
        reason: String,
    },
    /// The job declares something the engine does not do (a key or aggregate of a type it
    /// cannot handle, a description it cannot read).
    #[error("{what} is not supported: {reason}")]
    Unsupported {
        /// What the job declared.
        what: String,
        /// Why it cannot be done.
        reason: String,
    },
    /// A file's bytes cannot be decoded.
    #[error("{file}: {reason}")]
    Damaged {
        /// The file or object.
        file: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An aggregate leaves the range of its type.
    #[error("aggregate {aggregate} overflows{detail}")]
    Overflow {
        /// The aggregate's output column.
        aggregate: String,
        /// What range it left (empty, or starting with `: `).
        detail: &'static str,
    },
    /// A path or URL that cannot be used.
    #[error("{location}: {reason}")]
    BadLocation {
        /// The path or URL as given.
        location: String,
        /// Why.
        reason: String,
    },
    /// More bad records than the job tolerates (`--max-bad-records`).
    #[error("{reason}")]
    TooManyBadRecords {
        /// The counts and the limit.
        reason: String,
    },
    /// An input file is not what it was when the job was planned (see
    /// `format::snapshot`).
    #[error("input changed during the job: {file}: {change}")]
    InputChanged {
        /// The file.
        file: String,
        /// How.
        change: String,
    },
    /// A side input is bigger than the job allows (`--side-max-bytes`).
    #[error(
        "side input {name}: {held} bytes{counted} are over the cap of {limit} bytes \
         (--side-max-bytes); a table this big is an input to join in the reduce, not a side input"
    )]
    SideInputTooLarge {
        /// The side input's name.
        name: String,
        /// What was counted: at least this many bytes.
        held: u64,
        /// `" in its files"` or `" in memory"`.
        counted: &'static str,
        /// The cap.
        limit: u64,
    },
    /// The engine broke one of its own rules (a bug); the attempt fails and is retried.
    #[error("internal error: {what}")]
    Internal {
        /// What went wrong.
        what: String,
    },
}

impl Error {
    /// Wraps an I/O error with the file it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Wraps an Arrow or Parquet error with what was being done.
    pub fn arrow(context: impl Into<String>, e: impl std::fmt::Display) -> Self {
        Error::Arrow {
            context: context.into(),
            message: e.to_string(),
        }
    }
}

/// Result with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
