//! `sluice pipeline run FILE` and `sluice pipeline status RUN`: a TOML file of steps, each
//! with the options of `submit` plus `name` and `depends_on`, run by the coordinator.
//!
//! ```toml
//! [pipeline]
//! name = "eod"
//! [[steps]]
//! name = "aggregate"
//! plugin = "target/release/libsluice_eod.so"
//! input = ["/data/txns/2026-11-28/*.csv"]
//! format = "csv"
//! output = "/data/eod/2026-11-28"
//! on_bad_record = "quarantine"
//! [[steps]]
//! name = "publish"
//! depends_on = ["aggregate"]
//! input = ["${steps.aggregate.output}/*.parquet"]
//! ...
//! ```
//!
//! A step's keys are the long flags of `submit` (`on_bad_record` is `--on-bad-record`; a
//! list repeats the flag, `params = { k = "v" }` gives `--param k=v`), so every option
//! means what it means there and a misspelt key is refused by name. Relative paths are
//! taken from the working directory, as on the command line. `${steps.NAME.output}` is
//! that step's output; using it makes the step depend on NAME.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use sluice_proto::pb;
use sluice_proto::transport::CoordinatorClient;

use crate::settings::ClientArgs;
mod file;

pub use file::parse;

use crate::{client, local};

/// `sluice pipeline ...`.
#[derive(Args)]
pub struct PipelineArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: PipelineCommand,
}

#[derive(Subcommand)]
enum PipelineCommand {
    /// Run a pipeline file: on a cluster, or in local mode with --local.
    Run(RunPipelineArgs),
    /// Show a pipeline run and its steps.
    Status(StatusPipelineArgs),
}

#[derive(Args)]
struct RunPipelineArgs {
    /// The pipeline file (TOML).
    file: PathBuf,
    /// Run it on N workers in this process instead of on a cluster (waits for the end).
    #[arg(long)]
    local: Option<usize>,
    /// With --local: task slots per worker.
    #[arg(long)]
    slots: Option<usize>,
    /// With --local: keep the job store here, so a later run with the same run key skips
    /// the steps that succeeded.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// The run this is, e.g. `eod@2026-11-28`: a second run of the key runs only the steps
    /// that did not succeed in the first.
    #[arg(long, default_value = "")]
    run_key: String,
    /// Follow the run to its end; exit non-zero unless it succeeds.
    #[arg(long)]
    wait: bool,
    /// Print the run (with --wait) as JSON after the id line.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct StatusPipelineArgs {
    /// The run id (`pipe-0001`).
    run: String,
    /// As JSON.
    #[arg(long)]
    json: bool,
}

/// Uploads each step's plugin and names it by hash in the step's spec.
pub(crate) async fn upload_plugins(
    c: &mut CoordinatorClient,
    spec: &mut pb::PipelineSpec,
) -> Result<()> {
    let mut done: BTreeMap<String, String> = BTreeMap::new();
    for step in &mut spec.steps {
        let Some(job) = step.spec.as_mut() else {
            continue;
        };
        let sha = match done.get(&job.plugin) {
            Some(sha) => sha.clone(),
            None => {
                let sha = client::upload_plugin(c, Path::new(&job.plugin)).await?;
                done.insert(job.plugin.clone(), sha.clone());
                sha
            }
        };
        job.plugin_sha256 = sha;
    }
    Ok(())
}

async fn status(c: &mut CoordinatorClient, run: &str) -> Result<pb::PipelineInfo> {
    c.pipeline_status(pb::PipelineStatusRequest {
        run_id: run.to_string(),
    })
    .await
    .map_err(|s| client::call_error("asking for the pipeline run", s))?
    .into_inner()
    .pipeline
    .ok_or_else(|| anyhow!("the coordinator answered without the run"))
}

