//! adnanh's hook definitions (`internal/hook/hook.go`: `Hook`, `Argument`,
//! `Rules`, `MatchRule`), read from the YAML tree the way Go reads them:
//! ghodss/yaml turns numbers and booleans into text where a string is
//! expected, then `encoding/json` fills the structs, matching keys
//! case-insensitively, ignoring unknown keys, and refusing the whole file
//! when a value has the wrong type (a quoted `"201"` for a status code, a
//! scalar where a list belongs).

use super::template::Templates;
use super::yaml::{self, as_go_string, entries, resolve, Node, Pos, Resolved};

/// One hook of the file.
#[derive(Debug, Clone, Default)]
pub struct Hook {
    pub pos: Pos,
    pub id: String,
    pub execute_command: String,
    pub command_working_directory: String,
    pub response_message: String,
    pub response_headers: Vec<Header>,
    pub capture_output: bool,
    pub capture_output_on_error: bool,
    pub pass_environment: Vec<Argument>,
    pub pass_arguments: Vec<Argument>,
    pub pass_file: Vec<Argument>,
    pub parse_json: Vec<Argument>,
    pub trigger_rule: Option<Rules>,
    pub mismatch_code: i64,
    pub soft_failures: bool,
    pub incoming_content_type: String,
    pub success_code: i64,
    pub http_methods: Vec<String>,
    /// Keys adnanh does not know, which it ignores (a typo such as `trigger-rules`).
    pub unknown_keys: Vec<String>,
}

/// Where a value comes from: `{source, name, envname, base64decode}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Argument {
    pub pos: Pos,
    pub source: String,
    pub name: String,
    pub envname: String,
    pub base64decode: bool,
}

/// `{name, value}` of `response-headers`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: String,
}

/// A trigger rule: the first of `and`, `or`, `not`, `match` that is set counts.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub pos: Pos,
    pub and: Option<Vec<Rules>>,
    pub or: Option<Vec<Rules>>,
    pub not: Option<Box<Rules>>,
    pub matcher: Option<Match>,
}

/// `match: {type, value, regex, secret, ip-range, parameter}`.
#[derive(Debug, Clone, Default)]
pub struct Match {
    pub pos: Pos,
    pub kind: String,
    pub regex: String,
    pub secret: String,
    pub value: String,
    pub parameter: Argument,
    pub ip_range: String,
}

/// Why adnanh would refuse the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub pos: Pos,
    /// Where in the file, as `[2].trigger-rule.and[0]`.
    pub path: String,
    pub message: String,
}

/// Something read that the user should know, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub pos: Pos,
    pub message: String,
}

/// Reads the hooks of a parsed file (`None`: an empty file, no hooks).
pub fn read(doc: Option<&Node>, templates: &Templates) -> Result<(Vec<Hook>, Vec<Note>), LoadError> {
    let mut de = De {
        templates,
        notes: Vec::new(),
    };
    let mut hooks = Vec::new();
    if let Some(doc) = doc {
        de.list(doc, "", &mut hooks, De::hook)?;
    }
    Ok((hooks, de.notes))
}

struct De<'t> {
    templates: &'t Templates,
    notes: Vec<Note>,
}

type R = Result<(), LoadError>;

const HOOK_FIELDS: &[&str] = &[
    "id",
    "execute-command",
    "command-working-directory",
    "response-message",
    "response-headers",
    "include-command-output-in-response",
    "include-command-output-in-response-on-error",
    "pass-environment-to-command",
    "pass-arguments-to-command",
    "pass-file-to-command",
    "parse-parameters-as-json",
    "trigger-rule",
    "trigger-rule-mismatch-http-response-code",
    "trigger-signature-soft-failures",
    "incoming-payload-content-type",
    "success-http-response-code",
    "http-methods",
];
const ARGUMENT_FIELDS: &[&str] = &["source", "name", "envname", "base64decode"];
const HEADER_FIELDS: &[&str] = &["name", "value"];
const RULES_FIELDS: &[&str] = &["and", "or", "not", "match"];
const MATCH_FIELDS: &[&str] = &["type", "regex", "secret", "value", "parameter", "ip-range"];

