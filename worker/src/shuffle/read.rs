//! A reducer's side of the shuffle: partition r of every map output, in map order, whether
//! it is read from this host's disk or fetched from another worker.
//!
//! - A map output this worker holds, or one another worker of the same host id wrote (its
//!   spill file is found at the reported path with the reported token: Spark's host-local
//!   reads), is read from the file: no network, no copy through a server. The token, not
//!   the host id, is what makes this safe: two machines given the same host id only lose
//!   the shortcut. A worker's host id defaults to the hostname; tests that emulate
//!   several machines on one give each worker its own.
//! - The others are fetched with one `FetchOutputs` stream per worker for all the outputs it
//!   holds, several workers at once: at most [`MAX_STREAMS`] streams are open together.
//!
//! Rows reach the reduce in map order whatever the source, so a custom `reduce` sees the
//! values of a key in the same order on every run. To keep that order with streams running
//! in parallel, the outputs are consumed in order from per-stream queues of a few row
//! groups each; with more workers than [`MAX_STREAMS`] the outputs are taken in windows of
//! consecutive outputs held by at most that many workers ([`plan_windows`]).
//!
//! Outputs with no rows for the partition are skipped. Every failure is a
//! [`TaskError::FetchFailed`] naming the map output, a local file gone included.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::path::{Path, PathBuf};

use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder,
};
use sluice_common::format::remote::SparseFile;
use sluice_proto::pb;
use sluice_proto::transport::Security;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::fetch::{Piece, fetch_stream};
use super::footers::FOOTERS;
use super::spill::{PARTITION_INDEX_KEY, TOKEN_KEY};
use super::{MapOutputId, ShuffleRegistry};
use crate::error::{TaskError, TaskResult};

/// Streams open at once per reducer (Hadoop's `parallelcopies` default).
pub const MAX_STREAMS: usize = 5;

/// Row groups queued per stream ahead of the merge.
const STREAM_QUEUE: usize = 2;

/// The fetch failure of `loc`.
pub fn fetch_failed(
    loc: &pb::MapOutputLocation,
    message: String,
    worker_unreachable: bool,
) -> TaskError {
    TaskError::FetchFailed {
        map_index: loc.map_index,
        map_attempt: loc.attempt,
        worker_id: loc.worker_id.clone(),
        addr: loc.shuffle_addr.clone(),
        message,
        worker_unreachable,
    }
}

/// Shuffled input for the reduce, in map order.
pub enum Fetched {
    /// A row group fetched from another worker.
    Remote {
        /// Its file's metadata.
        meta: ArrowReaderMetadata,
        /// Its index in the file.
        row_group: usize,
        /// Its bytes, at their offset in the spill file.
        bytes: SparseFile,
        /// The map output it belongs to.
        loc: pb::MapOutputLocation,
    },
    /// A map output on this host's disk, read by the consumer. Its footer is looked up
    /// again when it is read ([`FOOTERS`]), not held here: holding every local output's
    /// metadata until its turn came cost hundreds of MiB for a job of 17,000 maps.
    Local {
        /// The job whose output it is.
        job_id: String,
        /// The spill file.
        path: PathBuf,
        /// The partition's row groups.
        row_groups: Vec<usize>,
        /// The map output.
        loc: pb::MapOutputLocation,
    },
}

impl Fetched {
    /// The map output these rows come from.
    pub fn loc(&self) -> &pb::MapOutputLocation {
        match self {
            Fetched::Remote { loc, .. } | Fetched::Local { loc, .. } => loc,
        }
    }

