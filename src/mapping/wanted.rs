//! The parts of a JSON body a source reads, known at load, so a delivery's
//! body is parsed into a sparse `Value` holding only those parts.
//!
//! Every byte is still checked (an invalid body is a `400` whatever it
//! holds), but the subtrees nobody reads are skipped without building
//! strings, maps or vectors. A push from GitHub is 8–25 KiB of JSON of which
//! a deploy rule reads one or two fields; building the full `Value` was the
//! largest cost of an ignored delivery (see BENCHMARKS.md).
//!
//! The invariant the tests check: for every wanted path, looking it up in the
//! sparse value gives what looking it up in the full value gives.

use super::params::Step;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::collections::BTreeMap;
use std::fmt;

/// A tree of wanted paths: a whole subtree, or some of its keys and indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    All,
    Some {
        /// Keys wanted from an object (a few: found by a scan, not a hash).
        keys: Vec<(String, Wanted)>,
        /// Indices wanted from an array, in order.
        items: BTreeMap<usize, Wanted>,
    },
}

impl Default for Wanted {
    /// Nothing wanted yet.
    fn default() -> Self {
        Wanted::Some {
            keys: Vec::new(),
            items: BTreeMap::new(),
        }
    }
}

impl Wanted {
    /// Wants the subtree at `steps` (an empty path is the whole body).
    pub fn add(&mut self, steps: &[Step]) {
        let Wanted::Some { keys, items } = self else {
            return;
        };
        let Some((first, rest)) = steps.split_first() else {
            *self = Wanted::All;
            return;
        };
        let child = match first {
            Step::Key(k) => match keys.iter().position(|(name, _)| name == k) {
                Some(at) => &mut keys[at].1,
                None => {
                    keys.push((k.clone(), Wanted::default()));
                    &mut keys.last_mut().expect("just pushed").1
                }
            },
            Step::Index(i) => items.entry(*i).or_default(),
        };
        child.add(rest);
    }

    /// Wants the top-level field `key`, whole.
    pub fn add_key(&mut self, key: &str) {
        self.add(&[Step::Key(key.to_string())]);
    }

    /// Parses JSON text into a value holding the wanted parts, checking all of it.
    ///
    /// A plain scan takes the common case (see [`fast`]); whatever it is not
    /// sure of (an error, a number with an exponent, deep nesting, an escaped
    /// key...) goes through serde_json, so every refusal and every value is
    /// serde_json's own.
    pub fn parse(&self, text: &[u8]) -> serde_json::Result<Value> {
        if matches!(self, Wanted::Some { .. }) {
            if let Some(value) = fast::parse(self, text) {
                return Ok(value);
            }
        }
        self.parse_with_serde(text)
    }

    /// [`Wanted::parse`] through serde_json's tokens only.
    fn parse_with_serde(&self, text: &[u8]) -> serde_json::Result<Value> {
        let mut de = serde_json::Deserializer::from_slice(text);
        let value = self.deserialize(&mut de)?;
        de.end()?;
        Ok(value)
    }
}

impl<'de> DeserializeSeed<'de> for &Wanted {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        match self {
            Wanted::All => serde::Deserialize::deserialize(deserializer),
            Wanted::Some { .. } => deserializer.deserialize_any(Sparse(self)),
        }
    }
}

/// Builds the wanted parts of one value; scalars are kept as they are.
struct Sparse<'w>(&'w Wanted);

impl<'de> Visitor<'de> for Sparse<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let Wanted::Some { keys, .. } = self.0 else {
            unreachable!("a wholly wanted value is deserialized as a Value")
        };
        let mut out = Map::new();
        while let Some(found) = map.next_key_seed(Key(keys))? {
            match found {
                Some((name, child)) => {
                    let value = map.next_value_seed(child)?;
                    out.insert(name, value);
                }
                None => map.next_value_seed(Skip)?,
            }
        }
        Ok(Value::Object(out))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let Wanted::Some { items, .. } = self.0 else {
            unreachable!("a wholly wanted value is deserialized as a Value")
        };
        // Unwanted items up to the last wanted index stay as `null`, so indices keep their meaning.
        let last = items.keys().next_back().copied();
        let mut out = Vec::new();
        let mut index = 0;
        loop {
            let more = match items.get(&index) {
                Some(child) => seq.next_element_seed(child)?.map(|v| out.push(v)),
                None => seq.next_element_seed(Skip)?.map(|()| {
                    if last.is_some_and(|l| index < l) {
                        out.push(Value::Null);
                    }
                }),
            };
            if more.is_none() {
                return Ok(Value::Array(out));
            }
            index += 1;
        }
    }
}

