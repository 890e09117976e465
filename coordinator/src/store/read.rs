//! Reading the job store while its writer thread writes it: each read opens its own
//! read-only connection (WAL mode lets readers and the writer work at once), on the caller's
//! blocking thread, so a page of history never waits for the scheduler's lock.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};
use sluice_proto::pb;

use super::{StoreError, listing};

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
        filter: &listing::JobFilter,
        offset: u64,
        limit: u32,
    ) -> Result<listing::JobPage, StoreError> {
        Ok(self
            .with(|conn| listing::jobs(conn, filter, offset, limit))?
            .unwrap_or_default())
    }

    /// A job as the store holds it, with its counters and spec.
    pub fn job(&self, id: &str) -> Result<Option<(pb::JobInfo, pb::JobSpec)>, StoreError> {
        Ok(self.with(|conn| listing::job(conn, id))?.flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::TaskKind;
    use crate::job::events::{EventKind, JobEvent};
    use crate::store::{Durability, Event, open};

    fn submit(journal: &crate::store::Journal, seq: u64, id: &str, name: &str, key: &str) {
        let info = pb::JobInfo {
            job_id: id.into(),
            name: name.into(),
            run_key: key.into(),
            state: pb::JobState::Running as i32,
            maps_total: 3,
            reduces_total: 2,
            submitted_ms: 1000,
            ..Default::default()
        };
        journal.send(Event::JobSubmitted {
            seq,
            info: (&info).into(),
            spec: pb::JobSpec {
                inputs: vec!["/in".into()],
                ..Default::default()
            },
            splits: Vec::new(),
            input_plan: Vec::new(),
            description: Vec::new(),
        });
    }

    #[test]
    fn events_listings_and_pruning_read_back_from_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let (_, journal) = open(dir.path(), Durability::Durable).unwrap();
        submit(&journal, 1, "job-0001", "eod", "eod@2026-12-01");
        submit(&journal, 2, "job-0002", "wordcount", "");
        submit(&journal, 3, "job-0003", "eod_100%", "eod@2026-12-02");
        journal.send(Event::AttemptStarted {
            job: "job-0001".into(),
            is_map: true,
            index: 2,
            attempt: 0,
            worker: "w-1".into(),
        });
        journal.send(Event::Job(JobEvent {
            job: "job-0001".into(),
            at_ms: 2000,
            kind: EventKind::Lost,
            task: Some((TaskKind::Map, 2)),
            attempt: 0,
            worker: "w-1".into(),
            detail: "lost with its worker".into(),
        }));
        journal.sync().unwrap();
        let r = Reader::new(dir.path());

        let events = r.events("job-0001", 0, 100).unwrap().unwrap();
        let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["planned", "lost"]);
        assert_eq!(events[1].task, "map-2");
        assert_eq!(
            r.events("job-0001", events[0].seq, 100)
                .unwrap()
                .unwrap()
                .len(),
            1
        );
        assert!(r.events("job-0404", 0, 10).unwrap().is_none());
        // The lost attempt is closed in `attempts` too.
        let attempts = r.attempts("job-0001").unwrap().unwrap();
        assert_eq!(
            (attempts[0].state.as_str(), attempts[0].finished_ms),
            ("lost", 2000)
        );

        let all = r.jobs(&Default::default(), 0, 10).unwrap();
        assert_eq!(all.total, 3);
        assert_eq!(all.jobs[0].job_id, "job-0003", "newest first");
        let eod = listing::JobFilter {
            name: "eod".into(),
            ..Default::default()
        };
        assert_eq!(r.jobs(&eod, 0, 10).unwrap().total, 2);
        // `%` and `_` in a filter are the characters, not wildcards.
        let literal = listing::JobFilter {
            name: "d_100%".into(),
            ..Default::default()
        };
        let page = r.jobs(&literal, 0, 10).unwrap();
        assert_eq!((page.total, page.jobs[0].job_id.as_str()), (1, "job-0003"));
        let by_key = listing::JobFilter {
            run_key: "12-01".into(),
            state: "running".into(),
            ..Default::default()
        };
        assert_eq!(r.jobs(&by_key, 0, 10).unwrap().jobs[0].job_id, "job-0001");
        let second_page = r.jobs(&Default::default(), 2, 2).unwrap();
        assert_eq!((second_page.total, second_page.jobs.len()), (3, 1));
        let (info, spec) = r.job("job-0002").unwrap().unwrap();
        assert_eq!(
            (info.name.as_str(), spec.inputs.as_slice()),
            ("wordcount", ["/in".to_string()].as_slice())
        );

        journal.send(Event::Prune(vec!["job-0001".into()]));
        journal.sync().unwrap();
        assert!(r.job("job-0001").unwrap().is_none());
        assert!(r.events("job-0001", 0, 10).unwrap().is_none());
        assert_eq!(r.jobs(&Default::default(), 0, 10).unwrap().total, 2);
    }
}
