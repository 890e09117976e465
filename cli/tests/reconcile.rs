//! `examples/reconcile` over a generated ledger and statement (two named inputs joined on
//! `txn_id` in the reduce): its output equals an independent reference, a full outer join
//! computed here, for every status, with the counts the generator planted.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;

/// `txn_id` → amounts in cents, of one CSV side.
fn side(path: &Path) -> BTreeMap<String, Vec<i128>> {
    let mut out: BTreeMap<String, Vec<i128>> = BTreeMap::new();
    let mut reader = csv::Reader::from_path(path).unwrap();
    for rec in reader.records() {
        let rec = rec.unwrap();
        let (int, frac) = rec[3].split_once('.').unwrap();
        let cents = int.parse::<i128>().unwrap() * 100 + frac.parse::<i128>().unwrap();
        out.entry(rec[0].to_string()).or_default().push(cents);
    }
    out
}

fn money(cents: Option<i128>) -> String {
    cents.map_or(String::new(), |c| format!("{}.{:02}", c / 100, c % 100))
}

/// The full outer join of both sides on `txn_id`: `txn_id` → (status, ledger amount,
/// statement amount), as the job documents them.
fn reference(ledger: &Path, statement: &Path) -> BTreeMap<String, (String, String, String)> {
    let (l, s) = (side(ledger), side(statement));
    let ids: std::collections::BTreeSet<&String> = l.keys().chain(s.keys()).collect();
    ids.into_iter()
        .map(|id| {
            let none = Vec::new();
            let (a, b) = (l.get(id).unwrap_or(&none), s.get(id).unwrap_or(&none));
            let status = if a.len() > 1 {
                "duplicate_in_ledger"
            } else if b.len() > 1 {
                "duplicate_in_statement"
            } else if b.is_empty() {
                "missing_in_statement"
            } else if a.is_empty() {
                "missing_in_ledger"
            } else if a[0] == b[0] {
                "matched"
            } else {
                "amount_mismatch"
            };
            let one = |v: &Vec<i128>| money((v.len() == 1).then(|| v[0]));
            (id.clone(), (status.to_string(), one(a), one(b)))
        })
        .collect()
}

#[test]
fn reconcile_equals_a_full_outer_join_for_every_status() {
    let dir = tempfile::tempdir().unwrap();
    let files = sluice_datagen::recon::write_recon_files(&dir.path().join("in"), 5_000, 3).unwrap();
    let expected = reference(&files.ledger, &files.statement);
    let out = dir.path().join("recon");
    let p = plugin("sluice_reconcile");
    let ledger = format!("ledger={}", files.ledger.display());
    let statement = format!("statement={}", files.statement.display());
    let result = run(&[
        "--local",
        "2",
        "--reducers",
        "3",
        "--split-size",
        "16384",
        "--format",
        "csv",
        "--output-format",
        "csv",
        "--plugin",
        p.to_str().unwrap(),
        "--input",
        &ledger,
        &statement,
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_ok(&result);
    let mut got = BTreeMap::new();
    for entry in std::fs::read_dir(&out).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "csv") {
            continue;
        }
        let mut reader = csv::Reader::from_path(&path).unwrap();
        assert_eq!(
            reader.headers().unwrap(),
            vec!["txn_id", "status", "ledger_amount", "statement_amount"]
        );
        for rec in reader.records() {
            let rec = rec.unwrap();
            let row = (rec[1].to_string(), rec[2].to_string(), rec[3].to_string());
            assert!(got.insert(rec[0].to_string(), row).is_none(), "a txn twice");
        }
    }
    assert_eq!(got, expected);
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for (status, _, _) in got.values() {
        *counts.entry(status.as_str()).or_default() += 1;
    }
    assert_eq!(
        counts, files.expected,
        "the generator's planted differences"
    );
    assert_eq!(counts.len(), 6, "every status occurs: {counts:?}");

    // Inputs not named as the job needs are refused at the first map, not retried.
    let bad = dir.path().join("bad");
    let stderr = assert_failed(&run(&[
        "--local",
        "1",
        "--format",
        "csv",
        "--plugin",
        p.to_str().unwrap(),
        "--input",
        files.ledger.to_str().unwrap(),
        "--output",
        bad.to_str().unwrap(),
    ]));
    assert!(
        stderr.contains("inputs named ledger and statement"),
        "{stderr}"
    );
}
