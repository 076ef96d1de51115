//! Signature headers (Stripe `t=,v1=`, Standard Webhooks `v1,` lists, Slack
//! `v0=`, GitHub, generic HMAC, Gitea, GitLab's token and signing token).
//!
//! Input: a selector byte, then `Name: value` header lines, an empty line
//! and the body. An even selector checks the fuzzer's headers: never a panic,
//! never accepted, no secret in the error. An odd one signs the body as
//! `hookrunner send` would (at a time the headers' first bytes pick), checks
//! that it verifies, and that changing one byte of the body breaks it.
#![no_main]

use hookrunner_fuzz::oracles::{at, check_forged, check_round_trip, signed_sources, split_request, NOW};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let sources = signed_sources();
    let source = &sources[(selector >> 1) as usize % sources.len()];
    let (headers, body) = split_request(rest);
    if selector & 1 == 0 {
        let query = vec![("token".to_string(), String::from_utf8_lossy(body).into_owned())];
        check_forged(source, &headers, &query, body, at(NOW));
    } else {
        // The time and the tampering come from the bytes before the body.
        let head = &rest[..rest.len() - body.len()];
        let word = |i: usize| {
            head.get(i..i + 4)
                .map_or(0, |b| u32::from_le_bytes(b.try_into().unwrap()))
        };
        let now = at(u64::from(word(0)) * 64); // up to the year 10680
        let position = word(4) as usize;
        let xor = head.get(8).copied().unwrap_or(1);
        check_round_trip(source, body, now, position, xor);
    }
});
