//! Property tests of the job state machine: random sequences of assignments, reports,
//! task and fetch failures, lost workers, clock advances and coordinator restarts (through
//! the real job store), checked against invariants after every step:
//! - no task is both done and running;
//! - a partition's commit is accepted at most once, across restarts;
//! - the job starts writing `_SUCCESS` only when every partition is committed;
//! - and, once the chaos stops, the job always finishes: a map output a reduce needs that
//!   was lost is re-run, so the reduce can read it.
//!
//! The clock is an argument (no sleeps); the workers are a model that holds map outputs
//! and reads them the way a reducer does, failing a fetch when the output is gone.

use std::time::Duration;

use proptest::prelude::*;

use super::JobStatus;

mod world;
use world::World;

/// One step of the world around the job.
#[derive(Clone, Debug)]
pub(super) enum Step {
    /// Worker `w` asks for a task.
    Assign { w: usize },
    /// Worker `w` finishes its `k`-th running attempt (a reduce reads its inputs first).
    Finish { w: usize, k: usize },
    /// Worker `w`'s `k`-th running attempt fails on its own.
    Fail { w: usize, k: usize, plugin: bool },
    /// Worker `w`'s `k`-th running reduce cannot fetch its `i`-th input.
    FetchFail { w: usize, k: usize, i: usize },
    /// Worker `w` dies (SIGKILL); a fresh worker takes its place.
    Lose { w: usize },
    /// Time passes; every worker heartbeats the attempts it runs; attempts past the task
    /// timeout fail.
    Advance { ms: u64 },
    /// The coordinator restarts from its job store; workers re-register and claim outputs.
    Restart,
    /// Worker `w`'s `k`-th attempt ends but its report is held up in the network.
    Delay { w: usize, k: usize },
    /// The `i`-th held-up report arrives (late: its attempt may since have been re-queued,
    /// cancelled or superseded).
    Deliver { i: usize },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..WORKERS).prop_map(|w| Step::Assign { w }),
        6 => (0..WORKERS, 0..4usize).prop_map(|(w, k)| Step::Finish { w, k }),
        1 => (0..WORKERS, 0..4usize, any::<bool>()).prop_map(|(w, k, plugin)| Step::Fail { w, k, plugin }),
        1 => (0..WORKERS, 0..4usize, 0..MAPS).prop_map(|(w, k, i)| Step::FetchFail { w, k, i }),
        1 => (0..WORKERS).prop_map(|w| Step::Lose { w }),
        2 => (1..20_000u64).prop_map(|ms| Step::Advance { ms }),
        1 => Just(Step::Restart),
        2 => (0..WORKERS, 0..4usize).prop_map(|(w, k)| Step::Delay { w, k }),
        2 => (0..4usize).prop_map(|i| Step::Deliver { i }),
    ]
}

const WORKERS: usize = 3;
// Enough tasks that a stage reaches the share done after which stragglers get backups.
const MAPS: usize = 6;
const REDUCERS: u32 = 6;
/// How long a worker's missing attempt may go unreported before it counts as lost.
const SETTLE: Duration = Duration::from_secs(3);

impl World {
    fn check(&self) {
        for (kind, tasks) in [("map", &self.job.maps), ("reduce", &self.job.reduces)] {
            for (i, t) in tasks.iter().enumerate() {
                assert!(
                    !t.is_done() || t.running().is_empty(),
                    "{kind} {i} is done and running: {:?}",
                    t.status
                );
            }
        }
        if matches!(
            self.job.status,
            JobStatus::Committing | JobStatus::Succeeded | JobStatus::CommitFailed(_)
        ) {
            assert!(self.job.reduces.iter().all(|t| t.is_done()));
        }
    }

    /// No more chaos: workers take and finish every task, time passes. The job must end.
    /// Every third round worker 0 sits on one attempt (a straggler, which may get a backup),
    /// and all workers ask to commit before any reports, so backups race for commits.
    fn drain(&mut self) {
        for round in 0..2_000 {
            if self.job.is_finished() {
                return;
            }
            for w in 0..self.workers.len() {
                for _ in 0..4 {
                    self.assign(w);
                }
            }
            // Worker 0's first attempt is a straggler every third round.
            let keep = |w: usize| usize::from(w == 0 && round % 3 == 0);
            for w in 0..self.workers.len() {
                for _ in keep(w)..self.workers[w].running.len() {
                    self.finish(w, keep(w));
                    self.settle_effects();
                    self.check();
                }
            }
            for w in 0..self.workers.len() {
                while self.workers[w].running.len() > keep(w) {
                    self.finish(w, keep(w));
                    self.settle_effects();
                    self.check();
                }
            }
            while !self.late.is_empty() {
                self.apply(&Step::Deliver { i: 0 });
                self.check();
            }
            self.apply(&Step::Advance { ms: 5_000 });
            self.check();
        }
        panic!(
            "the job never finished: maps {:?}\nreduces {:?}",
            self.job.maps.iter().map(|t| &t.status).collect::<Vec<_>>(),
            self.job
                .reduces
                .iter()
                .map(|t| &t.status)
                .collect::<Vec<_>>()
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn the_job_keeps_its_invariants_and_always_finishes(
        steps in proptest::collection::vec(step(), 1..80)
    ) {
        let mut world = World::new();
        for s in &steps {
            world.apply(s);
            world.check();
        }
        world.drain();
        match &world.job.status {
            JobStatus::Succeeded => {
                prop_assert!(world.accepted.iter().all(Option::is_some));
            }
            // Injected failures may use up a task's attempts; the job then says which.
            JobStatus::Failed(why) => prop_assert!(why.contains("failed"), "{}", why),
            other => prop_assert!(false, "ended {:?}", other),
        }
    }
}
