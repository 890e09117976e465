//! The job as submitted: plugin, inputs, formats, output and tuning knobs.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// Default bytes per split of a text, CSV or JSON-lines file (128 MiB, as HDFS blocks).
pub const DEFAULT_SPLIT_SIZE: u64 = 128 << 20;
/// [`JobSpec::reducers`] when the user names no number: the coordinator picks it when it
/// plans the job, from the input's size and `task_memory` (as Hive sizes reducers by
/// input bytes), and every later step sees the number it picked.
pub const AUTO_REDUCERS: u32 = 0;
/// Default rows per record batch.
pub const DEFAULT_BATCH_ROWS: u32 = 65_536;
/// Default memory a map or reduce task may hold before it spills a run (512 MiB).
pub const DEFAULT_TASK_MEMORY: u64 = 512 << 20;
/// Default [`JobSpec::task_timeout_secs`]: two hours.
pub const DEFAULT_TASK_TIMEOUT_SECS: u64 = 2 * 3600;
/// The longest task timeout a job may ask for: 30 days.
pub const MAX_TASK_TIMEOUT_SECS: u64 = 30 * 24 * 3600;
/// Default [`JobSpec::side_max_bytes`] (64 MiB): Spark broadcasts tables this small
/// without being asked; a bigger one is better joined in the reduce.
pub const DEFAULT_SIDE_MAX_BYTES: u64 = 64 << 20;

/// A `--reducers` value: `auto` ([`AUTO_REDUCERS`]) or a number of reducers from 1 up.
pub fn parse_reducers(text: &str) -> Result<u32, String> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("auto") {
        return Ok(AUTO_REDUCERS);
    }
    match t.parse::<u32>() {
        Ok(0) => Err("0 reducers: give at least 1, or auto".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{t:?} is not auto or a number of reducers ({e})")),
    }
}

/// A byte count as people write it: `1048576`, `512k`, `128MiB`, `2G`, `1.5GiB`. Units are
/// binary (`k` = KiB = 1024 bytes, as Hadoop's `io.sort.mb` and Spark's `512m` mean); case
/// and a trailing `B`/`iB` do not matter. Zero, negatives, fractions of a byte and values
/// past `u64` are refused with the reason.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits_end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(digits_end);
    let shift = match unit
        .trim()
        .to_ascii_lowercase()
        .trim_end_matches('b')
        .trim_end_matches('i')
    {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?} (use bytes, or k, m, g, t with an optional iB)"
            ));
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a byte count such as 128MiB"))?;
    let bytes = value * (1u64 << shift) as f64;
    if !(bytes >= 1.0 && bytes < u64::MAX as f64) || bytes.fract() != 0.0 {
        return Err(format!(
            "{text:?} is not a whole number of bytes between 1 and 2^64"
        ));
    }
    Ok(bytes as u64)
}

/// How input files are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    /// One `line: Utf8` column per line, terminator (`\n` or `\r\n`) removed.
    Text,
    /// RFC 4180 CSV with a header line in every file.
    Csv,
    /// One JSON object per line.
    JsonLines,
    /// Apache Parquet; one split per row group.
    Parquet,
}

impl InputFormat {
    /// Whether files of this format are cut into byte ranges at line boundaries.
    pub fn is_line_based(self) -> bool {
        !matches!(self, InputFormat::Parquet)
    }
}

impl FromStr for InputFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "text" => InputFormat::Text,
            "csv" => InputFormat::Csv,
            "jsonl" | "json" => InputFormat::JsonLines,
            "parquet" => InputFormat::Parquet,
            other => {
                return Err(format!(
                    "unknown input format {other:?} (text, csv, jsonl, parquet)"
                ));
            }
        })
    }
}

impl fmt::Display for InputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InputFormat::Text => "text",
            InputFormat::Csv => "csv",
            InputFormat::JsonLines => "jsonl",
            InputFormat::Parquet => "parquet",
        })
    }
}

