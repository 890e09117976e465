//! Retry budgets: what a failed attempt costs, and when the job gives up.
//!
//! A task's own faults count against `max_attempts`; losing a machine does not (Hadoop counts
//! such attempts as killed, not failed; Spark's `FetchFailed` does not count towards a task's
//! failures either). Each budget still has a cap, so a job cannot loop forever:
//!
//! | what happened | what it costs | the job fails when |
//! |---|---|---|
//! | an attempt failed (plugin error, I/O) | one failure of the task | the task failed `max_attempts` times |
//! | an attempt died with its worker | one lost attempt of the task | it lost [`MAX_LOST_ATTEMPTS`] while the job's only attempt there (the task may be what kills its workers), or [`MAX_LOST_ATTEMPTS_SHARED`] in all |
//! | a reducer could not reach the worker holding a map output | nothing for the reducer: every output of that worker re-runs at once | the same worker was declared unreachable `max_attempts` times in the job (it heartbeat again each time, so it is alive but cannot serve) |
//! | a reducer got an answer, but the output is missing or damaged | one failure of that map task, which re-runs | the map failed `max_attempts` times |
//! | a report about an output that is no longer the registered one | nothing (an earlier report or a lost worker already re-ran it) | never |
//!
//! A dead worker is declared unreachable once: the first report re-runs every output it
//! holds, so the reports that follow name outputs that are no longer registered.

use std::time::{Duration, Instant};

use sluice_common::failure::{FailureReason, TaskFailure};
use sluice_common::ids::WorkerId;

use super::events::EventKind;
use super::report::{AttemptRef, Outcome};
use super::tasks::{TaskKind, TaskState, TaskStatus};
use super::{Cancel, Job};

/// Attempts a task may lose with their workers, while it was the job's only attempt there,
/// before the job gives up on it: a lost attempt is not the task's fault, but a task that
/// takes every worker down with it must not loop forever.
pub const MAX_LOST_ATTEMPTS: u32 = 16;

/// Attempts a task may lose with their workers in all, when other attempts ran beside it
/// (any of them may have brought the worker down): a higher bound, so a task is not given
/// up for its neighbours' crashes, that still ends a task that crashes its workers whatever
/// runs beside it.
pub const MAX_LOST_ATTEMPTS_SHARED: u32 = 64;

/// Whether a task that lost `alone` attempts as the job's only attempt on their worker and
/// `total` attempts in all has lost too many.
pub fn lost_too_many(alone: u32, total: u32) -> bool {
    alone > MAX_LOST_ATTEMPTS || total > MAX_LOST_ATTEMPTS_SHARED
}

/// A reducer's report that it could not fetch one map output.
#[derive(Debug, Clone, Copy)]
pub struct FetchReport<'a> {
    /// The map task.
    pub map_index: u32,
    /// The attempt whose output the reducer asked for.
    pub map_attempt: u32,
    /// The worker it asked.
    pub worker: &'a str,
    /// Whether that worker could not be reached at all.
    pub worker_unreachable: bool,
    /// The reducer's error.
    pub message: &'a str,
}

/// What the job makes of a [`FetchReport`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchVerdict {
    /// The output named is no longer the registered one: already being re-created.
    Stale,
    /// The worker is gone or cannot serve: re-run every map output it holds, at once.
    WorkerUnreachable(WorkerId),
    /// The worker answered but the output is missing or damaged: re-run that map, counting
    /// one failure of the map task.
    OutputLost,
    /// The job fails, for this reason.
    GiveUp(String),
}

/// Judges one fetch failure. `registered` is the map's output as the lineage holds it now
/// (attempt and worker), `map_failures` the map task's failures so far, and
/// `declared_unreachable` how often this job already declared the reported worker
/// unreachable.
pub fn judge_fetch_failure(
    report: &FetchReport<'_>,
    registered: Option<(u32, &WorkerId)>,
    map_failures: u32,
    declared_unreachable: u32,
    max_attempts: u32,
) -> FetchVerdict {
    let current = registered
        .is_some_and(|(attempt, w)| attempt == report.map_attempt && w.as_str() == report.worker);
    if !current {
        return FetchVerdict::Stale;
    }
    if report.worker_unreachable {
        let times = declared_unreachable + 1;
        if times > max_attempts {
            return FetchVerdict::GiveUp(format!(
                "reducers could not reach worker {} {times} times, though it heartbeat again \
                 after each; last error: {}",
                report.worker, report.message
            ));
        }
        return FetchVerdict::WorkerUnreachable(WorkerId::new(report.worker));
    }
    let failures = map_failures + 1;
    if failures >= max_attempts {
        return FetchVerdict::GiveUp(format!(
            "map task {} failed {failures} times; last error: its output could not be \
             fetched: {}",
            report.map_index, report.message
        ));
    }
    FetchVerdict::OutputLost
}

