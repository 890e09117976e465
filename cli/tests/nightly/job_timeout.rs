//! `--timeout`: a job that runs longer than it allows fails, saying how far it got, and
//! leaves no output behind.

use crate::common;

use common::*;

#[test]
fn a_job_over_its_timeout_fails_and_leaves_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    let words: String = (0..4000).map(|i| format!("w{}\n", i % 97)).collect();
    std::fs::write(&input, words).unwrap();
    let out = dir.path().join("out");
    // Four maps of one second each on one slot: well over the two seconds allowed.
    let result = run(&[
        "--local",
        "1",
        "--slots",
        "1",
        "--split-size",
        "4096",
        "--timeout",
        "2s",
        "--format",
        "text",
        "--plugin",
        plugin("sluice_chaos").to_str().unwrap(),
        "--param",
        "fixed_sleep_map_ms=1000",
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    let e = assert_failed(&result);
    assert!(
        e.contains("the job ran longer than its --timeout of 2 s") && e.contains("of 4 maps"),
        "{e}"
    );
    assert!(!out.exists(), "a timed-out job's output is removed");
    let e = assert_failed(&run(&[
        "--local",
        "1",
        "--timeout",
        "99999h",
        "--format",
        "text",
        "--plugin",
        plugin("sluice_chaos").to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]));
    assert!(
        e.contains("--timeout of 359996400 s is over the 30 days"),
        "{e}"
    );
}
