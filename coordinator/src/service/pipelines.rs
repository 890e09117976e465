//! The pipeline calls and the driver that starts each step's job once its dependencies
//! succeeded (see [`crate::pipeline`] for the rules).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use prost::Message;
use sluice_common::spec::JobSpec;
use sluice_common::storage::Location;
use sluice_proto::pb;
use tonic::Status;

use super::CoordinatorService;
use super::state::State;
use crate::error::CoordinatorError;
use crate::pipeline::{PipelineRun, RunEnd, StepSpec, StepState, validate};
use crate::store::Event;
use crate::store::pipelines::{PipelineEvent, StoredPipeline};

/// The steps of a submitted pipeline, checked.
fn steps_of(spec: &pb::PipelineSpec) -> Result<Vec<StepSpec>, Status> {
    let steps = spec
        .steps
        .iter()
        .map(|s| {
            let job = s.spec.as_ref().ok_or(CoordinatorError::Missing {
                request: "pipeline step",
                missing: "a job spec",
            })?;
            let job = JobSpec::try_from(job)
                .map_err(|e| Status::invalid_argument(format!("step {}: {}", s.name, e.reason)))?;
            Ok(StepSpec {
                name: s.name.clone(),
                depends_on: s.depends_on.clone(),
                spec: job,
            })
        })
        .collect::<Result<Vec<_>, Status>>()?;
    validate(&spec.name, &steps).map_err(Status::invalid_argument)?;
    Ok(steps)
}

/// A run the store kept, as the service holds it.
pub(super) fn restore(stored: StoredPipeline) -> Option<PipelineRun> {
    let spec = pb::PipelineSpec::decode(stored.spec.as_slice()).ok()?;
    let steps = match steps_of(&spec) {
        Ok(steps) => steps,
        Err(e) => {
            tracing::error!(run = %stored.id, error = %e.message(), "cannot restore the pipeline run");
            return None;
        }
    };
    let ended = match stored.state.as_str() {
        "succeeded" => Some(RunEnd::Succeeded),
        "failed" => Some(RunEnd::Failed(stored.error.clone())),
        _ => None,
    };
    Some(PipelineRun {
        id: stored.id,
        name: stored.name,
        run_key: stored.run_key,
        steps,
        jobs: stored.jobs.into_iter().collect(),
        refused: stored.refused.into_iter().collect(),
        starting: BTreeSet::new(),
        submitted_ms: stored.submitted_ms,
        finished_ms: stored.finished_ms,
        ended,
    })
}

impl State {
    /// A job's state and error, running or ended.
    pub(super) fn job_outcome(&self, id: &str) -> Option<(pb::JobState, String)> {
        if let Some(job) = self.jobs.get(&sluice_common::ids::JobId::new(id)) {
            return Some(crate::wire::state(&job.status));
        }
        self.history.get(id).map(|i| {
            let state = pb::JobState::try_from(i.state).unwrap_or(pb::JobState::Unspecified);
            (state, i.error.clone())
        })
    }

    fn job_output(&self, id: &str) -> Option<String> {
        match self.jobs.get(&sluice_common::ids::JobId::new(id)) {
            Some(job) => Some(job.spec.output.clone()),
            None => self.history.get(id).map(|i| i.output.clone()),
        }
    }
}

/// A step to start: its run, name, spec with its run key, and the output of the earlier
/// job of its key that succeeded, if any.
struct ToStart {
    run: String,
    step: String,
    spec: JobSpec,
    succeeded_output: Option<String>,
}

/// Whether `output` still holds the `_SUCCESS` of the job that wrote it.
fn has_success(output: &str) -> bool {
    match Location::parse(output) {
        Ok(Location::Local(p)) => p.join("_SUCCESS").is_file(),
        Ok(Location::Object(url)) => url.join("_SUCCESS").info().is_ok_and(|i| i.is_some()),
        Err(_) => false,
    }
}

