//! The sparse body parser against a full `serde_json` parse.
//!
//! Input: one length byte `n` (0..=63), then `n` control bytes, then the body.
//! The control bytes are read twice: as text, `|`-separated paths
//! (`a.b[0].c`, see `parse_path`), and, when the body is valid JSON, as
//! steering for paths that walk into the body's own keys and indices.
#![no_main]

use hookrunner::mapping::params::parse_path;
use hookrunner_fuzz::oracles::{check_body, paths_into};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else { return };
    let n = (n as usize % 64).min(rest.len());
    let (control, body) = rest.split_at(n);
    let mut paths: Vec<_> = String::from_utf8_lossy(control)
        .split('|')
        .filter_map(parse_path)
        .collect();
    if let Ok(full) = serde_json::from_slice::<serde_json::Value>(body) {
        paths.extend(paths_into(&full, control));
    }
    check_body(&paths, body);
});
