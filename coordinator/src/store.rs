//! The job store: jobs, tasks, attempts and counters journaled in SQLite under `state_dir`.
//!
//! The scheduler never waits for the disk: state changes are sent as [`Event`]s through a
//! [`Journal`] (a channel send under the coordinator's lock) to one writer thread that owns
//! the connection and applies whatever has queued up in one transaction. [`Journal::sync`]
//! waits until everything sent so far is committed (graceful shutdown, tests).
//!
//! Tables (`sluice.db`, WAL mode):
//! - `jobs`: one row per job: id, sequence number, name, state, error, the submitted spec
//!   (protobuf `JobSpec` bytes), plugin hash, progress and row/byte totals, times.
//! - `tasks`: one row per map or reduce task: state and attempts started.
//! - `attempts`: one row per attempt: worker, state, error, start and end times.
//! - `counters`: per job, name → value (rows in/out, shuffle bytes, attempts, failures).
//!
//! A job still `running` when the coordinator starts was interrupted by a stop or crash. The
//! store holds what resuming it needs: the spec, the planned splits, the input schema, the
//! plugin's description, and the result of every finished attempt (the `MapDone` statistics
//! reducers need, the `ReduceDone` of committed partitions). [`open`] returns such jobs as
//! [`ResumableJob`]s; a job that cannot be rebuilt is marked failed ("interrupted").

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use prost::Message;
use rusqlite::{Connection, params};
use sluice_proto::pb;

use crate::job::now_ms;
use crate::state_name;

/// Why the job store cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("job store {path}: {source}")]
pub struct StoreError {
    path: PathBuf,
    #[source]
    source: rusqlite::Error,
}

/// One state change to journal.
// Events live briefly in a channel; boxing the rare large one would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Event {
    /// A job was accepted.
    JobSubmitted {
        /// Its sequence number (the numeric part of its id).
        seq: u64,
        /// The job as clients see it.
        info: pb::JobInfo,
        /// The spec as submitted.
        spec: pb::JobSpec,
        /// The planned splits.
        splits: Vec<pb::Split>,
        /// The input schema as IPC bytes (empty when the format carries its own).
        schema_ipc: Vec<u8>,
        /// The plugin's description, encoded.
        description: String,
    },
    /// A job's progress or end.
    JobUpdated(pb::JobInfo),
    /// An attempt was given to a worker.
    AttemptStarted {
        /// The job.
        job: String,
        /// Map or reduce.
        is_map: bool,
        /// Task index (map index or partition).
        index: u32,
        /// Attempt number.
        attempt: u32,
        /// The worker.
        worker: String,
    },
    /// An attempt ended.
    AttemptFinished {
        /// The job.
        job: String,
        /// Map or reduce.
        is_map: bool,
        /// Task index.
        index: u32,
        /// Attempt number.
        attempt: u32,
        /// The error, or `None` on success.
        error: Option<String>,
        /// The encoded `MapDone` or `ReduceDone` of a successful attempt.
        result: Vec<u8>,
    },
    /// Wakes [`Journal::sync`] once everything before it is committed.
    Sync(mpsc::Sender<()>),
}

/// Sends events to the store's writer thread; cheap to clone. A disabled journal drops them.
#[derive(Clone, Debug, Default)]
pub struct Journal(Option<mpsc::Sender<Event>>);

impl Journal {
    /// A journal that records nothing (unit tests of the state machine).
    pub fn disabled() -> Self {
        Journal(None)
    }

    /// Queues an event; never blocks.
    pub fn send(&self, event: Event) {
        if let Some(tx) = &self.0
            && tx.send(event).is_err()
        {
            tracing::error!("the job store writer has stopped; history is no longer recorded");
        }
    }

    /// Blocks until every event sent before this call is committed.
    pub fn sync(&self) {
        let (tx, rx) = mpsc::channel();
        self.send(Event::Sync(tx));
        if self.0.is_some() {
            let _ = rx.recv();
        }
    }
}

