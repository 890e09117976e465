//! Parquet from an object store: the footer (one ranged read of the file's last 64 KiB, a
//! second one when the metadata is larger), then the column chunks of a split's row groups,
//! also with ranged reads, held in a [`SparseFile`]; nothing is downloaded to disk. A split's
//! memory is about the compressed size of its row groups, which the planner bounds by
//! `split_size`.

use std::ops::Range;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder,
};
use parquet::errors::ParquetError;
use parquet::file::metadata::{FooterTail, ParquetMetaData, ParquetMetaDataReader};
use parquet::file::reader::{ChunkReader, Length};

use crate::format::read::ParquetColumns;
use crate::rules::RuleSet;
use crate::storage::ObjectUrl;
use crate::{Error, Result};

/// Bytes read from the end of a Parquet file in the hope that they hold the whole footer.
pub(super) const FOOTER_GUESS: u64 = 64 << 10;

/// Some byte ranges of a remote file, held in memory, served to the Parquet reader.
/// A read outside them is an error: the caller fetched what the reader needs.
pub struct SparseFile {
    len: u64,
    /// `(offset, bytes)`, sorted by offset.
    segments: Vec<(u64, Bytes)>,
}

impl SparseFile {
    /// The file of `len` bytes of which `segments` (`(offset, bytes)`) are held.
    pub fn new(len: u64, mut segments: Vec<(u64, Bytes)>) -> Self {
        segments.sort_by_key(|(o, _)| *o);
        SparseFile { len, segments }
    }

    fn find(&self, start: u64, length: u64) -> parquet::errors::Result<Bytes> {
        let Some(end) = start.checked_add(length) else {
            return Err(ParquetError::General(format!(
                "{length} bytes at offset {start} run past any file's end"
            )));
        };
        let i = self.segments.partition_point(|(o, _)| *o <= start);
        let covering = i
            .checked_sub(1)
            .map(|i| &self.segments[i])
            .filter(|(o, b)| end <= o.saturating_add(b.len() as u64));
        match covering {
            Some((o, b)) => {
                let from = (start - o) as usize;
                Ok(b.slice(from..from + length as usize))
            }
            None => Err(ParquetError::General(format!(
                "bytes {start}..{end} of the file were not fetched"
            ))),
        }
    }
}

impl Length for SparseFile {
    fn len(&self) -> u64 {
        self.len
    }
}

impl ChunkReader for SparseFile {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        // To the end of the segment holding `start`.
        let i = self.segments.partition_point(|(o, _)| *o <= start);
        let (o, b) = i
            .checked_sub(1)
            .map(|i| &self.segments[i])
            .filter(|(o, b)| start < o.saturating_add(b.len() as u64))
            .ok_or_else(|| {
                ParquetError::General(format!("byte {start} of the file was not fetched"))
            })?;
        Ok(b.slice((start - o) as usize..).reader())
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        self.find(start, length as u64)
    }
}

/// The footer of Parquet object `url` of `len` bytes, by one or two ranged reads of its tail.
/// Returns the metadata and the tail bytes fetched (offset, bytes).
pub fn read_parquet_footer(url: &ObjectUrl, len: u64) -> Result<(ParquetMetaData, (u64, Bytes))> {
    fetch_parquet_footer(&url.to_string(), &mut |r| url.get_range(r), len)
}

/// The footer of Parquet file `name` of `len` bytes whose byte ranges `fetch` returns: the
/// pure part of [`read_parquet_footer`]. Errors name the file and what is wrong.
pub fn fetch_parquet_footer(
    name: &str,
    fetch: &mut dyn FnMut(Range<u64>) -> Result<Bytes>,
    len: u64,
) -> Result<(ParquetMetaData, (u64, Bytes))> {
    let bad = |e: &dyn std::fmt::Display| Error::Storage {
        url: name.to_string(),
        message: format!("not a Parquet file: {e}"),
    };
    if len < 8 {
        return Err(bad(&format!("{len} bytes is too short")));
    }
    let guess = len.min(FOOTER_GUESS);
    let mut tail_start = len - guess;
    let mut tail = fetch(tail_start..len)?;
    check_answer(tail_start..len, &tail).map_err(|e| bad(&e))?;
    let mut footer = [0u8; 8];
    footer.copy_from_slice(&tail[tail.len() - 8..]);
    let footer = FooterTail::try_new(&footer).map_err(|e| bad(&e))?;
    if footer.is_encrypted_footer() {
        return Err(bad(&"encrypted footers are not supported"));
    }
    let needed = footer.metadata_length() as u64 + 8;
    if needed > len {
        return Err(bad(&format!(
            "footer claims {needed} bytes in a {len}-byte file"
        )));
    }
    if needed > guess {
        tail_start = len - needed;
        tail = fetch(tail_start..len)?;
        check_answer(tail_start..len, &tail).map_err(|e| bad(&e))?;
    }
    let meta_start = (len - needed - tail_start) as usize;
    let metadata = ParquetMetaDataReader::decode_metadata(&tail[meta_start..tail.len() - 8])
        .map_err(|e| bad(&e))?;
    Ok((metadata, (tail_start, tail)))
}

