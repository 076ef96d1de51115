//! A program: what a rule can run, resolved at load.

use serde_json::Value;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

/// How long a program may run when its config says nothing.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// Time between SIGTERM and SIGKILL when a task is stopped.
pub const KILL_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct Program {
    pub name: std::sync::Arc<str>,
    /// The command and its fixed arguments; a relative path is already
    /// resolved against the config file's directory.
    pub command: Vec<String>,
    /// Argument templates placed after `command`, before the params.
    pub args: Vec<Template>,
    /// Params passed as `--<name>=<value>`, in this order.
    pub params: Vec<String>,
    pub timeout: Duration,
    pub kill_grace: Duration,
    /// Hold the delivery's answer until its tasks finish, up to this long.
    pub wait: Option<Duration>,
    /// At most this many of this program's tasks run at once.
    pub max_concurrent: Option<usize>,
    /// Tasks with the same rendered key never overlap.
    pub concurrency_key: Option<Template>,
    /// What a new task does when its key is busy.
    pub on_busy: OnBusy,
    pub retry: Option<RetryPolicy>,
    /// Exit codes that count as success (default `[0]`).
    pub success_codes: Vec<i32>,
    /// Exit codes that ask for another attempt.
    pub retry_codes: Vec<i32>,
    /// Where to report the task's end (`on_finish`).
    pub callbacks: Vec<Callback>,
    /// Run a task again when the daemon died while it ran (`on_interrupt: rerun`).
    pub rerun_interrupted: bool,
    /// Only nodes with all these labels run its tasks (`run_on`).
    pub run_on: Vec<String>,
    /// One task per live node that may run it, each pinned to its node (`fan_out`).
    pub fan_out: bool,
    pub working_dir: PathBuf,
    /// Extra environment, set last. Values may be secrets: never logged.
    pub env: Vec<(String, String)>,
    /// Variables holding a param's value (`param_env`): variable, param.
    /// A missing or `null` param leaves its variable unset.
    pub param_env: Vec<(String, String)>,
    /// Params written to files whose paths go in variables (`param_files`).
    pub param_files: Vec<ParamFile>,
    /// Whether the handler gets the `HOOK_*` variables (`hook_env`).
    pub hook_env: bool,
}

/// One `param_files` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamFile {
    /// The variable that holds the file's path.
    pub var: String,
    pub param: String,
    /// The value is standard base64 (padding optional), decoded into the file.
    pub base64: bool,
}

/// The variables hookrunner sets itself (with `hook_env`), besides `HOOK_PARAM_*`.
pub const HOOK_VARS: [&str; 6] = [
    "HOOK_SOURCE",
    "HOOK_EVENT",
    "HOOK_TASK_ID",
    "HOOK_DELIVERY_ID",
    "HOOK_REQUEST_ID",
    "HOOK_NODE",
];

/// `on_busy:` of a program with a `concurrency_key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnBusy {
    /// Same-key tasks run one at a time, in arrival order.
    #[default]
    Queue,
    /// A new task replaces the one still queued for its key ("latest wins").
    Replace,
    /// A new task stops the running one for its key and takes its place.
    CancelRunning,
}

/// One `on_finish` entry: a URL told when a task ends, signed per Standard Webhooks.
#[derive(Debug, Clone)]
pub struct Callback {
    /// Shown masked everywhere (`user:***@`, `?token=***`); exposed only to post.
    pub url: crate::secret::SecretUrl,
    pub secret: Option<crate::secret::Secret>,
    /// The final statuses that trigger it.
    pub when: Vec<crate::status::Status>,
    pub attempts: u32,
    pub backoff: Duration,
}

/// `retry:` of a program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    pub backoff: Duration,
    pub max_backoff: Duration,
    pub on_failed: bool,
    pub on_timed_out: bool,
}

impl RetryPolicy {
    /// The wait before attempt `next` (2, 3, ...): exponential, capped, with jitter
    /// (between half and all of the step), so retries of many tasks spread out.
    pub fn delay(&self, next: u32) -> Duration {
        let step = self
            .backoff
            .saturating_mul(1u32 << (next.saturating_sub(2)).min(20))
            .min(self.max_backoff);
        let half = step / 2;
        let jitter = (uuid::Uuid::new_v4().as_u128() % 1_000) as u32;
        half + half.mul_f64(f64::from(jitter) / 1_000.0)
    }
}

impl Default for Program {
    fn default() -> Self {
        Program {
            name: "".into(),
            command: Vec::new(),
            args: Vec::new(),
            params: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            kill_grace: KILL_GRACE,
            wait: None,
            max_concurrent: None,
            concurrency_key: None,
            on_busy: OnBusy::Queue,
            retry: None,
            success_codes: vec![0],
            retry_codes: Vec::new(),
            callbacks: Vec::new(),
            rerun_interrupted: false,
            run_on: Vec::new(),
            fan_out: false,
            working_dir: PathBuf::from("."),
            env: Vec::new(),
            param_env: Vec::new(),
            param_files: Vec::new(),
            hook_env: true,
        }
    }
}

