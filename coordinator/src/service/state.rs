//! What the coordinator knows, behind one lock, and the bookkeeping across jobs and
//! workers that handlers share.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_common::ids::{JobId, WorkerId};
use sluice_proto::pb;

use crate::cluster::queues::{DEFAULT_QUEUE, Load, offer_order};
use crate::cluster::workers::Workers;
use crate::job::{ClusterView, Job, OutputEffect, Policy};
use crate::metrics::JobTotals;

/// Everything the coordinator knows, behind one lock: handlers hold it only for in-memory
/// updates (planning and file I/O of commits happen outside or are tiny; the job store is
/// written by its own thread).
pub struct State {
    pub(super) next_job: u64,
    /// Jobs being scheduled (or writing `_SUCCESS`): an ended job moves to `history`, so
    /// what a heartbeat or a report costs does not grow with the jobs run so far.
    pub(super) jobs: BTreeMap<JobId, Job>,
    /// Ended jobs: of earlier runs of this coordinator (from the job store), and of this
    /// one.
    pub(super) history: BTreeMap<String, pb::JobInfo>,
    /// The totals of the jobs in `history`, for the metrics.
    pub(super) ended: JobTotals,
    /// Output effects of jobs that ended since they were last collected.
    pub(super) effects: Vec<OutputEffect>,
    pub(super) workers: Workers,
    /// Attempts each worker must stop, delivered with its next heartbeat.
    pub(super) outbox: HashMap<WorkerId, Vec<pb::AttemptRef>>,
    pub(super) policy: Policy,
    /// Attempts handed out in heartbeat replies and in report replies.
    pub(super) assigned_by_heartbeat: u64,
    pub(super) assigned_by_report: u64,
    /// Run keys a submission is planning a job for (see `run_keys`).
    pub(super) claimed_keys: std::collections::HashSet<String>,
    /// Pipeline runs, running and ended, by id.
    pub(super) pipelines: BTreeMap<String, crate::pipeline::PipelineRun>,
    /// The last pipeline run's sequence number.
    pub(super) next_pipeline: u64,
    /// Schedules, by name.
    pub(super) schedules: BTreeMap<String, super::schedules::Entry>,
    /// Ends to alert on, with the job's own `--notify` URLs, until they are sent.
    pub(super) alerts_out: Vec<(crate::alerts::Alert, Vec<String>)>,
    /// The files the successful runs of each incremental name read.
    pub(super) incremental: crate::store::incremental::ReadFiles,
    /// Where changes to `incremental` are recorded.
    pub(super) journal: crate::store::Journal,
    /// The queues jobs share the slots in.
    pub(super) queues: crate::cluster::queues::Queues,
    /// Histograms observed as tasks are assigned and jobs end.
    pub(super) metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// The workers lost most recently, newest last (at most [`LOST_WORKERS_KEPT`]).
    pub(super) lost_workers: std::collections::VecDeque<pb::WorkerInfo>,
    /// How many jobs entered `history`: a status call waiting for its job's end watches it.
    pub(super) jobs_ended: tokio::sync::watch::Sender<u64>,
    /// Bumped when a task may have become assignable (a job submitted or retired, a task
    /// failed, a map stage over, a worker lost): held heartbeats of idle workers watch it.
    pub(super) work: tokio::sync::watch::Sender<u64>,
}

/// Lost workers the web UI still lists.
pub const LOST_WORKERS_KEPT: usize = 50;

impl State {
    /// The jobs carrying run key `key`, running and ended, in submission order.
    pub(super) fn jobs_with_key(&self, key: &str) -> Vec<(String, pb::JobState)> {
        let mut found: Vec<(String, pb::JobState)> = self
            .history
            .values()
            .filter(|i| i.run_key == key)
            .map(|i| {
                let state = pb::JobState::try_from(i.state).unwrap_or(pb::JobState::Unspecified);
                (i.job_id.clone(), state)
            })
            .chain(
                self.jobs
                    .values()
                    .filter(|j| j.spec.run_key == key)
                    .map(|j| (j.id.to_string(), crate::wire::state(&j.status).0)),
            )
            .collect();
        found.sort_by(|a, b| sluice_common::ids::natural_cmp(&a.0, &b.0));
        found
    }