impl Job {
    /// A task may have gone back to Pending: the next search for a task starts from the
    /// first of each stage again (see `Job::pending_from`). Every path here that re-queues a
    /// task calls it.
    fn requeued(&mut self) {
        self.pending_from = [0; 2];
    }

    /// Applies a failed attempt of task `i` of stage `kind`: a fetch failure re-runs the
    /// map output it names, a lost commit race costs nothing, anything else is one failure
    /// of the task (retried while its budget lasts).
    pub(super) fn on_failure(
        &mut self,
        now: Instant,
        kind: TaskKind,
        i: usize,
        attempt: u32,
        worker: &WorkerId,
        failure: TaskFailure,
    ) {
        self.requeued();
        let is_map = kind == TaskKind::Map;
        let max_attempts = self.policy.max_attempts;
        if !is_map && self.commits.authorized(i as u32) == Some(attempt) {
            // This attempt will not commit: free its grant.
            self.commits.revoke(i as u32);
        }
        // Borrowing the stage's field alone leaves the commits and the id readable.
        let task = match kind {
            TaskKind::Map => &mut self.maps[i],
            TaskKind::Reduce => &mut self.reduces[i],
        };
        // Drop the failed attempt; a backup still running carries on alone.
        if let TaskStatus::Running(r) = &mut task.status {
            r.retain(|r| r.attempt != attempt);
        }
        let others_running = !task.running().is_empty();
        if let (
            false,
            FailureReason::FetchFailed {
                map_index,
                map_attempt,
                worker_id,
                worker_unreachable,
            },
        ) = (is_map, &failure.reason)
        {
            // Not the reducer's fault: it runs again once the output is back.
            if !others_running {
                task.status = TaskStatus::Pending;
            }
            let report = FetchReport {
                map_index: *map_index,
                map_attempt: *map_attempt,
                worker: worker_id,
                worker_unreachable: *worker_unreachable,
                message: &failure.message,
            };
            self.on_fetch_failure(now, &report);
            return;
        }
        // A refused commit is never charged, even when the grant has moved on since the
        // refusal (the holder was lost or failed meanwhile).
        let lost_the_commit = !is_map
            && (matches!(failure.reason, FailureReason::CommitDenied { .. })
                || self
                    .commits
                    .authorized(i as u32)
                    .is_some_and(|a| a != attempt));
        if lost_the_commit {
            // Another attempt holds the commit (a speculation race): not this task's fault.
            if !others_running && !task.is_done() {
                task.status = TaskStatus::Pending;
            }
            self.release_orphan_grants();
            return;
        }
        task.failures += 1;
        // The next attempt goes elsewhere while another worker can take it: what failed may
        // be this worker's (its disk full or failing, a plugin crashing on its machine), as
        // Spark's `excludeOnFailure` assumes.
        task.failed_on.insert(worker.clone());
        if !failure.retryable || task.failures >= max_attempts {
            let why = if failure.retryable {
                format!(
                    "{kind} task {i} failed {} times; last error: {}",
                    task.failures, failure.message
                )
            } else {
                format!("{kind} task {i} failed: {}", failure.message)
            };
            self.fail(now, why);
        } else if !others_running {
            tracing::info!(job = %self.id, %kind, index = i, error = %failure.message, "retrying task");
            task.status = TaskStatus::Pending;
        }
        self.release_orphan_grants();
    }

