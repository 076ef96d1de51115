//! A reader of Server-Sent Events (`text/event-stream`), one event at a time.

use std::io::{BufRead, BufReader, Read};

/// One event: its name (`message` when the stream gave none), its data
/// (the `data:` lines joined with `\n`), and its `id:` if it had one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub name: String,
    pub data: String,
    pub id: Option<String>,
}

/// The most bytes one event may take, with its field names and line ends.
const MAX_EVENT: u64 = 16 << 20;

pub struct Reader<R> {
    lines: BufReader<R>,
}

impl<R: Read> Reader<R> {
    pub fn new(inner: R) -> Self {
        Reader {
            lines: BufReader::new(inner),
        }
    }

    /// The next event; `None` at the end of the stream.
    pub fn next_event(&mut self) -> std::io::Result<Option<Event>> {
        let mut name: Option<String> = None;
        let mut data: Option<String> = None;
        let mut id: Option<String> = None;
        let mut raw = Vec::new();
        let mut size = 0u64;
        loop {
            raw.clear();
            // One event is bounded: a stream that never ends a line (or an
            // event) is an error, not a buffer that grows without end.
            let read = (&mut self.lines)
                .take(MAX_EVENT + 1 - size)
                .read_until(b'\n', &mut raw)?;
            size += read as u64;
            if size > MAX_EVENT {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("an event of the stream is larger than {} MiB", MAX_EVENT >> 20),
                ));
            }
            if read == 0 {
                // A last event without its blank line still counts.
                return Ok(data.map(|data| Event {
                    name: name.unwrap_or_else(|| "message".into()),
                    data,
                    id,
                }));
            }
            let line = String::from_utf8_lossy(&raw);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                match data.take() {
                    Some(data) => {
                        return Ok(Some(Event {
                            name: name.take().unwrap_or_else(|| "message".into()),
                            data,
                            id: id.take(),
                        }));
                    }
                    None => {
                        name = None;
                        id = None;
                        size = 0;
                        continue;
                    }
                }
            }
            if line.starts_with(':') {
                // Keep-alive comments between events count towards none.
                if data.is_none() && name.is_none() && id.is_none() {
                    size = 0;
                }
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line, ""),
            };
            match field {
                "event" => name = Some(value.to_string()),
                "id" => id = Some(value.to_string()),
                "data" => match &mut data {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(value);
                    }
                    None => data = Some(value.to_string()),
                },
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_comments_and_multiline_data() {
        let text = ": hello\nevent: stdout\ndata: one\n\nid: 7\nevent: stderr\ndata:two\ndata: three\n\ndata: plain\n\nevent: status\ndata: {\"status\":\"succeeded\"}";
        let mut r = Reader::new(text.as_bytes());
        let mut got = Vec::new();
        while let Some(e) = r.next_event().unwrap() {
            got.push((e.name, e.data, e.id));
        }
        assert_eq!(
            got,
            vec![
                ("stdout".into(), "one".into(), None),
                ("stderr".into(), "two\nthree".into(), Some("7".into())),
                ("message".into(), "plain".into(), None),
                ("status".into(), "{\"status\":\"succeeded\"}".into(), None),
            ]
        );
    }

    #[test]
    fn an_endless_line_is_an_error_not_endless_memory() {
        let endless = std::io::repeat(b'x');
        let mut r = Reader::new(endless);
        let err = r.next_event().unwrap_err();
        assert!(err.to_string().contains("larger than 16 MiB"), "{err}");
        // Endless keep-alive comments are no event and no error.
        let keep_alive = ": keep-alive\n".repeat(2_000_000);
        let comments = keep_alive.as_bytes().chain("data: x\n\n".as_bytes());
        let mut r = Reader::new(comments);
        assert_eq!(r.next_event().unwrap().map(|e| e.data), Some("x".to_string()));
    }

    #[test]
    fn empty_data_is_an_event() {
        let mut r = Reader::new("event: stdout\ndata: \n\n".as_bytes());
        assert_eq!(
            r.next_event().unwrap(),
            Some(Event {
                name: "stdout".into(),
                data: String::new(),
                id: None,
            })
        );
        assert_eq!(r.next_event().unwrap(), None);
    }
}
