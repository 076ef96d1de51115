//! A trigger rule translated: the signature and address checks that must
//! hold for the hook to run are lifted to the source (`auth`, `allow_ips`),
//! and the rest becomes one evalexpr condition over params.
//!
//! adnanh evaluates a rule to a value and possibly an error: a parameter
//! that is not there is a *not-found* error, which `and` passes up (so the
//! `and` is false), `or` ignores (using the child's value), `not` keeps
//! (negating the value), and the top level ignores (using the value). So
//! `not` over a missing parameter triggers at the top level but makes an
//! enclosing `and` false. Each node is translated to two expressions, `v`
//! (its value) and `nf` (a not-found error leaves it), and combined as adnanh
//! combines them. In a condition a missing param reads as `""`, so "missing"
//! is written `p == ""`; a match whose comparison holds for `""` (a `value`
//! of `""`, a regex that matches the empty string) cannot tell the two apart
//! and treats a missing param as empty (a note says so).

use super::hooks::{Argument, Match, Rules};
use super::params::{Params, Val};
use super::template::Templates;

/// A boolean expression over params, simplified as it is built.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Const(bool),
    /// A comparison, and how it reads negated.
    Atom {
        text: String,
        negated: String,
    },
    Not(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
}

impl Expr {
    fn atom(text: String, negated: String) -> Expr {
        Expr::Atom { text, negated }
    }

    pub fn not(e: Expr) -> Expr {
        match e {
            Expr::Const(b) => Expr::Const(!b),
            Expr::Atom { text, negated } => Expr::Atom {
                text: negated,
                negated: text,
            },
            Expr::Not(inner) => *inner,
            other => Expr::Not(Box::new(other)),
        }
    }

    pub fn and(items: Vec<Expr>) -> Expr {
        let mut out = Vec::new();
        for e in items {
            match e {
                Expr::Const(true) => {}
                Expr::Const(false) => return Expr::Const(false),
                Expr::And(inner) => out.extend(inner),
                other => {
                    if !out.contains(&other) {
                        out.push(other)
                    }
                }
            }
        }
        match out.len() {
            0 => Expr::Const(true),
            1 => out.pop().unwrap_or(Expr::Const(true)),
            _ => Expr::And(out),
        }
    }

    pub fn or(items: Vec<Expr>) -> Expr {
        let mut out = Vec::new();
        for e in items {
            match e {
                Expr::Const(false) => {}
                Expr::Const(true) => return Expr::Const(true),
                Expr::Or(inner) => out.extend(inner),
                other => {
                    if !out.contains(&other) {
                        out.push(other)
                    }
                }
            }
        }
        match out.len() {
            0 => Expr::Const(false),
            1 => out.pop().unwrap_or(Expr::Const(false)),
            _ => Expr::Or(out),
        }
    }

    /// How many nodes it has, counting no further than `limit` (+1).
    fn weight(&self, limit: usize) -> usize {
        match self {
            Expr::Const(_) | Expr::Atom { .. } => 1,
            Expr::Not(inner) => 1 + inner.weight(limit),
            Expr::And(items) | Expr::Or(items) => {
                let mut n = 1;
                for e in items {
                    if n > limit {
                        break;
                    }
                    n += e.weight(limit - n.min(limit));
                }
                n
            }
        }
    }

    /// The expression as evalexpr text.
    pub fn render(&self) -> String {
        self.render_in(0)
    }

    /// `outer`: 0 top or `||`, 1 inside `&&`, 2 after `!`.
    fn render_in(&self, outer: u8) -> String {
        match self {
            Expr::Const(b) => b.to_string(),
            Expr::Atom { text, .. } => text.clone(),
            Expr::Not(inner) => format!("!({})", inner.render_in(0)),
            Expr::And(items) => {
                let s = items.iter().map(|e| e.render_in(1)).collect::<Vec<_>>().join(" && ");
                if outer >= 2 {
                    format!("({s})")
                } else {
                    s
                }
            }
            Expr::Or(items) => {
                let s = items.iter().map(|e| e.render_in(0)).collect::<Vec<_>>().join(" || ");
                if outer >= 1 {
                    format!("({s})")
                } else {
                    s
                }
            }
        }
    }
}

/// An evalexpr string literal.
pub fn string_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The signature check lifted to the source.
#[derive(Debug, Clone, PartialEq)]
pub struct Hmac {
    /// `sha1`, `sha256` or `sha512`.
    pub algorithm: &'static str,
    /// Template-bearing text, as read.
    pub secrets: Vec<String>,
    pub header: Option<String>,
    pub query: Option<String>,
}

/// A token compared with a header or query value, lifted to the source.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub token: String,
    pub header: Option<String>,
    pub query: Option<String>,
}

/// What a trigger rule became.
#[derive(Debug, Default)]
pub struct Translated {
    pub hmac: Option<Hmac>,
    pub token: Option<Token>,
    pub allow_ips: Option<Vec<String>>,
    /// `None`: always (no rule). `Some(Const(false))`: never.
    pub condition: Option<Expr>,
    /// What cannot be translated (the hook gets `if: false` then).
    pub gaps: Vec<String>,
    pub notes: Vec<String>,
}

/// The match types that check an HMAC of the body, and their algorithm.
fn hmac_algorithm(kind: &str) -> Option<&'static str> {
    match kind {
        "payload-hmac-sha1" | "payload-hash-sha1" => Some("sha1"),
        "payload-hmac-sha256" | "payload-hash-sha256" => Some("sha256"),
        "payload-hmac-sha512" | "payload-hash-sha512" => Some("sha512"),
        _ => None,
    }
}

