//! The workers the coordinator knows: their shuffle addresses, slots and last heartbeat.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use sluice_common::ids::{JobId, WorkerId};

/// One registered worker.
#[derive(Debug)]
pub struct WorkerInfo {
    /// Address its shuffle service listens on.
    pub shuffle_addr: String,
    /// Tasks it runs at once.
    pub slots: u32,
    /// When it last heartbeated.
    pub last_seen: Instant,
    /// Finished jobs it has been told about (to drop their shuffle files).
    pub told_finished: HashSet<JobId>,
    /// Tasks it ran at its last heartbeat.
    pub running: u32,
    /// It is stopping: no new tasks.
    pub draining: bool,
    /// When it registered (ms since the epoch).
    pub registered_ms: u64,
    /// Jobs it holds outputs of that ended before this coordinator started: to drop.
    pub ended_elsewhere: Vec<String>,
    /// A reducer could not reach it since its last heartbeat: its map outputs were re-run,
    /// its running attempts may get backups, and it gets no new task until it heartbeats
    /// again. It is lost at the usual worker timeout if it never does.
    pub suspect: bool,
}

/// Registered workers.
#[derive(Debug)]
pub struct Workers {
    /// Distinguishes this coordinator run's worker ids from an earlier run's.
    boot: String,
    next: u64,
    by_id: HashMap<WorkerId, WorkerInfo>,
}

impl Default for Workers {
    fn default() -> Self {
        Workers {
            boot: format!("{:x}", crate::job::now_ms() % (1 << 32)),
            next: 0,
            by_id: HashMap::new(),
        }
    }
}

impl Workers {
    /// Registers a worker and returns its new id. A restarted worker is a new worker.
    pub fn register(&mut self, shuffle_addr: String, slots: u32) -> WorkerId {
        self.next += 1;
        let id = WorkerId(format!("worker-{}-{}", self.boot, self.next));
        self.by_id.insert(
            id.clone(),
            WorkerInfo {
                shuffle_addr,
                slots,
                last_seen: Instant::now(),
                told_finished: HashSet::new(),
                running: 0,
                draining: false,
                registered_ms: crate::job::now_ms(),
                ended_elsewhere: Vec::new(),
                suspect: false,
            },
        );
        id
    }

    /// The worker, if registered.
    pub fn get_mut(&mut self, id: &WorkerId) -> Option<&mut WorkerInfo> {
        self.by_id.get_mut(id)
    }

    /// The worker, if registered.
    pub fn get(&self, id: &WorkerId) -> Option<&WorkerInfo> {
        self.by_id.get(id)
    }

    /// Every registered worker, by id.
    pub fn iter(&self) -> impl Iterator<Item = (&WorkerId, &WorkerInfo)> {
        self.by_id.iter()
    }

    /// Removes and returns the workers whose last heartbeat is older than `timeout`.
    pub fn expire(&mut self, timeout: Duration) -> Vec<WorkerId> {
        let lost: Vec<WorkerId> = self
            .by_id
            .iter()
            .filter(|(_, w)| w.last_seen.elapsed() > timeout)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &lost {
            self.by_id.remove(id);
        }
        lost
    }

    /// Marks `id` suspect (a reducer could not reach it); returns whether it is registered
    /// and was not suspect already.
    pub fn mark_suspect(&mut self, id: &WorkerId) -> bool {
        match self.by_id.get_mut(id) {
            Some(w) if !w.suspect => {
                w.suspect = true;
                true
            }
            _ => false,
        }
    }

    /// Workers a reducer could not reach since their last heartbeat.
    pub fn suspects(&self) -> HashSet<WorkerId> {
        self.by_id
            .iter()
            .filter(|(_, w)| w.suspect)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Workers taking tasks (registered, not draining, not suspect).
    pub fn active(&self) -> usize {
        self.by_id
            .values()
            .filter(|w| !w.draining && !w.suspect)
            .count()
    }

    /// Number of registered workers.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether no worker is registered.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}
