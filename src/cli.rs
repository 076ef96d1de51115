//! The command line: `hookrunner [serve]`, `check`, `explain`, `db check`,
//! the API client (`tasks`, `task`, `cancel`, `rerun`, `deliveries`,
//! `delivery`, `replay`, `send`), `hooks`, `import`, `completions` and `man`.

use crate::client::{commands, Api};
use crate::config::{self, Config};
use crate::logging::LogFormat;
use clap::{Args, CommandFactory, Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `--status`: a task status, checked here (a bad argument is exit 2).
fn task_status(text: &str) -> Result<String, String> {
    use crate::status::Status;
    Status::parse(text).map(|s| s.as_str().to_string()).ok_or_else(|| {
        let names: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
        format!("expected one of {}", names.join(", "))
    })
}

/// `--outcome`: a delivery outcome, checked here (a bad argument is exit 2).
fn delivery_outcome(text: &str) -> Result<String, String> {
    use crate::status::Outcome;
    Outcome::parse(text).map(|o| o.as_str().to_string()).ok_or_else(|| {
        let names: Vec<&str> = Outcome::ALL.iter().map(|o| o.as_str()).collect();
        format!("expected one of {}", names.join(", "))
    })
}

/// Writes `bytes` to stdout: a reader that stops early (`| head`) had what
/// it wanted; any other failure (`>/dev/full`) is an error (exit 2).
fn write_out(bytes: &[u8], what: &str) -> Result<(), CliError> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(CliError::Usage(format!("cannot write {what}: {e}")))
        }
        _ => Ok(()),
    }
}

/// Text as it is, to a stdout that may be closed.
fn say_raw(text: &str) {
    use std::io::Write as _;
    if let Err(e) = std::io::stdout().lock().write_all(text.as_bytes()) {
        crate::logging::note_stdout_error(&e);
    }
}

#[derive(Parser)]
#[command(
    name = "hookrunner",
    version,
    about = "Runs handler scripts for incoming webhooks, and tracks every task."
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
    /// Log format: `text` for people (colours only on a terminal), `json` for
    /// one JSON object per line (journald, log shippers). `RUST_LOG` sets the level.
    #[arg(long, global = true, value_enum, env = "HOOKRUNNER_LOG_FORMAT", default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (the default).
    Serve(ServeArgs),
    /// Check the config and print every error; exit 0 when it is valid.
    Check(CheckArgs),
    /// Check the durable store's file (`hookrunner db check`).
    #[command(subcommand)]
    Db(DbCommand),
    /// Show how a payload would be judged and what it would run, offline
    /// (signatures are not checked; nothing runs).
    Explain(ExplainArgs),
    /// List tasks, newest first (a table; `--json` for the API's JSON).
    Tasks(TasksArgs),
    /// Show one task (an id, or the start of one); `--output` follows its output live.
    Task(TaskArgs),
    /// Cancel a queued or running task.
    Cancel(IdArgs),
    /// Run a task again with the same program, params and body.
    Rerun(IdArgs),
    /// List recorded deliveries, newest first.
    Deliveries(DeliveriesArgs),
    /// Show one recorded delivery, with the verdict of every rule.
    Delivery(IdArgs),
    /// Run a recorded delivery again against the current config.
    Replay(IdArgs),
    /// List the nodes of the cluster: labels, version, heartbeat, running tasks.
    Nodes(JsonArgs),
    /// Sign a JSON payload as a source's provider would and post it to
    /// `/hooks/<source>`: tests a setup end to end without the provider.
    Send(SendArgs),
    /// Install, list, remove or verify a source's webhook on GitLab, GitHub,
    /// Gitea or Forgejo (tokens from GITLAB_TOKEN, GITHUB_TOKEN, GITEA_TOKEN).
    #[command(subcommand)]
    Hooks(crate::client::hooks::HooksCommand),
    /// Translate another tool's hook definitions into a hookrunner config
    /// (`hookrunner import adnanh hooks.json -o webhook.yaml`), offline.
    #[command(subcommand)]
    Import(crate::client::import::ImportCommand),
    /// Print a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout.
    Man,
}

