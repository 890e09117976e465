//! One job's page: what it is, its progress by stage, counters and bad records, its
//! `_SUCCESS` manifest, the task timeline, every attempt (with its worker, duration, rows
//! and bytes or error, and log), its lineage (what each reduce read, which map outputs were re-run) and its
//! events; an attempt's log; cancelling it.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use sluice_proto::pb;

use super::{ActionForm, Ui, action_button, bytes, error_page, progress, render, took, when};
use crate::state_name;

/// Events listed under the timeline at most (the newest).
const EVENTS_LISTED: usize = 300;

/// Bytes of `_SUCCESS` shown at most.
const MANIFEST_SHOWN: u64 = 64 << 10;

/// What the page reads from the store, off the scheduler's lock.
struct Stored {
    info: pb::JobInfo,
    spec: pb::JobSpec,
    events: Vec<pb::JobEvent>,
    attempts: Vec<pb::AttemptInfo>,
    manifest: Option<String>,
}

fn read_stored(ui: &Ui, id: &str) -> Result<Option<Stored>, String> {
    let reader = ui.service.reader();
    let Some((info, spec)) = reader.job(id).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let events = reader
        .events(id, 0, crate::store::MAX_EVENTS)
        .map_err(|e| e.to_string())?
        .unwrap_or_default();
    let attempts = reader
        .attempts(id)
        .map_err(|e| e.to_string())?
        .unwrap_or_default();
    let manifest = local_manifest(&info.output);
    Ok(Some(Stored {
        info,
        spec,
        events,
        attempts,
        manifest,
    }))
}

/// The `_SUCCESS` of a local output, if written (an object store's is not fetched here).
fn local_manifest(output: &str) -> Option<String> {
    if output.contains("://") && !output.starts_with("file://") {
        return None;
    }
    let dir = output.strip_prefix("file://").unwrap_or(output);
    let path = std::path::Path::new(dir).join("_SUCCESS");
    let file = std::fs::File::open(path).ok()?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::Read::take(file, MANIFEST_SHOWN), &mut text)
        .ok()?;
    Some(text)
}

