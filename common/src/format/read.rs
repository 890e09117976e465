//! Reading one split as Arrow record batches.
//!
//! Every reader yields batches of at most `batch_rows` rows and never holds more than one
//! batch (plus a read buffer) in memory. A malformed record becomes [`Error::BadRecord`]
//! with the file and the 1-based line of the record in the whole file, or, when the job
//! tolerates bad records, is left out and set aside in a [`RejectSink`] (see
//! [`crate::bad_records`]).
//!
//! CSV is read by [`super::csv`]; a split's lines come from [`super::source`].

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::csv::CsvReader;
use super::json::JsonReader;
use super::remote::read_parquet_row_groups;
use super::source::LineSource;
use crate::bad_records::{RejectSink, Rejected};
use crate::rules::RuleSet;
use crate::spec::InputFormat;
use crate::split::{Split, SplitRange};
use crate::storage::Location;
use crate::{Error, Result};
use parquet::arrow::ProjectionMask;
use parquet::schema::types::SchemaDescriptor;

/// What a reader checks besides the input's syntax, and where bad records go.
#[derive(Debug, Clone, Default)]
pub struct ReadChecks {
    /// Where bad records are set aside (`None`: the first one fails the read).
    pub rejects: Option<RejectSink>,
    /// The job's data-quality rules, checked on every batch.
    pub rules: Option<Arc<RuleSet>>,
}

/// A stream of record batches read from one split.
pub type BatchIter = Box<dyn Iterator<Item = Result<RecordBatch>> + Send>;

/// The schema of the `text` format: one `line: Utf8` column.
pub fn text_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("line", DataType::Utf8, false)]))
}

/// Opens `split` for reading in `format`. `schema` is required for CSV and JSON lines; for
/// Parquet it is the job's declared input schema, if any, which batches are cast to.
///
/// `columns` names the columns the job reads (`None`: all): columnar input (Parquet) reads
/// only those; line-based formats parse every field anyway. `checks` holds the job's
/// data-quality rules and where bad records go (when they do not fail the read).
pub fn read_split(
    split: &Split,
    format: InputFormat,
    schema: Option<SchemaRef>,
    batch_rows: usize,
    columns: Option<&[String]>,
    checks: ReadChecks,
) -> Result<BatchIter> {
    if let SplitRange::Files(files) = &split.range {
        return Ok(Box::new(Files {
            files: files.clone().into(),
            format,
            schema,
            batch_rows,
            columns: columns.map(<[String]>::to_vec),
            checks,
            current: None,
        }));
    }
    let location = Location::parse(&split.path)?;
    if let Some(stamp) = &split.stamp {
        super::snapshot::check(&location, &split.path, stamp)?;
    }
    match (&split.range, format) {
        (SplitRange::RowGroups(groups), InputFormat::Parquet) => {
            let wanted = ParquetColumns {
                columns,
                rules: checks.rules.as_ref(),
            };
            let (batches, rules): (BatchIter, _) = match location {
                Location::Local(path) => read_parquet(&path, groups.clone(), batch_rows, wanted)?,
                Location::Object(url) => {
                    let (reader, rules) =
                        read_parquet_row_groups(&url, groups.clone(), batch_rows, wanted)?;
                    let batches = Box::new(reader.map(move |r| {
                        r.map_err(|e| Error::arrow(format!("reading parquet {url}"), e))
                    }));
                    (batches, rules)
                }
            };
            let batches: BatchIter =
                match schema {
                    // Read into the job's declared types (planning refused lossy conversions).
                    Some(declared) => {
                        let name = split.path.clone();
                        Box::new(batches.map(move |b| {
                            b.and_then(|b| super::conform::conform(b, &declared, &name))
                        }))
                    }
                    None => batches,
                };
            let batches: BatchIter = match rules {
                Some(rules) => Box::new(ParquetRules {
                    batches,
                    rules,
                    rejects: checks.rejects.clone(),
                    source: format!("{} (row groups {})", split.path, group_list(groups)),
                    rows: 0,
                }),
                None => batches,
            };
            Ok(Box::new(PanicsAsErrors {
                batches: Some(batches),
                name: split.path.clone(),
            }))
        }
        (SplitRange::Bytes { start, end }, f) if f.is_line_based() => {
            // Line-based input parses every field anyway: the rules' columns are built too.
            let columns = checks
                .rules
                .as_ref()
                .map_or(columns.map(<[String]>::to_vec), |r| {
                    crate::rules::with_rule_columns(columns, r.rules())
                });
            let columns = columns.as_deref();
            let lines = match location {
                Location::Local(path) => LineSource::open(&path, *start, *end, checks)?,
                Location::Object(url) => LineSource::open_object(url, *start, *end, checks)?,
            };
            let schema = || {
                schema.clone().ok_or_else(|| Error::Internal {
                    what: format!("no input schema for {f} input"),
                })
            };
            Ok(match f {
                InputFormat::Text => Box::new(TextReader { lines, batch_rows }),
                InputFormat::Csv => {
                    Box::new(CsvReader::new(lines, schema()?, batch_rows, columns)?)
                }
                InputFormat::JsonLines => Box::new(JsonReader::new(lines, schema()?, batch_rows)?),
                InputFormat::Parquet => unreachable!("guarded by is_line_based"),
            })
        }
        _ => Err(Error::Mismatch {
            subject: split.to_string(),
            reason: format!("the split does not fit input format {format}"),
        }),
    }
}

