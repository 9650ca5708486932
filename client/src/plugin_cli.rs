//! `notes-host plugin …`: the CLI face of the `/plugins` admin API. It talks
//! to a running host over HTTP, so the host swaps in place; `plugin new`
//! writes a plugin project and needs no host.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::cli::{HostArgs, answer, print_json};

#[derive(Args)]
pub struct PluginArgs {
    #[command(flatten)]
    host: HostArgs,
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
    },
    /// Stored plugins, the active one, and the activation history.
    List,
    /// Make a stored plugin the active one.
    Activate { digest: String },
    /// Go back to the plugin active before the current one.
    Rollback,
    /// A plugin's recent failures on the host, with the messages (panics,
    /// stderr, tracebacks) clients were only given an `errorId` for.
    Errors {
        /// The plugin's sha256, or its first 12 or more hex digits (as `X-Plugin` shows it).
        digest: String,
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
    },
    /// Run the conformance kit on a component, in this process (no host
    /// needed): every case of the WIT contract, and of each `--profile`,
    /// by name with pass or fail and what differed. Exits 1 on a failure.
    Check {
        file: PathBuf,
        /// Also check placement expectations: `migrate` (where each mode puts notes).
        #[arg(long)]
        profile: Vec<String>,
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
        /// The notes-plugin-sdk crate's directory (default: `plugins/sdk` of the repo this binary was built from; Rust only).
        #[arg(long)]
        sdk: Option<PathBuf>,
        /// The project's language: rust (the SDK), python (componentize-py) or js (componentize-js).
        #[arg(long, value_enum, default_value = "rust")]
        lang: crate::plugin_template::Lang,
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
pub type Checker<'a> = &'a dyn Fn(&[u8], &[String]) -> anyhow::Result<bool>;

pub fn run(args: PluginArgs, check: Checker<'_>) -> anyhow::Result<()> {
    // Uploads are validated and compiled by the host before it answers: allow a minute.
    let client = args.host.client(Duration::from_secs(60));
    let answer = |reply| answer(&client, reply);
    match args.command {
        PluginCommand::Push { file, activate, check } => {
            let wasm = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let record = answer(if check { client.push_plugin_checked(wasm) } else { client.push_plugin(wasm) })?;
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
        PluginCommand::Errors { digest } => print_json(&answer(client.plugin_errors(&digest))?),
        PluginCommand::Instances { digest, mode, max_requests, max_seconds } => {
            let instances = match mode {
                InstancesMode::Fresh => serde_json::json!({ "mode": "fresh" }),
                InstancesMode::PerAccount => {
                    serde_json::json!({ "mode": "per-account", "maxRequests": max_requests, "maxSeconds": max_seconds })
                }
            };
            print_json(&answer(client.set_plugin_instances(&digest, &instances))?);
        }
        PluginCommand::Check { file, profile } => {
            let wasm = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            if !check(&wasm, &profile)? {
                anyhow::bail!("{} failed the conformance kit", file.display());
            }
        }
        PluginCommand::New { name, dir, sdk, lang } => {
            use crate::plugin_template::Lang;
            let project = crate::plugin_template::write_project(&name, &dir, lang, sdk.as_deref())?;
            println!("wrote {}", project.display());
            let (build, wasm) = match lang {
                Lang::Rust => ("cargo test && cargo build --release --target wasm32-wasip2".to_owned(), format!("target/wasm32-wasip2/release/{}.wasm", name.replace('-', "_"))),
                Lang::Python => (format!("componentize-py -d wit -w note-plugin componentize app --stub-wasi -o {name}.wasm"), format!("{name}.wasm")),
                Lang::Js => ("npm ci && npm run build".to_owned(), format!("{name}.wasm")),
            };
            println!("next: cd {} && {build}", project.display());
            println!("then: notes-host plugin check {wasm} --profile migrate && notes-host plugin push {wasm} --activate");
        }
    }
    Ok(())
}
