//! Loading `webhook.yaml`: parse the YAML into [`raw`] structs, then check
//! everything and build the types the daemon runs on. Whatever can be refused
//! is refused here, with the key path, line and column.

mod answer;
mod error;
mod interp;
mod listen;
mod locate;
mod raw;
mod source;
mod units;

pub(crate) use answer::settable_header;
pub use answer::{Cors, Reply, API_PATHS, DEFAULT_PREFIX};
pub use error::{ConfigError, ConfigErrors};
pub use listen::{parse_address, same_place, same_sockets, Listen, ListenAddress, Tls, DEFAULT_SOCKET_MODE};
pub use source::{Dedup, DedupKey, Source};
pub use units::{parse_duration, parse_size};

use crate::auth::ip::parse_net;
use crate::engine::Limits;
use crate::mapping::condition::Condition;
use crate::mapping::params::ParamFrom;
use crate::mapping::{Mapping, Rule, BUILTIN_VARS};
use crate::process::program::{
    OnBusy, ParamFile, RetryPolicy, BUILTINS as TEMPLATE_BUILTINS, DEFAULT_TIMEOUT, KILL_GRACE,
};
use crate::process::{Program, Template};
use crate::secret::Secret;
use crate::status::Status;
use interp::Interp;
use ipnet::IpNet;
use locate::Seg;
use raw::{RawCommand, RawConfig, RawMapping, RawProgram};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:9000";
/// How long finished tasks are kept when `tasks.keep_for` says nothing.
pub const DEFAULT_KEEP_FOR: std::time::Duration = std::time::Duration::from_secs(7 * 86_400);

/// A checked config.
#[derive(Debug)]
pub struct Config {
    pub path: PathBuf,
    pub server: Server,
    /// Bearer tokens for the task API; empty means loopback clients only.
    pub api_tokens: Vec<Secret>,
    pub limits: Limits,
    pub deliveries: Deliveries,
    /// Where tasks and deliveries are kept; `None` runs in memory only.
    pub state: Option<State>,
    /// This node (of a cluster, or the only one).
    pub node: Node,
    /// Where handlers' output files go; `None` (no `state:`): a temporary
    /// directory of the process.
    pub output_dir: Option<PathBuf>,
    /// Where the files of multipart deliveries go: `uploads` beside the
    /// SQLite file, or beside the output directory (PostgreSQL); `None` (no
    /// `state:`): a temporary directory of the process.
    pub uploads_dir: Option<PathBuf>,
    pub sources: HashMap<String, Arc<Source>>,
    pub programs: Vec<Arc<Program>>,
    /// Things that work but deserve a look (default secrets in use, ...).
    pub warnings: Vec<String>,
    /// `--node-name` and `--node-labels` (or their environment variables),
    /// applied over `node:` at start and again at every reload.
    pub node_override: NodeOverride,
    /// Where each program's `run_on` is written (line, column), for
    /// [`Config::check_node`]'s errors, which come after loading.
    run_on_at: HashMap<String, (usize, usize)>,
}

/// What the command line says about this node, over the config file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeOverride {
    pub name: Option<String>,
    pub labels: Option<Vec<String>>,
}

/// `state:`: the durable store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// A SQLite file: one node.
    Sqlite(PathBuf),
    /// A PostgreSQL database shared by the nodes of a cluster.
    Postgres {
        url: crate::secret::SecretUrl,
        /// Connections each node keeps.
        connections: usize,
    },
}

impl State {
    /// Where it is, for messages (a URL's password masked).
    pub fn describe(&self) -> String {
        match self {
            State::Sqlite(path) => path.display().to_string(),
            State::Postgres { url, .. } => url.masked(),
        }
    }
}

/// `node:`: this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Unique in the cluster; the host name by default.
    pub name: String,
    pub labels: Vec<String>,
    /// A node whose heartbeat is older than this is taken for dead.
    pub lease: std::time::Duration,
    /// Where other nodes reach this node's API; by default the first TCP
    /// listener's (`https://` when it has TLS).
    pub url: Option<String>,
}

/// How long a node is alive without a heartbeat when `node.lease` says nothing.
pub const DEFAULT_LEASE: std::time::Duration = std::time::Duration::from_secs(10);

/// This machine's host name (the default node name).
pub fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// `deliveries:`: how much of the delivery log is kept in memory.
#[derive(Debug, Clone)]
pub struct Deliveries {
    /// Records of requests that passed their source's auth.
    pub keep: usize,
    /// Records of requests refused before or at auth, within their own
    /// budget (0: none kept).
    pub keep_refused: usize,
    pub body_bytes: usize,
}

#[derive(Debug)]
pub struct Server {
    /// Where connections are taken (`server.listen`, or `--listen`); never empty.
    pub listen: Vec<Listen>,
    pub max_body: usize,
    pub trusted_proxies: Vec<IpNet>,
    pub watch_config: bool,
    /// Where hooks are served: `/hooks`, `/api/v1`, or `""` (at `/<source>`).
    pub prefix: String,
}

impl Config {
    /// Puts `--node-name` and `--node-labels` in force over `node:` (and
    /// keeps them for reloads), then checks `node` as [`Config::check_node`].
    pub fn override_node(&mut self, o: NodeOverride) -> Result<(), String> {
        if let Some(name) = &o.name {
            self.node.name = name.clone();
        }
        if let Some(labels) = &o.labels {
            self.node.labels = labels.iter().filter(|l| !l.is_empty()).cloned().collect();
        }
        self.node_override = o;
        self.check_node().map_err(|e| e.to_string())
    }

