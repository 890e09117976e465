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

/// Sorts `batches` by the key columns and returns chunks holding whole key groups.
pub fn sorted_groups(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    key_indices: &[usize],
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
    let mut chunks = Vec::new();
    let mut start = 0;
    while start < order.len() {
        let mut end = (start + batch_rows.max(1)).min(order.len());
        while end < order.len()
            && rows.row(order[end] as usize) == rows.row(order[end - 1] as usize)
        {
            end += 1;
        }
        let idx = UInt32Array::from(order[start..end].to_vec());
        chunks.push(take_record_batch(&all, &idx).map_err(|e| Error::arrow("grouping rows", e))?);
        start = end;
    }
    Ok(chunks)
}