/// How part files are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// `part-NNNNN.parquet` (lz4-compressed).
    #[default]
    Parquet,
    /// `part-NNNNN.csv` with a header line.
    Csv,
}

impl OutputFormat {
    /// File extension of part files.
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Parquet => "parquet",
            OutputFormat::Csv => "csv",
        }
    }
}

impl FromStr for OutputFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "parquet" => OutputFormat::Parquet,
            "csv" => OutputFormat::Csv,
            other => return Err(format!("unknown output format {other:?} (parquet, csv)")),
        })
    }
}

/// Upper bounds on a job's settings, checked at submission (coordinator settings of the same
/// names): past them a job would make the coordinator or every worker allocate without
/// bound, e.g. `--reducers 4000000000`, or `--split-size 1` cutting one map task per byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most reduce partitions a job may ask for.
    pub max_reducers: u32,
    /// Most map tasks a job's input may be cut into.
    pub max_tasks_per_job: u64,
    /// Most memory a job may ask for per task.
    pub max_task_memory: u64,
    /// Most rows per record batch.
    pub max_batch_rows: u32,
}

/// Default [`Limits::max_reducers`].
pub const DEFAULT_MAX_REDUCERS: u32 = 10_000;
/// Default [`Limits::max_tasks_per_job`].
pub const DEFAULT_MAX_TASKS_PER_JOB: u64 = 100_000;
/// Default [`Limits::max_task_memory`]: 1 TiB.
pub const DEFAULT_MAX_TASK_MEMORY: u64 = 1 << 40;
/// Default [`Limits::max_batch_rows`].
pub const DEFAULT_MAX_BATCH_ROWS: u32 = 1 << 20;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_reducers: DEFAULT_MAX_REDUCERS,
            max_tasks_per_job: DEFAULT_MAX_TASKS_PER_JOB,
            max_task_memory: DEFAULT_MAX_TASK_MEMORY,
            max_batch_rows: DEFAULT_MAX_BATCH_ROWS,
        }
    }
}

impl Limits {
    /// Refuses `maps` map tasks past [`Limits::max_tasks_per_job`], naming what to change.
    pub fn check_maps(&self, maps: u64, split_size: u64) -> Result<(), String> {
        if maps > self.max_tasks_per_job {
            return Err(format!(
                "the input cut at a split size of {split_size} bytes makes {maps} map tasks, \
                 over the coordinator's max_tasks_per_job of {}: raise --split-size",
                self.max_tasks_per_job
            ));
        }
        Ok(())
    }
}

/// Whether `s` is an input name: `[a-z][a-z0-9_]*`.
pub fn is_input_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// An input as given: `NAME=PATH` names it (`NAME` being `[a-z][a-z0-9_]*`), anything else
/// is a plain path or URL of the unnamed input.
pub fn split_input(input: &str) -> (Option<&str>, &str) {
    match input.split_once('=') {
        Some((name, path)) if is_input_name(name) && !path.is_empty() => (Some(name), path),
        _ => (None, input),
    }
}

/// The longest run key.
pub const MAX_RUN_KEY_LEN: usize = 256;

/// Refuses a run key too long, or holding control characters, to be shown and stored.
pub fn check_run_key(key: &str) -> Result<(), String> {
    if key.len() > MAX_RUN_KEY_LEN {
        return Err(format!(
            "--run-key of {} bytes is over the {MAX_RUN_KEY_LEN} allowed",
            key.len()
        ));
    }
    if key.chars().any(char::is_control) {
        return Err(format!("--run-key {key:?} holds a control character"));
    }
    if key != key.trim() {
        return Err(format!("--run-key {key:?} starts or ends with a space"));
    }
    Ok(())
}

