//! Bank transactions as CSV: the input of the end-of-day (EOD) aggregation.
//!
//! One row per card, ATM, branch or online transaction:
//!
//! ```text
//! txn_id,account_id,txn_date,txn_ts,txn_type,amount,currency,channel,merchant
//! T000000000000,ACC00003120,2026-11-27,2026-11-27 14:03:51,DEBIT,83.2,USD,POS,"Smith, Jones & Co"
//! ```
//!
//! The shape follows a real bank's day rather than uniform noise, because the EOD job's cost is
//! decided by how many `(account_id, txn_date, currency)` groups there are:
//! - accounts come from a pool of `max(rows / 2, 10)`; 56% of the transactions are spread over
//!   all of them, the others over a busy tenth, so many accounts are seen once or twice and
//!   a few often;
//! - each account has a home currency (mostly USD) that 92% of its transactions use;
//! - dates are uniform over three consecutive days starting 2026-11-26.
//!
//! With these choices 10M rows form about 5.8M groups and the file is about 92 bytes a row.
//!
//! Every row is drawn from its own generator seeded by `(seed, row number)`, so row `n` is the
//! same whether it is written to one file or to the `k`-th of several: [`write_eod_files`]
//! concatenated (without headers) equals [`write_eod_csv`].

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::rng::{SplitMix64, mix64};

/// The CSV header line, without its newline.
pub const EOD_HEADER: &str =
    "txn_id,account_id,txn_date,txn_ts,txn_type,amount,currency,channel,merchant";

/// The three business days the transactions fall on.
const DATES: [&str; 3] = ["2026-11-26", "2026-11-27", "2026-11-28"];

const CURRENCIES: [&str; 3] = ["USD", "EUR", "GBP"];
const CURRENCY_WEIGHTS: [u32; 3] = [80, 13, 7];
/// Percent of an account's transactions in its home currency.
const HOME_CURRENCY_PERCENT: u64 = 92;

const CHANNELS: [&str; 4] = ["ATM", "POS", "ONLINE", "BRANCH"];
const CHANNEL_WEIGHTS: [u32; 4] = [15, 45, 30, 10];

/// Merchant names as they appear in the file, already RFC 4180 quoted where a comma, a double
/// quote or a line break requires it. Kept pre-encoded so the hot loop only copies bytes.
const MERCHANTS: [&str; 40] = [
    "Walmart",
    "Target",
    "Amazon Marketplace",
    "Starbucks",
    "Shell",
    "Whole Foods Market",
    "Costco Wholesale",
    "Home Depot",
    "\"Smith, Jones & Co\"",
    "\"The \"\"Best\"\" Cafe\"",
    "Joe's Diner",
    "\"Acme, Inc.\"",
    "Uber Trip",
    "Netflix.com",
    "Spotify",
    "Apple Store",
    "\"Bed, Bath & Beyond\"",
    "Café de Flore",
    "Müller Bäckerei",
    "\"\"\"Quoted\"\" Books\"",
    "Trader Joe's",
    "CVS Pharmacy",
    "Walgreens",
    "McDonald's",
    "Chipotle",
    "\"Johnson, Johnson & Partners LLP\"",
    "Delta Air Lines",
    "Marriott Hotels",
    "Best Buy",
    "IKEA",
    "\"Fish & Chips, Ltd\"",
    "Lidl",
    "Tesco",
    "Sainsbury's",
    "\"Le \"\"Petit\"\" Bistro\"",
    "Zara",
    "H&M",
    "Exxon Mobil",
    "\"Barnes & Noble, Booksellers\"",
    "City Parking",
];

/// Where cash machines stand, as printed on statements.
const ATM_CITIES: [&[u8]; 8] = [
    b"NEW YORK NY",
    b"CHICAGO IL",
    b"SAN FRANCISCO CA",
    b"LONDON GB",
    b"FRANKFURT DE",
    b"BOSTON MA",
    b"AUSTIN TX",
    b"SEATTLE WA",
];

/// Transaction amount ranges in cents, `[lo, hi)`, with their weights: mostly tens and
/// hundreds, rarely below a unit or above ten thousand, never above 50,000.00.
const AMOUNT_RANGES: [(u64, u64); 6] = [
    (1, 100),
    (100, 1_000),
    (1_000, 10_000),
    (10_000, 100_000),
    (100_000, 1_000_000),
    (1_000_000, 5_000_001),
];
const AMOUNT_WEIGHTS: [u32; 6] = [2, 15, 40, 30, 10, 3];

