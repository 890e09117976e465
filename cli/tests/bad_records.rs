//! Bad records scattered through multi-split inputs, under each policy: the output equals a
//! reference over the good records, `_rejects/` holds each bad record once with its file and
//! line, and the counts match, in local mode and on a cluster that loses a worker mid-job.

mod common;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use common::chaos::*;
use common::cluster::Cluster;
use common::*;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// A bad record the test put in: its file, 1-based line and raw text, and the kind of fault
/// the engine must report.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Planted {
    source: String,
    line: u64,
    record: String,
    kind: String,
}

/// Copies the EOD CSV files into `dir`, putting a bad line after every `every`-th data
/// line, cycling through seven faults (four the reader finds, three the job's data-quality
/// rules find); returns the bad lines.
fn plant_bad_csv(files: &[PathBuf], dir: &Path, every: usize) -> Vec<Planted> {
    std::fs::create_dir_all(dir).unwrap();
    let mut planted = Vec::new();
    for f in files {
        let target = dir.join(f.file_name().unwrap());
        let source = target.to_string_lossy().into_owned();
        let text = std::fs::read_to_string(f).unwrap();
        let mut out: Vec<u8> = Vec::new();
        let mut line = 0u64;
        for (i, good) in text.lines().enumerate() {
            out.extend_from_slice(good.as_bytes());
            out.push(b'\n');
            line += 1;
            if i == 0 || i % every != 0 {
                continue;
            }
            // Fields: txn_id,account_id,txn_date,txn_ts,txn_type,amount,currency,channel,merchant
            let fields: Vec<&str> = good.split(',').collect();
            let with = |k: usize, v: &str| {
                let mut f = fields.clone();
                f[k] = v;
                f.join(",")
            };
            let (bad, kind): (Vec<u8>, &str) = match planted.len() % 7 {
                0 => (fields[..3].join(",").into_bytes(), "wrong field count"),
                1 => (with(5, "12.3x").into_bytes(), "bad value in column amount"),
                2 => (
                    with(2, "2026-13-45").into_bytes(),
                    "bad value in column txn_date",
                ),
                // The EOD job's data-quality rules.
                3 => (with(5, "-5.00").into_bytes(), "greater_than(amount)"),
                4 => (with(6, "XXX").into_bytes(), "iso_currency"),
                5 => (with(4, "REFUND").into_bytes(), "one_of(txn_type)"),
                _ => {
                    let mut b = with(8, "MERCH").into_bytes();
                    let at = b.len() - 2;
                    b[at] = 0xff;
                    (b, "unreadable CSV record")
                }
            };
            out.extend_from_slice(&bad);
            out.push(b'\n');
            line += 1;
            planted.push(Planted {
                source: source.clone(),
                line,
                record: String::from_utf8_lossy(&bad).into_owned(),
                kind: kind.to_string(),
            });
        }
        std::fs::write(&target, out).unwrap();
    }
    planted.sort();
    planted
}

/// The quarantined records in `out/_rejects/`: (source, line, record) and the reasons.
fn read_rejects(out: &Path) -> (Vec<(String, u64, String)>, Vec<String>) {
    let dir = out.join("_rejects");
    let mut rows = Vec::new();
    let mut reasons = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("_rejects exists") {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with("part-m-") && name.ends_with(".parquet"),
            "{name}"
        );
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap())
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let b = batch.unwrap();
            let source = b.column_by_name("source").unwrap().as_string::<i32>();
            let line = b
                .column_by_name("line")
                .unwrap()
                .as_primitive::<Int64Type>();
            let reason = b.column_by_name("reason").unwrap().as_string::<i32>();
            let record = b.column_by_name("record").unwrap().as_string::<i32>();
            for i in 0..b.num_rows() {
                assert!(!record.is_null(i), "a quarantined record keeps its text");
                rows.push((
                    source.value(i).to_string(),
                    line.value(i) as u64,
                    record.value(i).to_string(),
                ));
                reasons.push(reason.value(i).to_string());
            }
        }
    }
    rows.sort();
    (rows, reasons)
}