/// A job as the user submitted it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    /// Path of the plugin shared library. On a cluster each process rewrites it to its own
    /// copy of the library identified by `plugin_sha256`; as submitted it is the client's path.
    pub plugin: String,
    /// Lower-case hex sha256 of the plugin library (empty: load `plugin` as it is).
    pub plugin_sha256: String,
    /// Input paths or globs.
    pub inputs: Vec<String>,
    /// Input format.
    pub format: InputFormat,
    /// Output directory.
    pub output: String,
    /// Number of reduce partitions (= part files); [`AUTO_REDUCERS`] until the coordinator
    /// plans the job.
    pub reducers: u32,
    /// `--param key=value` pairs, passed to the job in its `TaskContext`.
    pub params: BTreeMap<String, String>,
    /// Target bytes per split of line-based files.
    pub split_size: u64,
    /// Part file format.
    pub output_format: OutputFormat,
    /// Replace an existing output directory.
    pub overwrite: bool,
    /// Rows per record batch.
    pub batch_rows: u32,
    /// Memory a map task may hold before spilling a run.
    pub task_memory: u64,
    /// An attempt running longer fails and is retried (a hung plugin, a stuck disk), as
    /// Hadoop's `mapreduce.task.timeout`; 0: no limit.
    pub task_timeout_secs: u64,
    /// What happens to a record the reader cannot parse (see [`crate::bad_records`]).
    pub on_bad_record: crate::bad_records::Policy,
    /// How many bad records the job tolerates (`None`: the policy's default).
    pub max_bad_records: Option<crate::bad_records::Limit>,
    /// Totals the input must add up to (`--control`), checked before `_SUCCESS`.
    pub control: Option<crate::control::Control>,
    /// Output columns whose values name Hive-style directories (`--partition-by`).
    pub partition_by: Vec<String>,
    /// The format of each named input or side input that has its own
    /// (`--format NAME=FMT`); the others are read in `format`.
    pub formats: BTreeMap<String, InputFormat>,
    /// Side inputs as `NAME=PATH` (`--side`): small tables every map task is handed whole.
    pub sides: Vec<String>,
    /// The most bytes one side input may hold, in its files and in memory.
    pub side_max_bytes: u64,
    /// The run this job is (`--run-key`): a key that already succeeded, or whose job is
    /// running, is not run again (empty: none).
    pub run_key: String,
    /// The job fails once it has run this long since submission (`--timeout`); 0: no
    /// limit.
    pub job_timeout_secs: u64,
    /// Webhooks told when the job ends, however it ends (`--notify URL`).
    pub notify: Vec<String>,
    /// Reads only the input files the successful runs of this name have not read, as they
    /// were then (`--incremental NAME`); empty: every file.
    pub incremental: String,
    /// The queue it waits and shares slots in (`--queue`; empty: `default`).
    pub queue: String,
    /// Its priority in its queue (`--priority`, higher first).
    pub priority: i32,
}

impl JobSpec {
    /// A spec with the documented defaults for everything but the essentials.
    pub fn new(plugin: String, inputs: Vec<String>, format: InputFormat, output: String) -> Self {
        JobSpec {
            plugin,
            plugin_sha256: String::new(),
            inputs,
            format,
            output,
            reducers: AUTO_REDUCERS,
            params: BTreeMap::new(),
            split_size: DEFAULT_SPLIT_SIZE,
            output_format: OutputFormat::Parquet,
            overwrite: false,
            batch_rows: DEFAULT_BATCH_ROWS,
            task_memory: DEFAULT_TASK_MEMORY,
            task_timeout_secs: DEFAULT_TASK_TIMEOUT_SECS,
            on_bad_record: crate::bad_records::Policy::Fail,
            max_bad_records: None,
            control: None,
            partition_by: Vec::new(),
            formats: BTreeMap::new(),
            sides: Vec::new(),
            side_max_bytes: DEFAULT_SIDE_MAX_BYTES,
            run_key: String::new(),
            job_timeout_secs: 0,
            notify: Vec::new(),
            incremental: String::new(),
            queue: String::new(),
            priority: 0,
        }
    }