/// `1,2,3` for row groups `[1, 2, 3]`.
fn group_list(groups: &[u32]) -> String {
    groups
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Parquet batches checked against the job's data-quality rules. A failing row is named by
/// its 1-based position among the split's rows (the `line` of its reject), with the file and
/// the row groups as its source; its raw text is not kept (Parquet has no line to keep).
struct ParquetRules {
    batches: BatchIter,
    rules: Arc<RuleSet>,
    rejects: Option<RejectSink>,
    source: String,
    /// Rows of the split before the current batch.
    rows: u64,
}

impl ParquetRules {
    fn check(&mut self, batch: RecordBatch) -> Result<RecordBatch> {
        let failures = self.rules.failures(&batch)?;
        let first = self.rows;
        self.rows += batch.num_rows() as u64;
        if failures.is_empty() {
            return Ok(batch);
        }
        let mut keep = vec![true; batch.num_rows()];
        for f in failures {
            let line = first + f.row as u64 + 1;
            match &self.rejects {
                Some(sink) => sink.push(Rejected {
                    source: self.source.clone(),
                    line,
                    kind: f.rule,
                    reason: f.reason,
                    record: None,
                }),
                None => {
                    return Err(Error::BadRecord {
                        path: self.source.clone().into(),
                        line,
                        reason: f.reason,
                    });
                }
            }
            keep[f.row] = false;
        }
        arrow::compute::filter_record_batch(&batch, &arrow::array::BooleanArray::from(keep))
            .map_err(|e| Error::arrow("leaving records that fail a rule out", e))
    }
}

impl Iterator for ParquetRules {
    type Item = Result<RecordBatch>;
    fn next(&mut self) -> Option<Self::Item> {
        let batch = self.batches.next()?;
        Some(batch.and_then(|b| self.check(b)))
    }
}

/// Batches whose decoder may panic on damaged data: the `parquet` crate asserts on some
/// corrupt pages (found by fuzzing) instead of returning an error. A panic becomes an
/// error naming the file, and the batches end there.
struct PanicsAsErrors {
    batches: Option<BatchIter>,
    name: String,
}

impl Iterator for PanicsAsErrors {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        let batches = self.batches.as_mut()?;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| batches.next())) {
            Ok(next) => next,
            Err(payload) => {
                self.batches = None;
                let why = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "no message".into());
                Some(Err(Error::Damaged {
                    file: self.name.clone(),
                    reason: format!("the file is damaged (the Parquet decoder failed: {why})"),
                }))
            }
        }
    }
}

/// The batches of several files, each opened when the one before is done.
struct Files {
    files: std::collections::VecDeque<Split>,
    format: InputFormat,
    schema: Option<SchemaRef>,
    batch_rows: usize,
    columns: Option<Vec<String>>,
    checks: ReadChecks,
    current: Option<BatchIter>,
}

impl Iterator for Files {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(batches) = &mut self.current {
                match batches.next() {
                    Some(b) => return Some(b),
                    None => self.current = None,
                }
            }
            let file = self.files.pop_front()?;
            let columns = self.columns.as_deref();
            match read_split(
                &file,
                self.format,
                self.schema.clone(),
                self.batch_rows,
                columns,
                self.checks.clone(),
            ) {
                Ok(batches) => self.current = Some(batches),
                Err(e) => {
                    self.files.clear();
                    return Some(Err(e));
                }
            }
        }
    }
}