impl CoordinatorService {
    pub(super) async fn submit_pipeline(
        &self,
        req: pb::SubmitPipelineRequest,
    ) -> Result<pb::SubmitPipelineResponse, Status> {
        let spec = req.pipeline.ok_or(CoordinatorError::Missing {
            request: "pipeline submission",
            missing: "a pipeline",
        })?;
        sluice_common::spec::check_run_key(&req.run_key).map_err(Status::invalid_argument)?;
        let steps = steps_of(&spec)?;
        for s in &steps {
            if !self.plugins.path(&s.spec.plugin_sha256)?.is_file() {
                return Err(CoordinatorError::PluginNotStored {
                    sha256: s.spec.plugin_sha256.clone(),
                }
                .into());
            }
        }
        let id = {
            let mut state = self.lock();
            if !req.run_key.is_empty()
                && let Some(run) = state
                    .pipelines
                    .values()
                    .find(|r| r.run_key == req.run_key && r.ended.is_none())
            {
                return Ok(pb::SubmitPipelineResponse {
                    run_id: run.id.clone(),
                    reused: true,
                });
            }
            state.next_pipeline += 1;
            let seq = state.next_pipeline;
            let id = format!("pipe-{seq:04}");
            let run = PipelineRun {
                id: id.clone(),
                name: spec.name.clone(),
                run_key: req.run_key.clone(),
                steps,
                jobs: BTreeMap::new(),
                refused: BTreeMap::new(),
                starting: BTreeSet::new(),
                submitted_ms: crate::clock::now_ms(),
                finished_ms: 0,
                ended: None,
            };
            self.journal.send(Event::Pipeline(PipelineEvent::Submitted {
                id: id.clone(),
                seq,
                name: run.name.clone(),
                run_key: run.run_key.clone(),
                spec: spec.encode_to_vec(),
                submitted_ms: run.submitted_ms,
            }));
            tracing::info!(run = %id, pipeline = %run.name, run_key = %run.run_key, steps = run.steps.len(), "pipeline run submitted");
            state.pipelines.insert(id.clone(), run);
            id
        };
        self.sync_journal().await?;
        let driver = self.clone();
        tokio::spawn(async move { driver.drive_pipelines().await });
        Ok(pb::SubmitPipelineResponse {
            run_id: id,
            reused: false,
        })
    }

    pub(crate) fn pipeline_info(&self, run_id: &str) -> Result<pb::PipelineInfo, Status> {
        let state = self.lock();
        let run = state
            .pipelines
            .get(run_id)
            .ok_or_else(|| Status::not_found(format!("no pipeline run {run_id}")))?;
        let states = run.step_states(|id| state.job_outcome(id));
        let steps = run
            .steps
            .iter()
            .zip(&states)
            .map(|(step, s)| {
                let job_id = run.jobs.get(&step.name).cloned().unwrap_or_default();
                let error = match s {
                    StepState::Failed(e) | StepState::Blocked(e) => e.clone(),
                    _ => String::new(),
                };
                pb::StepInfo {
                    name: step.name.clone(),
                    depends_on: step.depends_on.clone(),
                    state: s.name().into(),
                    output: step.spec.output.clone(),
                    job_id,
                    error,
                }
            })
            .collect();
        let (run_state, error) = match &run.ended {
            None => ("running", String::new()),
            Some(RunEnd::Succeeded) => ("succeeded", String::new()),
            Some(RunEnd::Failed(e)) => ("failed", e.clone()),
        };
        Ok(pb::PipelineInfo {
            run_id: run.id.clone(),
            name: run.name.clone(),
            run_key: run.run_key.clone(),
            state: run_state.into(),
            error,
            steps,
            submitted_ms: run.submitted_ms,
            finished_ms: run.finished_ms,
        })
    }

    /// Fires the due schedules and drives the pipeline runs every `tick` (after a restart
    /// too) until the service stops.
    pub async fn drive_pipelines_every(&self, tick: Duration) {
        loop {
            self.fire_schedules().await;
            self.drive_pipelines().await;
            self.send_alerts();
            tokio::time::sleep(tick).await;
        }
    }