/// The part of a rule that counts: the first of `and`, `or`, `not`, `match` set.
enum Kind<'a> {
    And(&'a [Rules]),
    Or(&'a [Rules]),
    Not(&'a Rules),
    Match(&'a Match),
    Nothing,
}

fn kind(r: &Rules) -> Kind<'_> {
    if let Some(a) = &r.and {
        Kind::And(a)
    } else if let Some(o) = &r.or {
        Kind::Or(o)
    } else if let Some(n) = &r.not {
        Kind::Not(n)
    } else if let Some(m) = &r.matcher {
        Kind::Match(m)
    } else {
        Kind::Nothing
    }
}

/// The children of the top-level `and` (nested `and`s flattened, which
/// changes nothing in adnanh), or the rule itself.
fn top_children(r: &Rules) -> Vec<&Rules> {
    match kind(r) {
        Kind::And(items) => items.iter().flat_map(top_children).collect(),
        _ => vec![r],
    }
}

/// Translates `rule` (the hook's `trigger-rule`). `soft`: its
/// `trigger-signature-soft-failures`.
pub fn translate(rule: Option<&Rules>, soft: bool, params: &mut Params, templates: &Templates) -> Translated {
    let mut out = Translated::default();
    let Some(rule) = rule else {
        return out;
    };
    if matches!(kind(rule), Kind::Nothing) {
        out.notes
            .push("`trigger-rule` names no `and`, `or`, `not` or `match`: adnanh never triggers it, so neither does the import".into());
        out.condition = Some(Expr::Const(false));
        return out;
    }
    let top_is_and = matches!(kind(rule), Kind::And(_));
    let children = top_children(rule);
    // Signatures and addresses first, then a token (whatever the order in
    // the file): a source's `auth` holds one check, and a signature wins it;
    // a token match that does not fit stays a condition, still checked.
    let mut rest: Vec<&Rules> = Vec::new();
    for child in children {
        if lift(child, soft, false, &mut out, templates) {
            continue;
        }
        rest.push(child);
    }
    rest.retain(|child| !lift(child, soft, true, &mut out, templates));
    let mut cx = Cx {
        params,
        templates,
        gaps: Vec::new(),
        notes: Vec::new(),
        too_large: false,
    };
    let mut v = Vec::new();
    let mut weight = 0;
    for child in rest {
        let t = cx.node(child);
        // The top level ignores a not-found error and uses the value; an `and` does not.
        let e = if top_is_and { cx.holds_in_and(t) } else { t.v };
        weight += e.weight(MAX_NODES);
        v.push(e);
        if cx.too_large || weight > MAX_NODES {
            cx.too_large = true;
            break;
        }
    }
    if cx.too_large {
        cx.gaps.push(TOO_LARGE.into());
        v = vec![Expr::Const(false)];
    }
    out.gaps.append(&mut cx.gaps);
    out.notes.append(&mut cx.notes);
    let condition = Expr::and(v);
    out.condition = match condition {
        Expr::Const(true) => None,
        other => Some(other),
    };
    out
}

/// Lifts `child` (a child of the top-level `and`) to the source if it is a
/// signature, address or (with `tokens`) secret-token check; true if it was.
fn lift(child: &Rules, soft: bool, tokens: bool, out: &mut Translated, templates: &Templates) -> bool {
    match kind(child) {
        Kind::Match(m) if hmac_algorithm(&m.kind).is_some() => {
            let hmac = match hmac_from(&[m], out, templates) {
                Some(h) => h,
                None => return true,
            };
            set_hmac(out, hmac);
            true
        }
        Kind::Or(items)
            if !items.is_empty()
                && items
                    .iter()
                    .all(|i| matches!(kind(i), Kind::Match(m) if hmac_algorithm(&m.kind).is_some())) =>
        {
            let matches: Vec<&Match> = items
                .iter()
                .filter_map(|i| match kind(i) {
                    Kind::Match(m) => Some(m),
                    _ => None,
                })
                .collect();
            let first = matches[0];
            let same = matches.iter().all(|m| {
                hmac_algorithm(&m.kind) == hmac_algorithm(&first.kind)
                    && m.parameter.source == first.parameter.source
                    && m.parameter.name == first.parameter.name
            });
            if !same {
                out.gaps.push(
                    "an `or` of HMAC matches of different types or signature parameters: hookrunner's `auth` checks one signature".into(),
                );
                return true;
            }
            let used: Vec<&Match> = if soft {
                matches
            } else {
                if matches.len() > 1 {
                    out.notes.push(format!(
                        "without `trigger-signature-soft-failures`, adnanh answers 500 when the first secret of the `or` does not match, so only it can ever pass; only it was imported ({} other secret(s) left out; add them to `secrets` if they were meant to work)",
                        matches.len() - 1
                    ));
                }
                vec![matches[0]]
            };
            if let Some(h) = hmac_from(&used, out, templates) {
                set_hmac(out, h);
            }
            true
        }
        _ if ip_whitelists(child).is_some() => {
            let matches = ip_whitelists(child).unwrap_or_default();
            if out.allow_ips.is_some() {
                out.gaps
                    .push("a second `ip-whitelist` in the same rule: hookrunner's `allow_ips` is one list".into());
                return true;
            }
            // An `or` of them allows what any allows: one list of every range.
            let mut nets = Vec::new();
            for m in &matches {
                let Some(more) = ip_nets(m, out, templates) else {
                    return true;
                };
                for n in more {
                    if !nets.contains(&n) {
                        nets.push(n);
                    }
                }
            }
            if nets.is_empty() {
                out.notes
                    .push("`ip-whitelist` with an empty `ip-range` never matches: the hook never triggers".into());
                nets.push("0.0.0.0/32".into());
            }
            if matches.iter().any(|m| Templates::has_calls(&m.ip_range)) {
                out.notes.push(
                    "the template in `ip-range` was evaluated at import time and the addresses written into the config"
                        .into(),
                );
            }
            out.allow_ips = Some(nets);
            true
        }
        Kind::Match(m)
            if tokens
                && m.kind == "value"
                && !m.value.is_empty()
                && matches!(m.parameter.source.as_str(), "header" | "url" | "query")
                && (m.parameter.source != "header" || crate::headers::valid_name(&m.parameter.name))
                && (Templates::has_calls(&m.value) || credential_name(&m.parameter.source, &m.parameter.name))
                && out.hmac.is_none()
                && out.token.is_none() =>
        {
            out.token = Some(Token {
                token: m.value.clone(),
                header: (m.parameter.source == "header").then(|| canonical_header(&m.parameter.name)),
                query: (m.parameter.source != "header").then(|| m.parameter.name.clone()),
            });
            // A literal token is not repeated: it is a secret.
            let against = if Templates::has_calls(&m.value) {
                format!("`{}`", Templates::source_text(&m.value, templates))
            } else {
                "the value in the hooks file".to_string()
            };
            out.notes.push(format!(
                "the `value` match on {} `{}` against {against} became the source's token `auth` (compared in constant time and never shown; a wrong or missing token is a 401 here; adnanh answers that the rules were not satisfied)",
                if m.parameter.source == "header" { "header" } else { "query parameter" },
                m.parameter.name,
            ));
            true
        }
        _ => false,
    }
}

/// Whether a header or query parameter of that name carries a credential
/// (as the daemon masks them): a literal `value` match on it is a token.
fn credential_name(source: &str, name: &str) -> bool {
    if source == "header" {
        crate::headers::is_credential(name, &[])
    } else {
        crate::headers::is_credential_param(name, &[])
    }
}

/// The `ip-whitelist` matches of `r` when it is one, or an `or` (nested
/// `or`s too) made of nothing else; `None` otherwise.
fn ip_whitelists(r: &Rules) -> Option<Vec<&Match>> {
    match kind(r) {
        Kind::Match(m) if m.kind == "ip-whitelist" => Some(vec![m]),
        Kind::Or(items) if !items.is_empty() => {
            let mut all = Vec::new();
            for i in items {
                all.extend(ip_whitelists(i)?);
            }
            Some(all)
        }
        _ => None,
    }
}

/// The `allow_ips` entries of one `ip-whitelist`; `None` (with a gap) when
/// an entry is not an address or a range.
fn ip_nets(m: &Match, out: &mut Translated, templates: &Templates) -> Option<Vec<String>> {
    let mut nets = Vec::new();
    let range = templates.evaluate(&m.ip_range);
    for entry in range.split_whitespace() {
        let net = if entry.contains('/') {
            entry.parse::<ipnet::IpNet>().ok().map(|_| entry.to_string())
        } else {
            match entry.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V4(_)) => Some(entry.to_string()),
                Ok(std::net::IpAddr::V6(_)) => {
                    out.notes.push(format!(
                        "`ip-whitelist` entry `{entry}`: adnanh appends `/32` to an address without a prefix, also an IPv6 one, so it allowed the whole /32 network; the import allows the address alone"
                    ));
                    Some(entry.to_string())
                }
                Err(_) => None,
            }
        };
        match net {
            Some(n) => nets.push(n),
            None => {
                out.gaps.push(format!(
                    "`ip-whitelist` entry `{entry}` is not an address or CIDR range (adnanh answers 500 to every request it checks; entries are separated by spaces, not commas)"
                ));
                return None;
            }
        }
    }
    Some(nets)
}

