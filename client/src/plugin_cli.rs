//! `notes-host plugin …`: the CLI face of the `/plugins` admin API. It talks
//! to a running host over HTTP, so the host swaps in place; `plugin check`
//! and `plugin new` work offline, and so take no `--url` or `--admin-token`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};

use serde_json::Value;

use crate::cli::{Align, HostArgs, Table, answer, array, cell, print_json, utc_second};

#[derive(Args)]
pub struct PluginArgs {
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
        /// Have the host run the conformance kit's contract cases first and
        /// refuse the plugin if any fails.
        #[arg(long)]
        check: bool,
        #[command(flatten)]
        host: HostArgs,
    },
    /// Stored plugins, the active one, and the activation history.
    List {
        /// Print `GET /plugins`' JSON instead of the tables.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        host: HostArgs,
    },
    /// Make a stored plugin the active one.
    Activate {
        /// The plugin's sha256, or its first 12 or more hex digits (as `plugin list` shows it).
        digest: String,
        #[command(flatten)]
        host: HostArgs,
    },
    /// Go back to the plugin active before the current one.
    Rollback {
        #[command(flatten)]
        host: HostArgs,
    },
    /// A plugin's recent failures on the host, with the messages (panics,
    /// stderr, tracebacks) clients were only given an `errorId` for.
    Errors {
        /// The plugin's sha256, or its first 12 or more hex digits (as `X-Plugin` shows it).
        digest: String,
        #[command(flatten)]
        host: HostArgs,
    },
    /// How a plugin's instances are made: `fresh` per request (the default,
    /// needing no trust in the plugin), or kept `per-account`: an instance
    /// then serves later requests of the same account only, for at most
    /// --max-requests requests and --max-seconds, and is dropped after any
    /// trap or limit. For plugins costly to make (Python, JavaScript).
    Instances {
        /// The plugin's sha256, or its first 12 or more hex digits.
        digest: String,
        #[arg(value_enum)]
        mode: InstancesMode,
        /// per-account: requests one instance serves at most.
        #[arg(long, default_value_t = 1000, value_name = "N")]
        max_requests: u32,
        /// per-account: seconds one instance serves at most.
        #[arg(long, default_value_t = 60, value_name = "SECONDS")]
        max_seconds: u32,
        #[command(flatten)]
        host: HostArgs,
    },
    /// Run the conformance kit on a component, in this process (no host
    /// needed): every case of the WIT contract, and of each `--profile`,
    /// by name with pass or fail and what differed. Exits 1 on a failure.
    Check {
        file: PathBuf,
        /// Also check placement expectations: `migrate` (where each mode puts
        /// notes). `store`: the component is a store backend (`notes:store`),
        /// checked against the store rules instead, served with the grants below.
        #[arg(long)]
        profile: Vec<String>,
        /// For `--profile store`: a configuration value the store plugin is
        /// given (`config.get(KEY)`); repeat for each.
        #[arg(long, value_name = "KEY=VALUE")]
        store_config: Vec<String>,
        /// For `--profile store`: an origin (http://host:port) the store plugin may reach.
        #[arg(long, value_name = "ORIGIN")]
        store_allow_http: Vec<String>,
    },
    /// Write a new plugin project: Rust (routing on the SDK's operations, a
    /// native unit test), Python or JavaScript (the migrate strategy, ported),
    /// with the build command and a README.
    New {
        /// The crate's name: lowercase letters, digits, '-' and '_'.
        name: String,
        /// The directory to create it in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The notes-plugin-sdk crate's directory (default: `plugins/sdk` of the repo this binary was built from, if it is still there; else the published crate, by version; Rust only).
        #[arg(long)]
        sdk: Option<PathBuf>,
        /// The project's language: rust (the SDK), python (componentize-py) or js (componentize-js).
        #[arg(long, value_enum, default_value = "rust")]
        lang: crate::plugin_template::Lang,
        /// What the plugin is: a router (`notes:plugin`) or a store backend (`notes:store`, Rust only).
        #[arg(long, value_enum, default_value = "router")]
        kind: crate::plugin_template::Kind,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum InstancesMode {
    Fresh,
    PerAccount,
}

/// The conformance kit, given `.wasm` bytes and the extra profiles: true if
/// every case passed. It lives in the host crate, which this crate does not
/// depend on; the binary passes it in.
pub type Checker<'a> = &'a dyn Fn(CheckRequest<'_>) -> anyhow::Result<bool>;

/// What `plugin check` was asked: the component, the profiles, and, for a
/// store plugin (`--profile store`), what it is granted.
pub struct CheckRequest<'a> {
    pub wasm: &'a [u8],
    pub profiles: &'a [String],
    /// `KEY=VALUE` pairs.
    pub store_config: &'a [String],
    pub store_allow_http: &'a [String],
}

pub fn run(args: PluginArgs, check: Checker<'_>) -> anyhow::Result<()> {
    // Uploads are validated and compiled by the host before it answers: allow a minute.
    let client = |host: &HostArgs| host.client(Duration::from_secs(60));
    match args.command {
        PluginCommand::Push { file, activate, check, host } => {
            let client = client(&host)?;
            let wasm = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let record = answer(&client, if check { client.push_plugin_checked(wasm) } else { client.push_plugin(wasm) })?;
            print_json(&record);
            if activate {
                let digest = record["digest"].as_str().context("the host returned no digest")?;
                answer(&client, client.activate_plugin(digest))?;
                eprintln!("activated {digest}");
            }
        }
        PluginCommand::List { json, host } => {
            let client = client(&host)?;
            let registry = answer(&client, client.list_plugins())?;
            if json {
                print_json(&registry);
            } else {
                print!("{}", list_text(&registry)?);
            }
        }
        PluginCommand::Activate { digest, host } => {
            let client = client(&host)?;
            print_json(&answer(&client, client.activate_plugin(&digest))?)
        }
        PluginCommand::Rollback { host } => {
            let client = client(&host)?;
            print_json(&answer(&client, client.rollback_plugin())?)
        }
        PluginCommand::Errors { digest, host } => {
            let client = client(&host)?;
            print_json(&answer(&client, client.plugin_errors(&digest))?)
        }
        PluginCommand::Instances { digest, mode, max_requests, max_seconds, host } => {
            let client = client(&host)?;
            let instances = match mode {
                InstancesMode::Fresh => serde_json::json!({ "mode": "fresh" }),
                InstancesMode::PerAccount => {
                    serde_json::json!({ "mode": "per-account", "maxRequests": max_requests, "maxSeconds": max_seconds })
                }
            };
            print_json(&answer(&client, client.set_plugin_instances(&digest, &instances))?);
        }
        PluginCommand::Check { file, profile, store_config, store_allow_http } => {
            let wasm = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            if (!store_config.is_empty() || !store_allow_http.is_empty()) && !profile.iter().any(|p| p == "store") {
                anyhow::bail!("--store-config and --store-allow-http are for a store plugin: add --profile store");
            }
            let request = CheckRequest { wasm: &wasm, profiles: &profile, store_config: &store_config, store_allow_http: &store_allow_http };
            if !check(request)? {
                anyhow::bail!("{} failed the conformance kit", file.display());
            }
        }
        PluginCommand::New { name, dir, sdk, lang, kind } => {
            use crate::plugin_template::{Kind, Lang};
            let project = crate::plugin_template::write_project(&name, &dir, lang, kind, sdk.as_deref())?;
            if kind == Kind::Store {
                println!("wrote {}", project.display());
                let wasm = format!("target/wasm32-wasip2/release/{}.wasm", name.replace('-', "_"));
                println!("next: cd {} && cargo build --release --target wasm32-wasip2", project.display());
                println!("then: notes-host plugin check {wasm} --profile store --store-config url=URL --store-allow-http ORIGIN");
                return Ok(());
            }
            println!("wrote {}", project.display());
            let (build, wasm) = match lang {
                Lang::Rust => ("cargo test && cargo build --release --target wasm32-wasip2".to_owned(), format!("target/wasm32-wasip2/release/{}.wasm", name.replace('-', "_"))),
                Lang::Python => (format!("componentize-py -d wit -w note-plugin componentize app -o {name}.wasm"), format!("{name}.wasm")),
                Lang::Js => ("npm ci && npm run build".to_owned(), format!("{name}.wasm")),
            };
            println!("next: cd {} && {build}", project.display());
            println!("then: notes-host plugin check {wasm} --profile migrate && notes-host plugin push {wasm} --activate");
        }
    }
    Ok(())
}

/// Activations `plugin list` shows.
const HISTORY: usize = 10;

/// `plugin list` for people: the active plugin, the stored ones (the active
/// one starred), and the last activations.
fn list_text(registry: &Value) -> anyhow::Result<String> {
    let active = &registry["active"];
    let active_digest = cell(&active["digest"]);
    let plugins = array(&registry["plugins"], "plugins")?;
    let short = |digest: &str| digest.get(..12).unwrap_or(digest).to_owned();
    let loaded = match active["loadedFrom"].as_str() {
        Some("artifact") => "loaded from its precompiled artifact",
        Some("compiled") => "compiled when loaded",
        _ => "loaded",
    };
    let mut out = format!("active: {} ({}), {loaded} in {} ms", cell(&active["plugin"]), short(&active_digest), cell(&active["loadMs"]));
    if let Some(calls) = active["usage"]["calls"].as_u64() {
        let s = if calls == 1 { "" } else { "s" };
        out.push_str(&format!("; {calls} call{s}, {} µs per call", cell(&active["usage"]["meanCallMicros"])));
    }
    out.push('\n');
    if let Some(why) = active["suspended"].as_str() {
        out.push_str(&format!("SUSPENDED: it serves no note request: {why}\n"));
    }
    let mut stored = Table::new(&[
        ("ACTIVE", Align::Left),
        ("PLUGIN", Align::Left),
        ("MIGRATES", Align::Left),
        ("INSTANCES", Align::Left),
        ("SIZE", Align::Right),
        ("UPLOADED", Align::Left),
        ("DIGEST", Align::Left),
    ]);
    for p in plugins {
        let digest = cell(&p["digest"]);
        let instances = &p["instances"];
        stored.row(vec![
            if digest == active_digest { "*".into() } else { String::new() },
            format!("{}@{}", cell(&p["name"]), cell(&p["version"])),
            if p["supportsMigration"].as_bool() == Some(true) { "yes".into() } else { "no".into() },
            match instances["mode"].as_str() {
                Some("per-account") => {
                    format!("per-account ({} requests, {} s)", cell(&instances["maxRequests"]), cell(&instances["maxSeconds"]))
                }
                _ => cell(&instances["mode"]),
            },
            size(p["sizeBytes"].as_u64().unwrap_or(0)),
            utc_second(&cell(&p["uploadedAt"])),
            digest,
        ]);
    }
    out.push_str("\nstored plugins:\n");
    out.push_str(&stored.render());
    let history = array(&registry["history"], "activations")?;
    if history.is_empty() {
        return Ok(out);
    }
    let label = |digest: &str| {
        plugins
            .iter()
            .find(|p| p["digest"] == digest)
            .map(|p| format!("{}@{}", cell(&p["name"]), cell(&p["version"])))
            .unwrap_or_else(|| short(digest))
    };
    let shown = history.len().min(HISTORY);
    out.push_str(&format!("\nactivations (the last {shown} of {}, oldest first):\n", history.len()));
    let mut activations = Table::new(&[
        ("AT", Align::Left),
        ("PLUGIN", Align::Left),
        ("ACTOR", Align::Left),
        ("HOST", Align::Left),
        ("REASON", Align::Left),
    ]);
    for a in &history[history.len() - shown..] {
        activations.row(vec![
            utc_second(&cell(&a["at"])),
            label(&cell(&a["digest"])),
            cell(&a["actor"]),
            cell(&a["host"]),
            cell(&a["reason"]),
        ]);
    }
    out.push_str(&activations.render());
    Ok(out)
}

/// Bytes for people: `812 B`, `182.4 KiB`, `1.2 MiB`.
fn size(bytes: u64) -> String {
    match bytes {
        b if b < 1024 => format!("{b} B"),
        b if b < 1024 * 1024 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)),
    }
}
