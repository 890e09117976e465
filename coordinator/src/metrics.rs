//! The coordinator's Prometheus metrics: histograms of job durations and scheduling delays,
//! and cluster-wide figures rendered from a [`Snapshot`] taken under the scheduler's lock.
//!
//! Taking the snapshot costs the same after 10,000 jobs as after one: ended jobs are folded
//! into [`JobTotals`] once, when they end, and only the jobs still being scheduled are
//! visited. The figures are cluster-wide counts and sums, never a job's name or data, which
//! is why the endpoint needs no token (scrapers rarely can present one).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use sluice_proto::pb;

/// Jobs by state and their row, byte and attempt totals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobTotals {
    by_state: BTreeMap<&'static str, u64>,
    rows_in: u64,
    rows_out: u64,
    shuffle_bytes: u64,
    failed_attempts: u64,
}

impl Default for JobTotals {
    fn default() -> Self {
        JobTotals {
            // Every state is exported, at 0 before the first job reaches it.
            by_state: [
                "running",
                "succeeded",
                "failed",
                "cancelled",
                "commit-failed",
            ]
            .into_iter()
            .map(|s| (s, 0))
            .collect(),
            rows_in: 0,
            rows_out: 0,
            shuffle_bytes: 0,
            failed_attempts: 0,
        }
    }
}

impl JobTotals {
    /// Counts one job.
    pub fn add(&mut self, info: &pb::JobInfo) {
        *self
            .by_state
            .entry(crate::state_name(info.state))
            .or_default() += 1;
        self.rows_in += info.rows_in;
        self.rows_out += info.rows_out;
        self.shuffle_bytes += info.shuffle_bytes;
        self.failed_attempts += u64::from(info.failed_attempts);
    }

    /// These totals plus `other`'s.
    pub fn plus(&self, other: &JobTotals) -> JobTotals {
        let mut sum = self.clone();
        for (s, n) in &other.by_state {
            *sum.by_state.entry(s).or_default() += n;
        }
        sum.rows_in += other.rows_in;
        sum.rows_out += other.rows_out;
        sum.shuffle_bytes += other.shuffle_bytes;
        sum.failed_attempts += other.failed_attempts;
        sum
    }
}

/// What the metrics show, copied out under the lock and rendered after it is released.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Every job, ended and running.
    pub jobs: JobTotals,
    /// Registered workers.
    pub workers: u64,
    /// Their task slots.
    pub slots: u64,
    /// Attempts running on them.
    pub running: u64,
    /// Attempts handed out with heartbeat replies.
    pub assigned_by_heartbeat: u64,
    /// Attempts handed out with report replies.
    pub assigned_by_report: u64,
}

/// A label set of one bounded label.
type OneLabel = [(&'static str, &'static str); 1];

/// The coordinator's metrics: histograms observed as jobs are scheduled and end, and the
/// figures of a [`Snapshot`] taken at each scrape.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    snapshot: Arc<Mutex<Snapshot>>,
    job_duration: Family<OneLabel, Histogram>,
    scheduling_delay: Family<OneLabel, Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// The coordinator's metrics, all at zero.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let job_duration = Family::<OneLabel, Histogram>::new_with_constructor(
            sluice_common::metrics::duration_histogram as fn() -> Histogram,
        );
        registry.register(
            "sluice_job_duration_seconds",
            "Jobs from submission to their end, by how they ended.",
            job_duration.clone(),
        );
        let scheduling_delay = Family::<OneLabel, Histogram>::new_with_constructor(
            sluice_common::metrics::duration_histogram as fn() -> Histogram,
        );
        registry.register(
            "sluice_scheduling_delay_seconds",
            "First attempts of tasks, from when the task could run (a map: its job's \
             submission; a reduce: the end of its job's last map) to their assignment.",
            scheduling_delay.clone(),
        );
        let snapshot = Arc::new(Mutex::new(Snapshot::default()));
        registry.register_collector(Box::new(SnapshotCollector(snapshot.clone())));
        Metrics {
            registry,
            snapshot,
            job_duration,
            scheduling_delay,
        }
    }

    /// A job ended in `state` after `took`.
    pub fn job_ended(&self, state: &'static str, took: Duration) {
        self.job_duration
            .get_or_create(&[("state", state)])
            .observe(took.as_secs_f64());
    }

    /// A task of `kind` was assigned its first attempt after waiting `waited`.
    pub fn assigned(&self, kind: &'static str, waited: Duration) {
        self.scheduling_delay
            .get_or_create(&[("kind", kind)])
            .observe(waited.as_secs_f64());
    }

    /// The text exposition, with `s` as the scrape's snapshot.
    pub fn render(&self, s: Snapshot) -> String {
        if let Ok(mut held) = self.snapshot.lock() {
            *held = s;
        }
        sluice_common::metrics::encode(&self.registry)
    }
}

