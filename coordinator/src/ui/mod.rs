//! The web UI, served on the coordinator's HTTP port under `/ui`.
//!
//! Pages are rendered on the server with `maud` (escaping every value) from the job store
//! ([`crate::store::Reader`], off the scheduler's lock) and from bounded reads of the
//! scheduler's state ([`crate::service`]'s views). The stylesheet and the one small script
//! are compiled into the binary: no network at run time, no JavaScript build. A live page
//! (`<div id="live" data-live="true">`) re-fetches its `<main>` every two seconds (the
//! `x-sluice-partial` header asks for it alone) and stops once its job has ended.
//!
//! - [`auth`]: who may see what (login cookie, bearer token, CSRF on every action).
//! - [`pages`]: jobs, workers, pipelines, schedules and queues; [`job`]: one job, its
//!   attempts, timeline ([`timeline`]), lineage, events and attempt logs.

pub mod auth;
mod job;
mod pages;
pub mod timeline;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{DOCTYPE, Markup, html};

use crate::service::CoordinatorService;
use auth::{Access, SESSION_COOKIE, UiAuth};

const CSS: &str = include_str!("assets/app.css");
const JS: &str = include_str!("assets/app.js");

/// What every handler gets.
#[derive(Clone)]
pub struct Ui {
    /// The coordinator.
    pub service: CoordinatorService,
    /// Who may see it.
    pub auth: Arc<UiAuth>,
}

/// The UI's routes, all under `/ui` (and `/` redirecting there).
pub fn routes(ui: Ui) -> Router {
    let guarded = Router::new()
        .route("/ui", get(pages::jobs))
        .route("/ui/jobs", get(pages::jobs))
        .route("/ui/jobs/{id}", get(job::page))
        .route("/ui/jobs/{id}/log", get(job::log))
        .route("/ui/jobs/{id}/cancel", post(job::cancel))
        .route("/ui/workers", get(pages::workers))
        .route("/ui/workers/{id}/drain", post(pages::drain))
        .route("/ui/nightly", get(pages::nightly))
        .route_layer(middleware::from_fn_with_state(ui.clone(), guard));
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui") }))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/assets/app.css", get(css))
        .route("/ui/assets/app.js", get(js))
        .merge(guarded)
        .layer(middleware::from_fn(security_headers))
        .with_state(ui)
}

/// Lets a request through only with a session or the bearer token.
async fn guard(State(ui): State<Ui>, request: Request, next: Next) -> Response {
    let (access, browser) = {
        let headers = request.headers();
        let header = |name| {
            headers
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
        };
        let access = ui
            .auth
            .decide(header(header::COOKIE), header(header::AUTHORIZATION));
        let browser = request.method() == axum::http::Method::GET
            && header(header::ACCEPT).is_some_and(|a| a.contains("text/html"));
        (access, browser)
    };
    match access {
        Access::Granted => next.run(request).await,
        // A browser goes to the login form; anything else (a script, the live refresh)
        // gets the status alone. Neither carries any job data.
        Access::Login if browser => Redirect::to("/ui/login").into_response(),
        Access::Login => (
            StatusCode::UNAUTHORIZED,
            "log in at /ui/login, or send Authorization: Bearer TOKEN\n",
        )
            .into_response(),
        Access::Closed => (
            StatusCode::FORBIDDEN,
            "the web UI needs a cluster token (--token-file) when the HTTP port is not on \
             loopback\n",
        )
            .into_response(),
    }
}

/// Headers every reply carries: no framing (clickjacking a Cancel button), scripts and
/// styles from this origin only, no caching of job data.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    response
}

async fn css() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS)
}

async fn js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        JS,
    )
}

/// The page's navigation entries: path, label.
const NAV: [(&str, &str); 3] = [
    ("/ui/jobs", "Jobs"),
    ("/ui/workers", "Workers"),
    ("/ui/nightly", "Pipelines & schedules"),
];

/// A whole page, or only its `<main>` content when the live script asks.
pub(crate) fn render(
    ui: &Ui,
    headers: &HeaderMap,
    title: &str,
    active: &str,
    live: bool,
    body: Markup,
) -> Response {
    let main = html! {
        div #live data-live=(live) hidden {}
        (body)
    };
    if headers.contains_key("x-sluice-partial") {
        return html_response(StatusCode::OK, main);
    }
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Sluice" }
                link rel="stylesheet" href="/ui/assets/app.css";
                script src="/ui/assets/app.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/ui" { "Sluice" }
                    @for (path, label) in NAV {
                        a.active[path == active] href=(path) { (label) }
                    }
                    @if ui.auth.needs_login() {
                        form.inline method="post" action="/ui/logout" {
                            input type="hidden" name="csrf" value=(ui.auth.csrf());
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main { (main) }
            }
        }
    };
    html_response(StatusCode::OK, page)
}