/// A store's answer to a read of `range` must hold exactly its bytes (the object may have
/// shrunk since its size was read, or the store may answer short).
fn check_answer(range: Range<u64>, got: &Bytes) -> std::result::Result<(), String> {
    if got.len() as u64 != range.end - range.start {
        return Err(format!(
            "short read: asked for bytes {}..{}, got {}",
            range.start,
            range.end,
            got.len()
        ));
    }
    Ok(())
}

/// The byte range of a column chunk as the footer of file `name` (of `len` bytes) gives it;
/// a negative offset or size, or a range past the end of the file, is an error naming the
/// file (the footer is the file's, so hostile: `ColumnChunkMetaData::byte_range` panics).
pub fn column_chunk_range(
    name: &str,
    len: u64,
    col: &parquet::file::metadata::ColumnChunkMetaData,
) -> Result<Range<u64>> {
    let start = col
        .dictionary_page_offset()
        .unwrap_or_else(|| col.data_page_offset());
    let size = col.compressed_size();
    let range = u64::try_from(start)
        .ok()
        .zip(u64::try_from(size).ok())
        .and_then(|(start, size)| Some(start..start.checked_add(size)?))
        .filter(|r| r.end <= len);
    range.ok_or_else(|| Error::Damaged {
        file: name.to_string(),
        reason: format!(
            "the footer puts column {} at offset {start}, {size} bytes, outside the \
                 file's {len} bytes",
            col.column_path()
        ),
    })
}

/// Reads row groups `groups` of Parquet object `url` as record batches, fetching only the
/// footer and the column chunks it decodes; returns the rules left to check of them.
pub fn read_parquet_row_groups(
    url: &ObjectUrl,
    groups: Vec<u32>,
    batch_rows: usize,
    wanted: ParquetColumns<'_>,
) -> Result<(ParquetRecordBatchReader, Option<Arc<RuleSet>>)> {
    let len = url.size()?.ok_or_else(|| Error::Storage {
        url: url.to_string(),
        message: "no such object".into(),
    })?;
    fetch_parquet_row_groups(
        &url.to_string(),
        &mut |r| url.get_range(r),
        &mut |ranges| url.get_ranges(ranges),
        len,
        groups,
        batch_rows,
        wanted,
    )
}

