//! Schedules on a real cluster: a schedule with a seconds field fires every two seconds,
//! each firing a job with its own run key and output; a SIGKILLed and restarted coordinator
//! neither repeats nor skips a time; pause stops the firings, remove forgets the schedule.

use crate::common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::chaos::options;
use common::cluster::Cluster;
use common::*;

/// Succeeded and running jobs of schedule `wc`, as (run key, job, state).
fn fired(c: &Cluster) -> Vec<(String, String, String)> {
    let out = c.run_client("jobs", &["--json"]);
    let jobs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    jobs.as_array()
        .unwrap()
        .iter()
        .filter(|j| j["run_key"].as_str().unwrap_or("").starts_with("wc@"))
        .map(|j| {
            (
                j["run_key"].as_str().unwrap().to_string(),
                j["job_id"].as_str().unwrap().to_string(),
                j["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn wait_for(c: &Cluster, n: usize) -> Vec<(String, String, String)> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let f = fired(c);
        if f.iter().filter(|(_, _, s)| s == "succeeded").count() >= n {
            return f;
        }
        assert!(Instant::now() < deadline, "{f:?}\n{}", c.logs());
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn schedule(c: &Cluster, args: &[&str]) -> std::process::Output {
    c.client("schedule").args(args).output().unwrap()
}

#[test]
fn a_schedule_fires_on_time_through_a_coordinator_restart_and_can_be_paused() {
    let mut cluster = Cluster::start(1, options(10_000));
    let input = cluster.path("in.txt");
    std::fs::write(&input, "alpha beta\ngamma alpha\n").unwrap();
    let out = cluster.path("out");
    let wc = plugin("sluice_wordcount");
    let add = schedule(
        &cluster,
        &[
            "add",
            "wc",
            "--cron",
            "*/2 * * * * *",
            "--tz",
            "Europe/Paris",
            "--",
            "--plugin",
            wc.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--format",
            "text",
            "--output",
            &format!("{}/{{date}}/{{time}}", out.display()),
            "--reducers",
            "1",
        ],
    );
    assert!(add.status.success(), "{add:?}");
    assert!(String::from_utf8_lossy(&add.stdout).contains("schedule wc added; next run at"));
    let before = wait_for(&cluster, 3);
    cluster.kill_and_restart_coordinator();
    cluster.wait_workers(1);
    let after = wait_for(&cluster, before.len() + 3);

    // Every firing is its own scheduled time, two seconds apart, none run twice and none
    // skipped across the restart.
    let keys: Vec<&String> = after.iter().map(|(k, _, _)| k).collect();
    let distinct: BTreeSet<&String> = keys.iter().copied().collect();
    assert_eq!(distinct.len(), keys.len(), "a time ran twice: {keys:?}");
    let seconds: Vec<i64> = distinct
        .iter()
        .map(|k| {
            let t = chrono::NaiveDateTime::parse_from_str(&k[3..], "%Y-%m-%dT%H:%M:%S").unwrap();
            t.and_utc().timestamp()
        })
        .collect();
    assert!(
        seconds.windows(2).all(|w| w[1] - w[0] == 2),
        "times skipped: {keys:?}"
    );
    for (key, _, state) in &after {
        if state != "succeeded" {
            continue;
        }
        let (date, time) = key[3..].split_once('T').unwrap();
        let dir = out.join(date).join(time.replace(':', "-"));
        assert!(dir.join("_SUCCESS").is_file(), "{}", dir.display());
    }
    let list = schedule(&cluster, &["list", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(list[0]["name"], "wc", "{list}");
    assert!(
        list[0]["last_run"].as_str().unwrap().starts_with("job-"),
        "{list}"
    );

    // Paused, it starts nothing; removed, it is gone.
    assert!(schedule(&cluster, &["pause", "wc"]).status.success());
    std::thread::sleep(Duration::from_millis(500));
    let paused_at = fired(&cluster).len();
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(fired(&cluster).len(), paused_at);
    assert!(schedule(&cluster, &["remove", "wc"]).status.success());
    let list = schedule(&cluster, &["list", "--json"]);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&list.stdout).unwrap(),
        serde_json::json!([])
    );
    let e = schedule(&cluster, &["remove", "wc"]);
    assert!(String::from_utf8_lossy(&e.stderr).contains("no schedule wc"));
}

/// A file trigger fires once per new set of `_READY` markers: not before one lands, once
/// when one does, not again while the set stays, once more for the next day's.
#[test]
fn a_file_trigger_fires_once_per_arrival() {
    let cluster = Cluster::start(1, options(10_000));
    let landing = cluster.path("landing");
    std::fs::create_dir_all(&landing).unwrap();
    let input = cluster.path("in.txt");
    std::fs::write(&input, "alpha beta\n").unwrap();
    let wc = plugin("sluice_wordcount");
    let add = schedule(
        &cluster,
        &[
            "add",
            "ready",
            "--when-present",
            &format!("{}/day-*/_READY", landing.display()),
            "--poll",
            "1s",
            "--",
            "--plugin",
            wc.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--format",
            "text",
            "--output",
            &format!("{}/{{run_key}}", cluster.path("out").display()),
        ],
    );
    assert!(add.status.success(), "{add:?}");
    let runs = |c: &Cluster| -> Vec<String> {
        let out = c.run_client("jobs", &["--json"]);
        let jobs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        jobs.as_array()
            .unwrap()
            .iter()
            .filter_map(|j| j["run_key"].as_str().map(str::to_string))
            .filter(|k| k.starts_with("ready@"))
            .collect()
    };
    let wait_runs = |c: &Cluster, n: usize| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while runs(c).len() < n {
            assert!(Instant::now() < deadline, "{:?}\n{}", runs(c), c.logs());
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    std::thread::sleep(Duration::from_secs(3));
    assert!(runs(&cluster).is_empty(), "fired with nothing landed");
    std::fs::create_dir_all(landing.join("day-1")).unwrap();
    std::fs::write(landing.join("day-1/_READY"), "").unwrap();
    wait_runs(&cluster, 1);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(runs(&cluster).len(), 1, "the same arrival fired twice");
    std::fs::create_dir_all(landing.join("day-2")).unwrap();
    std::fs::write(landing.join("day-2/_READY"), "").unwrap();
    wait_runs(&cluster, 2);
    let keys = runs(&cluster);
    assert_ne!(keys[0], keys[1]);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(runs(&cluster).len(), 2);
}