/// The projection reading only the root columns named in `columns` of a Parquet file
/// (`None`: every column); a name the file lacks is an error naming both.
pub fn parquet_projection(
    schema: &SchemaDescriptor,
    columns: Option<&[String]>,
    file: &str,
) -> Result<Option<ProjectionMask>> {
    let Some(columns) = columns else {
        return Ok(None);
    };
    let fields = schema.root_schema().get_fields();
    let roots = columns
        .iter()
        .map(|c| {
            fields.iter().position(|f| f.name() == c).ok_or_else(|| {
                let names: Vec<&str> = fields.iter().map(|f| f.name()).collect();
                Error::Mismatch {
                    subject: file.to_string(),
                    reason: format!(
                        "no column {c:?}, which the job reads (it has {})",
                        names.join(", ")
                    ),
                }
            })
        })
        .collect::<Result<Vec<usize>>>()?;
    Ok(Some(ProjectionMask::roots(schema, roots)))
}

/// Refuses a footer whose row groups `groups` claim a negative or overflowing number of
/// rows: the `parquet` crate sums them unchecked (a panic with overflow checks, a wrong
/// count without).
pub(super) fn check_row_counts(
    metadata: &parquet::file::metadata::ParquetMetaData,
    groups: &[u32],
    file: &str,
) -> Result<()> {
    let mut total: i64 = 0;
    for &g in groups {
        let rows = metadata
            .row_groups()
            .get(g as usize)
            .map_or(0, |rg| rg.num_rows());
        total = total
            .checked_add(rows)
            .filter(|_| rows >= 0)
            .ok_or_else(|| Error::Damaged {
                file: file.to_string(),
                reason: format!("the footer gives row group {g} {rows} rows"),
            })?;
    }
    Ok(())
}

/// The columns a job reads and the rules it checks, from which a Parquet reader plans what
/// it decodes (see [`super::proven`]).
#[derive(Debug, Clone, Copy)]
pub struct ParquetColumns<'a> {
    /// The columns the job reads (`None`: all).
    pub columns: Option<&'a [String]>,
    /// The job's rules, if any.
    pub rules: Option<&'a Arc<RuleSet>>,
}

/// Row groups `groups` of the Parquet file at `path`, and the rules left to check of them.
fn read_parquet(
    path: &Path,
    groups: Vec<u32>,
    batch_rows: usize,
    wanted: ParquetColumns<'_>,
) -> Result<(BatchIter, Option<Arc<RuleSet>>)> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let ctx = || format!("reading parquet {}", path.display());
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| Error::arrow(ctx(), e))?;
    // The parquet reader indexes its row groups unchecked: a split naming a group the file
    // lacks (a file replaced since planning) would panic.
    let present = builder.metadata().num_row_groups();
    if let Some(g) = groups.iter().find(|&&g| g as usize >= present) {
        return Err(Error::Mismatch {
            subject: path.display().to_string(),
            reason: format!("it has {present} row groups, the split names group {g}"),
        });
    }
    check_row_counts(builder.metadata(), &groups, &path.to_string_lossy())?;
    let read = super::proven::plan(builder.metadata(), &groups, wanted.columns, wanted.rules);
    let builder = builder
        .with_row_groups(groups.into_iter().map(|g| g as usize).collect())
        .with_batch_size(batch_rows);
    let projection = parquet_projection(
        builder.parquet_schema(),
        read.columns.as_deref(),
        &path.to_string_lossy(),
    )?;
    let builder = match projection {
        Some(p) => builder.with_projection(p),
        None => builder,
    };
    let reader = builder.build().map_err(|e| Error::arrow(ctx(), e))?;
    let path = path.to_path_buf();
    let batches = Box::new(reader.map(move |r| {
        r.map_err(|e| Error::arrow(format!("reading parquet {}", path.display()), e))
    }));
    Ok((batches, read.rules))
}

pub(super) fn strip_terminator(mut line: &[u8]) -> &[u8] {
    if let Some(rest) = line.strip_suffix(b"\n") {
        line = rest;
    }
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// `text`: one `line` per input line, terminator removed; invalid UTF-8 is a bad record.
struct TextReader {
    lines: LineSource,
    batch_rows: usize,
}

impl TextReader {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        loop {
            let mut builder = StringBuilder::with_capacity(self.batch_rows, self.batch_rows * 64);
            let mut buf = Vec::with_capacity(256);
            // The split line of each row.
            let mut lines = Vec::with_capacity(self.batch_rows);
            while lines.len() < self.batch_rows && self.lines.next_line(&mut buf)? {
                match std::str::from_utf8(strip_terminator(&buf)) {
                    Ok(line) => builder.append_value(line),
                    Err(e) => {
                        let reason = format!("invalid UTF-8: {e}");
                        self.lines.reject_line("invalid UTF-8", reason, &buf)?;
                        continue;
                    }
                }
                lines.push(self.lines.lines_read);
            }
            if lines.is_empty() {
                return Ok(None);
            }
            let text = builder.finish();
            let batch = RecordBatch::try_new(text_schema(), vec![Arc::new(text.clone())])
                .map_err(|e| Error::arrow("building text batch", e))?;
            let batch = self.lines.origin.apply_rules(
                batch,
                |r| lines[r],
                |r| Some(text.value(r).to_string()),
            )?;
            // A batch of only lines failing a rule yields nothing: go on.
            if batch.num_rows() > 0 {
                return Ok(Some(batch));
            }
        }
    }
}