    /// The side inputs as `(name, path)`, skipping any not written `NAME=PATH` (which
    /// [`JobSpec::validate`] refuses).
    pub fn side_inputs(&self) -> Vec<(&str, &str)> {
        self.sides
            .iter()
            .filter_map(|s| match split_input(s) {
                (Some(name), path) => Some((name, path)),
                (None, _) => None,
            })
            .collect()
    }

    /// The format input `name` is read in (`""` for an unnamed input).
    pub fn format_of(&self, name: &str) -> InputFormat {
        self.formats.get(name).copied().unwrap_or(self.format)
    }

    /// How long the job may run, when limited.
    pub fn job_timeout(&self) -> Option<std::time::Duration> {
        (self.job_timeout_secs > 0).then(|| std::time::Duration::from_secs(self.job_timeout_secs))
    }

    /// How long an attempt may run, when limited.
    pub fn task_timeout(&self) -> Option<std::time::Duration> {
        (self.task_timeout_secs > 0).then(|| std::time::Duration::from_secs(self.task_timeout_secs))
    }

    /// Checks the knobs that would make the job meaningless.
    pub fn validate(&self) -> Result<(), String> {
        if self.inputs.is_empty() {
            return Err("no input given".into());
        }
        if self.split_size == 0 {
            return Err("split size must be at least 1 byte".into());
        }
        if self.batch_rows == 0 {
            return Err("batch rows must be at least 1".into());
        }
        if self.output.is_empty() {
            return Err("no output directory given".into());
        }
        let mut named: Vec<&str> = self
            .inputs
            .iter()
            .filter_map(|i| split_input(i).0)
            .collect();
        let mut sides: Vec<&str> = Vec::new();
        for side in &self.sides {
            let name = match split_input(side) {
                (Some(name), _) => name,
                (None, _) => {
                    return Err(format!(
                        "--side {side:?}: give it as NAME=PATH, NAME being [a-z][a-z0-9_]*"
                    ));
                }
            };
            if named.contains(&name) || sides.contains(&name) {
                return Err(format!(
                    "--side {name}=...: the name {name} is already given to an input or side input"
                ));
            }
            sides.push(name);
        }
        check_run_key(&self.run_key)?;
        if !self.queue.is_empty() && !is_input_name(&self.queue) {
            return Err(format!(
                "--queue {:?}: a name of [a-z][a-z0-9_]*",
                self.queue
            ));
        }
        if !self.incremental.is_empty() && !is_input_name(&self.incremental) {
            return Err(format!(
                "--incremental {:?}: a name of [a-z][a-z0-9_]*",
                self.incremental
            ));
        }
        if let Some(url) = self
            .notify
            .iter()
            .find(|u| !(u.starts_with("http://") || u.starts_with("https://")))
        {
            return Err(format!("--notify {url:?}: an http:// or https:// URL"));
        }
        if self.side_max_bytes == 0 {
            return Err("--side-max-bytes must be at least 1 byte".into());
        }
        named.extend(sides);
        if let Some(name) = self.formats.keys().find(|n| !named.contains(&n.as_str())) {
            return Err(format!(
                "--format {name}=...: no input or side input is named {name}"
            ));
        }
        if let Some(c) = self
            .partition_by
            .iter()
            .find(|c| c.is_empty() || c.contains(['/', '=', '\\']))
        {
            return Err(format!(
                "--partition-by {c:?}: a column name, without '/', '=' or '\\'"
            ));
        }
        if self.job_timeout_secs > MAX_TASK_TIMEOUT_SECS {
            return Err(format!(
                "--timeout of {} s is over the 30 days ({MAX_TASK_TIMEOUT_SECS} s) allowed; \
                 0 means no limit",
                self.job_timeout_secs
            ));
        }
        if self.task_timeout_secs > MAX_TASK_TIMEOUT_SECS {
            return Err(format!(
                "task timeout of {} s is over the 30 days ({MAX_TASK_TIMEOUT_SECS} s) allowed; \
                 0 means no limit",
                self.task_timeout_secs
            ));
        }
        Ok(())
    }