    /// The rows, decoded in batches of `batch_rows`.
    pub fn batches(self, batch_rows: usize) -> TaskResult<ParquetRecordBatchReader> {
        match self {
            Fetched::Remote {
                meta,
                row_group,
                bytes,
                loc,
            } => ParquetRecordBatchReaderBuilder::new_with_metadata(bytes, meta)
                .with_row_groups(vec![row_group])
                .with_batch_size(batch_rows)
                .build()
                .map_err(|e| fetch_failed(&loc, format!("decoding: {e}"), false)),
            Fetched::Local {
                job_id,
                path,
                row_groups,
                loc,
            } => {
                let gone = |e: String| {
                    fetch_failed(&loc, format!("reading {}: {e}", path.display()), false)
                };
                let opened = FOOTERS.open(&job_id, &path).map_err(gone)?;
                // The reader indexes row groups unchecked: a file changed since `locate`
                // looked must fail the fetch, not the process.
                let present = opened.meta.metadata().num_row_groups();
                if let Some(g) = row_groups.iter().find(|&&g| g >= present) {
                    return Err(gone(format!("it has no row group {g}")));
                }
                ParquetRecordBatchReaderBuilder::new_with_metadata(opened.file, opened.meta)
                    .with_row_groups(row_groups)
                    .with_batch_size(batch_rows)
                    .build()
                    .map_err(|e| gone(e.to_string()))
            }
        }
    }
}

/// How the counts of a reduce attempt's input came about.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FetchCounts {
    /// Outputs read from this host's disk.
    pub local_outputs: u32,
    /// Outputs fetched from other workers.
    pub remote_outputs: u32,
    /// `FetchOutputs` streams opened.
    pub streams: u32,
}

/// A window of consecutive outputs and the streams fetching its remote ones.
#[derive(Debug, PartialEq, Eq)]
pub struct Window {
    /// Positions of the outputs in the window.
    pub range: Range<usize>,
    /// One stream per worker: the positions of that worker's outputs, in order.
    pub streams: Vec<Vec<usize>>,
}

/// Cuts outputs into windows of consecutive outputs whose remote ones (`Some(worker)`) come
/// from at most `max_streams` workers; local ones (`None`) need no stream. With at most
/// `max_streams` workers there is one window and one stream per worker.
pub fn plan_windows(workers: &[Option<&str>], max_streams: usize) -> Vec<Window> {
    let max_streams = max_streams.max(1);
    let mut windows = Vec::new();
    let mut start = 0;
    while start < workers.len() {
        let mut streams: Vec<(&str, Vec<usize>)> = Vec::new();
        let mut end = start;
        while end < workers.len() {
            if let Some(w) = workers[end] {
                match streams.iter().position(|(s, _)| *s == w) {
                    Some(i) => streams[i].1.push(end),
                    None if streams.len() < max_streams => streams.push((w, vec![end])),
                    None => break,
                }
            }
            end += 1;
        }
        windows.push(Window {
            range: start..end,
            streams: streams.into_iter().map(|(_, p)| p).collect(),
        });
        start = end;
    }
    windows
}

/// Where one output is read from.
enum Source {
    Local(Fetched),
    Remote,
}

fn load_meta(job_id: &str, path: &Path) -> Result<ArrowReaderMetadata, String> {
    FOOTERS.open(job_id, path).map(|o| o.meta)
}

/// The row groups of `partition` in a spill file's footer index ("p:rg,rg;p:rg").
fn indexed_row_groups(meta: &ArrowReaderMetadata, partition: u32) -> Option<Vec<usize>> {
    let kv = meta.metadata().file_metadata().key_value_metadata()?;
    let text = kv
        .iter()
        .find(|k| k.key == PARTITION_INDEX_KEY)?
        .value
        .as_deref()?;
    for entry in text.split(';') {
        let (p, groups) = entry.split_once(':')?;
        if p.parse::<u32>().ok()? == partition {
            return groups.split(',').map(|g| g.parse().ok()).collect();
        }
    }
    Some(Vec::new())
}

fn token_of(meta: &ArrowReaderMetadata) -> Option<u64> {
    let kv = meta.metadata().file_metadata().key_value_metadata()?;
    let text = kv.iter().find(|k| k.key == TOKEN_KEY)?.value.as_deref()?;
    u64::from_str_radix(text, 16).ok()
}

