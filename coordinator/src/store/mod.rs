//! The job store: jobs, tasks, attempts and counters journaled in SQLite under `state_dir`.
//!
//! The scheduler never waits for the disk: state changes are sent as [`Event`]s through a
//! [`Journal`] (a channel send under the coordinator's lock) to one writer thread that owns
//! the connection and applies whatever has queued up in one transaction. [`Journal::sync`]
//! waits until everything sent so far is committed, and fails when something is not: the
//! coordinator acknowledges a submission, a report or an assignment only after it.
//! Commits survive power loss (`synchronous = FULL`: the WAL is fsynced at each commit),
//! unless the store is [`Durability::Scratch`].
//!
//! Tables (`sluice.db`, WAL mode):
//! - `jobs`: one row per job: id, sequence number, name, state, error, the submitted spec
//!   (protobuf `JobSpec` bytes), plugin hash, progress and row/byte totals, times.
//! - `tasks`: one row per map or reduce task: state and attempts started.
//! - `attempts`: one row per attempt: worker, state, error, start and end times.
//! - `counters`: per job, name → value (rows in/out, shuffle bytes, attempts, failures).
//! - `job_events`: what happened to each job, in order (`events`); read back by [`Reader`].
//!
//! A job still `running` when the coordinator starts was interrupted by a stop or crash. The
//! store holds what resuming it needs: the spec, the planned splits, the input schema, the
//! plugin's description, and the result of every finished attempt (the `MapDone` statistics
//! reducers need, the `ReduceDone` of committed partitions). [`open`] returns such jobs as
//! [`ResumableJob`]s; a job that cannot be rebuilt is marked failed ("interrupted").
//!
//! Blobs keep the form their type already has: the spec, splits and attempt results are
//! their protobuf messages (defined for the wire anyway, and readable by a later version
//! that adds fields); the plugin's description is the versioned bincode form it crossed the
//! plugin boundary in (`sluice_sdk::codec`). Converting them to the job's own types is
//! [`crate::wire`]'s work.

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use prost::Message;
use rusqlite::{Connection, params};

mod events;
pub mod incremental;
mod journal;
pub mod listing;
pub mod pipelines;
mod read;
pub mod schedules;
pub use journal::{Event, Journal, JournalError};
pub use read::{MAX_EVENTS, Reader};
use sluice_proto::pb;

use crate::clock::now_ms;

/// Whether commits must survive power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Each commit is fsynced before it is acknowledged: a coordinator's store.
    Durable,
    /// Commits are not fsynced: a store in a directory removed when the process ends (a
    /// local run without `--state-dir`), which no crash could find again anyway. A local
    /// run of many small tasks spent most of each task's wall time waiting for those fsyncs
    /// (two per task: its assignment and its report).
    Scratch,
}

/// Why the job store cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("job store {path}: {source}")]
pub struct StoreError {
    path: PathBuf,
    #[source]
    source: rusqlite::Error,
}

/// What the store held when the coordinator started.
pub struct History {
    /// Every ended job, oldest first.
    pub jobs: Vec<pb::JobInfo>,
    /// Jobs that were running: to resume.
    pub resumable: Vec<ResumableJob>,
    /// The next job's sequence number.
    pub next_seq: u64,
    /// Every pipeline run, oldest first.
    pub pipelines: Vec<pipelines::StoredPipeline>,
    /// Every schedule.
    pub schedules: Vec<schedules::StoredSchedule>,
    /// The files incremental jobs read.
    pub incremental: incremental::ReadFiles,
}

/// A job that was running when the coordinator stopped, as the store holds it.
pub struct ResumableJob {
    /// The job as clients saw it last.
    pub info: pb::JobInfo,
    /// The spec as submitted.
    pub spec: pb::JobSpec,
    /// The planned splits.
    pub splits: Vec<pb::Split>,
    /// The encoded input plan (column `schema_ipc`, named for what it held before input
    /// plans: the unnamed input's schema alone, which decoding still reads).
    pub input_plan: Vec<u8>,
    /// The plugin's description, encoded (an older store holds it as text, which decoding
    /// then refuses by its format).
    pub description: Vec<u8>,
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
PRAGMA synchronous = FULL;
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
    description TEXT NOT NULL DEFAULT '',
    run_key TEXT NOT NULL DEFAULT ''
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

pub(crate) fn state_from_name(name: &str) -> pb::JobState {
    match name {
        "running" => pb::JobState::Running,
        "succeeded" => pb::JobState::Succeeded,
        "failed" => pb::JobState::Failed,
        "cancelled" => pb::JobState::Cancelled,
        "commit-failed" => pb::JobState::CommitFailed,
        _ => pb::JobState::Unspecified,
    }
}

fn kind(is_map: bool) -> &'static str {
    if is_map { "map" } else { "reduce" }
}

/// Whether a stored job is to be resumed: it was running, or its `_SUCCESS` is still to
/// be written.
fn unfinished(info: &pb::JobInfo) -> bool {
    info.state == pb::JobState::Running as i32 || info.state == pb::JobState::CommitFailed as i32
}

