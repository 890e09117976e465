//! Writes the seed inputs of every target into `fuzz/corpus/<target>/seed-*`. Parquet seeds
//! are small valid files written with the `parquet` crate, behind the control bytes each
//! target reads first.
//!
//! Built by `cargo fuzz build` with the targets (a plain binary would not link with the
//! coverage instrumentation), so it is a libFuzzer binary that writes the seeds on its first
//! input; `-runs=1` makes it stop there. From `fuzz/`:
//! `target/x86_64-unknown-linux-gnu/release/gen_seeds -runs=1`
#![no_main]

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Decimal128Array, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

fn parquet_file(rows: usize, rows_per_group: usize, compression: Compression) -> Vec<u8> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("a", DataType::Int64, false),
        Field::new("b", DataType::Utf8, true),
        Field::new("c", DataType::Float64, true),
        Field::new("d", DataType::Decimal128(10, 2), true),
    ]));
    let a: ArrayRef = Arc::new(Int64Array::from_iter_values(0..rows as i64));
    let b: ArrayRef = Arc::new(StringArray::from_iter(
        (0..rows).map(|i| (i % 3 != 0).then(|| format!("v{i}"))),
    ));
    let c: ArrayRef = Arc::new(Float64Array::from_iter(
        (0..rows).map(|i| Some(i as f64 / 3.0)),
    ));
    let d: ArrayRef = Arc::new(
        Decimal128Array::from_iter((0..rows).map(|i| Some(i as i128 * 101)))
            .with_precision_and_scale(10, 2)
            .unwrap(),
    );
    let batch = RecordBatch::try_new(schema.clone(), vec![a, b, c, d]).unwrap();
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(rows_per_group))
        .set_compression(compression)
        .build();
    let mut out = Vec::new();
    let mut w = ArrowWriter::try_new(&mut out, schema, Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    out
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new("corpus").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
}

libfuzzer_sys::fuzz_target!(|_data: &[u8]| {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(generate);
});

