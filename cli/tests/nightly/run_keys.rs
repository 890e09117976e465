//! Run keys (`--run-key`): a nightly batch runs once per key however often it is submitted,
//! in local mode with a kept job store and on a cluster, across a coordinator restart and
//! under concurrent submissions; a failed key runs again, `--rerun` forces a new run.

use crate::common;

use std::path::Path;
use std::process::Output;

use common::chaos::*;
use common::cluster::{Cluster, job_args};
use common::*;

fn write_text(dir: &Path) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let input = dir.join("in.txt");
    let text: String = (0..3000)
        .map(|i| format!("w{} w{}\n", i % 37, i % 11))
        .collect();
    std::fs::write(&input, text).unwrap();
    input
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn local_runs_with_a_kept_store_run_a_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_text(dir.path());
    let state = dir.path().join("state");
    let out = dir.path().join("out");
    let wc = plugin("sluice_wordcount");
    let run_with = |extra: &[&str]| {
        let mut args = vec![
            "--local",
            "1",
            "--format",
            "text",
            "--plugin",
            wc.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    let first = run_with(&["--run-key", "wc@2026-11-28"]);
    assert_ok(&first);
    assert!(
        stdout(&first).contains("job job-0001"),
        "{}",
        stdout(&first)
    );
    let success = std::fs::read(out.join("_SUCCESS")).unwrap();
    // The same key again: the earlier job answers, though the output exists and no
    // --overwrite was given (nothing is planned).
    let again = run_with(&["--run-key", "wc@2026-11-28"]);
    assert_ok(&again);
    assert!(
        stdout(&again).contains("job job-0001"),
        "{}",
        stdout(&again)
    );
    assert!(
        stderr(&again).contains("wc@2026-11-28: job-0001 already succeeded"),
        "{}",
        stderr(&again)
    );
    assert_eq!(std::fs::read(out.join("_SUCCESS")).unwrap(), success);
    // Another key is another run; --rerun runs a key again.
    let other = run_with(&["--run-key", "wc@2026-11-29", "--overwrite"]);
    assert_ok(&other);
    assert!(
        stdout(&other).contains("job job-0002"),
        "{}",
        stdout(&other)
    );
    let rerun = run_with(&["--run-key", "wc@2026-11-28", "--rerun", "--overwrite"]);
    assert_ok(&rerun);
    assert!(
        stdout(&rerun).contains("job job-0003"),
        "{}",
        stdout(&rerun)
    );
    // Without a kept store a key would mean nothing.
    let e = assert_failed(&run(&[
        "--local",
        "1",
        "--format",
        "text",
        "--plugin",
        wc.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        dir.path().join("x").to_str().unwrap(),
        "--run-key",
        "k",
    ]));
    assert!(e.contains("--run-key needs --state-dir"), "{e}");
}

fn submit(c: &Cluster, input: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = job_args(
        &plugin("sluice_wordcount"),
        input.to_str().unwrap(),
        "text",
        out,
    );
    args.extend(extra.iter().map(|s| s.to_string()));
    submit_wait(c, &args)
}

fn job_id(out: &Output) -> String {
    stdout(out).lines().next().unwrap_or_default().to_string()
}

#[test]
fn a_cluster_runs_a_key_once_under_concurrent_submissions_and_after_a_restart() {
    let mut cluster = Cluster::start(2, options(10_000));
    let input = write_text(&cluster.path("data"));
    let out = cluster.path("out");
    // Four submissions of one key at once: one job.
    let args: Vec<String> = {
        let mut a = job_args(
            &plugin("sluice_wordcount"),
            input.to_str().unwrap(),
            "text",
            &out,
        );
        a.extend(["--run-key", "eod@2026-11-28"].map(String::from));
        a
    };
    let children: Vec<_> = (0..4).map(|_| spawn_submit(&cluster, &args)).collect();
    let outs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    for o in &outs {
        assert_job_ok(&cluster, o);
        assert_eq!(job_id(o), "job-0001", "{}", stderr(o));
    }
    let jobs = cluster.run_client("jobs", &["--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&jobs.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["run_key"], "eod@2026-11-28", "{listed}");

    // A key whose job failed runs again.
    let bad_plugin_params = ["--run-key", "eod@2026-11-30", "--param", "fail=map-error"];
    let fails = {
        let mut a = job_args(
            &plugin("sluice_testjobs"),
            input.to_str().unwrap(),
            "text",
            &cluster.path("out-g"),
        );
        a.extend(bad_plugin_params.map(String::from));
        submit_wait(&cluster, &a)
    };
    assert!(!fails.status.success(), "{}", stderr(&fails));
    let failed_id = job_id(&fails);
    let retried = {
        let mut a = job_args(
            &plugin("sluice_testjobs"),
            input.to_str().unwrap(),
            "text",
            &cluster.path("out-g"),
        );
        a.extend(["--run-key", "eod@2026-11-30", "--overwrite"].map(String::from));
        submit_wait(&cluster, &a)
    };
    assert_job_ok(&cluster, &retried);
    assert_ne!(job_id(&retried), failed_id);

    // The keys survive a coordinator restart: the store remembers them.
    cluster.kill_and_restart_coordinator();
    cluster.wait_workers(2);
    let after = submit(&cluster, &input, &out, &["--run-key", "eod@2026-11-28"]);
    assert_job_ok(&cluster, &after);
    assert_eq!(job_id(&after), "job-0001");
    assert!(
        stderr(&after).contains("already succeeded"),
        "{}",
        stderr(&after)
    );
}
