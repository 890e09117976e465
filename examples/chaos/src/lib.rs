//! # Chaos: a word count that misbehaves on request
//!
//! A plugin for the engine's fault-tolerance tests (not an example to copy): it makes a worker
//! die or stall inside user code, the way a machine does, and leaves files behind that prove
//! what ran where.
//!
//! Without parameters it is exactly the word count example: input is `text` (one column
//! `line: Utf8`); a word is a maximal run of characters for which [`char::is_alphabetic`]
//! holds, case is kept, null lines count nothing; the output is `word: Utf8, count: Int64`,
//! sorted by word, with the same values, column types and nullability as the word count
//! example's output (`word` non-null, `count` nullable, as the engine's `sum` writes it), so
//! part files are the same. Unlike word count it reduces with a custom `reduce`
//! ([`Job::aggregates`] is empty), so every reduce call goes through plugin code: the map
//! emits one `(word, count)` row per distinct word of its batch (counts pre-aggregated within
//! the batch), and the reduce receives batches sorted by `word` that never split a key group
//! and sums `count` per word.
//!
//! ## Job parameters (`--param k=v`), all optional
//! - `abort_map=P`, `abort_reduce=P` (probability 0..1): at each map / reduce call, with
//!   probability P call `std::process::abort()` — kills the whole worker process. The
//!   randomness is a small self-contained PRNG (splitmix64) seeded from (nanos since epoch,
//!   pid, task index, attempt, a per-process atomic counter).
//! - `sleep_map_ms=N`, `sleep_reduce_ms=N`: each call sleeps a uniformly random time in
//!   0..=N ms.
//! - `fixed_sleep_map_ms=N`, `fixed_sleep_reduce_ms=N`: each call sleeps exactly N ms (for
//!   deterministic long tasks). Given together with the random sleep, the call sleeps the sum.
//! - `reduce_gate=PATH`: each reduce call waits (up to ten minutes) until the file PATH
//!   exists, so a test can keep a job in its shuffle until it has done its damage.
//! - `only_if_env=VAR`: the aborts and sleeps above apply only in a process where the
//!   environment variable VAR is set (non-empty), so a test can make ONE worker process slow
//!   or crashy by starting it with that variable.
//! - `marker_dir=DIR`: at the first call of each task attempt in this process, create the file
//!   `DIR/{kind}-{task_index}-{attempt}-{pid}` (kind = `map` or `reduce`), with `create_new`
//!   semantics (an existing file is an error). A process-wide set of
//!   (job_id, kind, index, attempt) already marked keeps later calls of the same attempt from
//!   creating it again. Tests count these files to prove each task ran exactly once.
//! - `concurrency_dir=DIR` with `hold_ms=N`: at each call, create
//!   `DIR/active-{kind}-{task_index}-{attempt}-{pid}-{unique}`, sleep N ms, then count the
//!   `active-{kind}-*` files that exist right now, write the maximum ever seen for this kind
//!   into `DIR/max-{kind}` only if larger than what it holds, then remove the active file.
//!   `hold_ms` defaults to 0 and means nothing without `concurrency_dir`.
//!
//! `marker_dir` and `concurrency_dir` apply in every process (`only_if_env` does not gate
//! them). The order within a call is: marker, sleeps, abort, concurrency probe, then the work.
//! A marker is thus left by an attempt that then aborts, and an abort never strands an
//! `active-*` file.
//!
//! ## How `max-{kind}` is updated
//! The file holds a decimal number (no newline). Writers serialise on an exclusive advisory
//! lock (`flock`, via [`std::fs::File::lock`]) taken on the directory `DIR` itself, so no lock
//! file appears; the kernel releases it if the process dies. Under the lock a writer reads the
//! file (absent = 0) and, only when its count is larger, writes the new value to a temporary
//! `DIR/.max-{kind}.tmp-{pid}-{unique}` and renames it over `max-{kind}`, so a reader never
//! sees a partial file. It then re-reads and repeats until the file holds at least its count,
//! which also bounds the damage if the lock is unavailable (then it proceeds without it).
//!
//! ## Errors
//! A malformed parameter, or a failed file operation (the message names the path), fails the
//! call with a job error; nothing here panics.

#![warn(missing_docs)]

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arrow_array::builder::StringBuilder;
use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use sluice_sdk::{Job, JobError, JobResult, TaskContext, TaskKind, export_job};

