//! # End-of-day (EOD) aggregation, the bank example job
//!
//! A bank's nightly batch: from the day's card, ATM, branch and online transactions, compute
//! per account, date and currency the number of transactions, debit and credit totals, the net
//! movement and the smallest and largest amounts.
//!
//! Input is CSV with a header, one transaction per row (see `sluice-eod-gen`):
//!
//! ```text
//! txn_id,account_id,txn_date,txn_ts,txn_type,amount,currency,channel,merchant
//! T000000000042,ACC00012345,2026-11-26,2026-11-26 14:03:51,DEBIT,83.2,USD,POS,"Smith, Jones & Co"
//! ```
//!
//! Money is `Decimal128(18, 2)` end to end and all arithmetic is exact integer arithmetic on
//! cents, never floating point: a ledger that is off by a cent is wrong. [`Eod::map`] checks
//! every row and fails the task on the first bad one, naming the transaction, the column and
//! the reason, because a silently dropped transaction makes the bank's books disagree; use the
//! engine's `--on-bad-record skip|quarantine` to set aside rows the CSV reader cannot parse.
//!
//! Output, one row per `(account_id, txn_date, currency)`:
//! `account_id, txn_date, currency, txn_count: Int64, debit_total, credit_total, net:
//! Decimal128(38, 2), min_amount, max_amount: Decimal128(18, 2)`, where `net` is credits minus
//! debits.

#![warn(missing_docs)]

use std::sync::{Arc, OnceLock};

