//! An adnanh hooks file read the way adnanh reads it: go-yaml v2 (YAML 1.1,
//! a port of libyaml) through ghodss/yaml. The file is parsed into a tree
//! that keeps each scalar's style, because YAML 1.1 types only *plain*
//! scalars (`yes` is a boolean, `010` the integer 8, `'010'` a string), and
//! [`resolve`] gives a plain scalar the type go-yaml v2 gives it.
//!
//! Only the first document is read, as go-yaml's `Unmarshal` does. Anchors
//! and aliases are expanded; merge keys (`<<`) are applied when a mapping is
//! read ([`entries`]).

use libyaml_safer::{EventData, Parser, ScalarStyle};
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// A place in the file, 1-based.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pos {
    pub line: u64,
    pub column: u64,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One node of the document.
#[derive(Debug, Clone)]
pub enum Node {
    Scalar(Scalar),
    Seq(Vec<Node>, Pos),
    Map(Vec<(Node, Node)>, Pos),
}

#[derive(Debug, Clone)]
pub struct Scalar {
    pub value: String,
    /// Written without quotes (and not as a `|` or `>` block): YAML 1.1 types it.
    pub plain: bool,
    /// Written in double quotes (where a template's `js` escaping is undone).
    pub double_quoted: bool,
    pub tag: Option<String>,
    pub pos: Pos,
}

impl Node {
    pub fn pos(&self) -> Pos {
        match self {
            Node::Scalar(s) => s.pos,
            Node::Seq(_, p) | Node::Map(_, p) => *p,
        }
    }

    /// What kind of thing it is, as Go's JSON errors name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Node::Seq(..) => "array",
            Node::Map(..) => "object",
            Node::Scalar(s) => match resolve(s) {
                Resolved::Null => "null",
                Resolved::Bool(_) => "bool",
                Resolved::Int(_) | Resolved::Uint(_) | Resolved::Float(_) => "number",
                Resolved::Str(_) => "string",
            },
        }
    }
}

/// A YAML syntax error, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
    /// Past one of this reader's own limits (adnanh's may load it, or hang).
    pub limit: bool,
}

const STR_TAG: &str = "tag:yaml.org,2002:str";
/// The most nodes a file may expand to through its aliases (a hooks file has
/// hundreds; ten aliases of ten aliases of ... would have billions).
const MAX_NODES: usize = 1_000_000;
/// The deepest nesting read (a hooks file nests a few levels; rules nest
/// `and`/`or`/`not` a few more).
const MAX_DEPTH: usize = 512;
const MERGE_TAG: &str = "tag:yaml.org,2002:merge";

