//! `sluice`: run MapReduce jobs written as plugins, locally or on a cluster.
//!
//! - `sluice run --local N ...`: a coordinator and N workers in this process ([`local`]).
//! - `sluice coordinator`, `sluice worker`: the cluster's processes ([`server`]).
//! - `sluice submit`, `status`, `jobs`, `cancel`, `commit`, `workers`: client commands
//!   ([`commands`]).
//! - `sluice pipeline run FILE`, `pipeline status RUN`: pipelines of jobs ([`pipeline`]).
//! - `sluice schedule add|list|pause|resume|remove`: cron schedules ([`schedule`]).
//! - `sluice demo`: the EOD example on generated data ([`demo`]).
//! - `sluice bench`: EOD and word count on generated data, with figures ([`bench`]).
//!
//! Settings come from flags, `SLUICE_*` variables and a TOML file, in that order
//! ([`settings`]).

mod alloc;
mod bench;
mod client;
mod commands;
mod demo;
mod local;
mod observe;
mod pipeline;
mod schedule;
mod server;
mod settings;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use sluice_common::spec::{
    DEFAULT_BATCH_ROWS, DEFAULT_SIDE_MAX_BYTES, DEFAULT_SPLIT_SIZE, DEFAULT_TASK_MEMORY,
    InputFormat, JobSpec, OutputFormat, parse_bytes, parse_reducers,
};
use sluice_common::storage::Location;
use sluice_proto::pb;

#[global_allocator]
static ALLOC: alloc::HugePageHints = alloc::HugePageHints;

/// Sluice: a distributed MapReduce-style batch engine.
#[derive(Parser)]
#[command(name = "sluice", version, about)]
struct Cli {
    /// Log format on stderr: text or json (filter with SLUICE_LOG, e.g. `info`).
    #[arg(long, env = "SLUICE_LOG_FORMAT", default_value = "text", global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run a job in local mode: a coordinator and N workers in this process over loopback gRPC.
    Run(RunArgs),
    /// Generate a small EOD data set, run the eod plugin locally and print the first rows.
    Demo(demo::DemoArgs),
    /// Generate data once, run EOD and word count locally and print throughput and memory.
    Bench(bench::BenchArgs),
    /// Run the coordinator of a cluster.
    Coordinator(server::CoordinatorArgs),
    /// Run a worker of a cluster.
    Worker(server::WorkerArgs),
    /// Run a pipeline of jobs (a TOML file of steps) on a cluster or locally, or show a run.
    Pipeline(pipeline::PipelineArgs),
    /// Start a job or pipeline on a cron schedule, on a cluster; list, pause, resume, remove.
    Schedule(schedule::ScheduleArgs),
    /// Submit a job to a cluster; prints its id on the first line.
    Submit(commands::SubmitArgs),
    /// Show one job.
    Status(commands::StatusArgs),
    /// List jobs, including earlier runs of the coordinator.
    Jobs(commands::ListArgs),
    /// Cancel a running job (or give up on a commit-failed one: its output is removed).
    Cancel(commands::JobIdArgs),
    /// Write `_SUCCESS` again for a job left commit-failed (its part files are all committed).
    Commit(commands::JobIdArgs),
    /// List the workers registered with the coordinator.
    Workers(commands::ListArgs),
    /// Print what happened to a job: tasks started, finished, failed, workers lost, re-runs.
    Events(observe::EventsArgs),
    /// Print the logs of a job's attempts (kept on the workers that ran them).
    Logs(observe::LogsArgs),
}

