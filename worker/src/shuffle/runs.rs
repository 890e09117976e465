//! Sorted runs on the reducer's local disk, merged back in key order: how a reduce partition
//! larger than `task_memory` is processed in bounded memory (Hadoop's on-disk merge of map
//! outputs, Spark's `ExternalAppendOnlyMap` and `UnsafeExternalSorter`).
//!
//! A run is an Arrow IPC file of batches sorted by the key columns. [`Runs::merge`] holds
//! one batch per run at a time and yields chunks of about `batch_rows` rows, sorted by key,
//! that never split a key group. Rows with equal keys come in run order, and runs are
//! numbered in arrival order, so a stable sort within each run keeps arrival order overall.
//! The files are removed when the [`Runs`] is dropped, however the attempt ends.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::compute::interleave_record_batch;
use arrow::ipc::reader::FileReader;
use arrow::ipc::writer::FileWriter;
use arrow::row::{RowConverter, Rows, SortField};
use sluice_common::{Error, Result};

use super::tournament::Tournament;

/// The sorted runs of one reduce attempt.
pub struct Runs {
    dir: PathBuf,
    files: Vec<PathBuf>,
}

/// A run being written ([`Runs::start`]): its file is created on the first batch.
pub struct RunWriter<'a> {
    runs: &'a mut Runs,
    writer: Option<(PathBuf, FileWriter<BufWriter<File>>)>,
}

impl RunWriter<'_> {
    /// Appends `batch` to the run.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let (path, w) = match &mut self.writer {
            Some(w) => w,
            None => {
                let dir = &self.runs.dir;
                std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
                let path = dir.join(format!("run-{:05}.arrow", self.runs.files.len()));
                let file = File::create(&path).map_err(|e| Error::io(&path, e))?;
                // Listed at once, so the file is removed however the attempt ends.
                self.runs.files.push(path.clone());
                let w = FileWriter::try_new(BufWriter::new(file), &batch.schema())
                    .map_err(|e| Error::arrow(format!("writing run {}", path.display()), e))?;
                self.writer.insert((path, w))
            }
        };
        w.write(batch)
            .map_err(|e| Error::arrow(format!("writing run {}", path.display()), e))
    }

    /// Ends the run's file.
    pub fn finish(self) -> Result<()> {
        match self.writer {
            Some((path, mut w)) => w
                .finish()
                .map_err(|e| Error::arrow(format!("writing run {}", path.display()), e)),
            None => Ok(()),
        }
    }
}

/// One run's current batch and its encoded keys: the sort order, and the group key when it
/// is a shorter prefix of it (a secondary sort).
struct Slot {
    batch: RecordBatch,
    rows: Rows,
    group: Option<Rows>,
}

impl Slot {
    /// Whether row `a` of `self` and row `b` of `other` are of one key group.
    fn same_group(&self, a: usize, other: &Slot, b: usize) -> bool {
        match (&self.group, &other.group) {
            (Some(x), Some(y)) => x.row(a) == y.row(b),
            _ => self.rows.row(a) == other.rows.row(b),
        }
    }
}

/// The converters of a merge: the sort order, and the group key when it is shorter.
struct Converters {
    sort: RowConverter,
    group: Option<(RowConverter, usize)>,
}

/// Where the merge is in one run.
struct Cursor {
    reader: FileReader<BufReader<File>>,
    slot: Arc<Slot>,
    /// Index of `slot` in the chunk being built.
    chunk_slot: usize,
    pos: usize,
}

fn encode(converter: &RowConverter, batch: &RecordBatch, keys: &[usize]) -> Result<Rows> {
    let columns: Vec<ArrayRef> = keys.iter().map(|&i| Arc::clone(batch.column(i))).collect();
    converter
        .convert_columns(&columns)
        .map_err(|e| Error::arrow("encoding run keys", e))
}

