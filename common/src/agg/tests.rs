//! The aggregator against independent references: grouping, partial then final, nulls,
//! overflow and group order.

use super::*;
use arrow::array::UInt32Array;
use arrow::array::{
    Array, AsArray, BooleanArray, Date32Array, Decimal128Array, Int32Array, LargeStringArray,
    StringArray,
};
use arrow::datatypes::{DataType, Decimal128Type, Int64Type};
use std::collections::BTreeMap;

/// Keys of several types with nulls, grouped in two batches, against a `BTreeMap`
/// (whose `Option` order is the promised one: nulls first).
#[test]
fn typed_keys_group_and_sort_like_a_btreemap() {
    type Key = (Option<String>, Option<i32>, Option<i128>, Option<bool>);
    let schema = Arc::new(Schema::new(vec![
        Field::new("s", DataType::LargeUtf8, true),
        Field::new("d", DataType::Date32, true),
        Field::new("m", DataType::Decimal128(18, 2), true),
        Field::new("b", DataType::Boolean, true),
    ]));
    let mut rng = 12345u64;
    let mut next = move |n: u64| {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (rng >> 33) % n
    };
    let mut expected: BTreeMap<Key, i64> = BTreeMap::new();
    let keys: Vec<String> = ["s", "d", "m", "b"].map(String::from).to_vec();
    let mut agg =
        HashAggregator::new(&schema, &keys, &[Aggregate::count("c")], AggMode::Partial).unwrap();
    for _ in 0..2 {
        let rows: Vec<Key> = (0..500)
            .map(|_| {
                let s =
                    (next(5) > 0).then(|| ["", "a", "ab", "b", "é"][next(5) as usize].to_string());
                let d = (next(5) > 0).then(|| next(3) as i32 - 1);
                let m = (next(5) > 0).then(|| next(3) as i128 * 1_000_000_000_000_000_000 - 1);
                let b = (next(5) > 0).then(|| next(2) == 1);
                (s, d, m, b)
            })
            .collect();
        for r in &rows {
            *expected.entry(r.clone()).or_default() += 1;
        }
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(
                    rows.iter()
                        .map(|r| r.0.clone())
                        .collect::<LargeStringArray>(),
                ),
                Arc::new(rows.iter().map(|r| r.1).collect::<Date32Array>()),
                Arc::new(
                    rows.iter()
                        .map(|r| r.2)
                        .collect::<Decimal128Array>()
                        .with_precision_and_scale(18, 2)
                        .unwrap(),
                ),
                Arc::new(rows.iter().map(|r| r.3).collect::<BooleanArray>()),
            ],
        )
        .unwrap();
        agg.update(&batch).unwrap();
    }
    let out = agg.take_sorted().unwrap().unwrap();
    assert_eq!(out.schema().field(0).data_type(), &DataType::LargeUtf8);
    let s = out.column(0).as_string::<i64>();
    let d = out.column(1).as_primitive::<arrow::datatypes::Date32Type>();
    let m = out.column(2).as_primitive::<Decimal128Type>();
    let b = out.column(3).as_boolean();
    let c = out.column(4).as_primitive::<Int64Type>();
    let got: Vec<(Key, i64)> = (0..out.num_rows())
        .map(|i| {
            let key = (
                s.is_valid(i).then(|| s.value(i).to_string()),
                d.is_valid(i).then(|| d.value(i)),
                m.is_valid(i).then(|| m.value(i)),
                b.is_valid(i).then(|| b.value(i)),
            );
            (key, c.value(i))
        })
        .collect();
    assert_eq!(got, expected.into_iter().collect::<Vec<_>>());
}

fn batch(words: &[&str], amounts: &[i128]) -> RecordBatch {
    let schema = Schema::new(vec![
        Field::new("w", DataType::Utf8, false),
        Field::new("amount", DataType::Decimal128(18, 2), false),
        Field::new("n", DataType::Int32, false),
    ]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(StringArray::from(words.to_vec())),
            Arc::new(
                Decimal128Array::from(amounts.to_vec())
                    .with_precision_and_scale(18, 2)
                    .unwrap(),
            ),
            Arc::new(Int32Array::from(vec![1; words.len()])),
        ],
    )
    .unwrap()
}

fn aggs() -> Vec<Aggregate> {
    vec![
        Aggregate::count("c"),
        Aggregate::sum("total", "amount"),
        Aggregate::min("lo", "amount"),
        Aggregate::max("hi", "w"),
        Aggregate::sum("ns", "n"),
    ]
}

