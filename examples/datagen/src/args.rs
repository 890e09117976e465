//! Argument parsing for the generator binaries, by hand to keep the crate dependency-free.
//!
//! Accepts `--name value` and `--name=value`; numbers may use `_` as a digit separator
//! (`--rows 10_000_000`). Errors are messages for a human; the binaries print them with the
//! usage and exit with code 2, the convention for usage errors.

use std::collections::BTreeMap;
use std::fmt;

/// What went wrong with the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgError {
    /// `--help` or `-h` was given: print the usage and exit successfully.
    Help,
    /// The arguments are wrong; the message says how.
    Usage(String),
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgError::Help => f.write_str("help requested"),
            ArgError::Usage(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for ArgError {}

/// Parsed `--name value` options.
#[derive(Debug, Default)]
pub struct Options {
    values: BTreeMap<String, String>,
}

impl Options {
    /// Parses `args` (without the program name), accepting only the option names in
    /// `known` (without their `--`). Every option takes a value and may be given once.
    pub fn parse<I>(args: I, known: &[&str]) -> Result<Self, ArgError>
    where
        I: IntoIterator<Item = String>,
    {
        let mut values = BTreeMap::new();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            if arg == "--help" || arg == "-h" {
                return Err(ArgError::Help);
            }
            let Some(body) = arg.strip_prefix("--") else {
                return Err(ArgError::Usage(format!("unexpected argument {arg:?}")));
            };
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n.to_string(), v.to_string()),
                None => {
                    let v = args
                        .next()
                        .ok_or_else(|| ArgError::Usage(format!("--{body} needs a value")))?;
                    (body.to_string(), v)
                }
            };
            if !known.contains(&name.as_str()) {
                return Err(ArgError::Usage(format!("unknown option --{name}")));
            }
            if values.insert(name.clone(), value).is_some() {
                return Err(ArgError::Usage(format!("--{name} given twice")));
            }
        }
        Ok(Options { values })
    }

    /// The value of `--name`, if given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// `--name` as an unsigned integer; `default` when absent, an error when absent and
    /// `default` is `None`.
    pub fn u64(&self, name: &str, default: Option<u64>) -> Result<u64, ArgError> {
        match (self.get(name), default) {
            (Some(v), _) => parse_u64(v)
                .ok_or_else(|| ArgError::Usage(format!("--{name} {v:?} is not a whole number"))),
            (None, Some(d)) => Ok(d),
            (None, None) => Err(ArgError::Usage(format!("--{name} is required"))),
        }
    }
}

/// Parses a non-negative integer that may contain `_` separators.
fn parse_u64(s: &str) -> Option<u64> {
    let digits: String = s.chars().filter(|&c| c != '_').collect();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options, ArgError> {
        Options::parse(args.iter().map(|s| s.to_string()), &["rows", "seed", "out"])
    }

    #[test]
    fn both_forms_and_separators_are_accepted() {
        let o = parse(&["--rows", "10_000", "--seed=7"]).unwrap();
        assert_eq!(o.u64("rows", None), Ok(10_000));
        assert_eq!(o.u64("seed", None), Ok(7));
        assert_eq!(o.get("out"), None);
        assert_eq!(o.u64("missing", Some(3)), Ok(3));
    }

    #[test]
    fn mistakes_are_named() {
        let msg = |args: &[&str]| match parse(args) {
            Err(ArgError::Usage(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(msg(&["--rows"]).contains("--rows needs a value"));
        assert!(msg(&["--colour", "x"]).contains("unknown option --colour"));
        assert!(msg(&["rows"]).contains("unexpected argument"));
        assert!(msg(&["--seed", "1", "--seed", "2"]).contains("twice"));
        let o = parse(&["--rows", "-5"]).unwrap();
        assert!(o.u64("rows", None).is_err());
        assert!(parse(&[]).unwrap().u64("rows", None).is_err());
        assert_eq!(parse(&["-h"]).unwrap_err(), ArgError::Help);
    }
}