impl Runs {
    /// Runs kept under `dir` (created on the first run).
    pub fn new(dir: PathBuf) -> Self {
        Runs {
            dir,
            files: Vec::new(),
        }
    }

    /// Number of runs written.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether no run was written.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Writes `batches`, which together are sorted by key, as the next run.
    pub fn write(&mut self, batches: &[RecordBatch]) -> Result<()> {
        let mut run = self.start();
        for b in batches {
            run.write(b)?;
        }
        run.finish()
    }

    /// The next run, written a batch at a time (batches that together are sorted by key);
    /// none is written if no batch is.
    pub fn start(&mut self) -> RunWriter<'_> {
        RunWriter {
            runs: self,
            writer: None,
        }
    }

    /// Reads the next non-empty batch of `reader`, with its keys.
    fn next_slot(
        reader: &mut FileReader<BufReader<File>>,
        converters: &Converters,
        keys: &[usize],
    ) -> Result<Option<Arc<Slot>>> {
        for batch in reader.by_ref() {
            let batch = batch.map_err(|e| Error::arrow("reading a run", e))?;
            if batch.num_rows() > 0 {
                let rows = encode(&converters.sort, &batch, keys)?;
                let group = match &converters.group {
                    Some((c, n)) => Some(encode(c, &batch, &keys[..*n])?),
                    None => None,
                };
                return Ok(Some(Arc::new(Slot { batch, rows, group })));
            }
        }
        Ok(None)
    }

    /// Merges every run in the order of `keys`: `emit` gets chunks of about `batch_rows`
    /// rows, in that order, that never split a group of equal first `group_keys` columns
    /// (the rest of `keys` orders the rows within a group: a secondary sort).
    pub fn merge(
        &self,
        keys: &[usize],
        group_keys: usize,
        batch_rows: usize,
        mut emit: impl FnMut(RecordBatch) -> Result<()>,
    ) -> Result<()> {
        let mut cursors: Vec<Option<Cursor>> = Vec::new();
        let mut converter: Option<Converters> = None;
        let mut chunk: Vec<Arc<Slot>> = Vec::new();
        for path in &self.files {
            let file = File::open(path).map_err(|e| Error::io(path, e))?;
            let mut reader = FileReader::try_new(BufReader::new(file), None)
                .map_err(|e| Error::arrow(format!("opening run {}", path.display()), e))?;
            let conv = match &converter {
                Some(c) => c,
                None => {
                    let schema = reader.schema();
                    let fields = |keys: &[usize]| {
                        let fields = keys
                            .iter()
                            .map(|&i| SortField::new(schema.field(i).data_type().clone()))
                            .collect();
                        RowConverter::new(fields).map_err(|e| Error::arrow("run keys", e))
                    };
                    let group = if group_keys < keys.len() {
                        Some((fields(&keys[..group_keys])?, group_keys))
                    } else {
                        None
                    };
                    converter.insert(Converters {
                        sort: fields(keys)?,
                        group,
                    })
                }
            };
            let cursor = Self::next_slot(&mut reader, conv, keys)?.map(|slot| {
                chunk.push(Arc::clone(&slot));
                Cursor {
                    reader,
                    slot,
                    chunk_slot: chunk.len() - 1,
                    pos: 0,
                }
            });
            cursors.push(cursor);
        }
        let Some(converter) = converter else {
            return Ok(());
        };
        let mut indices: Vec<(usize, usize)> = Vec::new();
        // Which run's current row is smallest: ties go to the earlier run, and a finished
        // run loses to every other.
        let beats =
            |cursors: &[Option<Cursor>], a: usize, b: usize| match (&cursors[a], &cursors[b]) {
                (Some(x), Some(y)) => match x.slot.rows.row(x.pos).cmp(&y.slot.rows.row(y.pos)) {
                    std::cmp::Ordering::Less => true,
                    std::cmp::Ordering::Equal => a < b,
                    std::cmp::Ordering::Greater => false,
                },
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => a < b,
            };
        let mut tree = Tournament::new(cursors.len(), |a, b| beats(&cursors, a, b));
        loop {
            let r = tree.winner();
            let Some(c) = cursors.get(r).and_then(Option::as_ref) else {
                break;
            };
            // A full chunk is cut where the next row starts a new key group (the last row
            // taken is the chunk's last index).
            let cut = indices.len() >= batch_rows.max(1)
                && indices
                    .last()
                    .is_none_or(|&(s, i)| !chunk[s].same_group(i, &c.slot, c.pos));
            if cut {
                let batches: Vec<&RecordBatch> = chunk.iter().map(|s| &s.batch).collect();
                emit(
                    interleave_record_batch(&batches, &indices)
                        .map_err(|e| Error::arrow("merging runs", e))?,
                )?;
                indices.clear();
                // Only the runs' current batches stay referenced.
                chunk.clear();
                for c in cursors.iter_mut().flatten() {
                    chunk.push(Arc::clone(&c.slot));
                    c.chunk_slot = chunk.len() - 1;
                }
            }
            let Some(c) = cursors[r].as_mut() else { break };
            indices.push((c.chunk_slot, c.pos));
            c.pos += 1;
            if c.pos == c.slot.batch.num_rows() {
                match Self::next_slot(&mut c.reader, &converter, keys)? {
                    Some(slot) => {
                        chunk.push(Arc::clone(&slot));
                        c.slot = slot;
                        c.chunk_slot = chunk.len() - 1;
                        c.pos = 0;
                    }
                    None => cursors[r] = None,
                }
            }
            tree.replay(|a, b| beats(&cursors, a, b));
        }
        if !indices.is_empty() {
            let batches: Vec<&RecordBatch> = chunk.iter().map(|s| &s.batch).collect();
            emit(
                interleave_record_batch(&batches, &indices)
                    .map_err(|e| Error::arrow("merging runs", e))?,
            )?;
        }
        Ok(())
    }
}

