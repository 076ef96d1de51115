//! The files of multipart deliveries: each file part a task's params point
//! at is saved as `<root>/<delivery>/<n>-<file name>` (directories 0700,
//! files 0600), where `<delivery>` is the delivery's record id.
//!
//! A file is written when its delivery is admitted, and written again from
//! the task's stored body when a task is about to start and finds it missing
//! (another node, a restart). A delivery's directory is removed when the
//! last of its tasks on this node ends, and by [`Uploads::sweep`] (at start,
//! and now and then) when no unfinished task needs it. Removing one is
//! always safe: whatever still needs it writes it again.

use super::multipart::{self, File};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Where the files of multipart deliveries are kept.
#[derive(Debug, Clone)]
pub struct Uploads {
    root: Arc<PathBuf>,
}

impl Uploads {
    pub fn new(root: PathBuf) -> Self {
        Uploads { root: Arc::new(root) }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of the delivery whose record id is `record_id`: the id
    /// itself when it is a safe file name, else a hash of it.
    pub fn dir_for(&self, record_id: &str) -> PathBuf {
        self.root.join(dir_name(record_id))
    }

    /// Writes `files` (parts of `body`) that `params` point at; the others
    /// are not needed by anything. Returns how many were written.
    pub fn write(&self, body: &[u8], files: &[File], params: &[&[(String, Value)]]) -> std::io::Result<usize> {
        let mut written = 0;
        for file in files {
            if params.iter().any(|p| mentions(p, &file.path)) {
                write_file(&file.path, &body[file.bytes.clone()])?;
                written += 1;
            }
        }
        Ok(written)
    }

    /// Before a task of delivery `record_id` starts: writes again, from its
    /// stored `body`, every file of that delivery its `params` point at that
    /// is missing. The parts are those of `boundary` (the delivery's, kept
    /// with the task); a task stored before the boundary was kept has its
    /// body searched for a delimiter whose parts hold every wanted file.
    /// Returns how many were written.
    pub fn restore(
        &self,
        record_id: &str,
        body: &[u8],
        boundary: Option<&str>,
        params: &[(String, Value)],
    ) -> std::io::Result<usize> {
        let dir = self.dir_for(record_id);
        let mut wanted = Vec::new();
        for (_, value) in params {
            paths_under(value, &dir, &mut wanted);
        }
        wanted.retain(|p| !p.exists());
        if wanted.is_empty() {
            return Ok(0);
        }
        let name_of = |path: &PathBuf| path.file_name().and_then(|n| n.to_str()).unwrap_or("").to_string();
        let find = |parts: &'_ [multipart::Part], name: &str| -> Option<multipart::Part> {
            parts
                .iter()
                .find(|p| {
                    p.filename
                        .as_deref()
                        .is_some_and(|f| multipart::file_name(p.index, f) == name)
                })
                .cloned()
        };
        let parts = match boundary {
            Some(boundary) => multipart::parse(body, boundary).unwrap_or_default(),
            // The parts that hold every file looked for.
            None => multipart::parse_stored(body, |parts| wanted.iter().all(|w| find(parts, &name_of(w)).is_some()))
                .unwrap_or_default(),
        };
        let mut written = 0;
        for path in wanted {
            let part = find(&parts, &name_of(&path));
            if let Some(part) = part {
                write_file(&path, &body[part.bytes.clone()])?;
                written += 1;
            }
        }
        Ok(written)
    }

    /// Whether any of `params` points at a file of delivery `record_id`.
    pub fn used_by(&self, record_id: &str, params: &[(String, Value)]) -> bool {
        let dir = self.dir_for(record_id);
        let mut found = Vec::new();
        params.iter().any(|(_, v)| {
            paths_under(v, &dir, &mut found);
            !found.is_empty()
        })
    }

    /// Removes the directory of delivery `record_id`, if there is one.
    pub fn remove(&self, record_id: &str) {
        let _ = std::fs::remove_dir_all(self.dir_for(record_id));
    }

    /// Removes every delivery directory older than `min_age` that `keep`
    /// (given the record ids' directory names) does not keep. Returns how many went.
    pub fn sweep(&self, min_age: Duration, keep: impl Fn(&str) -> bool) -> usize {
        let Ok(entries) = std::fs::read_dir(&*self.root) else {
            return 0;
        };
        let now = SystemTime::now();
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| now.duration_since(t).is_ok_and(|age| age >= min_age));
            if old && !keep(name) && std::fs::remove_dir_all(entry.path()).is_ok() {
                removed += 1;
            }
        }
        removed
    }
}

/// The directory name of a record id: the id when it is made of letters,
/// digits, `.`, `-` and `_` (at most 128, not starting with a dot), else
/// `sha256-` and the first 32 hex digits of its SHA-256.
pub fn dir_name(record_id: &str) -> String {
    let safe = !record_id.is_empty()
        && record_id.len() <= 128
        && !record_id.starts_with('.')
        && record_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if safe {
        record_id.to_string()
    } else {
        format!("sha256-{}", &hex::encode(Sha256::digest(record_id.as_bytes()))[..32])
    }
}

