//! XML bodies, in the shape adnanh/webhook gives them (its `mxj` library),
//! so paths written for it work here:
//!
//! - the root element is the one top-level key;
//! - attributes are keys `-name`;
//! - an element with attributes or children has its text under `#text`; an
//!   element with only text is that string; an empty element is `""`;
//! - repeated sibling elements become an array (a single one is not);
//! - namespace prefixes are dropped from names (`ns:d` → `d`, and the
//!   declaration `xmlns:ns` becomes the attribute `-ns`);
//! - every value is a string; text is trimmed of surrounding whitespace.
//!
//! A DOCTYPE (and so any entity declaration) is refused, as is a reference
//! to an entity other than the five XML predefines; elements nest at most
//! [`MAX_DEPTH`] deep. The text must be UTF-8.

use super::MAX_DEPTH;
use quick_xml::events::{BytesStart, Event};
use quick_xml::{Reader, XmlVersion};
use serde_json::{Map, Value};

/// An element being read: its attributes and children so far, and its text.
struct Open {
    name: String,
    fields: Map<String, Value>,
    text: String,
}

/// Parses an XML document into its payload (see the module's doc).
pub fn parse(body: &[u8]) -> Result<Value, String> {
    let mut reader = Reader::from_reader(body);
    let config = reader.config_mut();
    config.check_end_names = true;
    config.expand_empty_elements = false;
    let mut stack: Vec<Open> = Vec::new();
    let mut root: Option<Value> = None;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("at byte {}: {e}", reader.error_position()))?;
        match event {
            Event::Start(e) => {
                let open = open(&e, root.is_some(), stack.len())?;
                stack.push(open);
            }
            Event::Empty(e) => {
                let open = open(&e, root.is_some(), stack.len())?;
                close(open, &mut stack, &mut root);
            }
            Event::End(_) => {
                let open = stack.pop().ok_or("an end tag has no start tag")?;
                close(open, &mut stack, &mut root);
            }
            Event::Text(t) => {
                let text = t.xml10_content().map_err(|_| "the text is not UTF-8")?;
                match stack.last_mut() {
                    Some(open) => open.text.push_str(&text),
                    None if text.trim().is_empty() => {}
                    None => return Err("there is text outside the root element".into()),
                }
            }
            Event::CData(t) => {
                let text = t.decode().map_err(|_| "the text is not UTF-8")?;
                match stack.last_mut() {
                    Some(open) => open.text.push_str(&text),
                    None => return Err("there is CDATA outside the root element".into()),
                }
            }
            Event::GeneralRef(r) => {
                let name = r.decode().map_err(|_| "the text is not UTF-8")?;
                let c = match r.resolve_char_ref() {
                    Ok(Some(c)) => c,
                    Ok(None) => predefined(&name).ok_or_else(|| format!("entity `&{name};` is not defined"))?,
                    Err(e) => return Err(format!("`&{name};`: {e}")),
                };
                match stack.last_mut() {
                    Some(open) => open.text.push(c),
                    None => return Err("there is text outside the root element".into()),
                }
            }
            Event::DocType(_) => return Err("DOCTYPE declarations (and the entities they declare) are refused".into()),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if let Some(open) = stack.last() {
        return Err(format!("the document ends before `</{}>`", open.name));
    }
    let root = root.ok_or("there is no root element")?;
    Ok(root)
}

/// The five entities XML predefines.
fn predefined(name: &str) -> Option<char> {
    Some(match name {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "apos" => '\'',
        "quot" => '"',
        _ => return None,
    })
}

/// An element opened at `depth` (0 for the root), with its attributes.
fn open(e: &BytesStart<'_>, after_root: bool, depth: usize) -> Result<Open, String> {
    if depth == 0 && after_root {
        return Err("there is more than one root element".into());
    }
    if depth >= MAX_DEPTH {
        return Err(format!("elements nest more than {MAX_DEPTH} deep"));
    }
    let name = text(e.local_name().as_ref())?;
    let mut fields = Map::new();
    for attr in e.attributes() {
        let attr = attr.map_err(|e| e.to_string())?;
        let key = format!("-{}", text(attr.key.local_name().as_ref())?);
        let value = attr
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|e| format!("attribute `{key}` of `<{name}>`: {e}"))?;
        fields.insert(key, Value::String(value.into_owned()));
    }
    Ok(Open {
        name,
        fields,
        text: String::new(),
    })
}

