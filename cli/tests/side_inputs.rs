//! Side inputs (`--side NAME=PATH`): a small table read once per worker process and handed
//! to every map task. The test plugin, given a side table `keep` (CSV, with the schema it
//! declares for that name), counts only the lines the table lists.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use common::chaos::*;
use common::cluster::{Cluster, job_args};
use common::*;

/// Writes `files` text files of distinct lines and the side table listing every third
/// line; returns the lines kept by length (the reference) and how many lines were kept.
fn write_input(dir: &Path, files: usize, lines_per_file: usize) -> (BTreeMap<i64, i64>, u64) {
    std::fs::create_dir_all(dir.join("in")).unwrap();
    let mut keep = String::from("line,weight\n");
    let mut expected: BTreeMap<i64, i64> = BTreeMap::new();
    let mut kept = 0;
    for f in 0..files {
        let mut text = String::new();
        for i in 0..lines_per_file {
            let line = format!("{}-{f}-{i}", "x".repeat(i % 7));
            if (f * lines_per_file + i).is_multiple_of(3) {
                keep.push_str(&format!("{line},{i}\n"));
                *expected.entry(line.chars().count() as i64).or_default() += 1;
                kept += 1;
            }
            text.push_str(&line);
            text.push('\n');
        }
        std::fs::write(dir.join("in").join(format!("part-{f:03}.txt")), text).unwrap();
    }
    std::fs::write(dir.join("keep.csv"), keep).unwrap();
    (expected, kept)
}

/// `len` → lines, from the test plugin's output.
fn lengths(out: &Path) -> BTreeMap<i64, i64> {
    let mut got = BTreeMap::new();
    for (_, batches) in read_parts(out) {
        for b in batches {
            let len = b.column(0).as_primitive::<Int64Type>();
            let lines = b.column(1).as_primitive::<Int64Type>();
            for i in 0..b.num_rows() {
                assert!(got.insert(len.value(i), lines.value(i)).is_none());
            }
        }
    }
    got
}

#[test]
fn every_map_task_sees_the_side_table_which_each_worker_reads_once() {
    let dir = tempfile::tempdir().unwrap();
    let (expected, kept) = write_input(dir.path(), 40, 300);
    let out = dir.path().join("out");
    let side = format!("keep={}", dir.path().join("keep.csv").display());
    let result = sluice()
        .env("SLUICE_LOG", "sluice_worker=info")
        .args(["run", "--local", "2", "--reducers", "3"])
        .args(["--split-size", "1024", "--format", "text"])
        .args(["--side", &side, "--format", "keep=csv"])
        .arg("--plugin")
        .arg(plugin("sluice_testjobs"))
        .arg("--input")
        .arg(dir.path().join("in"))
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    assert_ok(&result);
    assert_eq!(lengths(&out), expected);
    let m = manifest(&out);
    assert_eq!(m["counters"]["kept"], kept, "{m}");
    let log = String::from_utf8_lossy(&result.stderr);
    // Each of the two workers loads its own copy of the plugin, and reads the table once
    // for all its map tasks (of 150).
    let loads = log.matches("side input loaded").count();
    assert!(
        (1..=2).contains(&loads),
        "{loads} loads by two workers:\n{log}"
    );
    assert!(log.contains("rows=4000"), "{log}");
}

