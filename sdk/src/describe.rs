//! The job description: what the engine needs to know about a job to plan and run it. It
//! crosses the plugin boundary, and sits in the job store, in the versioned binary form of
//! [`crate::codec`].

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::codec::{self, DecodeError};

/// Format of the encoded [`JobDescription`]: bump it when the type changes shape.
pub const DESCRIPTION_FORMAT: u32 = 2;

/// An aggregate function the engine computes per key group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AggFunc {
    /// Sum of a numeric column (integers into `Int64`, decimals into `Decimal128(38, s)`).
    Sum,
    /// Number of rows in the group (`Int64`); with an input column, its non-null values.
    Count,
    /// Smallest value of a column (same type as the column).
    Min,
    /// Largest value of a column (same type as the column).
    Max,
}

impl AggFunc {
    /// The name used in descriptions.
    pub fn as_str(self) -> &'static str {
        match self {
            AggFunc::Sum => "sum",
            AggFunc::Count => "count",
            AggFunc::Min => "min",
            AggFunc::Max => "max",
        }
    }
}

impl fmt::Display for AggFunc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One output column computed per key group: `output = func(input)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Aggregate {
    /// Name of the output column.
    pub output: String,
    /// The function.
    pub func: AggFunc,
    /// The map-output column it reads; `None` only for a row count.
    pub input: Option<String>,
}

impl Aggregate {
    /// `output = count(*)`.
    pub fn count(output: &str) -> Self {
        Aggregate {
            output: output.into(),
            func: AggFunc::Count,
            input: None,
        }
    }

    /// `output = sum(input)`.
    pub fn sum(output: &str, input: &str) -> Self {
        Self::of(AggFunc::Sum, output, input)
    }

    /// `output = min(input)`.
    pub fn min(output: &str, input: &str) -> Self {
        Self::of(AggFunc::Min, output, input)
    }

    /// `output = max(input)`.
    pub fn max(output: &str, input: &str) -> Self {
        Self::of(AggFunc::Max, output, input)
    }

    fn of(func: AggFunc, output: &str, input: &str) -> Self {
        Aggregate {
            output: output.into(),
            func,
            input: Some(input.into()),
        }
    }
}

/// How key groups are reduced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReduceKind {
    /// The engine computes these aggregates, map-side as a combiner and again at the reducer.
    Aggregate(Vec<Aggregate>),
    /// The job's own `reduce` is called with sorted, whole key groups.
    Custom,
}

/// What the engine needs to know about a job to plan and run it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobDescription {
    /// The job's name.
    pub name: String,
    /// Key columns of the map output.
    pub key_columns: Vec<String>,
    /// How groups are reduced.
    pub reduce: ReduceKind,
    /// The input columns the map reads; `None`: all. Columnar input (Parquet) reads only
    /// these and the columns of the rules its footer does not prove.
    pub input_columns: Option<Vec<String>>,
    /// Data-quality rules on the input columns.
    pub rules: Vec<crate::rules::Rule>,
    /// Names of the job's own checks (`Job::check`).
    pub checks: Vec<String>,
    /// Map output columns ordering the rows within each key group (`Job::sort_columns`).
    pub sort_columns: Vec<String>,
}

/// A description that cannot be used: undecodable, or declaring no way to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DescriptionError {
    /// The bytes did not decode.
    Decode(DecodeError),
    /// The job declares no key columns.
    NoKeyColumns {
        /// The job's name.
        job: String,
    },
    /// The job declares an empty list of aggregates.
    NoAggregates {
        /// The job's name.
        job: String,
    },
}

impl fmt::Display for DescriptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DescriptionError::Decode(e) => e.fmt(f),
            DescriptionError::NoKeyColumns { job } => {
                write!(f, "job {job} declares no key columns")
            }
            DescriptionError::NoAggregates { job } => {
                write!(f, "job {job} declares neither aggregates nor a reduce")
            }
        }
    }
}

impl std::error::Error for DescriptionError {}

impl JobDescription {
    /// The binary form (see [`crate::codec`]).
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(DESCRIPTION_FORMAT, self)
    }

    /// Decodes [`JobDescription::encode`]'s output and checks the description can run.
    pub fn decode(bytes: &[u8]) -> Result<Self, DescriptionError> {
        let d: JobDescription = codec::decode(DESCRIPTION_FORMAT, "the job description", bytes)
            .map_err(DescriptionError::Decode)?;
        if d.key_columns.is_empty() {
            return Err(DescriptionError::NoKeyColumns { job: d.name });
        }
        if matches!(&d.reduce, ReduceKind::Aggregate(a) if a.is_empty()) {
            return Err(DescriptionError::NoAggregates { job: d.name });
        }
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn description_round_trips() {
        let d = JobDescription {
            name: "eod".into(),
            key_columns: vec!["account_id".into(), "txn=date\n".into()],
            reduce: ReduceKind::Aggregate(vec![
                Aggregate::count("txn_count"),
                Aggregate::sum("debit|total", "debit"),
                Aggregate::max("max_amount", "amount"),
            ]),
            input_columns: None,
            rules: vec![
                crate::rules::Rule::greater_than("amount", "0"),
                crate::rules::Rule::one_of("currency", &["EUR", "USD"]).named("iso_currency"),
            ],
            checks: vec!["debit_limit".into()],
            sort_columns: vec!["txn_ts".into()],
        };
        assert_eq!(JobDescription::decode(&d.encode()).unwrap(), d);
        let c = JobDescription {
            reduce: ReduceKind::Custom,
            input_columns: Some(vec!["a".into(), "b\0c".into()]),
            ..d
        };
        assert_eq!(JobDescription::decode(&c.encode()).unwrap(), c);
    }

    #[test]
    fn a_description_without_keys_or_aggregates_is_refused() {
        let mut d = JobDescription {
            name: "x".into(),
            key_columns: Vec::new(),
            reduce: ReduceKind::Custom,
            input_columns: None,
            rules: Vec::new(),
            checks: Vec::new(),
            sort_columns: Vec::new(),
        };
        let err = JobDescription::decode(&d.encode()).unwrap_err();
        assert!(err.to_string().contains("no key columns"), "{err}");
        d.key_columns.push("k".into());
        d.reduce = ReduceKind::Aggregate(Vec::new());
        let err = JobDescription::decode(&d.encode()).unwrap_err();
        assert!(err.to_string().contains("neither aggregates"), "{err}");
    }

    #[test]
    fn a_text_description_of_an_older_sdk_is_refused_by_format() {
        let err = JobDescription::decode(b"name=eod\nkey=k\nreduce=custom\n").unwrap_err();
        assert!(
            matches!(err, DescriptionError::Decode(DecodeError::Format { .. })),
            "{err:?}"
        );
    }
}