/// Whether `value` (or a string anywhere inside it) is `path`.
fn mentions(params: &[(String, Value)], path: &Path) -> bool {
    let Some(dir) = path.parent() else { return false };
    let mut found = Vec::new();
    for (_, value) in params {
        paths_under(value, dir, &mut found);
    }
    found.iter().any(|p| p == path)
}

/// Collects the strings in `value` that name a file directly in `dir`.
fn paths_under(value: &Value, dir: &Path, out: &mut Vec<PathBuf>) {
    match value {
        Value::String(s) => {
            let path = Path::new(s);
            if path.parent() == Some(dir) && path.file_name().is_some() {
                out.push(path.to_path_buf());
            }
        }
        Value::Array(items) => items.iter().for_each(|v| paths_under(v, dir, out)),
        Value::Object(fields) => fields.values().for_each(|v| paths_under(v, dir, out)),
        _ => {}
    }
}

/// Writes one file (0600), creating its directory and the root (0700).
fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::os::unix::fs::PermissionsExt;

    const BODY: &[u8] = b"--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.txt\"\r\n\r\nAAA\r\n--b\r\nContent-Disposition: form-data; name=\"g\"; filename=\"b.txt\"\r\n\r\nBBB\r\n--b--\r\n";

    #[test]
    fn written_when_wanted_restored_when_missing_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let uploads = Uploads::new(tmp.path().join("uploads"));
        let dir = uploads.dir_for("d-1");
        let parts = multipart::parse(BODY, "b").unwrap();
        let (payload, files) = multipart::payload(BODY, &parts, &dir).unwrap();
        // Only `f` is in a param (inside the whole payload too).
        let params = vec![("file".to_string(), payload["f"].clone()), ("n".to_string(), json!(1))];
        assert_eq!(uploads.write(BODY, &files, &[&params]).unwrap(), 1);
        let f = dir.join("0-a.txt");
        assert_eq!(std::fs::read(&f).unwrap(), b"AAA");
        assert!(!dir.join("1-b.txt").exists());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(&f), mode(&dir), mode(uploads.root())), (0o600, 0o700, 0o700));
        assert!(uploads.used_by("d-1", &params));
        assert!(!uploads.used_by("d-2", &params));

        uploads.remove("d-1");
        assert!(!dir.exists());
        let whole = vec![("all".to_string(), payload.clone())];
        assert_eq!(uploads.restore("d-1", BODY, Some("b"), &whole).unwrap(), 2);
        assert_eq!(std::fs::read(dir.join("1-b.txt")).unwrap(), b"BBB");
        assert_eq!(
            uploads.restore("d-1", BODY, Some("b"), &whole).unwrap(),
            0,
            "nothing missing"
        );

        assert_eq!(uploads.sweep(Duration::ZERO, |name| name == "d-1"), 0);
        assert_eq!(uploads.sweep(Duration::from_secs(3600), |_| false), 0, "too new");
        assert_eq!(uploads.sweep(Duration::ZERO, |_| false), 1);
        assert!(!dir.exists());
    }

    #[test]
    fn a_file_is_restored_from_the_delivery_s_own_parts_whatever_the_preamble_holds() {
        // The preamble (ignored by the real boundary) holds a second layout
        // with a file of the same name at the same place.
        let body: &[u8] =
            b"--fake\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.txt\"\r\n\r\nFAKE\r\n--fake--\r\n\
            --real\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.txt\"\r\n\r\nREAL\r\n--real--\r\n";
        let tmp = tempfile::tempdir().unwrap();
        let uploads = Uploads::new(tmp.path().join("uploads"));
        let dir = uploads.dir_for("d-1");
        let parts = multipart::parse(body, "real").unwrap();
        let (payload, _) = multipart::payload(body, &parts, &dir).unwrap();
        let params = vec![("file".to_string(), payload["f"].clone())];
        let file = dir.join("0-a.txt");
        assert_eq!(uploads.restore("d-1", body, Some("real"), &params).unwrap(), 1);
        assert_eq!(std::fs::read(&file).unwrap(), b"REAL");
        // A task stored without its boundary can only search the body.
        std::fs::remove_file(&file).unwrap();
        assert_eq!(uploads.restore("d-1", body, None, &params).unwrap(), 1);
        assert_eq!(std::fs::read(&file).unwrap(), b"FAKE");
    }

    #[test]
    fn directory_names_are_safe() {
        assert_eq!(dir_name("0f3a5c1e-1111-2222"), "0f3a5c1e-1111-2222");
        for unsafe_id in ["../x", "a/b", ".hidden", "", "a b"] {
            let name = dir_name(unsafe_id);
            assert!(name.starts_with("sha256-") && name.len() == 39, "{unsafe_id}: {name}");
        }
        assert_ne!(dir_name("a/b"), dir_name("a/c"));
    }
}
