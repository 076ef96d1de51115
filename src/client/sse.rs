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
        loop {
            raw.clear();
            if self.lines.read_until(b'\n', &mut raw)? == 0 {
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
                        continue;
                    }
                }
            }
            if line.starts_with(':') {
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