/// Runs the EOD job in local mode over `input` into `out`, in splits of 16 KiB, with
/// `extra` flags.
fn run_eod(input: &str, out: &str, extra: &[&str]) -> std::process::Output {
    let plugin = plugin("sluice_eod").to_string_lossy().into_owned();
    let mut args = vec![
        "--local",
        "2",
        "--reducers",
        "3",
        "--split-size",
        "16384",
        "--format",
        "csv",
        "--output-format",
        "csv",
        "--plugin",
        &plugin,
        "--input",
        input,
        "--output",
        out,
    ];
    args.extend_from_slice(extra);
    run(&args)
}

fn kinds_of(planted: &[Planted]) -> BTreeMap<String, u64> {
    let mut kinds = BTreeMap::new();
    for p in planted {
        *kinds.entry(p.kind.clone()).or_insert(0u64) += 1;
    }
    kinds
}

#[test]
fn bad_csv_records_are_quarantined_once_skipped_or_fail_the_job_as_asked() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good");
    let files = sluice_datagen::write_eod_files(&good, 6_000, 3, 2026).unwrap();
    let expected = reference_eod(&files);
    let dirty = dir.path().join("dirty");
    let planted = plant_bad_csv(&files, &dirty, 397);
    assert!(planted.len() >= 14, "{} bad records", planted.len());
    let n = planted.len() as u64;
    let input = dirty.to_string_lossy().into_owned();
    let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();

    // Quarantine: the good records make the output, each bad one is kept once.
    let out = path("quarantine");
    let result = run_eod(&input, &out, &["--on-bad-record", "quarantine"]);
    assert_ok(&result);
    let out = PathBuf::from(out);
    assert_eq!(read_eod_csv_output(&out), expected);
    let (rows, reasons) = read_rejects(&out);
    let want: Vec<(String, u64, String)> = planted
        .iter()
        .map(|p| (p.source.clone(), p.line, p.record.clone()))
        .collect();
    assert_eq!(
        rows, want,
        "each bad record once, with its file, line and text"
    );
    assert!(reasons.iter().all(|r| !r.is_empty()));
    let m = manifest(&out);
    assert_eq!(m["bad_records"], n, "{m}");
    let kinds: BTreeMap<String, u64> =
        serde_json::from_value(m["bad_records_by_kind"].clone()).unwrap();
    assert_eq!(kinds, kinds_of(&planted));
    assert!(!out.join("_temporary").exists());
    assert!(
        String::from_utf8_lossy(&result.stdout).contains(&format!("bad records {n}")),
        "{}",
        String::from_utf8_lossy(&result.stdout)
    );

    // Skip: the same output, counted, nothing kept.
    let out = path("skip");
    assert_ok(&run_eod(&input, &out, &["--on-bad-record", "skip"]));
    let out = PathBuf::from(out);
    assert_eq!(read_eod_csv_output(&out), expected);
    assert!(!out.join("_rejects").exists());
    assert_eq!(manifest(&out)["bad_records"], n);

    // Fail (the default): the first bad record fails the job, naming file and line.
    let out = path("fail");
    let stderr = assert_failed(&run_eod(&input, &out, &[]));
    assert!(
        stderr.contains("bad record in") && stderr.contains("dirty"),
        "{stderr}"
    );
    assert!(!Path::new(&out).join("_SUCCESS").exists());

    // A limit: one short fails naming the counts; exactly enough succeeds.
    let out = path("limit-short");
    let short = (n - 1).to_string();
    let stderr = assert_failed(&run_eod(&input, &out, &["--max-bad-records", &short]));
    assert!(
        stderr.contains("bad records") && stderr.contains(&format!("more than the {short}")),
        "{stderr}"
    );
    assert!(!Path::new(&out).join("_SUCCESS").exists());
    let out = path("limit-enough");
    let enough = n.to_string();
    assert_ok(&run_eod(&input, &out, &["--max-bad-records", &enough]));
    assert_eq!(read_eod_csv_output(Path::new(&out)), expected);
    let out = path("limit-share");
    let stderr = assert_failed(&run_eod(
        &input,
        &out,
        &["--on-bad-record", "skip", "--max-bad-records", "0.01%"],
    ));
    assert!(stderr.contains("0.01% allowed"), "{stderr}");
}

