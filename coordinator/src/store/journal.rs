//! The journal: state changes sent as [`Event`]s to one writer thread that owns the SQLite
//! connection and applies whatever has queued up in one transaction.
//!
//! A write that fails is never reported as done: [`Journal::sync`] returns an error for
//! it. Events that failed for a reason that can heal (the disk full or failing, the
//! database locked by another process) are kept, in order, with everything sent after
//! them, and written first at the next event; events SQLite refuses as such (a bug, not
//! the disk) are dropped and logged, and the sync covering them fails.
//!
//! Memory is bounded: at most [`QUEUE`] events wait in the channel (a sender then waits for
//! the writer) and at most `KEPT` are kept to write again (the writer then takes no new ones
//! until the store takes those).

use std::sync::mpsc;

use prost::Message;
use rusqlite::{Connection, ErrorCode, params};
use sluice_proto::pb;

use super::kind;
use super::{BAD_KIND, JOB_COUNTER};
use crate::clock::now_ms;
use crate::job::{JobInfo, Outcome};
use crate::state_name;

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
        info: JobInfo,
        /// The spec as submitted.
        spec: pb::JobSpec,
        /// The planned splits.
        splits: Vec<pb::Split>,
        /// The encoded input plan.
        input_plan: Vec<u8>,
        /// The plugin's description, encoded (`JobDescription::encode`).
        description: Vec<u8>,
    },
    /// A job's progress or end.
    JobUpdated(JobInfo),
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
        /// What it finished with.
        outcome: Outcome,
    },
    /// A pipeline run changed.
    Pipeline(super::pipelines::PipelineEvent),
    /// A schedule changed or fired.
    Schedule(super::schedules::ScheduleEvent),
    /// A successful incremental job read these files.
    FilesRead(super::incremental::FilesRead),
    /// Something happened to a job (its event journal).
    Job(crate::job::events::JobEvent),
    /// Ended jobs past the retention: everything kept of them goes.
    Prune(Vec<String>),
    /// Answers [`Journal::sync`] once everything before it is committed, or failed.
    Sync(mpsc::Sender<Result<(), JournalError>>),
}

/// Changes the job store did not record; whoever waited for them must not report success.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("the job store did not record {events} change(s): {reason}")]
pub struct JournalError {
    /// Changes lost or still waiting to be written.
    pub events: usize,
    /// The last error SQLite gave, or why the writer is gone.
    pub reason: String,
}

/// Sends events to the store's writer thread; cheap to clone. A disabled journal drops them.
#[derive(Clone, Debug, Default)]
pub struct Journal(pub(super) Option<mpsc::SyncSender<Event>>);

/// Events queued for the writer at most: past this, senders wait for it (the coordinator
/// slows down rather than holding an unbounded backlog in memory). The channel allocates
/// every slot up front (an event is a few hundred bytes), and the writer takes all that
/// queued in one transaction, so a few thousand keep it busy.
pub(super) const QUEUE: usize = 4096;

/// Events kept to write again at most; past this, the writer takes no new events until the
/// store can be written (and the queue above fills up).
const KEPT: usize = 100_000;

impl Journal {
    /// A journal that records nothing (unit tests of the state machine).
    pub fn disabled() -> Self {
        Journal(None)
    }

    /// Queues an event; blocks only while [`QUEUE`] events wait for the writer.
    pub fn send(&self, event: Event) {
        if let Some(tx) = &self.0
            && tx.send(event).is_err()
        {
            tracing::error!("the job store writer has stopped; history is no longer recorded");
        }
    }

    /// Blocks until every event sent before this call is committed; an error when one of
    /// them is not (and will not be, or not yet).
    pub fn sync(&self) -> Result<(), JournalError> {
        let Some(tx) = &self.0 else {
            return Ok(());
        };
        let gone = || JournalError {
            events: 0,
            reason: "the job store writer has stopped".into(),
        };
        let (done, rx) = mpsc::channel();
        tx.send(Event::Sync(done)).map_err(|_| gone())?;
        rx.recv().map_err(|_| gone())?
    }
}

/// Whether SQLite failed for a reason that can heal, so the event is worth writing again.
fn transient(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(
            ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::DiskFull
                | ErrorCode::SystemIoFailure
                | ErrorCode::CannotOpen
                | ErrorCode::ReadOnly
                | ErrorCode::OutOfMemory
        )
    )
}

/// What one round of writing left undone.
#[derive(Default)]
struct Round {
    /// Events to write again: the first that failed transiently and every one after it,
    /// so a later change never lands before an earlier one.
    kept: Vec<Event>,
    /// Events SQLite refused as such.
    dropped: usize,
    /// The last error.
    reason: Option<String>,
}

