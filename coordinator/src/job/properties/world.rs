//! The model around the job: workers that run attempts, hold map outputs and read them as
//! reducers do, reports held up in the network, and restarts through the real job store.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use sluice_common::failure::{FailureReason, TaskFailure};
use sluice_common::ids::WorkerId;
use sluice_proto::pb;

use super::{MAPS, REDUCERS, SETTLE, Step, WORKERS};

/// The job's task timeout: a few clock advances.
const TASK_TIMEOUT_SECS: u64 = 30;

/// The id `tests::job` gives its job.
const JOB: &str = "job-1";
use crate::job::{
    AssignedTask, AttemptRef, ClusterView, Epoch, Job, MapOutput, Outcome, OutputLocation, Policy,
    ReduceOutput, TaskKind,
};
use crate::store::{self, Event, Journal};
use sluice_common::ids::JobId;

/// An attempt a model worker runs.
#[derive(Clone, Debug)]
pub(super) struct Attempt {
    kind: TaskKind,
    index: u32,
    attempt: u32,
    inputs: Vec<OutputLocation>,
    /// A reduce that was allowed to commit and renamed its part file; its report is next.
    committed: bool,
}

/// A model worker: what it runs and which map outputs it holds.
#[derive(Debug)]
pub(super) struct Worker {
    pub(super) id: WorkerId,
    pub(super) running: Vec<Attempt>,
    pub(super) outputs: HashSet<(u32, u32)>,
    /// Cancels sent to it, delivered with its next heartbeat.
    pub(super) cancels: Vec<AttemptRef>,
}

/// The job, its store, the workers and a clock.
pub(super) struct World {
    pub(super) job: Job,
    pub(super) dir: tempfile::TempDir,
    pub(super) journal: Journal,
    pub(super) workers: Vec<Worker>,
    pub(super) dead: HashSet<WorkerId>,
    pub(super) registered: u32,
    pub(super) now: Instant,
    /// The attempt whose commit was accepted, per partition.
    pub(super) accepted: Vec<Option<u32>>,
    /// Reports held up in the network: the worker that sent it and its attempt.
    pub(super) late: Vec<(WorkerId, Attempt)>,
    /// Attempts allowed to commit, per partition, since the coordinator (re)started.
    pub(super) grants: Vec<Vec<u32>>,
    /// Workers a reducer could not reach, until they heartbeat again.
    pub(super) suspects: HashSet<WorkerId>,
}

