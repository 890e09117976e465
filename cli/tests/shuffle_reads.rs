//! How reducers read the shuffle: one stream per worker for all the map outputs it holds,
//! and no network at all for map outputs on the reducer's own host.

mod common;

use common::chaos::*;
use common::cluster::{Cluster, ClusterOptions};
use common::*;

/// Shuffle read counters of a finished job: (local outputs, remote outputs, streams).
fn reads(s: &serde_json::Value) -> (u64, u64, u64) {
    let n = |k: &str| s[k].as_u64().unwrap_or_else(|| panic!("no {k} in {s}"));
    (
        n("shuffle_local_outputs"),
        n("shuffle_remote_outputs"),
        n("shuffle_streams"),
    )
}

#[test]
fn a_reducer_fetches_every_output_a_worker_holds_in_one_stream() {
    // Three workers, each playing a machine of its own, so most outputs travel.
    let c = Cluster::start(3, ClusterOptions::default());
    let input = c.path("in");
    let texts = write_corpus(&input, 4, 2500);
    let out_dir = c.path("out");
    let reducers = 4u64;
    let out = submit_wait(&c, &chaos_args(&input, &out_dir, reducers as u32, 512, &[]));
    assert_job_ok(&c, &out);
    assert_eq!(read_counts(&out_dir, "word", "count"), reference(&texts));
    let s = status_json(&c, "job-0001");
    let maps = s["maps_total"].as_u64().unwrap();
    assert!(maps >= 50, "too few maps to show batching: {s}");
    let (local, remote, streams) = reads(&s);
    // Every map output holds rows for some partition, and each was read once per
    // partition it feeds.
    assert!(local + remote >= maps, "{s}");
    assert!(local > 0, "a reducer's own outputs are read from disk: {s}");
    // At most one stream per (reducer, other worker), however many outputs it holds.
    assert!(streams >= 1 && streams <= reducers * 2, "{s}");
    assert!(
        remote >= 10 * streams,
        "outputs were not batched into streams: {s}"
    );
}

#[test]
fn in_local_mode_every_map_output_is_read_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    let texts = write_corpus(&input, 3, 2000);
    let out_dir = dir.path().join("out");
    let mut args = chaos_args(&input, &out_dir, 3, 1024, &[]);
    args.extend(["--local".into(), "2".into()]);
    let result = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_ok(&result);
    assert_eq!(read_counts(&out_dir, "word", "count"), reference(&texts));
    // Two workers in one process share the host: each reads the other's spill files.
    let stdout = String::from_utf8_lossy(&result.stdout);
    let line = stdout
        .lines()
        .find(|l| l.contains("shuffle reads:"))
        .unwrap_or_else(|| panic!("no shuffle reads line:\n{stdout}"));
    assert!(line.ends_with("0 fetched in 0 streams"), "{line}");
    let local: u64 = line
        .split_whitespace()
        .nth(2)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(local >= 20, "{line}");
}
