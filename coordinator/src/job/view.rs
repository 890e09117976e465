//! What a job reports: its info as clients see it, its counters, the files it reads and
//! the attempts it runs now.

use super::{Job, JobInfo, TaskState};
use sluice_common::split::Split;

impl Job {
    /// The job's own counters: the finished maps' and the committed reduces'.
    pub fn counters(&self) -> std::collections::BTreeMap<String, i64> {
        let mut all = self.bad.counters();
        sluice_sdk::counters::merge(&mut all, self.commits.counters());
        if !self.spec.incremental.is_empty() {
            // An incremental run says how many new or changed files it read.
            let files = self.input_files().len();
            all.insert("incremental.files_read".into(), files as i64);
        }
        all
    }

    /// Adds the shuffle bytes each worker holds for this job to `held`.
    pub fn add_shuffle_bytes_by_worker(
        &self,
        held: &mut std::collections::HashMap<sluice_common::ids::WorkerId, u64>,
    ) {
        self.lineage.add_bytes_by_worker(held);
    }

    /// Attempts of the job running now.
    pub fn running_attempts(&self) -> usize {
        self.maps
            .iter()
            .chain(&self.reduces)
            .map(|t| t.running().len())
            .sum()
    }

    /// Every input file the job's splits read, with what it was at planning.
    pub fn input_files(&self) -> Vec<(String, sluice_common::split::FileStamp)> {
        let mut files = std::collections::BTreeMap::new();
        let mut stack: Vec<&Split> = self.splits.iter().collect();
        while let Some(s) = stack.pop() {
            match &s.range {
                sluice_common::split::SplitRange::Files(inner) => stack.extend(inner),
                _ => {
                    if let Some(stamp) = &s.stamp {
                        files.insert(s.path.clone(), stamp.clone());
                    }
                }
            }
        }
        files.into_iter().collect()
    }

    /// The job as clients see it.
    pub fn info(&self) -> JobInfo {
        let done = |ts: &[TaskState]| ts.iter().filter(|t| t.is_done()).count() as u32;
        let (local, remote, streams) = self.commits.shuffle_reads();
        JobInfo {
            id: self.id.clone(),
            name: self.description.name.clone(),
            status: self.status.clone(),
            maps_total: self.maps.len() as u32,
            maps_done: done(&self.maps),
            reduces_total: self.reduces.len() as u32,
            reduces_done: done(&self.reduces),
            rows_in: self.lineage.rows_in(),
            rows_out: self.commits.rows_out(),
            output: self.spec.output.clone(),
            submitted_ms: self.submitted_ms,
            finished_ms: self.finished_ms,
            shuffle_bytes: self.lineage.shuffle_bytes(),
            plugin_sha256: self.spec.plugin_sha256.clone(),
            attempts: self
                .maps
                .iter()
                .chain(&self.reduces)
                .map(|t| t.attempts)
                .sum(),
            failed_attempts: self.failed_attempts,
            shuffle_local_outputs: local,
            shuffle_remote_outputs: remote,
            shuffle_streams: streams,
            bad_records: self.bad.total(),
            bad_by_kind: self.bad.by_kind(),
            counters: self.counters(),
            run_key: self.spec.run_key.clone(),
        }
    }
}