/// Name of the input column holding one line of text.
pub const LINE_COLUMN: &str = "line";
/// The key column of the map output and the first output column.
pub const WORD_COLUMN: &str = "word";
/// The count column of the map output and the second output column.
pub const COUNT_COLUMN: &str = "count";

/// Word count with a custom reduce that aborts, sleeps and leaves files on request (see the
/// crate docs).
#[derive(Debug, Default)]
pub struct Chaos;

impl Job for Chaos {
    fn name(&self) -> &str {
        "chaos"
    }

    fn key_columns(&self) -> Vec<String> {
        vec![WORD_COLUMN.into()]
    }

    // `aggregates` keeps its default (empty): the job reduces with `reduce` below.

    /// Counts `lines` read (job counters: exact however often a task ran).
    fn map(&self, batch: RecordBatch, ctx: &TaskContext) -> JobResult<RecordBatch> {
        misbehave(ctx)?;
        ctx.counter("lines", batch.num_rows() as i64);
        count_words(&batch)
    }

    /// Counts `distinct_words` written.
    fn reduce(&self, groups: RecordBatch, ctx: &TaskContext) -> JobResult<RecordBatch> {
        misbehave(ctx)?;
        let out = sum_groups(&groups)?;
        ctx.counter("distinct_words", out.num_rows() as i64);
        Ok(out)
    }
}

export_job!(Chaos);

/// The schema of the map output: `word: Utf8, count: Int64`, both non-null (as word count's).
pub fn map_output_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(vec![
                Field::new(WORD_COLUMN, DataType::Utf8, false),
                Field::new(COUNT_COLUMN, DataType::Int64, false),
            ]))
        })
        .clone()
}

// ---------------------------------------------------------------------------------------------
// Misbehaviour

fn kind_name(kind: TaskKind) -> &'static str {
    match kind {
        TaskKind::Map => "map",
        TaskKind::Reduce => "reduce",
    }
}

/// The parameters that apply to one call, for its task kind.
#[derive(Debug)]
struct Params<'a> {
    abort: f64,
    sleep_ms: u64,
    fixed_sleep_ms: u64,
    only_if_env: Option<&'a str>,
    marker_dir: Option<&'a str>,
    concurrency_dir: Option<&'a str>,
    hold_ms: u64,
    /// Reduce calls wait for this file.
    gate: Option<&'a str>,
}

impl<'a> Params<'a> {
    fn read(ctx: &'a TaskContext) -> JobResult<Self> {
        let kind = kind_name(ctx.kind);
        let abort_key = format!("abort_{kind}");
        let abort: f64 = ctx.param_parse(&abort_key, 0.0)?;
        if !(0.0..=1.0).contains(&abort) {
            return Err(JobError::new(format!(
                "job parameter {abort_key}={abort}: a probability must be in 0..1"
            )));
        }
        Ok(Params {
            abort,
            sleep_ms: ctx.param_parse(&format!("sleep_{kind}_ms"), 0)?,
            fixed_sleep_ms: ctx.param_parse(&format!("fixed_sleep_{kind}_ms"), 0)?,
            only_if_env: ctx.param("only_if_env"),
            marker_dir: ctx.param("marker_dir"),
            concurrency_dir: ctx.param("concurrency_dir"),
            hold_ms: ctx.param_parse("hold_ms", 0)?,
            gate: match ctx.kind {
                TaskKind::Reduce => ctx.param("reduce_gate"),
                TaskKind::Map => None,
            },
        })
    }

    /// Whether aborts and sleeps apply in this process.
    fn chaos_here(&self) -> bool {
        match self.only_if_env {
            None => true,
            Some(var) => std::env::var_os(var).is_some_and(|v| !v.is_empty()),
        }
    }
}