pub(super) async fn page(
    State(ui): State<Ui>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    // A job the scheduler holds is fresher there than in the store (progress is journaled
    // about a hundred times a job); one it no longer holds is read once the store has all.
    let live = ui.service.live_job(&id);
    let reading = ui.clone();
    let job = id.clone();
    let sync = live.is_none();
    let read = move || {
        if sync {
            reading.service.sync_store();
        }
        read_stored(&reading, &job)
    };
    let stored = match tokio::task::spawn_blocking(read).await {
        Ok(Ok(Some(s))) => s,
        Ok(Ok(None)) => return error_page(StatusCode::NOT_FOUND, &format!("no job {id}")),
        Ok(Err(e)) => return error_page(StatusCode::SERVICE_UNAVAILABLE, &e),
        Err(e) => return error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let mut info = stored.info.clone();
    if let Some(l) = &live {
        let (counters, bad) = (info.counters.clone(), info.bad_by_kind.clone());
        info = l.clone();
        if info.counters.is_empty() {
            info.counters = counters;
        }
        if info.bad_by_kind.is_empty() {
            info.bad_by_kind = bad;
        }
    }
    let running = live.is_some();
    let now = crate::clock::now_ms();
    let timeline = super::timeline::build(&stored.events, now);
    let body = html! {
        h1 { (info.job_id) " " span.muted { (info.name) } " "
            span #job-state class=(format!("badge {}", state_name(info.state))) { (state_name(info.state)) } }
        @if running {
            p { (action_button(&ui, &format!("/ui/jobs/{}/cancel", info.job_id), "Cancel job", "cancel")) }
        }
        @if !info.error.is_empty() { p.error #job-error { (info.error) } }
        (summary(&info, &stored.spec))
        h2 { "Progress" }
        table #progress {
            tr { th { "Maps" } td #progress-maps { (info.maps_done) "/" (info.maps_total) } td { (progress(info.maps_done, info.maps_total)) } }
            tr { th { "Reduces" } td #progress-reduces { (info.reduces_done) "/" (info.reduces_total) } td { (progress(info.reduces_done, info.reduces_total)) } }
        }
        (counters(&info))
        h2 { "Timeline" }
        p.legend {
            span { i.finished {} "finished" } span { i.failed {} "failed" }
            span { i.lost {} "lost with its worker" } span { i.killed {} "killed" }
            span { i.running {} "running" } span { "outlined: re-run of a lost map output" }
        }
        (super::timeline::svg(&timeline))
        (attempts(&info.job_id, &stored.attempts, &stored.events))
        (lineage(&stored.events))
        @if let Some(m) = &stored.manifest { h2 { "_SUCCESS" } pre #manifest { (m) } }
        h2 { "Events" }
        (events(&stored.events))
    };
    render(&ui, &headers, &id, "/ui/jobs", running, body)
}

fn summary(info: &pb::JobInfo, spec: &pb::JobSpec) -> Markup {
    html! {
        dl.facts {
            dt { "Submitted" } dd { (when(info.submitted_ms)) }
            dt { "Took" } dd { (took(info.submitted_ms, info.finished_ms)) }
            @if !info.run_key.is_empty() { dt { "Run key" } dd { (info.run_key) } }
            dt { "Plugin sha256" } dd { code { (info.plugin_sha256) } }
            dt { "Inputs" } dd { @for i in &spec.inputs { div { code { (i) } } } }
            @if !spec.sides.is_empty() { dt { "Side inputs" } dd { @for s in &spec.sides { div { code { (s) } } } } }
            dt { "Output" } dd { code { (info.output) } }
            dt { "Reducers" } dd { (spec.reducers) }
            @if !spec.params.is_empty() { dt { "Parameters" } dd { @for (k, v) in &spec.params { div { code { (k) "=" (v) } } } } }
            @if !spec.queue.is_empty() { dt { "Queue" } dd { (spec.queue) " (priority " (spec.priority) ")" } }
            dt { "Rows" } dd { (info.rows_in) " in, " (info.rows_out) " out" }
            dt { "Shuffle" } dd { (bytes(info.shuffle_bytes)) }
            dt { "Attempts" } dd { (info.attempts) " (" (info.failed_attempts) " failed)" }
        }
    }
}

fn counters(info: &pb::JobInfo) -> Markup {
    html! {
        @if !info.counters.is_empty() {
            h2 { "Counters" }
            table #counters { @for (k, v) in &info.counters { tr { th { (k) } td { (v) } } } }
        }
        @if info.bad_records > 0 || !info.bad_by_kind.is_empty() {
            h2 { "Bad records" }
            table #bad-records {
                tr { th { "all" } td { (info.bad_records) } }
                @for (k, v) in &info.bad_by_kind { tr { th { (k) } td { (v) } } }
            }
        }
    }
}

/// Every attempt, with what it read and wrote (its `finished` event's detail: rows and
/// bytes) or its error.
fn attempts(job: &str, attempts: &[pb::AttemptInfo], events: &[pb::JobEvent]) -> Markup {
    let results: std::collections::HashMap<(&str, u32), &str> = events
        .iter()
        .filter(|e| e.kind == "finished")
        .map(|e| ((e.task.as_str(), e.attempt), e.detail.as_str()))
        .collect();
    let mut sorted: Vec<&pb::AttemptInfo> = attempts.iter().collect();
    sorted.sort_by(|a, b| {
        sluice_common::ids::natural_cmp(&a.task, &b.task).then(a.attempt.cmp(&b.attempt))
    });
    html! {
        h2 { "Attempts" }
        div.scroll { table #attempts {
            thead { tr { th { "Task" } th { "#" } th { "Worker" } th { "State" } th { "Took" } th { "Result or error" } th { "Log" } } }
            tbody { @for a in sorted {
                tr data-task=(a.task) data-attempt=(a.attempt) data-state=(a.state) {
                    td { (a.task) } td { (a.attempt) } td { (a.worker) }
                    td { span class=(format!("badge {}", a.state)) { (a.state) } }
                    td { (if a.finished_ms > 0 { took(a.started_ms, a.finished_ms) } else { "running".into() }) }
                    @if a.error.is_empty() {
                        td.result { (results.get(&(a.task.as_str(), a.attempt)).copied().unwrap_or("")) }
                    } @else {
                        td.error { (a.error) }
                    }
                    td { a.log href=(format!("/ui/jobs/{job}/log?task={}&attempt={}", a.task, a.attempt)) { "log" } }
                }
            } }
        } }
    }
}

/// What each reduce read, and which map outputs ran again and why, from the events.
fn lineage(events: &[pb::JobEvent]) -> Markup {
    let reads: Vec<&pb::JobEvent> = events
        .iter()
        .filter(|e| e.kind == "finished" && e.task.starts_with("reduce-"))
        .collect();
    let reruns: Vec<&pb::JobEvent> = events.iter().filter(|e| e.kind == "map-rerun").collect();
    html! {
        h2 { "Lineage" }
        @if reruns.is_empty() { p.muted #reruns { "No map output was lost: every reduce read the first output of each map." } } @else {
            table #reruns {
                thead { tr { th { "Map" } th { "Lost output of attempt" } th { "On" } th { "Why" } th { "When" } } }
                tbody { @for e in &reruns { tr { td { (e.task) } td { (e.attempt) } td { (e.worker) } td { (e.detail) } td { (when(e.at_ms)) } } } }
            }
        }
        @if !reads.is_empty() {
            table #reads {
                thead { tr { th { "Reduce" } th { "#" } th { "Read and wrote" } } }
                tbody { @for e in &reads { tr { td { (e.task) } td { (e.attempt) } td { (e.detail) } } } }
            }
        }
    }
}

fn events(events: &[pb::JobEvent]) -> Markup {
    let skip = events.len().saturating_sub(EVENTS_LISTED);
    html! {
        @if skip > 0 { p.muted { "The " (EVENTS_LISTED) " latest of " (events.len()) " events (all: sluice events JOB)." } }
        div.scroll { table #events {
            thead { tr { th { "When" } th { "Event" } th { "Task" } th { "Worker" } th { "Detail" } } }
            tbody { @for e in events.iter().skip(skip) {
                tr data-kind=(e.kind) {
                    td { (when(e.at_ms)) }
                    td { span class=(format!("badge {}", e.kind)) { (e.kind) } }
                    td { @if !e.task.is_empty() { (e.task) " #" (e.attempt) } }
                    td { (e.worker) } td { (e.detail) }
                }
            } }
        } }
    }
}