    /// Checks `node` (after `--node-name` and `--node-labels`): names and
    /// labels are valid, and without a cluster this node can run every
    /// program's `run_on`.
    pub fn check_node(&self) -> Result<(), ConfigError> {
        let error = |position, path: String, message| ConfigError {
            file: self.path.display().to_string(),
            position,
            path,
            message,
        };
        if let Some(why) = label_name_error(&self.node.name, "node name", false) {
            return Err(error(None, String::new(), why));
        }
        if let Some(why) = self
            .node
            .labels
            .iter()
            .find_map(|l| label_name_error(l, "label", false))
        {
            return Err(error(None, String::new(), why));
        }
        if matches!(self.state, Some(State::Postgres { .. })) {
            return Ok(());
        }
        let all = self
            .programs
            .iter()
            .cloned()
            .chain(self.sources.values().flat_map(|s| s.routes.programs()));
        for p in all {
            if let Some(missing) = p.run_on.iter().find(|l| !self.node.labels.contains(l)) {
                return Err(error(
                    self.run_on_at.get(&*p.name).copied(),
                    locate::render(&[key("programs"), key(&p.name), key("run_on")]),
                    format!(
                        "program `{}` runs on nodes labelled `{missing}`, and this node (the only one without a cluster) is not: add the label to `node.labels` or --node-labels",
                        p.name
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The programs, as the engine finds them by name.
    pub fn programs(self: &Arc<Self>) -> crate::engine::Programs {
        let config = self.clone();
        let mut limits = HashMap::new();
        let mut known = Vec::new();
        let mut keyed = false;
        let mut replacing = HashMap::new();
        let all = self
            .programs
            .iter()
            .cloned()
            .chain(self.sources.values().flat_map(|s| s.routes.programs()));
        for p in all {
            if !known.iter().any(|k: &String| **k == *p.name) {
                known.push(p.name.to_string());
            }
            keyed |= p.concurrency_key.is_some();
            if p.concurrency_key.is_some() {
                match p.on_busy {
                    crate::process::program::OnBusy::Replace => replacing.insert(p.name.to_string(), false),
                    crate::process::program::OnBusy::CancelRunning => replacing.insert(p.name.to_string(), true),
                    crate::process::program::OnBusy::Queue => None,
                };
            }
            if let Some(max) = p.max_concurrent {
                limits.insert(p.name.to_string(), max);
            }
        }
        crate::engine::Programs {
            lookup: Box::new(move |name| config.program(name)),
            limits,
            known,
            keyed,
            replacing,
        }
    }

    /// A program by name: from `programs`, or a handler script a rule runs.
    pub fn program(&self, name: &str) -> Option<Arc<Program>> {
        self.programs
            .iter()
            .find(|p| &*p.name == name)
            .cloned()
            .or_else(|| self.sources.values().find_map(|s| s.routes.program(name)))
    }
}

/// Reads and checks the config file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    parse(&read_config(path)?, path)
}

/// The most hookrunner reads of its config file, or of a file that
/// `${file:...}` or `${credential:...}` names: far more than any needs, so
/// that a path such as `/dev/zero` is refused instead of filling memory.
pub const MAX_FILE_SIZE: usize = 16 << 20;

/// The text of the file at `path`, if it holds at most [`MAX_FILE_SIZE`] bytes.
pub(crate) fn read_text(path: &Path) -> std::io::Result<String> {
    use std::io::{Error, ErrorKind, Read};
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_FILE_SIZE as u64 + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() > MAX_FILE_SIZE {
        return Err(Error::new(
            ErrorKind::FileTooLarge,
            "it holds more than 16 MiB, the most hookrunner reads of a config or of a file it names",
        ));
    }
    String::from_utf8(bytes).map_err(|_| Error::new(ErrorKind::InvalidData, "stream did not contain valid UTF-8"))
}

/// The text of the config file at `path`.
fn read_config(path: &Path) -> Result<String, ConfigErrors> {
    read_text(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.display().to_string(),
            position: None,
            path: String::new(),
            message: format!("cannot read the config file: {e}"),
        }])
    })
}

/// What an API client needs of the config at `path`: its `server` section,
/// and its `api` section when `tokens` (the client was given no token of its
/// own). The other sections are skipped unread, so secrets and files they
/// name (which only the daemon may be able to read) are not needed. Errors
/// in the sections read are reported as [`load`] would, with lines and columns.
pub fn load_for_client(path: &Path, tokens: bool) -> Result<Config, ConfigErrors> {
    let text = read_config(path)?;
    parse_with(&text, path, |text| {
        let (server, api) = if tokens {
            let raw: raw::RawClientConfig<raw::RawApi> = serde_yaml::from_str(text)?;
            (raw.server, raw.api.unwrap_or_default())
        } else {
            let raw: raw::RawClientConfig<serde::de::IgnoredAny> = serde_yaml::from_str(text)?;
            (raw.server, raw::RawApi::default())
        };
        Ok(RawConfig {
            server,
            api,
            ..RawConfig::default()
        })
    })
}

/// Checks config `text`, as if read from `path` (relative paths start at its directory).
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
    parse_with(text, path, |text| serde_yaml::from_str(text))
}