/// What the store held when the coordinator started.
pub struct History {
    /// Every ended job, oldest first.
    pub jobs: Vec<pb::JobInfo>,
    /// Jobs that were running: to resume.
    pub resumable: Vec<ResumableJob>,
    /// The next job's sequence number.
    pub next_seq: u64,
}

/// A job that was running when the coordinator stopped, as the store holds it.
pub struct ResumableJob {
    /// The job as clients saw it last.
    pub info: pb::JobInfo,
    /// The spec as submitted.
    pub spec: pb::JobSpec,
    /// The planned splits.
    pub splits: Vec<pb::Split>,
    /// The input schema IPC bytes.
    pub schema_ipc: Vec<u8>,
    /// The plugin's description, encoded.
    pub description: String,
    /// Every attempt the store knows.
    pub attempts: Vec<StoredAttempt>,
}

/// One attempt of a resumable job.
pub struct StoredAttempt {
    /// Map or reduce.
    pub is_map: bool,
    /// Task index.
    pub index: u32,
    /// Attempt number.
    pub attempt: u32,
    /// `running`, `done` or `failed`.
    pub state: String,
    /// The encoded `MapDone`/`ReduceDone` of a done attempt.
    pub result: Vec<u8>,
}

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    error TEXT NOT NULL DEFAULT '',
    spec BLOB NOT NULL,
    plugin_sha256 TEXT NOT NULL,
    output TEXT NOT NULL,
    maps_total INTEGER NOT NULL,
    maps_done INTEGER NOT NULL DEFAULT 0,
    reduces_total INTEGER NOT NULL,
    reduces_done INTEGER NOT NULL DEFAULT 0,
    rows_in INTEGER NOT NULL DEFAULT 0,
    rows_out INTEGER NOT NULL DEFAULT 0,
    shuffle_bytes INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    failed_attempts INTEGER NOT NULL DEFAULT 0,
    submitted_ms INTEGER NOT NULL,
    finished_ms INTEGER NOT NULL DEFAULT 0,
    splits BLOB NOT NULL DEFAULT x'',
    schema_ipc BLOB NOT NULL DEFAULT x'',
    description TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS tasks (
    job_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    idx INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    PRIMARY KEY (job_id, kind, idx)
);
CREATE TABLE IF NOT EXISTS attempts (
    job_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    idx INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    worker TEXT NOT NULL,
    state TEXT NOT NULL,
    error TEXT NOT NULL DEFAULT '',
    started_ms INTEGER NOT NULL,
    finished_ms INTEGER NOT NULL DEFAULT 0,
    result BLOB NOT NULL DEFAULT x'',
    PRIMARY KEY (job_id, kind, idx, attempt)
);
CREATE TABLE IF NOT EXISTS counters (
    job_id TEXT NOT NULL,
    name TEXT NOT NULL,
    value INTEGER NOT NULL,
    PRIMARY KEY (job_id, name)
);
";

fn state_from_name(name: &str) -> pb::JobState {
    match name {
        "running" => pb::JobState::Running,
        "succeeded" => pb::JobState::Succeeded,
        "failed" => pb::JobState::Failed,
        "cancelled" => pb::JobState::Cancelled,
        _ => pb::JobState::Unspecified,
    }
}

fn kind(is_map: bool) -> &'static str {
    if is_map { "map" } else { "reduce" }
}

/// The message given to jobs a stop or crash interrupted.
pub const INTERRUPTED: &str = "interrupted: the coordinator stopped before the job finished";

