//! Schedules: a job or a pipeline started by the coordinator at the times of a cron
//! expression (5 fields, or 6 with seconds first) in a time zone, as cron and Airflow do.
//!
//! Each firing gets the run key `NAME@<scheduled time>` (`2026-11-28T02:00:00` in the
//! schedule's zone), so a time is run at most once however often it is fired: after a
//! coordinator restart, or when two ticks see it. Times missed while the coordinator was
//! down (older than [`ON_TIME`]) follow the schedule's catch-up policy: `none` skips them,
//! `last` runs the latest, `all` runs each (at most [`MAX_CATCH_UP`]).
//!
//! Paths may hold placeholders filled per firing ([`fill`]): `{run_key}`, `{date}` (the
//! scheduled business date, `YYYY-MM-DD`, in the schedule's zone) and `{time}`
//! (`HH-MM-SS`).
//!
//! This module is the pure part: parsing, which times are due, the placeholders.

use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;

/// A time this close to now is on time; an older one was missed.
pub const ON_TIME: chrono::TimeDelta = chrono::TimeDelta::seconds(60);
/// The most missed times `catch_up = "all"` runs at once.
pub const MAX_CATCH_UP: usize = 1000;
/// The most times looked at to find the latest missed one.
const MAX_STEPS: usize = 1_000_000;

/// What to do with times missed while the coordinator was down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CatchUp {
    /// Skip them.
    #[default]
    None,
    /// Run the latest of them.
    Last,
    /// Run each of them.
    All,
}

impl FromStr for CatchUp {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" | "" => Ok(CatchUp::None),
            "last" => Ok(CatchUp::Last),
            "all" => Ok(CatchUp::All),
            other => Err(format!("catch_up {other:?}: use none, last or all")),
        }
    }
}

impl CatchUp {
    /// `none`, `last` or `all`.
    pub fn as_str(self) -> &'static str {
        match self {
            CatchUp::None => "none",
            CatchUp::Last => "last",
            CatchUp::All => "all",
        }
    }
}

/// A parsed cron expression in its zone.
#[derive(Debug, Clone)]
pub struct Timing {
    cron: Cron,
    tz: Tz,
}

impl Timing {
    /// Parses `expr` (5 fields, or 6 with seconds first) in zone `tz` (an IANA name such
    /// as `Europe/Paris`; empty: UTC).
    pub fn parse(expr: &str, tz: &str) -> Result<Timing, String> {
        let cron = Cron::new(expr)
            .with_seconds_optional()
            .parse()
            .map_err(|e| format!("cron expression {expr:?}: {e}"))?;
        Ok(Timing {
            cron,
            tz: zone(tz)?,
        })
    }

    /// The first time after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&t.with_timezone(&self.tz), false)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    /// The last time after `after` and at or before `edge`, looking at most
    /// [`MAX_STEPS`] times ahead (a schedule of every second down for a week).
    fn latest_between(&self, after: DateTime<Utc>, edge: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let (mut t, mut latest) = (after, None);
        for _ in 0..MAX_STEPS {
            match self.next_after(t) {
                Some(next) if next <= edge => {
                    latest = Some(next);
                    t = next;
                }
                _ => break,
            }
        }
        latest
    }

    /// The times to fire at `now`, oldest first, when the schedule last fired (or was
    /// made) at `last`: those on time, and the missed ones its `catch_up` asks for.
    pub fn due(
        &self,
        last: DateTime<Utc>,
        now: DateTime<Utc>,
        catch_up: CatchUp,
    ) -> Vec<DateTime<Utc>> {
        let edge = now - ON_TIME;
        let mut out = Vec::new();
        match catch_up {
            CatchUp::None => {}
            CatchUp::Last => out.extend(self.latest_between(last, edge)),
            CatchUp::All => {
                let mut t = last;
                while out.len() < MAX_CATCH_UP {
                    match self.next_after(t) {
                        Some(next) if next <= edge => {
                            out.push(next);
                            t = next;
                        }
                        _ => break,
                    }
                }
            }
        }
        let mut on_time = Vec::new();
        let mut t = last.max(edge);
        while let Some(next) = self.next_after(t).filter(|&n| n <= now) {
            on_time.push(next);
            t = next;
        }
        if catch_up == CatchUp::Last && !on_time.is_empty() {
            out.clear(); // the latest time is on time: nothing older to catch up
        }
        out.extend(on_time);
        out
    }