fn set_hmac(out: &mut Translated, hmac: Hmac) {
    if out.hmac.is_some() {
        out.gaps
            .push("a second signature check in the same rule: hookrunner's `auth` checks one signature".into());
    } else {
        out.hmac = Some(hmac);
    }
}

/// The `auth: {hmac: ...}` of signature matches of one type and parameter.
fn hmac_from(matches: &[&Match], out: &mut Translated, templates: &Templates) -> Option<Hmac> {
    let first = matches[0];
    let algorithm = hmac_algorithm(&first.kind)?;
    if first.kind.starts_with("payload-hash-") {
        out.notes.push(format!(
            "`{}` is adnanh's deprecated name of `payload-hmac-{algorithm}`",
            first.kind
        ));
    }
    if matches.iter().any(|m| m.secret.is_empty()) {
        out.gaps.push(format!(
            "`{}` with an empty `secret`: adnanh answers 500 to every request that reaches it",
            first.kind
        ));
        return None;
    }
    let p = &first.parameter;
    let (header, query) = match p.source.as_str() {
        "header" if !crate::headers::valid_name(&p.name) => {
            out.gaps.push(format!(
                "`{}` reads the signature from header `{}`, which is not a valid header name: no request carries it, so the hook never triggers",
                first.kind,
                p.name.escape_debug()
            ));
            return None;
        }
        "header" => (Some(canonical_header(&p.name)), None),
        "url" | "query" => (None, Some(p.name.clone())),
        other => {
            out.gaps.push(format!(
                "`{}` reads the signature from source `{other}`: hookrunner reads a signature from a header or a query parameter",
                first.kind
            ));
            return None;
        }
    };
    let _ = templates;
    Some(Hmac {
        algorithm,
        secrets: matches.iter().map(|m| m.secret.clone()).collect(),
        header,
        query,
    })
}

/// Go's `textproto.CanonicalMIMEHeaderKey`: `x-hub-signature` → `X-Hub-Signature`;
/// a name with a character that cannot be in a header name is kept as it is.
pub fn canonical_header(name: &str) -> String {
    if !crate::headers::valid_name(name) {
        return name.to_string();
    }
    crate::mapping::params::canonical_header(name)
}

struct Cx<'p> {
    params: &'p mut Params,
    templates: &'p Templates,
    gaps: Vec<String>,
    notes: Vec<String>,
    /// Set once the condition outgrew [`MAX_NODES`].
    too_large: bool,
}

