//! `hookrunner hooks install|list|remove|verify`: registers a source's
//! webhook on GitLab (project and group hooks), GitHub (repository and
//! organization hooks) or Gitea / Forgejo / Gogs, with the URL, the secret
//! and the event kinds taken from the config, so signatures match without
//! copying secrets by hand. Tokens come from the environment only.
//!
//! Exit codes: see [`exit`]; docs/HOOKS.md has the full reference.

mod api;
mod gitea;
mod github;
mod gitlab;

use api::{Answer, Api, Masker, Method};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The exit codes of `hookrunner hooks`.
pub mod exit {
    /// Done (or, for `verify`, every hook is in order).
    pub const OK: u8 = 0;
    /// `verify` found a hook missing, disabled or failing; or the API refused
    /// a call for another reason (e.g. 422, a URL it will not accept).
    pub const PROBLEMS: u8 = 1;
    /// A usage or config error: bad flags, no such source, no token.
    pub const USAGE: u8 = 2;
    /// 401: the token was refused.
    pub const UNAUTHORIZED: u8 = 3;
    /// 403: the token may not administer the target's webhooks.
    pub const FORBIDDEN: u8 = 4;
    /// 404: no such project / repository / group / organization (or the token cannot see it).
    pub const NOT_FOUND: u8 = 5;
    /// 429, 5xx or a network error, still so after the retries.
    pub const UNAVAILABLE: u8 = 6;
}

/// Why a command failed: the exit code and the sentence printed as `error: ...`.
#[derive(Debug)]
pub struct Fail {
    pub code: u8,
    pub message: String,
}

impl Fail {
    pub fn new(code: u8, message: impl Into<String>) -> Fail {
        Fail {
            code,
            message: message.into(),
        }
    }

    fn usage(message: impl Into<String>) -> Fail {
        Fail::new(exit::USAGE, message)
    }
}

// ---------------------------------------------------------------- the CLI

#[derive(Subcommand, Debug)]
pub enum HooksCommand {
    /// Create the source's webhook on the provider, or update the one that
    /// already has its URL (never a second one).
    Install(InstallArgs),
    /// List the target's webhooks (`*` marks the source's own).
    List(CommonArgs),
    /// Delete the webhook(s) with the source's URL.
    Remove(RemoveArgs),
    /// Report whether the source's webhook is there, enabled, subscribed to
    /// the wanted events and (where the provider says) delivering; exit 1 if not.
    Verify(CommonArgs),
}

#[derive(Args, Debug)]
pub struct CommonArgs {
    /// The config file [default: ./webhook.yaml, else /etc/hookrunner/webhook.yaml].
    #[arg(long, short, env = "HOOKRUNNER_CONFIG")]
    config: Option<PathBuf>,
    /// The source in the config; its provider says which API to use, its
    /// secret or token is what the hook sends.
    source: String,
    #[command(flatten)]
    target: Target,
    /// The provider's base URL (default: https://gitlab.com,
    /// https://api.github.com; required for Gitea, Forgejo, Gogs and
    /// self-hosted GitLab, e.g. https://gitlab.example.com).
    #[arg(long, value_name = "URL")]
    api_url: Option<String>,
    /// The hook's URL, as the provider will call it (e.g.
    /// https://hooks.example.com/hooks/gitlab). Default: $HOOKRUNNER_PUBLIC_URL
    /// followed by /hooks/<SOURCE>.
    #[arg(long, value_name = "PUBLIC_URL")]
    url: Option<String>,
    /// Event kinds, comma-separated, instead of those the source's mappings
    /// listen to (`*` for all).
    #[arg(long, value_delimiter = ',', value_name = "EVENTS")]
    events: Vec<String>,
    /// Print JSON instead of lines.
    #[arg(long)]
    json: bool,
}

