//! The coordinator's gRPC service. Handlers are thin: decode, call the state, encode.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sluice_common::failure::TaskFailure;
use sluice_common::format::schema::schema_to_bytes;
use sluice_common::ids::{JobId, WorkerId};
use sluice_common::spec::{JobSpec, Limits};
use sluice_proto::{PROTOCOL_VERSION, pb};
use tonic::{Request, Response, Status, Streaming};

use crate::cluster::workers::{WorkerAuthError, Workers};
use crate::error::CoordinatorError;
use crate::job::{ClusterView, Job, Outcome, OutputEffect, Policy, TaskKind};
use crate::metrics::{JobTotals, Snapshot};
use crate::plan::plan_job;
use crate::plugins::PluginStore;
use crate::store::{Event, History, Journal};

/// Everything the coordinator knows, behind one lock: handlers hold it only for in-memory
/// updates (planning and file I/O of commits happen outside or are tiny; the job store is
/// written by its own thread).
pub struct State {
    next_job: u64,
    /// Jobs being scheduled (or writing `_SUCCESS`): an ended job moves to `history`, so
    /// what a heartbeat or a report costs does not grow with the jobs run so far.
    jobs: BTreeMap<JobId, Job>,
    /// Ended jobs: of earlier runs of this coordinator (from the job store), and of this
    /// one.
    history: BTreeMap<String, pb::JobInfo>,
    /// The totals of the jobs in `history`, for the metrics.
    ended: JobTotals,
    /// Output effects of jobs that ended since they were last collected.
    effects: Vec<OutputEffect>,
    workers: Workers,
    /// Attempts each worker must stop, delivered with its next heartbeat.
    outbox: HashMap<WorkerId, Vec<pb::AttemptRef>>,
    policy: Policy,
    /// Attempts handed out in heartbeat replies and in report replies.
    assigned_by_heartbeat: u64,
    assigned_by_report: u64,
}

impl State {
    /// Up to `slots` new attempts for `worker`, from the jobs whose task memory fits in its
    /// slots, in job order.
    fn assign(&mut self, worker: &WorkerId, slots: usize) -> Vec<pb::TaskAssignment> {
        let mut assignments = Vec::new();
        let Some(info) = self.workers.get(worker) else {
            return assignments;
        };
        if slots == 0 || info.draining || info.suspect {
            return assignments;
        }
        let fitting: Vec<JobId> = self
            .jobs
            .values()
            .filter(|j| !j.is_finished() && info.fits(j.spec.task_memory))
            .map(|j| j.id.clone())
            .collect();
        let cluster = ClusterView {
            live_workers: self.workers.active(),
            suspects: self.workers.suspects(),
        };
        let now = Instant::now();
        'slots: while assignments.len() < slots {
            for id in &fitting {
                let Some(job) = self.jobs.get_mut(id) else {
                    continue;
                };
                if let Some(a) = job.next_task(now, worker, &cluster) {
                    assignments.push(a);
                    continue 'slots;
                }
            }
            break;
        }
        assignments
    }

    /// Moves the jobs' cancellations into the workers' outboxes (cancellations for workers
    /// that are gone are dropped: their attempts died with them).
    fn collect_cancels(&mut self) {
        for job in self.jobs.values_mut() {
            for c in job.take_cancels() {
                if self.workers.get(&c.worker).is_some() {
                    self.outbox.entry(c.worker).or_default().push(c.attempt);
                }
            }
        }
    }

    /// A reducer of some job could not reach `worker`: it is suspect until it heartbeats
    /// again, and every job re-runs the map outputs it holds (Spark unregisters all outputs
    /// of an executor on a `FetchFailed` the same way), so reducers stop failing on it one
    /// output at a time.
    fn worker_unreachable(&mut self, worker: &WorkerId) {
        if self.workers.mark_suspect(worker) {
            tracing::warn!(%worker, "worker suspect: a reducer could not reach it; no new tasks until it heartbeats");
        }
        for job in self.jobs.values_mut() {
            job.on_worker_unreachable(worker);
        }
    }

    /// Output I/O every job asked for since the last call.
    fn take_effects(&mut self) -> Vec<OutputEffect> {
        let mut effects = std::mem::take(&mut self.effects);
        effects.extend(self.jobs.values_mut().flat_map(Job::take_effects));
        effects
    }

    /// Moves the jobs that ended into `history`, keeping what they still owe: the attempts
    /// to cancel go to the outbox, their output effects are kept for [`State::take_effects`],
    /// and every worker is told to drop their shuffle files. A job writing `_SUCCESS` stays
    /// until it knows how that went.
    fn retire_ended(&mut self) {
        let ended: Vec<JobId> = self
            .jobs
            .values()
            .filter(|j| j.has_ended())
            .map(|j| j.id.clone())
            .collect();
        if ended.is_empty() {
            return;
        }
        self.collect_cancels();
        for id in ended {
            let Some(mut job) = self.jobs.remove(&id) else {
                continue;
            };
            self.effects.extend(job.take_effects());
            for (_, info) in self.workers.iter_mut() {
                info.to_drop.push(id.0.clone());
            }
            self.record_ended(job.info());
        }
    }

    /// Keeps an ended job's info for status queries and counts it in the totals.
    fn record_ended(&mut self, info: pb::JobInfo) {
        self.ended.add(&info);
        self.history.insert(info.job_id.clone(), info);
    }

    /// Applies the unreachable workers the jobs found.
    fn collect_unreachable(&mut self) {
        let found: Vec<WorkerId> = self
            .jobs
            .values_mut()
            .flat_map(Job::take_unreachable)
            .collect();
        for worker in found {
            self.worker_unreachable(&worker);
        }
    }

    /// Declares workers silent for longer than `timeout` lost: their attempts are re-queued
    /// and the map outputs they held re-created where still needed.
    fn expire_workers(&mut self, timeout: Duration) {
        for worker in self.workers.expire(timeout) {
            tracing::warn!(%worker, ?timeout, "worker lost: no heartbeat within the timeout");
            self.outbox.remove(&worker);
            for job in self.jobs.values_mut() {
                job.on_worker_lost(&worker);
            }
        }
        self.retire_ended();
    }
}