/// Text lines of invalid UTF-8 among a chaos word count's corpus.
fn plant_bad_text(dir: &Path, every: usize) -> (Vec<String>, Vec<(String, u64)>) {
    let texts = write_corpus(dir, 6, 2_000);
    let mut bad = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read(&path).unwrap();
        let mut out = Vec::new();
        let mut line = 0u64;
        for (i, l) in text.split_inclusive(|&b| b == b'\n').enumerate() {
            out.extend_from_slice(l);
            line += 1;
            if i % every == every - 1 {
                out.extend_from_slice(b"caf\xe9 au lait\n");
                line += 1;
                bad.push((path.to_string_lossy().into_owned(), line));
            }
        }
        std::fs::write(&path, out).unwrap();
    }
    bad.sort();
    (texts, bad)
}

/// A worker holding map outputs is SIGKILLed after the maps: they run again elsewhere
/// (new attempts, new quarantine files), and each bad record is still committed once and
/// the job's counters still count each task once.
#[test]
fn quarantined_records_are_committed_once_when_a_worker_dies_mid_job() {
    let mut cluster = Cluster::start(3, options(10_000));
    let input = cluster.path("corpus");
    std::fs::create_dir_all(&input).unwrap();
    let (texts, bad) = plant_bad_text(&input, 5);
    assert!(bad.len() > 100, "{} bad lines", bad.len());
    let out_dir = cluster.path("out");
    let gate = cluster.path("gate");
    let params = [format!("reduce_gate={}", gate.display())];
    let mut args = chaos_args(&input, &out_dir, 4, 256, &params);
    args.extend(["--on-bad-record".into(), "quarantine".into()]);
    let submit = spawn_submit(&cluster, &args);
    let s = wait_status(&cluster, "job-0001", Duration::from_secs(120), |s| {
        s["maps_total"].as_u64() > Some(0) && s["maps_done"] == s["maps_total"]
    });
    assert!(s["maps_total"].as_u64().unwrap() > 150, "{s}");
    assert_eq!(s["bad_records"], bad.len() as u64, "{s}");
    let holder = (0..cluster.workers.len())
        .find(|&i| {
            let name = cluster.workers[i].name.clone();
            std::fs::read_dir(cluster.path(&name).join("shuffle").join("job-0001"))
                .is_ok_and(|mut d| d.next().is_some())
        })
        .expect("a worker holds map outputs");
    cluster.kill_worker(holder);
    std::fs::write(&gate, b"").unwrap();
    let out = submit.wait_with_output().unwrap();
    assert_job_ok(&cluster, &out);
    let done = status_json(&cluster, "job-0001");
    let tasks = done["maps_total"].as_u64().unwrap() + done["reduces_total"].as_u64().unwrap();
    assert!(
        done["attempts"].as_u64().unwrap() > tasks,
        "no map ran again after the kill: the test did not exercise re-runs\n{done}"
    );
    assert_eq!(read_counts(&out_dir, "word", "count"), reference(&texts));
    let (rows, _) = read_rejects(&out_dir);
    let got: Vec<(String, u64)> = rows.iter().map(|(s, l, _)| (s.clone(), *l)).collect();
    assert_eq!(got, bad, "each bad line once, however often its map ran");
    assert!(rows.iter().all(|(_, _, r)| r == "caf\u{fffd} au lait"));
    assert_eq!(manifest(&out_dir)["bad_records"], bad.len() as u64);
    let s = status_json(&cluster, "job-0001");
    assert_eq!(s["bad_records"], bad.len() as u64, "{s}");
    // The job's own counters count each task once, from the attempt that finished it,
    // though maps ran again after the kill.
    let lines: usize = texts.iter().map(|t| t.lines().count()).sum();
    let words = reference(&texts).len();
    assert_eq!(s["counters"]["lines"], lines as u64, "{s}");
    assert_eq!(s["counters"]["distinct_words"], words as u64, "{s}");
    assert_eq!(manifest(&out_dir)["counters"], s["counters"]);
}

/// The records read and the sum of `amount` over the EOD files, as their trailer would say.
fn totals(files: &[PathBuf]) -> (u64, String) {
    use sluice_common::control::ColumnSum;
    let mut rows = 0;
    let mut sum = ColumnSum::zero(2);
    for f in files {
        let mut reader = csv::Reader::from_path(f).unwrap();
        for rec in reader.records() {
            rows += 1;
            let amount = ColumnSum::from_text(&rec.unwrap()[5]).unwrap();
            sum = sum.checked_add(amount).unwrap();
        }
    }
    (rows, sum.to_text())
}