    /// Applies a reducer's fetch failure: see [`failure`] for what it costs.
    pub(super) fn on_fetch_failure(&mut self, now: Instant, report: &FetchReport<'_>) {
        self.requeued();
        let m = report.map_index as usize;
        let Some(map) = self.maps.get(m) else {
            return;
        };
        let declared = self
            .unreachable
            .get(&WorkerId::new(report.worker))
            .copied()
            .unwrap_or(0);
        let verdict = judge_fetch_failure(
            report,
            map.done_attempt(),
            map.failures,
            declared,
            self.policy.max_attempts,
        );
        match verdict {
            FetchVerdict::Stale => {}
            FetchVerdict::OutputLost => {
                tracing::info!(job = %self.id, map = m, worker = report.worker, error = report.message, "map output unreadable on a live worker, re-running the map");
                let detail = format!("its output is unreadable: {}", report.message);
                let on = WorkerId::new(report.worker);
                let task = Some((TaskKind::Map, m));
                let attempt = report.map_attempt;
                self.event(now, EventKind::MapRerun, task, attempt, Some(&on), detail);
                let map = &mut self.maps[m];
                map.failures += 1;
                map.failed_on.insert(WorkerId::new(report.worker));
                map.status = TaskStatus::Pending;
                self.lineage.forget(report.map_index);
            }
            FetchVerdict::WorkerUnreachable(worker) => {
                tracing::warn!(job = %self.id, %worker, error = report.message, "worker unreachable from a reducer: all its map outputs re-run");
                let detail = report.message.to_string();
                self.event(
                    now,
                    EventKind::WorkerUnreachable,
                    None,
                    0,
                    Some(&worker),
                    detail,
                );
                *self.unreachable.entry(worker.clone()).or_default() += 1;
                self.found_unreachable.push(worker);
            }
            FetchVerdict::GiveUp(why) => self.fail(now, why),
        }
    }

    /// A reducer could not reach `worker`: every map output it holds is re-created from its
    /// split if an unfinished reduce still needs it, preferably elsewhere. Its running
    /// attempts stay until it is lost (they get backups meanwhile, see [`ClusterView`](super::ClusterView)).
    pub fn on_worker_unreachable(&mut self, now: Instant, worker: &WorkerId) {
        if self.is_finished() {
            return;
        }
        // It may be alive but unable to serve: the re-runs go elsewhere while they can.
        let rerun = self.forget_outputs_on(now, worker, true);
        if rerun > 0 {
            tracing::info!(job = %self.id, %worker, rerun, "map outputs of an unreachable worker re-run at once");
        }
    }

    /// Forgets every map output held by `worker`, while a reduce still needs them, and
    /// returns how many maps run again; with `avoid`, not on that worker while others can.
    pub(super) fn forget_outputs_on(
        &mut self,
        now: Instant,
        worker: &WorkerId,
        avoid: bool,
    ) -> usize {
        if self.reduces.iter().all(TaskState::is_done) {
            return 0;
        }
        self.requeued();
        let mut rerun = Vec::new();
        for (i, t) in self.maps.iter_mut().enumerate() {
            if let Some((attempt, _)) = t.done_attempt().filter(|(_, w)| *w == worker) {
                rerun.push((i, attempt));
                t.status = TaskStatus::Pending;
                if avoid {
                    t.failed_on.insert(worker.clone());
                }
                self.lineage.forget(i as u32);
            }
        }
        let why = if avoid {
            "its worker is unreachable"
        } else {
            "its worker was lost"
        };
        for &(i, attempt) in &rerun {
            let task = Some((TaskKind::Map, i));
            let detail = format!("the output of attempt {attempt} is lost: {why}");
            self.event(
                now,
                EventKind::MapRerun,
                task,
                attempt,
                Some(worker),
                detail,
            );
        }
        rerun.len()
    }

    /// Frees commit grants held by attempts that no longer run (a lost worker, a failure):
    /// otherwise no other attempt could ever commit that partition. Committing again is
    /// safe, the bytes are the same.
    pub(super) fn release_orphan_grants(&mut self) {
        for (r, t) in self.reduces.iter().enumerate() {
            if t.is_done() {
                continue;
            }
            if let Some(a) = self.commits.authorized(r as u32)
                && !t.running().iter().any(|x| x.attempt == a)
            {
                self.commits.revoke(r as u32);
            }
        }
    }

