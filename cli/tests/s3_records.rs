//! Record-level features against a real S3-compatible server (moto's, see
//! `common/s3_server.rs`): quarantined records and a partitioned output committed to the
//! bucket equal the same job's local output, and a side input is read from the bucket.
//! Without the server these tests print why and pass, unless `SLUICE_REQUIRE_S3=1`.

mod common;
#[path = "common/s3_server.rs"]
mod s3_server;

use std::collections::BTreeMap;
use std::path::Path;

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use common::*;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use s3_server::*;

/// `(line, reason, record)` of the rejects in one Parquet file, and their sources.
fn rejects(bytes: bytes::Bytes) -> (Vec<(i64, String, String)>, Vec<String>) {
    let (mut rows, mut sources) = (Vec::new(), Vec::new());
    for b in ParquetRecordBatchReaderBuilder::try_new(bytes)
        .unwrap()
        .build()
        .unwrap()
    {
        let b = b.unwrap();
        let col = |n: &str| b.column_by_name(n).unwrap().clone();
        let (source, line, reason, record) =
            (col("source"), col("line"), col("reason"), col("record"));
        for i in 0..b.num_rows() {
            rows.push((
                line.as_primitive::<Int64Type>().value(i),
                reason.as_string::<i32>().value(i).to_string(),
                record.as_string::<i32>().value(i).to_string(),
            ));
            sources.push(source.as_string::<i32>().value(i).to_string());
        }
    }
    (rows, sources)
}

/// Every file under `dir`, by path relative to it, with its bytes.
fn local_tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn quarantine_and_partitioned_output_commit_to_s3_as_they_do_locally() {
    let Some(server) = S3Server::start() else {
        return;
    };
    server.create_bucket();
    let store = server.store();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("txns");
    std::fs::create_dir(&input).unwrap();
    let files = sluice_datagen::write_eod_files(&input, 6_000, 2, 2026).unwrap();
    // Two bad records at the end of the first file: one the reader cannot split into the
    // columns, one the EOD rules refuse (a transaction type that is neither DEBIT nor CREDIT).
    let first = std::fs::read_to_string(&files[0]).unwrap();
    let good = first.lines().nth(1).unwrap().to_string();
    let refused = good
        .replacen(",DEBIT,", ",REFUND,", 1)
        .replacen(",CREDIT,", ",REFUND,", 1);
    assert_ne!(refused, good);
    let lines = first.lines().count() as i64;
    std::fs::write(&files[0], format!("{first}not,a,record\n{refused}\n")).unwrap();
    for f in &files {
        let name = f.file_name().unwrap().to_str().unwrap();
        put(&store, &format!("txns/{name}"), std::fs::read(f).unwrap());
    }
    let plugin = plugin("sluice_eod");
    let job = |input: &str, output: &str| {
        let args: Vec<String> = [
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
            "--on-bad-record",
            "quarantine",
            "--partition-by",
            "txn_date",
            "--plugin",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([plugin.to_string_lossy().into_owned()])
        .chain([
            "--input".into(),
            input.into(),
            "--output".into(),
            output.into(),
        ])
        .collect();
        let out = server.run(&argv(&args));
        assert_ok(&out);
    };
    let local_out = dir.path().join("eod");
    job(
        &format!("{}/*.csv", input.display()),
        local_out.to_str().unwrap(),
    );
    job(
        &format!("s3://{BUCKET}/txns/*.csv"),
        &format!("s3://{BUCKET}/eod"),
    );

    // The partitioned part files: the same keys and the same bytes.
    let local = local_tree(&local_out);
    let parts: Vec<&String> = local
        .keys()
        .filter(|k| k.starts_with("txn_date="))
        .collect();
    assert!(parts.len() > 3, "{parts:?}");
    for rel in &parts {
        assert_eq!(
            get(&store, &format!("eod/{rel}")).as_ref(),
            local[*rel].as_slice(),
            "{rel} differs between the S3 and the local run"
        );
    }
    let remote_parts: Vec<String> = keys(&store, "eod")
        .into_iter()
        .filter_map(|k| k.strip_prefix("eod/").map(str::to_string))
        .filter(|k| k.starts_with("txn_date="))
        .collect();
    assert_eq!(remote_parts.iter().collect::<Vec<_>>(), parts);

    // The quarantined records: each once, at its line, naming the object it came from.
    let reject_keys: Vec<String> = keys(&store, "eod/_rejects");
    assert!(!reject_keys.is_empty());
    let (mut rows, mut sources) = (Vec::new(), Vec::new());
    for k in &reject_keys {
        let (r, s) = rejects(get(&store, k));
        rows.extend(r);
        sources.extend(s);
    }
    rows.sort();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!((rows[0].0, rows[0].2.as_str()), (lines + 1, "not,a,record"));
    assert_eq!(
        (rows[1].0, rows[1].2.as_str()),
        (lines + 2, refused.as_str())
    );
    let name = files[0].file_name().unwrap().to_str().unwrap();
    assert!(
        sources
            .iter()
            .all(|s| *s == format!("s3://{BUCKET}/txns/{name}")),
        "{sources:?}"
    );
    let mut local_rows = Vec::new();
    for (rel, bytes) in &local {
        if rel.starts_with("_rejects/") {
            local_rows.extend(rejects(bytes::Bytes::from(bytes.clone())).0);
        }
    }
    local_rows.sort();
    assert_eq!(local_rows, rows, "the same rejects locally and on S3");
    let remote: serde_json::Value = serde_json::from_slice(&get(&store, "eod/_SUCCESS")).unwrap();
    assert_eq!(remote["bad_records"], 2, "{remote}");
    assert_eq!(remote["rows"], manifest(&local_out)["rows"]);
}

#[test]
fn a_side_input_is_read_from_the_bucket() {
    let Some(server) = S3Server::start() else {
        return;
    };
    server.create_bucket();
    let store = server.store();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "a\nbb\nccc\nbb\ndddd\n").unwrap();
    put(&store, "side/keep.csv", "line,weight\nbb,1\ndddd,2\n");
    let out = dir.path().join("out");
    let result = server.run(&[
        "--local",
        "1",
        "--format",
        "text",
        "--format",
        "keep=csv",
        "--side",
        &format!("keep=s3://{BUCKET}/side/keep.csv"),
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
            let len = b.column(0).as_primitive::<Int64Type>();
            let n = b.column(1).as_primitive::<Int64Type>();
            for i in 0..b.num_rows() {
                got.insert(len.value(i), n.value(i));
            }
        }
    }
    assert_eq!(got, BTreeMap::from([(2, 2), (4, 1)]));
    assert_eq!(manifest(&out)["counters"]["kept"], 3);
}
