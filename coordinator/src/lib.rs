//! # sluice-coordinator: plans jobs, schedules tasks, decides commits
//!
//! # Layout, in the order a job meets it
//! - [`plan`][plan]: expand inputs, check them, cut splits ([`plan::split`]).
//! - [`service`][service]: the gRPC service; workers pull tasks with their heartbeats.
//! - [`job`][job]: one job's state machine, its [`job::lineage`] (where each map output lives)
//!   and [`job::commit`] (one committer per partition, `_SUCCESS`).
//! - [`cluster::workers`][cluster::workers]: membership.

#![warn(missing_docs)]

pub mod cluster;
pub mod error;
pub mod job;
pub mod plan;
pub mod service;

use std::future::Future;

use sluice_proto::MAX_MESSAGE_BYTES;
use sluice_proto::pb::coordinator_server::CoordinatorServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;

pub use service::CoordinatorService;

/// Serves the coordinator on `listener` until `shutdown` resolves.
pub async fn run_coordinator(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let service = CoordinatorService::default();
    Server::builder()
        .add_service(
            CoordinatorServer::new(service)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
}
