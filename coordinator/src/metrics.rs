//! The coordinator's Prometheus metrics, rendered from a [`Snapshot`] taken under the
//! scheduler's lock.
//!
//! Taking the snapshot costs the same after 10,000 jobs as after one: ended jobs are folded
//! into [`JobTotals`] once, when they end, and only the jobs still being scheduled are
//! visited. The figures are cluster-wide counts and sums, never a job's name or data, which
//! is why the endpoint needs no token (scrapers rarely can present one).

use std::collections::BTreeMap;
use std::fmt::Write as _;

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

/// The Prometheus text format of `s`.
pub fn render(s: &Snapshot) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP sluice_jobs Jobs known to the coordinator, by state.\n# TYPE sluice_jobs gauge"
    );
    for (state, n) in &s.jobs.by_state {
        let _ = writeln!(out, "sluice_jobs{{state=\"{state}\"}} {n}");
    }
    for (name, help, kind, v) in [
        ("sluice_workers", "Registered workers.", "gauge", s.workers),
        (
            "sluice_worker_slots",
            "Task slots of registered workers.",
            "gauge",
            s.slots,
        ),
        (
            "sluice_tasks_running",
            "Task attempts running on workers.",
            "gauge",
            s.running,
        ),
        (
            "sluice_rows_in_total",
            "Rows read by map tasks.",
            "counter",
            s.jobs.rows_in,
        ),
        (
            "sluice_rows_out_total",
            "Rows in committed part files.",
            "counter",
            s.jobs.rows_out,
        ),
        (
            "sluice_shuffle_bytes_total",
            "Bytes written to shuffle files.",
            "counter",
            s.jobs.shuffle_bytes,
        ),
        (
            "sluice_failed_attempts_total",
            "Task attempts that failed.",
            "counter",
            s.jobs.failed_attempts,
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP sluice_assignments_total Task attempts handed to workers, by the reply that \
         carried them.\n# TYPE sluice_assignments_total counter\n\
         sluice_assignments_total{{via=\"heartbeat\"}} {}\n\
         sluice_assignments_total{{via=\"report\"}} {}",
        s.assigned_by_heartbeat, s.assigned_by_report
    );
    out
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
        let text = render(&Snapshot {
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
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
    }
}
