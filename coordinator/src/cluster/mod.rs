//! Cluster membership.

pub mod queues;
pub mod workers;