/// Where the hook lives: exactly one of these.
#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub struct Target {
    /// A GitLab project: its numeric id or its path (group/project).
    #[arg(long, value_name = "ID|PATH")]
    project: Option<String>,
    /// A GitLab group: its numeric id or its path.
    #[arg(long, value_name = "ID|PATH")]
    group: Option<String>,
    /// A GitHub, Gitea, Forgejo or Gogs repository.
    #[arg(long, value_name = "OWNER/NAME")]
    repo: Option<String>,
    /// A GitHub, Gitea, Forgejo or Gogs organization.
    #[arg(long, value_name = "NAME")]
    org: Option<String>,
}

#[derive(Args, Debug)]
pub struct InstallArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Print the calls that would change something (with secrets masked)
    /// instead of sending them. Read-only GETs are still sent when a token is
    /// set; without one nothing is sent.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Args, Debug)]
pub struct RemoveArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Print the DELETE calls instead of sending them.
    #[arg(long)]
    dry_run: bool,
}

/// Runs one `hookrunner hooks` command; errors are printed as `error: ...`.
pub fn main(command: HooksCommand) -> ExitCode {
    let result = match command {
        HooksCommand::Install(a) => Session::open(&a.common, a.dry_run, true).and_then(|s| s.install()),
        HooksCommand::List(a) => Session::open(&a, false, false).and_then(|s| s.list()),
        HooksCommand::Remove(a) => Session::open(&a.common, a.dry_run, false).and_then(|s| s.remove()),
        HooksCommand::Verify(a) => Session::open(&a, false, false).and_then(|s| s.verify()),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(fail) => {
            complain!("error: {}", fail.message);
            ExitCode::from(fail.code)
        }
    }
}

// ------------------------------------------------- what the config gives

/// Which provider API a source's hooks live on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ForgeKind {
    Gitlab,
    Github,
    Gitea,
    Forgejo,
    Gogs,
}

/// What `hooks` needs from a source of the config.
struct SourceFacts {
    kind: ForgeKind,
    /// What the hook sends: GitLab's secret token, or the HMAC secret.
    secret: String,
    /// The source's mapping keys (`push`, `merge_request`, `*`, ...).
    keys: Vec<String>,
    /// Worth saying before anything is done.
    notes: Vec<String>,
}

/// The adapter to the config's types: the only function that reads them.
fn source_facts(config_path: &Path, name: &str) -> Result<SourceFacts, Fail> {
    use crate::auth::Auth;

    let config = crate::config::load(config_path).map_err(|errors| {
        let n = errors.0.len();
        Fail::usage(format!(
            "{errors}\n{n} error{} in {}",
            if n == 1 { "" } else { "s" },
            config_path.display()
        ))
    })?;
    let source = config.sources.get(name).ok_or_else(|| {
        let mut names: Vec<&str> = config.sources.keys().map(String::as_str).collect();
        names.sort();
        Fail::usage(format!(
            "there is no source named `{name}` in {} (sources: {})",
            config_path.display(),
            names.join(", ")
        ))
    })?;
    let kind = match source.provider.name() {
        "gitlab" => ForgeKind::Gitlab,
        "github" => ForgeKind::Github,
        "gitea" => ForgeKind::Gitea,
        "forgejo" => ForgeKind::Forgejo,
        "gogs" => ForgeKind::Gogs,
        other => {
            return Err(Fail::usage(format!(
            "source `{name}` has provider `{other}`: `hooks` manages webhooks on gitlab, github, gitea, forgejo and gogs"
        )))
        }
    };
    let first = |secrets: &[crate::secret::Secret]| {
        secrets
            .first()
            .map(|s| String::from_utf8_lossy(s.expose()).into_owned())
    };
    let mut notes = Vec::new();
    let secret = match &source.auth {
        Auth::Token { secrets, .. } | Auth::Github { secrets, .. } | Auth::Gitea { secrets, .. } => {
            if secrets.len() > 1 {
                notes.push(format!(
                    "source `{name}` lists {} secrets; the hook gets the first",
                    secrets.len()
                ));
            }
            first(secrets)
        }
        Auth::All(all) => {
            notes.push(format!(
                "source `{name}` also checks a GitLab signing token, which the API cannot set: set it in the hook's settings"
            ));
            all.iter().find_map(|a| match a {
                Auth::Token { secrets, .. } => first(secrets),
                _ => None,
            })
        }
        Auth::Standard { .. } => {
            return Err(Fail::usage(format!(
                "source `{name}` is checked with a GitLab signing token (`signing_secret`), which the GitLab API cannot set; add a `token:` to the source, or create the hook by hand"
            )))
        }
        _ => None,
    };
    let secret =
        secret.ok_or_else(|| Fail::usage(format!("source `{name}` has no secret or token to give the hook")))?;
    Ok(SourceFacts {
        kind,
        secret,
        keys: source.routes.event_keys().into_iter().map(String::from).collect(),
        notes,
    })
}

