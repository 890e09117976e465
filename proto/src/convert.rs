//! Conversions between wire messages and `sluice-common` domain types.

use sluice_common::failure::{FailureReason, TaskFailure};
use sluice_common::format::schema::{schema_from_bytes, schema_to_bytes};
use sluice_common::input_plan::{InputPlan, SideInput};
use sluice_common::spec::{InputFormat, JobSpec, OutputFormat};
use sluice_common::split::{FileStamp, Split, SplitRange};

use crate::pb;

/// A wire message that does not describe a valid domain value.
#[derive(Debug, thiserror::Error)]
#[error("invalid {what}: {reason}")]
pub struct InvalidMessage {
    /// Which message.
    pub what: &'static str,
    /// What is wrong.
    pub reason: String,
}

impl From<InvalidMessage> for tonic::Status {
    fn from(e: InvalidMessage) -> Self {
        tonic::Status::invalid_argument(e.to_string())
    }
}

fn invalid(what: &'static str, reason: impl Into<String>) -> InvalidMessage {
    InvalidMessage {
        what,
        reason: reason.into(),
    }
}

impl From<InputFormat> for pb::InputFormat {
    fn from(f: InputFormat) -> Self {
        match f {
            InputFormat::Text => pb::InputFormat::Text,
            InputFormat::Csv => pb::InputFormat::Csv,
            InputFormat::JsonLines => pb::InputFormat::Jsonl,
            InputFormat::Parquet => pb::InputFormat::Parquet,
        }
    }
}

impl From<&JobSpec> for pb::JobSpec {
    fn from(s: &JobSpec) -> Self {
        pb::JobSpec {
            plugin: s.plugin.clone(),
            plugin_sha256: s.plugin_sha256.clone(),
            inputs: s.inputs.clone(),
            format: pb::InputFormat::from(s.format) as i32,
            output: s.output.clone(),
            reducers: s.reducers,
            params: s.params.clone().into_iter().collect(),
            split_size: s.split_size,
            output_format: match s.output_format {
                OutputFormat::Parquet => pb::OutputFormat::Parquet,
                OutputFormat::Csv => pb::OutputFormat::Csv,
            } as i32,
            overwrite: s.overwrite,
            batch_rows: s.batch_rows,
            task_memory: s.task_memory,
            task_timeout_secs: s.task_timeout_secs,
            on_bad_record: s.on_bad_record.to_string(),
            max_bad_records: s.max_bad_records.map(|l| l.to_string()).unwrap_or_default(),
            control_json: s.control.as_ref().map(|c| c.to_json()).unwrap_or_default(),
            partition_by: s.partition_by.clone(),
            input_formats: s
                .formats
                .iter()
                .map(|(name, f)| (name.clone(), pb::InputFormat::from(*f) as i32))
                .collect(),
            sides: s.sides.clone(),
            side_max_bytes: s.side_max_bytes,
            run_key: s.run_key.clone(),
            job_timeout_secs: s.job_timeout_secs,
            notify: s.notify.clone(),
            incremental: s.incremental.clone(),
            queue: s.queue.clone(),
            priority: s.priority,
        }
    }
}

/// An input format from its wire value.
fn input_format(f: i32) -> Result<InputFormat, InvalidMessage> {
    match pb::InputFormat::try_from(f) {
        Ok(pb::InputFormat::Text) => Ok(InputFormat::Text),
        Ok(pb::InputFormat::Csv) => Ok(InputFormat::Csv),
        Ok(pb::InputFormat::Jsonl) => Ok(InputFormat::JsonLines),
        Ok(pb::InputFormat::Parquet) => Ok(InputFormat::Parquet),
        _ => Err(invalid("job spec", format!("input format {f}"))),
    }
}

