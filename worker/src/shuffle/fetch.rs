//! A reducer's side of the shuffle: fetch one partition of one map output.

use arrow::array::RecordBatch;

use arrow::ipc::reader::StreamReader;
use sluice_proto::pb;
use sluice_proto::transport::Security;
use tokio::sync::mpsc;
use tonic::{Code, Status};

use crate::error::{TaskError, TaskResult};

/// Decodes one IPC chunk into its batches.
pub fn decode_ipc(bytes: &[u8]) -> Result<Vec<RecordBatch>, String> {
    let reader = StreamReader::try_new(bytes, None).map_err(|e| e.to_string())?;
    reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())
}

/// Whether a failed call means the worker could not be reached (the machine is gone, or its
/// connection broke), rather than the worker answering that the output is missing or damaged.
/// The shuffle server answers with `NotFound` and `DataLoss` only; the other codes a server
/// sends on its own (refused token, bad request) are answers too. Every other code is one
/// tonic makes up for a transport failure: refused or reset connections, broken HTTP/2
/// streams, keep-alive timeouts.
pub fn unreachable(code: Code) -> bool {
    !matches!(
        code,
        Code::NotFound
            | Code::DataLoss
            | Code::InvalidArgument
            | Code::FailedPrecondition
            | Code::OutOfRange
            | Code::Unimplemented
            | Code::Unauthenticated
            | Code::PermissionDenied
    )
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
    let fail = |message: String, worker_unreachable: bool| TaskError::FetchFailed {
        map_index: loc.map_index,
        map_attempt: loc.attempt,
        worker_id: loc.worker_id.clone(),
        addr: loc.shuffle_addr.clone(),
        message,
        worker_unreachable,
    };
    let failed_call = |s: Status| fail(s.message().to_string(), unreachable(s.code()));
    // A channel that cannot even be built (a bad address, TLS settings) is this worker's
    // problem, not the other's: not "unreachable".
    let channel = security
        .channel(&loc.shuffle_addr)
        .map_err(|e| fail(format!("connect: {e}"), false))?;
    let mut client = security.shuffle_client(channel);
    let mut stream = client
        .fetch_partition(pb::FetchPartitionRequest {
            job_id: job_id.to_string(),
            map_index: loc.map_index,
            attempt: loc.attempt,
            partition,
        })
        .await
        .map_err(failed_call)?
        .into_inner();
    let mut rows = 0u64;
    while let Some(chunk) = stream.message().await.map_err(failed_call)? {
        rows += chunk.rows;
        if tx.send(chunk.ipc).await.is_err() {
            return Ok(rows); // the consumer stopped (it failed); its error wins
        }
    }
    if rows != loc.expected_rows {
        return Err(fail(
            format!(
                "received {rows} rows of partition {partition}, the map wrote {}",
                loc.expected_rows
            ),
            false,
        ));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_failures_are_unreachable_and_server_answers_are_not() {
        // What tonic reports for a refused connection, a reset stream, a keep-alive timeout.
        for code in [
            Code::Unavailable,
            Code::Unknown,
            Code::Internal,
            Code::Cancelled,
        ] {
            assert!(unreachable(code), "{code:?}");
        }
        // What a live shuffle server answers.
        for code in [Code::NotFound, Code::DataLoss, Code::Unauthenticated] {
            assert!(!unreachable(code), "{code:?}");
        }
    }
}