// ------------------------------------------------------------- providers

/// A hook as listed, in provider-neutral terms.
#[derive(Debug, Clone)]
pub struct Hook {
    pub id: String,
    pub url: String,
    /// Event names as the mapping keys spell them.
    pub events: Vec<String>,
    /// GitHub's `*`: every event.
    pub all_events: bool,
    /// `active`, `disabled` or `failing`.
    pub state: &'static str,
    /// What is wrong with it, in words.
    pub problems: Vec<String>,
}

/// What the hook should be.
pub struct Want {
    pub name: String,
    pub description: String,
    pub url: String,
    pub secret: String,
    pub events: Vec<String>,
}

/// One provider's hook API.
pub trait Forge {
    fn service(&self) -> &'static str;
    /// `GitLab project acme/app`.
    fn describe(&self) -> String;
    /// The project / repository / group / organization itself.
    fn resource_path(&self) -> String;
    fn list_path(&self) -> String;
    /// The event names `--events` accepts (empty: any name is passed on).
    fn known_events(&self) -> Vec<&'static str>;
    /// The event a mapping key stands for, if the provider's hooks have it.
    fn event_of_key(&self, key: &str) -> Option<String>;
    /// What `*` subscribes to.
    fn all_events(&self) -> Vec<String>;
    fn parse_hook(&self, v: &Value) -> Hook;
    fn create(&self, want: &Want) -> (Method, String, Value);
    fn update(&self, id: &str, want: &Want) -> (Method, String, Value);
    fn delete_path(&self, id: &str) -> String;
    /// What the token needs, for 403 messages.
    fn admin_advice(&self) -> String;
}

/// A path segment or GitLab id, percent-encoded (`acme/app` → `acme%2Fapp`).
pub fn encode(segment: &str) -> String {
    use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
    const KEEP: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
    utf8_percent_encode(segment, KEEP).to_string()
}

fn owner_name(repo: &str) -> Result<(&str, &str), Fail> {
    match repo.trim().trim_matches('/').split_once('/') {
        Some((owner, name)) if !owner.is_empty() && !name.is_empty() && !name.contains('/') => Ok((owner, name)),
        _ => Err(Fail::usage(format!("--repo takes OWNER/NAME, not `{repo}`"))),
    }
}

fn forge(kind: ForgeKind, target: &Target) -> Result<Box<dyn Forge>, Fail> {
    let (gitea_kind, service) = match kind {
        ForgeKind::Gitea => ("gitea", "Gitea"),
        ForgeKind::Forgejo => ("forgejo", "Forgejo"),
        ForgeKind::Gogs => ("gogs", "Gogs"),
        _ => ("", ""),
    };
    let wrong = |flags: &str| Fail::usage(format!("a {} source takes {flags}", kind_name(kind)));
    Ok(match kind {
        ForgeKind::Gitlab => match (&target.project, &target.group) {
            (Some(p), _) => Box::new(gitlab::Gitlab::project(p)),
            (_, Some(g)) => Box::new(gitlab::Gitlab::group(g)),
            _ => return Err(wrong("--project ID|PATH or --group ID|PATH")),
        },
        ForgeKind::Github => match (&target.repo, &target.org) {
            (Some(r), _) => {
                let (owner, name) = owner_name(r)?;
                Box::new(github::Github::repo(owner, name))
            }
            (_, Some(o)) => Box::new(github::Github::org(o.trim())),
            _ => return Err(wrong("--repo OWNER/NAME or --org NAME")),
        },
        _ => match (&target.repo, &target.org) {
            (Some(r), _) => {
                let (owner, name) = owner_name(r)?;
                Box::new(gitea::Gitea::repo(gitea_kind, service, owner, name))
            }
            (_, Some(o)) => Box::new(gitea::Gitea::org(gitea_kind, service, o.trim())),
            _ => return Err(wrong("--repo OWNER/NAME or --org NAME")),
        },
    })
}

