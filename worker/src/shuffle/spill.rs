//! Writing one map attempt's spill file (format in the [module docs](super)).

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use sluice_common::{Error, Result};

use super::MapOutputFile;

/// Metadata key holding the partition → row groups index.
pub const PARTITION_INDEX_KEY: &str = "sluice.partition_row_groups";

/// Metadata key holding the file's random token (hex), which a reducer on the same host
/// checks before it reads the file directly.
pub const TOKEN_KEY: &str = "sluice.output_token";

/// Rows per row group at most: the unit a reducer receives and decodes whole, so its size
/// bounds the memory of a fetch in flight (about 4 MiB of EOD rows).
pub const SPILL_ROW_GROUP_ROWS: usize = 64 * 1024;

/// A token no other spill file has: random per file, not secret.
fn new_token(path: &Path) -> u64 {
    use std::hash::{BuildHasher, Hash, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    path.hash(&mut h);
    std::process::id().hash(&mut h);
    std::time::SystemTime::now().hash(&mut h);
    h.finish()
}

/// How spill files are written: for a local disk, read once, soon. No dictionaries (EOD's
/// account ids are nearly all distinct: interning them costs and saves nothing), no
/// statistics or page indexes (nothing prunes a spill), large pages, and no compression:
/// the file is read back from the page cache moments later, and LZ4 took about 6% of an EOD
/// run's CPU (profile) to save bytes that mostly never leave the host (and loopback
/// bytes sent within one host); the wall-time difference was within noise, so the simpler,
/// cheaper option stays. Row groups of at most [`SPILL_ROW_GROUP_ROWS`] rows also keep the
/// writer's own buffer small.
fn spill_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::UNCOMPRESSED)
        .set_dictionary_enabled(false)
        .set_statistics_enabled(EnabledStatistics::None)
        .set_data_page_size_limit(SPILL_PAGE_BYTES)
        .set_max_row_group_row_count(Some(SPILL_ROW_GROUP_ROWS))
        .build()
}

/// Target size of a spill file's data pages.
const SPILL_PAGE_BYTES: usize = 4 << 20;

/// Rows and bytes written per partition.
#[derive(Debug, Default, Clone, Copy)]
pub struct PartitionStats {
    /// Rows.
    pub rows: u64,
    /// Compressed bytes.
    pub bytes: u64,
}

/// Writes runs of partitioned batches into one Parquet file.
pub struct SpillWriter {
    path: PathBuf,
    token: u64,
    writer: Option<ArrowWriter<File>>,
    index: HashMap<u32, Vec<usize>>,
    stats: HashMap<u32, PartitionStats>,
}

impl SpillWriter {
    /// A writer that creates `path` on the first batch.
    pub fn new(path: PathBuf) -> Self {
        SpillWriter {
            token: new_token(&path),
            path,
            writer: None,
            index: HashMap::new(),
            stats: HashMap::new(),
        }
    }

    fn writer_for(&mut self, batch: &RecordBatch) -> Result<&mut ArrowWriter<File>> {
        if self.writer.is_none() {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            }
            let file = File::create(&self.path).map_err(|e| Error::io(&self.path, e))?;
            let props = spill_properties();
            let w = ArrowWriter::try_new(file, batch.schema(), Some(props))
                .map_err(|e| Error::arrow(format!("creating {}", self.path.display()), e))?;
            self.writer = Some(w);
        }
        self.writer.as_mut().ok_or_else(|| Error::Internal {
            what: "spill writer vanished".into(),
        })
    }

    /// Writes one run: `(partition, batches)` in ascending partition order.
    pub fn write_run(&mut self, run: Vec<(u32, Vec<RecordBatch>)>) -> Result<()> {
        let path = self.path.clone();
        let ctx = || format!("writing spill {}", path.display());
        for (partition, batches) in run {
            let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
            if rows == 0 {
                continue;
            }
            let Some(first) = batches.iter().find(|b| b.num_rows() > 0) else {
                continue;
            };
            let first = super::codec::encode(first)?;
            let writer = self.writer_for(&first)?;
            let before = writer.flushed_row_groups().len();
            for b in &batches {
                let b = super::codec::encode(b)?;
                writer.write(&b).map_err(|e| Error::arrow(ctx(), e))?;
            }
            writer.flush().map_err(|e| Error::arrow(ctx(), e))?;
            let groups = writer.flushed_row_groups();
            let bytes: i64 = groups[before..].iter().map(|g| g.compressed_size()).sum();
            let after = groups.len();
            self.index
                .entry(partition)
                .or_default()
                .extend(before..after);
            let s = self.stats.entry(partition).or_default();
            s.rows += rows as u64;
            s.bytes += bytes.max(0) as u64;
        }
        Ok(())
    }

    /// Closes the file (footer with the partition index) and returns what to register.
    pub fn finish(mut self) -> Result<(MapOutputFile, HashMap<u32, PartitionStats>)> {
        let path = match self.writer.take() {
            None => None,
            Some(mut w) => {
                let mut parts: Vec<_> = self.index.iter().collect();
                parts.sort();
                let text = parts
                    .iter()
                    .map(|(p, rgs)| {
                        let rgs: Vec<String> = rgs.iter().map(usize::to_string).collect();
                        format!("{p}:{}", rgs.join(","))
                    })
                    .collect::<Vec<_>>()
                    .join(";");
                w.append_key_value_metadata(KeyValue::new(PARTITION_INDEX_KEY.to_string(), text));
                w.append_key_value_metadata(KeyValue::new(
                    TOKEN_KEY.to_string(),
                    format!("{:016x}", self.token),
                ));
                w.close().map_err(|e| {
                    Error::arrow(format!("closing spill {}", self.path.display()), e)
                })?;
                Some(self.path.clone())
            }
        };
        Ok((
            MapOutputFile {
                path,
                partition_row_groups: self.index,
                token: self.token,
            },
            self.stats,
        ))
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Decimal128Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use std::sync::Arc;

    /// What a reducer reads back is the batches written, with their first field's metadata
    /// (which marks map output rows) and wide decimals put back together.
    #[test]
    fn a_spilled_partition_reads_back_as_written_with_its_schema_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let schema = Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("sum", DataType::Decimal128(38, 2), true),
        ]);
        let batch = RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(StringArray::from(vec!["a", "b"])),
                Arc::new(
                    Decimal128Array::from(vec![Some(-1), None])
                        .with_precision_and_scale(38, 2)
                        .unwrap(),
                ),
            ],
        )
        .unwrap();
        let batch = sluice_common::agg::mark_map_rows(&batch).unwrap();
        let mut w = SpillWriter::new(dir.path().join("data.parquet"));
        w.write_run(vec![(3, vec![batch.clone()])]).unwrap();
        let (file, stats) = w.finish().unwrap();
        assert_eq!(stats[&3].rows, 2);
        let path = file.path.unwrap();
        let read: Vec<RecordBatch> =
            ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
                .unwrap()
                .with_row_groups(file.partition_row_groups[&3].clone())
                .build()
                .unwrap()
                .map(|b| super::super::codec::decode(b.unwrap()).unwrap())
                .collect();
        assert_eq!(read.len(), 1);
        assert!(
            sluice_common::agg::is_map_rows(&read[0].schema()),
            "{:?}",
            read[0].schema()
        );
        assert_eq!(read[0].columns(), batch.columns());
    }
}
