//! Talking to a coordinator: upload the plugin, submit, and follow a job to its end.

use std::io::IsTerminal;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use sluice_common::digest::Sha256Hasher;
use sluice_common::spec::JobSpec;
use sluice_proto::pb;
use sluice_proto::transport::{CoordinatorClient, Security};
use tonic::Code;

/// Bytes per chunk of a plugin upload.
const UPLOAD_CHUNK: usize = 1 << 20;
/// How long `wait` keeps trying to reach a coordinator that went away (a restart).
const RECONNECT_PATIENCE: Duration = Duration::from_secs(300);
/// How often `wait` redraws the progress bars.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);
/// How long one status call of a quiet `wait` may wait for the job's end.
const QUIET_WAIT: Duration = Duration::from_secs(1);
/// How long to pause before the next status call when the last one, asked to wait `asked`,
/// answered after `took` with the job still running. A coordinator that waits answers a
/// running job only once `asked` passed; one that answers sooner does not know `wait_ms`
/// (an older version) and is asked again only after the rest of `asked`, as a poll.
fn pause_before_next(took: Duration, asked: Duration) -> Option<Duration> {
    asked.checked_sub(took).filter(|d| !d.is_zero())
}

/// A coordinator client for `url`; connects on first use.
pub fn connect(url: &str, security: &Security) -> Result<CoordinatorClient> {
    let channel = security
        .channel(url)
        .with_context(|| format!("coordinator {url}"))?;
    Ok(security.coordinator_client(channel))
}

/// The message of a failed call, with a hint for the failures users can fix.
pub fn call_error(what: &str, s: tonic::Status) -> anyhow::Error {
    match s.code() {
        Code::Unavailable => anyhow!("{what}: coordinator unreachable: {}", s.message()),
        _ => anyhow!("{what}: {}", s.message()),
    }
}

/// Uploads the plugin unless the coordinator already stores it; returns its sha256.
pub async fn upload_plugin(client: &mut CoordinatorClient, path: &Path) -> Result<String> {
    let p = path.to_path_buf();
    let (sha, bytes) = tokio::task::spawn_blocking(move || -> Result<(String, Vec<u8>)> {
        let bytes = std::fs::read(&p).with_context(|| format!("reading plugin {}", p.display()))?;
        let mut h = Sha256Hasher::default();
        h.update(&bytes);
        Ok((h.finish_hex(), bytes))
    })
    .await??;
    let present = client
        .has_plugin(pb::HasPluginRequest {
            sha256: sha.clone(),
        })
        .await
        .map_err(|s| call_error("asking for the plugin", s))?
        .into_inner()
        .present;
    if present {
        tracing::info!(sha256 = %sha, "plugin already stored on the coordinator");
        return Ok(sha);
    }
    let size = bytes.len() as u64;
    let mut chunks: Vec<pb::PluginChunk> = bytes
        .chunks(UPLOAD_CHUNK)
        .map(|c| pb::PluginChunk {
            data: c.to_vec(),
            ..Default::default()
        })
        .collect();
    if chunks.is_empty() {
        chunks.push(pb::PluginChunk::default());
    }
    chunks[0].sha256 = sha.clone();
    chunks[0].size = size;
    let stored = client
        .upload_plugin(tokio_stream::iter(chunks))
        .await
        .map_err(|s| call_error(&format!("uploading plugin {}", path.display()), s))?
        .into_inner()
        .sha256;
    if stored != sha {
        bail!("the coordinator stored the plugin as {stored}, expected {sha}");
    }
    Ok(sha)
}

/// What a submission gave.
pub struct Submitted {
    /// The job.
    pub job_id: String,
    /// It is an earlier job with the spec's run key (running or succeeded), not a new one.
    pub reused: bool,
}

/// Uploads the plugin and submits `spec` (`rerun`: even if its run key already
/// succeeded); the error is the coordinator's message (missing input, bad plugin, ...).
pub async fn submit(
    client: &mut CoordinatorClient,
    spec: &JobSpec,
    rerun: bool,
) -> Result<Submitted> {
    let mut spec = spec.clone();
    spec.plugin_sha256 = upload_plugin(client, Path::new(&spec.plugin)).await?;
    let r = client
        .submit_job(pb::SubmitJobRequest {
            spec: Some(pb::JobSpec::from(&spec)),
            rerun,
        })
        .await
        .map_err(|s| anyhow!("{}", s.message()))?
        .into_inner();
    Ok(Submitted {
        job_id: r.job_id,
        reused: r.reused,
    })
}