fn kind_name(kind: ForgeKind) -> &'static str {
    match kind {
        ForgeKind::Gitlab => "gitlab",
        ForgeKind::Github => "github",
        ForgeKind::Gitea => "gitea",
        ForgeKind::Forgejo => "forgejo",
        ForgeKind::Gogs => "gogs",
    }
}

/// The API root for `--api-url` (or the public default).
fn api_root(kind: ForgeKind, api_url: Option<&str>) -> Result<String, Fail> {
    let given = api_url.map(|u| u.trim().trim_end_matches('/').to_string());
    if let Some(u) = &given {
        if !(u.starts_with("https://") || u.starts_with("http://")) {
            return Err(Fail::usage(format!(
                "--api-url must be an http(s) URL, not `{}`",
                crate::secret::mask_url(u)
            )));
        }
    }
    Ok(match kind {
        ForgeKind::Gitlab => {
            let base = given.unwrap_or_else(|| "https://gitlab.com".into());
            format!("{}/api/v4", base.trim_end_matches("/api/v4"))
        }
        ForgeKind::Github => given.unwrap_or_else(|| "https://api.github.com".into()),
        _ => {
            let base = given.ok_or_else(|| {
                Fail::usage(format!(
                    "{} has no public default: give --api-url, e.g. https://{}.example.com",
                    kind_name(kind),
                    kind_name(kind)
                ))
            })?;
            format!("{}/api/v1", base.trim_end_matches("/api/v1"))
        }
    })
}

/// The token from the environment (never from argv), and the header carrying it.
fn token(kind: ForgeKind) -> (&'static str, Option<(&'static str, String)>) {
    let names: &[&'static str] = match kind {
        ForgeKind::Gitlab => &["GITLAB_TOKEN"],
        ForgeKind::Github => &["GITHUB_TOKEN"],
        ForgeKind::Gitea => &["GITEA_TOKEN"],
        ForgeKind::Forgejo => &["FORGEJO_TOKEN", "GITEA_TOKEN"],
        ForgeKind::Gogs => &["GOGS_TOKEN", "GITEA_TOKEN"],
    };
    let found = names.iter().find_map(|n| {
        std::env::var(n)
            .ok()
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    });
    let auth = found.map(|t| match kind {
        ForgeKind::Gitlab => ("PRIVATE-TOKEN", t),
        ForgeKind::Github => ("Authorization", format!("Bearer {t}")),
        _ => ("Authorization", format!("token {t}")),
    });
    (names[0], auth)
}

// --------------------------------------------------------------- session

struct Session {
    source: String,
    forge: Box<dyn Forge>,
    api: Api,
    /// The hook's URL, when known (`list` works without one).
    url: Option<String>,
    secret: String,
    events: Vec<String>,
    json: bool,
}