/// Checks a value nobody reads, building nothing: strings are still checked
/// for UTF-8 and nesting still counts toward serde_json's depth limit, so a
/// body is refused exactly when parsing it whole would refuse it.
/// (`IgnoredAny` would skip both checks.)
struct Skip;

impl<'de> DeserializeSeed<'de> for Skip {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(Skip)
    }
}

impl<'de> Visitor<'de> for Skip {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key_seed(Skip)?.is_some() {
            map.next_value_seed(Skip)?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Skip)?.is_some() {}
        Ok(())
    }
}

/// The sparse parse without serde's visitor calls per token: skipping an
/// unread subtree is a scan of its bytes (the whole body was checked as
/// UTF-8 first), and only wanted values are handed to serde_json. `None`
/// when the text is anything but plain valid JSON this scan is sure of;
/// the caller then parses it with serde_json, which gives the same value
/// or the exact error. It takes a third off the parse of a GitHub push
/// (BENCHMARKS.md, round two).
mod fast {
    use super::Wanted;
    use serde_json::{Map, Value};
    use std::collections::BTreeMap;

    /// Deeper than this the scan gives up (serde_json refuses past 128).
    const MAX_DEPTH: usize = 100;
    /// Longer numbers are left to serde_json (it refuses those out of range).
    const MAX_NUMBER: usize = 100;

    pub(super) fn parse(wanted: &Wanted, text: &[u8]) -> Option<Value> {
        std::str::from_utf8(text).ok()?;
        let mut p = Scan { text, at: 0, depth: 0 };
        p.ws();
        let value = p.value(wanted)?;
        p.ws();
        (p.at == text.len()).then_some(value)
    }

    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;

    /// The high bit of each byte of `x` (little-endian) that is `"`, `\` or
    /// below 0x20; bytes above the lowest such byte may be marked falsely
    /// (borrows), so only the lowest mark is to be trusted.
    fn special(x: u64) -> u64 {
        let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
        zero(x ^ (ONES * u64::from(b'"')))
            | zero(x ^ (ONES * u64::from(b'\\')))
            | (x.wrapping_sub(ONES * 0x20) & !x & HIGH)
    }