#[test]
fn side_inputs_that_cannot_be_used_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    write_input(dir.path(), 2, 50);
    let input = dir.path().join("in");
    let keep = dir.path().join("keep.csv");
    let job = |extra: &[&str]| {
        let mut args = vec![
            "--local".to_string(),
            "1".into(),
            "--format".into(),
            "text".into(),
            "--format".into(),
            "keep=csv".into(),
            "--plugin".into(),
            plugin("sluice_testjobs").to_string_lossy().into_owned(),
            "--input".into(),
            input.to_string_lossy().into_owned(),
            "--output".into(),
            dir.path().join("out").to_string_lossy().into_owned(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_failed(&run(&argv))
    };
    let side = format!("keep={}", keep.display());
    let e = job(&["--side", &side, "--side-max-bytes", "100"]);
    assert!(
        e.contains("side input keep") && e.contains("over the cap of 100 bytes"),
        "{e}"
    );
    let e = job(&["--side", "keep=/nowhere/keep.csv"]);
    assert!(
        e.contains("/nowhere/keep.csv") && e.contains("side input keep"),
        "{e}"
    );
    let e = job(&["--side", keep.to_str().unwrap()]);
    assert!(e.contains("NAME=PATH"), "{e}");
    let e = job(&["--side", &side, "--side", &side]);
    assert!(e.contains("already given"), "{e}");
    // A rate that does not parse fails the job, naming the file and the line, instead of
    // dropping the row from every map's view.
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "line,weight\n-0-0,1\n-0-1,one\n").unwrap();
    let e = job(&["--side", &format!("keep={}", bad.display())]);
    assert!(e.contains("bad.csv") && e.contains("line 3"), "{e}");
    // A header that is not the declared schema's is refused at planning.
    std::fs::write(&bad, "text,weight\n-0-0,1\n").unwrap();
    let e = job(&["--side", &format!("keep={}", bad.display())]);
    assert!(e.contains("bad.csv line 1: header"), "{e}");
    assert!(!dir.path().join("out").join("_SUCCESS").exists());
}

/// On a cluster each worker process reads the table for its first map task of the job,
/// not once per task, and releases it when the job ends.
#[test]
fn a_cluster_reads_a_side_table_once_per_worker_and_releases_it_when_the_job_ends() {
    let cluster = Cluster::start(2, options(10_000));
    let (expected, kept) = write_input(&cluster.path("data"), 200, 40);
    let out = cluster.path("out");
    let mut args = job_args(
        &plugin("sluice_testjobs"),
        cluster.path("data").join("in").to_str().unwrap(),
        "text",
        &out,
    );
    let side = format!("keep={}", cluster.path("data").join("keep.csv").display());
    args.extend(
        [
            "--side",
            &side,
            "--format",
            "keep=csv",
            "--split-size",
            "600",
        ]
        .map(String::from),
    );
    args.extend(["--reducers", "3"].map(String::from));
    let result = submit_wait(&cluster, &args);
    assert_job_ok(&cluster, &result);
    assert_eq!(lengths(&out), expected);
    let s = status_json(&cluster, "job-0001");
    assert_eq!(s["counters"]["kept"], kept, "{s}");
    assert!(s["maps_total"].as_u64() > Some(100), "{s}");
    // Workers hear that the job ended with their next heartbeat.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    for w in &cluster.workers {
        while !w.log_text().contains("side inputs released") {
            assert!(
                std::time::Instant::now() < deadline,
                "{} never released the side input:\n{}",
                w.name,
                w.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = w.log_text();
        assert_eq!(log.matches("side input loaded").count(), 1, "{log}");
        assert_eq!(log.matches("side inputs released").count(), 1, "{log}");
    }
}

/// A named input is read with the schema the job declares for its name: the test plugin
/// declares `keep` as `line: Utf8, weight: Int64`, so a `keep` CSV whose lines are all
/// digits (which inference would read as integers) still gives the map text lines.
#[test]
fn a_named_input_is_read_with_the_schema_the_job_declares_for_its_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("words.txt"), "ab\nabc\nabcd\n").unwrap();
    std::fs::write(
        dir.path().join("numbers.csv"),
        "line,weight\n123,1\n4567,2\n89,3\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let words = format!("words={}", dir.path().join("words.txt").display());
    let keep = format!("keep={}", dir.path().join("numbers.csv").display());
    let result = run(&[
        "--local",
        "1",
        "--format",
        "words=text",
        "--format",
        "keep=csv",
        "--plugin",
        plugin("sluice_testjobs").to_str().unwrap(),
        "--input",
        &words,
        &keep,
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_ok(&result);
    assert_eq!(lengths(&out), BTreeMap::from([(2, 2), (3, 2), (4, 2)]));
}
