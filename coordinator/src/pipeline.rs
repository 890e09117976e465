//! Pipelines: jobs run in the order their dependencies give (validate → aggregate →
//! reconcile → publish), driven by the coordinator and kept in the job store, so a run goes
//! on through coordinator restarts.
//!
//! A run's steps are jobs with the run key `RUN_KEY/STEP` (the run's key, or its own id
//! when it has none). That makes starting a step idempotent (a restart that lost the
//! step's job id finds the job by its key) and gives reruns their meaning: a second run
//! with the same key gets, for each step that succeeded before and whose `_SUCCESS` is
//! still there, the earlier job, and runs the failed and later steps again.
//!
//! This module is the pure part: what each step's state is, given its job's, which steps
//! start next, and how the run ends. The service does the I/O (`service::pipelines`).

use std::collections::{BTreeMap, BTreeSet};

use sluice_common::spec::{JobSpec, is_input_name};
use sluice_proto::pb::JobState;

/// One step of a pipeline as submitted.
#[derive(Debug, Clone, PartialEq)]
pub struct StepSpec {
    /// Its name, unique in the pipeline.
    pub name: String,
    /// Steps that must succeed before it starts.
    pub depends_on: Vec<String>,
    /// The job it runs.
    pub spec: JobSpec,
}

/// A pipeline run: the steps, and what the coordinator knows of each.
#[derive(Debug, Clone)]
pub struct PipelineRun {
    /// `pipe-NNNN`.
    pub id: String,
    /// The pipeline's name.
    pub name: String,
    /// The run key as given (empty: none).
    pub run_key: String,
    /// The steps, in the order given.
    pub steps: Vec<StepSpec>,
    /// Each step's job once started, by step name.
    pub jobs: BTreeMap<String, String>,
    /// Steps that could not be started (their job was refused), with the reason.
    pub refused: BTreeMap<String, String>,
    /// Steps being started now.
    pub starting: BTreeSet<String>,
    /// Submission time, ms since the Unix epoch.
    pub submitted_ms: u64,
    /// End time (0 while it runs).
    pub finished_ms: u64,
    /// How it ended, once it has.
    pub ended: Option<RunEnd>,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd {
    /// Every step succeeded.
    Succeeded,
    /// A step did not succeed; the message names it.
    Failed(String),
}

/// Where one step stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepState {
    /// A dependency has not succeeded yet.
    Waiting,
    /// Every dependency succeeded: start it.
    Ready,
    /// Its job runs.
    Running,
    /// Its job succeeded.
    Succeeded,
    /// Its job failed, or could not be submitted.
    Failed(String),
    /// Its job was cancelled.
    Cancelled,
    /// A dependency did not succeed, so it never runs.
    Blocked(String),
}

impl StepState {
    /// The state as `pipeline status` shows it.
    pub fn name(&self) -> &'static str {
        match self {
            StepState::Waiting | StepState::Ready => "waiting",
            StepState::Running => "running",
            StepState::Succeeded => "succeeded",
            StepState::Failed(_) => "failed",
            StepState::Cancelled => "cancelled",
            StepState::Blocked(_) => "blocked",
        }
    }

    fn is_over(&self) -> bool {
        !matches!(
            self,
            StepState::Waiting | StepState::Ready | StepState::Running
        )
    }
}

impl PipelineRun {
    /// The key of this run's step `step`'s job.
    pub fn step_key(&self, step: &str) -> String {
        let run = if self.run_key.is_empty() {
            &self.id
        } else {
            &self.run_key
        };
        format!("{run}/{step}")
    }