/// The job options shared by `run` and `submit`.
#[derive(Args, Clone)]
pub struct JobArgs {
    /// The job plugin (a cdylib built against sluice-sdk).
    #[arg(long)]
    pub plugin: PathBuf,
    /// Input files, directories or globs (one or more after one flag): local paths,
    /// `file://`, or object-store URLs (`s3://bucket/prefix/`, `gs://…/*.csv`, `az://…`).
    /// `NAME=PATH` (`NAME` is `[a-z][a-z0-9_]*`) names an input: the job's map sees which
    /// input a batch came from (`ctx.input_name()`).
    #[arg(long, num_args = 1.., required = true)]
    pub input: Vec<String>,
    /// Input format: text, csv, jsonl or parquet; `NAME=FORMAT` sets a named input's own
    /// (repeatable).
    #[arg(long, required = true, value_parser = parse_format)]
    pub format: Vec<(Option<String>, InputFormat)>,
    /// Output directory or object-store URL; must not exist unless --overwrite.
    #[arg(long)]
    pub output: String,
    /// Number of reduce partitions (part files), or `auto`: the coordinator gives each
    /// reducer half of `--task-memory`'s worth of input, at least 8 and at most 1000 (and
    /// within its `max_reducers`).
    #[arg(long, default_value = "auto", value_parser = parse_reducers)]
    pub reducers: u32,
    /// A job parameter, passed to the plugin (repeatable).
    #[arg(long = "param", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// Bytes per split of text, CSV and JSON-lines files (`128MiB`, `4096`, ...).
    #[arg(long, default_value_t = DEFAULT_SPLIT_SIZE, value_parser = parse_bytes)]
    pub split_size: u64,
    /// Part file format: parquet or csv.
    #[arg(long, default_value = "parquet")]
    pub output_format: OutputFormat,
    /// Replace an existing output directory.
    #[arg(long)]
    pub overwrite: bool,
    /// Rows per record batch.
    #[arg(long, default_value_t = DEFAULT_BATCH_ROWS)]
    pub batch_rows: u32,
    /// Bytes a map or reduce task holds before it spills a run (`512MiB`, `1G`, ...).
    #[arg(long, default_value_t = DEFAULT_TASK_MEMORY, value_parser = parse_bytes)]
    pub task_memory: u64,
    /// An attempt running longer fails and is retried, elsewhere if it can (`90m`, `2h`,
    /// `600s`, `600`); `0`: no limit.
    #[arg(long, default_value = "2h", value_parser = parse_secs)]
    pub task_timeout: u64,
    /// A record the reader cannot parse: `fail` the job, `skip` it (counted), or
    /// `quarantine` it in `<output>/_rejects/` with its file, line and reason.
    #[arg(long, default_value = "fail")]
    pub on_bad_record: sluice_common::bad_records::Policy,
    /// Bad records tolerated before the job fails: a count (`100`) or a share of the
    /// records read (`0.5%`). Default: 0 with `fail`, no limit with `skip` and `quarantine`.
    #[arg(long)]
    pub max_bad_records: Option<sluice_common::bad_records::Limit>,
    /// A control file (`{"rows": N, "sums": {"amount": "1234.56"}}`): the records read and
    /// the column sums must match it, or the job fails before `_SUCCESS`.
    #[arg(long)]
    pub control: Option<PathBuf>,
    /// Output columns (comma-separated) whose values name Hive-style directories:
    /// `<output>/txn_date=2026-11-28/part-NNNNN.parquet`, the columns left out of the files.
    #[arg(long, value_delimiter = ',')]
    pub partition_by: Vec<String>,
    /// A side input `NAME=PATH` (repeatable): a small table, read whole once per worker and
    /// handed to every map task (`ctx.side_input("NAME")`); its format is `--format
    /// NAME=FMT`'s, or else the inputs' default.
    #[arg(long = "side")]
    pub sides: Vec<String>,
    /// The most a side input may hold, in its files and in memory (`64MiB`, `1G`, ...).
    #[arg(long, default_value_t = DEFAULT_SIDE_MAX_BYTES, value_parser = parse_bytes)]
    pub side_max_bytes: u64,
    /// The run this job is, e.g. `eod@2026-11-28`: a key that already succeeded is not run
    /// again (the earlier job is shown, exit 0), one whose job is running is waited for.
    #[arg(long, default_value = "")]
    pub run_key: String,
    /// With --run-key: run even if the key already succeeded.
    #[arg(long)]
    pub rerun: bool,
    /// The job fails once it has run this long since submission (`6h`, `90m`, `600s`); its
    /// output is removed. `0`: no limit.
    #[arg(long, default_value = "0", value_parser = parse_secs)]
    pub timeout: u64,
    /// A webhook (http:// or https:// URL) that gets a JSON POST when the job ends,
    /// however it ends (repeatable).
    #[arg(long)]
    pub notify: Vec<String>,
    /// Read only the input files that earlier successful runs with this name did not read
    /// (or that changed since); with none new, the job succeeds with no rows.
    #[arg(long, default_value = "")]
    pub incremental: String,
    /// The coordinator queue the job waits and shares slots in (its `[queues]`).
    #[arg(long, default_value = "")]
    pub queue: String,
    /// Its priority within its queue: higher runs first (negative allowed).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub priority: i32,
}

/// Seconds from `600`, `600s`, `90m` or `2h`.
pub(crate) fn parse_secs(s: &str) -> Result<u64, String> {
    let (digits, unit) = match s.trim().char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.trim().split_at(i),
        None => (s.trim(), "s"),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as 600s, 90m, 2h or 7d"))?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?}: the unit must be s, m, h or d")),
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("{s:?} is too long"))
}

