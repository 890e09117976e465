//! Each attempt's own log, kept in the worker's work dir.
//!
//! An attempt runs inside a `task` span whose `log` field names its file
//! (`WORK/logs/JOB/map-3.0.log`, see [`files::attempt_path`]). [`layer`] is a tracing layer:
//! every event at `info` or above inside such a span (the CPU pool carries the span onto its
//! threads) is written to that file as one line, whatever level the process logs to stderr
//! at. A file is capped ([`files::MAX_FILE_BYTES`]): past it, it is rotated to `.log.1`
//! (one older file kept), so an attempt's log never takes more than twice the cap.
//! Job directories older than the worker's log retention are removed by [`files::sweep`].
//! The coordinator reads a log through the worker's shuffle service (`AttemptLog`).

pub mod files;

use std::fmt::Write as _;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber, span};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use files::AttemptFile;

/// The name of the span an attempt runs in.
pub const SPAN: &str = "task";

/// The layer writing attempts' events to their files; add it to the process's subscriber
/// (with a filter of its own: it keeps `info` even when stderr shows only warnings).
pub fn layer<S>() -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    AttemptLogLayer.with_filter(tracing_subscriber::filter::LevelFilter::INFO)
}

struct AttemptLogLayer;

/// Finds the `log` field of a span.
#[derive(Default)]
struct LogField(Option<String>);

impl Visit for LogField {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "log" {
            self.0 = Some(value.to_string());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "log" {
            self.0 = Some(format!("{value:?}").trim_matches('"').to_string());
        }
    }
}

/// Formats an event's fields as `message key=value ...`.
#[derive(Default)]
struct Line {
    message: String,
    fields: String,
}

impl Visit for Line {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

impl<S> Layer<S> for AttemptLogLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != SPAN {
            return;
        }
        let mut log = LogField::default();
        attrs.record(&mut log);
        let (Some(path), Some(span)) = (log.0, ctx.span(id)) else {
            return;
        };
        match AttemptFile::open(path.as_ref()) {
            Ok(file) => span.extensions_mut().insert(Mutex::new(file)),
            // Logged outside any attempt span, so this does not recurse.
            Err(e) => eprintln!("cannot open the attempt log {path}: {e}"),
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(scope) = ctx.event_scope(event) else {
            return;
        };
        for span in scope {
            let ext = span.extensions();
            let Some(file) = ext.get::<Mutex<AttemptFile>>() else {
                continue;
            };
            let mut line = Line::default();
            event.record(&mut line);
            let meta = event.metadata();
            let text = format!(
                "{} {:>5} {}: {}{}\n",
                chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ"),
                meta.level(),
                meta.target(),
                line.message,
                line.fields
            );
            if let Ok(mut f) = file.lock() {
                f.write_line(text.as_bytes());
            }
            return;
        }
    }
}