/// Writes a header and `rows` transactions to `out`; returns the number of bytes written.
///
/// Deterministic for a `seed`; memory use is a fixed buffer whatever `rows` is.
pub fn write_eod_csv<W: Write>(out: W, rows: u64, seed: u64) -> io::Result<u64> {
    write_eod_range(out, 0, rows, rows, seed)
}

/// Writes `rows` transactions split over `files` files `txns-0000.csv`, `txns-0001.csv`, ...
/// in `dir` (created if missing), each with a header; returns their paths in order.
///
/// The first `rows % files` files get one row more than the others. The rows are those
/// [`write_eod_csv`] writes for the same `rows` and `seed`, in the same order.
pub fn write_eod_files(dir: &Path, rows: u64, files: u32, seed: u64) -> io::Result<Vec<PathBuf>> {
    if files == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "cannot split transactions over 0 files",
        ));
    }
    std::fs::create_dir_all(dir)?;
    let per_file = rows / u64::from(files);
    let extra = rows % u64::from(files);
    let mut first = 0;
    let mut paths = Vec::with_capacity(files as usize);
    for i in 0..files {
        let count = per_file + u64::from(u64::from(i) < extra);
        let path = dir.join(format!("txns-{i:04}.csv"));
        let file = File::create(&path)?;
        write_eod_range(file, first, count, rows, seed)?;
        first += count;
        paths.push(path);
    }
    Ok(paths)
}

/// Writes the header and rows `first..first + count` of a data set of `total_rows` rows.
fn write_eod_range<W: Write>(
    out: W,
    first: u64,
    count: u64,
    total_rows: u64,
    seed: u64,
) -> io::Result<u64> {
    let mut out = BufWriter::with_capacity(1 << 16, out);
    let accounts = Accounts::new(total_rows, seed);
    let mut line = Vec::with_capacity(256);
    line.extend_from_slice(EOD_HEADER.as_bytes());
    line.push(b'\n');
    out.write_all(&line)?;
    let mut written = line.len() as u64;
    for n in first..first + count {
        line.clear();
        push_row(&mut line, n, &accounts, seed);
        out.write_all(&line)?;
        written += line.len() as u64;
    }
    out.flush()?;
    Ok(written)
}

/// Percent of transactions drawn from all accounts rather than from the busy tenth; tuned so
/// that 10M rows form about 5.8M `(account_id, txn_date, currency)` groups.
const UNIFORM_ACCOUNT_PERCENT: u64 = 56;

/// The account pool of one data set.
struct Accounts {
    pool: u64,
    busy: u64,
    seed: u64,
}

impl Accounts {
    fn new(total_rows: u64, seed: u64) -> Self {
        let pool = (total_rows / 2).max(10);
        Accounts {
            pool,
            busy: (pool / 10).max(1),
            seed,
        }
    }

    /// Draws an account: mostly any account, otherwise a busy one (every tenth
    /// account number, so busy accounts are spread over the whole range).
    fn pick(&self, rng: &mut SplitMix64) -> u64 {
        if rng.chance(UNIFORM_ACCOUNT_PERCENT) {
            rng.below(self.pool)
        } else {
            rng.below(self.busy) * 10
        }
    }

    /// The account's home currency, fixed for the data set.
    fn home_currency(&self, account: u64) -> usize {
        let mut rng = SplitMix64::new(mix64(self.seed ^ mix64(account ^ 0xACC0_u64)));
        rng.weighted(&CURRENCY_WEIGHTS)
    }
}