impl Program {
    /// The task's concurrency key, when the program has one.
    pub fn key(&self, inv: &Invocation<'_>) -> Option<std::sync::Arc<str>> {
        self.concurrency_key
            .as_ref()
            .map(|t| t.render(|name| inv.value(name)).into())
    }

    /// Every param name the program reads: its `params`, those its templates
    /// use, and those of `param_env` and `param_files`.
    pub fn param_names(&self) -> impl Iterator<Item = &str> {
        self.passed_params()
            .chain(self.param_files.iter().map(|f| f.param.as_str()))
    }

    /// The params that go into an argument or variable (not only into a file).
    fn passed_params(&self) -> impl Iterator<Item = &str> {
        self.params
            .iter()
            .map(String::as_str)
            .chain(
                self.args
                    .iter()
                    .chain(self.concurrency_key.iter())
                    .flat_map(|t| t.vars())
                    .filter(|v| !BUILTINS.contains(v)),
            )
            .chain(self.param_env.iter().map(|(_, p)| p.as_str()))
    }
}

/// What a task's argv and environment are built from.
pub struct Invocation<'a> {
    pub source: &'a str,
    pub event: &'a str,
    pub task_id: &'a str,
    pub delivery_id: &'a str,
    /// The delivery's request id (`X-Request-Id`, or made up).
    pub request_id: &'a str,
    /// The JSON text of the body, for `{payload}`.
    pub payload: &'a [u8],
    pub params: &'a [(String, serde_json::Value)],
}

impl Invocation<'_> {
    fn value(&self, name: &str) -> String {
        match name {
            "source" => self.source.to_string(),
            "event" => self.event.to_string(),
            "task_id" => self.task_id.to_string(),
            "delivery_id" => self.delivery_id.to_string(),
            "payload" => String::from_utf8_lossy(self.payload).into_owned(),
            param => self.param(param),
        }
    }

    fn param(&self, name: &str) -> String {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| render(v))
            .unwrap_or_default()
    }

    /// A param's rendered value, or `None` when it is missing or `null`.
    pub fn present(&self, name: &str) -> Option<String> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
            .filter(|v| !v.is_null())
            .map(render)
    }
}

impl ParamFile {
    /// What the file holds for `inv`: `None` when the param is missing or
    /// `null`; an error when `base64` is set and the value is not base64.
    /// Line breaks (`\r`, `\n`) inside base64 are skipped, as Go's decoder
    /// skips them: `base64` and MIME wrap their output at 76 columns.
    pub fn contents(&self, inv: &Invocation<'_>) -> Option<Result<Vec<u8>, Unrunnable>> {
        let value = inv.present(&self.param)?;
        if !self.base64 {
            return Some(Ok(value.into_bytes()));
        }
        use base64::Engine as _;
        let engine = base64::engine::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new()
                .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
        );
        let unwrapped: Vec<u8> = value.trim().bytes().filter(|b| !matches!(b, b'\r' | b'\n')).collect();
        Some(
            engine
                .decode(unwrapped)
                .map_err(|_| Unrunnable::NotBase64(self.param.clone())),
        )
    }
}

/// A param's value as it is passed to a handler argument or environment variable:
/// strings verbatim, numbers and booleans as JSON writes them, objects and
/// arrays as compact JSON, a missing path or `null` as the empty string.
pub fn render(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The daemon's variables a handler inherits; nothing else of its environment is passed.
pub const INHERITED_ENV: [&str; 5] = ["PATH", "HOME", "LANG", "LC_ALL", "TZ"];
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

fn inherited_env() -> &'static [(String, String)] {
    static ENV: OnceLock<Vec<(String, String)>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env: Vec<(String, String)> = INHERITED_ENV
            .iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
            .collect();
        if !env.iter().any(|(k, _)| k == "PATH") {
            env.push(("PATH".into(), DEFAULT_PATH.into()));
        }
        env
    })
}

/// The `PATH` a handler gets unless its program's `env` sets one: the
/// daemon's, else a default.
pub fn inherited_path() -> &'static str {
    inherited_env()
        .iter()
        .find(|(k, _)| k == "PATH")
        .map_or(DEFAULT_PATH, |(_, v)| v.as_str())
}

impl Program {
    /// argv: the command, the `args` templates, then `--<param>=<value>` per param.
    /// Each value is one argument, verbatim; nothing is interpreted by a shell.
    pub fn argv(&self, inv: &Invocation<'_>) -> Vec<String> {
        let mut argv = Vec::with_capacity(self.command.len() + self.args.len() + self.params.len());
        argv.extend(self.command.iter().cloned());
        argv.extend(self.args.iter().map(|t| t.render(|name| inv.value(name))));
        argv.extend(self.params.iter().map(|p| format!("--{p}={}", inv.param(p))));
        argv
    }

