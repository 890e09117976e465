//! Reading the job store while its writer thread writes it: each read opens its own
//! read-only connection (WAL mode lets readers and the writer work at once), on the caller's
//! blocking thread, so a page of history never waits for the scheduler's lock.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};
use sluice_proto::pb;

use super::StoreError;

/// Events a single read returns at most.
pub const MAX_EVENTS: u32 = 10_000;

/// Reads the job store at a path; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Reader {
    path: Option<PathBuf>,
}

impl Reader {
    /// Reads the store under `state_dir` (as [`super::open`] opened it).
    pub fn new(state_dir: &Path) -> Self {
        Reader {
            path: Some(state_dir.join("sluice.db")),
        }
    }

    /// A reader of no store: every read finds nothing (unit tests of the service).
    pub fn disabled() -> Self {
        Reader { path: None }
    }

    fn open(&self) -> Result<Option<Connection>, StoreError> {
        let Some(path) = &self.path else {
            return Ok(None);
        };
        let err = |source| StoreError {
            path: path.clone(),
            source,
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(1))
            .map_err(err)?;
        Ok(Some(conn))
    }

    fn with<T>(
        &self,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<Option<T>, StoreError> {
        let Some(conn) = self.open()? else {
            return Ok(None);
        };
        read(&conn).map(Some).map_err(|source| StoreError {
            path: self.path.clone().unwrap_or_default(),
            source,
        })
    }

    /// At most `limit` (capped at [`MAX_EVENTS`]) events of `job` after event `after`, in
    /// order; `None` when the store does not know the job.
    pub fn events(
        &self,
        job: &str,
        after: u64,
        limit: u32,
    ) -> Result<Option<Vec<pb::JobEvent>>, StoreError> {
        let limit = limit.clamp(1, MAX_EVENTS);
        let read = self.with(|conn| {
            if !super::events::job_known(conn, job)? {
                return Ok(None);
            }
            super::events::read(conn, job, after, limit).map(Some)
        })?;
        Ok(read.flatten())
    }

    /// Every attempt of `job`; `None` when the store does not know the job.
    pub fn attempts(&self, job: &str) -> Result<Option<Vec<pb::AttemptInfo>>, StoreError> {
        let read = self.with(|conn| {
            if !super::events::job_known(conn, job)? {
                return Ok(None);
            }
            super::events::attempts(conn, job).map(Some)
        })?;
        Ok(read.flatten())
    }

    /// One page of the jobs matching `filter`, newest first.
    pub fn jobs(
        &self,
        filter: &super::listing::JobFilter,
        offset: u64,
        limit: u32,
    ) -> Result<super::listing::JobPage, StoreError> {
        Ok(self
            .with(|conn| super::listing::jobs(conn, filter, offset, limit))?
            .unwrap_or_default())
    }

    /// A job as the store holds it, with its counters and spec.
    pub fn job(&self, id: &str) -> Result<Option<(pb::JobInfo, pb::JobSpec)>, StoreError> {
        Ok(self.with(|conn| super::listing::job(conn, id))?.flatten())
    }
}
