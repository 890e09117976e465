//! The pure parts of object-store reading (`common/src/format/remote.rs`), with the object's
//! bytes in memory and a fetch that may misbehave as a hostile or broken store would
//! (short answers, extra bytes, a size that lies):
//! - `fetch_split_lines` (a line split of an object) and the `SplitBytes` it returns;
//! - `fetch_parquet_footer` and `fetch_parquet_row_groups` (footer decoding on short and
//!   hostile footers, then the row groups through `SparseFile`);
//! - `SparseFile` reads at any offsets.
//!
//! Layout: mode byte, fetch-behaviour byte, size-lie byte, two range bytes and one position
//! byte, four row-group bytes, then the object.
#![no_main]

use std::io::Read;
use std::ops::Range;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use parquet::file::reader::ChunkReader;
use sluice_common::Result;
use sluice_common::format::read::ParquetColumns;
use sluice_common::format::remote::{
    SparseFile, fetch_parquet_footer, fetch_parquet_row_groups, fetch_split_lines,
};
use sluice_fuzz::{drain, header};

/// A store holding `object`; `behaviour` makes it answer short, long or empty.
fn fetch(object: &Bytes, behaviour: u8, r: Range<u64>) -> Result<Bytes> {
    let len = object.len() as u64;
    let (start, end) = (r.start.min(len), r.end.min(len));
    if start > end {
        return Err(sluice_common::Error::Internal {
            what: format!("bad range {r:?}"),
        });
    }
    let got = object.slice(start as usize..end as usize);
    Ok(match behaviour % 8 {
        // A short answer.
        5 => got.slice(..got.len() / 2),
        // An empty answer.
        6 => Bytes::new(),
        // Extra bytes.
        7 => Bytes::from([&got[..], b"\nextra"].concat()),
        _ => got,
    })
}

fuzz_target!(|data: &[u8]| {
    let (mut input, object) = header(data, 10);
    let mode = input.byte();
    let behaviour = input.byte();
    let lie = input.byte();
    let (a, b, p) = (
        input.byte() as u64,
        input.byte() as u64,
        input.byte() as u64,
    );
    let groups: Vec<u32> = (0..4)
        .map(|_| input.byte())
        .filter(|&g| g != 0)
        .map(|g| {
            if g == 255 {
                u32::MAX
            } else {
                u32::from(g - 1) % 8
            }
        })
        .collect();
    let object = Bytes::copy_from_slice(object);
    let real = object.len() as u64;
    // The size the store claims: the truth, or a lie.
    let len = match lie % 4 {
        0 | 1 => real,
        2 => real.saturating_sub(u64::from(lie >> 2)),
        _ => real + u64::from(lie >> 2),
    };
    let mut one = |r: Range<u64>| fetch(&object, behaviour, r);
    match mode % 4 {
        0 => {
            let start = len * a / 255;
            let end = start.max(len * b / 255);
            if let Ok(lines) = fetch_split_lines(&mut one, len, start, end) {
                let _ = (lines.len(), lines.is_empty(), lines.first);
                let mut out = Vec::new();
                let _ = lines.into_reader().read_to_end(&mut out);
            }
        }
        1 => {
            let _ = fetch_parquet_footer("fuzz.parquet", &mut one, len);
        }
        2 => {
            let mut many = |ranges: Vec<Range<u64>>| {
                ranges
                    .into_iter()
                    .map(|r| fetch(&object, behaviour, r))
                    .collect::<Result<Vec<Bytes>>>()
            };
            let mut one = |r: Range<u64>| fetch(&object, behaviour, r);
            let columns = (behaviour & 0x80 != 0).then(|| vec!["a".to_string()]);
            let wanted = ParquetColumns {
                columns: columns.as_deref(),
                rules: None,
            };
            if let Ok((reader, _)) = fetch_parquet_row_groups(
                "fuzz.parquet",
                &mut one,
                &mut many,
                len,
                groups,
                1 + (b % 8) as usize,
                wanted,
            ) {
                drain(Box::new(reader.map(|r| {
                    r.map_err(|e| sluice_common::Error::Internal {
                        what: e.to_string(),
                    })
                })));
            }
        }
        _ => {
            // Two segments cut from the object, read at any offset and length.
            let cut = (real * a / 255) as usize;
            let file = SparseFile::new(
                len,
                vec![
                    (p, object.slice(..cut)),
                    (p.saturating_mul(b), object.slice(cut..)),
                ],
            );
            let offsets = [a, b, p, a * b, u64::MAX - a, len.saturating_sub(b)];
            for &o in &offsets {
                let _ = file.get_bytes(o, (b as usize) * (p as usize));
                if let Ok(mut r) = file.get_read(o) {
                    let mut out = Vec::new();
                    let _ = r.read_to_end(&mut out);
                }
            }
        }
    }
});
