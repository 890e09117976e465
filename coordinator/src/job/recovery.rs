//! A job rebuilt after a coordinator restart, and map outputs claimed back by the workers
//! that still hold them.

use std::time::{Duration, Instant};

use sluice_common::ids::{JobId, WorkerId};
use sluice_common::spec::JobSpec;
use sluice_common::split::Split;
use sluice_proto::pb;
use sluice_sdk::JobDescription;

use super::Job;
use super::schedule::Policy;
use super::tasks::{TaskKind, TaskStatus};

impl Job {
    /// Rebuilds a job the coordinator was running when it stopped, from the job store:
    /// committed partitions stay committed, attempt numbers continue where they stopped,
    /// and finished map outputs wait up to `grace` after `now` for their workers to re-register and
    /// claim them before they are re-run.
    pub fn resume(
        now: Instant,
        stored: crate::store::ResumableJob,
        policy: Policy,
        grace: Duration,
    ) -> Result<Self, String> {
        use prost::Message;
        let spec = JobSpec::try_from(&stored.spec).map_err(|e| e.to_string())?;
        let description = JobDescription::decode(&stored.description)?;
        let splits = stored
            .splits
            .iter()
            .map(Split::try_from)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let mut job = Job::new(
            JobId::new(stored.info.job_id.clone()),
            spec,
            description,
            stored.schema_ipc,
            splits,
        )
        .with_policy(policy);
        job.submitted_ms = stored.info.submitted_ms;
        job.claimable = vec![None; job.maps.len()];
        job.hold_claimable_until = Some(now + grace);
        let before = WorkerId::new("(before the restart)");
        for a in &stored.attempts {
            let kind = TaskKind::of(a.is_map);
            let Some(task) = job.tasks_mut(kind).get_mut(a.index as usize) else {
                continue;
            };
            task.attempts = task.attempts.max(a.attempt + 1);
            // Failures before the restart are not counted again: the store does not keep
            // their reasons, and fetch failures or refused commits are not the task's fault.
            match (a.state.as_str(), kind) {
                ("done", TaskKind::Map) => {
                    let done =
                        pb::MapDone::decode(a.result.as_slice()).map_err(|e| e.to_string())?;
                    job.claimable[a.index as usize] = Some((a.attempt, done));
                }
                ("done", TaskKind::Reduce) => {
                    let done =
                        pb::ReduceDone::decode(a.result.as_slice()).map_err(|e| e.to_string())?;
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
        if let Ok(sluice_common::storage::Location::Local(out)) =
            sluice_common::storage::Location::parse(&job.spec.output)
        {
            // Reduces stage under `_temporary`, created at submit; a crash may have come
            // between a `_SUCCESS` that removed it and the journal hearing of it.
            let _ = std::fs::create_dir_all(out.join("_temporary"));
        }
        tracing::info!(
            job = %job.id,
            claimable = job.claimable.iter().flatten().count(),
            committed = job.reduces.iter().filter(|t| t.is_done()).count(),
            "job resumed after a coordinator restart"
        );
        Ok(job)
    }

    /// A worker re-registered holding `held` map outputs: those of this job finished before
    /// a coordinator restart are done again, at the worker's new id and address. Returns how
    /// many it claimed.
    pub fn claim(&mut self, worker: &WorkerId, addr: &str, held: &[pb::AttemptRef]) -> usize {
        let mut claimed = 0;
        for h in held
            .iter()
            .filter(|h| h.is_map && h.job_id == self.id.as_str())
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
            self.lineage.record(h.index, attempt, worker, addr, &done);
            claimed += 1;
        }
        if claimed > 0 {
            tracing::info!(job = %self.id, %worker, claimed, "map outputs claimed after the restart");
        }
        claimed
    }
}
