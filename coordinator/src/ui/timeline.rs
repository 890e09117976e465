//! A job's task timeline, drawn as SVG from its events (as Spark's event timeline): one
//! row per task, maps first, one bar per attempt coloured by how it ended, a line where a
//! worker was lost or found unreachable. Building the [`Timeline`] is a pure function of
//! the events and the time it is drawn at.

use std::collections::BTreeMap;

use maud::{Markup, html};
use sluice_proto::pb;

/// One attempt's bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bar {
    /// The task, `map-3`.
    pub task: String,
    /// The attempt.
    pub attempt: u32,
    /// Where it ran.
    pub worker: String,
    /// Start and end (ms since the epoch); the end is the drawing time while it runs.
    pub from_ms: u64,
    /// See `from_ms`.
    pub to_ms: u64,
    /// `running`, or the event that ended it (`finished`, `failed`, `lost`, …).
    pub state: String,
    /// It was a backup attempt, or a re-run of a map whose output was lost.
    pub note: &'static str,
    /// The ending event's detail.
    pub detail: String,
}

/// A moment a worker was lost or unreachable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// When.
    pub at_ms: u64,
    /// `worker-lost` or `worker-unreachable`.
    pub kind: String,
    /// The worker.
    pub worker: String,
}

/// What the timeline draws.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timeline {
    /// Tasks in row order: maps by index, then reduces.
    pub rows: Vec<String>,
    /// Every attempt.
    pub bars: Vec<Bar>,
    /// Worker losses.
    pub marks: Vec<Mark>,
    /// The span drawn.
    pub start_ms: u64,
    /// See `start_ms`.
    pub end_ms: u64,
}

/// Orders `map-2` before `map-10` before `reduce-0`.
fn row_key(task: &str) -> (u8, u64) {
    let (kind, index) = task.split_once('-').unwrap_or((task, ""));
    (u8::from(kind != "map"), index.parse().unwrap_or(u64::MAX))
}

/// The timeline of `events`, drawn at `now_ms`.
pub fn build(events: &[pb::JobEvent], now_ms: u64) -> Timeline {
    let mut t = Timeline::default();
    let Some(first) = events.first() else {
        return t;
    };
    t.start_ms = first.at_ms;
    let mut end = None;
    let mut open: BTreeMap<(String, u32), usize> = BTreeMap::new();
    let mut rerun: std::collections::HashSet<String> = Default::default();
    for e in events {
        match e.kind.as_str() {
            "started" | "backup" => {
                let note = if e.kind == "backup" {
                    "backup"
                } else if rerun.remove(&e.task) {
                    "re-run"
                } else {
                    ""
                };
                open.insert((e.task.clone(), e.attempt), t.bars.len());
                t.bars.push(Bar {
                    task: e.task.clone(),
                    attempt: e.attempt,
                    worker: e.worker.clone(),
                    from_ms: e.at_ms,
                    to_ms: e.at_ms,
                    state: "running".into(),
                    note,
                    detail: String::new(),
                });
            }
            "finished" | "failed" | "fetch-failed" | "lost" | "killed" => {
                if let Some(i) = open.remove(&(e.task.clone(), e.attempt)) {
                    let bar = &mut t.bars[i];
                    bar.to_ms = e.at_ms;
                    bar.state = e.kind.clone();
                    bar.detail = e.detail.clone();
                }
            }
            "map-rerun" => {
                rerun.insert(e.task.clone());
            }
            "worker-lost" | "worker-unreachable" => t.marks.push(Mark {
                at_ms: e.at_ms,
                kind: e.kind.clone(),
                worker: e.worker.clone(),
            }),
            "succeeded" | "job-failed" | "cancelled" | "commit-failed" => end = Some(e.at_ms),
            _ => {}
        }
    }
    // Attempts still open run until now, or until the job ended.
    let until = end.unwrap_or(now_ms).max(t.start_ms);
    for &i in open.values() {
        t.bars[i].to_ms = until;
    }
    t.end_ms = until.max(t.bars.iter().map(|b| b.to_ms).max().unwrap_or(0));
    let mut rows: Vec<String> = t.bars.iter().map(|b| b.task.clone()).collect();
    rows.sort_by_key(|r| row_key(r));
    rows.dedup();
    t.rows = rows;
    t
}

/// Width of the drawing, in SVG units (it scales to the page).
const WIDTH: f64 = 1000.0;
/// Room for task names on the left.
const LABELS: f64 = 90.0;

