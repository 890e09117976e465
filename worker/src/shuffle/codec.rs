//! How wide decimals cross the shuffle: a `Decimal128` column of more than 18 digits (the
//! partial sums of declared aggregates are `Decimal128(38, s)`) is written to a spill file
//! as two `Int64` columns, its low and high 64 bits, and put back together when read.
//!
//! Parquet stores such decimals as 16-byte fixed-length byte arrays, which the arrow-rs
//! writer and reader handle value by value (a reference-counted buffer slice each); two
//! `Int64` columns are plain machine words. The spill file is read only by reducers, so its
//! encoding is ours to choose. The low column keeps the decimal's name, nullability and
//! metadata plus [`DECIMAL_KEY`] (`"precision,scale"`); the high column follows it.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Decimal128Array, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Decimal128Type, Field, Int64Type, Schema};
use sluice_common::{Error, Result};

/// Field metadata key marking the low half of a split decimal.
pub const DECIMAL_KEY: &str = "sluice.decimal";

/// Decimals wider than this many digits are split.
const SPLIT_ABOVE_PRECISION: u8 = 18;

fn is_wide(t: &DataType) -> Option<(u8, i8)> {
    match t {
        DataType::Decimal128(p, s) if *p > SPLIT_ABOVE_PRECISION => Some((*p, *s)),
        _ => None,
    }
}

/// `batch` with every wide decimal column split into two `Int64` columns.
pub fn encode(batch: &RecordBatch) -> Result<RecordBatch> {
    let schema = batch.schema();
    if !schema
        .fields()
        .iter()
        .any(|f| is_wide(f.data_type()).is_some())
    {
        return Ok(batch.clone());
    }
    let mut fields = Vec::with_capacity(schema.fields().len() + 2);
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(fields.capacity());
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        let Some((p, s)) = is_wide(field.data_type()) else {
            fields.push(field.as_ref().clone());
            columns.push(Arc::clone(column));
            continue;
        };
        let values = column.as_primitive::<Decimal128Type>();
        let nulls = values.nulls().cloned();
        // The low 64 bits as they are (a wrapping cast), the high 64 bits shifted down.
        let lo: Vec<i64> = values.values().iter().map(|&v| v as i64).collect();
        let hi: Vec<i64> = values.values().iter().map(|&v| (v >> 64) as i64).collect();
        let mut metadata = field.metadata().clone();
        metadata.insert(DECIMAL_KEY.to_string(), format!("{p},{s}"));
        fields.push(
            Field::new(field.name(), DataType::Int64, field.is_nullable()).with_metadata(metadata),
        );
        fields.push(Field::new(
            format!("{}.sluice_hi", field.name()),
            DataType::Int64,
            field.is_nullable(),
        ));
        columns.push(Arc::new(Int64Array::new(lo.into(), nulls.clone())));
        columns.push(Arc::new(Int64Array::new(hi.into(), nulls)));
    }
    let schema = Schema::new_with_metadata(fields, schema.metadata().clone());
    RecordBatch::try_new(Arc::new(schema), columns)
        .map_err(|e| Error::arrow("splitting wide decimals for the shuffle", e))
}

/// Puts back together what [`encode`] split.
pub fn decode(batch: RecordBatch) -> Result<RecordBatch> {
    let schema = batch.schema();
    if !schema
        .fields()
        .iter()
        .any(|f| f.metadata().contains_key(DECIMAL_KEY))
    {
        return Ok(batch);
    }
    let bad = |reason: String| Error::Damaged {
        file: "shuffled rows".into(),
        reason,
    };
    let mut fields = Vec::with_capacity(schema.fields().len());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(fields.capacity());
    let mut i = 0;
    while i < schema.fields().len() {
        let field = schema.field(i);
        let column = batch.column(i);
        let Some(spec) = field.metadata().get(DECIMAL_KEY) else {
            fields.push(field.clone());
            columns.push(Arc::clone(column));
            i += 1;
            continue;
        };
        let (p, s) = spec
            .split_once(',')
            .and_then(|(p, s)| Some((p.parse::<u8>().ok()?, s.parse::<i8>().ok()?)))
            .ok_or_else(|| bad(format!("column {} has decimal spec {spec:?}", field.name())))?;
        let hi = batch
            .columns()
            .get(i + 1)
            .and_then(|c| c.as_primitive_opt::<Int64Type>())
            .ok_or_else(|| bad(format!("column {} lacks its high half", field.name())))?;
        let lo = column
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(|| bad(format!("column {} is not Int64", field.name())))?;
        let values: Vec<i128> = lo
            .values()
            .iter()
            .zip(hi.values().iter())
            .map(|(&l, &h)| (i128::from(h) << 64) | i128::from(l as u64))
            .collect();
        let decimal = Decimal128Array::new(values.into(), lo.nulls().cloned())
            .with_precision_and_scale(p, s)
            .map_err(|e| Error::arrow("joining wide decimals", e))?;
        let mut metadata = field.metadata().clone();
        metadata.remove(DECIMAL_KEY);
        fields.push(
            Field::new(
                field.name(),
                DataType::Decimal128(p, s),
                field.is_nullable(),
            )
            .with_metadata(metadata),
        );
        columns.push(Arc::new(decimal));
        i += 2;
    }
    let schema = Schema::new_with_metadata(fields, schema.metadata().clone());
    RecordBatch::try_new(Arc::new(schema), columns)
        .map_err(|e| Error::arrow("joining wide decimals", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::StringArray;

    #[test]
    fn wide_decimals_round_trip_with_nulls_and_extreme_values() {
        let big = 10i128.pow(37) - 1;
        let sums = Decimal128Array::from(vec![Some(0), Some(-1), None, Some(big), Some(-big)])
            .with_precision_and_scale(38, 2)
            .unwrap();
        let narrow = Decimal128Array::from(vec![Some(5), None, Some(-7), Some(1), Some(2)])
            .with_precision_and_scale(18, 2)
            .unwrap();
        let keys = StringArray::from(vec!["a", "b", "c", "d", "e"]);
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("sum", DataType::Decimal128(38, 2), true),
            Field::new("min", DataType::Decimal128(18, 2), true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![Arc::new(keys), Arc::new(sums), Arc::new(narrow)],
        )
        .unwrap();
        let encoded = encode(&batch).unwrap();
        let types: Vec<_> = encoded
            .schema()
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        assert_eq!(
            types,
            [
                DataType::Utf8,
                DataType::Int64,
                DataType::Int64,
                DataType::Decimal128(18, 2)
            ]
        );
        assert_eq!(decode(encoded).unwrap(), batch);
    }

    #[test]
    fn batches_without_wide_decimals_pass_unchanged() {
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Utf8, true)]));
        let batch =
            RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(vec!["x"]))]).unwrap();
        assert_eq!(encode(&batch).unwrap(), batch);
        assert_eq!(decode(batch.clone()).unwrap(), batch);
    }
}
