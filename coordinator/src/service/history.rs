//! Reads of what jobs did, from the job store rather than the scheduler's state (events and
//! attempts outlive the job's place in the scheduler, and are read off its lock), and
//! attempt logs, read from the worker that ran the attempt.

use sluice_common::ids::WorkerId;
use sluice_proto::pb;
use tonic::Status;

use super::CoordinatorService;
use crate::error::CoordinatorError;
use crate::store::{MAX_EVENTS, Reader};

impl CoordinatorService {
    /// Runs `read` on the job store on a blocking thread, once what was journaled before
    /// this call is written (what the job did a moment ago is read back); `None` from
    /// `read` is an unknown job.
    async fn read_store<T: Send + 'static>(
        &self,
        job: &str,
        doing: &'static str,
        read: impl FnOnce(&Reader) -> Result<Option<T>, crate::store::StoreError> + Send + 'static,
    ) -> Result<T, Status> {
        let journal = self.journal.clone();
        let reader = self.reader.clone();
        let found = tokio::task::spawn_blocking(move || {
            if let Err(e) = journal.sync() {
                tracing::warn!(error = %e, "reading history the store may not hold yet");
            }
            read(&reader)
        })
        .await
        .map_err(|e| CoordinatorError::Internal {
            doing,
            reason: e.to_string(),
        })?
        .map_err(CoordinatorError::from)?;
        Ok(found.ok_or_else(|| CoordinatorError::UnknownJob(job.to_string()))?)
    }

    /// Events of a job after `after_seq`, oldest first.
    pub(super) async fn read_events(
        &self,
        req: pb::JobEventsRequest,
    ) -> Result<pb::JobEventsResponse, Status> {
        let limit = if req.limit == 0 {
            MAX_EVENTS
        } else {
            req.limit
        };
        let job = req.job_id.clone();
        let events = self
            .read_store(&req.job_id, "reading job events", move |r| {
                r.events(&job, req.after_seq, limit)
            })
            .await?;
        Ok(pb::JobEventsResponse { events })
    }

    /// Every attempt of a job.
    pub(super) async fn read_attempts(&self, job: &str) -> Result<Vec<pb::AttemptInfo>, Status> {
        let id = job.to_string();
        self.read_store(job, "reading attempts", move |r| r.attempts(&id))
            .await
    }

    /// A piece of an attempt's log, from the worker that ran it.
    pub(crate) async fn read_attempt_log(
        &self,
        req: pb::AttemptLogRequest,
    ) -> Result<pb::AttemptLogResponse, Status> {
        let attempts = self.read_attempts(&req.job_id).await?;
        let Some(a) = attempts
            .iter()
            .find(|a| a.task == req.task && a.attempt == req.attempt)
        else {
            return Err(Status::not_found(format!(
                "job {} has no {} attempt {}",
                req.job_id, req.task, req.attempt
            )));
        };
        let addr = self
            .lock()
            .workers
            .get(&WorkerId::new(a.worker.clone()))
            .map(|w| w.shuffle_addr.clone());
        let Some(addr) = addr else {
            return Err(Status::failed_precondition(format!(
                "worker {} that ran {} attempt {} of {} is no longer registered: its log \
                 stays on its machine, under WORK_DIR/logs/{}/{}.{}.log",
                a.worker, a.task, a.attempt, req.job_id, req.job_id, a.task, a.attempt
            )));
        };
        let worker = a.worker.clone();
        let channel = self
            .security
            .channel(&addr)
            .map_err(|e| Status::internal(format!("worker {worker} at {addr}: {e}")))?;
        let mut client = self.security.shuffle_client(channel);
        let mut reply = client
            .attempt_log(req)
            .await
            .map_err(|s| {
                Status::new(
                    s.code(),
                    format!("worker {worker} at {addr}: {}", s.message()),
                )
            })?
            .into_inner();
        reply.worker_id = worker;
        Ok(reply)
    }
}