/// Where the daemon is and how to authenticate to its API.
#[derive(Args)]
struct ClientArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The daemon's address (`http://host:port`), instead of the config's `server.listen`.
    // Hidden in --help: a URL may carry a password.
    #[arg(long, env = "HOOKRUNNER_URL", value_name = "URL", hide_env_values = true)]
    url: Option<String>,
    /// The API bearer token, instead of the config's first `api.tokens`.
    #[arg(long, env = "HOOKRUNNER_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(Args)]
struct TasksArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Only tasks in this status (queued, running, succeeded, failed, timed_out, cancelled, interrupted).
    #[arg(long, value_parser = task_status)]
    status: Option<String>,
    /// Only tasks from this source.
    #[arg(long)]
    source: Option<String>,
    /// Only tasks from this event.
    #[arg(long)]
    event: Option<String>,
    /// Only tasks of this program.
    #[arg(long)]
    program: Option<String>,
    /// At most this many tasks (1 to 1000; the daemon's default is 50).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    limit: Option<u32>,
    /// Poll every second and print tasks as they appear or change, until Ctrl-C.
    #[arg(long, short)]
    follow: bool,
    /// Print each task event (created, started, finished) as the daemon's
    /// event stream (`GET /events`) tells it, until Ctrl-C.
    #[arg(long, short, conflicts_with_all = ["follow", "event", "limit"])]
    watch: bool,
    /// Print JSON (with --follow: one task per line).
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct TaskArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The task id, or the start of it as `hookrunner tasks` shows it.
    id: String,
    /// Print the task's JSON.
    #[arg(long, conflicts_with = "output")]
    json: bool,
    /// Follow the output live (stdout to stdout, stderr to stderr) until the
    /// task ends; exit 0 if it succeeded, else 1.
    #[arg(long)]
    output: bool,
}

#[derive(Args)]
struct JsonArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Print the API's JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct IdArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The id, or the start of it as the tables show it.
    id: String,
    /// Print the API's JSON answer.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct DeliveriesArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Only deliveries to this source.
    #[arg(long)]
    source: Option<String>,
    /// Only deliveries of this event.
    #[arg(long)]
    event: Option<String>,
    /// Only this outcome (accepted, ignored, duplicate, rejected, refused).
    #[arg(long, value_parser = delivery_outcome)]
    outcome: Option<String>,
    /// At most this many records (1 to 1000; the daemon's default is 50).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    limit: Option<u32>,
    /// Print the API's JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct SendArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The daemon's address (`http://host:port`), instead of the config's `server.listen`.
    // Hidden in --help: a URL may carry a password.
    #[arg(long, env = "HOOKRUNNER_URL", value_name = "URL", hide_env_values = true)]
    url: Option<String>,
    /// The API bearer token a dry run needs, instead of the config's first `api.tokens`.
    #[arg(long, env = "HOOKRUNNER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The source to send to; its provider and secrets come from the config.
    #[arg(long)]
    source: String,
    /// The event (e.g. `push`; for GitLab `push` or `Push Hook`). Not needed
    /// where the body carries it (Slack, Stripe, Standard Webhooks, Jira).
    #[arg(long)]
    event: Option<String>,
    /// An extra request header, `Name: value` (repeatable; replaces a generated one).
    #[arg(long = "header", value_name = "NAME:VALUE")]
    headers: Vec<String>,
    /// Ask for a dry run: judged and answered, nothing runs.
    #[arg(long)]
    dry_run: bool,
    /// Hold the answer until the tasks finish, for up to this long (e.g. `30s`).
    #[arg(long, value_name = "DURATION")]
    wait: Option<String>,
    /// The JSON body (`-` for stdin).
    payload: PathBuf,
}

