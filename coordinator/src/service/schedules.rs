//! The schedule calls, and firing the schedules that are due (see [`crate::schedule`]).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use prost::Message;
use sluice_proto::pb;
use tonic::Status;

use super::CoordinatorService;
use crate::schedule::{CatchUp, Timing, utc_ms};
use crate::store::Event;
use crate::store::schedules::{ScheduleEvent, StoredSchedule};

/// A schedule as the service holds it.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    spec: pb::Schedule,
    timing: Timing,
    catch_up: CatchUp,
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
    let timing = Timing::parse(&spec.cron, &spec.tz)?;
    let catch_up = spec.catch_up.parse::<CatchUp>()?;
    if spec.target.is_none() {
        return Err(format!(
            "schedule {}: no job or pipeline to start",
            spec.name
        ));
    }
    Ok(Entry {
        spec,
        timing,
        catch_up,
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
fn fill_job(spec: &mut pb::JobSpec, timing: &Timing, key: &str, at: DateTime<Utc>) {
    let fill = |s: &mut String| *s = timing.fill(s, key, at);
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
            let next = e.timing.next_after(utc_ms(now_ms.max(e.last_ms)));
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

    pub(super) fn list_schedules(&self) -> pb::ListSchedulesResponse {
        let state = self.lock();
        let now = utc_ms(crate::clock::now_ms());
        let schedules = state
            .schedules
            .values()
            .map(|e| pb::ScheduleInfo {
                schedule: Some(e.spec.clone()),
                last_ms: e.last_ms,
                next_ms: if e.spec.paused {
                    0
                } else {
                    e.timing
                        .next_after(now.max(utc_ms(e.last_ms)))
                        .map_or(0, |t| t.timestamp_millis().max(0) as u64)
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
        {
            let mut state = self.lock();
            for e in state.schedules.values_mut() {
                if e.spec.paused {
                    continue;
                }
                for at in e.timing.due(utc_ms(e.last_ms), now, e.catch_up) {
                    firings.push((e.spec.clone(), e.timing.clone(), at));
                }
                // Marked now, so the next tick does not fire them again while these start.
                if let Some((_, _, at)) = firings.last() {
                    e.last_ms = e.last_ms.max(at.timestamp_millis().max(0) as u64);
                }
            }
        }
        for (spec, timing, at) in firings {
            let key = timing.run_key(&spec.name, at);
            let started = match spec.target {
                Some(pb::schedule::Target::Job(mut job)) => {
                    fill_job(&mut job, &timing, &key, at);
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
                            fill_job(job, &timing, &key, at);
                        }
                    }
                    self.submit_pipeline(pb::SubmitPipelineRequest {
                        pipeline: Some(p),
                        run_key: key.clone(),
                    })
                    .await
                    .map(|r| r.run_id)
                }
                None => continue,
            };
            let run = match started {
                Ok(id) => {
                    tracing::info!(schedule = %spec.name, run_key = %key, run = %id, "schedule fired");
                    id
                }
                Err(status) => {
                    tracing::warn!(schedule = %spec.name, run_key = %key, error = %status.message(), "schedule fired but its run was refused");
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
}