/// The timeline as an SVG element.
pub fn svg(t: &Timeline) -> Markup {
    if t.bars.is_empty() {
        return html! { p.muted { "No attempt has started yet." } };
    }
    let row_h: f64 = (600.0 / t.rows.len() as f64).clamp(3.0, 16.0);
    let height = row_h * t.rows.len() as f64 + 24.0;
    let span = (t.end_ms.saturating_sub(t.start_ms)).max(1) as f64;
    let x = |ms: u64| LABELS + (ms.saturating_sub(t.start_ms)) as f64 / span * (WIDTH - LABELS);
    let row_of: BTreeMap<&str, usize> = t
        .rows
        .iter()
        .enumerate()
        .map(|(i, r)| (r.as_str(), i))
        .collect();
    let label_every = (12.0 / row_h).ceil().max(1.0) as usize;
    html! {
        svg.timeline xmlns="http://www.w3.org/2000/svg" viewBox=(format!("0 0 {WIDTH} {height}"))
            role="img" aria-label="task timeline" {
            @for (i, row) in t.rows.iter().enumerate() {
                @if i % label_every == 0 {
                    text.row-label x="2" y=(format!("{:.1}", row_h * i as f64 + row_h * 0.8)) font-size=(format!("{:.1}", row_h.clamp(8.0, 11.0))) { (row) }
                }
            }
            @for b in &t.bars {
                @let y = row_h * row_of.get(b.task.as_str()).copied().unwrap_or(0) as f64;
                @let x0 = x(b.from_ms);
                @let w = (x(b.to_ms) - x0).max(1.5);
                rect class=(format!("bar {} {}", b.state, b.note)) data-task=(b.task) data-attempt=(b.attempt)
                    x=(format!("{x0:.1}")) y=(format!("{:.1}", y + 0.5)) width=(format!("{w:.1}")) height=(format!("{:.1}", (row_h - 1.0).max(1.0))) {
                    title { (b.task) " #" (b.attempt) " on " (b.worker) ": " (b.state) " " (b.note)
                        @if !b.detail.is_empty() { " — " (b.detail) } }
                }
            }
            @for m in &t.marks {
                @let mx = x(m.at_ms);
                line class=(format!("mark {}", m.kind)) x1=(format!("{mx:.1}")) x2=(format!("{mx:.1}")) y1="0" y2=(format!("{:.1}", height - 20.0)) {
                    title { (m.kind) ": " (m.worker) }
                }
                text.mark-label x=(format!("{:.1}", mx + 2.0)) y=(format!("{:.1}", height - 8.0)) font-size="10" { (m.kind) " " (m.worker) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: u64, at: u64, kind: &str, task: &str, attempt: u32, worker: &str) -> pb::JobEvent {
        pb::JobEvent {
            seq,
            at_ms: at,
            kind: kind.into(),
            task: task.into(),
            attempt,
            worker: worker.into(),
            detail: String::new(),
        }
    }

    #[test]
    fn attempts_become_bars_and_a_lost_worker_a_mark() {
        let events = [
            ev(1, 1000, "planned", "", 0, ""),
            ev(2, 1010, "started", "map-10", 0, "w1"),
            ev(3, 1010, "started", "map-2", 0, "w2"),
            ev(4, 1500, "finished", "map-2", 0, "w2"),
            ev(5, 1600, "worker-lost", "", 0, "w1"),
            ev(6, 1600, "lost", "map-10", 0, "w1"),
            ev(7, 1600, "map-rerun", "map-2", 0, "w2"),
            ev(8, 1700, "started", "map-2", 1, "w3"),
            ev(9, 1700, "started", "reduce-0", 0, "w3"),
        ];
        let t = build(&events, 2000);
        assert_eq!(t.rows, ["map-2", "map-10", "reduce-0"]);
        assert_eq!(t.bars.len(), 4);
        assert_eq!(t.bars[0].state, "lost");
        assert_eq!(t.bars[1].to_ms, 1500);
        assert_eq!(
            (t.bars[2].note, t.bars[2].state.as_str()),
            ("re-run", "running")
        );
        assert_eq!(
            t.bars[3].to_ms, 2000,
            "a running attempt runs until the drawing"
        );
        assert_eq!(t.marks.len(), 1);
        assert_eq!((t.start_ms, t.end_ms), (1000, 2000));
        let drawn = svg(&t).into_string();
        assert_eq!(drawn.matches("<rect").count(), 4);
        assert!(drawn.contains("class=\"bar lost \""), "{drawn}");
        assert!(drawn.contains("class=\"mark worker-lost\""), "{drawn}");
    }

    #[test]
    fn an_ended_job_closes_its_open_attempts_at_its_end() {
        let events = [
            ev(1, 1000, "started", "map-0", 0, "w1"),
            ev(2, 1200, "job-failed", "", 0, ""),
        ];
        let t = build(&events, 9000);
        assert_eq!(t.bars[0].to_ms, 1200);
        assert_eq!(t.end_ms, 1200);
        assert!(build(&[], 5).bars.is_empty());
    }
}
