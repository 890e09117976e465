//! The job store's event journal (`job_events`): what happened to each job, in order, as
//! [`crate::job::events`] words it. A job's planning is journaled with its submission; an
//! attempt lost with its worker or stopped also closes its row in `attempts`.

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use sluice_proto::pb;

use crate::job::events::{EventKind, JobEvent};

/// The events table; `id` orders events across jobs and is what a reader resumes after.
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS job_events (
    id INTEGER PRIMARY KEY,
    job_id TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    task TEXT NOT NULL DEFAULT '',
    attempt INTEGER NOT NULL DEFAULT 0,
    worker TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS job_events_by_job ON job_events (job_id, id);
";

/// Journals `e`.
pub(super) fn apply(tx: &Transaction<'_>, e: &JobEvent) -> rusqlite::Result<()> {
    insert(
        tx,
        &e.job,
        e.at_ms,
        e.kind.name(),
        &e.task_name(),
        e.attempt,
        &e.worker,
        &e.detail,
    )?;
    // An attempt that ends without a report of its own ends in `attempts` here.
    if let (EventKind::Lost | EventKind::Killed, Some((kind, index))) = (e.kind, e.task) {
        tx.execute(
            "UPDATE attempts SET state = ?5, error = ?6, finished_ms = ?7
             WHERE job_id = ?1 AND kind = ?2 AND idx = ?3 AND attempt = ?4 AND state = 'running'",
            params![
                e.job,
                kind.name(),
                index,
                e.attempt,
                e.kind.name(),
                e.detail,
                e.at_ms as i64
            ],
        )?;
    }
    Ok(())
}

/// Journals that job `job` was planned into `maps` and `reduces` tasks at `at_ms`.
pub(super) fn planned(
    tx: &Transaction<'_>,
    job: &str,
    at_ms: u64,
    maps: u32,
    reduces: u32,
) -> rusqlite::Result<()> {
    let detail = format!("{maps} map task(s), {reduces} reduce task(s)");
    insert(
        tx,
        job,
        at_ms,
        EventKind::Planned.name(),
        "",
        0,
        "",
        &detail,
    )
}

#[allow(clippy::too_many_arguments)]
fn insert(
    tx: &Transaction<'_>,
    job: &str,
    at_ms: u64,
    kind: &str,
    task: &str,
    attempt: u32,
    worker: &str,
    detail: &str,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO job_events (job_id, at_ms, kind, task, attempt, worker, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![job, at_ms as i64, kind, task, attempt, worker, detail],
    )?;
    Ok(())
}

/// At most `limit` events of `job` after event `after` (0: from the first), in order.
pub(super) fn read(
    conn: &Connection,
    job: &str,
    after: u64,
    limit: u32,
) -> rusqlite::Result<Vec<pb::JobEvent>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, at_ms, kind, task, attempt, worker, detail FROM job_events
         WHERE job_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![job, after as i64, limit], |r| {
        Ok(pb::JobEvent {
            seq: r.get::<_, i64>(0)? as u64,
            at_ms: r.get::<_, i64>(1)? as u64,
            kind: r.get(2)?,
            task: r.get(3)?,
            attempt: r.get(4)?,
            worker: r.get(5)?,
            detail: r.get(6)?,
        })
    })?;
    rows.collect()
}

/// Removes everything the store keeps of `jobs` (ended jobs past the retention): their
/// events, attempts, tasks, counters and row.
pub(super) fn prune(tx: &Transaction<'_>, jobs: &[String]) -> rusqlite::Result<()> {
    for job in jobs {
        for table in ["job_events", "attempts", "tasks", "counters"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE job_id = ?1"),
                params![job],
            )?;
        }
        tx.execute("DELETE FROM jobs WHERE id = ?1", params![job])?;
    }
    Ok(())
}

/// Whether the store knows job `job`.
pub(super) fn job_known(conn: &Connection, job: &str) -> rusqlite::Result<bool> {
    conn.query_row("SELECT 1 FROM jobs WHERE id = ?1", params![job], |_| Ok(()))
        .optional()
        .map(|r| r.is_some())
}

/// Every attempt of `job`, by task then attempt.
pub(super) fn attempts(conn: &Connection, job: &str) -> rusqlite::Result<Vec<pb::AttemptInfo>> {
    let mut stmt = conn.prepare_cached(
        "SELECT kind, idx, attempt, worker, state, error, started_ms, finished_ms FROM attempts
         WHERE job_id = ?1 ORDER BY kind, idx, attempt",
    )?;
    let rows = stmt.query_map(params![job], |r| {
        Ok(pb::AttemptInfo {
            task: format!("{}-{}", r.get::<_, String>(0)?, r.get::<_, u32>(1)?),
            attempt: r.get(2)?,
            worker: r.get(3)?,
            state: r.get(4)?,
            error: r.get(5)?,
            started_ms: r.get::<_, i64>(6)? as u64,
            finished_ms: r.get::<_, i64>(7)? as u64,
        })
    })?;
    rows.collect()
}