    /// The run key of the firing at `at`: `NAME@2026-11-28T02:00:00` in the zone.
    pub fn run_key(&self, name: &str, at: DateTime<Utc>) -> String {
        format!(
            "{name}@{}",
            at.with_timezone(&self.tz).format("%Y-%m-%dT%H:%M:%S")
        )
    }

    /// `text` with the placeholders of the firing at `at` filled.
    pub fn fill(&self, text: &str, run_key: &str, at: DateTime<Utc>) -> String {
        fill(text, run_key, at, self.tz)
    }
}

/// `text` with the placeholders of a firing at `at` filled, the date and time in `tz`.
pub fn fill(text: &str, run_key: &str, at: DateTime<Utc>, tz: Tz) -> String {
    let local = at.with_timezone(&tz);
    text.replace("{run_key}", run_key)
        .replace("{date}", &local.format("%Y-%m-%d").to_string())
        .replace("{time}", &local.format("%H-%M-%S").to_string())
}

/// A deadline: a time of day, or a delay after the scheduled time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    /// The first such time of day in the zone at or after the scheduled time.
    TimeOfDay(chrono::NaiveTime),
    /// This long after the scheduled time.
    After(chrono::TimeDelta),
}

impl Deadline {
    /// Parses `06:00`, `06:00:30`, `+2h`, `+90m` or `+30s`.
    pub fn parse(text: &str) -> Result<Deadline, String> {
        let refuse = || format!("deadline {text:?}: a time of day (06:00) or a delay (+2h, +90s)");
        if let Some(delay) = text.strip_prefix('+') {
            let (digits, unit) = delay.split_at(delay.len().saturating_sub(1));
            let n: i64 = digits.parse().map_err(|_| refuse())?;
            let secs = match unit {
                "s" => n,
                "m" => n * 60,
                "h" => n * 3600,
                _ => return Err(refuse()),
            };
            if !(0..=7 * 24 * 3600).contains(&secs) {
                return Err(format!(
                    "deadline {text:?}: at most a week after the scheduled time"
                ));
            }
            return Ok(Deadline::After(chrono::TimeDelta::seconds(secs)));
        }
        chrono::NaiveTime::parse_from_str(text, "%H:%M:%S")
            .or_else(|_| chrono::NaiveTime::parse_from_str(text, "%H:%M"))
            .map(Deadline::TimeOfDay)
            .map_err(|_| refuse())
    }

    /// The deadline of the firing scheduled at `at`, in zone `tz`.
    pub fn for_firing(self, at: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
        match self {
            Deadline::After(d) => at + d,
            Deadline::TimeOfDay(t) => {
                let local = at.with_timezone(&tz);
                let mut day = local.date_naive();
                if local.time() > t {
                    day = day.succ_opt().unwrap_or(day);
                }
                // A time skipped by a clock change falls an hour later, as cron's do.
                tz.from_local_datetime(&day.and_time(t))
                    .earliest()
                    .or_else(|| {
                        tz.from_local_datetime(&(day.and_time(t) + chrono::TimeDelta::hours(1)))
                            .earliest()
                    })
                    .map_or(at, |d| d.with_timezone(&Utc))
            }
        }
    }
}

/// Parses an IANA zone name (empty: UTC).
pub fn zone(tz: &str) -> Result<Tz, String> {
    if tz.is_empty() {
        return Ok(Tz::UTC);
    }
    tz.parse::<Tz>()
        .map_err(|_| format!("time zone {tz:?}: not an IANA zone such as Europe/Paris"))
}

/// What identifies a set of arrived files (`(path, size, version)`, any order): the first
/// 16 hex digits of the sha256 of their sorted lines. A file trigger fires once per set,
/// with the run key `NAME@<this>`.
pub fn arrival_set(files: &[(String, u64, String)]) -> String {
    let mut lines: Vec<String> = files
        .iter()
        .map(|(p, size, version)| format!("{p}\t{size}\t{version}\n"))
        .collect();
    lines.sort();
    let mut h = sluice_common::digest::Sha256Hasher::default();
    for l in &lines {
        h.update(l.as_bytes());
    }
    h.finish_hex()[..16].to_string()
}