/// Prefix of a job's own counters in the `counters` table.
pub const JOB_COUNTER: &str = "job.";
/// Prefix of a job's bad records by kind in the `counters` table.
pub const BAD_KIND: &str = "bad.";

/// The counters an ended job keeps in its history: bad records (in all and by kind) and
/// the job's own counters.
fn read_counters(conn: &Connection, jobs: &mut [pb::JobInfo]) -> rusqlite::Result<()> {
    let index: std::collections::HashMap<String, usize> = jobs
        .iter()
        .enumerate()
        .map(|(i, j)| (j.job_id.clone(), i))
        .collect();
    let mut stmt = conn.prepare(
        "SELECT job_id, name, value FROM counters
         WHERE name = 'bad_records' OR name LIKE 'job.%' OR name LIKE 'bad.%'",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    for row in rows {
        let (job, name, value) = row?;
        let Some(info) = index.get(&job).and_then(|&i| jobs.get_mut(i)) else {
            continue;
        };
        apply_counter(info, &name, value);
    }
    Ok(())
}

/// Puts a stored counter into the job it belongs to (engine counters other than bad
/// records are the job's own fields already).
fn apply_counter(info: &mut pb::JobInfo, name: &str, value: i64) {
    if name == "bad_records" {
        info.bad_records = u64::try_from(value).unwrap_or(0);
    } else if let Some(k) = name.strip_prefix(JOB_COUNTER) {
        info.counters.insert(k.to_string(), value);
    } else if let Some(k) = name.strip_prefix(BAD_KIND) {
        info.bad_by_kind
            .insert(k.to_string(), u64::try_from(value).unwrap_or(0));
    }
}

/// The message given to jobs a stop or crash interrupted.
pub const INTERRUPTED: &str = "interrupted: the coordinator stopped before the job finished";

/// Opens (creating if needed) `state_dir/sluice.db`, marks interrupted jobs, reads the
/// history and starts the writer thread.
pub fn open(state_dir: &Path, durability: Durability) -> Result<(History, Journal), StoreError> {
    let path = state_dir.join("sluice.db");
    let err = |source| StoreError {
        path: path.clone(),
        source,
    };
    if let Err(e) = std::fs::create_dir_all(state_dir) {
        return Err(err(rusqlite::Error::ToSqlConversionFailure(Box::new(e))));
    }
    let conn = Connection::open(&path).map_err(err)?;
    // Another process holding the write lock delays the writer at most this long per
    // round; what it could not write is kept and reported (see `journal`).
    conn.busy_timeout(std::time::Duration::from_secs(1))
        .map_err(err)?;
    conn.execute_batch(SCHEMA).map_err(err)?;
    if durability == Durability::Scratch {
        conn.execute_batch("PRAGMA synchronous = OFF;")
            .map_err(err)?;
    }
    conn.execute_batch(pipelines::SCHEMA).map_err(err)?;
    conn.execute_batch(schedules::SCHEMA).map_err(err)?;
    conn.execute_batch(incremental::SCHEMA).map_err(err)?;
    conn.execute_batch(events::SCHEMA).map_err(err)?;
    add_missing_columns(&conn).map_err(err)?;
    let mut history = read_history(&conn).map_err(err)?;
    history.pipelines = pipelines::read(&conn).map_err(err)?;
    history.schedules = schedules::read(&conn).map_err(err)?;
    history.incremental = incremental::read(&conn).map_err(err)?;
    read_counters(&conn, &mut history.jobs).map_err(err)?;
    for info in history.jobs.iter_mut() {
        if !unfinished(info) {
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
    history.jobs.retain(|j| !unfinished(j));
    let (tx, rx) = mpsc::sync_channel(journal::QUEUE);
    std::thread::Builder::new()
        .name("sluice-job-store".into())
        .spawn(move || journal::writer(conn, rx))
        .map_err(|e| err(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))?;
    Ok((history, Journal(Some(tx))))
}

/// Columns added to `jobs` since the first stores: a store written before them gains them
/// (empty), so an upgraded coordinator keeps its history.
const ADDED_JOB_COLUMNS: &[(&str, &str)] = &[("run_key", "TEXT NOT NULL DEFAULT ''")];

fn add_missing_columns(conn: &Connection) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_info('jobs')")?;
    let present = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    for (name, decl) in ADDED_JOB_COLUMNS {
        if !present.iter().any(|p| p == name) {
            conn.execute_batch(&format!("ALTER TABLE jobs ADD COLUMN {name} {decl}"))?;
        }
    }
    Ok(())
}

fn read_history(conn: &Connection) -> rusqlite::Result<History> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {} FROM jobs ORDER BY seq",
        listing::JOB_COLUMNS
    ))?;
    let mut next_seq = 1;
    let jobs = stmt
        .query_map([], listing::job_row)?
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
        pipelines: Vec::new(),
        schedules: Vec::new(),
        incremental: Default::default(),
    })
}