/// [`read_parquet_row_groups`] of Parquet file `name` of `len` bytes whose byte ranges
/// `fetch` (one range) and `fetch_ranges` (several) return: its pure part.
pub fn fetch_parquet_row_groups(
    name: &str,
    fetch: &mut dyn FnMut(Range<u64>) -> Result<Bytes>,
    fetch_ranges: &mut dyn FnMut(Vec<Range<u64>>) -> Result<Vec<Bytes>>,
    len: u64,
    groups: Vec<u32>,
    batch_rows: usize,
    wanted: ParquetColumns<'_>,
) -> Result<(ParquetRecordBatchReader, Option<Arc<RuleSet>>)> {
    let (metadata, tail) = fetch_parquet_footer(name, fetch, len)?;
    let ctx = || format!("reading parquet {name}");
    let read = crate::format::proven::plan(&metadata, &groups, wanted.columns, wanted.rules);
    let projection = crate::format::read::parquet_projection(
        metadata.file_metadata().schema_descr(),
        read.columns.as_deref(),
        name,
    )?;
    let mut ranges: Vec<Range<u64>> = Vec::new();
    for &g in &groups {
        let rg = metadata
            .row_groups()
            .get(g as usize)
            .ok_or_else(|| Error::Mismatch {
                subject: name.to_string(),
                reason: format!(
                    "it has {} row groups, the split names group {g}",
                    metadata.num_row_groups()
                ),
            })?;
        for (leaf, col) in rg.columns().iter().enumerate() {
            // Only the chunks of the columns the job reads are fetched.
            if projection.as_ref().is_none_or(|p| p.leaf_included(leaf)) {
                ranges.push(column_chunk_range(name, len, col)?);
            }
        }
    }
    crate::format::read::check_row_counts(&metadata, &groups, name)?;
    ranges.sort_by_key(|r| r.start);
    let fetched = fetch_ranges(ranges.clone())?;
    let mut segments: Vec<(u64, Bytes)> = ranges.iter().map(|r| r.start).zip(fetched).collect();
    segments.push(tail);
    let file = SparseFile::new(len, segments);
    let meta = ArrowReaderMetadata::try_new(Arc::new(metadata), Default::default())
        .map_err(|e| Error::arrow(ctx(), e))?;
    let mut builder = ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta)
        .with_row_groups(groups.into_iter().map(|g| g as usize).collect())
        .with_batch_size(batch_rows);
    if let Some(p) = projection {
        builder = builder.with_projection(p);
    }
    let reader = builder.build().map_err(|e| Error::arrow(ctx(), e))?;
    Ok((reader, read.rules))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn sparse_file_serves_only_fetched_ranges() {
        let f = SparseFile::new(
            100,
            vec![
                (90, Bytes::from_static(b"0123456789")),
                (10, Bytes::from_static(b"abcdef")),
            ],
        );
        assert_eq!(f.get_bytes(12, 3).unwrap(), Bytes::from_static(b"cde"));
        assert_eq!(f.get_bytes(90, 10).unwrap().len(), 10);
        assert!(f.get_bytes(14, 3).is_err());
        assert!(f.get_bytes(50, 1).is_err());
        let mut s = String::new();
        f.get_read(95).unwrap().read_to_string(&mut s).unwrap();
        assert_eq!(s, "56789");
    }

    /// Fuzz crash (remote_ranges, input `01 01 3f`): an object that answers fewer bytes
    /// than its size said (here none of 15) made the footer slicing underflow.
    #[test]
    fn parquet_footer_of_a_short_answer_is_an_error() {
        let mut empty = |_r: Range<u64>| Ok(Bytes::new());
        let e = fetch_parquet_footer("s3://b/f.parquet", &mut empty, 15)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("s3://b/f.parquet") && e.contains("short read"),
            "{e}"
        );
        // The second read (metadata larger than the first guess) answered short.
        let len = FOOTER_GUESS + 100;
        let mut tail = vec![0u8; FOOTER_GUESS as usize];
        let n = tail.len();
        tail[n - 8..n - 4].copy_from_slice(&((FOOTER_GUESS + 50) as u32).to_le_bytes());
        tail[n - 4..].copy_from_slice(b"PAR1");
        let mut calls = 0;
        let mut fetch = |_r: Range<u64>| {
            calls += 1;
            Ok(if calls == 1 {
                Bytes::from(tail.clone())
            } else {
                Bytes::from_static(b"PAR1")
            })
        };
        let e = fetch_parquet_footer("f", &mut fetch, len)
            .unwrap_err()
            .to_string();
        assert!(e.contains("short read"), "{e}");
    }

    /// Fuzz crash (remote_ranges): a footer giving a column chunk a negative offset made
    /// `ColumnChunkMetaData::byte_range` panic; one past the file's end or past `u64::MAX`
    /// must be refused too.
    #[test]
    fn column_chunks_outside_the_file_are_an_error() {
        use parquet::file::metadata::ColumnChunkMetaData;
        use parquet::schema::{parser::parse_message_type, types::SchemaDescriptor};
        let schema = parse_message_type("message m { required int64 a; }").unwrap();
        let descr = SchemaDescriptor::new(Arc::new(schema));
        let col = |offset: i64, size: i64| {
            ColumnChunkMetaData::builder(descr.column(0))
                .set_data_page_offset(offset)
                .set_total_compressed_size(size)
                .build()
                .unwrap()
        };
        assert_eq!(column_chunk_range("f", 100, &col(4, 10)).unwrap(), 4..14);
        for (offset, size) in [(-5, 10), (4, -1), (90, 11), (i64::MAX, i64::MAX)] {
            let e = column_chunk_range("f.parquet", 100, &col(offset, size))
                .unwrap_err()
                .to_string();
            assert!(e.contains("f.parquet") && e.contains("outside"), "{e}");
        }
    }

    /// Fuzz crash (remote_ranges): a read whose offset plus length passes `u64::MAX` (offsets
    /// come from a file's hostile footer) overflowed instead of being refused.
    #[test]
    fn sparse_file_refuses_reads_past_u64() {
        let f = SparseFile::new(
            u64::MAX,
            vec![
                (u64::MAX - 2, Bytes::from_static(b"abcdef")),
                (0, Bytes::from_static(b"x")),
            ],
        );
        let e = f.get_bytes(u64::MAX - 1, 4).unwrap_err().to_string();
        assert!(e.contains("past any file's end"), "{e}");
        assert!(f.get_bytes(u64::MAX, 1).is_err());
        assert_eq!(
            f.get_bytes(u64::MAX - 2, 2).unwrap(),
            Bytes::from_static(b"ab")
        );
        let mut s = String::new();
        f.get_read(u64::MAX - 1)
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "bcdef");
    }
}
