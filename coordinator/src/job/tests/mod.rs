//! Tests of the job state machine.

use super::*;
use sluice_common::failure::{FailureReason, TaskFailure};
use sluice_common::spec::InputFormat;
use sluice_common::split::SplitRange;
use std::cell::Cell;
use std::collections::HashSet;

#[test]
fn progress_is_journaled_about_a_hundred_times_a_job() {
    assert!(progress_due(1, 1));
    assert!(progress_due(1, 150));
    assert!(!progress_due(199, 20_000));
    assert!(progress_due(200, 20_000));
    let journaled = (0..20_000).fold((0, 0), |(since, n), _| {
        if progress_due(since + 1, 20_000) {
            (0, n + 1)
        } else {
            (since + 1, n)
        }
    });
    assert_eq!(journaled.1, 100);
}

thread_local! {
    /// Each test's clock (tests run on threads of their own): a start and an offset.
    static CLOCK: Cell<(Option<Instant>, Duration)> = const { Cell::new((None, Duration::ZERO)) };
}

/// The test clock: a fixed start, moving 1 ms per reading (so every task takes some time)
/// and further by [`advance`]. No test sleeps.
fn now() -> Instant {
    CLOCK.with(|c| {
        let (start, offset) = c.get();
        let start = start.unwrap_or_else(Instant::now);
        c.set((Some(start), offset + Duration::from_millis(1)));
        start + offset
    })
}

/// Moves the test clock on by `d`.
fn advance(d: Duration) {
    CLOCK.with(|c| {
        let (start, offset) = c.get();
        c.set((start, offset + d));
    });
}

/// A job `job-1` of `maps` one-byte text splits and `reducers` partitions, writing to
/// `output`, with a custom reduce.
pub(super) fn job(maps: usize, reducers: u32, output: &std::path::Path) -> Job {
    let mut spec = JobSpec::new(
        "p.so".into(),
        vec!["in".into()],
        InputFormat::Text,
        output.to_string_lossy().into_owned(),
    );
    spec.reducers = reducers;
    let splits = (0..maps)
        .map(|i| Split {
            path: format!("f{i}"),
            range: SplitRange::Bytes { start: 0, end: 1 },
            input: String::new(),
            stamp: None,
        })
        .collect();
    let description = JobDescription {
        name: "t".into(),
        key_columns: vec!["k".into()],
        reduce: sluice_sdk::ReduceKind::Custom,
        input_columns: None,
        rules: Vec::new(),
        checks: Vec::new(),
        sort_columns: Vec::new(),
    };
    let submitted = Epoch {
        at: now(),
        unix_ms: 1_000,
    };
    Job::new(
        JobId::new("job-1"),
        spec,
        description,
        Vec::new(),
        splits,
        submitted,
    )
}

fn live(workers: usize) -> ClusterView {
    ClusterView {
        live_workers: workers,
        suspects: HashSet::new(),
    }
}

fn finish_map(j: &mut Job, w: &WorkerId, index: u32, attempt: u32) {
    j.on_report(
        now(),
        TaskKind::Map,
        index,
        attempt,
        w,
        "addr",
        Outcome::MapDone(MapOutput::default()),
    );
}

/// `w1` answered that the output of `map_index` attempt `map_attempt` is unreadable.
fn fetch_failed(map_index: u32, map_attempt: u32) -> Outcome {
    fetch_failed_from("w1", map_index, map_attempt, false)
}

fn fetch_failed_from(worker: &str, map_index: u32, map_attempt: u32, unreachable: bool) -> Outcome {
    Outcome::Failed(TaskFailure {
        message: "no output here".into(),
        retryable: true,
        reason: FailureReason::FetchFailed {
            map_index,
            map_attempt,
            worker_id: worker.into(),
            worker_unreachable: unreachable,
        },
    })
}

#[test]
fn a_lost_map_output_reruns_the_map_once_and_the_reduce_waits() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = job(2, 2, dir.path());
    let w = WorkerId::new("w1");
    for _ in 0..2 {
        let a = j.next_task(now(), &w, &live(1)).unwrap();
        finish_map(&mut j, &w, map_index(&a), a.attempt);
    }
    let (r0, r1) = (
        j.next_task(now(), &w, &live(1)).unwrap(),
        j.next_task(now(), &w, &live(1)).unwrap(),
    );
    // Both reducers lose the same output of map 1 (attempt 0): it re-runs once.
    j.on_report(
        now(),
        TaskKind::Reduce,
        0,
        r0.attempt,
        &w,
        "addr",
        fetch_failed(1, 0),
    );
    let a = j.next_task(now(), &w, &live(1)).unwrap();
    assert_eq!((map_index(&a), a.attempt), (1, 1), "the lost map re-runs");
    j.on_report(
        now(),
        TaskKind::Reduce,
        1,
        r1.attempt,
        &w,
        "addr",
        fetch_failed(1, 0),
    );
    assert!(
        j.next_task(now(), &w, &live(1)).is_none(),
        "no second re-run; reduces wait for the map"
    );
    finish_map(&mut j, &w, 1, 1);
    let again = j.next_task(now(), &w, &live(1)).unwrap();
    assert_eq!(again.kind(), TaskKind::Reduce);
    assert!(again.attempt > r0.attempt, "attempt ids are never reused");
    assert!(!j.is_finished());
}

