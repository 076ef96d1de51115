//! One adnanh hook → one hookrunner source (served at the same URL), one
//! program and one mapping with a single rule; and the whole config text.

use super::emit::{self, Entry, Out};
use super::hooks::Hook;
use super::params::{key, Params, Val};
use super::rules::{self, canonical_header};
use super::template::{Piece, Templates};
use super::yaml::Pos;
use crate::mapping::condition::Condition;

/// adnanh's command-line flags that change how hooks behave.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    /// `-urlprefix` (default `hooks`).
    pub urlprefix: Option<String>,
    /// `-http-methods`, as given.
    pub http_methods: Option<String>,
    /// `-header name=value`, in order.
    pub headers: Vec<(String, String)>,
}

/// Something to tell the user about one hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub hook: String,
    pub file: String,
    pub pos: Pos,
    pub text: String,
    /// Not translated (the import fails without `--allow-partial`).
    pub gap: bool,
}

impl std::fmt::Display for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: hook `{}`: {}{}",
            self.file,
            self.pos.line,
            self.hook,
            if self.gap { "cannot translate: " } else { "note: " },
            self.text
        )
    }
}

/// A hook of a file, with that file's template calls.
pub struct Input<'a> {
    pub file: &'a str,
    pub hook: &'a Hook,
    pub templates: &'a Templates,
}

/// The methods a hook answers when neither it nor `-http-methods` says:
/// adnanh accepts every method (and runs the hook for each).
const ALL_METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// Status codes Go's `http.StatusText` knows; adnanh sends 200 for any other.
fn go_knows_status(code: i64) -> bool {
    matches!(code,
        100..=103 | 200..=208 | 226 | 300..=305 | 307 | 308 | 400..=418 | 421..=426 | 428 | 429 | 431 | 451
        | 500..=508 | 510 | 511)
}

/// The config for `hooks`, and what the user must know.
/// Also returns how many hooks were written.
pub fn config(inputs: &[Input<'_>], flags: &Flags, header: &str) -> (String, Vec<Message>, usize) {
    let mut messages = Vec::new();
    let mut sources = Vec::new();
    let mut programs = Vec::new();
    let mut mappings = Vec::new();
    let mut seen: Vec<(&str, &str)> = Vec::new();
    let mut program_names: Vec<String> = Vec::new();
    let mut left_out: Vec<String> = Vec::new();
    for input in inputs {
        let hook = input.hook;
        let msg = |text: String, gap: bool| Message {
            hook: hook.id.clone(),
            file: input.file.to_string(),
            pos: hook.pos,
            text,
            gap,
        };
        if let Some((file, _)) = seen.iter().find(|(_, id)| *id == hook.id) {
            if *file == input.file {
                messages.push(msg(
                    "a second hook with this id in the same file: adnanh serves the first one, so this one was left out".into(),
                    false,
                ));
            } else {
                let text = format!("this id is also in `{file}`: adnanh refuses to start with it in two files");
                left_out.push(format!("hook `{}` ({}:{}): {text}", hook.id, input.file, hook.pos.line));
                messages.push(msg(text, true));
            }
            continue;
        }
        seen.push((input.file, &hook.id));
        let program = unique_program_name(&hook.id, &program_names);
        program_names.push(program.clone());
        let mut out = translate_hook(input, flags, &program, false);
        if out.condition_too_long {
            out = translate_hook(input, flags, &program, true);
        }
        // The same sentence twice (one per match of a rule) says it once.
        let mut said: Vec<(String, bool)> = Vec::new();
        for m in std::mem::take(&mut out.messages) {
            if !said.contains(&m) {
                said.push(m);
            }
        }
        out.messages = said;
        // Each gap is a comment where the hook is, or at the top of the
        // file when nothing of the hook could be written.
        let gaps: Vec<String> = out
            .messages
            .iter()
            .filter(|(_, g)| *g)
            .map(|(t, _)| t.clone())
            .collect();
        for (text, gap) in out.messages {
            messages.push(msg(text, gap));
        }
        match out.source {
            Some(mut s) => {
                for g in gaps {
                    s = s.above(format!("NOT TRANSLATED: {g}"));
                }
                sources.push(s);
            }
            None => {
                for g in gaps {
                    left_out.push(format!("hook `{}` ({}:{}): {g}", hook.id, input.file, hook.pos.line));
                }
            }
        }
        if let Some(p) = out.program {
            programs.push(p);
        }
        if let Some(m) = out.mapping {
            mappings.push(m);
        }
    }
    let mut top = Vec::new();
    if let Some(prefix) = flags.urlprefix.as_deref().filter(|p| *p != "hooks") {
        let prefix = prefix.trim_matches('/');
        let value = if prefix.is_empty() {
            String::new()
        } else {
            format!("/{prefix}")
        };
        top.push(
            Entry::new("server", Out::Map(vec![Entry::new("prefix", Out::Str(value))]))
                .above("adnanh's -urlprefix: hooks are served under this path"),
        );
    }
    let written = sources.len();
    top.push(Entry::new("sources", Out::Map(sources)));
    top.push(Entry::new("programs", Out::Map(programs)));
    top.push(Entry::new("mappings", Out::Map(mappings)));
    let mut text = String::new();
    for line in header.lines() {
        text.push_str(&format!("# {line}\n").replace("# \n", "#\n"));
    }
    for l in &left_out {
        for line in format!("NOT TRANSLATED, left out: {l}").split(emit::BREAKS) {
            text.push_str(&format!("# {line}\n"));
        }
    }
    text.push('\n');
    text.push_str(&emit::document(&top));
    (text, messages, written)
}

/// A program name for `id`: letters, digits and `-_.~@+`, unique.
fn unique_program_name(id: &str, taken: &[String]) -> String {
    let mut base: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.~@+".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(120)
        .collect();
    if base.is_empty() {
        base = "hook".into();
    }
    let mut name = base.clone();
    let mut n = 2;
    while taken.contains(&name) {
        name = format!("{base}_{n}");
        n += 1;
    }
    name
}

/// Whether `id` can be a source name (and so be served at `/<prefix>/<id>`).
fn valid_source_name(id: &str) -> bool {
    id.len() <= 128
        && !id.is_empty()
        && id.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part.chars().all(|c| c.is_ascii_alphanumeric() || "-_.~@+".contains(c))
        })
}

