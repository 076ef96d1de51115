//! `multipart/form-data` bodies (RFC 7578), parsed from the bytes already
//! read: parts between `--<boundary>` lines, each with its headers
//! (`Content-Disposition: form-data; name=...; filename=...`,
//! `Content-Type`) and its bytes. Lines may end in CRLF or a bare LF (as
//! some senders write them, and as adnanh accepts). A JSON part nests no
//! deeper than a JSON body may (serde_json's limit).
//!
//! The payload ([`payload`]) is an object: a field without a file name is a
//! string, a part whose Content-Type is `application/json` its parsed JSON,
//! and a file the absolute path its bytes are saved at (by
//! [`super::uploads`]). A repeated name keeps its first part.

use serde_json::{Map, Value};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One part of a multipart body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Its place among the body's parts, from 0.
    pub index: usize,
    /// The `name` of its `Content-Disposition`; a part without one has `""`.
    pub name: String,
    pub filename: Option<String>,
    /// The essence of its `Content-Type`, if it has one.
    pub content_type: Option<String>,
    /// Where its bytes are in the body.
    pub bytes: Range<usize>,
}

/// A file part of a delivery: where it goes, and which bytes of the body it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub path: PathBuf,
    pub bytes: Range<usize>,
}

/// The boundary of a `multipart/form-data; boundary=...` Content-Type.
pub fn boundary(content_type: &str) -> Option<String> {
    super::header_param(content_type, "boundary").filter(|b| !b.is_empty() && b.len() <= 200)
}

/// The parts of `body`, delimited by `--<boundary>` lines; an error names
/// what is wrong (no delimiter, a part without its header block, no closing
/// delimiter).
pub fn parse(body: &[u8], boundary: &str) -> Result<Vec<Part>, String> {
    let delimiter = [b"--", boundary.as_bytes()].concat();
    let mut at = first_delimiter(body, &delimiter).ok_or("the multipart body has no part delimited by its boundary")?;
    let mut parts = Vec::new();
    loop {
        let after = at + delimiter.len();
        if body[after..].starts_with(b"--") {
            return Ok(parts);
        }
        let headers_start = line_end(body, after).ok_or("the multipart body ends inside a delimiter line")?;
        let (headers, content_start) =
            headers(body, headers_start).ok_or("a part of the multipart body has no blank line after its headers")?;
        // The part's bytes end at the line break before the next delimiter.
        let next = find_delimiter(body, &delimiter, content_start.saturating_sub(1))
            .ok_or("the multipart body ends before its closing boundary")?;
        let mut end = next.max(content_start);
        if end > content_start && body[end - 1] == b'\r' {
            end -= 1;
        }
        let disposition = header(&headers, "content-disposition").unwrap_or_default();
        let filename = super::header_param(&disposition, "filename*")
            .and_then(|v| extended_value(&v))
            .or_else(|| super::header_param(&disposition, "filename"));
        parts.push(Part {
            index: parts.len(),
            name: super::header_param(&disposition, "name").unwrap_or_default(),
            filename,
            content_type: header(&headers, "content-type").map(|c| super::essence(&c)),
            bytes: content_start..end,
        });
        // `next` is the line break before the delimiter.
        at = next + 1;
    }
}

