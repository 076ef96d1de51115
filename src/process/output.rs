//! Handler output in files: each attempt of each task writes its stdout and
//! stderr straight into `<dir>/<task id>.<attempt>.out` and `.err` (the
//! files are the handler's own stdout and stderr, not pipes the daemon
//! reads). So output needs no reader while the task runs, survives a crash
//! of the daemon, and a handler that outlives the daemon keeps writing
//! without an error (a pipe would give it SIGPIPE). The API, the live
//! follow and the finished task's record read the tails of these files.
//!
//! A handler can print more than anyone wants kept: while it runs, the
//! daemon gives back the disk space of everything before the last
//! `keep` bytes (`fallocate` punching a hole, so the file keeps its size
//! and the handler's offset; on a file system without hole punching the
//! file just grows).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            Stream::Stdout => "out",
            Stream::Stderr => "err",
        }
    }
}

/// The directory where output files live.
#[derive(Debug, Clone)]
pub struct OutputDir {
    dir: Arc<PathBuf>,
    /// A pair of files made ahead while the daemon was quiet, so that the
    /// next start need not wait for the file system (BENCHMARKS.md,
    /// delivery-to-start): named `.spare.<pid>.<n>.out`/`.err` until an attempt
    /// takes them and [`OutputDir::settle`] renames them.
    spare: Arc<Mutex<Option<Spare>>>,
    made: Arc<AtomicU64>,
}

#[derive(Debug)]
struct Spare {
    stdout: File,
    stderr: File,
    paths: [PathBuf; 2],
}

/// The files an attempt was given, not yet under its names when they were
/// the spare pair: [`OutputDir::settle`] puts them there.
#[derive(Debug)]
#[must_use = "a spare pair keeps its temporary names until settled"]
pub struct Pending {
    from: Option<[PathBuf; 2]>,
    to: [PathBuf; 2],
}

/// The last bytes of a stream, as text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tail {
    pub text: String,
    /// Earlier output was cut (or dropped).
    pub truncated: bool,
}