/// Parses the first document of `text`; `None` for a stream with no document
/// (an empty file), which adnanh loads as no hooks.
pub fn parse(text: &str) -> Result<Option<Node>, SyntaxError> {
    let mut parser = Parser::new();
    let mut input = text.as_bytes();
    parser.set_input_string(&mut input);
    // Each anchor's node, with how many nodes it holds.
    let mut anchors: HashMap<String, (Node, usize)> = HashMap::new();
    // Open collections: (entries so far, anchor, position, nodes made before it).
    enum Open {
        Seq(Vec<Node>, Option<String>, Pos, usize),
        Map(Vec<Node>, Option<String>, Pos, usize),
    }
    let mut stack: Vec<Open> = Vec::new();
    // Nodes made so far, an alias counting every node it copies.
    let mut nodes = 0usize;
    let mut root: Option<Node> = None;
    loop {
        let event = parser.parse().map_err(|e| SyntaxError {
            pos: error_pos(&e.to_string()),
            message: e.to_string(),
            limit: false,
        })?;
        let pos = Pos {
            line: event.start_mark.line + 1,
            column: event.start_mark.column + 1,
        };
        let done: Option<(Node, Option<(String, usize)>)> = match event.data {
            EventData::StreamStart { .. } | EventData::DocumentStart { .. } => None,
            EventData::StreamEnd => return Ok(root),
            EventData::DocumentEnd { .. } => return Ok(root),
            EventData::Alias { anchor } => match anchors.get(&anchor) {
                Some((node, size)) => {
                    nodes += size;
                    if nodes > MAX_NODES {
                        return Err(SyntaxError {
                            pos,
                            message: format!(
                                "its aliases expand to more than {MAX_NODES} nodes, more than any hooks file holds"
                            ),
                            limit: true,
                        });
                    }
                    Some((node.clone(), None))
                }
                None => {
                    return Err(SyntaxError {
                        pos,
                        message: format!("unknown anchor `{anchor}` referenced"),
                        limit: false,
                    })
                }
            },
            EventData::Scalar {
                anchor,
                tag,
                value,
                style,
                ..
            } => Some((
                {
                    nodes += 1;
                    Node::Scalar(Scalar {
                        value,
                        plain: style == ScalarStyle::Plain,
                        double_quoted: style == ScalarStyle::DoubleQuoted,
                        tag,
                        pos,
                    })
                },
                anchor.map(|a| (a, 1)),
            )),
            EventData::SequenceStart { .. } | EventData::MappingStart { .. } if stack.len() >= MAX_DEPTH => {
                return Err(SyntaxError {
                    pos,
                    message: format!("it nests deeper than {MAX_DEPTH} levels, more than any hooks file does"),
                    limit: true,
                });
            }
            EventData::SequenceStart { anchor, .. } => {
                stack.push(Open::Seq(Vec::new(), anchor, pos, nodes));
                None
            }
            EventData::MappingStart { anchor, .. } => {
                stack.push(Open::Map(Vec::new(), anchor, pos, nodes));
                None
            }
            EventData::SequenceEnd => match stack.pop() {
                Some(Open::Seq(items, anchor, p, before)) => {
                    nodes += 1;
                    Some((Node::Seq(items, p), anchor.map(|a| (a, nodes - before))))
                }
                _ => unreachable_event(pos)?,
            },
            EventData::MappingEnd => match stack.pop() {
                Some(Open::Map(items, anchor, p, before)) => {
                    nodes += 1;
                    let mut pairs = Vec::with_capacity(items.len() / 2);
                    let mut it = items.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        pairs.push((k, v));
                    }
                    Some((Node::Map(pairs, p), anchor.map(|a| (a, nodes - before))))
                }
                _ => unreachable_event(pos)?,
            },
        };
        if let Some((node, anchor)) = done {
            if let Some((a, size)) = anchor {
                anchors.insert(a, (node.clone(), size));
            }
            match stack.last_mut() {
                Some(Open::Seq(items, ..)) | Some(Open::Map(items, ..)) => items.push(node),
                None => root = Some(node),
            }
        }
    }
}

fn unreachable_event<T>(pos: Pos) -> Result<T, SyntaxError> {
    Err(SyntaxError {
        pos,
        message: "the YAML parser gave an unbalanced event stream".into(),
        limit: false,
    })
}

/// libyaml's messages end in `line N column M`; take the place from there.
fn error_pos(message: &str) -> Pos {
    let mut pos = Pos::default();
    if let Some(i) = message.rfind("line ") {
        let rest = &message[i + 5..];
        let mut words = rest.split_whitespace();
        pos.line = words.next().and_then(|n| n.parse().ok()).unwrap_or(0);
        if words.next() == Some("column") {
            pos.column = words
                .next()
                .and_then(|n| n.trim_end_matches(|c: char| !c.is_ascii_digit()).parse().ok())
                .unwrap_or(0);
        }
    }
    pos
}

/// A scalar's value as go-yaml v2 types it.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolved {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    Str(String),
}

/// The type go-yaml v2 (`resolve.go`) gives a scalar: quoted and block
/// scalars, and `!!str`, are strings; a plain scalar may be null, a boolean
/// (`y`, `yes`, `on`, `true`, ... in three spellings each), an integer
/// (`010` octal, `0x1F`, `0b101`, `1_000`), or a float.
pub fn resolve(s: &Scalar) -> Resolved {
    match s.tag.as_deref() {
        Some(STR_TAG) => return Resolved::Str(s.value.clone()),
        Some(t) if !t.starts_with("tag:yaml.org,2002:") => return Resolved::Str(s.value.clone()),
        Some(_) => {}
        None if !s.plain => return Resolved::Str(s.value.clone()),
        None => {}
    }
    resolve_plain(&s.value)
}

