//! English-like text for word count.
//!
//! Lines of 20 to 200 bytes made of words from a vocabulary of a chosen size, drawn with a
//! Zipf skew (the `r`-th most frequent word has weight `1 / r`, as in natural language), so a
//! word count sees a few very frequent keys and a long tail. The text exercises what a word
//! splitter gets wrong: mixed case (`The`, `the`, `THE`), punctuation and digits between and
//! against words (`it's`, `4th`, `x-ray`), and alphabetic words outside ASCII (`café`,
//! `Straße`, `naïve`).
//!
//! The vocabulary starts with common English and non-ASCII words, then continues with
//! pronounceable made-up words built from syllables shuffled by the seed, so any size can be
//! asked for and every word is a single run of alphabetic characters.

use std::collections::HashSet;
use std::io::{self, BufWriter, Write};

use crate::rng::{SplitMix64, mix64};

/// Words at the top of the frequency ranking, in order. Non-ASCII words are mixed in among
/// the common ones so that even a small sample contains them.
const FIXED_WORDS: [&str; 64] = [
    "the",
    "of",
    "and",
    "to",
    "a",
    "in",
    "is",
    "it",
    "that",
    "was",
    "café",
    "for",
    "on",
    "are",
    "with",
    "as",
    "I",
    "his",
    "they",
    "be",
    "Straße",
    "at",
    "one",
    "have",
    "this",
    "from",
    "or",
    "had",
    "by",
    "naïve",
    "word",
    "but",
    "what",
    "some",
    "we",
    "can",
    "out",
    "other",
    "were",
    "résumé",
    "all",
    "there",
    "when",
    "up",
    "use",
    "your",
    "how",
    "said",
    "an",
    "façade",
    "each",
    "she",
    "which",
    "do",
    "their",
    "über",
    "time",
    "if",
    "will",
    "jalapeño",
    "Zürich",
    "fiancée",
    "smörgåsbord",
    "crème",
];

const ONSETS: [&str; 24] = [
    "b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z", "br",
    "ch", "st", "th", "tr", "pl",
];
const VOWELS: [char; 5] = ['a', 'e', 'i', 'o', 'u'];

/// Words that can start a sentence or appear capitalised or in capitals: the most frequent
/// ones, as in real text (`The`, `It`, `THE`). Keeping case variants to the head of the
/// ranking keeps the number of distinct words close to the vocabulary size.
const TOP_WORDS: usize = 100;
/// Weights of as-is, Capitalised and UPPER for a top word in the middle of a sentence.
const CASE_WEIGHTS: [u32; 3] = [96, 3, 1];
/// One made-up word in `PROPER_NOUN_EVERY` is a name, always written capitalised.
const PROPER_NOUN_EVERY: u64 = 10;

/// What separates two words: mostly a space, otherwise punctuation or a number.
const SEPARATORS: [&str; 12] = [
    " ", ", ", ". ", "; ", ": ", " - ", "-", " \"", "\" ", "'s ", " (", ") ",
];
const SEPARATOR_WEIGHTS: [u32; 12] = [760, 70, 40, 12, 8, 10, 10, 6, 6, 20, 4, 4];
/// Percent of gaps between words holding a number (`1999`, `4th`, `12%`) instead.
const NUMBER_PERCENT: u64 = 4;

/// Line lengths in bytes, not counting the newline.
const MIN_LINE: usize = 20;
const MAX_LINE: usize = 200;

/// Writes text lines to `out` until at least `bytes` bytes are written, stopping at the end of
/// the line that reaches `bytes`; returns the number of bytes written.
///
/// `vocabulary` is the number of distinct words (before case variants) and must be at least
/// 1. Deterministic for `(seed, vocabulary)`.
pub fn write_text<W: Write>(out: W, bytes: u64, seed: u64, vocabulary: u32) -> io::Result<u64> {
    if vocabulary == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the vocabulary must hold at least one word",
        ));
    }
    let vocab = Vocabulary::new(vocabulary, seed);
    let mut rng = SplitMix64::new(mix64(seed ^ 0x7E47));
    let mut out = BufWriter::with_capacity(1 << 16, out);
    let mut line = String::with_capacity(MAX_LINE + 64);
    let mut written = 0u64;
    while written < bytes {
        line.clear();
        push_line(&mut line, &vocab, &mut rng);
        line.push('\n');
        out.write_all(line.as_bytes())?;
        written += line.len() as u64;
    }
    out.flush()?;
    Ok(written)
}

