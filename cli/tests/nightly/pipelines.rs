//! Pipelines with real processes: a fan-in of two word counts into a third job, a step that
//! fails stopping its dependents, the rerun with the same run key running only what did not
//! succeed (the others' job ids unchanged), and a run going on through a coordinator
//! restart on a cluster.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use common::cluster::Cluster;
use common::*;

/// A word of letters only (word count splits on anything else) for `n`.
fn word(mut n: usize) -> String {
    let mut w = String::from("w");
    loop {
        w.push((b'a' + (n % 26) as u8) as char);
        n /= 26;
        if n == 0 {
            return w;
        }
    }
}

/// `n` lines of two words: `modulus` distinct ones, and 7 others.
fn write_words(path: &Path, n: usize, modulus: usize) {
    let text: String = (0..n)
        .map(|i| format!("{} x{}\n", word(i % modulus), word(i % 7)))
        .collect();
    std::fs::write(path, text).unwrap();
}

/// The pipeline: `count_a` and `count_b` (word count, CSV output) feed `lengths` (the test
/// plugin counting the lines of both outputs by length).
fn pipeline_file(dir: &Path, a: &Path, b: &Path, extra: &str) -> std::path::PathBuf {
    let out = dir.join("out");
    let text = format!(
        r#"
[pipeline]
name = "fan_in"

[[steps]]
name = "count_a"
plugin = "{wc}"
input = ["{a}"]
format = "text"
output = "{out}/a"
output_format = "csv"
reducers = 2
{extra}

[[steps]]
name = "count_b"
plugin = "{wc}"
input = ["{b}"]
format = "text"
output = "{out}/b"
output_format = "csv"
{extra}

[[steps]]
name = "lengths"
depends_on = ["count_a", "count_b"]
plugin = "{tj}"
input = ["${{steps.count_a.output}}/part-*.csv", "${{steps.count_b.output}}/part-*.csv"]
format = "text"
output = "{out}/lengths"
reducers = 2
"#,
        wc = plugin("sluice_wordcount").display(),
        tj = plugin("sluice_testjobs").display(),
        a = a.display(),
        b = b.display(),
        out = out.display(),
    );
    let file = dir.join("fan_in.toml");
    std::fs::write(&file, text).unwrap();
    file
}

/// Line lengths over every CSV part file of `dirs` (the reference for `lengths`).
fn reference_lengths(dirs: &[&Path]) -> BTreeMap<i64, i64> {
    let mut out = BTreeMap::new();
    for d in dirs {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with("part-") && name.ends_with(".csv") {
                for line in std::fs::read_to_string(&p).unwrap().lines() {
                    *out.entry(line.chars().count() as i64).or_default() += 1;
                }
            }
        }
    }
    out
}

fn lengths(out: &Path) -> BTreeMap<i64, i64> {
    let mut got = BTreeMap::new();
    for (_, batches) in read_parts(out) {
        for b in batches {
            let len = b.column(0).as_primitive::<Int64Type>();
            let n = b.column(1).as_primitive::<Int64Type>();
            for i in 0..b.num_rows() {
                got.insert(len.value(i), n.value(i));
            }
        }
    }
    got
}

/// The JSON a `pipeline run --json` printed after its id line.
fn run_json(out: &Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&out.stdout);
    let json = text.split_once('\n').map(|(_, rest)| rest).unwrap_or("");
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn step<'a>(run: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap()
}

