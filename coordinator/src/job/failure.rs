//! Retry budgets: what a failed attempt costs, and when the job gives up.
//!
//! A task's own faults count against `max_attempts`; losing a machine does not (Hadoop counts
//! such attempts as killed, not failed; Spark's `FetchFailed` does not count towards a task's
//! failures either). Each budget still has a cap, so a job cannot loop forever:
//!
//! | what happened | what it costs | the job fails when |
//! |---|---|---|
//! | an attempt failed (plugin error, I/O) | one failure of the task | the task failed `max_attempts` times |
//! | an attempt died with its worker | one lost attempt of the task | it lost [`MAX_LOST_ATTEMPTS`] (the task may be what kills its workers) |
//! | a reducer could not reach the worker holding a map output | nothing for the reducer: every output of that worker re-runs at once | the same worker was declared unreachable `max_attempts` times in the job (it heartbeat again each time, so it is alive but cannot serve) |
//! | a reducer got an answer, but the output is missing or damaged | one failure of that map task, which re-runs | the map failed `max_attempts` times |
//! | a report about an output that is no longer the registered one | nothing (an earlier report or a lost worker already re-ran it) | never |
//!
//! A dead worker is declared unreachable once: the first report re-runs every output it
//! holds, so the reports that follow name outputs that are no longer registered.

use sluice_common::ids::WorkerId;

/// Attempts a task may lose with their workers before the job gives up on it: a lost
/// attempt is not the task's fault, but a task that takes every worker down with it must not
/// loop forever.
pub const MAX_LOST_ATTEMPTS: u32 = 16;

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
        return FetchVerdict::WorkerUnreachable(WorkerId(report.worker.to_string()));
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
        let w1 = WorkerId("w1".into());
        let w2 = WorkerId("w2".into());
        for registered in [None, Some((2, &w1)), Some((1, &w2))] {
            assert_eq!(
                judge_fetch_failure(&report(true), registered, 0, 0, 4),
                FetchVerdict::Stale
            );
        }
    }

    #[test]
    fn an_unreachable_worker_costs_the_job_nothing_until_it_keeps_coming_back() {
        let w1 = WorkerId("w1".into());
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
        let w1 = WorkerId("w1".into());
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
