//! Helpers of the fault tests: a word-count corpus and its reference counts, submissions of
//! the `sluice_chaos` plugin (examples/chaos), job status polling, and the output's bytes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use super::cluster::{Cluster, ClusterOptions, job_args};
use super::{assert_ok, plugin, reference_word_count};

/// A corpus of `files` files; returns their texts.
pub fn write_corpus(dir: &Path, files: usize, words_per_file: usize) -> Vec<String> {
    std::fs::create_dir_all(dir).unwrap();
    (0..files)
        .map(|f| {
            let mut text = String::new();
            for i in 0..words_per_file {
                // Many distinct words (letters only: digits separate words), so every
                // reduce partition gets some.
                let mut n = (i * 31 + f * 7) % 997;
                let mut word = String::new();
                loop {
                    word.push((b'a' + (n % 26) as u8) as char);
                    n /= 26;
                    if n == 0 {
                        break;
                    }
                }
                text.push_str(&word);
                text.push(' ');
                if i % 9 == 8 {
                    text.push('\n');
                }
            }
            std::fs::write(dir.join(format!("f{f:02}.txt")), &text).unwrap();
            text
        })
        .collect()
}

pub fn reference(texts: &[String]) -> HashMap<String, i64> {
    reference_word_count(&texts.iter().map(String::as_str).collect::<Vec<_>>())
}

/// `submit` arguments for the chaos plugin.
pub fn chaos_args(
    input: &Path,
    output: &Path,
    reducers: u32,
    split: u64,
    params: &[String],
) -> Vec<String> {
    let mut args = job_args(
        &plugin("sluice_chaos"),
        input.to_str().unwrap(),
        "text",
        output,
    );
    args.extend([
        "--reducers".into(),
        reducers.to_string(),
        "--split-size".into(),
        split.to_string(),
    ]);
    for p in params {
        args.extend(["--param".into(), p.clone()]);
    }
    args
}

pub fn spawn_submit(c: &Cluster, args: &[String]) -> Child {
    c.client("submit")
        .args(args)
        .arg("--wait")
        .arg("--quiet")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

pub fn submit_wait(c: &Cluster, args: &[String]) -> Output {
    spawn_submit(c, args).wait_with_output().unwrap()
}

pub fn assert_job_ok(c: &Cluster, out: &Output) {
    if !out.status.success() {
        panic!(
            "submit failed ({:?}):\n{}\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            c.logs()
        );
    }
}

/// `(kind, index)` → number of attempts that left a marker.
pub fn markers(dir: &Path) -> HashMap<(String, u32), usize> {
    let mut out = HashMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        let parts: Vec<&str> = name.split('-').collect();
        if let [kind, index, _attempt, _pid] = parts.as_slice() {
            *out.entry((kind.to_string(), index.parse().unwrap()))
                .or_insert(0) += 1;
        }
    }
    out
}