/// Follows the run to its end, saying on stderr when a step changes; rides out a
/// coordinator restart.
async fn wait(c: &mut CoordinatorClient, run: &str) -> Result<pb::PipelineInfo> {
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut unreachable_since: Option<std::time::Instant> = None;
    loop {
        match status(c, run).await {
            Ok(info) => {
                unreachable_since = None;
                for s in &info.steps {
                    if seen.get(&s.name) != Some(&s.state) {
                        eprintln!(
                            "[{}] step {}: {} {}",
                            info.run_id, s.name, s.state, s.job_id
                        );
                        seen.insert(s.name.clone(), s.state.clone());
                    }
                }
                if info.state != "running" {
                    return Ok(info);
                }
            }
            Err(e) => {
                let since = *unreachable_since.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() > Duration::from_secs(300) {
                    return Err(e);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn info_json(i: &pb::PipelineInfo) -> Value {
    json!({
        "run_id": i.run_id,
        "name": i.name,
        "run_key": i.run_key,
        "state": i.state,
        "error": i.error,
        "submitted_ms": i.submitted_ms,
        "finished_ms": i.finished_ms,
        "steps": i.steps.iter().map(|s| json!({
            "name": s.name,
            "depends_on": s.depends_on,
            "state": s.state,
            "job_id": s.job_id,
            "error": s.error,
            "output": s.output,
        })).collect::<Vec<_>>(),
    })
}

fn print_info(i: &pb::PipelineInfo) {
    let key = if i.run_key.is_empty() {
        String::new()
    } else {
        format!("  run key {}", i.run_key)
    };
    println!("{}  {}  {}{key}", i.run_id, i.name, i.state);
    if !i.error.is_empty() {
        println!("  {}", i.error);
    }
    for s in &i.steps {
        let error = if s.error.is_empty() {
            String::new()
        } else {
            format!("  ({})", s.error)
        };
        println!(
            "  {:<16} {:<10} {:<10} {}{error}",
            s.name, s.state, s.job_id, s.output
        );
    }
}

async fn submit_and_follow(
    c: &mut CoordinatorClient,
    args: &RunPipelineArgs,
    mut spec: pb::PipelineSpec,
    wait_for_end: bool,
) -> Result<()> {
    upload_plugins(c, &mut spec).await?;
    let r = c
        .submit_pipeline(pb::SubmitPipelineRequest {
            pipeline: Some(spec),
            run_key: args.run_key.clone(),
        })
        .await
        .map_err(|s| anyhow!("{}", s.message()))?
        .into_inner();
    println!("{}", r.run_id);
    if r.reused {
        eprintln!(
            "run key {}: {} is still running; not started twice",
            args.run_key, r.run_id
        );
    }
    if !wait_for_end {
        return Ok(());
    }
    let info = wait(c, &r.run_id).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&info_json(&info))?);
    } else {
        print_info(&info);
    }
    if info.state != "succeeded" {
        bail!(
            "pipeline run {} {}: {}",
            info.run_id,
            info.state,
            info.error
        );
    }
    Ok(())
}

/// Runs `sluice pipeline ...`.
pub async fn run(pipeline: PipelineArgs) -> Result<()> {
    let client_args = pipeline.client;
    match pipeline.command {
        PipelineCommand::Run(args) => {
            let text = std::fs::read_to_string(&args.file)
                .with_context(|| format!("reading {}", args.file.display()))?;
            let spec = parse(&text, &args.file)?;
            match args.local {
                None => {
                    let (url, security) = client_args.resolve()?;
                    let mut c = client::connect(&url, &security)?;
                    submit_and_follow(&mut c, &args, spec, args.wait).await
                }
                Some(workers) => {
                    if workers == 0 {
                        bail!("--local needs at least 1 worker");
                    }
                    if !args.run_key.is_empty() && args.state_dir.is_none() {
                        bail!("--run-key needs --state-dir with --local");
                    }
                    let slots = args.slots.unwrap_or_else(|| crate::default_slots(workers));
                    let cluster =
                        local::LocalCluster::start(workers, slots, args.state_dir.clone()).await?;
                    let outcome = async {
                        let mut c = client::connect(&cluster.url, &cluster.security)?;
                        client::wait_for_workers(&mut c, workers, Duration::from_secs(30)).await?;
                        submit_and_follow(&mut c, &args, spec, true).await
                    }
                    .await;
                    cluster.shutdown().await;
                    outcome
                }
            }
        }
        PipelineCommand::Status(args) => {
            let (url, security) = client_args.resolve()?;
            let mut c = client::connect(&url, &security)?;
            let info = status(&mut c, &args.run).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&info_json(&info))?);
            } else {
                print_info(&info);
            }
            Ok(())
        }
    }
}
