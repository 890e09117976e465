//! Tests of how attempts commit, how the job ends, and task timeouts.

use super::*;

#[test]
fn a_grant_held_by_a_lost_attempt_is_released_for_the_backup() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = job(1, 4, dir.path());
    let (w1, w2) = (WorkerId::new("w1"), WorkerId::new("w2"));
    let m = j.next_task(now(), &w1, &live(2)).unwrap();
    finish_map(&mut j, &w1, 0, m.attempt);
    let reduces: Vec<_> = (0..4)
        .map(|_| j.next_task(now(), &w1, &live(2)).unwrap())
        .collect();
    for (p, r) in reduces.iter().enumerate().take(3) {
        let done = Outcome::ReduceDone(ReduceOutput::default());
        j.on_report(
            now(),
            TaskKind::Reduce,
            p as u32,
            r.attempt,
            &w1,
            "addr",
            done,
        );
    }
    assert!(
        j.can_commit(3, reduces[3].attempt, &w1),
        "the first asker wins"
    );
    advance(SPECULATION_MIN_RUNTIME + Duration::from_millis(100));
    let backup = j.next_task(now(), &w2, &live(2)).unwrap();
    assert!(!j.can_commit(3, backup.attempt, &w2), "the grant is taken");
    assert!(
        !j.can_commit(3, reduces[3].attempt, &w2),
        "an attempt number from another worker is not the running attempt"
    );
    j.on_worker_lost(now(), &w1);
    assert!(
        j.can_commit(3, backup.attempt, &w2),
        "the lost attempt's grant is free"
    );
}

/// A job with its map done and both partitions committed (files `part-0000{p}.parquet`).
fn committed_job(output: &std::path::Path) -> Job {
    let mut j = job(1, 2, output);
    let w = WorkerId::new("w1");
    let m = j.next_task(now(), &w, &live(1)).unwrap();
    finish_map(&mut j, &w, 0, m.attempt);
    for p in 0..2u32 {
        let r = j.next_task(now(), &w, &live(1)).unwrap();
        assert!(j.can_commit(p, r.attempt, &w));
        let done = Outcome::ReduceDone(ReduceOutput {
            file: format!("part-0000{p}.parquet"),
            rows: 1,
            ..Default::default()
        });
        let all = j.on_report(now(), TaskKind::Reduce, p, r.attempt, &w, "addr", done);
        assert_eq!(all, p == 1, "all done after the last partition");
    }
    j
}

#[test]
fn success_is_written_off_the_job_and_a_failed_write_keeps_the_parts() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = committed_job(dir.path());
    assert!(j.take_effects().is_empty(), "nothing to write yet");
    assert!(j.begin_success());
    assert!(!j.begin_success(), "once");
    assert_eq!(j.status, JobStatus::Committing);
    assert_eq!(
        crate::wire::state(&j.info().status).0,
        sluice_proto::pb::JobState::Running,
        "clients see it running"
    );
    let effects = j.take_effects();
    assert!(
        matches!(&effects[..], [OutputEffect::WriteSuccess { job, manifest, .. }]
            if job.as_str() == "job-1" && String::from_utf8_lossy(manifest).contains("part-00001.parquet")),
        "{effects:?}"
    );
    // Committing schedules nothing and cannot be cancelled.
    assert!(j.next_task(now(), &WorkerId::new("w2"), &live(2)).is_none());
    j.cancel(now());
    assert_eq!(j.status, JobStatus::Committing);
    j.success_written(now(), Err("disk full".into()));
    assert!(
        matches!(&j.status, JobStatus::CommitFailed(m)
            if m.contains("disk full") && m.contains("kept") && m.contains("sluice commit job-1")),
        "{:?}",
        j.status
    );
    assert!(matches!(j.info().status, JobStatus::CommitFailed(_)));
    assert!(
        j.take_effects().is_empty(),
        "a failed _SUCCESS does not remove the committed part files"
    );
    assert!(!j.has_ended(), "it stays in the scheduler, to be committed");
    assert!(j.next_task(now(), &WorkerId::new("w2"), &live(2)).is_none());
    // `sluice commit` tries again, with the same manifest.
    assert!(j.begin_success());
    assert!(matches!(
        &j.take_effects()[..],
        [OutputEffect::WriteSuccess { manifest, .. }]
            if String::from_utf8_lossy(manifest).contains("part-00001.parquet")
    ));
    j.success_written(now(), Ok(()));
    assert_eq!(j.status, JobStatus::Succeeded);
}

#[test]
fn a_failed_job_asks_for_its_committed_parts_to_be_removed_and_touches_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("never-created");
    let mut j = committed_job(&out);
    j.fail(now(), "boom".into());
    assert_eq!(
        j.take_effects(),
        [OutputEffect::Abort {
            output: out.to_string_lossy().into_owned(),
            committed: vec!["part-00000.parquet".into(), "part-00001.parquet".into()],
        }]
    );
    assert!(!out.exists(), "the job itself does no I/O");
    let mut ok = committed_job(dir.path());
    assert!(ok.begin_success());
    ok.success_written(now(), Ok(()));
    assert_eq!(ok.status, JobStatus::Succeeded);
}