/// Opens (creating if needed) `state_dir/sluice.db`, marks interrupted jobs, reads the
/// history and starts the writer thread.
pub fn open(state_dir: &Path) -> Result<(History, Journal), StoreError> {
    let path = state_dir.join("sluice.db");
    let err = |source| StoreError {
        path: path.clone(),
        source,
    };
    if let Err(e) = std::fs::create_dir_all(state_dir) {
        return Err(err(rusqlite::Error::ToSqlConversionFailure(Box::new(e))));
    }
    let conn = Connection::open(&path).map_err(err)?;
    conn.execute_batch(SCHEMA).map_err(err)?;
    let mut history = read_history(&conn).map_err(err)?;
    for info in history.jobs.iter_mut() {
        if info.state != pb::JobState::Running as i32 {
            continue;
        }
        match read_resumable(&conn, info) {
            Ok(job) => history.resumable.push(job),
            Err(e) => {
                tracing::error!(job = %info.job_id, error = %e, "cannot resume the job");
                info.state = pb::JobState::Failed as i32;
                info.error = INTERRUPTED.into();
                info.finished_ms = now_ms();
                conn.execute(
                    "UPDATE jobs SET state = 'failed', error = ?2, finished_ms = ?3 WHERE id = ?1",
                    params![info.job_id, INTERRUPTED, info.finished_ms as i64],
                )
                .map_err(err)?;
            }
        }
    }
    history
        .jobs
        .retain(|j| j.state != pb::JobState::Running as i32);
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("sluice-job-store".into())
        .spawn(move || writer(conn, rx))
        .map_err(|e| err(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))?;
    Ok((history, Journal(Some(tx))))
}

fn read_history(conn: &Connection) -> rusqlite::Result<History> {
    let mut stmt = conn.prepare(
        "SELECT id, name, state, error, maps_total, maps_done, reduces_total, reduces_done,
                rows_in, rows_out, output, submitted_ms, finished_ms, shuffle_bytes,
                plugin_sha256, attempts, failed_attempts, seq
         FROM jobs ORDER BY seq",
    )?;
    let mut next_seq = 1;
    let jobs = stmt
        .query_map([], |r| {
            let state: String = r.get(2)?;
            let seq: i64 = r.get(17)?;
            Ok((
                pb::JobInfo {
                    job_id: r.get(0)?,
                    name: r.get(1)?,
                    state: state_from_name(&state) as i32,
                    error: r.get(3)?,
                    maps_total: r.get(4)?,
                    maps_done: r.get(5)?,
                    reduces_total: r.get(6)?,
                    reduces_done: r.get(7)?,
                    rows_in: r.get::<_, i64>(8)? as u64,
                    rows_out: r.get::<_, i64>(9)? as u64,
                    output: r.get(10)?,
                    submitted_ms: r.get::<_, i64>(11)? as u64,
                    finished_ms: r.get::<_, i64>(12)? as u64,
                    shuffle_bytes: r.get::<_, i64>(13)? as u64,
                    plugin_sha256: r.get(14)?,
                    attempts: r.get(15)?,
                    failed_attempts: r.get(16)?,
                    ..Default::default()
                },
                seq as u64,
            ))
        })?
        .map(|row| {
            row.map(|(info, seq)| {
                next_seq = next_seq.max(seq + 1);
                info
            })
        })
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(History {
        jobs,
        resumable: Vec::new(),
        next_seq,
    })
}

