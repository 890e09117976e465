//! A job's output on disk or in an object store: writing `_SUCCESS`, and removing what a
//! failed or cancelled job wrote. The job decides ([`crate::job::OutputEffect`]); the
//! service carries the effects out here, on a blocking thread, after it released the
//! scheduler's lock, so heartbeats never wait on a slow disk or object store.
//!
//! The output may be a local directory or an object-store URL (see
//! `sluice_common::storage`). On an object store, "rename" is a server-side copy followed by
//! a delete, and `_SUCCESS` is one PUT: each object appears whole or not at all.

use std::time::Duration;

use bytes::Bytes;
use sluice_common::ids::JobId;
use sluice_common::storage::Location;

use crate::job::OutputEffect;

/// Tries at writing `_SUCCESS` before the job is declared failed (its committed part
/// files are kept either way).
pub const SUCCESS_WRITE_TRIES: u32 = 3;

/// Pause before the second try; doubled before each next one.
const SUCCESS_RETRY_PAUSE: Duration = Duration::from_millis(200);

/// Carries out `effects` in order and returns the outcome of each `_SUCCESS` written, for
/// [`crate::job::Job::success_written`].
pub fn carry_out(effects: Vec<OutputEffect>) -> Vec<(JobId, Result<(), String>)> {
    let mut written = Vec::new();
    for effect in effects {
        match effect {
            OutputEffect::Abort { output, committed } => abort_output(&output, &committed),
            OutputEffect::WriteSuccess {
                job,
                output,
                manifest,
                rejects,
            } => {
                let commit = || {
                    commit_rejects(&output, &rejects)?;
                    write_success(&output, &manifest)
                };
                let mut pause = SUCCESS_RETRY_PAUSE;
                let mut result = commit();
                for _ in 1..SUCCESS_WRITE_TRIES {
                    let Err(e) = &result else { break };
                    tracing::warn!(%job, output, error = %e, "writing _SUCCESS failed, retrying");
                    std::thread::sleep(pause);
                    pause *= 2;
                    result = commit();
                }
                written.push((job, result.map_err(|e| e.to_string())));
            }
        }
    }
    written
}

/// Makes a resumed job's output ready for its reduces again: they stage under
/// `_temporary`, created at submit, and a crash may have come between a `_SUCCESS` that
/// removed it and the job store hearing of it. (An object store needs no directories.)
pub fn prepare_resumed(output: &str) {
    if let Ok(Location::Local(out)) = Location::parse(output)
        && let Err(e) = std::fs::create_dir_all(out.join("_temporary"))
    {
        tracing::warn!(output, error = %e, "cannot recreate _temporary for a resumed job");
    }
}

/// Moves each map's quarantine file from its attempt's name under `_temporary` to its
/// committed name under `_rejects/` (pairs relative to `output`), before `_SUCCESS` and the
/// removal of `_temporary`. Idempotent: a pair already moved (a retry, a resumed commit) is
/// left alone.
pub fn commit_rejects(output: &str, rejects: &[(String, String)]) -> std::io::Result<()> {
    if rejects.is_empty() {
        return Ok(());
    }
    match Location::parse(output).map_err(std::io::Error::other)? {
        Location::Local(out) => {
            let dir = out.join("_rejects");
            std::fs::create_dir_all(&dir)?;
            for (from, to) in rejects {
                let (from, to) = (out.join(from), out.join(to));
                if !from.exists() && to.exists() {
                    continue;
                }
                std::fs::rename(&from, &to)?;
            }
            sluice_common::format::write::sync_dir(&dir)
        }
        Location::Object(out) => {
            for (from, to) in rejects {
                let (from, to) = (out.join(from), out.join(to));
                let moved = !from.exists().map_err(std::io::Error::other)?
                    && to.exists().map_err(std::io::Error::other)?;
                if !moved {
                    from.rename_to(&to).map_err(std::io::Error::other)?;
                }
            }
            Ok(())
        }
    }
}