/// Appends one line (without newline) of `MIN_LINE..=MAX_LINE` bytes.
fn push_line(line: &mut String, vocab: &Vocabulary, rng: &mut SplitMix64) {
    let target = MIN_LINE + rng.below((MAX_LINE - MIN_LINE + 1) as u64) as usize;
    // Each line starts a sentence.
    line.push_str(vocab.top_form(vocab.sample_top(rng), 1));
    let mut number = String::new();
    while line.len() < target {
        let sentence_end;
        let gap: &str = if rng.chance(NUMBER_PERCENT) {
            number.clear();
            number.push(' ');
            number.push_str(&rng.below(10_000).to_string());
            number.push_str(["", "", "th", "%", "s"][rng.below(5) as usize]);
            number.push(' ');
            sentence_end = false;
            &number
        } else {
            let s = SEPARATORS[rng.weighted(&SEPARATOR_WEIGHTS)];
            sentence_end = s == ". ";
            s
        };
        let word = if sentence_end {
            vocab.top_form(vocab.sample_top(rng), 1)
        } else {
            let i = vocab.sample(rng);
            if i < TOP_WORDS {
                vocab.top_form(i, rng.weighted(&CASE_WEIGHTS))
            } else {
                vocab.word(i)
            }
        };
        // A gap and a word are a few dozen bytes at most, so stopping here only happens
        // with the line already far above `MIN_LINE`; `+ 1` keeps room for a final stop.
        if line.len() + gap.len() + word.len() + 1 > MAX_LINE {
            break;
        }
        line.push_str(gap);
        line.push_str(word);
    }
    if rng.chance(70) {
        line.push(['.', '.', '.', '!', '?'][rng.below(5) as usize]);
    }
}

/// The words and their sampling distribution.
struct Vocabulary {
    /// All words as normally written, one after the other: one allocation for the whole
    /// vocabulary instead of one per word.
    text: String,
    /// `(start, end)` of each word in `text`, by frequency rank.
    spans: Vec<(usize, usize)>,
    /// The first [`TOP_WORDS`] words as is, Capitalised and UPPER.
    top: Vec<[String; 3]>,
    /// Cumulative Zipf weights; `cumulative[i]` is the total weight of words `0..=i`.
    cumulative: Vec<f64>,
    /// `guide[k]` is the first word whose cumulative weight exceeds `k / GUIDE` of the total,
    /// so a draw binary-searches a few neighbouring words instead of the whole table.
    guide: Vec<usize>,
}

/// Buckets of the guide table.
const GUIDE: usize = 1 << 16;

impl Vocabulary {
    fn new(size: u32, seed: u64) -> Self {
        let size = size as usize;
        let mut syllables: Vec<String> = ONSETS
            .iter()
            .flat_map(|o| VOWELS.iter().map(move |v| format!("{o}{v}")))
            .collect();
        // A seed-dependent syllable order gives each seed its own made-up words.
        let mut rng = SplitMix64::new(mix64(seed ^ 0x5EED));
        for i in (1..syllables.len()).rev() {
            syllables.swap(i, rng.below(i as u64 + 1) as usize);
        }

        let mut text = String::new();
        let mut spans = Vec::with_capacity(size);
        let mut seen = HashSet::with_capacity(size);
        let mut made_up = (0u64..).map(|i| made_up_word(i, &syllables, seed));
        while spans.len() < size {
            let w = match FIXED_WORDS.get(spans.len()) {
                Some(w) => w.to_string(),
                None => made_up.next().unwrap_or_default(),
            };
            if seen.insert(w.clone()) {
                spans.push((text.len(), text.len() + w.len()));
                text.push_str(&w);
            }
        }
        drop(seen);

        let top = spans
            .iter()
            .take(TOP_WORDS)
            .map(|&(a, b)| {
                let w = &text[a..b];
                [w.to_string(), capitalise(w), w.to_uppercase()]
            })
            .collect();
        let mut total = 0.0;
        let cumulative: Vec<f64> = (1..=size)
            .map(|rank| {
                total += 1.0 / rank as f64;
                total
            })
            .collect();
        let guide = (0..=GUIDE)
            .map(|k| {
                let x = total * (k as f64 / GUIDE as f64);
                cumulative.partition_point(|&c| c <= x).min(size - 1)
            })
            .collect();
        Vocabulary {
            text,
            spans,
            top,
            cumulative,
            guide,
        }
    }

    /// A word rank drawn with the Zipf weights. Only IEEE-exact arithmetic (no `powf`,
    /// `exp`), so the draw is the same on every platform.
    fn sample(&self, rng: &mut SplitMix64) -> usize {
        let u = rng.unit_f64();
        let total = self.cumulative[self.cumulative.len() - 1];
        let x = u * total;
        let k = ((u * GUIDE as f64) as usize).min(GUIDE - 1);
        // Words before `guide[k]` end at or below `k / GUIDE * total <= x`, and
        // `guide[k + 1]` is past `x`, so the answer lies in between.
        let (lo, hi) = (self.guide[k], self.guide[k + 1]);
        let found = lo + self.cumulative[lo..=hi].partition_point(|&c| c <= x);
        found.min(self.spans.len() - 1)
    }

    /// A rank among the top words, with their Zipf weights.
    fn sample_top(&self, rng: &mut SplitMix64) -> usize {
        let n = self.top.len();
        let x = rng.unit_f64() * self.cumulative[n - 1];
        self.cumulative[..n].partition_point(|&c| c <= x).min(n - 1)
    }

    /// Word `i` as normally written.
    fn word(&self, i: usize) -> &str {
        let (a, b) = self.spans[i];
        &self.text[a..b]
    }

    /// Top word `i` in `case` (0 as is, 1 capitalised, 2 upper case).
    fn top_form(&self, i: usize, case: usize) -> &str {
        &self.top[i][case]
    }
}