/// The most nodes a translated condition may have. A condition is at most
/// a few KiB of text anyway, but a `not` over an `and` repeats its parts
/// (to keep adnanh's missing-value rules), so nesting could make it grow
/// exponentially: building stops here instead.
const MAX_NODES: usize = 4096;
const TOO_LARGE: &str = "the trigger rule is too large to translate (nested `not` over `and` repeats its parts to keep adnanh's rules for missing values): split it or simplify it";

/// A rule node translated: its value `v`, whether a not-found error leaves
/// it (`nf`), and whether `v` already implies there is none (`clean`: true
/// for everything but a `not` over a match that can be missing).
struct Three {
    v: Expr,
    nf: Expr,
    clean: bool,
    /// The parameters whose absence `nf` tracks (as [`describe`] writes them).
    watched: Vec<String>,
}

impl Three {
    fn new(v: Expr, nf: Expr) -> Three {
        Three {
            v,
            nf,
            clean: true,
            watched: Vec::new(),
        }
    }
}

impl Cx<'_> {
    /// What `t` contributes to an enclosing `and`: true and no error. A `not`
    /// over a match that can be missing holds only when its value is there,
    /// which here means not empty: a note says what that changes.
    fn holds_in_and(&mut self, t: Three) -> Expr {
        if t.clean {
            return t.v;
        }
        let mut names: Vec<String> = Vec::new();
        for n in t.watched {
            if !names.contains(&n) {
                names.push(n);
            }
        }
        self.notes.push(format!(
            "a `not` inside an `and` over a match on {}: adnanh counts a value that is there but empty (`\"\"`) or JSON `null` (which it reads as `<nil>`) as there, so the `not` can hold and the hook run; here an empty or `null` value counts as missing, which makes the `and` false (as a missing value does in adnanh), so the hook does not run",
            names.join(", ")
        ));
        Expr::and(vec![Expr::not(t.nf), t.v])
    }

    fn node(&mut self, r: &Rules) -> Three {
        match kind(r) {
            Kind::And(items) => {
                let parts: Vec<Three> = items.iter().map(|i| self.node(i)).collect();
                // nf = n1 || (v1 && (n2 || (v2 && ...)))
                let mut nf = Expr::Const(false);
                for p in parts.iter().rev() {
                    nf = Expr::or(vec![p.nf.clone(), Expr::and(vec![p.v.clone(), nf])]);
                }
                let watched: Vec<String> = parts.iter().flat_map(|p| p.watched.iter().cloned()).collect();
                let v = Expr::and(parts.into_iter().map(|p| self.holds_in_and(p)).collect());
                if v.weight(MAX_NODES) + nf.weight(MAX_NODES) > MAX_NODES {
                    self.too_large = true;
                    return Three::new(Expr::Const(false), Expr::Const(false));
                }
                Three {
                    watched,
                    ..Three::new(v, nf)
                }
            }
            Kind::Or(items) => {
                let v = Expr::or(items.iter().map(|i| self.node(i).v).collect());
                if v.weight(MAX_NODES) > MAX_NODES {
                    self.too_large = true;
                    return Three::new(Expr::Const(false), Expr::Const(false));
                }
                Three::new(v, Expr::Const(false))
            }
            Kind::Not(inner) => {
                let t = self.node(inner);
                let clean = t.nf == Expr::Const(false);
                Three {
                    v: Expr::not(t.v),
                    nf: t.nf,
                    clean,
                    watched: t.watched,
                }
            }
            Kind::Match(m) => {
                let (v, nf) = self.matcher(m);
                let watched = if nf == Expr::Const(false) {
                    Vec::new()
                } else {
                    vec![describe(&m.parameter)]
                };
                Three {
                    watched,
                    ..Three::new(v, nf)
                }
            }
            Kind::Nothing => Three::new(Expr::Const(false), Expr::Const(false)),
        }
    }

    fn matcher(&mut self, m: &Match) -> (Expr, Expr) {
        let never = (Expr::Const(false), Expr::Const(false));
        if hmac_algorithm(&m.kind).is_some() {
            self.gaps.push(format!(
                "a `{}` match that must not necessarily hold for the hook to run (inside `not` or `or`): hookrunner checks signatures in the source's `auth`, before any condition",
                m.kind
            ));
            return never;
        }
        match m.kind.as_str() {
            "value" | "regex" => {}
            "ip-whitelist" => {
                self.gaps.push(
                    "an `ip-whitelist` inside `not`, or in an `or` with other matches: hookrunner checks addresses with the source's `allow_ips` (which an `ip-whitelist`, or an `or` of nothing but them, that must hold becomes), not in conditions".into(),
                );
                return never;
            }
            "scalr-signature" => {
                self.gaps
                    .push("`scalr-signature`: hookrunner has no Scalr signature check".into());
                return never;
            }
            other => return self.unknown_match(other, m),
        }
        let (text, what) = if m.kind == "value" {
            (&m.value, "value")
        } else {
            (&m.regex, "regex")
        };
        if Templates::has_calls(text) {
            self.gaps.push(format!(
                "the `{what}` `{}` comes from a template and would be pasted into a condition, which delivery records and dry runs show; make it the source's token `auth` or keep it out of the rule",
                Templates::source_text(text, self.templates)
            ));
            return never;
        }
        let literal = text.clone();
        let value = match self.params.value(&m.parameter) {
            Ok(v) => v,
            Err(why) => {
                self.gaps.push(why);
                return never;
            }
        };
        match value {
            Val::Missing(why) => {
                self.gaps.push(format!(
                    "{why}; in a rule adnanh answers 500 to every request that evaluates it"
                ));
                never
            }
            Val::Absent(why) => {
                self.notes
                    .push(format!("{why}: the match is never true, and a `not` over it holds"));
                (Expr::Const(false), Expr::Const(true))
            }
            Val::Literal(s) => {
                let s = self.templates.evaluate(&s);
                let holds = if m.kind == "value" {
                    s == literal
                } else {
                    match go_regex(&literal) {
                        Ok(re) => re.is_match(&s),
                        Err(why) => {
                            self.gaps.push(why);
                            return never;
                        }
                    }
                };
                (Expr::Const(holds), Expr::Const(false))
            }
            Val::Param(name) => {
                let last = m.parameter.name.rsplit('.').next().unwrap_or(&m.parameter.name);
                if m.kind == "value" && !literal.is_empty() && credential_name(&m.parameter.source, last) {
                    self.notes.push(format!(
                        "the `value` match on {} `{}` stays a condition (the source's token `auth` holds one credential, and one read from the body cannot be one), so its value is shown wherever the rule is (delivery records, dry runs, the dashboard): if it is a secret, check it in the handler instead, or have the sender use a signature",
                        m.parameter.source, m.parameter.name,
                    ));
                }
                let (atom, holds_for_empty) = if m.kind == "value" {
                    let lhs = if could_be_number_text(&literal) {
                        format!("str::from({name})")
                    } else {
                        name.clone()
                    };
                    let lit = string_literal(&literal);
                    (
                        Expr::atom(format!("{lhs} == {lit}"), format!("{lhs} != {lit}")),
                        literal.is_empty(),
                    )
                } else {
                    let re = match go_regex(&literal) {
                        Ok(re) => re,
                        Err(why) => {
                            self.gaps.push(why);
                            return never;
                        }
                    };
                    let call = format!("str::regex_matches(str::from({name}), {})", string_literal(re.as_str()));
                    (Expr::atom(call.clone(), format!("!{call}")), re.is_match(""))
                };
                if holds_for_empty {
                    self.notes.push(format!(
                        "the {what} `{literal}` also holds for an empty value, so a missing `{}` counts as empty here (adnanh: not found)",
                        m.parameter.name
                    ));
                    (atom, Expr::Const(false))
                } else {
                    let missing = Expr::atom(format!("{name} == \"\""), format!("{name} != \"\""));
                    (atom, missing)
                }
            }
        }
    }
}