/// Appends row `n` (with its newline) to `line`.
fn push_row(line: &mut Vec<u8>, n: u64, accounts: &Accounts, seed: u64) {
    let mut rng = SplitMix64::new(mix64(seed ^ mix64(n)));

    line.push(b'T');
    push_padded(line, n, 12);
    line.extend_from_slice(b",ACC");
    let account = accounts.pick(&mut rng);
    push_padded(line, account, 8);

    let date = DATES[rng.below(DATES.len() as u64) as usize].as_bytes();
    line.push(b',');
    line.extend_from_slice(date);
    line.push(b',');
    line.extend_from_slice(date);
    let second = rng.below(86_400);
    line.push(b' ');
    push_padded(line, second / 3600, 2);
    line.push(b':');
    push_padded(line, second / 60 % 60, 2);
    line.push(b':');
    push_padded(line, second % 60, 2);

    let channel = rng.weighted(&CHANNEL_WEIGHTS);
    // Cash machines pay out; everything else is mostly spending with some money coming in.
    let debit = if CHANNELS[channel] == "ATM" {
        rng.chance(95)
    } else {
        rng.chance(65)
    };
    line.extend_from_slice(if debit { b",DEBIT," } else { b",CREDIT," });
    push_amount(line, &mut rng);

    let currency = if rng.chance(HOME_CURRENCY_PERCENT) {
        accounts.home_currency(account)
    } else {
        rng.weighted(&CURRENCY_WEIGHTS)
    };
    line.push(b',');
    line.extend_from_slice(CURRENCIES[currency].as_bytes());
    line.push(b',');
    line.extend_from_slice(CHANNELS[channel].as_bytes());
    line.push(b',');
    // Branch transactions have no merchant, nor do a few others: the field is then empty,
    // which CSV readers return as null. Cash machines name themselves, as on a statement.
    match CHANNELS[channel] {
        "ATM" if rng.chance(90) => {
            line.extend_from_slice(b"ATM ");
            push_padded(line, rng.below(10_000), 4);
            line.push(b' ');
            line.extend_from_slice(ATM_CITIES[rng.below(ATM_CITIES.len() as u64) as usize]);
        }
        "POS" | "ONLINE" if rng.chance(97) => {
            let m = MERCHANTS[rng.below(MERCHANTS.len() as u64) as usize];
            line.extend_from_slice(m.as_bytes());
            // Chains print a store number; quoted names are left whole.
            if !m.ends_with('"') && rng.chance(30) {
                line.extend_from_slice(b" #");
                push_u64(line, 1 + rng.below(9_999));
            }
        }
        _ => {}
    }
    line.push(b'\n');
}

/// Appends a positive amount with 0, 1 or 2 fractional digits (`7`, `12.5`, `1034.07`).
fn push_amount(line: &mut Vec<u8>, rng: &mut SplitMix64) {
    let (lo, hi) = AMOUNT_RANGES[rng.weighted(&AMOUNT_WEIGHTS)];
    let cents = lo + rng.below(hi - lo);
    // How many fractional digits the source system printed; whole amounts below one unit
    // would round to 0, so those keep their cents.
    let digits = match rng.weighted(&[25, 15, 60]) {
        0 if cents >= 100 => 0,
        1 if cents >= 10 => 1,
        _ => 2,
    };
    match digits {
        0 => push_u64(line, cents / 100),
        1 => {
            push_u64(line, cents / 100);
            line.push(b'.');
            push_u64(line, cents / 10 % 10);
        }
        _ => {
            push_u64(line, cents / 100);
            line.push(b'.');
            push_padded(line, cents % 100, 2);
        }
    }
}

/// Appends `v` in decimal.
fn push_u64(line: &mut Vec<u8>, v: u64) {
    push_padded(line, v, 1);
}

