//! Jobs that read their input from and commit their output to a real S3-compatible server
//! (moto's `moto_server`, see `common/s3_server.rs`), not a mock of ours; the results are
//! read back with a client of the test's own and checked against plain-Rust computations.
//! Without the server these tests print why and pass, unless `SLUICE_REQUIRE_S3=1`.

mod common;
#[path = "common/s3_server.rs"]
mod s3_server;

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use common::*;
use object_store::ObjectStore;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use s3_server::*;

fn reference(texts: &[String]) -> HashMap<String, i64> {
    reference_word_count(&texts.iter().map(String::as_str).collect::<Vec<_>>())
}

/// `(word, count)` rows of the Parquet part files under `prefix`, which must be sorted by
/// word within a file and hold each word once.
fn read_counts_from_s3(store: &Arc<dyn ObjectStore>, prefix: &str) -> HashMap<String, i64> {
    let mut out = HashMap::new();
    for key in keys(store, prefix)
        .into_iter()
        .filter(|k| k.rsplit('/').next().is_some_and(|n| n.starts_with("part-")))
    {
        let reader = ParquetRecordBatchReaderBuilder::try_new(get(store, &key))
            .unwrap()
            .build()
            .unwrap();
        let mut prev: Option<String> = None;
        for b in reader {
            let b = b.unwrap();
            let words = b.column_by_name("word").unwrap().as_string::<i32>();
            let counts = b
                .column_by_name("count")
                .unwrap()
                .as_primitive::<Int64Type>();
            for i in 0..b.num_rows() {
                let w = words.value(i).to_string();
                if let Some(p) = &prev {
                    assert!(*p < w, "{key} not sorted: {p:?} before {w:?}");
                }
                prev = Some(w.clone());
                assert!(counts.is_valid(i));
                assert!(out.insert(w, counts.value(i)).is_none(), "word twice");
            }
        }
    }
    out
}

