//! `param_files`: params written to files for one attempt of a task, in a
//! directory of that attempt's own (0700, files 0600), whose paths the
//! handler gets in the variables the program names. The directory goes
//! when the attempt ends (when the [`ParamFiles`] is dropped).

use super::program::{Invocation, ParamFile, Unrunnable};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Why an attempt's `param_files` could not be written (the attempt does not start).
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error(transparent)]
    Value(#[from] Unrunnable),
    #[error("could not create the directory for `param_files` `{}`: {source}", dir.display())]
    Dir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`param_files` `{0}` is not a file name")]
    NotAFileName(String),
    #[error("could not write `param_files` `{}`: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The files of one attempt; dropping it removes them.
#[derive(Debug, Default)]
pub struct ParamFiles {
    dir: Option<PathBuf>,
    env: Vec<(String, String)>,
}

impl ParamFiles {
    /// Writes each entry's value (a missing or `null` param: no file, no
    /// variable) into `dir`, created if anything is written.
    pub fn write(dir: &Path, entries: &[ParamFile], inv: &Invocation<'_>) -> Result<ParamFiles, FilesError> {
        let mut files = ParamFiles::default();
        for entry in entries {
            let Some(contents) = entry.contents(inv) else { continue };
            let contents = contents?;
            if files.dir.is_none() {
                std::fs::DirBuilder::new()
                    .mode(0o700)
                    .create(dir)
                    .or_else(|e| match e.kind() {
                        // Left by an attempt the daemon did not see end.
                        std::io::ErrorKind::AlreadyExists => Ok(()),
                        _ => Err(e),
                    })
                    .map_err(|source| FilesError::Dir {
                        dir: dir.to_path_buf(),
                        source,
                    })?;
                files.dir = Some(dir.to_path_buf());
            }
            // The name is a file of this directory, never a path out of it
            // (the config refuses such names; this holds whatever reaches here).
            let mut parts = Path::new(&entry.var).components();
            if !matches!(
                (parts.next(), parts.next()),
                (Some(std::path::Component::Normal(_)), None)
            ) {
                return Err(FilesError::NotAFileName(entry.var.clone()));
            }
            let path = dir.join(&entry.var);
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&path)
                .and_then(|mut f| f.write_all(&contents))
                .map_err(|source| FilesError::Write {
                    path: path.clone(),
                    source,
                })?;
            files.env.push((entry.var.clone(), path.display().to_string()));
        }
        Ok(files)
    }

    /// The variables naming the files.
    pub fn env(&self) -> impl Iterator<Item = (String, String)> + '_ {
        self.env.iter().cloned()
    }
}

impl Drop for ParamFiles {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use std::os::unix::fs::PermissionsExt;

    fn inv(params: &[(String, Value)]) -> Invocation<'_> {
        Invocation {
            source: "s",
            event: "e",
            task_id: "t",
            delivery_id: "d",
            request_id: "r",
            payload: b"",
            params,
        }
    }

    #[test]
    fn files_for_present_params_removed_when_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("t.1.files");
        let params = vec![
            ("text".to_string(), json!("hello")),
            ("blob".to_string(), json!("aGVsbG8")),
            ("obj".to_string(), json!({"a": 1})),
            ("gone".to_string(), Value::Null),
        ];
        let entry = |var: &str, param: &str, base64| ParamFile {
            var: var.into(),
            param: param.into(),
            base64,
        };
        let entries = [
            entry("TEXT_FILE", "text", false),
            entry("BLOB", "blob", true),
            entry("OBJ", "obj", false),
            entry("GONE", "gone", false),
            entry("MISSING", "nope", true),
        ];
        let files = ParamFiles::write(&dir, &entries, &inv(&params)).unwrap();
        let env: Vec<(String, String)> = files.env().collect();
        assert_eq!(
            env.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            ["TEXT_FILE", "BLOB", "OBJ"]
        );
        let read = |var: &str| std::fs::read(dir.join(var)).unwrap();
        assert_eq!(read("TEXT_FILE"), b"hello");
        assert_eq!(read("BLOB"), b"hello", "padding is optional");
        assert_eq!(read("OBJ"), br#"{"a":1}"#);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(&dir), mode(&dir.join("BLOB"))), (0o700, 0o600));
        drop(files);
        assert!(!dir.exists());

        // Nothing to write: no directory.
        let none = ParamFiles::write(&dir, &entries[3..4], &inv(&params)).unwrap();
        assert_eq!(none.env().count(), 0);
        assert!(!dir.exists());

        let bad = vec![("blob".to_string(), json!("not base64!"))];
        let err = ParamFiles::write(&dir, &entries[1..2], &inv(&bad)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "param `blob` is not base64, and `param_files` says it is"
        );
    }
}
