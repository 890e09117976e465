//! Data-quality rules ([`sluice_sdk::Rule`]) checked on a batch, column-wise: each rule
//! yields the rows that fail it, the first failing rule of a row is its reason.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, Scalar, StringArray};
use arrow::compute::kernels::cmp;
use arrow::compute::{CastOptions, cast, cast_with_options};
use arrow::datatypes::{DataType, Decimal128Type};
use arrow::util::display::array_value_to_string;
use regex::Regex;
use sluice_sdk::rules::{Bound, Check, Rule};

use crate::{Error, Result};

/// A row that failed a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The row in the batch.
    pub row: usize,
    /// The rule's name.
    pub rule: String,
    /// What was wrong: the column, its value and the rule.
    pub reason: String,
}

/// The job's own checks: their names, and what computes them for a batch (one `Boolean`
/// column per name, `true` where the row passes; the plugin's `check`).
pub type CustomChecks = (
    Vec<String>,
    Arc<dyn Fn(&RecordBatch) -> Result<RecordBatch> + Send + Sync>,
);

/// Rules ready to check batches (regular expressions compiled once).
pub struct RuleSet {
    rules: Vec<(Rule, Option<Regex>)>,
    custom: Option<CustomChecks>,
}

impl std::fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleSet")
            .field("rules", &self.rules)
            .field("custom", &self.custom.as_ref().map(|(names, _)| names))
            .finish()
    }
}

impl RuleSet {
    /// Compiles `rules`, with the job's `custom` checks; `None` when there are none. A
    /// regular expression that does not compile is refused naming its rule.
    pub fn new(rules: &[Rule], custom: Option<CustomChecks>) -> Result<Option<Arc<Self>>> {
        if rules.is_empty() && custom.is_none() {
            return Ok(None);
        }
        let rules = rules
            .iter()
            .map(|r| {
                let regex = match &r.check {
                    Check::Matches(re) => Some(Regex::new(re).map_err(|e| Error::Unsupported {
                        what: format!("rule {}", r.name),
                        reason: format!("its regular expression does not compile: {e}"),
                    })?),
                    _ => None,
                };
                Ok((r.clone(), regex))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(Arc::new(RuleSet { rules, custom })))
    }

    /// The declared rules (not the custom checks).
    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter().map(|(r, _)| r)
    }

    /// These rules less those `proven` says hold for every row to be checked, the custom
    /// checks kept; `None` when nothing is left to check.
    pub fn unproven(self: &Arc<Self>, proven: impl Fn(&Rule) -> bool) -> Option<Arc<Self>> {
        if !self.rules.iter().any(|(r, _)| proven(r)) {
            return Some(Arc::clone(self));
        }
        let rules: Vec<_> = self
            .rules
            .iter()
            .filter(|(r, _)| !proven(r))
            .cloned()
            .collect();
        if rules.is_empty() && self.custom.is_none() {
            return None;
        }
        Some(Arc::new(RuleSet {
            rules,
            custom: self.custom.clone(),
        }))
    }

    /// The rows of `batch` that fail a rule, in row order, each with the first rule it
    /// fails. A rule on a column the batch lacks is an error naming both.
    pub fn failures(&self, batch: &RecordBatch) -> Result<Vec<Failure>> {
        // A flag per row and a list of the few failures: a `Failure` slot per row would be
        // allocated, cleared and scanned for every batch (about 2% of an EOD run) to find,
        // most of the time, none.
        let mut failed = vec![false; batch.num_rows()];
        let mut out: Vec<Failure> = Vec::new();
        for (rule, regex) in &self.rules {
            let column = batch
                .column_by_name(&rule.column)
                .ok_or_else(|| Error::Mismatch {
                    subject: format!("rule {}", rule.name),
                    reason: format!("the input has no column {:?} the job reads", rule.column),
                })?;
            for row in failing_rows(rule, regex.as_ref(), column)? {
                if std::mem::replace(&mut failed[row], true) {
                    continue;
                }
                let value = array_value_to_string(column, row).unwrap_or_default();
                out.push(Failure {
                    row,
                    rule: rule.name.clone(),
                    reason: format!(
                        "rule {} failed: {} is {}",
                        rule.name,
                        rule.column,
                        if column.is_null(row) {
                            "null".to_string()
                        } else {
                            format!("{value:?}")
                        }
                    ),
                });
            }
        }
        if let Some((names, check)) = &self.custom {
            let passed = check(batch)?;
            for (name, column) in names.iter().zip(passed.columns()) {
                let column = column.as_boolean();
                for (row, seen) in failed.iter_mut().enumerate() {
                    if !*seen && column.is_valid(row) && !column.value(row) {
                        *seen = true;
                        out.push(Failure {
                            row,
                            rule: name.clone(),
                            reason: format!("check {name} failed"),
                        });
                    }
                }
            }
        }
        // Each row fails at most once, so the order by row is the only order.
        out.sort_unstable_by_key(|f| f.row);
        Ok(out)
    }
}

