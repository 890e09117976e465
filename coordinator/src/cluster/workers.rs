//! The workers the coordinator knows: their shuffle addresses, slots and last heartbeat.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use sluice_common::ids::WorkerId;

/// One registered worker.
#[derive(Debug)]
pub struct WorkerInfo {
    /// Address its shuffle service listens on.
    pub shuffle_addr: String,
    /// Tasks it runs at once.
    pub slots: u32,
    /// Memory for all its slots together; 0 when not capped.
    pub memory: u64,
    /// When it last heartbeated.
    pub last_seen: Instant,
    /// Tasks it ran at its last heartbeat.
    pub running: u32,
    /// It is stopping: no new tasks.
    pub draining: bool,
    /// An operator asked it to drain (`drain` in its heartbeat replies until it stops).
    pub drain_requested: bool,
    /// When it registered (ms since the epoch).
    pub registered_ms: u64,
    /// Ended jobs whose shuffle files it may hold, to drop: told with its next heartbeat.
    pub to_drop: Vec<String>,
    /// A reducer could not reach it since its last heartbeat: its map outputs were re-run,
    /// its running attempts may get backups, and it gets no new task until it heartbeats
    /// again. It is lost at the usual worker timeout if it never does.
    pub suspect: bool,
    /// Attempts handed to it in report replies so far: a held heartbeat whose worker got
    /// one meanwhile no longer knows its free slots, and ends.
    pub refilled: u64,
    /// Issued at registration; the worker's calls must carry it.
    secret: String,
}

/// Why a call made as a worker is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WorkerAuthError {
    /// No worker has this id: it was lost, or registered with an earlier coordinator run.
    #[error(
        "worker {worker} is not registered (lost, or from before a coordinator restart): register again"
    )]
    Unknown {
        /// The id given.
        worker: WorkerId,
    },
    /// The id is registered, but the secret given is not the one issued with it.
    #[error("worker {worker}: wrong registration secret")]
    WrongSecret {
        /// The id given.
        worker: WorkerId,
    },
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
            boot: format!("{:x}", crate::clock::now_ms() % (1 << 32)),
            next: 0,
            by_id: HashMap::new(),
        }
    }
}

impl WorkerInfo {
    /// Whether a task of a job with `task_memory` fits in the share of one of its slots.
    pub fn fits(&self, task_memory: u64) -> bool {
        fits(self.memory, self.slots, task_memory)
    }
}

/// Whether `task_memory` fits in one slot's share of `memory` over `slots` (0: not capped).
pub fn fits(memory: u64, slots: u32, task_memory: u64) -> bool {
    memory == 0 || task_memory <= memory / u64::from(slots.max(1))
}

impl Workers {
    /// Registers a worker and returns its new id. A restarted worker is a new worker.
    pub fn register(
        &mut self,
        shuffle_addr: String,
        slots: u32,
        memory: u64,
        secret: String,
    ) -> WorkerId {
        self.next += 1;
        let id = WorkerId::new(format!("worker-{}-{}", self.boot, self.next));
        self.by_id.insert(
            id.clone(),
            WorkerInfo {
                shuffle_addr,
                slots,
                memory,
                last_seen: Instant::now(),
                running: 0,
                draining: false,
                drain_requested: false,
                registered_ms: crate::clock::now_ms(),
                to_drop: Vec::new(),
                suspect: false,
                refilled: 0,
                secret,
            },
        );
        id
    }

    /// The worker `id`, when `secret` is the one issued with it.
    pub fn authenticate(
        &mut self,
        id: &WorkerId,
        secret: &str,
    ) -> Result<&mut WorkerInfo, WorkerAuthError> {
        let info = self
            .by_id
            .get_mut(id)
            .ok_or_else(|| WorkerAuthError::Unknown { worker: id.clone() })?;
        if sluice_proto::transport::same_secret(info.secret.as_bytes(), secret.as_bytes()) {
            Ok(info)
        } else {
            Err(WorkerAuthError::WrongSecret { worker: id.clone() })
        }
    }

    /// The worker, if registered.
    pub fn get_mut(&mut self, id: &WorkerId) -> Option<&mut WorkerInfo> {
        self.by_id.get_mut(id)
    }

    /// The worker, if registered.
    pub fn get(&self, id: &WorkerId) -> Option<&WorkerInfo> {
        self.by_id.get(id)
    }

    /// Every registered worker, to change.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&WorkerId, &mut WorkerInfo)> {
        self.by_id.iter_mut()
    }

    /// Why a job of `task_memory` cannot run on the registered workers, if none has a slot
    /// with that much memory; `None` when one has, or when no worker registered yet.
    pub fn refuse_task_memory(&self, task_memory: u64) -> Option<String> {
        let largest = self
            .by_id
            .iter()
            .map(|(id, w)| (w.memory / u64::from(w.slots.max(1)), w.memory, id))
            .max_by_key(|(share, memory, _)| (*memory == 0, *share))?;
        if self.by_id.values().any(|w| w.fits(task_memory)) {
            return None;
        }
        let (share, _, id) = largest;
        Some(format!(
            "task memory of {task_memory} bytes exceeds what any worker gives a task slot \
             (largest: {share} bytes on {id}, its --memory divided by its --slots): lower \
             --task-memory or give the workers more memory"
        ))
    }

    /// Task slots of the workers taking tasks (not draining, not suspect).
    pub fn active_slots(&self) -> u32 {
        self.by_id
            .values()
            .filter(|w| !w.draining && !w.suspect)
            .map(|w| w.slots)
            .fold(0u32, u32::saturating_add)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_fits_in_one_slots_share_of_the_workers_memory() {
        assert!(fits(4 << 30, 4, 1 << 30));
        assert!(!fits(4 << 30, 4, (1 << 30) + 1));
        assert!(fits(0, 4, u64::MAX), "0 is not capped");
        assert!(fits(1 << 30, 0, 1 << 30), "no slots counts as one");
    }

    #[test]
    fn a_job_is_refused_only_when_no_registered_worker_has_room() {
        let mut w = Workers::default();
        assert_eq!(w.refuse_task_memory(u64::MAX), None, "no worker yet");
        w.register("a:1".into(), 2, 2 << 30, "s".into());
        let small = w.register("b:1".into(), 4, 2 << 30, "s".into());
        assert_eq!(w.refuse_task_memory(1 << 30), None);
        let why = w.refuse_task_memory(2 << 30).unwrap();
        assert!(why.contains("1073741824 bytes"), "{why}");
        assert!(
            !why.contains(small.as_str()),
            "names the largest slot: {why}"
        );
        w.register("c:1".into(), 1, 0, "s".into());
        assert_eq!(
            w.refuse_task_memory(u64::MAX),
            None,
            "an uncapped worker takes it"
        );
    }

    #[test]
    fn only_the_secret_issued_with_an_id_acts_for_that_worker() {
        let mut w = Workers::default();
        let a = w.register("a:1".into(), 2, 0, "secret-a".into());
        let b = w.register("b:1".into(), 2, 0, "secret-b".into());
        assert_eq!(w.authenticate(&a, "secret-a").unwrap().shuffle_addr, "a:1");
        assert_eq!(
            w.authenticate(&a, "secret-b").unwrap_err(),
            WorkerAuthError::WrongSecret { worker: a.clone() }
        );
        assert!(
            w.authenticate(&b, "").is_err(),
            "an empty secret is no secret"
        );
        let gone = WorkerId::new("worker-0-99");
        assert_eq!(
            w.authenticate(&gone, "secret-a").unwrap_err(),
            WorkerAuthError::Unknown { worker: gone }
        );
    }
}
