//! The calls clients make that change jobs: submitting one, and writing the `_SUCCESS` of
//! a commit-failed one again.

use sluice_common::ids::JobId;
use sluice_common::spec::JobSpec;
use sluice_proto::convert::encode_input_plan;
use sluice_proto::pb;
use tonic::Status;

use super::CoordinatorService;
use super::run_keys::{self, KeyDecision};
use crate::error::CoordinatorError;
use crate::job::{Epoch, Job};
use crate::plan::plan_job;
use crate::store::Event;

impl CoordinatorService {
    pub(super) async fn submit(
        &self,
        req: pb::SubmitJobRequest,
    ) -> Result<pb::SubmitJobResponse, Status> {
        let spec = req.spec.ok_or(CoordinatorError::Missing {
            request: "submission",
            missing: "a job spec",
        })?;
        let spec = JobSpec::try_from(&spec)?;
        if spec.plugin_sha256.is_empty() {
            return Err(CoordinatorError::Missing {
                request: "job spec",
                missing: "plugin_sha256 (upload the plugin first: sluice submit does)",
            }
            .into());
        }
        let queue = if spec.queue.is_empty() {
            crate::cluster::queues::DEFAULT_QUEUE
        } else {
            spec.queue.as_str()
        };
        self.lock()
            .queues
            .check(queue)
            .map_err(Status::invalid_argument)?;
        if let Some(reason) = self.lock().workers.refuse_task_memory(spec.task_memory) {
            return Err(CoordinatorError::NoRoom { reason }.into());
        }
        // Claimed until the job is in the table (or the submission fails): a second
        // submission of the key waits for it, then finds the job.
        let _claim = match self.claim_run_key(&spec.run_key, req.rerun).await {
            Ok(claim) => claim,
            Err(job_id) => {
                tracing::info!(run_key = %spec.run_key, job = %job_id, "run key already has a job; not submitted again");
                return Ok(pb::SubmitJobResponse {
                    job_id,
                    reused: true,
                });
            }
        };
        let stored = self.plugins.path(&spec.plugin_sha256)?;
        if !stored.is_file() {
            return Err(CoordinatorError::PluginNotStored {
                sha256: spec.plugin_sha256.clone(),
            }
            .into());
        }
        let planned = {
            // The coordinator loads its own stored copy; the spec keeps the client's name.
            let mut spec = spec.clone();
            let client_name =
                std::mem::replace(&mut spec.plugin, stored.to_string_lossy().into_owned());
            let spec_sha = spec.plugin_sha256.clone();
            let stored = stored.clone();
            let (parallelism, already) = {
                let state = self.lock();
                let already = state
                    .incremental
                    .get(&spec.incremental)
                    .cloned()
                    .unwrap_or_default();
                (state.workers.active_slots(), already)
            };
            let limits = self.limits;
            tokio::task::spawn_blocking(move || plan_job(&spec, parallelism, &limits, &already))
                .await
                .map_err(|e| CoordinatorError::Internal {
                    doing: "planning",
                    reason: e.to_string(),
                })?
                .map_err(|e| {
                    // Name the plugin as the user knows it, not by the store's file name.
                    let mut status = Status::from(CoordinatorError::from(e));
                    let stored = stored.to_string_lossy();
                    if status.message().contains(stored.as_ref()) {
                        let named = format!("{} (sha256 {})", client_name, spec_sha);
                        status = Status::new(
                            status.code(),
                            status.message().replace(stored.as_ref(), &named),
                        );
                    }
                    status
                })?
        };
        // Every later step (tasks, the journal, status) sees the number of reducers picked.
        let mut spec = spec;
        spec.reducers = planned.reducers;
        let input_plan = encode_input_plan(&planned.inputs).map_err(CoordinatorError::from)?;
        let id = {
            let mut state = self.lock();
            state.next_job += 1;
            let seq = state.next_job;
            let id = JobId::new(format!("job-{seq:04}"));
            tracing::info!(job = %id, name = %planned.description.name, maps = planned.splits.len(), reduces = spec.reducers, "job submitted");
            let wire_spec = pb::JobSpec::from(&spec);
            let job = Job::new(
                id.clone(),
                spec,
                planned.description,
                input_plan,
                planned.splits,
                Epoch::now(),
            )
            .with_journal(self.journal.clone())
            .with_policy(state.policy);
            self.journal.send(Event::JobSubmitted {
                seq,
                info: job.info(),
                spec: wire_spec,
                splits: job.splits().iter().map(pb::Split::from).collect(),
                input_plan: job.input_plan().to_vec(),
                description: job.description.encode(),
            });
            state.jobs.insert(id.clone(), job);
            id
        };
        // The id is durable before the client hears it, so a crash cannot hand it out twice.
        if let Err(e) = self.sync_journal().await {
            // Not acknowledged, so not run: the client is told it failed.
            if let Some(job) = self.lock().jobs.get_mut(&id) {
                job.fail(
                    std::time::Instant::now(),
                    format!(
                        "the job store did not record the submission: {}",
                        e.message()
                    ),
                );
            }
            self.lock().retire_ended();
            self.carry_out_effects().await;
            return Err(e);
        }
        self.lock().work_changed();
        Ok(pb::SubmitJobResponse {
            job_id: id.into_string(),
            reused: false,
        })
    }