pub fn status_json(c: &Cluster, job: &str) -> serde_json::Value {
    let out = c.run_client("status", &[job, "--json"]);
    assert_ok(&out);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Polls the job until `pred` holds; panics after `limit`.
pub fn wait_status(
    c: &Cluster,
    job: &str,
    limit: Duration,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + limit;
    loop {
        // The job may not exist yet: the client is still uploading the plugin.
        let out = c.run_client("status", &[job, "--json"]);
        let s: serde_json::Value = if out.status.success() {
            serde_json::from_slice(&out.stdout).unwrap()
        } else {
            serde_json::Value::Null
        };
        if !s.is_null() && pred(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "job never reached the state: {s}\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The files directly in `dir` whose names start with `prefix`, sorted by name.
pub fn files_starting_with(dir: &Path, prefix: &str) -> Vec<std::path::PathBuf> {
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .collect();
    files.sort();
    files
}

/// Every part file of `dir`, by name, as bytes.
pub fn part_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    files_starting_with(dir, "part-")
        .into_iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

pub fn options(worker_timeout_ms: u64) -> ClusterOptions {
    ClusterOptions {
        coordinator_args: vec!["--worker-timeout-ms".into(), worker_timeout_ms.to_string()],
        ..Default::default()
    }
}

/// A chaos word count over `input` whose reduces wait for a gate file, submitted with
/// `--wait` and past its maps: the test does its damage, then opens the gate.
pub struct Gated {
    /// The job's output directory.
    pub out_dir: PathBuf,
    /// Created, it lets the reduces run.
    pub gate: PathBuf,
    /// The `submit --wait` process.
    pub submit: Child,
    /// The job's status once its maps were done.
    pub status: serde_json::Value,
}

/// Submits job-0001 as [`Gated`] with `reducers` partitions and waits for its maps.
pub fn submit_gated(c: &Cluster, input: &Path, reducers: u32) -> Gated {
    let out_dir = c.path("out");
    let gate = c.path("gate");
    let params = [format!("reduce_gate={}", gate.display())];
    let submit = spawn_submit(c, &chaos_args(input, &out_dir, reducers, 1 << 20, &params));
    let status = wait_status(c, "job-0001", Duration::from_secs(120), |s| {
        s["maps_total"].as_u64() > Some(0) && s["maps_done"] == s["maps_total"]
    });
    Gated {
        out_dir,
        gate,
        submit,
        status,
    }
}

/// The job's events, as JSON values.
fn job_events(c: &Cluster, job: &str) -> Vec<serde_json::Value> {
    let out = c.run_client("events", &[job, "--json"]);
    assert_ok(&out);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// How many events of `kind` on tasks starting with `task_prefix` each worker (by id) has.
fn per_worker(
    events: &[serde_json::Value],
    kind: &str,
    task_prefix: &str,
) -> HashMap<String, usize> {
    let mut n: HashMap<String, usize> = HashMap::new();
    for e in events {
        let task = e["task"].as_str().unwrap_or("");
        if e["kind"] == kind && task.starts_with(task_prefix) {
            *n.entry(e["worker"].as_str().unwrap_or("").to_string())
                .or_default() += 1;
        }
    }
    n
}

/// The index in `c.workers` of the worker the coordinator knows as `id`: each worker logs
/// the id it was given when it registered (again).
fn worker_index(c: &Cluster, id: &str) -> usize {
    let field = format!("worker_id={id}");
    c.workers
        .iter()
        .position(|w| w.log_text().split_whitespace().any(|f| f == field))
        .unwrap_or_else(|| panic!("no worker log names {id}:\n{}", c.logs()))
}

/// The index (in `c.workers`, none killed yet) of the worker that finished the most map
/// attempts of `job`, per the job's events: a worker that only holds a losing backup's
/// directory (cancelled, or not yet removed) holds no map output anyone reads.
pub fn worker_holding_outputs(c: &Cluster, job: &str) -> usize {
    let finished = per_worker(&job_events(c, job), "finished", "map-");
    let (id, _) = finished
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .expect("some map finished");
    worker_index(c, &id)
}

/// Once `reduces` reduce attempts of a [`Gated`] job started (they wait at the gate, their
/// input fetched), the index of a worker running one of them that also holds map outputs:
/// killing it loses both, so the job cannot end without noticing (the attempt runs again
/// elsewhere and must fetch the outputs anew), however the reduces were spread.
pub fn worker_with_reduce_and_outputs(c: &Cluster, job: &str, reduces: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let events = job_events(c, job);
        let started = per_worker(&events, "started", "reduce-");
        if started.values().sum::<usize>() >= reduces {
            let maps = per_worker(&events, "finished", "map-");
            let (id, _) = maps
                .into_iter()
                .filter(|(w, _)| started.contains_key(w))
                .max_by_key(|(_, n)| *n)
                .unwrap_or_else(|| panic!("no worker runs a reduce and holds a map output"));
            return worker_index(c, &id);
        }
        assert!(
            Instant::now() < deadline,
            "{reduces} reduces never started\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