struct HookOut {
    source: Option<Entry>,
    program: Option<Entry>,
    mapping: Option<Entry>,
    messages: Vec<(String, bool)>,
    condition_too_long: bool,
}

impl HookOut {
    /// A hook that makes no source: only what is said about it.
    fn nothing(messages: Vec<(String, bool)>) -> HookOut {
        HookOut {
            source: None,
            program: None,
            mapping: None,
            messages,
            condition_too_long: false,
        }
    }
}

fn translate_hook(input: &Input<'_>, flags: &Flags, program: &str, short: bool) -> HookOut {
    let hook = input.hook;
    let t = input.templates;
    let mut messages: Vec<(String, bool)> = Vec::new();
    let gap = |m: &mut Vec<(String, bool)>, text: String| m.push((text, true));
    let title = format!("adnanh hook `{}` ({}:{})", hook.id, input.file, hook.pos.line);

    for k in &hook.unknown_keys {
        let hint = if k.eq_ignore_ascii_case("trigger-rules") {
            " (so this hook has no trigger rule and runs for every request, as in adnanh)"
        } else {
            ""
        };
        messages.push((
            format!("`{k}` is not an adnanh option; adnanh ignores it, and so does the import{hint}"),
            false,
        ));
    }
    if Templates::has_calls(&hook.id) {
        gap(&mut messages, "the id comes from a template; write it out".into());
        return HookOut::nothing(messages);
    }
    if !valid_source_name(&hook.id) {
        gap(
            &mut messages,
            if hook.id.split('/').any(|p| p == "." || p == "..") {
                "this id has a `.` or `..` part: adnanh answers its URL with a redirect to the cleaned path, so it never runs; no source is made for it".into()
            } else {
                "this id cannot be a hookrunner source name (1 to 128 letters, digits and `-_.~@+`, with `/` between parts), so no source can answer at its URL".into()
            },
        );
        return HookOut::nothing(messages);
    }
    if flags
        .urlprefix
        .as_deref()
        .is_some_and(|p| p.trim_matches('/').is_empty())
        && crate::config::API_PATHS.contains(&hook.id.split('/').next().unwrap_or(""))
    {
        gap(
            &mut messages,
            "with an empty -urlprefix this id's URL is one of hookrunner's API routes, so no source can answer there; no source is made for it".into(),
        );
        return HookOut::nothing(messages);
    }

    let mut params = Params::new(short).parsing(&hook.parse_json);
    let rule = rules::translate(hook.trigger_rule.as_ref(), hook.soft_failures, &mut params, t);
    for n in &rule.notes {
        messages.push((n.clone(), false));
    }
    let rule_gaps = !rule.gaps.is_empty();
    for g in &rule.gaps {
        gap(&mut messages, g.clone());
    }

    // ---- the source
    let mut source = vec![Entry::new("provider", Out::str("generic"))];
    let auth = if let Some(h) = &rule.hmac {
        let mut a = vec![Entry::new("hmac", Out::str(h.algorithm))];
        let secrets: Vec<Out> = h.secrets.iter().map(|s| Out::Str(interp(s, t, true))).collect();
        if secrets.len() == 1 {
            a.push(Entry::new("secret", secrets[0].clone()));
        } else {
            a.push(Entry::new("secrets", Out::Seq(secrets)));
        }
        if let Some(hd) = &h.header {
            a.push(Entry::new("header", Out::str(hd)));
        }
        if let Some(q) = &h.query {
            a.push(Entry::new("query", Out::str(q)));
        }
        a.push(
            Entry::new("prefix", Out::Str(format!("{}=", h.algorithm)))
                .trailing("bare hex is accepted too, as in adnanh"),
        );
        Out::Map(a)
    } else if let Some(tok) = &rule.token {
        let mut a = vec![Entry::new("token", Out::Str(interp(&tok.token, t, true)))];
        if let Some(hd) = &tok.header {
            a.push(Entry::new("header", Out::str(hd)));
        }
        if let Some(q) = &tok.query {
            a.push(Entry::new("query", Out::str(q)));
        }
        Out::Map(a)
    } else {
        Out::str("none")
    };
    source.push(Entry::new("auth", auth));
    if let Some(ips) = &rule.allow_ips {
        source.push(Entry::new("allow_ips", Out::Seq(ips.iter().map(Out::str).collect())).trailing("ip-whitelist"));
    }
    let methods = methods(hook, flags, &mut messages);
    let no_methods = methods.is_none();
    match methods {
        Some(m) => source.push(Entry::new("methods", Out::Seq(m.into_iter().map(Out::Str).collect()))),
        None => gap(
            &mut messages,
            "`http-methods` lists only empty names: adnanh answers 405 to every request".into(),
        ),
    }
    source.push(Entry::new("bodies", Out::Seq(vec![Out::str("any")])).trailing("adnanh accepts every kind of body"));
    if !hook.incoming_content_type.is_empty() {
        source.push(Entry::new(
            "content_type",
            Out::Str(pasted(
                &hook.incoming_content_type,
                t,
                "incoming-payload-content-type",
                &mut messages,
            )),
        ));
    }
    source.push(Entry::new(
        "response",
        Out::Map(response(hook, flags, t, &mut messages)),
    ));

    // ---- the program
    let mut prog = Vec::new();
    let command = command(hook, t, &mut messages);
    let has_command = command.is_some();
    if let Some(c) = command {
        prog.push(Entry::new("command", Out::Str(c)));
    } else {
        gap(
            &mut messages,
            "no `execute-command`: adnanh fails to run anything when it triggers".into(),
        );
    }
    if !hook.command_working_directory.is_empty() {
        prog.push(Entry::new(
            "working_dir",
            Out::Str(interp(&hook.command_working_directory, t, false)),
        ));
    }
    let mut args = Vec::new();
    for a in &hook.pass_arguments {
        match params.value(a) {
            Ok(Val::Param(name)) => args.push(Out::Str(format!("{{{name}}}"))),
            Ok(Val::Literal(text)) => args.push(Out::Str(template_text(&text, t))),
            Ok(Val::Missing(why) | Val::Absent(why)) | Err(why) => {
                messages.push((
                    format!(
                        "argument {}: {why}; adnanh passes an empty argument, and so does the import",
                        rules::describe(a)
                    ),
                    false,
                ));
                args.push(Out::str(""));
            }
        }
    }
    if !args.is_empty() {
        prog.push(Entry::new("args", Out::Seq(args)));
    }
    let mut env: Vec<(String, Out)> = Vec::new();
    let mut param_env: Vec<(String, Out)> = Vec::new();
    for a in &hook.pass_environment {
        let name = if a.envname.is_empty() {
            format!("HOOK_{}", a.name)
        } else {
            a.envname.clone()
        };
        if name.contains('=') || name.contains('\0') {
            gap(
                &mut messages,
                format!("environment variable name `{name}` holds `=` or NUL"),
            );
            continue;
        }
        // A later entry of the same name wins when it has a value (the
        // environment keeps the last of a name); one that has none leaves
        // the earlier one in place, as adnanh skips a value it cannot read.
        let value = params.value(a);
        if matches!(value, Ok(Val::Param(_) | Val::Literal(_))) {
            let before = env.len() + param_env.len();
            env.retain(|(n, _)| *n != name);
            param_env.retain(|(n, _)| *n != name);
            if env.len() + param_env.len() < before && matches!(value, Ok(Val::Param(_))) {
                messages.push((
                    format!("`{name}` is given more than once: the last entry is used; when its value is missing from a request adnanh falls back to the earlier entry's, the import leaves the variable unset"),
                    false,
                ));
            }
        }
        match value {
            Ok(Val::Param(p)) => param_env.push((name, Out::Str(p))),
            Ok(Val::Literal(text)) => env.push((name, Out::Str(interp(&text, t, false)))),
            Ok(Val::Missing(why) | Val::Absent(why)) | Err(why) => {
                messages.push((
                    format!("`{name}`: {why}; adnanh leaves the variable unset, and so does the import"),
                    false,
                ));
            }
        }
    }
    let mut param_files: Vec<(String, Out)> = Vec::new();
    for a in &hook.pass_file {
        let name = if a.envname.is_empty() {
            format!("HOOK_{}", a.name.to_uppercase())
        } else {
            a.envname.clone()
        };
        if name.contains('/') || name == "." || name == ".." || name.contains(['=', '\0']) {
            // Go's os.CreateTemp refuses a pattern with a path separator.
            messages.push((
                format!("file `{name}`: not a file name (it holds `/`, `=` or NUL, or is `.` or `..`); adnanh writes no such file, and neither does the import"),
                false,
            ));
            continue;
        }
        match params.value(a) {
            Ok(Val::Param(p)) => {
                param_files.retain(|(n, _)| *n != name);
                if env.iter().chain(&param_env).any(|(n, _)| *n == name) {
                    // adnanh sets the environment first, then the files' paths.
                    env.retain(|(n, _)| *n != name);
                    param_env.retain(|(n, _)| *n != name);
                    messages.push((
                        format!("`{name}` is given by both `pass-environment-to-command` and `pass-file-to-command`: the file's path wins, as in adnanh"),
                        false,
                    ));
                }
                let v = if a.base64decode {
                    Out::Map(vec![Entry::new("param", Out::Str(p)), Entry::new("base64", Out::Bool(true))])
                } else {
                    Out::Str(p)
                };
                param_files.push((name, v));
            }
            Ok(Val::Literal(_)) => gap(
                &mut messages,
                format!("`pass-file-to-command` `{name}` from source `string` (a fixed text): `param_files` writes params only; keep such a file next to the handler"),
            ),
            Ok(Val::Missing(why) | Val::Absent(why)) | Err(why) => {
                messages.push((format!("file `{name}`: {why}; adnanh writes no file, and neither does the import"), false));
            }
        }
    }
    if !param_env.is_empty() {
        prog.push(Entry::new(
            "param_env",
            Out::Map(param_env.into_iter().map(|(k, v)| Entry::new(k, v)).collect()),
        ));
    }
    if !param_files.is_empty() {
        prog.push(Entry::new(
            "param_files",
            Out::Map(param_files.into_iter().map(|(k, v)| Entry::new(k, v)).collect()),
        ));
    }
    if !env.is_empty() {
        prog.push(Entry::new(
            "env",
            Out::Map(env.into_iter().map(|(k, v)| Entry::new(k, v)).collect()),
        ));
    }
    prog.push(Entry::new("hook_env", Out::Bool(false)).trailing("adnanh sets no HOOK_* variables of its own"));
    prog.push(Entry::new("timeout", Out::str("1h")).trailing("adnanh has no timeout; choose one"));
    if hook.capture_output {
        prog.push(
            Entry::new("wait", Out::str("1h"))
                .trailing("include-command-output-in-response: the answer waits for the command"),
        );
    }

    // ---- the mapping
    let mut parse_json = Vec::new();
    for a in &hook.parse_json {
        let p = match a.source.as_str() {
            "payload" => {
                if a.name.contains('.') {
                    messages.push((format!("`parse-parameters-as-json` `{}`: adnanh crashes (500) on a dotted name; hookrunner parses it", a.name), false));
                }
                super::params::payload_path(&a.name)
            }
            "header" if !crate::headers::valid_name(&a.name) => {
                messages.push((
                    format!(
                        "`parse-parameters-as-json` header `{}` is not a valid header name, so no request carries it: left out",
                        a.name.escape_debug()
                    ),
                    false,
                ));
                continue;
            }
            "header" => format!("headers.{}", key(&canonical_header(&a.name), true)),
            "url" | "query" => format!("query.{}", key(&a.name, true)),
            other => {
                messages.push((
                    format!(
                        "`parse-parameters-as-json` from source `{other}`: adnanh ignores it, and so does the import"
                    ),
                    false,
                ));
                continue;
            }
        };
        parse_json.push(Out::Str(p));
    }
    let mut rule_entries = Vec::new();
    let mut condition_too_long = false;
    if let Some(c) = &rule.condition {
        let mut text = c.render();
        if rule_gaps {
            rule_entries.push(
                Entry::new("if", Out::str("false"))
                    .above(
                        "NOT TRANSLATED: this hook's trigger rule has parts hookrunner cannot check (see the import's",
                    )
                    .above("messages), so it never runs; what could be translated is:")
                    .above(text.clone()),
            );
            text = String::new();
        }
        if !text.is_empty() {
            let names = params.names();
            match Condition::compile(&text, |n| {
                names.contains(&n) || ["source", "event", "action"].contains(&n)
            }) {
                Ok(_) => rule_entries.push(Entry::new("if", Out::Str(text))),
                Err(e) if !short && (e.contains("bytes long") || e.contains("deeper")) => {
                    condition_too_long = true;
                    rule_entries.push(Entry::new("if", Out::Str(text)));
                }
                Err(e) => {
                    gap(
                        &mut messages,
                        format!("the trigger rule as a condition is refused by hookrunner: {e}"),
                    );
                    rule_entries.push(Entry::new("if", Out::str("false")).above(format!("NOT TRANSLATED: {text}")));
                }
            }
        }
    } else if rule_gaps {
        rule_entries.push(Entry::new("if", Out::str("false")).above("NOT TRANSLATED: see the import's messages"));
    }
    // hookrunner reads these two itself, on every hook's URL.
    for (q, what) in [
        (
            "wait",
            "`?wait=<duration>` makes hookrunner wait for the command's end (a value that is not a duration, like `later`, is `400` and nothing runs)",
        ),
        (
            "dry_run",
            "`?dry_run` (`1`, `true`, `yes` or bare) makes the request a dry run: nothing runs, and the answer is the trace (or the API's 401 or 403 for a client it does not answer)",
        ),
    ] {
        let whole = format!("query.{q}");
        if params
            .entries()
            .iter()
            .any(|(_, s)| *s == whole || s.starts_with(&format!("{whole}.")))
        {
            messages.push((
                format!("this hook reads the URL parameter `{q}`, which hookrunner takes for itself: {what}; have the sender use another name"),
                false,
            ));
        }
    }
    let mut mapping_key = Vec::new();
    if !params.entries().is_empty() {
        mapping_key.push(Entry::new(
            "params",
            Out::Map(
                params
                    .entries()
                    .iter()
                    .map(|(n, s)| Entry::new(n.clone(), Out::Str(s.clone())))
                    .collect(),
            ),
        ));
    }
    if !parse_json.is_empty() {
        mapping_key.push(Entry::new("parse_json", Out::Seq(parse_json)));
    }
    if no_methods {
        // adnanh answers 405 to every request: nothing may run here either.
        rule_entries = vec![Entry::new("if", Out::str("false"))
            .above("NOT TRANSLATED: `http-methods` lists only empty names, so adnanh runs nothing; neither does this")];
    }
    let mut rules_out = Vec::new();
    if has_command {
        rule_entries.push(Entry::new("run", Out::str(program)));
        rules_out.push(Out::Map(rule_entries));
    }
    mapping_key.push(Entry::new("rules", Out::Seq(rules_out)));

    let prog_entry = has_command.then(|| Entry::new(program, Out::Map(prog)).above(title.clone()));
    HookOut {
        source: Some(
            Entry::new(hook.id.clone(), Out::Map(source))
                .above(format!("{title}, served at {}", url_of(&hook.id, flags))),
        ),
        program: prog_entry,
        mapping: Some(Entry::new(hook.id.clone(), Out::Map(vec![Entry::new("*", Out::Map(mapping_key))])).above(title)),
        messages,
        condition_too_long,
    }
}

