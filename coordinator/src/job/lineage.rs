//! Lineage: which attempt on which worker produced each map output, so a lost output can be
//! re-created from its split and reducers know where to fetch.

use sluice_common::ids::WorkerId;
use sluice_proto::pb;

/// The location of every finished map output of one job.
pub struct Lineage {
    outputs: Vec<Option<pb::MapOutputLocation>>,
}

impl Lineage {
    /// No outputs yet for `maps` map tasks.
    pub fn new(maps: usize) -> Self {
        Lineage {
            outputs: vec![None; maps],
        }
    }

    /// Map `index` finished with `attempt` on `worker`, serving at `addr`.
    pub fn record(&mut self, index: u32, attempt: u32, worker: &WorkerId, addr: &str) {
        if let Some(slot) = self.outputs.get_mut(index as usize) {
            *slot = Some(pb::MapOutputLocation {
                map_index: index,
                attempt,
                worker_id: worker.0.clone(),
                shuffle_addr: addr.to_string(),
            });
        }
    }

    /// Map `index`'s output is gone.
    pub fn forget(&mut self, index: u32) {
        if let Some(slot) = self.outputs.get_mut(index as usize) {
            *slot = None;
        }
    }

    /// Every known output location, in map order.
    pub fn locations(&self) -> Vec<pb::MapOutputLocation> {
        self.outputs.iter().flatten().cloned().collect()
    }
}