/// The final aggregation of `parts` (partials or map output rows), grouped by `w`.
fn final_of(parts: &[RecordBatch], aggs: &[Aggregate]) -> RecordBatch {
    let keys = ["w".to_string()];
    let mut fin = HashAggregator::new(&parts[0].schema(), &keys, aggs, AggMode::Final).unwrap();
    for p in parts {
        fin.update(p).unwrap();
    }
    fin.take_sorted().unwrap().unwrap()
}

#[test]
fn partial_then_final_equals_one_pass() {
    let keys = vec!["w".to_string()];
    let b1 = batch(&["b", "a", "b"], &[100, 250, 1]);
    let b2 = batch(&["a", "c"], &[5, 7]);
    let mut p1 = HashAggregator::new(&b1.schema(), &keys, &aggs(), AggMode::Partial).unwrap();
    p1.update(&b1).unwrap();
    let part1 = p1.take_sorted().unwrap().unwrap();
    let mut p2 = HashAggregator::new(&b2.schema(), &keys, &aggs(), AggMode::Partial).unwrap();
    p2.update(&b2).unwrap();
    let part2 = p2.take_sorted().unwrap().unwrap();
    let mut fin = HashAggregator::new(&part1.schema(), &keys, &aggs(), AggMode::Final).unwrap();
    fin.update(&part1).unwrap();
    fin.update(&part2).unwrap();
    let out = fin.take_sorted().unwrap().unwrap();
    assert_eq!(
        out.schema().field(2).data_type(),
        &DataType::Decimal128(38, 2)
    );
    let w = out.column(0).as_string::<i32>();
    assert_eq!(w.iter().flatten().collect::<Vec<_>>(), vec!["a", "b", "c"]);
    let c = out.column(1).as_primitive::<Int64Type>();
    assert_eq!(c.values().to_vec(), vec![2, 2, 1]);
    let total = out.column(2).as_primitive::<Decimal128Type>();
    assert_eq!(total.values().to_vec(), vec![255, 101, 7]);
    let lo = out.column(3).as_primitive::<Decimal128Type>();
    assert_eq!(lo.values().to_vec(), vec![5, 1, 7]);
    assert_eq!(
        out.column(5).as_primitive::<Int64Type>().values().to_vec(),
        vec![2, 2, 1]
    );
    assert_eq!(fin.groups(), 0, "take_sorted empties the aggregator");
}

#[test]
fn rows_as_their_own_partials_merge_to_the_same_result() {
    let keys = vec!["w".to_string()];
    let b1 = batch(&["b", "a", "b"], &[100, 250, 1]);
    let b2 = batch(&["a", "c"], &[5, 7]);
    let mut grouped = HashAggregator::new(&b1.schema(), &keys, &aggs(), AggMode::Partial).unwrap();
    grouped.update(&b1).unwrap();
    grouped.update(&b2).unwrap();
    let via_groups = final_of(&[grouped.take_sorted().unwrap().unwrap()], &aggs());
    // One batch grouped, the other passed through row by row: the adaptive combiner's mix.
    let mut mixed = HashAggregator::new(&b1.schema(), &keys, &aggs(), AggMode::Partial).unwrap();
    mixed.update(&b1).unwrap();
    let rows = mixed.partial_state(&b2).unwrap();
    assert_eq!(rows.num_rows(), 2);
    assert_eq!(rows.schema(), mixed.output_schema());
    let via_rows = final_of(&[mixed.take_sorted().unwrap().unwrap(), rows], &aggs());
    assert_eq!(via_rows, via_groups);
}

/// Rows of `w` keys with a nullable float, a nullable date and a decimal of `scale`.
fn wide_batch(words: &[&str], x: &[Option<f32>], d: &[Option<i32>], scale: i8) -> RecordBatch {
    let schema = Schema::new(vec![
        Field::new("w", DataType::Utf8, false),
        Field::new("x", DataType::Float32, true),
        Field::new("d", DataType::Date32, true),
        Field::new("amount", DataType::Decimal128(18, scale), false),
    ]);
    let amounts: Vec<i128> = (0..words.len() as i128).map(|i| i * 7 - 3).collect();
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(StringArray::from(words.to_vec())),
            Arc::new(arrow::array::Float32Array::from(x.to_vec())),
            Arc::new(Date32Array::from(d.to_vec())),
            Arc::new(
                Decimal128Array::from(amounts)
                    .with_precision_and_scale(18, scale)
                    .unwrap(),
            ),
        ],
    )
    .unwrap()
}