/// Carries out the output effects the jobs asked for (removing a failed job's output,
/// writing `_SUCCESS`) off the scheduler's lock, on a blocking thread, and hands each
/// `_SUCCESS` outcome back to its job.
async fn carry_out_effects(state: &Arc<Mutex<State>>) {
    let lock = || state.lock().unwrap_or_else(|p| p.into_inner());
    let effects = lock().take_effects();
    if effects.is_empty() {
        return;
    }
    let written = match tokio::task::spawn_blocking(move || crate::output::carry_out(effects)).await
    {
        Ok(written) => written,
        Err(e) => {
            tracing::error!(error = %e, "carrying out output effects failed");
            return;
        }
    };
    let mut state = lock();
    for (job, result) in written {
        if let Some(job) = state.jobs.get_mut(&job) {
            job.success_written(result);
        }
    }
    state.retire_ended();
}

/// Implements `sluice.v1.Coordinator`.
#[derive(Clone)]
pub struct CoordinatorService {
    state: Arc<Mutex<State>>,
    plugins: PluginStore,
    journal: Journal,
    heartbeat: Duration,
    limits: Limits,
}

impl CoordinatorService {
    /// A service over the job store's `history`, journaling to `journal`.
    pub fn new(
        plugins: PluginStore,
        history: History,
        journal: Journal,
        heartbeat: Duration,
        policy: Policy,
    ) -> Self {
        let mut state = State {
            next_job: history.next_seq.saturating_sub(1),
            jobs: BTreeMap::new(),
            history: BTreeMap::new(),
            ended: JobTotals::default(),
            effects: Vec::new(),
            workers: Workers::default(),
            outbox: HashMap::new(),
            policy,
            assigned_by_heartbeat: 0,
            assigned_by_report: 0,
        };
        for info in history.jobs {
            state.record_ended(info);
        }
        // Workers re-register within a heartbeat or two of a restart; until then their map
        // outputs are not re-run.
        let grace = (heartbeat * 5).max(Duration::from_secs(2));
        for stored in history.resumable {
            let mut info = stored.info.clone();
            match Job::resume(Instant::now(), stored, policy, grace) {
                Ok(job) => {
                    let mut job = job.with_journal(journal.clone());
                    // Committed before the stop but for `_SUCCESS`: write it now, before
                    // the service takes requests (so no lock to hold off).
                    if job.begin_success() {
                        for (_, result) in crate::output::carry_out(job.take_effects()) {
                            job.success_written(result);
                        }
                    }
                    state.jobs.insert(job.id.clone(), job);
                }
                Err(e) => {
                    tracing::error!(job = %info.job_id, error = %e, "cannot resume the job");
                    info.state = pb::JobState::Failed as i32;
                    info.error = format!("{}: {e}", crate::store::INTERRUPTED);
                    info.finished_ms = crate::job::now_ms();
                    journal.send(Event::JobUpdated(info.clone()));
                    state.record_ended(info);
                }
            }
        }
        // Jobs that finished their commit while resuming go to the history at once.
        state.retire_ended();
        CoordinatorService {
            state: Arc::new(Mutex::new(state)),
            plugins,
            journal,
            heartbeat,
            limits: Limits::default(),
        }
    }

