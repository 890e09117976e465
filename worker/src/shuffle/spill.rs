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
