//! What survives when the disk does not cooperate: a `_SUCCESS` that cannot be written
//! leaves the job commit-failed with every part file kept, and `sluice commit` or a
//! restarted coordinator finishes it.

mod common;

use std::time::Duration;

use common::chaos::{Gated, reference, status_json, submit_gated, wait_status, write_corpus};
use common::cluster::{Cluster, ClusterOptions};
use common::*;

#[test]
fn a_success_marker_that_cannot_be_written_leaves_the_parts_for_sluice_commit_or_a_restart() {
    let mut c = Cluster::start(2, ClusterOptions::default());
    let input = c.path("in");
    let texts = write_corpus(&input, 4, 400);
    let Gated {
        out_dir,
        gate,
        submit,
        ..
    } = submit_gated(&c, &input, 3);
    // A directory where `_SUCCESS` goes: the rename onto it fails however often it is
    // tried, as a full or read-only disk would.
    let blocker = out_dir.join("_SUCCESS").join("blocker");
    std::fs::create_dir_all(&blocker).unwrap();
    std::fs::write(&gate, "").unwrap();

    let out = submit.wait_with_output().unwrap();
    let err = assert_failed(&out);
    assert!(
        err.contains("commit-failed") && err.contains("sluice commit job-0001"),
        "{err}"
    );
    let s = status_json(&c, "job-0001");
    assert_eq!(s["state"], "commit-failed", "{s}");
    assert_eq!(s["reduces_done"], 3, "{s}");
    // Every part file is there and whole: the output is right but for its marker.
    assert_eq!(read_counts(&out_dir, "word", "count"), reference(&texts));

    // Trying again while the disk still refuses changes nothing.
    let again = c.run_client("commit", &["job-0001"]);
    let err = assert_failed(&again);
    assert!(err.contains("commit-failed"), "{err}");

    // A coordinator killed meanwhile resumes the job and writes the marker at start.
    std::fs::remove_dir_all(out_dir.join("_SUCCESS")).unwrap();
    c.kill_and_restart_coordinator();
    let s = wait_status(&c, "job-0001", Duration::from_secs(30), |s| {
        s["state"] != "running"
    });
    assert_eq!(s["state"], "succeeded", "{s}");
    let m = manifest(&out_dir);
    assert_eq!(m["files"].as_array().unwrap().len(), 3, "{m}");
    assert_eq!(read_counts(&out_dir, "word", "count"), reference(&texts));

    // Only a commit-failed job can be committed again.
    let err = assert_failed(&c.run_client("commit", &["job-0001"]));
    assert!(err.contains("only a commit-failed job"), "{err}");
}

/// The same, finished by hand: `sluice commit` once the output can be written.
#[test]
fn sluice_commit_writes_the_marker_once_the_output_can_be_written() {
    let c = Cluster::start(1, ClusterOptions::default());
    let input = c.path("in");
    let texts = write_corpus(&input, 2, 300);
    let Gated {
        out_dir,
        gate,
        submit,
        ..
    } = submit_gated(&c, &input, 2);
    std::fs::create_dir_all(out_dir.join("_SUCCESS").join("blocker")).unwrap();
    std::fs::write(&gate, "").unwrap();
    assert_failed(&submit.wait_with_output().unwrap());

    std::fs::remove_dir_all(out_dir.join("_SUCCESS")).unwrap();
    let out = c.run_client("commit", &["job-0001", "--json"]);
    assert_ok(&out);
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["state"], "succeeded", "{info}");
    assert_eq!(manifest(&out_dir)["files"].as_array().unwrap().len(), 2);
    assert_eq!(read_counts(&out_dir, "word", "count"), reference(&texts));
}

/// `files` files of `words` words each, no word twice in the corpus, so the combiner keeps
/// every row and a map's spill is larger than its split (72 KiB of text here).
fn distinct_words(dir: &std::path::Path, files: usize, words: usize) -> Vec<String> {
    std::fs::create_dir_all(dir).unwrap();
    (0..files)
        .map(|f| {
            let mut text = String::new();
            for i in 0..words {
                let mut n = f * words + i;
                // Letters only (digits separate words), five of them: distinct for
                // distinct n.
                for _ in 0..5 {
                    text.push((b'a' + (n % 26) as u8) as char);
                    n /= 26;
                }
                text.push(if i % 10 == 9 { '\n' } else { ' ' });
            }
            std::fs::write(dir.join(format!("f{f:02}.txt")), &text).unwrap();
            text
        })
        .collect()
}

/// A tmpfs mounted for one test, unmounted (lazily: a worker may still hold files open)
/// when dropped.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    /// Mounts a tmpfs of `bytes` at `dir`; `None` (and why) when this process may not.
    fn mount(dir: &std::path::Path, bytes: u64) -> Result<SmallDisk, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not root (mounting a tmpfs needs CAP_SYS_ADMIN)".into());
        }
        std::fs::create_dir_all(dir).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("running mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(SmallDisk(dir.to_path_buf()))
    }

    /// Regular files under the mount, relative to it.
    fn files_under(&self, sub: &str) -> Vec<String> {
        let mut found = Vec::new();
        let mut dirs = vec![self.0.join(sub)];
        while let Some(d) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    dirs.push(p);
                } else {
                    found.push(p.strip_prefix(&self.0).unwrap().display().to_string());
                }
            }
        }
        found
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// A worker whose disk fills up: each map attempt it runs fails cleanly with the device
/// named, leaves no partial spill on that disk, and its map runs again on the other worker;
/// the job's output is the reference.
#[test]
fn a_full_disk_fails_the_attempt_cleanly_and_the_task_completes_elsewhere() {
    let mut c = Cluster::start(0, ClusterOptions::default());
    // worker-0: a normal disk, one slot. worker-1: room for the plugin it downloads and
    // 64 KiB more, far less than one map's spill, and four slots, so it is handed maps.
    c.add_worker_with(1, &[]);
    let plugin_bytes = std::fs::metadata(plugin("sluice_chaos")).unwrap().len();
    let disk = match SmallDisk::mount(&c.path("worker-1"), plugin_bytes + (64 << 10)) {
        Ok(d) => d,
        Err(why) => {
            eprintln!(
                "SKIPPED a_full_disk_fails_the_attempt_cleanly_and_the_task_completes_elsewhere: {why}"
            );
            return;
        }
    };
    c.add_worker_with(4, &[]);
    c.wait_workers(2);

    let input = c.path("in");
    let texts = distinct_words(&input, 16, 12_000);
    let Gated {
        out_dir,
        gate,
        submit,
        status: s,
    } = submit_gated(&c, &input, 2);
    assert!(s["failed_attempts"].as_u64() >= Some(1), "{s}");
    let log = c.workers[1].log_text();
    assert!(
        log.contains("No space left on device") && log.contains("task attempt failed"),
        "{log}"
    );
    // Nothing of the failed attempts is left on the full disk: only the plugin.
    assert_eq!(disk.files_under("shuffle"), Vec::<String>::new());
    let plugins = disk.files_under("plugins");
    assert_eq!(plugins.len(), 1, "{plugins:?}");

    std::fs::write(&gate, "").unwrap();
    let out = submit.wait_with_output().unwrap();
    assert_ok(&out);
    assert_eq!(read_counts(&out_dir, "word", "count"), reference(&texts));
    // The tmpfs is detached first (lazily): mounted, it kept the cluster's directory from
    // being removed.
    drop(disk);
    drop(c);
}