fn generate() {
    let files = [
        ("one-group", parquet_file(5, 10, Compression::UNCOMPRESSED)),
        ("three-groups", parquet_file(7, 3, Compression::SNAPPY)),
        ("lz4", parquet_file(4, 2, Compression::LZ4_RAW)),
    ];
    for (name, file) in &files {
        // parquet_split: group count, 4 groups, batch rows, columns, file.
        write(
            "parquet_split",
            name,
            &[[2, 0, 1, 2, 3, 3, 0].as_slice(), file].concat(),
        );
        write(
            "parquet_split",
            &format!("{name}-proj"),
            &[[4, 0, 1, 2, 9, 1, 2 | 0x10 | 0x40].as_slice(), file].concat(),
        );
        // remote_ranges: mode 1 (footer) and 2 (row groups), behaviour, lie, a, b, p, groups.
        write(
            "remote_ranges",
            &format!("{name}-footer"),
            &[[1, 0, 0, 0, 0, 0, 0, 0, 0, 0].as_slice(), file].concat(),
        );
        write(
            "remote_ranges",
            &format!("{name}-groups"),
            &[[2, 0, 0, 0, 3, 0, 1, 2, 3, 0].as_slice(), file].concat(),
        );
    }
    let lines: &[u8] = b"id,name,amount\n1,alpha,12.50\n2,\"be,ta\",-0.01\n3,\"multi\nline\",7\n";
    write(
        "remote_ranges",
        "lines",
        &[[0, 0, 0, 60, 200, 0, 0, 0, 0, 0].as_slice(), lines].concat(),
    );
    write(
        "remote_ranges",
        "sparse",
        &[[3, 0, 0, 60, 3, 9, 0, 0, 0, 0].as_slice(), lines].concat(),
    );
    write(
        "text_split",
        "lines",
        &[[0, 0, 0, 3].as_slice(), b"alpha\r\nbeta\n\ngamma"].concat(),
    );
    write(
        "text_split",
        "mid",
        &[
            [1, 40, 200, 0].as_slice(),
            b"one\ntwo\nthree\nfour\n\xff\xfe\n",
        ]
        .concat(),
    );
    // csv_split: range(3), batch rows, columns, then schema: count, types (+ decimal bytes).
    let csv_header = [0u8, 0, 0, 2, 0, 2, 0x81, 0x80, 0x03, 18, 2, 0, 0, 0, 0, 0];
    write(
        "csv_split",
        "typed",
        &[csv_header.as_slice(), lines].concat(),
    );
    let csv_header2 = [
        1u8,
        30,
        220,
        7,
        2 | 0x30,
        3,
        0x84,
        0x85,
        0x06,
        0x07,
        0,
        0,
        0,
        0,
        0,
        0,
    ];
    write(
        "csv_split",
        "dates",
        &[
            csv_header2.as_slice(),
            b"a,b,c,d\ntrue,2024-01-31,2024-01-31T10:00:00,x\n,,,\nfalse,bad,1,y\n",
        ]
        .concat(),
    );
    let json_header = [
        0u8, 0, 0, 3, 3, 0x81, 0x86, 0x87, 0x83, 0x05, 0x02, 0, 0, 0, 0, 0,
    ];
    write("jsonl_split", "nested", &[json_header.as_slice(), b"{\"c0\":1,\"c1\":[1,2],\"c2\":{\"a\":1,\"b\":\"x\"},\"c3\":\"1.5\"}\n\n{\"c0\":null}\n{\"c0\":2} {\"c0\":3}\n"].concat());
    write("decimal", "money", b"\x12\x021034.07");
    write("decimal", "neg", b"\x26\x00-000123");
    write("decimal", "frac", b"\x05\x05.00001");
    write("storage_keys", "glob", b"s3://bank/txns/2026/*/part-?.csv\npart-1.csv\n2026/01/part-1.csv\n2026/_tmp/part-1.csv\ntxns/2026/01/part-2.csv");
    write("storage_keys", "file", b"file://localhost/data/in\nx");
    write("storage_keys", "https", b"https://host:8080/a/b/\n/c/");
    write(
        "storage_keys",
        "brackets",
        b"gs://b/d/[ab]*.json\n\nd/a.json\nd/.a.json",
    );
    // proto_convert: selector, then an encoded message.
    use prost::Message;
    use sluice_proto::pb;
    let spec = pb::JobSpec {
        plugin: "p.so".into(),
        inputs: vec!["s3://b/in/*.csv".into()],
        format: pb::InputFormat::Csv as i32,
        output: "out".into(),
        reducers: 4,
        split_size: 1 << 20,
        batch_rows: 1024,
        params: [("k".to_string(), "v".to_string())].into(),
        ..Default::default()
    };
    let split = pb::Split {
        path: String::new(),
        input: "ledger".into(),
        stamp: None,
        range: Some(pb::split::Range::Files(pb::SplitList {
            splits: vec![
                pb::Split {
                    path: "a.csv".into(),
                    range: Some(pb::split::Range::Bytes(pb::ByteRange { start: 0, end: 10 })),
                    input: String::new(),
                    stamp: None,
                },
                pb::Split {
                    path: "b.parquet".into(),
                    range: Some(pb::split::Range::RowGroups(pb::RowGroups {
                        row_groups: vec![0, 2],
                    })),
                    input: String::new(),
                    stamp: None,
                },
            ],
        })),
    };
    let schema = Schema::new(vec![Field::new("x", DataType::Int64, true)]);
    let assignment = pb::TaskAssignment {
        job_id: "job-1".into(),
        attempt: 0,
        job: Some(pb::JobRuntime {
            spec: Some(spec.clone()),
            input_plan: sluice_proto::convert::encode_input_plan(
                &sluice_common::input_plan::InputPlan {
                    schemas: [(String::new(), std::sync::Arc::new(schema))].into(),
                    sides: Vec::new(),
                },
            )
            .unwrap(),
        }),
        task: Some(pb::task_assignment::Task::Map(pb::MapTask {
            split: Some(split.clone()),
            index: 3,
        })),
    };
    let failure = pb::TaskFailure {
        message: "bad".into(),
        retryable: false,
        reason: Some(pb::task_failure::Reason::BadRecord(pb::BadRecord {
            file: "a.csv".into(),
            line: 7,
        })),
    };
    let report = pb::ReportTaskRequest {
        worker_id: "w".into(),
        job_id: "job-1".into(),
        outcome: Some(pb::report_task_request::Outcome::Failed(failure.clone())),
        ..Default::default()
    };
    let msg = |sel: u8, m: &dyn Fn() -> Vec<u8>| [vec![sel], m()].concat();
    write(
        "proto_convert",
        "submit",
        &msg(0, &|| {
            pb::SubmitJobRequest {
                spec: Some(spec.clone()),
                rerun: false,
            }
            .encode_to_vec()
        }),
    );
    write(
        "proto_convert",
        "report",
        &msg(1, &|| report.encode_to_vec()),
    );
    write(
        "proto_convert",
        "assignment",
        &msg(6, &|| assignment.encode_to_vec()),
    );
    write(
        "proto_convert",
        "heartbeat-response",
        &msg(7, &|| {
            pb::HeartbeatResponse {
                assignments: vec![assignment.clone()],
                ..Default::default()
            }
            .encode_to_vec()
        }),
    );
    write("proto_convert", "split", &msg(9, &|| split.encode_to_vec()));
    write(
        "proto_convert",
        "failure",
        &msg(9, &|| failure.encode_to_vec()),
    );
}
