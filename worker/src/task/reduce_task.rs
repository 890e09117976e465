//! A reduce attempt: fetch partition r of every map output, aggregate (declared aggregates)
//! or sort and call the plugin's `reduce` (custom), write the part file under
//! `<output>/_temporary/`, and commit it by rename once the coordinator allows it.
//! An object-store output is written in the worker's work dir first and uploaded to
//! `<output>/_temporary/`; its commit is a server-side copy and a delete.
//!
//! A partition that receives no rows writes no part file (the `_SUCCESS` manifest lists the
//! files there are).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sluice_common::storage::{Location, ObjectUrl};
use sluice_common::{Error, Result};
use sluice_proto::pb;
use sluice_sdk::TaskKind;
use tokio::sync::mpsc;

use super::reduce_body::{ReduceDirs, reduce_body};
use super::{JobInfo, TaskEnv};
use crate::error::{TaskError, TaskResult};
use crate::shuffle::read::gather;

/// Row groups (or local outputs) in flight between the fetch and the reduce body.
const FETCH_QUEUE: usize = 4;

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
        .map_err(|e| Error::Internal {
            what: format!("storage call panicked: {e}"),
        })?
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
    let ctx = Arc::new(job.context(TaskKind::Reduce, partition, attempt));
    let counted = Arc::clone(&ctx);
    let spec = job.spec.clone();
    let dirs = ReduceDirs {
        temp_dir: temp_dir.clone(),
        strict: matches!(staging, Staging::Local { .. }),
        spill_dir: env
            .work_dir
            .join("reduce")
            .join(&job.job_id)
            .join(format!("r{partition:05}-a{attempt}")),
    };
    let rows = map_outputs.iter().map(|l| l.expected_rows).sum();
    let body = env
        .cpu
        .run(move || reduce_body(rx, &spec, &ctx, partition, rows, &dirs));
    let fetch = gather(
        &env.security,
        &env.registry,
        &env.host_id,
        &job.job_id,
        partition,
        map_outputs,
        tx,
    );
    let (fetched, written) = tokio::join!(fetch, body);
    let cleanup = || {
        let _ = std::fs::remove_dir_all(&temp_dir);
    };
    let written = match (fetched, written) {
        (Err(e), _) => {
            cleanup();
            return Err(e);
        }
        (Ok(_), Err(panic)) => {
            cleanup();
            return Err(Error::Internal {
                what: format!("reduce task panicked: {panic}"),
            }
            .into());
        }
        (Ok(_), Ok(Err(e))) => {
            cleanup();
            return Err(e);
        }
        (Ok(counts), Ok(Ok(w))) => (counts, w),
    };
    let (counts, written) = written;
    let read = |done: pb::ReduceDone| pb::ReduceDone {
        local_outputs: counts.local_outputs,
        remote_outputs: counts.remote_outputs,
        fetch_streams: counts.streams,
        counters: counted.counters.take().into_iter().collect(),
        ..done
    };
    if written.is_empty() {
        cleanup();
        return Ok(read(pb::ReduceDone::default()));
    }
    let names: Vec<String> = written.iter().map(|(name, _, _)| name.clone()).collect();
    // On an object store, the uploads happen before asking: the commit is then copies.
    let uploaded = match &staging {
        Staging::Local { .. } => None,
        Staging::Object { output, .. } => {
            let temp = output
                .join("_temporary")
                .join(&format!("r{partition:05}-a{attempt}"));
            let (temp2, dir, names2) = (temp.clone(), temp_dir.clone(), names.clone());
            let r = blocking(move || {
                for name in &names2 {
                    temp2.join(name).upload_file(&dir.join(name))?;
                }
                Ok(())
            })
            .await;
            cleanup();
            r?;
            Some(temp)
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
            secret: env.secret.clone(),
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
            let (output, staged, names) = (output.clone(), temp_dir.clone(), names.clone());
            // Renames and directory fsyncs: disk waits, off the reactor.
            blocking(move || {
                for name in &names {
                    let final_path = output.join(name);
                    let dir = final_path.parent().unwrap_or(&output).to_path_buf();
                    if dir != output {
                        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
                    }
                    std::fs::rename(staged.join(name), &final_path)
                        .map_err(|e| Error::io(&final_path, e))?;
                    // The rename is the commit and has happened; a directory that cannot
                    // be synced leaves it at the mercy of a power loss, not wrong, and
                    // `_SUCCESS` syncs the output directory again.
                    if let Err(e) = sluice_common::format::write::sync_dir(&dir) {
                        tracing::warn!(dir = %dir.display(), error = %e, "syncing an output directory failed");
                    }
                }
                Ok(())
            })
            .await?;
            cleanup();
        }
        (Staging::Object { output, .. }, Some(temp)) => {
            if !allowed {
                let _ = blocking(move || temp.delete_prefix()).await;
                return Err(TaskError::CommitDenied(partition));
            }
            let (output, names) = (output.clone(), names.clone());
            blocking(move || {
                for name in &names {
                    temp.join(name).rename_to(&output.join(name))?;
                }
                Ok(())
            })
            .await?;
        }
        (Staging::Object { .. }, None) => {
            return Err(Error::Internal {
                what: "object-store output was not uploaded".into(),
            }
            .into());
        }
    }
    let rows = written.iter().map(|w| w.1).sum();
    let bytes = written.iter().map(|w| w.2).sum();
    if job.spec.partition_by.is_empty() {
        return Ok(read(pb::ReduceDone {
            file: names.into_iter().next().unwrap_or_default(),
            rows,
            bytes,
            ..Default::default()
        }));
    }
    Ok(read(pb::ReduceDone {
        rows,
        bytes,
        files: written
            .into_iter()
            .map(|(file, rows, bytes)| pb::PartFile { file, rows, bytes })
            .collect(),
        ..Default::default()
    }))
}