use arrow_array::cast::AsArray;
use arrow_array::types::Decimal128Type;
use arrow_array::{
    Array, ArrayRef, Decimal128Array, LargeStringArray, PrimitiveArray, RecordBatch, StringArray,
    StringViewArray,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use sluice_sdk::{Aggregate, Job, JobError, JobResult, Rule, TaskContext, export_job};

/// Precision of money columns in the input and the per-row map output.
pub const MONEY_PRECISION: u8 = 18;
/// Scale of money columns: cents.
pub const MONEY_SCALE: i8 = 2;
/// The exclusive upper bound of a `Decimal128(18, _)` value's magnitude.
const MONEY_LIMIT: i128 = 1_000_000_000_000_000_000;

/// The EOD job: map turns each transaction into signed debit/credit/net amounts keyed by
/// `(account_id, txn_date, currency)`, and the engine aggregates them per key.
#[derive(Debug, Default)]
pub struct Eod;

impl Job for Eod {
    fn name(&self) -> &str {
        "eod"
    }

    /// The transaction file's columns in file order. All are declared nullable, although only
    /// `merchant` may be empty: the CSV reader turns an empty field into a null and would
    /// reject a whole batch declared non-nullable with a message naming neither the row nor
    /// the transaction; [`Eod::map`] checks the required columns itself and says which
    /// transaction is wrong.
    fn input_schema(&self) -> Option<SchemaRef> {
        Some(input_schema())
    }

    /// What [`Eod::map`] reads: Parquet input skips `txn_ts`, `channel` and `merchant`.
    /// `txn_id` is left to its `not_null` rule, so the engine reads it only where a file's
    /// statistics do not prove the rule; when read, the map names bad transactions by it.
    fn input_columns(&self) -> Option<Vec<String>> {
        let used = ["account_id", "txn_date", "txn_type", "amount", "currency"];
        Some(used.iter().map(|c| c.to_string()).collect())
    }

    /// The day's transactions must have an id, an account, a date, a type that is DEBIT or
    /// CREDIT, a positive amount of at most two decimals and a currency this bank books:
    /// a transaction failing one is a bad record (`--on-bad-record` says what happens).
    fn rules(&self) -> Vec<Rule> {
        vec![
            Rule::not_null("txn_id"),
            Rule::not_null("account_id"),
            Rule::not_null("txn_date"),
            Rule::not_null("txn_type"),
            Rule::one_of("txn_type", &[DEBIT, CREDIT]),
            Rule::not_null("amount"),
            Rule::greater_than("amount", "0"),
            Rule::max_scale("amount", MONEY_SCALE as u8),
            Rule::not_null("currency"),
            Rule::one_of("currency", &ISO_CURRENCIES).named("iso_currency"),
        ]
    }

    fn key_columns(&self) -> Vec<String> {
        vec!["account_id".into(), "txn_date".into(), "currency".into()]
    }

    fn aggregates(&self) -> Vec<Aggregate> {
        vec![
            Aggregate::count("txn_count"),
            Aggregate::sum("debit_total", "debit"),
            Aggregate::sum("credit_total", "credit"),
            Aggregate::sum("net", "net"),
            Aggregate::min("min_amount", "amount"),
            Aggregate::max("max_amount", "amount"),
        ]
    }

    /// Validates the batch and emits `account_id, txn_date, currency, debit, credit, net,
    /// amount`, one row per transaction.
    fn map(&self, batch: RecordBatch, _ctx: &TaskContext) -> JobResult<RecordBatch> {
        let input = Input::of(&batch)?;
        let is_debit = input.validate()?;
        let amounts = input.amount.values();
        let n = batch.num_rows();
        let mut debit = Vec::with_capacity(n);
        let mut credit = Vec::with_capacity(n);
        let mut net = Vec::with_capacity(n);
        // Branch-free over two slices, so the compiler can vectorise it.
        for (&amount, &d) in amounts.iter().zip(&is_debit) {
            let (dr, cr) = if d { (amount, 0) } else { (0, amount) };
            debit.push(dr);
            credit.push(cr);
            net.push(cr - dr);
        }
        let amount: ArrayRef = match input.amount.data_type() {
            DataType::Decimal128(MONEY_PRECISION, MONEY_SCALE) => {
                Arc::clone(batch.column(input.amount_index))
            }
            // A wider decimal (from Parquet, say) whose values `validate` found to fit.
            _ => Arc::new(money(amounts.to_vec())?),
        };
        let columns = vec![
            Arc::clone(input.account_id),
            Arc::clone(input.txn_date),
            Arc::clone(input.currency),
            Arc::new(money(debit)?),
            Arc::new(money(credit)?),
            Arc::new(money(net)?),
            amount,
        ];
        Ok(RecordBatch::try_new(map_output_schema(&input), columns)?)
    }
}

export_job!(Eod);

/// The ISO 4217 codes this bank books.
pub const ISO_CURRENCIES: [&str; 20] = [
    "AUD", "BRL", "CAD", "CHF", "CNY", "CZK", "DKK", "EUR", "GBP", "HKD", "HUF", "INR", "JPY",
    "MXN", "NOK", "NZD", "PLN", "SEK", "USD", "ZAR",
];

const DEBIT: &str = "DEBIT";
const CREDIT: &str = "CREDIT";

/// The schema transaction files are read with; see [`Job::input_schema`] on [`Eod`].
pub fn input_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let money = DataType::Decimal128(MONEY_PRECISION, MONEY_SCALE);
            Arc::new(Schema::new(vec![
                Field::new("txn_id", DataType::Utf8, true),
                Field::new("account_id", DataType::Utf8, true),
                Field::new("txn_date", DataType::Date32, true),
                Field::new("txn_ts", DataType::Timestamp(TimeUnit::Second, None), true),
                Field::new("txn_type", DataType::Utf8, true),
                Field::new("amount", money, true),
                Field::new("currency", DataType::Utf8, true),
                Field::new("channel", DataType::Utf8, true),
                Field::new("merchant", DataType::Utf8, true),
            ]))
        })
        .clone()
}

/// The map output schema; the key columns keep the input's string type (normally `Utf8`).
fn map_output_schema(input: &Input<'_>) -> SchemaRef {
    let money = DataType::Decimal128(MONEY_PRECISION, MONEY_SCALE);
    Arc::new(Schema::new(vec![
        Field::new("account_id", input.account_id.data_type().clone(), false),
        Field::new("txn_date", DataType::Date32, false),
        Field::new("currency", input.currency.data_type().clone(), false),
        Field::new("debit", money.clone(), false),
        Field::new("credit", money.clone(), false),
        Field::new("net", money.clone(), false),
        Field::new("amount", money, false),
    ]))
}

/// Cents as a `Decimal128(18, 2)` array.
fn money(cents: Vec<i128>) -> JobResult<Decimal128Array> {
    Ok(Decimal128Array::from(cents).with_precision_and_scale(MONEY_PRECISION, MONEY_SCALE)?)
}

