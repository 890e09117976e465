//! The coordinator's gRPC service. Handlers are thin: decode, call the state, encode.
//!
//! - `state`: what the coordinator knows, behind one lock.
//! - `workers`: the calls workers make (register, heartbeat, report, commit).
//! - `clients`: the calls that change jobs (submit, commit again); reads are here.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sluice_common::ids::JobId;
use sluice_common::spec::Limits;
use sluice_proto::pb;
use tonic::{Request, Response, Status, Streaming};

use crate::cluster::workers::Workers;
use crate::error::CoordinatorError;
use crate::job::{Epoch, Job, Policy};
use crate::metrics::{JobTotals, Snapshot};
use crate::plugins::PluginStore;
use crate::store::{Event, History, Journal, Reader};

mod clients;
mod history;
mod pipelines;
mod retention;
mod run_keys;
mod schedules;
mod state;
mod views;
mod workers;

pub use state::State;
use state::carry_out_effects;

/// Implements `sluice.v1.Coordinator`.
#[derive(Clone)]
pub struct CoordinatorService {
    state: Arc<Mutex<State>>,
    plugins: PluginStore,
    journal: Journal,
    /// Reads the job store (events, history) off the scheduler's lock.
    reader: Reader,
    /// Token and TLS for calls to workers (attempt logs).
    security: sluice_proto::transport::Security,
    heartbeat: Duration,
    limits: Limits,
    /// Where the ends of jobs and pipeline runs are sent (`[[alerts]]`).
    alerts: Arc<Vec<crate::alerts::AlertTarget>>,
}

/// Longest the coordinator holds a call that waits for something (a status call for its
/// job's end, an idle worker's heartbeat for work): well inside the server's request
/// timeout, whatever a client or the configuration asks.
pub const MAX_HELD_CALL: Duration = Duration::from_secs(60);

/// How long a status call asking to wait `wait_ms` waits for its running job to end:
/// what it asks, at most [`MAX_HELD_CALL`].
pub fn status_wait(wait_ms: u32) -> Duration {
    Duration::from_millis(u64::from(wait_ms)).min(MAX_HELD_CALL)
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
            claimed_keys: Default::default(),
            pipelines: BTreeMap::new(),
            next_pipeline: 0,
            schedules: schedules::restore(history.schedules),
            alerts_out: Vec::new(),
            incremental: history.incremental,
            journal: journal.clone(),
            queues: Default::default(),
            metrics: Default::default(),
            lost_workers: Default::default(),
            jobs_ended: tokio::sync::watch::Sender::new(0),
            work: tokio::sync::watch::Sender::new(0),
        };
        for stored in history.pipelines {
            state.next_pipeline = state.next_pipeline.max(stored.seq);
            if let Some(run) = pipelines::restore(stored) {
                state.pipelines.insert(run.id.clone(), run);
            }
        }
        for info in history.jobs {
            state.record_ended(info);
        }
        // Workers re-register within a heartbeat or two of a restart; until then their map
        // outputs are not re-run.
        let grace = (heartbeat * 5).max(Duration::from_secs(2));
        for stored in history.resumable {
            let mut info = stored.info.clone();
            match crate::wire::resumed(stored) {
                Ok(stored) => {
                    let job = Job::resume(Epoch::now(), stored, policy, grace);
                    crate::output::prepare_resumed(&job.spec.output);
                    let mut job = job.with_journal(journal.clone());
                    job.record_resumed(Instant::now());
                    // Committed before the stop but for `_SUCCESS`: write it now, before
                    // the service takes requests (so no lock to hold off).
                    if job.begin_success() {
                        for (_, result) in crate::output::carry_out(job.take_effects()) {
                            job.success_written(Instant::now(), result);
                        }
                    }
                    state.jobs.insert(job.id.clone(), job);
                }
                Err(e) => {
                    tracing::error!(job = %info.job_id, error = %e, "cannot resume the job");
                    info.state = pb::JobState::Failed as i32;
                    info.error = format!("{}: {e}", crate::store::INTERRUPTED);
                    info.finished_ms = crate::clock::now_ms();
                    journal.send(Event::JobUpdated((&info).into()));
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
            reader: Reader::disabled(),
            security: sluice_proto::transport::Security::none(),
            heartbeat,
            limits: Limits::default(),
            alerts: Arc::new(Vec::new()),
        }
    }

    /// Reads history from the job store through `reader`.
    pub fn with_reader(mut self, reader: Reader) -> Self {
        self.reader = reader;
        self
    }

    /// Calls workers with `security`'s token and TLS.
    pub fn with_security(mut self, security: sluice_proto::transport::Security) -> Self {
        self.security = security;
        self
    }

    /// Shares the slots between `queues` (besides `default`).
    pub fn with_queues(self, queues: crate::cluster::queues::Queues) -> Self {
        self.lock().queues = queues;
        self
    }

    /// Sends alerts to `targets` (besides each job's own `--notify`).
    pub fn with_alerts(mut self, targets: Vec<crate::alerts::AlertTarget>) -> Self {
        self.alerts = Arc::new(targets);
        self
    }

    /// Sends the alerts of the jobs and runs that ended since the last call, each on a
    /// task of its own.
    fn send_alerts(&self) {
        let pending = std::mem::take(&mut self.lock().alerts_out);
        for (alert, notify) in pending {
            let targets = self
                .alerts
                .iter()
                .filter(|t| t.wants(&alert.state))
                .cloned()
                .chain(notify.iter().map(|u| crate::alerts::AlertTarget::notify(u)));
            for target in targets {
                tokio::spawn(crate::alerts::deliver(target, alert.clone()));
            }
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
            .map_err(|e| CoordinatorError::Internal {
                doing: "waiting for the job store",
                reason: e.to_string(),
            })?
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

    /// Prometheus text-format metrics; the lock is held only to copy a few counts.
    pub fn metrics_text(&self) -> String {
        let (snapshot, metrics) = {
            let state = self.lock();
            let mut running = JobTotals::default();
            for job in state.jobs.values() {
                running.add(&pb::JobInfo::from(&job.info()));
            }
            let snapshot = Snapshot {
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
            };
            (snapshot, state.metrics.clone())
        };
        metrics.render(snapshot)
    }
}

fn job_mut<'a>(state: &'a mut State, id: &str) -> Result<&'a mut Job, Status> {
    state
        .jobs
        .get_mut(&JobId::new(id))
        .ok_or_else(|| CoordinatorError::UnknownJob(id.to_string()).into())
}

