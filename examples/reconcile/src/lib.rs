//! # Reconciliation: the bank's ledger against its statement
//!
//! Two named inputs, `ledger` and `statement`, both CSV with the header
//! `txn_id,account_id,txn_date,amount,currency`:
//!
//! ```sh
//! sluice run --local 2 --plugin target/release/libsluice_reconcile.so \
//!     --input ledger=/data/ledger.csv statement=/data/statement.csv --format csv \
//!     --output /data/recon
//! ```
//!
//! The map tags each row with the input it came from; the engine groups rows by `txn_id`
//! across both inputs (a reduce-side join); the reduce gives each transaction a status:
//! `matched`, `amount_mismatch`, `missing_in_statement`, `missing_in_ledger`,
//! `duplicate_in_ledger`, `duplicate_in_statement` (a duplicate wins over the others, the
//! ledger's first). Output: `txn_id: Utf8, status: Utf8, ledger_amount, statement_amount:
//! Decimal128(18, 2)` (null where the side has no single row). Amounts compare exactly, as
//! integers of cents.

use std::sync::{Arc, OnceLock};

use arrow_array::cast::AsArray;
use arrow_array::types::Decimal128Type;
use arrow_array::{ArrayRef, Decimal128Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use sluice_sdk::{Job, JobError, JobResult, Rule, TaskContext, export_job};

/// Decimal precision and scale of amounts.
const MONEY: DataType = DataType::Decimal128(18, 2);

/// The two inputs, by name.
pub const LEDGER: &str = "ledger";
/// See [`LEDGER`].
pub const STATEMENT: &str = "statement";

/// The reconciliation job.
#[derive(Default)]
pub struct Reconcile;

/// The schema both inputs are read with.
pub fn input_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(vec![
                Field::new("txn_id", DataType::Utf8, true),
                Field::new("account_id", DataType::Utf8, true),
                Field::new("txn_date", DataType::Date32, true),
                Field::new("amount", MONEY, true),
                Field::new("currency", DataType::Utf8, true),
            ]))
        })
        .clone()
}

fn map_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("txn_id", DataType::Utf8, false),
        Field::new("side", DataType::Utf8, false),
        Field::new("amount", MONEY, false),
    ]))
}

fn output_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("txn_id", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("ledger_amount", MONEY, true),
        Field::new("statement_amount", MONEY, true),
    ]))
}

impl Job for Reconcile {
    fn name(&self) -> &str {
        "reconcile"
    }

    fn input_schema(&self) -> Option<SchemaRef> {
        Some(input_schema())
    }

    fn input_columns(&self) -> Option<Vec<String>> {
        Some(vec!["txn_id".into(), "amount".into()])
    }

    fn rules(&self) -> Vec<Rule> {
        vec![Rule::not_null("txn_id"), Rule::not_null("amount")]
    }

    fn key_columns(&self) -> Vec<String> {
        vec!["txn_id".into()]
    }

    /// `txn_id, side, amount`, `side` being the input's name.
    fn map(&self, batch: RecordBatch, ctx: &TaskContext) -> JobResult<RecordBatch> {
        let side = match ctx.input_name() {
            s @ (LEDGER | STATEMENT) => s,
            other => {
                return Err(JobError::invalid_input(format!(
                    "reconcile reads inputs named {LEDGER} and {STATEMENT} \
                     (--input {LEDGER}=PATH {STATEMENT}=PATH), not {other:?}"
                )));
            }
        };
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .cloned()
                .ok_or_else(|| JobError::invalid_input(format!("the input has no {name}")))
        };
        let sides: ArrayRef = Arc::new(StringArray::from(vec![side; batch.num_rows()]));
        Ok(RecordBatch::try_new(
            map_schema(),
            vec![column("txn_id")?, sides, column("amount")?],
        )?)
    }

    /// One row per `txn_id` of the sorted groups: its status and each side's amount.
    fn reduce(&self, groups: RecordBatch, _ctx: &TaskContext) -> JobResult<RecordBatch> {
        let ids = groups.column(0).as_string::<i32>();
        let sides = groups.column(1).as_string::<i32>();
        let amounts = groups.column(2).as_primitive::<Decimal128Type>();
        let mut out_ids = Vec::new();
        let mut statuses = Vec::new();
        let mut ledger_amounts = Vec::new();
        let mut statement_amounts = Vec::new();
        let mut row = 0;
        while row < groups.num_rows() {
            let id = ids.value(row);
            let mut ledger = Vec::new();
            let mut statement = Vec::new();
            while row < groups.num_rows() && ids.value(row) == id {
                match sides.value(row) {
                    LEDGER => ledger.push(amounts.value(row)),
                    _ => statement.push(amounts.value(row)),
                }
                row += 1;
            }
            statuses.push(status(&ledger, &statement));
            ledger_amounts.push((ledger.len() == 1).then(|| ledger[0]));
            statement_amounts.push((statement.len() == 1).then(|| statement[0]));
            out_ids.push(id.to_string());
        }
        let money = |v: Vec<Option<i128>>| -> JobResult<ArrayRef> {
            Ok(Arc::new(
                Decimal128Array::from(v).with_precision_and_scale(18, 2)?,
            ))
        };
        Ok(RecordBatch::try_new(
            output_schema(),
            vec![
                Arc::new(StringArray::from(out_ids)),
                Arc::new(StringArray::from(statuses)),
                money(ledger_amounts)?,
                money(statement_amounts)?,
            ],
        )?)
    }
}

export_job!(Reconcile);

/// The status of a transaction with these amounts (cents) in the ledger and the statement.
pub fn status(ledger: &[i128], statement: &[i128]) -> &'static str {
    match (ledger, statement) {
        (l, _) if l.len() > 1 => "duplicate_in_ledger",
        (_, s) if s.len() > 1 => "duplicate_in_statement",
        ([_], []) => "missing_in_statement",
        ([], [_]) => "missing_in_ledger",
        ([l], [s]) if l == s => "matched",
        ([_], [_]) => "amount_mismatch",
        _ => "missing_in_ledger",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_combination_gets_its_status() {
        assert_eq!(status(&[100], &[100]), "matched");
        assert_eq!(status(&[100], &[101]), "amount_mismatch");
        assert_eq!(status(&[100], &[]), "missing_in_statement");
        assert_eq!(status(&[], &[100]), "missing_in_ledger");
        assert_eq!(status(&[1, 1], &[1, 1]), "duplicate_in_ledger");
        assert_eq!(status(&[1], &[1, 1]), "duplicate_in_statement");
    }
}