    /// Up to `slots` new attempts for `worker`, from the jobs whose task memory fits in its
    /// slots, in job order.
    pub(super) fn assign(&mut self, worker: &WorkerId, slots: usize) -> Vec<pb::TaskAssignment> {
        let mut assignments = Vec::new();
        let Some(info) = self.workers.get(worker) else {
            return assignments;
        };
        if slots == 0 || info.draining || info.suspect {
            return assignments;
        }
        let mut loads: Vec<Load> = self
            .jobs
            .values()
            .filter(|j| !j.is_finished() && info.fits(j.spec.task_memory))
            .map(|j| Load {
                id: j.id.clone(),
                queue: if j.spec.queue.is_empty() {
                    DEFAULT_QUEUE.to_string()
                } else {
                    j.spec.queue.clone()
                },
                priority: j.spec.priority,
                running: 0,
            })
            .collect();
        // Running attempts only order several jobs (`offer_order`), and counting a job's
        // walks all its tasks: at every assignment of a lone job of 20,000 maps, that was
        // 5% of the job's CPU.
        if loads.len() > 1 {
            for l in &mut loads {
                l.running = self.jobs.get(&l.id).map_or(0, |j| j.running_attempts());
            }
        }
        let cluster = ClusterView {
            live_workers: self.workers.active(),
            suspects: self.workers.suspects(),
        };
        let now = Instant::now();
        // Each slot goes to the job its queue's share says (see `cluster::queues`).
        'slots: while assignments.len() < slots {
            for id in offer_order(&loads, &self.queues) {
                let Some(job) = self.jobs.get_mut(&id) else {
                    continue;
                };
                if let Some(a) = job.next_task(now, worker, &cluster) {
                    if let Some(waited) = a.waited {
                        self.metrics.assigned(a.kind().name(), waited);
                    }
                    let runtime = crate::wire::runtime(&job.spec, job.input_plan());
                    assignments.push(crate::wire::assignment(&a, &runtime));
                    if let Some(l) = loads.iter_mut().find(|l| l.id == id) {
                        l.running += 1;
                    }
                    continue 'slots;
                }
            }
            break;
        }
        assignments
    }

    /// Moves the jobs' cancellations into the workers' outboxes (cancellations for workers
    /// that are gone are dropped: their attempts died with them).
    pub(super) fn collect_cancels(&mut self) {
        for job in self.jobs.values_mut() {
            for c in job.take_cancels() {
                if self.workers.get(&c.worker).is_some() {
                    let attempt = pb::AttemptRef::from(&c.attempt);
                    self.outbox.entry(c.worker).or_default().push(attempt);
                }
            }
        }
    }

    /// A reducer of some job could not reach `worker`: it is suspect until it heartbeats
    /// again, and every job re-runs the map outputs it holds (Spark unregisters all outputs
    /// of an executor on a `FetchFailed` the same way), so reducers stop failing on it one
    /// output at a time.
    pub(super) fn worker_unreachable(&mut self, now: Instant, worker: &WorkerId) {
        if self.workers.mark_suspect(worker) {
            tracing::warn!(%worker, "worker suspect: a reducer could not reach it; no new tasks until it heartbeats");
        }
        for job in self.jobs.values_mut() {
            job.on_worker_unreachable(now, worker);
        }
    }

    /// Output I/O every job asked for since the last call.
    pub(super) fn take_effects(&mut self) -> Vec<OutputEffect> {
        let mut effects = std::mem::take(&mut self.effects);
        effects.extend(self.jobs.values_mut().flat_map(Job::take_effects));
        effects
    }

    /// Moves the jobs that ended into `history`, keeping what they still owe: the attempts
    /// to cancel go to the outbox, their output effects are kept for [`State::take_effects`],
    /// and every worker is told to drop their shuffle files. A job writing `_SUCCESS` stays
    /// until it knows how that went.
    pub(super) fn retire_ended(&mut self) {
        let ended: Vec<JobId> = self
            .jobs
            .values()
            .filter(|j| j.has_ended())
            .map(|j| j.id.clone())
            .collect();
        if ended.is_empty() {
            return;
        }
        // Slots a queue held for them are free for the jobs waiting behind.
        self.work_changed();
        self.collect_cancels();
        for id in ended {
            let Some(mut job) = self.jobs.remove(&id) else {
                continue;
            };
            self.effects.extend(job.take_effects());
            for (_, info) in self.workers.iter_mut() {
                info.to_drop.push(id.to_string());
            }
            let info = pb::JobInfo::from(&job.info());
            let took = info.finished_ms.saturating_sub(info.submitted_ms);
            let took = std::time::Duration::from_millis(took);
            self.metrics.job_ended(crate::state_name(info.state), took);
            if info.state == pb::JobState::Succeeded as i32 && !job.spec.incremental.is_empty() {
                self.record_files_read(&job);
            }
            self.alerts_out
                .push((job_alert(&info), job.spec.notify.clone()));
            self.record_ended(info);
        }
    }

    /// Remembers the files a successful incremental job read, so later runs of its name
    /// leave them out while they stay as they were.
    fn record_files_read(&mut self, job: &Job) {
        let files = job.input_files();
        let name = job.spec.incremental.clone();
        self.incremental
            .entry(name.clone())
            .or_default()
            .extend(files.iter().cloned());
        self.journal.send(crate::store::Event::FilesRead(
            crate::store::incremental::FilesRead {
                name,
                job: job.id.to_string(),
                files,
            },
        ));
    }

    /// Wakes the idle workers' held heartbeats: a task may be there for them.
    pub(super) fn work_changed(&self) {
        self.work.send_modify(|n| *n += 1);
    }

    /// Keeps an ended job's info for status queries and counts it in the totals.
    pub(super) fn record_ended(&mut self, info: pb::JobInfo) {
        self.ended.add(&info);
        self.history.insert(info.job_id.clone(), info);
        self.jobs_ended.send_modify(|n| *n += 1);
    }

    /// Applies the unreachable workers the jobs found.
    pub(super) fn collect_unreachable(&mut self) {
        let found: Vec<WorkerId> = self
            .jobs
            .values_mut()
            .flat_map(Job::take_unreachable)
            .collect();
        let now = Instant::now();
        for worker in found {
            self.worker_unreachable(now, &worker);
        }
    }

    /// The registered workers, oldest first.
    pub(super) fn workers_info(&self) -> Vec<pb::WorkerInfo> {
        let mut workers: Vec<pb::WorkerInfo> = self
            .workers
            .iter()
            .map(|(id, w)| pb::WorkerInfo {
                worker_id: id.to_string(),
                shuffle_addr: w.shuffle_addr.clone(),
                slots: w.slots,
                running: w.running,
                draining: w.draining,
                last_heartbeat_ms_ago: w.last_seen.elapsed().as_millis() as u64,
                registered_ms: w.registered_ms,
                suspect: w.suspect,
                memory: w.memory,
                ..Default::default()
            })
            .collect();
        workers.sort_by_key(|w| (w.registered_ms, w.worker_id.clone()));
        workers
    }

    /// Declares workers silent for longer than `timeout` lost: their attempts are re-queued
    /// and the map outputs they held re-created where still needed. Attempts past their
    /// job's task timeout fail.
    pub(super) fn expire_workers(&mut self, timeout: Duration) {
        let now = Instant::now();
        let before = self.workers_info();
        for worker in self.workers.expire(timeout) {
            tracing::warn!(%worker, ?timeout, "worker lost: no heartbeat within the timeout");
            if let Some(mut info) = before
                .iter()
                .find(|w| w.worker_id == worker.as_str())
                .cloned()
            {
                info.lost = true;
                info.lost_ms = crate::clock::now_ms();
                info.running = 0;
                if self.lost_workers.len() >= LOST_WORKERS_KEPT {
                    self.lost_workers.pop_front();
                }
                self.lost_workers.push_back(info);
            }
            self.outbox.remove(&worker);
            for job in self.jobs.values_mut() {
                job.on_worker_lost(now, &worker);
            }
            // Its attempts and map outputs are to run again.
            self.work_changed();
        }
        let overdue = self
            .jobs
            .values_mut()
            .map(|j| j.expire_job(now))
            .filter(|&failed| failed)
            .count();
        let expired: usize = self.jobs.values_mut().map(|j| j.expire_attempts(now)).sum();
        if expired + overdue > 0 {
            self.collect_cancels();
        }
        self.retire_ended();
    }
}

/// Carries out the output effects the jobs asked for (removing a failed job's output,
/// writing `_SUCCESS`) off the scheduler's lock, on a blocking thread, and hands each
/// `_SUCCESS` outcome back to its job.
pub(super) async fn carry_out_effects(state: &Arc<Mutex<State>>) {
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
            job.success_written(Instant::now(), result);
        }
    }
    state.retire_ended();
}

/// The alert of an ended job.
fn job_alert(info: &pb::JobInfo) -> crate::alerts::Alert {
    crate::alerts::Alert {
        kind: "job",
        id: info.job_id.clone(),
        name: info.name.clone(),
        run_key: info.run_key.clone(),
        state: crate::state_name(info.state).to_string(),
        error: info.error.clone(),
        started_ms: info.submitted_ms,
        finished_ms: info.finished_ms,
        rows_out: info.rows_out,
        bad_records: info.bad_records,
        output: info.output.clone(),
    }
}
