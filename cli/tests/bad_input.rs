//! Bad input, bad plugins and user-code failures: each exits 1 with a message that names
//! the problem, and leaves no `_SUCCESS` behind.

mod common;

use std::path::Path;

use common::*;

const HEADER: &str = "txn_id,account_id,txn_date,txn_ts,txn_type,amount,currency,channel,merchant";

fn eod_args<'a>(input: &'a str, out: &'a str, plugin: &'a str) -> Vec<&'a str> {
    vec![
        "--local", "2", "--format", "csv", "--plugin", plugin, "--input", input, "--output", out,
    ]
}

/// `run` arguments for a text job.
fn text_args<'a>(plugin: &'a str, input: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "--format", "text", "--plugin", plugin, "--input", input, "--output", out,
    ]
}

fn assert_no_success(out: &Path) {
    assert!(
        !out.join("_SUCCESS").exists(),
        "_SUCCESS left behind in {}",
        out.display()
    );
}

#[test]
fn missing_input_is_refused_before_any_task() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let missing = dir.path().join("nope/*.csv");
    let p = plugin("sluice_eod");
    let result = run(&eod_args(
        missing.to_str().unwrap(),
        out.to_str().unwrap(),
        p.to_str().unwrap(),
    ));
    let stderr = assert_failed(&result);
    assert!(
        stderr.contains("matches no file") && stderr.contains("nope"),
        "{stderr}"
    );
    assert!(!out.exists(), "no output directory for a refused job");
}

#[test]
fn malformed_csv_row_names_file_line_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("day.csv");
    let body = format!(
        "{HEADER}\n\
         T1,ACC1,2026-11-28,2026-11-28 10:00:00,DEBIT,10.00,USD,ATM,\n\
         T2,ACC1,2026-11-28,2026-11-28 10:01:00,CREDIT,5.5,USD,POS,\"Smith, Jones\"\n\
         T3,ACC2,2026-11-28,2026-11-28 10:02:00,DEBIT,12.345,USD,ATM,\n\
         T4,ACC2,2026-11-28,2026-11-28 10:03:00,DEBIT,1.00,USD,ATM,\n"
    );
    std::fs::write(&input, body).unwrap();
    let out = dir.path().join("out");
    let p = plugin("sluice_eod");
    let result = run(&eod_args(
        input.to_str().unwrap(),
        out.to_str().unwrap(),
        p.to_str().unwrap(),
    ));
    let stderr = assert_failed(&result);
    assert!(stderr.contains("day.csv"), "names the file: {stderr}");
    assert!(stderr.contains("line 4"), "names the line: {stderr}");
    assert!(
        stderr.contains("12.345") && stderr.contains("fractional"),
        "says why: {stderr}"
    );
    assert_no_success(&out);

    // A row with a missing field, in a later split of the file, is named by its line too.
    let mut body = format!("{HEADER}\n");
    for i in 0..200 {
        body.push_str(&format!(
            "T{i},ACC{i},2026-11-28,2026-11-28 10:00:00,DEBIT,1.00,USD,ATM,\n"
        ));
    }
    body.push_str("T999,ACC9,2026-11-28,DEBIT,1.00,USD\n");
    std::fs::write(&input, body).unwrap();
    let mut args = eod_args(
        input.to_str().unwrap(),
        out.to_str().unwrap(),
        p.to_str().unwrap(),
    );
    args.extend(["--split-size", "1000"]);
    let stderr = assert_failed(&run(&args));
    assert!(
        stderr.contains("line 202") && stderr.contains("expected 9 fields, found 6"),
        "{stderr}"
    );
    assert_no_success(&out);
}

#[test]
fn a_file_that_is_not_a_plugin_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "hello\n").unwrap();
    let fake = dir.path().join("libfake.so");
    std::fs::write(&fake, "#!/bin/sh\necho not a library\n").unwrap();
    let out = dir.path().join("out");
    let result = run(&text_args(
        fake.to_str().unwrap(),
        input.to_str().unwrap(),
        out.to_str().unwrap(),
    ));
    let stderr = assert_failed(&result);
    assert!(
        stderr.contains("libfake.so") && stderr.contains("not a shared library"),
        "{stderr}"
    );
    assert_no_success(&out);

    // A real shared library without the entry symbols.
    let libc = [
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists());
    if let Some(libc) = libc {
        let result = run(&text_args(
            libc,
            input.to_str().unwrap(),
            out.to_str().unwrap(),
        ));
        let stderr = assert_failed(&result);
        assert!(
            stderr.contains("lacks the symbol sluice_abi_version"),
            "{stderr}"
        );
    }
}