    /// Refuses jobs past `limits` at submission.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Waits until the job store holds every change made so far; an error when it does not.
    async fn sync_journal(&self) -> Result<(), Status> {
        let journal = self.journal.clone();
        tokio::task::spawn_blocking(move || journal.sync())
            .await
            .map_err(|e| Status::internal(format!("job store: {e}")))?
            .map_err(|e| {
                tracing::error!(error = %e, "a change is not in the job store: not acknowledged");
                CoordinatorError::from(e).into()
            })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Carries out the output effects the jobs asked for: see [`carry_out_effects`].
    async fn carry_out_effects(&self) {
        carry_out_effects(&self.state).await;
    }

    /// Runs [`State::expire_workers`] every tenth of `timeout` until the service is dropped
    /// by everyone else.
    pub fn spawn_worker_expiry(&self, timeout: Duration) {
        let state = Arc::downgrade(&self.state);
        let tick = (timeout / 10).max(Duration::from_millis(20));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(tick).await;
                let Some(state) = state.upgrade() else { return };
                state
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .expire_workers(timeout);
                carry_out_effects(&state).await;
            }
        });
    }

    /// One heartbeat under the state lock: liveness, reconciliation, new assignments.
    fn heartbeat_locked(
        &self,
        req: pb::HeartbeatRequest,
    ) -> Result<pb::HeartbeatResponse, CoordinatorError> {
        let worker = WorkerId(req.worker_id);
        let mut guard = self.lock();
        let state = &mut *guard;
        let info = match state.workers.authenticate(&worker, &req.secret) {
            Ok(info) => info,
            Err(WorkerAuthError::Unknown { .. }) => {
                return Ok(pb::HeartbeatResponse {
                    reregister: true,
                    ..Default::default()
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "refused a heartbeat");
                return Err(e.into());
            }
        };
        info.last_seen = Instant::now();
        info.running = req.running;
        if req.draining && !info.draining {
            tracing::info!(%worker, "worker draining: no new tasks for it");
        }
        info.draining = req.draining;
        // A suspect worker's first heartbeat clears it but gets no task: the heartbeat may
        // have been sent before the worker died. The next one proves it alive.
        let was_suspect = std::mem::take(&mut info.suspect);
        if was_suspect {
            tracing::info!(%worker, "suspect worker heartbeats again");
        }
        let free_slots = if req.draining || was_suspect {
            0
        } else {
            req.free_slots
        };
        let finished_jobs: Vec<String> = std::mem::take(&mut info.to_drop);
        let settle = (self.heartbeat * 3).max(Duration::from_secs(1));
        let now = Instant::now();
        for job in state.jobs.values_mut() {
            job.reconcile(now, &worker, &req.running_attempts, settle);
        }
        let assignments = state.assign(&worker, free_slots as usize);
        state.assigned_by_heartbeat += assignments.len() as u64;
        state.collect_cancels();
        let cancel = state.outbox.remove(&worker).unwrap_or_default();
        Ok(pb::HeartbeatResponse {
            assignments,
            finished_jobs,
            reregister: false,
            cancel,
        })
    }

    /// Prometheus text-format metrics; the lock is held only to copy a few counts.
    pub fn metrics_text(&self) -> String {
        let snapshot = {
            let state = self.lock();
            let mut running = JobTotals::default();
            for job in state.jobs.values() {
                running.add(&job.info());
            }
            Snapshot {
                jobs: state.ended.plus(&running),
                workers: state.workers.iter().count() as u64,
                slots: state.workers.iter().map(|(_, w)| u64::from(w.slots)).sum(),
                running: state
                    .workers
                    .iter()
                    .map(|(_, w)| u64::from(w.running))
                    .sum(),
                assigned_by_heartbeat: state.assigned_by_heartbeat,
                assigned_by_report: state.assigned_by_report,
            }
        };
        crate::metrics::render(&snapshot)
    }
}

