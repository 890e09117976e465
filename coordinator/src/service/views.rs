//! What the web UI reads from the scheduler's state and the actions it takes: each read
//! takes the lock for a bounded piece (one job, the workers, the pipeline runs' ids), never
//! a scan of every job; history comes from the job store through [`Reader`].

use sluice_common::ids::{JobId, WorkerId};
use sluice_proto::pb;
use tonic::Request;

use super::CoordinatorService;
use crate::store::Reader;

impl CoordinatorService {
    /// The job store's reader.
    pub fn reader(&self) -> &Reader {
        &self.reader
    }

    /// Waits until what was journaled so far is in the store: a page read right after a
    /// job left the scheduler must not show it as it was before.
    pub fn sync_store(&self) {
        if let Err(e) = self.journal.sync() {
            tracing::warn!(error = %e, "reading history the store may not hold yet");
        }
    }

    /// A job the scheduler still holds (running, committing, commit-failed), as it is now.
    pub fn live_job(&self, id: &str) -> Option<pb::JobInfo> {
        let state = self.lock();
        state
            .jobs
            .get(&JobId::new(id))
            .map(|j| pb::JobInfo::from(&j.info()))
    }

    /// The registered workers with the shuffle bytes they hold (summed over the running
    /// jobs' lineage: ended jobs' outputs are dropped), then the ones lost lately (newest
    /// first).
    pub fn workers_view(&self) -> Vec<pb::WorkerInfo> {
        let state = self.lock();
        let mut held = std::collections::HashMap::new();
        for job in state.jobs.values() {
            job.add_shuffle_bytes_by_worker(&mut held);
        }
        let mut all = state.workers_info();
        for w in &mut all {
            w.shuffle_bytes = held
                .get(&WorkerId::new(w.worker_id.clone()))
                .copied()
                .unwrap_or(0);
        }
        all.extend(state.lost_workers.iter().rev().cloned());
        all
    }

    /// The latest `n` pipeline runs, newest first.
    pub fn recent_pipelines(&self, n: usize) -> Vec<pb::PipelineInfo> {
        let mut ids: Vec<String> = self.lock().pipelines.keys().cloned().collect();
        ids.sort_by(|a, b| sluice_common::ids::natural_cmp(b, a));
        ids.truncate(n);
        ids.iter()
            .filter_map(|id| self.pipeline_info(id).ok())
            .collect()
    }

    /// Queues by name: weight, job cap (0: none), running tasks (of running jobs, which
    /// the scheduler holds anyway).
    pub fn queues_view(&self) -> Vec<(String, u32, u32, usize)> {
        let state = self.lock();
        let mut running: std::collections::BTreeMap<String, usize> = Default::default();
        for job in state.jobs.values() {
            let q = if job.spec.queue.is_empty() {
                "default"
            } else {
                job.spec.queue.as_str()
            };
            *running.entry(q.to_string()).or_default() += job.running_attempts();
        }
        let mut out: Vec<(String, u32, u32, usize)> = state
            .queues
            .0
            .iter()
            .map(|(name, q)| {
                let r = running.get(name).copied().unwrap_or(0);
                (name.clone(), q.weight, q.max_running.unwrap_or(0), r)
            })
            .collect();
        if !out.iter().any(|q| q.0 == "default") {
            let r = running.get("default").copied().unwrap_or(0);
            out.insert(0, ("default".into(), 1, 0, r));
        }
        out
    }

    /// Asks worker `id` to drain: no new tasks, and it stops once its attempts end. False
    /// when no such worker is registered.
    pub fn drain_worker(&self, id: &str) -> bool {
        let mut state = self.lock();
        let Some(w) = state.workers.get_mut(&WorkerId::new(id)) else {
            return false;
        };
        w.drain_requested = true;
        w.draining = true;
        tracing::info!(worker = %id, "drain requested from the web UI");
        true
    }

    /// Cancels a job as `sluice cancel` does; whether it was running.
    pub async fn cancel_from_ui(&self, id: &str) -> Result<bool, tonic::Status> {
        let req = Request::new(pb::CancelJobRequest {
            job_id: id.to_string(),
        });
        let reply = pb::coordinator_server::Coordinator::cancel_job(self, req).await?;
        Ok(reply.into_inner().cancelled)
    }
}