fn decode<M: Message + Default>(bytes: &[u8]) -> rusqlite::Result<M> {
    M::decode(bytes).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

fn read_resumable(conn: &Connection, info: &pb::JobInfo) -> rusqlite::Result<ResumableJob> {
    let id = info.job_id.as_str();
    let (spec, splits, schema_ipc, description): (Vec<u8>, Vec<u8>, Vec<u8>, String) = conn
        .query_row(
            "SELECT spec, splits, schema_ipc, description FROM jobs WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?;
    let splits: pb::SplitList = decode(&splits)?;
    let mut stmt = conn.prepare(
        "SELECT kind, idx, attempt, state, result FROM attempts WHERE job_id = ?1
         ORDER BY kind, idx, attempt",
    )?;
    let attempts = stmt
        .query_map([id], |r| {
            Ok(StoredAttempt {
                is_map: r.get::<_, String>(0)? == "map",
                index: r.get(1)?,
                attempt: r.get(2)?,
                state: r.get(3)?,
                result: r.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(ResumableJob {
        info: info.clone(),
        spec: decode(&spec)?,
        splits: splits.splits,
        schema_ipc,
        description,
        attempts,
    })
}

fn writer(mut conn: Connection, rx: mpsc::Receiver<Event>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        let in_one = (|| -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            for event in &batch {
                apply(&tx, event)?;
            }
            tx.commit()
        })();
        if let Err(e) = in_one {
            // One bad event must not take the others down with it: apply them one by one.
            tracing::warn!(error = %e, "journal batch failed; applying its events one by one");
            for event in &batch {
                let one = conn.transaction().and_then(|tx| {
                    apply(&tx, event)?;
                    tx.commit()
                });
                if let Err(e) = one {
                    tracing::error!(error = %e, ?event, "writing the job store failed; this change is not in the history");
                }
            }
        }
        for event in batch {
            if let Event::Sync(done) = event {
                let _ = done.send(());
            }
        }
    }
}

fn update_job(tx: &rusqlite::Transaction<'_>, info: &pb::JobInfo) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE jobs SET name = ?2, state = ?3, error = ?4, maps_done = ?5, reduces_done = ?6,
                rows_in = ?7, rows_out = ?8, shuffle_bytes = ?9, attempts = ?10,
                failed_attempts = ?11, finished_ms = ?12, maps_total = ?13
         WHERE id = ?1",
        params![
            info.job_id,
            info.name,
            state_name(info.state),
            info.error,
            info.maps_done,
            info.reduces_done,
            info.rows_in as i64,
            info.rows_out as i64,
            info.shuffle_bytes as i64,
            info.attempts,
            info.failed_attempts,
            info.finished_ms as i64,
            info.maps_total,
        ],
    )?;
    let counters: [(&str, u64); 5] = [
        ("rows_in", info.rows_in),
        ("rows_out", info.rows_out),
        ("shuffle_bytes", info.shuffle_bytes),
        ("attempts", u64::from(info.attempts)),
        ("failed_attempts", u64::from(info.failed_attempts)),
    ];
    for (name, value) in counters {
        tx.execute(
            "INSERT INTO counters (job_id, name, value) VALUES (?1, ?2, ?3)
             ON CONFLICT (job_id, name) DO UPDATE SET value = excluded.value",
            params![info.job_id, name, value as i64],
        )?;
    }
    Ok(())
}

fn apply(tx: &rusqlite::Transaction<'_>, event: &Event) -> rusqlite::Result<()> {
    match event {
        Event::JobSubmitted {
            seq,
            info,
            spec,
            splits,
            schema_ipc,
            description,
        } => {
            let seq = *seq;
            let splits = pb::SplitList {
                splits: splits.clone(),
            }
            .encode_to_vec();
            tx.execute(
                "INSERT OR REPLACE INTO jobs (id, seq, name, state, spec, plugin_sha256, output,
                        maps_total, reduces_total, submitted_ms, splits, schema_ipc, description)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                params![
                    info.job_id,
                    seq as i64,
                    info.name,
                    state_name(info.state),
                    spec.encode_to_vec(),
                    info.plugin_sha256,
                    info.output,
                    info.maps_total,
                    info.reduces_total,
                    info.submitted_ms as i64,
                    splits,
                    schema_ipc,
                    description,
                ],
            )?;
            update_job(tx, info)
        }
        Event::JobUpdated(info) => update_job(tx, info),
        Event::AttemptStarted {
            job,
            is_map,
            index,
            attempt,
            worker,
        } => {
            tx.execute(
                "INSERT OR REPLACE INTO attempts (job_id, kind, idx, attempt, worker, state, started_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'running', ?6)",
                params![job, kind(*is_map), index, attempt, worker, now_ms() as i64],
            )?;
            tx.execute(
                "INSERT INTO tasks (job_id, kind, idx, state, attempts) VALUES (?1, ?2, ?3, 'running', ?4)
                 ON CONFLICT (job_id, kind, idx) DO UPDATE SET state = 'running', attempts = excluded.attempts",
                params![job, kind(*is_map), index, *attempt + 1],
            )?;
            Ok(())
        }
        Event::AttemptFinished {
            job,
            is_map,
            index,
            attempt,
            error,
            result,
        } => {
            let state = if error.is_some() { "failed" } else { "done" };
            let error = error.clone();
            tx.execute(
                "UPDATE attempts SET state = ?5, error = ?6, finished_ms = ?7, result = ?8
                 WHERE job_id = ?1 AND kind = ?2 AND idx = ?3 AND attempt = ?4",
                params![
                    job,
                    kind(*is_map),
                    index,
                    attempt,
                    state,
                    error.unwrap_or_default(),
                    now_ms() as i64,
                    result
                ],
            )?;
            tx.execute(
                "UPDATE tasks SET state = ?4 WHERE job_id = ?1 AND kind = ?2 AND idx = ?3",
                params![job, kind(*is_map), index, state],
            )?;
            Ok(())
        }
        Event::Sync(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: &str, state: pb::JobState) -> pb::JobInfo {
        pb::JobInfo {
            job_id: id.into(),
            name: "wordcount".into(),
            state: state as i32,
            maps_total: 2,
            reduces_total: 1,
            output: "/out".into(),
            submitted_ms: 5,
            ..Default::default()
        }
    }

    #[test]
    fn history_survives_a_restart_and_running_jobs_can_be_resumed() {
        let dir = tempfile::tempdir().unwrap();
        let (h, journal) = open(dir.path()).unwrap();
        assert!(h.jobs.is_empty());
        assert_eq!(h.next_seq, 1);
        for (seq, id) in [(1, "job-0001"), (2, "job-0002")] {
            journal.send(Event::JobSubmitted {
                seq,
                info: info(id, pb::JobState::Running),
                spec: pb::JobSpec::default(),
                splits: vec![pb::Split::default(); 2],
                schema_ipc: Vec::new(),
                description: "name=wordcount".into(),
            });
        }
        journal.send(Event::AttemptStarted {
            job: "job-0001".into(),
            is_map: true,
            index: 0,
            attempt: 0,
            worker: "w-1".into(),
        });
        journal.send(Event::AttemptFinished {
            job: "job-0001".into(),
            is_map: true,
            index: 0,
            attempt: 0,
            error: Some("boom".into()),
            result: Vec::new(),
        });
        journal.send(Event::AttemptStarted {
            job: "job-0002".into(),
            is_map: true,
            index: 1,
            attempt: 0,
            worker: "w-1".into(),
        });
        journal.send(Event::AttemptFinished {
            job: "job-0002".into(),
            is_map: true,
            index: 1,
            attempt: 0,
            error: None,
            result: vec![7, 7],
        });
        let mut done = info("job-0001", pb::JobState::Succeeded);
        done.rows_out = 42;
        done.finished_ms = 9;
        journal.send(Event::JobUpdated(done));
        journal.sync();
        drop(journal);

        let (h, _journal) = open(dir.path()).unwrap();
        assert_eq!(h.next_seq, 3);
        assert_eq!(h.jobs.len(), 1);
        assert_eq!(h.jobs[0].state, pb::JobState::Succeeded as i32);
        assert_eq!(h.jobs[0].rows_out, 42);
        assert_eq!(h.resumable.len(), 1);
        let r = &h.resumable[0];
        assert_eq!(r.info.job_id, "job-0002");
        assert_eq!(r.splits.len(), 2);
        assert_eq!(r.description, "name=wordcount");
        assert_eq!(r.attempts.len(), 1);
        assert_eq!(
            (r.attempts[0].index, r.attempts[0].state.as_str()),
            (1, "done")
        );
        assert_eq!(r.attempts[0].result, [7, 7]);
        let conn = Connection::open(dir.path().join("sluice.db")).unwrap();
        let attempts: Vec<(String, String)> = conn
            .prepare("SELECT state, error FROM attempts WHERE job_id = 'job-0001'")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(attempts, [("failed".to_string(), "boom".to_string())]);
    }
}