fn wide_aggs() -> Vec<Aggregate> {
    vec![
        Aggregate::count("rows"),
        Aggregate {
            output: "xs".into(),
            func: sluice_sdk::AggFunc::Count,
            input: Some("x".into()),
        },
        Aggregate::sum("x_total", "x"),
        Aggregate::min("x_lo", "x"),
        Aggregate::max("last_day", "d"),
        Aggregate::sum("total", "amount"),
        Aggregate::max("top", "amount"),
        Aggregate::min("first_w", "w"),
    ]
}

/// Map output rows sent as they are (marked) fold at the reducer into the groups that
/// partials of other maps made, to the same result as partials of every row, whichever
/// kind of batch the reducer sees first: counts of rows and of a column with nulls, float
/// sums and minimums, dates, decimals and strings.
#[test]
fn map_output_rows_and_partials_fold_alike() {
    let keys = vec!["w".to_string()];
    let b1 = wide_batch(
        &["b", "a", "b", "c"],
        &[Some(1.5), None, Some(-2.0), None],
        &[Some(3), Some(1), None, None],
        2,
    );
    let b2 = wide_batch(
        &["a", "c", "c", "d"],
        &[Some(4.0), None, Some(0.25), None],
        &[None, Some(9), Some(2), None],
        2,
    );
    let partial = |b: &RecordBatch| {
        let mut p =
            HashAggregator::new(&b.schema(), &keys, &wide_aggs(), AggMode::Partial).unwrap();
        p.update(b).unwrap();
        p.take_unsorted().unwrap().unwrap()
    };
    let reference = final_of(&[partial(&b1), partial(&b2)], &wide_aggs());
    let (m1, m2) = (mark_map_rows(&b1).unwrap(), mark_map_rows(&b2).unwrap());
    assert!(is_map_rows(&m1.schema()) && !is_map_rows(&b1.schema()));
    assert_eq!(
        final_of(&[partial(&b1), m2.clone()], &wide_aggs()),
        reference
    );
    assert_eq!(
        final_of(&[m1.clone(), partial(&b2)], &wide_aggs()),
        reference
    );
    assert_eq!(final_of(&[m1.clone(), m2], &wide_aggs()), reference);
    // Independent figures: groups a, b, c, d.
    let col = |name: &str| {
        reference
            .column(reference.schema().index_of(name).unwrap())
            .clone()
    };
    assert_eq!(
        col("rows").as_primitive::<Int64Type>().values(),
        &[2, 2, 3, 1]
    );
    assert_eq!(
        col("xs").as_primitive::<Int64Type>().values(),
        &[1, 2, 1, 0]
    );
    let x_total = col("x_total");
    let x_total = x_total.as_primitive::<arrow::datatypes::Float64Type>();
    assert_eq!(x_total.value(1), -0.5);
    assert!(x_total.is_null(3), "a group without values sums to null");
    let last_day = col("last_day");
    let last_day = last_day.as_primitive::<arrow::datatypes::Date32Type>();
    assert_eq!((last_day.value(0), last_day.value(2)), (1, 9));

    // Map output rows whose decimal has another scale than the partials' are refused,
    // naming the aggregate, whichever came first: folded, they would add unscaled values.
    let other = mark_map_rows(&wide_batch(&["a"], &[None], &[None], 3)).unwrap();
    for first in [partial(&b1), m1] {
        let mut fin =
            HashAggregator::new(&first.schema(), &keys, &wide_aggs(), AggMode::Final).unwrap();
        fin.update(&first).unwrap();
        let err = fin.update(&other).unwrap_err();
        assert!(err.to_string().contains("total"), "{err}");
    }
}

