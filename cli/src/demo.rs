//! `sluice demo`: the EOD example end to end on generated data.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use sluice_common::spec::{InputFormat, JobSpec};

use crate::{report, run_local};

/// Options of `sluice demo`.
#[derive(Args)]
pub struct DemoArgs {
    /// Transactions to generate.
    #[arg(long, default_value_t = 20_000)]
    rows: u64,
    /// Workers in the local cluster.
    #[arg(long, default_value_t = 2)]
    local: usize,
}

/// Finds an example plugin `lib<name>.so` next to this executable (the workspace's target
/// directory) or in `SLUICE_PLUGIN_DIR`.
pub fn find_plugin(name: &str) -> Result<PathBuf> {
    let file = format!("lib{name}.so");
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Ok(d) = std::env::var("SLUICE_PLUGIN_DIR") {
        dirs.push(PathBuf::from(d));
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        dirs.push(dir.clone());
        if let Some(up) = dir.parent() {
            dirs.push(up.to_path_buf());
        }
    }
    for d in &dirs {
        let p = d.join(&file);
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!(
        "plugin {file} not found in {dirs:?}; build the examples first: cargo build --release --workspace"
    )
}

/// Runs the demo.
pub async fn run(args: DemoArgs) -> Result<()> {
    let plugin = find_plugin("sluice_eod")?;
    let dir = tempfile::Builder::new().prefix("sluice-demo-").tempdir()?;
    let input = dir.path().join("input");
    std::fs::create_dir_all(&input)?;
    sluice_datagen::write_eod_files(&input, args.rows, 4, 42).context("generating EOD data")?;
    let output = dir.path().join("output");
    println!(
        "generated {} transactions in {}",
        args.rows,
        input.display()
    );
    let mut spec = JobSpec::new(
        plugin.to_string_lossy().into_owned(),
        vec![input.to_string_lossy().into_owned()],
        InputFormat::Csv,
        output.to_string_lossy().into_owned(),
    );
    spec.reducers = 4;
    spec.split_size = 256 * 1024;
    let run = crate::LocalRun {
        workers: args.local,
        ..Default::default()
    };
    let (info, secs) = run_local(&run, &spec).await?;
    report(&info, secs)?;
    let first = output.join("part-00000.parquet");
    let file =
        std::fs::File::open(&first).with_context(|| format!("opening {}", first.display()))?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)?
        .with_batch_size(10)
        .build()?;
    if let Some(batch) = reader.into_iter().next() {
        println!("first rows of {}:", first.display());
        println!("{}", arrow::util::pretty::pretty_format_batches(&[batch?])?);
    }
    Ok(())
}
