//! The host's log lines (stderr): text or one JSON object per line, each
//! line logged while a request runs tagged with that request's id, method
//! and path (`notes_host::request_id`).
//!
//! The tag is added when a line is written, not kept in a `tracing` span:
//! a span per request cost 5% of a GET's CPU, and few requests log.

use std::fmt;

use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields, JsonFields, Writer};
use tracing_subscriber::registry::LookupSpan;

/// Installs the process's subscriber: `NOTES_LOG` (an `EnvFilter`; default
/// `info`) decides what is logged.
pub fn init(json: bool, ansi: bool) {
    let logs = tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(
        tracing_subscriber::EnvFilter::try_from_env("NOTES_LOG").unwrap_or_else(|_| "info,tower_http=warn".into()),
    );
    if json {
        // Its own span's fields, if it runs in one, under `span`; the request's beside them.
        let inner = format().json().with_current_span(true).with_span_list(false);
        logs.fmt_fields(JsonFields::new()).event_format(Tagged { inner, json: true }).init();
    } else {
        logs.event_format(Tagged { inner: format().with_ansi(ansi), json: false }).init();
    }
}

fn format() -> format::Format {
    format::Format::default()
}

/// A formatter that adds the request's tag to what `inner` writes.
struct Tagged<F> {
    inner: F,
    json: bool,
}

impl<S, N, F> FormatEvent<S, N> for Tagged<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let Some(tag) = notes_host::request_id::current_tag() else {
            return self.inner.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.inner.format_event(ctx, Writer::new(&mut line), event)?;
        let body = line.strip_suffix('\n').unwrap_or(&line);
        if self.json {
            writeln!(writer, "{}", with_request_json(body, &tag))
        } else {
            writeln!(writer, "{body} request_id={} method={} path={}", tag.id, tag.method, tag.path)
        }
    }
}

/// The JSON line with `span.request_id`, `span.method` and `span.path`
/// (the fields a request's span gave it before, so log queries keep
/// working). A field of the line's own span by the same name is kept.
fn with_request_json(line: &str, tag: &notes_host::request_id::Tag) -> String {
    let Ok(serde_json::Value::Object(mut object)) = serde_json::from_str::<serde_json::Value>(line) else {
        return line.to_owned();
    };
    let span = object.entry("span").or_insert_with(|| serde_json::json!({ "name": "request" }));
    if let Some(span) = span.as_object_mut() {
        span.entry("request_id").or_insert_with(|| tag.id.clone().into());
        span.entry("method").or_insert_with(|| tag.method.to_string().into());
        span.entry("path").or_insert_with(|| tag.path.clone().into());
    }
    serde_json::Value::Object(object).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_line_gets_the_request_under_span_and_keeps_its_own_span_fields() {
        let tag = notes_host::request_id::Tag { id: "trace-me".into(), method: "POST".into(), path: "/accounts/a/notes".into() };
        let plain: serde_json::Value =
            serde_json::from_str(&with_request_json(r#"{"level":"WARN","fields":{"message":"m"}}"#, &tag)).unwrap();
        assert_eq!(plain["span"], serde_json::json!({ "name": "request", "request_id": "trace-me", "method": "POST", "path": "/accounts/a/notes" }));
        assert_eq!(plain["fields"]["message"], "m");
        let nested: serde_json::Value =
            serde_json::from_str(&with_request_json(r#"{"span":{"name":"job","job":"j1"},"fields":{}}"#, &tag)).unwrap();
        assert_eq!(nested["span"]["job"], "j1");
        assert_eq!(nested["span"]["request_id"], "trace-me");
    }
}