#[test]
fn sums_refuse_overflow_and_groups_without_values_are_null() {
    use arrow::array::Int64Array;
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Utf8, false),
        Field::new("v", DataType::Int64, true),
    ]));
    let keys = vec!["k".to_string()];
    let aggs = vec![Aggregate::sum("s", "v"), Aggregate::max("m", "v")];
    let b = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec!["a", "b", "a"])),
            Arc::new(Int64Array::from(vec![Some(1), None, Some(5)])),
        ],
    )
    .unwrap();
    let mut agg = HashAggregator::new(&schema, &keys, &aggs, AggMode::Partial).unwrap();
    agg.update(&b).unwrap();
    let out = agg.take_sorted().unwrap().unwrap();
    let s = out.column(1).as_primitive::<Int64Type>();
    assert_eq!((s.value(0), s.is_null(1)), (6, true), "b saw only a null");
    let m = out.column(2).as_primitive::<Int64Type>();
    assert_eq!((m.value(0), m.is_null(1)), (5, true));
    let big = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec!["a", "a"])),
            Arc::new(Int64Array::from(vec![i64::MAX, 1])),
        ],
    )
    .unwrap();
    let mut agg = HashAggregator::new(&schema, &keys, &aggs, AggMode::Partial).unwrap();
    let err = agg.update(&big).unwrap_err();
    assert!(err.to_string().contains("aggregate s overflows"), "{err}");
}

#[test]
fn decimal_sums_past_38_digits_are_an_error() {
    use super::acc::add_decimal38;
    let max = 10_i128.pow(38) - 1;
    assert_eq!(add_decimal38(max - 1, 1), Some(max));
    assert_eq!(add_decimal38(max, 1), None, "fits an i128, not 38 digits");
    assert_eq!(add_decimal38(-max, -1), None);
    assert_eq!(add_decimal38(i128::MAX, 1), None);
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Utf8, false),
        Field::new("v", DataType::Decimal128(38, 2), false),
    ]));
    let b = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec!["a", "a"])),
            Arc::new(
                arrow::array::Decimal128Array::from(vec![max, 1])
                    .with_precision_and_scale(38, 2)
                    .unwrap(),
            ),
        ],
    )
    .unwrap();
    let aggs = vec![Aggregate::sum("total", "v")];
    let mut agg =
        HashAggregator::new(&schema, &["k".to_string()], &aggs, AggMode::Partial).unwrap();
    let err = agg.update(&b).unwrap_err().to_string();
    assert!(
        err.contains("total overflows") && err.contains("38 digits"),
        "{err}"
    );
}

#[test]
fn missing_input_column_is_named() {
    let b = batch(&["a"], &[1]);
    let bad = vec![Aggregate::sum("x", "nope")];
    let err = HashAggregator::new(&b.schema(), &["w".into()], &bad, AggMode::Partial)
        .err()
        .unwrap();
    assert!(err.to_string().contains("\"nope\""), "{err}");
}

/// Batches longer than a fold's chunk, with nulls past the first chunk, in several
/// aggregates sharing a row: the same as folding each row into a `BTreeMap`.
#[test]
fn chunked_folds_match_a_row_by_row_reference() {
    use arrow::array::Int64Array;

    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, false),
        Field::new("v", DataType::Int64, true),
        Field::new("d", DataType::Decimal128(18, 2), true),
        Field::new("s", DataType::Utf8, true),
    ]));
    let aggs = [
        Aggregate::count("n"),
        Aggregate::sum("sv", "v"),
        Aggregate::max("mv", "v"),
        Aggregate::sum("sd", "d"),
        Aggregate::min("md", "d"),
        Aggregate::min("ms", "s"),
    ];
    let mut agg =
        HashAggregator::new(&schema, &["k".to_string()], &aggs, AggMode::Partial).unwrap();
    // Per key: count, sum and max of v, sum and min of d, min of s (None: no value).
    type Expected = (
        i64,
        Option<i64>,
        Option<i64>,
        Option<i128>,
        Option<i128>,
        Option<String>,
    );
    let mut expected: BTreeMap<i64, Expected> = BTreeMap::new();
    for b in 0..3i64 {
        let rows = 1000 + b as usize;
        let k: Vec<i64> = (0..rows as i64).map(|i| (i * 7 + b) % 97).collect();
        let v: Vec<Option<i64>> = (0..rows as i64)
            .map(|i| (i % 5 != 3).then_some(i - 400))
            .collect();
        let d: Vec<Option<i128>> = (0..rows as i128)
            .map(|i| (i % 3 != 0 && i > 300).then_some(i * 11 - 5000))
            .collect();
        let s: Vec<Option<String>> = (0..rows)
            .map(|i| (i % 4 == 1).then(|| format!("w{}", (i * 13) % 50)))
            .collect();
        for i in 0..rows {
            let e = expected.entry(k[i]).or_default();
            e.0 += 1;
            if let Some(x) = v[i] {
                e.1 = Some(e.1.unwrap_or(0) + x);
                e.2 = Some(e.2.map_or(x, |m| m.max(x)));
            }
            if let Some(x) = d[i] {
                e.3 = Some(e.3.unwrap_or(0) + x);
                e.4 = Some(e.4.map_or(x, |m| m.min(x)));
            }
            if let Some(x) = &s[i] {
                e.5 = Some(e.5.take().map_or(x.clone(), |m| m.min(x.clone())));
            }
        }
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(k)),
                Arc::new(Int64Array::from(v)),
                Arc::new(
                    Decimal128Array::from(d)
                        .with_precision_and_scale(18, 2)
                        .unwrap(),
                ),
                Arc::new(StringArray::from(s)),
            ],
        )
        .unwrap();
        agg.update(&batch).unwrap();
    }
    let out = agg.take_sorted().unwrap().unwrap();
    let int = |c: usize| out.column(c).as_primitive::<Int64Type>().clone();
    let dec = |c: usize| out.column(c).as_primitive::<Decimal128Type>().clone();
    let (k, n, sv, mv) = (int(0), int(1), int(2), int(3));
    let (sd, md) = (dec(4), dec(5));
    let ms = out.column(6).as_string::<i32>();
    let got: BTreeMap<i64, Expected> = (0..out.num_rows())
        .map(|i| {
            let opt_i = |a: &Int64Array| a.is_valid(i).then(|| a.value(i));
            let opt_d = |a: &Decimal128Array| a.is_valid(i).then(|| a.value(i));
            let row = (
                n.value(i),
                opt_i(&sv),
                opt_i(&mv),
                opt_d(&sd),
                opt_d(&md),
                ms.is_valid(i).then(|| ms.value(i).to_string()),
            );
            (k.value(i), row)
        })
        .collect();
    assert_eq!(got, expected);
}

