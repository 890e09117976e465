//! What a job's maps found in their input besides their output: the bad records they set
//! aside and the sums of the control file's columns. Counted once per map (from the attempt
//! that finished it last, however often it ran), checked against the job's limit and
//! control totals, and the quarantine files committed with the output.

use std::collections::BTreeMap;

use serde::Serialize;
use sluice_common::control::ColumnSum;

use super::report::MapOutput;

/// Where map `index`'s quarantined records are committed, relative to the output.
pub fn committed_name(index: u32) -> String {
    format!("_rejects/part-m-{index:05}.parquet")
}

/// One map's bad records.
#[derive(Debug, Clone, Default)]
struct MapBad {
    count: u64,
    by_kind: BTreeMap<String, u64>,
    /// Its attempt's quarantine file (relative to the output), if any.
    file: String,
    /// Sums of the control file's columns, as decimal text.
    sums: BTreeMap<String, String>,
    /// What the job's map counted.
    counters: BTreeMap<String, i64>,
}

/// The bad records of every finished map.
#[derive(Debug, Default)]
pub struct Tally {
    per_map: Vec<Option<MapBad>>,
    /// The sum of `per_map`'s counts, kept as they change: every report looks at it, and
    /// summing 20,000 maps' counts at each was 5% of such a job's CPU.
    total: u64,
}

/// What the `_SUCCESS` manifest says of bad records.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Summary {
    /// How many were set aside.
    pub bad_records: u64,
    /// How many of each kind.
    pub bad_records_by_kind: BTreeMap<String, u64>,
    /// Where the quarantined ones are, relative to the output.
    pub rejects: Vec<String>,
}

impl Tally {
    /// Nothing counted for `maps` maps.
    pub fn new(maps: usize) -> Self {
        Tally {
            per_map: vec![None; maps],
            total: 0,
        }
    }

    /// Map `index` finished with `out`: its count replaces any earlier attempt's.
    pub fn record(&mut self, index: u32, out: &MapOutput) {
        if let Some(slot) = self.per_map.get_mut(index as usize) {
            let replaced = slot.as_ref().map_or(0, |m| m.count);
            self.total = self.total - replaced + out.bad_records;
            *slot = Some(MapBad {
                count: out.bad_records,
                by_kind: out.bad_by_kind.clone(),
                file: out.rejects_file.clone(),
                sums: out.input_sums.clone(),
                counters: out.counters.clone(),
            });
        }
    }

    /// Bad records of the finished maps.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Bad records of the finished maps, by kind.
    pub fn by_kind(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for m in self.per_map.iter().flatten() {
            for (kind, n) in &m.by_kind {
                *out.entry(kind.clone()).or_default() += n;
            }
        }
        out
    }

    /// Sums of the control file's columns over the finished maps (`Err` names a sum a map
    /// reported unreadably, or one past 38 digits).
    pub fn sums(&self) -> Result<BTreeMap<String, ColumnSum>, String> {
        let mut out: BTreeMap<String, ColumnSum> = BTreeMap::new();
        for m in self.per_map.iter().flatten() {
            for (column, text) in &m.sums {
                let add = ColumnSum::from_text(text)?;
                let sum = out.entry(column.clone()).or_insert(ColumnSum::zero(0));
                *sum = sum
                    .checked_add(add)
                    .ok_or_else(|| format!("the sum of {column} is past 38 digits"))?;
            }
        }
        Ok(out)
    }

    /// The job's counters over the finished maps.
    pub fn counters(&self) -> BTreeMap<String, i64> {
        let mut out = BTreeMap::new();
        for m in self.per_map.iter().flatten() {
            sluice_sdk::counters::merge(&mut out, m.counters.clone());
        }
        out
    }

    /// The quarantine files to commit: `(attempt's file, committed name)`, by map.
    pub fn commits(&self) -> Vec<(String, String)> {
        self.per_map
            .iter()
            .enumerate()
            .filter_map(|(i, m)| m.as_ref().map(|m| (i, m)))
            .filter(|(_, m)| !m.file.is_empty())
            .map(|(i, m)| (m.file.clone(), committed_name(i as u32)))
            .collect()
    }

    /// What the manifest says.
    pub fn summary(&self) -> Summary {
        Summary {
            bad_records: self.total(),
            bad_records_by_kind: self.by_kind(),
            rejects: self.commits().into_iter().map(|(_, to)| to).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(count: u64, kind: &str, file: &str) -> MapOutput {
        MapOutput {
            bad_records: count,
            bad_by_kind: [(kind.to_string(), count)].into(),
            rejects_file: file.into(),
            ..Default::default()
        }
    }

    /// A map that ran twice (a lost output re-run, a speculative backup) counts once: the
    /// attempt that finished it last.
    #[test]
    fn each_map_counts_once_with_its_last_attempt() {
        let mut t = Tally::new(3);
        t.record(
            0,
            &out(
                2,
                "wrong field count",
                "_temporary/rejects/m00000-a0.parquet",
            ),
        );
        t.record(
            0,
            &out(
                2,
                "wrong field count",
                "_temporary/rejects/m00000-a1.parquet",
            ),
        );
        t.record(2, &out(4, "malformed JSON", ""));
        assert_eq!(t.total(), 6);
        // A later attempt's count replaces the earlier one's, higher or lower.
        t.record(2, &out(1, "malformed JSON", ""));
        assert_eq!(t.total(), 3);
        assert_eq!(
            t.by_kind(),
            [
                ("malformed JSON".to_string(), 1),
                ("wrong field count".into(), 2)
            ]
            .into()
        );
        assert_eq!(
            t.commits(),
            [(
                "_temporary/rejects/m00000-a1.parquet".to_string(),
                "_rejects/part-m-00000.parquet".to_string()
            )]
        );
    }
}