#[derive(Subcommand)]
enum DbCommand {
    /// Copy a single node's SQLite store into a cluster's PostgreSQL database
    /// (stop the node first): tasks and deliveries, in order.
    Copy {
        /// The SQLite store file.
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
        /// The PostgreSQL database URL (created tables if empty). `DATABASE_URL` works too.
        #[arg(long, value_name = "URL", env = "DATABASE_URL", hide_env_values = true)]
        to: String,
    },
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
    /// The event name, as the provider would send it (e.g. `push`, `Push Hook`), for a
    /// source that reads it from a header (given as that header); a source that reads
    /// it from the body (or takes none) reads it there, as the daemon does.
    #[arg(long)]
    event: Option<String>,
    /// A request header, `Name: value` (repeatable).
    #[arg(long = "header", value_name = "NAME:VALUE")]
    headers: Vec<String>,
    /// Print the trace as JSON.
    #[arg(long)]
    json: bool,
    /// The body (JSON, or any kind the source accepts; `--header 'Content-Type: ...'` says which).
    payload: PathBuf,
}

#[derive(Args)]
struct ConfigArg {
    /// The config file [default: ./webhook.yaml, else /etc/hookrunner/webhook.yaml].
    #[arg(long, short, env = "HOOKRUNNER_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Address to listen on, overriding the whole of `server.listen`: `IP:PORT`
    /// (port 0 picks a free port), `unix:PATH` or `systemd`; repeat for several.
    #[arg(long, short, value_name = "ADDRESS")]
    listen: Vec<String>,
    #[command(flatten)]
    node: NodeArgs,
}

#[derive(Args)]
struct CheckArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Checked as `serve` would start with them.
    #[command(flatten)]
    node: NodeArgs,
}

/// `--node-name` and `--node-labels`, for `serve` and `check` alike.
#[derive(Args)]
struct NodeArgs {
    /// This node's name, overriding `node.name` (unique in a cluster).
    #[arg(long, env = "HOOKRUNNER_NODE_NAME")]
    node_name: Option<String>,
    /// This node's labels, comma-separated, overriding `node.labels`.
    #[arg(long, env = "HOOKRUNNER_NODE_LABELS", value_delimiter = ',')]
    node_labels: Option<Vec<String>>,
}