impl TryFrom<&pb::JobSpec> for JobSpec {
    type Error = InvalidMessage;
    fn try_from(s: &pb::JobSpec) -> Result<Self, InvalidMessage> {
        let format = input_format(s.format)?;
        let output_format = match pb::OutputFormat::try_from(s.output_format) {
            Ok(pb::OutputFormat::Csv) => OutputFormat::Csv,
            Ok(pb::OutputFormat::Parquet | pb::OutputFormat::Unspecified) => OutputFormat::Parquet,
            Err(_) => {
                return Err(invalid(
                    "job spec",
                    format!("output format {}", s.output_format),
                ));
            }
        };
        let spec = JobSpec {
            plugin: s.plugin.clone(),
            plugin_sha256: s.plugin_sha256.clone(),
            inputs: s.inputs.clone(),
            format,
            output: s.output.clone(),
            reducers: s.reducers,
            params: s.params.clone().into_iter().collect(),
            split_size: s.split_size,
            output_format,
            overwrite: s.overwrite,
            batch_rows: s.batch_rows,
            task_memory: s.task_memory,
            task_timeout_secs: s.task_timeout_secs,
            on_bad_record: match s.on_bad_record.as_str() {
                "" => Default::default(),
                p => p.parse().map_err(|e: String| invalid("job spec", e))?,
            },
            max_bad_records: match s.max_bad_records.as_str() {
                "" => None,
                l => Some(l.parse().map_err(|e: String| invalid("job spec", e))?),
            },
            partition_by: s.partition_by.clone(),
            formats: s
                .input_formats
                .iter()
                .map(|(name, f)| Ok((name.clone(), input_format(*f)?)))
                .collect::<Result<_, InvalidMessage>>()?,
            sides: s.sides.clone(),
            run_key: s.run_key.clone(),
            job_timeout_secs: s.job_timeout_secs,
            notify: s.notify.clone(),
            incremental: s.incremental.clone(),
            queue: s.queue.clone(),
            priority: s.priority,
            side_max_bytes: match s.side_max_bytes {
                0 => sluice_common::spec::DEFAULT_SIDE_MAX_BYTES,
                n => n,
            },
            control: match s.control_json.as_str() {
                "" => None,
                json => Some(
                    sluice_common::control::Control::parse(json)
                        .map_err(|e| invalid("job spec", e))?,
                ),
            },
        };
        spec.validate().map_err(|e| invalid("job spec", e))?;
        Ok(spec)
    }
}

/// The wire form of an input plan, as the bytes the coordinator stores and forwards.
pub fn encode_input_plan(plan: &InputPlan) -> sluice_common::Result<Vec<u8>> {
    let schemas = plan
        .schemas
        .iter()
        .map(|(name, s)| Ok((name.clone(), schema_to_bytes(s)?)))
        .collect::<sluice_common::Result<_>>()?;
    let sides = plan
        .sides
        .iter()
        .map(|side| pb::SideInput {
            name: side.name.clone(),
            files: side.files.iter().map(pb::Split::from).collect(),
        })
        .collect();
    Ok(prost::Message::encode_to_vec(&pb::InputPlan {
        schemas,
        sides,
    }))
}

/// Decodes what [`encode_input_plan`] wrote. A store written before input plans existed
/// holds the unnamed input's schema alone (an Arrow IPC stream, which never reads as this
/// message), and is read as a plan of that one schema.
pub fn decode_input_plan(bytes: &[u8]) -> Result<InputPlan, InvalidMessage> {
    let what = "input plan";
    if bytes.is_empty() {
        return Ok(InputPlan::default());
    }
    let wire = match <pb::InputPlan as prost::Message>::decode(bytes) {
        Ok(wire) => wire,
        Err(e) => {
            let schema = schema_from_bytes(bytes).map_err(|_| invalid(what, e.to_string()))?;
            return Ok(InputPlan {
                schemas: [(String::new(), schema)].into(),
                sides: Vec::new(),
            });
        }
    };
    let schemas = wire
        .schemas
        .iter()
        .map(|(name, ipc)| {
            let schema = schema_from_bytes(ipc)
                .map_err(|e| invalid(what, format!("schema of input {name:?}: {e}")))?;
            Ok((name.clone(), schema))
        })
        .collect::<Result<_, InvalidMessage>>()?;
    let sides = wire
        .sides
        .iter()
        .map(|side| {
            Ok(SideInput {
                name: side.name.clone(),
                files: side
                    .files
                    .iter()
                    .map(Split::try_from)
                    .collect::<Result<_, _>>()?,
            })
        })
        .collect::<Result<_, InvalidMessage>>()?;
    Ok(InputPlan { schemas, sides })
}

