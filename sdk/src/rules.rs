//! Data-quality rules a job declares on its input columns. The engine checks them on every
//! batch it reads, before the job's `map` sees it; a record that fails one is a bad record
//! (see the engine's `--on-bad-record`) whose reason names the rule.

use serde::{Deserialize, Serialize};

/// One bound of a [`Check::Range`], as text parsed in the column's type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bound {
    /// The value, as the column's type reads it (`"0"`, `"2026-01-01"`, `"1000.00"`).
    pub value: String,
    /// Whether the value itself is allowed.
    pub inclusive: bool,
}

/// What a rule checks of its column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Check {
    /// The value is present.
    NotNull,
    /// The value lies between the bounds given (a null passes: pair with `NotNull`).
    Range {
        /// Lower bound, if any.
        min: Option<Bound>,
        /// Upper bound, if any.
        max: Option<Bound>,
    },
    /// The value, as text, is one of these.
    OneOf(Vec<String>),
    /// The value, as text, matches this regular expression (anchor it to match all of it).
    Matches(String),
    /// A decimal value has at most this many significant digits after the point.
    MaxScale(u8),
}

/// A named check of one column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// The name bad records carry as their reason's kind (`amount_positive`).
    pub name: String,
    /// The input column checked.
    pub column: String,
    /// What is checked.
    pub check: Check,
}

impl Rule {
    fn new(column: &str, what: &str, check: Check) -> Self {
        Rule {
            name: format!("{what}({column})"),
            column: column.to_string(),
            check,
        }
    }

    /// The value is present.
    pub fn not_null(column: &str) -> Self {
        Self::new(column, "not_null", Check::NotNull)
    }

    /// `min <= value <= max` (either bound optional), in the column's type.
    pub fn range(column: &str, min: Option<&str>, max: Option<&str>) -> Self {
        let bound = |v: Option<&str>| {
            v.map(|v| Bound {
                value: v.to_string(),
                inclusive: true,
            })
        };
        Self::new(
            column,
            "range",
            Check::Range {
                min: bound(min),
                max: bound(max),
            },
        )
    }

    /// `value > min`, in the column's type.
    pub fn greater_than(column: &str, min: &str) -> Self {
        let min = Some(Bound {
            value: min.to_string(),
            inclusive: false,
        });
        Self::new(column, "greater_than", Check::Range { min, max: None })
    }

    /// The value is one of `values`.
    pub fn one_of(column: &str, values: &[&str]) -> Self {
        let values = values.iter().map(|v| v.to_string()).collect();
        Self::new(column, "one_of", Check::OneOf(values))
    }

    /// The value matches `regex`.
    pub fn matches(column: &str, regex: &str) -> Self {
        Self::new(column, "matches", Check::Matches(regex.to_string()))
    }

    /// A decimal value has at most `scale` digits after the point that are not zero.
    pub fn max_scale(column: &str, scale: u8) -> Self {
        Self::new(column, "max_scale", Check::MaxScale(scale))
    }

    /// The same rule under another name.
    pub fn named(mut self, name: &str) -> Self {
        self.name = name.to_string();
        self
    }
}
