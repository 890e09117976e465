//! One benchmark run: a child process timed as a whole, with its peak resident memory.
//!
//! Every engine is measured the same way, from outside: wall time from spawn to exit and the
//! kernel's `ru_maxrss` of the child (`wait4`), so Sluice's figures include its local cluster
//! and the peers' include the Python interpreter, as a user running either would see.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// What one run took.
#[derive(Debug, Clone)]
pub struct Measured {
    /// Spawn to exit.
    pub wall: Duration,
    /// Peak resident set of the child, in bytes.
    pub peak_rss: u64,
    /// What it printed on stdout.
    pub stdout: String,
}

/// Runs `cmd` to its end with stdout and stderr in files under `scratch` (a pipe nobody
/// reads would stall it) and measures it; fails with its stderr when it does not exit 0.
pub fn run_measured(cmd: &mut Command, scratch: &Path) -> Result<Measured> {
    std::fs::create_dir_all(scratch)?;
    let out_path = scratch.join("stdout");
    let err_path = scratch.join("stderr");
    cmd.stdin(Stdio::null())
        .stdout(File::create(&out_path)?)
        .stderr(File::create(&err_path)?);
    let started = Instant::now();
    let child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `pid` is our own child, not waited for yet (`Child` never waits on its
        // own); `status` and `usage` are valid for writes.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err).context("waiting for a benchmark run");
        }
    }
    let wall = started.elapsed();
    // The child is reaped: dropping its handle does nothing more.
    drop(child);
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
        bail!("{cmd:?} failed (wait status {status}):\n{stdout}{stderr}");
    }
    Ok(Measured {
        wall,
        // Linux reports kilobytes.
        peak_rss: (usage.ru_maxrss.max(0) as u64) * 1024,
        stdout,
    })
}

/// The median of `xs` (the upper one of an even count); `None` when empty.
pub fn median<T: Clone + Ord>(xs: &[T]) -> Option<T> {
    let mut v = xs.to_vec();
    v.sort();
    v.get(v.len() / 2).cloned()
}

/// The number after `label` in `text` (`"rows out 123"` → 123).
pub fn number_after(text: &str, label: &str) -> Option<u64> {
    let i = text.find(label)? + label.len();
    text[i..]
        .trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_is_timed_and_its_memory_and_output_read() {
        let dir = tempfile::tempdir().unwrap();
        // `sh` allocating ~64 MiB via a string it keeps.
        let m = run_measured(
            Command::new("sh").args([
                "-c",
                "x=$(head -c 67108864 /dev/zero | tr '\\0' a); echo rows ${#x}",
            ]),
            dir.path(),
        )
        .unwrap();
        assert_eq!(number_after(&m.stdout, "rows"), Some(1 << 26));
        assert!(m.peak_rss > 1 << 26, "{}", m.peak_rss);
        assert!(m.wall > Duration::ZERO);
    }

    #[test]
    fn a_failing_child_is_an_error_with_its_output() {
        let dir = tempfile::tempdir().unwrap();
        let e = run_measured(
            Command::new("sh").args(["-c", "echo boom >&2; exit 3"]),
            dir.path(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("boom"), "{e}");
    }

    #[test]
    fn medians_and_numbers() {
        assert_eq!(median(&[3, 1, 2]), Some(2));
        assert_eq!(median::<u32>(&[]), None);
        assert_eq!(
            number_after("rows in 10, rows out 42, x", "rows out"),
            Some(42)
        );
        assert_eq!(number_after("nothing", "rows out"), None);
    }
}
