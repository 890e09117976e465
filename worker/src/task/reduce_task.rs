//! A reduce attempt: fetch partition r of every map output, aggregate (declared aggregates)
//! or sort and call the plugin's `reduce` (custom), write the part file under
//! `<output>/_temporary/`, and commit it by rename once the coordinator allows it.
//! An object-store output is written in the worker's work dir first and uploaded to
//! `<output>/_temporary/`; its commit is a server-side copy and a delete.
//!
//! A partition that receives no rows writes no part file (the `_SUCCESS` manifest lists the
//! files there are).

use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use sluice_common::agg::{AggMode, HashAggregator};
use sluice_common::format::write::{PartWriter, part_file_name};
use sluice_common::plugin::Plugin;
use sluice_common::spec::JobSpec;
use sluice_common::storage::{Location, ObjectUrl};
use sluice_common::{Error, Result};
use sluice_proto::pb;
use sluice_sdk::{ReduceKind, TaskContext, TaskKind};
use tokio::sync::mpsc;

use super::{JobInfo, TaskEnv};
use crate::error::{TaskError, TaskResult};
use crate::shuffle::fetch::{decode_ipc, fetch_partition};
use crate::shuffle::merge::sorted_groups;

/// Batches in flight between the fetchers and the reduce body.
const FETCH_QUEUE: usize = 16;

/// Where an attempt writes before it commits.
pub fn temporary_dir(output: &Path, partition: u32, attempt: u32) -> PathBuf {
    output
        .join("_temporary")
        .join(format!("r{partition:05}-a{attempt}"))
}

/// Where an attempt's part file is written before it commits.
enum Staging {
    /// A local output: `<output>/_temporary/r…-a…/`, committed by a rename.
    Local {
        /// The attempt's directory in `_temporary`.
        dir: PathBuf,
        /// The output directory.
        output: PathBuf,
    },
    /// An object-store output: written in this worker's work dir, uploaded to
    /// `<output>/_temporary/r…-a…/<part>` before asking to commit, then copied to
    /// `<output>/<part>` (and the temporary object deleted) once the commit is granted.
    Object { dir: PathBuf, output: ObjectUrl },
}

impl Staging {
    fn dir(&self) -> &Path {
        match self {
            Staging::Local { dir, .. } | Staging::Object { dir, .. } => dir,
        }
    }
}

/// Runs `f` (blocking file or object-store I/O) off the reactor.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Invalid(format!("storage call panicked: {e}")))?
}

/// Runs the attempt and returns the report of its committed part file.
pub async fn run(
    env: &TaskEnv,
    job: &JobInfo,
    partition: u32,
    attempt: u32,
    map_outputs: &[pb::MapOutputLocation],
) -> TaskResult<pb::ReduceDone> {
    let staging = match Location::parse(&job.spec.output)? {
        Location::Local(output) => Staging::Local {
            dir: temporary_dir(&output, partition, attempt),
            output,
        },
        Location::Object(output) => Staging::Object {
            dir: env
                .work_dir
                .join("output")
                .join(&job.job_id)
                .join(format!("r{partition:05}-a{attempt}")),
            output,
        },
    };
    let temp_dir = staging.dir().to_path_buf();
    let (tx, rx) = mpsc::channel(FETCH_QUEUE);
    let ctx = job.context(TaskKind::Reduce, partition, attempt);
    let spec = job.spec.clone();
    let dir = temp_dir.clone();
    let strict = matches!(staging, Staging::Local { .. });
    let body = env
        .cpu
        .run(move || reduce_body(rx, &spec, &ctx, partition, &dir, strict));
    let fetch = async move {
        for loc in map_outputs {
            fetch_partition(&env.security, &job.job_id, loc, partition, &tx).await?;
        }
        Ok::<_, TaskError>(())
    };
    let (fetched, written) = tokio::join!(fetch, body);
    let cleanup = || {
        let _ = std::fs::remove_dir_all(&temp_dir);
    };
    let written = match (fetched, written) {
        (Err(e), _) => {
            cleanup();
            return Err(e);
        }
        (Ok(()), Err(panic)) => {
            cleanup();
            return Err(Error::Invalid(format!("reduce task panicked: {panic}")).into());
        }
        (Ok(()), Ok(Err(e))) => {
            cleanup();
            return Err(e.into());
        }
        (Ok(()), Ok(Ok(w))) => w,
    };
    let Some((temp_file, rows, bytes)) = written else {
        cleanup();
        return Ok(pb::ReduceDone::default());
    };
    let name = part_file_name(partition, job.spec.output_format);
    // On an object store, the upload happens before asking: the commit is then one copy.
    let uploaded = match &staging {
        Staging::Local { .. } => None,
        Staging::Object { output, .. } => {
            let temp_object = output
                .join("_temporary")
                .join(&format!("r{partition:05}-a{attempt}"))
                .join(&name);
            let (object, file) = (temp_object.clone(), temp_file.clone());
            let r = blocking(move || object.upload_file(&file)).await;
            cleanup();
            r?;
            Some(temp_object)
        }
    };
    let allowed = env
        .coordinator
        .clone()
        .can_commit(pb::CanCommitRequest {
            job_id: job.job_id.clone(),
            partition,
            attempt,
            worker_id: env.worker_id.clone(),
        })
        .await
        .map_err(|s| TaskError::Coordinator(s.message().to_string()))?
        .into_inner()
        .allowed;
    match (&staging, uploaded) {
        (Staging::Local { output, .. }, _) => {
            if !allowed {
                cleanup();
                return Err(TaskError::CommitDenied(partition));
            }
            let final_path = output.join(&name);
            std::fs::rename(&temp_file, &final_path).map_err(|e| Error::io(&final_path, e))?;
            cleanup();
        }
        (Staging::Object { output, .. }, Some(temp_object)) => {
            if !allowed {
                let _ = blocking(move || temp_object.delete()).await;
                return Err(TaskError::CommitDenied(partition));
            }
            let final_object = output.join(&name);
            blocking(move || temp_object.rename_to(&final_object)).await?;
        }
        (Staging::Object { .. }, None) => {
            return Err(Error::Invalid("object-store output was not uploaded".into()).into());
        }
    }
    Ok(pb::ReduceDone {
        file: name,
        rows,
        bytes,
    })
}