/// The input columns the map reads, type-checked.
struct Input<'a> {
    /// Absent when the engine did not read it (see [`Eod::input_columns`]).
    txn_id: Option<Strings<'a>>,
    account_id: &'a ArrayRef,
    account_id_str: Strings<'a>,
    txn_date: &'a ArrayRef,
    txn_type: Strings<'a>,
    amount: &'a PrimitiveArray<Decimal128Type>,
    amount_index: usize,
    currency: &'a ArrayRef,
    currency_str: Strings<'a>,
}

impl<'a> Input<'a> {
    fn of(batch: &'a RecordBatch) -> JobResult<Self> {
        let column = |name: &str| -> JobResult<(usize, &'a ArrayRef)> {
            let index = batch.schema_ref().index_of(name).map_err(|_| {
                JobError::invalid_input(format!(
                    "eod: input has no column {name}; is it a transaction file?"
                ))
            })?;
            Ok((index, batch.column(index)))
        };
        let txn_id = batch.column_by_name("txn_id");
        let (_, account_id) = column("account_id")?;
        let (_, txn_date) = column("txn_date")?;
        let (_, txn_type) = column("txn_type")?;
        let (amount_index, amount) = column("amount")?;
        let (_, currency) = column("currency")?;
        if txn_date.data_type() != &DataType::Date32 {
            return Err(type_error("txn_date", txn_date, "Date32"));
        }
        // Only the scale matters: values are checked to fit in 18 digits row by row.
        let amount = match amount.data_type() {
            DataType::Decimal128(_, MONEY_SCALE) => amount.as_primitive::<Decimal128Type>(),
            _ => return Err(type_error("amount", amount, "Decimal128(18, 2)")),
        };
        Ok(Input {
            txn_id: txn_id.map(|c| Strings::of("txn_id", c)).transpose()?,
            account_id,
            account_id_str: Strings::of("account_id", account_id)?,
            txn_date,
            txn_type: Strings::of("txn_type", txn_type)?,
            amount,
            amount_index,
            currency,
            currency_str: Strings::of("currency", currency)?,
        })
    }

    /// Fails on the first invalid row, naming its transaction; otherwise returns per row
    /// whether it is a debit (else it is a credit).
    ///
    /// Each check scans one column in a tight loop and reports its first bad row; the
    /// earliest of those is the first bad row of the batch. Null checks come first so that a
    /// null is reported as such rather than as the value it happens to be stored as.
    fn validate(&self) -> JobResult<Vec<bool>> {
        let (is_debit, bad_type) = self.classify_txn_types();
        let checks = [
            self.txn_id
                .and_then(|t| t.first_null())
                .map(|i| (i, "txn_id is null".to_string())),
            self.account_id_str
                .first_null_or_empty()
                .map(|i| (i, self.account_id_str.missing(i))),
            first_null(self.txn_date.as_ref()).map(|i| (i, "txn_date is null".to_string())),
            self.txn_type
                .first_null()
                .map(|i| (i, "txn_type is null".to_string())),
            first_null(self.amount).map(|i| (i, "amount is null".to_string())),
            self.currency_str
                .first_null_or_empty()
                .map(|i| (i, self.currency_str.missing(i))),
            bad_type,
            self.first_bad_amount(),
        ];
        match checks.into_iter().flatten().min_by_key(|&(row, _)| row) {
            None => Ok(is_debit),
            // Every attempt would find the same record: not worth a retry.
            Some((row, reason)) => Err(JobError::invalid_input(format!(
                "{}: {reason}",
                self.describe_row(row)
            ))),
        }
    }

    /// Per row, whether `txn_type` is DEBIT, up to the first row that is neither DEBIT nor
    /// CREDIT (reported with the reason).
    fn classify_txn_types(&self) -> (Vec<bool>, Option<(usize, String)>) {
        let mut is_debit = Vec::with_capacity(self.txn_type.len());
        let mut classify = |i: usize, t: &[u8]| {
            match t {
                b"DEBIT" => is_debit.push(true),
                b"CREDIT" => is_debit.push(false),
                _ => return Some(i),
            }
            None
        };
        let bad = match self.txn_type.array {
            // The common layout: walk the offsets and bytes directly instead of
            // bounds-checking each `value(i)`.
            StringsArray::Utf8(a) => {
                let data = a.value_data();
                a.value_offsets()
                    .windows(2)
                    .enumerate()
                    .find_map(|(i, w)| classify(i, &data[w[0] as usize..w[1] as usize]))
            }
            _ => (0..self.txn_type.len())
                .find_map(|i| classify(i, self.txn_type.value(i).as_bytes())),
        };
        let bad = bad.map(|row| {
            let why = format!(
                "txn_type {:?} is not {DEBIT} or {CREDIT}",
                self.txn_type.value(row)
            );
            (row, why)
        });
        (is_debit, bad)
    }

