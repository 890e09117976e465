//! Grouping a reduce partition by key for a custom `reduce`: sort all rows by the key
//! columns (arrow's row format compares like the keys), then cut the sorted rows into
//! batches of about `batch_rows` rows that never split a key group.
//!
//! The whole partition is held in memory; jobs with declared aggregates never come here
//! (they aggregate with a hash table as rows arrive).

use arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::{concat_batches, take_record_batch};
use arrow::datatypes::SchemaRef;
use arrow::row::{RowConverter, SortField};
use sluice_common::{Error, Result};

/// Sorts `batches` by the columns `key_indices` and returns chunks holding whole groups of
/// equal first `group_keys` of them (the rest order rows within a group: a secondary sort).
pub fn sorted_groups(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    key_indices: &[usize],
    group_keys: usize,
    batch_rows: usize,
) -> Result<Vec<RecordBatch>> {
    let all =
        concat_batches(schema, batches).map_err(|e| Error::arrow("merging fetched rows", e))?;
    if all.num_rows() == 0 {
        return Ok(Vec::new());
    }
    let keys: Vec<ArrayRef> = key_indices.iter().map(|&i| all.column(i).clone()).collect();
    let converter = RowConverter::new(
        keys.iter()
            .map(|k| SortField::new(k.data_type().clone()))
            .collect(),
    )
    .map_err(|e| Error::arrow("key columns", e))?;
    let rows = converter
        .convert_columns(&keys)
        .map_err(|e| Error::arrow("encoding keys", e))?;
    let mut order: Vec<u32> = (0..all.num_rows() as u32).collect();
    // Stable: rows of one key keep their arrival order.
    order.sort_by(|&a, &b| rows.row(a as usize).cmp(&rows.row(b as usize)));
    // Groups are cut on the group key alone when the sort key is longer.
    let group_rows = if group_keys < keys.len() {
        let converter = RowConverter::new(
            keys[..group_keys]
                .iter()
                .map(|k| SortField::new(k.data_type().clone()))
                .collect(),
        )
        .map_err(|e| Error::arrow("group key columns", e))?;
        Some(
            converter
                .convert_columns(&keys[..group_keys])
                .map_err(|e| Error::arrow("encoding group keys", e))?,
        )
    } else {
        None
    };
    let same = |a: u32, b: u32| match &group_rows {
        Some(g) => g.row(a as usize) == g.row(b as usize),
        None => rows.row(a as usize) == rows.row(b as usize),
    };
    let mut chunks = Vec::new();
    let mut start = 0;
    while start < order.len() {
        let mut end = (start + batch_rows.max(1)).min(order.len());
        while end < order.len() && same(order[end], order[end - 1]) {
            end += 1;
        }
        let idx = UInt32Array::from(order[start..end].to_vec());
        chunks.push(take_record_batch(&all, &idx).map_err(|e| Error::arrow("grouping rows", e))?);
        start = end;
    }
    Ok(chunks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use std::sync::Arc;

    /// Sorted by key then by the secondary column; chunks of one row each still never split
    /// a key group (cut on the key alone, not on the secondary column).
    #[test]
    fn a_secondary_sort_orders_rows_within_whole_key_groups() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("s", DataType::Utf8, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![2, 1, 2, 1, 2])),
                Arc::new(StringArray::from(vec!["c", "b", "a", "a", "b"])),
            ],
        )
        .unwrap();
        let chunks = sorted_groups(&schema, &[batch], &[0, 1], 1, 1).unwrap();
        let rows: Vec<Vec<(i64, String)>> = chunks
            .iter()
            .map(|c| {
                let k = c.column(0).as_primitive::<Int64Type>();
                let s = c.column(1).as_string::<i32>();
                (0..c.num_rows())
                    .map(|i| (k.value(i), s.value(i).to_string()))
                    .collect()
            })
            .collect();
        let s = |v: &str| v.to_string();
        assert_eq!(
            rows,
            [
                vec![(1, s("a")), (1, s("b"))],
                vec![(2, s("a")), (2, s("b")), (2, s("c"))]
            ]
        );
    }
}
