//! The schedule calls, and firing the schedules that are due (see [`crate::schedule`]).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use prost::Message;
use sluice_proto::pb;
use tonic::Status;

use super::CoordinatorService;
use crate::schedule::{CatchUp, Deadline, Timing, utc_ms};
use crate::store::Event;
use crate::store::schedules::{ScheduleEvent, StoredSchedule};

/// Default time between two looks at a file trigger's glob.
const DEFAULT_POLL: Duration = Duration::from_secs(10);

/// A file trigger's polling.
#[derive(Debug, Clone)]
struct Poll {
    every: Duration,
    last: Option<Instant>,
    /// The arrival set it last fired for (in memory: after a restart the same set fires
    /// again under the same run key, which the run key's job answers).
    last_set: String,
}

/// A run a schedule started, watched until it succeeds or its deadline passes (in memory:
/// a coordinator restart forgets the deadlines of the runs it had started).
#[derive(Debug, Clone)]
struct Watch {
    run: String,
    run_key: String,
    due: DateTime<Utc>,
}

/// A schedule as the service holds it.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    spec: pb::Schedule,
    /// A cron schedule's times; `None` for a file trigger.
    timing: Option<Timing>,
    zone: chrono_tz::Tz,
    poll: Option<Poll>,
    catch_up: CatchUp,
    deadline: Option<Deadline>,
    /// Runs it started that must succeed by their deadline.
    watching: Vec<Watch>,
    /// The scheduled time it last fired for (or was made at), ms since the Unix epoch.
    last_ms: u64,
    /// What that firing started.
    last_run: String,
}

/// Checks a schedule and parses its timing.
fn entry(spec: pb::Schedule, last_ms: u64, last_run: String) -> Result<Entry, String> {
    if !sluice_common::spec::is_input_name(&spec.name) {
        return Err(format!(
            "schedule name {:?}: use [a-z][a-z0-9_]* (it starts each run key)",
            spec.name
        ));
    }
    let (timing, poll) = match (spec.cron.is_empty(), spec.when_present.is_empty()) {
        (false, true) => (Some(Timing::parse(&spec.cron, &spec.tz)?), None),
        (true, false) => {
            let every = match spec.poll_ms {
                0 => DEFAULT_POLL,
                ms => Duration::from_millis(ms.max(100)),
            };
            let poll = Poll {
                every,
                last: None,
                last_set: String::new(),
            };
            (None, Some(poll))
        }
        _ => {
            return Err(format!(
                "schedule {}: give either --cron or --when-present",
                spec.name
            ));
        }
    };
    let zone = crate::schedule::zone(&spec.tz)?;
    let catch_up = spec.catch_up.parse::<CatchUp>()?;
    let deadline = match spec.deadline.as_str() {
        "" => None,
        d => Some(Deadline::parse(d)?),
    };
    if spec.target.is_none() {
        return Err(format!(
            "schedule {}: no job or pipeline to start",
            spec.name
        ));
    }
    Ok(Entry {
        spec,
        timing,
        zone,
        poll,
        catch_up,
        deadline,
        watching: Vec::new(),
        last_ms,
        last_run,
    })
}

/// The schedules the store kept.
pub(super) fn restore(stored: Vec<StoredSchedule>) -> BTreeMap<String, Entry> {
    let mut out = BTreeMap::new();
    for s in stored {
        let decoded = pb::Schedule::decode(s.schedule.as_slice()).map_err(|e| e.to_string());
        match decoded.and_then(|spec| entry(spec, s.last_ms, s.last_run)) {
            Ok(e) => {
                out.insert(s.name, e);
            }
            Err(e) => {
                tracing::error!(schedule = %s.name, error = %e, "cannot restore the schedule")
            }
        }
    }
    out
}

