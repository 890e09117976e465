//! A reduce's output partitioned by column values into Hive-style directories
//! (`txn_date=2026-11-28/part-00003.parquet`), as Hive and Spark write them: the partition
//! columns name the directories and are left out of the files, so DuckDB, Polars and Spark
//! read the output back with hive partitioning.
//!
//! A reduce keeps one open file per distinct directory it writes, at most
//! [`MAX_OPEN_PARTITIONS`]: more is an error telling to partition by a coarser column.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, RecordBatch, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use sluice_common::format::write::{PartWriter, part_file_name};
use sluice_common::spec::OutputFormat;
use sluice_common::{Error, Result};

/// Most directories one reduce writes into at once.
pub const MAX_OPEN_PARTITIONS: usize = 1024;

/// The directory name of a null value, as Hive names it.
pub const NULL_VALUE: &str = "__HIVE_DEFAULT_PARTITION__";

/// `value` as a directory name: the characters Hive escapes become `%XX`.
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        let hive_escapes = matches!(
            c,
            '"' | '#' | '%' | '\'' | '*' | '/' | ':' | '=' | '?' | '\\' | '{' | '[' | ']' | '^'
        );
        if hive_escapes || c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    match out.as_str() {
        // Hive writes an empty value as it writes a null.
        "" => NULL_VALUE.to_string(),
        // Not usable as directory names: escape their dots too.
        "." | ".." => out.replace('.', "%2E"),
        _ => out,
    }
}

/// The files of one reduce, one per directory.
pub struct HiveOutput {
    dir: PathBuf,
    keys: Vec<String>,
    format: OutputFormat,
    partition: u32,
    writers: BTreeMap<String, (PathBuf, PartWriter)>,
}

impl HiveOutput {
    /// Files of reduce `partition` under `dir`, by the values of `keys`.
    pub fn new(dir: &Path, keys: &[String], format: OutputFormat, partition: u32) -> Self {
        HiveOutput {
            dir: dir.to_path_buf(),
            keys: keys.to_vec(),
            format,
            partition,
            writers: BTreeMap::new(),
        }
    }

    /// Writes `batch`'s rows, each into the file of its directory, without the key columns.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let schema = batch.schema();
        let indices = self
            .keys
            .iter()
            .map(|k| {
                schema.index_of(k).map_err(|_| Error::Mismatch {
                    subject: format!("--partition-by {k}"),
                    reason: format!(
                        "the job's output has no such column (it has {})",
                        schema
                            .fields()
                            .iter()
                            .map(|f| f.name().as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                })
            })
            .collect::<Result<Vec<usize>>>()?;
        if indices.len() == schema.fields().len() {
            return Err(Error::Mismatch {
                subject: "--partition-by".into(),
                reason: "it names every output column: the files would hold none".into(),
            });
        }
        let options = FormatOptions::default();
        let formatters = indices
            .iter()
            .map(|&i| ArrayFormatter::try_new(batch.column(i).as_ref(), &options))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::arrow("formatting partition values", e))?;
        let mut rows: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for row in 0..batch.num_rows() {
            let dir = indices
                .iter()
                .zip(&formatters)
                .zip(&self.keys)
                .map(|((&i, f), key)| {
                    let value = if batch.column(i).is_null(row) {
                        NULL_VALUE.to_string()
                    } else {
                        escape(&f.value(row).to_string())
                    };
                    format!("{}={value}", escape(key))
                })
                .collect::<Vec<_>>()
                .join("/");
            rows.entry(dir).or_default().push(row as u32);
        }
        let keep: Vec<usize> = (0..schema.fields().len())
            .filter(|i| !indices.contains(i))
            .collect();
        let data = batch
            .project(&keep)
            .map_err(|e| Error::arrow("leaving partition columns out", e))?;
        for (dir, rows) in rows {
            let part = take_record_batch(&data, &UInt32Array::from(rows))
                .map_err(|e| Error::arrow("splitting rows by partition", e))?;
            self.writer(&dir, &part)?.write(&part)?;
        }
        Ok(())
    }

    fn writer(&mut self, dir: &str, batch: &RecordBatch) -> Result<&mut PartWriter> {
        if !self.writers.contains_key(dir) {
            if self.writers.len() >= MAX_OPEN_PARTITIONS {
                return Err(Error::Unsupported {
                    what: format!("--partition-by {}", self.keys.join(",")),
                    reason: format!(
                        "one reduce writes more than {MAX_OPEN_PARTITIONS} directories: \
                         partition by a coarser column"
                    ),
                });
            }
            let folder = self.dir.join(dir);
            std::fs::create_dir_all(&folder).map_err(|e| Error::io(&folder, e))?;
            let path = folder.join(part_file_name(self.partition, self.format));
            let w = PartWriter::create(&path, Arc::clone(&batch.schema()), self.format)?;
            self.writers.insert(dir.to_string(), (path, w));
        }
        match self.writers.get_mut(dir) {
            Some((_, w)) => Ok(w),
            None => Err(Error::Internal {
                what: "partition writer vanished".into(),
            }),
        }
    }

    /// Finishes every file: `(path relative to the output, rows, bytes)`.
    pub fn finish(self) -> Result<Vec<(String, u64, u64)>> {
        let name = part_file_name(self.partition, self.format);
        let mut files = Vec::with_capacity(self.writers.len());
        for (dir, (_, w)) in self.writers {
            let (rows, bytes) = w.finish()?;
            files.push((format!("{dir}/{name}"), rows, bytes));
        }
        Ok(files)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_hive_escapes_make_safe_directory_names() {
        assert_eq!(escape("2026-11-28"), "2026-11-28");
        assert_eq!(escape("a/b=c"), "a%2Fb%3Dc");
        assert_eq!(escape("50%"), "50%25");
        assert_eq!(escape(".."), "%2E%2E");
        assert_eq!(escape("caf\u{e9}"), "caf\u{e9}");
    }
}
