//! The calls workers make: registration, heartbeats, task reports and commit requests.
//! Each call after registration carries the worker's id and the secret issued with it.

use std::time::{Duration, Instant};

use sluice_common::ids::{JobId, WorkerId};
use sluice_proto::{PROTOCOL_VERSION, pb};
use tonic::Status;

use super::{CoordinatorService, job_mut};
use crate::cluster::workers::WorkerAuthError;
use crate::error::CoordinatorError;
use crate::job::{Job, Outcome, TaskKind};

impl CoordinatorService {
    pub(super) async fn register(
        &self,
        req: pb::RegisterWorkerRequest,
    ) -> Result<pb::RegisterWorkerResponse, Status> {
        if req.protocol_version != PROTOCOL_VERSION {
            return Err(CoordinatorError::Protocol {
                worker: req.protocol_version,
                coordinator: PROTOCOL_VERSION,
            }
            .into());
        }
        let secret =
            sluice_proto::transport::random_hex(24).map_err(|e| CoordinatorError::Internal {
                doing: "reading /dev/urandom for a registration secret",
                reason: e.to_string(),
            })?;
        let id = {
            let mut state = self.lock();
            let id = state.workers.register(
                req.shuffle_addr.clone(),
                req.slots,
                req.memory,
                secret.clone(),
            );
            if !req.held_outputs.is_empty() {
                let held = crate::wire::attempt_refs(&req.held_outputs);
                for job in state.jobs.values_mut() {
                    job.claim(&id, &req.shuffle_addr, &held);
                }
                // Outputs of jobs this coordinator does not run (they ended before a
                // restart): the worker drops them with its next heartbeat.
                let ended: std::collections::BTreeSet<String> = req
                    .held_outputs
                    .iter()
                    .filter(|h| {
                        state
                            .jobs
                            .get(&JobId::new(h.job_id.clone()))
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
        Ok(pb::RegisterWorkerResponse {
            worker_id: id.into_string(),
            heartbeat_interval_ms: self.heartbeat.as_millis() as u32,
            secret,
        })
    }

    /// Answers a heartbeat. A worker with free slots that gets nothing may have asked to
    /// wait (`wait_ms`): the reply then comes once a task is assigned to it, or when the
    /// wait ends, or when the worker got a task in a report's reply meanwhile (its free
    /// slots are then unknown) or may get none (draining, suspect), marked `held` so the
    /// worker heartbeats again at once. The wait ends early only for new work: a job
    /// submitted or retired, a task failed, a map stage over, a worker lost.
    pub(super) async fn heartbeat_held(
        &self,
        req: pb::HeartbeatRequest,
    ) -> Result<pb::HeartbeatResponse, CoordinatorError> {
        let wait = heartbeat_wait(req.wait_ms, self.heartbeat);
        let worker = WorkerId::new(req.worker_id.clone());
        let (reply, idle) = self.heartbeat_locked(req)?;
        let Some(mut idle) = idle.filter(|_| !wait.is_zero() && is_empty(&reply)) else {
            return Ok(reply);
        };
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if tokio::time::timeout_at(deadline, idle.work.changed())
                .await
                .is_err()
            {
                break;
            }
            let mut state = self.lock();
            // Gone, draining, suspect (it gets no task) or refilled meanwhile: the worker's
            // next heartbeat says where it stands.
            let same = state.workers.get(&worker).is_some_and(|w| {
                w.refilled == idle.refilled && !w.draining && !w.drain_requested && !w.suspect
            });
            if !same {
                break;
            }
            let assignments = state.assign(&worker, idle.free_slots as usize);
            if !assignments.is_empty() {
                state.assigned_by_heartbeat += assignments.len() as u64;
                return Ok(pb::HeartbeatResponse {
                    assignments,
                    held: true,
                    ..Default::default()
                });
            }
        }
        Ok(pb::HeartbeatResponse {
            held: true,
            ..Default::default()
        })
    }

    /// One heartbeat under the state lock: liveness, reconciliation, new assignments; and,
    /// when the worker has free slots, what it needs to wait for work.
    fn heartbeat_locked(
        &self,
        req: pb::HeartbeatRequest,
    ) -> Result<(pb::HeartbeatResponse, Option<Idle>), CoordinatorError> {
        let worker = WorkerId::new(req.worker_id);
        let mut guard = self.lock();
        let state = &mut *guard;
        let info = match state.workers.authenticate(&worker, &req.secret) {
            Ok(info) => info,
            Err(WorkerAuthError::Unknown { .. }) => {
                let reply = pb::HeartbeatResponse {
                    reregister: true,
                    ..Default::default()
                };
                return Ok((reply, None));
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
        info.draining = req.draining || info.drain_requested;
        let drain = info.drain_requested;
        // A suspect worker's first heartbeat clears it but gets no task: the heartbeat may
        // have been sent before the worker died. The next one proves it alive.
        let was_suspect = std::mem::take(&mut info.suspect);
        if was_suspect {
            tracing::info!(%worker, "suspect worker heartbeats again");
        }
        let free_slots = if req.draining || drain || was_suspect {
            0
        } else {
            req.free_slots
        };
        let finished_jobs: Vec<String> = std::mem::take(&mut info.to_drop);
        let settle = (self.heartbeat * 3).max(Duration::from_secs(1));
        let now = Instant::now();
        let running = crate::wire::attempt_refs(&req.running_attempts);
        for job in state.jobs.values_mut() {
            job.reconcile(now, &worker, &running, settle);
        }
        let assignments = state.assign(&worker, free_slots as usize);
        state.assigned_by_heartbeat += assignments.len() as u64;
        state.collect_cancels();
        let cancel = state.outbox.remove(&worker).unwrap_or_default();
        // Watched from under the lock, so no change after this look is missed.
        let idle = (free_slots > 0).then(|| Idle {
            free_slots,
            refilled: state.workers.get(&worker).map_or(0, |w| w.refilled),
            work: state.work.subscribe(),
        });
        let reply = pb::HeartbeatResponse {
            assignments,
            finished_jobs,
            reregister: false,
            cancel,
            drain,
            held: false,
        };
        Ok((reply, idle))
    }

    pub(super) async fn report(
        &self,
        req: pb::ReportTaskRequest,
    ) -> Result<pb::ReportTaskResponse, Status> {
        let worker = WorkerId::new(req.worker_id);
        let outcome = match &req.outcome {
            Some(o) => crate::wire::outcome(o),
            None => {
                return Err(CoordinatorError::Missing {
                    request: "task report",
                    missing: "an outcome",
                }
                .into());
            }
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
                return Err(CoordinatorError::OutcomeKind {
                    job: req.job_id.clone(),
                    kind: TaskKind::of(req.is_map),
                    index: req.index,
                }
                .into());
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
            let failed = matches!(outcome, Outcome::Failed(_));
            let all_done = job.on_report(
                Instant::now(),
                kind,
                req.index,
                req.attempt,
                &worker,
                &addr,
                outcome,
            );
            // New work for idle workers: a failed task (or the maps a fetch failure names)
            // due again, or the map stage over so the reduces may start. A success that
            // leaves the stage running makes none: what is pending was already offered.
            if failed || (req.is_map && job.maps_done()) {
                state.work_changed();
            }
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
            if let Some(job) = self.lock().jobs.get_mut(&JobId::new(req.job_id.clone())) {
                job.begin_success();
            }
        }
        self.carry_out_effects().await;
        // The reporting attempt's slot is free: give it its next task now.
        let assignments = if req.want_task {
            let mut state = self.lock();
            let a = state.assign(&worker, 1);
            state.assigned_by_report += a.len() as u64;
            if let (false, Some(w)) = (a.is_empty(), state.workers.get_mut(&worker)) {
                w.refilled += 1;
            }
            a
        } else {
            Vec::new()
        };
        Ok(pb::ReportTaskResponse { assignments })
    }

    pub(super) fn can_commit_as(
        &self,
        req: pb::CanCommitRequest,
    ) -> Result<pb::CanCommitResponse, Status> {
        let mut state = self.lock();
        let worker = WorkerId::new(req.worker_id);
        if let Err(e) = state.workers.authenticate(&worker, &req.secret) {
            tracing::warn!(job = %req.job_id, partition = req.partition, error = %e, "refused a commit request");
            return Err(CoordinatorError::from(e).into());
        }
        // An ended job commits nothing more.
        let allowed = !state.history.contains_key(&req.job_id)
            && job_mut(&mut state, &req.job_id)?.can_commit(req.partition, req.attempt, &worker);
        Ok(pb::CanCommitResponse { allowed })
    }
}

/// A heartbeat of a worker with free slots, as it waits for work.
struct Idle {
    free_slots: u32,
    /// The worker's [`WorkerInfo::refilled`](crate::cluster::workers::WorkerInfo) when the
    /// heartbeat came.
    refilled: u64,
    work: tokio::sync::watch::Receiver<u64>,
}

/// How long a heartbeat asking to wait `wait_ms` may be held: what it asks, at most the
/// heartbeat interval (so the worker is heard from as often as without waiting) and
/// [`MAX_HELD_CALL`](super::MAX_HELD_CALL).
pub fn heartbeat_wait(wait_ms: u32, interval: Duration) -> Duration {
    Duration::from_millis(u64::from(wait_ms))
        .min(interval)
        .min(super::MAX_HELD_CALL)
}

/// Whether a heartbeat reply tells the worker nothing (so it may as well wait).
fn is_empty(reply: &pb::HeartbeatResponse) -> bool {
    reply.assignments.is_empty()
        && reply.finished_jobs.is_empty()
        && reply.cancel.is_empty()
        && !reply.reregister
        && !reply.drain
}
