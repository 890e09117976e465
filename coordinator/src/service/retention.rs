//! Retention: ended jobs older than the coordinator's `--retention` leave its history and
//! the job store (their events, attempts and counters with them), once an hour.
//!
//! A run key is known only while its job is kept: a key whose job was pruned runs again.

use std::time::Duration;

use sluice_proto::pb;

use super::CoordinatorService;
use crate::store::Event;

/// How often the coordinator looks for jobs past the retention.
const EVERY: Duration = Duration::from_secs(3600);

/// The jobs of `history` that ended before `now_ms - keep`.
pub fn expired<'a>(
    history: impl Iterator<Item = &'a pb::JobInfo>,
    now_ms: u64,
    keep: Duration,
) -> Vec<String> {
    let keep_ms = u64::try_from(keep.as_millis()).unwrap_or(u64::MAX);
    let before = now_ms.saturating_sub(keep_ms);
    history
        .filter(|j| j.finished_ms > 0 && j.finished_ms < before)
        .map(|j| j.job_id.clone())
        .collect()
}

impl CoordinatorService {
    /// Removes the jobs past `keep` now and every hour after.
    pub fn spawn_retention(&self, keep: Duration) {
        let service = self.clone();
        tokio::spawn(async move {
            loop {
                service.prune(keep);
                tokio::time::sleep(EVERY).await;
            }
        });
    }

    /// Removes the ended jobs older than `keep` from the history and the store; how many.
    pub fn prune(&self, keep: Duration) -> usize {
        let mut state = self.lock();
        let gone = expired(state.history.values(), crate::clock::now_ms(), keep);
        if gone.is_empty() {
            return 0;
        }
        for id in &gone {
            state.history.remove(id);
        }
        tracing::info!(
            jobs = gone.len(),
            ?keep,
            "jobs past the retention removed from the history"
        );
        let n = gone.len();
        self.journal.send(Event::Prune(gone));
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_jobs_that_ended_before_the_retention_go() {
        let job = |id: &str, finished_ms| pb::JobInfo {
            job_id: id.into(),
            finished_ms,
            ..Default::default()
        };
        let day = Duration::from_secs(86_400);
        let now = 10 * 86_400_000;
        let jobs = [
            job("old", now - 2 * 86_400_000),
            job("fresh", now - 1000),
            job("running", 0),
            job("edge", now - 86_400_000),
        ];
        assert_eq!(expired(jobs.iter(), now, day), ["old"]);
        assert!(
            expired(jobs.iter(), 5, day).is_empty(),
            "a clock near 0 keeps all"
        );
    }
}