/// Checks config `text` as `read` turns it into its YAML shape.
fn parse_with(
    text: &str,
    path: &Path,
    read: impl FnOnce(&str) -> Result<RawConfig, serde_yaml::Error>,
) -> Result<Config, ConfigErrors> {
    let file = path.display().to_string();
    let raw: RawConfig = if text.trim().is_empty() {
        RawConfig::default()
    } else {
        read(text).map_err(|e| ConfigErrors(vec![yaml_error(&file, text, &e)]))?
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let dir = std::path::absolute(&dir).unwrap_or(dir);
    let mut checker = Checker {
        text,
        file,
        dir,
        errors: Vec::new(),
        warnings: Vec::new(),
        run_on_at: HashMap::new(),
    };
    let config = checker.check(raw, path);
    if checker.errors.is_empty() {
        let mut config = config;
        config.warnings = checker.warnings;
        Ok(config)
    } else {
        Err(ConfigErrors(checker.errors))
    }
}

fn yaml_error(file: &str, text: &str, e: &serde_yaml::Error) -> ConfigError {
    let mut message = e.to_string();
    // The position goes in front, as for every other error.
    if let Some(i) = message.rfind(" at line ") {
        message.truncate(i);
    }
    let (path, message) = match message.split_once(": ") {
        Some((p, m)) if !p.contains(' ') && !p.is_empty() => (p.to_string(), m.to_string()),
        _ => (String::new(), message),
    };
    let mut position = e.location().map(|l| (l.line(), l.column()));
    // serde places a map's own errors at its start; a key written twice is
    // shown where it is written the second time.
    if let (Some(at), Some(key)) = (
        position,
        message
            .strip_prefix("duplicate key `")
            .or_else(|| message.strip_prefix("duplicate field `"))
            .and_then(|k| k.strip_suffix('`')),
    ) {
        position = locate::repeated_key(text, at, key).or(position);
    }
    ConfigError {
        file: file.to_string(),
        position,
        path,
        message: without_string_values(&message),
    }
}

/// serde's `invalid type: string "…", expected …` with the string left out:
/// the value written in the wrong place may be a secret (`tokens: s3cret`
/// where a list belongs, `basic: "user:password"`), and the line and column
/// already say where it is.
fn without_string_values(message: &str) -> String {
    const QUOTED: &str = "string \"";
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find(QUOTED) {
        out.push_str(&rest[..i]);
        out.push_str("a string");
        // The value is written as Rust's debug text: `\"` and `\\` escaped.
        let after = &rest[i + QUOTED.len()..];
        let mut end = after.len();
        let mut escaped = false;
        for (j, c) in after.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => {
                    end = j + 1;
                    break;
                }
                _ => {}
            }
        }
        rest = &after[end.min(after.len())..];
    }
    out.push_str(rest);
    out
}

pub(crate) struct Checker<'a> {
    text: &'a str,
    file: String,
    dir: PathBuf,
    errors: Vec<ConfigError>,
    warnings: Vec<String>,
    /// Where each program's `run_on` is written (`Config::run_on_at`).
    run_on_at: HashMap<String, (usize, usize)>,
}

pub(crate) fn key(k: &str) -> Seg {
    Seg::Key(k.to_string())
}

pub(crate) fn valid_header(name: &str) -> bool {
    crate::headers::valid_name(name)
}

/// The longest source, program or node name, or label.
const MAX_NAME: usize = 128;

/// What is wrong with `name` as a `what` (`program name`, `source name`,
/// `node name`, `label`), if anything. Such names become metric labels and
/// log fields, so only letters, digits and `-_.~@+` (and, with `slash`, in a
/// source name, `/` between parts, as in `team/app`), at most [`MAX_NAME`]
/// characters.
fn label_name_error(name: &str, what: &str, slash: bool) -> Option<String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "-_.~@+".contains(c) || (slash && c == '/');
    let well_formed = !name.is_empty()
        && name.chars().all(ok_char)
        && !name.starts_with('/')
        && !name.ends_with('/')
        && !name.contains("//")
        // A URL path of `.` or `..` parts is resolved away by clients and proxies.
        && (!slash || name.split('/').all(|part| part != "." && part != ".."));
    if !well_formed {
        let rule = if slash {
            "use letters, digits, `-_.~@+` and `/` between parts (no part `.` or `..`)"
        } else {
            "use letters, digits and `-_.~@+`"
        };
        return Some(format!("`{name}` is not a valid {what}: {rule}"));
    }
    // Only ASCII is left, so bytes are characters.
    (name.len() > MAX_NAME).then(|| {
        format!(
            "`{name}` is not a valid {what}: it is {} characters long, and the most is {MAX_NAME}",
            name.len()
        )
    })
}