impl Iterator for TextReader {
    type Item = Result<RecordBatch>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_batch().transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;

    /// Fuzz crash (parquet_split): a split naming row group 2 of a one-group file made the
    /// parquet reader index out of bounds (`arrow_reader/mod.rs:1495`) instead of failing.
    #[test]
    fn a_split_naming_a_missing_row_group_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("one-group.parquet");
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, false)]));
        let batch =
            RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![1, 2]))])
                .unwrap();
        let mut w =
            parquet::arrow::ArrowWriter::try_new(File::create(&path).unwrap(), schema, None)
                .unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let split = |groups: Vec<u32>| Split {
            path: path.to_string_lossy().into_owned(),
            range: SplitRange::RowGroups(groups),
            input: String::new(),
            stamp: None,
        };
        let rows = |groups| {
            read_split(
                &split(groups),
                InputFormat::Parquet,
                None,
                8,
                None,
                ReadChecks::default(),
            )
            .map(|b| b.map(|b| b.unwrap().num_rows()).sum::<usize>())
        };
        assert_eq!(rows(vec![0]).unwrap(), 2);
        for groups in [vec![2, 0], vec![0, u32::MAX]] {
            let e = rows(groups).err().unwrap().to_string();
            assert!(
                e.contains("one-group.parquet") && e.contains("has 1 row groups"),
                "{e}"
            );
        }
    }

    /// Fuzz crash (remote_ranges, `regressions/remote_ranges/parquet-num-rows-overflow`): a
    /// footer with negative row counts made the parquet reader's unchecked sum overflow.
    #[test]
    fn row_groups_claiming_negative_or_overflowing_rows_are_refused() {
        use parquet::file::metadata::{FileMetaData, ParquetMetaData, RowGroupMetaData};
        use parquet::schema::types::{SchemaDescriptor, Type};
        let leaf = Type::primitive_type_builder("a", parquet::basic::Type::INT64)
            .build()
            .unwrap();
        let root = Type::group_type_builder("schema")
            .with_fields(vec![Arc::new(leaf)])
            .build()
            .unwrap();
        let descr = Arc::new(SchemaDescriptor::new(Arc::new(root)));
        let group = |rows: i64| {
            let column = parquet::file::metadata::ColumnChunkMetaData::builder(descr.column(0))
                .build()
                .unwrap();
            RowGroupMetaData::builder(descr.clone())
                .set_num_rows(rows)
                .set_column_metadata(vec![column])
                .build()
                .unwrap()
        };
        let file = FileMetaData::new(1, 0, None, None, descr.clone(), None);
        let meta = |rows: Vec<i64>| {
            ParquetMetaData::new(file.clone(), rows.into_iter().map(group).collect())
        };
        assert!(check_row_counts(&meta(vec![5, 7]), &[0, 1], "f.parquet").is_ok());
        let e = check_row_counts(&meta(vec![5, -3]), &[0, 1], "f.parquet").unwrap_err();
        assert!(
            e.to_string().contains("f.parquet") && e.to_string().contains("-3"),
            "{e}"
        );
        assert!(check_row_counts(&meta(vec![i64::MAX, 1]), &[0, 1], "f.parquet").is_err());
    }

    /// The `parquet` crate panics on some damaged pages (fuzz: `fuzz/regressions/
    /// remote_ranges/`); such a panic is an error naming the file, and the batches end.
    #[test]
    fn a_decoder_panic_is_an_error_naming_the_file() {
        let mut calls = 0;
        let batches: BatchIter = Box::new(std::iter::from_fn(move || {
            calls += 1;
            if calls == 2 {
                panic!("Decoder for dict should have been set");
            }
            Some(Ok(RecordBatch::new_empty(text_schema())))
        }));
        let mut it = PanicsAsErrors {
            batches: Some(batches),
            name: "s3://b/day.parquet".into(),
        };
        assert!(it.next().unwrap().is_ok());
        let e = it.next().unwrap().unwrap_err().to_string();
        assert!(
            e.contains("s3://b/day.parquet") && e.contains("damaged") && e.contains("dict"),
            "{e}"
        );
        assert!(it.next().is_none(), "nothing after the panic");
    }
}
