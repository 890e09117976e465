//! What every process's `/metrics` shares: the exposition format, and the buckets of its
//! duration histograms.
//!
//! Metrics are kept with `prometheus-client` and exposed in the OpenMetrics text format,
//! which Prometheus scrapes natively. Labels are bounded sets (task kind, outcome, state,
//! source): never a job id, which would grow a series per job; a job's own figures belong in
//! the web UI.

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The `Content-Type` of a `/metrics` reply.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A histogram of durations in seconds, from 5 ms to about 23 hours (doubling): tasks take
/// milliseconds to hours, jobs seconds to hours.
pub fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 24))
}

/// `registry` in the text format.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail; a metric that cannot encode is left out.
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, registry) {
        tracing::warn!(error = %e, "a metric could not be encoded");
    }
    out
}