impl NodeArgs {
    fn into_override(self) -> config::NodeOverride {
        config::NodeOverride {
            // Empty (`HOOKRUNNER_NODE_NAME=` in a unit file): not given.
            name: self.node_name.filter(|n| !n.is_empty()),
            labels: self.node_labels,
        }
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse_from(hoist_log_format(std::env::args_os().collect()));
    if matches!(cli.command, None | Some(Command::Serve(_))) {
        // Before anything is opened: what the daemon's handlers must not inherit.
        crate::process::inherited::note();
    }
    crate::logging::init(cli.log_format);
    match run(cli) {
        // What was printed did not all get out (`> /dev/full`): not done.
        Ok(_) if crate::logging::stdout_error().is_some() => {
            let why = crate::logging::stdout_error().unwrap_or_default();
            complain!("error: cannot write the output: {why}");
            ExitCode::FAILURE
        }
        Ok(code) => code,
        Err(e) => {
            e.report();
            e.exit_code()
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, CliError> {
    match cli.command {
        Some(Command::Check(args)) => check(args),
        Some(Command::Serve(args)) => serve(args),
        Some(Command::Explain(args)) => explain(args),
        Some(Command::Db(DbCommand::Check { config, path })) => db_check(config.config.as_deref(), path),
        Some(Command::Db(DbCommand::Copy { from, to })) => db_copy(&from, &to),
        Some(Command::Tasks(a)) => {
            let filter = commands::TaskFilter {
                status: a.status,
                source: a.source,
                event: a.event,
                program: a.program,
                limit: a.limit,
            };
            if a.watch {
                return with_api(&a.client, |api| commands::watch_tasks(api, &filter, a.json));
            }
            with_api(&a.client, |api| commands::tasks(api, &filter, a.follow, a.json))
        }
        Some(Command::Task(a)) => with_api(&a.client, |api| commands::task(api, &a.id, a.json, a.output)),
        Some(Command::Cancel(a)) => with_api(&a.client, |api| commands::cancel(api, &a.id, a.json)),
        Some(Command::Rerun(a)) => with_api(&a.client, |api| commands::rerun(api, &a.id, a.json)),
        Some(Command::Deliveries(a)) => {
            let filter = commands::DeliveryFilter {
                source: a.source,
                event: a.event,
                outcome: a.outcome,
                limit: a.limit,
            };
            with_api(&a.client, |api| commands::deliveries(api, &filter, a.json))
        }
        Some(Command::Delivery(a)) => with_api(&a.client, |api| commands::delivery(api, &a.id, a.json)),
        Some(Command::Replay(a)) => with_api(&a.client, |api| commands::replay(api, &a.id, a.json)),
        Some(Command::Nodes(a)) => with_api(&a.client, |api| commands::nodes(api, a.json)),
        Some(Command::Send(a)) => send(a),
        Some(Command::Hooks(command)) => Ok(crate::client::hooks::main(command)),
        Some(Command::Import(command)) => Ok(crate::client::import::main(command)),
        Some(Command::Completions { shell }) => {
            // Made in memory: clap_complete panics on a write that fails.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "hookrunner", &mut script);
            write_out(&script, "the completion script")?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Man) => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut page)
                .map_err(|e| CliError::Usage(format!("cannot make the man page: {e}")))?;
            write_out(&page, "the man page")?;
            Ok(ExitCode::SUCCESS)
        }
        None => serve(cli.serve),
    }
}

/// Moves a `--log-format` written before the subcommand to just after it:
/// top-level options conflict with subcommands (they belong to the implicit
/// `serve`), but the log format applies to every command.
fn hoist_log_format(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let cmd = Cli::command();
    let is_subcommand = |a: &std::ffi::OsString| {
        a.to_str()
            .is_some_and(|a| cmd.get_subcommands().any(|s| s.get_name() == a) || a == "help")
    };
    let Some(sub) = args.iter().position(is_subcommand) else {
        return args;
    };
    let mut moved = Vec::new();
    let mut i = 1;
    while i < sub {
        let text = args[i].to_str().unwrap_or("");
        let width = if text == "--log-format" && i + 1 < sub {
            2
        } else if text.starts_with("--log-format=") {
            1
        } else {
            i += 1;
            continue;
        };
        moved.extend(args.drain(i..i + width));
        return hoist_into(args, moved, sub - width);
    }
    args
}

fn hoist_into(
    mut args: Vec<std::ffi::OsString>,
    moved: Vec<std::ffi::OsString>,
    sub: usize,
) -> Vec<std::ffi::OsString> {
    let rest = args.split_off(sub + 1);
    args.extend(moved);
    args.extend(rest);
    // Another `--log-format` before the subcommand (the last one wins anyway).
    hoist_log_format(args)
}

/// Why a command failed. `main` prints it, once, and picks the exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The config has errors (exit 2).
    #[error("{errors}")]
    Config {
        path: PathBuf,
        errors: config::ConfigErrors,
    },
    /// A bad argument, an unknown source, a file that is not there (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The daemon could not be reached or answered an error (exit 1).
    #[error("{0}")]
    Client(#[from] crate::client::Error),
    /// The daemon could not start, or stopped with an error (exit 1).
    #[error("{0}")]
    Serve(#[from] crate::server::ServeError),
    /// The store could not be checked (exit 1).
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
}

impl CliError {
    fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Config { .. } | CliError::Usage(_) => ExitCode::from(2),
            CliError::Client(_) | CliError::Serve(_) | CliError::Store(_) => ExitCode::FAILURE,
        }
    }

    /// Prints the error the way its kind is read: config errors one per
    /// line with their count, the daemon's own in its log, the rest as
    /// `error: <sentence>`.
    fn report(&self) {
        match self {
            CliError::Config { path, errors } => {
                complain!("{errors}");
                let n = errors.0.len();
                complain!("{n} error{} in {}", if n == 1 { "" } else { "s" }, path.display());
            }
            CliError::Serve(e) => tracing::error!("{e}"),
            // A daemon's answer may quote what a sender wrote.
            other => complain!("error: {}", crate::client::commands::terminal(&other.to_string())),
        }
    }
}

/// The config file a command uses: the one given, else the first of
/// [`config::CONFIG_PLACES`] that exists.
fn find_config(given: Option<&Path>) -> Result<PathBuf, CliError> {
    config::find(given).map_err(CliError::Usage)
}

/// Loads the config the command names, or finds one.
fn load_config(given: Option<&Path>) -> Result<Config, CliError> {
    let path = find_config(given)?;
    config::load(&path).map_err(|errors| CliError::Config { path, errors })
}

/// The API of the daemon `args` names: `--url` (or `HOOKRUNNER_URL`), else
/// the `server.listen` of the config (given, or found as [`find_config`]
/// does). The token: `--token` (or `HOOKRUNNER_TOKEN`), else the config's first.
fn api(args: &ClientArgs) -> Result<Api, CliError> {
    match (&args.url, &args.token) {
        // Everything given: the config is not needed.
        (Some(url), Some(token)) => {
            let origin = url_origin(url)?;
            Ok(Api::new(url, Some(token.clone())).from_origin(origin))
        }
        (Some(url), None) => {
            let origin = url_origin(url)?;
            // A config, if there is one, for its token; none is fine.
            let config = match find_config(args.config.config.as_deref()) {
                Ok(path) if path.exists() => {
                    Some(config::load_for_client(&path, true).map_err(|errors| CliError::Config { path, errors })?)
                }
                _ => None,
            };
            Ok(Api::from_config(config.as_ref(), Some(url), None).from_origin(origin))
        }
        (None, token) => {
            let path = find_config(args.config.config.as_deref())?;
            // Given a token, the client needs none of `api.tokens`, which
            // may come from credentials only the daemon has.
            let config =
                config::load_for_client(&path, token.is_none()).map_err(|errors| CliError::Config { path, errors })?;
            let origin = format!("`server.listen` in {}", config.path.display());
            Ok(Api::from_config(Some(&config), None, token.as_deref()).from_origin(&origin))
        }
    }
}

/// Where `--url` came from (`--url` or `HOOKRUNNER_URL`), once it is known
/// to be a URL the client can use: `http://` or `https://` (`host:port`
/// gets `http://`) with a host. Anything else is a bad argument.
fn url_origin(url: &str) -> Result<&'static str, CliError> {
    let origin = if std::env::var("HOOKRUNNER_URL").is_ok_and(|v| v == url) {
        "HOOKRUNNER_URL"
    } else {
        "--url"
    };
    // As the client will use it (`unix:` and `systemd` are kept as written),
    // but parsed before a trailing `/` is dropped (`http://` has no host).
    let normal = crate::client::normalise_url(url);
    let text = url.trim();
    let full = if text.contains("://") {
        text.to_string()
    } else {
        format!("http://{text}")
    };
    let usable = (normal.starts_with("http://") || normal.starts_with("https://"))
        && url::Url::parse(&full).is_ok_and(|u| u.host_str().is_some_and(|h| !h.is_empty()));
    if !usable {
        return Err(CliError::Usage(format!(
            "{origin}: `{}` is not a URL such as http://127.0.0.1:9000",
            crate::secret::mask_url(url.trim())
        )));
    }
    Ok(origin)
}

