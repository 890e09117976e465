//! Client commands: `submit`, `status`, `jobs`, `cancel`, `commit`, `workers`.
//!
//! Output for people goes to stdout as aligned text; `--json` prints one JSON document
//! (an object, or an array for lists) for scripts. `submit` prints the job id alone on its
//! first line either way, so `JOB=$(sluice submit ... | head -1)` works; with `--wait --json`
//! the lines after it are the final job as one JSON document.

use anyhow::{Result, bail};
use clap::Args;
use serde_json::{Value, json};
use sluice_coordinator::state_name;
use sluice_proto::pb;
use sluice_proto::transport::CoordinatorClient;

use crate::JobArgs;
use crate::client;
use crate::settings::ClientArgs;
use sluice_common::spec::JobSpec;

/// `sluice submit`.
#[derive(Args, Clone)]
pub struct SubmitArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    job: JobArgs,
    /// Follow the job to its end; exit non-zero unless it succeeds.
    #[arg(long)]
    wait: bool,
    /// With --wait: no progress display.
    #[arg(long)]
    quiet: bool,
    /// Print the final job (with --wait) as JSON after the id line.
    #[arg(long)]
    json: bool,
}

/// `sluice status JOB`.
#[derive(Args, Clone)]
pub struct StatusArgs {
    /// The job id.
    job: String,
    #[command(flatten)]
    client: ClientArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `sluice cancel JOB` and `sluice commit JOB`.
#[derive(Args, Clone)]
pub struct JobIdArgs {
    /// The job id.
    job: String,
    #[command(flatten)]
    client: ClientArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `sluice jobs` and `sluice workers`.
#[derive(Args, Clone)]
pub struct ListArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// A job as JSON.
pub fn job_json(j: &pb::JobInfo) -> Value {
    json!({
        "job_id": j.job_id,
        "name": j.name,
        "state": state_name(j.state),
        "error": j.error,
        "maps_total": j.maps_total,
        "maps_done": j.maps_done,
        "reduces_total": j.reduces_total,
        "reduces_done": j.reduces_done,
        "rows_in": j.rows_in,
        "rows_out": j.rows_out,
        "shuffle_bytes": j.shuffle_bytes,
        "shuffle_local_outputs": j.shuffle_local_outputs,
        "shuffle_remote_outputs": j.shuffle_remote_outputs,
        "shuffle_streams": j.shuffle_streams,
        "attempts": j.attempts,
        "failed_attempts": j.failed_attempts,
        "bad_records": j.bad_records,
        "bad_records_by_kind": j.bad_by_kind,
        "counters": j.counters,
        "output": j.output,
        "plugin_sha256": j.plugin_sha256,
        "submitted_ms": j.submitted_ms,
        "finished_ms": j.finished_ms,
        "run_key": j.run_key,
    })
}

fn worker_json(w: &pb::WorkerInfo) -> Value {
    json!({
        "worker_id": w.worker_id,
        "shuffle_addr": w.shuffle_addr,
        "slots": w.slots,
        "running": w.running,
        "draining": w.draining,
        "suspect": w.suspect,
        "memory": w.memory,
        "last_heartbeat_ms_ago": w.last_heartbeat_ms_ago,
        "registered_ms": w.registered_ms,
    })
}

/// `counters lines=120 words=873`.
pub fn counters_line(j: &pb::JobInfo) -> String {
    let mut counters: Vec<(&String, &i64)> = j.counters.iter().collect();
    counters.sort();
    let counters: Vec<String> = counters.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("counters {}", counters.join(" "))
}

/// `bad records 3 (wrong field count: 2, malformed JSON: 1)`.
pub fn bad_records_line(j: &pb::JobInfo) -> String {
    let mut kinds: Vec<(&String, &u64)> = j.bad_by_kind.iter().collect();
    kinds.sort();
    let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{k}: {n}")).collect();
    format!("bad records {} ({})", j.bad_records, kinds.join(", "))
}

fn duration(j: &pb::JobInfo) -> String {
    if j.finished_ms >= j.submitted_ms && j.finished_ms > 0 {
        format!("{:.1}s", (j.finished_ms - j.submitted_ms) as f64 / 1000.0)
    } else {
        "-".into()
    }
}

fn print_job(j: &pb::JobInfo) {
    println!("{}  {}  {}", j.job_id, j.name, state_name(j.state));
    if !j.run_key.is_empty() {
        println!("  run key {}", j.run_key);
    }
    println!(
        "  map {}/{}  reduce {}/{}  rows in {}  rows out {}  shuffle {:.1} MiB  attempts {} ({} failed)",
        j.maps_done,
        j.maps_total,
        j.reduces_done,
        j.reduces_total,
        j.rows_in,
        j.rows_out,
        j.shuffle_bytes as f64 / (1 << 20) as f64,
        j.attempts,
        j.failed_attempts
    );
    if j.shuffle_local_outputs + j.shuffle_remote_outputs > 0 {
        println!(
            "  shuffle reads: {} map outputs from local disk, {} fetched in {} streams",
            j.shuffle_local_outputs, j.shuffle_remote_outputs, j.shuffle_streams
        );
    }
    if j.bad_records > 0 {
        println!("  {}", bad_records_line(j));
    }
    if !j.counters.is_empty() {
        println!("  {}", counters_line(j));
    }
    println!("  output {}  took {}", j.output, duration(j));
    if !j.error.is_empty() {
        println!("  error: {}", j.error);
    }
}

/// A client of the coordinator the settings name.
fn connect(args: &ClientArgs) -> Result<CoordinatorClient> {
    let (url, security) = args.resolve()?;
    client::connect(&url, &security)
}

fn print_json(v: &Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Submits a job; with `--wait`, follows it and fails unless it succeeds.
pub async fn submit(args: SubmitArgs) -> Result<()> {
    let spec = args.job.to_spec()?;
    let mut c = connect(&args.client)?;
    let submitted = client::submit(&mut c, &spec, args.job.rerun).await?;
    let job_id = submitted.job_id;
    println!("{job_id}");
    if submitted.reused {
        say_reused(&mut c, &spec, &job_id).await?;
    }
    if !args.wait {
        return Ok(());
    }
    let info = client::wait(&mut c, &job_id, args.quiet).await?;
    if args.json {
        print_json(&job_json(&info))?;
    } else {
        print_job(&info);
    }
    if info.state != pb::JobState::Succeeded as i32 {
        bail!(
            "job {} {}: {}",
            info.job_id,
            state_name(info.state),
            info.error
        );
    }
    Ok(())
}

/// Says on stderr (stdout's first line is the job id) that the run key's earlier job
/// answered the submission, and how it stands.
pub async fn say_reused(c: &mut CoordinatorClient, spec: &JobSpec, job_id: &str) -> Result<()> {
    let info = client::status(c, job_id, std::time::Duration::ZERO).await?;
    if info.state == pb::JobState::Succeeded as i32 {
        eprintln!(
            "run key {}: {job_id} already succeeded (output {}); not run again (--rerun runs it anyway)",
            spec.run_key, info.output
        );
    } else {
        eprintln!(
            "run key {}: {job_id} is {}; not submitted twice",
            spec.run_key,
            state_name(info.state)
        );
    }
    Ok(())
}

/// Prints one job.
pub async fn status(args: StatusArgs) -> Result<()> {
    let mut c = connect(&args.client)?;
    let info = client::status(&mut c, &args.job, std::time::Duration::ZERO).await?;
    if args.json {
        print_json(&job_json(&info))
    } else {
        print_job(&info);
        Ok(())
    }
}

/// Lists jobs, this run's and the store's history.
pub async fn jobs(args: ListArgs) -> Result<()> {
    let mut c = connect(&args.client)?;
    let jobs = c
        .list_jobs(pb::ListJobsRequest {})
        .await
        .map_err(|s| client::call_error("listing jobs", s))?
        .into_inner()
        .jobs;
    if args.json {
        return print_json(&Value::Array(jobs.iter().map(job_json).collect()));
    }
    println!(
        "{:<10} {:<16} {:<13} {:>9} {:>9} {:>12} {:>12} {:>9}  OUTPUT",
        "JOB", "NAME", "STATE", "MAPS", "REDUCES", "ROWS_IN", "ROWS_OUT", "TOOK"
    );
    for j in &jobs {
        println!(
            "{:<10} {:<16} {:<13} {:>9} {:>9} {:>12} {:>12} {:>9}  {}",
            j.job_id,
            j.name,
            state_name(j.state),
            format!("{}/{}", j.maps_done, j.maps_total),
            format!("{}/{}", j.reduces_done, j.reduces_total),
            j.rows_in,
            j.rows_out,
            duration(j),
            j.output
        );
    }
    Ok(())
}

/// Cancels a running job.
pub async fn cancel(args: JobIdArgs) -> Result<()> {
    let mut c = connect(&args.client)?;
    let cancelled = c
        .cancel_job(pb::CancelJobRequest {
            job_id: args.job.clone(),
        })
        .await
        .map_err(|s| client::call_error("cancelling", s))?
        .into_inner()
        .cancelled;
    if args.json {
        return print_json(&json!({ "job_id": args.job, "cancelled": cancelled }));
    }
    if cancelled {
        println!("{} cancelled", args.job);
    } else {
        println!("{} had already ended", args.job);
    }
    Ok(())
}

/// Writes `_SUCCESS` again for a commit-failed job.
pub async fn commit(args: JobIdArgs) -> Result<()> {
    let mut c = connect(&args.client)?;
    let info = c
        .commit_job(pb::CommitJobRequest {
            job_id: args.job.clone(),
        })
        .await
        .map_err(|s| client::call_error("committing", s))?
        .into_inner()
        .info
        .unwrap_or_default();
    if args.json {
        print_json(&job_json(&info))?;
    } else {
        print_job(&info);
    }
    if info.state != pb::JobState::Succeeded as i32 {
        bail!(
            "job {} is still {}: {}",
            args.job,
            state_name(info.state),
            info.error
        );
    }
    Ok(())
}

/// Lists registered workers.
pub async fn workers(args: ListArgs) -> Result<()> {
    let mut c = connect(&args.client)?;
    let workers = c
        .list_workers(pb::ListWorkersRequest {})
        .await
        .map_err(|s| client::call_error("listing workers", s))?
        .into_inner()
        .workers;
    if args.json {
        return print_json(&Value::Array(workers.iter().map(worker_json).collect()));
    }
    println!(
        "{:<20} {:<24} {:>5} {:>7} {:<9} {:>14}",
        "WORKER", "SHUFFLE_ADDR", "SLOTS", "RUNNING", "STATE", "LAST_HEARTBEAT"
    );
    for w in &workers {
        println!(
            "{:<20} {:<24} {:>5} {:>7} {:<9} {:>12}ms",
            w.worker_id,
            w.shuffle_addr,
            w.slots,
            w.running,
            if w.draining {
                "draining"
            } else if w.suspect {
                "suspect"
            } else {
                "active"
            },
            w.last_heartbeat_ms_ago
        );
    }
    Ok(())
}