/// The parts of a body we parsed before, when its Content-Type is no longer
/// at hand (a task's stored body): the boundary is that of a line starting
/// with `--` which delimits a body that parses into parts that `fit` (hold
/// the files looked for), trying the first 16 such lines (a preamble may
/// hold lines that look like delimiters).
pub fn parse_stored(body: &[u8], fit: impl Fn(&[Part]) -> bool) -> Option<Vec<Part>> {
    let mut tried = 0;
    let mut start = 0;
    while start < body.len() && tried < 16 {
        let line_end = body[start..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(body.len(), |p| start + p);
        let line = body[start..line_end]
            .strip_suffix(b"\r")
            .unwrap_or(&body[start..line_end]);
        if let Some(boundary) = line.strip_prefix(b"--").and_then(|b| std::str::from_utf8(b).ok()) {
            let boundary = boundary.trim_end();
            if !boundary.is_empty() && !boundary.ends_with("--") {
                tried += 1;
                if let Ok(parts) = parse(body, boundary) {
                    if fit(&parts) {
                        return Some(parts);
                    }
                }
            }
        }
        start = line_end + 1;
    }
    None
}

/// The payload of a multipart body (see the module's doc); file parts become
/// paths under `dir`, returned with the bytes each must hold.
pub fn payload(body: &[u8], parts: &[Part], dir: &Path) -> Result<(Value, Vec<File>), String> {
    let mut fields = Map::new();
    let mut files = Vec::new();
    for part in parts.iter().filter(|p| !p.name.is_empty()) {
        if fields.contains_key(&part.name) {
            continue;
        }
        let bytes = &body[part.bytes.clone()];
        let value = if part.content_type.as_deref() == Some("application/json") {
            serde_json::from_slice::<Value>(bytes)
                .map_err(|e| format!("part `{}` is not valid JSON: {e}", part.name))?
        } else if let Some(name) = &part.filename {
            let path = dir.join(file_name(part.index, name));
            files.push(File {
                path: path.clone(),
                bytes: part.bytes.clone(),
            });
            Value::String(path.display().to_string())
        } else {
            let text = std::str::from_utf8(bytes).map_err(|_| format!("field `{}` is not UTF-8 text", part.name))?;
            Value::String(text.to_string())
        };
        fields.insert(part.name.clone(), value);
    }
    Ok((Value::Object(fields), files))
}

/// The name a file part is saved under: `<index>-<file name>`, the file
/// name cut to its last path segment, with only letters, digits, `.`, `-`
/// and `_` kept (others become `_`), at most 100 bytes, not starting with a
/// dot.
pub fn file_name(index: usize, filename: &str) -> String {
    let base = filename.rsplit(['/', '\\']).next().unwrap_or("");
    let mut clean: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    while clean.starts_with('.') {
        clean.remove(0);
    }
    if clean.is_empty() {
        clean.push_str("file");
    }
    format!("{index}-{clean}")
}

/// RFC 8187's `UTF-8''percent%20encoded` (in `filename*`).
fn extended_value(value: &str) -> Option<String> {
    let (charset, rest) = value.split_once('\'')?;
    let (_, encoded) = rest.split_once('\'')?;
    if !charset.eq_ignore_ascii_case("utf-8") {
        return None;
    }
    percent_decode(encoded)
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Whether a delimiter found at `at` is one: followed by `--`, blanks and a
/// line break, or the end of the body.
fn is_delimiter(body: &[u8], at: usize, delimiter: &[u8]) -> bool {
    let rest = &body[at + delimiter.len()..];
    if rest.starts_with(b"--") {
        return true;
    }
    let rest = &rest[rest
        .iter()
        .position(|b| *b != b' ' && *b != b'\t')
        .unwrap_or(rest.len())..];
    rest.is_empty() || rest.starts_with(b"\r\n") || rest.starts_with(b"\n")
}

/// The first delimiter at the start of the body or of a line.
fn first_delimiter(body: &[u8], delimiter: &[u8]) -> Option<usize> {
    if body.starts_with(delimiter) && is_delimiter(body, 0, delimiter) {
        return Some(0);
    }
    find_delimiter(body, delimiter, 0).map(|nl| nl + 1)
}

/// The position of the line break before the next delimiter at or after `from`.
fn find_delimiter(body: &[u8], delimiter: &[u8], from: usize) -> Option<usize> {
    let mut from = from;
    loop {
        let nl = from + body.get(from..)?.iter().position(|b| *b == b'\n')?;
        if body[nl + 1..].starts_with(delimiter) && is_delimiter(body, nl + 1, delimiter) {
            return Some(nl);
        }
        from = nl + 1;
    }
}

/// The position after the line break that ends the line at `from`.
fn line_end(body: &[u8], from: usize) -> Option<usize> {
    body[from..].iter().position(|b| *b == b'\n').map(|p| from + p + 1)
}

/// A part's header lines (names lower-cased) up to the blank line, and where its bytes start.
fn headers(body: &[u8], mut at: usize) -> Option<(Vec<(String, String)>, usize)> {
    let mut headers = Vec::new();
    loop {
        let end = line_end(body, at)?;
        let line = &body[at..end - 1];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return Some((headers, end));
        }
        let text = String::from_utf8_lossy(line);
        if let Some((name, value)) = text.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
        at = end;
        if headers.len() > 64 {
            return None;
        }
    }
}

fn header(headers: &[(String, String)], name: &str) -> Option<String> {
    headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const BODY: &str = "preamble\r\n\
        --XyZ\r\n\
        Content-Disposition: form-data; name=\"title\"\r\n\
        \r\n\
        Hello\r\nworld\r\n\
        --XyZ\r\n\
        Content-Disposition: form-data; name=\"meta\"\r\n\
        Content-Type: application/json\r\n\
        \r\n\
        {\"sha\":\"abc\",\"n\":1}\r\n\
        --XyZ\r\n\
        Content-Disposition: form-data; name=\"upload\"; filename=\"../../etc/pass wd.txt\"\r\n\
        Content-Type: text/plain\r\n\
        \r\n\
        line one\r\n--XyZnot a delimiter\r\n\
        --XyZ\r\n\
        Content-Disposition: form-data; name=\"title\"\r\n\
        \r\n\
        second value\r\n\
        --XyZ\r\n\
        Content-Disposition: form-data; name=\"empty\"\r\n\
        \r\n\
        \r\n\
        --XyZ--\r\n\
        epilogue";

    #[test]
    fn parts_fields_json_and_files() {
        let body = BODY.as_bytes();
        let parts = parse(body, "XyZ").unwrap();
        assert_eq!(parts.len(), 5);
        assert_eq!(&body[parts[0].bytes.clone()], b"Hello\r\nworld");
        assert_eq!(&body[parts[2].bytes.clone()], b"line one\r\n--XyZnot a delimiter");
        assert_eq!(parts[2].filename.as_deref(), Some("../../etc/pass wd.txt"));
        assert_eq!(parts[2].content_type.as_deref(), Some("text/plain"));
        assert_eq!(&body[parts[4].bytes.clone()], b"");
        let (payload, files) = payload(body, &parts, Path::new("/up/d1")).unwrap();
        assert_eq!(
            payload,
            json!({
                "title": "Hello\r\nworld",
                "meta": {"sha": "abc", "n": 1},
                "upload": "/up/d1/2-pass_wd.txt",
                "empty": "",
            })
        );
        assert_eq!(
            files,
            [File {
                path: "/up/d1/2-pass_wd.txt".into(),
                bytes: parts[2].bytes.clone()
            }]
        );
        assert_eq!(parse_stored(body, |_| true), Some(parts));
    }

    #[test]
    fn a_stored_body_is_read_past_a_long_or_misleading_preamble() {
        let mut body = b"a preamble line\r\n".repeat(20);
        body.extend_from_slice(
            b"--FAKE\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x.txt\"\r\n\r\nEVIL\r\n--FAKE--\r\n",
        );
        body.extend_from_slice(b"--XB\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n");
        body.extend_from_slice(
            b"--XB\r\nContent-Disposition: form-data; name=\"f\"; filename=\"y.txt\"\r\n\r\nREAL\r\n--XB--\r\n",
        );
        let real = parse(&body, "XB").unwrap();
        let wants_y = |parts: &[Part]| parts.iter().any(|p| p.filename.as_deref() == Some("y.txt"));
        assert_eq!(parse_stored(&body, wants_y), Some(real.clone()));
        assert_eq!(&body[real[1].bytes.clone()], b"REAL");
        // Without a file to look for, the first delimiter that parses wins.
        assert_eq!(
            parse_stored(&body, |_| true).unwrap()[0].filename.as_deref(),
            Some("x.txt")
        );
        assert_eq!(parse_stored(b"no delimiter\r\n", |_| true), None);
    }

    #[test]
    fn bare_line_feeds_are_accepted() {
        let body = b"--b\nContent-Disposition: form-data; name=\"a\"\n\n1\n--b\nContent-Disposition: form-data; name=\"f\"; filename=\"x.bin\"\n\n\x00\xff\n--b--\n";
        let parts = parse(body, "b").unwrap();
        let (payload, files) = payload(body, &parts, Path::new("/d")).unwrap();
        assert_eq!(payload, json!({"a": "1", "f": "/d/1-x.bin"}));
        assert_eq!(&body[files[0].bytes.clone()], b"\x00\xff");
    }

    #[test]
    fn broken_bodies_are_errors() {
        let cases: [(&[u8], &str); 4] = [
            (
                b"no delimiter at all",
                "the multipart body has no part delimited by its boundary",
            ),
            (
                b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n",
                "the multipart body ends before its closing boundary",
            ),
            (
                b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n",
                "a part of the multipart body has no blank line after its headers",
            ),
            (b"--b", "the multipart body ends inside a delimiter line"),
        ];
        for (body, error) in cases {
            assert_eq!(
                parse(body, "b").unwrap_err(),
                error,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let body =
            b"--b\r\nContent-Disposition: form-data; name=\"j\"\r\nContent-Type: application/json\r\n\r\n{x\r\n--b--";
        let parts = parse(body, "b").unwrap();
        assert!(payload(body, &parts, Path::new("/d"))
            .unwrap_err()
            .starts_with("part `j` is not valid JSON"));
        let body = b"--b\r\nContent-Disposition: form-data; name=\"t\"\r\n\r\n\xff\r\n--b--";
        let parts = parse(body, "b").unwrap();
        assert_eq!(
            payload(body, &parts, Path::new("/d")).unwrap_err(),
            "field `t` is not UTF-8 text"
        );
    }

    #[test]
    fn file_names_are_made_safe() {
        assert_eq!(file_name(0, "report.pdf"), "0-report.pdf");
        assert_eq!(file_name(3, "C:\\Users\\me\\a b.txt"), "3-a_b.txt");
        assert_eq!(file_name(1, "../.."), "1-file");
        assert_eq!(file_name(1, ".hidden"), "1-hidden");
        assert_eq!(file_name(2, "é.png"), "2-_.png");
        assert_eq!(file_name(0, &"x".repeat(300)).len(), 102);
        let body = b"--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.txt\"; filename*=UTF-8''%C3%A9t%C3%A9.txt\r\n\r\nx\r\n--b--";
        assert_eq!(parse(body, "b").unwrap()[0].filename.as_deref(), Some("été.txt"));
    }

    #[test]
    fn boundaries_from_the_content_type() {
        assert_eq!(
            boundary("multipart/form-data; boundary=----abc").as_deref(),
            Some("----abc")
        );
        assert_eq!(
            boundary("multipart/form-data; boundary=\"a b\"").as_deref(),
            Some("a b")
        );
        assert_eq!(boundary("multipart/form-data"), None);
        assert_eq!(boundary("multipart/form-data; boundary="), None);
    }
}
