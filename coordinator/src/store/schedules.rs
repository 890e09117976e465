//! The job store's schedules: each with its definition, the scheduled time it last fired
//! for and what that firing started, so a restarted coordinator neither misses nor repeats
//! a time (repeats are also stopped by the firing's run key).

use rusqlite::{Connection, Transaction, params};

/// The schedules table.
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS schedules (
    name TEXT PRIMARY KEY,
    schedule BLOB NOT NULL,
    last_ms INTEGER NOT NULL,
    last_run TEXT NOT NULL DEFAULT ''
);
";

/// A change to the schedules.
#[derive(Debug)]
pub enum ScheduleEvent {
    /// A schedule was added, replaced, paused or resumed.
    Saved {
        /// Its name.
        name: String,
        /// The encoded `pb::Schedule`.
        schedule: Vec<u8>,
        /// The scheduled time it last fired for (or was made at).
        last_ms: u64,
    },
    /// A schedule was removed.
    Removed {
        /// Its name.
        name: String,
    },
    /// A schedule fired.
    Fired {
        /// Its name.
        name: String,
        /// The scheduled time, ms since the Unix epoch.
        at_ms: u64,
        /// What it started, or why it could not.
        run: String,
    },
}

/// A schedule as the store holds it.
#[derive(Debug, Clone)]
pub struct StoredSchedule {
    /// Its name.
    pub name: String,
    /// The encoded `pb::Schedule`.
    pub schedule: Vec<u8>,
    /// The scheduled time it last fired for.
    pub last_ms: u64,
    /// What that firing started.
    pub last_run: String,
}

pub(super) fn apply(tx: &Transaction<'_>, event: &ScheduleEvent) -> rusqlite::Result<()> {
    match event {
        ScheduleEvent::Saved {
            name,
            schedule,
            last_ms,
        } => tx.execute(
            "INSERT INTO schedules (name, schedule, last_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET schedule = excluded.schedule, last_ms = excluded.last_ms",
            params![name, schedule, *last_ms as i64],
        ),
        ScheduleEvent::Removed { name } => {
            tx.execute("DELETE FROM schedules WHERE name = ?1", params![name])
        }
        ScheduleEvent::Fired { name, at_ms, run } => tx.execute(
            "UPDATE schedules SET last_ms = MAX(last_ms, ?2), last_run = ?3 WHERE name = ?1",
            params![name, *at_ms as i64, run],
        ),
    }
    .map(drop)
}

/// Every schedule, by name.
pub(super) fn read(conn: &Connection) -> rusqlite::Result<Vec<StoredSchedule>> {
    let mut stmt =
        conn.prepare("SELECT name, schedule, last_ms, last_run FROM schedules ORDER BY name")?;
    stmt.query_map([], |r| {
        Ok(StoredSchedule {
            name: r.get(0)?,
            schedule: r.get(1)?,
            last_ms: r.get::<_, i64>(2)? as u64,
            last_run: r.get(3)?,
        })
    })?
    .collect()
}
