//! The list pages: jobs (filtered and paged from the job store), workers, and the nightly
//! machinery (pipeline runs, schedules, queues).

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use sluice_proto::pb;

use super::{ActionForm, Ui, action_button, bytes, error_page, progress, render, took, when};
use crate::state_name;
use crate::store::listing::JobFilter;

/// Jobs on one page.
const PAGE: u32 = 50;

/// The jobs page's query.
#[derive(serde::Deserialize, Default)]
pub(super) struct JobsQuery {
    #[serde(default)]
    state: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    run_key: String,
    #[serde(default)]
    page: u64,
}

/// States a filter may name.
const STATES: [&str; 5] = [
    "running",
    "succeeded",
    "failed",
    "cancelled",
    "commit-failed",
];

/// The query string of `q` at page `page`.
fn query_at(q: &JobsQuery, page: u64) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    format!(
        "?state={}&name={}&run_key={}&page={page}",
        enc(&q.state),
        enc(&q.name),
        enc(&q.run_key)
    )
}

pub(super) async fn jobs(
    State(ui): State<Ui>,
    headers: HeaderMap,
    Query(q): Query<JobsQuery>,
) -> Response {
    let state = if STATES.contains(&q.state.as_str()) {
        q.state.clone()
    } else {
        String::new()
    };
    let filter = JobFilter {
        state,
        name: q.name.chars().take(200).collect(),
        run_key: q.run_key.chars().take(200).collect(),
    };
    let offset = q.page.min(1_000_000) * u64::from(PAGE);
    let reader = ui.service.reader().clone();
    let read = tokio::task::spawn_blocking(move || reader.jobs(&filter, offset, PAGE)).await;
    let page = match read {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => return error_page(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        Err(e) => return error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let last_page = page.total.saturating_sub(1) / u64::from(PAGE);
    let body = html! {
        h1 { "Jobs" }
        form.filters method="get" action="/ui/jobs" {
            select name="state" aria-label="state" {
                option value="" { "any state" }
                @for s in STATES { option value=(s) selected[q.state == s] { (s) } }
            }
            input type="search" name="name" placeholder="name" value=(q.name) aria-label="name";
            input type="search" name="run_key" placeholder="run key" value=(q.run_key) aria-label="run key";
            button type="submit" { "Filter" }
        }
        p.muted { (page.total) " job(s)" @if page.total > u64::from(PAGE) { ", page " (q.page + 1) " of " (last_page + 1) } }
        div.scroll {
            table #jobs {
                thead { tr {
                    th { "Job" } th { "Name" } th { "State" } th { "Maps" } th { "Reduces" }
                    th.hide-narrow { "Run key" } th.hide-narrow { "Submitted" } th { "Took" } th.hide-narrow { "Rows out" }
                } }
                tbody {
                    @for j in &page.jobs {
                        tr data-job=(j.job_id) {
                            td { a href=(format!("/ui/jobs/{}", j.job_id)) { (j.job_id) } }
                            td { (j.name) }
                            td { span class=(format!("badge {}", state_name(j.state))) { (state_name(j.state)) } }
                            td { (progress(j.maps_done, j.maps_total)) " " (j.maps_done) "/" (j.maps_total) }
                            td { (progress(j.reduces_done, j.reduces_total)) " " (j.reduces_done) "/" (j.reduces_total) }
                            td.hide-narrow { (j.run_key) }
                            td.hide-narrow { (when(j.submitted_ms)) }
                            td { (took(j.submitted_ms, j.finished_ms)) }
                            td.hide-narrow { (j.rows_out) }
                        }
                    }
                }
            }
        }
        p {
            @if q.page > 0 { a href=(format!("/ui/jobs{}", query_at(&q, q.page - 1))) { "← newer" } " " }
            @if q.page < last_page { a href=(format!("/ui/jobs{}", query_at(&q, q.page + 1))) { "older →" } }
        }
    };
    render(&ui, &headers, "Jobs", "/ui/jobs", true, body)
}

fn worker_state(w: &pb::WorkerInfo) -> &'static str {
    if w.lost {
        "lost"
    } else if w.draining {
        "draining"
    } else if w.suspect {
        "suspect"
    } else {
        "running"
    }
}