/// Runs a client command against the daemon `args` names.
fn with_api(
    args: &ClientArgs,
    run: impl FnOnce(&Api) -> Result<ExitCode, crate::client::Error>,
) -> Result<ExitCode, CliError> {
    Ok(run(&api(args)?)?)
}

fn send(args: SendArgs) -> Result<ExitCode, CliError> {
    let config = load_config(args.config.config.as_deref())?;
    let source = find_source(&config, &args.source)?;
    let body =
        commands::read_payload(&args.payload, config.server.max_body).map_err(|e| CliError::Usage(e.to_string()))?;
    let api = match &args.url {
        Some(url) => Api::from_config(Some(&config), Some(url), args.token.as_deref()).from_origin(url_origin(url)?),
        None => Api::from_config(Some(&config), None, args.token.as_deref())
            .from_origin(&format!("`server.listen` in {}", config.path.display())),
    };
    let send = commands::SendArgs {
        event: args.event,
        headers: args.headers,
        dry_run: args.dry_run,
        wait: args.wait,
        prefix: config.server.prefix.clone(),
    };
    // What makes the delivery is checked before anything is sent: a bad
    // argument (a header, a missing event, a secret) is exit 2.
    let prepared = commands::prepare_send(source, &body, &send).map_err(CliError::Usage)?;
    Ok(commands::send(&api, source, &body, &send, prepared)?)
}

