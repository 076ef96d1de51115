//! Captured output: the last `limit` bytes of each stream, with truncation
//! marked, and a broadcast of complete lines for live followers.

use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::broadcast;

/// Lines a follower may fall behind before it is told it missed some.
const FOLLOW_BUFFER: usize = 1024;
/// A line longer than this is sent in pieces.
const MAX_LINE: usize = 16 * 1024;

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
}

/// One line of output, without its newline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub stream: Stream,
    pub text: String,
}

/// Both streams of one task. Shared, so output can be read while the task runs.
#[derive(Debug)]
pub struct Output {
    pub stdout: Mutex<Tail>,
    pub stderr: Mutex<Tail>,
    /// Made on the first `follow`: most tasks are never followed, and a channel
    /// holds room for `FOLLOW_BUFFER` lines.
    lines: std::sync::OnceLock<broadcast::Sender<Line>>,
}

impl Output {
    pub fn new(limit: usize) -> Self {
        Output {
            stdout: Mutex::new(Tail::new(limit)),
            stderr: Mutex::new(Tail::new(limit)),
            lines: std::sync::OnceLock::new(),
        }
    }

    fn tail(&self, stream: Stream) -> &Mutex<Tail> {
        match stream {
            Stream::Stdout => &self.stdout,
            Stream::Stderr => &self.stderr,
        }
    }

    /// The complete lines so far, and a receiver for the lines that follow.
    /// Taken under both tails' locks, so no line is in both or in neither.
    pub fn follow(&self) -> (Vec<Line>, broadcast::Receiver<Line>) {
        let out = self.stdout.lock().unwrap_or_else(|p| p.into_inner());
        let err = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        let mut lines = Vec::new();
        for (stream, tail) in [(Stream::Stdout, &out), (Stream::Stderr, &err)] {
            let text = tail.text();
            let complete = match text.rfind('\n') {
                Some(i) => &text[..i],
                None => continue,
            };
            lines.extend(complete.split('\n').map(|l| Line {
                stream,
                text: l.to_string(),
            }));
        }
        let rx = self
            .lines
            .get_or_init(|| broadcast::channel(FOLLOW_BUFFER).0)
            .subscribe();
        drop((out, err));
        (lines, rx)
    }
}

/// The tail of a stream.
#[derive(Debug)]
pub struct Tail {
    buf: VecDeque<u8>,
    limit: usize,
    truncated: bool,
}

impl Tail {
    pub fn new(limit: usize) -> Self {
        Tail {
            buf: VecDeque::new(),
            limit,
            truncated: false,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        let bytes = if bytes.len() > self.limit {
            self.truncated = true;
            self.buf.clear();
            &bytes[bytes.len() - self.limit..]
        } else {
            bytes
        };
        let overflow = (self.buf.len() + bytes.len()).saturating_sub(self.limit);
        if overflow > 0 {
            self.truncated = true;
            self.buf.drain(..overflow);
        }
        self.buf.extend(bytes);
    }

    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// The kept bytes as UTF-8 (invalid bytes replaced). When the front was cut,
    /// a character split by the cut is dropped rather than shown as garbage.
    pub fn text(&self) -> String {
        let (a, b) = self.buf.as_slices();
        let mut bytes = Vec::with_capacity(self.buf.len());
        bytes.extend_from_slice(a);
        bytes.extend_from_slice(b);
        let mut start = 0;
        if self.truncated {
            while start < bytes.len().min(3) && (bytes[start] & 0xC0) == 0x80 {
                start += 1;
            }
        }
        String::from_utf8_lossy(&bytes[start..]).into_owned()
    }
}

/// Reads `pipe` to its end into its tail, broadcasting each complete line.
pub async fn capture(mut pipe: impl AsyncRead + Unpin, output: &Output, stream: Stream) {
    let mut buf = vec![0u8; 8192];
    let mut pending: Vec<u8> = Vec::new();
    // Called under the tail's lock, like `follow`, so a follower sees each line once.
    let send = |bytes: &[u8]| {
        if let Some(lines) = output.lines.get() {
            let _ = lines.send(Line {
                stream,
                text: String::from_utf8_lossy(bytes).into_owned(),
            });
        }
    };
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let mut tail = output.tail(stream).lock().unwrap_or_else(|p| p.into_inner());
                tail.push(&buf[..n]);
                // Lines are sent under the tail's lock, so `follow` sees each once.
                pending.extend_from_slice(&buf[..n]);
                let mut start = 0;
                while let Some(i) = pending[start..].iter().position(|b| *b == b'\n') {
                    send(&pending[start..start + i]);
                    start += i + 1;
                }
                pending.drain(..start);
                while pending.len() > MAX_LINE {
                    let rest = pending.split_off(MAX_LINE);
                    send(&pending);
                    pending = rest;
                }
            }
        }
    }
    if !pending.is_empty() {
        let _tail = output.tail(stream).lock().unwrap_or_else(|p| p.into_inner());
        send(&pending);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_tail_and_marks_truncation() {
        let mut t = Tail::new(8);
        t.push(b"hello");
        assert_eq!((t.text().as_str(), t.truncated()), ("hello", false));
        t.push(b" world");
        assert_eq!((t.text().as_str(), t.truncated()), ("lo world", true));
        t.push(b"0123456789");
        assert_eq!(t.text(), "23456789");
    }

    #[test]
    fn never_starts_with_half_a_character() {
        let mut t = Tail::new(4);
        t.push("a中文".as_bytes()); // 1 + 3 + 3 bytes; the tail cuts into 中
        assert_eq!(t.text(), "文");
        let mut t = Tail::new(16);
        t.push(b"ok \xff end");
        assert_eq!(t.text(), "ok \u{fffd} end");
    }
}
