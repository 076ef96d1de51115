//! Server-Sent Events as a client reads them, for the tests of `/events` and
//! of a followed task output.

use std::collections::BTreeMap;
use std::io::BufRead;

/// One event: its fields by name (`event`, `data`, `id`, ...), `data` lines
/// joined by line breaks.
pub type Event = BTreeMap<String, String>;

/// The next event of `reader`, or `None` when the stream ended. Comments
/// are skipped, and so are lines that name no field (the chunk sizes of a
/// response read straight off its socket).
pub fn next_event(reader: &mut impl BufRead) -> Option<Event> {
    let mut event = Event::new();
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).expect("reading the stream") == 0 {
            return None;
        }
        let l = line.strip_suffix('\n').unwrap_or(&line);
        let l = l.strip_suffix('\r').unwrap_or(l);
        // A client ends a line at a bare CR too (what this reader does not
        // do): the server must never send one inside a line.
        assert!(
            !l.contains('\r'),
            "a bare CR inside an event line, where a client would split it: {l:?}"
        );
        if l.is_empty() {
            if event.contains_key("data") {
                return Some(event);
            }
            event.clear();
            continue;
        }
        let Some((field, value)) = l.split_once(':') else {
            continue;
        };
        if field.is_empty() {
            continue;
        }
        let value = value.strip_prefix(' ').unwrap_or(value);
        match event.get_mut(field) {
            Some(data) if field == "data" => {
                data.push('\n');
                data.push_str(value);
            }
            _ => {
                event.insert(field.to_string(), value.to_string());
            }
        }
    }
}