#[test]
fn a_failed_step_stops_its_dependents_and_the_rerun_runs_only_what_did_not_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.txt");
    let b = dir.path().join("b.txt");
    write_words(&a, 5000, 301);
    let file = pipeline_file(dir.path(), &a, &b, "");
    let state = dir.path().join("state");
    let run = || {
        sluice()
            .args(["pipeline", "run"])
            .arg(&file)
            .args(["--local", "2", "--run-key", "eod@2026-11-28", "--json"])
            .arg("--state-dir")
            .arg(&state)
            .output()
            .unwrap()
    };
    // b.txt has not landed: count_b cannot start, lengths never runs, count_a does.
    let first = run();
    assert_eq!(first.status.code(), Some(1), "{first:?}");
    let r1 = run_json(&first);
    assert_eq!(r1["state"], "failed", "{r1}");
    assert!(
        r1["error"]
            .as_str()
            .unwrap()
            .contains("step count_b failed")
            && r1["error"].as_str().unwrap().contains("b.txt"),
        "{r1}"
    );
    assert_eq!(step(&r1, "count_a")["state"], "succeeded", "{r1}");
    assert_eq!(step(&r1, "count_b")["state"], "failed", "{r1}");
    assert_eq!(step(&r1, "lengths")["state"], "blocked", "{r1}");
    assert!(!dir.path().join("out/lengths").exists());
    let count_a_job = step(&r1, "count_a")["job_id"].clone();

    // It lands; the same run key runs count_b and lengths, and count_a's job answers.
    write_words(&b, 3000, 211);
    let second = run();
    assert_ok(&second);
    let r2 = run_json(&second);
    assert_eq!(r2["state"], "succeeded", "{r2}");
    assert_eq!(step(&r2, "count_a")["job_id"], count_a_job, "{r2}");
    assert_ne!(step(&r2, "count_b")["job_id"], "", "{r2}");
    let out = dir.path().join("out");
    let expected = reference_lengths(&[&out.join("a"), &out.join("b")]);
    assert!(expected.len() > 3, "{expected:?}");
    assert_eq!(lengths(&out.join("lengths")), expected);
    assert_eq!(
        read_csv_counts(&out.join("a")).len(),
        301 + 7,
        "count_a's output is the first run's"
    );
}

fn read_csv_counts(dir: &Path) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "csv") {
            let mut r = csv::Reader::from_path(&p).unwrap();
            for rec in r.records() {
                let rec = rec.unwrap();
                out.insert(rec[0].to_string(), rec[1].parse().unwrap());
            }
        }
    }
    out
}

fn pipeline_status(c: &Cluster, run: &str) -> Option<serde_json::Value> {
    let out = c
        .client("pipeline")
        .args(["status", run, "--json"])
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap())
}

/// The coordinator is SIGKILLed while the first steps run; restarted, it resumes their jobs
/// from the store and starts the fan-in when they succeed.
#[test]
fn a_pipeline_run_goes_on_through_a_coordinator_restart() {
    let mut cluster = Cluster::start(2, common::chaos::options(10_000));
    let data = cluster.path("data");
    std::fs::create_dir_all(&data).unwrap();
    let (a, b) = (data.join("a.txt"), data.join("b.txt"));
    write_words(&a, 20_000, 301);
    write_words(&b, 20_000, 211);
    // Slow maps (64 of them, 150 ms each) keep the first steps running across the restart.
    let file = pipeline_file(
        &data,
        &a,
        &b,
        "split_size = 4096\nparams = { fixed_sleep_map_ms = \"150\" }",
    );
    let text = std::fs::read_to_string(&file).unwrap().replace(
        &plugin("sluice_wordcount").display().to_string(),
        &plugin("sluice_chaos").display().to_string(),
    );
    std::fs::write(&file, text).unwrap();
    let submitted = cluster
        .client("pipeline")
        .arg("run")
        .arg(&file)
        .args(["--run-key", "nightly@1"])
        .output()
        .unwrap();
    assert!(submitted.status.success(), "{submitted:?}");
    let run = String::from_utf8_lossy(&submitted.stdout)
        .trim()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = pipeline_status(&cluster, &run).unwrap();
        if step(&s, "count_a")["state"] == "running" && step(&s, "count_b")["state"] == "running" {
            break;
        }
        assert!(Instant::now() < deadline, "{s}");
        std::thread::sleep(Duration::from_millis(50));
    }
    cluster.kill_and_restart_coordinator();
    let deadline = Instant::now() + Duration::from_secs(180);
    let done = loop {
        if let Some(s) = pipeline_status(&cluster, &run)
            && s["state"] != "running"
        {
            break s;
        }
        assert!(Instant::now() < deadline, "the run did not end");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(done["state"], "succeeded", "{done}\n{}", cluster.logs());
    let jobs: Vec<&str> = done["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["job_id"].as_str().unwrap())
        .collect();
    assert_eq!(jobs.len(), 3);
    assert!(jobs.iter().all(|j| !j.is_empty()), "{done}");
    let out = data.join("out");
    assert_eq!(
        lengths(&out.join("lengths")),
        reference_lengths(&[&out.join("a"), &out.join("b")])
    );
    // One job per step: the restart did not start a step twice.
    let listed = cluster.run_client("jobs", &["--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 3, "{listed}");
}
