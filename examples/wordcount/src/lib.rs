//! # Word count, the Sluice example job
//!
//! Counts how often each word occurs in text input. A word is a maximal run of characters for
//! which [`char::is_alphabetic`] holds, so `café` and `Straße` are one word each, while digits,
//! punctuation and whitespace separate words (`it's` is `it` and `s`, `4th` is `th`). Case is
//! kept: `The` and `the` are counted apart.
//!
//! The engine hands [`WordCount::map`] batches with one column `line: Utf8`. The map counts
//! words within the batch and emits one row per distinct word, never one row per occurrence:
//! a 1 GiB input has about 170M words, but a batch of 65,536 lines has at most a few hundred
//! thousand distinct ones. The engine then sums the partial counts per word (map-side as a
//! combiner, then at the reducers). The job's output is `word: Utf8, count: Int64`.
//!
//! ```text
//! sluice run --local 4 --plugin target/release/libsluice_wordcount.so \
//!     --input 'books/*.txt' --output counts/
//! ```

#![warn(missing_docs)]

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, OnceLock};

use arrow_array::builder::StringBuilder;
use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use sluice_sdk::{Aggregate, Job, JobError, JobResult, TaskContext, export_job};

/// Name of the input column holding one line of text.
pub const LINE_COLUMN: &str = "line";

/// The word count job: map emits `(word, count)` per distinct word of a batch and the engine
/// sums `count` per word.
#[derive(Debug, Default)]
pub struct WordCount;

impl Job for WordCount {
    fn name(&self) -> &str {
        "wordcount"
    }

    fn key_columns(&self) -> Vec<String> {
        vec!["word".into()]
    }

    fn aggregates(&self) -> Vec<Aggregate> {
        vec![Aggregate::sum("count", "count")]
    }

    fn map(&self, batch: RecordBatch, _ctx: &TaskContext) -> JobResult<RecordBatch> {
        let lines = line_column(&batch)?;
        // Counting allocates nothing per word (see `Counts`); the table is sized from the
        // amount of text so that it rarely has to grow.
        let text_bytes = lines.get_buffer_memory_size();
        let counts = match lines.data_type() {
            DataType::Utf8 => count_words(lines.as_string::<i32>().iter(), text_bytes),
            DataType::LargeUtf8 => count_words(lines.as_string::<i64>().iter(), text_bytes),
            DataType::Utf8View => count_words(lines.as_string_view().iter(), text_bytes),
            other => {
                return Err(JobError::new(format!(
                    "wordcount: column {LINE_COLUMN} is {other}, expected Utf8"
                )));
            }
        };
        counts_to_batch(&counts)
    }
}

export_job!(WordCount);

/// The schema of the map output: `word: Utf8, count: Int64`, both non-null.
pub fn output_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(vec![
                Field::new("word", DataType::Utf8, false),
                Field::new("count", DataType::Int64, false),
            ]))
        })
        .clone()
}

