//! Queues: which job a free slot goes to, as Hadoop's Fair Scheduler decides it.
//!
//! Each job is in a queue (`--queue`, `default` when none is given). A queue may run at
//! most `max_running` jobs at once (the first by priority, then submission; the others wait
//! in the queue). A free slot goes to the queue whose running tasks are the fewest for its
//! `weight` (queues of weights 3 and 1, both with work, share the slots 3:1), and within it
//! to the job of the highest `--priority`, then of the fewest running tasks (running jobs of
//! one queue share its slots instead of the first taking them all), then the oldest.

use std::collections::BTreeMap;

use sluice_common::ids::{JobId, natural_cmp};

/// The queue of jobs submitted without one.
pub const DEFAULT_QUEUE: &str = "default";

/// One queue's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queue {
    /// Its share of the slots, relative to the other queues'.
    pub weight: u32,
    /// Jobs it runs at once (`None`: no limit).
    pub max_running: Option<u32>,
}

impl Default for Queue {
    fn default() -> Self {
        Queue {
            weight: 1,
            max_running: None,
        }
    }
}

/// The queues the coordinator was configured with (`[queues.NAME]`); `default` always
/// exists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Queues(pub BTreeMap<String, Queue>);

impl Queues {
    /// The settings of queue `name`, if it exists.
    pub fn get(&self, name: &str) -> Option<Queue> {
        match self.0.get(name) {
            Some(q) => Some(*q),
            None if name == DEFAULT_QUEUE => Some(Queue::default()),
            None => None,
        }
    }

    /// Refuses a job for a queue that does not exist, naming the ones that do.
    pub fn check(&self, name: &str) -> Result<(), String> {
        if self.get(name).is_some() {
            return Ok(());
        }
        let mut known: Vec<&str> = self.0.keys().map(String::as_str).collect();
        if !known.contains(&DEFAULT_QUEUE) {
            known.insert(0, DEFAULT_QUEUE);
        }
        Err(format!(
            "--queue {name}: no such queue (the coordinator has {})",
            known.join(", ")
        ))
    }
}

/// What the choice needs to know of one unfinished job.
#[derive(Debug, Clone)]
pub struct Load {
    /// The job.
    pub id: JobId,
    /// Its queue.
    pub queue: String,
    /// Its priority (higher first).
    pub priority: i32,
    /// Attempts of it running now.
    pub running: usize,
}

/// The jobs to offer a free slot to, best first: the queues by their running tasks for
/// their weight, each with its admitted jobs by priority, running tasks and age. Jobs
/// waiting behind their queue's `max_running` are left out.
pub fn offer_order(jobs: &[Load], queues: &Queues) -> Vec<JobId> {
    let mut by_queue: BTreeMap<&str, Vec<&Load>> = BTreeMap::new();
    for j in jobs {
        by_queue.entry(j.queue.as_str()).or_default().push(j);
    }
    let mut ranked: Vec<(f64, &str, Vec<&Load>)> = by_queue
        .into_iter()
        .map(|(name, mut members)| {
            let q = queues.get(name).unwrap_or_default();
            // Admission: the first max_running by priority, then age.
            members.sort_by(|a, b| {
                b.priority
                    .cmp(&a.priority)
                    .then_with(|| natural_cmp(a.id.as_str(), b.id.as_str()))
            });
            if let Some(max) = q.max_running {
                members.truncate(max as usize);
            }
            let running: usize = members.iter().map(|j| j.running).sum();
            let share = running as f64 / f64::from(q.weight.max(1));
            members.sort_by(|a, b| {
                b.priority
                    .cmp(&a.priority)
                    .then(a.running.cmp(&b.running))
                    .then_with(|| natural_cmp(a.id.as_str(), b.id.as_str()))
            });
            (share, name, members)
        })
        .collect();
    ranked.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(b.1)));
    ranked
        .into_iter()
        .flat_map(|(_, _, members)| members.into_iter().map(|j| j.id.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(id: &str, queue: &str, priority: i32, running: usize) -> Load {
        Load {
            id: JobId::new(id),
            queue: queue.into(),
            priority,
            running,
        }
    }

    fn queues() -> Queues {
        Queues(
            [
                (
                    "nightly".to_string(),
                    Queue {
                        weight: 3,
                        max_running: None,
                    },
                ),
                (
                    "adhoc".to_string(),
                    Queue {
                        weight: 1,
                        max_running: Some(1),
                    },
                ),
            ]
            .into(),
        )
    }

    fn ids(v: Vec<JobId>) -> Vec<String> {
        v.into_iter().map(JobId::into_string).collect()
    }

    /// Handing slots one at a time, two busy queues of weights 3 and 1 get 3:1.
    #[test]
    fn slots_are_shared_by_weight() {
        let mut jobs = vec![load("job-1", "nightly", 0, 0), load("job-2", "adhoc", 0, 0)];
        for _ in 0..40 {
            let first = offer_order(&jobs, &queues())[0].clone();
            jobs.iter_mut().find(|j| j.id == first).unwrap().running += 1;
        }
        assert_eq!((jobs[0].running, jobs[1].running), (30, 10));
    }

    #[test]
    fn within_a_queue_priority_then_the_fewest_running_then_age() {
        let jobs = vec![
            load("job-1", "nightly", 0, 5),
            load("job-2", "nightly", 0, 1),
            load("job-3", "nightly", 9, 7),
            load("job-10", "nightly", 0, 1),
        ];
        assert_eq!(
            ids(offer_order(&jobs, &queues())),
            ["job-3", "job-2", "job-10", "job-1"]
        );
    }

    #[test]
    fn a_queue_runs_at_most_its_max_running_jobs() {
        let jobs = vec![load("job-4", "adhoc", 0, 0), load("job-5", "adhoc", 1, 0)];
        assert_eq!(ids(offer_order(&jobs, &queues())), ["job-5"]);
        assert!(queues().check("nightly").is_ok() && queues().check("default").is_ok());
        let e = queues().check("urgent").unwrap_err();
        assert!(e.contains("default, adhoc, nightly"), "{e}");
    }
}
