//! Aggregation of rows already in key order, as a merge of sorted runs hands them over. The
//! groups are the runs of equal neighbouring keys: no hash table, no packed keys, no sort,
//! and the groups come out in the order they came in. A reducer that spilled used to put
//! every merged chunk through the hash table and sort it again (EOD, 10M rows, 32 MiB of
//! task memory: about 5% of the job's CPU).

use arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::{partition, take};

use super::HashAggregator;
use crate::{Error, Result};

impl HashAggregator {
    /// Aggregates `batch`, in which rows of equal keys are adjacent and the keys in the
    /// output's order (a chunk of a merge of sorted runs that holds whole key groups): one
    /// row per group, in the batch's order. Independent of the groups the table holds.
    pub fn aggregate_sorted(&self, batch: &RecordBatch) -> Result<Option<RecordBatch>> {
        self.check_schema(batch)?;
        if batch.num_rows() == 0 {
            return Ok(None);
        }
        let keys: Vec<ArrayRef> = self
            .key_indices
            .iter()
            .map(|&i| batch.column(i).clone())
            .collect();
        let ranges = partition(&keys)
            .map_err(|e| Error::arrow("finding the key groups of a sorted chunk", e))?
            .ranges();
        let mut group_ids = Vec::with_capacity(batch.num_rows());
        for (g, r) in ranges.iter().enumerate() {
            group_ids.extend(std::iter::repeat_n(g as u32, r.len()));
        }
        let firsts = UInt32Array::from_iter_values(ranges.iter().map(|r| r.start as u32));
        let mut columns = keys
            .iter()
            .map(|k| take(k, &firsts, None).map_err(|e| Error::arrow("taking group keys", e)))
            .collect::<Result<Vec<_>>>()?;
        // The groups come in order: their rows are written and read in sequence.
        let mut states = self.states.emptied();
        for _ in 0..ranges.len() {
            states.push();
        }
        for p in &self.plans {
            let input = p.input_of(batch)?;
            p.acc
                .update(&mut states, &group_ids, &input, 0, p.output.name())?;
            let mut column = p.acc.column(ranges.len());
            p.acc.extend(&states, &mut column)?;
            columns.push(p.acc.finish(column, p.output.data_type(), &p.input_type)?);
        }
        let batch = RecordBatch::try_new(self.output_schema.clone(), columns)
            .map_err(|e| Error::arrow("building aggregate output", e))?;
        Ok(Some(batch))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Array, AsArray, Decimal128Array, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Decimal128Type, Field, Int64Type, Schema};
    use sluice_sdk::Aggregate;

    use super::*;
    use crate::agg::AggMode;

    fn batch(keys: &[Option<&str>], days: &[i64], amounts: &[i128]) -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("d", DataType::Int64, false),
            Field::new("a", DataType::Decimal128(18, 2), false),
        ]);
        let amounts = Decimal128Array::from(amounts.to_vec())
            .with_precision_and_scale(18, 2)
            .unwrap();
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(StringArray::from(keys.to_vec())),
                Arc::new(Int64Array::from(days.to_vec())),
                Arc::new(amounts),
            ],
        )
        .unwrap()
    }

    fn aggregator(input: &RecordBatch) -> HashAggregator {
        let aggs = [
            Aggregate::count("n"),
            Aggregate::sum("total", "a"),
            Aggregate::max("top", "a"),
        ];
        HashAggregator::new(
            &input.schema(),
            &["k".to_string(), "d".to_string()],
            &aggs,
            AggMode::Partial,
        )
        .unwrap()
    }

    /// The runs of equal keys of a sorted batch give the same groups, values and order as
    /// the hash table's sorted output of the same rows.
    #[test]
    fn sorted_rows_aggregate_as_the_hash_table_does() {
        let input = batch(
            &[
                None,
                None,
                Some("a"),
                Some("a"),
                Some("a"),
                Some("b"),
                Some("b"),
            ],
            &[1, 1, 1, 2, 2, 1, 1],
            &[5, 7, 100, -3, 4, 1, 2],
        );
        let agg = aggregator(&input);
        let sorted = agg.aggregate_sorted(&input).unwrap().unwrap();
        let mut hashed = aggregator(&input);
        hashed.update(&input).unwrap();
        let expected = hashed.take_sorted().unwrap().unwrap();
        assert_eq!(sorted, expected);
        assert_eq!(sorted.num_rows(), 4);
        let n = sorted.column(2).as_primitive::<Int64Type>();
        assert_eq!(n.values(), &[2, 1, 2, 2]);
        let total = sorted.column(3).as_primitive::<Decimal128Type>();
        assert_eq!(total.values(), &[12, 100, 1, 3]);
        assert_eq!(
            sorted.column(0).null_count(),
            1,
            "the null key is one group"
        );
    }

    #[test]
    fn an_empty_batch_has_no_groups() {
        let input = batch(&[], &[], &[]);
        assert!(
            aggregator(&input)
                .aggregate_sorted(&input)
                .unwrap()
                .is_none()
        );
    }
}
