//! The job store's pipeline runs: each run with its definition, and each step's job (or
//! why it could not be started), so the coordinator drives a run on after a restart.

use rusqlite::{Connection, Transaction, params};

/// The pipeline tables.
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS pipelines (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    name TEXT NOT NULL,
    run_key TEXT NOT NULL,
    state TEXT NOT NULL,
    error TEXT NOT NULL DEFAULT '',
    spec BLOB NOT NULL,
    submitted_ms INTEGER NOT NULL,
    finished_ms INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS pipeline_steps (
    run_id TEXT NOT NULL,
    step TEXT NOT NULL,
    job_id TEXT NOT NULL DEFAULT '',
    error TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (run_id, step)
);
";

/// A change to a pipeline run.
#[derive(Debug)]
pub enum PipelineEvent {
    /// A run was accepted.
    Submitted {
        /// `pipe-NNNN`.
        id: String,
        /// Its sequence number.
        seq: u64,
        /// The pipeline's name.
        name: String,
        /// Its run key (empty: none).
        run_key: String,
        /// The encoded `pb::PipelineSpec`.
        spec: Vec<u8>,
        /// When, ms since the Unix epoch.
        submitted_ms: u64,
    },
    /// A step's job was submitted (or an earlier job of its key answered).
    StepJob {
        /// The run.
        run: String,
        /// The step.
        step: String,
        /// Its job.
        job: String,
    },
    /// A step's job was refused (its planning failed).
    StepRefused {
        /// The run.
        run: String,
        /// The step.
        step: String,
        /// Why.
        error: String,
    },
    /// A run ended.
    Ended {
        /// The run.
        run: String,
        /// `succeeded` or `failed`.
        state: &'static str,
        /// Why it failed.
        error: String,
        /// When, ms since the Unix epoch.
        finished_ms: u64,
    },
}

/// A pipeline run as the store holds it.
#[derive(Debug, Clone)]
pub struct StoredPipeline {
    /// `pipe-NNNN`.
    pub id: String,
    /// Its sequence number.
    pub seq: u64,
    /// The pipeline's name.
    pub name: String,
    /// Its run key.
    pub run_key: String,
    /// `running`, `succeeded` or `failed`.
    pub state: String,
    /// Why it failed.
    pub error: String,
    /// The encoded `pb::PipelineSpec`.
    pub spec: Vec<u8>,
    /// Submission time.
    pub submitted_ms: u64,
    /// End time (0: running).
    pub finished_ms: u64,
    /// `(step, job)` of the steps started.
    pub jobs: Vec<(String, String)>,
    /// `(step, error)` of the steps refused.
    pub refused: Vec<(String, String)>,
}

pub(super) fn apply(tx: &Transaction<'_>, event: &PipelineEvent) -> rusqlite::Result<()> {
    match event {
        PipelineEvent::Submitted {
            id,
            seq,
            name,
            run_key,
            spec,
            submitted_ms,
        } => tx
            .execute(
                "INSERT OR REPLACE INTO pipelines (id, seq, name, run_key, state, spec, submitted_ms)
                 VALUES (?1, ?2, ?3, ?4, 'running', ?5, ?6)",
                params![id, *seq as i64, name, run_key, spec, *submitted_ms as i64],
            )
            .map(drop),
        PipelineEvent::StepJob { run, step, job } => tx
            .execute(
                "INSERT INTO pipeline_steps (run_id, step, job_id) VALUES (?1, ?2, ?3)
                 ON CONFLICT (run_id, step) DO UPDATE SET job_id = excluded.job_id, error = ''",
                params![run, step, job],
            )
            .map(drop),
        PipelineEvent::StepRefused { run, step, error } => tx
            .execute(
                "INSERT INTO pipeline_steps (run_id, step, error) VALUES (?1, ?2, ?3)
                 ON CONFLICT (run_id, step) DO UPDATE SET error = excluded.error",
                params![run, step, error],
            )
            .map(drop),
        PipelineEvent::Ended {
            run,
            state,
            error,
            finished_ms,
        } => tx
            .execute(
                "UPDATE pipelines SET state = ?2, error = ?3, finished_ms = ?4 WHERE id = ?1",
                params![run, state, error, *finished_ms as i64],
            )
            .map(drop),
    }
}

/// Every pipeline run, oldest first.
pub(super) fn read(conn: &Connection) -> rusqlite::Result<Vec<StoredPipeline>> {
    let mut stmt = conn.prepare(
        "SELECT id, seq, name, run_key, state, error, spec, submitted_ms, finished_ms
         FROM pipelines ORDER BY seq",
    )?;
    let mut runs = stmt
        .query_map([], |r| {
            Ok(StoredPipeline {
                id: r.get(0)?,
                seq: r.get::<_, i64>(1)? as u64,
                name: r.get(2)?,
                run_key: r.get(3)?,
                state: r.get(4)?,
                error: r.get(5)?,
                spec: r.get(6)?,
                submitted_ms: r.get::<_, i64>(7)? as u64,
                finished_ms: r.get::<_, i64>(8)? as u64,
                jobs: Vec::new(),
                refused: Vec::new(),
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut steps = conn.prepare(
        "SELECT step, job_id, error FROM pipeline_steps WHERE run_id = ?1 ORDER BY step",
    )?;
    for run in &mut runs {
        let rows = steps
            .query_map([&run.id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        for (step, job, error) in rows {
            if !error.is_empty() {
                run.refused.push((step, error));
            } else if !job.is_empty() {
                run.jobs.push((step, job));
            }
        }
    }
    Ok(runs)
}