impl Session {
    fn open(args: &CommonArgs, dry_run: bool, announce: bool) -> Result<Session, Fail> {
        let config = crate::config::find(args.config.as_deref()).map_err(Fail::usage)?;
        let facts = source_facts(&config, &args.source)?;
        let forge = forge(facts.kind, &args.target)?;
        let root = api_root(facts.kind, args.api_url.as_deref())?;
        let (token_var, auth) = token(facts.kind);
        if auth.is_none() && !dry_run {
            return Err(Fail::usage(format!(
                "set {token_var} to a {} access token (it is read from the environment only, never from the command line)",
                forge.service()
            )));
        }
        let mut mask = Masker::default();
        mask.add(&facts.secret);
        let extra = if facts.kind == ForgeKind::Github {
            vec![
                ("Accept", "application/vnd.github+json"),
                ("X-GitHub-Api-Version", "2022-11-28"),
            ]
        } else {
            Vec::new()
        };
        let api = Api::new(forge.service(), root, auth, extra, dry_run, mask);
        let url = hook_url(args.url.as_deref(), &args.source)?;
        let mut notes = facts.notes;
        let events = wanted_events(forge.as_ref(), &args.events, &facts.keys, &args.source, &mut notes)?;
        // Notes matter when a hook is written; list, verify and remove stay quiet.
        if announce && !args.json {
            for note in &notes {
                complain!("note: {note}");
            }
        }
        Ok(Session {
            source: args.source.clone(),
            forge,
            api,
            url,
            secret: facts.secret,
            events,
            json: args.json,
        })
    }

    fn need_url(&self) -> Result<&str, Fail> {
        self.url.as_deref().ok_or_else(|| {
            Fail::usage(format!(
                "give the hook's URL with --url (e.g. https://hooks.example.com/hooks/{}), or set HOOKRUNNER_PUBLIC_URL to the daemon's public base URL",
                self.source
            ))
        })
    }

    /// Checks the target exists and the token may manage its hooks; returns them.
    fn hooks(&self) -> Result<Vec<Hook>, Fail> {
        let what = self.forge.describe();
        let answer = self.api.get(&self.forge.resource_path())?;
        if !answer.ok() {
            return Err(self.refusal(&answer, "read", &what));
        }
        match self.api.get_all(&self.forge.list_path())? {
            Ok(items) => Ok(items.iter().map(|v| self.forge.parse_hook(v)).collect()),
            // The target is there: a 404 on its hooks means no admin rights (GitHub hides them so).
            Err(a) if a.status == 404 || a.status == 403 => Err(Fail::new(
                exit::FORBIDDEN,
                format!(
                    "not permitted: the token may not manage the webhooks of {what} ({}); {}",
                    a.status,
                    self.forge.admin_advice()
                ),
            )),
            Err(a) => Err(self.refusal(&a, "list the hooks of", &what)),
        }
    }

    /// The error for an answer that is not 2xx.
    fn refusal(&self, a: &Answer, doing: &str, what: &str) -> Fail {
        let service = self.forge.service();
        let words = self.api.mask.text(&a.message());
        match a.status {
            401 => Fail::new(
                exit::UNAUTHORIZED,
                format!(
                    "{service} refused the token (401: {words}): check that it is valid, not expired, and for this instance (--api-url)"
                ),
            ),
            403 => Fail::new(
                exit::FORBIDDEN,
                format!(
                    "not permitted: the token may not {doing} {what} (403); {}",
                    self.forge.admin_advice()
                ),
            ),
            404 => Fail::new(
                exit::NOT_FOUND,
                format!("{what} not found, or the token cannot see it (404)"),
            ),
            s => Fail::new(
                exit::PROBLEMS,
                format!("{service} answered {s} when asked to {doing} {what}: {words}"),
            ),
        }
    }

    fn want(&self, url: &str) -> Want {
        Want {
            name: format!("hookrunner: {}", self.source),
            description: format!(
                "Deliveries for the `{}` source of hookrunner; managed by `hookrunner hooks install`.",
                self.source
            ),
            url: url.to_string(),
            secret: self.secret.clone(),
            events: self.events.clone(),
        }
    }