/// Waits until `count` workers are registered, so the job is planned for all of them (its
/// splits are sized for their slots); errors after `patience`.
pub async fn wait_for_workers(
    client: &mut CoordinatorClient,
    count: usize,
    patience: Duration,
) -> Result<()> {
    let started = Instant::now();
    loop {
        let registered = client
            .list_workers(pb::ListWorkersRequest {})
            .await
            .map(|r| r.into_inner().workers.len())
            .unwrap_or(0);
        if registered >= count {
            return Ok(());
        }
        if started.elapsed() > patience {
            bail!("only {registered} of {count} local workers registered in {patience:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One job's status; with `patience`, retries that long while the coordinator is unreachable,
/// so `--wait` outlives a coordinator restart.
pub async fn status(
    client: &mut CoordinatorClient,
    job_id: &str,
    patience: Duration,
) -> Result<pb::JobInfo> {
    status_after(client, job_id, patience, Duration::ZERO).await
}

/// As [`status`], but a running job's status comes when the job ends or after `wait`,
/// whichever is first (a coordinator that does not know the request's `wait_ms` answers at
/// once).
async fn status_after(
    client: &mut CoordinatorClient,
    job_id: &str,
    patience: Duration,
    wait: Duration,
) -> Result<pb::JobInfo> {
    let started = Instant::now();
    let mut warned = false;
    loop {
        let reply = client
            .job_status(pb::JobStatusRequest {
                job_id: job_id.to_string(),
                wait_ms: wait.as_millis().try_into().unwrap_or(u32::MAX),
            })
            .await;
        match reply {
            Ok(r) => {
                return r
                    .into_inner()
                    .job
                    .ok_or_else(|| anyhow!("job status without a job"));
            }
            // A coordinator killed mid-call shows as Unavailable, Unknown or Cancelled.
            Err(s)
                if matches!(
                    s.code(),
                    Code::Unavailable | Code::Unknown | Code::Cancelled
                ) && started.elapsed() < patience =>
            {
                if !warned {
                    eprintln!("coordinator unreachable ({}); retrying", s.message());
                    warned = true;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(s) => return Err(call_error("job status", s)),
        }
    }
}

fn progress_line(j: &pb::JobInfo, started: Instant) -> String {
    format!(
        "[{:>6.1}s] {}: map {}/{}  reduce {}/{}  rows in {}",
        started.elapsed().as_secs_f64(),
        j.job_id,
        j.maps_done,
        j.maps_total,
        j.reduces_done,
        j.reduces_total,
        j.rows_in
    )
}

/// Progress display: a bar per stage on a terminal, a plain line at most every 5 s (and on
/// stage changes) otherwise, nothing when quiet.
enum Progress {
    Quiet,
    Bars {
        _multi: MultiProgress,
        map: ProgressBar,
        reduce: ProgressBar,
    },
    Lines {
        last: String,
        printed: Instant,
    },
}

impl Progress {
    fn new(quiet: bool) -> Self {
        if quiet {
            return Progress::Quiet;
        }
        if !std::io::stderr().is_terminal() {
            return Progress::Lines {
                last: String::new(),
                printed: Instant::now(),
            };
        }
        let multi = MultiProgress::new();
        let style = ProgressStyle::with_template(
            "{prefix:>7} [{bar:40.cyan/blue}] {pos}/{len} tasks {elapsed}",
        )
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        let bar = |name: &str| {
            let b = multi.add(ProgressBar::new(0));
            b.set_style(style.clone());
            b.set_prefix(name.to_string());
            b
        };
        Progress::Bars {
            map: bar("map"),
            reduce: bar("reduce"),
            _multi: multi,
        }
    }

    fn update(&mut self, j: &pb::JobInfo, started: Instant) {
        match self {
            Progress::Quiet => {}
            Progress::Bars { map, reduce, .. } => {
                map.set_length(u64::from(j.maps_total));
                map.set_position(u64::from(j.maps_done));
                reduce.set_length(u64::from(j.reduces_total));
                reduce.set_position(u64::from(j.reduces_done));
            }
            Progress::Lines { last, printed } => {
                let line = progress_line(j, started);
                let stage = |l: &str| l.split_once(']').map(|x| x.1.to_string());
                if stage(&line) != stage(last) && printed.elapsed() > Duration::from_secs(1)
                    || printed.elapsed() > Duration::from_secs(5)
                {
                    eprintln!("{line}");
                    *printed = Instant::now();
                }
                *last = line;
            }
        }
    }

    fn finish(&self) {
        if let Progress::Bars { map, reduce, .. } = self {
            map.finish();
            reduce.finish();
        }
    }
}

/// Polls until the job ends, showing progress on stderr. Returns the final job info.
pub async fn wait(
    client: &mut CoordinatorClient,
    job_id: &str,
    quiet: bool,
) -> Result<pb::JobInfo> {
    let started = Instant::now();
    let mut progress = Progress::new(quiet);
    // Progress is redrawn this often; the end is learnt when it happens (the coordinator
    // answers a waiting status call as soon as a job ends), not at the next redraw.
    let every = if quiet { QUIET_WAIT } else { PROGRESS_EVERY };
    loop {
        let asked = Instant::now();
        let info = status_after(client, job_id, RECONNECT_PATIENCE, every).await?;
        progress.update(&info, started);
        if info.state != pb::JobState::Running as i32 {
            progress.finish();
            return Ok(info);
        }
        if let Some(pause) = pause_before_next(asked.elapsed(), every) {
            tokio::time::sleep(pause).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_answered_at_once_is_not_asked_again_at_once() {
        let every = Duration::from_millis(100);
        assert_eq!(
            pause_before_next(Duration::from_millis(1), every),
            Some(Duration::from_millis(99)),
            "an older coordinator is polled as before"
        );
        assert_eq!(pause_before_next(every, every), None);
        assert_eq!(pause_before_next(Duration::from_millis(130), every), None);
    }
}
