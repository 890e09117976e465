//! The job store's record of the input files incremental jobs read (`--incremental NAME`):
//! each file's size and version when a successful run of NAME read it.

use std::collections::BTreeMap;

use rusqlite::{Connection, Transaction, params};
use sluice_common::split::FileStamp;

/// The incremental files table.
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS incremental_files (
    name TEXT NOT NULL,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    version TEXT NOT NULL,
    job_id TEXT NOT NULL,
    PRIMARY KEY (name, path)
);
";

/// The files read, by incremental name, then path.
pub type ReadFiles = BTreeMap<String, BTreeMap<String, FileStamp>>;

/// A successful run of incremental job `name` read `files`.
#[derive(Debug)]
pub struct FilesRead {
    /// The incremental name.
    pub name: String,
    /// The job.
    pub job: String,
    /// Each file read, as it was.
    pub files: Vec<(String, FileStamp)>,
}

pub(super) fn apply(tx: &Transaction<'_>, e: &FilesRead) -> rusqlite::Result<()> {
    for (path, stamp) in &e.files {
        tx.execute(
            "INSERT OR REPLACE INTO incremental_files (name, path, size, version, job_id)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![e.name, path, stamp.size as i64, stamp.version, e.job],
        )?;
    }
    Ok(())
}

/// Every file every incremental name read.
pub(super) fn read(conn: &Connection) -> rusqlite::Result<ReadFiles> {
    let mut stmt = conn.prepare("SELECT name, path, size, version FROM incremental_files")?;
    let mut out = ReadFiles::new();
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            FileStamp {
                size: r.get::<_, i64>(2)? as u64,
                version: r.get(3)?,
            },
        ))
    })?;
    for row in rows {
        let (name, path, stamp) = row?;
        out.entry(name).or_default().insert(path, stamp);
    }
    Ok(out)
}
