//! Columnar input read into the job's declared input schema.
//!
//! A Parquet file may hold a column in another type than the job declares: an `Int64`
//! `txn_id` where the job reads `Utf8`, an `Int32` where it reads `Int64`, a `Decimal128(10,
//! 2)` where it reads `Decimal128(18, 2)`. Such a file is read if every value converts
//! without loss ([`lossless`]): the batches are cast to the declared types before the job's
//! `map` sees them. A lossy conversion (a `Float64` amount into a decimal, text into a
//! number) is refused once, at planning, naming the file and the column ([`check`]).

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::cast;
use arrow::datatypes::{DataType, Schema};

use crate::{Error, Result};

/// Decimal digits an integer type needs.
fn integer_digits(t: &DataType) -> Option<u8> {
    Some(match t {
        DataType::Int8 | DataType::UInt8 => 3,
        DataType::Int16 | DataType::UInt16 => 5,
        DataType::Int32 | DataType::UInt32 => 10,
        DataType::Int64 => 19,
        DataType::UInt64 => 20,
        _ => return None,
    })
}

/// Bits of a signed (`true`) or unsigned integer type.
fn integer_bits(t: &DataType) -> Option<(bool, u8)> {
    Some(match t {
        DataType::Int8 => (true, 8),
        DataType::Int16 => (true, 16),
        DataType::Int32 => (true, 32),
        DataType::Int64 => (true, 64),
        DataType::UInt8 => (false, 8),
        DataType::UInt16 => (false, 16),
        DataType::UInt32 => (false, 32),
        DataType::UInt64 => (false, 64),
        _ => return None,
    })
}

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// Whether every value of type `from` converts to `to` and back unchanged: integers into
/// wider integers, decimals or text; decimals into decimals with at least the same integer
/// and fraction digits; `Float32` into `Float64`; text into text; a date into a timestamp.
pub fn lossless(from: &DataType, to: &DataType) -> bool {
    if from == to {
        return true;
    }
    if let (Some((from_signed, from_bits)), Some((to_signed, to_bits))) =
        (integer_bits(from), integer_bits(to))
    {
        // Signed into unsigned loses negatives; unsigned into signed needs one more bit.
        return match (from_signed, to_signed) {
            (true, false) => false,
            (false, true) => to_bits > from_bits,
            _ => to_bits >= from_bits,
        };
    }
    match (from, to) {
        (f, t) if integer_digits(f).is_some() && is_text(t) => true,
        (f, DataType::Decimal128(p, s)) if integer_digits(f).is_some() => {
            i16::from(*p) - i16::from(*s) >= i16::from(integer_digits(f).unwrap_or(u8::MAX))
        }
        (DataType::Decimal128(p1, s1), DataType::Decimal128(p2, s2)) => {
            s2 >= s1 && i16::from(*p2) - i16::from(*s2) >= i16::from(*p1) - i16::from(*s1)
        }
        (DataType::Decimal128(p, s), t) if is_text(t) => *p <= 38 && *s >= 0,
        (DataType::Float32, DataType::Float64) => true,
        (f, t) if is_text(f) && is_text(t) => true,
        (DataType::Date32, DataType::Date64) => true,
        _ => false,
    }
}

/// Refuses a file whose columns (`found`) the job (`declared`) cannot read without loss,
/// naming the first such column. Columns of `declared` the file lacks are left to the reader
/// (it names them); columns the job does not read (`columns`, `None`: all) are not checked.
pub fn check(
    file: &str,
    found: &Schema,
    declared: &Schema,
    columns: Option<&[String]>,
) -> Result<()> {
    for want in declared.fields() {
        if columns.is_some_and(|c| !c.iter().any(|n| n == want.name())) {
            continue;
        }
        let Ok(have) = found.field_with_name(want.name()) else {
            continue;
        };
        if !lossless(have.data_type(), want.data_type()) {
            return Err(Error::Mismatch {
                subject: file.to_string(),
                reason: format!(
                    "column {} is {}, and the job reads {}: not every value converts \
                     without loss",
                    want.name(),
                    have.data_type(),
                    want.data_type()
                ),
            });
        }
    }
    Ok(())
}