    struct Scan<'a> {
        text: &'a [u8],
        at: usize,
        depth: usize,
    }

    impl Scan<'_> {
        fn peek(&self) -> Option<u8> {
            self.text.get(self.at).copied()
        }

        fn ws(&mut self) {
            while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
                self.at += 1;
            }
        }

        fn enter(&mut self) -> Option<()> {
            self.depth += 1;
            self.at += 1;
            (self.depth <= MAX_DEPTH).then_some(())
        }

        /// After a container's value: a `,` (true) or its end (false).
        fn next(&mut self, end: u8) -> Option<bool> {
            self.ws();
            match self.peek()? {
                b',' => {
                    self.at += 1;
                    self.ws();
                    Some(true)
                }
                b if b == end => {
                    self.at += 1;
                    self.depth -= 1;
                    Some(false)
                }
                _ => None,
            }
        }

        /// Whether the container just entered is empty (and then leaves it).
        fn empty(&mut self, end: u8) -> Option<bool> {
            self.ws();
            if self.peek()? == end {
                self.at += 1;
                self.depth -= 1;
                return Some(true);
            }
            Some(false)
        }

        /// An object's key and its colon: the key's raw text, and whether it has escapes.
        fn key(&mut self) -> Option<(&[u8], bool)> {
            if self.peek()? != b'"' {
                return None;
            }
            let (start, end, escaped) = self.string()?;
            self.ws();
            if self.peek()? != b':' {
                return None;
            }
            self.at += 1;
            self.ws();
            Some((&self.text[start..end], escaped))
        }

        /// A value as `wanted` wants it.
        fn value(&mut self, wanted: &Wanted) -> Option<Value> {
            match (wanted, self.peek()?) {
                (Wanted::Some { keys, .. }, b'{') => self.object(keys),
                (Wanted::Some { items, .. }, b'[') => self.array(items),
                _ => {
                    let start = self.at;
                    self.skip()?;
                    serde_json::from_slice(&self.text[start..self.at]).ok()
                }
            }
        }

        fn object(&mut self, keys: &[(String, Wanted)]) -> Option<Value> {
            self.enter()?;
            let mut out = Map::new();
            if self.empty(b'}')? {
                return Some(Value::Object(out));
            }
            loop {
                let (key, escaped) = self.key()?;
                if escaped {
                    return None;
                }
                match keys.iter().find(|(k, _)| k.as_bytes() == key) {
                    Some((name, child)) => {
                        let value = self.value(child)?;
                        out.insert(name.clone(), value);
                    }
                    None => self.skip()?,
                }
                if !self.next(b'}')? {
                    return Some(Value::Object(out));
                }
            }
        }

        /// Unwanted items up to the last wanted index stay as `null`.
        fn array(&mut self, items: &BTreeMap<usize, Wanted>) -> Option<Value> {
            self.enter()?;
            let mut out = Vec::new();
            if self.empty(b']')? {
                return Some(Value::Array(out));
            }
            let last = items.keys().next_back().copied();
            let mut index = 0;
            loop {
                match items.get(&index) {
                    Some(child) => out.push(self.value(child)?),
                    None => {
                        self.skip()?;
                        if last.is_some_and(|l| index < l) {
                            out.push(Value::Null);
                        }
                    }
                }
                if !self.next(b']')? {
                    return Some(Value::Array(out));
                }
                index += 1;
            }
        }

        /// Past one value, building nothing.
        fn skip(&mut self) -> Option<()> {
            match self.peek()? {
                b'"' => self.string().map(|_| ()),
                b'{' => {
                    self.enter()?;
                    if !self.empty(b'}')? {
                        loop {
                            self.key()?;
                            self.skip()?;
                            if !self.next(b'}')? {
                                break;
                            }
                        }
                    }
                    Some(())
                }
                b'[' => {
                    self.enter()?;
                    if !self.empty(b']')? {
                        loop {
                            self.skip()?;
                            if !self.next(b']')? {
                                break;
                            }
                        }
                    }
                    Some(())
                }
                b't' => self.literal(b"true"),
                b'f' => self.literal(b"false"),
                b'n' => self.literal(b"null"),
                b'-' | b'0'..=b'9' => self.number(),
                _ => None,
            }
        }

        fn literal(&mut self, word: &[u8]) -> Option<()> {
            let end = self.at + word.len();
            (self.text.get(self.at..end)? == word).then(|| self.at = end)
        }

        /// An integer or a decimal; one with an exponent is left to serde_json.
        fn number(&mut self) -> Option<()> {
            let start = self.at;
            if self.peek() == Some(b'-') {
                self.at += 1;
            }
            match self.peek()? {
                b'0' => self.at += 1,
                b'1'..=b'9' => self.digits(),
                _ => return None,
            }
            if self.peek() == Some(b'.') {
                self.at += 1;
                if !matches!(self.peek(), Some(b'0'..=b'9')) {
                    return None;
                }
                self.digits();
            }
            if matches!(self.peek(), Some(b'e' | b'E')) {
                return None;
            }
            (self.at - start <= MAX_NUMBER).then_some(())
        }

        fn digits(&mut self) {
            while let Some(b'0'..=b'9') = self.peek() {
                self.at += 1;
            }
        }

        /// Past a string (at its `"`): where its text starts and ends, and
        /// whether it has escapes. A control character, a bad escape or a
        /// `\u` escape of a surrogate (serde_json pairs or refuses those) is `None`.
        fn string(&mut self) -> Option<(usize, usize, bool)> {
            self.at += 1;
            let start = self.at;
            let mut escaped = false;
            loop {
                // Eight bytes at a time up to the next `"`, `\` or control character.
                while let Some(chunk) = self.text.get(self.at..self.at + 8) {
                    let mask = special(u64::from_le_bytes(chunk.try_into().ok()?));
                    if mask != 0 {
                        self.at += (mask.trailing_zeros() / 8) as usize;
                        break;
                    }
                    self.at += 8;
                }
                match *self.text.get(self.at)? {
                    b'"' => {
                        self.at += 1;
                        return Some((start, self.at - 1, escaped));
                    }
                    b'\\' => {
                        escaped = true;
                        match *self.text.get(self.at + 1)? {
                            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.at += 2,
                            b'u' => {
                                let hex = self.text.get(self.at + 2..self.at + 6)?;
                                if !hex.iter().all(u8::is_ascii_hexdigit) {
                                    return None;
                                }
                                let unit = hex
                                    .iter()
                                    .fold(0u32, |n, &h| n * 16 + char::from(h).to_digit(16).unwrap_or(0));
                                if (0xD800..0xE000).contains(&unit) {
                                    return None;
                                }
                                self.at += 6;
                            }
                            _ => return None,
                        }
                    }
                    0..=0x1f => return None,
                    _ => self.at += 1,
                }
            }
        }
    }
}

