//! The YAML shape of `webhook.yaml`, exactly as users write it.
//!
//! These structs only describe the file; `config::load` turns them into the
//! checked types the daemon runs on. Every struct refuses unknown keys.

use super::interp::{Interp, TemplateInterp};
use super::units::{Dur, Size};
use serde::{de, Deserialize, Deserializer};
use std::fmt;
use std::marker::PhantomData;

#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a map of sections such as `server:` and `sources:`"
)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub api: RawApi,
    #[serde(default)]
    pub tasks: RawTasks,
    #[serde(default)]
    pub sources: UniqueMap<RawSource>,
    #[serde(default)]
    pub programs: UniqueMap<RawProgram>,
    #[serde(default)]
    pub mappings: UniqueMap<UniqueMap<RawMapping>>,
    #[serde(default)]
    pub deliveries: RawDeliveries,
    pub state: Option<RawState>,
    pub node: Option<RawNode>,
}

/// What an API client reads of the file (`config::load_for_client`):
/// `server`, and `api` as `A` (`RawApi`, or `IgnoredAny` when the client has
/// a token of its own). Every other key is skipped unread, so the `${...}`
/// in it are not expanded.
#[derive(Debug, Deserialize)]
#[serde(expecting = "a map of sections such as `server:` and `sources:`")]
pub struct RawClientConfig<A> {
    #[serde(default)]
    pub server: RawServer,
    pub api: Option<A>,
}

/// `state:`: where the durable store lives: a SQLite file (`path`), or a
/// PostgreSQL database shared by the nodes of a cluster (`postgres`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    pub path: Option<Interp>,
    pub postgres: Option<Interp>,
    /// Connections each node keeps to PostgreSQL.
    pub connections: Option<usize>,
    /// Where handlers' output files go.
    pub output: Option<Interp>,
}

/// `node:`: this node of a cluster.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNode {
    pub name: Option<Interp>,
    #[serde(default)]
    pub labels: Vec<String>,
    /// How long a node is alive without a heartbeat.
    pub lease: Option<Dur>,
    /// The address other nodes reach this node's API at.
    pub url: Option<Interp>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeliveries {
    /// Delivery records kept in memory.
    pub keep: Option<usize>,
    /// Records of requests refused before or at their source's auth, kept apart.
    pub keep_refused: Option<usize>,
    /// Bytes of bodies kept for replay, across all records.
    pub body_bytes: Option<Size>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// One listener or a list of them.
    pub listen: Option<RawListenList>,
    pub max_body: Option<Size>,
    /// Peers whose `X-Forwarded-For` is believed (reverse proxies).
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Reload when the config file changes.
    pub watch_config: Option<bool>,
    /// Where hooks are served: `/hooks` (the default), `/api/v1`, or empty.
    pub prefix: Option<String>,
}

/// `server.listen`: one entry, or a list of entries.
#[derive(Debug)]
pub enum RawListenList {
    One(RawListen),
    Many(Vec<RawListen>),
}

/// An entry of `server.listen`: an address (`127.0.0.1:9000`,
/// `unix:/run/hookrunner.sock`, `systemd`), or a map with `address`.
#[derive(Debug)]
pub enum RawListen {
    Address(Interp),
    Full(RawListener),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub address: Interp,
    pub tls: Option<RawTls>,
    /// A Unix socket's file mode, octal (`"0660"`).
    pub mode: Option<RawMode>,
}

/// `tls:` of a listener: PEM files, relative to the config's directory.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// The certificate chain, end-entity certificate first.
    pub cert: Interp,
    /// Its private key.
    pub key: Interp,
}

/// A file mode as written (`0660`, `"0660"`, `0o660`, `660`): the scalar's
/// text, so YAML's number rules cannot change its meaning.
#[derive(Debug)]
pub struct RawMode(pub String);

impl<'de> Deserialize<'de> for RawMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(RawMode)
    }
}

