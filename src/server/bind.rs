//! Opening the sockets `server.listen` names: TCP addresses are bound; Unix
//! socket files are made with their mode (a stale file, with nobody
//! listening, is replaced; one in use is an error) and removed at exit; the
//! sockets systemd passed (`LISTEN_PID`, `LISTEN_FDS`, `LISTEN_FDNAMES`) are
//! adopted, with the `listenfd` crate so that no `unsafe` is needed here.

use super::ServeError;
use crate::config::{Listen, ListenAddress};
use crate::tls::{Certs, Resolver};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An open listening socket.
#[derive(Debug)]
pub enum Socket {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// A socket for one entry of `server.listen`, ready to serve.
#[derive(Debug)]
pub struct Bound {
    pub socket: Socket,
    /// The certificate resolver, when the entry has TLS.
    pub tls: Option<Arc<Resolver>>,
    /// How it is named in the log: `http://127.0.0.1:9000`,
    /// `https://[::]:443`, `unix:/run/hookrunner/hookrunner.sock`.
    pub url: String,
    /// The TCP address it took (the port chosen, for port 0).
    pub tcp: Option<SocketAddr>,
    /// systemd's name for it, when systemd passed it.
    pub systemd: Option<String>,
}

/// The sockets systemd passed this process, by name (`FileDescriptorName=`,
/// the socket unit's name by default).
#[derive(Debug, Default)]
pub struct Passed {
    sockets: Vec<(String, usize, Socket)>,
    /// Passed fds that are not stream sockets.
    unusable: Vec<String>,
}

impl Passed {
    /// Takes the sockets systemd passed, if it passed any to this process,
    /// and clears `LISTEN_*` so handlers do not see them. Call it before
    /// other threads start (it changes the environment).
    pub fn take() -> Passed {
        let mut passed = Passed::default();
        if std::env::var_os("LISTEN_FDS").is_none() {
            return passed;
        }
        let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
            .map(|n| n.split(':').map(str::to_string).collect())
            .unwrap_or_default();
        std::env::remove_var("LISTEN_FDNAMES");
        // Checks LISTEN_PID (systemd's fds are for the process it started),
        // marks the fds close-on-exec, and clears LISTEN_PID and LISTEN_FDS.
        let mut fds = listenfd::ListenFd::from_env();
        for idx in 0..fds.len() {
            let name = names
                .get(idx)
                .filter(|n| !n.is_empty())
                .cloned()
                .unwrap_or_else(|| "unknown".to_string());
            let fd = 3 + idx;
            if let Ok(Some(l)) = fds.take_tcp_listener(idx) {
                passed.sockets.push((name, fd, Socket::Tcp(l)));
            } else if let Ok(Some(l)) = fds.take_unix_listener(idx) {
                passed.sockets.push((name, fd, Socket::Unix(l)));
            } else {
                // Datagram sockets are taken (and so closed) too; anything else stays.
                let _ = fds.take_udp_socket(idx);
                let _ = fds.take_unix_datagram(idx);
                passed.unusable.push(format!("fd {fd} (`{name}`)"));
            }
        }
        passed
    }

