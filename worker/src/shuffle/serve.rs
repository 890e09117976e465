//! The worker's shuffle service: streams one partition of one map output as Arrow IPC.

use std::fs::File;
use std::pin::Pin;

use arrow::array::RecordBatch;
use arrow::ipc::writer::StreamWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sluice_proto::pb;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{MapOutputFile, MapOutputId, ShuffleRegistry};

/// Rows per IPC chunk: keeps every gRPC message far below the message size limit.
const CHUNK_ROWS: usize = 16 * 1024;

/// Implements `sluice.v1.Shuffle` over a [`ShuffleRegistry`].
pub struct ShuffleService {
    registry: ShuffleRegistry,
}

impl ShuffleService {
    /// A service serving the outputs in `registry`.
    pub fn new(registry: ShuffleRegistry) -> Self {
        ShuffleService { registry }
    }
}

/// Encodes one batch as a self-contained IPC stream.
pub fn encode_ipc(batch: &RecordBatch) -> Result<Vec<u8>, String> {
    let mut buf = Vec::with_capacity(batch.get_array_memory_size() / 2 + 256);
    let mut w = StreamWriter::try_new(&mut buf, &batch.schema()).map_err(|e| e.to_string())?;
    w.write(batch).map_err(|e| e.to_string())?;
    w.finish().map_err(|e| e.to_string())?;
    drop(w);
    Ok(buf)
}

/// Reads the partition's row groups and sends them as IPC chunks; runs on a blocking thread.
fn stream_partition(
    file: MapOutputFile,
    partition: u32,
    tx: mpsc::Sender<Result<pb::FetchChunk, Status>>,
) -> Result<(), String> {
    let (Some(path), Some(groups)) = (file.path, file.partition_row_groups.get(&partition)) else {
        return Ok(());
    };
    let f = File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(f)
        .and_then(|b| {
            b.with_row_groups(groups.clone())
                .with_batch_size(CHUNK_ROWS)
                .build()
        })
        .map_err(|e| format!("{}: {e}", path.display()))?;
    for batch in reader {
        let batch = batch.map_err(|e| format!("{}: {e}", path.display()))?;
        let ipc = encode_ipc(&batch)?;
        let rows = batch.num_rows() as u64;
        if tx.blocking_send(Ok(pb::FetchChunk { ipc, rows })).is_err() {
            return Ok(()); // the reducer went away
        }
    }
    Ok(())
}

type ChunkStream = Pin<Box<dyn Stream<Item = Result<pb::FetchChunk, Status>> + Send>>;

#[tonic::async_trait]
impl pb::shuffle_server::Shuffle for ShuffleService {
    type FetchPartitionStream = ChunkStream;

    async fn fetch_partition(
        &self,
        request: Request<pb::FetchPartitionRequest>,
    ) -> Result<Response<Self::FetchPartitionStream>, Status> {
        let req = request.into_inner();
        let id = MapOutputId {
            job_id: req.job_id,
            map_index: req.map_index,
            attempt: req.attempt,
        };
        let file = self.registry.get(&id).ok_or_else(|| {
            Status::not_found(format!(
                "no output of job {} map {} attempt {} on this worker",
                id.job_id, id.map_index, id.attempt
            ))
        })?;
        let (tx, rx) = mpsc::channel(4);
        let partition = req.partition;
        tokio::task::spawn_blocking(move || {
            // A panic (say, in the Parquet reader on a damaged file) must reach the reducer as
            // an error: a stream that merely ends would look like a complete partition.
            let sent = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                stream_partition(file, partition, tx.clone())
            }))
            .unwrap_or_else(|_| Err("serving the partition panicked".to_string()));
            if let Err(e) = sent {
                tracing::warn!(error = %e, "serving shuffle partition failed");
                // DataLoss, not Internal: tonic reports broken connections as Internal, and
                // the reducer must tell a damaged output on a live worker from a dead worker.
                let _ = tx.blocking_send(Err(Status::data_loss(e)));
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