/// Writes `events` in one transaction, or one by one when that fails.
fn write(conn: &mut Connection, events: Vec<Event>) -> Round {
    let in_one = (|| -> rusqlite::Result<()> {
        let tx = conn.transaction()?;
        for event in &events {
            apply(&tx, event)?;
        }
        tx.commit()
    })();
    let Err(e) = in_one else {
        return Round::default();
    };
    if transient(&e) {
        tracing::error!(error = %e, "the job store cannot be written; keeping the changes to write again");
        return Round {
            kept: events,
            dropped: 0,
            reason: Some(e.to_string()),
        };
    }
    // One bad event must not take the others down with it: apply them one by one.
    tracing::warn!(error = %e, events = events.len(), "journal batch failed; applying its events one by one");
    let mut round = Round {
        reason: Some(e.to_string()),
        ..Round::default()
    };
    let mut events = events.into_iter();
    while let Some(event) = events.next() {
        let one = conn.transaction().and_then(|tx| {
            apply(&tx, &event)?;
            tx.commit()
        });
        match one {
            Ok(()) => {}
            Err(e) if transient(&e) => {
                tracing::error!(error = %e, "the job store cannot be written; keeping the changes to write again");
                round.kept.push(event);
                round.kept.extend(events);
                round.reason = Some(e.to_string());
                break;
            }
            Err(e) => {
                tracing::error!(error = %e, ?event, "the job store refused a change; it is not in the history");
                round.dropped += 1;
                round.reason = Some(e.to_string());
            }
        }
    }
    round
}

/// The writer thread: applies what queued up and answers syncs with how that went. Events
/// it keeps are reported to every sync until they are written; events it dropped, to the
/// syncs of the next round that has any.
pub(super) fn writer(mut conn: Connection, rx: mpsc::Receiver<Event>) {
    let mut pending: Vec<Event> = Vec::new();
    let mut unreported = 0;
    let mut reason = String::new();
    loop {
        if pending.len() >= KEPT {
            // Full: write what is kept before taking more, however long the store refuses.
            std::thread::sleep(std::time::Duration::from_secs(1));
            let round = write(&mut conn, std::mem::take(&mut pending));
            pending = round.kept;
            unreported += round.dropped;
            continue;
        }
        let Ok(first) = rx.recv() else { break };
        let mut events = std::mem::take(&mut pending);
        let mut waiters = Vec::new();
        for event in std::iter::once(first).chain(rx.try_iter().take(QUEUE)) {
            match event {
                Event::Sync(done) => waiters.push(done),
                event => events.push(event),
            }
        }
        let round = write(&mut conn, events);
        pending = round.kept;
        unreported += round.dropped;
        if let Some(r) = round.reason {
            reason = r;
        }
        if waiters.is_empty() {
            continue;
        }
        let undone = unreported + pending.len();
        let reply = if undone == 0 {
            Ok(())
        } else {
            Err(JournalError {
                events: undone,
                reason: reason.clone(),
            })
        };
        for done in waiters {
            let _ = done.send(reply.clone());
        }
        unreported = 0;
    }
    if !pending.is_empty() {
        tracing::error!(
            events = pending.len(),
            "the job store stopped with changes it could not write"
        );
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
    let counters: [(&str, u64); 6] = [
        ("bad_records", info.bad_records),
        ("rows_in", info.rows_in),
        ("rows_out", info.rows_out),
        ("shuffle_bytes", info.shuffle_bytes),
        ("attempts", u64::from(info.attempts)),
        ("failed_attempts", u64::from(info.failed_attempts)),
    ];
    // The job's own counters and the bad records by kind, apart from the engine's.
    let own = info
        .counters
        .iter()
        .map(|(k, v)| (format!("{JOB_COUNTER}{k}"), *v))
        .chain(info.bad_by_kind.iter().map(|(k, v)| {
            (
                format!("{BAD_KIND}{k}"),
                i64::try_from(*v).unwrap_or(i64::MAX),
            )
        }));
    for (name, value) in own {
        tx.execute(
            "INSERT INTO counters (job_id, name, value) VALUES (?1, ?2, ?3)
             ON CONFLICT (job_id, name) DO UPDATE SET value = excluded.value",
            params![info.job_id, name, value],
        )?;
    }
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
            input_plan,
            description,
        } => {
            let info = pb::JobInfo::from(info);
            let seq = *seq;
            let splits = pb::SplitList {
                splits: splits.clone(),
            }
            .encode_to_vec();
            tx.execute(
                "INSERT OR REPLACE INTO jobs (id, seq, name, state, spec, plugin_sha256, output,
                        maps_total, reduces_total, submitted_ms, splits, schema_ipc, description,
                        run_key)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
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
                    input_plan,
                    description,
                    info.run_key,
                ],
            )?;
            let (maps, reduces) = (info.maps_total, info.reduces_total);
            super::events::planned(tx, &info.job_id, info.submitted_ms, maps, reduces)?;
            update_job(tx, &info)
        }
        Event::JobUpdated(info) => update_job(tx, &pb::JobInfo::from(info)),
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
            outcome,
        } => {
            let (state, error) = match outcome {
                Outcome::Failed(f) => ("failed", f.message.as_str()),
                _ => ("done", ""),
            };
            let result = crate::wire::encode_result(outcome);
            tx.execute(
                "UPDATE attempts SET state = ?5, error = ?6, finished_ms = ?7, result = ?8
                 WHERE job_id = ?1 AND kind = ?2 AND idx = ?3 AND attempt = ?4",
                params![
                    job,
                    kind(*is_map),
                    index,
                    attempt,
                    state,
                    error,
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
        Event::Pipeline(e) => super::pipelines::apply(tx, e),
        Event::Schedule(e) => super::schedules::apply(tx, e),
        Event::FilesRead(e) => super::incremental::apply(tx, e),
        Event::Job(e) => super::events::apply(tx, e),
        Event::Prune(jobs) => super::events::prune(tx, jobs),
        Event::Sync(_) => Ok(()),
    }
}
