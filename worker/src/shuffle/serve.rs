//! The worker's shuffle service: streams partition r of the map outputs a reducer asks for,
//! as the spill files hold them (footer, then the row groups' bytes), without decoding.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use sluice_proto::pb;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{MapOutputId, ShuffleRegistry, row_group_range};

/// Largest piece of a row group sent in one message.
pub const PIECE_BYTES: u64 = 1 << 20;

/// Implements `sluice.v1.Shuffle` over a [`ShuffleRegistry`].
pub struct ShuffleService {
    registry: ShuffleRegistry,
    /// Where attempt logs are (`crate::logs`).
    logs: std::path::PathBuf,
    /// One permit per fetch being served: each holds a blocking thread reading files, so
    /// fetches past [`MAX_SERVING`] wait for a permit instead of taking more threads.
    serving: Arc<tokio::sync::Semaphore>,
}

/// Fetches served at once by one worker; more wait their turn.
pub const MAX_SERVING: usize = 64;

impl ShuffleService {
    /// A service serving the outputs in `registry` and the attempt logs under `logs`.
    pub fn new(registry: ShuffleRegistry, logs: std::path::PathBuf) -> Self {
        ShuffleService {
            registry,
            logs,
            serving: Arc::new(tokio::sync::Semaphore::new(MAX_SERVING)),
        }
    }
}

/// A Parquet file's footer: the metadata bytes and the decoded metadata.
pub struct Footer {
    /// The encoded metadata (without the trailing length and magic).
    pub bytes: Vec<u8>,
    /// The decoded metadata.
    pub meta: ParquetMetaData,
}

/// Reads the footer of the Parquet file `f` of length `len`.
pub fn read_footer(f: &File, len: u64, path: &Path) -> Result<Footer, String> {
    let bad = |why: &str| format!("{}: {why}", path.display());
    if len < 12 {
        return Err(bad("too short for a Parquet file"));
    }
    let mut tail = [0u8; 8];
    f.read_exact_at(&mut tail, len - 8)
        .map_err(|e| bad(&e.to_string()))?;
    if &tail[4..] != b"PAR1" {
        return Err(bad("no Parquet magic at the end"));
    }
    let meta_len = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
    if meta_len + 12 > len {
        return Err(bad("footer longer than the file"));
    }
    let mut bytes = vec![0u8; meta_len as usize];
    f.read_exact_at(&mut bytes, len - 8 - meta_len)
        .map_err(|e| bad(&e.to_string()))?;
    let meta = ParquetMetaDataReader::decode_metadata(&bytes).map_err(|e| bad(&e.to_string()))?;
    Ok(Footer { bytes, meta })
}

type Sender = mpsc::Sender<Result<pb::OutputChunk, Status>>;

/// Sends one output's header and row groups; `Ok(false)` when the reducer went away.
fn send_output(
    registry: &ShuffleRegistry,
    id: &MapOutputId,
    partition: u32,
    tx: &Sender,
) -> Result<bool, Status> {
    let file = registry.get(id).ok_or_else(|| {
        Status::not_found(format!(
            "no output of job {} map {} attempt {} on this worker",
            id.job_id, id.map_index, id.attempt
        ))
    })?;
    let groups = file
        .partition_row_groups
        .get(&partition)
        .cloned()
        .unwrap_or_default();
    let (Some(path), false) = (file.path, groups.is_empty()) else {
        // Nothing for this partition: a header without row groups.
        let header = pb::OutputChunk {
            map_index: id.map_index,
            ..Default::default()
        };
        return Ok(tx.blocking_send(Ok(header)).is_ok());
    };
    // A read failure is DataLoss, not Internal: tonic reports broken connections as Internal,
    // and the reducer must tell a damaged output on a live worker from a dead worker.
    let lost = |e: String| Status::data_loss(format!("map {}: {e}", id.map_index));
    let f = File::open(&path).map_err(|e| lost(format!("{}: {e}", path.display())))?;
    let len = f
        .metadata()
        .map_err(|e| lost(format!("{}: {e}", path.display())))?
        .len();
    let footer = read_footer(&f, len, &path).map_err(lost)?;
    let mut ranges = Vec::with_capacity(groups.len());
    for &g in &groups {
        let group = footer
            .meta
            .row_groups()
            .get(g)
            .ok_or_else(|| lost(format!("{} has no row group {g}", path.display())))?;
        ranges.push(row_group_range(group));
    }
    let header = pb::OutputChunk {
        map_index: id.map_index,
        footer: footer.bytes,
        file_len: len,
        row_groups: groups.iter().map(|&g| g as u32).collect(),
        ..Default::default()
    };
    if tx.blocking_send(Ok(header)).is_err() {
        return Ok(false);
    }
    for (start, length) in ranges {
        let mut offset = start;
        while offset < start + length {
            let n = PIECE_BYTES.min(start + length - offset);
            let mut data = vec![0u8; n as usize];
            f.read_exact_at(&mut data, offset)
                .map_err(|e| lost(format!("{} at offset {offset}: {e}", path.display())))?;
            let piece = pb::OutputChunk {
                map_index: id.map_index,
                offset,
                data,
                ..Default::default()
            };
            if tx.blocking_send(Ok(piece)).is_err() {
                return Ok(false);
            }
            offset += n;
        }
    }
    Ok(true)
}