/// The columns a job reading `columns` (`None`: all) with `rules` reads: its own, then
/// each column only its rules check, in the rules' order.
pub fn with_rule_columns<'a>(
    columns: Option<&[String]>,
    rules: impl IntoIterator<Item = &'a Rule>,
) -> Option<Vec<String>> {
    with_columns(columns, rules.into_iter().map(|r| r.column.as_str()))
}

/// `columns` (`None`: all) and then each of `more` they lack, in order.
pub fn with_columns<'a>(
    columns: Option<&[String]>,
    more: impl IntoIterator<Item = &'a str>,
) -> Option<Vec<String>> {
    let mut read = columns?.to_vec();
    for column in more {
        if !read.iter().any(|c| c == column) {
            read.push(column.to_string());
        }
    }
    Some(read)
}

/// The rows of `column` failing `rule`.
fn failing_rows(rule: &Rule, regex: Option<&Regex>, column: &ArrayRef) -> Result<Vec<usize>> {
    let rows = 0..column.len();
    Ok(match &rule.check {
        Check::NotNull if column.null_count() == 0 => Vec::new(),
        Check::NotNull => rows.filter(|&i| column.is_null(i)).collect(),
        Check::Range { min, max } => {
            let mut bad = vec![false; column.len()];
            for (bound, below) in [(min, true), (max, false)] {
                let Some(bound) = bound else { continue };
                let ok = within(rule, column, bound, below)?;
                for (i, b) in bad.iter_mut().enumerate() {
                    // A null passes: `not_null` is the rule for that.
                    *b |= ok.is_valid(i) && !ok.value(i);
                }
            }
            rows.filter(|&i| bad[i]).collect()
        }
        Check::OneOf(values) => {
            // foldhash (hashbrown's default) hashes a short code in a few instructions;
            // std's SipHash, or a binary search of memcmp calls, cost several times that
            // over millions of values.
            let allowed: hashbrown::HashSet<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
            let text = as_text(rule, column)?;
            rows.filter(|&i| text.is_valid(i) && !allowed.contains(text.value(i).as_bytes()))
                .collect()
        }
        Check::Matches(_) => {
            let text = as_text(rule, column)?;
            let Some(regex) = regex else {
                return Ok(Vec::new());
            };
            rows.filter(|&i| text.is_valid(i) && !regex.is_match(text.value(i)))
                .collect()
        }
        Check::MaxScale(max) => match column.data_type() {
            DataType::Decimal128(_, s) if i16::from(*s) > i16::from(*max) => {
                let digits = u32::try_from(i16::from(*s) - i16::from(*max)).unwrap_or(0);
                let unit = 10i128.checked_pow(digits).unwrap_or(i128::MAX);
                let values = column.as_primitive::<Decimal128Type>();
                rows.filter(|&i| values.is_valid(i) && values.value(i) % unit != 0)
                    .collect()
            }
            DataType::Decimal128(..) => Vec::new(),
            other => {
                return Err(Error::Unsupported {
                    what: format!("rule {}", rule.name),
                    reason: format!(
                        "max_scale applies to decimal columns, {} is {other}",
                        rule.column
                    ),
                });
            }
        },
    })
}

/// Per row, whether the value is on the allowed side of `bound` (`below`: a lower bound).
fn within(rule: &Rule, column: &ArrayRef, bound: &Bound, below: bool) -> Result<BooleanArray> {
    let text = StringArray::from(vec![bound.value.as_str()]);
    let strict = CastOptions {
        safe: false,
        ..Default::default()
    };
    let value =
        cast_with_options(&text, column.data_type(), &strict).map_err(|e| Error::Unsupported {
            what: format!("rule {}", rule.name),
            reason: format!(
                "its bound {:?} is not a {}: {e}",
                bound.value,
                column.data_type()
            ),
        })?;
    let value = Scalar::new(value);
    let result = match (below, bound.inclusive) {
        (true, true) => cmp::gt_eq(column, &value),
        (true, false) => cmp::gt(column, &value),
        (false, true) => cmp::lt_eq(column, &value),
        (false, false) => cmp::lt(column, &value),
    };
    result.map_err(|e| Error::Unsupported {
        what: format!("rule {}", rule.name),
        reason: format!("comparing column {}: {e}", rule.column),
    })
}