impl Drop for Runs {
    fn drop(&mut self) {
        if !self.files.is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};

    fn batch(keys: &[&str], values: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("v", DataType::Int64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(keys.to_vec())),
                Arc::new(Int64Array::from(values.to_vec())),
            ],
        )
        .unwrap()
    }

    #[test]
    fn runs_merge_in_key_order_in_whole_groups_keeping_run_order_for_ties() {
        let dir = tempfile::tempdir().unwrap();
        let mut runs = Runs::new(dir.path().join("runs"));
        runs.write(&[batch(&["a", "b"], &[1, 2]), batch(&["b", "d"], &[3, 4])])
            .unwrap();
        runs.write(&[batch(&["b", "c", "d"], &[5, 6, 7])]).unwrap();
        runs.write(&[batch(&["a"], &[8])]).unwrap();
        assert_eq!(runs.len(), 3);
        let mut chunks = Vec::new();
        runs.merge(&[0], 1, 2, |b| {
            chunks.push(b);
            Ok(())
        })
        .unwrap();
        let rows: Vec<Vec<(String, i64)>> = chunks
            .iter()
            .map(|b| {
                let k = b.column(0).as_string::<i32>();
                let v = b.column(1).as_primitive::<Int64Type>();
                (0..b.num_rows())
                    .map(|i| (k.value(i).to_string(), v.value(i)))
                    .collect()
            })
            .collect();
        let s = |k: &str, v| (k.to_string(), v);
        assert_eq!(
            rows,
            vec![
                vec![s("a", 1), s("a", 8)],
                // The `b` group is never split, even past the chunk size.
                vec![s("b", 2), s("b", 3), s("b", 5)],
                vec![s("c", 6), s("d", 4), s("d", 7)],
            ]
        );
        let path = dir.path().join("runs");
        assert!(path.exists());
        drop(runs);
        assert!(!path.exists(), "runs are removed with their owner");
    }
}
