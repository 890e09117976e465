//! The peers Sluice is measured against: DuckDB and Polars, run from a Python that has both.
//!
//! Each peer runs the obvious query for the workload and writes Parquet, then prints
//! `rows N` (the output's row count) so the table can show that every engine produced the
//! same number of groups.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The peer engines, in table order.
pub const PEERS: [&str; 2] = ["duckdb", "polars"];

/// Runs one workload through one peer: `python -c SCRIPT ENGINE WORKLOAD INPUT_DIR OUTPUT`.
/// EOD reads `*.csv` (header, amounts as DECIMAL(18,2)) or `*.parquet`; word count reads
/// `*.txt` as lines and counts maximal runs of letters.
pub const SCRIPT: &str = r#"
import sys
engine, workload, inp, out = sys.argv[1:5]
EOD_KEYS = ["account_id", "txn_date", "currency"]
if engine == "duckdb":
    import duckdb
    con = duckdb.connect()
    if workload == "eod-csv":
        src = (f"read_csv('{inp}/*.csv', header=true, "
               "types={'amount': 'DECIMAL(18,2)', 'txn_date': 'DATE', 'txn_id': 'VARCHAR'})")
    elif workload == "eod-parquet":
        src = f"read_parquet('{inp}/*.parquet')"
    if workload.startswith("eod"):
        q = f"""SELECT account_id, txn_date, currency, count(*) AS txn_count,
            sum(CASE WHEN txn_type = 'DEBIT' THEN amount ELSE 0 END) AS debit_total,
            sum(CASE WHEN txn_type = 'CREDIT' THEN amount ELSE 0 END) AS credit_total,
            sum(CASE WHEN txn_type = 'CREDIT' THEN amount ELSE -amount END) AS net,
            min(amount) AS min_amount, max(amount) AS max_amount
            FROM {src} GROUP BY account_id, txn_date, currency"""
    else:
        lines = (f"read_csv('{inp}/*.txt', header=false, columns={{'line': 'VARCHAR'}}, "
                 f"delim='{chr(1)}', quote='', escape='', auto_detect=false)")
        q = f"""SELECT word, count(*) AS count FROM (
            SELECT unnest(regexp_split_to_array(line, '[^\\pL]+')) AS word FROM {lines})
            WHERE word <> '' GROUP BY word"""
    con.execute(f"COPY ({q}) TO '{out}' (FORMAT parquet)")
    rows = con.execute(f"SELECT count(*) FROM read_parquet('{out}')").fetchone()[0]
elif engine == "polars":
    import polars as pl
    if workload == "eod-csv":
        df = pl.scan_csv(f"{inp}/*.csv", schema_overrides={
            "amount": pl.Decimal(18, 2), "txn_date": pl.Date, "txn_id": pl.String})
    elif workload == "eod-parquet":
        df = pl.scan_parquet(f"{inp}/*.parquet")
    if workload.startswith("eod"):
        a = pl.col("amount")
        zero = pl.lit(0).cast(pl.Decimal(18, 2))
        debit = pl.when(pl.col("txn_type") == "DEBIT").then(a).otherwise(zero)
        credit = pl.when(pl.col("txn_type") == "CREDIT").then(a).otherwise(zero)
        q = df.group_by(EOD_KEYS).agg(
            pl.len().alias("txn_count"), debit.sum().alias("debit_total"),
            credit.sum().alias("credit_total"), (credit - debit).sum().alias("net"),
            a.min().alias("min_amount"), a.max().alias("max_amount"))
    else:
        lines = pl.scan_csv(f"{inp}/*.txt", has_header=False, separator=chr(1),
                            quote_char=None, schema={"line": pl.String})
        q = (lines.select(pl.col("line").str.extract_all(r"\p{Alphabetic}+").alias("word"))
             .explode("word").drop_nulls().group_by("word").agg(pl.len().alias("count")))
    q.sink_parquet(out)
    rows = pl.scan_parquet(out).select(pl.len()).collect().item()
print(f"rows {rows}")
"#;

/// A Python with both peers importable, and their versions.
#[derive(Debug, Clone)]
pub struct PeerPython {
    /// The interpreter.
    pub python: PathBuf,
    /// `duckdb X, polars Y`.
    pub versions: String,
}

/// The versions of DuckDB and Polars `python` imports, or `None` if it cannot import both.
fn versions(python: &Path) -> Option<String> {
    let out = Command::new(python)
        .args([
            "-c",
            "import duckdb, polars; print(f'duckdb {duckdb.__version__}, polars {polars.__version__}')",
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Finds a Python with DuckDB and Polars: `explicit` (`--python`), `SLUICE_BENCH_PYTHON`,
/// then the venvs `<dir>/venv` and `./.venv`. With `install`, creates `<dir>/venv` and
/// installs both from PyPI when none is found.
pub fn find(explicit: Option<&Path>, dir: &Path, install: bool) -> Result<Option<PeerPython>> {
    if let Some(p) = explicit {
        let versions = versions(p)
            .with_context(|| format!("{} cannot import duckdb and polars", p.display()))?;
        return Ok(Some(PeerPython {
            python: p.to_path_buf(),
            versions,
        }));
    }
    let venv = dir.join("venv");
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("SLUICE_BENCH_PYTHON") {
        candidates.push(PathBuf::from(p));
    }
    candidates.push(venv.join("bin/python"));
    candidates.push(PathBuf::from(".venv/bin/python"));
    for python in candidates {
        if let Some(versions) = versions(&python) {
            return Ok(Some(PeerPython { python, versions }));
        }
    }
    if !install {
        return Ok(None);
    }
    eprintln!("installing duckdb and polars into {}", venv.display());
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .context("running python3 -m venv (is python3 installed?)")?;
    if !status.success() {
        bail!("python3 -m venv {} failed", venv.display());
    }
    let python = venv.join("bin/python");
    let status = Command::new(&python)
        .args(["-m", "pip", "install", "--quiet", "duckdb", "polars"])
        .status()
        .context("running pip")?;
    if !status.success() {
        bail!("pip install duckdb polars failed");
    }
    let versions = versions(&python).context("duckdb and polars do not import after pip")?;
    Ok(Some(PeerPython { python, versions }))
}