fn parse_format(s: &str) -> Result<(Option<String>, InputFormat), String> {
    match s.split_once('=') {
        Some((name, f)) if sluice_common::spec::is_input_name(name) => {
            Ok((Some(name.to_string()), f.parse()?))
        }
        _ => Ok((None, s.parse()?)),
    }
}

fn parse_param(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("parameter {s:?} is not key=value"))
}

impl JobArgs {
    fn to_spec(&self) -> Result<JobSpec> {
        // Local paths are made absolute where the user typed them (the coordinator and
        // workers may run elsewhere); URLs (`file://`, `s3://`, ...) are passed as typed.
        let location = |s: &String| -> Result<String> {
            match Location::parse(s)? {
                Location::Local(p) => Ok(settings::absolute(&p)?.to_string_lossy().into_owned()),
                Location::Object(_) => Ok(s.clone()),
            }
        };
        let inputs = self
            .input
            .iter()
            .map(|i| match sluice_common::spec::split_input(i) {
                (Some(name), path) => Ok(format!("{name}={}", location(&path.to_string())?)),
                (None, path) => location(&path.to_string()),
            })
            .collect::<Result<Vec<_>>>()?;
        // The plain `--format` is every input's that has none of its own; with only named
        // formats, the first is the default.
        let default = self
            .format
            .iter()
            .find(|(name, _)| name.is_none())
            .or(self.format.first())
            .map(|(_, f)| *f)
            .ok_or_else(|| anyhow!("--format is required"))?;
        let plugin = settings::absolute(&self.plugin)?
            .to_string_lossy()
            .into_owned();
        let mut spec = JobSpec::new(plugin, inputs, default, location(&self.output)?);
        spec.formats = self
            .format
            .iter()
            .filter_map(|(name, f)| name.clone().map(|n| (n, *f)))
            .collect();
        spec.reducers = self.reducers;
        spec.params = self.params.iter().cloned().collect::<BTreeMap<_, _>>();
        spec.split_size = self.split_size;
        spec.output_format = self.output_format;
        spec.overwrite = self.overwrite;
        spec.batch_rows = self.batch_rows;
        spec.task_memory = self.task_memory;
        spec.task_timeout_secs = self.task_timeout;
        spec.on_bad_record = self.on_bad_record;
        spec.partition_by = self.partition_by.clone();
        spec.sides = self
            .sides
            .iter()
            .map(|s| match sluice_common::spec::split_input(s) {
                (Some(name), path) => Ok(format!("{name}={}", location(&path.to_string())?)),
                (None, _) => Err(anyhow!(
                    "--side {s:?}: give it as NAME=PATH, NAME being [a-z][a-z0-9_]*"
                )),
            })
            .collect::<Result<Vec<_>>>()?;
        spec.side_max_bytes = self.side_max_bytes;
        spec.run_key = self.run_key.clone();
        spec.job_timeout_secs = self.timeout;
        spec.notify = self.notify.clone();
        spec.incremental = self.incremental.clone();
        spec.queue = self.queue.clone();
        spec.priority = self.priority;
        spec.max_bad_records = self.max_bad_records;
        if let Some(path) = &self.control {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the control file {}", path.display()))?;
            let control = sluice_common::control::Control::parse(&text)
                .map_err(|e| anyhow!("{}: {e}", path.display()))?;
            spec.control = Some(control);
        }
        spec.validate().map_err(|e| anyhow!(e))?;
        Ok(spec)
    }
}

#[derive(Args, Clone)]
struct RunArgs {
    /// Number of workers to start in this process.
    #[arg(long, default_value_t = 2)]
    local: usize,
    /// Task slots per worker (default: the cores divided among the workers, at least 1).
    #[arg(long)]
    slots: Option<usize>,
    /// Print only the summary.
    #[arg(long)]
    quiet: bool,
    /// Keep the job store here (default: a temporary directory), so a later run sees this
    /// one's jobs: needed for --run-key.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    #[command(flatten)]
    job: JobArgs,
}

/// Peak resident memory of this process (VmHWM), in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn default_slots(workers: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    cores.div_ceil(workers.max(1)).max(1)
}

/// How `run` starts its local cluster.
#[derive(Debug, Clone, Default)]
pub struct LocalRun {
    /// Workers to start (at least 1).
    pub workers: usize,
    /// Slots per worker (default: the cores shared among them).
    pub slots: Option<usize>,
    /// Where the job store lives (default: a temporary directory).
    pub state_dir: Option<PathBuf>,
    /// Run even if the spec's run key already succeeded.
    pub rerun: bool,
    /// No progress display.
    pub quiet: bool,
}

