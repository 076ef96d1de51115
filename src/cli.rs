//! The command line: `hookrunner [serve]` and `hookrunner check`.

use crate::config::{self, Config};
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "hookrunner", version, about = "Runs handler scripts for incoming webhooks, and tracks every task.")]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (the default).
    Serve(ServeArgs),
    /// Check the config and print every error; exit 0 when it is valid.
    Check(ConfigArg),
    /// Check the durable store's file (`hookrunner db check`).
    #[command(subcommand)]
    Db(DbCommand),
    /// Show how a payload would be judged and what it would run, offline
    /// (signatures are not checked; nothing runs).
    Explain(ExplainArgs),
}

#[derive(Subcommand)]
enum DbCommand {
    /// Run SQLite's integrity check on the store named by `state.path` (or --path).
    Check {
        #[command(flatten)]
        config: ConfigArg,
        /// The store file, instead of the config's `state.path`.
        #[arg(long)]
        path: Option<PathBuf>,
    },
}

#[derive(Args)]
struct ExplainArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The source the payload is sent to.
    #[arg(long)]
    source: String,
    /// The event name, as the provider would send it (e.g. `push`, `Push Hook`).
    #[arg(long)]
    event: String,
    /// A request header, `Name: value` (repeatable).
    #[arg(long = "header", value_name = "NAME:VALUE")]
    headers: Vec<String>,
    /// Print the trace as JSON.
    #[arg(long)]
    json: bool,
    /// The JSON body.
    payload: PathBuf,
}

#[derive(Args)]
struct ConfigArg {
    /// The config file.
    #[arg(long, short, env = "HOOKRUNNER_CONFIG", default_value = "webhook.yaml")]
    config: PathBuf,
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Address to listen on, overriding `server.listen` (port 0 picks a free port).
    #[arg(long, short)]
    listen: Option<std::net::SocketAddr>,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match cli.command {
        Some(Command::Check(args)) => check(&args.config),
        Some(Command::Serve(args)) => serve(args),
        Some(Command::Explain(args)) => explain(args),
        Some(Command::Db(DbCommand::Check { config, path })) => db_check(&config.config, path),
        None => serve(cli.serve),
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn load(path: &Path) -> Result<Config, ExitCode> {
    config::load(path).map_err(|errors| {
        eprintln!("{errors}");
        let n = errors.0.len();
        eprintln!("{n} error{} in {}", if n == 1 { "" } else { "s" }, path.display());
        ExitCode::from(2)
    })
}

fn check(path: &Path) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    for w in &config.warnings {
        eprintln!("warning: {w}");
    }
    let rules: usize = config.sources.values().map(|s| s.routes.rule_count()).sum();
    println!(
        "{}: ok ({} sources, {} programs, {} rules)",
        path.display(),
        config.sources.len(),
        config.programs.len(),
        rules
    );
    ExitCode::SUCCESS
}

fn serve(args: ServeArgs) -> ExitCode {
    let mut config = match load(&args.config.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    tracing::info!(config = %config.path.display(), sources = config.sources.len(), "config loaded");
    match crate::server::serve(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn explain(args: ExplainArgs) -> ExitCode {
    use crate::http::hooks::{explain, Parts};
    use crate::mapping::event::{normalise_gitlab, Event};
    use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};

    let config = match load(&args.config.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(source) = config.sources.get(&args.source) else {
        let mut names: Vec<&str> = config.sources.keys().map(String::as_str).collect();
        names.sort();
        eprintln!("error: there is no source named `{}` (sources: {})", args.source, names.join(", "));
        return ExitCode::from(2);
    };
    let body = match std::fs::read(&args.payload) {
        Ok(b) => bytes::Bytes::from(b),
        Err(e) => {
            eprintln!("error: cannot read `{}`: {e}", args.payload.display());
            return ExitCode::from(2);
        }
    };
    let json: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("error: `{}` is not valid JSON: {e}", args.payload.display());
            return ExitCode::from(2);
        }
    };
    let mut headers = HeaderMap::new();
    for h in &args.headers {
        let parsed = h.split_once(':').and_then(|(k, v)| {
            Some((HeaderName::from_bytes(k.trim().as_bytes()).ok()?, HeaderValue::from_str(v.trim()).ok()?))
        });
        match parsed {
            Some((k, v)) => headers.append(k, v),
            None => {
                eprintln!("error: `{h}` is not a header such as `X-Event: push`");
                return ExitCode::from(2);
            }
        }
    }
    // GitLab names events by their header value; both spellings work here too.
    let event = if source.provider == config::Provider::Gitlab && args.event.ends_with(" Hook") {
        Event { name: normalise_gitlab(&args.event), raw: Some(args.event.clone()) }
    } else {
        Event { name: args.event.clone(), raw: None }
    };
    let parts = Parts { event: &event, json: &json, stdin: &body, headers: &headers, query: &[] };
    let trace = explain(source, &parts, "<delivery_id>");
    if args.json {
        println!("{}", serde_json::to_string_pretty(&trace).unwrap_or_default());
    } else {
        print!("{}", render_trace(&trace));
    }
    ExitCode::SUCCESS
}

/// The trace as text for a terminal.
fn render_trace(trace: &serde_json::Value) -> String {
    use std::fmt::Write;
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
    let mut out = String::new();
    let _ = writeln!(out, "source `{}`, event `{}`, action `{}`", s(&trace["source"]), s(&trace["event"]), s(&trace["action"]));
    let empty = serde_json::Map::new();
    let params = trace["params"].as_object().unwrap_or(&empty);
    if params.is_empty() {
        let _ = writeln!(out, "no mapping has a key for this event: nothing would run");
    }
    for (key, values) in params {
        let _ = writeln!(out, "mapping `{key}`");
        for (name, value) in values.as_object().unwrap_or(&empty) {
            let _ = writeln!(out, "  param {name} = {value}");
        }
        for rule in trace["rules"].as_array().into_iter().flatten().filter(|r| r["mapping"] == key.as_str()) {
            let condition = rule["if"].as_str().map_or("(always)".to_string(), |c| format!("if {c}"));
            let _ = writeln!(out, "  rule {} {condition}: {} → run `{}`", rule["rule"], s(&rule["result"]), s(&rule["program"]));
            if let Some(argv) = rule["argv"].as_array() {
                let argv: Vec<String> = argv.iter().map(|a| format!("{a}")).collect();
                let _ = writeln!(out, "    argv: [{}]", argv.join(", "));
            }
        }
    }
    let n = trace["would_run"].as_u64().unwrap_or(0);
    let _ = writeln!(out, "{n} task{} would run", if n == 1 { "" } else { "s" });
    out
}

fn db_check(config_path: &Path, path: Option<PathBuf>) -> ExitCode {
    let path = match path {
        Some(p) => p,
        None => match load(config_path) {
            Ok(c) => match c.state {
                Some(p) => p,
                None => {
                    eprintln!("error: the config has no `state:`, so there is no store to check (give --path)");
                    return ExitCode::from(2);
                }
            },
            Err(code) => return code,
        },
    };
    if !path.exists() {
        eprintln!("error: `{}` does not exist", path.display());
        return ExitCode::from(2);
    }
    match crate::store::integrity_check(&path) {
        Ok((ok, report)) => {
            for line in &report {
                println!("{line}");
            }
            if ok {
                println!("{}: ok", path.display());
                ExitCode::SUCCESS
            } else {
                println!("{}: damaged; move it aside to start with an empty store (the history in it is lost)", path.display());
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
