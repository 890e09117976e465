//! Submitting a job and following it to its end.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use sluice_common::spec::JobSpec;
use sluice_proto::pb;
use sluice_proto::pb::coordinator_client::CoordinatorClient;
use tonic::transport::Channel;

/// Connects to the coordinator at `url`.
pub async fn connect(url: &str) -> Result<CoordinatorClient<Channel>> {
    CoordinatorClient::connect(url.to_string())
        .await
        .with_context(|| format!("connecting to coordinator {url}"))
}

/// Submits `spec`; the error is the coordinator's message (missing input, bad plugin, ...).
pub async fn submit(client: &mut CoordinatorClient<Channel>, spec: &JobSpec) -> Result<String> {
    let r = client
        .submit_job(pb::SubmitJobRequest {
            spec: Some(pb::JobSpec::from(spec)),
        })
        .await
        .map_err(|s| anyhow!("{}", s.message()))?;
    Ok(r.into_inner().job_id)
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

/// Polls until the job ends, printing progress to stderr (a line per change on a terminal,
/// at most one every 5 s otherwise). Returns the final job info.
pub async fn wait(
    client: &mut CoordinatorClient<Channel>,
    job_id: &str,
    quiet: bool,
) -> Result<pb::JobInfo> {
    let started = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let mut last_line = String::new();
    let mut last_print = Instant::now();
    loop {
        let info = client
            .job_status(pb::JobStatusRequest {
                job_id: job_id.to_string(),
            })
            .await
            .map_err(|s| anyhow!("job status: {}", s.message()))?
            .into_inner()
            .job
            .ok_or_else(|| anyhow!("job status without a job"))?;
        if info.state != pb::JobState::Running as i32 {
            return Ok(info);
        }
        if !quiet {
            let line = progress_line(&info, started);
            let changed =
                line.split_once(']').map(|x| x.1) != last_line.split_once(']').map(|x| x.1);
            if (tty && changed) || last_print.elapsed() > Duration::from_secs(5) {
                eprintln!("{line}");
                last_print = Instant::now();
            }
            last_line = line;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
