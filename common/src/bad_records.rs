//! Bad records: the policy a job sets for them, its limit, and the records readers set
//! aside instead of failing.
//!
//! A bad record is one a reader cannot parse into the input schema (wrong field count, a
//! value that is not a number, date or decimal of the column's type, invalid UTF-8, a
//! malformed JSON line, a line too long). What happens to it:
//! - `fail` (the default): the job fails; with `--max-bad-records N` (or `N%`) up to that
//!   many are skipped first, and the job fails naming the counts once there are more;
//! - `skip`: it is counted and left out;
//! - `quarantine`: as `skip`, and it is written to `<output>/_rejects/` with its file, line,
//!   reason and raw text, committed with the output exactly once.
//!
//! The decisions are pure functions ([`Limit::check`]) tested without a reader.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

/// What to do with a bad record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// The job fails (after [`Limit`] of them, when one is set).
    #[default]
    Fail,
    /// Counted and left out.
    Skip,
    /// Counted, left out and written to `_rejects/`.
    Quarantine,
}

impl Policy {
    /// `fail`, `skip` or `quarantine`.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Fail => "fail",
            Policy::Skip => "skip",
            Policy::Quarantine => "quarantine",
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Policy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fail" => Ok(Policy::Fail),
            "skip" => Ok(Policy::Skip),
            "quarantine" => Ok(Policy::Quarantine),
            other => Err(format!(
                "bad-record policy {other:?}: expected fail, skip or quarantine"
            )),
        }
    }
}

/// How many bad records a job tolerates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    /// At most this many.
    Count(u64),
    /// At most this percentage of the records read (good and bad), checked once every
    /// split has been read.
    Percent(f64),
}

impl Limit {
    /// The limit a job runs with: the one given, or the policy's default (none for `fail`
    /// but zero; no limit for `skip` and `quarantine`).
    pub fn effective(policy: Policy, given: Option<Limit>) -> Option<Limit> {
        match (given, policy) {
            (Some(l), _) => Some(l),
            (None, Policy::Fail) => Some(Limit::Count(0)),
            (None, Policy::Skip | Policy::Quarantine) => None,
        }
    }

    /// Whether readers must set bad records aside (rather than fail at the first): any
    /// policy but `fail` with a limit of zero.
    pub fn tolerates(policy: Policy, given: Option<Limit>) -> bool {
        Limit::effective(policy, given) != Some(Limit::Count(0))
    }

    /// Whether `bad` bad records among `records` (good and bad, when every split has been
    /// read; `None` while some are unread) stay within `limit` (`None`: no limit). A count is
    /// checked as soon as it is passed; a percentage only once `records` is known.
    pub fn check(limit: Option<Limit>, bad: u64, records: Option<u64>) -> Result<(), String> {
        match (limit, records) {
            (Some(Limit::Count(n)), _) if bad > n => Err(format!(
                "{bad} bad records, more than the {n} allowed (--max-bad-records)"
            )),
            (Some(Limit::Percent(p)), Some(total)) if total > 0 => {
                let share = bad as f64 * 100.0 / total as f64;
                if share > p {
                    Err(format!(
                        "{bad} bad records of {total} ({share:.3}%), more than the {p}% allowed \
                         (--max-bad-records)"
                    ))
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Count(n) => write!(f, "{n}"),
            Limit::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl std::str::FromStr for Limit {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad =
            || format!("--max-bad-records {s:?}: expected a count (100) or a percentage (0.5%)");
        match s.trim().strip_suffix('%') {
            Some(p) => {
                let p: f64 = p.trim().parse().map_err(|_| bad())?;
                if !(0.0..=100.0).contains(&p) {
                    return Err(format!("--max-bad-records {s:?}: a percentage is 0 to 100"));
                }
                Ok(Limit::Percent(p))
            }
            None => s.trim().parse().map(Limit::Count).map_err(|_| bad()),
        }
    }
}

/// One record a reader set aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The file or URL it came from.
    pub source: String,
    /// Its 1-based line in that file.
    pub line: u64,
    /// What kind of fault, for counting (`wrong field count`, `bad value in column amount`).
    pub kind: String,
    /// The full reason.
    pub reason: String,
    /// The record as read (only kept when it will be quarantined).
    pub record: Option<String>,
}

/// Where a split's readers put the records they set aside; cheap to clone, shared by the
/// readers of one map attempt.
#[derive(Debug, Clone)]
pub struct RejectSink {
    inner: Arc<Mutex<Vec<Rejected>>>,
    keep_records: bool,
}

impl RejectSink {
    /// A sink; `keep_records` when the raw records will be quarantined.
    pub fn new(keep_records: bool) -> Self {
        RejectSink {
            inner: Arc::default(),
            keep_records,
        }
    }

    /// Whether readers should capture each record's raw text.
    pub fn keeps_records(&self) -> bool {
        self.keep_records
    }

    /// Sets `r` aside.
    pub fn push(&self, r: Rejected) {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).push(r);
    }

    /// Everything set aside so far, emptying the sink.
    pub fn take(&self) -> Vec<Rejected> {
        std::mem::take(&mut *self.inner.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Counts by kind of the records in `rejected`.
pub fn count_by_kind(rejected: &[Rejected]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for r in rejected {
        *counts.entry(r.kind.clone()).or_default() += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_and_default_by_policy() {
        assert_eq!("12".parse::<Limit>(), Ok(Limit::Count(12)));
        assert_eq!("0.5%".parse::<Limit>(), Ok(Limit::Percent(0.5)));
        assert!("-1".parse::<Limit>().is_err());
        assert!("101%".parse::<Limit>().is_err());
        assert!("lots".parse::<Limit>().is_err());
        assert_eq!(Limit::effective(Policy::Fail, None), Some(Limit::Count(0)));
        assert_eq!(Limit::effective(Policy::Skip, None), None);
        assert!(!Limit::tolerates(Policy::Fail, None));
        assert!(Limit::tolerates(Policy::Fail, Some(Limit::Count(3))));
        assert!(Limit::tolerates(Policy::Quarantine, None));
        assert!(!Limit::tolerates(Policy::Skip, Some(Limit::Count(0))));
        assert_eq!("quarantine".parse::<Policy>(), Ok(Policy::Quarantine));
        assert!("drop".parse::<Policy>().is_err());
    }

    #[test]
    fn a_count_is_checked_at_once_and_a_percentage_when_the_total_is_known() {
        assert!(Limit::check(Some(Limit::Count(3)), 3, None).is_ok());
        let e = Limit::check(Some(Limit::Count(3)), 4, None).unwrap_err();
        assert!(
            e.contains("4 bad records") && e.contains("3 allowed"),
            "{e}"
        );
        assert!(Limit::check(None, 1_000_000, Some(1)).is_ok());
        let half = Some(Limit::Percent(0.5));
        assert!(Limit::check(half, 1_000, None).is_ok(), "total unknown yet");
        assert!(Limit::check(half, 5, Some(1_000)).is_ok());
        let e = Limit::check(half, 6, Some(1_000)).unwrap_err();
        assert!(e.contains("0.600%") && e.contains("0.5%"), "{e}");
    }
}
