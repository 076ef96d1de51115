//! `X-Forwarded-For`: `client_ip` against a plain reference of its rule.
//!
//! Input lines: the peer address, then the trusted proxies (space-separated
//! nets; unparsable ones are skipped), then each further line is one
//! `X-Forwarded-For` header line (raw bytes, not necessarily text).
#![no_main]

use hookrunner::auth::ip::parse_net;
use hookrunner_fuzz::oracles::check_xff;
use libfuzzer_sys::fuzz_target;
use std::net::IpAddr;

const PEERS: [&str; 4] = ["127.0.0.1", "::1", "10.0.0.1", "::ffff:127.0.0.1"];

fuzz_target!(|data: &[u8]| {
    let mut lines = data.split(|b| *b == b'\n');
    let peer_line = lines.next().unwrap_or_default();
    let peer: IpAddr = std::str::from_utf8(peer_line)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or_else(|| {
            PEERS[peer_line.first().copied().unwrap_or(0) as usize % PEERS.len()]
                .parse()
                .unwrap()
        });
    let trusted: Vec<_> = std::str::from_utf8(lines.next().unwrap_or_default())
        .unwrap_or("")
        .split(' ')
        .filter_map(|n| parse_net(n).ok())
        .collect();
    let header_lines: Vec<&[u8]> = lines.collect();
    check_xff(peer, &header_lines, &trusted);
});
