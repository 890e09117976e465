//! Output commit: one attempt per partition commits (the first to ask), the part file is
//! renamed into place by that attempt, and `_SUCCESS` with a manifest is written only when
//! every partition is committed.
//!
//! This module decides; the writing and removing of files is `crate::output`'s, carried out
//! by the service once it released the scheduler's lock.

use super::report::ReduceOutput;
use serde::Serialize;
use sluice_common::format::write::part_file_name;
use sluice_common::ids::JobId;
use sluice_common::spec::OutputFormat;

/// Why a reduce's report names a file the coordinator will not record: names end up in the
/// manifest and in what an abort removes, so only the partition's own part file passes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("partition {partition} reported the file {file:?}; only {expected:?} (or none) is allowed")]
pub struct BadPartFile {
    /// The partition reported.
    pub partition: u32,
    /// The name reported.
    pub file: String,
    /// The one name allowed.
    pub expected: String,
}

/// Checks the file a reduce of `partition` reports: empty (an empty partition writes
/// nothing) or exactly its `part-NNNNN.<ext>`.
pub fn check_part_file(
    partition: u32,
    format: OutputFormat,
    file: &str,
) -> Result<(), BadPartFile> {
    let expected = part_file_name(partition, format);
    if file.is_empty() || file == expected {
        Ok(())
    } else {
        Err(BadPartFile {
            partition,
            file: file.to_string(),
            expected,
        })
    }
}

/// Checks the files a reduce of `partition` reports for an output partitioned by `keys`:
/// each is `k1=v1/.../kn=vn/part-NNNNN.<ext>`, the keys in order, each value a non-empty
/// directory name (escaped as Hive does: no `/`, not `.` or `..`).
pub fn check_partitioned_files(
    partition: u32,
    format: OutputFormat,
    keys: &[String],
    d: &ReduceOutput,
) -> Result<(), BadPartFile> {
    let name = part_file_name(partition, format);
    let expected = format!(
        "{}/{name}",
        keys.iter()
            .map(|k| format!("{k}=<value>"))
            .collect::<Vec<_>>()
            .join("/")
    );
    let fits = |file: &str| {
        let mut parts: Vec<&str> = file.split('/').collect();
        if parts.pop() != Some(name.as_str()) || parts.len() != keys.len() {
            return false;
        }
        parts.iter().zip(keys).all(|(dir, key)| {
            dir.split_once('=').is_some_and(|(k, v)| {
                k == key && !v.is_empty() && v != "." && v != ".." && !v.contains('\\')
            })
        })
    };
    let bad = std::iter::once(d.file.as_str())
        .filter(|f| !f.is_empty())
        .chain(d.files.iter().map(|f| f.file.as_str()).filter(|f| !fits(f)))
        .next();
    match bad {
        None => Ok(()),
        Some(file) => Err(BadPartFile {
            partition,
            file: file.to_string(),
            expected,
        }),
    }
}