/// Appends `v` in decimal, left-padded with zeros to at least `width` (at most 20) digits.
fn push_padded(line: &mut Vec<u8>, v: u64, width: usize) {
    // Formatting by hand into a stack buffer: `write!` costs several times more, and this
    // runs a few times per row for hundreds of millions of rows.
    let mut buf = [b'0'; 20];
    let mut i = buf.len();
    let mut v = v;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let start = i.min(buf.len().saturating_sub(width));
    line.extend_from_slice(&buf[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits one CSV record (without its newline) per RFC 4180: fields separated by commas,
    /// a quoted field may hold commas and doubled quotes.
    fn split_rfc4180(line: &str) -> Result<Vec<String>, String> {
        let mut fields = Vec::new();
        let mut chars = line.chars().peekable();
        loop {
            let mut field = String::new();
            if chars.peek() == Some(&'"') {
                chars.next();
                loop {
                    match chars.next() {
                        None => return Err(format!("unterminated quote in {line:?}")),
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            field.push('"');
                        }
                        Some('"') => break,
                        Some(c) => field.push(c),
                    }
                }
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => fields.push(field),
                    Some(c) => return Err(format!("{c:?} after closing quote in {line:?}")),
                }
            } else {
                loop {
                    match chars.next() {
                        None => {
                            fields.push(field);
                            return Ok(fields);
                        }
                        Some(',') => break,
                        Some('"') => return Err(format!("quote inside bare field in {line:?}")),
                        Some(c) => field.push(c),
                    }
                }
                fields.push(field);
            }
        }
    }

    fn generate(rows: u64, seed: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let n = write_eod_csv(&mut out, rows, seed).unwrap();
        assert_eq!(n, out.len() as u64);
        out
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        assert_eq!(generate(2_000, 1), generate(2_000, 1));
        assert_ne!(generate(2_000, 1), generate(2_000, 2));
    }

    #[test]
    fn every_row_has_nine_valid_fields() {
        let text = String::from_utf8(generate(20_000, 42)).unwrap();
        assert!(text.ends_with('\n'));
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some(EOD_HEADER));
        let mut rows = 0u64;
        let mut ids = std::collections::HashSet::new();
        let (mut quoted, mut empty_merchant, mut digit_counts) = (0, 0, [0u32; 3]);
        for line in lines {
            rows += 1;
            let f = split_rfc4180(line).unwrap();
            assert_eq!(f.len(), 9, "{line}");
            assert!(f[0].starts_with('T') && f[0].len() == 13, "{line}");
            assert!(ids.insert(f[0].clone()), "duplicate txn_id in {line}");
            assert!(f[1].starts_with("ACC") && f[1].len() == 11, "{line}");
            assert!(DATES.contains(&f[2].as_str()), "{line}");
            assert!(f[3].starts_with(&f[2]) && f[3].len() == 19, "{line}");
            assert!(f[4] == "DEBIT" || f[4] == "CREDIT", "{line}");
            let (units, frac) = f[5].split_once('.').unwrap_or((&f[5], ""));
            assert!(frac.len() <= 2, "{line}");
            digit_counts[frac.len()] += 1;
            assert!(
                units
                    .bytes()
                    .chain(frac.bytes())
                    .all(|b| b.is_ascii_digit())
            );
            let cents: u64 = format!("{units}{frac:0<2}").parse().unwrap();
            assert!(cents > 0 && cents <= 5_000_000, "{line}");
            assert!(CURRENCIES.contains(&f[6].as_str()), "{line}");
            assert!(CHANNELS.contains(&f[7].as_str()), "{line}");
            quoted += usize::from(line.ends_with('"'));
            empty_merchant += usize::from(f[8].is_empty());
        }
        assert_eq!(rows, 20_000);
        assert!(quoted > 0 && empty_merchant > 0);
        assert!(digit_counts.iter().all(|&c| c > 0), "{digit_counts:?}");
    }

    #[test]
    fn files_hold_the_same_rows_as_one_stream() {
        let dir = std::env::temp_dir().join(format!("sluice-datagen-{}", std::process::id()));
        let paths = write_eod_files(&dir, 1_003, 4, 9).unwrap();
        let names: Vec<_> = paths
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "txns-0000.csv",
                "txns-0001.csv",
                "txns-0002.csv",
                "txns-0003.csv"
            ]
        );
        let mut joined = format!("{EOD_HEADER}\n");
        for p in &paths {
            let text = std::fs::read_to_string(p).unwrap();
            let body = text.strip_prefix(&format!("{EOD_HEADER}\n")).unwrap();
            joined.push_str(body);
        }
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(joined.into_bytes(), generate(1_003, 9));
        assert!(write_eod_files(&dir, 10, 0, 9).is_err());
    }

    #[test]
    fn groups_per_row_match_a_bank_shaped_load() {
        let text = String::from_utf8(generate(200_000, 3)).unwrap();
        let groups: std::collections::HashSet<(String, String, String)> = text
            .lines()
            .skip(1)
            .map(|l| {
                let f = split_rfc4180(l).unwrap();
                (f[1].clone(), f[2].clone(), f[6].clone())
            })
            .collect();
        let ratio = groups.len() as f64 / 200_000.0;
        assert!((0.5..0.66).contains(&ratio), "groups per row {ratio}");
        let bytes_per_row = text.len() as f64 / 200_000.0;
        assert!((80.0..105.0).contains(&bytes_per_row), "{bytes_per_row}");
    }
}
