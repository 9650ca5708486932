//! `notes-host plugin …`: the CLI face of the `/plugins` admin API. It talks
//! to a running host over HTTP, so the host swaps in place.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::Value;

use crate::{Client, Response, TransportError};

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
    // Uploads are validated and compiled by the host before it answers: allow a minute.
    let client = Client::new(&args.url).with_token(args.admin_token).with_timeout(Duration::from_secs(60));
    let answer = |reply: Result<Response, TransportError>| -> anyhow::Result<Value> {
        reply.with_context(|| format!("cannot reach the host at {}", client.base()))?.success_json()
    };
    match args.command {
        PluginCommand::Push { file, activate } => {
            let wasm = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let record = answer(client.push_plugin(wasm))?;
            print_json(&record);
            if activate {
                let digest = record["digest"].as_str().context("the host returned no digest")?;
                answer(client.activate_plugin(digest))?;
                eprintln!("activated {digest}");
            }
        }
        PluginCommand::List => print_json(&answer(client.list_plugins())?),
        PluginCommand::Activate { digest } => print_json(&answer(client.activate_plugin(&digest))?),
        PluginCommand::Rollback => print_json(&answer(client.rollback_plugin())?),
    }
    Ok(())
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}
