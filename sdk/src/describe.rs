//! The job description and the text form it crosses the plugin boundary in.
//!
//! The form is `key=value` lines. In keys and values `\` is written `\\`, a newline `\n`, a
//! carriage return `\r` and `=` `\e`, so the first `=` of a line always ends the key. It is
//! deliberately not JSON: the SDK depends on arrow alone.

use std::fmt;

/// An aggregate function the engine computes per key group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

    fn parse(s: &str) -> Result<Self, String> {
        Ok(match s {
            "sum" => AggFunc::Sum,
            "count" => AggFunc::Count,
            "min" => AggFunc::Min,
            "max" => AggFunc::Max,
            other => return Err(format!("unknown aggregate function {other:?}")),
        })
    }
}

impl fmt::Display for AggFunc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One output column computed per key group: `output = func(input)`.
#[derive(Debug, Clone, PartialEq, Eq)]
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReduceKind {
    /// The engine computes these aggregates, map-side as a combiner and again at the reducer.
    Aggregate(Vec<Aggregate>),
    /// The job's own `reduce` is called with sorted, whole key groups.
    Custom,
}

/// What the engine needs to know about a job to plan and run it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobDescription {
    /// The job's name.
    pub name: String,
    /// Key columns of the map output.
    pub key_columns: Vec<String>,
    /// How groups are reduced.
    pub reduce: ReduceKind,
    /// The input columns the map reads; `None`: all. Columnar input (Parquet) reads only
    /// these.
    pub input_columns: Option<Vec<String>>,
}

impl JobDescription {
    /// The text form: `name=`, one `key=` per key column, one `agg=output|func|input` per
    /// aggregate or `reduce=custom`, and one `column=` per input column read, if declared.
    pub fn encode(&self) -> String {
        let mut out = format!("name={}\n", escape(&self.name));
        for k in &self.key_columns {
            out.push_str(&format!("key={}\n", escape(k)));
        }
        for c in self.input_columns.iter().flatten() {
            out.push_str(&format!("column={}\n", escape(c)));
        }
        match &self.reduce {
            ReduceKind::Custom => out.push_str("reduce=custom\n"),
            ReduceKind::Aggregate(aggs) => {
                for a in aggs {
                    out.push_str(&format!(
                        "agg={}|{}|{}\n",
                        escape(&a.output.replace('|', "")),
                        a.func,
                        escape(a.input.as_deref().unwrap_or(""))
                    ));
                }
            }
        }
        out
    }

    /// Parses [`JobDescription::encode`]'s output.
    pub fn decode(text: &str) -> Result<Self, String> {
        let mut name = None;
        let mut key_columns = Vec::new();
        let mut aggs = Vec::new();
        let mut custom = false;
        let mut input_columns: Option<Vec<String>> = None;
        for (k, v) in parse_lines(text)? {
            match k.as_str() {
                "name" => name = Some(v),
                "key" => key_columns.push(v),
                "column" => input_columns.get_or_insert_with(Vec::new).push(v),
                "reduce" if v == "custom" => custom = true,
                "agg" => {
                    let mut parts = v.splitn(3, '|');
                    let (Some(output), Some(func), Some(input)) =
                        (parts.next(), parts.next(), parts.next())
                    else {
                        return Err(format!("aggregate {v:?} is not output|func|input"));
                    };
                    aggs.push(Aggregate {
                        output: output.to_string(),
                        func: AggFunc::parse(func)?,
                        input: (!input.is_empty()).then(|| input.to_string()),
                    });
                }
                _ => return Err(format!("unknown description line {k}={v}")),
            }
        }
        let name = name.ok_or("description has no name")?;
        if key_columns.is_empty() {
            return Err(format!("job {name} declares no key columns"));
        }
        let reduce = match (custom, aggs.is_empty()) {
            (true, true) => ReduceKind::Custom,
            (false, false) => ReduceKind::Aggregate(aggs),
            (true, false) => {
                return Err(format!("job {name} declares both aggregates and a reduce"));
            }
            (false, true) => {
                return Err(format!(
                    "job {name} declares neither aggregates nor a reduce"
                ));
            }
        };
        Ok(JobDescription {
            name,
            key_columns,
            reduce,
            input_columns,
        })
    }
}

/// Escapes `\`, newline, carriage return and `=` for the line format.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '=' => out.push_str("\\e"),
            c => out.push(c),
        }
    }
    out
}

fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('e') => out.push('='),
            other => return Err(format!("bad escape \\{other:?} in {s:?}")),
        }
    }
    Ok(out)
}

/// Splits the line format into unescaped `(key, value)` pairs; blank lines are skipped.
pub fn parse_lines(text: &str) -> Result<Vec<(String, String)>, String> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| format!("line {line:?} has no '='"))?;
            Ok((unescape(k)?, unescape(v)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn description_round_trips() {
        let d = JobDescription {
            name: "eod".into(),
            key_columns: vec!["account_id".into(), "txn=date".into()],
            reduce: ReduceKind::Aggregate(vec![
                Aggregate::count("txn_count"),
                Aggregate::sum("debit_total", "debit"),
                Aggregate::max("max_amount", "amount"),
            ]),
            input_columns: None,
        };
        assert_eq!(JobDescription::decode(&d.encode()).unwrap(), d);
        let c = JobDescription {
            reduce: ReduceKind::Custom,
            input_columns: Some(vec!["a".into(), "b=c".into()]),
            ..d
        };
        assert_eq!(JobDescription::decode(&c.encode()).unwrap(), c);
    }

    #[test]
    fn description_without_keys_is_refused() {
        let err = JobDescription::decode("name=x\nreduce=custom\n").unwrap_err();
        assert!(err.contains("no key columns"), "{err}");
    }
}
