//! `sluice-text-gen`: writes English-like text for the word count example.
//!
//! ```text
//! sluice-text-gen --bytes 1_073_741_824 --seed 42 --vocabulary 500_000 --out words.txt
//! ```

use std::fs::File;
use std::io::{self, Write};
use std::process::ExitCode;

use sluice_datagen::args::{ArgError, Options};
use sluice_datagen::write_text;

/// Distinct words when `--vocabulary` is not given.
const DEFAULT_VOCABULARY: u64 = 500_000;

const USAGE: &str = "usage: sluice-text-gen --bytes N --seed S [--vocabulary V] [--out FILE]

Writes text lines to FILE, or to standard output, stopping at the end of the line that
reaches N bytes. Words come from V distinct words (default 500000) with a Zipf skew.
The same N, S and V always give the same bytes.";

struct Args {
    bytes: u64,
    seed: u64,
    vocabulary: u32,
    out: Option<String>,
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(v) => v,
        Err(ArgError::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(ArgError::Usage(m)) => {
            eprintln!("sluice-text-gen: {m}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match &args.out {
        Some(path) => {
            File::create(path).and_then(|f| write_text(f, args.bytes, args.seed, args.vocabulary))
        }
        None => write_text(io::stdout().lock(), args.bytes, args.seed, args.vocabulary),
    };
    match result {
        Ok(bytes) => {
            if let Some(path) = &args.out {
                eprintln!("wrote {bytes} bytes to {path}");
            }
            ExitCode::SUCCESS
        }
        // A closed pipe (`| head`) is the reader saying it has enough, not a failure.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            let target = args.out.as_deref().unwrap_or("standard output");
            let _ = writeln!(io::stderr(), "sluice-text-gen: writing {target}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse() -> Result<Args, ArgError> {
    let opts = Options::parse(
        std::env::args().skip(1),
        &["bytes", "seed", "vocabulary", "out"],
    )?;
    let vocabulary = opts.u64("vocabulary", Some(DEFAULT_VOCABULARY))?;
    let vocabulary = match u32::try_from(vocabulary) {
        Ok(v) if v > 0 => v,
        _ => {
            return Err(ArgError::Usage(format!(
                "--vocabulary must be between 1 and {}",
                u32::MAX
            )));
        }
    };
    Ok(Args {
        bytes: opts.u64("bytes", None)?,
        seed: opts.u64("seed", None)?,
        vocabulary,
        out: opts.get("out").map(str::to_string),
    })
}
