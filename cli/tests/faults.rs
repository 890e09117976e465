//! Fault tolerance with real processes: workers and the coordinator are killed with SIGKILL
//! (or abort inside plugin code), and every job must still produce the output of a run
//! without failures. The `sluice_chaos` plugin (examples/chaos) is a word count that aborts
//! or stalls on request and leaves marker files that show which attempts ran.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use common::chaos::*;
use common::cluster::{Cluster, ClusterOptions, job_args};
use common::*;

#[test]
fn crash_workers_abort_at_random_and_the_output_is_unchanged() {
    let mut c = Cluster::start(3, options(2000));
    let input = c.path("in");
    let texts = write_corpus(&input, 6, 2500);
    let expected = reference(&texts);

    // The no-failure run.
    let clean = c.path("clean");
    let out = submit_wait(&c, &chaos_args(&input, &clean, 3, 8192, &[]));
    assert_job_ok(&c, &out);
    assert_eq!(read_counts(&clean, "word", "count"), expected);

    // Now each map and reduce call aborts its worker with probability 0.3 and stalls up to
    // 300 ms; dead workers are replaced so at least 3 are alive.
    let chaotic = c.path("chaotic");
    let params = [
        "abort_map=0.3",
        "abort_reduce=0.3",
        "sleep_map_ms=300",
        "sleep_reduce_ms=300",
    ]
    .map(String::from);
    let mut submit = spawn_submit(&c, &chaos_args(&input, &chaotic, 3, 8192, &params));
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut deaths = 0;
    let status = loop {
        if let Some(s) = submit.try_wait().unwrap() {
            break s;
        }
        deaths += c.reap_dead_workers();
        while c.workers.len() < 3 {
            c.add_worker();
        }
        assert!(
            Instant::now() < deadline,
            "job did not finish:\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // A worker that died after the last poll (its task already rerun elsewhere) counts too.
    deaths += c.reap_dead_workers();
    let out = submit.wait_with_output().unwrap();
    assert!(
        status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        c.logs()
    );
    assert!(
        deaths > 0,
        "the chaos plugin killed no worker\n{}",
        c.logs()
    );
    assert_eq!(read_counts(&chaotic, "word", "count"), expected);
    assert_eq!(
        part_bytes(&chaotic),
        part_bytes(&clean),
        "part files are byte-identical to the no-failure run"
    );
}

#[test]
fn a_worker_killed_during_the_shuffle_has_its_map_outputs_rerun() {
    let mut c = Cluster::start(3, options(2000));
    let input = c.path("in");
    let texts = write_corpus(&input, 4, 2500);
    let marks = c.path("marks");
    std::fs::create_dir(&marks).unwrap();
    let out_dir = c.path("out");
    // Reduces take 2 s each, so when the last map finishes the reduces are still fetching
    // or have not started.
    let params = [
        format!("marker_dir={}", marks.display()),
        "fixed_sleep_reduce_ms=2000".into(),
    ];
    let args = chaos_args(&input, &out_dir, 6, 4096, &params);
    let mut submit = spawn_submit(&c, &args);
    let s = wait_status(&c, "job-0001", Duration::from_secs(60), |s| {
        s["maps_total"].as_u64() > Some(0) && s["maps_done"] == s["maps_total"]
    });
    assert_eq!(s["reduces_done"], 0, "{s}");
    // Followers of the job's events and of a reduce's log, started while it runs.
    let follow = |command: &str, extra: &[&str]| {
        c.client(command)
            .args(["job-0001", "--follow"])
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let events = follow("events", &[]);
    let logs = follow("logs", &["--task", "reduce-0"]);
    // Kill a worker that holds map outputs.
    let victim = worker_holding_outputs(&c, "job-0001");
    c.workers[victim].child.kill().unwrap();
    let out = {
        let status = submit.wait().unwrap();
        let mut o = Output {
            status,
            stdout: Vec::new(),
            stderr: Vec::new(),
        };
        if let Some(mut e) = submit.stderr.take() {
            std::io::Read::read_to_end(&mut e, &mut o.stderr).unwrap();
        }
        o
    };
    assert_job_ok(&c, &out);
    assert_eq!(read_counts(&out_dir, "word", "count"), reference(&texts));
    let m = markers(&marks);
    let rerun: Vec<String> = m
        .iter()
        .filter(|((kind, _), n)| kind == "map" && **n > 1)
        .map(|((_, i), _)| format!("map-{i}"))
        .collect();
    assert!(!rerun.is_empty(), "the lost map outputs were re-run: {m:?}");

    // The job's events tell the same story: the worker lost (or found unreachable first),
    // and each map re-run is one that ran twice (backups of slow maps ran twice too).
    let out = c.run_client("events", &["job-0001", "--json"]);
    assert_ok(&out);
    let all: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let lost: Vec<&serde_json::Value> = all
        .iter()
        .filter(|e| e["kind"] == "worker-lost" || e["kind"] == "worker-unreachable")
        .collect();
    assert!(!lost.is_empty(), "{all:?}");
    let mut rerun_events: Vec<String> = all
        .iter()
        .filter(|e| e["kind"] == "map-rerun")
        .map(|e| e["task"].as_str().unwrap().to_string())
        .collect();
    rerun_events.sort();
    rerun_events.dedup();
    assert!(!rerun_events.is_empty(), "{all:?}");
    // The followers stop by themselves once the job has ended, having printed its end.
    let followed = wait_output(events, Duration::from_secs(30));
    assert!(
        followed.lines().last().unwrap_or("").contains("succeeded"),
        "{followed}"
    );
    assert!(followed.contains("map-rerun"), "{followed}");
    let followed = wait_output(logs, Duration::from_secs(30));
    assert!(followed.contains("==> reduce-0 attempt 0 on"), "{followed}");
    assert!(followed.contains("attempt started"), "{followed}");
    for task in &rerun_events {
        assert!(
            rerun.contains(task),
            "{task} re-run but ran once: {rerun:?} {all:?}"
        );
    }
    assert_eq!(all.last().unwrap()["kind"], "succeeded", "{all:?}");
}

#[test]
fn a_map_output_gone_from_a_live_worker_reruns_that_map_only() {
    let s = output_gone_from_a_live_worker(3);
    assert!(s["shuffle_remote_outputs"].as_u64() > Some(0), "{s}");
}

#[test]
fn a_map_output_gone_from_the_reducers_own_disk_is_a_fetch_failure() {
    // One worker: every output is read from its own disk, never fetched, so the missing
    // file can only be noticed by the local read, which must report a fetch failure.
    let s = output_gone_from_a_live_worker(1);
    assert_eq!(s["shuffle_remote_outputs"], 0, "{s}");
    assert!(s["shuffle_local_outputs"].as_u64() > Some(0), "{s}");
}

/// Removes a finished map's spill file behind its live worker's back, checks the job
/// re-ran that map only and got the reference output; returns the job's status.
fn output_gone_from_a_live_worker(workers: usize) -> serde_json::Value {
    let c = Cluster::start(workers, options(5000));
    let input = c.path("in");
    let texts = write_corpus(&input, 4, 2500);
    let marks = c.path("marks");
    std::fs::create_dir(&marks).unwrap();
    let out_dir = c.path("out");
    // Maps take half a second, so the spill file of a finished map can be removed behind
    // its worker's back before any reducer runs. The worker stays alive and answers that it
    // cannot read the output (DataLoss): not "unreachable".
    let params = [
        format!("marker_dir={}", marks.display()),
        "fixed_sleep_map_ms=500".into(),
    ];
    let args = chaos_args(&input, &out_dir, 6, 4096, &params);
    let mut submit = spawn_submit(&c, &args);
    let deadline = Instant::now() + Duration::from_secs(60);
    let victim = loop {
        let found = (0..workers)
            .filter_map(|w| std::fs::read_dir(c.path(&format!("worker-{w}/shuffle/job-0001"))).ok())
            .flat_map(|d| d.map(|e| e.unwrap().path()))
            .find(|p| p.is_file() && p.extension().is_some_and(|e| e == "parquet"));
        if let Some(p) = found {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "no map output appeared:\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let s = status_json(&c, "job-0001");
    assert!(
        s["maps_done"].as_u64() < s["maps_total"].as_u64(),
        "removed too late, reducers may have read it: {s}"
    );
    std::fs::remove_file(&victim).unwrap();
    let status = submit.wait().unwrap();
    let mut stderr = Vec::new();
    if let Some(mut e) = submit.stderr.take() {
        std::io::Read::read_to_end(&mut e, &mut stderr).unwrap();
    }
    assert_job_ok(
        &c,
        &Output {
            status,
            stdout: Vec::new(),
            stderr,
        },
    );
    assert_eq!(read_counts(&out_dir, "word", "count"), reference(&texts));
    let log = c.coordinator.log_text();
    assert!(
        log.contains("map output unreadable on a live worker"),
        "the fetch failure did not take the live-worker path:\n{}",
        c.logs()
    );
    assert!(!log.contains("worker unreachable from a reducer"), "{log}");
    // Only the lost output's map ran twice; the worker kept every other output.
    let m = markers(&marks);
    let rerun: Vec<_> = m
        .iter()
        .filter(|((kind, _), n)| kind == "map" && **n > 1)
        .collect();
    assert_eq!(rerun.len(), 1, "{m:?}");
    status_json(&c, "job-0001")
}

#[test]
fn without_failures_every_task_runs_exactly_once() {
    // A worker timeout above the tasks' length: slow tasks are not mistaken for lost ones.
    let c = Cluster::start(2, options(5000));
    let input = c.path("in");
    let texts = write_corpus(&input, 3, 2000);
    for (round, sleep) in [("quick", 0), ("slow", 1500)] {
        let marks = c.path(&format!("marks-{round}"));
        std::fs::create_dir(&marks).unwrap();
        let out_dir = c.path(&format!("out-{round}"));
        let params = [
            format!("marker_dir={}", marks.display()),
            format!("fixed_sleep_map_ms={sleep}"),
            format!("fixed_sleep_reduce_ms={sleep}"),
        ];
        let out = submit_wait(&c, &chaos_args(&input, &out_dir, 3, 8192, &params));
        assert_job_ok(&c, &out);
        assert_eq!(read_counts(&out_dir, "word", "count"), reference(&texts));
        let m = markers(&marks);
        let maps = m.keys().filter(|(k, _)| k == "map").count();
        let reduces = m.keys().filter(|(k, _)| k == "reduce").count();
        assert!(maps >= 3, "{round}: {m:?}");
        assert_eq!(reduces, 3, "{round}: {m:?}");
        assert!(
            m.values().all(|n| *n == 1),
            "{round}: a task ran twice: {m:?}"
        );
    }
}

#[test]
fn two_workers_run_two_maps_and_two_reduces_at_once() {
    let c = Cluster::start(2, ClusterOptions::default());
    let input = c.path("in");
    let texts = write_corpus(&input, 4, 1500);
    let probe = c.path("probe");
    std::fs::create_dir(&probe).unwrap();
    let out_dir = c.path("out");
    let params = [
        format!("concurrency_dir={}", probe.display()),
        "hold_ms=800".into(),
    ];
    let out = submit_wait(&c, &chaos_args(&input, &out_dir, 2, 1 << 20, &params));
    assert_job_ok(&c, &out);
    assert_eq!(read_counts(&out_dir, "word", "count"), reference(&texts));
    let max = |kind: &str| -> u32 {
        std::fs::read_to_string(probe.join(format!("max-{kind}")))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    assert!(max("map") >= 2, "maps at once: {}", max("map"));
    assert!(max("reduce") >= 2, "reduces at once: {}", max("reduce"));
}

/// The output is complete the moment the command returns: `_SUCCESS` exists, every file it
/// lists exists with its size, and no `_temporary` is left.
fn assert_final(dir: &Path) {
    assert!(
        dir.join("_SUCCESS").is_file(),
        "no _SUCCESS in {}",
        dir.display()
    );
    assert!(
        !dir.join("_temporary").exists(),
        "_temporary left in {}",
        dir.display()
    );
    let m = manifest(dir);
    for f in m["files"].as_array().unwrap() {
        let path: PathBuf = dir.join(f["file"].as_str().unwrap());
        let len = std::fs::metadata(&path).unwrap().len();
        assert_eq!(len, f["bytes"].as_u64().unwrap(), "{}", path.display());
    }
}

#[test]
fn commands_return_only_after_the_output_is_final() {
    let c = Cluster::start(2, ClusterOptions::default());
    let input = c.path("in");
    write_corpus(&input, 3, 1500);
    let out_dir = c.path("submitted");
    let params = ["sleep_reduce_ms=300".to_string()];
    let out = submit_wait(&c, &chaos_args(&input, &out_dir, 4, 4096, &params));
    assert_job_ok(&c, &out);
    assert_final(&out_dir);

    let local = c.path("local");
    let mut args = vec!["--local".to_string(), "2".into()];
    args.extend(chaos_args(&input, &local, 4, 4096, &params));
    let out = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_ok(&out);
    assert_final(&local);
}

#[test]
fn a_coordinator_killed_mid_job_resumes_without_redoing_finished_maps() {
    let mut c = Cluster::start(2, options(5000));
    let input = c.path("in");
    let texts = write_corpus(&input, 12, 600);
    let marks = c.path("marks");
    std::fs::create_dir(&marks).unwrap();
    let out_dir = c.path("out");
    let params = [
        format!("marker_dir={}", marks.display()),
        "fixed_sleep_map_ms=300".into(),
    ];
    let args = chaos_args(&input, &out_dir, 2, 2048, &params);
    let submit = spawn_submit(&c, &args);
    let before = wait_status(&c, "job-0001", Duration::from_secs(60), |s| {
        s["maps_done"].as_u64().unwrap_or(0) >= 8
    });
    let done_before = before["maps_done"].as_u64().unwrap() as usize;
    let maps_total = before["maps_total"].as_u64().unwrap() as usize;
    assert!(done_before < maps_total, "killed too late: {before}");
    c.kill_and_restart_coordinator();
    let out = submit.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "submit --wait got the final status: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        c.logs()
    );
    assert_eq!(read_counts(&out_dir, "word", "count"), reference(&texts));
    let after = status_json(&c, "job-0001");
    assert_eq!(after["state"], "succeeded");
    // Only maps running at the kill (at most the 4 slots) ran again.
    let m = markers(&marks);
    let map_runs: Vec<usize> = (0..maps_total)
        .map(|i| *m.get(&("map".to_string(), i as u32)).unwrap_or(&0))
        .collect();
    assert!(map_runs.iter().all(|n| *n >= 1), "{map_runs:?}");
    let rerun = map_runs.iter().filter(|n| **n > 1).count();
    assert!(
        rerun <= 4,
        "{rerun} maps ran again, {done_before} were done before the kill: {map_runs:?}\n{}",
        c.logs()
    );
}

#[test]
fn a_slow_worker_gets_its_task_backed_up() {
    let mut c = Cluster::start(0, options(120_000));
    // The slow worker alone first, so it surely takes a map; its calls sleep a minute.
    c.add_worker_with(1, &[("SLUICE_CHAOS_SLOW", "1")]);
    c.wait_workers(1);
    let input = c.path("in");
    let texts = write_corpus(&input, 8, 800);
    let out_dir = c.path("out");
    let params = [
        "only_if_env=SLUICE_CHAOS_SLOW".to_string(),
        "fixed_sleep_map_ms=60000".into(),
        "fixed_sleep_reduce_ms=60000".into(),
    ];
    let args = chaos_args(&input, &out_dir, 4, 1 << 20, &params);
    let out = c.client("submit").args(&args).output().unwrap();
    assert_ok(&out);
    std::thread::sleep(Duration::from_millis(500));
    c.add_worker();
    c.add_worker();
    let started = Instant::now();
    let s = wait_status(&c, "job-0001", Duration::from_secs(50), |s| {
        s["state"] != "running"
    });
    assert_eq!(s["state"], "succeeded", "{s}");
    // The slow attempt sleeps 60 s; the job ended long before, through a backup attempt.
    assert!(started.elapsed() < Duration::from_secs(55));
    let tasks = s["maps_total"].as_u64().unwrap() + s["reduces_total"].as_u64().unwrap();
    assert!(s["attempts"].as_u64().unwrap() > tasks, "a backup ran: {s}");
    assert_eq!(read_counts(&out_dir, "word", "count"), reference(&texts));
}

#[test]
fn a_task_failing_every_attempt_fails_the_job_and_its_events_and_logs_say_why() {
    let c = Cluster::start(2, ClusterOptions::default());
    let input = c.path("in.txt");
    std::fs::write(&input, "one line\n").unwrap();
    let out_dir = c.path("out");
    let mut args = job_args(
        &plugin("sluice_testjobs"),
        input.to_str().unwrap(),
        "text",
        &out_dir,
    );
    args.extend(["--param".into(), "fail=map-error".into(), "--wait".into()]);
    let out = c.client("submit").args(&args).output().unwrap();
    let err = assert_failed(&out);
    assert!(
        err.contains("deliberate error in map") && err.contains("failed 4 times"),
        "{err}"
    );
    let s = status_json(&c, "job-0001");
    assert_eq!(s["state"], "failed");
    assert_eq!(s["attempts"], 4, "{s}");
    assert!(!out_dir.join("_SUCCESS").exists());

    // `sluice events`: planned, four attempts started and failed with the plugin's error,
    // then the job's failure; in order.
    let out = c.run_client("events", &["job-0001", "--json"]);
    assert_ok(&out);
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["kind"].as_str()).collect();
    assert_eq!(kinds.first(), Some(&"planned"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"job-failed"), "{kinds:?}");
    assert_eq!(
        kinds.iter().filter(|k| **k == "started").count(),
        4,
        "{kinds:?}"
    );
    let failed: Vec<&serde_json::Value> = events.iter().filter(|e| e["kind"] == "failed").collect();
    assert_eq!(failed.len(), 4, "{events:?}");
    for e in &failed {
        assert_eq!(e["task"], "map-0", "{e}");
        assert!(
            e["detail"]
                .as_str()
                .unwrap()
                .contains("deliberate error in map"),
            "{e}"
        );
        assert!(e["worker"].as_str().unwrap().starts_with("worker-"), "{e}");
    }
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let text = c.run_client("events", &["job-0001"]);
    assert_ok(&text);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.lines()
            .any(|l| l.contains("failed") && l.contains("map-0 #1")),
        "{text}"
    );

    // `sluice logs`: the failing attempt's own log, read from its worker, holds its error.
    let out = c.run_client("logs", &["job-0001", "--task", "map-0", "--attempt", "1"]);
    assert_ok(&out);
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(log.starts_with("==> map-0 attempt 1 on worker-"), "{log}");
    assert!(log.contains("attempt started"), "{log}");
    assert!(
        log.contains("task attempt failed") && log.contains("deliberate error in map"),
        "{log}"
    );
    assert!(
        !log.contains("attempt 0 on"),
        "only the attempt asked for: {log}"
    );
    let out = c.run_client("logs", &["job-0001"]);
    assert_ok(&out);
    let all = String::from_utf8_lossy(&out.stdout);
    assert_eq!(all.matches("==> map-0 attempt ").count(), 4, "{all}");
    assert_eq!(
        all.matches("deliberate error in map").count(),
        4 * 2,
        "header and line: {all}"
    );

    // Refusals name what is wrong.
    let err = assert_failed(&c.run_client("logs", &["job-0001", "--task", "map-x"]));
    assert!(err.contains("map-N or reduce-N"), "{err}");
    let err = assert_failed(&c.run_client("logs", &["job-0001", "--task", "reduce-7"]));
    assert!(err.contains("job-0001 has no attempt of reduce-7"), "{err}");
    let err = assert_failed(&c.run_client("events", &["job-0099"]));
    assert!(err.contains("no job job-0099"), "{err}");
}

/// The stdout of `child` once it exits by itself, which it must within `limit`.
fn wait_output(mut child: std::process::Child, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("still running {limit:?} after the job ended");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut text = String::new();
    if let Some(mut out) = child.stdout.take() {
        std::io::Read::read_to_string(&mut out, &mut text).unwrap();
    }
    text
}
