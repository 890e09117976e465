//! A reducer's network side of the shuffle: one `FetchOutputs` stream fetches partition r
//! of every map output one worker holds for it, row group by row group.

use std::sync::Arc;

use bytes::BytesMut;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::file::metadata::ParquetMetaDataReader;
use sluice_proto::pb;
use sluice_proto::transport::Security;
use tokio::sync::mpsc;
use tonic::{Code, Status};

use sluice_common::format::remote::SparseFile;

use super::read::{Fetched, fetch_failed};
use super::row_group_range;
use crate::error::TaskError;

/// What a stream hands the merge: row groups of an output, the end of an output, or why it
/// stopped.
pub enum Piece {
    /// A row group of the output being fetched.
    Group(Fetched),
    /// The output of this map index is complete.
    End(u32),
    /// The stream failed; the error names the output it was fetching.
    Failed(TaskError),
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

/// One output's progress in the stream.
struct Current {
    loc: pb::MapOutputLocation,
    meta: ArrowReaderMetadata,
    /// `(row group, offset, length)` still to receive, in order.
    groups: std::collections::VecDeque<(usize, u64, u64)>,
    file_len: u64,
    buf: BytesMut,
}

/// Checks a header against what the map reported and sets up the output's fetch.
fn start_output(loc: &pb::MapOutputLocation, header: pb::OutputChunk) -> Result<Current, String> {
    if header.map_index != loc.map_index {
        return Err(format!(
            "the worker sent map {} where map {} was due",
            header.map_index, loc.map_index
        ));
    }
    if header.row_groups.is_empty() {
        return Err(format!(
            "the worker holds no rows of this partition, the map wrote {}",
            loc.expected_rows
        ));
    }
    let meta = ParquetMetaDataReader::decode_metadata(&header.footer)
        .map_err(|e| format!("damaged footer: {e}"))?;
    let meta = ArrowReaderMetadata::try_new(Arc::new(meta), ArrowReaderOptions::new())
        .map_err(|e| format!("damaged footer: {e}"))?;
    let mut groups = std::collections::VecDeque::new();
    let mut rows = 0u64;
    for &g in &header.row_groups {
        let group = meta
            .metadata()
            .row_groups()
            .get(g as usize)
            .ok_or_else(|| format!("the footer has no row group {g}"))?;
        rows += group.num_rows().max(0) as u64;
        let (offset, len) = row_group_range(group);
        groups.push_back((g as usize, offset, len));
    }
    if rows != loc.expected_rows {
        return Err(format!(
            "the worker holds {rows} rows of this partition, the map wrote {}",
            loc.expected_rows
        ));
    }
    Ok(Current {
        loc: loc.clone(),
        meta,
        groups,
        file_len: header.file_len,
        buf: BytesMut::new(),
    })
}

/// Streams partition `partition` of `outputs` (all held by one worker, in consumption order)
/// into `tx` as [`Piece`]s; a failure is sent as [`Piece::Failed`] naming the output that
/// was being fetched, the first one not complete.
pub async fn fetch_stream(
    security: Security,
    job_id: String,
    partition: u32,
    outputs: Vec<pb::MapOutputLocation>,
    tx: mpsc::Sender<Piece>,
) {
    let started = std::time::Instant::now();
    let streamed = stream_outputs(&security, &job_id, partition, &outputs, &tx).await;
    crate::metrics::METRICS.fetched(started.elapsed());
    if let Err(e) = streamed {
        let _ = tx.send(Piece::Failed(e)).await;
    }
}

/// How long a fetch stream may go without a message before the fetch fails (as
/// unreachable: the coordinator then suspects the serving worker).
pub const FETCH_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

async fn stream_outputs(
    security: &Security,
    job_id: &str,
    partition: u32,
    outputs: &[pb::MapOutputLocation],
    tx: &mpsc::Sender<Piece>,
) -> Result<(), TaskError> {
    let Some(first) = outputs.first() else {
        return Ok(());
    };
    // Until an output completes, a failure is the next pending output's.
    let mut next = 0usize;
    let blame = |next: usize, message: String, worker_unreachable: bool| {
        fetch_failed(
            outputs.get(next).unwrap_or(first),
            message,
            worker_unreachable,
        )
    };
    let failed_call =
        |next: usize, s: Status| blame(next, s.message().to_string(), unreachable(s.code()));
    // A channel that cannot even be built (a bad address, TLS settings) is this worker's
    // problem, not the other's: not "unreachable".
    let channel = security
        .channel(&first.shuffle_addr)
        .map_err(|e| blame(0, format!("connect: {e}"), false))?;
    let mut client = security.shuffle_client(channel);
    let request = pb::FetchOutputsRequest {
        job_id: job_id.to_string(),
        partition,
        outputs: outputs
            .iter()
            .map(|l| pb::OutputRef {
                map_index: l.map_index,
                attempt: l.attempt,
            })
            .collect(),
    };
    let mut stream = client
        .fetch_outputs(request)
        .await
        .map_err(|s| failed_call(0, s))?
        .into_inner();
    let mut current: Option<Current> = None;
    loop {
        // A server that stops sending without closing the stream (a hung process, a
        // half-open connection) must not hold the reduce forever.
        let message = tokio::time::timeout(FETCH_IDLE_TIMEOUT, stream.message())
            .await
            .map_err(|_| {
                let secs = FETCH_IDLE_TIMEOUT.as_secs();
                blame(next, format!("no data for {secs} s: giving up"), true)
            })?;
        let Some(chunk) = message.map_err(|s| failed_call(next, s))? else {
            break;
        };
        let Some(cur) = &mut current else {
            let Some(loc) = outputs.get(next) else {
                return Err(blame(next, "the worker sent more than asked".into(), false));
            };
            current = Some(start_output(loc, chunk).map_err(|m| blame(next, m, false))?);
            continue;
        };
        let Some(&(group, offset, len)) = cur.groups.front() else {
            return Err(blame(next, "a row group nobody asked for".into(), false));
        };
        if chunk.offset != offset + cur.buf.len() as u64
            || (cur.buf.len() + chunk.data.len()) as u64 > len
        {
            return Err(blame(
                next,
                format!("bytes at offset {} out of order", chunk.offset),
                false,
            ));
        }
        if cur.buf.is_empty() {
            cur.buf.reserve(len as usize);
        }
        cur.buf.extend_from_slice(&chunk.data);
        crate::metrics::METRICS.shuffle_read("remote", chunk.data.len() as u64);
        if (cur.buf.len() as u64) < len {
            continue;
        }
        cur.groups.pop_front();
        let bytes = SparseFile::new(cur.file_len, vec![(offset, cur.buf.split().freeze())]);
        let fetched = Fetched::Remote {
            meta: cur.meta.clone(),
            row_group: group,
            bytes,
            loc: cur.loc.clone(),
        };
        if tx.send(Piece::Group(fetched)).await.is_err() {
            return Ok(()); // the merge stopped (the attempt failed); its error wins
        }
        if cur.groups.is_empty() {
            if tx.send(Piece::End(cur.loc.map_index)).await.is_err() {
                return Ok(());
            }
            current = None;
            next += 1;
        }
    }
    if current.is_some() || next < outputs.len() {
        return Err(blame(
            next,
            "the stream ended before the output was complete".into(),
            false,
        ));
    }
    Ok(())
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
