//! `sluice bench`: Sluice beside DuckDB and Polars, in one run, on the same data.
//!
//! The data sets are generated once and kept in `--dir` ([`data`]). Each workload runs
//! `--repeat` times per engine, the engines taking turns (Sluice, DuckDB, Polars, Sluice, ...)
//! so a noisy neighbour hurts them alike, after one read of the input to warm the page cache.
//! Every run is a child process measured from outside ([`measure`]): wall time and peak RSS.
//! The table shows medians and each engine's ratio to the best peer; only ratios from one run
//! mean anything on a shared machine.
//!
//! Workloads: `eod-csv` and `eod-parquet` (the EOD aggregation from CSV, and from Parquet with
//! DECIMAL(18,2) amounts), `wordcount` (1 GiB of text), and `tiny` (word count over many
//! small files cut into thousands of tiny splits: scheduling cost, Sluice only).

mod data;
mod measure;
mod peers;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Args;

use crate::demo::find_plugin;
use measure::{Measured, median, number_after, run_measured};
use peers::PeerPython;

/// Options of `sluice bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// EOD transactions to generate.
    #[arg(long, default_value_t = 10_000_000)]
    rows: u64,
    /// Bytes of text for word count.
    #[arg(long, default_value_t = 1 << 30)]
    text_bytes: u64,
    /// Small files of the tiny-task job (30 KB each).
    #[arg(long, default_value_t = 57)]
    tiny_files: u32,
    /// Split size of the tiny-task job, in bytes.
    #[arg(long, default_value_t = 97)]
    tiny_split: u64,
    /// Workers in the local cluster.
    #[arg(long, default_value_t = 2)]
    local: usize,
    /// `--task-memory` of the Sluice runs, e.g. `128MiB` [default: the product's default].
    #[arg(long, value_parser = sluice_common::spec::parse_bytes)]
    task_memory: Option<u64>,
    /// `--reducers` of the Sluice runs of the EOD and word-count workloads, a number or
    /// `auto` [default: the product's default, auto].
    #[arg(long, value_parser = sluice_common::spec::parse_reducers)]
    reducers: Option<u32>,
    /// Runs per engine and workload; the table shows the median.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Where the generated data (and a venv for the peers) is kept between runs.
    #[arg(long, default_value = "target/bench-data")]
    dir: PathBuf,
    /// Only these workloads (comma-separated): eod-csv, eod-parquet, wordcount, tiny.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Compare with DuckDB and Polars, installing them into `<dir>/venv` if no Python with
    /// both is found. Without it, peers run only when such a Python is found.
    #[arg(long)]
    peers: bool,
    /// A Python that imports duckdb and polars (default: `SLUICE_BENCH_PYTHON`, `<dir>/venv`,
    /// `./.venv`).
    #[arg(long)]
    python: Option<PathBuf>,
}

/// Largest `--repeat`: more says nothing new and takes hours.
const MAX_REPEAT: usize = 50;
/// Size of each file of the tiny-task job.
const TINY_FILE_BYTES: u64 = 30_000;
/// Every workload, in table order.
const WORKLOADS: [&str; 4] = ["eod-csv", "eod-parquet", "wordcount", "tiny"];

/// One workload: its input and how Sluice runs it.
struct Workload {
    name: &'static str,
    input: PathBuf,
    plugin: &'static str,
    format: &'static str,
    /// Extra `sluice run` arguments.
    extra: Vec<String>,
    /// Whether the peers run it too.
    peers: bool,
}

/// The medians of one engine on one workload.
struct Row {
    engine: String,
    wall: Duration,
    peak_rss: u64,
    rows_out: Option<u64>,
}

fn workload(args: &BenchArgs, name: &'static str) -> Result<Workload> {
    let dir = &args.dir;
    let (input, plugin, format, extra, peers) = match name {
        "eod-csv" => (
            data::eod_csv(dir, args.rows)?,
            "sluice_eod",
            "csv",
            vec![],
            true,
        ),
        "eod-parquet" => (
            data::eod_parquet(dir, args.rows)?,
            "sluice_eod",
            "parquet",
            vec![],
            true,
        ),
        "wordcount" => (
            data::text(dir, args.text_bytes)?,
            "sluice_wordcount",
            "text",
            vec![],
            true,
        ),
        "tiny" => (
            data::tiny(dir, args.tiny_files, TINY_FILE_BYTES)?,
            "sluice_wordcount",
            "text",
            vec!["--split-size".into(), args.tiny_split.to_string()],
            false,
        ),
        other => bail!(
            "unknown workload {other:?}: choose among {}",
            WORKLOADS.join(", ")
        ),
    };
    Ok(Workload {
        name,
        input,
        plugin,
        format,
        extra,
        peers,
    })
}

/// The `sluice run` of `w` writing to `output`.
fn sluice_command(w: &Workload, args: &BenchArgs, output: &Path) -> Result<Command> {
    let local = args.local;
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args([
        "run",
        "--quiet",
        "--overwrite",
        "--local",
        &local.to_string(),
    ])
    .args(["--format", w.format])
    .arg("--plugin")
    .arg(find_plugin(w.plugin)?)
    .arg("--input")
    .arg(&w.input)
    .arg("--output")
    .arg(output)
    .args(&w.extra);
    if let Some(bytes) = args.task_memory {
        cmd.args(["--task-memory", &bytes.to_string()]);
    }
    if let (Some(r), true) = (args.reducers, w.peers) {
        let r = match r {
            sluice_common::spec::AUTO_REDUCERS => "auto".to_string(),
            n => n.to_string(),
        };
        cmd.args(["--reducers", &r]);
    }
    Ok(cmd)
}

