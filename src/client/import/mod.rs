//! `hookrunner import adnanh HOOKS_FILE... [-o webhook.yaml]`: translates
//! adnanh/webhook's hooks file into a hookrunner config whose sources answer
//! at the same URLs, with the same trigger semantics, commands and answers.
//! Offline: nothing is sent anywhere.
//!
//! The steps, one file each: [`template`] (adnanh's `-template`), [`yaml`]
//! (go-yaml v2's reading of the file), [`hooks`] (Go's typed decoding into
//! adnanh's structs), then [`translate`] with [`rules`] (trigger rules) and
//! [`params`] (where values come from), and [`emit`] (the YAML written).
//! `docs/MIGRATING.md` is the user's guide; `docs/adnanh-reference.md` the
//! behaviour translated.

mod emit;
mod hooks;
mod params;
mod rules;
mod template;
mod translate;
mod yaml;

use clap::{Args, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// The exit codes of `hookrunner import`.
pub mod exit {
    /// The config was written (with `--allow-partial`, maybe with gaps).
    pub const OK: u8 = 0;
    /// Some hooks could not be translated (listed on stderr); nothing was written.
    pub const GAPS: u8 = 1;
    /// A usage error, or a file adnanh itself could not load (bad YAML, a value of the wrong type).
    pub const USAGE: u8 = 2;
}

#[derive(Subcommand, Debug)]
pub enum ImportCommand {
    /// Translate adnanh/webhook's hooks file (JSON or YAML, as adnanh reads
    /// it) into a hookrunner config: one source per hook at the same URL.
    Adnanh(AdnanhArgs),
}

#[derive(Args, Debug)]
pub struct AdnanhArgs {
    /// adnanh's hooks file(s), as given to its `-hooks` (JSON or YAML).
    #[arg(required = true, value_name = "HOOKS_FILE")]
    files: Vec<PathBuf>,
    /// Write the config here instead of to stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
    /// Write the config even if some hooks cannot be translated fully: each
    /// gap gets a comment, and a trigger rule with a gap becomes `if: false`.
    #[arg(long)]
    allow_partial: bool,
    /// adnanh's `-template`: evaluate the file's `{{ ... }}` (`getenv`, `cat`,
    /// `credential` become `${VAR}`, `${file:...}`, `${credential:...}` where
    /// hookrunner expands them).
    #[arg(long)]
    template: bool,
    /// adnanh's `-urlprefix` (default `hooks`): hooks are served at `/<prefix>/<id>`.
    #[arg(long, value_name = "PREFIX")]
    urlprefix: Option<String>,
    /// adnanh's `-http-methods`: the methods of hooks that list none (comma-separated).
    #[arg(long, value_name = "METHODS")]
    http_methods: Option<String>,
    /// adnanh's `-header name=value`: a header added to every hook's answers (repeatable).
    #[arg(long = "header", value_name = "NAME=VALUE")]
    headers: Vec<String>,
}

pub fn main(command: ImportCommand) -> ExitCode {
    let ImportCommand::Adnanh(args) = command;
    match adnanh(
        &args,
        &|k| std::env::var(k).ok(),
        &mut std::io::stdout(),
        &mut Terminal(std::io::stderr()),
    ) {
        Ok(code) => ExitCode::from(code),
        Err(message) => {
            complain!("error: {}", crate::client::commands::terminal(&message));
            ExitCode::from(exit::USAGE)
        }
    }
}

/// The diagnostics quote the hooks file (hook ids, values): its control
/// characters are shown escaped, never sent to the operator's terminal.
struct Terminal<W: Write>(W);

impl<W: Write> Write for Terminal<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(crate::client::commands::terminal(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// A file as read: its name, its template calls and its hooks.
struct Loaded {
    name: String,
    templates: template::Templates,
    hooks: Vec<hooks::Hook>,
}

/// Runs the import; `Err` is a usage or load error (exit 2).
/// `env` reads the environment (for `getenv` and `credential` in templates).
fn adnanh(
    args: &AdnanhArgs,
    env: &dyn Fn(&str) -> Option<String>,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> Result<u8, String> {
    let mut flags = translate::Flags {
        urlprefix: args.urlprefix.clone(),
        http_methods: args.http_methods.clone(),
        headers: Vec::new(),
    };
    for h in &args.headers {
        let (name, value) = h
            .split_once('=')
            .ok_or_else(|| format!("`--header {h}`: a header must be given as name=value"))?;
        flags.headers.push((name.to_string(), value.to_string()));
    }
    let mut loaded = Vec::new();
    let mut seen_files: Vec<PathBuf> = Vec::new();
    for path in &args.files {
        let name = path.display().to_string();
        let same = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
        if seen_files.contains(&same) {
            return Err(format!(
                "`{name}` is given twice: adnanh would load its hooks twice and refuse to start"
            ));
        }
        seen_files.push(same);
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read `{name}`: {e}"))?;
        let text = String::from_utf8(bytes).map_err(|_| format!("`{name}` is not UTF-8 text"))?;
        let (text, templates) = if args.template {
            let (out, templates, notes) =
                template::render(&text, env).map_err(|e| format!("{name}:{}: {}", e.line, e.message))?;
            for n in notes {
                let _ = writeln!(stderr, "{name}: note: {n}");
            }
            (out, templates)
        } else {
            if text.contains("{{") {
                let _ = writeln!(
                    stderr,
                    "{name}: note: the file holds `{{{{ ... }}}}`, which adnanh evaluates only with -template; it was kept as text (give --template if your adnanh runs with -template)"
                );
            }
            (text, template::Templates::default())
        };
        let doc = yaml::parse(&text).map_err(|e| {
            let why = if e.limit {
                "a limit of `hookrunner import`"
            } else {
                "adnanh cannot load this file either"
            };
            format!("{name}:{}: {} ({why})", e.pos, e.message)
        })?;
        let (hooks, notes) = hooks::read(doc.as_ref(), &templates).map_err(|e| {
            format!(
                "{name}:{}: `{}`: {} (adnanh refuses the whole file)",
                e.pos,
                if e.path.is_empty() { "(the file)" } else { &e.path },
                e.message
            )
        })?;
        for n in notes {
            let _ = writeln!(stderr, "{name}:{}: note: {}", n.pos.line, n.message);
        }
        loaded.push(Loaded { name, templates, hooks });
    }
    let total: usize = loaded.iter().map(|l| l.hooks.len()).sum();
    if total == 0 {
        return Err(
            "no hooks were found in the file (adnanh would not start with none, unless run with -nopanic)".into(),
        );
    }
    let inputs: Vec<translate::Input<'_>> = loaded
        .iter()
        .flat_map(|l| {
            l.hooks.iter().map(|hook| translate::Input {
                file: &l.name,
                hook,
                templates: &l.templates,
            })
        })
        .collect();
    let files: Vec<&str> = loaded.iter().map(|l| l.name.as_str()).collect();
    let mut command = vec!["hookrunner import adnanh".to_string()];
    if args.template {
        command.push("--template".into());
    }
    if let Some(p) = &args.urlprefix {
        command.push(format!("--urlprefix {}", shell_word(p)));
    }
    if let Some(m) = &args.http_methods {
        command.push(format!("--http-methods {}", shell_word(m)));
    }
    for h in &args.headers {
        command.push(format!("--header {}", shell_word(h)));
    }
    command.extend(files.iter().map(|f| shell_word(f)));
    let header = format!(
        "hookrunner config imported from adnanh's hooks ({}) by\n  {}\nEach source is one adnanh hook, answering at the same URL; docs/MIGRATING.md lists\nwhat behaves differently. Check it with `hookrunner check --config <this file>`.\nNot imported (adnanh command-line flags): listen on `server.listen` (adnanh's\n-ip/-port default is 0.0.0.0:9000, hookrunner's 127.0.0.1:9000); keep tasks with `state:`.",
        files.join(", "),
        command.join(" ")
    );
    let (text, messages, hooks_written) = translate::config(&inputs, &flags, &header);
    let gaps = messages.iter().filter(|m| m.gap).count();
    for m in &messages {
        let _ = writeln!(stderr, "{m}");
    }
    // What is written must load: anything the translation let through that
    // hookrunner refuses means nothing is written.
    let at = args.output.clone().unwrap_or_else(|| PathBuf::from("webhook.yaml"));
    // Only without `${VAR}` references: those are read where the daemon runs.
    let reads_env = text
        .match_indices("${")
        .any(|(i, _)| i == 0 || text.as_bytes()[i - 1] != b'$');
    let checked = if reads_env {
        Ok(())
    } else {
        crate::config::parse(&text, &at).map(|_| ())
    };
    if let Err(errors) = checked {
        // Not even with --allow-partial: a config the daemon refuses would
        // take every hook down, not just the ones with gaps.
        for e in &errors.0 {
            let e = crate::logging::escape(&e.to_string()).into_owned();
            let _ = writeln!(stderr, "the written config would not load: {e}");
        }
        let _ = writeln!(
            stderr,
            "nothing was written: the translation would not load (the lines above say where; --allow-partial cannot help with this)"
        );
        return Ok(exit::GAPS);
    }
    if gaps > 0 && !args.allow_partial {
        let _ = writeln!(
            stderr,
            "{gaps} part(s) of the hooks cannot be translated (listed above); nothing was written (--allow-partial writes the rest, with a comment at each gap)"
        );
        return Ok(exit::GAPS);
    }
    match &args.output {
        Some(path) => {
            // A file is replaced whole (no half-written config); anything
            // else that exists (`/dev/null`, a pipe) is written to, never
            // replaced by a file.
            let existing = std::fs::metadata(path).ok();
            let special = existing.as_ref().is_some_and(|m| !m.is_file());
            let written = if special {
                std::fs::write(path, &text)
            } else {
                // It may hold secrets: a file replaced keeps its permissions,
                // a new one is its owner's alone.
                use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
                let mode = existing.map_or(0o600, |m| m.permissions().mode() & 0o7777);
                let tmp = path.with_extension("import-tmp");
                let _ = std::fs::remove_file(&tmp);
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(mode)
                    .open(&tmp)
                    .and_then(|mut f| {
                        f.write_all(text.as_bytes())?;
                        // The mode as asked, whatever the umask took off.
                        f.set_permissions(std::fs::Permissions::from_mode(mode))
                    })
                    .and_then(|()| std::fs::rename(&tmp, path))
            };
            written.map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
            let _ = writeln!(
                stderr,
                "wrote {}: {hooks_written} of {total} hook(s){}",
                path.display(),
                if gaps > 0 {
                    format!(", {gaps} gap(s) marked NOT TRANSLATED")
                } else {
                    String::new()
                }
            );
        }
        None => {
            stdout
                .write_all(text.as_bytes())
                .map_err(|e| format!("cannot write the config: {e}"))?;
        }
    }
    Ok(exit::OK)
}

/// A word as a shell would need it (for the command shown in the header).
fn shell_word(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=,:@+".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests;
