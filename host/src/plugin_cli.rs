//! `notes-host plugin …`: the CLI face of the `/plugins` admin API. It talks
//! to a running host over HTTP, so the host swaps in place.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

#[derive(Args)]
pub struct PluginArgs {
    /// The host's base URL.
    #[arg(long, env = "NOTES_URL", default_value = "http://127.0.0.1:8080", global = true)]
    url: String,
    /// The host's admin token, if it has one.
    #[arg(long, env = "NOTES_ADMIN_TOKEN", hide_env_values = true, global = true)]
    admin_token: Option<String>,
    #[command(subcommand)]
    command: PluginCommand,
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Upload a component (validated and precompiled by the host).
    Push {
        file: PathBuf,
        /// Also make it the active plugin.
        #[arg(long)]
        activate: bool,
    },
    /// Stored plugins, the active one, and the activation history.
    List,
    /// Make a stored plugin the active one.
    Activate { digest: String },
    /// Go back to the plugin active before the current one.
    Rollback,
}

pub fn run(args: PluginArgs) -> anyhow::Result<()> {
    let client = Client { base: args.url.trim_end_matches('/').to_owned(), token: args.admin_token };
    match args.command {
        PluginCommand::Push { file, activate } => {
            let wasm = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let record = client.send("POST", "/plugins", Some(("application/wasm", wasm)))?;
            print_json(&record);
            if activate {
                let digest = record["digest"].as_str().context("the host returned no digest")?;
                let body = serde_json::json!({ "digest": digest }).to_string().into_bytes();
                client.send("PUT", "/plugins/active", Some(("application/json", body)))?;
                eprintln!("activated {digest}");
            }
        }
        PluginCommand::List => print_json(&client.send("GET", "/plugins", None)?),
        PluginCommand::Activate { digest } => {
            let body = serde_json::json!({ "digest": digest }).to_string().into_bytes();
            print_json(&client.send("PUT", "/plugins/active", Some(("application/json", body)))?);
        }
        PluginCommand::Rollback => print_json(&client.send("POST", "/plugins/rollback", None)?),
    }
    Ok(())
}

fn print_json(v: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

struct Client {
    base: String,
    token: Option<String>,
}

impl Client {
    fn send(&self, method: &str, path: &str, body: Option<(&str, Vec<u8>)>) -> anyhow::Result<serde_json::Value> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let mut req = ureq::http::Request::builder().method(method).uri(format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let result = match body {
            Some((content_type, bytes)) => agent.run(req.header("content-type", content_type).body(bytes)?),
            None => agent.run(req.body(())?),
        };
        let mut response = result.with_context(|| format!("cannot reach the host at {}", self.base))?;
        let status = response.status();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        if !status.is_success() {
            let message = json["error"].as_str().map(str::to_owned).unwrap_or_else(|| json.to_string());
            bail!("{method} {path}: {status}: {message}");
        }
        Ok(json)
    }
}