impl World {
    pub(super) fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let (_, journal) =
            store::open(&dir.path().join("state"), store::Durability::Durable).unwrap();
        let mut job = crate::job::tests::job(MAPS, REDUCERS, &dir.path().join("out"))
            .with_journal(journal.clone())
            .with_policy(Policy::default());
        // Short enough that clock advances time attempts out now and then.
        std::sync::Arc::make_mut(&mut job.spec).task_timeout_secs = TASK_TIMEOUT_SECS;
        journal.send(Event::JobSubmitted {
            seq: 1,
            info: job.info(),
            spec: pb::JobSpec::from(&*job.spec),
            splits: job.splits().iter().map(pb::Split::from).collect(),
            input_plan: Vec::new(),
            description: job.description.encode(),
        });
        let mut world = World {
            job,
            dir,
            journal,
            workers: Vec::new(),
            dead: HashSet::new(),
            registered: 0,
            now: Instant::now(),
            accepted: vec![None; REDUCERS as usize],
            late: Vec::new(),
            grants: vec![Vec::new(); REDUCERS as usize],
            suspects: HashSet::new(),
        };
        for _ in 0..WORKERS {
            let w = world.fresh_worker();
            world.workers.push(w);
        }
        world
    }

    fn fresh_worker(&mut self) -> Worker {
        self.registered += 1;
        Worker {
            id: WorkerId::new(format!("w{}", self.registered)),
            running: Vec::new(),
            outputs: HashSet::new(),
            cancels: Vec::new(),
        }
    }

    fn cluster(&self) -> ClusterView {
        ClusterView {
            live_workers: self.workers.len(),
            suspects: self.suspects.clone(),
        }
    }

    fn tick(&mut self) -> Instant {
        self.now += Duration::from_millis(1);
        self.now
    }

    pub(super) fn apply(&mut self, step: &Step) {
        match *step {
            Step::Assign { w } => self.assign(w),
            Step::Finish { w, k } => self.finish(w, k),
            Step::Fail { w, k, plugin } => {
                let reason = if plugin {
                    FailureReason::Plugin
                } else {
                    FailureReason::Io
                };
                self.fail(w, k, reason);
            }
            Step::FetchFail { w, k, i } => {
                let Some(a) = self.workers[w]
                    .running
                    .get(k % self.workers[w].running.len().max(1))
                else {
                    return;
                };
                let Some(input) = a.inputs.get(i % a.inputs.len().max(1)).cloned() else {
                    return;
                };
                let unreachable = self.dead.contains(&input.worker);
                self.fail(
                    w,
                    k,
                    FailureReason::FetchFailed {
                        map_index: input.map_index,
                        map_attempt: input.attempt,
                        worker_id: input.worker.to_string(),
                        worker_unreachable: unreachable,
                    },
                );
            }
            Step::Lose { w } => {
                let fresh = self.fresh_worker();
                let lost = std::mem::replace(&mut self.workers[w], fresh);
                self.dead.insert(lost.id.clone());
                let now = self.now;
                self.job.on_worker_lost(now, &lost.id);
            }
            Step::Advance { ms } => {
                self.now += Duration::from_millis(ms);
                self.suspects.clear();
                for w in &mut self.workers {
                    for c in std::mem::take(&mut w.cancels) {
                        w.running.retain(|a| {
                            !(a.kind == c.kind && a.index == c.index && a.attempt == c.attempt)
                        });
                    }
                }
                for i in 0..self.workers.len() {
                    let refs = self.refs(i);
                    let (now, id) = (self.now, self.workers[i].id.clone());
                    self.job.reconcile(now, &id, &refs, SETTLE);
                }
                self.job.expire_attempts(self.now);
            }
            Step::Restart => self.restart(),
            Step::Delay { w, k } => {
                if let Some(a) = self.take(w, k) {
                    self.late.push((self.workers[w].id.clone(), a));
                }
            }
            Step::Deliver { i } => {
                if self.late.is_empty() {
                    return;
                }
                let (id, a) = self.late.remove(i % self.late.len());
                // A worker that was lost or re-registered since is refused by the service.
                if let Some(w) = self.workers.iter().position(|x| x.id == id) {
                    self.finish_attempt(w, a);
                }
            }
        }
        self.settle_effects();
    }

    fn refs(&self, w: usize) -> Vec<AttemptRef> {
        self.workers[w]
            .running
            .iter()
            .map(|a| AttemptRef {
                job: JobId::new(JOB),
                kind: a.kind,
                index: a.index,
                attempt: a.attempt,
            })
            .collect()
    }

    pub(super) fn assign(&mut self, w: usize) {
        let cluster = self.cluster();
        let now = self.tick();
        let id = self.workers[w].id.clone();
        let Some(a) = self.job.next_task(now, &id, &cluster) else {
            return;
        };
        let attempt = match a.task {
            AssignedTask::Map { index, .. } => Attempt {
                kind: TaskKind::Map,
                index,
                attempt: a.attempt,
                inputs: Vec::new(),
                committed: false,
            },
            AssignedTask::Reduce {
                partition,
                map_outputs,
            } => Attempt {
                kind: TaskKind::Reduce,
                index: partition,
                attempt: a.attempt,
                inputs: map_outputs,
                committed: false,
            },
        };
        self.workers[w].running.push(attempt);
    }

    /// Takes worker `w`'s `k`-th attempt off it (modulo what it runs).
    fn take(&mut self, w: usize, k: usize) -> Option<Attempt> {
        let running = &mut self.workers[w].running;
        if running.is_empty() {
            return None;
        }
        let k = k % running.len();
        Some(running.remove(k))
    }

    fn report(&mut self, w: usize, a: &Attempt, outcome: Outcome) {
        let id = self.workers[w].id.clone();
        let was_done = a.kind == TaskKind::Reduce && self.job.reduces[a.index as usize].is_done();
        let now = self.tick();
        let all_done = self
            .job
            .on_report(now, a.kind, a.index, a.attempt, &id, "addr", outcome);
        if a.kind == TaskKind::Reduce && !was_done && self.job.reduces[a.index as usize].is_done() {
            let p = a.index as usize;
            assert_eq!(
                self.accepted[p], None,
                "partition {p} committed twice: attempt {} after {:?}",
                a.attempt, self.accepted[p]
            );
            self.accepted[p] = Some(a.attempt);
        }
        if all_done {
            self.begin_success();
        }
    }

    fn begin_success(&mut self) {
        if self.job.begin_success() {
            assert!(
                self.accepted.iter().all(Option::is_some),
                "_SUCCESS begun with partitions uncommitted: {:?}",
                self.accepted
            );
            let now = self.now;
            self.job.success_written(now, Ok(()));
        }
    }

    /// A map finishes; a reduce asks to commit (and stays, to report next time), or reports
    /// the commit it made.
    pub(super) fn finish(&mut self, w: usize, k: usize) {
        let Some(a) = self.take(w, k) else { return };
        if a.kind == TaskKind::Reduce && !a.committed {
            if let Some(a) = self.commit(w, a) {
                self.workers[w].running.push(a);
            }
            return;
        }
        self.finish_attempt(w, a);
    }

    /// A reduce reads its inputs and asks to commit: the attempt, committed, when allowed;
    /// otherwise its failure is reported.
    fn commit(&mut self, w: usize, mut a: Attempt) -> Option<Attempt> {
        // A reducer reads every input first; a missing one is a fetch failure.
        let missing = a.inputs.iter().find(|l| {
            !self
                .workers
                .iter()
                .any(|x| x.id == l.worker && x.outputs.contains(&(l.map_index, l.attempt)))
        });
        if let Some(l) = missing.cloned() {
            let unreachable = self.dead.contains(&l.worker);
            let failure = fetch_failure(&l, unreachable);
            self.report(w, &a, Outcome::Failed(failure));
            return None;
        }
        let id = self.workers[w].id.clone();
        if self.job.can_commit(a.index, a.attempt, &id) {
            self.granted(a.index, a.attempt);
            a.committed = true;
            Some(a)
        } else {
            let failure = TaskFailure {
                message: "commit denied".into(),
                retryable: true,
                reason: FailureReason::CommitDenied { partition: a.index },
            };
            self.report(w, &a, Outcome::Failed(failure));
            None
        }
    }

    fn finish_attempt(&mut self, w: usize, a: Attempt) {
        match a.kind {
            TaskKind::Map => {
                self.workers[w].outputs.insert((a.index, a.attempt));
                self.report(w, &a, Outcome::MapDone(MapOutput::default()));
            }
            TaskKind::Reduce => {
                let a = if a.committed {
                    a
                } else {
                    match self.commit(w, a) {
                        Some(a) => a,
                        None => return,
                    }
                };
                self.report(w, &a, Outcome::ReduceDone(ReduceOutput::default()));
            }
        }
    }

    /// `attempt` may rename its part file into place: no other attempt of the partition may
    /// hold that right still, i.e. still run or have committed.
    fn granted(&mut self, partition: u32, attempt: u32) {
        let p = partition as usize;
        let task = &self.job.reduces[p];
        for &b in self.grants[p].iter().filter(|&&b| b != attempt) {
            let still_running = task.running().iter().any(|r| r.attempt == b);
            assert!(
                !still_running && self.accepted[p] != Some(b),
                "partition {p}: attempt {attempt} may commit while attempt {b} may too"
            );
        }
        self.grants[p].push(attempt);
    }

    fn fail(&mut self, w: usize, k: usize, reason: FailureReason) {
        let Some(a) = self.take(w, k) else { return };
        let failure = TaskFailure {
            message: format!("{reason:?}"),
            retryable: true,
            reason,
        };
        self.report(w, &a, Outcome::Failed(failure));
    }

    /// Cancels wait for their worker's next heartbeat; unreachable reports suspect the
    /// worker everywhere.
    pub(super) fn settle_effects(&mut self) {
        for c in self.job.take_cancels() {
            if let Some(w) = self.workers.iter_mut().find(|w| w.id == c.worker) {
                w.cancels.push(c.attempt);
            }
        }
        for w in self.job.take_unreachable() {
            self.job.on_worker_unreachable(self.now, &w);
            self.suspects.insert(w);
        }
        self.job.take_effects();
    }

    /// The coordinator restarts: everything journaled survives, nothing else. Each worker
    /// registers anew (a new id), stops what it ran for the old coordinator and offers the
    /// map outputs it holds.
    fn restart(&mut self) {
        if self.job.is_finished() {
            return;
        }
        self.journal.sync().unwrap();
        let (mut history, journal) =
            store::open(&self.dir.path().join("state"), store::Durability::Durable).unwrap();
        let stored = history
            .resumable
            .pop()
            .expect("an unfinished job is resumable");
        self.now += Duration::from_millis(1);
        let stored = crate::wire::resumed(stored).unwrap();
        let epoch = Epoch {
            at: self.now,
            unix_ms: 2_000,
        };
        self.job =
            Job::resume(epoch, stored, Policy::default(), SETTLE).with_journal(journal.clone());
        self.journal = journal;
        self.grants = vec![Vec::new(); REDUCERS as usize];
        self.begin_success();
        for i in 0..self.workers.len() {
            let mut fresh = self.fresh_worker();
            let placeholder = Worker {
                id: fresh.id.clone(),
                running: Vec::new(),
                outputs: HashSet::new(),
                cancels: Vec::new(),
            };
            let old = std::mem::replace(&mut self.workers[i], placeholder);
            self.dead.insert(old.id.clone());
            fresh.outputs = old.outputs;
            let held: Vec<AttemptRef> = fresh
                .outputs
                .iter()
                .map(|&(index, attempt)| AttemptRef {
                    job: JobId::new(JOB),
                    kind: TaskKind::Map,
                    index,
                    attempt,
                })
                .collect();
            self.job.claim(&fresh.id, "addr", &held);
            self.workers[i] = fresh;
        }
    }
}

fn fetch_failure(l: &OutputLocation, unreachable: bool) -> TaskFailure {
    TaskFailure {
        message: format!("map {} attempt {} is gone", l.map_index, l.attempt),
        retryable: true,
        reason: FailureReason::FetchFailed {
            map_index: l.map_index,
            map_attempt: l.attempt,
            worker_id: l.worker.to_string(),
            worker_unreachable: unreachable,
        },
    }
}