/// The log page's query.
#[derive(serde::Deserialize)]
pub(super) struct LogQuery {
    task: String,
    #[serde(default)]
    attempt: u32,
}

pub(super) async fn log(
    State(ui): State<Ui>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<LogQuery>,
) -> Response {
    let req = pb::AttemptLogRequest {
        job_id: id.clone(),
        task: q.task.clone(),
        attempt: q.attempt,
        offset: 0,
        max_bytes: 0,
    };
    let read = ui.service.read_attempt_log(req).await;
    let running = ui.service.live_job(&id).is_some();
    let body = html! {
        p { a href=(format!("/ui/jobs/{id}")) { "← " (id) } }
        h1 { (q.task) " attempt " (q.attempt) }
        @match &read {
            Ok(piece) => {
                p.muted { "On " (piece.worker_id) ", " (bytes(piece.size)) }
                pre #log { (String::from_utf8_lossy(&piece.data)) }
            }
            Err(status) => { p.error #log-error { (status.message()) } }
        }
    };
    let title = format!("{} {} #{}", id, q.task, q.attempt);
    render(&ui, &headers, &title, "/ui/jobs", running, body)
}

pub(super) async fn cancel(
    State(ui): State<Ui>,
    Path(id): Path<String>,
    axum::Form(form): axum::Form<ActionForm>,
) -> Response {
    if let Some(refused) = super::refuse_forged(&ui, &form) {
        return refused;
    }
    match ui.service.cancel_from_ui(&id).await {
        Ok(_) => Redirect::to(&format!("/ui/jobs/{id}")).into_response(),
        Err(status) => error_page(StatusCode::BAD_REQUEST, status.message()),
    }
}
