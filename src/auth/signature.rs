//! HMAC signatures over the raw body, verified in constant time.

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HmacAlgo {
    Sha1,
    Sha256,
    Sha512,
}

impl HmacAlgo {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "sha1" => Some(HmacAlgo::Sha1),
            "sha256" => Some(HmacAlgo::Sha256),
            "sha512" => Some(HmacAlgo::Sha512),
            _ => None,
        }
    }

    /// Whether `mac` is the HMAC of `body` under `key` (constant-time compare).
    pub fn verify(self, key: &[u8], body: &[u8], mac: &[u8]) -> bool {
        fn check<M: Mac + KeyInit>(key: &[u8], body: &[u8], mac: &[u8]) -> bool {
            let Ok(mut m) = <M as KeyInit>::new_from_slice(key) else {
                return false;
            };
            m.update(body);
            m.verify_slice(mac).is_ok()
        }
        match self {
            HmacAlgo::Sha1 => check::<Hmac<sha1::Sha1>>(key, body, mac),
            HmacAlgo::Sha256 => check::<Hmac<sha2::Sha256>>(key, body, mac),
            HmacAlgo::Sha512 => check::<Hmac<sha2::Sha512>>(key, body, mac),
        }
    }

    /// The HMAC of `body` under `key` (for tests and signing tools).
    pub fn sign(self, key: &[u8], body: &[u8]) -> Vec<u8> {
        fn mac<M: Mac + KeyInit>(key: &[u8], body: &[u8]) -> Vec<u8> {
            let mut m = <M as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
            m.update(body);
            m.finalize().into_bytes().to_vec()
        }
        match self {
            HmacAlgo::Sha1 => mac::<Hmac<sha1::Sha1>>(key, body),
            HmacAlgo::Sha256 => mac::<Hmac<sha2::Sha256>>(key, body),
            HmacAlgo::Sha512 => mac::<Hmac<sha2::Sha512>>(key, body),
        }
    }
}

/// Whether any of `candidates` is the HMAC-SHA256 under `key` of `parts`
/// written one after the other (`"{id}.{timestamp}."` then the body).
///
/// Every candidate is compared, each in constant time, so the time taken does
/// not tell which one matched.
pub fn sha256_any(key: &[u8], parts: &[&[u8]], candidates: &[Vec<u8>]) -> bool {
    let Ok(mut mac) = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key) else {
        return false;
    };
    for part in parts {
        mac.update(part);
    }
    candidates
        .iter()
        .fold(false, |found, c| mac.clone().verify_slice(c).is_ok() | found)
}

/// The ending of every timestamped scheme: passes when any key's HMAC-SHA256
/// of `prefix` then `body` is one of `candidates`. Every key is tried, so the
/// time taken does not tell which one matched.
pub fn check_keys<'k>(
    keys: impl IntoIterator<Item = &'k [u8]>,
    prefix: &str,
    body: &[u8],
    candidates: &[Vec<u8>],
) -> Result<(), super::AuthError> {
    let ok = keys.into_iter().fold(false, |ok, key| {
        sha256_any(key, &[prefix.as_bytes(), body], candidates) | ok
    });
    if ok {
        Ok(())
    } else {
        Err(super::AuthError::SignatureMismatch)
    }
}

/// How the MAC is written in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigEncoding {
    Hex,
    Base64,
}

impl SigEncoding {
    pub fn decode(self, text: &str) -> Option<Vec<u8>> {
        match self {
            SigEncoding::Hex => decode_hex(text),
            SigEncoding::Base64 => base64::engine::general_purpose::STANDARD.decode(text).ok(),
        }
    }
}

/// Hex (either case) to bytes; `None` for an odd length or a non-hex digit.
fn decode_hex(text: &str) -> Option<Vec<u8>> {
    fn digit(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let text = text.as_bytes();
    if text.len() % 2 != 0 {
        return None;
    }
    text.chunks_exact(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GitHub's published example: secret "It's a Secret to Everybody", body "Hello, World!".
    #[test]
    fn hex_decodes_like_the_hex_crate() {
        for text in [
            "",
            "00ff",
            "DEADbeef",
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        ] {
            assert_eq!(decode_hex(text), hex::decode(text).ok(), "{text}");
        }
        for bad in ["0", "0g", "zz", " 00", "0x00", "é0"] {
            assert_eq!(decode_hex(bad), None, "{bad}");
        }
    }

    #[test]
    fn github_test_vector() {
        let expected = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        let mac = hex::decode(expected).unwrap();
        assert!(HmacAlgo::Sha256.verify(b"It's a Secret to Everybody", b"Hello, World!", &mac));
        assert!(!HmacAlgo::Sha256.verify(b"It's a Secret to Everybody", b"Hello, World?", &mac));
        assert!(!HmacAlgo::Sha256.verify(b"wrong", b"Hello, World!", &mac));
        assert!(!HmacAlgo::Sha256.verify(b"It's a Secret to Everybody", b"Hello, World!", &mac[..31]));
        assert_eq!(
            hex::encode(HmacAlgo::Sha256.sign(b"It's a Secret to Everybody", b"Hello, World!")),
            expected
        );
    }

    #[test]
    fn sha256_any_checks_every_candidate() {
        let mac = HmacAlgo::Sha256.sign(b"k", b"a.b");
        assert!(sha256_any(b"k", &[b"a.", b"b"], &[vec![0; 32], mac.clone()]));
        assert!(!sha256_any(b"k", &[b"a.", b"c"], std::slice::from_ref(&mac)));
        assert!(!sha256_any(b"k", &[b"a.b"], &[]));
        assert!(!sha256_any(b"k", &[b"a.b"], &[mac[..16].to_vec()]));
    }

    #[test]
    fn sha1_and_sha512_round_trip() {
        for algo in [HmacAlgo::Sha1, HmacAlgo::Sha512] {
            let mac = algo.sign(b"k", b"body");
            assert!(algo.verify(b"k", b"body", &mac));
            assert!(!algo.verify(b"k", b"bodY", &mac));
        }
    }
}