/// [`resolve`] for the text of a plain scalar.
pub fn resolve_plain(text: &str) -> Resolved {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Resolved::Null,
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Resolved::Bool(true)
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Resolved::Bool(false)
        }
        ".nan" | ".NaN" | ".NAN" => return Resolved::Float(f64::NAN),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return Resolved::Float(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Resolved::Float(f64::NEG_INFINITY),
        _ => {}
    }
    match text.as_bytes()[0] {
        b'.' => match go_parse_float(text) {
            Some(f) if go_float_syntax(text) => Resolved::Float(f),
            _ => Resolved::Str(text.to_string()),
        },
        b'0'..=b'9' | b'+' | b'-' => {
            let plain = text.replace('_', "");
            if let Some(i) = go_parse_int(&plain) {
                return Resolved::Int(i);
            }
            if let Some(u) = go_parse_uint(&plain) {
                return Resolved::Uint(u);
            }
            if yaml_style_float(&plain) {
                if let Some(f) = go_parse_float(&plain) {
                    return Resolved::Float(f);
                }
            }
            if let Some(bin) = plain.strip_prefix("-0b") {
                if let Ok(i) = i64::from_str_radix(&format!("-{bin}"), 2) {
                    return Resolved::Int(i);
                }
            }
            Resolved::Str(text.to_string())
        }
        _ => Resolved::Str(text.to_string()),
    }
}

/// Go's `strconv.ParseFloat` syntax for what starts with `.` (decimal only).
fn go_float_syntax(text: &str) -> bool {
    let digits = text.trim_start_matches('.');
    let (mant, exp) = match digits.find(['e', 'E']) {
        Some(i) => (&digits[..i], Some(&digits[i + 1..])),
        None => (digits, None),
    };
    !mant.is_empty()
        && mant.bytes().all(|b| b.is_ascii_digit())
        && exp.is_none_or(|e| {
            let e = e.strip_prefix(['+', '-']).unwrap_or(e);
            !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit())
        })
}