    /// `worker` says which attempts it runs: attempts the coordinator gave it more than
    /// `settle` ago that it does not run (their report or the assignment itself was lost)
    /// are treated as lost.
    pub fn reconcile(
        &mut self,
        now: Instant,
        worker: &WorkerId,
        running: &[AttemptRef],
        settle: Duration,
    ) {
        if self.is_finished() {
            return;
        }
        let mut changed = false;
        for (kind, tasks) in [
            (TaskKind::Map, &mut self.maps),
            (TaskKind::Reduce, &mut self.reduces),
        ] {
            for (i, t) in tasks.iter_mut().enumerate() {
                let TaskStatus::Running(r) = &mut t.status else {
                    continue;
                };
                let before = r.len();
                r.retain(|a| {
                    a.worker != *worker
                        || now.saturating_duration_since(a.started) < settle
                        || running.iter().any(|x| {
                            x.job == self.id
                                && x.kind == kind
                                && x.index as usize == i
                                && x.attempt == a.attempt
                        })
                });
                if r.len() != before {
                    tracing::warn!(job = %self.id, index = i, %kind, %worker, "attempt missing on its worker: re-queued");
                    t.lost += (before - r.len()) as u32;
                    changed = true;
                    if r.is_empty() {
                        t.status = TaskStatus::Pending;
                    }
                }
            }
        }
        if changed {
            self.requeued();
            self.release_orphan_grants();
        }
    }

    /// Fails the job if it has run longer than its `--timeout` at `now` (counted from its
    /// submission, across coordinator restarts); a job writing `_SUCCESS` is let finish.
    /// Returns whether it failed.
    pub fn expire_job(&mut self, now: Instant) -> bool {
        let Some(limit) = self.spec.job_timeout() else {
            return false;
        };
        if self.status != super::JobStatus::Running {
            return false;
        }
        let ran_ms = self.epoch.unix_ms_at(now).saturating_sub(self.submitted_ms);
        if u128::from(ran_ms) <= limit.as_millis() {
            return false;
        }
        let message = format!(
            "the job ran longer than its --timeout of {} s ({} of {} maps and {} of {} reduces done)",
            limit.as_secs(),
            self.maps.iter().filter(|t| t.is_done()).count(),
            self.maps.len(),
            self.reduces.iter().filter(|t| t.is_done()).count(),
            self.reduces.len(),
        );
        self.fail(now, message);
        true
    }

    /// Attempts that have run longer than the job's task timeout at `now` fail (they are
    /// stopped on their worker and retried, elsewhere if possible): a hung plugin or a stuck
    /// disk must not hold the job forever. Returns how many.
    pub fn expire_attempts(&mut self, now: Instant) -> usize {
        let Some(limit) = self.spec.task_timeout() else {
            return 0;
        };
        if self.is_finished() {
            return 0;
        }
        let mut late = Vec::new();
        for (kind, tasks) in [
            (TaskKind::Map, &self.maps),
            (TaskKind::Reduce, &self.reduces),
        ] {
            for (i, t) in tasks.iter().enumerate() {
                for r in t.running() {
                    if now.saturating_duration_since(r.started) > limit {
                        late.push((kind, i, r.clone()));
                    }
                }
            }
        }
        for (kind, i, r) in &late {
            tracing::warn!(job = %self.id, %kind, index = i, attempt = r.attempt, worker = %r.worker, ?limit, "attempt timed out");
            self.cancels.push(Cancel::of(&self.id, *kind, *i, r));
            let failure = TaskFailure {
                message: format!(
                    "{kind} attempt {} on {} ran longer than the task timeout of {} s",
                    r.attempt,
                    r.worker,
                    limit.as_secs()
                ),
                retryable: true,
                reason: FailureReason::Io,
            };
            let outcome = Outcome::Failed(failure);
            self.on_report(now, *kind, *i as u32, r.attempt, &r.worker, "", outcome);
        }
        late.len()
    }