/// The CPU side: consumes fetched batches, writes the part file into `temp_dir` (which must
/// not exist yet when `strict`).
/// Returns `(file, rows, bytes)`, or `None` when the partition is empty.
fn reduce_body(
    mut rx: mpsc::Receiver<Vec<u8>>,
    spec: &JobSpec,
    ctx: &TaskContext,
    partition: u32,
    temp_dir: &Path,
    strict: bool,
) -> Result<Option<(PathBuf, u64, u64)>> {
    let plugin = Plugin::load(Path::new(&spec.plugin))?;
    let desc = plugin.description();
    let batch_rows = spec.batch_rows as usize;
    // Fetched chunks are decoded here, on the CPU pool, not on the fetching reactor thread.
    let mut pending: std::vec::IntoIter<RecordBatch> = Vec::new().into_iter();
    let mut next_batch = || -> Result<Option<RecordBatch>> {
        loop {
            if let Some(b) = pending.next() {
                return Ok(Some(b));
            }
            let Some(chunk) = rx.blocking_recv() else {
                return Ok(None);
            };
            pending = decode_ipc(&chunk)
                .map_err(|e| Error::arrow("decoding a shuffle chunk", e))?
                .into_iter();
        }
    };
    let outputs: Vec<RecordBatch> = match &desc.reduce {
        ReduceKind::Aggregate(aggregates) => {
            let mut table: Option<HashAggregator> = None;
            while let Some(batch) = next_batch()? {
                let t = match &mut table {
                    Some(t) => t,
                    None => table.insert(HashAggregator::new(
                        &batch.schema(),
                        &desc.key_columns,
                        aggregates,
                        AggMode::Final,
                    )?),
                };
                t.update(&batch)?;
            }
            match table.map(|mut t| t.take_sorted()).transpose()?.flatten() {
                None => Vec::new(),
                Some(all) => (0..all.num_rows())
                    .step_by(batch_rows)
                    .map(|o| all.slice(o, batch_rows.min(all.num_rows() - o)))
                    .collect(),
            }
        }
        ReduceKind::Custom => {
            let mut batches = Vec::new();
            while let Some(b) = next_batch()? {
                batches.push(b);
            }
            let Some(schema) = batches.first().map(|b| b.schema()) else {
                return Ok(None);
            };
            let keys = desc
                .key_columns
                .iter()
                .map(|k| {
                    schema
                        .index_of(k)
                        .map_err(|_| Error::Invalid(format!("shuffled rows lack key column {k:?}")))
                })
                .collect::<Result<Vec<_>>>()?;
            sorted_groups(&schema, &batches, &keys, batch_rows)?
                .into_iter()
                .map(|chunk| plugin.reduce(chunk, ctx))
                .collect::<Result<Vec<_>>>()?
        }
    };
    let Some(first) = outputs.iter().find(|b| b.num_rows() > 0) else {
        return Ok(None);
    };
    // Not create_dir_all in a local output: once a failed job removed `_temporary`, a
    // straggler must not re-create it. The staging dir of an object-store output is local to
    // this worker and created as needed.
    if strict {
        std::fs::create_dir(temp_dir).map_err(|e| Error::io(temp_dir, e))?;
    } else {
        std::fs::create_dir_all(temp_dir).map_err(|e| Error::io(temp_dir, e))?;
    }
    let path = temp_dir.join(part_file_name(partition, spec.output_format));
    let mut writer = PartWriter::create(&path, first.schema(), spec.output_format)?;
    for b in outputs.iter().filter(|b| b.num_rows() > 0) {
        writer.write(b)?;
    }
    let (rows, bytes) = writer.finish()?;
    Ok(Some((path, rows, bytes)))
}
