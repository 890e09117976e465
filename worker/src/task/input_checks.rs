//! What a map attempt checks of its input besides reading it: the bad records its reader
//! set aside (counted, held to the job's limit, quarantined) and the sums of the control
//! file's columns.

use std::collections::BTreeMap;
use std::path::Path;

use arrow::array::RecordBatch;
use sluice_common::bad_records::{Limit, Policy, RejectSink, Rejected, count_by_kind};
use sluice_common::control::{ColumnSum, sum_column};
use sluice_common::{Error, Result};

/// Adds `batch`'s values of each column named in `sums` (the control file's) to its sum.
pub(super) fn add_control_sums(
    batch: &RecordBatch,
    sums: &mut BTreeMap<String, ColumnSum>,
) -> Result<()> {
    for (column, sum) in sums.iter_mut() {
        let values = batch
            .column_by_name(column)
            .ok_or_else(|| Error::Mismatch {
                subject: format!("control column {column:?}"),
                reason: "the job does not read it".into(),
            })?;
        let add = sum_column(column, values).map_err(|reason| Error::Mismatch {
            subject: format!("control column {column:?}"),
            reason,
        })?;
        *sum = sum.checked_add(add).ok_or_else(|| Error::Overflow {
            aggregate: format!("control sum of {column}"),
            detail: ": past 38 digits",
        })?;
    }
    Ok(())
}

/// The bad records a map attempt set aside.
#[derive(Default)]
pub(super) struct BadRecords {
    pub(super) count: u64,
    pub(super) by_kind: BTreeMap<String, u64>,
    /// Their quarantine file, relative to the output.
    pub(super) file: Option<String>,
}

/// Counts what `sink` holds, fails the attempt when that alone is over the job's limit, and
/// quarantines the records when the job says so.
pub(super) fn settle_bad_records(
    spec: &sluice_common::spec::JobSpec,
    sink: Option<RejectSink>,
    rejects_dir: &Path,
    index: u32,
    attempt: u32,
) -> Result<BadRecords> {
    let Some(sink) = sink else {
        return Ok(BadRecords::default());
    };
    let rejected = sink.take();
    if rejected.is_empty() {
        return Ok(BadRecords::default());
    }
    let count = rejected.len() as u64;
    let limit = Limit::effective(spec.on_bad_record, spec.max_bad_records);
    Limit::check(limit, count, None).map_err(|reason| Error::TooManyBadRecords {
        reason: format!(
            "map task {index}: {reason}; the first: {}",
            describe(&rejected[0])
        ),
    })?;
    let file = if spec.on_bad_record == Policy::Quarantine {
        Some(super::rejects::write(
            &spec.output,
            rejects_dir,
            index,
            attempt,
            &rejected,
        )?)
    } else {
        None
    };
    Ok(BadRecords {
        count,
        by_kind: count_by_kind(&rejected),
        file,
    })
}

fn describe(r: &Rejected) -> String {
    format!("{} line {}: {}", r.source, r.line, r.reason)
}