    /// The names of the variables a handler gets besides the inherited ones
    /// (the `HOOK_*` ones, `env`, `param_env`, `param_files`), never their
    /// values: what the dashboard shows of a task's environment.
    pub fn env_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        if self.hook_env {
            names.extend(HOOK_VARS.iter().map(|n| n.to_string()));
            names.extend(
                self.params
                    .iter()
                    .map(|p| format!("HOOK_PARAM_{}", p.to_ascii_uppercase())),
            );
        }
        names.extend(self.env.iter().map(|(k, _)| k.clone()));
        names.extend(self.param_env.iter().map(|(k, _)| k.clone()));
        names.extend(self.param_files.iter().map(|f| f.var.clone()));
        let mut seen = std::collections::HashSet::new();
        names.retain(|n| seen.insert(n.clone()));
        names
    }

    /// The handler's whole environment but for `param_files` (whose paths
    /// exist only once the files do): a few inherited variables, the `HOOK_*`
    /// description of the task (unless `hook_env: false`), the program's own
    /// `env`, then `param_env` (a missing param's variable left unset).
    pub fn env(&self, inv: &Invocation<'_>) -> Vec<(String, String)> {
        let mut env = inherited_env().to_vec();
        if self.hook_env {
            env.push(("HOOK_SOURCE".into(), inv.source.into()));
            env.push(("HOOK_EVENT".into(), inv.event.into()));
            env.push(("HOOK_TASK_ID".into(), inv.task_id.into()));
            env.push(("HOOK_DELIVERY_ID".into(), inv.delivery_id.into()));
            env.push(("HOOK_REQUEST_ID".into(), inv.request_id.into()));
            for p in &self.params {
                env.push((format!("HOOK_PARAM_{}", p.to_ascii_uppercase()), inv.param(p)));
            }
        }
        env.extend(self.env.iter().cloned());
        for (var, param) in &self.param_env {
            if let Some(value) = inv.present(param) {
                env.push((var.clone(), value));
            }
        }
        env
    }
}

/// The most bytes Linux passes in one argument or environment string
/// (`MAX_ARG_STRLEN`, 32 pages, counting the terminating NUL).
pub const MAX_ARG_BYTES: usize = 32 * 4096 - 1;

/// Why a task's argv or environment cannot be given to a process.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unrunnable {
    #[error("param `{0}` contains a NUL byte, which no argument or environment variable can hold")]
    Nul(String),
    #[error("param `{name}` is {value} bytes, {len} as `HOOK_PARAM_<NAME>=<value>`, more than the {MAX_ARG_BYTES} bytes Linux passes in one argument or environment string")]
    TooLong { name: String, value: usize, len: usize },
    // Named by position only: the argument may hold text from the config
    // (a secret from the environment), and the error reaches the sender.
    #[error("argument {index} of the command would contain a NUL byte, which no argument can hold")]
    ArgNul { index: usize },
    #[error("argument {index} of the command would be {len} bytes, more than the {MAX_ARG_BYTES} bytes Linux passes in one argument")]
    ArgTooLong { index: usize, len: usize },
    #[error("environment variable `{var}` would be {len} bytes, more than the {MAX_ARG_BYTES} bytes Linux passes in one string")]
    EnvTooLong { var: String, len: usize },
    #[error("the arguments and environment would be {total} bytes (with their pointers and room for a script's interpreter line), more than the {max} bytes this system passes to a new process")]
    TooBig { total: usize, max: usize },
    #[error("param `{0}` is not base64, and `param_files` says it is")]
    NotBase64(String),
}

/// The most bytes of arguments and environment (strings with their NULs and
/// pointers) a new process may get: `ARG_MAX` as `sysconf` tells it (a
/// quarter of the stack limit), but never more than Linux itself allows
/// whatever the stack limit: 3/4 of 8 MiB (`_STK_LIM`), since Linux 4.13.
fn arg_max() -> usize {
    static MAX: OnceLock<usize> = OnceLock::new();
    const KERNEL_MAX: usize = 8 * 1024 * 1024 / 4 * 3;
    *MAX.get_or_init(|| {
        nix::unistd::sysconf(nix::unistd::SysconfVar::ARG_MAX)
            .ok()
            .flatten()
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(128 * 1024)
            .min(KERNEL_MAX)
    })
}