impl Cx<'_> {
    /// A match of a type adnanh does not know: adnanh still reads its
    /// parameter, so it is false when that is there and a not-found error
    /// when it is not (which `not` keeps), and a parameter it cannot read at
    /// all is an error that answers 500.
    fn unknown_match(&mut self, kind: &str, m: &Match) -> (Expr, Expr) {
        let never = (Expr::Const(false), Expr::Const(false));
        let value = match self.params.value(&m.parameter) {
            Ok(v) => v,
            Err(why) => Val::Missing(why),
        };
        match value {
            Val::Missing(why) => {
                self.gaps.push(format!(
                    "match type `{kind}` is not one adnanh knows, and its parameter cannot be read ({why}): adnanh answers 500 to every request that evaluates it, under `not` too"
                ));
                never
            }
            Val::Literal(_) => {
                self.notes.push(format!(
                    "match type `{kind}` is not one adnanh knows: it is never true there, so it is `false` here"
                ));
                never
            }
            Val::Absent(why) => {
                self.notes.push(format!(
                    "match type `{kind}` is not one adnanh knows, and {why}: a not-found error every time, which a `not` keeps"
                ));
                (Expr::Const(false), Expr::Const(true))
            }
            Val::Param(name) => {
                self.notes.push(format!(
                    "match type `{kind}` is not one adnanh knows: adnanh still reads its parameter {}, so the match is false when that is there and a not-found error when it is not, which a `not` keeps (inside an `and`, the `not` of it holds only when the parameter is there); translated so",
                    describe(&m.parameter)
                ));
                (
                    Expr::Const(false),
                    Expr::atom(format!("{name} == \"\""), format!("{name} != \"\"")),
                )
            }
        }
    }
}

/// Whether a number or boolean param could render as `s` (then the param
/// is compared as text, as adnanh compares: a JSON `1` matches `"1"`).
fn could_be_number_text(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let numeric = match digits.split_once('.') {
        Some((a, b)) => !a.is_empty() && !b.is_empty() && (a.bytes().chain(b.bytes())).all(|c| c.is_ascii_digit()),
        None => !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit()),
    };
    numeric || s == "true" || s == "false"
}

