//! What the CLI faces of the admin API (`plugin_cli`, `migrate_cli`) share:
//! which host to talk to, with which token, and how answers are shown
//! (JSON for machines, aligned tables for people).

use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::Value;

use crate::{Client, Response, TransportError};

/// `--url` and `--admin-token` (or `NOTES_URL`, `NOTES_ADMIN_TOKEN`).
#[derive(Args)]
pub struct HostArgs {
    /// The host's base URL: http://HOST:PORT (the host serves plain HTTP).
    #[arg(long, env = "NOTES_URL", default_value = "http://127.0.0.1:8080", global = true)]
    pub url: String,
    /// The host's admin token, if it has one.
    #[arg(long, env = "NOTES_ADMIN_TOKEN", hide_env_values = true, global = true)]
    pub admin_token: Option<String>,
}

impl HostArgs {
    /// A client of that host that waits up to `timeout` for an answer, or
    /// a plain sentence if `--url` is not an `http://` URL.
    pub fn client(&self, timeout: Duration) -> anyhow::Result<Client> {
        check_url(&self.url)?;
        Ok(Client::new(&self.url).with_token(self.admin_token.clone()).with_timeout(timeout))
    }
}

/// The host serves plain HTTP only, and the HTTP library's own words for a
/// URL without a scheme ("invalid format") or with `https` (a TLS error, or
/// a refused connection) do not say what to type instead.
fn check_url(url: &str) -> anyhow::Result<()> {
    let example = |rest: &str| format!("http://{}", if rest.is_empty() { "127.0.0.1:8080" } else { rest });
    match url.split_once("://") {
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("http") => Ok(()),
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => bail!(
            "the host URL {url:?} (--url or NOTES_URL) uses https, but the host serves plain HTTP only: \
             give an http:// URL, such as {} (for a host elsewhere, put a TLS proxy or an SSH tunnel in front of it)",
            example(rest)
        ),
        Some((scheme, rest)) => {
            bail!("the host URL {url:?} (--url or NOTES_URL) has the scheme {scheme}: only http:// URLs are accepted, such as {}", example(rest))
        }
        None => bail!(
            "the host URL {url:?} (--url or NOTES_URL) has no scheme: give it as http://HOST:PORT, such as {}",
            example(url.trim_start_matches('/'))
        ),
    }
}

/// A successful answer's JSON, or an error saying what went wrong and where.
pub fn answer(client: &Client, reply: Result<Response, TransportError>) -> anyhow::Result<Value> {
    reply.with_context(|| format!("cannot reach the host at {}", client.base()))?.success_json()
}

pub fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// A one-shot command's output is often piped into `head` or `grep -q`,
/// which close the pipe early. Rust ignores SIGPIPE, so the next write fails
/// with EPIPE and `println!` panics. Restoring the default action makes such
/// a command end at once, silently, as `cat` or `ls` do: one call at start,
/// instead of routing every print through a writer that checks for
/// BrokenPipe. Only for commands that run and exit; `serve`, `launch` and
/// `sim` keep Rust's default, so a closed log or output pipe cannot kill a
/// server (or a launcher that must stop its hosts).
pub fn exit_quietly_on_broken_pipe() {
    // SAFETY: SIG_DFL installs no handler: nothing runs in signal context,
    // and changing a disposition is safe from any thread.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// An RFC 3339 time in UTC at the second, `2026-12-06T19:05:57Z`: the same
/// width on every row, whatever the fraction the host sent. Anything else
/// is shown as given.
pub fn utc_second(time: &str) -> String {
    let b = time.as_bytes();
    let digits = |range: std::ops::Range<usize>| b.get(range).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let shaped = b.len() >= 20
        && [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')].iter().all(|&(i, c)| b[i] == c)
        && [0..4, 5..7, 8..10, 11..13, 14..16, 17..19].into_iter().all(digits);
    if !shaped {
        return time.to_owned();
    }
    let rest = &time[19..];
    let offset = match rest.strip_prefix('.') {
        Some(fraction) => fraction.trim_start_matches(|c: char| c.is_ascii_digit()),
        None => rest,
    };
    if matches!(offset, "Z" | "z" | "+00:00") { format!("{}Z", &time[..19]) } else { time.to_owned() }
}

/// How a column's cells line up.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    /// Numbers.
    Right,
}

/// A table for people: a header, then one line per row, each column as wide
/// as its widest cell, two spaces apart. The last column is not padded, so
/// a long free text (a detail) goes there.
pub struct Table {
    columns: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(columns: &[(&'static str, Align)]) -> Table {
        Table { columns: columns.to_vec(), rows: Vec::new() }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.columns.len());
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let width = |s: &str| s.chars().count();
        let widths: Vec<usize> = (0..self.columns.len())
            .map(|i| self.rows.iter().map(|r| width(&r[i])).chain([width(self.columns[i].0)]).max().unwrap_or(0))
            .collect();
        let header: Vec<String> = self.columns.iter().map(|(name, _)| (*name).to_owned()).collect();
        let mut out = String::new();
        for cells in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in cells.iter().enumerate() {
                let pad = " ".repeat(widths[i] - width(cell));
                if i > 0 {
                    line.push_str("  ");
                }
                match self.columns[i].1 {
                    Align::Right => line.extend([pad.as_str(), cell]),
                    Align::Left if i + 1 < cells.len() => line.extend([cell.as_str(), &pad]),
                    Align::Left => line.push_str(cell),
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// A JSON value as a table cell: a string as is, a number as JSON writes
/// it, nothing for null.
pub fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        v => v.to_string(),
    }
}

/// The list an answer holds, or an error naming what was expected.
pub fn array<'a>(v: &'a Value, what: &str) -> anyhow::Result<&'a Vec<Value>> {
    v.as_array().with_context(|| format!("the host's answer has no list of {what}: {v}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_is_shown_at_the_second_in_utc_whatever_its_fraction() {
        for t in ["2026-12-06T19:05:57Z", "2026-12-06T19:05:57.1Z", "2026-12-06T19:05:57.123456789Z", "2026-12-06T19:05:57+00:00"] {
            assert_eq!(utc_second(t), "2026-12-06T19:05:57Z", "{t}");
        }
        assert_eq!(utc_second("2026-12-06T19:05:57+02:00"), "2026-12-06T19:05:57+02:00", "not UTC: as given");
        assert_eq!(utc_second(""), "");
    }

    #[test]
    fn a_url_without_http_gets_a_sentence_naming_what_to_give() {
        assert!(check_url("http://127.0.0.1:8080").is_ok());
        assert!(check_url("HTTP://host").is_ok());
        let bare = check_url("localhost:8080").unwrap_err().to_string();
        assert!(bare.contains("\"localhost:8080\"") && bare.contains("no scheme") && bare.contains("http://localhost:8080"), "{bare}");
        let tls = check_url("https://notes.internal:8080").unwrap_err().to_string();
        assert!(tls.contains("https") && tls.contains("http://notes.internal:8080"), "{tls}");
    }

    #[test]
    fn a_table_lines_up_its_columns() {
        let mut t = Table::new(&[("STATE", Align::Left), ("ACCOUNTS", Align::Right), ("NOTE", Align::Left)]);
        t.row(vec!["legacy".into(), "46".into(), "".into()]);
        t.row(vec!["rolling-back".into(), "0".into(), "free text".into()]);
        assert_eq!(t.render(), "STATE         ACCOUNTS  NOTE\nlegacy              46\nrolling-back         0  free text\n");
    }
}