fn rows_in(meta: &ArrowReaderMetadata, groups: &[usize]) -> Option<u64> {
    groups
        .iter()
        .map(|&g| {
            let rows = meta.metadata().row_groups().get(g)?.num_rows();
            u64::try_from(rows).ok()
        })
        .sum()
}

/// Decides where `loc` is read from: this worker's own output (which must be readable, or
/// it is a fetch failure), a file another worker on this host wrote, or the network.
fn locate(
    registry: &ShuffleRegistry,
    host_id: &str,
    job_id: &str,
    partition: u32,
    loc: &pb::MapOutputLocation,
) -> TaskResult<Source> {
    let id = MapOutputId {
        job_id: job_id.to_string(),
        map_index: loc.map_index,
        attempt: loc.attempt,
    };
    let local = |path: PathBuf, row_groups: Vec<usize>, meta: &ArrowReaderMetadata| {
        let bytes = row_groups
            .iter()
            .filter_map(|&g| meta.metadata().row_groups().get(g))
            .map(|g| u64::try_from(g.compressed_size()).unwrap_or(0))
            .sum();
        crate::metrics::METRICS.shuffle_read("local", bytes);
        Source::Local(Fetched::Local {
            job_id: job_id.to_string(),
            path,
            row_groups,
            loc: loc.clone(),
        })
    };
    if let Some(own) = registry.get(&id) {
        let lost = |m: String| fetch_failed(loc, m, false);
        let path = own
            .path
            .ok_or_else(|| lost("this worker's output holds no rows".into()))?;
        let meta =
            load_meta(job_id, &path).map_err(|e| lost(format!("{}: {e}", path.display())))?;
        let groups = own
            .partition_row_groups
            .get(&partition)
            .cloned()
            .unwrap_or_default();
        let rows = rows_in(&meta, &groups);
        if rows != Some(loc.expected_rows) {
            return Err(lost(format!(
                "{} holds {rows:?} rows of partition {partition}, the map wrote {}",
                path.display(),
                loc.expected_rows
            )));
        }
        return Ok(local(path, groups, &meta));
    }
    let path = Path::new(&loc.path);
    // Only what could be that attempt's spill file (`<job>/<map>-<attempt>.parquet`) is
    // opened; its token then shows whether it is.
    let name = crate::task::map_task::spill_file_name(loc.map_index, loc.attempt);
    let in_job_dir = path
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|d| d == job_id);
    if loc.host_id != host_id
        || !path.is_absolute()
        || path.file_name() != Some(name.as_ref())
        || !in_job_dir
    {
        return Ok(Source::Remote);
    }
    // Another worker's file on this host, if it is there and it is that output: anything
    // else (another host, another file at the same path) goes over the network.
    let Ok(meta) = load_meta(job_id, path) else {
        return Ok(Source::Remote);
    };
    if token_of(&meta) != Some(loc.output_token) {
        return Ok(Source::Remote);
    }
    let Some(groups) = indexed_row_groups(&meta, partition) else {
        return Ok(Source::Remote);
    };
    if rows_in(&meta, &groups) != Some(loc.expected_rows) {
        return Ok(Source::Remote);
    }
    Ok(local(path.to_path_buf(), groups, &meta))
}

