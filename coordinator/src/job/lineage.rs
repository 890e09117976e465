//! Lineage: which attempt on which worker produced each map output, so a lost output can be
//! re-created from its split and reducers know where to fetch.

use sluice_common::ids::WorkerId;

use super::report::{MapOutput, OutputLocation};

/// The location of every finished map output of one job.
pub struct Lineage {
    outputs: Vec<Option<Finished>>,
}

/// One finished map output.
#[derive(Clone)]
struct Finished {
    location: OutputLocation,
    done: MapOutput,
}

impl Lineage {
    /// No outputs yet for `maps` map tasks.
    pub fn new(maps: usize) -> Self {
        Lineage {
            outputs: vec![None; maps],
        }
    }

    /// Map `index` finished with `attempt` on `worker`, serving at `addr`.
    pub fn record(
        &mut self,
        index: u32,
        attempt: u32,
        worker: &WorkerId,
        addr: &str,
        done: MapOutput,
    ) {
        if let Some(slot) = self.outputs.get_mut(index as usize) {
            *slot = Some(Finished {
                location: OutputLocation {
                    map_index: index,
                    attempt,
                    worker: worker.clone(),
                    shuffle_addr: addr.to_string(),
                    expected_rows: 0,
                    path: done.spill_path.clone(),
                    output_token: done.output_token,
                    host_id: done.host_id.clone(),
                },
                done,
            });
        }
    }

    /// Map `index`'s output is gone.
    pub fn forget(&mut self, index: u32) {
        if let Some(slot) = self.outputs.get_mut(index as usize) {
            *slot = None;
        }
    }

    /// Every known output location, in map order, with the rows each holds for `partition`
    /// so the reducer can tell a complete fetch from a truncated one.
    pub fn locations(&self, partition: u32) -> Vec<OutputLocation> {
        self.outputs
            .iter()
            .flatten()
            .map(|o| OutputLocation {
                expected_rows: o
                    .done
                    .partitions
                    .iter()
                    .filter(|p| p.partition == partition)
                    .map(|p| p.rows)
                    .sum(),
                ..o.location.clone()
            })
            .collect()
    }

    /// Input rows read by the finished maps (each map counted once, however often it ran).
    pub fn rows_in(&self) -> u64 {
        self.outputs.iter().flatten().map(|o| o.done.rows_in).sum()
    }

    /// Adds the shuffle bytes each worker holds for these outputs to `held`.
    pub fn add_bytes_by_worker(&self, held: &mut std::collections::HashMap<WorkerId, u64>) {
        for o in self.outputs.iter().flatten() {
            let bytes: u64 = o.done.partitions.iter().map(|p| p.bytes).sum();
            *held.entry(o.location.worker.clone()).or_default() += bytes;
        }
    }

    /// Shuffle bytes held by the finished maps.
    pub fn shuffle_bytes(&self) -> u64 {
        self.outputs
            .iter()
            .flatten()
            .flat_map(|o| &o.done.partitions)
            .map(|p| p.bytes)
            .sum()
    }
}
