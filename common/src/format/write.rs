//! Part files: the committed output of one reduce partition, Parquet or CSV.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use super::parquet_part::ParquetPart;

use crate::spec::OutputFormat;
use crate::{Error, Result};

/// Flushes `dir`'s entries to disk, so files renamed into it survive a power loss (the
/// files' own data is synced before they are renamed).
pub fn sync_dir(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Name of partition `partition`'s part file, e.g. `part-00007.parquet`.
pub fn part_file_name(partition: u32, format: OutputFormat) -> String {
    format!("part-{partition:05}.{}", format.extension())
}

enum Inner {
    Parquet(Box<ParquetPart>),
    Csv(Box<arrow::csv::Writer<BufWriter<File>>>),
}

/// Dictionary size past which a column chunk of a Parquet part file falls back to plain
/// encoding. Small, so the decision adapts per column: low-cardinality columns (dates,
/// currency codes) stay dictionary-encoded, while near-unique ones (account ids, sums) give
/// up after a few thousand values instead of interning 1 MiB of them per row group, which
/// was the largest cost of writing EOD output.
const OUTPUT_DICTIONARY_BYTES: usize = 64 << 10;

/// Writes batches to one part file.
pub struct PartWriter {
    path: PathBuf,
    inner: Inner,
    rows: u64,
}

impl PartWriter {
    /// Creates `path` for batches of `schema`.
    pub fn create(path: &Path, schema: SchemaRef, format: OutputFormat) -> Result<Self> {
        let file = File::create(path).map_err(|e| Error::io(path, e))?;
        let inner = match format {
            OutputFormat::Parquet => {
                let props = WriterProperties::builder()
                    .set_compression(Compression::SNAPPY)
                    .set_dictionary_page_size_limit(OUTPUT_DICTIONARY_BYTES);
                Inner::Parquet(Box::new(ParquetPart::new(file, schema, props).map_err(
                    |e| Error::arrow(format!("creating {}", path.display()), e),
                )?))
            }
            OutputFormat::Csv => Inner::Csv(Box::new(
                arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(BufWriter::new(file)),
            )),
        };
        Ok(PartWriter {
            path: path.to_path_buf(),
            inner,
            rows: 0,
        })
    }

    /// Appends a batch.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let ctx = || format!("writing {}", self.path.display());
        match &mut self.inner {
            Inner::Parquet(w) => w.write(batch).map_err(|e| Error::arrow(ctx(), e))?,
            Inner::Csv(w) => w.write(batch).map_err(|e| Error::arrow(ctx(), e))?,
        }
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Finishes the file, syncs it to disk and returns (rows, bytes).
    pub fn finish(self) -> Result<(u64, u64)> {
        let ctx = || format!("finishing {}", self.path.display());
        let file = match self.inner {
            Inner::Parquet(w) => w.finish().map_err(|e| Error::arrow(ctx(), e))?,
            Inner::Csv(w) => w
                .into_inner()
                .into_inner()
                .map_err(|e| Error::io(&self.path, e.into_error()))?,
        };
        file.sync_all().map_err(|e| Error::io(&self.path, e))?;
        let bytes = file.metadata().map_err(|e| Error::io(&self.path, e))?.len();
        Ok((self.rows, bytes))
    }
}
