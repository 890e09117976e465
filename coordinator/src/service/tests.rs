//! Tests of the service's state outside the gRPC handlers.

use super::workers::heartbeat_wait;
use super::*;
use crate::job::ClusterView;
use sluice_common::spec::{InputFormat, JobSpec};
use sluice_common::split::{Split, SplitRange};
use sluice_sdk::JobDescription;

fn state() -> State {
    State {
        next_job: 0,
        jobs: BTreeMap::new(),
        history: BTreeMap::new(),
        ended: crate::metrics::JobTotals::default(),
        effects: Vec::new(),
        workers: Workers::default(),
        outbox: HashMap::new(),
        policy: Policy::default(),
        assigned_by_heartbeat: 0,
        assigned_by_report: 0,
        claimed_keys: Default::default(),
        pipelines: BTreeMap::new(),
        next_pipeline: 0,
        schedules: BTreeMap::new(),
        alerts_out: Vec::new(),
        incremental: Default::default(),
        journal: Default::default(),
        queues: Default::default(),
        metrics: Default::default(),
        lost_workers: Default::default(),
        jobs_ended: tokio::sync::watch::Sender::new(0),
        work: tokio::sync::watch::Sender::new(0),
    }
}

fn job(id: &str, output: &str) -> Job {
    job_of_maps(id, output, 1)
}

/// A job of `maps` one-byte splits and one reduce.
fn job_of_maps(id: &str, output: &str, maps: u64) -> Job {
    let mut spec = JobSpec::new(
        "p.so".into(),
        vec!["in".into()],
        InputFormat::Text,
        output.into(),
    );
    spec.reducers = 1;
    let splits = (0..maps)
        .map(|i| Split {
            path: "f".into(),
            range: SplitRange::Bytes {
                start: i,
                end: i + 1,
            },
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
    Job::new(
        JobId::new(id),
        spec,
        description,
        Vec::new(),
        splits,
        crate::job::Epoch::now(),
    )
}

/// Ended jobs leave the scheduler for the history, with what they still owe carried
/// over: after 10,000 of them, a heartbeat still visits one job.
#[test]
fn ended_jobs_move_to_history_and_keep_what_they_owe() {
    let mut s = state();
    let w = s.workers.register("127.0.0.1:1".into(), 2, 0, "s".into());
    let running = job("job-running", "/nowhere/running");
    s.jobs.insert(running.id.clone(), running);
    let mut failing = job("job-failing", "/nowhere/failing");
    let cluster = ClusterView {
        live_workers: 1,
        suspects: Default::default(),
    };
    let a = failing.next_task(Instant::now(), &w, &cluster).unwrap();
    failing.fail(Instant::now(), "boom".into());
    s.jobs.insert(failing.id.clone(), failing);
    for i in 0..10_000 {
        let mut j = job(&format!("job-{i:05}"), "/nowhere/cancelled");
        j.cancel(Instant::now());
        s.jobs.insert(j.id.clone(), j);
    }
    s.retire_ended();
    assert_eq!(
        s.jobs.keys().map(|j| j.as_str()).collect::<Vec<_>>(),
        ["job-running"]
    );
    assert_eq!(s.history.len(), 10_001);
    assert_eq!(
        s.history["job-failing"].state,
        pb::JobState::Failed as i32,
        "{:?}",
        s.history["job-failing"]
    );
    assert_eq!(s.history["job-00042"].state, pb::JobState::Cancelled as i32);
    // The metrics count them without visiting them again.
    let mut expected = crate::metrics::JobTotals::default();
    for info in s.history.values() {
        expected.add(info);
    }
    assert_eq!(s.ended, expected);
    let text = s.metrics.render(crate::metrics::Snapshot {
        jobs: s.ended.clone(),
        ..Default::default()
    });
    assert!(
        text.contains("sluice_jobs{state=\"cancelled\"} 10000"),
        "{text}"
    );
    // The failed job's running attempt is cancelled, its output removed, its shuffle
    // files dropped.
    assert_eq!(s.outbox[&w].len(), 1);
    assert_eq!(s.outbox[&w][0].attempt, a.attempt);
    let effects = s.take_effects();
    assert_eq!(effects.len(), 10_001, "one output removal per ended job");
    let dropped = &s.workers.get(&w).unwrap().to_drop;
    assert_eq!(dropped.len(), 10_001);
    assert!(dropped.contains(&"job-failing".to_string()));
    assert!(s.take_effects().is_empty(), "effects are taken once");
}

#[test]
fn a_status_call_waits_what_it_asks_up_to_a_minute() {
    assert_eq!(status_wait(0), Duration::ZERO);
    assert_eq!(status_wait(250), Duration::from_millis(250));
    assert_eq!(status_wait(u32::MAX), MAX_HELD_CALL);
}

/// A status call waiting for its job subscribes before it looks: an end recorded after the
/// look wakes it.
#[test]
fn an_ended_job_wakes_the_status_calls_waiting() {
    let mut s = state();
    let waiting = s.jobs_ended.subscribe();
    assert!(!waiting.has_changed().unwrap());
    s.record_ended(pb::JobInfo {
        job_id: "job-7".into(),
        state: pb::JobState::Succeeded as i32,
        ..Default::default()
    });
    assert!(waiting.has_changed().unwrap(), "the end is seen");
}

/// A service with an empty job store and a heartbeat interval of a minute: a held
/// heartbeat that returns before then was woken, not timed out.
fn service(dir: &std::path::Path) -> CoordinatorService {
    let plugins = PluginStore::open(dir.join("plugins"), 1 << 20, 1 << 20).unwrap();
    let history = History {
        jobs: Vec::new(),
        resumable: Vec::new(),
        next_seq: 1,
        pipelines: Vec::new(),
        schedules: Vec::new(),
        incremental: Default::default(),
    };
    CoordinatorService::new(
        plugins,
        history,
        Journal::disabled(),
        Duration::from_secs(60),
        Policy::default(),
    )
}

fn idle_heartbeat(worker: &sluice_common::ids::WorkerId) -> pb::HeartbeatRequest {
    pb::HeartbeatRequest {
        worker_id: worker.to_string(),
        secret: "s".into(),
        free_slots: 1,
        wait_ms: 60_000,
        ..Default::default()
    }
}

/// Returns once a heartbeat looked for work, found none and waits (with a job there
/// already it would have answered at once).
async fn waiting_for_work(svc: &CoordinatorService) {
    while svc.lock().work.receiver_count() == 0 {
        tokio::task::yield_now().await;
    }
}

/// Guards a call that must be woken long before its minute: a hang fails the test.
async fn woken<T>(call: tokio::task::JoinHandle<T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), call)
        .await
        .expect("the held heartbeat was not woken")
        .unwrap()
}

