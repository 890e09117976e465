//! A reduce attempt: fetch partition r of every map output, aggregate (declared aggregates)
//! or sort and call the plugin's `reduce` (custom), write the part file under
//! `<output>/_temporary/`, and commit it by rename once the coordinator allows it.
//!
//! A partition that receives no rows writes no part file (the `_SUCCESS` manifest lists the
//! files there are).

use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use sluice_common::agg::{AggMode, HashAggregator};
use sluice_common::format::write::{PartWriter, part_file_name};
use sluice_common::plugin::Plugin;
use sluice_common::spec::JobSpec;
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

/// Runs the attempt and returns the report of its committed part file.
pub async fn run(
    env: &TaskEnv,
    job: &JobInfo,
    partition: u32,
    attempt: u32,
    map_outputs: &[pb::MapOutputLocation],
) -> TaskResult<pb::ReduceDone> {
    let output = PathBuf::from(&job.spec.output);
    let temp_dir = temporary_dir(&output, partition, attempt);
    let (tx, rx) = mpsc::channel(FETCH_QUEUE);
    let ctx = job.context(TaskKind::Reduce, partition, attempt);
    let spec = job.spec.clone();
    let dir = temp_dir.clone();
    let body = env
        .cpu
        .run(move || reduce_body(rx, &spec, &ctx, partition, &dir));
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
    let allowed = env
        .coordinator
        .clone()
        .can_commit(pb::CanCommitRequest {
            job_id: job.job_id.clone(),
            partition,
            attempt,
        })
        .await
        .map_err(|s| TaskError::Coordinator(s.message().to_string()))?
        .into_inner()
        .allowed;
    if !allowed {
        cleanup();
        return Err(TaskError::CommitDenied(partition));
    }
    let name = part_file_name(partition, job.spec.output_format);
    let final_path = output.join(&name);
    std::fs::rename(&temp_file, &final_path).map_err(|e| Error::io(&final_path, e))?;
    cleanup();
    Ok(pb::ReduceDone {
        file: name,
        rows,
        bytes,
    })
}

/// The CPU side: consumes fetched batches, writes the part file into `temp_dir`.
/// Returns `(file, rows, bytes)`, or `None` when the partition is empty.
fn reduce_body(
    mut rx: mpsc::Receiver<Vec<u8>>,
    spec: &JobSpec,
    ctx: &TaskContext,
    partition: u32,
    temp_dir: &Path,
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
    // Not create_dir_all: once a failed job removed `_temporary`, a straggler must not
    // re-create it.
    std::fs::create_dir(temp_dir).map_err(|e| Error::io(temp_dir, e))?;
    let path = temp_dir.join(part_file_name(partition, spec.output_format));
    let mut writer = PartWriter::create(&path, first.schema(), spec.output_format)?;
    for b in outputs.iter().filter(|b| b.num_rows() > 0) {
        writer.write(b)?;
    }
    let (rows, bytes) = writer.finish()?;
    Ok(Some((path, rows, bytes)))
}