/// `w` with its first character in upper case.
fn capitalise(w: &str) -> String {
    let mut chars = w.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The `index`-th made-up word: `index` written in bijective base-`syllables.len()`, one
/// syllable per digit. Each syllable is consonants then one vowel, so the syllables of a word
/// can be read back unambiguously and distinct indexes give distinct words. One word in twenty
/// gets an accented vowel, so the tail of the vocabulary has non-ASCII words too, and one in
/// [`PROPER_NOUN_EVERY`] is a capitalised name.
fn made_up_word(index: u64, syllables: &[String], seed: u64) -> String {
    let base = syllables.len() as u64;
    let mut word = String::new();
    let mut n = index;
    loop {
        word.push_str(&syllables[(n % base) as usize]);
        n /= base;
        if n == 0 {
            break;
        }
        n -= 1;
    }
    let h = mix64(seed ^ mix64(index));
    if h.is_multiple_of(20) {
        let accent = |c: char| match c {
            'a' => Some('ä'),
            'e' => Some('é'),
            'i' => Some('ï'),
            'o' => Some('ö'),
            'u' => Some('ü'),
            _ => None,
        };
        if let Some((pos, c)) = word.char_indices().find(|&(_, c)| accent(c).is_some())
            && let Some(a) = accent(c)
        {
            word.replace_range(pos..pos + c.len_utf8(), a.encode_utf8(&mut [0; 4]));
        }
    }
    if (h / 20).is_multiple_of(PROPER_NOUN_EVERY) {
        word = capitalise(&word);
    }
    word
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generate(bytes: u64, seed: u64, vocabulary: u32) -> String {
        let mut out = Vec::new();
        let n = write_text(&mut out, bytes, seed, vocabulary).unwrap();
        assert_eq!(n, out.len() as u64);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn same_seed_same_text_other_seed_other_text() {
        assert_eq!(generate(50_000, 1, 1_000), generate(50_000, 1, 1_000));
        assert_ne!(generate(50_000, 1, 1_000), generate(50_000, 2, 1_000));
    }

    #[test]
    fn stops_at_the_first_line_end_at_or_after_the_target() {
        let text = generate(10_000, 5, 500);
        assert!(text.len() >= 10_000 && text.ends_with('\n'));
        let last_line = text.trim_end_matches('\n').rsplit('\n').next().unwrap();
        assert!(text.len() - last_line.len() - 1 < 10_000);
        assert_eq!(generate(0, 5, 500), "");
        assert!(write_text(Vec::new(), 10, 5, 0).is_err());
    }

    #[test]
    fn lines_words_and_vocabulary_have_the_promised_shape() {
        let text = generate(400_000, 11, 2_000);
        let mut words = HashSet::new();
        for line in text.lines() {
            assert!(
                (MIN_LINE..=MAX_LINE).contains(&line.len()),
                "{} {line:?}",
                line.len()
            );
            for w in line
                .split(|c: char| !c.is_alphabetic())
                .filter(|w| !w.is_empty())
            {
                words.insert(w.to_lowercase());
            }
        }
        for w in ["café", "straße", "naïve", "the"] {
            assert!(words.contains(w), "{w} missing");
        }
        assert!(text.contains("The ") && text.contains(" the ") && text.contains(" THE "));
        assert!(text.bytes().any(|b| b.is_ascii_digit()));
        // Digits and `'s` split words, so a few fragments (`s`, `th`) add to the vocabulary.
        assert!(
            words.len() > 1_000 && words.len() <= 2_010,
            "{}",
            words.len()
        );
        // Case variants are limited to the top words.
        let exact: HashSet<&str> = text
            .split(|c: char| !c.is_alphabetic())
            .filter(|w| !w.is_empty())
            .collect();
        assert!(exact.len() <= 2_000 + 2 * TOP_WORDS + 10, "{}", exact.len());
    }

    #[test]
    fn zipf_draws_match_a_plain_search_of_the_table() {
        let vocab = Vocabulary::new(50_000, 1);
        let mut a = SplitMix64::new(2);
        let mut b = SplitMix64::new(2);
        for _ in 0..100_000 {
            let total = vocab.cumulative[vocab.cumulative.len() - 1];
            let x = b.unit_f64() * total;
            let plain = vocab.cumulative.partition_point(|&c| c <= x);
            assert_eq!(vocab.sample(&mut a), plain);
        }
        assert!(vocab.word(0) == "the" && vocab.top_form(0, 2) == "THE");
    }

    #[test]
    fn made_up_words_are_distinct_and_alphabetic() {
        let syllables: Vec<String> = ONSETS
            .iter()
            .flat_map(|o| VOWELS.iter().map(move |v| format!("{o}{v}")))
            .collect();
        let mut seen = HashSet::new();
        for i in 0..50_000 {
            let w = made_up_word(i, &syllables, 3);
            assert!(w.chars().all(char::is_alphabetic), "{w}");
            assert!(w.chars().skip(1).all(char::is_lowercase), "{w}");
            assert!(seen.insert(w));
        }
    }
}