#[test]
fn an_existing_output_directory_is_refused_unless_overwrite_and_only_sluice_output_is_overwritten()
{
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "one two two\n").unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "precious").unwrap();
    let p = plugin("sluice_wordcount");
    let args = text_args(
        p.to_str().unwrap(),
        input.to_str().unwrap(),
        out.to_str().unwrap(),
    );
    let stderr = assert_failed(&run(&args));
    assert!(
        stderr.contains("already exists") && stderr.contains("--overwrite"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("keep.txt")).unwrap(),
        "precious"
    );
    assert_no_success(&out);

    // --overwrite deletes only an earlier Sluice output: not a directory holding other
    // files, nor one holding the job's own input.
    let mut with = args.clone();
    with.push("--overwrite");
    let stderr = assert_failed(&run(&with));
    assert!(
        stderr.contains("keep.txt") && stderr.contains("not Sluice output"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("keep.txt")).unwrap(),
        "precious"
    );
    std::fs::remove_file(out.join("keep.txt")).unwrap();
    assert_ok(&run(&with));
    assert_ok(&run(&with));
    assert_eq!(read_counts(&out, "word", "count").get("two"), Some(&2));

    let whole = text_args(
        p.to_str().unwrap(),
        input.to_str().unwrap(),
        dir.path().to_str().unwrap(),
    );
    let mut whole = whole.clone();
    whole.push("--overwrite");
    let stderr = assert_failed(&run(&whole));
    assert!(
        stderr.contains("in.txt") && stderr.contains("an input of this job"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&input).unwrap(), "one two two\n");
}

#[test]
fn a_panicking_map_fails_the_job_with_the_message_and_the_process_survives() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "a\nbb\n").unwrap();
    let p = plugin("sluice_testjobs");
    for (mode, message) in [
        ("map-panic", "deliberate panic in map"),
        ("map-error", "deliberate error in map"),
    ] {
        let out = dir.path().join(format!("out-{mode}"));
        let param = format!("fail={mode}");
        let mut args = text_args(
            p.to_str().unwrap(),
            input.to_str().unwrap(),
            out.to_str().unwrap(),
        );
        args.extend(["--param", &param]);
        let result = run(&args);
        // Exit code 1 is our error path; an abort would be a signal (no code).
        let stderr = assert_failed(&result);
        assert!(stderr.contains(message), "{stderr}");
        assert_no_success(&out);
    }
}

#[test]
fn a_plugin_built_for_another_abi_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("old.c");
    // Version 2 is the ABI of earlier SDKs (no side inputs, one input schema).
    std::fs::write(&src, "unsigned sluice_abi_version(void) { return 2; }\n").unwrap();
    let lib = dir.path().join("libold.so");
    let built = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(&src)
        .status();
    if !built.is_ok_and(|s| s.success()) {
        eprintln!("skipped: no C compiler (cc) to build a foreign-ABI library");
        return;
    }
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "x\n").unwrap();
    let out = dir.path().join("out");
    let result = run(&text_args(
        lib.to_str().unwrap(),
        input.to_str().unwrap(),
        out.to_str().unwrap(),
    ));
    let stderr = assert_failed(&result);
    assert!(
        stderr.contains("ABI version 2;") && stderr.contains("supports version 3"),
        "{stderr}"
    );
    assert_no_success(&out);
}

#[test]
fn a_bad_row_in_one_of_many_packed_small_files_names_that_file() {
    // Twenty small CSV files fit one split: one map task reads them all, and a bad row in
    // the seventh is still named by its own file and line.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    for f in 0..20 {
        let mut body = format!("{HEADER}\n");
        for i in 0..5 {
            let amount = if f == 7 && i == 3 { "1.0.0" } else { "1.00" };
            body.push_str(&format!(
                "T{f}-{i},ACC{i},2026-11-28,2026-11-28 10:00:00,DEBIT,{amount},USD,ATM,\n"
            ));
        }
        std::fs::write(input.join(format!("day-{f:02}.csv")), body).unwrap();
    }
    let out = dir.path().join("out");
    let p = plugin("sluice_eod");
    let glob = format!("{}/*.csv", input.display());
    let args = eod_args(&glob, out.to_str().unwrap(), p.to_str().unwrap());
    let stderr = assert_failed(&run(&args));
    assert!(
        stderr.contains("day-07.csv") && stderr.contains("line 5") && stderr.contains("1.0.0"),
        "{stderr}"
    );
    assert!(
        stderr.contains("map task 0 failed"),
        "the seventh file is in the one split: {stderr}"
    );
    assert_no_success(&out);
}