/// A reduce attempt refused its commit is not charged a failure, even when the grant it
/// lost to was released meanwhile: four denials leave the task running, not the job failed.
#[test]
fn a_denied_commit_is_never_charged_to_the_task() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = job(1, 1, dir.path());
    let w = WorkerId::new("w1");
    let m = j.next_task(now(), &w, &live(1)).unwrap();
    finish_map(&mut j, &w, 0, m.attempt);
    for _ in 0..MAX_ATTEMPTS + 1 {
        let r = j.next_task(now(), &w, &live(1)).unwrap();
        let denied = Outcome::Failed(TaskFailure {
            message: "commit of partition 0 denied".into(),
            retryable: true,
            reason: FailureReason::CommitDenied { partition: 0 },
        });
        j.on_report(now(), TaskKind::Reduce, 0, r.attempt, &w, "addr", denied);
        assert_eq!(j.status, JobStatus::Running);
        assert_eq!(j.reduces[0].failures, 0);
    }
}

/// An attempt past the task timeout fails: stopped on its worker, charged, and retried
/// elsewhere; one within it is left alone.
#[test]
fn an_attempt_past_the_task_timeout_fails_and_runs_again_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = job(2, 1, dir.path());
    Arc::make_mut(&mut j.spec).task_timeout_secs = 60;
    let (w1, w2) = (WorkerId::new("w1"), WorkerId::new("w2"));
    let a = j.next_task(now(), &w1, &live(2)).unwrap();
    advance(Duration::from_secs(30));
    let b = j.next_task(now(), &w2, &live(2)).unwrap();
    advance(Duration::from_secs(31));
    assert_eq!(
        j.expire_attempts(now()),
        1,
        "only the first ran over a minute"
    );
    let cancels = j.take_cancels();
    assert_eq!(cancels.len(), 1);
    assert_eq!(
        (cancels[0].worker.as_str(), cancels[0].attempt.attempt),
        ("w1", a.attempt)
    );
    assert_eq!(j.maps[0].failures, 1);
    assert!(j.maps[1].is_running(b.attempt, &w2));
    // Not on w1 again while w2 can take it.
    assert!(j.next_task(now(), &w1, &live(2)).is_none());
    let again = j.next_task(now(), &w2, &live(2)).unwrap();
    assert_eq!((map_index(&again), again.attempt), (0, 1));
    assert_eq!(j.info().status, JobStatus::Running);
    // No limit: nothing expires.
    Arc::make_mut(&mut j.spec).task_timeout_secs = 0;
    advance(Duration::from_secs(100_000));
    assert_eq!(j.expire_attempts(now()), 0);
}

/// Losses shared with other attempts on the worker do not give a task up at the bound for
/// losses it may have caused alone: two maps lose 20 workers together and carry on; one map
/// alone on its worker, losing it each time, is given up after 16 more.
#[test]
fn a_task_is_given_up_for_losing_workers_alone_not_for_its_neighbours() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = job(2, 1, dir.path());
    for k in 0..20 {
        let w = WorkerId::new(format!("shared-{k}"));
        assert!(j.next_task(now(), &w, &live(1)).is_some());
        assert!(j.next_task(now(), &w, &live(1)).is_some());
        j.on_worker_lost(now(), &w);
    }
    assert_eq!(j.status, JobStatus::Running, "20 shared losses each");
    for k in 0..=MAX_LOST_ATTEMPTS {
        let w = WorkerId::new(format!("alone-{k}"));
        assert!(j.next_task(now(), &w, &live(1)).is_some());
        j.on_worker_lost(now(), &w);
    }
    assert!(
        matches!(&j.status, JobStatus::Failed(m) if m.contains("17 of them running alone")),
        "{:?}",
        j.status
    );
}

/// A job past its `--timeout` fails, its running attempts stopped, counted from its
/// submission; without one, or within it, it runs on.
#[test]
fn a_job_past_its_timeout_fails_saying_how_far_it_got() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = job(2, 1, dir.path());
    Arc::make_mut(&mut j.spec).job_timeout_secs = 3600;
    let w1 = WorkerId::new("w1");
    let a = j.next_task(now(), &w1, &live(2)).unwrap();
    finish_map(&mut j, &w1, 0, a.attempt);
    let _b = j.next_task(now(), &w1, &live(2)).unwrap();
    advance(Duration::from_secs(3599));
    assert!(!j.expire_job(now()));
    assert_eq!(j.status, JobStatus::Running);
    advance(Duration::from_secs(2));
    assert!(j.expire_job(now()));
    match &j.status {
        JobStatus::Failed(m) => assert!(
            m.contains("--timeout of 3600 s") && m.contains("1 of 2 maps"),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(j.take_cancels().len(), 1, "the running map is stopped");
    assert!(!j.expire_job(now()), "an ended job does not fail twice");
    let mut k = job(1, 1, dir.path());
    advance(Duration::from_secs(1_000_000));
    assert!(!k.expire_job(now()), "no timeout, no limit");
}