/// Checks an `http://` or `https://` URL hookrunner will send requests to
/// (`on_finish` callbacks, `node.url`) as the HTTP client will parse it: a
/// host, a valid port. A backslash (which the client reads as `/`), white
/// space or a control character (which it drops) is refused, so the URL
/// shown masked is the one requested. The error never repeats the URL (it
/// may hold a password or a token).
fn http_url(text: &str) -> Result<(), String> {
    let Some(rest) = text.strip_prefix("http://").or_else(|| text.strip_prefix("https://")) else {
        return Err("must be an http:// or https:// URL".into());
    };
    if text.contains('\\') {
        return Err("is not a valid URL: it holds a backslash (write `/`, or `%5C` for a backslash)".into());
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("is not a valid URL: it holds white space or a control character (write it %-encoded)".into());
    }
    // `http:///x/y` parses with `x` as its host: what was written names none.
    if rest.starts_with(['/', '\\', '?', '#']) {
        return Err("is not a valid URL: it names no host".into());
    }
    match url::Url::parse(text) {
        Ok(u) if u.host_str().is_some_and(|h| !h.is_empty()) => Ok(()),
        Ok(_) => Err("is not a valid URL: it names no host".into()),
        Err(e) => Err(format!("is not a valid URL: {e}")),
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Checker<'_> {
    fn error(&mut self, path: &[Seg], message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.clone(),
            position: locate::locate_nearest(self.text, path),
            path: locate::render(path),
            message: message.into(),
        });
    }

    /// Notes a secret that fell back to its `${VAR:-default}`.
    fn warn_default(&mut self, path: &[Seg], value: &Interp) {
        for var in &value.defaulted {
            self.warnings.push(format!(
                "`{}` uses the default value of `${{{var}}}`: set {var} before exposing this daemon",
                locate::render(path)
            ));
        }
    }

    fn secret(&mut self, path: &[Seg], value: &Interp) -> Option<Secret> {
        self.warn_default(path, value);
        if value.value.is_empty() {
            self.error(path, "must not be empty");
            return None;
        }
        if value.value.trim().is_empty() {
            // A slip (an unset variable inside quotes, a blank line of a
            // secret file), never a secret anyone meant.
            self.error(path, "is only white space, which is no secret");
            return None;
        }
        Some(Secret::new(value.value.clone()))
    }

    /// An entry of `api.tokens`: a secret a client can send. The daemon
    /// reads it from `Authorization: Bearer <token>` as visible ASCII, white
    /// space at the ends trimmed, so a token with anything else could never
    /// be accepted.
    fn api_token(&mut self, path: &[Seg], value: &Interp) -> Option<Secret> {
        let secret = self.secret(path, value)?;
        let token = &value.value;
        if token.trim() != token {
            self.error(
                path,
                "begins or ends with white space, which the daemon trims from the `Authorization` header it reads, so no client could use this token",
            );
            return None;
        }
        if !token.chars().all(|c| c == ' ' || c == '\t' || c.is_ascii_graphic()) {
            self.error(
                path,
                "holds a control character or one outside ASCII, which the daemon does not read in an `Authorization` header, so no client could use this token",
            );
            return None;
        }
        Some(secret)
    }

    fn check(&mut self, raw: RawConfig, path: &Path) -> Config {
        let server = self.server(&raw.server);
        let api_tokens = raw
            .api
            .tokens
            .iter()
            .enumerate()
            .filter_map(|(i, t)| self.api_token(&[key("api"), key("tokens"), Seg::Index(i)], t))
            .collect();
        let limits = self.limits(&raw.tasks);
        // Every entry of `programs`; `None` for one with errors of its own,
        // which rules may still name without a second error.
        let mut programs: HashMap<String, Option<Arc<Program>>> = HashMap::new();
        let mut program_list = Vec::new();
        for (name, p) in &raw.programs.0 {
            if let Some(why) = label_name_error(name, "program name", false) {
                self.error(&[key("programs"), key(name)], why);
                programs.insert(name.clone(), None);
                continue;
            }
            let program = self.program(name, p).map(Arc::new);
            program_list.extend(program.clone());
            programs.insert(name.clone(), program);
        }
        let mut sources = HashMap::new();
        for (name, s) in &raw.sources.0 {
            let at = [key("sources"), key(name)];
            if let Some(why) = label_name_error(name, "source name", true) {
                self.error(&at, why);
                continue;
            }
            self.hook_path(&at, &server.prefix, name);
            if let Some(source) = self.source(&at, name, s) {
                sources.insert(name.clone(), source);
            }
        }
        for (source_name, keys) in &raw.mappings.0 {
            let at = [key("mappings"), key(source_name)];
            if raw.sources.0.iter().all(|(n, _)| n != source_name) {
                self.error(
                    &at,
                    format!("mappings name source `{source_name}`, which is not in `sources`"),
                );
                continue;
            }
            for (event_key, m) in &keys.0 {
                let at = [key("mappings"), key(source_name), key(event_key)];
                let mapping = self.mapping(&at, event_key, m, &programs);
                let reply = m
                    .response
                    .as_ref()
                    .map(|r| self.reply(&[&at[..], &[key("response")]].concat(), r));
                // A source with errors of its own still gets its mappings checked.
                if let (Some(mapping), Some(source)) = (mapping, sources.get_mut(source_name)) {
                    if let Some(reply) = reply {
                        let laid = Arc::new(source.reply.with(&reply));
                        source.replies.insert(event_key.clone(), laid);
                    }
                    source.routes.insert(mapping);
                }
            }
        }
        let sources = sources
            .into_iter()
            .map(|(name, mut source)| {
                source.body = source.wanted_body();
                if source.routes.is_empty() {
                    self.warnings.push(format!(
                        "source `{name}` has no mappings: its deliveries are answered 200 and run nothing"
                    ));
                }
                (name, Arc::new(source))
            })
            .collect();
        if raw.deliveries.keep == Some(0) {
            // The newest record is always kept (in memory).
            self.error(&[key("deliveries"), key("keep")], "must be at least 1");
        }
        Config {
            path: path.to_path_buf(),
            server,
            api_tokens,
            limits,
            deliveries: Deliveries {
                keep: raw.deliveries.keep.unwrap_or(10_000),
                keep_refused: raw.deliveries.keep_refused.unwrap_or(1_000),
                body_bytes: raw
                    .deliveries
                    .body_bytes
                    .map_or(64 << 20, |s| usize::try_from(s.0).unwrap_or(usize::MAX)),
            },
            state: raw.state.as_ref().and_then(|s| self.state(s)),
            output_dir: raw.state.as_ref().map(|s| self.output_dir(s)),
            uploads_dir: raw.state.as_ref().map(|s| self.uploads_dir(s)),
            node: self.node(raw.node.as_ref()),
            sources,
            programs: program_list,
            warnings: Vec::new(),
            node_override: NodeOverride::default(),
            run_on_at: std::mem::take(&mut self.run_on_at),
        }
    }

    fn state(&mut self, raw: &raw::RawState) -> Option<State> {
        let at = [key("state")];
        if raw.connections == Some(0) {
            self.error(&[key("state"), key("connections")], "must be at least 1");
        }
        match (&raw.path, &raw.postgres) {
            (Some(path), None) => {
                if raw.connections.is_some() {
                    self.error(
                        &[key("state"), key("connections")],
                        "`connections` applies only to `postgres`",
                    );
                }
                Some(State::Sqlite(self.dir.join(&path.value)))
            }
            (None, Some(url)) => {
                let text = url.value.trim();
                if !(text.starts_with("postgres://") || text.starts_with("postgresql://")) {
                    self.error(
                        &[key("state"), key("postgres")],
                        "must be a URL such as `postgres://user@host:5432/database`",
                    );
                    return None;
                }
                if let Err(why) = crate::store::check_postgres_url(text) {
                    self.error(&[key("state"), key("postgres")], why);
                    return None;
                }
                Some(State::Postgres {
                    url: crate::secret::SecretUrl::new(text),
                    connections: raw.connections.unwrap_or(8).max(1),
                })
            }
            (Some(_), Some(_)) => {
                self.error(&at, "give `path` (SQLite) or `postgres`, not both");
                None
            }
            (None, None) => {
                self.error(&at, "give `path` (a SQLite file) or `postgres` (a database URL)");
                None
            }
        }
    }

    /// `state.output`, else beside the SQLite file, else (PostgreSQL)
    /// `$STATE_DIRECTORY/output` or `data/output` beside the config.
    fn output_dir(&self, raw: &raw::RawState) -> PathBuf {
        if let Some(dir) = &raw.output {
            return self.dir.join(&dir.value);
        }
        if let Some(path) = &raw.path {
            let db = self.dir.join(&path.value);
            return db
                .parent()
                .map_or_else(|| self.dir.join("output"), |p| p.join("output"));
        }
        match std::env::var_os("STATE_DIRECTORY").filter(|d| !d.is_empty()) {
            Some(dir) => PathBuf::from(dir).join("output"),
            None => self.dir.join("data").join("output"),
        }
    }

    /// `uploads` beside the SQLite file, else beside the output directory.
    fn uploads_dir(&self, raw: &raw::RawState) -> PathBuf {
        let beside = match &raw.path {
            Some(path) => self.dir.join(&path.value),
            None => self.output_dir(raw),
        };
        beside
            .parent()
            .map_or_else(|| self.dir.join("uploads"), |p| p.join("uploads"))
    }

    fn node(&mut self, raw: Option<&raw::RawNode>) -> Node {
        let default = raw::RawNode::default();
        let raw = raw.unwrap_or(&default);
        let name = raw
            .name
            .as_ref()
            .map(|n| n.value.trim().to_string())
            .unwrap_or_else(host_name);
        if let Some(why) = label_name_error(&name, "node name", false) {
            self.error(&[key("node"), key("name")], why);
        }
        for (i, label) in raw.labels.iter().enumerate() {
            if let Some(why) = label_name_error(label, "label", false) {
                self.error(&[key("node"), key("labels"), Seg::Index(i)], why);
            }
        }
        let lease = raw.lease.map_or(DEFAULT_LEASE, |d| d.0);
        if lease < std::time::Duration::from_secs(1) {
            self.error(&[key("node"), key("lease")], "must be at least 1s");
        }
        let url = raw
            .url
            .as_ref()
            .map(|u| u.value.trim().trim_end_matches('/').to_string());
        if let Some(Err(why)) = url.as_deref().map(http_url) {
            self.error(&[key("node"), key("url")], why);
        }
        Node {
            name,
            labels: raw.labels.clone(),
            lease,
            url,
        }
    }

    fn server(&mut self, raw: &raw::RawServer) -> Server {
        let listen = self.listen(raw.listen.as_ref(), DEFAULT_LISTEN);
        let max_body = raw.max_body.map(|s| s.0).unwrap_or(1 << 20);
        if max_body == 0 {
            self.error(&[key("server"), key("max_body")], "must be larger than 0");
        }
        let mut trusted_proxies = Vec::new();
        for (i, p) in raw.trusted_proxies.iter().enumerate() {
            match parse_net(p) {
                Ok(net) => trusted_proxies.push(net),
                Err(e) => self.error(&[key("server"), key("trusted_proxies"), Seg::Index(i)], e),
            }
        }
        Server {
            listen,
            max_body: usize::try_from(max_body).unwrap_or(usize::MAX),
            trusted_proxies,
            watch_config: raw.watch_config.unwrap_or(false),
            prefix: self.prefix(raw.prefix.as_deref()),
        }
    }

    fn limits(&mut self, raw: &raw::RawTasks) -> Limits {
        let max_concurrent = raw.max_concurrent.unwrap_or(4);
        if max_concurrent == 0 {
            self.error(&[key("tasks"), key("max_concurrent")], "must be at least 1");
        }
        if raw.keep == Some(0) {
            // The newest finished task is always kept (in memory).
            self.error(&[key("tasks"), key("keep")], "must be at least 1");
        }
        if raw.keep_for.is_some_and(|d| d.0.is_zero()) {
            self.error(&[key("tasks"), key("keep_for")], "must be longer than 0");
        }
        let output_limit = raw.output_limit.map(|s| s.0).unwrap_or(64 << 10);
        if output_limit == 0 {
            self.error(&[key("tasks"), key("output_limit")], "must be larger than 0");
        }
        Limits {
            max_concurrent: max_concurrent.max(1),
            max_queued: raw.max_queued.unwrap_or(1000),
            keep: raw.keep.unwrap_or(10_000),
            keep_for: raw
                .keep_for
                .map_or(DEFAULT_KEEP_FOR, |d| d.0)
                .max(std::time::Duration::from_secs(1)),
            output_limit: usize::try_from(output_limit).unwrap_or(usize::MAX).max(1),
            shutdown_grace: raw
                .shutdown_grace
                .map(|d| d.0)
                .unwrap_or(crate::engine::DEFAULT_SHUTDOWN_GRACE),
        }
    }

    fn program(&mut self, name: &str, p: &RawProgram) -> Option<Program> {
        let at = |k: &str| [key("programs"), key(name), key(k)];
        let errors_before = self.errors.len();
        let command: Vec<String> = match &p.command {
            RawCommand::Path(path) => vec![path.value.clone()],
            RawCommand::Argv(argv) => argv.iter().map(|a| a.value.clone()).collect(),
        };
        if command.first().is_none_or(|c| c.is_empty()) {
            self.error(&at("command"), "must name a program to run");
        }
        const NUL: &str = "contains a NUL byte, which no program name, argument or environment variable can hold";
        if command.iter().any(|c| c.contains('\0')) {
            self.error(&at("command"), NUL);
        }
        for (i, a) in p.args.iter().enumerate() {
            if a.0.value.contains('\0') {
                self.error(&[key("programs"), key(name), key("args"), Seg::Index(i)], NUL);
            }
        }
        for (k, v) in &p.env.0 {
            if v.value.contains('\0') {
                self.error(&[key("programs"), key(name), key("env"), key(k)], NUL);
            }
        }
        let mut params: Vec<String> = Vec::new();
        for (i, param) in p.params.iter().enumerate() {
            let at = [key("programs"), key(name), key("params"), Seg::Index(i)];
            if !valid_name(param) {
                self.error(
                    &at,
                    format!("`{param}` is not a valid param name (letters, digits and `_`, not starting with a digit)"),
                );
            } else if params.contains(param) {
                self.error(&at, format!("param `{param}` is listed twice"));
            } else {
                params.push(param.clone());
            }
        }
        let mut args = Vec::new();
        for (i, a) in p.args.iter().enumerate() {
            match Template::parse(&a.0.value) {
                Ok(t) => args.push(t),
                Err(e) => self.error(&[key("programs"), key(name), key("args"), Seg::Index(i)], e),
            }
        }
        let timeout = p.timeout.map(|d| d.0).unwrap_or(DEFAULT_TIMEOUT);
        if timeout.is_zero() {
            self.error(&at("timeout"), "must be longer than 0");
        }
        let working_dir = match &p.working_dir {
            Some(wd) => self.dir.join(&wd.value),
            None => self.dir.clone(),
        };
        let mut env = Vec::new();
        for (k, v) in &p.env.0 {
            if !valid_name(k) {
                self.error(
                    &[key("programs"), key(name), key("env"), key(k)],
                    format!("`{k}` is not a valid environment variable name"),
                );
            }
            env.push((k.clone(), v.value.clone()));
        }
        let hook_env = p.hook_env.unwrap_or(true);
        let (param_env, param_files) = self.param_env_and_files(name, p, hook_env);
        if p.max_concurrent == Some(0) {
            self.error(&at("max_concurrent"), "must be at least 1");
        }
        let concurrency_key = p.concurrency_key.as_ref().and_then(|k| match Template::parse(k) {
            Ok(t) => Some(t),
            Err(e) => {
                self.error(&at("concurrency_key"), e);
                None
            }
        });
        let on_busy = match p.on_busy.as_deref() {
            None | Some("queue") => OnBusy::Queue,
            Some("replace") => OnBusy::Replace,
            Some("cancel_running") => OnBusy::CancelRunning,
            Some(other) => {
                self.error(
                    &at("on_busy"),
                    format!("unknown `{other}`: expected `queue`, `replace` or `cancel_running`"),
                );
                OnBusy::Queue
            }
        };
        if p.on_busy.is_some() && concurrency_key.is_none() {
            self.error(&at("on_busy"), "`on_busy` needs a `concurrency_key`");
        }
        let retry = p.retry.as_ref().map(|r| {
            let mut policy = RetryPolicy {
                attempts: r.attempts,
                backoff: r.backoff.map_or(std::time::Duration::from_secs(2), |d| d.0),
                max_backoff: r.max_backoff.map_or(std::time::Duration::from_secs(300), |d| d.0),
                on_failed: true,
                on_timed_out: true,
            };
            if let Some(on) = &r.on {
                policy.on_failed = false;
                policy.on_timed_out = false;
                for status in on {
                    match status.as_str() {
                        "failed" => policy.on_failed = true,
                        "timed_out" => policy.on_timed_out = true,
                        other => self.error(
                            &at("retry"),
                            format!("`on` takes `failed` and `timed_out`, not `{other}`"),
                        ),
                    }
                }
            }
            if r.attempts == 0 {
                self.error(
                    &at("retry"),
                    "`attempts` counts the first run too, so it must be at least 1",
                );
            }
            policy
        });
        let (success_codes, retry_codes) = match &p.exit_codes {
            None => (vec![0], Vec::new()),
            Some(codes) => {
                for (list, values) in [("success", &codes.success), ("retry", &codes.retry)] {
                    for (i, code) in values.iter().enumerate() {
                        if !(0..=255).contains(code) {
                            self.error(
                                &[key("programs"), key(name), key("exit_codes"), key(list), Seg::Index(i)],
                                format!("`{code}` is not an exit code: a process exits with 0 to 255"),
                            );
                        }
                    }
                }
                let success = if codes.success.is_empty() {
                    vec![0]
                } else {
                    codes.success.clone()
                };
                if codes.retry.iter().any(|c| success.contains(c)) {
                    self.error(&at("exit_codes"), "an exit code cannot mean both success and retry");
                }
                (success, codes.retry.clone())
            }
        };
        let mut callbacks = Vec::new();
        for (i, c) in p.on_finish.iter().enumerate() {
            let cat = [key("programs"), key(name), key("on_finish"), Seg::Index(i)];
            let url = c.url.value.trim();
            if let Err(why) = http_url(url) {
                self.error(&[&cat[..], &[key("url")]].concat(), why);
            }
            if c.attempts == Some(0) {
                self.error(
                    &[&cat[..], &[key("attempts")]].concat(),
                    "`attempts` counts the first POST too, so it must be at least 1",
                );
            }
            let when = match &c.when {
                None => Status::FINAL.to_vec(),
                Some(names) => names
                    .iter()
                    .filter_map(|w| match Status::parse(w).filter(|s| s.is_final()) {
                        Some(s) => Some(s),
                        None => {
                            let finals: Vec<&str> = Status::FINAL.iter().map(|s| s.as_str()).collect();
                            self.error(
                                &[&cat[..], &[key("when")]].concat(),
                                format!("`{w}` is not a final status: expected {}", finals.join(", ")),
                            );
                            None
                        }
                    })
                    .collect(),
            };
            let secret = c
                .secret
                .as_ref()
                .and_then(|s| self.secret(&[&cat[..], &[key("secret")]].concat(), s));
            callbacks.push(crate::process::program::Callback {
                url: crate::secret::SecretUrl::new(url),
                secret,
                when,
                attempts: c.attempts.unwrap_or(5),
                backoff: c.backoff.map_or(std::time::Duration::from_secs(1), |d| d.0),
            });
        }
        let run_on = p.run_on.clone().unwrap_or_default();
        if !run_on.is_empty() {
            if let Some(at) = locate::locate_nearest(self.text, &at("run_on")) {
                self.run_on_at.insert(name.to_string(), at);
            }
        }
        for (i, label) in run_on.iter().enumerate() {
            if let Some(why) = label_name_error(label, "label", false) {
                self.error(&[key("programs"), key(name), key("run_on"), Seg::Index(i)], why);
            }
        }
        let rerun_interrupted = match p.on_interrupt.as_deref() {
            None | Some("mark") => false,
            Some("rerun") => true,
            Some(other) => {
                self.error(
                    &at("on_interrupt"),
                    format!("unknown `{other}`: expected `mark` or `rerun`"),
                );
                false
            }
        };
        if self.errors.len() > errors_before {
            return None;
        }
        let mut command = command;
        command[0] = self.resolve_command(&command[0]);
        let path_var = env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.as_str());
        self.check_command(name, &command[0], &working_dir, path_var);
        Some(Program {
            name: name.into(),
            command,
            args,
            params,
            timeout,
            kill_grace: KILL_GRACE,
            wait: p.wait.map(|d| d.0).filter(|d| !d.is_zero()),
            max_concurrent: p.max_concurrent,
            concurrency_key,
            on_busy,
            retry,
            success_codes,
            retry_codes,
            callbacks,
            rerun_interrupted,
            run_on,
            fan_out: p.fan_out.unwrap_or(false),
            working_dir,
            env,
            param_env,
            param_files,
            hook_env,
        })
    }

    /// `param_env` and `param_files`: variable names that a process can hold
    /// (not empty, no `=` or NUL), not one hookrunner sets itself (with
    /// `hook_env`), each named once across `env`, `param_env` and `param_files`;
    /// param names as `params` takes them.
    fn param_env_and_files(
        &mut self,
        name: &str,
        p: &RawProgram,
        hook_env: bool,
    ) -> (Vec<(String, String)>, Vec<ParamFile>) {
        let mut seen: Vec<&str> = p.env.0.iter().map(|(k, _)| k.as_str()).collect();
        let mut param_env = Vec::new();
        let mut param_files = Vec::new();
        let entries = p
            .param_env
            .0
            .iter()
            .map(|(var, param)| ("param_env", var, param.as_str(), None))
            .chain(p.param_files.0.iter().map(|(var, f)| match f {
                raw::RawParamFile::Param(param) => ("param_files", var, param.as_str(), Some(false)),
                raw::RawParamFile::Map(m) => ("param_files", var, m.param.as_str(), Some(m.base64.unwrap_or(false))),
            }));
        for (section, var, param, base64) in entries {
            let at = [key("programs"), key(name), key(section), key(var)];
            if var.is_empty() || var.contains(['=', '\0']) {
                self.error(
                    &at,
                    format!("`{var}` cannot name an environment variable (it is empty or holds `=` or NUL)"),
                );
                continue;
            }
            if section == "param_files" && (var.contains('/') || var == "." || var == "..") {
                self.error(
                    &at,
                    format!("`{var}` names the file as well as the variable, so it cannot hold `/` or be `.` or `..`"),
                );
                continue;
            }
            if hook_env
                && (crate::process::program::HOOK_VARS.contains(&var.as_str()) || var.starts_with("HOOK_PARAM_"))
            {
                self.error(&at, format!("`{var}` is set by hookrunner itself (write `hook_env: false` to set none of the `HOOK_*` variables)"));
                continue;
            }
            if seen.contains(&var.as_str()) {
                self.error(
                    &at,
                    format!("variable `{var}` is set twice (by `env`, `param_env` or `param_files`)"),
                );
                continue;
            }
            seen.push(var);
            if !valid_name(param) {
                self.error(
                    &at,
                    format!("`{param}` is not a valid param name (letters, digits and `_`, not starting with a digit)"),
                );
                continue;
            }
            match base64 {
                None => param_env.push((var.clone(), param.to_string())),
                Some(base64) => param_files.push(ParamFile {
                    var: var.clone(),
                    param: param.to_string(),
                    base64,
                }),
            }
        }
        (param_env, param_files)
    }

    /// Warns about what would make every task of program `name` fail to
    /// start (a warning, not an error: the file may be installed later).
    /// `path_var`: the program's own `PATH`, if its `env` sets one (a bare
    /// name is looked up there); else the one handlers inherit.
    fn check_command(&mut self, name: &str, command: &str, working_dir: &Path, path_var: Option<&str>) {
        let fails = "its tasks will fail to start";
        if command.contains('/') {
            let path = Path::new(command);
            if !path.exists() {
                self.warnings
                    .push(format!("program `{name}`: command `{command}` does not exist: {fails}"));
            } else if path.is_dir() || !is_executable(path) {
                self.warnings.push(format!(
                    "program `{name}`: command `{command}` is not executable: {fails} (chmod +x)"
                ));
            }
        } else {
            let paths = path_var.unwrap_or(crate::process::program::inherited_path());
            let found =
                std::env::split_paths(paths).any(|d| d.join(command).is_file() && is_executable(&d.join(command)));
            if !found {
                self.warnings
                    .push(format!("program `{name}`: command `{command}` is not in PATH: {fails}"));
            }
        }
        if !working_dir.is_dir() {
            self.warnings.push(format!(
                "program `{name}`: working_dir `{}` is not a directory: {fails}",
                working_dir.display()
            ));
        }
    }

    /// A path with a `/` is relative to the config's directory; a bare name is looked up in PATH.
    fn resolve_command(&self, command: &str) -> String {
        if command.contains('/') && Path::new(command).is_relative() {
            self.dir.join(command).display().to_string()
        } else {
            command.to_string()
        }
    }

    fn mapping(
        &mut self,
        at: &[Seg],
        event_key: &str,
        m: &RawMapping,
        programs: &HashMap<String, Option<Arc<Program>>>,
    ) -> Option<Mapping> {
        let errors_before = self.errors.len();
        let mut params = Vec::new();
        for (name, from) in &m.params.0 {
            let p = [at, &[key("params"), key(name)]].concat();
            if !valid_name(name) {
                self.error(
                    &p,
                    format!("`{name}` is not a valid param name (letters, digits and `_`, not starting with a digit)"),
                );
                continue;
            }
            if BUILTIN_VARS.contains(&name.as_str()) || TEMPLATE_BUILTINS.contains(&name.as_str()) {
                self.error(&p, format!("`{name}` is a built-in name; choose another param name"));
                continue;
            }
            match ParamFrom::parse(from) {
                Ok(from) => params.push((name.clone(), from)),
                Err(e) => self.error(&p, e),
            }
        }
        let mut parse_json = Vec::new();
        for (i, text) in m.parse_json.iter().enumerate() {
            let p = [at, &[key("parse_json"), Seg::Index(i)]].concat();
            match ParamFrom::parse(text) {
                Ok(from @ (ParamFrom::Header(..) | ParamFrom::Query { .. })) => parse_json.push((text.clone(), from)),
                Ok(ParamFrom::Payload(steps)) if !steps.is_empty() => {
                    parse_json.push((text.clone(), ParamFrom::Payload(steps)))
                }
                Ok(_) => self.error(
                    &p,
                    format!("`{text}` cannot be parsed as JSON: `parse_json` takes `payload.<path>`, `headers.<Name>` or `query.<name>`"),
                ),
                Err(e) => self.error(&p, e),
            }
        }
        let param_names: Vec<&str> = params.iter().map(|(n, _)| n.as_str()).collect();
        let mut rules = Vec::new();
        for (index, r) in m.rules.iter().enumerate() {
            let rule_at = [at, &[key("rules"), Seg::Index(index)]].concat();
            let condition = match &r.condition {
                None => None,
                Some(text) => {
                    let known = |n: &str| param_names.contains(&n) || BUILTIN_VARS.contains(&n);
                    match Condition::compile(text, known) {
                        Ok(c) => Some(c),
                        Err(e) => {
                            self.error(&[&rule_at[..], &[key("if")]].concat(), e);
                            None
                        }
                    }
                }
            };
            let program = match programs.get(&r.run) {
                Some(Some(p)) => p.clone(),
                // Its errors are reported already; what the rule would
                // check of it (its params) cannot be known.
                Some(None) => continue,
                None => {
                    let run_at = [&rule_at[..], &[key("run")]].concat();
                    if let Some(why) = label_name_error(&r.run, "program name", false) {
                        self.error(&run_at, why);
                        continue;
                    }
                    match self.handler_script(&run_at, &r.run, &param_names) {
                        Some(p) => p,
                        None => continue,
                    }
                }
            };
            let missing: Vec<&str> = program.param_names().filter(|n| !param_names.contains(n)).collect();
            if !missing.is_empty() {
                self.error(
                    &[&rule_at[..], &[key("run")]].concat(),
                    format!(
                        "program `{}` takes {}, which this mapping's `params` does not extract",
                        program.name,
                        missing.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
                    ),
                );
                continue;
            }
            rules.push(Rule {
                index,
                condition,
                program,
            });
        }
        if self.errors.len() > errors_before {
            return None;
        }
        Some(Mapping::new(event_key.to_string(), params, parse_json, rules))
    }

    /// A rule's `run` that names no program: a script `handlers/<name>.*` with
    /// default settings, passed every param of its mapping.
    fn handler_script(&mut self, at: &[Seg], name: &str, params: &[&str]) -> Option<Arc<Program>> {
        let handlers = self.dir.join("handlers");
        let mut found: Vec<PathBuf> = std::fs::read_dir(&handlers)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file() && p.file_stem().and_then(|s| s.to_str()) == Some(name))
            .collect();
        found.sort();
        let script = match found.len() {
            1 => found.remove(0),
            0 => {
                self.error(
                    at,
                    format!("`{name}` is neither a program in `programs` nor a script `handlers/{name}.*`"),
                );
                return None;
            }
            _ => {
                let names: Vec<String> = found.iter().map(|p| format!("`{}`", p.display())).collect();
                self.error(
                    at,
                    format!(
                        "`{name}` matches several scripts ({}); add a program for it",
                        names.join(", ")
                    ),
                );
                return None;
            }
        };
        if !is_executable(&script) {
            self.warnings.push(format!(
                "handler `{}` is not executable: its tasks will fail (chmod +x)",
                script.display()
            ));
        }
        Some(Arc::new(Program {
            name: name.into(),
            command: vec![script.display().to_string()],
            params: params.iter().map(|p| p.to_string()).collect(),
            working_dir: self.dir.clone(),
            ..Program::default()
        }))
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
}