    fn install(self) -> Result<u8, Fail> {
        let url = self.need_url()?.to_string();
        let want = self.want(&url);
        let what = self.forge.describe();
        let existing: Vec<Hook> = if self.api.has_token() {
            self.hooks()?.into_iter().filter(|h| same_url(&h.url, &url)).collect()
        } else {
            say!(
                "GET {}  (not sent: no token)",
                self.api.url(&self.forge.resource_path())
            );
            say!("GET {}  (not sent: no token)", self.api.url(&self.forge.list_path()));
            Vec::new()
        };
        for extra in existing.iter().skip(1) {
            complain!(
                "warning: {what} has another hook #{} with this URL; remove it with `hookrunner hooks remove` and install again",
                extra.id
            );
        }
        let (action, (method, path, body)) = match existing.first() {
            Some(h) => ("updated", self.forge.update(&h.id, &want)),
            None => ("created", self.forge.create(&want)),
        };
        let answer = self.api.change(method, &path, Some(&body), Some(&self.secret))?;
        let Some(answer) = answer else {
            let verb = if action == "updated" { "update" } else { "create" };
            if self.json {
                say!(
                    "{}",
                    json!({"action": "dry_run", "would": verb, "target": what, "url": shown(&url), "events": self.events})
                );
            }
            return Ok(exit::OK);
        };
        if !answer.ok() {
            return Err(self.refusal(&answer, "add a hook to", &what));
        }
        let id = gitlab::id_text(answer.json.get("id"));
        let id = if id.is_empty() {
            existing.first().map(|h| h.id.clone()).unwrap_or_default()
        } else {
            id
        };
        let url = shown(&url);
        if self.json {
            say!(
                "{}",
                json!({"action": action, "id": id, "target": what, "url": url, "events": self.events})
            );
        } else {
            say!(
                "{action} hook #{id} on {what}: {url} (events: {})",
                self.events.join(", ")
            );
        }
        Ok(exit::OK)
    }

    fn list(self) -> Result<u8, Fail> {
        let hooks = self.hooks()?;
        let ours = |h: &Hook| self.url.as_deref().is_some_and(|u| same_url(&h.url, u));
        if self.json {
            let list: Vec<Value> = hooks.iter().map(|h| hook_json(h, ours(h))).collect();
            say!(
                "{}",
                serde_json::to_string_pretty(&Value::Array(list)).unwrap_or_default()
            );
            return Ok(exit::OK);
        }
        if hooks.is_empty() {
            say!("{} has no webhooks", self.forge.describe());
        }
        for h in &hooks {
            say!(
                "{} #{} {} [{}] events: {}",
                if ours(h) { "*" } else { " " },
                h.id,
                self.api.mask.text(&h.url),
                h.state,
                events_text(h)
            );
            for p in &h.problems {
                say!("      {p}");
            }
        }
        Ok(exit::OK)
    }

    fn remove(self) -> Result<u8, Fail> {
        let url = self.need_url()?.to_string();
        let what = self.forge.describe();
        let matching: Vec<Hook> = self.hooks()?.into_iter().filter(|h| same_url(&h.url, &url)).collect();
        let url = shown(&url);
        if matching.is_empty() {
            say!("{what} has no hook for {url}: nothing to remove");
            return Ok(exit::OK);
        }
        for h in &matching {
            if let Some(answer) = self
                .api
                .change(Method::Delete, &self.forge.delete_path(&h.id), None, None)?
            {
                if !answer.ok() && answer.status != 404 {
                    return Err(self.refusal(&answer, "remove a hook from", &what));
                }
                say!("removed hook #{} from {what}: {url}", h.id);
            }
        }
        Ok(exit::OK)
    }

