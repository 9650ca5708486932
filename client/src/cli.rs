//! What the CLI faces of the admin API (`plugin_cli`, `migrate_cli`) share:
//! which host to talk to, with which token, and how answers are shown.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde_json::Value;

use crate::{Client, Response, TransportError};

/// `--url` and `--admin-token` (or `NOTES_URL`, `NOTES_ADMIN_TOKEN`).
#[derive(Args)]
pub struct HostArgs {
    /// The host's base URL.
    #[arg(long, env = "NOTES_URL", default_value = "http://127.0.0.1:8080", global = true)]
    pub url: String,
    /// The host's admin token, if it has one.
    #[arg(long, env = "NOTES_ADMIN_TOKEN", hide_env_values = true, global = true)]
    pub admin_token: Option<String>,
}

impl HostArgs {
    /// A client of that host that waits up to `timeout` for an answer.
    pub fn client(&self, timeout: Duration) -> Client {
        Client::new(&self.url).with_token(self.admin_token.clone()).with_timeout(timeout)
    }
}

/// A successful answer's JSON, or an error saying what went wrong and where.
pub fn answer(client: &Client, reply: Result<Response, TransportError>) -> anyhow::Result<Value> {
    reply.with_context(|| format!("cannot reach the host at {}", client.base()))?.success_json()
}

pub fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}