#[tonic::async_trait]
impl pb::coordinator_server::Coordinator for CoordinatorService {
    async fn register_worker(
        &self,
        request: Request<pb::RegisterWorkerRequest>,
    ) -> Result<Response<pb::RegisterWorkerResponse>, Status> {
        Ok(Response::new(self.register(request.into_inner()).await?))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let reply = self.heartbeat_held(request.into_inner()).await?;
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
        Ok(Response::new(self.report(request.into_inner()).await?))
    }

    async fn can_commit(
        &self,
        request: Request<pb::CanCommitRequest>,
    ) -> Result<Response<pb::CanCommitResponse>, Status> {
        Ok(Response::new(self.can_commit_as(request.into_inner())?))
    }

    async fn submit_job(
        &self,
        request: Request<pb::SubmitJobRequest>,
    ) -> Result<Response<pb::SubmitJobResponse>, Status> {
        Ok(Response::new(self.submit(request.into_inner()).await?))
    }

    async fn submit_pipeline(
        &self,
        request: Request<pb::SubmitPipelineRequest>,
    ) -> Result<Response<pb::SubmitPipelineResponse>, Status> {
        Ok(Response::new(
            self.submit_pipeline(request.into_inner()).await?,
        ))
    }

    async fn pipeline_status(
        &self,
        request: Request<pb::PipelineStatusRequest>,
    ) -> Result<Response<pb::PipelineStatusResponse>, Status> {
        let info = self.pipeline_info(&request.into_inner().run_id)?;
        Ok(Response::new(pb::PipelineStatusResponse {
            pipeline: Some(info),
        }))
    }

    async fn add_schedule(
        &self,
        request: Request<pb::AddScheduleRequest>,
    ) -> Result<Response<pb::AddScheduleResponse>, Status> {
        Ok(Response::new(
            self.add_schedule(request.into_inner()).await?,
        ))
    }

    async fn list_schedules(
        &self,
        _request: Request<pb::ListSchedulesRequest>,
    ) -> Result<Response<pb::ListSchedulesResponse>, Status> {
        Ok(Response::new(self.list_schedules()))
    }

