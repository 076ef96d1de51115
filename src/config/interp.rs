//! `${VAR}` and `${VAR:-default}` in config strings, expanded from the environment at load.
//!
//! Expansion happens while the YAML is deserialised, so an unset variable is
//! reported with the line and column of the value that names it.

use serde::{de, Deserialize, Deserializer};
use std::fmt;

/// A config string after environment expansion.
#[derive(Clone, PartialEq, Eq)]
pub struct Interp {
    pub value: String,
    /// The variables that were unset, so their `:-default` was used.
    pub defaulted: Vec<String>,
}

impl fmt::Debug for Interp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Interp values can be secrets; print only which defaults were used.
        f.debug_struct("Interp")
            .field("defaulted", &self.defaulted)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
fn expand(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<Interp, String> {
    expand_into(text, lookup, false)
}

/// Expands `${VAR}`, `${VAR:-default}` and `$$` (a literal `$`) in `text`.
/// In an argument template (`args`, `literal_braces`), what `${...}` brings
/// in is text, never template syntax: its braces are doubled (`{{`, `}}`),
/// so a variable holding `{param}` passes those characters, not the param.
fn expand_into(text: &str, lookup: impl Fn(&str) -> Option<String>, literal_braces: bool) -> Result<Interp, String> {
    let push = |value: &mut String, brought: &str| {
        if literal_braces {
            value.push_str(&brought.replace('{', "{{").replace('}', "}}"));
        } else {
            value.push_str(brought);
        }
    };
    let mut value = String::with_capacity(text.len());
    let mut defaulted = Vec::new();
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        value.push_str(&rest[..pos]);
        rest = &rest[pos..];
        if let Some(after) = rest.strip_prefix("$$") {
            value.push('$');
            rest = after;
            continue;
        }
        let Some(body) = rest.strip_prefix("${") else {
            value.push('$');
            rest = &rest[1..];
            continue;
        };
        let end = body
            .find('}')
            .ok_or_else(|| "unclosed `${` (write `$$` for a literal `$`)".to_string())?;
        let inner = &body[..end];
        rest = &body[end + 1..];
        // `${file:/path}` and `${credential:NAME}` (systemd's LoadCredential=) read a file.
        if let Some(path) = inner.strip_prefix("file:") {
            push(&mut value, &read_secret_file(std::path::Path::new(path))?);
            continue;
        }
        if let Some(name) = inner.strip_prefix("credential:") {
            let dir = std::env::var("CREDENTIALS_DIRECTORY").map_err(|_| {
                format!("`${{credential:{name}}}` needs systemd's LoadCredential= (CREDENTIALS_DIRECTORY is not set)")
            })?;
            if name.is_empty() || name.contains('/') {
                return Err(format!("`{name}` is not a credential name"));
            }
            push(&mut value, &read_secret_file(&std::path::Path::new(&dir).join(name))?);
            continue;
        }
        let (name, default) = match inner.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (inner, None),
        };
        if default.is_some_and(|d| d.contains("${")) {
            return Err(format!(
                "`${{{name}:-...}}`: a default cannot hold another `${{...}}` (write `$$` for a literal `$`)"
            ));
        }
        let valid = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            return Err(format!("`${{{name}}}` is not a valid environment variable name"));
        }
        match (lookup(name), default) {
            (Some(v), _) => push(&mut value, &v),
            (None, Some(default)) => {
                push(&mut value, default);
                defaulted.push(name.to_string());
            }
            (None, None) => {
                return Err(format!(
                    "environment variable `{name}` is not set (write `${{{name}:-default}}` to give a default)"
                ))
            }
        }
    }
    value.push_str(rest);
    Ok(Interp { value, defaulted })
}

/// A secret kept in a file: its contents without the trailing newline.
fn read_secret_file(path: &std::path::Path) -> Result<String, String> {
    let text = super::read_text(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    Ok(text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text)
        .to_string())
}

/// An argument template after environment expansion ([`expand_template`]).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct TemplateInterp(pub Interp);

impl<'de> Deserialize<'de> for TemplateInterp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(V { template: true }).map(TemplateInterp)
    }
}

impl<'de> Deserialize<'de> for Interp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(V { template: false })
    }
}

/// Reads a config string (or a number or boolean, as its text) and expands it.
struct V {
    template: bool,
}

impl de::Visitor<'_> for V {
    type Value = Interp;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Interp, E> {
        expand_into(v, |name| std::env::var(name).ok(), self.template).map_err(E::custom)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Interp, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Interp, E> {
        self.visit_str(&v.to_string())
    }
    // Beyond 64 bits (a long numeric token, say): its digits, never
    // an error that would quote them.
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Interp, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Interp, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Interp, E> {
        if !v.is_finite() {
            // `1e999` would become `inf`; the value is not repeated (it may be a secret).
            return Err(E::custom(
                "this number is too large to keep as written: put it in quotes",
            ));
        }
        self.visit_str(&v.to_string())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Interp, E> {
        self.visit_str(if v { "true" } else { "false" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "SET").then(|| "value".to_string())
    }

    #[test]
    fn expands_set_default_and_escape() {
        let t = expand_into("-{p}-${SET}-${UNSET:-q{}", |n| (n == "SET").then(|| "{x}".into()), true).unwrap();
        assert_eq!(t.value, "-{p}-{{x}}-q{{");
        let i = expand("a-${SET}-${UNSET:-dflt}-$$-$x", env).unwrap();
        assert_eq!(i.value, "a-value-dflt-$-$x");
        assert_eq!(i.defaulted, vec!["UNSET".to_string()]);
    }

    #[test]
    fn a_default_holding_a_reference_is_refused_not_kept_as_text() {
        for text in ["${UNSET:-${SET}}", "${UNSET:-${B:-z}}", "x${UNSET:-a${SET}b}"] {
            let err = expand(text, env).unwrap_err();
            assert!(err.contains("a default cannot hold another `${...}`"), "{text}: {err}");
        }
    }

    #[test]
    fn a_long_number_is_its_digits_and_an_infinite_one_is_refused_unquoted() {
        let read = |yaml: &str| {
            serde_yaml::from_str::<Interp>(yaml)
                .map(|i| i.value)
                .map_err(|e| e.to_string())
        };
        assert_eq!(
            read("9182736455463728193847561928").unwrap(),
            "9182736455463728193847561928"
        );
        assert_eq!(
            read("-9182736455463728193847561928").unwrap(),
            "-9182736455463728193847561928"
        );
        let err = read(".inf").unwrap_err();
        assert!(err.contains("put it in quotes"), "{err}");
        assert_eq!(read("'.inf'").unwrap(), ".inf");
    }

    #[test]
    fn missing_variable_is_named() {
        let err = expand("${GITHUB_SECRET}", env).unwrap_err();
        assert!(err.contains("`GITHUB_SECRET` is not set"), "{err}");
    }

    #[test]
    fn files_and_credentials() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("gh"), "s3cret\n").unwrap();
        let text = format!("${{file:{}}}", dir.path().join("gh").display());
        assert_eq!(expand(&text, env).unwrap().value, "s3cret");
        assert!(expand("${file:/nonexistent/x}", env)
            .unwrap_err()
            .contains("cannot read"));
        std::env::set_var("CREDENTIALS_DIRECTORY", dir.path());
        assert_eq!(expand("a${credential:gh}", env).unwrap().value, "as3cret");
        assert!(expand("${credential:../x}", env).is_err());
    }

    #[test]
    fn bad_references() {
        assert!(expand("${", env).is_err());
        assert!(expand("${1X}", env).is_err());
        assert!(expand("${A B}", env).is_err());
    }
}