fn url_of(id: &str, flags: &Flags) -> String {
    let prefix = flags.urlprefix.as_deref().unwrap_or("hooks").trim_matches('/');
    if prefix.is_empty() {
        format!("/{id}")
    } else {
        format!("/{prefix}/{id}")
    }
}

/// The methods the hook accepts; `None` when it accepts none.
fn methods(hook: &Hook, flags: &Flags, messages: &mut Vec<(String, bool)>) -> Option<Vec<String>> {
    if !hook.http_methods.is_empty() {
        let list: Vec<String> = hook
            .http_methods
            .iter()
            .map(|m| m.trim().to_uppercase())
            .filter(|m| !m.is_empty())
            .fold(Vec::new(), |mut acc, m| {
                if !acc.contains(&m) {
                    acc.push(m)
                }
                acc
            });
        return (!list.is_empty()).then_some(list);
    }
    if let Some(global) = flags.http_methods.as_deref().filter(|g| !g.is_empty()) {
        let cleaned = global.replace(' ', "").to_uppercase();
        let list: Vec<String> =
            cleaned
                .split(',')
                .filter(|m| !m.is_empty())
                .map(str::to_string)
                .fold(Vec::new(), |mut acc, m| {
                    if !acc.contains(&m) {
                        acc.push(m)
                    }
                    acc
                });
        if !list.is_empty() {
            return Some(list);
        }
    }
    let _ = messages;
    Some(ALL_METHODS.iter().map(|m| m.to_string()).collect())
}

