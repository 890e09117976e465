//! Control totals: the record count and column sums a bank file's trailer (or a control file
//! beside it) promises, checked against what the job read before anything is published.
//!
//! `--control FILE` holds `{"rows": N, "sums": {"amount": "1234.56"}}` (both optional). Each
//! map sums the named columns of the records it read, exactly (integers and decimals only,
//! never floats); once every map is done the coordinator compares the records read (good
//! and bad) and the sums with the file's, and a difference fails the job before `_SUCCESS`,
//! saying which total and by how much.

use std::collections::BTreeMap;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Decimal128Type, Int64Type};
use serde::{Deserialize, Serialize};

/// The totals a control file promises.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Control {
    /// Records in the input (good and bad).
    #[serde(default)]
    pub rows: Option<u64>,
    /// Sum of each named column, as a decimal string.
    #[serde(default)]
    pub sums: BTreeMap<String, String>,
}

impl Control {
    /// Parses a control file's JSON, refusing a sum that is no decimal number.
    pub fn parse(json: &str) -> Result<Self, String> {
        let control: Control =
            serde_json::from_str(json).map_err(|e| format!("control file: {e}"))?;
        for (column, sum) in &control.sums {
            ColumnSum::from_text(sum)
                .map_err(|e| format!("control file: the sum of {column}: {e}"))?;
        }
        Ok(control)
    }

    /// The JSON form (as the job spec carries it).
    pub fn to_json(&self) -> String {
        // Strings and integers only: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// An exact sum: an unscaled integer and its scale (digits after the point).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnSum {
    /// The value times 10^scale.
    pub unscaled: i128,
    /// Digits after the point.
    pub scale: u8,
}

impl ColumnSum {
    /// Zero at `scale`.
    pub fn zero(scale: u8) -> Self {
        ColumnSum { unscaled: 0, scale }
    }

    /// `-12.50` style text: the scale is the number of digits written after the point.
    pub fn from_text(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let (negative, digits) = match t.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, t.strip_prefix('+').unwrap_or(t)),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        if int.is_empty() && frac.is_empty()
            || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
            || int.len() + frac.len() > 38
        {
            return Err(format!(
                "{s:?} is not a decimal number of at most 38 digits"
            ));
        }
        let scale = u8::try_from(frac.len()).map_err(|_| format!("{s:?} has too many decimals"))?;
        let mut unscaled: i128 = 0;
        for b in int.bytes().chain(frac.bytes()) {
            unscaled = unscaled * 10 + i128::from(b - b'0');
        }
        Ok(ColumnSum {
            unscaled: if negative { -unscaled } else { unscaled },
            scale,
        })
    }

    /// The text form, with `scale` digits after the point.
    pub fn to_text(self) -> String {
        let digits = self.unscaled.unsigned_abs().to_string();
        let sign = if self.unscaled < 0 { "-" } else { "" };
        let scale = usize::from(self.scale);
        if scale == 0 {
            return format!("{sign}{digits}");
        }
        let padded = format!("{digits:0>width$}", width = scale + 1);
        let (int, frac) = padded.split_at(padded.len() - scale);
        format!("{sign}{int}.{frac}")
    }

    /// This sum at a larger `scale` (`None` when smaller or out of range).
    pub fn rescale(self, scale: u8) -> Option<Self> {
        let factor = 10i128.checked_pow(u32::from(scale.checked_sub(self.scale)?))?;
        Some(ColumnSum {
            unscaled: self.unscaled.checked_mul(factor)?,
            scale,
        })
    }

    /// `self + other`, at the larger scale (`None` on overflow).
    pub fn checked_add(self, other: Self) -> Option<Self> {
        let scale = self.scale.max(other.scale);
        let (a, b) = (self.rescale(scale)?, other.rescale(scale)?);
        Some(ColumnSum {
            unscaled: a.unscaled.checked_add(b.unscaled)?,
            scale,
        })
    }
}

