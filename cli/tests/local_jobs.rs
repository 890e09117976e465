//! End-to-end jobs in local mode (`sluice run --local N`: real gRPC over loopback, real
//! Parquet spills, real plugins), compared with reference computations written here in
//! plain Rust.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use common::*;

/// A word is a maximal run of alphabetic characters, case kept.
fn reference_word_count(texts: &[&str]) -> HashMap<String, i64> {
    let mut counts = HashMap::new();
    for t in texts {
        for w in t
            .split(|c: char| !c.is_alphabetic())
            .filter(|w| !w.is_empty())
        {
            *counts.entry(w.to_string()).or_insert(0) += 1;
        }
    }
    counts
}

#[test]
fn word_count_equals_reference_for_every_split_size() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("corpus");
    std::fs::create_dir(&input).unwrap();
    let long_line = "Lorem ipsum dolor sit amet ".repeat(40);
    let texts: Vec<String> = vec![
        "The quick brown fox\njumps over the lazy dog.\nThe dog sleeps; the fox runs!\n".into(),
        "Windows\r\nline endings\r\nhere\r\n\r\nand café Straße naïve\r\n".into(),
        format!("no final newline, {long_line}\nshort\nend-of-file"),
        String::new(),
        "numbers 123 and4mixed5words x9y\n\n\n  spaced   out  \n".into(),
    ];
    for (i, t) in texts.iter().enumerate() {
        std::fs::write(input.join(format!("part{i}.txt")), t).unwrap();
    }
    let expected = reference_word_count(&texts.iter().map(String::as_str).collect::<Vec<_>>());
    let plugin = plugin("sluice_wordcount");
    // 7 bytes is smaller than most lines and far smaller than the long one.
    for split_size in ["7", "64", "100000000"] {
        let out = dir.path().join(format!("out-{split_size}"));
        let glob = format!("{}/*.txt", input.display());
        let result = run(&[
            "--local",
            "3",
            "--reducers",
            "5",
            "--split-size",
            split_size,
            "--format",
            "text",
            "--plugin",
            plugin.to_str().unwrap(),
            "--input",
            &glob,
            "--output",
            out.to_str().unwrap(),
        ]);
        assert_ok(&result);
        let got = read_counts(&out, "word", "count");
        assert_eq!(got, expected, "split size {split_size}");
        let m = manifest(&out);
        let files = m["files"].as_array().unwrap();
        assert!(!files.is_empty() && files.len() <= 5);
        let rows: u64 = files.iter().map(|f| f["rows"].as_u64().unwrap()).sum();
        assert_eq!(rows as usize, expected.len());
        assert!(
            !out.join("_temporary").exists(),
            "_temporary is removed after commit"
        );
    }
}

/// Formats cents like the engine's Decimal128(_, 2) CSV output.
fn money(cents: i128) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", cents.abs() / 100, cents.abs() % 100)
}

fn parse_cents(s: &str) -> i128 {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    assert!(frac.len() <= 2, "amount {s} has more than 2 decimals");
    let frac = format!("{frac:0<2}");
    int.parse::<i128>().unwrap() * 100 + frac.parse::<i128>().unwrap()
}

#[derive(Default)]
struct Totals {
    count: i64,
    debit: i128,
    credit: i128,
    min: Option<i128>,
    max: Option<i128>,
}

fn reference_eod(files: &[std::path::PathBuf]) -> BTreeMap<(String, String, String), Vec<String>> {
    let mut totals: BTreeMap<(String, String, String), Totals> = BTreeMap::new();
    for f in files {
        let mut reader = csv::Reader::from_path(f).unwrap();
        for rec in reader.records() {
            let rec = rec.unwrap();
            let key = (rec[1].to_string(), rec[2].to_string(), rec[6].to_string());
            let amount = parse_cents(&rec[5]);
            let t = totals.entry(key).or_default();
            t.count += 1;
            match &rec[4] {
                "DEBIT" => t.debit += amount,
                "CREDIT" => t.credit += amount,
                other => panic!("generator wrote txn_type {other}"),
            }
            t.min = Some(t.min.map_or(amount, |m| m.min(amount)));
            t.max = Some(t.max.map_or(amount, |m| m.max(amount)));
        }
    }
    totals
        .into_iter()
        .map(|(k, t)| {
            let row = vec![
                t.count.to_string(),
                money(t.debit),
                money(t.credit),
                money(t.credit - t.debit),
                money(t.min.unwrap()),
                money(t.max.unwrap()),
            ];
            (k, row)
        })
        .collect()
}