/// The column as text (cast when it is not).
fn as_text(rule: &Rule, column: &ArrayRef) -> Result<StringArray> {
    let text = if column.data_type() == &DataType::Utf8 {
        Arc::clone(column)
    } else {
        cast(column, &DataType::Utf8).map_err(|e| Error::Unsupported {
            what: format!("rule {}", rule.name),
            reason: format!("column {} as text: {e}", rule.column),
        })?
    };
    Ok(text.as_string::<i32>().clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_columns_read_are_the_jobs_then_those_it_lacks_in_order() {
        let cols = |c: &[&str]| c.iter().map(|c| c.to_string()).collect::<Vec<_>>();
        let rules = [
            Rule::not_null("id"),
            Rule::not_null("amount"),
            Rule::one_of("id", &["a"]),
        ];
        let own = cols(&["amount", "date"]);
        assert_eq!(
            with_rule_columns(Some(&own), &rules),
            Some(cols(&["amount", "date", "id"]))
        );
        assert_eq!(
            with_rule_columns(None, &rules),
            None,
            "all columns stay all"
        );
        assert_eq!(
            with_columns(Some(&own), ["total", "date", "total"]),
            Some(cols(&["amount", "date", "total"]))
        );
    }
    use arrow::array::{Date32Array, Decimal128Array};
    use arrow::datatypes::{Field, Schema};

    fn batch() -> RecordBatch {
        let amount = Decimal128Array::from(vec![Some(1250), Some(-300), None, Some(1), Some(5)])
            .with_precision_and_scale(18, 3)
            .unwrap();
        let currency = StringArray::from(vec![
            Some("EUR"),
            Some("EUR"),
            Some("XXX"),
            None,
            Some("USD"),
        ]);
        let date = Date32Array::from(vec![20_000, 20_000, 20_000, 20_000, 19_000]);
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("amount", DataType::Decimal128(18, 3), true),
                Field::new("currency", DataType::Utf8, true),
                Field::new("txn_date", DataType::Date32, true),
            ])),
            vec![Arc::new(amount), Arc::new(currency), Arc::new(date)],
        )
        .unwrap()
    }

    #[test]
    fn each_row_fails_with_its_first_failing_rule() {
        let rules = RuleSet::new(
            &[
                Rule::not_null("amount"),
                Rule::greater_than("amount", "0"),
                Rule::max_scale("amount", 2),
                Rule::one_of("currency", &["EUR", "USD"]).named("iso_currency"),
                Rule::range("txn_date", Some("2024-01-01"), None),
                Rule::matches("currency", "^[A-Z]{3}$"),
            ],
            None,
        )
        .unwrap()
        .unwrap();
        let failures = rules.failures(&batch()).unwrap();
        let got: Vec<(usize, &str)> = failures.iter().map(|f| (f.row, f.rule.as_str())).collect();
        // Row 0 (12.500 EUR) passes; row 1 is negative; row 2's amount is null; row 3 has a
        // third decimal; row 4 is dated 2022.
        assert_eq!(
            got,
            [
                (1, "greater_than(amount)"),
                (2, "not_null(amount)"),
                (3, "max_scale(amount)"),
                (4, "max_scale(amount)"),
            ]
        );
        assert!(
            failures[0].reason.contains("-0.300"),
            "{}",
            failures[0].reason
        );
        let dated = RuleSet::new(&[Rule::range("txn_date", Some("2024-01-01"), None)], None)
            .unwrap()
            .unwrap();
        assert_eq!(dated.failures(&batch()).unwrap()[0].row, 4);
        let currency = RuleSet::new(&[Rule::one_of("currency", &["EUR", "USD"])], None)
            .unwrap()
            .unwrap();
        let rows: Vec<usize> = currency
            .failures(&batch())
            .unwrap()
            .iter()
            .map(|f| f.row)
            .collect();
        assert_eq!(
            rows,
            [2],
            "a null passes one_of; not_null is the rule for it"
        );
    }

    #[test]
    fn bad_rules_are_refused_by_name() {
        assert!(RuleSet::new(&[Rule::matches("c", "([")], None).is_err());
        let rules = RuleSet::new(&[Rule::greater_than("amount", "zero")], None)
            .unwrap()
            .unwrap();
        let e = rules.failures(&batch()).unwrap_err().to_string();
        assert!(
            e.contains("greater_than(amount)") && e.contains("\"zero\""),
            "{e}"
        );
        let rules = RuleSet::new(&[Rule::not_null("nope")], None)
            .unwrap()
            .unwrap();
        assert!(
            rules
                .failures(&batch())
                .unwrap_err()
                .to_string()
                .contains("nope")
        );
    }
}
