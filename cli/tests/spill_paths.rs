//! The memory-bounding paths of a job change how it runs, never what it writes: with the
//! adaptive combiner switched off mid-task and with map runs spilled, the output equals an
//! independent reference and is byte-identical to a run that did neither.

mod common;

use std::path::Path;
use std::process::Output;

use common::*;

/// `sluice run` of EOD over `input` into `output` (CSV output, compared as text), with worker
/// debug logs on stderr so the test can see which paths ran.
fn run_eod(input: &Path, output: &Path, extra: &[&str]) -> Output {
    let out = sluice()
        .env("SLUICE_LOG", "sluice_worker=debug")
        .args([
            "run",
            "--local",
            "2",
            "--reducers",
            "3",
            "--split-size",
            "65536",
        ])
        .args(["--format", "csv", "--output-format", "csv"])
        .arg("--plugin")
        .arg(plugin("sluice_eod"))
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(output)
        .args(extra)
        .output()
        .expect("sluice runs");
    assert_ok(&out);
    out
}

/// Every part file of `dir`, by name, as bytes.
fn parts(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("part-")
        })
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    v.sort();
    v
}

#[test]
fn eod_is_the_same_whether_the_combiner_groups_passes_rows_through_or_spills() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("txns");
    std::fs::create_dir(&input).unwrap();
    let files = sluice_datagen::write_eod_files(&input, 30_000, 3, 11).unwrap();
    let expected = reference_eod(&files);

    // Default batches: the combiner groups each map's whole split (it has seen fewer rows
    // than it probes when the split ends).
    let grouped = dir.path().join("grouped");
    run_eod(&input, &grouped, &[]);
    // Batches of 64 rows: after 128 rows the combiner finds about one group per row and
    // passes the rest of the split through as single-row partials.
    let adaptive = dir.path().join("adaptive");
    let log = run_eod(&input, &adaptive, &["--batch-rows", "64"]);
    let stderr = String::from_utf8_lossy(&log.stderr);
    assert!(stderr.contains("rows pass through"), "{stderr}");
    // The same with 64 KiB of task memory: every map spills several runs.
    let spilled = dir.path().join("spilled");
    let log = run_eod(
        &input,
        &spilled,
        &["--batch-rows", "64", "--task-memory", "65536"],
    );
    let stderr = String::from_utf8_lossy(&log.stderr);
    assert!(stderr.contains("map task spills a run"), "{stderr}");

    for out in [&grouped, &adaptive, &spilled] {
        let got = read_eod_csv_output(out);
        assert_eq!(got.len(), expected.len(), "{}", out.display());
        for (k, row) in &expected {
            assert_eq!(got.get(k), Some(row), "group {k:?} in {}", out.display());
        }
    }
    assert!(parts(&adaptive) == parts(&grouped), "adaptive differs");
    assert!(parts(&spilled) == parts(&grouped), "spilled differs");
}
