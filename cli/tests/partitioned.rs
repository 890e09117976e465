//! `--partition-by`: Hive-style directories (`txn_date=2026-11-28/part-NNNNN.csv`), the
//! partition column in the directory names and not in the files. Read back with the column
//! taken from the directory names, the output equals the unpartitioned one.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;

/// EOD output partitioned by `txn_date`, read back: `(account, date, currency)` → the
/// aggregate columns, as `read_eod_csv_output` gives them.
fn read_partitioned(out: &Path) -> BTreeMap<(String, String, String), Vec<String>> {
    let mut rows = BTreeMap::new();
    let mut dirs = 0;
    for entry in std::fs::read_dir(out).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with('_') {
            continue;
        }
        let date = name
            .strip_prefix("txn_date=")
            .unwrap_or_else(|| panic!("directory {name}"))
            .to_string();
        dirs += 1;
        for part in std::fs::read_dir(&dir).unwrap() {
            let part = part.unwrap().path();
            let file = part.file_name().unwrap().to_string_lossy().into_owned();
            assert!(
                file.starts_with("part-") && file.ends_with(".csv"),
                "{file}"
            );
            let mut reader = csv::Reader::from_path(&part).unwrap();
            let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
            assert_eq!(
                header,
                [
                    "account_id",
                    "currency",
                    "txn_count",
                    "debit_total",
                    "credit_total",
                    "net",
                    "min_amount",
                    "max_amount"
                ],
                "the partition column is not in the files"
            );
            for rec in reader.records() {
                let rec = rec.unwrap();
                let key = (rec[0].to_string(), date.clone(), rec[1].to_string());
                let values = rec.iter().skip(2).map(String::from).collect();
                assert!(rows.insert(key, values).is_none(), "a key in two files");
            }
        }
    }
    assert!(dirs > 1, "one directory per date");
    rows
}

#[test]
fn eod_partitioned_by_date_reads_back_equal_to_the_unpartitioned_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("txns");
    let files = sluice_datagen::write_eod_files(&input, 20_000, 3, 11).unwrap();
    let run_eod = |out: &Path, extra: &[&str]| {
        let p = plugin("sluice_eod");
        let mut args = vec![
            "--local",
            "2",
            "--reducers",
            "3",
            "--split-size",
            "65536",
            "--format",
            "csv",
            "--output-format",
            "csv",
            "--plugin",
            p.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    let flat = dir.path().join("flat");
    assert_ok(&run_eod(&flat, &[]));
    let by_date = dir.path().join("by-date");
    assert_ok(&run_eod(&by_date, &["--partition-by", "txn_date"]));
    let expected = read_eod_csv_output(&flat);
    assert_eq!(expected, reference_eod(&files));
    assert_eq!(read_partitioned(&by_date), expected);
    // The manifest lists every file, under its directory, with the rows it holds.
    let m = manifest(&by_date);
    let listed = m["files"].as_array().unwrap();
    assert!(
        listed
            .iter()
            .all(|f| f["file"].as_str().unwrap().starts_with("txn_date="))
    );
    let rows: u64 = listed.iter().map(|f| f["rows"].as_u64().unwrap()).sum();
    assert_eq!(rows as usize, expected.len());
    assert!(!by_date.join("_temporary").exists());

    // Overwriting a partitioned output is allowed (its directories are Sluice output).
    assert_ok(&run_eod(
        &by_date,
        &["--partition-by", "txn_date", "--overwrite"],
    ));
    assert_eq!(read_partitioned(&by_date), expected);

    // A column the output lacks is refused, and the job leaves nothing.
    let bad = dir.path().join("bad");
    let stderr = assert_failed(&run_eod(&bad, &["--partition-by", "nope"]));
    assert!(stderr.contains("--partition-by nope"), "{stderr}");
    assert!(!bad.join("_SUCCESS").exists());
}
