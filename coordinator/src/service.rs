//! The coordinator's gRPC service. Handlers are thin: decode, call the state, encode.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sluice_common::failure::TaskFailure;
use sluice_common::format::schema::schema_to_bytes;
use sluice_common::ids::{JobId, WorkerId};
use sluice_common::spec::JobSpec;
use sluice_proto::{PROTOCOL_VERSION, pb};
use tonic::{Request, Response, Status};

use crate::cluster::workers::Workers;
use crate::error::CoordinatorError;
use crate::job::{Job, Outcome};
use crate::plan::plan_job;

/// How often workers heartbeat.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(250);

/// Everything the coordinator knows, behind one lock: handlers hold it only for in-memory
/// updates (planning and file I/O of commits happen outside or are tiny).
#[derive(Default)]
pub struct State {
    next_job: u64,
    jobs: BTreeMap<JobId, Job>,
    workers: Workers,
}

/// Implements `sluice.v1.Coordinator`.
#[derive(Clone, Default)]
pub struct CoordinatorService {
    state: Arc<Mutex<State>>,
}

impl CoordinatorService {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
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
        let id = self
            .lock()
            .workers
            .register(req.shuffle_addr.clone(), req.slots);
        tracing::info!(worker = %id, shuffle = %req.shuffle_addr, slots = req.slots, "worker registered");
        Ok(Response::new(pb::RegisterWorkerResponse {
            worker_id: id.0,
            heartbeat_interval_ms: HEARTBEAT_INTERVAL.as_millis() as u32,
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let req = request.into_inner();
        let worker = WorkerId(req.worker_id);
        let mut guard = self.lock();
        let state = &mut *guard;
        let Some(info) = state.workers.get_mut(&worker) else {
            return Ok(Response::new(pb::HeartbeatResponse {
                reregister: true,
                ..Default::default()
            }));
        };
        info.last_seen = Instant::now();
        let mut finished_jobs = Vec::new();
        for job in state.jobs.values().filter(|j| j.is_finished()) {
            if info.told_finished.insert(job.id.clone()) {
                finished_jobs.push(job.id.0.clone());
            }
        }
        let mut assignments = Vec::new();
        'slots: while assignments.len() < req.free_slots as usize {
            for job in state.jobs.values_mut() {
                if let Some(a) = job.next_task(&worker) {
                    assignments.push(a);
                    continue 'slots;
                }
            }
            break;
        }
        Ok(Response::new(pb::HeartbeatResponse {
            assignments,
            finished_jobs,
            reregister: false,
        }))
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
        let mut guard = self.lock();
        let state = &mut *guard;
        let addr = state
            .workers
            .get(&worker)
            .map(|w| w.shuffle_addr.clone())
            .unwrap_or_default();
        let job = job_mut(state, &req.job_id)?;
        if matches!(outcome, Outcome::MapDone(_)) != req.is_map
            && !matches!(outcome, Outcome::Failed(_))
        {
            return Err(Status::invalid_argument(
                "report outcome does not match the task kind",
            ));
        }
        if job.on_report(req.is_map, req.index, req.attempt, &worker, &addr, outcome) {
            job.succeed();
        }
        Ok(Response::new(pb::ReportTaskResponse {}))
    }

    async fn can_commit(
        &self,
        request: Request<pb::CanCommitRequest>,
    ) -> Result<Response<pb::CanCommitResponse>, Status> {
        let req = request.into_inner();
        let mut state = self.lock();
        let allowed = job_mut(&mut state, &req.job_id)?.can_commit(req.partition, req.attempt);
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
        let planned = {
            let spec = spec.clone();
            tokio::task::spawn_blocking(move || plan_job(&spec))
                .await
                .map_err(|e| Status::internal(format!("planning panicked: {e}")))??
        };
        let schema_ipc = match &planned.input_schema {
            Some(s) => schema_to_bytes(s).map_err(CoordinatorError::from)?,
            None => Vec::new(),
        };
        let mut state = self.lock();
        state.next_job += 1;
        let id = JobId(format!("job-{:04}", state.next_job));
        tracing::info!(job = %id, name = %planned.description.name, maps = planned.splits.len(), reduces = spec.reducers, "job submitted");
        let job = Job::new(
            id.clone(),
            spec,
            planned.description,
            schema_ipc,
            planned.splits,
        );
        state.jobs.insert(id.clone(), job);
        Ok(Response::new(pb::SubmitJobResponse { job_id: id.0 }))
    }

    async fn job_status(
        &self,
        request: Request<pb::JobStatusRequest>,
    ) -> Result<Response<pb::JobStatusResponse>, Status> {
        let req = request.into_inner();
        let mut state = self.lock();
        let job = job_mut(&mut state, &req.job_id)?;
        Ok(Response::new(pb::JobStatusResponse {
            job: Some(job.info()),
        }))
    }

    async fn list_jobs(
        &self,
        _request: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        let state = self.lock();
        Ok(Response::new(pb::ListJobsResponse {
            jobs: state.jobs.values().map(Job::info).collect(),
        }))
    }

    async fn cancel_job(
        &self,
        request: Request<pb::CancelJobRequest>,
    ) -> Result<Response<pb::CancelJobResponse>, Status> {
        let req = request.into_inner();
        let mut state = self.lock();
        let job = job_mut(&mut state, &req.job_id)?;
        let cancelled = !job.is_finished();
        job.cancel();
        Ok(Response::new(pb::CancelJobResponse { cancelled }))
    }
}
