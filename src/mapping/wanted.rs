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
    pub fn parse(&self, text: &[u8]) -> serde_json::Result<Value> {
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
