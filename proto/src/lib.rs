//! # sluice-proto: the wire contract
//!
//! The generated tonic/prost code for `proto/sluice.proto` ([`pb`]) and the conversions
//! between wire messages and `sluice-common`'s domain types ([`convert`]). Nothing else
//! lives here.

#![warn(missing_docs)]

pub mod convert;

/// Generated protocol code (package `sluice.v1`).
#[allow(missing_docs, clippy::all)]
pub mod pb {
    tonic::include_proto!("sluice.v1");
}

/// Version of the worker–coordinator protocol, checked at registration.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest gRPC message either side accepts (task assignments and shuffle chunks).
pub const MAX_MESSAGE_BYTES: usize = 256 << 20;