/// What `execve` adds to a task's own argv and environment, counted so the
/// check errs on the side of refusing: the path of the file it runs
/// (`PATH_MAX`), and for each `#!` it follows (at most 4 deep,
/// `BINPRM_MAX_RECURSION`) the interpreter line (at most 256 bytes,
/// `BINPRM_BUF_SIZE`: the interpreter's path and its argument) and the
/// script's path again (`PATH_MAX`), each with its pointer.
pub const EXEC_MARGIN: usize = 4096 + 4 * (256 + 4096 + 3 * std::mem::size_of::<usize>());

impl Program {
    /// Checks that `argv` and the environment the task would get can be
    /// passed to a process (`execve` refuses a NUL, an argument longer than
    /// [`MAX_ARG_BYTES`], and a total beyond `ARG_MAX`), naming the param
    /// at fault, and that every `param_files` value with `base64` decodes,
    /// so a delivery is refused at once instead of accepted and then failing
    /// at spawn.
    pub fn check_runnable(&self, inv: &Invocation<'_>, argv: &[String]) -> Result<(), Unrunnable> {
        for name in self.passed_params() {
            let value = inv.param(name);
            if value.contains('\0') {
                return Err(Unrunnable::Nul(name.to_string()));
            }
            // As `--<name>=<value>`, and as `HOOK_PARAM_<NAME>=<value>` in the environment.
            let len = value.len() + name.len() + "HOOK_PARAM_=".len();
            if len > MAX_ARG_BYTES {
                return Err(Unrunnable::TooLong {
                    name: name.to_string(),
                    value: value.len(),
                    len,
                });
            }
        }
        for file in &self.param_files {
            if let Some(Err(e)) = file.contents(inv) {
                return Err(e);
            }
        }
        for (index, arg) in argv.iter().enumerate() {
            if arg.contains('\0') {
                return Err(Unrunnable::ArgNul { index });
            }
            if arg.len() > MAX_ARG_BYTES {
                return Err(Unrunnable::ArgTooLong { index, len: arg.len() });
            }
        }
        let mut env = self.env(inv);
        // Each file's path: its directory is not known yet, so count a generous one.
        env.extend(self.param_files.iter().map(|f| (f.var.clone(), "/".repeat(256))));
        // The engine adds `HOOK_NODE` (a node name is at most 128 characters).
        if self.hook_env {
            env.push(("HOOK_NODE".into(), "n".repeat(128)));
        }
        for (var, value) in &env {
            // `VAR=value` is one string to the kernel, held to the same limit.
            let len = var.len() + 1 + value.len();
            if len > MAX_ARG_BYTES {
                return Err(Unrunnable::EnvTooLong { var: var.clone(), len });
            }
        }
        // As `execve` counts: each string with its NUL, a pointer to each
        // and the two NULL pointers ending the lists, and what it adds.
        let pointer = std::mem::size_of::<usize>();
        let total = argv.iter().map(|a| a.len() + 1 + pointer).sum::<usize>()
            + env.iter().map(|(k, v)| k.len() + v.len() + 2 + pointer).sum::<usize>()
            + 2 * pointer
            + EXEC_MARGIN;
        let max = arg_max();
        if total > max {
            return Err(Unrunnable::TooBig { total, max });
        }
        Ok(())
    }
}

/// Names a template can use besides params.
pub const BUILTINS: [&str; 5] = ["source", "event", "task_id", "delivery_id", "payload"];

/// An argument template such as `--event_type={event}`; `{{` and `}}` are literal braces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Var(String),
}

impl Template {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) if c.is_ascii_alphanumeric() || c == '_' || c == '-' => name.push(c),
                            _ => {
                                return Err(format!(
                                    "invalid template `{text}`: `{{` must be followed by a name and `}}` (write `{{{{` for a literal brace)"
                                ))
                            }
                        }
                    }
                    if name.is_empty() {
                        return Err(format!("invalid template `{text}`: empty `{{}}`"));
                    }
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Var(name));
                }
                '}' => {
                    return Err(format!(
                        "invalid template `{text}`: unmatched `}}` (write `}}}}` for a literal brace)"
                    ))
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Template { parts })
    }

    pub fn vars(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(v) => Some(v.as_str()),
            Part::Literal(_) => None,
        })
    }

    /// Fills the template; `value` gives each name's value (names were checked at load).
    pub fn render(&self, mut value: impl FnMut(&str) -> String) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(l) => out.push_str(l),
                Part::Var(v) => out.push_str(&value(v)),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        let t = Template::parse("--event_type={event} {{x}} {repo}").unwrap();
        assert_eq!(t.vars().collect::<Vec<_>>(), ["event", "repo"]);
        assert_eq!(t.render(|v| v.to_uppercase()), "--event_type=EVENT {x} REPO");
        assert!(Template::parse("{").is_err());
        assert!(Template::parse("a}").is_err());
        assert!(Template::parse("{}").is_err());
        assert!(Template::parse("{a b}").is_err());
    }
}