#[test]
fn an_output_a_live_worker_cannot_serve_counts_against_its_map() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = job(1, 1, dir.path());
    let w = WorkerId::new("w1");
    for round in 0..MAX_ATTEMPTS {
        assert!(!j.is_finished(), "round {round}: {:?}", j.status);
        let a = j.next_task(now(), &w, &live(1)).unwrap();
        assert_eq!(a.attempt, round, "the map re-runs after each loss");
        finish_map(&mut j, &w, 0, a.attempt);
        let r = j.next_task(now(), &w, &live(1)).unwrap();
        j.on_report(
            now(),
            TaskKind::Reduce,
            0,
            r.attempt,
            &w,
            "addr",
            fetch_failed(0, round),
        );
    }
    assert!(
        matches!(&j.status, JobStatus::Failed(m)
            if m.contains("map task 0 failed 4 times") && m.contains("no output here")),
        "{:?}",
        j.status
    );
    assert!(j.take_unreachable().is_empty(), "the worker answered");
}

/// Runs `maps` maps, map `i` on `on(i)`, and assigns `reduces` reduces to `reducer`.
fn maps_done_then_reduces(
    j: &mut Job,
    maps: usize,
    on: impl Fn(usize) -> WorkerId,
    reducer: &WorkerId,
    reduces: usize,
) -> Vec<Assignment> {
    for i in 0..maps {
        let w = on(i);
        let a = j.next_task(now(), &w, &live(2)).unwrap();
        assert_eq!(map_index(&a), i as u32);
        finish_map(j, &w, i as u32, a.attempt);
    }
    (0..reduces)
        .map(|_| j.next_task(now(), reducer, &live(2)).unwrap())
        .collect()
}

#[test]
fn an_unreachable_worker_has_every_output_rerun_at_once_and_the_reducer_is_not_charged() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = job(4, 2, dir.path());
    let (w1, w2) = (WorkerId::new("w1"), WorkerId::new("w2"));
    let on = |i: usize| if i < 3 { w1.clone() } else { w2.clone() };
    let r = maps_done_then_reduces(&mut j, 4, on, &w2, 2);
    j.on_report(
        now(),
        TaskKind::Reduce,
        0,
        r[0].attempt,
        &w2,
        "addr",
        fetch_failed_from("w1", 0, 0, true),
    );
    assert_eq!(j.take_unreachable(), vec![w1.clone()]);
    j.on_worker_unreachable(now(), &w1);
    // The other reducer names another output of the same worker: already being re-run.
    j.on_report(
        now(),
        TaskKind::Reduce,
        1,
        r[1].attempt,
        &w2,
        "addr",
        fetch_failed_from("w1", 2, 0, true),
    );
    assert!(
        j.take_unreachable().is_empty(),
        "a dead worker is declared once"
    );
    let mut again: Vec<u32> = (0..3)
        .map(|_| map_index(&j.next_task(now(), &w2, &live(2)).unwrap()))
        .collect();
    again.sort();
    assert_eq!(
        again,
        [0, 1, 2],
        "every output of w1 re-runs, map 3's is kept"
    );
    assert!(
        j.next_task(now(), &w2, &live(2)).is_none(),
        "reduces wait for the maps"
    );
    assert!(j.reduces.iter().all(|t| t.failures == 0));
    assert!(!j.is_finished());
}

#[test]
fn machines_lost_one_after_another_never_use_up_a_reducers_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = job(1, 1, dir.path());
    let reducer = WorkerId::new("reducer");
    // Each round the map runs on a new worker, which dies before the reducer fetches.
    for round in 0..3 * MAX_ATTEMPTS {
        let holder = WorkerId::new(format!("w{round}"));
        let a = j.next_task(now(), &holder, &live(2)).unwrap();
        finish_map(&mut j, &holder, 0, a.attempt);
        let r = j.next_task(now(), &reducer, &live(2)).unwrap();
        let failed = fetch_failed_from(holder.as_str(), 0, a.attempt, true);
        j.on_report(
            now(),
            TaskKind::Reduce,
            0,
            r.attempt,
            &reducer,
            "addr",
            failed,
        );
        for w in j.take_unreachable() {
            j.on_worker_unreachable(now(), &w);
        }
        assert!(!j.is_finished(), "round {round}: {:?}", j.status);
    }
}