    fn names(&self) -> String {
        let all: Vec<String> = self
            .sockets
            .iter()
            .map(|(n, fd, _)| format!("`{n}` (fd {fd})"))
            .collect();
        if all.is_empty() {
            "none".to_string()
        } else {
            all.join(", ")
        }
    }
}

/// The Unix socket files this process made: removed when dropped, each only
/// while it is still the file this process made.
#[derive(Debug, Default)]
pub struct SocketFiles(Vec<(PathBuf, u64, u64)>);

impl Drop for SocketFiles {
    fn drop(&mut self) {
        for (path, dev, ino) in &self.0 {
            match std::fs::symlink_metadata(path) {
                Ok(m) if m.dev() == *dev && m.ino() == *ino => {
                    if let Err(e) = std::fs::remove_file(path) {
                        tracing::warn!(socket = %path.display(), "cannot remove the socket file: {e}");
                    }
                }
                // Gone, or another process's by now.
                _ => {}
            }
        }
    }
}

/// Opens every entry of `listen`, in order: all of them, or none (files made
/// before an error are removed).
pub fn bind(listen: &[Listen], mut passed: Passed) -> Result<(Vec<Bound>, Certs, SocketFiles), ServeError> {
    let mut bound = Vec::new();
    let mut certs = Certs::default();
    let mut files = SocketFiles::default();
    let named: Vec<&str> = listen
        .iter()
        .filter_map(|l| match &l.address {
            ListenAddress::Systemd { name: Some(n) } => Some(n.as_str()),
            _ => None,
        })
        .collect();
    let uses_systemd = listen
        .iter()
        .any(|l| matches!(l.address, ListenAddress::Systemd { .. }));
    for entry in listen {
        let resolver = entry.tls.as_ref().map(|t| Resolver::new(&t.pair));
        certs.0.push(resolver.clone());
        let fail = |reason: String| ServeError::Socket {
            address: entry.address.to_string(),
            reason,
        };
        match &entry.address {
            ListenAddress::Tcp(addr) => {
                let l = TcpListener::bind(addr).map_err(|e| fail(e.to_string()))?;
                bound.push(tcp(l, resolver, None).map_err(|e| fail(e.to_string()))?);
            }
            ListenAddress::Unix { path, mode } => {
                let l = bind_unix(path, *mode, &mut files).map_err(fail)?;
                bound.push(Bound {
                    socket: Socket::Unix(l),
                    tls: None,
                    url: format!("unix:{}", path.display()),
                    tcp: None,
                    systemd: None,
                });
            }
            ListenAddress::Systemd { name } => {
                let mine: Vec<usize> = passed
                    .sockets
                    .iter()
                    .enumerate()
                    .filter(|(_, (n, _, _))| match name {
                        Some(wanted) => n == wanted,
                        None => !named.contains(&n.as_str()),
                    })
                    .map(|(i, _)| i)
                    .collect();
                if mine.is_empty() {
                    let reason = if passed.sockets.is_empty() && passed.unusable.is_empty() {
                        "systemd passed no sockets to this process (LISTEN_FDS and LISTEN_PID are not set for it): start it from a .socket unit".to_string()
                    } else {
                        format!(
                            "systemd passed no stream socket for it (passed: {}{})",
                            passed.names(),
                            if passed.unusable.is_empty() {
                                String::new()
                            } else {
                                format!("; not stream sockets: {}", passed.unusable.join(", "))
                            }
                        )
                    };
                    return Err(fail(reason));
                }
                // Taken from the back, so the indices before stay valid.
                let mut taken = Vec::new();
                for i in mine.into_iter().rev() {
                    taken.push(passed.sockets.remove(i));
                }
                for (n, fd, socket) in taken.into_iter().rev() {
                    let b = match socket {
                        Socket::Tcp(l) => tcp(l, resolver.clone(), Some(n.clone())),
                        Socket::Unix(_) if resolver.is_some() => {
                            return Err(fail(format!(
                                "systemd passed a Unix socket (`{n}`, fd {fd}) and TLS applies to TCP sockets only"
                            )))
                        }
                        Socket::Unix(l) => {
                            let url = l
                                .local_addr()
                                .ok()
                                .and_then(|a| a.as_pathname().map(|p| format!("unix:{}", p.display())))
                                .unwrap_or_else(|| format!("unix:(fd {fd})"));
                            Ok(Bound {
                                socket: Socket::Unix(l),
                                tls: None,
                                url,
                                tcp: None,
                                systemd: Some(n.clone()),
                            })
                        }
                    };
                    bound.push(b.map_err(|e| fail(e.to_string()))?);
                }
            }
        }
    }
    if !passed.sockets.is_empty() || !passed.unusable.is_empty() {
        let mut unused: Vec<String> = passed
            .sockets
            .iter()
            .map(|(n, fd, _)| format!("`{n}` (fd {fd})"))
            .collect();
        unused.extend(passed.unusable.iter().cloned());
        if uses_systemd {
            tracing::warn!(
                "systemd passed sockets that no `systemd:NAME` entry of `server.listen` takes; they are closed: {}",
                unused.join(", ")
            );
        } else {
            tracing::warn!(
                "systemd passed sockets, and `server.listen` does not name `systemd`; they are closed: {}",
                unused.join(", ")
            );
        }
    }
    Ok((bound, certs, files))
}

fn tcp(l: TcpListener, tls: Option<Arc<Resolver>>, systemd: Option<String>) -> std::io::Result<Bound> {
    let addr = l.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    Ok(Bound {
        socket: Socket::Tcp(l),
        tls,
        url: format!("{scheme}://{addr}"),
        tcp: Some(addr),
        systemd,
    })
}

/// Makes the socket file at `path` with `mode`, replacing a stale one.
fn bind_unix(path: &Path, mode: u32, files: &mut SocketFiles) -> Result<UnixListener, String> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => match UnixStream::connect(path) {
            Ok(_) => {
                return Err("another process is listening on this socket (is hookrunner running already?)".to_string())
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                std::fs::remove_file(path).map_err(|e| format!("cannot remove the stale socket file: {e}"))?;
                tracing::info!(socket = %path.display(), "replaced a stale socket file: no process accepted connections on it");
            }
            Err(e) => return Err(format!("cannot tell whether the socket file there is in use: {e}")),
        },
        Ok(_) => return Err("the path exists and is not a socket: remove it or choose another path".to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.to_string()),
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.is_dir()) {
        return Err(format!(
            "the directory `{}` does not exist (under systemd, `RuntimeDirectory=hookrunner` makes /run/hookrunner)",
            dir.display()
        ));
    }
    let l = UnixListener::bind(path).map_err(|e| e.to_string())?;
    let made = std::fs::symlink_metadata(path).map_err(|e| e.to_string())?;
    files.0.push((path.to_path_buf(), made.dev(), made.ino()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot set the socket's mode to {mode:04o}: {e}"))?;
    Ok(l)
}