#[test]
fn word_count_reads_from_and_commits_to_s3() {
    let Some(server) = S3Server::start() else {
        return;
    };
    server.create_bucket();
    let store = server.store();
    let long_line = "Lorem ipsum dolor sit amet ".repeat(40);
    let texts: Vec<String> = vec![
        "The quick brown fox\njumps over the lazy dog.\nThe dog sleeps; the fox runs!\n".into(),
        "Windows\r\nline endings\r\nhere\r\n\r\nand café Straße naïve\r\n".into(),
        format!("no final newline, {long_line}\nshort\nend-of-file"),
        String::new(),
        "numbers 123 and4mixed5words x9y\n\n\n  spaced   out  \n".into(),
    ];
    for (i, t) in texts.iter().enumerate() {
        put(&store, &format!("in/part{i}.txt"), t.clone());
    }
    // Not data: skipped like `_SUCCESS` and hidden files in a local directory.
    put(&store, "in/_SUCCESS", "not words");
    put(&store, "in/.hidden", "hidden words");
    let expected = reference(&texts);
    let plugin = plugin("sluice_wordcount");
    // 7 bytes cuts most lines (each split fetches past its end to finish its last line).
    for split_size in ["7", "100000000"] {
        let out_prefix = format!("out-{split_size}");
        let output = format!("s3://{BUCKET}/{out_prefix}");
        let result = server.run(&[
            "--local",
            "2",
            "--reducers",
            "3",
            "--split-size",
            split_size,
            "--format",
            "text",
            "--plugin",
            plugin.to_str().unwrap(),
            "--input",
            &format!("s3://{BUCKET}/in/"),
            "--output",
            &output,
        ]);
        assert_ok(&result);
        let got = read_counts_from_s3(&store, &out_prefix);
        assert_eq!(got, expected, "split size {split_size}");

        let listed = keys(&store, &out_prefix);
        assert!(
            listed.iter().all(|k| !k.contains("_temporary")),
            "_temporary is removed after commit: {listed:?}"
        );
        let manifest: serde_json::Value =
            serde_json::from_slice(&get(&store, &format!("{out_prefix}/_SUCCESS"))).unwrap();
        let files = manifest["files"].as_array().unwrap();
        assert!(!files.is_empty() && files.len() <= 3);
        let rows: u64 = files.iter().map(|f| f["rows"].as_u64().unwrap()).sum();
        assert_eq!(rows as usize, expected.len());
        let mut parts: Vec<String> = files
            .iter()
            .map(|f| format!("{out_prefix}/{}", f["file"].as_str().unwrap()))
            .collect();
        parts.push(format!("{out_prefix}/_SUCCESS"));
        parts.sort();
        assert_eq!(
            listed, parts,
            "the output holds the manifest's files and _SUCCESS"
        );
        for f in files {
            let key = format!("{out_prefix}/{}", f["file"].as_str().unwrap());
            assert_eq!(get(&store, &key).len() as u64, f["bytes"].as_u64().unwrap());
        }
    }

    // An existing URL output is refused without --overwrite, like a local directory.
    let args = |output: &str, input: &str| {
        vec![
            "--local".to_string(),
            "1".into(),
            "--format".into(),
            "text".into(),
            "--plugin".into(),
            plugin.to_str().unwrap().into(),
            "--input".into(),
            input.into(),
            "--output".into(),
            output.into(),
        ]
    };
    let again = args(
        &format!("s3://{BUCKET}/out-7"),
        &format!("s3://{BUCKET}/in/"),
    );
    let out = server.run(&argv(&again));
    let stderr = assert_failed(&out);
    assert!(
        stderr.contains("already exists") && stderr.contains("--overwrite"),
        "{stderr}"
    );
    // A missing input names the URL.
    let missing = args(
        &format!("s3://{BUCKET}/out-x"),
        &format!("s3://{BUCKET}/nope/"),
    );
    let out = server.run(&argv(&missing));
    let stderr = assert_failed(&out);
    assert!(
        stderr.contains("matches no file") && stderr.contains(&format!("s3://{BUCKET}/nope")),
        "{stderr}"
    );
    assert!(
        keys(&store, "out-x").is_empty(),
        "nothing written for a refused job"
    );

    // A bad record in a later split of an object names the URL and the line in the file.
    put(
        &store,
        "bad/x.txt",
        [
            &b"good line\nsecond line\n"[..],
            b"bad \xff byte\n",
            b"last\n",
        ]
        .concat(),
    );
    let mut bad = args(
        &format!("s3://{BUCKET}/out-bad"),
        &format!("s3://{BUCKET}/bad/"),
    );
    bad.extend(["--split-size".to_string(), "12".into()]);
    let stderr = assert_failed(&server.run(&argv(&bad)));
    assert!(
        stderr.contains(&format!("s3://{BUCKET}/bad/x.txt line 3")) && stderr.contains("UTF-8"),
        "{stderr}"
    );
    assert!(
        !keys(&store, "out-bad")
            .iter()
            .any(|k| k.ends_with("_SUCCESS")),
        "no _SUCCESS for a failed job"
    );
}

