//! Output commit: one attempt per partition commits (the first to ask), the part file is
//! renamed into place by that attempt, and `_SUCCESS` with a manifest is written only when
//! every partition is committed.
//!
//! The output may be a local directory or an object-store URL (see
//! `sluice_common::storage`). On an object store, "rename" is a server-side copy followed by
//! a delete, and `_SUCCESS` is one PUT: each object appears whole or not at all.

use bytes::Bytes;
use serde::Serialize;
use sluice_common::ids::JobId;
use sluice_common::storage::Location;
use sluice_proto::pb;

/// Commit decisions and committed files of one job.
pub struct Commits {
    authorized: Vec<Option<u32>>,
    done: Vec<Option<pb::ReduceDone>>,
}

/// One entry of the `_SUCCESS` manifest.
#[derive(Serialize)]
struct ManifestFile<'a> {
    file: &'a str,
    partition: usize,
    rows: u64,
    bytes: u64,
}

/// The `_SUCCESS` manifest.
#[derive(Serialize)]
struct Manifest<'a> {
    job_id: &'a str,
    rows: u64,
    bytes: u64,
    files: Vec<ManifestFile<'a>>,
}

impl Commits {
    /// Nothing committed among `partitions` partitions.
    pub fn new(partitions: usize) -> Self {
        Commits {
            authorized: vec![None; partitions],
            done: vec![None; partitions],
        }
    }

    /// The first attempt to ask for a partition gets it; later askers are refused, and the
    /// winner asking again is told yes again.
    pub fn authorize(&mut self, partition: u32, attempt: u32) -> bool {
        match self.authorized.get_mut(partition as usize) {
            None => false,
            Some(slot @ None) => {
                *slot = Some(attempt);
                true
            }
            Some(Some(a)) => *a == attempt,
        }
    }

    /// The granted attempt of `partition` failed before it committed: the next may try.
    pub fn revoke(&mut self, partition: u32) {
        let committed = self
            .done
            .get(partition as usize)
            .is_some_and(Option::is_some);
        if let (Some(slot), false) = (self.authorized.get_mut(partition as usize), committed) {
            *slot = None;
        }
    }

    /// The attempt allowed to commit `partition`, if any.
    pub fn authorized(&self, partition: u32) -> Option<u32> {
        self.authorized.get(partition as usize).copied().flatten()
    }

    /// A partition's attempt reported its committed file.
    pub fn record_done(&mut self, partition: u32, done: pb::ReduceDone) {
        if let Some(slot) = self.done.get_mut(partition as usize) {
            *slot = Some(done);
        }
    }

    /// Map outputs the committed attempts read locally, fetched, and the streams they used.
    pub fn shuffle_reads(&self) -> (u32, u32, u32) {
        self.done.iter().flatten().fold((0, 0, 0), |(l, r, s), d| {
            (
                l + d.local_outputs,
                r + d.remote_outputs,
                s + d.fetch_streams,
            )
        })
    }

    /// Rows in committed part files.
    pub fn rows_out(&self) -> u64 {
        self.done.iter().flatten().map(|d| d.rows).sum()
    }

    /// Writes `<output>/_SUCCESS` (the manifest, JSON) and removes `_temporary`. Locally
    /// through a temporary file and a rename; on an object store with one PUT, so the object
    /// appears whole or not at all.
    pub fn write_success(&self, job: &JobId, output: &str) -> std::io::Result<()> {
        let files: Vec<ManifestFile> = self
            .done
            .iter()
            .enumerate()
            .filter_map(|(p, d)| d.as_ref().map(|d| (p, d)))
            .filter(|(_, d)| !d.file.is_empty())
            .map(|(partition, d)| ManifestFile {
                file: &d.file,
                partition,
                rows: d.rows,
                bytes: d.bytes,
            })
            .collect();
        let manifest = Manifest {
            job_id: job.as_str(),
            rows: files.iter().map(|f| f.rows).sum(),
            bytes: files.iter().map(|f| f.bytes).sum(),
            files,
        };
        let text = serde_json::to_vec_pretty(&manifest).map_err(std::io::Error::other)?;
        match Location::parse(output).map_err(std::io::Error::other)? {
            Location::Local(out) => {
                let _ = std::fs::remove_dir_all(out.join("_temporary"));
                let tmp = out.join("._SUCCESS.tmp");
                std::fs::write(&tmp, text)?;
                std::fs::rename(&tmp, out.join("_SUCCESS"))
            }
            Location::Object(out) => {
                // `_temporary` holds only uploads of attempts that did not commit; failing
                // to remove it does not make the output wrong.
                if let Err(e) = out.join("_temporary").delete_prefix() {
                    tracing::warn!(output, error = %e, "removing _temporary failed");
                }
                out.join("_SUCCESS")
                    .put(Bytes::from(text))
                    .map_err(std::io::Error::other)
            }
        }
    }

    /// Removes what a failed or cancelled job wrote: `_temporary` and the part files already
    /// committed, then the output directory itself when nothing else is in it, so a rerun
    /// needs no `--overwrite` and no half output survives.
    pub fn abort_output(&self, output: &str) {
        let committed = self.done.iter().flatten().filter(|d| !d.file.is_empty());
        match Location::parse(output) {
            Ok(Location::Local(out)) => {
                // A failed job leaves no `_SUCCESS`, not even one written just before a
                // crash that the journal never heard of.
                let _ = std::fs::remove_file(out.join("_SUCCESS"));
                let _ = std::fs::remove_dir_all(out.join("_temporary"));
                for d in committed {
                    let _ = std::fs::remove_file(out.join(&d.file));
                }
                let empty = std::fs::read_dir(&out).is_ok_and(|mut d| d.next().is_none());
                if empty {
                    let _ = std::fs::remove_dir(&out);
                }
            }
            Ok(Location::Object(out)) => {
                let _ = out.join("_SUCCESS").delete();
                let mut result = out.join("_temporary").delete_prefix();
                for d in committed {
                    result = result.and(out.join(&d.file).delete());
                }
                if let Err(e) = result {
                    tracing::warn!(output, error = %e, "removing a failed job's output failed");
                }
            }
            Err(e) => tracing::warn!(output, error = %e, "cannot remove a failed job's output"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_attempt_commits() {
        let mut c = Commits::new(2);
        assert!(c.authorize(1, 3));
        assert!(!c.authorize(1, 4));
        assert!(c.authorize(1, 3), "the winner may ask again");
        assert!(c.authorize(0, 4));
        assert!(!c.authorize(2, 0), "no such partition");
    }
}