/// The peer run of `w` by `engine` writing to `output`.
fn peer_command(python: &PeerPython, engine: &str, w: &Workload, output: &Path) -> Command {
    let mut cmd = Command::new(&python.python);
    cmd.args(["-c", peers::SCRIPT, engine, w.name])
        .arg(&w.input)
        .arg(output);
    cmd
}

/// Runs `w` `repeat` times on every engine, taking turns, and returns one row per engine.
fn measure_workload(
    args: &BenchArgs,
    w: &Workload,
    python: Option<&PeerPython>,
) -> Result<Vec<Row>> {
    data::warm(&w.input)?;
    let scratch = args.dir.join("runs");
    let mut engines = vec!["sluice".to_string()];
    if let (true, Some(_)) = (w.peers, python) {
        engines.extend(peers::PEERS.iter().map(|p| p.to_string()));
    }
    let mut runs: Vec<Vec<Measured>> = vec![Vec::new(); engines.len()];
    for round in 0..args.repeat {
        for (e, engine) in engines.iter().enumerate() {
            let output = scratch.join(format!("{}-{engine}", w.name));
            let mut cmd = match (engine.as_str(), python) {
                ("sluice", _) => sluice_command(w, args, &output)?,
                (peer, Some(py)) => {
                    let _ = std::fs::remove_dir_all(&output);
                    let _ = std::fs::remove_file(&output);
                    peer_command(py, peer, w, &output)
                }
                (peer, None) => bail!("no Python for {peer}"),
            };
            let m = run_measured(&mut cmd, &scratch.join("log"))?;
            eprintln!(
                "  {} {engine} run {}/{}: {:.2} s, {:.0} MiB",
                w.name,
                round + 1,
                args.repeat,
                m.wall.as_secs_f64(),
                m.peak_rss as f64 / (1 << 20) as f64
            );
            runs[e].push(m);
        }
    }
    Ok(engines
        .into_iter()
        .zip(runs)
        .map(|(engine, ms)| {
            let label = if engine == "sluice" {
                "rows out"
            } else {
                "rows"
            };
            Row {
                wall: median(&ms.iter().map(|m| m.wall).collect::<Vec<_>>()).unwrap_or_default(),
                peak_rss: median(&ms.iter().map(|m| m.peak_rss).collect::<Vec<_>>())
                    .unwrap_or_default(),
                rows_out: ms.last().and_then(|m| number_after(&m.stdout, label)),
                engine,
            }
        })
        .collect())
}

fn gib(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else {
        format!("{:.0} MiB", bytes as f64 / (1u64 << 20) as f64)
    }
}

/// Prints one workload's rows: median wall, peak RSS, ratio to the best peer, output rows
/// (flagged when the engines disagree).
fn print_rows(name: &str, input_bytes: u64, rows: &[Row]) {
    let best_peer = rows
        .iter()
        .filter(|r| r.engine != "sluice")
        .map(|r| r.wall)
        .min();
    let agreed = rows
        .iter()
        .filter_map(|r| r.rows_out)
        .collect::<std::collections::BTreeSet<_>>()
        .len()
        <= 1;
    for r in rows {
        let ratio = best_peer.map_or("—".to_string(), |b| {
            format!("{:.2}×", r.wall.as_secs_f64() / b.as_secs_f64().max(1e-9))
        });
        let out = r.rows_out.map_or("?".into(), |n| n.to_string())
            + if agreed { "" } else { " (differs!)" };
        println!(
            "| {name:<11} | {:>7.0} MB | {:<6} | {:>8.2} s | {:>9} | {:>12} | {out:>9} |",
            input_bytes as f64 / 1e6,
            r.engine,
            r.wall.as_secs_f64(),
            gib(r.peak_rss),
            ratio,
        );
    }
}

/// Runs the benchmark.
pub async fn run(args: BenchArgs) -> Result<()> {
    if args.repeat == 0 || args.repeat > MAX_REPEAT {
        bail!("--repeat must be 1..={MAX_REPEAT}, got {}", args.repeat);
    }
    if args.local == 0 || args.local > 64 {
        bail!("--local must be 1..=64, got {}", args.local);
    }
    std::fs::create_dir_all(&args.dir)?;
    let names: Vec<&'static str> = if args.only.is_empty() {
        WORKLOADS.to_vec()
    } else {
        let mut v = Vec::new();
        for o in &args.only {
            match WORKLOADS.iter().find(|w| **w == o.as_str()) {
                Some(w) => v.push(*w),
                None => bail!(
                    "unknown workload {o:?}: choose among {}",
                    WORKLOADS.join(", ")
                ),
            }
        }
        v
    };
    let python = peers::find(args.python.as_deref(), &args.dir, args.peers)?;
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "sluice bench: {cores} cores, --local {}, median of {}; peers: {}",
        args.local,
        args.repeat,
        python
            .as_ref()
            .map_or("none (give --peers)".into(), |p| p.versions.clone())
    );
    println!(
        "| workload    |      input | engine |       wall |  peak RSS | vs best peer |  rows out |"
    );
    println!("|---|---:|---|---:|---:|---:|---:|");
    for name in names {
        let w = workload(&args, name)?;
        let rows = measure_workload(&args, &w, python.as_ref())?;
        print_rows(name, data::dir_bytes(&w.input)?, &rows);
    }
    Ok(())
}
