//! What a job's map tasks read besides their split, fixed at planning: the schema of each
//! input read as CSV or JSON lines, and the side inputs with the files they hold.
//!
//! A side input (`--side NAME=PATH`, Hadoop's distributed cache, Spark's broadcast) is a
//! small table every map task is handed whole. The coordinator expands its path and
//! refuses one whose files are over the cap at planning; a worker reads it once per job
//! ([`read_side_input`], strictly: a bad record fails the job, as a wrong rate must not be
//! skipped silently), refusing it again if its in-memory form is over the cap, and gives it
//! to the plugin, which keeps it until the job ends.

use std::collections::BTreeMap;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use crate::format::read::{ReadChecks, read_split};
use crate::spec::InputFormat;
use crate::split::Split;
use crate::{Error, Result};

/// The input plan of one job.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InputPlan {
    /// The schema of each input and side input read as CSV or JSON lines, by name (`""`:
    /// the unnamed input).
    pub schemas: BTreeMap<String, SchemaRef>,
    /// The side inputs, in the order given.
    pub sides: Vec<SideInput>,
}

impl InputPlan {
    /// The schema input (or side input) `name` is read with, if it has one of its own.
    pub fn schema_of(&self, name: &str) -> Option<SchemaRef> {
        self.schemas.get(name).cloned()
    }
}

/// One side input as planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SideInput {
    /// Its name (`ctx.side_input(name)`).
    pub name: String,
    /// One split per file, each covering the whole file.
    pub files: Vec<Split>,
}

/// Reads side input `side` whole, in `format` (with `schema` for CSV and JSON lines), as
/// one batch; refuses it once its batches hold more than `limit` bytes.
pub fn read_side_input(
    side: &SideInput,
    format: InputFormat,
    schema: Option<SchemaRef>,
    batch_rows: usize,
    limit: u64,
) -> Result<RecordBatch> {
    let mut batches: Vec<RecordBatch> = Vec::new();
    let mut held = 0u64;
    for file in &side.files {
        for batch in read_split(
            file,
            format,
            schema.clone(),
            batch_rows,
            None,
            ReadChecks::default(),
        )? {
            let batch = batch?;
            held += batch.get_array_memory_size() as u64;
            if held > limit {
                return Err(Error::SideInputTooLarge {
                    name: side.name.clone(),
                    held,
                    counted: " in memory",
                    limit,
                });
            }
            batches.push(batch);
        }
    }
    let Some(first) = batches.first() else {
        return Ok(RecordBatch::new_empty(schema.ok_or_else(|| {
            Error::Mismatch {
                subject: format!("side input {}", side.name),
                reason: "it holds no rows and the job declares no schema for it".into(),
            }
        })?));
    };
    let schema = first.schema();
    arrow::compute::concat_batches(&schema, &batches).map_err(|e| Error::Mismatch {
        subject: format!("side input {}", side.name),
        reason: format!("its files do not share one schema: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::split::SplitRange;
    use arrow::array::{Array, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn csv_side(dir: &std::path::Path, files: &[&str]) -> SideInput {
        let files = files
            .iter()
            .enumerate()
            .map(|(i, text)| {
                let path = dir.join(format!("fx-{i}.csv"));
                std::fs::write(&path, text).unwrap();
                Split {
                    path: path.to_string_lossy().into_owned(),
                    range: SplitRange::Bytes {
                        start: 0,
                        end: text.len() as u64,
                    },
                    input: "fx".into(),
                    stamp: None,
                }
            })
            .collect();
        SideInput {
            name: "fx".into(),
            files,
        }
    }

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("currency", DataType::Utf8, false),
            Field::new("rate", DataType::Int64, false),
        ]))
    }

    #[test]
    fn a_side_input_is_every_row_of_every_file_in_one_batch() {
        let dir = tempfile::tempdir().unwrap();
        let side = csv_side(
            dir.path(),
            &["currency,rate\nEUR,1\nUSD,2\n", "currency,rate\nGBP,3\n"],
        );
        let t = read_side_input(&side, InputFormat::Csv, Some(schema()), 1, 1 << 20).unwrap();
        let currency = t.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        let rate = t.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(
            currency.iter().flatten().collect::<Vec<_>>(),
            ["EUR", "USD", "GBP"]
        );
        assert_eq!(rate.values().to_vec(), [1, 2, 3]);
    }

    #[test]
    fn a_side_input_over_the_cap_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let rows: String = (0..2000).map(|i| format!("C{i},{i}\n")).collect();
        let side = csv_side(dir.path(), &[&format!("currency,rate\n{rows}")]);
        let e = read_side_input(&side, InputFormat::Csv, Some(schema()), 100, 4096).unwrap_err();
        assert!(
            matches!(&e, Error::SideInputTooLarge { name, limit: 4096, .. } if name == "fx"),
            "{e}"
        );
        assert!(e.to_string().contains("--side-max-bytes"), "{e}");
    }

    #[test]
    fn a_bad_record_in_a_side_input_fails_naming_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let side = csv_side(dir.path(), &["currency,rate\nEUR,1\nUSD,two\n"]);
        let e = read_side_input(&side, InputFormat::Csv, Some(schema()), 10, 1 << 20).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("fx-0.csv") && text.contains("line 3"),
            "{text}"
        );
    }

    #[test]
    fn an_empty_side_input_is_an_empty_table_of_its_schema() {
        let dir = tempfile::tempdir().unwrap();
        let side = csv_side(dir.path(), &["currency,rate\n"]);
        let t = read_side_input(&side, InputFormat::Csv, Some(schema()), 10, 1 << 20).unwrap();
        assert_eq!((t.num_rows(), t.schema()), (0, schema()));
        assert_eq!(t.column(0).len(), 0);
    }
}
