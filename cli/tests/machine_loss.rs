//! Machines lost at the product's default settings (1 s heartbeat, 10 s worker timeout,
//! 4 attempts): a coordinator and 4 workers run a word count of more than 200 map tasks, and
//! workers are SIGKILLed while reducers fetch. A dead machine must cost only the work that was
//! on it: the job succeeds, and its part files are byte-identical to a run without failures.
//!
//! Reducers learn of a dead worker long before the worker timeout does (their fetches are
//! refused), so these tests go through the fetch-failure path: every map output of the
//! unreachable worker is re-run at once, and the reducers' lost attempts are not counted
//! against `max_attempts`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Output};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::chaos::*;
use common::cluster::{Cluster, ClusterOptions};
use common::*;
use sluice_datagen::rng::SplitMix64;

/// Reduce tasks: more than the 8 slots of 4 workers, so a second wave of reducers starts
/// after a kill and must fetch from the dead worker.
const REDUCERS: u32 = 12;
/// Split size over the corpus of [`start`]: about 260 map tasks.
const SPLIT_BYTES: u64 = 800;

/// The coordinator's log line when a reducer names an unreachable worker.
const UNREACHABLE_LOG: &str = "worker unreachable from a reducer";

/// A cluster at default settings with a word-count corpus, and the part files of a run
/// without failures.
struct Setup {
    cluster: Cluster,
    input: PathBuf,
    clean: Vec<(String, Vec<u8>)>,
}

fn start() -> Setup {
    let cluster = Cluster::start(
        4,
        ClusterOptions {
            default_heartbeat: true,
            ..Default::default()
        },
    );
    let input = cluster.path("in");
    let texts = write_corpus(&input, 20, 2500);
    let clean = cluster.path("clean");
    let out = submit_wait(
        &cluster,
        &chaos_args(&input, &clean, REDUCERS, SPLIT_BYTES, &[]),
    );
    assert_job_ok(&cluster, &out);
    assert_eq!(read_counts(&clean, "word", "count"), reference(&texts));
    let s = status_json(&cluster, "job-0001");
    assert!(s["maps_total"].as_u64().unwrap_or(0) >= 200, "{s}");
    Setup {
        clean: part_bytes(&clean),
        cluster,
        input,
    }
}

/// Waits for the `submit --wait` client and returns its output.
fn finish(submit: Child) -> Output {
    submit.wait_with_output().unwrap()
}

/// Whether worker `i` holds map outputs of `job`.
fn holds_outputs(c: &Cluster, i: usize, job: &str) -> bool {
    let name = c.workers[i].name.clone();
    std::fs::read_dir(c.path(&name).join("shuffle").join(job)).is_ok_and(|mut d| d.next().is_some())
}

/// Every coordinator log of the cluster (before and after restarts), concatenated.
fn coordinator_logs(dir: &Path) -> String {
    files_starting_with(dir, "coordinator")
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .collect()
}

/// Kills `victims` workers holding map outputs once every map of job-0002 is done and the
/// reducers fetch; the job must still succeed with the clean run's bytes.
fn kill_during_the_shuffle(victims: usize) {
    let Setup {
        mut cluster,
        input,
        clean,
    } = start();
    let out_dir = cluster.path("out");
    // Reduces sleep, so the second wave of reducers starts after the kill.
    let params = ["fixed_sleep_reduce_ms=1500".to_string()];
    let submit = spawn_submit(
        &cluster,
        &chaos_args(&input, &out_dir, REDUCERS, SPLIT_BYTES, &params),
    );
    let s = wait_status(&cluster, "job-0002", Duration::from_secs(120), |s| {
        s["maps_total"].as_u64() > Some(0) && s["maps_done"] == s["maps_total"]
    });
    assert_eq!(s["reduces_done"], 0, "killed too late: {s}");
    let holders: Vec<usize> = (0..cluster.workers.len())
        .filter(|i| holds_outputs(&cluster, *i, "job-0002"))
        .take(victims)
        .collect();
    assert_eq!(holders.len(), victims, "workers holding map outputs");
    // Highest index first: removing a worker shifts the ones after it.
    for i in holders.into_iter().rev() {
        cluster.kill_worker(i);
    }
    let out = finish(submit);
    assert_job_ok(&cluster, &out);
    assert!(
        part_bytes(&out_dir) == clean,
        "part files differ from the run without failures"
    );
    assert!(
        coordinator_logs(cluster.dir.path()).contains(UNREACHABLE_LOG),
        "no reducer reported the dead worker: the test did not exercise the shuffle\n{}",
        cluster.logs()
    );
    let s = status_json(&cluster, "job-0002");
    assert_eq!(s["state"], "succeeded", "{s}");
}

#[test]
fn one_worker_killed_during_the_shuffle_at_default_settings() {
    kill_during_the_shuffle(1);
}

#[test]
fn two_workers_killed_at_once_during_the_shuffle_at_default_settings() {
    kill_during_the_shuffle(2);
}

#[test]
fn a_crash_loop_with_a_coordinator_restart_leaves_the_output_unchanged() {
    const KILLS: usize = 12;
    let Setup {
        mut cluster,
        input,
        clean,
    } = start();
    let seed = std::env::var("SLUICE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("crash loop seed {seed} (SLUICE_TEST_SEED={seed} replays it)");
    // A seeded sequence of kill times and victims, printed so a failure can be replayed.
    let mut rng = SplitMix64::new(seed);
    let out_dir = cluster.path("out");
    // Reduces wait for a gate the test opens after its last kill, so every kill lands in
    // a running job (in the maps or in the shuffle), however fast this machine is.
    let gate = cluster.path("gate");
    let params = [
        "fixed_sleep_reduce_ms=2000".to_string(),
        format!("reduce_gate={}", gate.display()),
    ];
    let mut submit = spawn_submit(
        &cluster,
        &chaos_args(&input, &out_dir, REDUCERS, SPLIT_BYTES, &params),
    );
    let started = Instant::now();
    let mut kills = 0;
    while kills < KILLS {
        std::thread::sleep(Duration::from_millis(1000 + rng.next_u64() % 2001));
        if submit.try_wait().unwrap().is_some() {
            break;
        }
        let victim = (rng.next_u64() % cluster.workers.len() as u64) as usize;
        cluster.kill_worker(victim);
        cluster.add_worker();
        kills += 1;
        if kills == KILLS / 2 {
            cluster.kill_and_restart_coordinator();
        }
    }
    std::fs::write(&gate, b"").unwrap();
    let out = finish(submit);
    assert_job_ok(&cluster, &out);
    assert_eq!(
        kills,
        KILLS,
        "the job ended after {:?}, before the crash loop did",
        started.elapsed()
    );
    assert!(
        part_bytes(&out_dir) == clean,
        "part files differ from the run without failures (seed {seed})"
    );
}