/// Writes `<output>/_SUCCESS` holding `manifest` and removes `_temporary`. Locally through
/// a synced temporary file, a rename and a sync of the directory; on an object store with one PUT, so the object appears
/// whole or not at all.
pub fn write_success(output: &str, manifest: &[u8]) -> std::io::Result<()> {
    match Location::parse(output).map_err(std::io::Error::other)? {
        Location::Local(out) => {
            let _ = std::fs::remove_dir_all(out.join("_temporary"));
            let tmp = out.join("._SUCCESS.tmp");
            let mut file = std::fs::File::create(&tmp)?;
            std::io::Write::write_all(&mut file, manifest)?;
            file.sync_all()?;
            std::fs::rename(&tmp, out.join("_SUCCESS"))?;
            // Readers trust `_SUCCESS` and the part files it lists: both renames must
            // survive a power loss before the job is declared done.
            sluice_common::format::write::sync_dir(&out)
        }
        Location::Object(out) => {
            // `_temporary` holds only uploads of attempts that did not commit; failing to
            // remove it does not make the output wrong.
            if let Err(e) = out.join("_temporary").delete_prefix() {
                tracing::warn!(output, error = %e, "removing _temporary failed");
            }
            out.join("_SUCCESS")
                .put(Bytes::from(manifest.to_vec()))
                .map_err(std::io::Error::other)
        }
    }
}

/// Removes what a failed or cancelled job wrote: `_temporary` and the `committed` part
/// files, then the output directory itself when nothing else is in it, so a rerun needs no
/// `--overwrite` and no half output survives.
pub fn abort_output(output: &str, committed: &[String]) {
    match Location::parse(output) {
        Ok(Location::Local(out)) => {
            // A failed job leaves no `_SUCCESS`, not even one written just before a crash
            // that the journal never heard of.
            let _ = std::fs::remove_file(out.join("_SUCCESS"));
            let _ = std::fs::remove_dir_all(out.join("_temporary"));
            let _ = std::fs::remove_dir_all(out.join("_rejects"));
            for file in committed {
                let path = out.join(file);
                let _ = std::fs::remove_file(&path);
                // A partitioned output's directories go when they empty.
                let mut dir = path.parent();
                while let Some(d) = dir.filter(|d| *d != out) {
                    if std::fs::remove_dir(d).is_err() {
                        break;
                    }
                    dir = d.parent();
                }
            }
            let empty = std::fs::read_dir(&out).is_ok_and(|mut d| d.next().is_none());
            if empty {
                let _ = std::fs::remove_dir(&out);
            }
        }
        Ok(Location::Object(out)) => {
            let _ = out.join("_SUCCESS").delete();
            let mut result = out.join("_temporary").delete_prefix();
            result = result.and(out.join("_rejects").delete_prefix());
            for file in committed {
                result = result.and(out.join(file).delete());
            }
            if let Err(e) = result {
                tracing::warn!(output, error = %e, "removing a failed job's output failed");
            }
        }
        Err(e) => tracing::warn!(output, error = %e, "cannot remove a failed job's output"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `_SUCCESS` that cannot be written (a directory of that name is in the way) is an
    /// error after its retries, and the committed part files stay.
    #[test]
    fn a_failed_success_write_is_reported_and_keeps_the_parts() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir_all(out.join("_SUCCESS/blocker")).unwrap();
        std::fs::write(out.join("part-00000.parquet"), b"rows").unwrap();
        let output = out.to_string_lossy().into_owned();
        let job = JobId::new("job-1");
        let written = carry_out(vec![OutputEffect::WriteSuccess {
            job: job.clone(),
            output: output.clone(),
            manifest: b"{}".to_vec(),
            rejects: Vec::new(),
        }]);
        assert_eq!(written.len(), 1);
        assert_eq!(written[0].0, job);
        assert!(written[0].1.is_err(), "{:?}", written[0].1);
        assert!(
            out.join("part-00000.parquet").is_file(),
            "the part file stays"
        );
    }

    #[test]
    fn success_is_written_whole_and_abort_removes_only_what_the_job_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir_all(out.join("_temporary/attempt")).unwrap();
        std::fs::write(out.join("part-00000.parquet"), b"rows").unwrap();
        let output = out.to_string_lossy().into_owned();
        write_success(&output, b"{\"rows\": 1}").unwrap();
        assert_eq!(
            std::fs::read(out.join("_SUCCESS")).unwrap(),
            b"{\"rows\": 1}"
        );
        assert!(!out.join("_temporary").exists());
        std::fs::write(out.join("notes.txt"), b"not ours").unwrap();
        abort_output(&output, &["part-00000.parquet".to_string()]);
        assert!(!out.join("_SUCCESS").exists());
        assert!(!out.join("part-00000.parquet").exists());
        assert!(
            out.join("notes.txt").is_file(),
            "a file the job did not write stays"
        );
    }
}