#[test]
fn control_totals_that_do_not_match_fail_the_job_before_success() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("txns");
    let files = sluice_datagen::write_eod_files(&input, 4_000, 2, 7).unwrap();
    let (rows, sum) = totals(&files);
    let input = input.to_string_lossy().into_owned();
    let control = |name: &str, json: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, json).unwrap();
        path.to_string_lossy().into_owned()
    };
    let out = dir.path().join("ok").to_string_lossy().into_owned();
    let good = control(
        "good.json",
        format!(r#"{{"rows": {rows}, "sums": {{"amount": "{sum}"}}}}"#),
    );
    assert_ok(&run_eod(&input, &out, &["--control", &good]));
    assert!(Path::new(&out).join("_SUCCESS").exists());

    let out = dir.path().join("rows").to_string_lossy().into_owned();
    let more = control("rows.json", format!(r#"{{"rows": {}}}"#, rows + 1));
    let stderr = assert_failed(&run_eod(&input, &out, &["--control", &more]));
    assert!(
        stderr.contains(&format!(
            "{rows} records read, the control file says {} (off by -1)",
            rows + 1
        )),
        "{stderr}"
    );
    assert!(!Path::new(&out).join("_SUCCESS").exists());

    let out = dir.path().join("sum").to_string_lossy().into_owned();
    let cent_more = sluice_common::control::ColumnSum::from_text(&sum)
        .unwrap()
        .checked_add(sluice_common::control::ColumnSum::from_text("0.01").unwrap())
        .unwrap()
        .to_text();
    let off = control(
        "sum.json",
        format!(r#"{{"sums": {{"amount": "{cent_more}"}}}}"#),
    );
    let stderr = assert_failed(&run_eod(&input, &out, &["--control", &off]));
    assert!(
        stderr.contains(&format!("the sum of amount is {sum}")) && stderr.contains("off by -0.01"),
        "{stderr}"
    );
    assert!(!Path::new(&out).join("_SUCCESS").exists());

    let bad = control("bad.json", r#"{"rows": "many"}"#.to_string());
    let stderr = assert_failed(&run_eod(&input, &out, &["--control", &bad]));
    assert!(stderr.contains("bad.json"), "{stderr}");
}

/// A job's own check (`Job::check`, here the test plugin's `not_blank`) makes bad records
/// like a declared rule: blank lines are quarantined with their lines, the rest counted.
#[test]
fn a_jobs_own_check_sets_its_failing_records_aside() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    let mut text = String::new();
    let mut blank = Vec::new();
    for i in 1..=500u64 {
        if i % 50 == 0 {
            text.push_str("   \n");
            blank.push(i);
        } else {
            text.push_str(&"x".repeat((i % 7) as usize + 1));
            text.push('\n');
        }
    }
    std::fs::write(&input, &text).unwrap();
    let out = dir.path().join("out");
    let p = plugin("sluice_testjobs");
    let result = run(&[
        "--local",
        "2",
        "--format",
        "text",
        "--split-size",
        "512",
        "--plugin",
        p.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--param",
        "check=not_blank",
        "--on-bad-record",
        "quarantine",
    ]);
    assert_ok(&result);
    let (rows, reasons) = read_rejects(&out);
    let lines: Vec<u64> = rows.iter().map(|(_, l, _)| *l).collect();
    assert_eq!(lines, blank);
    assert!(
        rows.iter()
            .all(|(s, _, r)| s.ends_with("in.txt") && r == "   ")
    );
    assert!(
        reasons.iter().all(|r| r == "check not_blank failed"),
        "{reasons:?}"
    );
    let m = manifest(&out);
    assert_eq!(
        m["bad_records_by_kind"]["not_blank"],
        blank.len() as u64,
        "{m}"
    );
    assert_eq!(
        m["rows"], 7,
        "line lengths 1 to 7, the blank ones left out: {m}"
    );
}

/// EOD over Parquet whose `txn_id` has nulls in two row groups of six: the footer proves
/// `not_null(txn_id)` for the other four, which are read without the column (the job does
/// not list it); the two are read with it, and their nulls are set aside by row group and
/// row. The totals are those of the good rows, summed here.
#[test]
fn parquet_nulls_are_set_aside_where_the_footer_does_not_prove_the_rule() {
    use std::sync::Arc;

    use arrow::array::{
        ArrayRef, Date32Array, Decimal128Array, RecordBatch, StringArray, TimestampSecondArray,
    };
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;

    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    let money = DataType::Decimal128(18, 2);
    let text = |name: &str| Field::new(name, DataType::Utf8, true);
    let schema = Arc::new(Schema::new(vec![
        text("txn_id"),
        text("account_id"),
        Field::new("txn_date", DataType::Date32, true),
        Field::new("txn_ts", DataType::Timestamp(TimeUnit::Second, None), true),
        text("txn_type"),
        Field::new("amount", money, true),
        text("currency"),
        text("channel"),
        text("merchant"),
    ]));
    // (file, row) of the null ids: row 70 is in row group 1, row 10 in row group 0.
    let nulls = [(1, 70), (2, 10)];
    let (mut good_rows, mut good_net) = (0i64, 0i128);
    for file in 0..3 {
        let rows = 0..100i64;
        let null_id = |i: i64| nulls.contains(&(file, i));
        let cents = |i: i64| i128::from(100 + i * 7 + file * 1000);
        let debit = |i: i64| i % 3 == 0;
        for i in rows.clone().filter(|&i| !null_id(i)) {
            good_rows += 1;
            good_net += if debit(i) { -cents(i) } else { cents(i) };
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter(
                rows.clone()
                    .map(|i| (!null_id(i)).then(|| format!("T{file}-{i}"))),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.clone().map(|i| format!("ACC{}", i % 9)),
            )),
            Arc::new(Date32Array::from_iter_values(
                rows.clone().map(|i| 20_000 + (i % 2) as i32),
            )),
            Arc::new(TimestampSecondArray::from_iter_values(rows.clone())),
            Arc::new(StringArray::from_iter_values(
                rows.clone()
                    .map(|i| if debit(i) { "DEBIT" } else { "CREDIT" }),
            )),
            Arc::new(
                Decimal128Array::from_iter_values(rows.clone().map(cents))
                    .with_precision_and_scale(18, 2)
                    .unwrap(),
            ),
            Arc::new(StringArray::from_iter_values(rows.clone().map(|_| "EUR"))),
            Arc::new(StringArray::from_iter_values(
                rows.clone().map(|_| "ONLINE"),
            )),
            Arc::new(StringArray::from_iter_values(rows.clone().map(|_| "Shop"))),
        ];
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(50))
            .build();
        let path = input.join(format!("day-{file}.parquet"));
        let mut w =
            ArrowWriter::try_new(File::create(path).unwrap(), schema.clone(), Some(props)).unwrap();
        w.write(&RecordBatch::try_new(schema.clone(), columns).unwrap())
            .unwrap();
        w.close().unwrap();
    }
    let out = dir.path().join("out");
    let plugin = plugin("sluice_eod");
    let result = run(&[
        "--local",
        "2",
        "--split-size",
        "1",
        "--format",
        "parquet",
        "--plugin",
        plugin.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--on-bad-record",
        "quarantine",
    ]);
    assert_ok(&result);
    let m = manifest(&out);
    assert_eq!(m["bad_records_by_kind"]["not_null(txn_id)"], 2, "{m}");

    let mut rejected = Vec::new();
    for (_, batches) in read_parts(&out.join("_rejects")) {
        for b in batches {
            let source = b.column_by_name("source").unwrap().as_string::<i32>();
            let line = b
                .column_by_name("line")
                .unwrap()
                .as_primitive::<Int64Type>();
            for i in 0..b.num_rows() {
                let file = Path::new(source.value(i)).file_name().unwrap();
                rejected.push((file.to_string_lossy().into_owned(), line.value(i)));
            }
        }
    }
    rejected.sort();
    let expected = [
        ("day-1.parquet (row groups 1)".to_string(), 21),
        ("day-2.parquet (row groups 0)".to_string(), 11),
    ];
    assert_eq!(rejected, expected);

    let (mut count, mut net) = (0i64, 0i128);
    for b in read_parts(&out)
        .into_iter()
        .flat_map(|(_, batches)| batches)
    {
        let c = b
            .column_by_name("txn_count")
            .unwrap()
            .as_primitive::<Int64Type>();
        count += c.values().iter().sum::<i64>();
        let n = b.column_by_name("net").unwrap();
        net += n
            .as_primitive::<arrow::datatypes::Decimal128Type>()
            .values()
            .iter()
            .sum::<i128>();
    }
    assert_eq!((count, net), (good_rows, good_net));
}