/// Runs a job on a fresh local cluster; returns its final info and wall time.
pub async fn run_local(run: &LocalRun, spec: &JobSpec) -> Result<(pb::JobInfo, f64)> {
    let workers = run.workers;
    if workers == 0 {
        bail!("--local needs at least 1 worker");
    }
    if !spec.run_key.is_empty() && run.state_dir.is_none() {
        bail!(
            "--run-key needs --state-dir: without a job store kept between runs, every run \
             would be the first of its key"
        );
    }
    let started = Instant::now();
    let slots = run.slots.unwrap_or_else(|| default_slots(workers));
    let cluster = local::LocalCluster::start(workers, slots, run.state_dir.clone()).await?;
    let outcome = async {
        let mut client = client::connect(&cluster.url, &cluster.security)?;
        client::wait_for_workers(&mut client, workers, Duration::from_secs(30)).await?;
        let submitted = client::submit(&mut client, spec, run.rerun).await?;
        if submitted.reused {
            commands::say_reused(&mut client, spec, &submitted.job_id).await?;
        }
        client::wait(&mut client, &submitted.job_id, run.quiet).await
    }
    .await;
    cluster.shutdown().await;
    Ok((outcome?, started.elapsed().as_secs_f64()))
}

/// Prints the summary of a finished job; errors when it did not succeed.
pub fn report(info: &pb::JobInfo, secs: f64) -> Result<()> {
    if info.state != pb::JobState::Succeeded as i32 {
        bail!("job {} failed: {}", info.job_id, info.error);
    }
    println!(
        "job {} ({}) succeeded in {secs:.2} s",
        info.job_id, info.name
    );
    println!(
        "  rows in {}, rows out {}, shuffle {:.1} MiB, {} map / {} reduce tasks",
        info.rows_in,
        info.rows_out,
        info.shuffle_bytes as f64 / (1 << 20) as f64,
        info.maps_total,
        info.reduces_total
    );
    println!(
        "  shuffle reads: {} map outputs from local disk, {} fetched in {} streams",
        info.shuffle_local_outputs, info.shuffle_remote_outputs, info.shuffle_streams
    );
    if info.bad_records > 0 {
        println!("  {}", commands::bad_records_line(info));
    }
    if !info.counters.is_empty() {
        println!("  {}", commands::counters_line(info));
    }
    if let Some(rss) = peak_rss_bytes() {
        println!("  peak RSS {:.1} MiB", rss as f64 / (1 << 20) as f64);
    }
    println!("  output {}", info.output);
    Ok(())
}

/// Logs go to stderr; long-running processes log at `info` by default (their first line
/// carries the bound addresses), commands at `warn`.
fn init_logging(format: LogFormat, daemon: bool) {
    let default = if daemon { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    // Colours only for a terminal: log files and scripts reading `grpc=` get plain text.
    let stderr = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let stderr = match format {
        LogFormat::Text => stderr.with_filter(filter).boxed(),
        LogFormat::Json => stderr.json().with_filter(filter).boxed(),
    };
    // Each attempt's own log keeps `info` whatever stderr shows (see sluice_worker::logs).
    tracing_subscriber::registry()
        .with(stderr)
        .with(sluice_worker::logs::layer())
        .init();
}

async fn main_async(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run(args) => {
            let spec = args.job.to_spec()?;
            let run = LocalRun {
                workers: args.local,
                slots: args.slots,
                state_dir: args.state_dir.clone(),
                rerun: args.job.rerun,
                quiet: args.quiet,
            };
            let (info, secs) = run_local(&run, &spec).await?;
            report(&info, secs)
        }
        Command::Demo(args) => demo::run(args).await,
        Command::Bench(args) => bench::run(args).await,
        Command::Coordinator(args) => server::coordinator(args).await,
        Command::Worker(args) => server::worker(args).await,
        Command::Submit(args) => commands::submit(args).await,
        Command::Pipeline(args) => pipeline::run(args).await,
        Command::Schedule(args) => schedule::run(args).await,
        Command::Status(args) => commands::status(args).await,
        Command::Jobs(args) => commands::jobs(args).await,
        Command::Cancel(args) => commands::cancel(args).await,
        Command::Commit(args) => commands::commit(args).await,
        Command::Workers(args) => commands::workers(args).await,
        Command::Events(args) => observe::events(args).await,
        Command::Logs(args) => observe::logs(args).await,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let daemon = matches!(cli.command, Command::Coordinator(_) | Command::Worker(_));
    init_logging(cli.log_format, daemon);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(main_async(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