pub(super) async fn workers(State(ui): State<Ui>, headers: HeaderMap) -> Response {
    let workers = ui.service.workers_view();
    let body = html! {
        h1 { "Workers" }
        div.scroll {
            table #workers {
                thead { tr {
                    th { "Worker" } th { "State" } th { "Slots" } th { "Running" } th { "Last heartbeat" }
                    th { "Shuffle held" } th.hide-narrow { "Shuffle address" } th.hide-narrow { "Memory" } th.hide-narrow { "Registered" } th {}
                } }
                tbody {
                    @for w in &workers {
                        tr data-worker=(w.worker_id) data-state=(worker_state(w)) {
                            td { (w.worker_id) }
                            td { span class=(format!("badge {}", worker_state(w))) { (worker_state(w)) } }
                            td { (w.slots) }
                            td { (w.running) }
                            td { @if w.lost { "lost at " (when(w.lost_ms)) } @else { (format!("{:.1} s ago", w.last_heartbeat_ms_ago as f64 / 1000.0)) } }
                            td.shuffle-held { (bytes(w.shuffle_bytes)) }
                            td.hide-narrow { (w.shuffle_addr) }
                            td.hide-narrow { @if w.memory > 0 { (bytes(w.memory)) } }
                            td.hide-narrow { (when(w.registered_ms)) }
                            td { @if !w.lost && !w.draining {
                                (action_button(&ui, &format!("/ui/workers/{}/drain", w.worker_id), "Drain", &format!("drain-{}", w.worker_id)))
                            } }
                        }
                    }
                }
            }
        }
        p.muted { "A drained worker finishes its running attempts, takes no new ones and stops." }
    };
    render(&ui, &headers, "Workers", "/ui/workers", true, body)
}

pub(super) async fn drain(
    State(ui): State<Ui>,
    Path(id): Path<String>,
    axum::Form(form): axum::Form<ActionForm>,
) -> Response {
    if let Some(refused) = super::refuse_forged(&ui, &form) {
        return refused;
    }
    if !ui.service.drain_worker(&id) {
        return error_page(StatusCode::NOT_FOUND, &format!("no registered worker {id}"));
    }
    Redirect::to("/ui/workers").into_response()
}

pub(super) async fn nightly(State(ui): State<Ui>, headers: HeaderMap) -> Response {
    let pipelines = ui.service.recent_pipelines(50);
    let schedules = ui.service.list_schedules().schedules;
    let queues = ui.service.queues_view();
    let body = html! {
        h1 { "Pipelines & schedules" }
        h2 { "Pipeline runs" }
        @if pipelines.is_empty() { p.muted { "No pipeline has run." } } @else {
            div.scroll { table #pipelines {
                thead { tr { th { "Run" } th { "Name" } th { "Run key" } th { "State" } th { "Steps" } th { "Submitted" } th { "Took" } } }
                tbody { @for p in &pipelines { tr {
                    td { (p.run_id) } td { (p.name) } td { (p.run_key) }
                    td { span class=(format!("badge {}", p.state)) { (p.state) } @if !p.error.is_empty() { div.error { (p.error) } } }
                    td { @for s in &p.steps {
                        div { (s.name) ": " span class=(format!("badge {}", s.state)) { (s.state) }
                            @if !s.job_id.is_empty() { " " a href=(format!("/ui/jobs/{}", s.job_id)) { (s.job_id) } } }
                    } }
                    td { (when(p.submitted_ms)) } td { (took(p.submitted_ms, p.finished_ms)) }
                } } }
            } }
        }
        h2 { "Schedules" }
        @if schedules.is_empty() { p.muted { "No schedule." } } @else {
            div.scroll { table #schedules {
                thead { tr { th { "Name" } th { "Cron" } th { "Zone" } th { "Next" } th { "Last" } th { "Last run" } } }
                tbody { @for s in &schedules { @let spec = s.schedule.clone().unwrap_or_default(); tr {
                    td { (spec.name) @if spec.paused { " " span.badge { "paused" } } }
                    td { code { (spec.cron) } } td { (if spec.tz.is_empty() { "UTC" } else { spec.tz.as_str() }) }
                    td { (when(s.next_ms)) } td { (when(s.last_ms)) } td { (s.last_run) }
                } } }
            } }
        }
        h2 { "Queues" }
        table #queues {
            thead { tr { th { "Queue" } th { "Weight" } th { "Jobs at most" } th { "Tasks running" } } }
            tbody { @for (name, weight, max, running) in &queues { tr {
                td { (name) } td { (weight) } td { @if *max == 0 { "no cap" } @else { (max) } } td { (running) }
            } } }
        }
    };
    render(
        &ui,
        &headers,
        "Pipelines & schedules",
        "/ui/nightly",
        true,
        body,
    )
}