/// Encodes the [`Snapshot`] of the scrape.
#[derive(Debug)]
struct SnapshotCollector(Arc<Mutex<Snapshot>>);

fn gauge(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    v: u64,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

fn counter(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    v: u64,
) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let s = match self.0.lock() {
            Ok(s) => s.clone(),
            Err(_) => return Ok(()),
        };
        {
            let help = "Jobs known to the coordinator, by state.";
            let mut family = e.encode_descriptor("sluice_jobs", help, None, MetricType::Gauge)?;
            for (state, n) in &s.jobs.by_state {
                let g = ConstGauge::new(i64::try_from(*n).unwrap_or(i64::MAX));
                g.encode(family.encode_family(&[("state", *state)])?)?;
            }
        }
        gauge(&mut e, "sluice_workers", "Registered workers.", s.workers)?;
        gauge(
            &mut e,
            "sluice_worker_slots",
            "Task slots of registered workers.",
            s.slots,
        )?;
        gauge(
            &mut e,
            "sluice_tasks_running",
            "Task attempts running on workers.",
            s.running,
        )?;
        counter(
            &mut e,
            "sluice_rows_in",
            "Rows read by map tasks.",
            s.jobs.rows_in,
        )?;
        counter(
            &mut e,
            "sluice_rows_out",
            "Rows in committed part files.",
            s.jobs.rows_out,
        )?;
        counter(
            &mut e,
            "sluice_shuffle_bytes",
            "Bytes written to shuffle files.",
            s.jobs.shuffle_bytes,
        )?;
        counter(
            &mut e,
            "sluice_failed_attempts",
            "Task attempts that failed.",
            s.jobs.failed_attempts,
        )?;
        let help = "Task attempts handed to workers, by the reply that carried them.";
        let mut family =
            e.encode_descriptor("sluice_assignments", help, None, MetricType::Counter)?;
        for (via, n) in [
            ("heartbeat", s.assigned_by_heartbeat),
            ("report", s.assigned_by_report),
        ] {
            ConstCounter::new(n).encode(family.encode_family(&[("via", via)])?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(state: pb::JobState, rows_in: u64) -> pb::JobInfo {
        pb::JobInfo {
            state: state as i32,
            rows_in,
            failed_attempts: 1,
            ..Default::default()
        }
    }

    #[test]
    fn ended_and_running_jobs_add_up() {
        let mut ended = JobTotals::default();
        ended.add(&job(pb::JobState::Succeeded, 10));
        ended.add(&job(pb::JobState::Failed, 5));
        let mut running = JobTotals::default();
        running.add(&job(pb::JobState::Running, 7));
        let metrics = Metrics::new();
        metrics.job_ended("succeeded", Duration::from_millis(1500));
        let text = metrics.render(Snapshot {
            jobs: ended.plus(&running),
            workers: 2,
            ..Default::default()
        });
        for line in [
            "sluice_jobs{state=\"succeeded\"} 1",
            "sluice_jobs{state=\"failed\"} 1",
            "sluice_jobs{state=\"running\"} 1",
            "sluice_jobs{state=\"cancelled\"} 0",
            "sluice_rows_in_total 22",
            "sluice_failed_attempts_total 3",
            "sluice_workers 2",
            "sluice_job_duration_seconds_count{state=\"succeeded\"} 1",
            "sluice_job_duration_seconds_bucket{le=\"1.28\",state=\"succeeded\"} 0",
            "sluice_job_duration_seconds_bucket{le=\"2.56\",state=\"succeeded\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
    }
}
