//! `server.listen`: where the daemon takes connections. TCP addresses, Unix
//! sockets and the sockets systemd passes, each optionally with TLS.

use super::raw::{RawListen, RawListenList, RawMode};
use super::{key, Checker, Seg};
use crate::tls::CertPair;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The file mode of a Unix socket when `mode` says nothing: the daemon's
/// user and group may connect.
pub const DEFAULT_SOCKET_MODE: u32 = 0o660;

/// One entry of `server.listen`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    pub address: ListenAddress,
    pub tls: Option<Tls>,
}

/// Where a listener takes connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddress {
    /// An IP address and port; port 0 picks a free port.
    Tcp(SocketAddr),
    /// A Unix socket file, made with this mode (replacing a stale one) and
    /// removed at exit.
    Unix { path: PathBuf, mode: u32 },
    /// The sockets systemd passed (`LISTEN_FDS`): those named so
    /// (`FileDescriptorName=`), or, without a name, every one that no named
    /// entry takes.
    Systemd { name: Option<String> },
}

impl fmt::Display for ListenAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddress::Tcp(addr) => write!(f, "{addr}"),
            ListenAddress::Unix { path, .. } => write!(f, "unix:{}", path.display()),
            ListenAddress::Systemd { name: None } => f.write_str("systemd"),
            ListenAddress::Systemd { name: Some(n) } => write!(f, "systemd:{n}"),
        }
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.address)?;
        if self.tls.is_some() {
            f.write_str(" (TLS)")?;
        }
        Ok(())
    }
}

/// A listener's certificate and key: the files, and the pair read from
/// them when the config was loaded.
#[derive(Debug, Clone)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub pair: CertPair,
}

/// Two listeners are the same when they name the same files: what the files
/// hold is reloaded without a restart.
impl PartialEq for Tls {
    fn eq(&self, other: &Tls) -> bool {
        self.cert == other.cert && self.key == other.key
    }
}

impl Eq for Tls {}

/// Whether two lists of listeners take connections at the same places the
/// same way (TLS or not), so that a reload can keep the sockets.
pub fn same_sockets(a: &[Listen], b: &[Listen]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.address == y.address && x.tls.is_some() == y.tls.is_some())
}

/// Reads an address as written in `server.listen` or `--listen`: relative
/// Unix socket paths start at `dir`.
pub fn parse_address(text: &str, dir: &Path) -> Result<ListenAddress, String> {
    let text = text.trim();
    if let Some(path) = text.strip_prefix("unix:") {
        if path.is_empty() {
            return Err("`unix:` needs a socket path, as in `unix:/run/hookrunner/hookrunner.sock`".into());
        }
        if path.contains('\0') {
            return Err("a socket path cannot hold a NUL byte".into());
        }
        let path = dir.join(path);
        // The kernel's limit for a socket path (sun_path, with its NUL).
        if path.as_os_str().len() > 107 {
            return Err(format!(
                "the socket path `{}` is longer than the 107 bytes a Unix socket path may have",
                path.display()
            ));
        }
        return Ok(ListenAddress::Unix {
            path,
            mode: DEFAULT_SOCKET_MODE,
        });
    }
    if text == "systemd" {
        return Ok(ListenAddress::Systemd { name: None });
    }
    if let Some(name) = text.strip_prefix("systemd:") {
        let valid = !name.is_empty() && name.len() <= 255 && name.chars().all(|c| c.is_ascii_graphic() && c != ':');
        if !valid {
            return Err(format!(
                "`{name}` is not a socket name (systemd's `FileDescriptorName=`: printable characters, no `:`)"
            ));
        }
        return Ok(ListenAddress::Systemd {
            name: Some(name.to_string()),
        });
    }
    text.parse().map(ListenAddress::Tcp).map_err(|_| {
        format!(
            "`{text}` is not an address and port such as `127.0.0.1:9000` or `[::]:9000`, nor `unix:/path/to.sock` or `systemd`"
        )
    })
}

/// A Unix socket's mode as written: octal digits, optionally after `0o`.
fn parse_mode(raw: &RawMode) -> Result<u32, String> {
    let text = raw.0.trim();
    let digits = text.strip_prefix("0o").unwrap_or(text);
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if !digits.is_empty() && !digits.starts_with('+') && mode <= 0o777 => Ok(mode),
        _ => Err(format!(
            "`{text}` is not a file mode: write permission bits in octal, such as `\"0660\"` or `\"0600\"`"
        )),
    }
}

