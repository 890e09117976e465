//! The adaptive combiner's decision: whether grouping the map output pays, judged from how
//! many new groups the rows after the first batch create (DataFusion's
//! `skip_partial_aggregation_probe_*` settings). Pure: counts in, a decision out.

/// Rows a combiner folds before it decides whether grouping pays (DataFusion's
/// `skip_partial_aggregation_probe_rows_threshold`); smaller when batches are small, see
/// [`probe_rows`].
pub const PROBE_ROWS: u64 = 100_000;
/// Groups per row at or above which grouping does not pay (DataFusion's probe ratio).
pub const SKIP_RATIO: f64 = 0.8;

/// The rows to probe for input batches of `batch_rows`: [`PROBE_ROWS`], or two batches when
/// that is less, so a job run with small batches decides as early in its input.
pub fn probe_rows(batch_rows: u64) -> u64 {
    PROBE_ROWS.min(batch_rows.saturating_mul(2)).max(1)
}

/// Whether a combiner whose last `rows` rows made `new_groups` new groups should keep
/// grouping; `None` until it has seen `probe` rows. The caller counts from after the first
/// batch: what grouping saves is how often later rows find their group already there.
pub fn keep_combining(rows: u64, new_groups: u64, probe: u64) -> Option<bool> {
    (rows >= probe && rows > 0).then_some((new_groups as f64) < SKIP_RATIO * rows as f64)
}

/// The adaptive combiner's probe: it ignores the first batch (a map that pre-aggregates each
/// batch, as word count does, hands over a first batch of distinct keys) and then watches how
/// many new groups the next [`probe_rows`] rows create.
#[derive(Debug, Clone)]
pub struct GroupingProbe {
    probe: u64,
    /// Groups after the first batch, and rows folded in since.
    baseline: Option<(u64, u64)>,
}

impl GroupingProbe {
    /// A probe for input batches of `batch_rows` rows.
    pub fn new(batch_rows: u64) -> Self {
        GroupingProbe {
            probe: probe_rows(batch_rows),
            baseline: None,
        }
    }

    /// A batch of `rows` rows left the table with `groups` groups: `Some(false)` once
    /// grouping proved not to pay, `Some(true)` once it proved to, `None` while probing.
    pub fn observe(&mut self, rows: u64, groups: u64) -> Option<bool> {
        let Some((first_groups, since)) = &mut self.baseline else {
            self.baseline = Some((groups, 0));
            return None;
        };
        *since += rows;
        keep_combining(*since, groups.saturating_sub(*first_groups), self.probe)
    }

    /// The table was emptied (a spilled run): probe afresh.
    pub fn reset(&mut self) {
        self.baseline = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_judges_the_batches_after_the_first() {
        // Word count: each batch pre-aggregated, so the first is all distinct; later ones
        // mostly find their words.
        let mut wc = GroupingProbe::new(65_536);
        assert_eq!(wc.observe(60_000, 60_000), None);
        assert_eq!(wc.observe(60_000, 80_000), None);
        assert_eq!(wc.observe(60_000, 95_000), Some(true));
        // EOD: nearly every row a new group.
        let mut eod = GroupingProbe::new(65_536);
        assert_eq!(eod.observe(65_536, 65_000), None);
        assert_eq!(
            eod.observe(65_536, 129_000),
            None,
            "65,536 rows < the 100,000 probed"
        );
        assert_eq!(eod.observe(65_536, 193_000), Some(false));
        eod.reset();
        assert_eq!(eod.observe(10, 10), None, "probing starts over");
    }

    #[test]
    fn grouping_stops_when_it_does_not_shrink_the_input() {
        assert_eq!(
            keep_combining(99_999, 10, PROBE_ROWS),
            None,
            "still probing"
        );
        assert_eq!(keep_combining(100_000, 10_000, PROBE_ROWS), Some(true));
        assert_eq!(keep_combining(100_000, 80_000, PROBE_ROWS), Some(false));
        assert_eq!(probe_rows(65_536), PROBE_ROWS);
        assert_eq!(probe_rows(100), 200, "two small batches");
        assert_eq!(keep_combining(0, 0, probe_rows(0)), None);
    }
}
