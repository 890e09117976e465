//! The EOD map over small batches: exact money, and bad rows named.

use super::*;
use arrow_array::types::Date32Type;
use arrow_array::{Date32Array, TimestampSecondArray};
use sluice_sdk::TaskKind;
use std::collections::BTreeMap;

fn ctx() -> TaskContext {
    TaskContext {
        job_id: "job-1".into(),
        kind: TaskKind::Map,
        task_index: 0,
        attempt: 0,
        params: BTreeMap::new(),
        input: String::new(),
        counters: Default::default(),
        sides: Default::default(),
    }
}

/// One transaction: `(txn_id, account_id, txn_type, amount in cents, currency)`.
type Txn<'a> = (
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
    Option<i128>,
    Option<&'a str>,
);

fn batch<'a>(txns: &[Txn<'a>]) -> RecordBatch {
    let n = txns.len();
    let strings = |f: fn(&Txn<'a>) -> Option<&'a str>| -> ArrayRef {
        Arc::new(txns.iter().map(f).collect::<StringArray>())
    };
    let amounts: Decimal128Array = txns.iter().map(|t| t.3).collect();
    let columns: Vec<ArrayRef> = vec![
        strings(|t| t.0),
        strings(|t| t.1),
        Arc::new(Date32Array::from(vec![20_783; n])),
        Arc::new(TimestampSecondArray::from(vec![1_795_694_400; n])),
        strings(|t| t.2),
        Arc::new(amounts.with_precision_and_scale(18, 2).unwrap()),
        strings(|t| t.4),
        strings(|_| Some("POS")),
        strings(|_| None),
    ];
    RecordBatch::try_new(input_schema(), columns).unwrap()
}

fn decimals(out: &RecordBatch, name: &str) -> Vec<i128> {
    let col = out.column_by_name(name).unwrap();
    assert_eq!(col.data_type(), &DataType::Decimal128(18, 2), "{name}");
    col.as_primitive::<Decimal128Type>().values().to_vec()
}

fn err(txns: &[Txn<'_>]) -> String {
    Eod.map(batch(txns), &ctx())
        .unwrap_err()
        .message()
        .to_string()
}

#[test]
fn debit_credit_and_net_are_exact() {
    let out = Eod
        .map(
            batch(&[
                (
                    Some("T1"),
                    Some("ACC1"),
                    Some("DEBIT"),
                    Some(103_407),
                    Some("USD"),
                ),
                (
                    Some("T2"),
                    Some("ACC1"),
                    Some("CREDIT"),
                    Some(1),
                    Some("USD"),
                ),
                (
                    Some("T3"),
                    Some("ACC2"),
                    Some("CREDIT"),
                    Some(499_999_999),
                    Some("EUR"),
                ),
                // The largest Decimal128(18, 2) value: exact, where an f64 would round.
                (
                    Some("T4"),
                    Some("ACC2"),
                    Some("DEBIT"),
                    Some(MONEY_LIMIT - 1),
                    Some("GBP"),
                ),
            ]),
            &ctx(),
        )
        .unwrap();
    let names: Vec<_> = out
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(
        names,
        [
            "account_id",
            "txn_date",
            "currency",
            "debit",
            "credit",
            "net",
            "amount"
        ]
    );
    let max = MONEY_LIMIT - 1;
    assert_eq!(decimals(&out, "debit"), [103_407, 0, 0, max]);
    assert_eq!(decimals(&out, "credit"), [0, 1, 499_999_999, 0]);
    assert_eq!(decimals(&out, "net"), [-103_407, 1, 499_999_999, -max]);
    assert_eq!(decimals(&out, "amount"), [103_407, 1, 499_999_999, max]);
    let accounts = out.column(0).as_string::<i32>();
    assert_eq!(
        accounts.iter().flatten().collect::<Vec<_>>(),
        ["ACC1", "ACC1", "ACC2", "ACC2"]
    );
    let currencies = out.column(2).as_string::<i32>();
    assert_eq!(currencies.value(3), "GBP");
    assert_eq!(out.column(1).as_primitive::<Date32Type>().value(0), 20_783);
}

#[test]
fn a_bad_txn_type_names_the_transaction() {
    let e = err(&[
        (
            Some("T000000000041"),
            Some("ACC1"),
            Some("DEBIT"),
            Some(100),
            Some("USD"),
        ),
        (
            Some("T000000000042"),
            Some("ACC1"),
            Some("REFUND"),
            Some(100),
            Some("USD"),
        ),
        (
            Some("T000000000043"),
            Some("ACC1"),
            Some("debit"),
            Some(100),
            Some("USD"),
        ),
    ]);
    assert_eq!(
        e,
        "txn T000000000042: txn_type \"REFUND\" is not DEBIT or CREDIT"
    );
    let e = err(&[(Some("T7"), Some("ACC1"), None, Some(100), Some("USD"))]);
    assert_eq!(e, "txn T7: txn_type is null");
}

#[test]
fn non_positive_amounts_name_the_transaction() {
    let e = err(&[
        (
            Some("T1"),
            Some("ACC1"),
            Some("DEBIT"),
            Some(100),
            Some("USD"),
        ),
        (
            Some("T2"),
            Some("ACC1"),
            Some("CREDIT"),
            Some(-5_00),
            Some("USD"),
        ),
    ]);
    assert_eq!(e, "txn T2: amount -5.00 is not positive");
    let e = err(&[(
        Some("T3"),
        Some("ACC1"),
        Some("DEBIT"),
        Some(0),
        Some("USD"),
    )]);
    assert_eq!(e, "txn T3: amount 0.00 is not positive");
    let e = err(&[(Some("T4"), Some("ACC1"), Some("DEBIT"), None, Some("USD"))]);
    assert_eq!(e, "txn T4: amount is null");
}

#[test]
fn missing_keys_and_ids_are_reported_at_the_first_bad_row() {
    let ok = (
        Some("T0"),
        Some("ACC1"),
        Some("DEBIT"),
        Some(100),
        Some("USD"),
    );
    let e = err(&[
        ok,
        (Some("T1"), Some(""), Some("DEBIT"), Some(100), Some("USD")),
    ]);
    assert_eq!(e, "txn T1: account_id is empty");
    let e = err(&[
        ok,
        (Some("T2"), None, Some("DEBIT"), Some(100), Some("USD")),
    ]);
    assert_eq!(e, "txn T2: account_id is null");
    let e = err(&[
        ok,
        (Some("T3"), Some("ACC1"), Some("DEBIT"), Some(100), None),
    ]);
    assert_eq!(e, "txn T3: currency is null");
    let e = err(&[
        ok,
        (None, Some("ACC1"), Some("DEBIT"), Some(100), Some("USD")),
    ]);
    assert_eq!(e, "row 1 of the batch (no txn_id): txn_id is null");
    // Several problems: the earliest row wins, whatever the column.
    let e = err(&[
        ok,
        (
            Some("T5"),
            Some("ACC1"),
            Some("DEBIT"),
            Some(-1),
            Some("USD"),
        ),
        (
            Some("T6"),
            Some("ACC1"),
            Some("CASH"),
            Some(100),
            Some("USD"),
        ),
    ]);
    assert_eq!(e, "txn T5: amount -0.01 is not positive");
}

#[test]
fn without_txn_ids_a_bad_row_is_named_by_its_place() {
    // The engine leaves txn_id out when a Parquet footer proves its rule.
    let full = batch(&[
        (
            Some("T0"),
            Some("ACC1"),
            Some("DEBIT"),
            Some(100),
            Some("USD"),
        ),
        (
            Some("T1"),
            Some("ACC2"),
            Some("CREDIT"),
            Some(250),
            Some(""),
        ),
    ]);
    let rest: Vec<usize> = (1..full.num_columns()).collect();
    let b = full.project(&rest).unwrap();
    let e = Eod.map(b.clone(), &ctx()).unwrap_err().to_string();
    assert!(e.ends_with("row 1 of the batch: currency is empty"), "{e}");
    let good = b.slice(0, 1);
    let out = Eod.map(good, &ctx()).unwrap();
    assert_eq!(decimals(&out, "net"), [-100]);
}

#[test]
fn wrong_column_types_are_refused_clearly() {
    let b = batch(&[(
        Some("T1"),
        Some("ACC1"),
        Some("DEBIT"),
        Some(100),
        Some("USD"),
    )]);
    let mut columns = b.columns().to_vec();
    let mut fields: Vec<Field> = b
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    columns[5] = Arc::new(arrow_array::Float64Array::from(vec![1.0]));
    fields[5] = Field::new("amount", DataType::Float64, true);
    let b = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
    let e = Eod.map(b, &ctx()).unwrap_err();
    assert!(
        e.is_invalid_input(),
        "a column of the wrong type fails every attempt"
    );
    let e = e.message();
    assert_eq!(
        e,
        "eod: column amount is Float64, expected Decimal128(18, 2)"
    );
}

#[test]
fn an_empty_batch_maps_to_an_empty_batch() {
    let out = Eod.map(batch(&[]), &ctx()).unwrap();
    assert_eq!((out.num_rows(), out.num_columns()), (0, 7));
}

#[test]
fn describes_the_eod_aggregates() {
    let d = Eod.describe();
    assert_eq!(d.key_columns, ["account_id", "txn_date", "currency"]);
    let sluice_sdk::ReduceKind::Aggregate(aggs) = d.reduce else {
        panic!("eod aggregates");
    };
    let outputs: Vec<_> = aggs.iter().map(|a| a.output.as_str()).collect();
    assert_eq!(
        outputs,
        [
            "txn_count",
            "debit_total",
            "credit_total",
            "net",
            "min_amount",
            "max_amount"
        ]
    );
    assert_eq!(input_schema().fields().len(), 9);
}