    fn verify(self) -> Result<u8, Fail> {
        let url = self.need_url()?.to_string();
        let what = self.forge.describe();
        let matching: Vec<Hook> = self.hooks()?.into_iter().filter(|h| same_url(&h.url, &url)).collect();
        let url = shown(&url);
        let mut report = Vec::new();
        let mut bad = false;
        if matching.is_empty() {
            bad = true;
            report.push(json!({"state": "missing", "url": url,
                "problems": [format!("no hook on {what} calls {url}: run `hookrunner hooks install {}`", self.source)]}));
        }
        if matching.len() > 1 {
            bad = true;
        }
        for h in &matching {
            let mut problems = h.problems.clone();
            let missing: Vec<&String> = self
                .events
                .iter()
                .filter(|e| !h.all_events && !h.events.contains(e) && e.as_str() != "*")
                .collect();
            if !missing.is_empty() {
                problems.push(format!(
                    "not subscribed to {} (the config listens to them): run `hookrunner hooks install` again",
                    missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                ));
            }
            if matching.len() > 1 {
                problems.push(format!(
                    "{} hooks call this URL: each delivery would arrive twice",
                    matching.len()
                ));
            }
            bad |= !problems.is_empty();
            let mut v = hook_json(h, true);
            v["problems"] = json!(problems);
            report.push(v);
        }
        if self.json {
            say!(
                "{}",
                serde_json::to_string_pretty(&json!({"ok": !bad, "target": what, "hooks": report})).unwrap_or_default()
            );
        } else {
            for r in &report {
                let problems: Vec<&str> = r["problems"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let head = match r.get("id") {
                    Some(id) => format!("hook #{} {}", id.as_str().unwrap_or(""), url),
                    None => format!("hook for {url}"),
                };
                if problems.is_empty() {
                    say!(
                        "ok: {head} on {what} [{}] events: {}",
                        r["state"].as_str().unwrap_or(""),
                        r["events"]
                            .as_array()
                            .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
                            .unwrap_or_default()
                    );
                } else {
                    let state = r["state"].as_str().unwrap_or("");
                    let label = if state == "active" { "problem" } else { state };
                    say!("{label}: {head} on {what}");
                    for p in problems {
                        say!("  {p}");
                    }
                }
            }
        }
        Ok(if bad { exit::PROBLEMS } else { exit::OK })
    }
}

fn hook_json(h: &Hook, ours: bool) -> Value {
    json!({"id": h.id, "url": shown(&h.url), "state": h.state, "events": events_list(h),
           "problems": h.problems, "ours": ours})
}

/// A hook's URL as printed: a password or query value in it (a token some
/// setups put there) masked, as every URL hookrunner shows.
fn shown(url: &str) -> String {
    crate::secret::mask_url(url)
}

fn events_list(h: &Hook) -> Vec<String> {
    if h.all_events {
        vec!["*".into()]
    } else {
        h.events.clone()
    }
}

fn events_text(h: &Hook) -> String {
    let list = events_list(h);
    if list.is_empty() {
        "(none)".into()
    } else {
        list.join(", ")
    }
}

/// URLs equal but for a trailing slash and the case of scheme and host.
fn same_url(a: &str, b: &str) -> bool {
    fn norm(u: &str) -> String {
        let u = u.trim().trim_end_matches('/');
        match u.find("://") {
            Some(i) => {
                let rest = &u[i + 3..];
                let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
                format!(
                    "{}://{}{}",
                    u[..i].to_ascii_lowercase(),
                    host.to_ascii_lowercase(),
                    path
                )
            }
            None => u.to_string(),
        }
    }
    norm(a) == norm(b)
}

/// `--url` as given, else `$HOOKRUNNER_PUBLIC_URL/hooks/<source>`.
fn hook_url(given: Option<&str>, source: &str) -> Result<Option<String>, Fail> {
    let url = match given {
        Some(u) => u.trim().to_string(),
        None => match std::env::var("HOOKRUNNER_PUBLIC_URL") {
            Ok(base) if !base.trim().is_empty() => {
                format!("{}/hooks/{}", base.trim().trim_end_matches('/'), encode(source))
            }
            _ => return Ok(None),
        },
    };
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(Fail::usage(format!(
            "the hook's URL must be http(s), not `{}`",
            shown(&url)
        )));
    }
    let path = url.split(['?', '#']).next().unwrap_or(&url);
    if given.is_some() && !path.trim_end_matches('/').ends_with(&format!("/hooks/{source}")) {
        complain!(
            "note: {} does not end in /hooks/{source}, where hookrunner receives this source's deliveries",
            shown(&url)
        );
    }
    Ok(Some(url))
}

