//! `sluice schedule add|list|remove|pause|resume`: jobs and pipelines the coordinator
//! starts at the times of a cron expression (see the coordinator's `schedule` module).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::json;
use sluice_proto::pb;

use crate::settings::ClientArgs;
use crate::{JobArgs, client, pipeline};

/// `sluice schedule ...`.
#[derive(Args)]
pub struct ScheduleArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: ScheduleCommand,
}

#[derive(Subcommand)]
enum ScheduleCommand {
    /// Add a schedule: `--pipeline FILE`, or a job given as `submit`'s options after `--`.
    Add(AddArgs),
    /// List the schedules, when each fires next and what it last started.
    List {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a schedule (what it started is left alone).
    Remove {
        /// The schedule.
        name: String,
    },
    /// Stop firing a schedule until it is resumed.
    Pause {
        /// The schedule.
        name: String,
    },
    /// Fire a paused schedule again, from now on (times passed while paused are skipped).
    Resume {
        /// The schedule.
        name: String,
    },
}

#[derive(Args)]
struct AddArgs {
    /// Its name (`[a-z][a-z0-9_]*`): each firing's run key is `NAME@<scheduled time>`.
    name: String,
    /// When: 5 cron fields (`0 2 * * *`), or 6 with seconds first (`*/30 * * * * *`).
    #[arg(long, default_value = "")]
    cron: String,
    /// Instead of --cron: fire once per new set of files matching this path or glob (local
    /// or object store), e.g. the day's `_READY` marker; the run key is `NAME@<set id>`.
    #[arg(long, default_value = "")]
    when_present: String,
    /// With --when-present: fire only once at least this many files match.
    #[arg(long, default_value_t = 1)]
    min_files: u32,
    /// With --when-present: how often to look (`10s`, `1m`).
    #[arg(long, default_value = "10s", value_parser = crate::parse_secs)]
    poll: u64,
    /// The time zone the times are in (`Europe/Paris`) [default: UTC].
    #[arg(long, default_value = "")]
    tz: String,
    /// Times missed while the coordinator was down: `none` (skip), `last` or `all`.
    #[arg(long, default_value = "none")]
    catch_up: String,
    /// When each run must have succeeded, else a `deadline_missed` alert goes out: a time
    /// of day in the zone (`06:00`) or a delay after the scheduled time (`+2h`).
    #[arg(long, default_value = "")]
    deadline: String,
    /// Replace a schedule of the same name.
    #[arg(long)]
    replace: bool,
    /// Start this pipeline file each time.
    #[arg(long)]
    pipeline: Option<PathBuf>,
    /// The job to start each time, as `submit`'s options: `-- --plugin P --input I ...`.
    /// Paths and parameters may hold `{date}`, `{time}` and `{run_key}`.
    #[arg(last = true)]
    job: Vec<String>,
}

/// A job's options parsed as `submit` parses them.
#[derive(Parser)]
#[command(no_binary_name = true)]
struct JobFlags {
    #[command(flatten)]
    job: JobArgs,
}

fn when(ms: u64) -> String {
    if ms == 0 {
        return "-".into();
    }
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

async fn target(
    c: &mut sluice_proto::transport::CoordinatorClient,
    args: &AddArgs,
) -> Result<pb::schedule::Target> {
    match (&args.pipeline, args.job.is_empty()) {
        (Some(file), true) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            let mut spec = pipeline::parse(&text, file)?;
            pipeline::upload_plugins(c, &mut spec).await?;
            Ok(pb::schedule::Target::Pipeline(spec))
        }
        (None, false) => {
            let flags = JobFlags::try_parse_from(&args.job)
                .map_err(|e| anyhow!("the job after --: {}", e.render().to_string().trim()))?;
            let mut spec = flags.job.to_spec()?;
            spec.plugin_sha256 = client::upload_plugin(c, Path::new(&spec.plugin)).await?;
            Ok(pb::schedule::Target::Job(pb::JobSpec::from(&spec)))
        }
        (Some(_), false) => bail!("give --pipeline FILE or a job after --, not both"),
        (None, true) => bail!("give --pipeline FILE, or the job's options after --"),
    }
}

/// Runs `sluice schedule ...`.
pub async fn run(args: ScheduleArgs) -> Result<()> {
    let (url, security) = args.client.resolve()?;
    let mut c = client::connect(&url, &security)?;
    let call = |what: &'static str| move |s: tonic::Status| client::call_error(what, s);
    match args.command {
        ScheduleCommand::Add(add) => {
            let target = target(&mut c, &add).await?;
            let r = c
                .add_schedule(pb::AddScheduleRequest {
                    schedule: Some(pb::Schedule {
                        name: add.name.clone(),
                        cron: add.cron.clone(),
                        tz: add.tz.clone(),
                        catch_up: add.catch_up.clone(),
                        paused: false,
                        target: Some(target),
                        when_present: add.when_present.clone(),
                        min_files: add.min_files,
                        poll_ms: add.poll.saturating_mul(1000),
                        deadline: add.deadline.clone(),
                    }),
                    replace: add.replace,
                })
                .await
                .map_err(|s| anyhow!("{}", s.message()))?
                .into_inner();
            if add.when_present.is_empty() {
                println!(
                    "schedule {} added; next run at {}",
                    add.name,
                    when(r.next_ms)
                );
            } else {
                println!("schedule {} added; watching {}", add.name, add.when_present);
            }
        }
        ScheduleCommand::List { json } => {
            let list = c
                .list_schedules(pb::ListSchedulesRequest {})
                .await
                .map_err(call("listing schedules"))?
                .into_inner()
                .schedules;
            if json {
                let v: Vec<_> = list
                    .iter()
                    .filter_map(|i| {
                        let s = i.schedule.as_ref()?;
                        Some(json!({
                            "name": s.name,
                            "cron": s.cron,
                            "tz": s.tz,
                            "catch_up": s.catch_up,
                            "paused": s.paused,
                            "pipeline": matches!(s.target, Some(pb::schedule::Target::Pipeline(_))),
                            "when_present": s.when_present,
                            "last_ms": i.last_ms,
                            "next_ms": i.next_ms,
                            "last_run": i.last_run,
                        }))
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "{:<16} {:<18} {:<14} {:<6} {:<21} LAST RUN",
                    "NAME", "CRON", "ZONE", "PAUSED", "NEXT"
                );
                for i in &list {
                    let Some(s) = &i.schedule else { continue };
                    let zone = if s.tz.is_empty() { "UTC" } else { &s.tz };
                    let fires = if s.cron.is_empty() {
                        format!("files {}", s.when_present)
                    } else {
                        s.cron.clone()
                    };
                    println!(
                        "{:<16} {:<18} {:<14} {:<6} {:<21} {}",
                        s.name,
                        fires,
                        zone,
                        s.paused,
                        when(i.next_ms),
                        i.last_run
                    );
                }
            }
        }
        ScheduleCommand::Remove { name } => {
            let r = c
                .remove_schedule(pb::ScheduleNameRequest { name: name.clone() })
                .await
                .map_err(call("removing the schedule"))?
                .into_inner();
            if !r.found {
                bail!("no schedule {name}");
            }
            println!("schedule {name} removed");
        }
        ScheduleCommand::Pause { name } => set_paused(&mut c, name, true).await?,
        ScheduleCommand::Resume { name } => set_paused(&mut c, name, false).await?,
    }
    Ok(())
}

async fn set_paused(
    c: &mut sluice_proto::transport::CoordinatorClient,
    name: String,
    paused: bool,
) -> Result<()> {
    let r = c
        .pause_schedule(pb::PauseScheduleRequest {
            name: name.clone(),
            paused,
        })
        .await
        .map_err(|s| client::call_error("changing the schedule", s))?
        .into_inner();
    if !r.found {
        bail!("no schedule {name}");
    }
    let done = if paused { "paused" } else { "resumed" };
    println!("schedule {name} {done}");
    Ok(())
}