/// `sources.<id>.response`.
fn response(hook: &Hook, flags: &Flags, t: &Templates, messages: &mut Vec<(String, bool)>) -> Vec<Entry> {
    let mut r = Vec::new();
    let status = |code: i64, what: &str, messages: &mut Vec<(String, bool)>| -> i64 {
        if code == 0 {
            200
        } else if !go_knows_status(code) {
            messages.push((
                format!("`{what}` {code} is not a status Go knows: adnanh sends 200, and so does the import"),
                false,
            ));
            200
        } else if code < 200 {
            messages.push((
                format!("`{what}` {code} is informational: hookrunner sends final statuses only; 200 it is"),
                false,
            ));
            200
        } else {
            code
        }
    };
    r.push(Entry::new(
        "status",
        Out::Int(status(hook.success_code, "success-http-response-code", messages)),
    ));
    if !hook.capture_output {
        r.push(
            Entry::new(
                "body",
                Out::Str(pasted(&hook.response_message, t, "response-message", messages)),
            )
            .trailing("response-message"),
        );
    }
    // `-header` first, then the hook's own, each replacing one of the same name.
    let mut headers: Vec<(String, String)> = Vec::new();
    let given: Vec<(String, String)> = flags
        .headers
        .iter()
        .map(|(n, v)| (n.clone(), v.clone()))
        .chain(hook.response_headers.iter().map(|h| {
            (
                pasted(&h.name, t, "response-headers", messages),
                pasted(&h.value, t, "response-headers", messages),
            )
        }))
        .collect();
    for (name, value) in given {
        let name = canonical_header(&name);
        headers.retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
        if let Err(why) = crate::config::settable_header(&name, &value) {
            messages.push((
                format!("`response-headers` `{}`: {why}", crate::logging::escape(&name)),
                true,
            ));
            continue;
        }
        headers.push((name, value));
    }
    if !headers.is_empty() {
        r.push(Entry::new(
            "headers",
            Out::Map(headers.into_iter().map(|(n, v)| Entry::new(n, Out::Str(v))).collect()),
        ));
    }
    r.push(Entry::new(
        "no_match",
        Out::Int(status(
            hook.mismatch_code,
            "trigger-rule-mismatch-http-response-code",
            messages,
        )),
    ));
    r.push(Entry::new("no_match_body", Out::str("Hook rules were not satisfied.")));
    if hook.capture_output {
        r.push(Entry::new("failure", Out::Int(500)));
        r.push(Entry::new("output", Out::Bool(true)).trailing("include-command-output-in-response"));
        r.push(
            Entry::new("output_on_failure", Out::Bool(hook.capture_output_on_error))
                .trailing("include-command-output-in-response-on-error"),
        );
        if !hook.capture_output_on_error {
            r.push(Entry::new("failure_body", Out::str(ADNANH_FAILURE_BODY)));
        }
    }
    r
}

