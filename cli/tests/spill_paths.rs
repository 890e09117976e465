//! The memory-bounding paths of a job change how it runs, never what it writes: with the
//! adaptive combiner switched off mid-task, with map runs spilled, and with reducers spilling
//! sorted runs and merging them (declared aggregates and custom reduce alike), the output
//! equals an independent reference and is byte-identical to a run that did none of it.

mod common;

use std::path::Path;

use common::chaos::{part_bytes, write_corpus};
use std::process::Output;

use common::*;

/// `sluice run` of EOD over `input` into `output` (CSV output, compared as text, unless
/// `extra` names another), with worker debug logs on stderr so the test can see which paths
/// ran.
fn run_eod(input: &Path, output: &Path, extra: &[&str]) -> Output {
    let format: &[&str] = if extra.contains(&"--output-format") {
        &[]
    } else {
        &["--output-format", "csv"]
    };
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
        .args(["--format", "csv"])
        .args(format)
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
    // Batches of 64 rows: after 128 rows the combiner finds about one group per row and,
    // having spilled nothing, sends the whole split on as map output rows.
    let adaptive = dir.path().join("adaptive");
    let log = run_eod(&input, &adaptive, &["--batch-rows", "64"]);
    let stderr = String::from_utf8_lossy(&log.stderr);
    assert!(!stderr.contains("as_rows=false"), "{stderr}");
    // Some maps, not all: each file's last split is too short to decide, and sends
    // partials, so reducers fold map output rows and partials together.
    let passed = stderr.matches("as_rows=true").count();
    let maps = map_count(&String::from_utf8_lossy(&log.stdout));
    assert!(
        passed > 0 && passed < maps,
        "{passed} of {maps} maps: {stderr}"
    );
    // The same with 32 KiB of task memory: every map spills runs of partial groups before
    // it decides, then passes the rest through as single-row partials; every reducer
    // spills sorted runs of partial groups and merges them.
    let spilled = dir.path().join("spilled");
    let log = run_eod(
        &input,
        &spilled,
        &["--batch-rows", "64", "--task-memory", "32768"],
    );
    let stderr = String::from_utf8_lossy(&log.stderr);
    assert!(stderr.contains("map task spills a run"), "{stderr}");
    assert!(stderr.contains("as_rows=false"), "{stderr}");
    assert!(stderr.contains("reduce task spills a run"), "{stderr}");

    for out in [&grouped, &adaptive, &spilled] {
        let got = read_eod_csv_output(out);
        assert_eq!(got.len(), expected.len(), "{}", out.display());
        for (k, row) in &expected {
            assert_eq!(got.get(k), Some(row), "group {k:?} in {}", out.display());
        }
    }
    assert!(
        part_bytes(&adaptive) == part_bytes(&grouped),
        "adaptive differs"
    );
    assert!(
        part_bytes(&spilled) == part_bytes(&grouped),
        "spilled differs"
    );
    // Parquet part files too: their pages are cut where the writer's batches end, and a
    // reducer that merged runs produced its groups in other chunks than one that did not.
    let parquet = ["--batch-rows", "64", "--output-format", "parquet"];
    let in_memory = dir.path().join("parquet-in-memory");
    run_eod(&input, &in_memory, &parquet);
    let spilled = dir.path().join("parquet-spilled");
    let log = run_eod(
        &input,
        &spilled,
        &[&parquet[..], &["--task-memory", "65536"]].concat(),
    );
    assert!(String::from_utf8_lossy(&log.stderr).contains("reduce task spills a run"));
    assert!(
        part_bytes(&spilled) == part_bytes(&in_memory),
        "spilled Parquet differs"
    );
}

#[test]
fn a_custom_reduce_reads_a_merge_of_spilled_runs_and_writes_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("text");
    let texts = write_corpus(&input, 4, 3000);
    let expected = reference_word_count(&texts.iter().map(String::as_str).collect::<Vec<_>>());
    // The chaos plugin counts words with a custom reduce, which needs whole sorted groups.
    let run_wc = |out: &Path, extra: &[&str]| {
        let o = sluice()
            .env("SLUICE_LOG", "sluice_worker=debug")
            .args(["run", "--local", "2", "--reducers", "2", "--format", "text"])
            .arg("--plugin")
            .arg(plugin("sluice_chaos"))
            .arg("--input")
            .arg(&input)
            .arg("--output")
            .arg(out)
            .args(["--batch-rows", "100"])
            .args(extra)
            .output()
            .expect("sluice runs");
        assert_ok(&o);
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let in_memory = dir.path().join("in-memory");
    let log = run_wc(&in_memory, &[]);
    assert!(!log.contains("reduce task spills a run"), "{log}");
    let spilled = dir.path().join("spilled");
    let log = run_wc(&spilled, &["--task-memory", "16384"]);
    assert!(log.contains("reduce task spills a run"), "{log}");
    assert_eq!(read_counts(&in_memory, "word", "count"), expected);
    assert_eq!(read_counts(&spilled, "word", "count"), expected);
    assert!(
        part_bytes(&spilled) == part_bytes(&in_memory),
        "spilled differs"
    );
}
