//! JSON lines into the input schema with arrow-json's decoder, fed one line at a time so a
//! malformed line is named exactly.
//!
//! When the job tolerates bad records, a batch whose lines do not all decode is decoded
//! again line by line to find the bad ones (the slow path runs only for such batches); the
//! good lines then make the batch.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::json::reader::Decoder;

use super::read::strip_terminator;
use super::source::LineSource;
use crate::{Error, Result};

/// What a JSON line is when it is not one record.
const NOT_ONE_OBJECT: &str = "not exactly one complete JSON object on the line";

pub(super) struct JsonReader {
    lines: LineSource,
    schema: SchemaRef,
    decoder: Decoder,
    batch_rows: usize,
    done: bool,
}

fn decoder(schema: &SchemaRef, batch_rows: usize) -> Result<Decoder> {
    arrow::json::ReaderBuilder::new(schema.clone())
        .with_batch_size(batch_rows)
        .build_decoder()
        .map_err(|e| Error::arrow("building JSON decoder", e))
}

/// Feeds one line to `decoder`: it must be exactly one complete JSON object.
fn decode_line(decoder: &mut Decoder, line: &[u8]) -> std::result::Result<(), String> {
    let before = decoder.len();
    let used = decoder.decode(line).map_err(|e| e.to_string())?;
    if used != line.len() || decoder.has_partial_record() || decoder.len() != before + 1 {
        return Err(NOT_ONE_OBJECT.into());
    }
    Ok(())
}

impl JsonReader {
    pub(super) fn new(lines: LineSource, schema: SchemaRef, batch_rows: usize) -> Result<Self> {
        Ok(JsonReader {
            decoder: decoder(&schema, batch_rows)?,
            lines,
            schema,
            batch_rows,
            done: false,
        })
    }

    /// Reads the next line that is not blank into `buf`; false at the end of the split.
    fn next_nonblank(&mut self, buf: &mut Vec<u8>) -> Result<bool> {
        while !self.done {
            if !self.lines.next_line(buf)? {
                self.done = true;
            } else if !strip_terminator(buf).iter().all(u8::is_ascii_whitespace) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        if self.lines.origin.rejects.is_some() {
            // A batch of only bad lines yields nothing: go on to the next lines.
            while let Some(batch) = self.next_batch_tolerant()? {
                if batch.is_some() {
                    return Ok(batch);
                }
            }
            return Ok(None);
        }
        let mut buf = Vec::with_capacity(512);
        // The split line of each row.
        let mut lines = Vec::with_capacity(self.batch_rows);
        let first_line = self.lines.lines_read + 1;
        while lines.len() < self.batch_rows && self.next_nonblank(&mut buf)? {
            let line = strip_terminator(&buf);
            decode_line(&mut self.decoder, line).map_err(|e| self.lines.bad_line(e))?;
            lines.push(self.lines.lines_read);
        }
        let batch = self.decoder.flush().map_err(|e| {
            self.lines.origin.bad_record(
                first_line,
                format!("in the lines from here to {}: {e}", self.lines.lines_read),
            )
        })?;
        // Strict: a record failing a rule fails the read (its text is not needed).
        batch
            .map(|b| self.lines.origin.apply_rules(b, |r| lines[r], |_| None))
            .transpose()
    }

    /// `batch`, whose rows are the lines at `spans` of `text`, without the rows failing a
    /// rule (set aside); `None` when none is left.
    fn checked(
        &self,
        batch: Option<RecordBatch>,
        text: &[u8],
        spans: &[(usize, usize, u64)],
    ) -> Result<Option<RecordBatch>> {
        let Some(batch) = batch else {
            return Ok(None);
        };
        let batch = self.lines.origin.apply_rules(
            batch,
            |r| spans[r].2,
            |r| Some(String::from_utf8_lossy(&text[spans[r].0..spans[r].1]).into_owned()),
        )?;
        Ok((batch.num_rows() > 0).then_some(batch))
    }

    /// Reads up to `batch_rows` lines, then decodes them; bad lines are set aside. `None` at
    /// the end of the split, `Some(None)` when every line read was bad.
    fn next_batch_tolerant(&mut self) -> Result<Option<Option<RecordBatch>>> {
        let mut buf = Vec::with_capacity(512);
        // The batch's lines, back to back, with each one's span and line in the split.
        let mut text: Vec<u8> = Vec::new();
        let mut spans: Vec<(usize, usize, u64)> = Vec::new();
        while spans.len() < self.batch_rows && self.next_nonblank(&mut buf)? {
            let line = strip_terminator(&buf);
            spans.push((text.len(), text.len() + line.len(), self.lines.lines_read));
            text.extend_from_slice(line);
        }
        if spans.is_empty() {
            return Ok(None);
        }
        let all_good = spans
            .iter()
            .try_for_each(|&(a, b, _)| decode_line(&mut self.decoder, &text[a..b]))
            .is_ok();
        if all_good && let Ok(batch) = self.decoder.flush() {
            return Ok(Some(self.checked(batch, &text, &spans)?));
        }
        // Some line is bad: find which, one line at a time, then decode the good ones.
        let mut probe = decoder(&self.schema, 1)?;
        let mut good = Vec::with_capacity(spans.len());
        for &(a, b, nth) in &spans {
            let line = &text[a..b];
            let verdict = decode_line(&mut probe, line)
                .and_then(|()| probe.flush().map(drop).map_err(|e| e.to_string()));
            match verdict {
                Ok(()) => good.push((a, b, nth)),
                Err(reason) => {
                    self.lines
                        .origin
                        .reject(nth, "malformed JSON", reason, || {
                            Some(String::from_utf8_lossy(line).into_owned())
                        })?;
                    probe = decoder(&self.schema, 1)?;
                }
            }
        }
        self.decoder = decoder(&self.schema, self.batch_rows)?;
        for &(a, b, _) in &good {
            decode_line(&mut self.decoder, &text[a..b]).map_err(|reason| Error::Internal {
                what: format!("a JSON line decoded alone but not in its batch: {reason}"),
            })?;
        }
        match self.decoder.flush() {
            Ok(batch) => Ok(Some(self.checked(batch, &text, &good)?)),
            Err(e) => Err(Error::Internal {
                what: format!("JSON lines decoded alone but not together: {e}"),
            }),
        }
    }
}

impl Iterator for JsonReader {
    type Item = Result<RecordBatch>;
    fn next(&mut self) -> Option<Self::Item> {
        let r = self.next_batch();
        if r.is_err() {
            self.done = true;
        }
        r.transpose()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::AsArray;
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};