/// `spec` with the placeholders of a firing filled in its paths and parameters.
fn fill_job(spec: &mut pb::JobSpec, zone: chrono_tz::Tz, key: &str, at: DateTime<Utc>) {
    let fill = |s: &mut String| *s = crate::schedule::fill(s, key, at, zone);
    spec.inputs.iter_mut().for_each(fill);
    spec.sides.iter_mut().for_each(fill);
    spec.params.values_mut().for_each(fill);
    fill(&mut spec.output);
}

impl CoordinatorService {
    pub(super) async fn add_schedule(
        &self,
        req: pb::AddScheduleRequest,
    ) -> Result<pb::AddScheduleResponse, Status> {
        let spec = req
            .schedule
            .ok_or_else(|| Status::invalid_argument("no schedule given"))?;
        let shas: Vec<String> = match &spec.target {
            Some(pb::schedule::Target::Job(j)) => vec![j.plugin_sha256.clone()],
            Some(pb::schedule::Target::Pipeline(p)) => p
                .steps
                .iter()
                .filter_map(|s| s.spec.as_ref().map(|j| j.plugin_sha256.clone()))
                .collect(),
            None => Vec::new(),
        };
        for sha in shas {
            if !self.plugins.path(&sha)?.is_file() {
                return Err(crate::error::CoordinatorError::PluginNotStored { sha256: sha }.into());
            }
        }
        let now_ms = crate::clock::now_ms();
        let next = {
            let mut state = self.lock();
            let kept = state.schedules.get(&spec.name).map(|e| e.last_ms);
            if kept.is_some() && !req.replace {
                return Err(Status::already_exists(format!(
                    "schedule {} exists (remove it, or add it again with --replace)",
                    spec.name
                )));
            }
            let e = entry(spec, kept.unwrap_or(now_ms), String::new())
                .map_err(Status::invalid_argument)?;
            let next = e
                .timing
                .as_ref()
                .and_then(|t| t.next_after(utc_ms(now_ms.max(e.last_ms))));
            self.journal.send(Event::Schedule(ScheduleEvent::Saved {
                name: e.spec.name.clone(),
                schedule: e.spec.encode_to_vec(),
                last_ms: e.last_ms,
            }));
            tracing::info!(schedule = %e.spec.name, cron = %e.spec.cron, tz = %e.spec.tz, "schedule saved");
            state.schedules.insert(e.spec.name.clone(), e);
            next
        };
        self.sync_journal().await?;
        Ok(pb::AddScheduleResponse {
            next_ms: next.map_or(0, |t| t.timestamp_millis().max(0) as u64),
        })
    }

    pub(crate) fn list_schedules(&self) -> pb::ListSchedulesResponse {
        let state = self.lock();
        let now = utc_ms(crate::clock::now_ms());
        let schedules = state
            .schedules
            .values()
            .map(|e| pb::ScheduleInfo {
                schedule: Some(e.spec.clone()),
                last_ms: e.last_ms,
                next_ms: match (&e.timing, e.spec.paused) {
                    (Some(t), false) => t
                        .next_after(now.max(utc_ms(e.last_ms)))
                        .map_or(0, |t| t.timestamp_millis().max(0) as u64),
                    _ => 0,
                },
                last_run: e.last_run.clone(),
            })
            .collect();
        pb::ListSchedulesResponse { schedules }
    }

    /// Removes schedule `name` (`remove`), or pauses or resumes it; whether it exists.
    pub(super) async fn change_schedule(
        &self,
        name: &str,
        paused: Option<bool>,
    ) -> Result<pb::ScheduleChangeResponse, Status> {
        {
            let mut state = self.lock();
            let event = match paused {
                None => state
                    .schedules
                    .remove(name)
                    .map(|_| ScheduleEvent::Removed {
                        name: name.to_string(),
                    }),
                Some(p) => state.schedules.get_mut(name).map(|e| {
                    e.spec.paused = p;
                    if !p {
                        // Times passed while paused are not caught up.
                        e.last_ms = e.last_ms.max(crate::clock::now_ms());
                    }
                    ScheduleEvent::Saved {
                        name: name.to_string(),
                        schedule: e.spec.encode_to_vec(),
                        last_ms: e.last_ms,
                    }
                }),
            };
            match event {
                Some(event) => self.journal.send(Event::Schedule(event)),
                None => return Ok(pb::ScheduleChangeResponse { found: false }),
            }
        }
        self.sync_journal().await?;
        Ok(pb::ScheduleChangeResponse { found: true })
    }