    /// Each step's state, in step order, given its job's (`job(id)`: state and error;
    /// `None` for a job the coordinator does not know, taken as failed).
    pub fn step_states(&self, job: impl Fn(&str) -> Option<(JobState, String)>) -> Vec<StepState> {
        let mut states: BTreeMap<&str, StepState> = BTreeMap::new();
        // Steps are evaluated after their dependencies (`validate` refused cycles).
        for step in topological(&self.steps) {
            let state = if let Some(error) = self.refused.get(&step.name) {
                StepState::Failed(error.clone())
            } else if let Some(id) = self.jobs.get(&step.name) {
                match job(id) {
                    Some((JobState::Running | JobState::CommitFailed, _)) => StepState::Running,
                    Some((JobState::Succeeded, _)) => StepState::Succeeded,
                    Some((JobState::Cancelled, _)) => StepState::Cancelled,
                    Some((_, error)) => StepState::Failed(format!("job {id}: {error}")),
                    None => StepState::Failed(format!("job {id} is unknown to the coordinator")),
                }
            } else {
                let deps: Vec<(&String, &StepState)> = step
                    .depends_on
                    .iter()
                    .filter_map(|d| states.get(d.as_str()).map(|s| (d, s)))
                    .collect();
                match deps
                    .iter()
                    .find(|(_, s)| s.is_over() && **s != StepState::Succeeded)
                {
                    Some((d, _)) => StepState::Blocked(format!("step {d} did not succeed")),
                    None if deps.iter().all(|(_, s)| **s == StepState::Succeeded) => {
                        StepState::Ready
                    }
                    None => StepState::Waiting,
                }
            };
            states.insert(&step.name, state);
        }
        self.steps
            .iter()
            .map(|s| states.remove(s.name.as_str()).unwrap_or(StepState::Waiting))
            .collect()
    }

    /// How the run ends given its steps' states, or `None` while a step may still run.
    pub fn outcome(&self, states: &[StepState]) -> Option<RunEnd> {
        if !states.iter().all(StepState::is_over) {
            return None;
        }
        let failed = self.steps.iter().zip(states).find_map(|(step, s)| match s {
            StepState::Failed(e) => Some(format!("step {} failed: {e}", step.name)),
            StepState::Cancelled => Some(format!("step {} was cancelled", step.name)),
            _ => None,
        });
        Some(match failed {
            Some(e) => RunEnd::Failed(e),
            None => RunEnd::Succeeded,
        })
    }
}

/// The steps in an order where each comes after its dependencies.
fn topological(steps: &[StepSpec]) -> Vec<&StepSpec> {
    let mut done: BTreeSet<&str> = BTreeSet::new();
    let mut order = Vec::with_capacity(steps.len());
    while order.len() < steps.len() {
        let before = order.len();
        for s in steps {
            if !done.contains(s.name.as_str())
                && s.depends_on.iter().all(|d| done.contains(d.as_str()))
            {
                done.insert(&s.name);
                order.push(s);
            }
        }
        if order.len() == before {
            break; // a cycle: `validate` refuses it before a run exists
        }
    }
    order
}