    async fn remove_schedule(
        &self,
        request: Request<pb::ScheduleNameRequest>,
    ) -> Result<Response<pb::ScheduleChangeResponse>, Status> {
        let name = request.into_inner().name;
        Ok(Response::new(self.change_schedule(&name, None).await?))
    }

    async fn pause_schedule(
        &self,
        request: Request<pb::PauseScheduleRequest>,
    ) -> Result<Response<pb::ScheduleChangeResponse>, Status> {
        let req = request.into_inner();
        Ok(Response::new(
            self.change_schedule(&req.name, Some(req.paused)).await?,
        ))
    }

    async fn job_status(
        &self,
        request: Request<pb::JobStatusRequest>,
    ) -> Result<Response<pb::JobStatusResponse>, Status> {
        let req = request.into_inner();
        let deadline = tokio::time::Instant::now() + status_wait(req.wait_ms);
        loop {
            let (info, mut ended) = {
                let state = self.lock();
                // Subscribed under the lock: an end recorded after this look is seen.
                let ended = state.jobs_ended.subscribe();
                let info = match state.jobs.get(&JobId::new(req.job_id.clone())) {
                    Some(job) => pb::JobInfo::from(&job.info()),
                    None => state
                        .history
                        .get(&req.job_id)
                        .cloned()
                        .ok_or_else(|| CoordinatorError::UnknownJob(req.job_id.clone()))?,
                };
                (info, ended)
            };
            let running = info.state == pb::JobState::Running as i32;
            if !running || tokio::time::Instant::now() >= deadline {
                return Ok(Response::new(pb::JobStatusResponse { job: Some(info) }));
            }
            // Some job ended, or the time is up: look again either way.
            let _ = tokio::time::timeout_at(deadline, ended.changed()).await;
        }
    }

    async fn list_jobs(
        &self,
        _request: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        let state = self.lock();
        let mut jobs: Vec<pb::JobInfo> = state.history.values().cloned().collect();
        jobs.extend(state.jobs.values().map(|j| pb::JobInfo::from(&j.info())));
        jobs.sort_by(|a, b| {
            a.submitted_ms
                .cmp(&b.submitted_ms)
                .then_with(|| sluice_common::ids::natural_cmp(&a.job_id, &b.job_id))
        });
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
            let cancelled = job.cancel(Instant::now());
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

    async fn commit_job(
        &self,
        request: Request<pb::CommitJobRequest>,
    ) -> Result<Response<pb::CommitJobResponse>, Status> {
        let info = self.commit_again(&request.into_inner().job_id).await?;
        Ok(Response::new(pb::CommitJobResponse { info: Some(info) }))
    }

    async fn job_events(
        &self,
        request: Request<pb::JobEventsRequest>,
    ) -> Result<Response<pb::JobEventsResponse>, Status> {
        Ok(Response::new(self.read_events(request.into_inner()).await?))
    }

    async fn list_attempts(
        &self,
        request: Request<pb::ListAttemptsRequest>,
    ) -> Result<Response<pb::ListAttemptsResponse>, Status> {
        let attempts = self.read_attempts(&request.into_inner().job_id).await?;
        Ok(Response::new(pb::ListAttemptsResponse { attempts }))
    }

    async fn attempt_log(
        &self,
        request: Request<pb::AttemptLogRequest>,
    ) -> Result<Response<pb::AttemptLogResponse>, Status> {
        Ok(Response::new(
            self.read_attempt_log(request.into_inner()).await?,
        ))
    }

    async fn list_workers(
        &self,
        _request: Request<pb::ListWorkersRequest>,
    ) -> Result<Response<pb::ListWorkersResponse>, Status> {
        let workers = self.lock().workers_info();
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
        // Within the quota, keeping what the jobs being scheduled (and this upload) need.
        let mut keep: std::collections::HashSet<String> = self
            .lock()
            .jobs
            .values()
            .map(|j| j.spec.plugin_sha256.clone())
            .collect();
        keep.insert(sha256.clone());
        let plugins = self.plugins.clone();
        match tokio::task::spawn_blocking(move || plugins.evict(&keep)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cleaning the plugin store failed"),
            Err(e) => tracing::warn!(error = %e, "cleaning the plugin store panicked"),
        }
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
mod tests;