/// adnanh's answer to a failed command whose output it does not show.
const ADNANH_FAILURE_BODY: &str =
    "Error occurred while executing the hook's command. Please check your logs for more details.";

/// The `command`: adnanh joins a relative `execute-command` to a set
/// `command-working-directory` (so a bare name is not searched in PATH then).
fn command(hook: &Hook, t: &Templates, messages: &mut Vec<(String, bool)>) -> Option<String> {
    let exec = &hook.execute_command;
    if exec.is_empty() {
        return None;
    }
    let cwd = &hook.command_working_directory;
    // A templated command is absolute or not once evaluated (adnanh
    // evaluates before it joins); here as the import's environment gives it.
    let exec_now = t.evaluate(exec);
    let absolute = exec.starts_with('/') || exec_now.starts_with('/');
    if !cwd.is_empty() && exec_now != *exec {
        messages.push((
            format!(
                "`execute-command` is a template that is {} here, so it was {}joined to `command-working-directory`; check it if your adnanh's environment differs",
                if absolute { "absolute" } else { "relative" },
                if absolute { "not " } else { "" }
            ),
            false,
        ));
    }
    let joined = if !cwd.is_empty() && !absolute {
        go_clean(&format!("{cwd}/{exec}"))
    } else {
        exec.clone()
    };
    let evaluated = t.evaluate(&joined);
    if evaluated.contains(' ') {
        messages.push((
            "`execute-command` holds a space: as in adnanh it is one file name, not a command line (arguments go in `pass-arguments-to-command`)".into(),
            false,
        ));
    }
    if !evaluated.starts_with('/') && evaluated.contains('/') {
        messages.push((
            format!("`{evaluated}` is relative: adnanh takes it from its own working directory, hookrunner from the config file's directory"),
            false,
        ));
    }
    Some(interp(&joined, t, false))
}