    /// Starts what the due schedules name, each time with its run key.
    pub(super) async fn fire_schedules(&self) {
        let now = utc_ms(crate::clock::now_ms());
        let mut firings = Vec::new();
        let mut polls = Vec::new();
        {
            let mut state = self.lock();
            for e in state.schedules.values_mut() {
                if e.spec.paused {
                    continue;
                }
                if let Some(timing) = &e.timing {
                    let mut last = None;
                    for at in timing.due(utc_ms(e.last_ms), now, e.catch_up) {
                        firings.push((
                            e.spec.clone(),
                            e.zone,
                            at,
                            timing.run_key(&e.spec.name, at),
                        ));
                        last = Some(at);
                    }
                    // Marked now, so the next tick does not fire them again while they start.
                    if let Some(at) = last {
                        e.last_ms = e.last_ms.max(at.timestamp_millis().max(0) as u64);
                    }
                } else if let Some(poll) = &mut e.poll
                    && poll.last.is_none_or(|t| t.elapsed() >= poll.every)
                {
                    poll.last = Some(Instant::now());
                    polls.push((e.spec.name.clone(), e.spec.when_present.clone()));
                }
            }
        }
        for (name, glob) in polls {
            let Some(set) = arrivals(glob).await else {
                continue;
            };
            let mut state = self.lock();
            let Some(e) = state.schedules.get_mut(&name) else {
                continue;
            };
            let min = e.spec.min_files.max(1) as usize;
            let Some(poll) = e.poll.as_mut() else {
                continue;
            };
            if set.len() < min {
                continue;
            }
            let id = crate::schedule::arrival_set(&set);
            if id != poll.last_set {
                poll.last_set = id.clone();
                firings.push((e.spec.clone(), e.zone, now, format!("{name}@{id}")));
            }
        }
        for (spec, zone, at, key) in firings {
            self.fire(spec, zone, at, key).await;
        }
        self.check_deadlines(now);
    }

