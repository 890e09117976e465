//! `sluice bench`: the benchmark. Generates the EOD and text data sets once (kept in
//! `--dir`), then runs each workload as a child `sluice run` process so that every figure,
//! peak memory included, belongs to one job, and prints rows/s, MB/s, wall time and peak RSS.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::demo::find_plugin;

/// Options of `sluice bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// EOD transactions to generate.
    #[arg(long, default_value_t = 10_000_000)]
    rows: u64,
    /// Bytes of text for word count.
    #[arg(long, default_value_t = 1 << 30)]
    text_bytes: u64,
    /// Workers in the local cluster.
    #[arg(long, default_value_t = 2)]
    local: usize,
    /// Where the generated data is kept between runs.
    #[arg(long, default_value = "target/bench-data")]
    dir: PathBuf,
    /// Only this workload: eod or wordcount.
    #[arg(long)]
    only: Option<String>,
}

fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for e in std::fs::read_dir(dir)? {
        total += e?.metadata()?.len();
    }
    Ok(total)
}

fn ensure_eod(dir: &Path, rows: u64) -> Result<PathBuf> {
    let d = dir.join(format!("eod-{rows}"));
    if !d.join("_READY").exists() {
        eprintln!("generating {rows} EOD rows in {}", d.display());
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d)?;
        sluice_datagen::write_eod_files(&d, rows, 8, 7)?;
        std::fs::write(d.join("_READY"), b"")?;
    }
    Ok(d)
}

fn ensure_text(dir: &Path, bytes: u64) -> Result<PathBuf> {
    let d = dir.join(format!("text-{bytes}"));
    if !d.join("_READY").exists() {
        eprintln!("generating {bytes} bytes of text in {}", d.display());
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d)?;
        let files = 8;
        for i in 0..files {
            let f = std::fs::File::create(d.join(format!("text-{i:02}.txt")))?;
            sluice_datagen::write_text(
                std::io::BufWriter::new(f),
                bytes / files,
                100 + i,
                500_000,
            )?;
        }
        std::fs::write(d.join("_READY"), b"")?;
    }
    Ok(d)
}

fn run_one(
    name: &str,
    plugin: &str,
    input: &Path,
    format: &str,
    rows_label: &str,
    local: usize,
    out_root: &Path,
) -> Result<()> {
    let plugin = find_plugin(plugin)?;
    let output = out_root.join(format!("out-{name}"));
    let bytes = dir_bytes(input)?;
    let started = Instant::now();
    let out = Command::new(std::env::current_exe()?)
        .args([
            "run",
            "--quiet",
            "--local",
            &local.to_string(),
            "--overwrite",
            "--format",
            format,
        ])
        .arg("--plugin")
        .arg(&plugin)
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(&output)
        .output()
        .context("starting sluice run")?;
    let wall = started.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "{name} failed: {}{}",
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let field = |prefix: &str| -> Option<f64> {
        let i = stdout.find(prefix)? + prefix.len();
        stdout[i..]
            .split(|c: char| !(c.is_ascii_digit() || c == '.'))
            .next()?
            .parse()
            .ok()
    };
    let rows = field("rows in ").unwrap_or(0.0);
    let rss = field("peak RSS ").unwrap_or(0.0);
    println!(
        "{name:<14} {:>8.2} s  {:>12.0} {rows_label}/s  {:>8.1} MB/s  peak RSS {:>7.1} MiB  ({} rows in, {:.0} MB)",
        wall,
        rows / wall,
        bytes as f64 / 1e6 / wall,
        rss,
        rows,
        bytes as f64 / 1e6
    );
    Ok(())
}

/// Runs the benchmark.
pub async fn run(args: BenchArgs) -> Result<()> {
    std::fs::create_dir_all(&args.dir)?;
    let only = args.only.as_deref();
    println!("workload          wall        throughput        input rate   memory");
    if only.is_none_or(|o| o == "eod") {
        let eod = ensure_eod(&args.dir, args.rows)?;
        run_one(
            "eod-csv",
            "sluice_eod",
            &eod,
            "csv",
            "rows",
            args.local,
            &args.dir,
        )?;
    }
    if only.is_none_or(|o| o == "wordcount") {
        let text = ensure_text(&args.dir, args.text_bytes)?;
        run_one(
            "wordcount",
            "sluice_wordcount",
            &text,
            "text",
            "lines",
            args.local,
            &args.dir,
        )?;
    }
    Ok(())
}
