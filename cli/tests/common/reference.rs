//! Independent reference computations the engine's outputs are compared with.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// A word is a maximal run of alphabetic characters, case kept.
pub fn reference_word_count(texts: &[&str]) -> HashMap<String, i64> {
    let mut counts = HashMap::new();
    for t in texts {
        for w in t
            .split(|c: char| !c.is_alphabetic())
            .filter(|w| !w.is_empty())
        {
            *counts.entry(w.to_string()).or_insert(0) += 1;
        }
    }
    counts
}

/// Formats cents like the engine's Decimal128(_, 2) CSV output.
fn money(cents: i128) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", cents.abs() / 100, cents.abs() % 100)
}

fn parse_cents(s: &str) -> i128 {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    assert!(frac.len() <= 2, "amount {s} has more than 2 decimals");
    let frac = format!("{frac:0<2}");
    int.parse::<i128>().unwrap() * 100 + frac.parse::<i128>().unwrap()
}

#[derive(Default)]
struct Totals {
    count: i64,
    debit: i128,
    credit: i128,
    min: Option<i128>,
    max: Option<i128>,
}

pub fn reference_eod(
    files: &[std::path::PathBuf],
) -> BTreeMap<(String, String, String), Vec<String>> {
    let mut totals: BTreeMap<(String, String, String), Totals> = BTreeMap::new();
    for f in files {
        let mut reader = csv::Reader::from_path(f).unwrap();
        for rec in reader.records() {
            let rec = rec.unwrap();
            let key = (rec[1].to_string(), rec[2].to_string(), rec[6].to_string());
            let amount = parse_cents(&rec[5]);
            let t = totals.entry(key).or_default();
            t.count += 1;
            match &rec[4] {
                "DEBIT" => t.debit += amount,
                "CREDIT" => t.credit += amount,
                other => panic!("generator wrote txn_type {other}"),
            }
            t.min = Some(t.min.map_or(amount, |m| m.min(amount)));
            t.max = Some(t.max.map_or(amount, |m| m.max(amount)));
        }
    }
    totals
        .into_iter()
        .map(|(k, t)| {
            let row = vec![
                t.count.to_string(),
                money(t.debit),
                money(t.credit),
                money(t.credit - t.debit),
                money(t.min.unwrap()),
                money(t.max.unwrap()),
            ];
            (k, row)
        })
        .collect()
}

pub fn read_eod_csv_output(dir: &Path) -> BTreeMap<(String, String, String), Vec<String>> {
    let mut out = BTreeMap::new();
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "csv"))
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no part files in {}", dir.display());
    for p in names {
        let mut reader = csv::Reader::from_path(&p).unwrap();
        let header: Vec<String> = reader
            .headers()
            .unwrap()
            .iter()
            .map(str::to_string)
            .collect();
        assert_eq!(
            header,
            [
                "account_id",
                "txn_date",
                "currency",
                "txn_count",
                "debit_total",
                "credit_total",
                "net",
                "min_amount",
                "max_amount"
            ]
        );
        for rec in reader.records() {
            let rec = rec.unwrap();
            let key = (rec[0].to_string(), rec[1].to_string(), rec[2].to_string());
            let row = rec.iter().skip(3).map(str::to_string).collect();
            assert!(out.insert(key, row).is_none(), "group twice in output");
        }
    }
    out
}
