//! A worker's Prometheus metrics, served on its HTTP port (`sluice worker --http`).
//!
//! One set per process ([`METRICS`]), as client libraries keep a default registry: the
//! code that measures (a task's end, a fetch stream, a CPU-pool queue) reaches it without
//! the registry being passed down. In local mode the workers of one process add up.
//! Labels are bounded: task kind, outcome, byte source.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use sluice_common::metrics::duration_histogram;

/// Label sets of one and two bounded labels.
type OneLabel = [(&'static str, &'static str); 1];
type TwoLabels = [(&'static str, &'static str); 2];

/// The process's worker metrics.
pub static METRICS: LazyLock<WorkerMetrics> = LazyLock::new(WorkerMetrics::new);

/// A worker's metrics.
#[derive(Debug)]
pub struct WorkerMetrics {
    registry: Registry,
    task_duration: Family<OneLabel, Histogram>,
    attempts: Family<TwoLabels, Counter>,
    fetch_duration: Histogram,
    /// Bytes of input splits read by map attempts.
    pub input_bytes: Counter,
    /// Bytes map attempts wrote to shuffle files.
    pub spilled_bytes: Counter,
    /// Records map attempts set aside as bad.
    pub rejected_records: Counter,
    shuffle_bytes_read: Family<OneLabel, Counter>,
    shuffle_outputs_read: Family<OneLabel, Counter>,
    /// Task slots.
    pub slots: Gauge,
    /// Slots running an attempt.
    pub slots_busy: Gauge,
    /// Task bodies waiting for a CPU-pool thread.
    pub cpu_queue: Gauge,
    /// Memory the running attempts may use (each its slot's share).
    pub memory_reserved: Gauge,
}

impl WorkerMetrics {
    fn new() -> Self {
        let mut r = Registry::default();
        let hist = duration_histogram as fn() -> Histogram;
        let task_duration = Family::<OneLabel, Histogram>::new_with_constructor(hist);
        r.register(
            "sluice_task_duration_seconds",
            "Task attempts run on this worker, by kind, from start to report.",
            task_duration.clone(),
        );
        let attempts = Family::<TwoLabels, Counter>::default();
        r.register(
            "sluice_attempts",
            "Task attempts ended on this worker, by kind and outcome (succeeded, failed, \
             cancelled).",
            attempts.clone(),
        );
        let fetch_duration = duration_histogram();
        r.register(
            "sluice_fetch_duration_seconds",
            "Shuffle fetch streams (all the map outputs one worker holds), from the request \
             to the last byte.",
            fetch_duration.clone(),
        );
        let input_bytes = Counter::default();
        r.register(
            "sluice_input_bytes",
            "Bytes of input splits read by map attempts.",
            input_bytes.clone(),
        );
        let spilled_bytes = Counter::default();
        r.register(
            "sluice_spilled_bytes",
            "Bytes map attempts wrote to shuffle files.",
            spilled_bytes.clone(),
        );
        let rejected_records = Counter::default();
        r.register(
            "sluice_rejected_records",
            "Records map attempts set aside as bad.",
            rejected_records.clone(),
        );
        let shuffle_bytes_read = Family::<OneLabel, Counter>::default();
        r.register(
            "sluice_shuffle_read_bytes",
            "Shuffle bytes reducers read, by source: local (from disk) or remote (fetched).",
            shuffle_bytes_read.clone(),
        );
        let shuffle_outputs_read = Family::<OneLabel, Counter>::default();
        r.register(
            "sluice_shuffle_read_outputs",
            "Map outputs reducers read, by source: local (from disk) or remote (fetched).",
            shuffle_outputs_read.clone(),
        );
        let gauge = |r: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            r.register(name, help, g.clone());
            g
        };
        let slots = gauge(&mut r, "sluice_worker_slots", "Task slots of this worker.");
        let slots_busy = gauge(&mut r, "sluice_slots_busy", "Slots running an attempt.");
        let cpu_queue = gauge(
            &mut r,
            "sluice_cpu_queue",
            "Task bodies waiting for a CPU-pool thread.",
        );
        let memory_reserved = gauge(
            &mut r,
            "sluice_memory_reserved_bytes",
            "Memory the running attempts may use (each its slot's share).",
        );
        WorkerMetrics {
            registry: r,
            task_duration,
            attempts,
            fetch_duration,
            input_bytes,
            spilled_bytes,
            rejected_records,
            shuffle_bytes_read,
            shuffle_outputs_read,
            slots,
            slots_busy,
            cpu_queue,
            memory_reserved,
        }
    }

    /// An attempt of `kind` ("map", "reduce") ended with `outcome` after `took`.
    pub fn attempt_ended(&self, kind: &'static str, outcome: &'static str, took: Duration) {
        self.task_duration
            .get_or_create(&[("kind", kind)])
            .observe(took.as_secs_f64());
        self.attempts
            .get_or_create(&[("kind", kind), ("outcome", outcome)])
            .inc();
    }

    /// A fetch stream ended after `took`.
    pub fn fetched(&self, took: Duration) {
        self.fetch_duration.observe(took.as_secs_f64());
    }

    /// A reducer read `bytes` of shuffle data from `source` ("local", "remote").
    pub fn shuffle_read(&self, source: &'static str, bytes: u64) {
        self.shuffle_bytes_read
            .get_or_create(&[("source", source)])
            .inc_by(bytes);
    }

    /// A reduce read `local` map outputs from disk and `remote` over the network.
    pub fn outputs_read(&self, local: u64, remote: u64) {
        for (source, n) in [("local", local), ("remote", remote)] {
            self.shuffle_outputs_read
                .get_or_create(&[("source", source)])
                .inc_by(n);
        }
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        sluice_common::metrics::encode(&self.registry)
    }
}