    /// Refuses settings past `limits`, naming the flag and the coordinator setting.
    pub fn check_limits(&self, limits: &Limits) -> Result<(), String> {
        let over = |flag: &str, value: u64, setting: &str, max: u64| {
            Err(format!(
                "{flag} {value} is over the coordinator's {setting} of {max}"
            ))
        };
        if self.reducers > limits.max_reducers {
            return over(
                "--reducers",
                self.reducers.into(),
                "max_reducers",
                limits.max_reducers.into(),
            );
        }
        if self.batch_rows > limits.max_batch_rows {
            return over(
                "--batch-rows",
                self.batch_rows.into(),
                "max_batch_rows",
                limits.max_batch_rows.into(),
            );
        }
        if self.task_memory > limits.max_task_memory {
            return over(
                "--task-memory",
                self.task_memory,
                "max_task_memory",
                limits.max_task_memory,
            );
        }
        // A side input sits in every worker's memory as a task's working set does.
        if self.side_max_bytes > limits.max_task_memory {
            return over(
                "--side-max-bytes",
                self.side_max_bytes,
                "max_task_memory",
                limits.max_task_memory,
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod limits_tests {
    use super::*;

    #[test]
    fn settings_past_the_limits_are_refused_by_name() {
        let limits = Limits::default();
        let mut spec = JobSpec::new(
            "p.so".into(),
            vec!["in".into()],
            InputFormat::Text,
            "out".into(),
        );
        assert_eq!(spec.check_limits(&limits), Ok(()));
        spec.reducers = 4_000_000_000;
        let e = spec.check_limits(&limits).unwrap_err();
        assert!(
            e.contains("--reducers 4000000000") && e.contains("max_reducers of 10000"),
            "{e}"
        );
        spec.reducers = limits.max_reducers;
        assert_eq!(
            spec.check_limits(&limits),
            Ok(()),
            "the limit itself is allowed"
        );
        spec.batch_rows = 4_000_000_000;
        assert!(
            spec.check_limits(&limits)
                .unwrap_err()
                .contains("--batch-rows")
        );
        spec.batch_rows = DEFAULT_BATCH_ROWS;
        spec.task_memory = u64::MAX;
        assert!(
            spec.check_limits(&limits)
                .unwrap_err()
                .contains("max_task_memory")
        );
        assert!(limits.check_maps(100_000, 1).is_ok());
        let e = limits.check_maps(100_001, 1).unwrap_err();
        assert!(
            e.contains("--split-size") && e.contains("100001 map tasks"),
            "{e}"
        );
    }
}

#[cfg(test)]
mod bytes_tests {
    use super::{AUTO_REDUCERS, parse_bytes, parse_reducers};

    #[test]
    fn reducers_are_auto_or_a_positive_number() {
        assert_eq!(parse_reducers("auto"), Ok(AUTO_REDUCERS));
        assert_eq!(parse_reducers("AUTO"), Ok(AUTO_REDUCERS));
        assert_eq!(parse_reducers("8"), Ok(8));
        assert!(parse_reducers("0").unwrap_err().contains("at least 1"));
        for bad in ["", "-1", "eight", "4294967296", "1.5"] {
            assert!(parse_reducers(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sizes_with_and_without_units() {
        assert_eq!(parse_bytes("1048576"), Ok(1 << 20));
        assert_eq!(parse_bytes("128MiB"), Ok(128 << 20));
        assert_eq!(parse_bytes("512k"), Ok(512 << 10));
        assert_eq!(parse_bytes("2G"), Ok(2 << 30));
        assert_eq!(parse_bytes("1.5gib"), Ok(3 << 29));
        for bad in ["", "0", "-5", "12 parsecs", "0.5", "99999999999T", "MiB"] {
            assert!(parse_bytes(bad).is_err(), "{bad:?}");
        }
    }
}
