//! Body decoding by content type (`intake::parse_body`).
//!
//! Input: a flags byte (bit 0: `plain_forms`; bits 1-3: the content type;
//! bit 4: round-trip mode), a length byte `n` (0..=31) and `n` bytes
//! steering the wanted paths, then the body. Content type 7 is the body's
//! first line. In round-trip mode a body that is valid JSON is put in the
//! `payload` field of a form among fields made from the steering bytes.
#![no_main]

use hookrunner_fuzz::oracles::{check_form_payload_round_trip, check_parse_body, paths_into};
use libfuzzer_sys::fuzz_target;

const TYPES: [&str; 7] = [
    "application/json",
    "application/x-www-form-urlencoded",
    "application/x-www-form-urlencoded; charset=utf-8",
    " Application/X-WWW-Form-URLencoded ;x",
    "application/vnd.github+json",
    "text/plain",
    "",
];

fuzz_target!(|data: &[u8]| {
    let [flags, n, rest @ ..] = data else { return };
    let n = (*n as usize % 32).min(rest.len());
    let (control, mut body) = rest.split_at(n);
    let plain_forms = flags & 1 == 1;
    let kind = (flags >> 1) as usize % 8;
    if flags & 16 != 0 {
        let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) else {
            return;
        };
        let paths = paths_into(&json, control);
        let others: Vec<(String, String)> = control
            .chunks(3)
            .map(|c| {
                (
                    String::from_utf8_lossy(&c[..1]).into_owned(),
                    String::from_utf8_lossy(&c[1..]).into_owned(),
                )
            })
            .collect();
        check_form_payload_round_trip(&json, &others, kind, &paths);
        return;
    }
    let content_type: Option<&[u8]> = match kind {
        7 => {
            let end = body.iter().position(|b| *b == b'\n').unwrap_or(body.len());
            let ct = &body[..end];
            body = body.get(end + 1..).unwrap_or_default();
            Some(ct)
        }
        6 => None,
        k => Some(TYPES[k].as_bytes()),
    };
    // Paths into the JSON the body (or its payload field) holds.
    let json = serde_json::from_slice::<serde_json::Value>(body).ok().or_else(|| {
        form_urlencoded::parse(body)
            .find(|(k, _)| k == "payload")
            .and_then(|(_, v)| serde_json::from_str(&v).ok())
    });
    let paths = json.map(|j| paths_into(&j, control)).unwrap_or_default();
    check_parse_body(content_type, body, &paths, plain_forms);
});
