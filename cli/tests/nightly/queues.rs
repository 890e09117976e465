//! Queues: two jobs in queues of weights 3 and 1 on saturated slots share them 3:1,
//! counted over the attempts each started; a job for a queue that does not exist is
//! refused.

use crate::common;

use std::time::{Duration, Instant};

use common::chaos::*;
use common::cluster::{Cluster, ClusterOptions};

#[test]
fn two_queues_of_weights_three_and_one_share_the_slots_three_to_one() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        "[queues.nightly]\nweight = 3\n[queues.adhoc]\nweight = 1\n",
    )
    .unwrap();
    let mut opts: ClusterOptions = options(10_000);
    opts.coordinator_args
        .extend(["--config".into(), config.to_string_lossy().into_owned()]);
    let mut cluster = Cluster::start(0, opts);
    cluster.add_worker_with(4, &[]);
    cluster.wait_workers(1);
    let input = cluster.path("in");
    std::fs::create_dir_all(&input).unwrap();
    let words: String = (0..60_000).map(|i| format!("w{}\n", i % 101)).collect();
    std::fs::write(input.join("words.txt"), words).unwrap();
    let params = ["fixed_sleep_map_ms=100".to_string()];
    let submit = |queue: &str, out: &str| {
        let mut args = chaos_args(&input, &cluster.path(out), 1, 1024, &params);
        args.extend(["--queue".into(), queue.into()]);
        spawn_submit(&cluster, &args)
    };
    let a = submit("nightly", "out-a");
    wait_status(&cluster, "job-0001", Duration::from_secs(60), |_| true);
    let b = submit("adhoc", "out-b");
    wait_status(&cluster, "job-0002", Duration::from_secs(60), |_| true);
    // Both have well over a hundred maps; count what each finishes once both are in,
    // while both still have work.
    let done = || {
        let (sa, sb) = (
            status_json(&cluster, "job-0001"),
            status_json(&cluster, "job-0002"),
        );
        assert!(sa["maps_total"].as_u64() > Some(150), "{sa}");
        // Attempts started: the slots each got (backup attempts included, as they hold a
        // slot too).
        let d = |s: &serde_json::Value| s["attempts"].as_u64().unwrap_or(0);
        (d(&sa), d(&sb), sa, sb)
    };
    let (a0, b0, _, _) = done();
    let deadline = Instant::now() + Duration::from_secs(120);
    let (done_a, done_b) = loop {
        let (da, db, sa, sb) = done();
        let (da, db) = (da - a0, db - b0);
        if da + db >= 80 {
            break (da, db);
        }
        assert!(Instant::now() < deadline, "{sa}\n{sb}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let ratio = done_a as f64 / done_b.max(1) as f64;
    eprintln!("attempts started with both queues busy: nightly {done_a}, adhoc {done_b}");
    assert!(
        (2.2..=4.0).contains(&ratio),
        "nightly started {done_a} attempts to adhoc's {done_b} ({ratio:.2}), not about 3:1"
    );
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert_job_ok(&cluster, &out);
    }
    let mut args = chaos_args(&input, &cluster.path("out-c"), 1, 1 << 20, &[]);
    args.extend(["--queue".into(), "urgent".into()]);
    let refused = submit_wait(&cluster, &args);
    let e = String::from_utf8_lossy(&refused.stderr);
    assert!(e.contains("--queue urgent: no such queue"), "{e}");
}