/// `--events` if given, else what the source's mappings listen to.
fn wanted_events(
    forge: &dyn Forge,
    given: &[String],
    keys: &[String],
    source: &str,
    notes: &mut Vec<String>,
) -> Result<Vec<String>, Fail> {
    let given: Vec<&str> = given.iter().map(|s| s.trim()).filter(|s| !s.is_empty()).collect();
    let mut out: Vec<String> = Vec::new();
    let mut add = |e: String| {
        if !out.contains(&e) {
            out.push(e);
        }
    };
    if !given.is_empty() {
        for name in given {
            if name == "*" || name == "all" {
                forge.all_events().into_iter().for_each(&mut add);
                continue;
            }
            match forge.event_of_key(name) {
                Some(e) => add(e),
                None => {
                    let known = forge.known_events();
                    return Err(Fail::usage(if known.is_empty() {
                        format!("`{name}` is not an event name")
                    } else {
                        format!(
                            "{} hooks have no event `{name}` (events: {})",
                            forge.service(),
                            known.join(", ")
                        )
                    }));
                }
            }
        }
        return Ok(in_provider_order(forge, out));
    }
    let mut ignored = Vec::new();
    for key in keys {
        if key == "*" {
            forge.all_events().into_iter().for_each(&mut add);
        } else {
            match forge.event_of_key(key) {
                Some(e) => add(e),
                None => ignored.push(key.as_str()),
            }
        }
    }
    if !ignored.is_empty() {
        notes.push(format!(
            "mapping keys of `{source}` with no {} hook event are left out: {}",
            forge.service(),
            ignored.join(", ")
        ));
    }
    if out.is_empty() {
        return Err(Fail::usage(format!(
            "the mappings of source `{source}` listen to no {} hook event; give --events",
            forge.service()
        )));
    }
    Ok(in_provider_order(forge, out))
}

/// The provider's own order (its list of hook events), else alphabetical.
fn in_provider_order(forge: &dyn Forge, mut events: Vec<String>) -> Vec<String> {
    let known = forge.known_events();
    let rank = |e: &String| known.iter().position(|k| k == e).unwrap_or(known.len());
    events.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.cmp(b)));
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gitlab_event_names_from_mapping_keys() {
        let f = gitlab::Gitlab::project("a/b");
        let keys: Vec<String> = ["Push Hook", "merge_request.open", "build", "ping", "note"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut notes = Vec::new();
        assert_eq!(
            wanted_events(&f, &[], &keys, "s", &mut notes).unwrap(),
            ["push", "merge_request", "note", "job"]
        );
        assert_eq!(
            notes,
            ["mapping keys of `s` with no GitLab hook event are left out: ping"]
        );
        let all = wanted_events(&f, &[], &["*".to_string()], "s", &mut notes).unwrap();
        assert_eq!(all.len(), 13);
        assert!(wanted_events(&f, &["pushh".into()], &[], "s", &mut notes).is_err());
    }

    #[test]
    fn encodes_gitlab_paths_and_compares_urls() {
        assert_eq!(encode("acme/sub group/app"), "acme%2Fsub%20group%2Fapp");
        assert_eq!(encode("42"), "42");
        assert!(same_url(
            "HTTPS://Hooks.example.com/hooks/gl/",
            "https://hooks.example.com/hooks/gl"
        ));
        assert!(!same_url(
            "https://hooks.example.com/hooks/GL",
            "https://hooks.example.com/hooks/gl"
        ));
    }

    #[test]
    fn api_roots() {
        assert_eq!(api_root(ForgeKind::Gitlab, None).unwrap(), "https://gitlab.com/api/v4");
        assert_eq!(
            api_root(ForgeKind::Gitlab, Some("https://gl.example/api/v4/")).unwrap(),
            "https://gl.example/api/v4"
        );
        assert_eq!(api_root(ForgeKind::Github, None).unwrap(), "https://api.github.com");
        assert!(api_root(ForgeKind::Gitea, None).is_err());
        assert_eq!(
            api_root(ForgeKind::Forgejo, Some("https://codeberg.org")).unwrap(),
            "https://codeberg.org/api/v1"
        );
    }
}
