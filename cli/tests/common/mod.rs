//! Helpers for tests that run the real `sluice` binary with the real example plugins.
//!
//! The plugins are `cdylib`s that `cargo test` does not build: run
//! `cargo build --workspace --all-targets` first (the README's test command and `.ci/run` do).

#![allow(dead_code)]

pub mod browser;
pub mod chaos;
pub mod cluster;
pub mod reference;

#[allow(unused_imports)]
pub use reference::*;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// The `sluice` binary under test.
pub fn sluice() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
}

/// An example plugin built next to the binary.
pub fn plugin(name: &str) -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_sluice"));
    let p = exe
        .parent()
        .expect("binary has a directory")
        .join(format!("lib{name}.so"));
    assert!(
        p.is_file(),
        "{} is missing: run `cargo build --workspace --all-targets` before the tests",
        p.display()
    );
    p
}

/// Runs `sluice run` with `args` and returns its output.
pub fn run(args: &[&str]) -> Output {
    sluice()
        .arg("run")
        .args(args)
        .output()
        .expect("sluice starts")
}

/// Asserts the command succeeded, showing its output otherwise.
pub fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "sluice failed ({:?}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The map task count that `sluice run` prints ("... N map / M reduce tasks").
pub fn map_count(stdout: &str) -> usize {
    task_counts(stdout).0
}

/// The reduce task count that `sluice run` prints ("... N map / M reduce tasks").
pub fn reduce_count(stdout: &str) -> usize {
    task_counts(stdout).1
}

fn task_counts(stdout: &str) -> (usize, usize) {
    let parsed = stdout.split_once(" map / ").and_then(|(maps, reduces)| {
        let maps = maps.rsplit(' ').next()?.parse().ok()?;
        let reduces = reduces.split(' ').next()?.parse().ok()?;
        Some((maps, reduces))
    });
    parsed.unwrap_or_else(|| panic!("no task counts in {stdout}"))
}

/// Asserts the command failed with exit code 1 (an error, not a crash) and returns stderr.
pub fn assert_failed(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected a clean failure, got {:?}\nstderr:\n{stderr}",
        out.status
    );
    stderr
}

/// Every batch of every `part-*.parquet` in `dir`, file by file in name order.
pub fn read_parts(dir: &Path) -> Vec<(String, Vec<RecordBatch>)> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("output dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("part-") && n.ends_with(".parquet"))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let f = File::open(dir.join(&n)).expect("part file");
            let batches = ParquetRecordBatchReaderBuilder::try_new(f)
                .expect("parquet")
                .build()
                .expect("reader")
                .collect::<Result<Vec<_>, _>>()
                .expect("batches");
            (n, batches)
        })
        .collect()
}

/// Reads `(Utf8 key, Int64 value)` rows from the part files, asserting each file is sorted
/// by key and no key appears twice.
pub fn read_counts(dir: &Path, key: &str, value: &str) -> HashMap<String, i64> {
    let mut out = HashMap::new();
    for (name, batches) in read_parts(dir) {
        let mut prev: Option<String> = None;
        for b in batches {
            let k = b
                .column_by_name(key)
                .expect("key column")
                .as_string::<i32>();
            let v = b
                .column_by_name(value)
                .expect("value column")
                .as_primitive::<Int64Type>();
            for i in 0..b.num_rows() {
                let word = k.value(i).to_string();
                if let Some(p) = &prev {
                    assert!(*p < word, "{name} not sorted: {p:?} before {word:?}");
                }
                prev = Some(word.clone());
                assert!(v.is_valid(i));
                assert!(
                    out.insert(word, v.value(i)).is_none(),
                    "key twice in output"
                );
            }
        }
    }
    out
}

/// The manifest in `_SUCCESS`, parsed.
pub fn manifest(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("_SUCCESS")).expect("_SUCCESS exists");
    serde_json::from_str(&text).expect("_SUCCESS is JSON")
}
