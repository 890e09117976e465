//! Input snapshots: a file rewritten after the job was planned, before its map read it,
//! fails the job naming the file, instead of one output mixing two versions of the input.

use crate::common;

use std::time::Duration;

use common::chaos::*;
use common::cluster::Cluster;

#[test]
fn a_file_rewritten_after_planning_fails_the_job_naming_it() {
    let mut cluster = Cluster::start(0, options(10_000));
    // One slot: the maps run one after another, in split order, each sleeping in the map.
    cluster.add_worker_with(1, &[]);
    cluster.wait_workers(1);
    let input = cluster.path("in");
    std::fs::create_dir_all(&input).unwrap();
    let words: String = (0..4000).map(|i| format!("w{}\n", i % 97)).collect();
    std::fs::write(input.join("a.txt"), &words).unwrap();
    let late = input.join("z.txt");
    std::fs::write(&late, "first delivery\n").unwrap();
    let out = cluster.path("out");
    let params = ["fixed_sleep_map_ms=400".to_string()];
    let args = chaos_args(&input, &out, 2, 4096, &params);
    let submitted = cluster
        .client("submit")
        .args(&args)
        .output()
        .expect("sluice runs");
    assert!(submitted.status.success(), "{submitted:?}");
    let job = String::from_utf8_lossy(&submitted.stdout)
        .trim()
        .to_string();
    // The late file's map comes after a.txt's (about 5 × 400 ms of maps): rewrite it now.
    std::fs::write(&late, "second delivery, longer\n").unwrap();
    let s = wait_status(&cluster, &job, Duration::from_secs(120), |s| {
        s["state"] != "running"
    });
    assert_eq!(s["state"], "failed", "{s}");
    let error = s["error"].as_str().unwrap();
    assert!(
        error.contains("input changed during the job")
            && error.contains(late.to_str().unwrap())
            && error.contains("held 15 bytes at planning and holds 24 now"),
        "{error}"
    );
    assert!(s["maps_done"].as_u64() >= Some(4), "{s}");
    assert!(!out.join("_SUCCESS").exists());
}