fn text(bytes: &[u8]) -> Result<String, String> {
    std::str::from_utf8(bytes)
        .map(str::to_string)
        .map_err(|_| "a name is not UTF-8".to_string())
}

/// Closes an element: its value goes into its parent (repeated names become
/// an array), or becomes the root.
fn close(open: Open, stack: &mut [Open], root: &mut Option<Value>) {
    let text = open.text.trim_matches(|c: char| matches!(c, ' ' | '\t' | '\r' | '\n'));
    let value = if open.fields.is_empty() {
        Value::String(text.to_string())
    } else {
        let mut fields = open.fields;
        if !text.is_empty() {
            fields.insert("#text".into(), Value::String(text.to_string()));
        }
        Value::Object(fields)
    };
    let Some(parent) = stack.last_mut() else {
        let mut top = Map::new();
        top.insert(open.name, value);
        *root = Some(Value::Object(top));
        return;
    };
    match parent.fields.get_mut(&open.name) {
        None => {
            parent.fields.insert(open.name, value);
        }
        Some(Value::Array(items)) => items.push(value),
        Some(first) => {
            let first = std::mem::take(first);
            parent.fields.insert(open.name, Value::Array(vec![first, value]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_mxj_shape() {
        // adnanh's own test case 5 (`app.users.user.0.-name` is `Jeff`).
        let body = br#"<?xml version="1.0" encoding="UTF-8"?>
            <!-- a comment -->
            <app>
              <users>
                <user id="1" name="Jeff" />
                <user id="2" name="Sally" />
              </users>
              <messages>
                <message id="1" from_user="1" to_user="2">Hello!!</message>
              </messages>
              <ns:d xmlns:ns="urn:x" ns:k="v">  text &amp; more &#x41; <![CDATA[<raw>]]> </ns:d>
              <empty/>
              <blank></blank>
            </app>"#;
        assert_eq!(
            parse(body).unwrap(),
            json!({"app": {
                "users": {"user": [{"-id": "1", "-name": "Jeff"}, {"-id": "2", "-name": "Sally"}]},
                "messages": {"message": {"-id": "1", "-from_user": "1", "-to_user": "2", "#text": "Hello!!"}},
                "d": {"-ns": "urn:x", "-k": "v", "#text": "text & more A <raw>"},
                "empty": "",
                "blank": "",
            }})
        );
        assert_eq!(parse(b"<a>1</a>").unwrap(), json!({"a": "1"}));
        assert_eq!(
            parse(b"<a><b>1</b><b>2</b><b>3</b></a>").unwrap(),
            json!({"a": {"b": ["1", "2", "3"]}})
        );
    }

    #[test]
    fn refused_documents() {
        let cases: [(&[u8], &str); 8] = [
            (
                b"<!DOCTYPE a [<!ENTITY x \"y\">]><a>&x;</a>",
                "DOCTYPE declarations (and the entities they declare) are refused",
            ),
            (b"<a>&x;</a>", "entity `&x;` is not defined"),
            (b"<a><b></a>", "at byte"),
            (b"<a>", "the document ends before `</a>`"),
            (b"<a/><b/>", "there is more than one root element"),
            (b"text<a/>", "there is text outside the root element"),
            (b"", "there is no root element"),
            (b"<a>caf\xe9</a>", "the text is not UTF-8"),
        ];
        for (body, error) in cases {
            let got = parse(body).unwrap_err();
            assert!(got.starts_with(error), "{}: {got}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn nesting_is_limited_as_for_json() {
        let nest = |n: usize| format!("{}{}", "<a>".repeat(n), "</a>".repeat(n));
        assert!(parse(nest(MAX_DEPTH).as_bytes()).is_ok());
        assert_eq!(
            parse(nest(MAX_DEPTH + 1).as_bytes()).unwrap_err(),
            format!("elements nest more than {MAX_DEPTH} deep")
        );
        // serde_json draws its line for JSON bodies at the same depth.
        let arrays = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(serde_json::from_str::<Value>(&arrays(MAX_DEPTH)).is_ok());
        assert!(serde_json::from_str::<Value>(&arrays(MAX_DEPTH + 1)).is_err());
    }
}