impl From<&Split> for pb::Split {
    fn from(s: &Split) -> Self {
        pb::Split {
            path: s.path.clone(),
            input: s.input.clone(),
            stamp: s.stamp.as_ref().map(|st| pb::FileStamp {
                size: st.size,
                version: st.version.clone(),
            }),
            range: Some(match &s.range {
                SplitRange::Bytes { start, end } => pb::split::Range::Bytes(pb::ByteRange {
                    start: *start,
                    end: *end,
                }),
                SplitRange::RowGroups(groups) => pb::split::Range::RowGroups(pb::RowGroups {
                    row_groups: groups.clone(),
                }),
                SplitRange::Files(files) => pb::split::Range::Files(pb::SplitList {
                    splits: files.iter().map(pb::Split::from).collect(),
                }),
            }),
        }
    }
}

impl TryFrom<&pb::Split> for Split {
    type Error = InvalidMessage;
    fn try_from(s: &pb::Split) -> Result<Self, InvalidMessage> {
        let range = match &s.range {
            Some(pb::split::Range::Bytes(b)) if b.start <= b.end => SplitRange::Bytes {
                start: b.start,
                end: b.end,
            },
            Some(pb::split::Range::RowGroups(g)) => SplitRange::RowGroups(g.row_groups.clone()),
            // One level only: a packed split holds file splits, never other packed splits.
            Some(pb::split::Range::Files(list))
                if list
                    .splits
                    .iter()
                    .all(|s| !matches!(s.range, Some(pb::split::Range::Files(_)))) =>
            {
                SplitRange::Files(
                    list.splits
                        .iter()
                        .map(Split::try_from)
                        .collect::<Result<_, _>>()?,
                )
            }
            other => return Err(invalid("split", format!("range {other:?}"))),
        };
        Ok(Split {
            path: s.path.clone(),
            range,
            input: s.input.clone(),
            stamp: s.stamp.as_ref().map(|st| FileStamp {
                size: st.size,
                version: st.version.clone(),
            }),
        })
    }
}

impl From<&TaskFailure> for pb::TaskFailure {
    fn from(f: &TaskFailure) -> Self {
        use pb::task_failure::Reason;
        pb::TaskFailure {
            message: f.message.clone(),
            retryable: f.retryable,
            reason: Some(match &f.reason {
                FailureReason::Plugin => Reason::Plugin(pb::PluginFailure {}),
                FailureReason::Io => Reason::Io(pb::IoFailure {}),
                FailureReason::Assignment => Reason::Assignment(pb::AssignmentFailure {}),
                FailureReason::CommitDenied { partition } => {
                    Reason::CommitDenied(pb::CommitDenied {
                        partition: *partition,
                    })
                }
                FailureReason::BadRecord { file, line } => Reason::BadRecord(pb::BadRecord {
                    file: file.clone(),
                    line: *line,
                }),
                FailureReason::FetchFailed {
                    map_index,
                    map_attempt,
                    worker_id,
                    worker_unreachable,
                } => Reason::FetchFailed(pb::FetchFailed {
                    map_index: *map_index,
                    map_attempt: *map_attempt,
                    worker_id: worker_id.clone(),
                    worker_unreachable: *worker_unreachable,
                }),
            }),
        }
    }
}