fn job_mut<'a>(state: &'a mut State, id: &str) -> Result<&'a mut Job, Status> {
    state
        .jobs
        .get_mut(&JobId(id.to_string()))
        .ok_or_else(|| CoordinatorError::UnknownJob(id.to_string()).into())
}

#[tonic::async_trait]
impl pb::coordinator_server::Coordinator for CoordinatorService {
    async fn register_worker(
        &self,
        request: Request<pb::RegisterWorkerRequest>,
    ) -> Result<Response<pb::RegisterWorkerResponse>, Status> {
        let req = request.into_inner();
        if req.protocol_version != PROTOCOL_VERSION {
            return Err(Status::failed_precondition(format!(
                "worker speaks protocol {}, this coordinator {PROTOCOL_VERSION}",
                req.protocol_version
            )));
        }
        let secret = sluice_proto::transport::random_hex(24)
            .map_err(|e| Status::internal(format!("reading /dev/urandom for a secret: {e}")))?;
        let id = {
            let mut state = self.lock();
            let id = state.workers.register(
                req.shuffle_addr.clone(),
                req.slots,
                req.memory,
                secret.clone(),
            );
            if !req.held_outputs.is_empty() {
                for job in state.jobs.values_mut() {
                    job.claim(&id, &req.shuffle_addr, &req.held_outputs);
                }
                // Outputs of jobs this coordinator does not run (they ended before a
                // restart): the worker drops them with its next heartbeat.
                let ended: std::collections::BTreeSet<String> = req
                    .held_outputs
                    .iter()
                    .filter(|h| {
                        state
                            .jobs
                            .get(&JobId(h.job_id.clone()))
                            .is_none_or(Job::is_finished)
                    })
                    .map(|h| h.job_id.clone())
                    .collect();
                if let Some(info) = state.workers.get_mut(&id) {
                    info.to_drop.extend(ended);
                }
            }
            id
        };
        tracing::info!(worker = %id, shuffle = %req.shuffle_addr, slots = req.slots, held = req.held_outputs.len(), "worker registered");
        Ok(Response::new(pb::RegisterWorkerResponse {
            worker_id: id.0,
            heartbeat_interval_ms: self.heartbeat.as_millis() as u32,
            secret,
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let reply = self.heartbeat_locked(request.into_inner())?;
        if !reply.assignments.is_empty() {
            // Attempt numbers handed out are durable first: a restarted coordinator never
            // gives the same number to a second run of the task.
            self.sync_journal().await?;
        }
        Ok(Response::new(reply))
    }

    async fn report_task(
        &self,
        request: Request<pb::ReportTaskRequest>,
    ) -> Result<Response<pb::ReportTaskResponse>, Status> {
        let req = request.into_inner();
        let worker = WorkerId(req.worker_id);
        let outcome = match req.outcome {
            Some(pb::report_task_request::Outcome::MapDone(d)) => Outcome::MapDone(d),
            Some(pb::report_task_request::Outcome::ReduceDone(d)) => Outcome::ReduceDone(d),
            Some(pb::report_task_request::Outcome::Failed(f)) => {
                Outcome::Failed(TaskFailure::from(&f))
            }
            None => return Err(Status::invalid_argument("report without an outcome")),
        };
        let all_done = 'report: {
            let mut guard = self.lock();
            let state = &mut *guard;
            if state.history.contains_key(&req.job_id) {
                // The job ended: a late report (a cancelled attempt, a speculation loser)
                // changes nothing.
                break 'report false;
            }
            let addr = match state.workers.authenticate(&worker, &req.secret) {
                Ok(w) => w.shuffle_addr.clone(),
                Err(e) => {
                    tracing::warn!(job = %req.job_id, error = %e, "refused a task report");
                    return Err(CoordinatorError::from(e).into());
                }
            };
            let job = job_mut(state, &req.job_id)?;
            if matches!(outcome, Outcome::MapDone(_)) != req.is_map
                && !matches!(outcome, Outcome::Failed(_))
            {
                return Err(Status::invalid_argument(
                    "report outcome does not match the task kind",
                ));
            }
            if let Err(source) = job.check_report(req.index, &outcome) {
                tracing::warn!(%worker, job = %req.job_id, error = %source, "refused a task report");
                return Err(CoordinatorError::BadReport {
                    job: req.job_id.clone(),
                    source,
                }
                .into());
            }
            let kind = TaskKind::of(req.is_map);
            let all_done = job.on_report(
                Instant::now(),
                kind,
                req.index,
                req.attempt,
                &worker,
                &addr,
                outcome,
            );
            state.collect_unreachable();
            state.retire_ended();
            all_done
        };
        // Acknowledge only what the job store holds: a restarted coordinator then knows every
        // attempt a worker was told was recorded.
        self.sync_journal().await?;
        if all_done {
            // Only now, with every commit journaled, may `_SUCCESS` appear: a crash in
            // between resumes a job whose partitions are all known to be committed.
            if let Some(job) = self.lock().jobs.get_mut(&JobId(req.job_id.clone())) {
                job.begin_success();
            }
        }
        self.carry_out_effects().await;
        // The reporting attempt's slot is free: give it its next task now.
        let assignments = if req.want_task {
            let mut state = self.lock();
            let a = state.assign(&worker, 1);
            state.assigned_by_report += a.len() as u64;
            a
        } else {
            Vec::new()
        };
        Ok(Response::new(pb::ReportTaskResponse { assignments }))
    }

    async fn can_commit(
        &self,
        request: Request<pb::CanCommitRequest>,
    ) -> Result<Response<pb::CanCommitResponse>, Status> {
        let req = request.into_inner();
        let mut state = self.lock();
        let worker = WorkerId(req.worker_id);
        if let Err(e) = state.workers.authenticate(&worker, &req.secret) {
            tracing::warn!(job = %req.job_id, partition = req.partition, error = %e, "refused a commit request");
            return Err(CoordinatorError::from(e).into());
        }
        // An ended job commits nothing more.
        let allowed = !state.history.contains_key(&req.job_id)
            && job_mut(&mut state, &req.job_id)?.can_commit(req.partition, req.attempt, &worker);
        Ok(Response::new(pb::CanCommitResponse { allowed }))
    }

    async fn submit_job(
        &self,
        request: Request<pb::SubmitJobRequest>,
    ) -> Result<Response<pb::SubmitJobResponse>, Status> {
        let spec = request
            .into_inner()
            .spec
            .ok_or_else(|| Status::invalid_argument("submission without a job spec"))?;
        let spec = JobSpec::try_from(&spec)?;
        if spec.plugin_sha256.is_empty() {
            return Err(Status::invalid_argument(
                "job spec without plugin_sha256: upload the plugin first (sluice submit does)",
            ));
        }
        if let Some(why) = self.lock().workers.refuse_task_memory(spec.task_memory) {
            return Err(Status::invalid_argument(why));
        }
        let stored = self.plugins.path(&spec.plugin_sha256)?;
        if !stored.is_file() {
            return Err(Status::failed_precondition(format!(
                "no plugin with sha256 {} is stored: upload it first",
                spec.plugin_sha256
            )));
        }
        let planned = {
            // The coordinator loads its own stored copy; the spec keeps the client's name.
            let mut spec = spec.clone();
            let client_name =
                std::mem::replace(&mut spec.plugin, stored.to_string_lossy().into_owned());
            let spec_sha = spec.plugin_sha256.clone();
            let stored = stored.clone();
            let parallelism = self.lock().workers.active_slots();
            let limits = self.limits;
            tokio::task::spawn_blocking(move || plan_job(&spec, parallelism, &limits))
                .await
                .map_err(|e| Status::internal(format!("planning panicked: {e}")))?
                .map_err(|e| {
                    // Name the plugin as the user knows it, not by the store's file name.
                    let mut status = Status::from(e);
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
        let schema_ipc = match &planned.input_schema {
            Some(s) => schema_to_bytes(s).map_err(CoordinatorError::from)?,
            None => Vec::new(),
        };
        let id = {
            let mut state = self.lock();
            state.next_job += 1;
            let seq = state.next_job;
            let id = JobId(format!("job-{seq:04}"));
            tracing::info!(job = %id, name = %planned.description.name, maps = planned.splits.len(), reduces = spec.reducers, "job submitted");
            let wire_spec = pb::JobSpec::from(&spec);
            let job = Job::new(
                id.clone(),
                spec,
                planned.description,
                schema_ipc,
                planned.splits,
            )
            .with_journal(self.journal.clone())
            .with_policy(state.policy);
            self.journal.send(Event::JobSubmitted {
                seq,
                info: job.info(),
                spec: wire_spec,
                splits: job.wire_splits(),
                schema_ipc: job.schema_ipc().to_vec(),
                description: job.description.encode(),
            });
            state.jobs.insert(id.clone(), job);
            id
        };
        // The id is durable before the client hears it, so a crash cannot hand it out twice.
        if let Err(e) = self.sync_journal().await {
            // Not acknowledged, so not run: the client is told it failed.
            if let Some(job) = self.lock().jobs.get_mut(&id) {
                job.fail(format!("the job store did not record the submission: {}", e.message()));
            }
            self.lock().retire_ended();
            self.carry_out_effects().await;
            return Err(e);
        }
        Ok(Response::new(pb::SubmitJobResponse { job_id: id.0 }))
    }

    async fn job_status(
        &self,
        request: Request<pb::JobStatusRequest>,
    ) -> Result<Response<pb::JobStatusResponse>, Status> {
        let req = request.into_inner();
        let state = self.lock();
        let info = match state.jobs.get(&JobId(req.job_id.clone())) {
            Some(job) => job.info(),
            None => state
                .history
                .get(&req.job_id)
                .cloned()
                .ok_or(CoordinatorError::UnknownJob(req.job_id))?,
        };
        Ok(Response::new(pb::JobStatusResponse { job: Some(info) }))
    }

    async fn list_jobs(
        &self,
        _request: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        let state = self.lock();
        let mut jobs: Vec<pb::JobInfo> = state.history.values().cloned().collect();
        jobs.extend(state.jobs.values().map(Job::info));
        jobs.sort_by_key(|j| (j.submitted_ms, j.job_id.clone()));
        Ok(Response::new(pb::ListJobsResponse { jobs }))
    }

    async fn cancel_job(
        &self,
        request: Request<pb::CancelJobRequest>,
    ) -> Result<Response<pb::CancelJobResponse>, Status> {
        let req = request.into_inner();
        let cancelled = {
            let mut state = self.lock();
            if state.history.contains_key(&req.job_id) {
                return Ok(Response::new(pb::CancelJobResponse { cancelled: false }));
            }
            let job = job_mut(&mut state, &req.job_id)?;
            let cancelled = !job.is_finished();
            job.cancel();
            if cancelled {
                tracing::info!(job = %req.job_id, "job cancelled");
            }
            state.retire_ended();
            cancelled
        };
        // The reply comes once the output is removed: a client may resubmit to it at once.
        self.carry_out_effects().await;
        Ok(Response::new(pb::CancelJobResponse { cancelled }))
    }

    async fn list_workers(
        &self,
        _request: Request<pb::ListWorkersRequest>,
    ) -> Result<Response<pb::ListWorkersResponse>, Status> {
        let state = self.lock();
        let mut workers: Vec<pb::WorkerInfo> = state
            .workers
            .iter()
            .map(|(id, w)| pb::WorkerInfo {
                worker_id: id.0.clone(),
                shuffle_addr: w.shuffle_addr.clone(),
                slots: w.slots,
                running: w.running,
                draining: w.draining,
                last_heartbeat_ms_ago: w.last_seen.elapsed().as_millis() as u64,
                registered_ms: w.registered_ms,
                suspect: w.suspect,
                memory: w.memory,
            })
            .collect();
        workers.sort_by_key(|w| (w.registered_ms, w.worker_id.clone()));
        Ok(Response::new(pb::ListWorkersResponse { workers }))
    }

    async fn has_plugin(
        &self,
        request: Request<pb::HasPluginRequest>,
    ) -> Result<Response<pb::HasPluginResponse>, Status> {
        let present = self.plugins.contains(&request.into_inner().sha256)?;
        Ok(Response::new(pb::HasPluginResponse { present }))
    }

    async fn upload_plugin(
        &self,
        request: Request<Streaming<pb::PluginChunk>>,
    ) -> Result<Response<pb::UploadPluginResponse>, Status> {
        let sha256 = self.plugins.receive(request.into_inner()).await?;
        Ok(Response::new(pb::UploadPluginResponse { sha256 }))
    }

    type FetchPluginStream =
        std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::PluginChunk, Status>> + Send>>;

    async fn fetch_plugin(
        &self,
        request: Request<pb::FetchPluginRequest>,
    ) -> Result<Response<Self::FetchPluginStream>, Status> {
        let stream = self.plugins.send(&request.into_inner().sha256).await?;
        Ok(Response::new(stream))
    }
}

#[cfg(test)]
#[path = "service_tests.rs"]
mod tests;
