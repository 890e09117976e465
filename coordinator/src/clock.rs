//! The coordinator's only readers of the clocks: the service stamps each transition with
//! the moment it happens, and [`crate::job`] works with the times it is given.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::job::Epoch;

/// Milliseconds since the Unix epoch (0 on a clock set before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Epoch {
    /// This moment on both clocks.
    pub fn now() -> Self {
        Epoch {
            at: Instant::now(),
            unix_ms: now_ms(),
        }
    }
}
