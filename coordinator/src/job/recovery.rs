//! A job rebuilt after a coordinator restart, and map outputs claimed back by the workers
//! that still hold them.

use std::time::Duration;

use sluice_common::ids::WorkerId;

use super::report::{AttemptRef, Outcome, Resumed};
use super::schedule::Policy;
use super::tasks::{TaskKind, TaskStatus};
use super::{Epoch, Job};

impl Job {
    /// Rebuilds a job the coordinator was running when it stopped, from what the job store
    /// kept: committed partitions stay committed, attempt numbers continue where they
    /// stopped, and finished map outputs wait up to `grace` after `now` for their workers to
    /// re-register and claim them before they are re-run.
    pub fn resume(now: Epoch, stored: Resumed, policy: Policy, grace: Duration) -> Self {
        let mut job = Job::new(
            stored.id,
            stored.spec,
            stored.description,
            stored.input_plan,
            stored.splits,
            now,
        )
        .with_policy(policy);
        job.submitted_ms = stored.submitted_ms;
        job.claimable = vec![None; job.maps.len()];
        job.hold_claimable_until = Some(now.at + grace);
        let before = WorkerId::new("(before the restart)");
        for a in stored.attempts {
            let Some(task) = job.tasks_mut(a.kind).get_mut(a.index as usize) else {
                continue;
            };
            task.attempts = task.attempts.max(a.attempt + 1);
            // Failures before the restart are not counted again: the store does not keep
            // their reasons, and fetch failures or refused commits are not the task's fault.
            match (a.output, a.kind) {
                (Some(Outcome::MapDone(done)), TaskKind::Map) => {
                    // Counted even if the map runs again: its bad records and their
                    // quarantine file are the same, and the job may need no re-run at all
                    // (every partition committed but for `_SUCCESS`).
                    job.bad.record(a.index, &done);
                    job.claimable[a.index as usize] = Some((a.attempt, done));
                }
                (Some(Outcome::ReduceDone(done)), TaskKind::Reduce) => {
                    task.status = TaskStatus::Done {
                        attempt: a.attempt,
                        worker: before.clone(),
                        took: Duration::ZERO,
                    };
                    job.commits.record_done(a.index, done);
                }
                _ => {}
            }
        }
        tracing::info!(
            job = %job.id,
            claimable = job.claimable.iter().flatten().count(),
            committed = job.reduces.iter().filter(|t| t.is_done()).count(),
            "job resumed after a coordinator restart"
        );
        job
    }

    /// Journals that the job was resumed, at `now` (once its journal is attached).
    pub fn record_resumed(&self, now: std::time::Instant) {
        let detail = format!(
            "after a coordinator restart: {} map output(s) to claim back, {} partition(s) committed",
            self.claimable.iter().flatten().count(),
            self.reduces.iter().filter(|t| t.is_done()).count()
        );
        self.job_event(now, super::events::EventKind::Resumed, detail);
    }

    /// A worker re-registered holding `held` map outputs: those of this job finished before
    /// a coordinator restart are done again, at the worker's new id and address. Returns how
    /// many it claimed.
    pub fn claim(&mut self, worker: &WorkerId, addr: &str, held: &[AttemptRef]) -> usize {
        let mut claimed = 0;
        for h in held
            .iter()
            .filter(|h| h.kind == TaskKind::Map && h.job == self.id)
        {
            let i = h.index as usize;
            let Some(Some((attempt, _))) = self.claimable.get(i) else {
                continue;
            };
            if *attempt != h.attempt || self.maps[i].status != TaskStatus::Pending {
                continue;
            }
            let Some((attempt, done)) = self.claimable[i].take() else {
                continue;
            };
            self.maps[i].status = TaskStatus::Done {
                attempt,
                worker: worker.clone(),
                took: Duration::ZERO,
            };
            self.lineage.record(h.index, attempt, worker, addr, done);
            claimed += 1;
        }
        if claimed > 0 {
            tracing::info!(job = %self.id, %worker, claimed, "map outputs claimed after the restart");
        }
        claimed
    }
}