/// Where `keys` (or the nearest key above them, or the file alone) is in
/// the config file at `path`: `file:line:col`, for a message about that key.
pub fn position_of(path: &std::path::Path, keys: &[&str]) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let segs: Vec<locate::Seg> = keys.iter().map(|k| locate::Seg::Key(k.to_string())).collect();
    match locate::locate_nearest(&text, &segs) {
        Some((line, col)) => format!("{}:{line}:{col}", path.display()),
        None => path.display().to_string(),
    }
}

/// Where a config is looked for when `--config` (`HOOKRUNNER_CONFIG`) is not given.
pub const CONFIG_PLACES: [&str; 2] = ["webhook.yaml", "/etc/hookrunner/webhook.yaml"];

/// The config file a command uses: the one given, else the first of
/// [`CONFIG_PLACES`] that exists, else an error that names them.
pub fn find(given: Option<&std::path::Path>) -> Result<std::path::PathBuf, String> {
    if let Some(path) = given {
        return Ok(path.to_path_buf());
    }
    CONFIG_PLACES
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| {
            format!(
                "no config found: give --config (or set HOOKRUNNER_CONFIG); looked for {}",
                CONFIG_PLACES.map(|p| format!("`{p}`")).join(" and ")
            )
        })
}

#[cfg(test)]
mod string_value_tests {
    #[test]
    fn serde_messages_never_repeat_a_string_value() {
        for (message, shown) in [
            (
                r#"invalid type: string "apitok-SUPERSECRET", expected a sequence"#,
                "invalid type: a string, expected a sequence",
            ),
            (
                r#"invalid type: string "a \"quoted\" \\ pass", expected a map"#,
                "invalid type: a string, expected a map",
            ),
            ("unknown field `x`, expected `a`", "unknown field `x`, expected `a`"),
            (r#"invalid value: string "u:pw""#, "invalid value: a string"),
        ] {
            assert_eq!(super::without_string_values(message), shown);
        }
    }
}