/// Partials a reducer groups again come in the order their groups were first seen, with
/// the values the sorted take gives.
#[test]
fn unsorted_groups_come_in_the_order_first_seen() {
    let keys = vec!["w".to_string()];
    let input = batch(&["b", "a", "b", "c", "a"], &[1, 2, 3, 4, 5]);
    let mut agg = HashAggregator::new(&input.schema(), &keys, &aggs(), AggMode::Partial).unwrap();
    agg.update(&input).unwrap();
    let unsorted = agg.take_unsorted().unwrap().unwrap();
    assert_eq!(agg.groups(), 0, "the take empties the aggregator");
    let w = unsorted.column(0).as_string::<i32>();
    assert_eq!(w.iter().flatten().collect::<Vec<_>>(), vec!["b", "a", "c"]);
    let total = unsorted.column(2).as_primitive::<Decimal128Type>();
    assert_eq!(total.values(), &[4, 7, 4]);
    agg.update(&input).unwrap();
    let sorted = agg.take_sorted().unwrap().unwrap();
    let order = UInt32Array::from(vec![1, 0, 2]);
    let columns = unsorted
        .columns()
        .iter()
        .map(|c| arrow::compute::take(c, &order, None).unwrap())
        .collect();
    assert_eq!(
        RecordBatch::try_new(unsorted.schema(), columns).unwrap(),
        sorted
    );
}

/// Drained a few groups at a time, the groups come in the same order and with the same
/// values as in one sorted batch, in batches of exactly that many groups but the last.
#[test]
fn drained_batches_are_the_sorted_take_cut_in_pieces() {
    let keys = vec!["w".to_string()];
    let words = ["k", "b", "a", "j", "c", "a", "h", "d", "k", "e", "g", "f"];
    let input = batch(&words, &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    let mut agg = HashAggregator::new(&input.schema(), &keys, &aggs(), AggMode::Partial).unwrap();
    agg.update(&input).unwrap();
    let whole = agg.take_sorted().unwrap().unwrap();
    assert_eq!(whole.num_rows(), 10);
    agg.update(&input).unwrap();
    let mut pieces = Vec::new();
    agg.drain_sorted(4, |b| {
        pieces.push(b);
        Ok(())
    })
    .unwrap();
    assert_eq!(agg.groups(), 0, "the drain empties the aggregator");
    let sizes: Vec<usize> = pieces.iter().map(RecordBatch::num_rows).collect();
    assert_eq!(sizes, [4, 4, 2]);
    let joined = arrow::compute::concat_batches(&whole.schema(), &pieces).unwrap();
    assert_eq!(joined, whole);
    agg.drain_sorted(4, |_| panic!("no groups, no batch"))
        .unwrap();
}