/// The text column: `line`, or the only column of a one-column batch (text read under another
/// name, e.g. `value` as Spark calls it).
fn line_column(batch: &RecordBatch) -> JobResult<&ArrayRef> {
    if let Some(col) = batch.column_by_name(LINE_COLUMN) {
        return Ok(col);
    }
    match batch.columns() {
        [only] => Ok(only),
        _ => Err(JobError::new(format!(
            "wordcount: input has no column {LINE_COLUMN:?} (columns: {})",
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

/// Counts the words of `lines`; null lines count nothing.
fn count_words<'a>(lines: impl Iterator<Item = Option<&'a str>>, text_bytes: usize) -> Counts<'a> {
    // Natural text has a word every six bytes or so and, within one batch, one distinct word
    // per few dozen occurrences; undersizing costs a rehash or two, oversizing only memory.
    let mut counts = Counts::with_capacity(text_bytes / 32 + 64);
    // Words of a line are split first and their slots prefetched, then counted: a batch's
    // table is megabytes, so nearly every rare word is a cache miss, and this lets the
    // misses of a line overlap instead of being paid one after the other.
    let mut pending: Vec<ShortKey> = Vec::with_capacity(64);
    for line in lines.flatten() {
        for_each_word(line, |w| match ShortKey::of(w) {
            Some(key) => {
                counts.short.prefetch(key);
                pending.push(key);
            }
            None => *counts.long.entry(w).or_insert(0) += 1,
        });
        for key in pending.drain(..) {
            counts.short.add(key);
        }
    }
    counts
}

/// Word counts of one batch.
///
/// Almost every word fits in 16 bytes, and those are kept inline in an open-addressing table
/// (linear probing, one cache line per lookup, compared as two integers): the general
/// `HashMap<&str, i64>` this replaced spent most of its time on the cache misses of following
/// each key's pointer into the batch and comparing bytes. Longer words go to such a map,
/// keyed by slices of the batch's own text so nothing is copied.
struct Counts<'a> {
    short: ShortWordTable,
    long: HashMap<&'a str, i64, BuildHasherDefault<WordHasher>>,
}

impl<'a> Counts<'a> {
    fn with_capacity(words: usize) -> Self {
        Counts {
            short: ShortWordTable::with_capacity(words),
            long: HashMap::default(),
        }
    }

    fn len(&self) -> usize {
        self.short.len + self.long.len()
    }
}

/// A word of at most 16 bytes, zero-padded. Alphabetic characters never contain a zero byte
/// in UTF-8, so the padding is unambiguous, and the all-zero key (the empty word) can mark a
/// free slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ShortKey([u64; 2]);

impl ShortKey {
    const EMPTY: ShortKey = ShortKey([0, 0]);

    #[inline]
    fn of(word: &str) -> Option<Self> {
        let bytes = word.as_bytes();
        if bytes.is_empty() || bytes.len() > 16 {
            return None;
        }
        let mut buf = [0u8; 16];
        buf[..bytes.len()].copy_from_slice(bytes);
        let (lo, hi) = buf.split_at(8);
        Some(ShortKey([le_u64(lo), le_u64(hi)]))
    }

    #[inline]
    fn hash(self) -> u64 {
        folded_multiply(self.0[0] ^ MIX, self.0[1] ^ MIX2)
    }

    /// The word's bytes (without the padding).
    fn bytes(self) -> ([u8; 16], usize) {
        let mut buf = [0u8; 16];
        buf[..8].copy_from_slice(&self.0[0].to_le_bytes());
        buf[8..].copy_from_slice(&self.0[1].to_le_bytes());
        let len = buf.iter().position(|&b| b == 0).unwrap_or(16);
        (buf, len)
    }
}

#[inline]
fn le_u64(bytes: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(bytes);
    u64::from_le_bytes(w)
}

/// Open-addressing hash table from [`ShortKey`] to a count, with linear probing.
struct ShortWordTable {
    /// Power-of-two many slots; [`ShortKey::EMPTY`] marks a free one.
    slots: Vec<(ShortKey, i64)>,
    /// Occupied slots.
    len: usize,
    /// `64 - log2(slots.len())`: the slot of a key is the top bits of its hash.
    shift: u32,
}

impl ShortWordTable {
    fn with_capacity(words: usize) -> Self {
        let slots = (words.max(8) * 8 / 5).next_power_of_two();
        ShortWordTable {
            slots: vec![(ShortKey::EMPTY, 0); slots],
            len: 0,
            shift: 64 - slots.trailing_zeros(),
        }
    }

    /// Asks the CPU to start loading `key`'s slot into the cache.
    #[inline]
    fn prefetch(&self, key: ShortKey) {
        let i = (key.hash() >> self.shift) as usize;
        #[cfg(target_arch = "x86_64")]
        if let Some(slot) = self.slots.get(i) {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            // SAFETY: SSE is part of the x86_64 baseline, and a prefetch is only a hint: it
            // never faults and changes no state visible to the program.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(slot).cast()) };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = i;
    }

    #[inline]
    fn add(&mut self, key: ShortKey) {
        let mask = self.slots.len() - 1;
        let mut i = (key.hash() >> self.shift) as usize;
        loop {
            let slot = &mut self.slots[i];
            if slot.0 == key {
                slot.1 += 1;
                return;
            }
            if slot.0 == ShortKey::EMPTY {
                *slot = (key, 1);
                self.len += 1;
                // Linear probing slows down sharply past about two thirds full.
                if self.len * 8 > self.slots.len() * 5 {
                    self.grow();
                }
                return;
            }
            i = (i + 1) & mask;
        }
    }

    fn grow(&mut self) {
        let mut bigger = ShortWordTable::with_capacity(self.slots.len());
        let mask = bigger.slots.len() - 1;
        for &(key, n) in self.slots.iter().filter(|s| s.0 != ShortKey::EMPTY) {
            let mut i = (key.hash() >> bigger.shift) as usize;
            while bigger.slots[i].0 != ShortKey::EMPTY {
                i = (i + 1) & mask;
            }
            bigger.slots[i] = (key, n);
        }
        bigger.len = self.len;
        *self = bigger;
    }

    fn iter(&self) -> impl Iterator<Item = (ShortKey, i64)> + '_ {
        self.slots
            .iter()
            .filter(|s| s.0 != ShortKey::EMPTY)
            .copied()
    }
}

/// Calls `f` with each word of `line`, in order.
fn for_each_word<'a>(line: &'a str, mut f: impl FnMut(&'a str)) {
    if line.is_ascii() {
        // Most lines are ASCII: classify bytes directly, no UTF-8 decoding.
        // Two tight loops (skip the gap, then the word) rather than one state machine: one
        // unpredictable branch per word instead of one per byte.
        let bytes = line.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            while i < bytes.len() && !bytes[i].is_ascii_alphabetic() {
                i += 1;
            }
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
                i += 1;
            }
            if i > start {
                f(&line[start..i]);
            }
        }
    } else {
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
}

/// Builds the `(word, count)` batch from a batch's counts.
fn counts_to_batch(counts: &Counts<'_>) -> JobResult<RecordBatch> {
    let rows = counts.len();
    let mut words = StringBuilder::with_capacity(rows, rows * 8);
    let mut values = Vec::with_capacity(rows);
    for (key, n) in counts.short.iter() {
        let (buf, len) = key.bytes();
        // The bytes were copied from a `&str` and cut at a character boundary (the word's
        // end), so this only fails if the table is broken.
        let word = std::str::from_utf8(&buf[..len])
            .map_err(|e| JobError::new(format!("wordcount: corrupt word table entry: {e}")))?;
        words.append_value(word);
        values.push(n);
    }
    for (word, &n) in &counts.long {
        words.append_value(word);
        values.push(n);
    }
    let columns: Vec<ArrayRef> = vec![Arc::new(words.finish()), Arc::new(Int64Array::from(values))];
    Ok(RecordBatch::try_new(output_schema(), columns)?)
}

/// A fast hasher for the rare words longer than 16 bytes, in the style of foldhash: 8 bytes
/// per step, each mixed in with a 64×64→128-bit multiply folded to 64 bits.
///
/// The default SipHash resists hash flooding, which a batch of our own input text does not
/// need, and costs several times more per word.
#[derive(Debug, Default, Clone, Copy)]
pub struct WordHasher {
    hash: u64,
}

const MIX: u64 = 0x9E37_79B9_7F4A_7C15;
const MIX2: u64 = 0xD6E8_FEB8_6659_FD93;

/// Multiplies and folds the 128-bit product, so every input bit reaches the low bits that
/// select the bucket as well as the high bits the table uses as tags.
#[inline]
fn folded_multiply(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

impl Hasher for WordHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.hash = folded_multiply(self.hash ^ u64::from_le_bytes(w), MIX);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            // The length keeps `ab` and `ab\0` apart.
            let tail = u64::from_le_bytes(w) ^ ((rest.len() as u64) << 56);
            self.hash = folded_multiply(self.hash ^ tail, MIX2);
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.hash = folded_multiply(self.hash ^ u64::from(i), MIX);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::StringArray;
    use sluice_sdk::TaskKind;
    use std::collections::BTreeMap;

    fn ctx() -> TaskContext {
        TaskContext {
            job_id: "job-1".into(),
            kind: TaskKind::Map,
            task_index: 0,
            attempt: 0,
            params: BTreeMap::new(),
            input: String::new(),
            counters: Default::default(),
            sides: Default::default(),
        }
    }

    fn run(lines: Vec<Option<&str>>) -> BTreeMap<String, i64> {
        let schema = Arc::new(Schema::new(vec![Field::new("line", DataType::Utf8, true)]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(lines))]).unwrap();
        let out = WordCount.map(batch, &ctx()).unwrap();
        assert_eq!(out.schema(), output_schema());
        let words = out.column(0).as_string::<i32>();
        let counts = out.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
        let result: BTreeMap<String, i64> = words
            .iter()
            .zip(counts.iter())
            .map(|(w, n)| (w.unwrap().to_string(), n.unwrap()))
            .collect();
        assert_eq!(result.len(), out.num_rows(), "one row per distinct word");
        result
    }

    fn expect(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
        pairs.iter().map(|&(w, n)| (w.to_string(), n)).collect()
    }

    #[test]
    fn splits_on_digits_punctuation_and_whitespace() {
        let got = run(vec![Some("it's 4th-of July,\tjuly42x (again)... again!")]);
        assert_eq!(
            got,
            expect(&[
                ("it", 1),
                ("s", 1),
                ("th", 1),
                ("of", 1),
                ("July", 1),
                ("july", 1),
                ("x", 1),
                ("again", 2),
            ])
        );
    }

    #[test]
    fn non_ascii_letters_belong_to_words() {
        let got = run(vec![
            Some("Café, café; Straße naïve—Zürich 東京 x"),
            Some("café"),
        ]);
        assert_eq!(
            got,
            expect(&[
                ("Café", 1),
                ("café", 2),
                ("Straße", 1),
                ("naïve", 1),
                ("Zürich", 1),
                ("東京", 1),
                ("x", 1),
            ])
        );
    }

    #[test]
    fn case_is_kept() {
        let got = run(vec![Some("The the THE the")]);
        assert_eq!(got, expect(&[("The", 1), ("the", 2), ("THE", 1)]));
    }

    #[test]
    fn empty_and_null_lines_yield_nothing() {
        assert!(run(vec![Some(""), None, Some("  42 ... !")]).is_empty());
        assert!(run(vec![]).is_empty());
        assert_eq!(
            run(vec![None, Some("a"), Some(""), Some("a")]),
            expect(&[("a", 2)])
        );
    }

    #[test]
    fn long_words_and_table_growth_are_counted_exactly() {
        let long = "Donaudampfschifffahrtsgesellschaft";
        let sixteen = "abcdefghijklmnop";
        let mut text = format!("{long} {sixteen} {long} {sixteen}q ");
        // Many distinct words force the inline table to grow several times.
        let distinct: Vec<String> = (0..5_000u32)
            .map(|i| {
                i.to_string()
                    .bytes()
                    .map(|d| char::from(b'a' + d - b'0'))
                    .collect()
            })
            .collect();
        for w in &distinct {
            text.push_str(w);
            text.push(' ');
        }
        let got = run(vec![Some(text.as_str()), Some(text.as_str())]);
        assert_eq!(got[long], 4);
        assert_eq!(got[sixteen], 2);
        assert_eq!(got["abcdefghijklmnopq"], 2);
        for w in &distinct {
            assert_eq!(got[w.as_str()], 2, "{w}");
        }
        assert_eq!(got.len(), distinct.len() + 3);
    }

    #[test]
    fn pre_aggregates_within_the_batch() {
        let line = "to be or not to be ".repeat(1_000);
        let got = run(vec![Some(line.as_str()); 10]);
        assert_eq!(
            got,
            expect(&[
                ("to", 20_000),
                ("be", 20_000),
                ("or", 10_000),
                ("not", 10_000)
            ])
        );
    }

    #[test]
    fn a_single_differently_named_column_is_read_and_other_types_refused() {
        let schema = Arc::new(Schema::new(vec![Field::new("value", DataType::Utf8, true)]));
        let batch =
            RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(vec!["a b a"]))]).unwrap();
        assert_eq!(WordCount.map(batch, &ctx()).unwrap().num_rows(), 2);

        let schema = Arc::new(Schema::new(vec![Field::new("line", DataType::Int64, true)]));
        let batch =
            RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1]))]).unwrap();
        let err = WordCount.map(batch, &ctx()).unwrap_err();
        assert!(
            err.message().contains("line") && err.message().contains("Int64"),
            "{err}"
        );
    }

    #[test]
    fn describes_a_sum_per_word() {
        let d = WordCount.describe();
        assert_eq!(d.key_columns, ["word"]);
        assert_eq!(
            d.reduce,
            sluice_sdk::ReduceKind::Aggregate(vec![Aggregate::sum("count", "count")])
        );
    }
}