/// The exact sum of an integer or decimal column (nulls count as nothing).
pub fn sum_column(name: &str, column: &ArrayRef) -> Result<ColumnSum, String> {
    fn ints<I: Iterator<Item = Option<i64>>>(values: I) -> Option<i128> {
        values
            .flatten()
            .try_fold(0i128, |acc, v| acc.checked_add(i128::from(v)))
    }
    let overflow = || format!("the sum of column {name} overflows 38 digits");
    let (unscaled, scale) = match column.data_type() {
        DataType::Decimal128(_, s) => {
            let scale = u8::try_from(*s)
                .map_err(|_| format!("column {name} has a negative scale ({s})"))?;
            let sum = column
                .as_primitive::<Decimal128Type>()
                .iter()
                .flatten()
                .try_fold(0i128, i128::checked_add)
                .ok_or_else(overflow)?;
            (sum, scale)
        }
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => {
            // Widening to Int64 keeps every value.
            let wide = arrow::compute::cast(column, &DataType::Int64)
                .map_err(|e| format!("column {name}: {e}"))?;
            (
                ints(wide.as_primitive::<Int64Type>().iter()).ok_or_else(overflow)?,
                0,
            )
        }
        other => {
            return Err(format!(
                "column {name} is {other}: control sums are of integer or decimal columns"
            ));
        }
    };
    Ok(ColumnSum { unscaled, scale })
}

/// Compares what the job read (`records`, good and bad; `sums` by column) with `control`:
/// the first difference, with both figures and how far apart they are.
pub fn check(
    control: &Control,
    records: u64,
    sums: &BTreeMap<String, ColumnSum>,
) -> Result<(), String> {
    if let Some(rows) = control.rows
        && rows != records
    {
        let off = i128::from(records) - i128::from(rows);
        return Err(format!(
            "control check failed: {records} records read, the control file says {rows} \
             (off by {off:+})"
        ));
    }
    for (column, want) in &control.sums {
        let want = ColumnSum::from_text(want)?;
        let got = sums
            .get(column)
            .copied()
            .unwrap_or(ColumnSum::zero(want.scale));
        let scale = got.scale.max(want.scale);
        let (Some(g), Some(w)) = (got.rescale(scale), want.rescale(scale)) else {
            return Err(format!(
                "control check failed: the sum of {column} is out of range"
            ));
        };
        if g != w {
            let off = ColumnSum {
                unscaled: g.unscaled - w.unscaled,
                scale,
            };
            let sign = if off.unscaled > 0 { "+" } else { "" };
            return Err(format!(
                "control check failed: the sum of {column} is {}, the control file says {} \
                 (off by {sign}{})",
                g.to_text(),
                w.to_text(),
                off.to_text()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Decimal128Array, Int64Array};
    use std::sync::Arc;

    #[test]
    fn decimal_text_round_trips_exactly() {
        for s in [
            "0",
            "12.50",
            "-0.07",
            "1234567890123456789012345678.0123456789",
        ] {
            assert_eq!(ColumnSum::from_text(s).unwrap().to_text(), s);
        }
        assert!(ColumnSum::from_text("1.2.3").is_err());
        assert!(ColumnSum::from_text("1e5").is_err());
        assert!(ColumnSum::from_text("").is_err());
        let a = ColumnSum::from_text("1.5").unwrap();
        let b = ColumnSum::from_text("-0.25").unwrap();
        assert_eq!(a.checked_add(b).unwrap().to_text(), "1.25");
    }

    #[test]
    fn the_first_total_that_differs_is_named_with_both_figures() {
        let control = Control::parse(r#"{"rows": 4, "sums": {"amount": "10.00"}}"#).unwrap();
        let column: ArrayRef = Arc::new(
            Decimal128Array::from(vec![Some(250), None, Some(750)])
                .with_precision_and_scale(18, 2)
                .unwrap(),
        );
        let sums: BTreeMap<String, ColumnSum> =
            [("amount".to_string(), sum_column("amount", &column).unwrap())].into();
        assert!(check(&control, 4, &sums).is_ok());
        let e = check(&control, 3, &sums).unwrap_err();
        assert!(
            e.contains("3 records read") && e.contains("says 4") && e.contains("-1"),
            "{e}"
        );
        let more: ArrayRef = Arc::new(
            Decimal128Array::from(vec![1001])
                .with_precision_and_scale(18, 2)
                .unwrap(),
        );
        let sums: BTreeMap<String, ColumnSum> =
            [("amount".to_string(), sum_column("amount", &more).unwrap())].into();
        let e = check(&control, 4, &sums).unwrap_err();
        assert!(
            e.contains("is 10.01") && e.contains("says 10.00") && e.contains("+0.01"),
            "{e}"
        );
        let ints: ArrayRef = Arc::new(Int64Array::from(vec![3, 4]));
        assert_eq!(sum_column("n", &ints).unwrap().to_text(), "7");
        assert!(
            Control::parse(r#"{"rows": 1, "total": 3}"#).is_err(),
            "unknown field"
        );
        assert!(Control::parse(r#"{"sums": {"amount": "12,5"}}"#).is_err());
    }
}