#[test]
fn eod_csv_from_s3_gives_the_same_bytes_as_from_local_files() {
    let Some(server) = S3Server::start() else {
        return;
    };
    server.create_bucket();
    let store = server.store();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("txns");
    std::fs::create_dir(&input).unwrap();
    let files = sluice_datagen::write_eod_files(&input, 20_000, 2, 2026).unwrap();
    for f in &files {
        let name = f.file_name().unwrap().to_str().unwrap();
        put(&store, &format!("txns/{name}"), std::fs::read(f).unwrap());
    }
    let plugin = plugin("sluice_eod");
    let job = |input: &str, output: &str| {
        vec![
            "--local".to_string(),
            "2".into(),
            "--reducers".into(),
            "3".into(),
            "--split-size".into(),
            "65536".into(),
            "--format".into(),
            "csv".into(),
            "--output-format".into(),
            "csv".into(),
            "--plugin".into(),
            plugin.to_str().unwrap().into(),
            "--input".into(),
            input.into(),
            "--output".into(),
            output.into(),
        ]
    };
    let local_out = dir.path().join("eod");
    let local = job(
        &format!("{}/*.csv", input.display()),
        local_out.to_str().unwrap(),
    );
    assert_ok(&server.run(&argv(&local)));
    let remote = job(
        &format!("s3://{BUCKET}/txns/*.csv"),
        &format!("s3://{BUCKET}/eod"),
    );
    assert_ok(&server.run(&argv(&remote)));

    let mut local_parts: Vec<String> = std::fs::read_dir(&local_out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("part-"))
        .collect();
    local_parts.sort();
    assert!(!local_parts.is_empty());
    let remote_parts: Vec<String> = keys(&store, "eod")
        .into_iter()
        .filter_map(|k| k.strip_prefix("eod/").map(str::to_string))
        .filter(|n| n.starts_with("part-"))
        .collect();
    assert_eq!(remote_parts, local_parts);
    for name in &local_parts {
        let want = std::fs::read(local_out.join(name)).unwrap();
        assert_eq!(
            get(&store, &format!("eod/{name}")).as_ref(),
            want.as_slice(),
            "{name} differs between the S3 and the local run"
        );
    }
    let manifest: serde_json::Value = serde_json::from_slice(&get(&store, "eod/_SUCCESS")).unwrap();
    assert_eq!(
        manifest["rows"],
        read_manifest_rows(&local_out),
        "same row count in both manifests"
    );
}

fn read_manifest_rows(dir: &std::path::Path) -> serde_json::Value {
    manifest(dir)["rows"].clone()
}

#[test]
fn json_lines_and_parquet_row_groups_from_s3() {
    use arrow::array::{RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;

    let Some(server) = S3Server::start() else {
        return;
    };
    server.create_bucket();
    let store = server.store();
    let lines: Vec<String> = (0..300)
        .map(|i| format!("alpha beta{} gamma line {}", "x".repeat(i % 5), i % 7))
        .collect();
    let expected = reference(&lines);

    let body: String = lines
        .iter()
        .map(|l| format!("{}\n", serde_json::json!({ "line": l, "n": 1 })))
        .collect();
    put(&store, "json/in.jsonl", body);

    let schema = Arc::new(Schema::new(vec![Field::new("line", DataType::Utf8, false)]));
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(40))
        .build();
    let mut parquet = Vec::new();
    let mut w = ArrowWriter::try_new(&mut parquet, schema.clone(), Some(props)).unwrap();
    let batch =
        RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(lines.clone()))]).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    put(&store, "pq/in.parquet", parquet);

    let plugin = plugin("sluice_wordcount");
    for (format, input, split_size) in [
        ("jsonl", "json/in.jsonl", "500"),
        ("parquet", "pq/*.parquet", "1"),
    ] {
        let out_prefix = format!("out-{format}");
        let args: Vec<String> = [
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
            &format!("s3://{BUCKET}/{input}"),
            "--output",
            &format!("s3://{BUCKET}/{out_prefix}"),
        ]
        .map(String::from)
        .to_vec();
        let result = server.run(&argv(&args));
        assert_ok(&result);
        assert_eq!(
            read_counts_from_s3(&store, &out_prefix),
            expected,
            "{format}"
        );
        let summary = String::from_utf8_lossy(&result.stdout);
        assert!(summary.contains("rows in 300"), "{format}: {summary}");
        if format == "parquet" {
            // One split per row group of 40 rows, read by ranged reads.
            assert!(summary.contains("8 map"), "{summary}");
        }
        assert!(keys(&store, &out_prefix).contains(&format!("{out_prefix}/_SUCCESS")));
    }
}