pub(crate) fn html_response(status: StatusCode, markup: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

/// A page saying what went wrong (an unknown job, a refused action).
pub(crate) fn error_page(status: StatusCode, message: &str) -> Response {
    html_response(
        status,
        html! {
            (DOCTYPE)
            html lang="en" {
                head { meta charset="utf-8"; title { "Sluice" } link rel="stylesheet" href="/ui/assets/app.css"; }
                body { main { h1 { (status.as_u16()) } p.error { (message) } p { a href="/ui" { "Jobs" } } } }
            }
        },
    )
}

fn login_form(message: Option<&str>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Log in · Sluice" }
                link rel="stylesheet" href="/ui/assets/app.css";
            }
            body {
                form.login method="post" action="/ui/login" {
                    h1 { "Sluice" }
                    @if let Some(m) = message { p.error #login-error { (m) } }
                    label for="token" { "Cluster token" }
                    input #token type="password" name="token" autocomplete="current-password" autofocus;
                    button #login type="submit" { "Log in" }
                }
            }
        }
    }
}

async fn login_page(State(ui): State<Ui>) -> Response {
    if !ui.auth.needs_login() {
        return Redirect::to("/ui").into_response();
    }
    html_response(StatusCode::OK, login_form(None))
}

/// The login form's fields.
#[derive(serde::Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(State(ui): State<Ui>, axum::Form(form): axum::Form<LoginForm>) -> Response {
    if !ui.auth.login_ok(&form.token) {
        tracing::warn!("web UI: a login with a wrong token");
        return html_response(
            StatusCode::UNAUTHORIZED,
            login_form(Some("That is not the cluster token.")),
        );
    }
    let cookie = format!(
        "{SESSION_COOKIE}={}; HttpOnly; SameSite=Strict; Path=/ui",
        ui.auth.session()
    );
    let mut response = Redirect::to("/ui").into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

/// An action's form: its CSRF value.
#[derive(serde::Deserialize)]
pub(crate) struct ActionForm {
    #[serde(default)]
    pub csrf: String,
}

/// The refusal of an action whose CSRF value is wrong, or `None` when it is right.
pub(crate) fn refuse_forged(ui: &Ui, form: &ActionForm) -> Option<Response> {
    (!ui.auth.csrf_ok(&form.csrf))
        .then(|| error_page(StatusCode::FORBIDDEN, "the form is stale: reload the page"))
}

async fn logout(State(ui): State<Ui>, axum::Form(form): axum::Form<ActionForm>) -> Response {
    if let Some(refused) = refuse_forged(&ui, &form) {
        return refused;
    }
    let mut response = Redirect::to("/ui/login").into_response();
    let expired = format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/ui; Max-Age=0");
    if let Ok(v) = HeaderValue::from_str(&expired) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

/// A form posting to `action` with the CSRF value: one button.
pub(crate) fn action_button(ui: &Ui, action: &str, label: &str, id: &str) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            input type="hidden" name="csrf" value=(ui.auth.csrf());
            button.danger type="submit" id=(id) { (label) }
        }
    }
}

/// A time as `2026-12-03 01:02:03` (UTC), or `-`.
pub(crate) fn when(ms: u64) -> String {
    if ms == 0 {
        return "-".into();
    }
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "-".into())
}

/// A duration between two times as `12.3 s`, `4 min 5 s`, or `-`.
pub(crate) fn took(from_ms: u64, to_ms: u64) -> String {
    if from_ms == 0 || to_ms < from_ms {
        return "-".into();
    }
    let s = (to_ms - from_ms) as f64 / 1000.0;
    if s < 60.0 {
        format!("{s:.1} s")
    } else if s < 3600.0 {
        format!("{} min {} s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!(
            "{} h {} min",
            (s / 3600.0) as u64,
            ((s % 3600.0) / 60.0) as u64
        )
    }
}

/// Bytes as `1.5 MiB`.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A progress bar of `done` of `total`.
pub(crate) fn progress(done: u32, total: u32) -> Markup {
    html! {
        progress value=(done) max=(total.max(1)) title=(format!("{done}/{total}")) {
            (done) "/" (total)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_read_as_people_write_them() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(took(1000, 13_300), "12.3 s");
        assert_eq!(took(0, 5), "-");
        assert_eq!(took(0, 3_600_000 * 2 + 1), "-");
        assert_eq!(took(1, 3_600_000 * 2 + 60_001), "2 h 1 min");
        assert_eq!(when(0), "-");
        assert_eq!(when(1_796_257_569_735), "2026-12-03 00:26:09");
    }
}
