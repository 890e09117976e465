//! A reducer's side of the shuffle: fetch one partition of one map output.

use arrow::array::RecordBatch;

use arrow::ipc::reader::StreamReader;
use sluice_proto::pb;
use sluice_proto::transport::Security;
use tokio::sync::mpsc;

use crate::error::{TaskError, TaskResult};

/// Decodes one IPC chunk into its batches.
pub fn decode_ipc(bytes: &[u8]) -> Result<Vec<RecordBatch>, String> {
    let reader = StreamReader::try_new(bytes, None).map_err(|e| e.to_string())?;
    reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())
}

/// Streams partition `partition` of map output `loc` into `tx` as Arrow IPC chunks (decoded
/// by the consumer, on the CPU pool); returns the rows fetched. Any failure, a short stream
/// included, is a typed [`TaskError::FetchFailed`] naming the map output.
pub async fn fetch_partition(
    security: &Security,
    job_id: &str,
    loc: &pb::MapOutputLocation,
    partition: u32,
    tx: &mpsc::Sender<Vec<u8>>,
) -> TaskResult<u64> {
    let fail = |message: String| TaskError::FetchFailed {
        map_index: loc.map_index,
        map_attempt: loc.attempt,
        worker_id: loc.worker_id.clone(),
        addr: loc.shuffle_addr.clone(),
        message,
    };
    let channel = security
        .channel(&loc.shuffle_addr)
        .map_err(|e| fail(format!("connect: {e}")))?;
    let mut client = security.shuffle_client(channel);
    let mut stream = client
        .fetch_partition(pb::FetchPartitionRequest {
            job_id: job_id.to_string(),
            map_index: loc.map_index,
            attempt: loc.attempt,
            partition,
        })
        .await
        .map_err(|s| fail(s.message().to_string()))?
        .into_inner();
    let mut rows = 0u64;
    while let Some(chunk) = stream
        .message()
        .await
        .map_err(|s| fail(s.message().to_string()))?
    {
        rows += chunk.rows;
        if tx.send(chunk.ipc).await.is_err() {
            return Ok(rows); // the consumer stopped (it failed); its error wins
        }
    }
    if rows != loc.expected_rows {
        return Err(fail(format!(
            "received {rows} rows of partition {partition}, the map wrote {}",
            loc.expected_rows
        )));
    }
    Ok(rows)
}
