//! A ledger and a bank statement for reconciliation (`examples/reconcile`), with a known
//! number of each kind of difference.
//!
//! Both files are CSV with the header `txn_id,account_id,txn_date,amount,currency`. Every
//! transaction is in the ledger; the statement holds the same ones except: some amounts
//! differ by a few cents, some are missing from the statement, some are only in the
//! statement, and some transactions appear twice in the ledger or twice in the statement.

use std::collections::BTreeMap;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::rng::SplitMix64;

/// The files written and how many transactions of each status a reconciliation must find.
#[derive(Debug, Clone)]
pub struct ReconFiles {
    /// `ledger.csv`.
    pub ledger: PathBuf,
    /// `statement.csv`.
    pub statement: PathBuf,
    /// Transactions per status (`matched`, `amount_mismatch`, `missing_in_statement`,
    /// `missing_in_ledger`, `duplicate_in_ledger`, `duplicate_in_statement`).
    pub expected: BTreeMap<&'static str, u64>,
}

/// What happens to one transaction between the ledger and the statement.
#[derive(Clone, Copy)]
enum Fate {
    Matched,
    AmountMismatch,
    MissingInStatement,
    MissingInLedger,
    DuplicateInLedger,
    DuplicateInStatement,
}

impl Fate {
    fn status(self) -> &'static str {
        match self {
            Fate::Matched => "matched",
            Fate::AmountMismatch => "amount_mismatch",
            Fate::MissingInStatement => "missing_in_statement",
            Fate::MissingInLedger => "missing_in_ledger",
            Fate::DuplicateInLedger => "duplicate_in_ledger",
            Fate::DuplicateInStatement => "duplicate_in_statement",
        }
    }
}

/// Writes `txns` transactions into `dir/ledger.csv` and `dir/statement.csv`: about 1 in 50
/// of each kind of difference, the rest matched.
pub fn write_recon_files(dir: &Path, txns: u64, seed: u64) -> io::Result<ReconFiles> {
    std::fs::create_dir_all(dir)?;
    let ledger = dir.join("ledger.csv");
    let statement = dir.join("statement.csv");
    let mut l = BufWriter::new(std::fs::File::create(&ledger)?);
    let mut s = BufWriter::new(std::fs::File::create(&statement)?);
    const HEADER: &str = "txn_id,account_id,txn_date,amount,currency\n";
    l.write_all(HEADER.as_bytes())?;
    s.write_all(HEADER.as_bytes())?;
    let mut rng = SplitMix64::new(seed);
    let mut expected: BTreeMap<&'static str, u64> = BTreeMap::new();
    let fates = [
        Fate::AmountMismatch,
        Fate::MissingInStatement,
        Fate::MissingInLedger,
        Fate::DuplicateInLedger,
        Fate::DuplicateInStatement,
    ];
    for i in 0..txns {
        let fate = match rng.below(50) {
            k @ 0..=4 => fates[k as usize],
            _ => Fate::Matched,
        };
        *expected.entry(fate.status()).or_default() += 1;
        let cents = 1 + rng.below(500_000) as i64;
        let line = |cents: i64| {
            format!(
                "T{i:010},ACC{:05},2026-11-{:02},{}.{:02},{}\n",
                rng_account(seed, i),
                1 + i % 28,
                cents / 100,
                cents % 100,
                ["USD", "EUR", "GBP"][(i % 3) as usize]
            )
        };
        let (in_ledger, in_statement, statement_cents) = match fate {
            Fate::Matched => (1, 1, cents),
            Fate::AmountMismatch => (1, 1, cents + 1 + rng.below(99) as i64),
            Fate::MissingInStatement => (1, 0, cents),
            Fate::MissingInLedger => (0, 1, cents),
            Fate::DuplicateInLedger => (2, 1, cents),
            Fate::DuplicateInStatement => (1, 2, cents),
        };
        for _ in 0..in_ledger {
            l.write_all(line(cents).as_bytes())?;
        }
        for _ in 0..in_statement {
            s.write_all(line(statement_cents).as_bytes())?;
        }
    }
    l.flush()?;
    s.flush()?;
    Ok(ReconFiles {
        ledger,
        statement,
        expected,
    })
}

/// A transaction's account, from the seed and its number.
fn rng_account(seed: u64, i: u64) -> u64 {
    crate::rng::mix64(seed ^ i) % 10_000
}
