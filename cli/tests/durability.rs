//! What survives when the disk does not cooperate: a `_SUCCESS` that cannot be written
//! leaves the job commit-failed with every part file kept, and `sluice commit` or a
//! restarted coordinator finishes it.

mod common;

use std::time::Duration;

use common::chaos::{chaos_args, reference, spawn_submit, status_json, wait_status, write_corpus};
use common::cluster::{Cluster, ClusterOptions};
use common::*;

#[test]
fn a_success_marker_that_cannot_be_written_leaves_the_parts_for_sluice_commit_or_a_restart() {
    let mut c = Cluster::start(2, ClusterOptions::default());
    let input = c.path("in");
    let texts = write_corpus(&input, 4, 400);
    let out_dir = c.path("out");
    let gate = c.path("gate");
    let params = [format!("reduce_gate={}", gate.display())];
    let submit = spawn_submit(&c, &chaos_args(&input, &out_dir, 3, 1 << 20, &params));
    wait_status(&c, "job-0001", Duration::from_secs(60), |s| {
        s["maps_total"].as_u64() > Some(0) && s["maps_done"] == s["maps_total"]
    });
    // A directory where `_SUCCESS` goes: the rename onto it fails however often it is
    // tried, as a full or read-only disk would.
    let blocker = out_dir.join("_SUCCESS").join("blocker");
    std::fs::create_dir_all(&blocker).unwrap();
    std::fs::write(&gate, "").unwrap();

    let out = submit.wait_with_output().unwrap();
    let err = assert_failed(&out);
    assert!(
        err.contains("commit-failed") && err.contains("sluice commit job-0001"),
        "{err}"
    );
    let s = status_json(&c, "job-0001");
    assert_eq!(s["state"], "commit-failed", "{s}");
    assert_eq!(s["reduces_done"], 3, "{s}");
    // Every part file is there and whole: the output is right but for its marker.
    assert_eq!(read_counts(&out_dir, "word", "count"), reference(&texts));

    // Trying again while the disk still refuses changes nothing.
    let again = c.run_client("commit", &["job-0001"]);
    let err = assert_failed(&again);
    assert!(err.contains("commit-failed"), "{err}");

    // A coordinator killed meanwhile resumes the job and writes the marker at start.
    std::fs::remove_dir_all(out_dir.join("_SUCCESS")).unwrap();
    c.kill_and_restart_coordinator();
    let s = wait_status(&c, "job-0001", Duration::from_secs(30), |s| {
        s["state"] != "running"
    });
    assert_eq!(s["state"], "succeeded", "{s}");
    let m = manifest(&out_dir);
    assert_eq!(m["files"].as_array().unwrap().len(), 3, "{m}");
    assert_eq!(read_counts(&out_dir, "word", "count"), reference(&texts));

    // Only a commit-failed job can be committed again.
    let err = assert_failed(&c.run_client("commit", &["job-0001"]));
    assert!(err.contains("only a commit-failed job"), "{err}");
}

/// The same, finished by hand: `sluice commit` once the output can be written.
#[test]
fn sluice_commit_writes_the_marker_once_the_output_can_be_written() {
    let c = Cluster::start(1, ClusterOptions::default());
    let input = c.path("in");
    let texts = write_corpus(&input, 2, 300);
    let out_dir = c.path("out");
    let gate = c.path("gate");
    let params = [format!("reduce_gate={}", gate.display())];
    let submit = spawn_submit(&c, &chaos_args(&input, &out_dir, 2, 1 << 20, &params));
    wait_status(&c, "job-0001", Duration::from_secs(60), |s| {
        s["maps_total"].as_u64() > Some(0) && s["maps_done"] == s["maps_total"]
    });
    std::fs::create_dir_all(out_dir.join("_SUCCESS").join("blocker")).unwrap();
    std::fs::write(&gate, "").unwrap();
    assert_failed(&submit.wait_with_output().unwrap());

    std::fs::remove_dir_all(out_dir.join("_SUCCESS")).unwrap();
    let out = c.run_client("commit", &["job-0001", "--json"]);
    assert_ok(&out);
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["state"], "succeeded", "{info}");
    assert_eq!(manifest(&out_dir)["files"].as_array().unwrap().len(), 2);
    assert_eq!(read_counts(&out_dir, "word", "count"), reference(&texts));
}