/// The field a JSON key fills: the exact name, else one equal under
/// case folding (Go's `encoding/json`).
fn field_for(fields: &[&'static str], key: &str) -> Option<&'static str> {
    fields
        .iter()
        .find(|f| **f == key)
        .or_else(|| fields.iter().find(|f| fold_eq(f, key)))
        .copied()
}

fn fold_eq(a: &str, b: &str) -> bool {
    let fold = |s: &str| -> Vec<char> {
        s.chars()
            .map(|c| match c {
                // Go folds the Kelvin sign and the long s with k and s.
                '\u{212A}' => 'k',
                '\u{17F}' => 's',
                c => c.to_lowercase().next().unwrap_or(c),
            })
            .collect()
    };
    fold(a) == fold(b)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl De<'_> {
    fn err(&self, node: &Node, path: &str, message: String) -> LoadError {
        LoadError {
            pos: node.pos(),
            path: path.to_string(),
            message,
        }
    }

    fn type_error(&self, node: &Node, path: &str, want: &str) -> LoadError {
        self.err(
            node,
            path,
            format!(
                "adnanh cannot read a{} {} here: it must be {want}",
                if node.kind() == "array" || node.kind() == "object" {
                    "n"
                } else {
                    ""
                },
                node.kind()
            ),
        )
    }

    /// The entries of an object, `None` for null.
    fn object(&self, node: &Node, path: &str, what: &str) -> Result<Option<Vec<(String, Node)>>, LoadError> {
        match node {
            Node::Map(pairs, _) => entries(pairs).map(Some).map_err(|e| LoadError {
                pos: e.pos,
                path: path.to_string(),
                message: e.message,
            }),
            Node::Scalar(s) if resolve(s) == Resolved::Null => Ok(None),
            other => Err(self.type_error(other, path, what)),
        }
    }

    /// A scalar's value as Go reads it; placeholders of template calls in a
    /// plain scalar are evaluated first when they would change its type.
    fn scalar(&mut self, node: &Node) -> Option<Resolved> {
        let Node::Scalar(s) = node else { return None };
        if !Templates::has_calls(&s.value) {
            return Some(resolve(s));
        }
        let mut value = s.value.clone();
        if !s.double_quoted && self.templates.has_js(&value) {
            // Outside double quotes YAML keeps the `js` escaping in the value.
            value = self.templates.paste_js(&value);
            self.notes.push(Note {
                pos: s.pos,
                message: format!(
                    "`{}` is piped through `js` outside double quotes, so its escaped value was written into the config",
                    Templates::source_text(&s.value, self.templates)
                ),
            });
        }
        if s.plain && s.tag.is_none() {
            let evaluated = self.templates.evaluate(&value);
            let r = yaml::resolve_plain(&evaluated);
            if r == Resolved::Str(evaluated.clone()) {
                return Some(Resolved::Str(value));
            }
            self.notes.push(Note {
                pos: s.pos,
                message: format!(
                    "the template in `{}` gives `{evaluated}`, which adnanh reads as {}; the value was written as adnanh reads it",
                    Templates::source_text(&s.value, self.templates),
                    describe(&r)
                ),
            });
            return Some(r);
        }
        Some(match resolve(s) {
            Resolved::Str(_) => Resolved::Str(value),
            other => other,
        })
    }

    fn string(&mut self, node: &Node, path: &str, out: &mut String) -> R {
        match self.scalar(node) {
            Some(r) => {
                if let Some(s) = as_go_string(&r) {
                    *out = s;
                }
                Ok(())
            }
            None => Err(self.type_error(node, path, "a string")),
        }
    }

    fn int(&mut self, node: &Node, path: &str, out: &mut i64) -> R {
        match self.scalar(node) {
            Some(Resolved::Null) => Ok(()),
            Some(Resolved::Int(i)) => {
                *out = i;
                Ok(())
            }
            // JSON carries a float as its shortest text; an integral one reads as an int.
            Some(Resolved::Float(f)) if f.fract() == 0.0 && f.abs() < 9.2e18 => {
                *out = f as i64;
                Ok(())
            }
            _ => Err(self.type_error(node, path, "a whole number, unquoted")),
        }
    }

    fn boolean(&mut self, node: &Node, path: &str, out: &mut bool) -> R {
        match self.scalar(node) {
            Some(Resolved::Null) => Ok(()),
            Some(Resolved::Bool(b)) => {
                *out = b;
                Ok(())
            }
            _ => Err(self.type_error(node, path, "true or false, unquoted")),
        }
    }

    fn list<T: Default>(
        &mut self,
        node: &Node,
        path: &str,
        out: &mut Vec<T>,
        each: fn(&mut Self, &Node, &str, &mut T) -> R,
    ) -> R {
        match node {
            Node::Seq(items, _) => {
                out.clear();
                for (i, item) in items.iter().enumerate() {
                    let mut value = T::default();
                    each(self, item, &format!("{path}[{i}]"), &mut value)?;
                    out.push(value);
                }
                Ok(())
            }
            Node::Scalar(s) if resolve(s) == Resolved::Null => {
                out.clear();
                Ok(())
            }
            other => Err(self.type_error(other, path, "a list")),
        }
    }

    fn hook(&mut self, node: &Node, path: &str, out: &mut Hook) -> R {
        out.pos = node.pos();
        let Some(fields) = self.object(node, path, "a hook (a mapping)")? else {
            return Ok(());
        };
        for (key, value) in &fields {
            let at = join(path, key);
            match field_for(HOOK_FIELDS, key) {
                Some("id") => self.string(value, &at, &mut out.id)?,
                Some("execute-command") => self.string(value, &at, &mut out.execute_command)?,
                Some("command-working-directory") => self.string(value, &at, &mut out.command_working_directory)?,
                Some("response-message") => self.string(value, &at, &mut out.response_message)?,
                Some("response-headers") => self.list(value, &at, &mut out.response_headers, De::header)?,
                Some("include-command-output-in-response") => self.boolean(value, &at, &mut out.capture_output)?,
                Some("include-command-output-in-response-on-error") => {
                    self.boolean(value, &at, &mut out.capture_output_on_error)?
                }
                Some("pass-environment-to-command") => {
                    self.list(value, &at, &mut out.pass_environment, De::argument)?
                }
                Some("pass-arguments-to-command") => self.list(value, &at, &mut out.pass_arguments, De::argument)?,
                Some("pass-file-to-command") => self.list(value, &at, &mut out.pass_file, De::argument)?,
                Some("parse-parameters-as-json") => self.list(value, &at, &mut out.parse_json, De::argument)?,
                Some("trigger-rule") => match self.object(value, &at, "a rule (a mapping)")? {
                    None => out.trigger_rule = None,
                    Some(_) => {
                        let rule = out.trigger_rule.get_or_insert_with(Rules::default);
                        self.rules(value, &at, rule)?
                    }
                },
                Some("trigger-rule-mismatch-http-response-code") => self.int(value, &at, &mut out.mismatch_code)?,
                Some("trigger-signature-soft-failures") => self.boolean(value, &at, &mut out.soft_failures)?,
                Some("incoming-payload-content-type") => self.string(value, &at, &mut out.incoming_content_type)?,
                Some("success-http-response-code") => self.int(value, &at, &mut out.success_code)?,
                Some("http-methods") => self.list(value, &at, &mut out.http_methods, De::string)?,
                _ => out.unknown_keys.push(key.clone()),
            }
        }
        Ok(())
    }

    fn argument(&mut self, node: &Node, path: &str, out: &mut Argument) -> R {
        out.pos = node.pos();
        let Some(fields) = self.object(node, path, "an argument (`{source: ..., name: ...}`)")? else {
            return Ok(());
        };
        for (key, value) in &fields {
            let at = join(path, key);
            match field_for(ARGUMENT_FIELDS, key) {
                Some("source") => self.string(value, &at, &mut out.source)?,
                Some("name") => self.string(value, &at, &mut out.name)?,
                Some("envname") => self.string(value, &at, &mut out.envname)?,
                Some("base64decode") => self.boolean(value, &at, &mut out.base64decode)?,
                _ => {}
            }
        }
        Ok(())
    }

    fn header(&mut self, node: &Node, path: &str, out: &mut Header) -> R {
        let Some(fields) = self.object(node, path, "a header (`{name: ..., value: ...}`)")? else {
            return Ok(());
        };
        for (key, value) in &fields {
            let at = join(path, key);
            match field_for(HEADER_FIELDS, key) {
                Some("name") => self.string(value, &at, &mut out.name)?,
                Some("value") => self.string(value, &at, &mut out.value)?,
                _ => {}
            }
        }
        Ok(())
    }

    fn rules(&mut self, node: &Node, path: &str, out: &mut Rules) -> R {
        out.pos = node.pos();
        let Some(fields) = self.object(node, path, "a rule (a mapping)")? else {
            return Ok(());
        };
        for (key, value) in &fields {
            let at = join(path, key);
            match field_for(RULES_FIELDS, key) {
                Some("and") => self.rule_list(value, &at, &mut out.and)?,
                Some("or") => self.rule_list(value, &at, &mut out.or)?,
                Some("not") => match self.object(value, &at, "a rule (a mapping)")? {
                    None => out.not = None,
                    Some(_) => {
                        let rule = out.not.get_or_insert_with(Box::default);
                        self.rules(value, &at, rule)?
                    }
                },
                Some("match") => match self.object(value, &at, "a match (a mapping)")? {
                    None => out.matcher = None,
                    Some(_) => {
                        let m = out.matcher.get_or_insert_with(Match::default);
                        self.matcher(value, &at, m)?
                    }
                },
                _ => {}
            }
        }
        Ok(())
    }

    fn rule_list(&mut self, node: &Node, path: &str, out: &mut Option<Vec<Rules>>) -> R {
        if matches!(node, Node::Scalar(s) if resolve(s) == Resolved::Null) {
            *out = None;
            return Ok(());
        }
        let mut list = Vec::new();
        self.list(node, path, &mut list, De::rules)?;
        *out = Some(list);
        Ok(())
    }

    fn matcher(&mut self, node: &Node, path: &str, out: &mut Match) -> R {
        out.pos = node.pos();
        let Some(fields) = self.object(node, path, "a match (a mapping)")? else {
            return Ok(());
        };
        for (key, value) in &fields {
            let at = join(path, key);
            match field_for(MATCH_FIELDS, key) {
                Some("type") => self.string(value, &at, &mut out.kind)?,
                Some("regex") => self.string(value, &at, &mut out.regex)?,
                Some("secret") => self.string(value, &at, &mut out.secret)?,
                Some("value") => self.string(value, &at, &mut out.value)?,
                Some("parameter") => self.argument(value, &at, &mut out.parameter)?,
                Some("ip-range") => self.string(value, &at, &mut out.ip_range)?,
                _ => {}
            }
        }
        Ok(())
    }
}

fn describe(r: &Resolved) -> String {
    match r {
        Resolved::Null => "null (an empty string)".into(),
        Resolved::Bool(b) => format!("the boolean {b}"),
        Resolved::Int(_) | Resolved::Uint(_) | Resolved::Float(_) => {
            format!("the number {}", as_go_string(r).unwrap_or_default())
        }
        Resolved::Str(s) => format!("the string `{s}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Vec<Hook>, LoadError> {
        let doc = yaml::parse(text).unwrap();
        read(doc.as_ref(), &Templates::default()).map(|(h, _)| h)
    }

    #[test]
    fn keys_are_case_insensitive_and_unknown_keys_ignored() {
        let hooks = load("- ID: a\n  Execute-Command: /bin/true\n  trigger-rules: {match: {type: value}}\n").unwrap();
        assert_eq!(hooks[0].id, "a");
        assert_eq!(hooks[0].execute_command, "/bin/true");
        assert!(hooks[0].trigger_rule.is_none());
        assert_eq!(hooks[0].unknown_keys, ["trigger-rules"]);
        // Both spellings given: Go applies them in key order, `id` after `ID`.
        let hooks = load("- id: lower\n  ID: upper\n").unwrap();
        assert_eq!(hooks[0].id, "lower");
    }

    #[test]
    fn unquoted_scalars_become_strings_and_typed_fields_refuse_strings() {
        let hooks = load(
            "- id: 10\n  response-message: yes\n  success-http-response-code: 201\n  include-command-output-in-response: on\n  http-methods: [post, 1]\n",
        )
        .unwrap();
        assert_eq!(hooks[0].id, "10");
        assert_eq!(hooks[0].response_message, "true");
        assert_eq!(hooks[0].success_code, 201);
        assert!(hooks[0].capture_output);
        assert_eq!(hooks[0].http_methods, ["post", "1"]);
        for bad in [
            "- success-http-response-code: \"201\"\n",
            "- include-command-output-in-response: \"true\"\n",
            "- http-methods: POST\n",
            "- id: [a]\n",
            "- trigger-rule: x\n",
            "{id: a}\n",
        ] {
            let e = load(bad).unwrap_err();
            assert!(e.message.contains("adnanh cannot read"), "{bad}: {e:?}");
        }
        let e = load("- id: a\n  success-http-response-code: \"201\"\n").unwrap_err();
        assert_eq!(e.path, "[0].success-http-response-code");
        assert_eq!(e.pos, Pos { line: 2, column: 31 });
    }

    #[test]
    fn rules_nest_and_the_flow_pair_in_a_list_is_an_or() {
        let hooks = load(
            "[{\"id\": \"x\", \"trigger-rule\": {\"and\": [ \"or\": [ {\"match\": {\"type\": \"value\", \"value\": 1}} ], {\"not\": {}} ]}}]",
        )
        .unwrap();
        let rule = hooks[0].trigger_rule.as_ref().unwrap();
        let and = rule.and.as_ref().unwrap();
        assert_eq!(and.len(), 2);
        let or = and[0].or.as_ref().unwrap();
        assert_eq!(or[0].matcher.as_ref().unwrap().value, "1");
        assert!(and[1].not.is_some());
    }
}