/// Refuses a pipeline without steps, with a step name that is not `[a-z][a-z0-9_]*` or
/// given twice, a dependency on no step, or a cycle.
pub fn validate(name: &str, steps: &[StepSpec]) -> Result<(), String> {
    if name.is_empty() || name.chars().any(char::is_control) {
        return Err(format!("pipeline name {name:?}: give it a printable name"));
    }
    if steps.is_empty() {
        return Err(format!("pipeline {name} has no steps"));
    }
    let mut names = BTreeSet::new();
    for s in steps {
        if !is_input_name(&s.name) {
            return Err(format!(
                "step name {:?}: use [a-z][a-z0-9_]* (it names the step's run key and status)",
                s.name
            ));
        }
        if !names.insert(s.name.as_str()) {
            return Err(format!("step {} is given twice", s.name));
        }
    }
    for s in steps {
        if let Some(d) = s.depends_on.iter().find(|d| !names.contains(d.as_str())) {
            return Err(format!("step {} depends on {d}, which is no step", s.name));
        }
    }
    if topological(steps).len() < steps.len() {
        let stuck: Vec<&str> = steps
            .iter()
            .map(|s| s.name.as_str())
            .filter(|n| !topological(steps).iter().any(|t| t.name == *n))
            .collect();
        return Err(format!(
            "the steps {} depend on each other in a cycle",
            stuck.join(", ")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use JobState::*;
    use sluice_common::spec::InputFormat;

    fn step(name: &str, deps: &[&str]) -> StepSpec {
        StepSpec {
            name: name.into(),
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            spec: JobSpec::new(
                "p.so".into(),
                vec!["in".into()],
                InputFormat::Text,
                "out".into(),
            ),
        }
    }

    /// validate and aggregate feed reconcile (a fan-in), which feeds publish.
    fn run() -> PipelineRun {
        PipelineRun {
            id: "pipe-0001".into(),
            name: "eod".into(),
            run_key: String::new(),
            steps: vec![
                step("publish", &["reconcile"]),
                step("validate", &[]),
                step("aggregate", &[]),
                step("reconcile", &["validate", "aggregate"]),
            ],
            jobs: BTreeMap::new(),
            refused: BTreeMap::new(),
            starting: BTreeSet::new(),
            submitted_ms: 0,
            finished_ms: 0,
            ended: None,
        }
    }

    fn states(r: &PipelineRun, jobs: &[(&str, JobState)]) -> Vec<StepState> {
        r.step_states(|id| {
            jobs.iter()
                .find(|(j, _)| *j == id)
                .map(|(_, s)| (*s, "boom".to_string()))
        })
    }

    #[test]
    fn steps_start_once_their_dependencies_succeeded() {
        let mut r = run();
        use StepState::*;
        assert_eq!(states(&r, &[]), [Waiting, Ready, Ready, Waiting]);
        r.jobs.insert("validate".into(), "job-1".into());
        r.jobs.insert("aggregate".into(), "job-2".into());
        let s = states(
            &r,
            &[("job-1", JobState::Succeeded), ("job-2", JobState::Running)],
        );
        assert_eq!(
            s,
            [Waiting, StepState::Succeeded, StepState::Running, Waiting]
        );
        assert_eq!(r.outcome(&s), None);
        let s = states(
            &r,
            &[
                ("job-1", JobState::Succeeded),
                ("job-2", JobState::Succeeded),
            ],
        );
        assert_eq!(s[3], Ready, "the fan-in starts when both succeeded");
        r.jobs.insert("reconcile".into(), "job-3".into());
        r.jobs.insert("publish".into(), "job-4".into());
        let all = [
            ("job-1", JobState::Succeeded),
            ("job-2", JobState::Succeeded),
            ("job-3", JobState::Succeeded),
            ("job-4", JobState::Succeeded),
        ];
        assert_eq!(r.outcome(&states(&r, &all)), Some(RunEnd::Succeeded));
        assert_eq!(r.step_key("publish"), "pipe-0001/publish");
        r.run_key = "eod@2026-11-28".into();
        assert_eq!(r.step_key("publish"), "eod@2026-11-28/publish");
    }

    #[test]
    fn a_failed_step_blocks_its_dependents_and_fails_the_run_naming_it() {
        let mut r = run();
        r.jobs.insert("validate".into(), "job-1".into());
        r.jobs.insert("aggregate".into(), "job-2".into());
        let s = states(&r, &[("job-1", Failed), ("job-2", Running)]);
        assert_eq!(
            s[0],
            StepState::Blocked("step reconcile did not succeed".into())
        );
        assert_eq!(
            s[3],
            StepState::Blocked("step validate did not succeed".into())
        );
        assert_eq!(r.outcome(&s), None, "aggregate still runs");
        let s = states(&r, &[("job-1", Failed), ("job-2", Succeeded)]);
        assert_eq!(
            r.outcome(&s),
            Some(RunEnd::Failed(
                "step validate failed: job job-1: boom".into()
            ))
        );
        // A step whose job could not be submitted fails the same way.
        let mut r = run();
        r.refused
            .insert("validate".into(), "input x matches no file".into());
        let s = states(&r, &[]);
        assert_eq!(s[1], StepState::Failed("input x matches no file".into()));
        assert_eq!(s[3].name(), "blocked");
    }

    #[test]
    fn bad_pipelines_are_refused_by_name() {
        assert!(validate("eod", &[]).unwrap_err().contains("no steps"));
        let e = validate("eod", &[step("a", &[]), step("a", &[])]).unwrap_err();
        assert!(e.contains("step a is given twice"), "{e}");
        let e = validate("eod", &[step("a", &["b"])]).unwrap_err();
        assert!(e.contains("depends on b, which is no step"), "{e}");
        let e = validate(
            "eod",
            &[step("a", &["b"]), step("b", &["a"]), step("c", &[])],
        )
        .unwrap_err();
        assert!(e.contains("a, b depend on each other in a cycle"), "{e}");
        let e = validate("eod", &[step("Load", &[])]).unwrap_err();
        assert!(e.contains("[a-z][a-z0-9_]*"), "{e}");
        assert_eq!(validate("eod", &run().steps), Ok(()));
    }
}
