//! A plugin for the engine's own tests (not an example to copy).
//!
//! Over `text` input it counts lines by length: output `len: Int64, lines: Int64`. Job
//! parameters make it misbehave the way user code does:
//! - `fail=map-panic`: the map panics with `deliberate panic in map`;
//! - `fail=map-error`: the map returns the error `deliberate error in map`;
//! - `fail=map-invalid`: the map returns a batch whose extra `bad` column holds invalid
//!   UTF-8, built unchecked, as a plugin built against another arrow might.
//!
//! Its own data-quality check `not_blank` (`Job::check`) fails blank lines when the job
//! parameter `check=not_blank` is given, and passes every line otherwise.
//!
//! Given a side input `keep` (`--side keep=FILE`, CSV with the header `line,weight`, the
//! schema it declares for that name), it counts only the lines the table lists, and counts
//! them in the job counter `kept`.
//!
//! It reduces with a custom `reduce` (not declared aggregates), so the engine's sorted-group
//! path is exercised: each call must see whole, sorted key groups, and within a group the
//! lines in order (`sort_columns`: a secondary sort), or the reduce fails saying so.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use sluice_sdk::prelude::*;

/// Counts lines by length; misbehaves on request (see the crate docs).
#[derive(Default)]
pub struct LineLengths;

impl Job for LineLengths {
    fn name(&self) -> &str {
        "line-lengths"
    }

    fn key_columns(&self) -> Vec<String> {
        vec!["len".into()]
    }

    fn sort_columns(&self) -> Vec<String> {
        vec!["line".into()]
    }

    fn checks(&self) -> Vec<String> {
        vec!["not_blank".into()]
    }

    fn check(&self, batch: &RecordBatch, ctx: &TaskContext) -> JobResult<RecordBatch> {
        let lines = batch
            .column_by_name("line")
            .ok_or("input has no line column")?
            .as_string::<i32>();
        let on = ctx.param("check") == Some("not_blank");
        let passed: arrow_array::BooleanArray = (0..lines.len())
            .map(|i| Some(!on || !lines.value(i).trim().is_empty()))
            .collect();
        let schema = Arc::new(Schema::new(vec![Field::new(
            "not_blank",
            DataType::Boolean,
            false,
        )]));
        Ok(RecordBatch::try_new(schema, vec![Arc::new(passed)])?)
    }

    fn named_input_schema(&self, name: &str) -> Option<SchemaRef> {
        (name == "keep").then(|| {
            Arc::new(Schema::new(vec![
                Field::new("line", DataType::Utf8, false),
                Field::new("weight", DataType::Int64, true),
            ]))
        })
    }

    fn map(&self, batch: RecordBatch, ctx: &TaskContext) -> JobResult<RecordBatch> {
        match ctx.param("fail") {
            Some("map-panic") => panic!("deliberate panic in map"),
            Some("map-error") => return Err("deliberate error in map".into()),
            _ => {}
        }
        let batch = match ctx.side_input("keep") {
            Some(keep) => Self::keep_listed(&batch, keep, ctx)?,
            None => batch,
        };
        let lines = batch
            .column_by_name("line")
            .ok_or("input has no line column")?
            .as_string::<i32>();
        let lens: Int64Array = (0..lines.len())
            .map(|i| {
                lines
                    .is_valid(i)
                    .then(|| lines.value(i).chars().count() as i64)
            })
            .collect();
        if ctx.param("fail") == Some("map-invalid") {
            let rows = lens.len();
            // Every value is the two bytes 0xFF 0xFE: never UTF-8.
            let offsets: Vec<i32> = (0..=rows).map(|i| 2 * i as i32).collect();
            let values = arrow_buffer::Buffer::from_vec([0xFFu8, 0xFE].repeat(rows));
            // SAFETY: offsets and buffer agree in length; only the UTF-8 is deliberately
            // wrong, which the engine must catch before reading the strings.
            let bad = unsafe {
                arrow_array::StringArray::new_unchecked(
                    arrow_buffer::OffsetBuffer::new_unchecked(offsets.into()),
                    values,
                    None,
                )
            };
            let schema = Arc::new(Schema::new(vec![
                Field::new("len", DataType::Int64, true),
                Field::new("bad", DataType::Utf8, true),
            ]));
            return Ok(RecordBatch::try_new(
                schema,
                vec![Arc::new(lens), Arc::new(bad)],
            )?);
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("len", DataType::Int64, true),
            Field::new("line", DataType::Utf8, true),
        ]));
        let lines = Arc::clone(
            batch
                .column_by_name("line")
                .ok_or("input has no line column")?,
        );
        Ok(RecordBatch::try_new(schema, vec![Arc::new(lens), lines])?)
    }

    fn reduce(&self, groups: RecordBatch, _ctx: &TaskContext) -> JobResult<RecordBatch> {
        Self::reduce_groups(&groups)
    }
}

sluice_sdk::export_job!(LineLengths);

impl LineLengths {
    /// The rows of `batch` whose line the side table `keep` lists.
    fn keep_listed(
        batch: &RecordBatch,
        keep: &RecordBatch,
        ctx: &TaskContext,
    ) -> JobResult<RecordBatch> {
        let listed = keep
            .column_by_name("line")
            .ok_or("side input keep has no line column")?
            .as_string::<i32>();
        let listed: std::collections::HashSet<&str> = listed.iter().flatten().collect();
        let lines = batch
            .column_by_name("line")
            .ok_or("input has no line column")?
            .as_string::<i32>();
        let kept: arrow_array::StringArray = lines
            .iter()
            .filter(|l| l.is_some_and(|l| listed.contains(l)))
            .collect();
        ctx.counter("kept", kept.len() as i64);
        let schema = Arc::new(Schema::new(vec![Field::new("line", DataType::Utf8, true)]));
        Ok(RecordBatch::try_new(schema, vec![Arc::new(kept)])?)
    }

    fn reduce_groups(batch: &RecordBatch) -> JobResult<RecordBatch> {
        let lens = batch
            .column_by_name("len")
            .ok_or("reduce input has no len column")?
            .as_primitive::<arrow_array::types::Int64Type>();
        let lines = batch
            .column_by_name("line")
            .ok_or("reduce input has no line column")?
            .as_string::<i32>();
        let (mut keys, mut counts): (Vec<Option<i64>>, Vec<i64>) = (Vec::new(), Vec::new());
        for i in 0..lens.len() {
            let k = lens.is_valid(i).then(|| lens.value(i));
            if keys.last() == Some(&k) {
                if lines.value(i - 1) > lines.value(i) {
                    return Err(format!("the lines of group {k:?} are not in order").into());
                }
                *counts.last_mut().ok_or("no group")? += 1;
            } else {
                if keys.iter().any(|x| *x >= k) {
                    return Err(format!("reduce input not sorted or group split at {k:?}").into());
                }
                keys.push(k);
                counts.push(1);
            }
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("len", DataType::Int64, true),
            Field::new("lines", DataType::Int64, false),
        ]));
        Ok(RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(keys)),
                Arc::new(Int64Array::from(counts)),
            ],
        )?)
    }
}