impl Checker<'_> {
    /// `server.listen`: one entry or a list; `None` listens on `default`.
    pub(super) fn listen(&mut self, raw: Option<&RawListenList>, default: &str) -> Vec<Listen> {
        let entries: Vec<(Vec<Seg>, &RawListen)> = match raw {
            None => {
                let address = parse_address(default, &self.dir).expect("the default address parses");
                return vec![Listen { address, tls: None }];
            }
            Some(RawListenList::One(entry)) => vec![(vec![key("server"), key("listen")], entry)],
            Some(RawListenList::Many(list)) => list
                .iter()
                .enumerate()
                .map(|(i, entry)| (vec![key("server"), key("listen"), Seg::Index(i)], entry))
                .collect(),
        };
        if entries.is_empty() {
            self.error(
                &[key("server"), key("listen")],
                "must name at least one address (leave it out to listen on the default)",
            );
        }
        let mut out: Vec<Listen> = Vec::new();
        for (at, entry) in entries {
            let Some(listen) = self.listen_entry(&at, entry) else {
                continue;
            };
            if let Some(earlier) = out.iter().find(|l| same_place(&l.address, &listen.address)) {
                self.error(&at, format!("`{}` is listed twice", earlier.address));
                continue;
            }
            out.push(listen);
        }
        out
    }

    fn listen_entry(&mut self, at: &[Seg], entry: &RawListen) -> Option<Listen> {
        let (address_at, text, tls, mode) = match entry {
            RawListen::Address(text) => (at.to_vec(), text, None, None),
            RawListen::Full(full) => (
                [at, &[key("address")]].concat(),
                &full.address,
                full.tls.as_ref(),
                full.mode.as_ref(),
            ),
        };
        let mut address = match parse_address(&text.value, &self.dir) {
            Ok(address) => address,
            Err(why) => {
                self.error(&address_at, why);
                return None;
            }
        };
        if let Some(mode) = mode {
            let mode_at = [at, &[key("mode")]].concat();
            match (&mut address, parse_mode(mode)) {
                (ListenAddress::Unix { mode: m, .. }, Ok(mode)) => *m = mode,
                (ListenAddress::Unix { .. }, Err(why)) => self.error(&mode_at, why),
                (_, _) => self.error(&mode_at, "`mode` applies only to `unix:` sockets"),
            }
        }
        let tls = tls.and_then(|tls| {
            let tls_at = [at, &[key("tls")]].concat();
            if matches!(address, ListenAddress::Unix { .. }) {
                self.error(
                    &tls_at,
                    "TLS applies to TCP listeners: a Unix socket is reached from this machine only",
                );
                return None;
            }
            let cert = self.dir.join(tls.cert.value.trim());
            let key_path = self.dir.join(tls.key.value.trim());
            match CertPair::load(&cert, &key_path) {
                Ok(pair) => Some(Tls {
                    cert,
                    key: key_path,
                    pair,
                }),
                Err(e) => {
                    // The file the problem is in.
                    let which = match &e {
                        crate::tls::TlsError::Read { path, .. } if *path == key_path => "key",
                        crate::tls::TlsError::NoKey { .. } | crate::tls::TlsError::BadKey { .. } => "key",
                        _ => "cert",
                    };
                    self.error(&[&tls_at[..], &[key(which)]].concat(), e.to_string());
                    None
                }
            }
        });
        Some(Listen { address, tls })
    }
}

/// Whether two listen entries would take the same connections (so the
/// second could never be opened); TCP port 0 is a new port each time.
pub fn same_place(a: &ListenAddress, b: &ListenAddress) -> bool {
    match (a, b) {
        (ListenAddress::Tcp(x), ListenAddress::Tcp(y)) => x == y && x.port() != 0,
        (ListenAddress::Unix { path: x, .. }, ListenAddress::Unix { path: y, .. }) => x == y,
        (ListenAddress::Systemd { name: x }, ListenAddress::Systemd { name: y }) => x == y,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        let dir = Path::new("/etc/hookrunner");
        assert_eq!(
            parse_address("127.0.0.1:9000", dir),
            Ok(ListenAddress::Tcp("127.0.0.1:9000".parse().unwrap()))
        );
        assert_eq!(
            parse_address("[::]:9000", dir),
            Ok(ListenAddress::Tcp("[::]:9000".parse().unwrap()))
        );
        assert_eq!(
            parse_address("unix:run/h.sock", dir),
            Ok(ListenAddress::Unix {
                path: "/etc/hookrunner/run/h.sock".into(),
                mode: 0o660
            })
        );
        assert_eq!(
            parse_address("unix:/run/h.sock", dir),
            Ok(ListenAddress::Unix {
                path: "/run/h.sock".into(),
                mode: 0o660
            })
        );
        assert_eq!(parse_address("systemd", dir), Ok(ListenAddress::Systemd { name: None }));
        assert_eq!(
            parse_address("systemd:https", dir),
            Ok(ListenAddress::Systemd {
                name: Some("https".into())
            })
        );
        for bad in [
            "localhost:9000",
            "9000",
            "unix:",
            "systemd:",
            "systemd:a b",
            "http://1.2.3.4:5",
        ] {
            assert!(parse_address(bad, dir).is_err(), "{bad}");
        }
        let long = format!("unix:/{}", "x".repeat(120));
        assert!(parse_address(&long, dir).unwrap_err().contains("107 bytes"));
    }

    #[test]
    fn modes() {
        let m = |s: &str| parse_mode(&RawMode(s.into()));
        assert_eq!(m("0660"), Ok(0o660));
        assert_eq!(m("660"), Ok(0o660));
        assert_eq!(m("0o600"), Ok(0o600));
        assert_eq!(m("0777"), Ok(0o777));
        for bad in ["", "0o", "0888", "1777", "rw", "+660", "-1"] {
            assert!(m(bad).is_err(), "{bad}");
        }
    }
}