fn read_eod_csv_output(dir: &Path) -> BTreeMap<(String, String, String), Vec<String>> {
    let mut out = BTreeMap::new();
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "csv"))
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no part files in {}", dir.display());
    for p in names {
        let mut reader = csv::Reader::from_path(&p).unwrap();
        let header: Vec<String> = reader
            .headers()
            .unwrap()
            .iter()
            .map(str::to_string)
            .collect();
        assert_eq!(
            header,
            [
                "account_id",
                "txn_date",
                "currency",
                "txn_count",
                "debit_total",
                "credit_total",
                "net",
                "min_amount",
                "max_amount"
            ]
        );
        for rec in reader.records() {
            let rec = rec.unwrap();
            let key = (rec[0].to_string(), rec[1].to_string(), rec[2].to_string());
            let row = rec.iter().skip(3).map(str::to_string).collect();
            assert!(out.insert(key, row).is_none(), "group twice in output");
        }
    }
    out
}

#[test]
fn eod_totals_equal_reference_to_the_cent() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("txns");
    std::fs::create_dir(&input).unwrap();
    let files = sluice_datagen::write_eod_files(&input, 30_000, 3, 2026).unwrap();
    let expected = reference_eod(&files);
    let out = dir.path().join("eod");
    let result = run(&[
        "--local",
        "2",
        "--reducers",
        "3",
        "--split-size",
        "65536",
        "--format",
        "csv",
        "--output-format",
        "csv",
        "--plugin",
        plugin("sluice_eod").to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_ok(&result);
    let got = read_eod_csv_output(&out);
    assert_eq!(got.len(), expected.len());
    for (k, row) in &expected {
        assert_eq!(got.get(k), Some(row), "group {k:?}");
    }
    let summary = String::from_utf8_lossy(&result.stdout);
    assert!(summary.contains("rows in 30000"), "{summary}");
}

#[test]
fn custom_reduce_sees_whole_sorted_groups() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    let mut text = String::new();
    let mut expected: BTreeMap<i64, i64> = BTreeMap::new();
    for i in 0..5000u64 {
        let len = (i * 7919 % 97) as usize;
        text.push_str(&"é".repeat(len));
        text.push('\n');
        *expected.entry(len as i64).or_default() += 1;
    }
    std::fs::write(&input, text).unwrap();
    let out = dir.path().join("out");
    let result = run(&[
        "--local",
        "2",
        "--reducers",
        "3",
        "--split-size",
        "4096",
        "--batch-rows",
        "100",
        "--format",
        "text",
        "--plugin",
        plugin("sluice_testjobs").to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_ok(&result);
    let mut got = BTreeMap::new();
    for (_, batches) in read_parts(&out) {
        for b in batches {
            let len = b.column(0).as_primitive::<arrow::datatypes::Int64Type>();
            let lines = b.column(1).as_primitive::<arrow::datatypes::Int64Type>();
            for i in 0..b.num_rows() {
                assert!(
                    got.insert(len.value(i), lines.value(i)).is_none(),
                    "group split"
                );
            }
        }
    }
    assert_eq!(got, expected);
}

use arrow::array::AsArray;

#[test]
fn word_count_reads_json_lines_and_parquet_row_groups() {
    use std::sync::Arc;

    use arrow::array::{RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;

    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = (0..300)
        .map(|i| {
            format!(
                "alpha beta{} gamma \"quoted\" line {}",
                "x".repeat(i % 5),
                i % 7
            )
        })
        .collect();
    let expected = reference_word_count(&lines.iter().map(String::as_str).collect::<Vec<_>>());
    let plugin = plugin("sluice_wordcount");

    let jsonl = dir.path().join("in.jsonl");
    let body: String = lines
        .iter()
        .map(|l| format!("{}\n", serde_json::json!({ "line": l, "n": 1 })))
        .collect();
    std::fs::write(&jsonl, body).unwrap();

    let parquet = dir.path().join("in.parquet");
    let schema = Arc::new(Schema::new(vec![Field::new("line", DataType::Utf8, false)]));
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(40))
        .build();
    let mut w = ArrowWriter::try_new(
        std::fs::File::create(&parquet).unwrap(),
        schema.clone(),
        Some(props),
    )
    .unwrap();
    let batch =
        RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(lines.clone()))]).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();

    for (format, input, split_size) in [("jsonl", &jsonl, "500"), ("parquet", &parquet, "1")] {
        let out = dir.path().join(format!("out-{format}"));
        let result = run(&[
            "--local",
            "2",
            "--reducers",
            "3",
            "--split-size",
            split_size,
            "--format",
            format,
            "--plugin",
            plugin.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ]);
        assert_ok(&result);
        assert_eq!(read_counts(&out, "word", "count"), expected, "{format}");
        let summary = String::from_utf8_lossy(&result.stdout);
        assert!(summary.contains("rows in 300"), "{format}: {summary}");
        if format == "parquet" {
            // One split per row group of 40 rows.
            assert!(summary.contains("8 map"), "{summary}");
        }
    }
}