/// Go's `path.Clean` (lexical: `.` and `..` resolved, `//` collapsed).
fn go_clean(p: &str) -> String {
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    let body = parts.join("/");
    match (rooted, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".into(),
        (false, false) => body,
    }
}

/// Text for a key hookrunner expands `${...}` in: `$` doubled, template
/// calls as references. `strict`: an unset variable stops the load (secrets).
fn interp(text: &str, t: &Templates, strict: bool) -> String {
    let mut out = String::new();
    for piece in t.pieces(text, strict) {
        match piece {
            Piece::Text(s) => out.push_str(&s.replace('$', "$$")),
            Piece::Call { reference: Some(r), .. } => out.push_str(&r),
            Piece::Call { reference: None, .. } => {
                out.push_str(&t.evaluate(text).replace('$', "$$"));
                return out;
            }
        }
    }
    out
}

/// An `args` element for fixed text: braces doubled (they are templates
/// there) and `$` doubled (args are expanded too).
fn template_text(text: &str, t: &Templates) -> String {
    let mut out = String::new();
    for piece in t.pieces(text, false) {
        match piece {
            Piece::Text(s) => out.push_str(&s.replace('{', "{{").replace('}', "}}").replace('$', "$$")),
            Piece::Call { reference: Some(r), .. } => out.push_str(&r),
            Piece::Call { reference: None, .. } => {
                return t
                    .evaluate(text)
                    .replace('{', "{{")
                    .replace('}', "}}")
                    .replace('$', "$$");
            }
        }
    }
    out
}

/// Text for a key hookrunner does not expand: template values pasted, with a note.
fn pasted(text: &str, t: &Templates, what: &str, messages: &mut Vec<(String, bool)>) -> String {
    if Templates::has_calls(text) {
        messages.push((
            format!(
                "`{what}`: `{}` was evaluated at import time and its value written into the config (hookrunner does not expand `${{...}}` there)",
                Templates::source_text(text, t)
            ),
            false,
        ));
    }
    t.evaluate(text)
}