    /// `worker` is gone at `now`: its running attempts are re-queued, and the map outputs it
    /// held are re-created from their splits if an unfinished reduce still needs them.
    pub fn on_worker_lost(&mut self, now: Instant, worker: &WorkerId) {
        self.requeued();
        if self.is_finished() {
            return;
        }
        let mut give_up = None;
        // A loss is the task's own to answer for only when nothing else of the job ran there.
        let on_worker: usize = self
            .maps
            .iter()
            .chain(&self.reduces)
            .map(|t| t.running().iter().filter(|a| a.worker == *worker).count())
            .sum();
        let mut lost_attempts = Vec::new();
        for (kind, tasks) in [
            (TaskKind::Map, &mut self.maps),
            (TaskKind::Reduce, &mut self.reduces),
        ] {
            for (i, t) in tasks.iter_mut().enumerate() {
                // A lost worker never comes back (a restarted one registers anew): it no
                // longer counts among the workers a task failed on.
                t.failed_on.remove(worker);
                if let TaskStatus::Running(r) = &mut t.status {
                    let before = r.len();
                    for a in r.iter().filter(|a| a.worker == *worker) {
                        lost_attempts.push((kind, i, a.attempt));
                    }
                    r.retain(|a| a.worker != *worker);
                    let lost = (before - r.len()) as u32;
                    t.lost += lost;
                    if on_worker == 1 {
                        t.lost_alone += lost;
                    }
                    if lost > 0 && r.is_empty() {
                        t.status = TaskStatus::Pending;
                    }
                    if lost_too_many(t.lost_alone, t.lost) {
                        give_up = Some(format!(
                            "{kind} task {i} lost {} attempts with their workers ({} of them \
                             running alone there)",
                            t.lost, t.lost_alone
                        ));
                    }
                }
            }
        }
        for &(kind, i, attempt) in &lost_attempts {
            let detail = "lost with its worker".to_string();
            self.event(
                now,
                EventKind::Lost,
                Some((kind, i)),
                attempt,
                Some(worker),
                detail,
            );
        }
        let rerun = self.forget_outputs_on(now, worker, false);
        if rerun > 0 || !lost_attempts.is_empty() {
            let detail = format!(
                "{} running attempt(s) lost, {rerun} map output(s) to re-run",
                lost_attempts.len()
            );
            self.event(now, EventKind::WorkerLost, None, 0, Some(worker), detail);
        }
        if rerun > 0 {
            tracing::info!(job = %self.id, %worker, rerun, "map outputs lost with their worker, re-running the maps");
        }
        self.release_orphan_grants();
        if let Some(why) = give_up {
            self.fail(now, why);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(unreachable: bool) -> FetchReport<'static> {
        FetchReport {
            map_index: 3,
            map_attempt: 1,
            worker: "w1",
            worker_unreachable: unreachable,
            message: "tcp connect error",
        }
    }

    #[test]
    fn a_report_about_an_output_no_longer_registered_is_stale() {
        let w1 = WorkerId::new("w1");
        let w2 = WorkerId::new("w2");
        for registered in [None, Some((2, &w1)), Some((1, &w2))] {
            assert_eq!(
                judge_fetch_failure(&report(true), registered, 0, 0, 4),
                FetchVerdict::Stale
            );
        }
    }

    #[test]
    fn an_unreachable_worker_costs_the_job_nothing_until_it_keeps_coming_back() {
        let w1 = WorkerId::new("w1");
        let registered = Some((1, &w1));
        // Map failures do not matter: the map did nothing wrong.
        assert_eq!(
            judge_fetch_failure(&report(true), registered, 3, 0, 4),
            FetchVerdict::WorkerUnreachable(w1.clone())
        );
        assert_eq!(
            judge_fetch_failure(&report(true), registered, 0, 3, 4),
            FetchVerdict::WorkerUnreachable(w1.clone())
        );
        let FetchVerdict::GiveUp(why) = judge_fetch_failure(&report(true), registered, 0, 4, 4)
        else {
            panic!("a worker declared unreachable a fifth time ends the job");
        };
        assert!(why.contains("worker w1 5 times") && why.contains("tcp connect error"));
    }

    #[test]
    fn a_damaged_output_on_a_live_worker_counts_against_its_map() {
        let w1 = WorkerId::new("w1");
        let registered = Some((1, &w1));
        assert_eq!(
            judge_fetch_failure(&report(false), registered, 2, 0, 4),
            FetchVerdict::OutputLost
        );
        let FetchVerdict::GiveUp(why) = judge_fetch_failure(&report(false), registered, 3, 0, 4)
        else {
            panic!("the map's fourth failure ends the job");
        };
        assert!(why.contains("map task 3 failed 4 times"), "{why}");
    }
}