#[test]
fn a_heartbeat_is_held_at_most_its_interval() {
    let interval = Duration::from_secs(1);
    assert_eq!(heartbeat_wait(0, interval), Duration::ZERO);
    assert_eq!(heartbeat_wait(200, interval), Duration::from_millis(200));
    assert_eq!(heartbeat_wait(u32::MAX, interval), interval);
    let hours = Duration::from_secs(7200);
    assert_eq!(heartbeat_wait(u32::MAX, hours), MAX_HELD_CALL);
}

/// A service with one registered worker of one slot, whose held heartbeat waits for work.
async fn one_idle_worker(
    dir: &std::path::Path,
) -> (Arc<CoordinatorService>, sluice_common::ids::WorkerId, Held) {
    let svc = Arc::new(service(dir));
    let w = svc
        .lock()
        .workers
        .register("127.0.0.1:1".into(), 1, 0, "s".into());
    let held = hold(&svc, &w).await;
    (svc, w, held)
}

/// Sends `worker`'s idle heartbeat and returns once it is held, waiting for work.
async fn hold(svc: &Arc<CoordinatorService>, worker: &sluice_common::ids::WorkerId) -> Held {
    let held = {
        let (svc, req) = (Arc::clone(svc), idle_heartbeat(worker));
        tokio::spawn(async move { svc.heartbeat_held(req).await })
    };
    waiting_for_work(svc).await;
    held
}

/// A held heartbeat's reply, to come.
type Held = tokio::task::JoinHandle<Result<pb::HeartbeatResponse, CoordinatorError>>;

