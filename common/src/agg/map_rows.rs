//! Map output rows at the reducer. A combiner that stops grouping before it spilled anything
//! sends the map's own rows (keys and aggregate inputs), marked, instead of a partial per
//! row: a row is usually narrower than its partial (EOD: four 18-digit amounts instead of a
//! count, three 38-digit sums, a min and a max). The final aggregator folds them with
//! partial-mode plans whose states sit where its own plans' do, so a group folds rows of
//! one map and partials of another alike.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Field, Schema, SchemaRef};

use super::acc::Plan;
use super::state::Layout;
use super::{AggMode, HashAggregator, check_used, key_indices};
use crate::{Error, Result};

/// Field metadata key (on the first column) of shuffled batches that hold map output rows,
/// not partials.
pub const MAP_ROWS_KEY: &str = "sluice.map_rows";

/// `batch` marked as map output rows (see [`MAP_ROWS_KEY`]). The mark is on the first
/// column: Parquet readers hand back batches with their fields' metadata but not the
/// schema's.
pub fn mark_map_rows(batch: &RecordBatch) -> Result<RecordBatch> {
    let schema = batch.schema();
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    let Some(first) = fields.first_mut() else {
        return Err(Error::Internal {
            what: "map output rows without a column to mark".into(),
        });
    };
    let mut metadata = first.metadata().clone();
    metadata.insert(MAP_ROWS_KEY.to_string(), "1".to_string());
    first.set_metadata(metadata);
    let marked = Schema::new_with_metadata(fields, schema.metadata().clone());
    batch
        .clone()
        .with_schema(Arc::new(marked))
        .map_err(|e| Error::arrow("marking map output rows", e))
}

/// Whether batches of `schema` hold map output rows (see [`MAP_ROWS_KEY`]).
pub fn is_map_rows(schema: &Schema) -> bool {
    schema
        .fields()
        .first()
        .is_some_and(|f| f.metadata().contains_key(MAP_ROWS_KEY))
}

/// A final aggregator's plans over map output rows of one schema.
pub(super) struct MapRows {
    pub(super) schema: SchemaRef,
    pub(super) key_indices: Vec<usize>,
    pub(super) plans: Vec<Plan>,
}

/// Why map output rows cannot fold into the partials' groups.
fn mismatch(
    subject: String,
    rows: impl std::fmt::Display,
    partials: impl std::fmt::Display,
) -> Error {
    Error::Mismatch {
        subject,
        reason: format!(
            "{rows} from map output rows and {partials} from partials: every map output must have one schema"
        ),
    }
}

impl HashAggregator {
    /// Plans map output rows of `schema`, unless the plans of the last such schema fit it.
    /// Each row must make the partial the final plans read, value for value: a decimal of
    /// another scale or a timestamp of another unit would otherwise fold as if it were the
    /// same number.
    pub(super) fn plan_map_rows(&mut self, schema: &SchemaRef) -> Result<()> {
        if let Some(r) = &self.map_rows
            && check_used(&r.schema, schema, &r.key_indices, &r.plans).is_ok()
        {
            return Ok(());
        }
        let key_indices = key_indices(schema, &self.key_columns)?;
        for (&own, &theirs) in self.key_indices.iter().zip(&key_indices) {
            let (want, got) = (self.input_schema.field(own), schema.field(theirs));
            if want.data_type() != got.data_type() {
                return Err(mismatch(
                    format!("key column {}", want.name()),
                    got.data_type(),
                    want.data_type(),
                ));
            }
        }
        let mut layout = Layout::default();
        let plans = self
            .aggregates
            .iter()
            .map(|a| Plan::new(a, schema, AggMode::Partial, &mut layout))
            .collect::<Result<Vec<_>>>()?;
        for (row, own) in plans.iter().zip(&self.plans) {
            if row.output.data_type() != &own.input_type {
                return Err(mismatch(
                    format!("aggregate {}", own.output.name()),
                    row.output.data_type(),
                    &own.input_type,
                ));
            }
            if row.acc.place() != own.acc.place() {
                return Err(Error::Internal {
                    what: format!(
                        "aggregate {} holds its state elsewhere for map output rows",
                        own.output.name()
                    ),
                });
            }
        }
        if layout.states().bytes_per_group() != self.states.bytes_per_group() {
            return Err(Error::Internal {
                what: "map output rows and partials have states of other widths".into(),
            });
        }
        self.map_rows = Some(MapRows {
            schema: Arc::clone(schema),
            key_indices,
            plans,
        });
        Ok(())
    }
}
