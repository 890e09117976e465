//! `sluice-eod-gen`: writes bank transactions as CSV for the EOD example.
//!
//! ```text
//! sluice-eod-gen --rows 10_000_000 --seed 42 --out txns.csv
//! sluice-eod-gen --rows 100_000 --seed 42 --recon DIR    # DIR/ledger.csv, DIR/statement.csv
//! ```

use std::fs::File;
use std::io::{self, Write};
use std::process::ExitCode;

use sluice_datagen::args::{ArgError, Options};
use sluice_datagen::write_eod_csv;

const USAGE: &str = "usage: sluice-eod-gen --rows N --seed S [--out FILE | --recon DIR]

Writes N bank transactions as CSV (with a header) to FILE, or to standard output.
With --recon, writes N transactions as DIR/ledger.csv and DIR/statement.csv for the
reconcile example, with about 1 in 50 of each kind of difference, and prints how many
transactions of each status a reconciliation must find.
The same N and S always give the same bytes.";

fn main() -> ExitCode {
    let (rows, seed, out, recon) = match parse() {
        Ok(v) => v,
        Err(ArgError::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(ArgError::Usage(m)) => {
            eprintln!("sluice-eod-gen: {m}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Some(dir) = recon {
        return match sluice_datagen::recon::write_recon_files(
            std::path::Path::new(&dir),
            rows,
            seed,
        ) {
            Ok(files) => {
                for (status, n) in &files.expected {
                    println!("{status}\t{n}");
                }
                eprintln!(
                    "wrote {} and {}",
                    files.ledger.display(),
                    files.statement.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("sluice-eod-gen: writing {dir}: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let result = match &out {
        Some(path) => File::create(path).and_then(|f| write_eod_csv(f, rows, seed)),
        None => write_eod_csv(io::stdout().lock(), rows, seed),
    };
    match result {
        Ok(bytes) => {
            if let Some(path) = &out {
                eprintln!("wrote {rows} rows ({bytes} bytes) to {path}");
            }
            ExitCode::SUCCESS
        }
        // A closed pipe (`| head`) is the reader saying it has enough, not a failure.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            let target = out.as_deref().unwrap_or("standard output");
            let _ = writeln!(io::stderr(), "sluice-eod-gen: writing {target}: {e}");
            ExitCode::FAILURE
        }
    }
}

type Parsed = (u64, u64, Option<String>, Option<String>);

fn parse() -> Result<Parsed, ArgError> {
    let opts = Options::parse(std::env::args().skip(1), &["rows", "seed", "out", "recon"])?;
    let rows = opts.u64("rows", None)?;
    let seed = opts.u64("seed", None)?;
    let (out, recon) = (opts.get("out"), opts.get("recon"));
    if out.is_some() && recon.is_some() {
        return Err(ArgError::Usage("give --out or --recon, not both".into()));
    }
    Ok((
        rows,
        seed,
        out.map(str::to_string),
        recon.map(str::to_string),
    ))
}
