//! Jobs as the web UI lists them: filtered and paged in SQL, newest first, so a page costs
//! the same after a million jobs and never touches the scheduler's lock.

use prost::Message;
use rusqlite::{Connection, OptionalExtension, Row, params};
use sluice_proto::pb;

/// The `jobs` columns [`job_row`] reads, in its order.
pub(super) const JOB_COLUMNS: &str = "id, name, state, error, maps_total, maps_done,
    reduces_total, reduces_done, rows_in, rows_out, output, submitted_ms, finished_ms,
    shuffle_bytes, plugin_sha256, attempts, failed_attempts, seq, run_key";

/// A job of a `SELECT` of [`JOB_COLUMNS`], and its sequence number.
pub(super) fn job_row(r: &Row<'_>) -> rusqlite::Result<(pb::JobInfo, u64)> {
    let state: String = r.get(2)?;
    let seq: i64 = r.get(17)?;
    Ok((
        pb::JobInfo {
            job_id: r.get(0)?,
            name: r.get(1)?,
            state: super::state_from_name(&state) as i32,
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
            run_key: r.get(18)?,
            ..Default::default()
        },
        seq as u64,
    ))
}

/// Which jobs a listing shows; empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    /// A state name (`running`, `succeeded`, …).
    pub state: String,
    /// A part of the job's name.
    pub name: String,
    /// A part of its run key.
    pub run_key: String,
}

/// One page of jobs, newest first, and how many match in all.
#[derive(Debug, Clone, Default)]
pub struct JobPage {
    /// The jobs of the page.
    pub jobs: Vec<pb::JobInfo>,
    /// Jobs matching the filter.
    pub total: u64,
}

/// `LIKE` pattern matching `part` anywhere, its wildcards taken literally.
fn contains(part: &str) -> String {
    let escaped = part
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

pub(super) fn jobs(
    conn: &Connection,
    filter: &JobFilter,
    offset: u64,
    limit: u32,
) -> rusqlite::Result<JobPage> {
    let clause = "(?1 = '' OR state = ?1)
         AND (?2 = '' OR name LIKE ?3 ESCAPE '\\')
         AND (?4 = '' OR run_key LIKE ?5 ESCAPE '\\')";
    let args = params![
        filter.state,
        filter.name,
        contains(&filter.name),
        filter.run_key,
        contains(&filter.run_key),
        i64::from(limit),
        i64::try_from(offset).unwrap_or(i64::MAX),
    ];
    let total: i64 = conn.query_row(
        &format!("SELECT COUNT(*) FROM jobs WHERE {clause} AND ?6 >= 0 AND ?7 >= 0"),
        args,
        |r| r.get(0),
    )?;
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE {clause} ORDER BY seq DESC LIMIT ?6 OFFSET ?7"
    ))?;
    let jobs = stmt
        .query_map(args, job_row)?
        .map(|r| r.map(|(info, _)| info))
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(JobPage {
        jobs,
        total: total as u64,
    })
}

/// A job with its counters, and its spec as submitted.
pub(super) fn job(
    conn: &Connection,
    id: &str,
) -> rusqlite::Result<Option<(pb::JobInfo, pb::JobSpec)>> {
    let found = conn
        .query_row(
            &format!("SELECT {JOB_COLUMNS}, spec FROM jobs WHERE id = ?1"),
            params![id],
            |r| Ok((job_row(r)?.0, r.get::<_, Vec<u8>>(19)?)),
        )
        .optional()?;
    let Some((mut info, spec)) = found else {
        return Ok(None);
    };
    let mut stmt = conn.prepare_cached("SELECT name, value FROM counters WHERE job_id = ?1")?;
    let rows = stmt.query_map(params![id], |r| Ok((r.get::<_, String>(0)?, r.get(1)?)))?;
    for row in rows {
        let (name, value) = row?;
        super::apply_counter(&mut info, &name, value);
    }
    // A spec that no longer decodes (a store from another version) shows as empty.
    let spec = pb::JobSpec::decode(spec.as_slice()).unwrap_or_default();
    Ok(Some((info, spec)))
}