/// `ms` since the Unix epoch as a UTC time.
pub fn utc_ms(ms: u64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(i64::try_from(ms).unwrap_or(i64::MAX))
        .single()
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_nightly_schedule_fires_at_its_local_time_with_its_date() {
        let t = Timing::parse("0 2 * * *", "Europe/Paris").unwrap();
        // 02:00 in Paris is 01:00 UTC in winter.
        let due = t.due(
            at("2026-11-27T12:00:00Z"),
            at("2026-11-28T01:00:30Z"),
            CatchUp::None,
        );
        assert_eq!(due, [at("2026-11-28T01:00:00Z")]);
        assert_eq!(t.run_key("eod", due[0]), "eod@2026-11-28T02:00:00");
        assert_eq!(
            t.fill("/data/eod/{date}/{time}-{run_key}", "k", due[0]),
            "/data/eod/2026-11-28/02-00-00-k"
        );
        assert!(
            t.due(due[0], at("2026-11-28T01:00:31Z"), CatchUp::All)
                .is_empty()
        );
    }

    #[test]
    fn missed_times_follow_the_catch_up_policy() {
        let t = Timing::parse("0 2 * * *", "").unwrap();
        let (last, now) = (at("2026-11-24T03:00:00Z"), at("2026-11-28T12:00:00Z"));
        assert!(t.due(last, now, CatchUp::None).is_empty());
        assert_eq!(
            t.due(last, now, CatchUp::Last),
            [at("2026-11-28T02:00:00Z")]
        );
        assert_eq!(t.due(last, now, CatchUp::All).len(), 4);
        // An on-time firing makes `last` skip the missed ones.
        let now = at("2026-11-28T02:00:10Z");
        assert_eq!(
            t.due(last, now, CatchUp::Last),
            [at("2026-11-28T02:00:00Z")]
        );
        assert_eq!(t.due(last, now, CatchUp::All).len(), 4);
    }

    #[test]
    fn a_seconds_field_fires_every_few_seconds_and_catch_up_is_capped() {
        let t = Timing::parse("*/2 * * * * *", "").unwrap();
        let last = at("2026-11-28T00:00:00Z");
        assert_eq!(
            t.due(last, at("2026-11-28T00:00:05Z"), CatchUp::None).len(),
            2
        );
        let day_later = at("2026-11-29T00:00:00Z");
        assert_eq!(
            t.due(last, day_later, CatchUp::All).len(),
            MAX_CATCH_UP + 30
        );
    }

    #[test]
    fn a_deadline_is_the_next_such_time_of_day_or_a_delay() {
        let paris: Tz = "Europe/Paris".parse().unwrap();
        let d = Deadline::parse("06:00").unwrap();
        // Fired at 02:00 Paris (01:00 UTC): due at 06:00 Paris the same day.
        let fired = at("2026-11-28T01:00:00Z");
        assert_eq!(d.for_firing(fired, paris), at("2026-11-28T05:00:00Z"));
        // Fired at 22:00 Paris: the next morning.
        assert_eq!(
            d.for_firing(at("2026-11-28T21:00:00Z"), paris),
            at("2026-11-29T05:00:00Z")
        );
        let d = Deadline::parse("+90s").unwrap();
        assert_eq!(d.for_firing(fired, paris), at("2026-11-28T01:01:30Z"));
        assert!(Deadline::parse("6 o'clock").is_err());
        assert!(Deadline::parse("+9999h").unwrap_err().contains("a week"));
    }

    #[test]
    fn an_arrival_set_is_named_by_its_files_in_any_order() {
        let a = ("/in/a.csv".to_string(), 10, "v1".to_string());
        let b = ("/in/_READY".to_string(), 0, "v1".to_string());
        let one = arrival_set(&[a.clone(), b.clone()]);
        assert_eq!(one, arrival_set(&[b.clone(), a.clone()]));
        assert_eq!(one.len(), 16);
        let rewritten = ("/in/a.csv".to_string(), 12, "v2".to_string());
        assert_ne!(one, arrival_set(&[rewritten, b]));
    }

    #[test]
    fn bad_expressions_and_zones_are_refused_by_name() {
        assert!(
            Timing::parse("61 * * * *", "")
                .unwrap_err()
                .contains("\"61 * * * *\"")
        );
        assert!(
            Timing::parse("0 2 * * *", "Mars/Base")
                .unwrap_err()
                .contains("Mars/Base")
        );
        assert_eq!("all".parse::<CatchUp>(), Ok(CatchUp::All));
        assert!("sometimes".parse::<CatchUp>().is_err());
    }
}