/// Writes one batch of `columns` to a Parquet file at `path`.
fn write_parquet(path: &Path, columns: Vec<(&str, arrow::array::ArrayRef)>) {
    use arrow::array::RecordBatch;
    use parquet::arrow::ArrowWriter;
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let mut w =
        ArrowWriter::try_new(std::fs::File::create(path).unwrap(), batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// `sluice run` of the EOD job over one Parquet file.
fn run_eod_parquet(input: &Path, out: &Path) -> std::process::Output {
    let p = plugin("sluice_eod");
    run(&[
        "--local",
        "1",
        "--format",
        "parquet",
        "--plugin",
        p.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ])
}

#[test]
fn a_parquet_file_without_a_column_the_job_reads_is_named_with_the_column() {
    use std::sync::Arc;

    use arrow::array::StringArray;

    // EOD reads six columns of a transaction file; this one has only two of them.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("day.parquet");
    write_parquet(
        &input,
        vec![
            ("txn_id", Arc::new(StringArray::from(vec!["T1"]))),
            ("account_id", Arc::new(StringArray::from(vec!["ACC1"]))),
        ],
    );
    let out = dir.path().join("out");
    let stderr = assert_failed(&run_eod_parquet(&input, &out));
    assert!(
        stderr.contains("day.parquet") && stderr.contains("no column \"txn_date\""),
        "{stderr}"
    );
    assert_no_success(&out);
}

/// A column of the wrong type fails every attempt the same way: the job fails after the
/// first, naming the column, instead of retrying it.
#[test]
fn a_column_of_a_lossy_type_is_refused_at_planning_naming_file_and_column() {
    use std::sync::Arc;

    use arrow::array::{Date32Array, Float64Array, StringArray};

    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("day.parquet");
    let text = |v: &str| Arc::new(StringArray::from(vec![v])) as arrow::array::ArrayRef;
    write_parquet(
        &input,
        vec![
            ("txn_id", text("T1")),
            ("account_id", text("ACC1")),
            ("txn_date", Arc::new(Date32Array::from(vec![20_000]))),
            ("txn_type", text("DEBIT")),
            ("amount", Arc::new(Float64Array::from(vec![12.5]))),
            ("currency", text("EUR")),
        ],
    );
    let out = dir.path().join("out");
    let stderr = assert_failed(&run_eod_parquet(&input, &out));
    assert!(
        stderr.contains("day.parquet")
            && stderr.contains("column amount is Float64, and the job reads Decimal128(18, 2)"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("task attempt failed"),
        "refused at planning, before any task: {stderr}"
    );
    assert_no_success(&out);
}

/// A Parquet file holding columns in types that convert to the job's without loss (an
/// `Int64` transaction id, a narrower decimal amount) is read into the job's types.
#[test]
fn lossless_column_types_are_read_into_the_jobs_types() {
    use std::sync::Arc;

    use arrow::array::{AsArray, Date32Array, Decimal128Array, Int64Array, StringArray};
    use arrow::datatypes::{Decimal128Type, Int64Type};

    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("day.parquet");
    let text = |v: Vec<&str>| Arc::new(StringArray::from(v)) as arrow::array::ArrayRef;
    let amounts = Decimal128Array::from(vec![1250, 300, 99])
        .with_precision_and_scale(10, 2)
        .unwrap();
    write_parquet(
        &input,
        vec![
            ("txn_id", Arc::new(Int64Array::from(vec![1, 2, 3]))),
            ("account_id", text(vec!["ACC1", "ACC1", "ACC2"])),
            ("txn_date", Arc::new(Date32Array::from(vec![20_000; 3]))),
            ("txn_type", text(vec!["DEBIT", "CREDIT", "DEBIT"])),
            ("amount", Arc::new(amounts)),
            ("currency", text(vec!["EUR"; 3])),
        ],
    );
    let out = dir.path().join("out");
    assert_ok(&run_eod_parquet(&input, &out));
    let mut totals = Vec::new();
    for (_, batches) in read_parts(&out) {
        for b in batches {
            let account = b.column_by_name("account_id").unwrap().as_string::<i32>();
            let count = b
                .column_by_name("txn_count")
                .unwrap()
                .as_primitive::<Int64Type>();
            let net = b
                .column_by_name("net")
                .unwrap()
                .as_primitive::<Decimal128Type>();
            for i in 0..b.num_rows() {
                totals.push((account.value(i).to_string(), count.value(i), net.value(i)));
            }
        }
    }
    totals.sort();
    assert_eq!(
        totals,
        [
            ("ACC1".to_string(), 2, 300 - 1250),
            ("ACC2".to_string(), 1, -99)
        ]
    );
}

#[test]
fn csv_columns_the_job_does_not_read_are_not_parsed() {
    // EOD declares the six columns it reads; `txn_ts` is not one of them, so a value there
    // that is no timestamp does not stop the job (as with Spark's CSV column pruning),
    // while the same kind of mistake in `txn_date`, which it reads, does.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("day.csv");
    let p = plugin("sluice_eod");
    let out = dir.path().join("out");
    let write = |ts: &str, date: &str| {
        let body = format!(
            "{HEADER}\nT1,ACC1,{date},{ts},DEBIT,10.00,USD,ATM,\nT2,ACC1,2026-11-28,2026-11-28 10:00:00,CREDIT,2.50,USD,ATM,\n"
        );
        std::fs::write(&input, body).unwrap();
    };
    write("not a time", "2026-11-28");
    let args = eod_args(
        input.to_str().unwrap(),
        out.to_str().unwrap(),
        p.to_str().unwrap(),
    );
    assert_ok(&run(&args));
    assert!(out.join("_SUCCESS").exists());
    std::fs::remove_dir_all(&out).unwrap();
    write("2026-11-28 10:00:00", "not a date");
    let stderr = assert_failed(&run(&args));
    assert!(
        stderr.contains("line 2") && stderr.contains("txn_date"),
        "{stderr}"
    );
    assert_no_success(&out);
}

/// Settings that would make the coordinator or the workers allocate without bound are
/// refused at submission with the flag and the coordinator's limit, and every process
/// survives to say so.
#[test]
fn settings_past_the_coordinators_limits_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("words.txt");
    std::fs::write(&input, "lorem ipsum dolor sit amet\n".repeat(8_000)).unwrap();
    let out = dir.path().join("out");
    let p = plugin("sluice_wordcount");
    let (p, i, o) = (
        p.to_str().unwrap(),
        input.to_str().unwrap(),
        out.to_str().unwrap(),
    );
    let cases: [(&[&str], &[&str]); 4] = [
        (
            &["--task-timeout", "800h"],
            &["task timeout of 2880000 s", "30 days"],
        ),
        (
            &["--reducers", "4000000000"],
            &["--reducers 4000000000", "max_reducers"],
        ),
        (
            &["--batch-rows", "4000000000"],
            &["--batch-rows", "max_batch_rows"],
        ),
        // 216,000 bytes at one byte a split: 216,000 map tasks.
        (
            &["--split-size", "1"],
            &["216000 map tasks", "max_tasks_per_job", "--split-size"],
        ),
    ];
    for (flags, expected) in cases {
        let mut args = vec!["--local", "1"];
        args.extend(text_args(p, i, o));
        args.extend(flags);
        let stderr = assert_failed(&run(&args));
        for e in expected {
            assert!(stderr.contains(e), "{flags:?}: {e:?} not in {stderr}");
        }
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!out.exists(), "no output for a refused job");
    }
}

/// A plugin returning arrays the engine did not build is checked before anything reads
/// them: invalid UTF-8 fails the job with the column named, and the worker survives.
#[test]
fn a_plugin_returning_an_invalid_array_fails_its_job_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "a\nbb\nccc\n").unwrap();
    let out = dir.path().join("out");
    let p = plugin("sluice_testjobs");
    let mut args = vec!["--local", "1"];
    args.extend(text_args(
        p.to_str().unwrap(),
        input.to_str().unwrap(),
        out.to_str().unwrap(),
    ));
    args.extend(["--param", "fail=map-invalid"]);
    let stderr = assert_failed(&run(&args));
    assert!(
        stderr.contains("returned an invalid batch") && stderr.contains("column bad"),
        "{stderr}"
    );
    assert_no_success(&out);
}

/// A line longer than a reader holds (64 MiB) is a bad record naming the file and line,
/// not a worker out of memory, and it is not retried.
#[test]
fn a_line_longer_than_64_mib_is_a_bad_record_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("one-long-line.txt");
    let mut text = b"a short first line\n".to_vec();
    text.resize(text.len() + (65 << 20), b'x');
    text.extend_from_slice(b"\nand a short last one\n");
    std::fs::write(&input, text).unwrap();
    let out = dir.path().join("out");
    let p = plugin("sluice_wordcount");
    let mut args = vec!["--local", "1"];
    args.extend(text_args(
        p.to_str().unwrap(),
        input.to_str().unwrap(),
        out.to_str().unwrap(),
    ));
    let stderr = assert_failed(&run(&args));
    assert!(
        stderr.contains("one-long-line.txt line 2") && stderr.contains("longer than 64 MiB"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("task attempt failed").count(), 1, "{stderr}");
    assert_no_success(&out);
}