/// Reads an object key: the wanted child and the key's name, or `None` to skip its value.
struct Key<'w>(&'w [(String, Wanted)]);

impl<'de, 'w> DeserializeSeed<'de> for Key<'w> {
    type Value = Option<(String, &'w Wanted)>;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de, 'w> Visitor<'de> for Key<'w> {
    type Value = Option<(String, &'w Wanted)>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.0.iter().find(|(k, _)| k == v).map(|(k, w)| (k.clone(), w)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::params::{lookup, parse_path};

    const PUSH: &[u8] = include_bytes!("../../tests/fixtures/github/push.json");

    fn wanting(paths: &[&str]) -> Wanted {
        let mut w = Wanted::default();
        for p in paths {
            w.add(&parse_path(p).unwrap());
        }
        w
    }

    #[test]
    fn wanted_paths_read_the_same_as_from_the_full_body() {
        let full: Value = serde_json::from_slice(PUSH).unwrap();
        let paths = [
            "ref",
            "repository.full_name",
            "repository.owner",
            "commits[0].id",
            "commits[0].author.name",
            "commits[2].id",
            "commits[9].id",
            "head_commit.message",
            "ref.not_an_object",
            "missing.deeper",
            "pusher",
            "pusher.name",
        ];
        let sparse = wanting(&paths).parse(PUSH).unwrap();
        for p in paths {
            let steps = parse_path(p).unwrap();
            assert_eq!(lookup(&sparse, &steps), lookup(&full, &steps), "{p}");
        }
        // Only what was wanted was built.
        assert!(sparse.get("sender").is_none());
        assert!(sparse["repository"].get("id").is_none());
        assert_eq!(sparse["pusher"], full["pusher"], "a wholly wanted subtree is whole");
    }

    #[test]
    fn arrays_keep_indices_and_scalars_and_odd_shapes_pass_through() {
        let body = br#"{"a":[10,{"x":1,"y":2},"s",[1]],"n":1.5,"t":true,"z":null,"e":"\u00e9\n"}"#;
        let full: Value = serde_json::from_slice(body).unwrap();
        let paths = ["a[1].x", "a[3]", "a[3][0]", "a[7]", "n", "t", "z", "e", "a[0].x"];
        let sparse = wanting(&paths).parse(body).unwrap();
        for p in paths {
            let steps = parse_path(p).unwrap();
            assert_eq!(lookup(&sparse, &steps), lookup(&full, &steps), "{p}");
        }
        assert_eq!(sparse["a"], serde_json::json!([10, {"x": 1}, null, [1]]));
        // A body that is an array, or a scalar.
        let arr = br#"[{"id":1},{"id":2}]"#;
        assert_eq!(
            wanting(&["[1].id"]).parse(arr).unwrap(),
            serde_json::json!([null, {"id": 2}])
        );
        assert_eq!(Wanted::default().parse(b" \"x\" ").unwrap(), serde_json::json!("x"));
    }

    #[test]
    fn everything_is_still_checked() {
        let w = wanting(&["ref"]);
        for bad in [
            &br#"{"ref":"a","other":[1,2"#[..],
            br#"{"ref":"a","other":{"x":tru}}"#,
            br#"{"ref":"a"} trailing"#,
            br#"{"ref":"a","other":"\x"}"#,
            b"",
        ] {
            let ours = w.parse(bad).unwrap_err().to_string();
            let full = serde_json::from_slice::<Value>(bad).unwrap_err().to_string();
            assert_eq!(ours, full, "{}", String::from_utf8_lossy(bad));
        }
        // Nesting past serde_json's limit and invalid UTF-8 are refused where
        // nothing reads them too, as a whole parse refuses them.
        let nest = |n| format!("{}{}", "[".repeat(n), "]".repeat(n));
        let deep = format!("{{\"ref\":1,\"x\":{}}}", nest(100_000));
        let latin1 = b"{\"ref\":\"a\",\"x\":\"caf\xe9\"}";
        for bad in [deep.as_bytes(), &latin1[..]] {
            let ours = w.parse(bad).unwrap_err().to_string();
            let full = serde_json::from_slice::<Value>(bad).unwrap_err().to_string();
            assert_eq!(ours, full);
        }
    }

    #[test]
    fn the_scan_gives_what_serde_json_gives_or_leaves_it_to_serde_json() {
        let paths = ["ref", "a[1].x", "a[3]", "o.k", "o.s", "n", "e", "d"];
        let w = wanting(&paths);
        let bodies: &[&[u8]] = &[
            PUSH,
            br#"{"ref":"a","a":[10,{"x":1,"y":2},"s",[1]],"o":{"k":[1,{"z":null}],"s":"\u00e9\n\"/"}}"#,
            br#" { "ref" : "x" , "a" : [ ] , "o" : { } , "n" : -0.5 , "e" : 1e400 } "#,
            br#"{"ref":"x","skip":{"deep":[[[["\ud83d\ude00"]]]],"n":-12.75e-3}}"#,
            br#"{"r\u0065f":"escaped key","ref":"plain"}"#,
            br#"{"ref":"a","ref":"b","n":123456789012345678901234567890}"#,
            br#"{"ref":"a","x":01}"#,
            br#"{"ref":"a","x":[1,]}"#,
            br#"{"ref":"a","x":{"a":1,}}"#,
            br#"{"ref":"a","x":"\x"}"#,
            br#"{"ref":"a","x":"\ud800"}"#,
            br#"{"ref":"a","x":"tab	in"}"#,
            br#"{"ref":"a","x":-}"#,
            br#"{"ref":"a","x":1.}"#,
            br#"{"ref":"a","x":tru}"#,
            br#"{"ref":"a"}x"#,
            br#"[{"ref":1},{"ref":2}]"#,
            br#""just a string""#,
            br#"{"ref":"a","x":"caf\xc3\xa9"}"#,
            b"{\"ref\":\"caf\xc3\xa9\",\"x\":\"\xe9\"}",
            b"\xef\xbb\xbf{}",
            b"",
            b"   ",
        ];
        let nest = |n| format!("{{\"ref\":1,\"x\":{}{}}}", "[".repeat(n), "]".repeat(n));
        let deep: Vec<String> = [99, 100, 101, 127, 128, 129].into_iter().map(nest).collect();
        for body in bodies.iter().copied().chain(deep.iter().map(|d| d.as_bytes())) {
            let ours = w.parse(body).map_err(|e| e.to_string());
            let theirs = w.parse_with_serde(body).map_err(|e| e.to_string());
            assert_eq!(ours, theirs, "{}", String::from_utf8_lossy(body));
        }
        // Escapes, quotes, control and non-ASCII characters at every offset of the eight-byte steps.
        for special in ["\\\"", "\\\\", "\\u00e9", "\u{1}", "\u{1f}", "é", "\u{7f}", "\\q", "\""] {
            for at in 0..20 {
                let text = format!("{}{special}{}", "a".repeat(at), "b".repeat(20 - at));
                for body in [
                    format!("{{\"ref\":\"{text}\",\"x\":\"{text}\"}}"),
                    format!("{{\"x\":[\"{text}\"],\"ref\":1}}"),
                ] {
                    let ours = w.parse(body.as_bytes()).map_err(|e| e.to_string());
                    let theirs = w.parse_with_serde(body.as_bytes()).map_err(|e| e.to_string());
                    assert_eq!(ours, theirs, "{body}");
                }
            }
        }
        // The common case takes the scan.
        assert!(super::fast::parse(&w, PUSH).is_some());
        assert!(super::fast::parse(&w, bodies[1]).is_some());
    }

    #[test]
    fn all_absorbs_narrower_paths_and_the_last_duplicate_key_wins() {
        let mut w = wanting(&["repository.name"]);
        w.add(&parse_path("repository").unwrap());
        w.add(&parse_path("repository.owner.login").unwrap());
        let Wanted::Some { keys, .. } = &w else { panic!() };
        assert_eq!(keys, &[("repository".to_string(), Wanted::All)]);
        let v = wanting(&["k"]).parse(br#"{"k":1,"k":2}"#).unwrap();
        assert_eq!(v, serde_json::from_slice::<Value>(br#"{"k":1,"k":2}"#).unwrap());
    }
}