/// A Go RE2 pattern as a Rust regex with the same meaning: Go's `\d`, `\w`,
/// `\s` and `\b` are ASCII-only (Rust's are Unicode), `\Q...\E` quotes,
/// octal `\123` is `\x{53}`, and `\<`, `\>` are the characters (Rust: word
/// boundaries). An escape Go does not know (`\u0042`, `\e`, `\Z`, a
/// back-reference), which adnanh answers with 500, and a pattern Rust does
/// not accept are refused with the reason.
pub fn go_regex(pattern: &str) -> Result<regex::Regex, String> {
    let mut out = String::with_capacity(pattern.len());
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    let mut in_class = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' && i + 1 < chars.len() {
            let e = chars[i + 1];
            i += 2;
            if e.is_ascii_digit() {
                // Go's octal: `\0` and up to two more octal digits, or `\1`-`\7`
                // followed by one or two (alone it would be a back-reference).
                let Some(first) = e.to_digit(8) else {
                    return Err(unknown_escape(pattern, e));
                };
                let mut value = first;
                let mut digits = 1;
                while let Some(d) = chars.get(i).and_then(|d| d.to_digit(8)).filter(|_| digits < 3) {
                    value = value * 8 + d;
                    digits += 1;
                    i += 1;
                }
                if first != 0 && digits == 1 {
                    return Err(format!(
                        "the regex `{pattern}` has `\\{e}`, a back-reference, which Go's regexp refuses (adnanh answers 500 to every request that evaluates it)"
                    ));
                }
                out.push_str(&format!("\\x{{{value:X}}}"));
                continue;
            }
            if e == '<' || e == '>' {
                // The character in Go; a word boundary in Rust.
                out.push(e);
                continue;
            }
            // What Go's regexp knows after `\` (in a class: no assertions, no `\Q`).
            let known = if in_class {
                "afnrtvxdDsSwWpP"
            } else {
                "afnrtvxdDsSwWpPbBAzQ"
            };
            if e.is_ascii_alphabetic() && !known.contains(e) {
                return Err(unknown_escape(pattern, e));
            }
            let (outside, inside) = match e {
                'd' => ("[0-9]", "0-9"),
                'D' => ("[^0-9]", ""),
                'w' => ("[0-9A-Za-z_]", "0-9A-Za-z_"),
                'W' => ("[^0-9A-Za-z_]", ""),
                's' => ("[\\t\\n\\f\\r ]", "\\t\\n\\f\\r "),
                'S' => ("[^\\t\\n\\f\\r ]", ""),
                'b' if !in_class => ("(?-u:\\b)", ""),
                'B' if !in_class => ("(?-u:\\B)", ""),
                'Q' => {
                    let rest: String = chars[i..].iter().collect();
                    let (lit, after) = match rest.find("\\E") {
                        Some(end) => (rest[..end].to_string(), end + 2),
                        None => (rest.clone(), rest.len()),
                    };
                    out.push_str(&regex::escape(&lit));
                    i += rest[..after].chars().count();
                    continue;
                }
                _ => ("", ""),
            };
            if in_class && !inside.is_empty() {
                out.push_str(inside);
            } else if !in_class && !outside.is_empty() {
                out.push_str(outside);
            } else if in_class && matches!(e, 'D' | 'W' | 'S') {
                // A negated class inside a class: keep Rust's spelling, ASCII-only.
                out.push_str(&format!(
                    "[{}]",
                    match e {
                        'D' => "^0-9",
                        'W' => "^0-9A-Za-z_",
                        _ => "^\\t\\n\\f\\r ",
                    }
                ));
            } else {
                out.push('\\');
                out.push(e);
            }
            continue;
        }
        if c == '[' && !in_class {
            in_class = true;
            out.push(c);
            i += 1;
            // `[]...]` and `[^]...]`: a leading `]` is a literal.
            if chars.get(i) == Some(&'^') {
                out.push('^');
                i += 1;
            }
            if chars.get(i) == Some(&']') {
                out.push_str("\\]");
                i += 1;
            }
            continue;
        }
        if c == '[' && in_class && chars.get(i + 1) == Some(&':') {
            // `[:alpha:]` inside a class.
            if let Some(end) = chars[i..].iter().collect::<String>().find(":]") {
                let s: String = chars[i..i + end + 2].iter().collect();
                out.push_str(&s);
                i += s.chars().count();
                continue;
            }
        }
        if c == ']' && in_class {
            in_class = false;
        }
        if in_class {
            // In Go a class holds `[`, `&` and `~` as themselves; Rust reads
            // `[` as a nested class and `&&`, `~~`, `--` as set operations.
            match c {
                '[' | '&' | '~' => {
                    out.push('\\');
                    out.push(c);
                    i += 1;
                    continue;
                }
                '-' if chars.get(i + 1) == Some(&'-') => {
                    return Err(format!(
                        "the regex `{pattern}` has `--` inside a character class, which Rust's regex crate reads as a set difference: write the range out"
                    ));
                }
                _ => {}
            }
        }
        out.push(c);
        i += 1;
    }
    regex::Regex::new(&out).map_err(|e| {
        format!(
            "the regex `{pattern}` is not one Rust's regex crate accepts ({})",
            e.to_string().lines().last().unwrap_or("invalid")
        )
    })
}

/// Why a pattern with `\e`, an escape Go's regexp does not know, is refused.
fn unknown_escape(pattern: &str, e: char) -> String {
    format!(
        "the regex `{pattern}` has `\\{e}`, an escape Go's regexp does not know (adnanh answers 500 to every request that evaluates it)"
    )
}

