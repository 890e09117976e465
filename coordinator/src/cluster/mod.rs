//! Cluster membership.

pub mod workers;