/// A source of the config, or an error naming the ones there are.
fn find_source<'c>(config: &'c Config, name: &str) -> Result<&'c std::sync::Arc<config::Source>, CliError> {
    config.sources.get(name).ok_or_else(|| {
        let mut names: Vec<&str> = config.sources.keys().map(String::as_str).collect();
        names.sort();
        CliError::Usage(format!(
            "there is no source named `{name}` (sources: {})",
            names.join(", ")
        ))
    })
}

fn check(args: CheckArgs) -> Result<ExitCode, CliError> {
    let mut config = load_config(args.config.config.as_deref())?;
    config
        .override_node(args.node.into_override())
        .map_err(CliError::Usage)?;
    for w in &config.warnings {
        complain!("warning: {w}");
    }
    let rules: usize = config.sources.values().map(|s| s.routes.rule_count()).sum();
    say!(
        "{}: ok ({} sources, {} programs, {} rules)",
        config.path.display(),
        config.sources.len(),
        config.programs.len(),
        rules
    );
    Ok(ExitCode::SUCCESS)
}

fn serve(args: ServeArgs) -> Result<ExitCode, CliError> {
    let mut config = load_config(args.config.config.as_deref())?;
    // `--listen` replaces the config's list; a relative socket path starts here.
    let listen_override = if args.listen.is_empty() {
        None
    } else {
        let here = std::path::absolute(".").unwrap_or_default();
        let mut listen: Vec<config::Listen> = Vec::new();
        for text in &args.listen {
            let address =
                config::parse_address(text, &here).map_err(|why| CliError::Usage(format!("--listen: {why}")))?;
            if let Some(earlier) = listen.iter().find(|l| config::same_place(&l.address, &address)) {
                return Err(CliError::Usage(format!(
                    "--listen: `{}` is listed twice",
                    earlier.address
                )));
            }
            listen.push(config::Listen { address, tls: None });
        }
        config.server.listen = listen.clone();
        Some(listen)
    };
    config
        .override_node(args.node.into_override())
        .map_err(CliError::Usage)?;
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    tracing::info!(config = %config.path.display(), sources = config.sources.len(), "config loaded");
    crate::server::serve(config, listen_override)?;
    Ok(ExitCode::SUCCESS)
}