/// Where a param of `arg` comes from, for messages.
pub fn describe(arg: &Argument) -> String {
    format!("`{}` `{}`", arg.source, arg.name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::import::hooks::Argument;
    use crate::mapping::condition::{Condition, Vars};

    fn m(kind: &str, value: &str, source: &str, name: &str) -> Rules {
        Rules {
            matcher: Some(Match {
                kind: kind.into(),
                value: value.into(),
                regex: value.into(),
                secret: value.into(),
                parameter: Argument {
                    source: source.into(),
                    name: name.into(),
                    ..Default::default()
                },
                ..Default::default()
            }),
            ..Default::default()
        }
    }
    fn and(items: Vec<Rules>) -> Rules {
        Rules {
            and: Some(items),
            ..Default::default()
        }
    }
    fn or(items: Vec<Rules>) -> Rules {
        Rules {
            or: Some(items),
            ..Default::default()
        }
    }
    fn not(r: Rules) -> Rules {
        Rules {
            not: Some(Box::new(r)),
            ..Default::default()
        }
    }

    fn run(rule: &Rules) -> (Translated, Params) {
        let mut params = Params::new(false);
        let t = translate(Some(rule), false, &mut params, &Templates::default());
        (t, params)
    }

    /// Evaluates the condition as the daemon would, with params bound.
    fn holds(t: &Translated, params: &Params, values: &[(&str, evalexpr::Value)]) -> bool {
        let Some(c) = &t.condition else { return true };
        let text = c.render();
        let names: Vec<&str> = params.names();
        let cond = Condition::compile(&text, |n| names.contains(&n)).unwrap_or_else(|e| panic!("{text}: {e}"));
        let vals: Vec<evalexpr::Value> = names
            .iter()
            .map(|n| {
                values
                    .iter()
                    .find(|(k, _)| k == n)
                    .map(|(_, v)| v.clone())
                    .unwrap_or(evalexpr::Value::String(String::new()))
            })
            .collect();
        cond.eval(&Vars {
            names: &names,
            values: &vals,
        })
        .unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn signatures_lift_to_auth_and_the_rest_is_a_condition() {
        let rule = and(vec![
            m("payload-hmac-sha1", "mysecret", "header", "x-hub-signature"),
            m("value", "refs/heads/master", "payload", "ref"),
        ]);
        let (t, params) = run(&rule);
        let h = t.hmac.as_ref().unwrap();
        assert_eq!((h.algorithm, h.header.as_deref()), ("sha1", Some("X-Hub-Signature")));
        assert_eq!(h.secrets, ["mysecret"]);
        assert_eq!(t.condition.as_ref().unwrap().render(), "ref == \"refs/heads/master\"");
        assert_eq!(params.entries(), [("ref".to_string(), "payload.ref".to_string())]);
        assert!(t.gaps.is_empty());
    }

    #[test]
    fn an_or_of_secrets_keeps_all_only_with_soft_failures() {
        let rule = and(vec![or(vec![
            m("payload-hmac-sha256", "old", "url", "sig"),
            m("payload-hmac-sha256", "new", "url", "sig"),
        ])]);
        let mut params = Params::new(false);
        let soft = translate(Some(&rule), true, &mut params, &Templates::default());
        assert_eq!(soft.hmac.as_ref().unwrap().secrets, ["old", "new"]);
        assert_eq!(soft.hmac.as_ref().unwrap().query.as_deref(), Some("sig"));
        let hard = translate(Some(&rule), false, &mut params, &Templates::default());
        assert_eq!(hard.hmac.as_ref().unwrap().secrets, ["old"]);
        assert!(hard.notes[0].contains("only it can ever pass"));
    }

    #[test]
    fn a_rule_whose_condition_would_grow_exponentially_is_a_gap_not_a_hang() {
        // Each level repeats the one below twice: 2^40 nodes if built whole.
        let mut r = m("value", "v", "payload", "x");
        for i in 0..40 {
            r = and(vec![
                m("value", "v", "payload", &format!("c{i}")),
                not(and(vec![r, m("value", "v", "payload", &format!("b{i}"))])),
            ]);
        }
        let (t, _) = run(&r);
        assert_eq!(t.gaps.len(), 1, "{:?}", t.gaps);
        assert!(t.gaps[0].starts_with("the trigger rule is too large to translate"));
        assert_eq!(t.condition, Some(Expr::Const(false)));
        // A few levels still translate.
        let mut r = m("value", "v", "payload", "x");
        for i in 0..3 {
            r = and(vec![
                m("value", "v", "payload", &format!("c{i}")),
                not(and(vec![r, m("value", "v", "payload", &format!("b{i}"))])),
            ]);
        }
        assert!(run(&r).0.gaps.is_empty());
    }

    #[test]
    fn not_over_a_missing_param_triggers_at_the_top_but_not_inside_and() {
        let s = |v: &str| evalexpr::Value::String(v.into());
        let top = not(m("value", "x", "payload", "a"));
        let (t, p) = run(&top);
        assert!(holds(&t, &p, &[]), "missing: adnanh triggers");
        assert!(holds(&t, &p, &[("a", s("y"))]));
        assert!(!holds(&t, &p, &[("a", s("x"))]));

        let inside = and(vec![
            not(m("value", "x", "payload", "a")),
            m("value", "1", "payload", "b"),
        ]);
        let (t, p) = run(&inside);
        assert!(!holds(&t, &p, &[("b", s("1"))]), "missing a: the and is false");
        assert!(holds(&t, &p, &[("a", s("y")), ("b", s("1"))]));
        assert!(
            holds(&t, &p, &[("a", s("y")), ("b", evalexpr::Value::Int(1))]),
            "a JSON 1 matches \"1\""
        );

        // Inside `or`, a missing param is just false.
        let either = or(vec![
            m("value", "bar", "payload", "foo"),
            m("value", "1", "payload", "exists"),
        ]);
        let (t, p) = run(&either);
        assert!(holds(&t, &p, &[("exists", evalexpr::Value::Int(1))]));
        assert!(!holds(&t, &p, &[]));
    }

    #[test]
    fn an_or_of_ip_whitelists_is_one_allow_ips() {
        let ip = |range: &str| Rules {
            matcher: Some(Match {
                kind: "ip-whitelist".into(),
                ip_range: range.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        // adnanh's Bitbucket example, with a nested `or` and a repeated range.
        let rule = or(vec![
            ip("13.52.5.96/28"),
            or(vec![ip("104.192.137.240/28 10.0.0.1"), ip("13.52.5.96/28")]),
            ip(""),
        ]);
        let (t, _) = run(&rule);
        assert!(t.gaps.is_empty(), "{:?}", t.gaps);
        assert_eq!(
            t.allow_ips.as_deref(),
            Some(
                &[
                    "13.52.5.96/28".to_string(),
                    "104.192.137.240/28".into(),
                    "10.0.0.1".into()
                ][..]
            )
        );
        assert_eq!(t.condition, None);
        // Beside other rules in an `and`: the rest is the condition.
        let (t, _) = run(&and(vec![
            or(vec![ip("10.0.0.0/8"), ip("192.168.0.0/16")]),
            m("value", "x", "payload", "a"),
        ]));
        assert!(t.gaps.is_empty(), "{:?}", t.gaps);
        assert_eq!(t.allow_ips.unwrap().len(), 2);
        assert_eq!(t.condition.unwrap().render(), "a == \"x\"");
        // Not exactly translatable: inside `not`, mixed with other matches,
        // an `and` of two, an entry that is not a range.
        for rule in [
            not(or(vec![ip("10.0.0.0/8"), ip("192.168.0.0/16")])),
            or(vec![ip("10.0.0.0/8"), m("value", "a", "payload", "b")]),
            or(vec![ip("10.0.0.0/8"), and(vec![ip("192.168.0.0/16")])]),
            and(vec![ip("10.0.0.0/8"), or(vec![ip("192.168.0.0/16")])]),
            or(vec![ip("10.0.0.0/8"), ip("10.0.0.0/8,192.168.0.0/16")]),
        ] {
            let (t, _) = run(&rule);
            assert!(!t.gaps.is_empty(), "{rule:?}");
        }
    }

    #[test]
    fn an_unknown_match_type_reads_its_parameter_as_adnanh_does() {
        let s = |v: &str| evalexpr::Value::String(v.into());
        // adnanh: false when the header is there, not found when it is not;
        // `not` keeps the not-found error, which makes the `and` false.
        let rule = and(vec![not(m("Value", "x", "header", "X-Skip"))]);
        let (t, p) = run(&rule);
        assert!(t.gaps.is_empty(), "{:?}", t.gaps);
        assert!(!holds(&t, &p, &[]), "no header: rules not satisfied");
        let header = p.names()[0];
        assert!(holds(&t, &p, &[(header, s("x"))]), "any value of it: the `not` holds");
        assert!(
            t.notes
                .iter()
                .any(|n| n.contains("adnanh still reads its parameter `header` `X-Skip`")),
            "{:?}",
            t.notes
        );
        assert!(
            t.notes
                .iter()
                .any(|n| n.starts_with("a `not` inside an `and` over a match on `header` `X-Skip`")),
            "{:?}",
            t.notes
        );
        // At the top the not-found error is ignored: it runs either way.
        let (t, p) = run(&not(m("Value", "x", "header", "X-Skip")));
        assert!(holds(&t, &p, &[]));
        // A parameter adnanh cannot read at all is a 500 for every request.
        for rule in [not(m("ip-whitlist", "x", "", "")), m("Value", "x", "bogus", "a")] {
            let (t, _) = run(&rule);
            assert!(
                t.gaps[0].contains("adnanh answers 500 to every request that evaluates it"),
                "{:?}",
                t.gaps
            );
        }
    }

    #[test]
    fn what_cannot_be_translated_is_a_gap() {
        for rule in [
            not(m("payload-hmac-sha1", "s", "header", "X-Sig")),
            or(vec![
                m("payload-hmac-sha1", "s", "header", "X-Sig"),
                m("value", "a", "payload", "b"),
            ]),
            m("scalr-signature", "s", "header", "x"),
            or(vec![m("ip-whitelist", "", "", ""), m("value", "a", "payload", "b")]),
            m("payload-hmac-sha1", "s", "payload", "sig"),
            m("payload-hmac-sha1", "", "header", "X-Sig"),
            m("value", "a", "request", "path"),
            m("regex", "(?<!x)", "payload", "a"),
        ] {
            let (t, _) = run(&rule);
            assert!(!t.gaps.is_empty(), "{rule:?}");
        }
    }

    #[test]
    fn regexes_keep_go_meaning() {
        let re = go_regex(r"^\d+\s\w+\b\s[\d.]\Qa.b\E$").unwrap();
        assert!(re.is_match("12 xy 3a.b"));
        assert!(!re.is_match("١٢ xy 3a.b"), "Go's \\d is ASCII only");
        assert!(go_regex("a(").is_err());
        // In a Go class `[`, `&` and `~` are themselves (Rust: nesting and
        // set operations).
        let re = go_regex(r"^[a[b]c]$").unwrap();
        assert!(re.is_match("ac]") && re.is_match("[c]") && !re.is_match("a"));
        let re = go_regex(r"^[a&&b]$").unwrap();
        assert!(re.is_match("a") && re.is_match("&") && re.is_match("b"));
        assert!(go_regex(r"^[a~~b]$").unwrap().is_match("~"));
        assert!(go_regex(r"^[[:digit:]x]$").unwrap().is_match("7"));
        // Octal as Go reads it: `\0` and up to two more digits, `\1`-`\7` and
        // one or two more (up to `\777`), a fourth digit is itself.
        let re = go_regex(r"^\123\0\12\0123\777$").unwrap();
        assert!(re.is_match("S\0\n\n3\u{1ff}"), "{}", re.as_str());
        assert!(go_regex(r"^[\101-\132]+$").unwrap().is_match("AZ"));
        assert!(go_regex(r"^\<a\>$").unwrap().is_match("<a>"));
        for refused in [
            r"\1",
            r"(a)\1",
            r"\8",
            r"\u0042",
            r"\U00000042",
            r"\N",
            r"\e",
            r"\Z",
            r"\C",
            r"a\E",
            r"[\b]",
            r"[\Qa\E]",
            r"\G",
            r"\K",
        ] {
            let why = go_regex(refused).unwrap_err();
            assert!(
                why.contains("an escape Go's regexp does not know") || why.contains("a back-reference"),
                "{refused}: {why}"
            );
        }
        assert!(go_regex(r"^[a--b]$")
            .unwrap_err()
            .contains("`--` inside a character class"));
        let rule = m("regex", "^refs/tags/", "payload", "ref");
        let (t, _) = run(&rule);
        assert_eq!(
            t.condition.unwrap().render(),
            "str::regex_matches(str::from(ref), \"^refs/tags/\")"
        );
    }

    #[test]
    fn renders_with_the_parentheses_it_needs() {
        let a = || Expr::atom("a".into(), "!a".into());
        let b = || Expr::atom("b".into(), "!b".into());
        let c = || Expr::atom("c".into(), "!c".into());
        assert_eq!(Expr::and(vec![Expr::or(vec![a(), b()]), c()]).render(), "(a || b) && c");
        assert_eq!(Expr::or(vec![Expr::and(vec![a(), b()]), c()]).render(), "a && b || c");
        assert_eq!(Expr::not(Expr::and(vec![a(), b()])).render(), "!(a && b)");
        assert_eq!(Expr::not(a()).render(), "!a");
        assert_eq!(Expr::and(vec![Expr::Const(true), a()]).render(), "a");
        assert_eq!(Expr::or(vec![Expr::Const(true), a()]).render(), "true");
    }
}
