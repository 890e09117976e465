//! One unit of map input.
//!
//! A byte-range split of a line-based file owns every line that *starts* inside
//! `[start, end)`: the reader skips a partial first line unless `start` is 0 and reads past
//! `end` to finish its last line (see [`crate::format::lines`]). A Parquet split is a list of
//! row groups. A split of several small files (packed at planning, as Hadoop's
//! `CombineFileInputFormat` does) reads each whole, one after another.

use std::fmt;

/// What part of the file a split covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SplitRange {
    /// Lines starting in `[start, end)`.
    Bytes {
        /// First byte (inclusive).
        start: u64,
        /// Last byte (exclusive).
        end: u64,
    },
    /// These row groups of a Parquet file.
    RowGroups(Vec<u32>),
    /// Several whole files, each a split of its own kind, read in order; the outer split's
    /// path is empty.
    Files(Vec<Split>),
}

/// A map task's input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// Local path of the file.
    pub path: String,
    /// The part of it.
    pub range: SplitRange,
    /// The named input it belongs to (`--input NAME=PATH`); empty for an unnamed one.
    pub input: String,
    /// What the file was at planning; a map finding it otherwise fails the job rather than
    /// read a second version of it (`None`: not checked).
    pub stamp: Option<FileStamp>,
}

/// What a file was when its job was planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStamp {
    /// Its size in bytes.
    pub size: u64,
    /// Its version: the modification time (local files) or the ETag (objects; their
    /// last-modified time where the store gives none); empty when the file system has none.
    pub version: String,
}

impl Split {
    /// The bytes of input it covers as planned: a byte range's length, the sum of a
    /// packed split's files; a Parquet split's row groups count 0 (their size is in the
    /// file's footer, read only by the map).
    pub fn planned_bytes(&self) -> u64 {
        match &self.range {
            SplitRange::Bytes { start, end } => end.saturating_sub(*start),
            SplitRange::RowGroups(_) => 0,
            SplitRange::Files(files) => files.iter().map(Split::planned_bytes).sum(),
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.range {
            SplitRange::Bytes { start, end } => write!(f, "{} bytes [{start}, {end})", self.path),
            SplitRange::RowGroups(rg) => write!(f, "{} row groups {rg:?}", self.path),
            SplitRange::Files(files) => match (files.first(), files.last()) {
                (Some(first), Some(last)) if files.len() > 1 => {
                    write!(f, "{} files from {first} to {last}", files.len())
                }
                (Some(only), _) => write!(f, "{only}"),
                _ => write!(f, "no files"),
            },
        }
    }
}
