//! Captured output: the last `limit` bytes of a stream, with truncation marked.

use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Both streams of one task. Shared, so output can be read while the task runs.
#[derive(Debug)]
pub struct Output {
    pub stdout: Mutex<Tail>,
    pub stderr: Mutex<Tail>,
}

impl Output {
    pub fn new(limit: usize) -> Self {
        Output { stdout: Mutex::new(Tail::new(limit)), stderr: Mutex::new(Tail::new(limit)) }
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
        Tail { buf: VecDeque::new(), limit, truncated: false }
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

/// Reads `stream` to its end into `tail`.
pub async fn capture(mut stream: impl AsyncRead + Unpin, tail: &Mutex<Tail>) {
    let mut buf = vec![0u8; 8192];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => tail.lock().unwrap_or_else(|p| p.into_inner()).push(&buf[..n]),
        }
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