/// `batch` with each column the job declares in another type cast to that type (see
/// [`lossless`]; the cast is checked, so a value that does not fit is an error).
pub fn conform(batch: RecordBatch, declared: &Schema, file: &str) -> Result<RecordBatch> {
    let schema = batch.schema();
    let differs = schema.fields().iter().any(|f| {
        declared
            .field_with_name(f.name())
            .is_ok_and(|d| d.data_type() != f.data_type())
    });
    if !differs {
        return Ok(batch);
    }
    let mut fields = Vec::with_capacity(schema.fields().len());
    let mut columns = Vec::with_capacity(fields.capacity());
    for (f, column) in schema.fields().iter().zip(batch.columns()) {
        match declared.field_with_name(f.name()) {
            Ok(d) if d.data_type() != f.data_type() => {
                let cast = cast(column, d.data_type()).map_err(|e| Error::Mismatch {
                    subject: file.to_string(),
                    reason: format!("column {}: {e}", f.name()),
                })?;
                fields.push(Arc::new(
                    f.as_ref().clone().with_data_type(d.data_type().clone()),
                ));
                columns.push(cast);
            }
            _ => {
                fields.push(Arc::clone(f));
                columns.push(Arc::clone(column));
            }
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| Error::arrow(format!("reading {file} into the job's types"), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Decimal128Array, Int64Array};
    use arrow::datatypes::{Decimal128Type, Field};

    #[test]
    fn only_conversions_that_keep_every_value_are_lossless() {
        use DataType::*;
        for (from, to) in [
            (Int32, Int64),
            (UInt32, Int64),
            (Int64, Utf8),
            (Int32, Decimal128(12, 2)),
            (Decimal128(10, 2), Decimal128(18, 2)),
            (Decimal128(10, 2), Decimal128(12, 4)),
            (Float32, Float64),
            (LargeUtf8, Utf8),
            (Date32, Date64),
        ] {
            assert!(lossless(&from, &to), "{from} -> {to}");
        }
        for (from, to) in [
            (Int64, Int32),
            (Int64, UInt64),
            (UInt64, Int64),
            (Float64, Decimal128(18, 2)),
            (Float64, Int64),
            (Utf8, Int64),
            (Int64, Decimal128(18, 2)),
            (Decimal128(18, 4), Decimal128(18, 2)),
            (Decimal128(20, 2), Decimal128(18, 2)),
            (Int64, Float64),
        ] {
            assert!(!lossless(&from, &to), "{from} -> {to}");
        }
    }

    #[test]
    fn a_lossy_column_is_named_and_a_lossless_one_is_cast() {
        let declared = Schema::new(vec![
            Field::new("txn_id", DataType::Utf8, true),
            Field::new("amount", DataType::Decimal128(18, 2), true),
        ]);
        let found = Schema::new(vec![
            Field::new("txn_id", DataType::Int64, true),
            Field::new("amount", DataType::Float64, true),
        ]);
        let e = check("day.parquet", &found, &declared, None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("day.parquet") && e.contains("column amount is Float64"),
            "{e}"
        );
        let only_id = ["txn_id".to_string()];
        assert!(check("day.parquet", &found, &declared, Some(&only_id)).is_ok());

        let file = Arc::new(Schema::new(vec![
            Field::new("txn_id", DataType::Int64, true),
            Field::new("amount", DataType::Decimal128(10, 2), true),
        ]));
        let batch = RecordBatch::try_new(
            file,
            vec![
                Arc::new(Int64Array::from(vec![42, 7])),
                Arc::new(
                    Decimal128Array::from(vec![1250, -3])
                        .with_precision_and_scale(10, 2)
                        .unwrap(),
                ),
            ],
        )
        .unwrap();
        let out = conform(batch, &declared, "day.parquet").unwrap();
        assert_eq!(out.schema().field(0).data_type(), &DataType::Utf8);
        assert_eq!(out.column(0).as_string::<i32>().value(0), "42");
        assert_eq!(
            out.schema().field(1).data_type(),
            &DataType::Decimal128(18, 2)
        );
        assert_eq!(
            out.column(1).as_primitive::<Decimal128Type>().value(0),
            1250
        );
    }
}