    use crate::bad_records::RejectSink;
    use crate::format::read::read_split;
    use crate::spec::InputFormat;
    use crate::split::{Split, SplitRange};

    /// Malformed lines, values of the wrong type and two objects on a line are set aside
    /// with their lines and text; the good lines make the batches, in order, even when a
    /// whole batch is bad. Read strictly, the first bad line fails the read.
    #[test]
    fn bad_json_lines_are_set_aside_with_their_lines_when_tolerated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        let lines = [
            r#"{"a": 1}"#,
            r#"{"a": 2"#,
            r#"{"a": "x"}"#,
            r#"{"a": 3} {"a": 4}"#,
            "",
            r#"{"a": 5}"#,
            r#"{"a": true}"#,
            r#"{"a": 6}"#,
        ];
        std::fs::write(&path, lines.join("\n")).unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true)]));
        let split = Split {
            path: path.to_string_lossy().into_owned(),
            range: SplitRange::Bytes {
                start: 0,
                end: std::fs::metadata(&path).unwrap().len(),
            },
            input: String::new(),
            stamp: None,
        };
        let sink = RejectSink::new(true);
        let read = |rows, rejects: Option<RejectSink>| {
            let checks = crate::format::read::ReadChecks {
                rejects,
                rules: None,
            };
            read_split(
                &split,
                InputFormat::JsonLines,
                Some(schema.clone()),
                rows,
                None,
                checks,
            )
            .unwrap()
            .collect::<crate::Result<Vec<_>>>()
        };
        for rows in [1, 2, 8] {
            let batches = read(rows, Some(sink.clone())).unwrap();
            let values: Vec<i64> = batches
                .iter()
                .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
                .collect();
            assert_eq!(values, [1, 5, 6], "batches of {rows}");
            let rejected = sink.take();
            let got: Vec<(u64, &str)> = rejected
                .iter()
                .map(|r| (r.line, r.record.as_deref().unwrap_or("")))
                .collect();
            assert_eq!(
                got,
                [(2, lines[1]), (3, lines[2]), (4, lines[3]), (7, lines[6])],
                "batches of {rows}"
            );
            assert!(rejected.iter().all(|r| r.kind == "malformed JSON"));
        }
        let e = read(8, None).unwrap_err().to_string();
        assert!(e.contains("in.jsonl line 2"), "{e}");
    }
}
