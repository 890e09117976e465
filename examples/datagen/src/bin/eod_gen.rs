//! `sluice-eod-gen`: writes bank transactions as CSV for the EOD example.
//!
//! ```text
//! sluice-eod-gen --rows 10_000_000 --seed 42 --out txns.csv
//! ```

use std::fs::File;
use std::io::{self, Write};
use std::process::ExitCode;

use sluice_datagen::args::{ArgError, Options};
use sluice_datagen::write_eod_csv;

const USAGE: &str = "usage: sluice-eod-gen --rows N --seed S [--out FILE]

Writes N bank transactions as CSV (with a header) to FILE, or to standard output.
The same N and S always give the same bytes.";

fn main() -> ExitCode {
    let (rows, seed, out) = match parse() {
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

fn parse() -> Result<(u64, u64, Option<String>), ArgError> {
    let opts = Options::parse(std::env::args().skip(1), &["rows", "seed", "out"])?;
    let rows = opts.u64("rows", None)?;
    let seed = opts.u64("seed", None)?;
    Ok((rows, seed, opts.get("out").map(str::to_string)))
}
