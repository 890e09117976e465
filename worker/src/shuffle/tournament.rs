//! A tournament tree of losers (Knuth, TAOCP 5.4.1): which of k sorted sources holds the
//! smallest current row, found again after the winner moves on with about log2(k)
//! comparisons instead of a scan of all k. DataFusion's sort-preserving merge and Hadoop's
//! merge of map outputs keep their heads the same way.
//!
//! The tree only knows source numbers; the caller compares their current rows through
//! `beats(a, b)`: whether source `a`'s current row goes before source `b`'s. An exhausted
//! source must lose to every live one, and for a stable merge equal rows must go to the
//! lower source number.

/// The losers of each match, heap-shaped: internal node `n` (1..k) has children `2n` and
/// `2n + 1`, a position `p >= k` is source `p - k`, and `nodes[0]` is the overall winner.
#[derive(Debug, Clone)]
pub struct Tournament {
    nodes: Vec<usize>,
}

impl Tournament {
    /// Plays the first round over `sources` sources (at least one).
    pub fn new(sources: usize, beats: impl Fn(usize, usize) -> bool) -> Self {
        let k = sources.max(1);
        let mut nodes = vec![0; k];
        let winner = Self::play(&mut nodes, k, 1, &beats);
        nodes[0] = winner;
        Tournament { nodes }
    }

    /// The winner below position `p`, recording each match's loser at its node.
    fn play(
        nodes: &mut [usize],
        k: usize,
        p: usize,
        beats: &impl Fn(usize, usize) -> bool,
    ) -> usize {
        if p >= k {
            return p - k;
        }
        let left = Self::play(nodes, k, 2 * p, beats);
        let right = Self::play(nodes, k, 2 * p + 1, beats);
        let (winner, loser) = if beats(right, left) {
            (right, left)
        } else {
            (left, right)
        };
        nodes[p] = loser;
        winner
    }

    /// The source whose current row is smallest.
    pub fn winner(&self) -> usize {
        self.nodes[0]
    }

    /// Replays the winner's path after its current row changed (or it ran out).
    pub fn replay(&mut self, beats: impl Fn(usize, usize) -> bool) {
        let k = self.nodes.len();
        let mut winner = self.nodes[0];
        let mut p = (k + winner) / 2;
        while p >= 1 {
            if beats(self.nodes[p], winner) {
                std::mem::swap(&mut self.nodes[p], &mut winner);
            }
            p /= 2;
        }
        self.nodes[0] = winner;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Merges sorted lists through the tree, returning (value, source) in merge order.
    fn merge(lists: &[Vec<u32>]) -> Vec<(u32, usize)> {
        let mut pos = vec![0usize; lists.len()];
        let head = |pos: &[usize], s: usize| lists[s].get(pos[s]).copied();
        let beats = |pos: &[usize], a: usize, b: usize| match (head(pos, a), head(pos, b)) {
            (Some(x), Some(y)) => x < y || (x == y && a < b),
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => a < b,
        };
        let mut t = Tournament::new(lists.len(), |a, b| beats(&pos, a, b));
        let mut out = Vec::new();
        loop {
            let w = t.winner();
            let Some(v) = head(&pos, w) else { break };
            out.push((v, w));
            pos[w] += 1;
            t.replay(|a, b| beats(&pos, a, b));
        }
        out
    }

    #[test]
    fn merges_any_number_of_sources_in_order_with_ties_to_the_lower_source() {
        // Every k from 1 to 17 (powers of two and not), lists of different lengths, some
        // empty, many equal values across sources.
        for k in 1..=17usize {
            let lists: Vec<Vec<u32>> = (0..k)
                .map(|s| {
                    let n = (s * 7 + 3) % 11;
                    let mut v: Vec<u32> = (0..n).map(|i| ((i * 5 + s * 3) % 9) as u32).collect();
                    v.sort_unstable();
                    v
                })
                .collect();
            let got = merge(&lists);
            // Reference: every (value, source, position) sorted by value, then source, then
            // position: the order a stable merge must give.
            let mut want: Vec<(u32, usize, usize)> = lists
                .iter()
                .enumerate()
                .flat_map(|(s, l)| l.iter().enumerate().map(move |(i, &v)| (v, s, i)))
                .collect();
            want.sort_unstable();
            let want: Vec<(u32, usize)> = want.into_iter().map(|(v, s, _)| (v, s)).collect();
            assert_eq!(got, want, "k = {k}");
        }
    }

    #[test]
    fn comparisons_per_row_grow_with_log_k() {
        let k = 64;
        let lists: Vec<Vec<u32>> = (0..k)
            .map(|s| (0..100).map(|i| i * 64 + s as u32).collect())
            .collect();
        let pos = std::cell::RefCell::new(vec![0usize; k]);
        let count = std::cell::Cell::new(0usize);
        let beats = |a: usize, b: usize| {
            count.set(count.get() + 1);
            let p = pos.borrow();
            match (lists[a].get(p[a]), lists[b].get(p[b])) {
                (Some(x), Some(y)) => x < y || (x == y && a < b),
                (Some(_), None) => true,
                (None, _) => false,
            }
        };
        let mut t = Tournament::new(k, beats);
        count.set(0);
        for _ in 0..k * 100 {
            let w = t.winner();
            pos.borrow_mut()[w] += 1;
            t.replay(beats);
        }
        // log2(64) = 6 matches per replay; a scan would make 63.
        assert_eq!(count.get(), k * 100 * 6);
    }
}