fn explain(args: ExplainArgs) -> Result<ExitCode, CliError> {
    use crate::headers::HeaderPairs;
    use crate::headers::Headers;
    use crate::intake::{explain, Parts};
    use crate::mapping::event::{event_of, EventSpec};

    let config = load_config(args.config.config.as_deref())?;
    let source = find_source(&config, &args.source)?;
    let body = commands::read_payload(&args.payload, config.server.max_body)
        .map(bytes::Bytes::from)
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let mut headers = HeaderPairs::new();
    for h in &args.headers {
        let (k, v) = h
            .split_once(':')
            .map(|(k, v)| (k.trim(), v.trim()))
            .filter(|(k, _)| !k.is_empty() && k.bytes().all(|b| b.is_ascii_graphic() && b != b':'))
            .ok_or_else(|| CliError::Usage(format!("`{h}` is not a header such as `X-Event: push`")))?;
        headers.add(k, v);
    }
    // `--event` becomes the header the source reads it from, unless that
    // header is given; the daemon's own reading then names the event.
    let event_flag = args.event.as_deref().map(str::trim).filter(|e| !e.is_empty());
    match (&source.event, event_flag) {
        (EventSpec::Header(name), Some(event)) if headers.get(name).is_none() => headers.add(name, event),
        (EventSpec::Custom { .. }, Some(event)) => {
            if let Some((name, value)) = source.provider.event_header(event) {
                if headers.get(name).is_none() {
                    headers.add(name, value.as_str());
                }
            }
        }
        _ => {}
    }
    // The body as the source takes it; file parts show the paths they would get.
    let uploads = config
        .uploads_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("hookrunner-<pid>-uploads"))
        .join("<delivery_id>");
    let parsed = crate::intake::parse_body(&headers, &body, &crate::intake::Accepts::of(source), &|| {
        uploads.clone()
    })
    .map_err(|e| CliError::Usage(format!("`{}`: {e}", args.payload.display())))?;
    let event = event_of(&source.event, &headers, &parsed.json).map_err(|e| match &source.event {
        EventSpec::Header(name) => CliError::Usage(format!(
            "source `{}` reads its event from the `{name}` header: give --event (or --header '{name}: ...')",
            source.name
        )),
        _ => CliError::Usage(format!("`{}`: {e}", args.payload.display())),
    })?;
    if let Some(given) = event_flag {
        let spelled = source.provider.normalise_event(given);
        if event.name != given && spelled.as_deref() != Some(event.name.as_str()) && event.raw.as_deref() != Some(given)
        {
            return Err(CliError::Usage(format!(
                "source `{}` reads this delivery's event as `{}`, not `{given}`: {}",
                source.name,
                event.name,
                match &source.event {
                    EventSpec::Fixed => "it takes no event name (every delivery is `default`); leave out --event",
                    EventSpec::Field(_) => "it reads the event from the body; leave out --event",
                    _ => "the headers or the body say otherwise; leave out --event or change them",
                }
            )));
        }
    }
    let request = crate::mapping::Request {
        method: "POST".into(),
        path: format!("{}/{}", config.server.prefix, source.name),
        remote_addr: None,
        client_ip: None,
    };
    let parts = Parts {
        event: &event,
        json: &parsed.json,
        stdin: &parsed.stdin,
        headers: &headers,
        query: &[],
        request: &request,
        raw: &body,
        files: &parsed.files,
        boundary: parsed.boundary.as_deref(),
    };
    let trace = explain(source, &parts, "<delivery_id>");
    if args.json {
        say!("{}", serde_json::to_string_pretty(&trace).unwrap_or_default());
    } else {
        say_raw(&render_trace(&trace));
    }
    Ok(ExitCode::SUCCESS)
}

/// The trace as text for a terminal.
fn render_trace(trace: &serde_json::Value) -> String {
    use std::fmt::Write;
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "source `{}`, event `{}`, action `{}`",
        s(&trace["source"]),
        s(&trace["event"]),
        s(&trace["action"])
    );
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
        for rule in trace["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["mapping"] == key.as_str())
        {
            let condition = rule["if"]
                .as_str()
                .map_or("(always)".to_string(), |c| format!("if {c}"));
            let _ = writeln!(
                out,
                "  rule {} {condition}: {} → run `{}`",
                rule["rule"],
                s(&rule["result"]),
                s(&rule["program"])
            );
            if let Some(argv) = rule["argv"].as_array() {
                let argv: Vec<String> = argv.iter().map(|a| format!("{a}")).collect();
                let _ = writeln!(out, "    argv: [{}]", argv.join(", "));
            }
        }
    }
    for note in trace["notes"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "note: {}", s(note));
    }
    let n = trace["would_run"].as_u64().unwrap_or(0);
    let _ = writeln!(out, "{n} task{} would run", if n == 1 { "" } else { "s" });
    out
}

