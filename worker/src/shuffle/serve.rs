//! The worker's shuffle service: streams partition r of the map outputs a reducer asks for,
//! as the spill files hold them (a footer of the partition's row groups, then their bytes),
//! without decoding the rows.

use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;

use parquet::arrow::ARROW_SCHEMA_META_KEY;
use parquet::file::metadata::{FileMetaData, ParquetMetaData, ParquetMetaDataWriter};
use sluice_proto::pb;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::footers::FOOTERS;
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

/// The footer a reducer needs for `groups` of the file `meta` describes: those row groups
/// alone (renumbered from 0, at their offsets in the file) and, of the key-value metadata,
/// the Arrow schema alone. The whole footer lists the row groups of every partition, so a
/// reducer decoding it for each output paid maps × reducers decodes of footers that grow
/// with the reducers; this one grows with the partition's row groups only. Returned without
/// the trailing length and magic, as a header carries it.
pub fn slim_footer(meta: &ParquetMetaData, groups: &[usize]) -> Result<Vec<u8>, String> {
    let file = meta.file_metadata();
    let schema_only = file.key_value_metadata().map(|kv| {
        kv.iter()
            .filter(|k| k.key == ARROW_SCHEMA_META_KEY)
            .cloned()
            .collect()
    });
    let rows = groups
        .iter()
        .map(|&g| {
            meta.row_groups()
                .get(g)
                .cloned()
                .ok_or_else(|| format!("no row group {g}"))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let slim = ParquetMetaData::new(
        FileMetaData::new(
            file.version(),
            rows.iter().map(|g| g.num_rows()).sum(),
            file.created_by().map(str::to_string),
            schema_only,
            file.schema_descr_ptr(),
            file.column_orders().cloned(),
        ),
        rows,
    );
    let mut out = Vec::new();
    ParquetMetaDataWriter::new(&mut out, &slim)
        .finish()
        .map_err(|e| format!("encoding a footer: {e}"))?;
    out.truncate(out.len().saturating_sub(8));
    Ok(out)
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
    let opened = FOOTERS
        .open(&id.job_id, &path)
        .map_err(|e| lost(format!("{}: {e}", path.display())))?;
    let (f, len) = (opened.file, opened.len);
    let meta = opened.meta.metadata();
    let mut ranges = Vec::with_capacity(groups.len());
    for &g in &groups {
        let group = meta
            .row_groups()
            .get(g)
            .ok_or_else(|| lost(format!("{} has no row group {g}", path.display())))?;
        ranges.push(row_group_range(group));
    }
    let footer = slim_footer(meta, &groups).map_err(lost)?;
    let header = pb::OutputChunk {
        map_index: id.map_index,
        footer,
        file_len: len,
        row_groups: (0..groups.len() as u32).collect(),
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    use parquet::arrow::ArrowWriter;
    use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
    use parquet::file::metadata::{KeyValue, ParquetMetaDataReader};
    use parquet::file::properties::WriterProperties;

    use super::*;

    /// The slim footer holds the asked row groups at their offsets, renumbered, and the
    /// Arrow schema with its field metadata, and nothing of the partition index.
    #[test]
    fn a_slim_footer_keeps_the_asked_row_groups_and_the_arrow_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.parquet");
        let field = Field::new("v", DataType::Int64, false)
            .with_metadata(HashMap::from([("k".to_string(), "x".to_string())]));
        let schema = Arc::new(Schema::new(vec![field]));
        let props = WriterProperties::builder()
            .set_key_value_metadata(Some(vec![KeyValue::new(
                "index".into(),
                "0:0;1:1".to_string(),
            )]))
            .build();
        let file = std::fs::File::create(&path).unwrap();
        let mut w = ArrowWriter::try_new(file, schema.clone(), Some(props)).unwrap();
        for g in 0..4i64 {
            let values = Int64Array::from_iter_values(g * 10..g * 10 + 5 + g);
            let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(values)]).unwrap();
            w.write(&batch).unwrap();
            w.flush().unwrap();
        }
        w.close().unwrap();
        let full =
            ArrowReaderMetadata::load(&std::fs::File::open(&path).unwrap(), Default::default())
                .unwrap();
        let bytes = slim_footer(full.metadata(), &[1, 3]).unwrap();
        let slim = ParquetMetaDataReader::decode_metadata(&bytes).unwrap();
        assert_eq!(slim.num_row_groups(), 2);
        for (s, g) in slim.row_groups().iter().zip([1, 3]) {
            let whole = &full.metadata().row_groups()[g];
            assert_eq!(s.num_rows(), whole.num_rows());
            assert_eq!(row_group_range(s), row_group_range(whole));
        }
        let keys: Vec<&str> = slim
            .file_metadata()
            .key_value_metadata()
            .unwrap()
            .iter()
            .map(|k| k.key.as_str())
            .collect();
        assert_eq!(keys, [ARROW_SCHEMA_META_KEY]);
        let arrow =
            ArrowReaderMetadata::try_new(Arc::new(slim), ArrowReaderOptions::new()).unwrap();
        assert_eq!(
            arrow
                .schema()
                .field(0)
                .metadata()
                .get("k")
                .map(String::as_str),
            Some("x")
        );
        assert!(slim_footer(full.metadata(), &[4]).is_err());
    }
}