impl<'de> Deserialize<'de> for RawListen {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = RawListen;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an address such as `127.0.0.1:9000`, `unix:/path` or `systemd`, or a map with `address`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawListen, E> {
                Interp::deserialize(de::value::StrDeserializer::new(v)).map(RawListen::Address)
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<RawListen, A::Error> {
                RawListener::deserialize(de::value::MapAccessDeserializer::new(map)).map(RawListen::Full)
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for RawListenList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = RawListenList;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an address such as `127.0.0.1:9000`, a map with `address`, or a list of them")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawListenList, E> {
                RawListen::deserialize(de::value::StrDeserializer::new(v)).map(RawListenList::One)
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<RawListenList, A::Error> {
                RawListen::deserialize(de::value::MapAccessDeserializer::new(map)).map(RawListenList::One)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<RawListenList, A::Error> {
                Vec::<RawListen>::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(RawListenList::Many)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    #[serde(default)]
    pub tokens: Vec<Interp>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTasks {
    pub max_concurrent: Option<usize>,
    pub max_queued: Option<usize>,
    pub keep: Option<usize>,
    pub keep_for: Option<Dur>,
    pub output_limit: Option<Size>,
    pub shutdown_grace: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    pub provider: String,
    pub secret: Option<Interp>,
    /// Several secrets at once, so keys rotate without downtime.
    pub secrets: Option<Vec<Interp>>,
    pub token: Option<Interp>,
    pub tokens: Option<Vec<Interp>>,
    /// GitLab's signing token (Standard Webhooks signatures).
    pub signing_secret: Option<Interp>,
    pub signing_secrets: Option<Vec<Interp>>,
    /// GitHub: accept the legacy SHA-1 `X-Hub-Signature`.
    pub allow_sha1: Option<bool>,
    /// Timestamped schemes: how far the signed timestamp may be from our clock.
    pub tolerance: Option<Dur>,
    pub allow_ips: Option<Vec<String>>,
    pub auth: Option<RawAuth>,
    pub event: Option<RawEvent>,
    pub dedup: Option<RawDedup>,
    /// The body kinds the source accepts (`json`, `form`, `multipart`, `xml`, `text`, `any`).
    pub bodies: Option<Vec<String>>,
    /// Used instead of the request's Content-Type to choose the body's parser.
    pub content_type: Option<String>,
    /// The HTTP methods a delivery may use (default `[POST]`).
    pub methods: Option<Vec<String>>,
    /// Answers to browsers' preflight requests, and the headers they need.
    pub cors: Option<RawCors>,
    /// How deliveries are answered.
    pub response: Option<RawResponse>,
}

/// `response:` of a source, or of a mapping key (overriding the source's key by key).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResponse {
    pub status: Option<u16>,
    pub body: Option<String>,
    #[serde(default)]
    pub headers: UniqueMap<String>,
    pub no_match: Option<u16>,
    pub no_match_body: Option<String>,
    pub failure: Option<u16>,
    pub failure_body: Option<String>,
    pub output: Option<bool>,
    pub output_on_failure: Option<bool>,
}

/// `cors:` of a source.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCors {
    pub origins: RawOrigins,
    pub methods: Option<Vec<String>>,
    pub headers: Option<Vec<String>>,
    pub max_age: Option<Dur>,
}

/// `origins:` of `cors`: `"*"`, or a list of origins.
#[derive(Debug)]
pub enum RawOrigins {
    Any,
    List(Vec<String>),
}

impl<'de> Deserialize<'de> for RawOrigins {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = RawOrigins;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`\"*\"` or a list of origins such as `[\"https://app.example\"]`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawOrigins, E> {
                match v {
                    "*" => Ok(RawOrigins::Any),
                    other => Ok(RawOrigins::List(vec![other.to_string()])),
                }
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<RawOrigins, A::Error> {
                Vec::<String>::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(RawOrigins::List)
            }
        }
        d.deserialize_any(V)
    }
}

/// `dedup:` on a source: `off`, or `{window: 60s, key: delivery_id | body_sha256}`.
#[derive(Debug)]
pub enum RawDedup {
    Off,
    On(RawDedupMap),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDedupMap {
    pub window: Option<Dur>,
    pub key: Option<String>,
}

impl<'de> Deserialize<'de> for RawDedup {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = RawDedup;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`off` or `{window: 60s, key: delivery_id | body_sha256}`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawDedup, E> {
                match v {
                    "off" => Ok(RawDedup::Off),
                    // The value is not repeated: it may be a secret written here.
                    _ => Err(E::custom("unknown dedup setting: expected `off` or a map")),
                }
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawDedup, E> {
                Ok(if v {
                    RawDedup::On(RawDedupMap {
                        window: None,
                        key: None,
                    })
                } else {
                    RawDedup::Off
                })
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<RawDedup, A::Error> {
                RawDedupMap::deserialize(de::value::MapAccessDeserializer::new(map)).map(RawDedup::On)
            }
        }
        d.deserialize_any(V)
    }
}

/// `auth:` of a generic source: the word `none`, or a map.
#[derive(Debug)]
pub enum RawAuth {
    None,
    Map(Box<RawAuthMap>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuthMap {
    pub token: Option<Interp>,
    pub tokens: Option<Vec<Interp>>,
    pub hmac: Option<String>,
    pub secret: Option<Interp>,
    pub secrets: Option<Vec<Interp>>,
    pub header: Option<String>,
    pub prefix: Option<String>,
    /// `hex` (the default) or `base64`.
    pub encoding: Option<String>,
    pub query: Option<String>,
    pub basic: Option<RawBasic>,
}

/// `auth: {basic: {user: ..., password: ...}}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBasic {
    pub user: Interp,
    pub password: Interp,
}

impl<'de> Deserialize<'de> for RawAuth {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = RawAuth;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`none`, `{token: ..., header: ...}`, `{hmac: sha256, secret: ..., header: ...}` or `{basic: {user: ..., password: ...}}`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawAuth, E> {
                match v {
                    "none" => Ok(RawAuth::None),
                    // The value is not repeated: a token written as `auth: <token>`
                    // would reach `check`, a reload's answer and the log.
                    _ => Err(E::custom(
                        "unknown auth: expected `none`, or a map with `token`, `hmac` or `basic`",
                    )),
                }
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<RawAuth, A::Error> {
                RawAuthMap::deserialize(de::value::MapAccessDeserializer::new(map)).map(|m| RawAuth::Map(Box::new(m)))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEvent {
    pub header: Option<String>,
    pub field: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProgram {
    pub command: RawCommand,
    #[serde(default)]
    pub params: Vec<String>,
    #[serde(default)]
    pub args: Vec<TemplateInterp>,
    pub timeout: Option<Dur>,
    pub wait: Option<Dur>,
    pub max_concurrent: Option<usize>,
    pub concurrency_key: Option<String>,
    pub on_busy: Option<String>,
    pub retry: Option<RawRetry>,
    pub exit_codes: Option<RawExitCodes>,
    #[serde(default)]
    pub on_finish: Vec<RawCallback>,
    pub on_interrupt: Option<String>,
    /// Only nodes having all these labels may run it.
    pub run_on: Option<Vec<String>>,
    /// One task per live node matching `run_on`, each pinned to its node.
    pub fan_out: Option<bool>,
    pub working_dir: Option<Interp>,
    #[serde(default)]
    pub env: UniqueMap<Interp>,
    /// Environment variables holding params: `{ENV_NAME: param}`.
    #[serde(default)]
    pub param_env: UniqueMap<String>,
    /// Params written to files whose paths go in environment variables.
    #[serde(default)]
    pub param_files: UniqueMap<RawParamFile>,
    /// Set the `HOOK_*` variables (default true).
    pub hook_env: Option<bool>,
}

/// One `param_files` entry: a param name, or `{param: NAME, base64: true}`.
#[derive(Debug)]
pub enum RawParamFile {
    Param(String),
    Map(RawParamFileMap),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawParamFileMap {
    pub param: String,
    /// Decode the value as standard base64 before writing it.
    pub base64: Option<bool>,
}

impl<'de> Deserialize<'de> for RawParamFile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = RawParamFile;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a param name, or `{param: NAME, base64: true}`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawParamFile, E> {
                Ok(RawParamFile::Param(v.to_string()))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<RawParamFile, A::Error> {
                RawParamFileMap::deserialize(de::value::MapAccessDeserializer::new(map)).map(RawParamFile::Map)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    pub attempts: u32,
    pub backoff: Option<Dur>,
    pub max_backoff: Option<Dur>,
    pub on: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCallback {
    pub url: Interp,
    pub secret: Option<Interp>,
    pub when: Option<Vec<String>>,
    pub attempts: Option<u32>,
    pub backoff: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExitCodes {
    #[serde(default)]
    pub success: Vec<i32>,
    #[serde(default)]
    pub retry: Vec<i32>,
}

/// `command:` is a path, or an argv list.
#[derive(Debug)]
pub enum RawCommand {
    Path(Interp),
    Argv(Vec<Interp>),
}

impl<'de> Deserialize<'de> for RawCommand {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = RawCommand;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a path, or a list such as [\"python3\", \"handlers/x.py\"]")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawCommand, E> {
                Interp::deserialize(de::value::StrDeserializer::new(v)).map(RawCommand::Path)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<RawCommand, A::Error> {
                Vec::<Interp>::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(RawCommand::Argv)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMapping {
    #[serde(default)]
    pub params: UniqueMap<String>,
    /// Values parsed as JSON before params and conditions read them.
    #[serde(default)]
    pub parse_json: Vec<String>,
    #[serde(default)]
    pub rules: Vec<RawRule>,
    /// Overrides the source's `response`, key by key.
    pub response: Option<RawResponse>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    /// Absent: always. Written with no value (`if:`): the empty expression,
    /// refused, not "always" (a half-written condition must not run on
    /// every event).
    #[serde(rename = "if", default, deserialize_with = "present_or_empty")]
    pub condition: Option<String>,
    pub run: String,
}

/// A key that is present is `Some`, its YAML null the empty string.
fn present_or_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Some(Option::<String>::deserialize(d)?.unwrap_or_default()))
}

/// A YAML map that keeps its order and refuses a key written twice.
#[derive(Debug)]
pub struct UniqueMap<V>(pub Vec<(String, V)>);

impl<V> Default for UniqueMap<V> {
    fn default() -> Self {
        UniqueMap(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for UniqueMap<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> de::Visitor<'de> for Visit<V> {
            type Value = UniqueMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(UniqueMap(Vec::new()))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries: Vec<(String, V)> = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    if entries.iter().any(|(k, _)| *k == key) {
                        return Err(de::Error::custom(format!("duplicate key `{key}`")));
                    }
                    let value = map.next_value()?;
                    entries.push((key, value));
                }
                Ok(UniqueMap(entries))
            }
        }
        d.deserialize_any(Visit(PhantomData))
    }
}
