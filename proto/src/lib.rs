//! # sluice-proto: the wire contract
//!
//! The generated tonic/prost code for `proto/sluice.proto` ([`pb`]), the conversions
//! between wire messages and `sluice-common`'s domain types ([`convert`]), and how every
//! process connects and authenticates ([`transport`]: cluster token, TLS), which the
//! coordinator, the worker and the CLI share without importing each other.

#![warn(missing_docs)]

pub mod convert;
pub mod transport;

/// Generated protocol code (package `sluice.v1`).
#[allow(missing_docs, clippy::all)]
pub mod pb {
    tonic::include_proto!("sluice.v1");
}

/// Version of the worker–coordinator protocol, checked at registration.
pub const PROTOCOL_VERSION: u32 = 4;

/// Largest gRPC message either side accepts (task assignments and shuffle chunks).
pub const MAX_MESSAGE_BYTES: usize = 256 << 20;