/// An idle worker's held heartbeat gets the task of a job submitted meanwhile.
#[tokio::test]
async fn a_held_heartbeat_carries_the_task_of_a_job_submitted_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, _, held) = one_idle_worker(dir.path()).await;
    {
        let mut state = svc.lock();
        let j = job("job-new", "/nowhere/new");
        state.jobs.insert(j.id.clone(), j);
        state.work_changed();
    }
    let reply = woken(held).await.unwrap();
    assert!(reply.held);
    assert_eq!(reply.assignments.len(), 1, "{reply:?}");
    assert_eq!(reply.assignments[0].job_id, "job-new");
}

/// A worker that got a task in a report's reply while its heartbeat was held no longer
/// has the free slot the heartbeat offered: the hold ends with nothing, and the worker's
/// next heartbeat tells its slots afresh.
#[tokio::test]
async fn a_held_heartbeat_ends_empty_when_a_report_refilled_the_worker() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, w, held) = one_idle_worker(dir.path()).await;
    {
        let mut state = svc.lock();
        let j = job("job-new", "/nowhere/new");
        state.jobs.insert(j.id.clone(), j);
        state.workers.get_mut(&w).unwrap().refilled += 1;
        state.work_changed();
    }
    let reply = woken(held).await.unwrap();
    assert!(reply.held);
    assert!(reply.assignments.is_empty(), "{reply:?}");
    assert_eq!(
        svc.lock().jobs[&JobId::new("job-new")].running_attempts(),
        0,
        "the task is still there for the next heartbeat"
    );
}

/// A map reported done wakes no idle worker while the map stage runs (what is pending
/// was offered already); the end of the stage wakes one, with a reduce.
#[tokio::test]
async fn a_held_heartbeat_gets_a_reduce_when_the_map_stage_ends() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Arc::new(service(dir.path()));
    let (a, b) = {
        let mut state = svc.lock();
        let j = job_of_maps("job-turn", "/nowhere/turn", 2);
        state.jobs.insert(j.id.clone(), j);
        let a = state
            .workers
            .register("127.0.0.1:1".into(), 2, 0, "s".into());
        let b = state
            .workers
            .register("127.0.0.1:2".into(), 1, 0, "s".into());
        (a, b)
    };
    let mut now = idle_heartbeat(&a);
    (now.free_slots, now.wait_ms) = (2, 0);
    let maps = svc.heartbeat_held(now).await.unwrap().assignments;
    assert_eq!(maps.len(), 2, "{maps:?}");
    let held = hold(&svc, &b).await;
    let watch = svc.lock().work.subscribe();
    let report = |m: &pb::TaskAssignment| pb::ReportTaskRequest {
        worker_id: a.to_string(),
        secret: "s".into(),
        job_id: "job-turn".into(),
        is_map: true,
        index: match m.task {
            Some(pb::task_assignment::Task::Map(ref t)) => t.index,
            _ => panic!("not a map: {m:?}"),
        },
        attempt: m.attempt,
        outcome: Some(pb::report_task_request::Outcome::MapDone(
            pb::MapDone::default(),
        )),
        want_task: false,
    };
    svc.report(report(&maps[0])).await.unwrap();
    assert!(
        !watch.has_changed().unwrap(),
        "one map of two done wakes nobody"
    );
    svc.report(report(&maps[1])).await.unwrap();
    assert!(watch.has_changed().unwrap());
    let reply = woken(held).await.unwrap();
    assert!(reply.held);
    assert_eq!(reply.assignments.len(), 1, "{reply:?}");
    assert!(
        matches!(
            reply.assignments[0].task,
            Some(pb::task_assignment::Task::Reduce(_))
        ),
        "{reply:?}"
    );
}

/// A job that ends frees its queue's slots: held heartbeats look again.
#[test]
fn a_retired_job_wakes_the_held_heartbeats() {
    let mut s = state();
    let waiting = s.work.subscribe();
    let mut j = job("job-done", "/nowhere/done");
    j.cancel(Instant::now());
    s.jobs.insert(j.id.clone(), j);
    s.retire_ended();
    assert!(waiting.has_changed().unwrap());
}