    /// Alerts `deadline_missed` for each watched run not succeeded by its deadline.
    fn check_deadlines(&self, now: DateTime<Utc>) {
        let mut guard = self.lock();
        let state = &mut *guard;
        // How each watched run stands, looked up before the watches are changed.
        let standing: BTreeMap<String, (bool, &'static str)> = state
            .schedules
            .values()
            .flat_map(|e| &e.watching)
            .map(|w| {
                let stands = match state.pipelines.get(&w.run) {
                    Some(run) => (
                        run.ended == Some(crate::pipeline::RunEnd::Succeeded),
                        if run.ended.is_some() {
                            "ended"
                        } else {
                            "running"
                        },
                    ),
                    None => match state.job_outcome(&w.run) {
                        Some((s, _)) => (s == pb::JobState::Succeeded, crate::state_name(s as i32)),
                        None => (false, "unknown"),
                    },
                };
                (w.run.clone(), stands)
            })
            .collect();
        let mut missed = Vec::new();
        for e in state.schedules.values_mut() {
            e.watching.retain(|w| {
                let (succeeded, where_) =
                    standing.get(&w.run).copied().unwrap_or((false, "unknown"));
                if succeeded {
                    return false;
                }
                if now < w.due {
                    return true;
                }
                missed.push(crate::alerts::Alert {
                    kind: "schedule",
                    id: w.run.clone(),
                    name: e.spec.name.clone(),
                    run_key: w.run_key.clone(),
                    state: "deadline_missed".into(),
                    error: format!(
                        "{} had not succeeded by its deadline {} ({}; it is {where_})",
                        w.run,
                        e.spec.deadline,
                        w.due.format("%Y-%m-%dT%H:%M:%SZ")
                    ),
                    started_ms: 0,
                    finished_ms: now.timestamp_millis().max(0) as u64,
                    rows_out: 0,
                    bad_records: 0,
                    output: String::new(),
                });
                false
            });
        }
        for alert in missed {
            tracing::warn!(schedule = %alert.name, run = %alert.id, "{}", alert.error);
            state.alerts_out.push((alert, Vec::new()));
        }
    }

    /// Starts one firing of `spec` and records it.
    async fn fire(&self, spec: pb::Schedule, zone: chrono_tz::Tz, at: DateTime<Utc>, key: String) {
        let started = match spec.target {
            Some(pb::schedule::Target::Job(mut job)) => {
                fill_job(&mut job, zone, &key, at);
                job.run_key = key.clone();
                self.submit(pb::SubmitJobRequest {
                    spec: Some(job),
                    rerun: false,
                })
                .await
                .map(|r| r.job_id)
            }
            Some(pb::schedule::Target::Pipeline(mut p)) => {
                for step in &mut p.steps {
                    if let Some(job) = step.spec.as_mut() {
                        fill_job(job, zone, &key, at);
                    }
                }
                self.submit_pipeline(pb::SubmitPipelineRequest {
                    pipeline: Some(p),
                    run_key: key.clone(),
                })
                .await
                .map(|r| r.run_id)
            }
            None => return,
        };
        let run = match started {
            Ok(id) => {
                tracing::info!(schedule = %spec.name, run_key = %key, run = %id, "schedule fired");
                let mut state = self.lock();
                if let Some(e) = state.schedules.get_mut(&spec.name)
                    && let Some(d) = e.deadline
                {
                    e.watching.push(Watch {
                        run: id.clone(),
                        run_key: key.clone(),
                        due: d.for_firing(at, zone),
                    });
                }
                id
            }
            Err(status) => {
                tracing::warn!(schedule = %spec.name, run_key = %key, error = %status.message(), "schedule fired but its run was refused");
                // Nothing runs, so nothing would end and alert: the refusal is the failure.
                let alert = crate::alerts::Alert {
                    kind: "schedule",
                    id: String::new(),
                    name: spec.name.clone(),
                    run_key: key.clone(),
                    state: "failed".into(),
                    error: format!("the run was refused: {}", status.message()),
                    started_ms: at.timestamp_millis().max(0) as u64,
                    finished_ms: crate::clock::now_ms(),
                    rows_out: 0,
                    bad_records: 0,
                    output: String::new(),
                };
                self.lock().alerts_out.push((alert, Vec::new()));
                format!("refused: {}", status.message())
            }
        };
        let at_ms = at.timestamp_millis().max(0) as u64;
        if let Some(e) = self.lock().schedules.get_mut(&spec.name) {
            e.last_run = run.clone();
        }
        self.journal.send(Event::Schedule(ScheduleEvent::Fired {
            name: spec.name.clone(),
            at_ms,
            run,
        }));
    }
}

/// The files matching `glob` now, as `(path, size, version)`; empty when none match,
/// `None` when they cannot be listed (the next poll tries again).
async fn arrivals(glob: String) -> Option<Vec<(String, u64, String)>> {
    let listed = tokio::task::spawn_blocking(move || {
        let files = match crate::plan::expand_inputs(std::slice::from_ref(&glob)) {
            Ok(files) => files,
            Err(crate::plan::PlanError::NoMatch { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(e.to_string()),
        };
        files
            .iter()
            .map(|f| {
                let stamp = f.stamp().map_err(|e| e.to_string())?;
                Ok((f.name(), stamp.size, stamp.version))
            })
            .collect::<Result<Vec<_>, String>>()
    })
    .await;
    match listed {
        Ok(Ok(set)) => Some(set),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "a file trigger could not list its files");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "a file trigger's listing stopped");
            None
        }
    }
}