    /// Claims run key `key` for a new job, or returns the earlier job to answer with
    /// (see [`run_keys`]); an empty key claims nothing.
    async fn claim_run_key(&self, key: &str, rerun: bool) -> Result<KeyClaim<'_>, String> {
        if key.is_empty() {
            return Ok(KeyClaim {
                service: self,
                key: None,
            });
        }
        loop {
            {
                let mut state = self.lock();
                let jobs = state.jobs_with_key(key);
                let claimed = state.claimed_keys.contains(key);
                match run_keys::decide(jobs.iter().map(|(id, s)| (id.as_str(), *s)), claimed, rerun)
                {
                    KeyDecision::Reuse(job) => return Err(job),
                    KeyDecision::Run => {
                        state.claimed_keys.insert(key.to_string());
                        return Ok(KeyClaim {
                            service: self,
                            key: Some(key.to_string()),
                        });
                    }
                    KeyDecision::Wait => {}
                }
            }
            // Planning takes a moment (it reads the inputs' sizes and headers).
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Writes `_SUCCESS` again for a commit-failed job and returns the job after the try:
    /// succeeded, or still commit-failed with the new error.
    pub(super) async fn commit_again(&self, job_id: &str) -> Result<pb::JobInfo, Status> {
        {
            let mut state = self.lock();
            if let Some(info) = state.history.get(job_id) {
                return Err(CoordinatorError::NothingToCommit {
                    job: job_id.to_string(),
                    state: crate::state_name(info.state),
                }
                .into());
            }
            let job = super::job_mut(&mut state, job_id)?;
            if !job.begin_success() {
                return Err(CoordinatorError::NothingToCommit {
                    job: job_id.to_string(),
                    state: crate::state_name(crate::wire::state(&job.status).0 as i32),
                }
                .into());
            }
            tracing::info!(job = %job_id, "writing _SUCCESS again");
        }
        self.carry_out_effects().await;
        let state = self.lock();
        let id = JobId::new(job_id);
        state
            .jobs
            .get(&id)
            .map(|j| pb::JobInfo::from(&j.info()))
            .or_else(|| state.history.get(job_id).cloned())
            .ok_or_else(|| CoordinatorError::UnknownJob(job_id.to_string()).into())
    }
}

/// A run key held while its job is planned; released when dropped.
struct KeyClaim<'a> {
    service: &'a CoordinatorService,
    key: Option<String>,
}

impl Drop for KeyClaim<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.service.lock().claimed_keys.remove(&key);
        }
    }
}