    /// Starts the steps whose dependencies succeeded and ends the runs that are over.
    async fn drive_pipelines(&self) {
        let mut to_start = Vec::new();
        {
            let mut guard = self.lock();
            let state = &mut *guard;
            let now = crate::clock::now_ms();
            let mut ended = Vec::new();
            let mut alerts = Vec::new();
            for run in state.pipelines.values() {
                if run.ended.is_some() {
                    continue;
                }
                let states = run.step_states(|id| state.job_outcome(id));
                if let Some(end) = run.outcome(&states) {
                    ended.push((run.id.clone(), end));
                    continue;
                }
                for (step, s) in run.steps.iter().zip(&states) {
                    if *s != StepState::Ready || run.starting.contains(&step.name) {
                        continue;
                    }
                    let key = run.step_key(&step.name);
                    let succeeded_output = state
                        .jobs_with_key(&key)
                        .iter()
                        .rev()
                        .find(|(_, s)| *s == pb::JobState::Succeeded)
                        .and_then(|(id, _)| state.job_output(id));
                    let mut spec = step.spec.clone();
                    spec.run_key = key;
                    to_start.push(ToStart {
                        run: run.id.clone(),
                        step: step.name.clone(),
                        spec,
                        succeeded_output,
                    });
                }
            }
            for t in &to_start {
                if let Some(run) = state.pipelines.get_mut(&t.run) {
                    run.starting.insert(t.step.clone());
                }
            }
            for (id, end) in ended {
                let Some(run) = state.pipelines.get_mut(&id) else {
                    continue;
                };
                let (name, error) = match &end {
                    RunEnd::Succeeded => ("succeeded", String::new()),
                    RunEnd::Failed(e) => ("failed", e.clone()),
                };
                tracing::info!(run = %id, state = name, error = %error, "pipeline run ended");
                run.ended = Some(end);
                run.finished_ms = now;
                let alert = crate::alerts::Alert {
                    kind: "pipeline",
                    id: id.clone(),
                    name: run.name.clone(),
                    run_key: run.run_key.clone(),
                    state: name.to_string(),
                    error: error.clone(),
                    started_ms: run.submitted_ms,
                    finished_ms: now,
                    rows_out: 0,
                    bad_records: 0,
                    output: String::new(),
                };
                alerts.push(alert);
                self.journal.send(Event::Pipeline(PipelineEvent::Ended {
                    run: id,
                    state: name,
                    error,
                    finished_ms: now,
                }));
            }
            state
                .alerts_out
                .extend(alerts.into_iter().map(|a| (a, Vec::new())));
        }
        for t in to_start {
            self.start_step(t).await;
        }
    }

    /// Submits a step's job (the earlier job of its key answers when it succeeded and its
    /// `_SUCCESS` is still there) and records it.
    async fn start_step(&self, t: ToStart) {
        let rerun = match t.succeeded_output {
            Some(output) => !tokio::task::spawn_blocking(move || has_success(&output))
                .await
                .unwrap_or(false),
            None => false,
        };
        if rerun {
            tracing::info!(run = %t.run, step = %t.step, "the step's earlier output lost its _SUCCESS: running it again");
        }
        let submitted = self
            .submit(pb::SubmitJobRequest {
                spec: Some(pb::JobSpec::from(&t.spec)),
                rerun,
            })
            .await;
        let mut state = self.lock();
        let Some(run) = state.pipelines.get_mut(&t.run) else {
            return;
        };
        run.starting.remove(&t.step);
        let event = match submitted {
            Ok(r) => {
                tracing::info!(run = %t.run, step = %t.step, job = %r.job_id, reused = r.reused, "pipeline step started");
                run.jobs.insert(t.step.clone(), r.job_id.clone());
                PipelineEvent::StepJob {
                    run: t.run,
                    step: t.step,
                    job: r.job_id,
                }
            }
            Err(status) => {
                tracing::warn!(run = %t.run, step = %t.step, error = %status.message(), "pipeline step refused");
                run.refused
                    .insert(t.step.clone(), status.message().to_string());
                PipelineEvent::StepRefused {
                    run: t.run,
                    step: t.step,
                    error: status.message().to_string(),
                }
            }
        };
        self.journal.send(Event::Pipeline(event));
    }
}
