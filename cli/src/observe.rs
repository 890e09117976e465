//! `sluice events` and `sluice logs`: what a job did, as the coordinator journaled it, and
//! what its attempts logged on their workers.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use serde_json::{Value, json};
use sluice_proto::pb;

use crate::client;
use crate::settings::ClientArgs;

/// How often `--follow` asks again.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// `sluice events JOB`.
#[derive(Args, Clone)]
pub struct EventsArgs {
    /// The job id.
    job: String,
    #[command(flatten)]
    client: ClientArgs,
    /// Print one JSON object per line.
    #[arg(long)]
    json: bool,
    /// Keep printing new events until the job ends.
    #[arg(long)]
    follow: bool,
}

/// An event as JSON.
pub fn event_json(e: &pb::JobEvent) -> Value {
    json!({
        "seq": e.seq,
        "at_ms": e.at_ms,
        "kind": e.kind,
        "task": e.task,
        "attempt": e.attempt,
        "worker": e.worker,
        "detail": e.detail,
    })
}

/// An event as one line: time (UTC), kind, task and attempt, worker, detail.
pub fn event_line(e: &pb::JobEvent) -> String {
    let at = chrono::DateTime::from_timestamp_millis(e.at_ms as i64)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
        .unwrap_or_else(|| e.at_ms.to_string());
    let task = if e.task.is_empty() {
        String::new()
    } else {
        format!("{} #{}", e.task, e.attempt)
    };
    let mut line = format!("{at}  {:<18} {:<14} {:<10}", e.kind, task, e.worker);
    if !e.detail.is_empty() {
        line.push(' ');
        line.push_str(&e.detail);
    }
    line.trim_end().to_string()
}

/// Whether `kind` ends the job: nothing follows it.
fn ends_job(kind: &str) -> bool {
    matches!(
        kind,
        "succeeded" | "job-failed" | "cancelled" | "commit-failed"
    )
}

/// Prints a job's events (and, with `--follow`, the new ones until it ends).
pub async fn events(args: EventsArgs) -> Result<()> {
    let (url, security) = args.client.resolve()?;
    let mut c = client::connect(&url, &security)?;
    let mut after = 0;
    loop {
        let events = c
            .job_events(pb::JobEventsRequest {
                job_id: args.job.clone(),
                after_seq: after,
                limit: 0,
            })
            .await
            .map_err(|s| client::call_error("reading events", s))?
            .into_inner()
            .events;
        let mut ended = false;
        for e in &events {
            if args.json {
                println!("{}", event_json(e));
            } else {
                println!("{}", event_line(e));
            }
            after = e.seq;
            ended |= ends_job(&e.kind);
        }
        if !args.follow || ended {
            return Ok(());
        }
        if events.is_empty() {
            tokio::time::sleep(FOLLOW_EVERY).await;
        }
    }
}

/// `sluice logs JOB`.
#[derive(Args, Clone)]
pub struct LogsArgs {
    /// The job id.
    job: String,
    #[command(flatten)]
    client: ClientArgs,
    /// Only this task's attempts (`map-3`, `reduce-0`).
    #[arg(long)]
    task: Option<String>,
    /// Only this attempt (0 is the first).
    #[arg(long)]
    attempt: Option<u32>,
    /// Keep printing new lines (and new attempts) until the job ends.
    #[arg(long)]
    follow: bool,
}

/// A header line naming an attempt, as `tail` names files.
fn attempt_header(a: &pb::AttemptInfo) -> String {
    let mut h = format!(
        "==> {} attempt {} on {} ({}",
        a.task, a.attempt, a.worker, a.state
    );
    if !a.error.is_empty() {
        h.push_str(": ");
        h.push_str(&a.error);
    }
    h.push_str(") <==");
    h
}

/// Prints the logs of a job's attempts, read through the coordinator from their workers.
pub async fn logs(args: LogsArgs) -> Result<()> {
    if let Some(t) = &args.task
        && sluice_worker::logs::files::parse_task(t).is_none()
    {
        anyhow::bail!("--task {t:?}: a task is map-N or reduce-N");
    }
    let (url, security) = args.client.resolve()?;
    let mut c = client::connect(&url, &security)?;
    // Where each attempt's log was read up to; `None` once it cannot be read.
    let mut read: BTreeMap<(String, u32), Option<u64>> = BTreeMap::new();
    let mut shown_any = false;
    loop {
        // Asked before the attempts are listed: a job that ended before the listing logs
        // nothing after it, so the last round is complete.
        let ended = !args.follow || job_ended(&mut c, &args.job).await?;
        let attempts = c
            .list_attempts(pb::ListAttemptsRequest {
                job_id: args.job.clone(),
            })
            .await
            .map_err(|s| client::call_error("listing attempts", s))?
            .into_inner()
            .attempts;
        let wanted = attempts.iter().filter(|a| {
            args.task.as_ref().is_none_or(|t| *t == a.task)
                && args.attempt.is_none_or(|n| n == a.attempt)
        });
        for a in wanted {
            let key = (a.task.clone(), a.attempt);
            let first = !read.contains_key(&key);
            let Some(offset) = *read.entry(key.clone()).or_insert(Some(0)) else {
                continue;
            };
            match read_log(&mut c, &args.job, a, offset).await {
                Ok((data, next)) => {
                    if first || !data.is_empty() {
                        if first {
                            println!("{}", attempt_header(a));
                        }
                        std::io::stdout().write_all(&data)?;
                        std::io::stdout().flush()?;
                    }
                    read.insert(key, Some(next));
                }
                Err(why) => {
                    println!("{}", attempt_header(a));
                    println!("(log not available: {why})");
                    read.insert(key, None);
                }
            }
            shown_any = true;
        }
        if ended {
            break;
        }
        tokio::time::sleep(FOLLOW_EVERY).await;
    }
    if !shown_any {
        anyhow::bail!(
            "job {} has no attempt{}{}",
            args.job,
            args.task
                .as_ref()
                .map(|t| format!(" of {t}"))
                .unwrap_or_default(),
            args.attempt
                .map(|n| format!(" numbered {n}"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

/// Whether the job has ended (any way).
async fn job_ended(c: &mut sluice_proto::transport::CoordinatorClient, job: &str) -> Result<bool> {
    let info = client::status(c, job, Duration::ZERO).await?;
    Ok(info.state != pb::JobState::Running as i32)
}

/// An attempt's log from `offset` to its current end, and the offset after it.
async fn read_log(
    c: &mut sluice_proto::transport::CoordinatorClient,
    job: &str,
    a: &pb::AttemptInfo,
    mut offset: u64,
) -> std::result::Result<(Vec<u8>, u64), String> {
    let mut data = Vec::new();
    loop {
        let piece = c
            .attempt_log(pb::AttemptLogRequest {
                job_id: job.to_string(),
                task: a.task.clone(),
                attempt: a.attempt,
                offset,
                max_bytes: 0,
            })
            .await
            .map_err(|s| s.message().to_string())?
            .into_inner();
        data.extend_from_slice(&piece.data);
        if piece.data.is_empty() || piece.next_offset >= piece.size {
            return Ok((data, piece.next_offset));
        }
        offset = piece.next_offset;
    }
}