/// `^[-+]?[0-9]*\.?[0-9]+([eE][-+][0-9]+)?$`: the float syntax of the
/// go-yaml v2 that Debian's adnanh/webhook 2.8.0 is built with (observed:
/// `1e+3` is a float, `1e3`, `1.5e3` and `1.` are text). Later go-yaml v2
/// releases also take an exponent without a sign.
fn yaml_style_float(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (mant, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    let mant_ok = match mant.split_once('.') {
        Some((int, frac)) => digits(int) && !frac.is_empty() && digits(frac),
        None => !mant.is_empty() && digits(mant),
    };
    mant_ok && exp.is_none_or(|e| e.strip_prefix(['+', '-']).is_some_and(|e| !e.is_empty() && digits(e)))
}

/// Go's `strconv.ParseFloat(s, 64)` for decimal text: a value too large
/// for an f64 is an error there (so the scalar stays text), where Rust
/// reads it as infinity.
fn go_parse_float(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// Go's `strconv.ParseInt(s, 0, 64)`: a sign, then `0x`, `0o`, `0b`, a
/// leading `0` (octal) or decimal.
fn go_parse_int(s: &str) -> Option<i64> {
    let (neg, rest) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let magnitude = go_parse_uint(rest)?;
    if neg {
        if magnitude <= i64::MAX as u64 + 1 {
            Some((magnitude as i128).wrapping_neg() as i64)
        } else {
            None
        }
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// Go's `strconv.ParseUint(s, 0, 64)` (no sign).
fn go_parse_uint(s: &str) -> Option<u64> {
    let lower = s.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    if digits.is_empty() || digits.starts_with(['+', '-']) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// Go's `strconv.FormatFloat(v, 'g', -1, 32)`: what ghodss/yaml makes of a
/// float in a string field (`3.14159265358979` → `3.1415927`, `1e6` → `1e+06`).
pub fn format_float32(v: f64) -> String {
    let f = v as f32;
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf".into() } else { "-Inf".into() };
    }
    // Rust's `{:e}` gives the shortest digits that read back as the same f32.
    let sci = format!("{f:e}");
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (neg, mant) = match mant.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mant),
    };
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    let nd = digits.len() as i32;
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if !(-4..6).contains(&exp) {
        out.push_str(&digits[..1]);
        if nd > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", exp.abs()));
    } else if exp < 0 {
        out.push_str("0.");
        out.push_str(&"0".repeat((-exp - 1) as usize));
        out.push_str(&digits);
    } else {
        let dp = (exp + 1) as usize;
        if digits.len() <= dp {
            out.push_str(&digits);
            out.push_str(&"0".repeat(dp - digits.len()));
        } else {
            out.push_str(&digits[..dp]);
            out.push('.');
            out.push_str(&digits[dp..]);
        }
    }
    out
}

/// How a scalar reads in a field of type `string`: ghodss/yaml turns
/// numbers and booleans into text, null leaves the field as it was (`None`).
pub fn as_go_string(r: &Resolved) -> Option<String> {
    match r {
        Resolved::Null => None,
        Resolved::Bool(b) => Some(b.to_string()),
        Resolved::Int(i) => Some(i.to_string()),
        Resolved::Uint(u) => Some(u.to_string()),
        Resolved::Float(f) => Some(format_float32(*f)),
        Resolved::Str(s) => Some(s.clone()),
    }
}

/// Why a mapping's keys could not be read (ghodss/yaml refuses the file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    pub pos: Pos,
    pub message: String,
}

/// A mapping's entries as Go sees them after ghodss/yaml: keys made text
/// (`1` → `"1"`, `yes` → `"true"`), merge keys (`<<`) applied in place, a
/// key written twice keeping its last value, sorted by key (the order in
/// which Go's JSON decoder applies them).
pub fn entries(pairs: &[(Node, Node)]) -> Result<Vec<(String, Node)>, KeyError> {
    let mut out: BTreeMap<String, Node> = BTreeMap::new();
    apply_entries(pairs, &mut out)?;
    Ok(out.into_iter().collect())
}

fn apply_entries(pairs: &[(Node, Node)], out: &mut BTreeMap<String, Node>) -> Result<(), KeyError> {
    for (k, v) in pairs {
        if is_merge(k) {
            let maps: Vec<&Node> = match v {
                Node::Map(..) => vec![v],
                // Earlier maps take precedence: applied last.
                Node::Seq(items, _) => items.iter().rev().collect(),
                other => {
                    return Err(KeyError {
                        pos: other.pos(),
                        message: "map merge requires map or sequence of maps as the value".into(),
                    })
                }
            };
            for m in maps {
                match m {
                    Node::Map(inner, _) => apply_entries(inner, out)?,
                    other => {
                        return Err(KeyError {
                            pos: other.pos(),
                            message: "map merge requires map or sequence of maps as the value".into(),
                        })
                    }
                }
            }
            continue;
        }
        out.insert(key_text(k)?, v.clone());
    }
    Ok(())
}

fn is_merge(k: &Node) -> bool {
    matches!(k, Node::Scalar(s) if (s.plain && s.tag.is_none() && s.value == "<<") || s.tag.as_deref() == Some(MERGE_TAG))
}

/// A key as text, as ghodss/yaml converts it.
fn key_text(k: &Node) -> Result<String, KeyError> {
    let Node::Scalar(s) = k else {
        return Err(KeyError {
            pos: k.pos(),
            message: "a mapping key must be a scalar".into(),
        });
    };
    match resolve(s) {
        Resolved::Str(t) => Ok(t),
        Resolved::Int(i) => Ok(i.to_string()),
        Resolved::Uint(u) => Ok(u.to_string()),
        Resolved::Bool(b) => Ok(b.to_string()),
        Resolved::Float(f) => Ok(match format_float32(f).as_str() {
            "+Inf" => ".inf".into(),
            "-Inf" => "-.inf".into(),
            "NaN" => ".nan".into(),
            other => other.to_string(),
        }),
        Resolved::Null => Err(KeyError {
            pos: s.pos,
            message: "a null mapping key is not supported".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(text: &str) -> Resolved {
        resolve_plain(text)
    }

    fn go_string(text: &str) -> String {
        as_go_string(&plain(text)).unwrap_or_default()
    }

    #[test]
    fn plain_scalars_become_the_strings_adnanh_uses() {
        // The reference's table, row by row.
        assert_eq!(go_string("1"), "1");
        assert_eq!(go_string("1.0"), "1");
        assert_eq!(go_string("3.14159265358979"), "3.1415927");
        assert_eq!(go_string("010"), "8");
        assert_eq!(go_string("0x1F"), "31");
        assert_eq!(go_string("12345678901234567890"), "12345678901234567890");
        for t in ["yes", "on", "y", "Yes", "ON", "TRUE"] {
            assert_eq!(go_string(t), "true", "{t}");
        }
        for t in ["no", "off", "n", "N", "False"] {
            assert_eq!(go_string(t), "false", "{t}");
        }
        assert_eq!(plain("~"), Resolved::Null);
        assert_eq!(plain("null"), Resolved::Null);
        assert_eq!(plain(""), Resolved::Null);
        // More of go-yaml v2's rules.
        assert_eq!(go_string("1_000"), "1000");
        assert_eq!(go_string("0b101"), "5");
        assert_eq!(go_string("0o17"), "15");
        assert_eq!(go_string("-010"), "-8");
        assert_eq!(go_string("+12"), "12");
        assert_eq!(go_string("08"), "8"); // not octal: read as a float
                                          // Debian's adnanh/webhook 2.8.0, observed: an exponent needs its sign,
                                          // a fraction its digits, and a float too large for an f64 is text.
        assert_eq!(go_string("1e+3"), "1000");
        assert_eq!(go_string("1e+6"), "1e+06");
        assert_eq!(go_string("-.5e+1"), "-5");
        assert_eq!(go_string("+.5"), "0.5");
        assert_eq!(go_string(".5e1"), "5"); // Go's ParseFloat, after a leading `.`
        assert_eq!(go_string("1_0e+1"), "100");
        assert_eq!(go_string("1e+39"), "+Inf"); // an f64, too large for 32 bits
        for t in [
            "1e3", "1e6", "1.5e3", "1.0e3", "1.5E3", "1.", "1.e+3", "1e+400", ".5e400",
        ] {
            assert_eq!(go_string(t), t, "{t}");
        }
        assert_eq!(go_string("123456.0"), "123456");
        assert_eq!(go_string("1234567.0"), "1.234567e+06");
        assert_eq!(go_string("0.0001"), "0.0001");
        assert_eq!(go_string("0.00001"), "1e-05");
        assert_eq!(go_string(".5"), "0.5");
        assert_eq!(go_string("-.inf"), "-Inf");
        assert_eq!(go_string(".nan"), "NaN");
        assert_eq!(go_string("-12345678901234567890"), "-1.2345679e+19");
        // Not numbers, not booleans: kept as written.
        for t in [
            "yEs",
            "2001-12-14",
            "1.2.3",
            "0x",
            "1:20",
            "refs/heads/master",
            "-",
            "+",
        ] {
            assert_eq!(go_string(t), t, "{t}");
        }
    }

    #[test]
    fn quoted_scalars_stay_as_written() {
        let doc = parse("a: '010'\nb: \"yes\"\nc: 010\nd: !!str yes\ne: |\n  yes\n")
            .unwrap()
            .unwrap();
        let Node::Map(pairs, _) = doc else { panic!() };
        let got: Vec<(String, String)> = entries(&pairs)
            .unwrap()
            .into_iter()
            .map(|(k, v)| {
                let Node::Scalar(s) = v else { panic!() };
                (k, as_go_string(&resolve(&s)).unwrap())
            })
            .collect();
        assert_eq!(
            got,
            [("a", "010"), ("b", "yes"), ("c", "8"), ("d", "yes"), ("e", "yes\n")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
        );
    }

    #[test]
    fn reads_adnanhs_json_that_is_yaml() {
        // A flow pair inside a list, trailing commas, TABs inside flow collections.
        let text = "[\n\t{\"id\": \"x\",\n\t \"and\": [ \"or\": [1, 2], {\"b\": 3}, ],\n\t},\n]\n";
        let doc = parse(text).unwrap().unwrap();
        let Node::Seq(hooks, _) = doc else { panic!("{doc:?}") };
        let Node::Map(pairs, _) = &hooks[0] else { panic!() };
        let e = entries(pairs).unwrap();
        assert_eq!(e[0].0, "and");
        let Node::Seq(items, _) = &e[0].1 else { panic!() };
        assert_eq!(items.len(), 2);
        assert!(matches!(&items[0], Node::Map(p, _) if p.len() == 1));
    }

    #[test]
    fn keys_merges_and_duplicates_as_go_sees_them() {
        // (`y` itself would be YAML 1.1's `true`.)
        let text = "base: &b {x: 1, z: 2}\nm:\n  z: 0\n  <<: *b\n  x: 9\n  yes: a\n  1: b\n  x: 10\n";
        let doc = parse(text).unwrap().unwrap();
        let Node::Map(pairs, _) = doc else { panic!() };
        let m = entries(&pairs).unwrap();
        let Node::Map(inner, _) = &m[1].1 else { panic!() };
        let e = entries(inner).unwrap();
        let keys: Vec<&str> = e.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["1", "true", "x", "z"]);
        let val = |k: &str| match &e.iter().find(|(n, _)| n == k).unwrap().1 {
            Node::Scalar(s) => s.value.clone(),
            _ => panic!(),
        };
        // The merge overwrote `z` set before it; `x` set after it won, and the last `x` wins.
        assert_eq!(val("z"), "2");
        assert_eq!(val("x"), "10");
    }

    #[test]
    fn syntax_errors_say_where() {
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.pos.line >= 1, "{err:?}");
        assert!(parse("a: *nope\n").unwrap_err().message.contains("nope"));
        assert!(parse("").unwrap().is_none());
    }
}
