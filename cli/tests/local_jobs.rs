//! End-to-end jobs in local mode (`sluice run --local N`: real gRPC over loopback, real
//! Parquet spills, real plugins), compared with reference computations written here in
//! plain Rust.

mod common;

use std::collections::BTreeMap;

use common::*;

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

/// The test plugin declares `line` as its secondary sort and fails a reduce call whose
/// group is out of line order: lines of equal length but different text, in memory and
/// through spilled runs (a tiny `--task-memory`), reach `reduce` in order.
#[test]
fn a_secondary_sort_orders_each_key_group_in_memory_and_through_spilled_runs() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    let mut text = String::new();
    let mut expected: BTreeMap<i64, i64> = BTreeMap::new();
    for i in 0..4000u64 {
        let len = 3 + (i % 5) as usize;
        // Distinct text per line, arriving in no order.
        let line: String = (0..len)
            .map(|j| (b'a' + ((i * 7919 + j as u64 * 104_729) % 26) as u8) as char)
            .collect();
        text.push_str(&line);
        text.push('\n');
        *expected.entry(len as i64).or_default() += 1;
    }
    std::fs::write(&input, text).unwrap();
    for memory in ["512MiB", "4096"] {
        let out = dir.path().join(format!("out-{memory}"));
        let result = run(&[
            "--local",
            "2",
            "--reducers",
            "2",
            "--split-size",
            "4096",
            "--batch-rows",
            "64",
            "--task-memory",
            memory,
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
                    got.insert(len.value(i), lines.value(i));
                }
            }
        }
        assert_eq!(got, expected, "task memory {memory}");
    }
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
    use parquet::basic::Compression;
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

    // Two files, compressed as Polars (zstd) and some Spark setups (gzip) write them.
    let parquet = dir.path().join("pq");
    std::fs::create_dir(&parquet).unwrap();
    let schema = Arc::new(Schema::new(vec![Field::new("line", DataType::Utf8, false)]));
    for (name, half, compression) in [
        (
            "zstd.parquet",
            &lines[..150],
            Compression::ZSTD(Default::default()),
        ),
        (
            "gzip.parquet",
            &lines[150..],
            Compression::GZIP(Default::default()),
        ),
    ] {
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(40))
            .set_compression(compression)
            .build();
        let mut w = ArrowWriter::try_new(
            std::fs::File::create(parquet.join(name)).unwrap(),
            schema.clone(),
            Some(props),
        )
        .unwrap();
        let column = Arc::new(StringArray::from(half.to_vec()));
        w.write(&RecordBatch::try_new(schema.clone(), vec![column]).unwrap())
            .unwrap();
        w.close().unwrap();
    }

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
            // One split per row group of up to 40 rows: 4 in each file.
            assert!(summary.contains("8 map"), "{summary}");
        }
    }
}

#[test]
fn small_files_are_packed_into_a_split_per_slot_and_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    let texts: Vec<String> = (0..30)
        .map(|i| format!("file {i} says hello\nand goodbye {}\n", i % 7))
        .collect();
    for (i, t) in texts.iter().enumerate() {
        std::fs::write(input.join(format!("f{i:02}.txt")), t).unwrap();
    }
    let out = dir.path().join("out");
    let glob = format!("{}/*.txt", input.display());
    let plugin = plugin("sluice_wordcount");
    let result = run(&[
        "--local",
        "2",
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
    let stdout = String::from_utf8_lossy(&result.stdout);
    // 30 files counted 4 MiB each for opening, on two slots: a split holds about half.
    let maps = map_count(&stdout);
    assert!((2..=3).contains(&maps), "30 small files: {stdout}");
    let expected = reference_word_count(&texts.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(read_counts(&out, "word", "count"), expected);
}

#[test]
fn one_file_smaller_than_a_split_still_keeps_both_slots_busy() {
    // 5 MB of text is far below the 128 MiB split size, but two slots each get a share.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("one.txt");
    let text: String = (0..200_000)
        .map(|i| format!("line {} of the only file\n", i % 997))
        .collect();
    assert!(text.len() > 4_500_000, "{}", text.len());
    std::fs::write(&input, &text).unwrap();
    let out = dir.path().join("out");
    let plugin = plugin("sluice_wordcount");
    let result = run(&[
        "--local",
        "2",
        "--format",
        "text",
        "--plugin",
        plugin.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_ok(&result);
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(stdout.contains(" 2 map / "), "{stdout}");
    assert_eq!(
        read_counts(&out, "word", "count"),
        reference_word_count(&[&text])
    );
}

/// Without `--reducers`, the coordinator gives each reducer half a task's memory of input
/// (at least 8): a small `--task-memory` makes more, smaller partitions, and the totals are
/// still exact.
#[test]
fn reducers_left_to_the_coordinator_follow_the_input_size() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("txns");
    std::fs::create_dir(&input).unwrap();
    let files = sluice_datagen::write_eod_files(&input, 30_000, 3, 2026).unwrap();
    let expected = reference_eod(&files);
    let bytes: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    let task_memory = 128u64 << 10;
    let half = task_memory / 2;
    let wanted = bytes.div_ceil(half);
    assert!(
        wanted > 8,
        "the input must ask for more than the floor: {bytes} bytes"
    );
    for (extra, reducers) in [
        (vec![], 8),
        (
            vec!["--task-memory".to_string(), task_memory.to_string()],
            wanted,
        ),
    ] {
        let out = dir.path().join(format!("eod-{reducers}"));
        let mut args: Vec<String> = [
            "--local",
            "2",
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
        ]
        .map(String::from)
        .to_vec();
        args.extend(extra);
        let result = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_ok(&result);
        let summary = String::from_utf8_lossy(&result.stdout);
        assert_eq!(reduce_count(&summary) as u64, reducers, "{summary}");
        let got = read_eod_csv_output(&out);
        assert_eq!(got, expected, "{reducers} reducers");
        let parts = manifest(&out)["files"].as_array().unwrap().len() as u64;
        assert!(parts > 0 && parts <= reducers, "{parts} part files");
    }
    let refused = run(&["--reducers", "0", "--local", "1"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("at least 1, or auto"),
        "{stderr}"
    );
}