#[test]
fn a_worker_that_keeps_coming_back_unreachable_fails_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = job(1, 1, dir.path());
    let (w1, w2) = (WorkerId::new("w1"), WorkerId::new("w2"));
    // w1 heartbeats but cannot serve; it is the only worker that can run the map.
    for round in 0..=MAX_ATTEMPTS {
        assert!(!j.is_finished(), "round {round}: {:?}", j.status);
        let a = j.next_task(now(), &w1, &live(1)).unwrap();
        finish_map(&mut j, &w1, 0, a.attempt);
        let r = j.next_task(now(), &w2, &live(1)).unwrap();
        j.on_report(
            now(),
            TaskKind::Reduce,
            0,
            r.attempt,
            &w2,
            "addr",
            fetch_failed_from("w1", 0, a.attempt, true),
        );
        for w in j.take_unreachable() {
            j.on_worker_unreachable(now(), &w);
        }
    }
    assert!(
        matches!(&j.status, JobStatus::Failed(m) if m.contains("could not reach worker w1 5 times")),
        "{:?}",
        j.status
    );
}

#[test]
fn an_attempt_on_a_suspect_worker_gets_a_backup_at_once_even_without_speculation() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = job(2, 1, dir.path()).with_policy(Policy {
        max_attempts: 4,
        speculation: false,
    });
    let (w1, w2) = (WorkerId::new("w1"), WorkerId::new("w2"));
    let a0 = j.next_task(now(), &w1, &live(2)).unwrap();
    let a1 = j.next_task(now(), &w2, &live(2)).unwrap();
    finish_map(&mut j, &w2, map_index(&a1), a1.attempt);
    assert!(
        j.next_task(now(), &w2, &live(2)).is_none(),
        "no speculation"
    );
    let suspect = ClusterView {
        live_workers: 1,
        suspects: HashSet::from([w1.clone()]),
    };
    let backup = j.next_task(now(), &w2, &suspect).unwrap();
    assert_eq!(map_index(&backup), map_index(&a0));
    assert!(
        j.next_task(now(), &w2, &suspect).is_none(),
        "one backup per task"
    );
}

#[test]
fn only_the_running_attempt_may_commit_and_a_failed_grant_is_freed() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = job(1, 1, dir.path());
    let w = WorkerId::new("w1");
    let a = j.next_task(now(), &w, &live(1)).unwrap();
    finish_map(&mut j, &w, 0, a.attempt);
    let r0 = j.next_task(now(), &w, &live(1)).unwrap();
    assert!(
        !j.can_commit(0, r0.attempt + 1, &w),
        "not a running attempt"
    );
    assert!(j.can_commit(0, r0.attempt, &w));
    let io = Outcome::Failed(TaskFailure {
        message: "rename failed".into(),
        retryable: true,
        reason: FailureReason::Io,
    });
    j.on_report(now(), TaskKind::Reduce, 0, r0.attempt, &w, "addr", io);
    let r1 = j.next_task(now(), &w, &live(1)).unwrap();
    assert!(
        !j.can_commit(0, r0.attempt, &w),
        "the failed attempt lost its grant"
    );
    assert!(j.can_commit(0, r1.attempt, &w), "the retry may commit");
}

fn map_index(a: &Assignment) -> u32 {
    match &a.task {
        AssignedTask::Map { index, .. } => *index,
        other => panic!("expected a map, got {other:?}"),
    }
}

#[test]
fn a_lost_worker_requeues_its_attempts_and_the_outputs_reduces_still_need() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = job(3, 1, dir.path());
    let (w1, w2) = (WorkerId::new("w1"), WorkerId::new("w2"));
    let a0 = j.next_task(now(), &w1, &live(2)).unwrap();
    finish_map(&mut j, &w1, map_index(&a0), a0.attempt);
    let a1 = j.next_task(now(), &w2, &live(2)).unwrap();
    finish_map(&mut j, &w2, map_index(&a1), a1.attempt);
    let a2 = j.next_task(now(), &w1, &live(2)).unwrap(); // still running on w1
    j.on_worker_lost(now(), &w1);
    // Map 0 (done on w1) and map 2 (running on w1) run again; map 1 is kept.
    let mut again: Vec<u32> = (0..2)
        .map(|_| map_index(&j.next_task(now(), &w2, &live(1)).unwrap()))
        .collect();
    again.sort();
    assert_eq!(again, [0, 2]);
    assert!(j.next_task(now(), &w2, &live(1)).is_none());
    // The lost attempt's late report is ignored.
    finish_map(&mut j, &w1, 2, a2.attempt);
    assert!(
        j.next_task(now(), &w2, &live(1)).is_none(),
        "map 2 is still running on w2"
    );
    assert!(!j.is_finished());
}