/// Sends partition `partition` of every output in `locs` into `tx`, in order; returns how
/// they were read.
pub async fn gather(
    security: &Security,
    registry: &ShuffleRegistry,
    host_id: &str,
    job_id: &str,
    partition: u32,
    locs: &[pb::MapOutputLocation],
    tx: mpsc::Sender<Fetched>,
) -> TaskResult<FetchCounts> {
    let locs: Vec<pb::MapOutputLocation> = locs
        .iter()
        .filter(|l| l.expected_rows > 0)
        .cloned()
        .collect();
    let sources = {
        let (registry, job_id, locs) = (registry.clone(), job_id.to_string(), locs.clone());
        let host_id = host_id.to_string();
        tokio::task::spawn_blocking(move || {
            locs.iter()
                .map(|l| locate(&registry, &host_id, &job_id, partition, l))
                .collect::<TaskResult<Vec<Source>>>()
        })
        .await
        .map_err(|e| TaskError::Assignment(format!("locating map outputs panicked: {e}")))??
    };
    let workers: Vec<Option<&str>> = sources
        .iter()
        .zip(&locs)
        .map(|(s, l)| match s {
            Source::Local(_) => None,
            Source::Remote => Some(l.worker_id.as_str()),
        })
        .collect();
    let windows = plan_windows(&workers, MAX_STREAMS);
    let mut counts = FetchCounts::default();
    let mut sources: VecDeque<Source> = sources.into();
    for window in windows {
        let mut tasks = JoinSet::new();
        let mut queues = Vec::with_capacity(window.streams.len());
        let mut stream_of = HashMap::new();
        for (s, positions) in window.streams.iter().enumerate() {
            let (stx, srx) = mpsc::channel(STREAM_QUEUE);
            let outputs = positions.iter().map(|&p| locs[p].clone()).collect();
            tasks.spawn(fetch_stream(
                security.clone(),
                job_id.to_string(),
                partition,
                outputs,
                stx,
            ));
            queues.push(srx);
            stream_of.extend(positions.iter().map(|&p| (p, s)));
            counts.streams += 1;
        }
        for position in window.range {
            let loc = &locs[position];
            let Some(source) = sources.pop_front() else {
                break;
            };
            let queue = match (source, stream_of.get(&position)) {
                (Source::Local(f), _) => {
                    counts.local_outputs += 1;
                    if tx.send(f).await.is_err() {
                        return Ok(counts); // the reduce stopped (it failed); its error wins
                    }
                    continue;
                }
                (Source::Remote, Some(&s)) => &mut queues[s],
                (Source::Remote, None) => {
                    return Err(fetch_failed(loc, "no stream planned".into(), false));
                }
            };
            counts.remote_outputs += 1;
            loop {
                match queue.recv().await {
                    Some(Piece::Group(f)) => {
                        if tx.send(f).await.is_err() {
                            return Ok(counts);
                        }
                    }
                    Some(Piece::End(m)) if m == loc.map_index => break,
                    Some(Piece::End(m)) => {
                        return Err(fetch_failed(
                            loc,
                            format!("map {m} ended out of turn"),
                            false,
                        ));
                    }
                    Some(Piece::Failed(e)) => return Err(e),
                    None => {
                        return Err(fetch_failed(loc, "the fetch stopped".into(), false));
                    }
                }
            }
        }
        // Streams of this window have sent everything; dropping `tasks` ends none early.
        drop(tasks);
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn few_workers_get_one_stream_each_in_one_window() {
        let w = [Some("a"), None, Some("b"), Some("a"), None, Some("b")];
        assert_eq!(
            plan_windows(&w, 5),
            vec![Window {
                range: 0..6,
                streams: vec![vec![0, 3], vec![2, 5]],
            }]
        );
    }

    #[test]
    fn more_workers_than_streams_are_taken_in_windows() {
        let w = [Some("a"), Some("b"), Some("c"), None, Some("a"), Some("d")];
        let windows = plan_windows(&w, 2);
        assert_eq!(
            windows,
            vec![
                Window {
                    range: 0..2,
                    streams: vec![vec![0], vec![1]],
                },
                Window {
                    range: 2..5,
                    streams: vec![vec![2], vec![4]],
                },
                Window {
                    range: 5..6,
                    streams: vec![vec![5]],
                },
            ]
        );
        // Every output is in exactly one window, in order.
        let all: Vec<usize> = windows.iter().flat_map(|w| w.range.clone()).collect();
        assert_eq!(all, (0..6).collect::<Vec<_>>());
    }

    #[test]
    fn local_outputs_need_no_stream() {
        assert_eq!(
            plan_windows(&[None, None], 1),
            vec![Window {
                range: 0..2,
                streams: vec![],
            }]
        );
        assert!(plan_windows(&[], 3).is_empty());
    }
}