/// Everything the parameters ask for at one call, before the call does its work.
fn misbehave(ctx: &TaskContext) -> JobResult<()> {
    let params = Params::read(ctx)?;
    if let Some(dir) = params.marker_dir {
        mark_attempt(ctx, Path::new(dir))?;
    }
    if params.chaos_here() {
        let mut rng = SplitMix64::seeded(ctx);
        let sleep_ms = params
            .fixed_sleep_ms
            .saturating_add(rng.up_to(params.sleep_ms));
        if sleep_ms > 0 {
            std::thread::sleep(Duration::from_millis(sleep_ms));
        }
        if params.abort > 0.0 && rng.unit() < params.abort {
            std::process::abort();
        }
    }
    if let Some(dir) = params.concurrency_dir {
        probe_concurrency(ctx, Path::new(dir), params.hold_ms)?;
    }
    if let Some(gate) = params.gate {
        let since = std::time::Instant::now();
        while !Path::new(gate).exists() {
            if since.elapsed() > Duration::from_secs(600) {
                return Err(JobError::new(format!("reduce_gate {gate} never appeared")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(())
}

/// splitmix64 (Steele, Lea and Flood): tiny, and good enough to decide aborts and sleeps.
struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator seeded from the clock, the process, the task attempt and a per-process call
    /// counter, so concurrent calls and restarted processes draw different numbers.
    fn seeded(ctx: &TaskContext) -> Self {
        static CALLS: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let mut rng = SplitMix64(nanos);
        for part in [
            u64::from(std::process::id()),
            u64::from(ctx.task_index),
            u64::from(ctx.attempt),
            CALLS.fetch_add(1, Ordering::Relaxed),
        ] {
            rng.0 ^= part;
            rng.0 = rng.next();
        }
        rng
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..=n` (by multiply-shift, bias below 2^-64 · n).
    fn up_to(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        ((u128::from(self.next()) * (u128::from(n) + 1)) >> 64) as u64
    }
}

/// Creates the marker of this task attempt at its first call in this process.
fn mark_attempt(ctx: &TaskContext, dir: &Path) -> JobResult<()> {
    type Attempt = (String, &'static str, u32, u32);
    static MARKED: Mutex<BTreeSet<Attempt>> = Mutex::new(BTreeSet::new());
    let kind = kind_name(ctx.kind);
    let key = (ctx.job_id.clone(), kind, ctx.task_index, ctx.attempt);
    // Held across the creation, so two calls of one attempt never both create.
    let mut marked = MARKED.lock().unwrap_or_else(PoisonError::into_inner);
    if marked.contains(&key) {
        return Ok(());
    }
    let path = dir.join(format!(
        "{kind}-{}-{}-{}",
        ctx.task_index,
        ctx.attempt,
        std::process::id()
    ));
    create_new(&path, "marker")?;
    marked.insert(key);
    Ok(())
}

/// Creates `path`, failing if it exists.
fn create_new(path: &Path, what: &str) -> JobResult<()> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map(drop)
        .map_err(|e| io_error(&format!("creating {what} file"), path, &e))
}

fn io_error(doing: &str, path: &Path, e: &std::io::Error) -> JobError {
    JobError::new(format!("chaos: {doing} {}: {e}", path.display()))
}

/// A number unique to each call in this process.
fn unique() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Marks this call active for `hold_ms`, records how many calls of its kind were active, and
/// removes its mark again (also when recording fails).
fn probe_concurrency(ctx: &TaskContext, dir: &Path, hold_ms: u64) -> JobResult<()> {
    let kind = kind_name(ctx.kind);
    let pid = std::process::id();
    let active = dir.join(format!(
        "active-{kind}-{}-{}-{pid}-{}",
        ctx.task_index,
        ctx.attempt,
        unique()
    ));
    create_new(&active, "active")?;
    let observed = (|| {
        if hold_ms > 0 {
            std::thread::sleep(Duration::from_millis(hold_ms));
        }
        let n = count_active(dir, kind)?;
        record_max(dir, kind, n)
    })();
    let removed = fs::remove_file(&active).map_err(|e| io_error("removing", &active, &e));
    observed.and(removed)
}

/// The number of `active-{kind}-*` files in `dir` right now.
fn count_active(dir: &Path, kind: &str) -> JobResult<u64> {
    let prefix = format!("active-{kind}-");
    let mut n = 0;
    for entry in fs::read_dir(dir).map_err(|e| io_error("listing", dir, &e))? {
        let entry = entry.map_err(|e| io_error("listing", dir, &e))?;
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            n += 1;
        }
    }
    Ok(n)
}

/// Raises `dir/max-{kind}` to `n` if it holds less (see the crate docs for the protocol).
fn record_max(dir: &Path, kind: &str, n: u64) -> JobResult<()> {
    /// Rewrites before giving up; only reachable when the lock is unavailable and other
    /// writers keep lowering the value.
    const TRIES: usize = 100;
    let path = dir.join(format!("max-{kind}"));
    // The lock is released when `_lock` is dropped (or the process dies). Without it (a
    // file system or platform without `flock`), write and re-check regardless.
    let _lock = File::open(dir).and_then(|f| f.lock().map(|()| f)).ok();
    for _ in 0..TRIES {
        if read_max(&path)? >= n {
            return Ok(());
        }
        let temp = dir.join(format!(
            ".max-{kind}.tmp-{}-{}",
            std::process::id(),
            unique()
        ));
        fs::write(&temp, n.to_string()).map_err(|e| io_error("writing", &temp, &e))?;
        if let Err(e) = fs::rename(&temp, &path) {
            let _ = fs::remove_file(&temp);
            return Err(io_error(
                &format!("renaming {} to", temp.display()),
                &path,
                &e,
            ));
        }
    }
    Err(JobError::new(format!(
        "chaos: {} still holds less than {n} after {TRIES} writes",
        path.display()
    )))
}

/// The value of a `max-*` file; 0 when it does not exist.
fn read_max(path: &Path) -> JobResult<u64> {
    match fs::read_to_string(path) {
        Ok(s) => s.trim().parse().map_err(|e| {
            JobError::new(format!(
                "chaos: {} holds {s:?}, not a count: {e}",
                path.display()
            ))
        }),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(0),
        Err(e) => Err(io_error("reading", path, &e)),
    }
}

// ---------------------------------------------------------------------------------------------
// Map: word count within a batch

/// Counts the words of the batch: one `(word, count)` row per distinct word, sorted by word.
fn count_words(batch: &RecordBatch) -> JobResult<RecordBatch> {
    let lines = line_column(batch)?;
    let counts = match lines.data_type() {
        DataType::Utf8 => count_lines(lines.as_string::<i32>().iter()),
        DataType::LargeUtf8 => count_lines(lines.as_string::<i64>().iter()),
        DataType::Utf8View => count_lines(lines.as_string_view().iter()),
        other => {
            return Err(JobError::new(format!(
                "chaos: column {LINE_COLUMN} is {other}, expected Utf8"
            )));
        }
    };
    let mut counts: Vec<(&str, i64)> = counts.into_iter().collect();
    counts.sort_unstable();
    let mut words =
        StringBuilder::with_capacity(counts.len(), counts.iter().map(|(w, _)| w.len()).sum());
    let mut values = Vec::with_capacity(counts.len());
    for (w, n) in counts {
        words.append_value(w);
        values.push(n);
    }
    let columns: Vec<ArrayRef> = vec![Arc::new(words.finish()), Arc::new(Int64Array::from(values))];
    Ok(RecordBatch::try_new(map_output_schema(), columns)?)
}

/// The text column: `line`, or the only column of a one-column batch (as word count reads it).
fn line_column(batch: &RecordBatch) -> JobResult<&ArrayRef> {
    if let Some(col) = batch.column_by_name(LINE_COLUMN) {
        return Ok(col);
    }
    match batch.columns() {
        [only] => Ok(only),
        _ => Err(JobError::new(format!(
            "chaos: input has no column {LINE_COLUMN:?} (columns: {})",
            batch
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

fn count_lines<'a>(lines: impl Iterator<Item = Option<&'a str>>) -> HashMap<&'a str, i64> {
    let mut counts = HashMap::new();
    for line in lines.flatten() {
        for_each_word(line, |w| *counts.entry(w).or_insert(0) += 1);
    }
    counts
}

/// Calls `f` with each maximal run of alphabetic characters of `line`, in order (word count's
/// definition of a word; for ASCII, `is_alphabetic` is `is_ascii_alphabetic`).
fn for_each_word<'a>(line: &'a str, mut f: impl FnMut(&'a str)) {
    let mut start = None;
    for (i, c) in line.char_indices() {
        match (c.is_alphabetic(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                f(&line[s..i]);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        f(&line[s..]);
    }
}

// ---------------------------------------------------------------------------------------------
// Reduce: sum per word over sorted, whole key groups

/// Sums `count` per `word` over rows sorted by word.
///
/// The output is what the engine's `sum` aggregate writes for word count: the `word` field as
/// it arrives (non-null `Utf8`), then `count: Int64` nullable; a word whose counts are all null
/// sums to null and a sum that overflows is an error, as there. Rows out of order (a word
/// smaller than the one before, nulls first) are an error: the engine promised sorted input.
fn sum_groups(groups: &RecordBatch) -> JobResult<RecordBatch> {
    let schema = groups.schema();
    let word_at = schema.index_of(WORD_COLUMN).map_err(|_| {
        JobError::new(format!(
            "chaos: reduce input has no {WORD_COLUMN:?} column (columns: {:?})",
            schema.fields().iter().map(|f| f.name()).collect::<Vec<_>>()
        ))
    })?;
    let word_field = schema.field(word_at).clone();
    let words = groups
        .column(word_at)
        .as_string_opt::<i32>()
        .ok_or_else(|| {
            JobError::new(format!(
                "chaos: reduce column {WORD_COLUMN} is {}, expected Utf8",
                word_field.data_type()
            ))
        })?;
    let counts = groups.column_by_name(COUNT_COLUMN).ok_or_else(|| {
        JobError::new(format!(
            "chaos: reduce input has no {COUNT_COLUMN:?} column"
        ))
    })?;
    let counts = counts.as_primitive_opt::<Int64Type>().ok_or_else(|| {
        JobError::new(format!(
            "chaos: reduce column {COUNT_COLUMN} is {}, expected Int64",
            counts.data_type()
        ))
    })?;

    let mut keys: Vec<Option<&str>> = Vec::new();
    let mut sums: Vec<Option<i64>> = Vec::new();
    for i in 0..groups.num_rows() {
        let word = words.is_valid(i).then(|| words.value(i));
        let count = counts.is_valid(i).then(|| counts.value(i));
        match keys.last() {
            Some(last) if *last == word => {}
            Some(last) if *last > word => {
                return Err(JobError::new(format!(
                    "chaos: reduce input not sorted by {WORD_COLUMN}: {word:?} after {last:?} at row {i}"
                )));
            }
            _ => {
                keys.push(word);
                sums.push(None);
            }
        }
        if let (Some(n), Some(sum)) = (count, sums.last_mut()) {
            let total = sum.unwrap_or(0).checked_add(n).ok_or_else(|| {
                JobError::new(format!("chaos: the count of {word:?} overflows Int64"))
            })?;
            *sum = Some(total);
        }
    }

    let mut out_words =
        StringBuilder::with_capacity(keys.len(), keys.iter().map(|k| k.map_or(0, str::len)).sum());
    for k in &keys {
        out_words.append_option(*k);
    }
    let schema = Arc::new(Schema::new(vec![
        word_field,
        Field::new(COUNT_COLUMN, DataType::Int64, true),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(out_words.finish()),
        Arc::new(Int64Array::from(sums)),
    ];
    Ok(RecordBatch::try_new(schema, columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::StringArray;
    use std::path::PathBuf;
    use std::time::Instant;

    fn ctx(job_id: &str, kind: TaskKind, params: &[(&str, &str)]) -> TaskContext {
        TaskContext {
            job_id: job_id.into(),
            kind,
            task_index: 0,
            attempt: 0,
            params: params
                .iter()
                .map(|&(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            input: String::new(),
            counters: Default::default(),
            sides: Default::default(),
        }
    }

    fn text(lines: &[Option<&str>]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new(
            LINE_COLUMN,
            DataType::Utf8,
            true,
        )]));
        RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(lines.to_vec()))]).unwrap()
    }

    fn pairs(schema: SchemaRef, rows: &[(&str, i64)]) -> RecordBatch {
        let words: StringArray = rows.iter().map(|&(w, _)| Some(w)).collect();
        let counts: Int64Array = rows.iter().map(|&(_, n)| Some(n)).collect();
        RecordBatch::try_new(schema, vec![Arc::new(words), Arc::new(counts)]).unwrap()
    }

    fn rows(batch: &RecordBatch) -> Vec<(String, i64)> {
        let words = batch.column(0).as_string::<i32>();
        let counts = batch.column(1).as_primitive::<Int64Type>();
        words
            .iter()
            .zip(counts.iter())
            .map(|(w, n)| (w.unwrap().to_string(), n.unwrap()))
            .collect()
    }

    /// A fresh, empty directory under the system temp dir; removed by [`TempDir::drop`].
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "sluice-chaos-{name}-{}-{}",
                std::process::id(),
                unique()
            ));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn str(&self) -> &str {
            self.0.to_str().unwrap()
        }

        fn names(&self) -> Vec<String> {
            let mut names: Vec<String> = fs::read_dir(&self.0)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// Map over each batch, then the engine's part: sort all map rows by word, then reduce.
    fn word_count(batches: &[RecordBatch], params: &[(&str, &str)]) -> Vec<(String, i64)> {
        let map_ctx = ctx("wc", TaskKind::Map, params);
        let mut all = Vec::new();
        for b in batches {
            let out = Chaos.map(b.clone(), &map_ctx).unwrap();
            assert_eq!(out.schema(), map_output_schema());
            all.extend(rows(&out));
        }
        all.sort_by(|a, b| a.0.cmp(&b.0));
        let all: Vec<(&str, i64)> = all.iter().map(|(w, n)| (w.as_str(), *n)).collect();
        let reduced = Chaos
            .reduce(
                pairs(map_output_schema(), &all),
                &ctx("wc", TaskKind::Reduce, params),
            )
            .unwrap();
        // The schema the engine's `sum` aggregate gives word count's output.
        assert_eq!(
            reduced.schema().as_ref(),
            &Schema::new(vec![
                Field::new("word", DataType::Utf8, false),
                Field::new("count", DataType::Int64, true),
            ])
        );
        rows(&reduced)
    }

    fn expect(pairs: &[(&str, i64)]) -> Vec<(String, i64)> {
        let mut v: Vec<(String, i64)> = pairs.iter().map(|&(w, n)| (w.to_string(), n)).collect();
        v.sort();
        v
    }

    #[test]
    fn plain_word_count_matches_a_hand_count() {
        let batches = [
            text(&[
                Some("the cat and the hat"),
                None,
                Some("it's 4th-of July,\tjuly42x (again)... again!"),
            ]),
            text(&[
                Some("The cat; café Café café 東京"),
                Some(""),
                Some("  42 !"),
            ]),
        ];
        let got = word_count(&batches, &[]);
        assert_eq!(
            got,
            expect(&[
                ("the", 2),
                ("The", 1),
                ("cat", 2),
                ("and", 1),
                ("hat", 1),
                ("it", 1),
                ("s", 1),
                ("th", 1),
                ("of", 1),
                ("July", 1),
                ("july", 1),
                ("x", 1),
                ("again", 2),
                ("café", 2),
                ("Café", 1),
                ("東京", 1),
            ])
        );
        // Output rows are sorted by word (byte order), as the engine writes aggregates.
        let words: Vec<&String> = got.iter().map(|(w, _)| w).collect();
        assert!(words.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn map_pre_aggregates_within_the_batch() {
        let out = Chaos
            .map(
                text(&[Some("to be or not to be"), Some("to be")]),
                &ctx("pre", TaskKind::Map, &[]),
            )
            .unwrap();
        assert_eq!(
            rows(&out),
            expect(&[("be", 3), ("not", 1), ("or", 1), ("to", 3)])
        );
    }

    #[test]
    fn map_reads_a_single_other_column_and_refuses_other_types() {
        let schema = Arc::new(Schema::new(vec![Field::new("value", DataType::Utf8, true)]));
        let batch =
            RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(vec!["a b a"]))]).unwrap();
        let c = ctx("cols", TaskKind::Map, &[]);
        assert_eq!(Chaos.map(batch, &c).unwrap().num_rows(), 2);
        let schema = Arc::new(Schema::new(vec![Field::new("line", DataType::Int64, true)]));
        let batch =
            RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1]))]).unwrap();
        let err = Chaos.map(batch, &c).unwrap_err();
        assert!(
            err.message().contains("line") && err.message().contains("Int64"),
            "{err}"
        );
    }

    #[test]
    fn reduce_sums_counts_across_rows_of_a_word() {
        let input = pairs(
            map_output_schema(),
            &[
                ("a", 1),
                ("a", 2),
                ("a", 4),
                ("b", 5),
                ("c", 1),
                ("c", 1),
                ("c", 1),
            ],
        );
        let out = Chaos
            .reduce(input, &ctx("sum", TaskKind::Reduce, &[]))
            .unwrap();
        assert_eq!(rows(&out), expect(&[("a", 7), ("b", 5), ("c", 3)]));

        let empty = pairs(map_output_schema(), &[]);
        let out = Chaos
            .reduce(empty, &ctx("sum", TaskKind::Reduce, &[]))
            .unwrap();
        assert_eq!(out.num_rows(), 0);
    }

    #[test]
    fn reduce_refuses_unsorted_input_and_overflow() {
        let c = ctx("bad", TaskKind::Reduce, &[]);
        let unsorted = pairs(map_output_schema(), &[("b", 1), ("a", 1)]);
        let err = Chaos.reduce(unsorted, &c).unwrap_err();
        assert!(err.message().contains("not sorted"), "{err}");
        let big = pairs(map_output_schema(), &[("a", i64::MAX), ("a", 1)]);
        let err = Chaos.reduce(big, &c).unwrap_err();
        assert!(err.message().contains("overflows"), "{err}");
    }

    #[test]
    fn describes_a_custom_reduce_keyed_by_word() {
        let d = Chaos.describe();
        assert_eq!(d.key_columns, ["word"]);
        assert!(Chaos.aggregates().is_empty());
        assert_eq!(d.reduce, sluice_sdk::ReduceKind::Custom);
    }

    #[test]
    fn marker_files_appear_once_per_attempt() {
        let dir = TempDir::new("marker");
        let params = [("marker_dir", dir.str())];
        let pid = std::process::id();
        let batch = text(&[Some("a b")]);
        let mut c = ctx("marker-job", TaskKind::Map, &params);
        c.task_index = 3;
        for _ in 0..3 {
            Chaos.map(batch.clone(), &c).unwrap();
        }
        c.attempt = 1;
        Chaos.map(batch.clone(), &c).unwrap();
        Chaos.map(batch.clone(), &c).unwrap();
        let mut r = ctx("marker-job", TaskKind::Reduce, &params);
        r.task_index = 3;
        let input = pairs(map_output_schema(), &[("a", 1)]);
        Chaos.reduce(input.clone(), &r).unwrap();
        Chaos.reduce(input, &r).unwrap();
        assert_eq!(
            dir.names(),
            [
                format!("map-3-0-{pid}"),
                format!("map-3-1-{pid}"),
                format!("reduce-3-0-{pid}"),
            ]
        );
    }

    #[test]
    fn marker_errors_name_the_path() {
        let dir = TempDir::new("marker-missing");
        let missing = dir.0.join("no-such-dir");
        let params = [("marker_dir", missing.to_str().unwrap())];
        let err = Chaos
            .map(
                text(&[Some("a")]),
                &ctx("marker-missing", TaskKind::Map, &params),
            )
            .unwrap_err();
        assert!(err.message().contains(missing.to_str().unwrap()), "{err}");
    }

    #[test]
    fn only_if_env_disables_sleeps_where_the_variable_is_unset() {
        let var = "SLUICE_CHAOS_TEST_VARIABLE_THAT_IS_NEVER_SET";
        assert!(std::env::var_os(var).is_none());
        let params = [("only_if_env", var), ("fixed_sleep_map_ms", "2000")];
        let start = Instant::now();
        let out = Chaos
            .map(text(&[Some("a")]), &ctx("env-off", TaskKind::Map, &params))
            .unwrap();
        assert!(start.elapsed() < Duration::from_millis(1000));
        assert_eq!(rows(&out), expect(&[("a", 1)]));

        // And applies where it is set (any non-empty variable of this process will do).
        let Some(set) = std::env::vars_os()
            .find(|(k, v)| !v.is_empty() && k.to_str().is_some_and(|k| !k.contains('=')))
            .and_then(|(k, _)| k.into_string().ok())
        else {
            return;
        };
        let params = [("only_if_env", set.as_str()), ("fixed_sleep_map_ms", "150")];
        let start = Instant::now();
        Chaos
            .map(text(&[Some("a")]), &ctx("env-on", TaskKind::Map, &params))
            .unwrap();
        assert!(start.elapsed() >= Duration::from_millis(150));
    }

    #[test]
    fn fixed_and_random_sleeps_apply_per_kind() {
        let params = [("fixed_sleep_reduce_ms", "120"), ("sleep_map_ms", "0")];
        let start = Instant::now();
        Chaos
            .map(text(&[Some("a")]), &ctx("sleeps", TaskKind::Map, &params))
            .unwrap();
        assert!(start.elapsed() < Duration::from_millis(100));
        let start = Instant::now();
        Chaos
            .reduce(
                pairs(map_output_schema(), &[("a", 1)]),
                &ctx("sleeps", TaskKind::Reduce, &params),
            )
            .unwrap();
        assert!(start.elapsed() >= Duration::from_millis(120));

        let params = [("sleep_map_ms", "40")];
        let start = Instant::now();
        Chaos
            .map(text(&[Some("a")]), &ctx("sleeps", TaskKind::Map, &params))
            .unwrap();
        assert!(start.elapsed() < Duration::from_millis(1000));
    }

    #[test]
    fn zero_abort_probability_never_aborts() {
        let params = [("abort_map", "0"), ("abort_reduce", "0.0")];
        for _ in 0..100 {
            Chaos
                .map(text(&[Some("a")]), &ctx("no-abort", TaskKind::Map, &params))
                .unwrap();
        }
    }

    #[test]
    fn malformed_parameters_are_job_errors() {
        let batch = text(&[Some("a")]);
        for (k, v) in [
            ("abort_map", "1.5"),
            ("abort_map", "-0.1"),
            ("abort_map", "NaN"),
            ("abort_map", "often"),
            ("sleep_map_ms", "-1"),
            ("fixed_sleep_map_ms", "x"),
            ("hold_ms", "1.5"),
        ] {
            let err = Chaos
                .map(batch.clone(), &ctx("params", TaskKind::Map, &[(k, v)]))
                .unwrap_err();
            assert!(err.message().contains(k), "{k}={v}: {err}");
        }
        // The other kind's parameters are not read by this kind.
        Chaos
            .map(
                batch,
                &ctx("params", TaskKind::Map, &[("abort_reduce", "x")]),
            )
            .unwrap();
    }

    #[test]
    fn splitmix_stays_in_range() {
        let mut rng = SplitMix64::seeded(&ctx("rng", TaskKind::Map, &[]));
        let mut seen = [false; 4];
        for _ in 0..1000 {
            let u = rng.unit();
            assert!((0.0..1.0).contains(&u));
            let n = rng.up_to(3);
            seen[n as usize] = true;
            assert_eq!(rng.up_to(0), 0);
        }
        assert!(seen.iter().all(|&s| s), "0..=3 all drawn: {seen:?}");
        // The widest range does not overflow.
        let _ = rng.up_to(u64::MAX);
    }

    #[test]
    fn concurrency_probe_records_the_maximum_and_cleans_up() {
        let dir = TempDir::new("concurrency");
        let params = [("concurrency_dir", dir.str()), ("hold_ms", "300")];
        // Three map calls at once (as three slots would run them).
        std::thread::scope(|s| {
            for i in 0..3 {
                let params = &params;
                s.spawn(move || {
                    let mut c = ctx("conc", TaskKind::Map, params);
                    c.task_index = i;
                    Chaos.map(text(&[Some("a")]), &c).unwrap();
                });
            }
        });
        let max = fs::read_to_string(dir.0.join("max-map")).unwrap();
        assert_eq!(max, "3");
        assert_eq!(dir.names(), ["max-map"], "active files removed");

        // A lone call later never lowers the maximum; a reduce call records its own kind.
        let params = [("concurrency_dir", dir.str()), ("hold_ms", "0")];
        Chaos
            .map(text(&[Some("a")]), &ctx("conc", TaskKind::Map, &params))
            .unwrap();
        Chaos
            .reduce(
                pairs(map_output_schema(), &[("a", 1)]),
                &ctx("conc", TaskKind::Reduce, &params),
            )
            .unwrap();
        assert_eq!(fs::read_to_string(dir.0.join("max-map")).unwrap(), "3");
        assert_eq!(fs::read_to_string(dir.0.join("max-reduce")).unwrap(), "1");
        assert_eq!(dir.names(), ["max-map", "max-reduce"]);
    }

    #[test]
    fn record_max_only_raises_and_reports_garbage() {
        let dir = TempDir::new("max");
        let d = dir.0.clone();
        record_max(&d, "map", 2).unwrap();
        record_max(&d, "map", 1).unwrap();
        assert_eq!(read_max(&d.join("max-map")).unwrap(), 2);
        record_max(&d, "map", 5).unwrap();
        assert_eq!(read_max(&d.join("max-map")).unwrap(), 5);
        fs::write(d.join("max-reduce"), "junk").unwrap();
        let err = record_max(&d, "reduce", 1).unwrap_err();
        assert!(err.message().contains("max-reduce"), "{err}");
        assert_eq!(dir.names(), ["max-map", "max-reduce"]);
    }
}