#[test]
fn a_straggler_gets_one_backup_and_the_loser_is_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = job(4, 1, dir.path());
    let (w1, w2) = (WorkerId::new("w1"), WorkerId::new("w2"));
    let attempts: Vec<_> = (0..4)
        .map(|_| j.next_task(now(), &w1, &live(2)).unwrap())
        .collect();
    for a in &attempts[..3] {
        finish_map(&mut j, &w1, map_index(a), a.attempt);
    }
    advance(SPECULATION_MIN_RUNTIME + Duration::from_millis(100));
    // 3 of 4 done (75%), map 3 has run far longer than the median: a backup on w2.
    let backup = j.next_task(now(), &w2, &live(2)).unwrap();
    assert_eq!(map_index(&backup), 3);
    assert!(backup.attempt > attempts[3].attempt);
    assert!(
        j.next_task(now(), &w2, &live(2)).is_none(),
        "one backup per task"
    );
    finish_map(&mut j, &w2, 3, backup.attempt);
    let cancels = j.take_cancels();
    assert_eq!(cancels.len(), 1);
    assert_eq!(cancels[0].worker, w1);
    assert_eq!(cancels[0].attempt.attempt, attempts[3].attempt);
    // The loser's report changes nothing.
    finish_map(&mut j, &w1, 3, attempts[3].attempt);
    let r = j.next_task(now(), &w1, &live(2)).unwrap();
    let AssignedTask::Reduce { map_outputs, .. } = r.task else {
        panic!("reduces follow the maps")
    };
    let from_backup = map_outputs.iter().find(|l| l.map_index == 3).unwrap();
    assert_eq!(
        from_backup.attempt, backup.attempt,
        "lineage holds the winner"
    );
}

#[test]
fn a_plugin_failure_is_retried_on_another_worker_while_one_exists() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = job(1, 1, dir.path()).with_policy(Policy {
        max_attempts: 4,
        speculation: false,
    });
    let (w1, w2) = (WorkerId::new("w1"), WorkerId::new("w2"));
    let a = j.next_task(now(), &w1, &live(2)).unwrap();
    let plugin_error = || {
        Outcome::Failed(TaskFailure {
            message: "boom".into(),
            retryable: true,
            reason: FailureReason::Plugin,
        })
    };
    j.on_report(
        now(),
        TaskKind::Map,
        0,
        a.attempt,
        &w1,
        "addr",
        plugin_error(),
    );
    assert!(
        j.next_task(now(), &w1, &live(2)).is_none(),
        "not again on w1"
    );
    let b = j.next_task(now(), &w2, &live(2)).unwrap();
    j.on_report(
        now(),
        TaskKind::Map,
        0,
        b.attempt,
        &w2,
        "addr",
        plugin_error(),
    );
    // Every live worker failed it: any may try again, until max_attempts.
    let c = j.next_task(now(), &w1, &live(2)).unwrap();
    j.on_report(
        now(),
        TaskKind::Map,
        0,
        c.attempt,
        &w1,
        "addr",
        plugin_error(),
    );
    let d = j.next_task(now(), &w2, &live(2)).unwrap();
    j.on_report(
        now(),
        TaskKind::Map,
        0,
        d.attempt,
        &w2,
        "addr",
        plugin_error(),
    );
    assert!(
        matches!(&j.status, JobStatus::Failed(m) if m.contains("failed 4 times") && m.contains("boom")),
        "{:?}",
        j.status
    );
}

mod ending;

/// The search for the next task starts past the tasks already handed out, yet a task a
/// failure puts back is still the first one handed out again, whichever path put it back.
#[test]
fn a_requeued_task_goes_first_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = job(6, 1, dir.path()).with_policy(Policy {
        max_attempts: 4,
        speculation: false,
    });
    let (w1, w2) = (WorkerId::new("w1"), WorkerId::new("w2"));
    let next = |j: &mut Job, w: &WorkerId| j.next_task(now(), w, &live(2)).map(|a| a.index());
    for want in 0..4 {
        assert_eq!(next(&mut j, &w1), Some(want));
    }
    // A failed attempt: map 1 is pending again, before maps 4 and 5.
    let failed = Outcome::Failed(TaskFailure {
        message: "boom".into(),
        retryable: true,
        reason: FailureReason::Plugin,
    });
    j.on_report(now(), TaskKind::Map, 1, 0, &w1, "addr", failed);
    assert_eq!(next(&mut j, &w2), Some(1));
    assert_eq!(next(&mut j, &w2), Some(4));
    finish_map(&mut j, &w2, 4, 0);
    // A lost worker: its running maps 0, 2 and 3 are pending again, before map 5.
    j.on_worker_lost(now(), &w1);
    for want in [0, 2, 3, 5] {
        assert_eq!(next(&mut j, &w2), Some(want));
    }
    assert_eq!(next(&mut j, &w2), None, "every map is out");
}