type ChunkStream = Pin<Box<dyn Stream<Item = Result<pb::OutputChunk, Status>> + Send>>;

#[tonic::async_trait]
impl pb::shuffle_server::Shuffle for ShuffleService {
    type FetchOutputsStream = ChunkStream;

    async fn attempt_log(
        &self,
        request: Request<pb::AttemptLogRequest>,
    ) -> Result<Response<pb::AttemptLogResponse>, Status> {
        let req = request.into_inner();
        let logs = self.logs.clone();
        let read = tokio::task::spawn_blocking(move || {
            crate::logs::files::read(
                &logs,
                &req.job_id,
                &req.task,
                req.attempt,
                req.offset,
                if req.max_bytes == 0 {
                    crate::logs::files::MAX_READ_BYTES
                } else {
                    req.max_bytes
                },
            )
        })
        .await
        .map_err(|e| Status::internal(format!("reading an attempt log: {e}")))?;
        use crate::logs::files::LogError;
        match read {
            Ok(piece) => Ok(Response::new(pb::AttemptLogResponse {
                data: piece.data,
                next_offset: piece.next_offset,
                size: piece.size,
                worker_id: String::new(),
            })),
            Err(e @ LogError::NotFound { .. }) => Err(Status::not_found(e.to_string())),
            Err(e @ LogError::BadName { .. }) => Err(Status::invalid_argument(e.to_string())),
            Err(e @ LogError::Io { .. }) => Err(Status::internal(e.to_string())),
        }
    }

    async fn fetch_outputs(
        &self,
        request: Request<pb::FetchOutputsRequest>,
    ) -> Result<Response<Self::FetchOutputsStream>, Status> {
        let req = request.into_inner();
        let (tx, rx) = mpsc::channel(4);
        let registry = self.registry.clone();
        let serving = self.serving.clone();
        // The reply (the stream) goes out at once; the reading waits for a permit, so a busy
        // worker serves late instead of failing the request.
        tokio::spawn(async move {
            let Ok(permit) = serving.acquire_owned().await else {
                return;
            };
            let served = tokio::task::spawn_blocking(move || {
                let _permit = permit;
                for r in &req.outputs {
                    let id = MapOutputId {
                        job_id: req.job_id.clone(),
                        map_index: r.map_index,
                        attempt: r.attempt,
                    };
                    // A panic (say, in the footer decoder on a damaged file) must reach the
                    // reducer as an error: a stream that merely ends would look complete.
                    let sent = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        send_output(&registry, &id, req.partition, &tx)
                    }))
                    .unwrap_or_else(|_| {
                        Err(Status::data_loss(format!(
                            "serving map {} panicked",
                            id.map_index
                        )))
                    });
                    match sent {
                        Ok(true) => {}
                        Ok(false) => return, // the reducer went away
                        Err(status) => {
                            tracing::warn!(error = %status.message(), "serving a map output failed");
                            let _ = tx.blocking_send(Err(status));
                            return;
                        }
                    }
                }
            });
            let _ = served.await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