impl OutputDir {
    /// Uses (and creates, readable by the daemon's user only) `dir`.
    pub fn open(dir: &Path) -> std::io::Result<OutputDir> {
        std::fs::create_dir_all(dir)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        // Spare pairs of a daemon that is gone (`.spare.<pid>.<n>`); another
        // live daemon's (a directory shared by mistake) are left alone.
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(pid) = name
                    .to_str()
                    .and_then(|n| n.strip_prefix(SPARE))
                    .and_then(|n| n.split('.').next())
                    .and_then(|n| n.parse::<u32>().ok())
                else {
                    continue;
                };
                if pid == std::process::id() || !Path::new(&format!("/proc/{pid}")).exists() {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Ok(OutputDir {
            dir: Arc::new(dir.to_path_buf()),
            spare: Arc::default(),
            made: Arc::default(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The file of one stream of one attempt.
    pub fn file(&self, id: Uuid, attempt: u32, stream: Stream) -> PathBuf {
        self.dir.join(format!("{id}.{attempt}.{}", stream.suffix()))
    }

    /// Empty files for an attempt, the handler's stdout and stderr: the
    /// spare pair if there is one (then [`OutputDir::settle`] names them,
    /// once the handler runs), else new files under their names.
    pub fn create(&self, id: Uuid, attempt: u32) -> std::io::Result<(File, File, Pending)> {
        let to = [
            self.file(id, attempt, Stream::Stdout),
            self.file(id, attempt, Stream::Stderr),
        ];
        if let Some(spare) = self.lock_spare().take() {
            return Ok((
                spare.stdout,
                spare.stderr,
                Pending {
                    from: Some(spare.paths),
                    to,
                },
            ));
        }
        let (stdout, stderr) = (create_new(&to[0])?, create_new(&to[1])?);
        Ok((stdout, stderr, Pending { from: None, to }))
    }

    /// Gives a spare pair its attempt's names (a file left there by an
    /// attempt the daemon did not see end is replaced) and, when `refill`
    /// (nothing waits to start: a burst is not slowed by files made ahead),
    /// makes the next spare pair.
    pub fn settle(&self, pending: Pending, refill: bool) {
        if let Some(from) = pending.from {
            for (from, to) in from.iter().zip(&pending.to) {
                if let Err(e) = std::fs::rename(from, to) {
                    tracing::warn!(file = %to.display(), error = %e, "could not name an attempt's output file; its output will not be shown");
                }
            }
        }
        if refill && self.lock_spare().is_none() {
            let n = self.made.fetch_add(1, Ordering::Relaxed);
            let pid = std::process::id();
            let paths =
                [Stream::Stdout, Stream::Stderr].map(|s| self.dir.join(format!("{SPARE}{pid}.{n}.{}", s.suffix())));
            let remove = |paths: &[PathBuf; 2]| {
                for path in paths {
                    let _ = std::fs::remove_file(path);
                }
            };
            let spare = match (create_new(&paths[0]), create_new(&paths[1])) {
                (Ok(stdout), Ok(stderr)) => Spare { stdout, stderr, paths },
                _ => return remove(&paths),
            };
            let mut slot = self.lock_spare();
            if slot.is_none() {
                *slot = Some(spare);
            } else {
                drop(slot);
                remove(&spare.paths);
            }
        }
    }

    fn lock_spare(&self) -> std::sync::MutexGuard<'_, Option<Spare>> {
        self.spare.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The last `limit` bytes of a stream of an attempt; empty if there is no file.
    pub fn tail(&self, id: Uuid, attempt: u32, stream: Stream, limit: usize) -> Tail {
        read_tail(&self.file(id, attempt, stream), limit).unwrap_or_default()
    }

    /// The whole file of a stream (what is left of it), if there is one.
    pub fn read_all(&self, id: Uuid, attempt: u32, stream: Stream) -> Option<Vec<u8>> {
        self.read_kept(id, attempt, stream, u64::MAX).map(|(bytes, _)| bytes)
    }

    /// What is left of a stream's file: the bytes after the hole that
    /// trimming punched at its front (never the hole's zeros), at most its
    /// last `max`, and how many bytes before them were left out. (`max`
    /// bounds the read where the file system cannot punch holes, and the
    /// file grows whole.)
    pub fn read_kept(&self, id: Uuid, attempt: u32, stream: Stream, max: u64) -> Option<(Vec<u8>, u64)> {
        let mut file = File::open(self.file(id, attempt, stream)).ok()?;
        let len = file.metadata().ok()?.len();
        use nix::unistd::{lseek, Whence};
        // ENXIO: no data at all (empty, or all of it punched).
        let start = match lseek(&file, 0, Whence::SeekData) {
            Ok(at) => (at.max(0) as u64).min(len),
            Err(nix::errno::Errno::ENXIO) => len,
            Err(_) => 0,
        }
        .max(len.saturating_sub(max));
        file.seek(SeekFrom::Start(start)).ok()?;
        let mut bytes = Vec::with_capacity((len - start) as usize);
        file.read_to_end(&mut bytes).ok()?;
        if start > 0 {
            // A character the hole cut in two is dropped, not shown as garbage.
            let begin = bytes.iter().take(3).take_while(|b| (**b & 0xC0) == 0x80).count();
            bytes.drain(..begin);
        }
        Some((bytes, start))
    }

    /// The last `limit` bytes of a stream of an attempt, as written (a
    /// character split by the cut is dropped), and whether the front was
    /// cut; `None` if there is no file.
    pub fn read_last(&self, id: Uuid, attempt: u32, stream: Stream, limit: usize) -> Option<(Vec<u8>, bool)> {
        let mut file = File::open(self.file(id, attempt, stream)).ok()?;
        let len = file.metadata().ok()?.len();
        let start = len.saturating_sub(limit as u64);
        file.seek(SeekFrom::Start(start)).ok()?;
        let mut bytes = Vec::with_capacity((len - start) as usize);
        file.take(limit as u64).read_to_end(&mut bytes).ok()?;
        if start > 0 {
            let partial = bytes.iter().take(3).take_while(|b| (*b & 0xC0) == 0x80).count();
            bytes.drain(..partial);
        }
        Some((bytes, start > 0))
    }

    /// Deletes every output file of a task (attempts are numbered from 1 without gaps).
    pub fn remove(&self, id: Uuid) {
        for attempt in 1.. {
            let mut any = false;
            for stream in [Stream::Stdout, Stream::Stderr] {
                any |= std::fs::remove_file(self.file(id, attempt, stream)).is_ok();
            }
            if !any {
                break;
            }
        }
    }

    /// Deletes every attempt's `param_files` directory (`<task id>.<attempt>.files`):
    /// at start, when no attempt of this daemon runs. Returns how many went.
    pub fn sweep_param_files(&self) -> usize {
        let Ok(entries) = std::fs::read_dir(&*self.dir) else {
            return 0;
        };
        entries
            .flatten()
            .filter(|e| e.file_name().to_str().is_some_and(|n| n.ends_with(".files")))
            .filter(|e| std::fs::remove_dir_all(e.path()).is_ok())
            .count()
    }

    /// Deletes the files of tasks `keep` says no to (at start: files whose task is gone).
    pub fn sweep(&self, keep: impl Fn(Uuid) -> bool) -> usize {
        let Ok(entries) = std::fs::read_dir(&*self.dir) else {
            return 0;
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let id = name
                .to_str()
                .and_then(|n| n.split('.').next())
                .and_then(|n| n.parse::<Uuid>().ok());
            if id.is_some_and(|id| !keep(id)) && std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        removed
    }
}

/// The prefix of a spare pair's file names (never a task id).
const SPARE: &str = ".spare.";

/// A new, empty output file; one left by an attempt the daemon did not see
/// end is replaced (removed only then: one lookup fewer on every start).
fn create_new(path: &Path) -> std::io::Result<File> {
    let create = || OpenOptions::new().append(true).create_new(true).mode(0o600).open(path);
    create().or_else(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => {
            std::fs::remove_file(path)?;
            create()
        }
        _ => Err(e),
    })
}

/// The last `limit` bytes of `path` as UTF-8 (invalid bytes replaced); a
/// character split by the cut is dropped rather than shown as garbage.
pub fn read_tail(path: &Path, limit: usize) -> std::io::Result<Tail> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let start = len.saturating_sub(limit as u64);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::with_capacity((len - start) as usize);
    file.take(limit as u64).read_to_end(&mut bytes)?;
    Ok(tail_of(&bytes, start > 0))
}

/// Text of the kept bytes; when the front was cut, a partial character there is dropped.
pub fn tail_of(bytes: &[u8], truncated: bool) -> Tail {
    let mut begin = 0;
    if truncated {
        while begin < bytes.len().min(3) && (bytes[begin] & 0xC0) == 0x80 {
            begin += 1;
        }
    }
    Tail {
        text: String::from_utf8_lossy(&bytes[begin..]).into_owned(),
        truncated,
    }
}

/// Frees the disk space of a running handler's output file before its last
/// `keep` bytes. `punched` is how far it has been freed already.
/// How much more than it keeps a trimmed file may hold: [`trim`] punches
/// whole pages, and only once 256 KiB can be given back.
pub const TRIM_SLACK: u64 = 256 * 1024 + 4096;

pub fn trim(file: &File, keep: u64, punched: &mut u64) {
    const PAGE: u64 = 4096;
    // Only once a good amount can be given back: one call per 256 KiB at most.
    const SLACK: u64 = 256 * 1024;
    let Ok(len) = file.metadata().map(|m| m.len()) else {
        return;
    };
    let end = len.saturating_sub(keep) / PAGE * PAGE;
    if end < *punched + SLACK {
        return;
    }
    use nix::fcntl::{fallocate, FallocateFlags};
    let flags = FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE;
    if fallocate(file, flags, *punched as i64, (end - *punched) as i64).is_ok() {
        *punched = end;
    } else {
        // Not supported here: stop trying.
        *punched = u64::MAX / 2;
    }
}

/// One line of output, without its newline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub stream: Stream,
    pub text: String,
}

/// Reads the lines a stream's file has gained since `offset` (complete lines
/// only, unless `all`); a line longer than `max_line` comes in pieces.
pub struct Follower {
    path: PathBuf,
    stream: Stream,
    offset: u64,
    pending: Vec<u8>,
}

/// A line longer than this is sent in pieces.
const MAX_LINE: usize = 16 * 1024;

impl Follower {
    /// Follows `path` from `offset` (lines that start before it are not sent).
    pub fn new(path: PathBuf, stream: Stream, offset: u64) -> Self {
        Follower {
            path,
            stream,
            offset,
            pending: Vec::new(),
        }
    }

    /// New complete lines (and, with `flush`, the last one without its
    /// newline), and how many bytes were skipped because the file no longer
    /// holds them (a follower that fell behind the trimming, see [`trim`]).
    pub fn poll(&mut self, flush: bool) -> (Vec<Line>, u64) {
        let mut lines = Vec::new();
        let mut missed = 0;
        if let Ok(mut file) = File::open(&self.path) {
            let len = file.metadata().map(|m| m.len()).unwrap_or(0);
            // A hole punched by `trim` holds nothing to read: skip to the data.
            if self.offset < len {
                use nix::unistd::{lseek, Whence};
                if let Ok(data) = lseek(&file, self.offset as i64, Whence::SeekData) {
                    let data = data as u64;
                    if data > self.offset {
                        missed = data - self.offset + self.pending.len() as u64;
                        self.pending.clear();
                        self.offset = data;
                    }
                }
            }
            if len > self.offset && file.seek(SeekFrom::Start(self.offset)).is_ok() {
                let mut buf = Vec::new();
                if file.take(len - self.offset).read_to_end(&mut buf).is_ok() {
                    self.offset += buf.len() as u64;
                    self.pending.extend_from_slice(&buf);
                }
            }
        }
        let mut start = 0;
        while let Some(i) = self.pending[start..].iter().position(|b| *b == b'\n') {
            self.push(&mut lines, start, start + i);
            start += i + 1;
        }
        self.pending.drain(..start);
        while self.pending.len() > MAX_LINE {
            let rest = self.pending.split_off(MAX_LINE);
            self.push(&mut lines, 0, MAX_LINE);
            self.pending = rest;
        }
        if flush && !self.pending.is_empty() {
            self.push(&mut lines, 0, self.pending.len());
            self.pending.clear();
        }
        (lines, missed)
    }

    fn push(&self, lines: &mut Vec<Line>, from: usize, to: usize) {
        lines.push(Line {
            stream: self.stream,
            text: String::from_utf8_lossy(&self.pending[from..to]).into_owned(),
        });
    }
}

/// Where a follower should start so it sends at most the last `limit` bytes
/// already written (from the start of a line).
pub fn follow_start(path: &Path, limit: usize) -> u64 {
    let Ok(mut file) = File::open(path) else { return 0 };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(limit as u64);
    if start == 0 {
        return 0;
    }
    // Begin after the first newline at or past `start`.
    let mut buf = Vec::new();
    if file.seek(SeekFrom::Start(start)).is_ok() && file.take(limit as u64).read_to_end(&mut buf).is_ok() {
        if let Some(i) = buf.iter().position(|b| *b == b'\n') {
            return start + i as u64 + 1;
        }
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn the_last_bytes_are_raw_and_never_start_with_half_a_character() {
        let dir = tempfile::tempdir().unwrap();
        let out = OutputDir::open(dir.path()).unwrap();
        let id = Uuid::new_v4();
        assert_eq!(out.read_last(id, 1, Stream::Stdout, 8), None);
        let (mut file, _, _) = out.create(id, 1).unwrap();
        file.write_all(b"a\xe4\xb8\xad\xe6\x96\x87 \xff!").unwrap(); // a中文, a space, a stray byte
        assert_eq!(
            out.read_last(id, 1, Stream::Stdout, 64),
            Some((b"a\xe4\xb8\xad\xe6\x96\x87 \xff!".to_vec(), false))
        );
        // A cut into 中 drops its remains, not the bytes that follow.
        assert_eq!(
            out.read_last(id, 1, Stream::Stdout, 8),
            Some((b"\xe6\x96\x87 \xff!".to_vec(), true))
        );
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn an_attempt_left_behind_is_replaced_by_empty_files() {
        let dir = tempfile::tempdir().unwrap();
        let out = OutputDir::open(dir.path()).unwrap();
        let id = Uuid::new_v4();
        for refill in [false, true, false] {
            // Left behind: first made under its names, then from the spare pair.
            let (mut stdout, mut stderr, pending) = out.create(id, 1).unwrap();
            out.settle(pending, refill);
            stdout.write_all(b"from a run the daemon did not see end").unwrap();
            stderr.write_all(b"its errors").unwrap();
            drop((stdout, stderr));
            let (mut stdout, _, pending) = out.create(id, 1).unwrap();
            out.settle(pending, false);
            assert_eq!(out.read_all(id, 1, Stream::Stdout), Some(Vec::new()));
            assert_eq!(out.read_all(id, 1, Stream::Stderr), Some(Vec::new()));
            stdout.write_all(b"new").unwrap();
            assert_eq!(out.read_all(id, 1, Stream::Stdout), Some(b"new".to_vec()));
        }
    }

    #[test]
    fn a_file_that_was_never_trimmed_is_read_from_its_last_bytes_only() {
        let dir = tempfile::tempdir().unwrap();
        let out = OutputDir::open(dir.path()).unwrap();
        let id = Uuid::new_v4();
        let (mut stdout, _, pending) = out.create(id, 1).unwrap();
        out.settle(pending, false);
        stdout.write_all("é".repeat(50).as_bytes()).unwrap();
        // 100 bytes; the last 11 start inside a character, which is dropped.
        let (bytes, skipped) = out.read_kept(id, 1, Stream::Stdout, 11).unwrap();
        assert_eq!((String::from_utf8(bytes).unwrap(), skipped), ("é".repeat(5), 89));
    }

    #[test]
    fn a_spare_pair_made_while_quiet_becomes_the_next_attempts_files() {
        let dir = tempfile::tempdir().unwrap();
        let out = OutputDir::open(dir.path()).unwrap();
        let (first, second) = (Uuid::new_v4(), Uuid::new_v4());
        let (_, _, pending) = out.create(first, 1).unwrap();
        out.settle(pending, true);
        assert_eq!(
            names(dir.path()),
            [
                format!(".spare.{}.0.err", std::process::id()),
                format!(".spare.{}.0.out", std::process::id()),
                format!("{first}.1.err"),
                format!("{first}.1.out")
            ]
        );
        // The next attempt gets the spare files: what it writes before they are
        // settled is under its names afterwards; a busy daemon makes no new pair.
        let (mut stdout, mut stderr, pending) = out.create(second, 2).unwrap();
        stdout.write_all(b"out").unwrap();
        stderr.write_all(b"err").unwrap();
        out.settle(pending, false);
        assert_eq!(out.read_all(second, 2, Stream::Stdout), Some(b"out".to_vec()));
        assert_eq!(out.read_all(second, 2, Stream::Stderr), Some(b"err".to_vec()));
        assert!(
            names(dir.path()).iter().all(|n| !n.starts_with(SPARE)),
            "{:?}",
            names(dir.path())
        );
        // A spare pair a stopped daemon left is removed when the directory is
        // opened again; a live daemon's (pid 1 here) is not.
        let (_, _, pending) = out.create(first, 2).unwrap();
        out.settle(pending, true);
        assert_eq!(names(dir.path()).iter().filter(|n| n.starts_with(SPARE)).count(), 2);
        drop(out);
        std::fs::write(dir.path().join(format!(".spare.{}.7.out", u32::MAX)), b"").unwrap();
        std::fs::write(dir.path().join(".spare.1.7.out"), b"").unwrap();
        let _again = OutputDir::open(dir.path()).unwrap();
        let spares: Vec<String> = names(dir.path()).into_iter().filter(|n| n.starts_with(SPARE)).collect();
        assert_eq!(spares, [".spare.1.7.out"]);
        assert_eq!(names(dir.path()).len(), 7, "the attempts' own files stay");
    }

    #[test]
    fn tails_keep_the_end_and_never_start_with_half_a_character() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "hello world").unwrap();
        assert_eq!(
            read_tail(&path, 64).unwrap(),
            Tail {
                text: "hello world".into(),
                truncated: false
            }
        );
        assert_eq!(
            read_tail(&path, 8).unwrap(),
            Tail {
                text: "lo world".into(),
                truncated: true
            }
        );
        std::fs::write(&path, "a中文").unwrap(); // 1 + 3 + 3 bytes; a tail of 4 cuts into 中
        assert_eq!(read_tail(&path, 4).unwrap().text, "文");
        std::fs::write(&path, b"ok \xff end").unwrap();
        assert_eq!(read_tail(&path, 64).unwrap().text, "ok \u{fffd} end");
    }

    #[test]
    fn a_follower_sends_each_line_once() {
        let dir = tempfile::tempdir().unwrap();
        let out = OutputDir::open(dir.path()).unwrap();
        let id = Uuid::new_v4();
        let (mut stdout, _stderr, _) = out.create(id, 1).unwrap();
        let mut f = Follower::new(out.file(id, 1, Stream::Stdout), Stream::Stdout, 0);
        stdout.write_all(b"one\ntw").unwrap();
        let texts = |(lines, missed): (Vec<Line>, u64)| {
            assert_eq!(missed, 0);
            lines.into_iter().map(|l| l.text).collect::<Vec<_>>()
        };
        assert_eq!(texts(f.poll(false)), ["one"]);
        stdout.write_all(b"o\nthree").unwrap();
        assert_eq!(texts(f.poll(false)), ["two"]);
        assert_eq!(texts(f.poll(true)), ["three"]);
        assert!(f.poll(true).0.is_empty());
    }

    #[test]
    fn trimming_frees_the_front_and_keeps_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let out = OutputDir::open(dir.path()).unwrap();
        let id = Uuid::new_v4();
        let (mut stdout, _, _) = out.create(id, 1).unwrap();
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..4 {
            stdout.write_all(&chunk).unwrap();
        }
        stdout.write_all(b"\nlast line\n").unwrap();
        let mut punched = 0;
        trim(&stdout, 64 * 1024, &mut punched);
        let path = out.file(id, 1, Stream::Stdout);
        // The size stays (the handler's offset is untouched); the tail reads the same.
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 4 * (1 << 20) + 11);
        assert!(out.tail(id, 1, Stream::Stdout, 64).text.ends_with("last line\n"));
        stdout.write_all(b"more\n").unwrap();
        assert!(out.tail(id, 1, Stream::Stdout, 64).text.ends_with("last line\nmore\n"));
        // A follower from the start skips the freed part and says how much.
        let mut f = Follower::new(path.clone(), Stream::Stdout, 0);
        let (lines, missed) = f.poll(false);
        assert!(missed >= 3 * (1 << 20), "{missed}");
        assert_eq!(lines.last().unwrap().text, "more");
        out.remove(id);
        assert!(!path.exists());
    }
}