fn decode<M: Message + Default>(bytes: &[u8]) -> rusqlite::Result<M> {
    M::decode(bytes).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

fn read_resumable(conn: &Connection, info: &pb::JobInfo) -> rusqlite::Result<ResumableJob> {
    let id = info.job_id.as_str();
    let (spec, splits, input_plan, description): (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>) = conn
        .query_row(
            "SELECT spec, splits, schema_ipc, description FROM jobs WHERE id = ?1",
            [id],
            |r| {
                // A BLOB since descriptions are binary; TEXT in stores written before.
                let description = r.get_ref(3)?.as_bytes().map(<[u8]>::to_vec)?;
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, description))
            },
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
        input_plan,
        description,
        attempts,
    })
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
        for durability in [Durability::Durable, Durability::Scratch] {
            history_survives_a_restart(durability);
        }
    }

    /// A scratch store only skips the fsyncs: what it commits, a reopened store reads.
    fn history_survives_a_restart(durability: Durability) {
        let dir = tempfile::tempdir().unwrap();
        let (h, journal) = open(dir.path(), durability).unwrap();
        assert!(h.jobs.is_empty());
        assert_eq!(h.next_seq, 1);
        for (seq, id) in [(1, "job-0001"), (2, "job-0002")] {
            journal.send(Event::JobSubmitted {
                seq,
                info: (&info(id, pb::JobState::Running)).into(),
                spec: pb::JobSpec::default(),
                splits: vec![pb::Split::default(); 2],
                input_plan: Vec::new(),
                description: b"wordcount".to_vec(),
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
            outcome: crate::job::Outcome::Failed(sluice_common::failure::TaskFailure {
                message: "boom".into(),
                retryable: true,
                reason: sluice_common::failure::FailureReason::Io,
            }),
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
            outcome: crate::job::Outcome::MapDone(crate::job::MapOutput {
                rows_in: 7,
                ..Default::default()
            }),
        });
        let mut done = info("job-0001", pb::JobState::Succeeded);
        done.rows_out = 42;
        done.finished_ms = 9;
        done.bad_records = 3;
        done.bad_by_kind.insert("wrong field count".into(), 3);
        done.counters.insert("lines".into(), -7);
        journal.send(Event::JobUpdated((&done).into()));
        journal.sync().unwrap();
        drop(journal);

        let (h, _journal) = open(dir.path(), durability).unwrap();
        assert_eq!(h.next_seq, 3);
        assert_eq!(h.jobs.len(), 1);
        assert_eq!(h.jobs[0].state, pb::JobState::Succeeded as i32);
        assert_eq!(h.jobs[0].rows_out, 42);
        assert_eq!(h.jobs[0].bad_records, 3);
        assert_eq!(h.jobs[0].bad_by_kind["wrong field count"], 3);
        assert_eq!(h.jobs[0].counters["lines"], -7);
        assert_eq!(h.resumable.len(), 1);
        let r = &h.resumable[0];
        assert_eq!(r.info.job_id, "job-0002");
        assert_eq!(r.splits.len(), 2);
        assert_eq!(r.description, b"wordcount");
        assert_eq!(r.attempts.len(), 1);
        assert_eq!(
            (r.attempts[0].index, r.attempts[0].state.as_str()),
            (1, "done")
        );
        let done = pb::MapDone::decode(r.attempts[0].result.as_slice()).unwrap();
        assert_eq!(done.rows_in, 7);
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

    /// A change the store cannot write is never acknowledged: the sync covering it fails
    /// (here another process holds the database's write lock past the busy timeout), and
    /// the change is written, in order, once the store can be written again.
    #[test]
    fn a_change_the_store_cannot_write_is_an_error_until_it_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let (_, journal) = open(dir.path(), Durability::Durable).unwrap();
        let submitted = |id: &str| Event::JobSubmitted {
            seq: 1,
            info: (&info(id, pb::JobState::Running)).into(),
            spec: pb::JobSpec::default(),
            splits: Vec::new(),
            input_plan: Vec::new(),
            description: Vec::new(),
        };
        journal.send(submitted("job-0001"));
        journal.sync().unwrap();

        let other = Connection::open(dir.path().join("sluice.db")).unwrap();
        other.execute_batch("BEGIN EXCLUSIVE").unwrap();
        journal.send(submitted("job-0002"));
        let mut done = info("job-0002", pb::JobState::Succeeded);
        done.rows_out = 7;
        journal.send(Event::JobUpdated((&done).into()));
        let e = journal.sync().unwrap_err();
        assert_eq!(e.events, 2, "{e}");
        assert!(e.reason.contains("locked"), "{e}");
        other.execute_batch("ROLLBACK").unwrap();

        journal.sync().unwrap();
        let state: (String, i64) = other
            .query_row(
                "SELECT state, rows_out FROM jobs WHERE id = 'job-0002'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(state, ("succeeded".to_string(), 7), "kept in order");
    }
}