/// Commit decisions and committed files of one job.
pub struct Commits {
    authorized: Vec<Option<u32>>,
    done: Vec<Option<ReduceOutput>>,
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
    #[serde(flatten)]
    bad: super::bad_records::Summary,
    /// The job's own counters.
    counters: std::collections::BTreeMap<String, i64>,
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
    pub fn record_done(&mut self, partition: u32, done: ReduceOutput) {
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

    /// The job's counters over the committed reduces.
    pub fn counters(&self) -> std::collections::BTreeMap<String, i64> {
        let mut out = std::collections::BTreeMap::new();
        for d in self.done.iter().flatten() {
            sluice_sdk::counters::merge(&mut out, d.counters.clone());
        }
        out
    }

    /// Rows in committed part files.
    pub fn rows_out(&self) -> u64 {
        self.done.iter().flatten().map(|d| d.rows).sum()
    }

    /// The part files committed so far, relative to the output.
    pub fn committed_files(&self) -> Vec<String> {
        self.done
            .iter()
            .flatten()
            .flat_map(|d| {
                std::iter::once(d.file.clone())
                    .filter(|f| !f.is_empty())
                    .chain(d.files.iter().map(|f| f.file.clone()))
            })
            .collect()
    }

    /// The `_SUCCESS` manifest (JSON): the job, its totals, and each committed part file
    /// with its partition, rows and bytes.
    pub fn manifest(
        &self,
        job: &JobId,
        bad: super::bad_records::Summary,
        counters: std::collections::BTreeMap<String, i64>,
    ) -> Vec<u8> {
        let files: Vec<ManifestFile> = self
            .done
            .iter()
            .enumerate()
            .filter_map(|(p, d)| d.as_ref().map(|d| (p, d)))
            .flat_map(|(partition, d)| {
                let whole = (!d.file.is_empty()).then(|| ManifestFile {
                    file: &d.file,
                    partition,
                    rows: d.rows,
                    bytes: d.bytes,
                });
                whole
                    .into_iter()
                    .chain(d.files.iter().map(move |f| ManifestFile {
                        file: &f.file,
                        partition,
                        rows: f.rows,
                        bytes: f.bytes,
                    }))
            })
            .collect();
        let manifest = Manifest {
            job_id: job.as_str(),
            rows: files.iter().map(|f| f.rows).sum(),
            bytes: files.iter().map(|f| f.bytes).sum(),
            files,
            bad,
            counters,
        };
        // Strings and integers only: serialising cannot fail.
        serde_json::to_vec_pretty(&manifest).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partitioned_reduce_may_report_only_its_files_under_key_directories() {
        let keys = ["txn_date".to_string(), "currency".to_string()];
        let report = |files: &[&str]| ReduceOutput {
            files: files
                .iter()
                .map(|f| super::super::report::PartFile {
                    file: f.to_string(),
                    rows: 1,
                    bytes: 1,
                })
                .collect(),
            ..Default::default()
        };
        let check = |files: &[&str]| {
            check_partitioned_files(3, OutputFormat::Parquet, &keys, &report(files))
        };
        assert!(check(&["txn_date=2026-11-28/currency=EUR/part-00003.parquet"]).is_ok());
        assert!(check(&[]).is_ok(), "an empty partition writes nothing");
        for bad in [
            "txn_date=2026-11-28/part-00003.parquet",
            "currency=EUR/txn_date=2026-11-28/part-00003.parquet",
            "txn_date=../currency=EUR/part-00003.parquet",
            "txn_date=/currency=EUR/part-00003.parquet",
            "txn_date=2026-11-28/currency=EUR/part-00004.parquet",
            "txn_date=2026-11-28/currency=EUR/../../x/part-00003.parquet",
        ] {
            let e = check(&[bad]).unwrap_err();
            assert_eq!(e.file, bad);
        }
        let mut whole = report(&[]);
        whole.file = "part-00003.parquet".into();
        assert!(check_partitioned_files(3, OutputFormat::Parquet, &keys, &whole).is_err());
    }

    #[test]
    fn a_reduce_may_report_only_its_own_part_file() {
        let ok = |p, f: &str| check_part_file(p, OutputFormat::Parquet, f).is_ok();
        assert!(ok(3, "part-00003.parquet"));
        assert!(ok(3, ""), "an empty partition writes nothing");
        assert!(ok(123_456, "part-123456.parquet"));
        for bad in [
            "part-00004.parquet",
            "part-00003.csv",
            "../part-00003.parquet",
            "/etc/passwd",
            "_SUCCESS",
            "part-00003.parquet/../../x",
            "sub/part-00003.parquet",
        ] {
            let e = check_part_file(3, OutputFormat::Parquet, bad).unwrap_err();
            assert_eq!(e.file, bad);
            assert!(e.to_string().contains("part-00003.parquet"), "{e}");
        }
        assert!(check_part_file(0, OutputFormat::Csv, "part-00000.csv").is_ok());
    }

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
