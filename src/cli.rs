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
