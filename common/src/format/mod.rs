//! Reading splits as Arrow record batches and writing part files.
//!
//! - [`lines`]: turning a split's byte range into the exact range of the lines it owns.
//! - [`read`]: one reader per input format, yielding `RecordBatch`es of `batch_rows` rows;
//!   malformed records become [`crate::Error::BadRecord`] naming file and line, or are set
//!   aside when the job tolerates them (`source`: a split's lines and where they lie).
//! - [`remote`]: the same for object-store files, by ranged reads into memory.
//! - [`conform`]: columnar input cast to the job's declared types, when no value is lost.
//! - [`decimal`]: the strict decimal parser CSV money columns go through.
//! - [`schema`]: input schema inference and schemas as Arrow IPC bytes.
//! - [`write`]: part files (Parquet or CSV).

pub mod conform;
mod csv;
pub mod decimal;
mod json;
pub mod lines;
pub mod parquet_part;
pub mod proven;
pub mod read;
pub mod remote;
pub mod schema;
pub mod snapshot;
mod source;
pub mod write;