impl From<&pb::TaskFailure> for TaskFailure {
    fn from(f: &pb::TaskFailure) -> Self {
        use pb::task_failure::Reason;
        let reason = match &f.reason {
            Some(Reason::Plugin(_)) => FailureReason::Plugin,
            Some(Reason::Assignment(_)) => FailureReason::Assignment,
            Some(Reason::CommitDenied(c)) => FailureReason::CommitDenied {
                partition: c.partition,
            },
            Some(Reason::BadRecord(b)) => FailureReason::BadRecord {
                file: b.file.clone(),
                line: b.line,
            },
            Some(Reason::FetchFailed(x)) => FailureReason::FetchFailed {
                map_index: x.map_index,
                map_attempt: x.map_attempt,
                worker_id: x.worker_id.clone(),
                worker_unreachable: x.worker_unreachable,
            },
            Some(Reason::Io(_)) | None => FailureReason::Io,
        };
        TaskFailure {
            message: f.message.clone(),
            retryable: f.retryable,
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_round_trips() {
        let mut spec = JobSpec::new(
            "p.so".into(),
            vec!["a/*.csv".into()],
            InputFormat::Csv,
            "out".into(),
        );
        spec.params.insert("k".into(), "v".into());
        spec.output_format = OutputFormat::Csv;
        spec.sides = vec!["fx=rates/*.csv".into()];
        spec.side_max_bytes = 1 << 20;
        spec.run_key = "eod@2026-11-28".into();
        spec.job_timeout_secs = 4 * 3600;
        spec.notify = vec!["https://hooks.example/eod".into()];
        spec.incremental = "txns".into();
        spec.queue = "nightly".into();
        spec.priority = -3;
        spec.formats.insert("fx".into(), InputFormat::JsonLines);
        let back = JobSpec::try_from(&pb::JobSpec::from(&spec)).unwrap();
        assert_eq!(back, spec);
    }

    #[test]
    fn input_plan_round_trips_and_an_older_store_reads_as_one_schema() {
        use arrow_schema::{DataType, Field, Schema};
        use std::sync::Arc;
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Utf8, true)]));
        let plan = InputPlan {
            schemas: [
                ("".to_string(), schema.clone()),
                ("fx".into(), schema.clone()),
            ]
            .into(),
            sides: vec![SideInput {
                name: "fx".into(),
                files: vec![Split {
                    path: "rates.csv".into(),
                    range: SplitRange::Bytes { start: 0, end: 10 },
                    input: "fx".into(),
                    stamp: Some(FileStamp {
                        size: 10,
                        version: "etag \"x\"".into(),
                    }),
                }],
            }],
        };
        let bytes = encode_input_plan(&plan).unwrap();
        assert_eq!(decode_input_plan(&bytes).unwrap(), plan);
        assert_eq!(decode_input_plan(&[]).unwrap(), InputPlan::default());
        let old = schema_to_bytes(&schema).unwrap();
        let read = decode_input_plan(&old).unwrap();
        assert_eq!(read.schema_of(""), Some(schema));
        assert!(read.sides.is_empty());
        assert!(decode_input_plan(b"\xff\xfe junk").is_err());
    }

    #[test]
    fn fetch_failure_keeps_its_fields() {
        let f = TaskFailure {
            message: "fetch".into(),
            retryable: true,
            reason: FailureReason::FetchFailed {
                map_index: 3,
                map_attempt: 1,
                worker_id: "worker-2".into(),
                worker_unreachable: true,
            },
        };
        assert_eq!(TaskFailure::from(&pb::TaskFailure::from(&f)), f);
    }

    #[test]
    fn every_failure_reason_crosses_the_wire() {
        for reason in [
            FailureReason::Plugin,
            FailureReason::Io,
            FailureReason::Assignment,
            FailureReason::CommitDenied { partition: 7 },
            FailureReason::BadRecord {
                file: "f.csv".into(),
                line: 3,
            },
        ] {
            let f = TaskFailure {
                message: "m".into(),
                retryable: false,
                reason,
            };
            assert_eq!(TaskFailure::from(&pb::TaskFailure::from(&f)), f);
        }
    }
}