fn db_copy(from: &Path, to: &str) -> Result<ExitCode, CliError> {
    if !from.exists() {
        return Err(CliError::Usage(format!("`{}` does not exist", from.display())));
    }
    // As `state.postgres`: a URL, whose password can be masked wherever it
    // is shown (the `key=value` form's could not be told from the rest).
    if !(to.starts_with("postgres://") || to.starts_with("postgresql://")) {
        return Err(CliError::Usage(
            "--to must be a URL such as `postgres://user@host:5432/database` (the `key=value` form is not taken)"
                .to_string(),
        ));
    }
    let url = crate::secret::SecretUrl::new(to);
    let copied = crate::store::copy::sqlite_to_postgres(from, &url)?;
    say!(
        "copied {} tasks and {} deliveries from {} to {}",
        copied.tasks,
        copied.deliveries,
        from.display(),
        url.masked()
    );
    if copied.interrupted > 0 {
        say!("{} tasks found running were copied as interrupted", copied.interrupted);
    }
    if copied.already > 0 {
        say!(
            "{} rows were in the database already (copied before) and were left as they are",
            copied.already
        );
    }
    if copied.skipped > 0 {
        say!(
            "{} rows could not be read and were not copied (named in the log)",
            copied.skipped
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn db_check(config_path: Option<&Path>, path: Option<PathBuf>) -> Result<ExitCode, CliError> {
    let (report, name) = match path {
        Some(p) => (check_file(&p)?, p.display().to_string()),
        None => match load_config(config_path)?.state {
            Some(config::State::Sqlite(path)) => (check_file(&path)?, path.display().to_string()),
            Some(config::State::Postgres { url, .. }) => (crate::store::check_postgres(&url)?, url.masked()),
            None => {
                return Err(CliError::Usage(
                    "the config has no `state:`, so there is no store to check (give --path)".into(),
                ))
            }
        },
    };
    for line in &report.integrity {
        say!("integrity: {line}");
    }
    if !report.intact() {
        // Nothing else it says could be trusted.
        say!("{name}: damaged; move it aside to start with an empty store (the history in it is lost)");
        return Ok(ExitCode::FAILURE);
    }
    if report.schema_version == 0 && !report.foreign_tables.is_empty() {
        say!(
            "{name}: not a hookrunner store: it has tables hookrunner does not make ({}) and no schema version",
            report.foreign_tables.join(", ")
        );
        return Ok(ExitCode::FAILURE);
    }
    if report.schema_version == 0 {
        say!("schema version 0: no hookrunner has used this database yet");
        say!("{name}: ok (empty)");
        return Ok(ExitCode::SUCCESS);
    }
    if report.schema_version < 0 {
        say!(
            "{name}: schema version {} is not one hookrunner writes: this is not a hookrunner store, or it was changed by hand",
            report.schema_version
        );
        return Ok(ExitCode::FAILURE);
    }
    say!(
        "schema version {} (this hookrunner writes {})",
        report.schema_version,
        report.ours
    );
    if report.schema_version < report.ours {
        say!(
            "rows not read: the next start converts this store to version {}",
            report.ours
        );
        say!("{name}: ok");
        return Ok(ExitCode::SUCCESS);
    }
    if report.newer() {
        say!(
            "{name}: written by a newer hookrunner (schema version {}); this one cannot read it: upgrade hookrunner",
            report.schema_version
        );
        return Ok(ExitCode::FAILURE);
    }
    say!("{} tasks, {} deliveries", report.tasks, report.deliveries);
    say!("{} unreadable rows", report.unreadable.len());
    for u in &report.unreadable {
        say!("  {u}");
    }
    if report.quarantined > 0 {
        say!(
            "{} rows could not be converted to typed records and were kept in the `quarantine` table",
            report.quarantined
        );
    }
    if report.ok() {
        say!("{name}: ok");
        Ok(ExitCode::SUCCESS)
    } else {
        say!("{name}: some rows cannot be read (listed above); the daemon logs and skips them");
        Ok(ExitCode::FAILURE)
    }
}

fn check_file(path: &Path) -> Result<crate::store::CheckReport, CliError> {
    if !path.exists() {
        return Err(CliError::Usage(format!("`{}` does not exist", path.display())));
    }
    if path.is_dir() {
        return Err(CliError::Usage(format!(
            "`{}` is a directory; give the store's SQLite file",
            path.display()
        )));
    }
    Ok(crate::store::check(path)?)
}