    fn first_bad_amount(&self) -> Option<(usize, String)> {
        let values = self.amount.values();
        let row = values.iter().position(|&v| v <= 0 || v >= MONEY_LIMIT)?;
        let v = values[row];
        let why = if v <= 0 {
            "is not positive"
        } else {
            "does not fit Decimal128(18, 2)"
        };
        Some((row, format!("amount {} {why}", format_cents(v))))
    }

    /// `txn T000000000042`, or the row number when the transaction id is missing.
    fn describe_row(&self, row: usize) -> String {
        match self.txn_id {
            Some(t) if !t.is_null(row) && !t.value(row).is_empty() => {
                format!("txn {}", t.value(row))
            }
            Some(_) => format!("row {row} of the batch (no txn_id)"),
            None => format!("row {row} of the batch"),
        }
    }
}

fn type_error(name: &str, col: &ArrayRef, expected: &str) -> JobError {
    JobError::invalid_input(format!(
        "eod: column {name} is {}, expected {expected}",
        col.data_type()
    ))
}

fn first_null(col: &dyn Array) -> Option<usize> {
    let nulls = col.logical_nulls()?;
    if nulls.null_count() == 0 {
        return None;
    }
    (0..col.len()).find(|&i| nulls.is_null(i))
}

/// Formats cents as a decimal with two fractional digits (`-5.00`, `1034.07`).
fn format_cents(v: i128) -> String {
    let sign = if v < 0 { "-" } else { "" };
    let abs = v.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

/// A string column of any of Arrow's string layouts, so the job works whether the engine
/// reads CSV into `Utf8` or Parquet into `LargeUtf8`/`Utf8View`.
#[derive(Clone, Copy)]
struct Strings<'a> {
    name: &'static str,
    array: StringsArray<'a>,
}

#[derive(Clone, Copy)]
enum StringsArray<'a> {
    Utf8(&'a StringArray),
    Large(&'a LargeStringArray),
    View(&'a StringViewArray),
}

impl<'a> Strings<'a> {
    fn of(name: &'static str, col: &'a ArrayRef) -> JobResult<Self> {
        let array = match col.data_type() {
            DataType::Utf8 => StringsArray::Utf8(col.as_string::<i32>()),
            DataType::LargeUtf8 => StringsArray::Large(col.as_string::<i64>()),
            DataType::Utf8View => StringsArray::View(col.as_string_view()),
            _ => return Err(type_error(name, col, "Utf8")),
        };
        Ok(Strings { name, array })
    }

    fn len(&self) -> usize {
        self.as_array().len()
    }

    fn as_array(&self) -> &'a dyn Array {
        match self.array {
            StringsArray::Utf8(a) => a,
            StringsArray::Large(a) => a,
            StringsArray::View(a) => a,
        }
    }

    fn is_null(&self, i: usize) -> bool {
        self.as_array().is_null(i)
    }

    /// The value of row `i` (empty for a null).
    #[inline]
    fn value(&self, i: usize) -> &'a str {
        match self.array {
            StringsArray::Utf8(a) => a.value(i),
            StringsArray::Large(a) => a.value(i),
            StringsArray::View(a) => a.value(i),
        }
    }

    fn first_null(&self) -> Option<usize> {
        first_null(self.as_array())
    }

    fn first_null_or_empty(&self) -> Option<usize> {
        // A null's stored value is empty too, so one length scan finds both.
        match self.array {
            StringsArray::Utf8(a) => a.value_offsets().windows(2).position(|w| w[0] == w[1]),
            StringsArray::Large(a) => a.value_offsets().windows(2).position(|w| w[0] == w[1]),
            StringsArray::View(a) => a.views().iter().position(|&v| v as u32 == 0),
        }
        .or_else(|| self.first_null())
    }

    /// Why row `i` (null or empty) is missing a value.
    fn missing(&self, i: usize) -> String {
        let what = if self.is_null(i) { "null" } else { "empty" };
        format!("{} is {what}", self.name)
    }
}

#[cfg(test)]
mod tests;
