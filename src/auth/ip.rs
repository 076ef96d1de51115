//! Client addresses and `allow_ips` lists.

use ipnet::IpNet;
use std::net::IpAddr;

/// Parses `10.0.0.0/8` or a bare address (`127.0.0.1`, `::1`). An
/// IPv4-mapped IPv6 range (`::ffff:127.0.0.1/128`, prefix 96 or more) is
/// the IPv4 range it maps (`127.0.0.1/32`), as Go reads it: a client's
/// IPv4-mapped address is compared as IPv4, so it could match nothing else.
pub fn parse_net(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    let net = text
        .parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("`{text}` is not an IP address or CIDR range"))?;
    Ok(match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
                .map(IpNet::V4)
                .unwrap_or(net),
            None => net,
        },
        other => other,
    })
}

/// Whether `ip` is inside any of `nets` (IPv4-mapped IPv6 addresses count as IPv4).
pub fn contains(nets: &[IpNet], ip: IpAddr) -> bool {
    let ip = canonical(ip);
    nets.iter().any(|n| n.contains(&ip))
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Who sent a request, as far as we can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    Addr(IpAddr),
    /// A trusted proxy forwarded it, but a hop of `X-Forwarded-For` was not a
    /// bare IP address (`1.2.3.4:5555`, `unknown`, garbage): we cannot tell
    /// who it is, so it gets nothing an address would give (it is not
    /// loopback and is in no `allow_ips`).
    Unknown,
}

impl Client {
    /// Whether the client is in one of `nets`; an unknown client never is.
    pub fn is_in(self, nets: &[IpNet]) -> bool {
        match self {
            Client::Addr(ip) => contains(nets, ip),
            Client::Unknown => false,
        }
    }

    pub fn is_loopback(self) -> bool {
        match self {
            Client::Addr(ip) => ip.is_loopback(),
            Client::Unknown => false,
        }
    }

    /// The address as text (what `Display` writes), without the formatting
    /// machinery: every delivery's record and `request.*` params need it.
    pub fn text(self) -> String {
        match self {
            Client::Addr(ip) => ip_text(ip),
            Client::Unknown => self.to_string(),
        }
    }
}

/// `ip` as `Display` writes it; IPv4 without `core::fmt` (which pads and
/// buffers: ~1,200 instructions an address, against ~60 here).
pub fn ip_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let mut s = String::with_capacity(21);
            push_v4(&mut s, v4);
            s
        }
        IpAddr::V6(_) => ip.to_string(),
    }
}

/// `addr` as `Display` writes it (`1.2.3.4:5`, `[::1]:5`).
pub fn socket_text(addr: std::net::SocketAddr) -> String {
    match addr {
        std::net::SocketAddr::V4(a) => {
            let mut s = String::with_capacity(21);
            push_v4(&mut s, *a.ip());
            s.push(':');
            push_decimal(&mut s, u32::from(a.port()));
            s
        }
        std::net::SocketAddr::V6(_) => addr.to_string(),
    }
}

fn push_v4(s: &mut String, ip: std::net::Ipv4Addr) {
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            s.push('.');
        }
        push_decimal(s, u32::from(octet));
    }
}

fn push_decimal(s: &mut String, n: u32) {
    let mut digits = [0u8; 10];
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[at..] {
        s.push(char::from(d));
    }
}

impl std::fmt::Display for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Client::Addr(ip) => ip.fmt(f),
            Client::Unknown => f.write_str("unknown (a forwarded-for hop is not an IP address)"),
        }
    }
}

/// The client: the peer, or, when the peer is a trusted proxy, the right-most
/// address of `X-Forwarded-For` that is not itself a trusted proxy. Every
/// header line counts, in order (a client may send its own line ahead of the
/// one its proxy appends: that is why the right-most untrusted hop is taken).
/// A hop that is not a bare IP address makes the client [`Client::Unknown`],
/// never the proxy itself. `lines` are the raw header values; a value that
/// is not text is such a hop.
pub fn client_ip<'a>(
    peer: IpAddr,
    lines: impl DoubleEndedIterator<Item = &'a [u8]>,
    trusted_proxies: &[IpNet],
) -> Client {
    let peer = canonical(peer);
    if !contains(trusted_proxies, peer) {
        return Client::Addr(peer);
    }
    let mut client = peer;
    for line in lines.rev() {
        let Ok(line) = std::str::from_utf8(line) else {
            return Client::Unknown;
        };
        for hop in line.rsplit(',') {
            match hop.trim().parse::<IpAddr>() {
                Ok(ip) => {
                    client = canonical(ip);
                    if !contains(trusted_proxies, client) {
                        return Client::Addr(client);
                    }
                }
                Err(_) => return Client::Unknown,
            }
        }
    }
    // Every hop was a trusted proxy (or there was none): the left-most one.
    Client::Addr(client)
}

#[cfg(test)]
mod tests {
    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for text in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.3.255",
            "255.255.255.255",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:1.2.3.4",
        ] {
            let ip: IpAddr = text.parse().unwrap();
            assert_eq!(super::ip_text(ip), ip.to_string());
            assert_eq!(Client::Addr(ip).text(), Client::Addr(ip).to_string());
            for port in [0u16, 9, 80, 65535] {
                let addr = std::net::SocketAddr::new(ip, port);
                assert_eq!(super::socket_text(addr), addr.to_string());
            }
        }
        assert_eq!(Client::Unknown.text(), Client::Unknown.to_string());
    }

    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| parse_net(s).unwrap()).collect()
    }

    #[test]
    fn allowlists() {
        let allow = nets(&["10.0.0.0/8", "127.0.0.1", "::1"]);
        assert!(contains(&allow, "10.1.2.3".parse().unwrap()));
        assert!(contains(&allow, "127.0.0.1".parse().unwrap()));
        assert!(contains(&allow, "::ffff:127.0.0.1".parse().unwrap()));
        assert!(!contains(&allow, "127.0.0.2".parse().unwrap()));
        // IPv4-mapped ranges are the IPv4 ranges they map, as in Go.
        let mapped = nets(&["::ffff:127.0.0.1/128", "::ffff:10.1.0.0/112", "::ffff:0:0/96"]);
        assert_eq!(mapped, nets(&["127.0.0.1/32", "10.1.0.0/16", "0.0.0.0/0"]));
        assert!(contains(&mapped[..1], "127.0.0.1".parse().unwrap()));
        assert!(contains(&mapped[1..2], "::ffff:10.1.2.3".parse().unwrap()));
        assert!(!contains(&mapped[..2], "10.2.0.1".parse().unwrap()));
        // Below /96 it is an IPv6 range, as it is in Go.
        assert!(!contains(&nets(&["::ffff:0:0/95"]), "127.0.0.1".parse().unwrap()));
        assert!(parse_net("10.0.0.0/33").is_err());
        assert!(parse_net("example.com").is_err());
    }

    fn xff(peer: &str, lines: &[&str], trusted: &[&str]) -> Client {
        client_ip(
            peer.parse().unwrap(),
            lines.iter().map(|l| l.as_bytes()),
            &nets(trusted),
        )
    }

    fn addr(ip: &str) -> Client {
        Client::Addr(ip.parse().unwrap())
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let proxy = ["127.0.0.1"];
        assert_eq!(
            xff("127.0.0.1", &["198.51.100.1, 203.0.113.9"], &proxy),
            addr("203.0.113.9")
        );
        assert_eq!(xff("192.0.2.7", &["198.51.100.1"], &proxy), addr("192.0.2.7"));
        assert_eq!(xff("127.0.0.1", &["198.51.100.1"], &[]), addr("127.0.0.1"));
        assert_eq!(xff("127.0.0.1", &[], &proxy), addr("127.0.0.1"));
        // All hops trusted: the left-most.
        assert_eq!(
            xff("127.0.0.1", &["10.0.0.2, 10.0.0.1"], &["127.0.0.1", "10.0.0.0/8"]),
            addr("10.0.0.2")
        );
    }

    #[test]
    fn every_forwarded_for_line_counts_and_the_last_one_wins() {
        let proxy = ["127.0.0.1"];
        // The client's own forged line comes first; the proxy appends the real one.
        assert_eq!(
            xff("127.0.0.1", &["127.0.0.1", "203.0.113.9"], &proxy),
            addr("203.0.113.9")
        );
        assert_eq!(
            xff("127.0.0.1", &["::1, 10.1.1.1", "203.0.113.9, 127.0.0.1"], &proxy),
            addr("203.0.113.9")
        );
        // A trusted proxy chain over two lines.
        let chain = ["127.0.0.1", "10.0.0.0/8"];
        assert_eq!(
            xff("127.0.0.1", &["198.51.100.4", "10.0.0.9"], &chain),
            addr("198.51.100.4")
        );
    }

    #[test]
    fn a_hop_that_is_not_an_address_fails_closed() {
        let proxy = ["127.0.0.1"];
        for bad in ["1.2.3.4:5555", "unknown", "garbage", "", "1.2.3.4,", "[::1]", "_hidden"] {
            let client = xff("127.0.0.1", &[bad], &proxy);
            assert_eq!(client, Client::Unknown, "{bad:?}");
            assert!(!client.is_loopback());
            assert!(!client.is_in(&nets(&["0.0.0.0/0", "::/0"])));
        }
        assert_eq!(
            client_ip("127.0.0.1".parse().unwrap(), [&b"\xff"[..]].into_iter(), &nets(&proxy)),
            Client::Unknown
        );
        // A bad hop to the left of the client is never read.
        assert_eq!(xff("127.0.0.1", &["garbage, 203.0.113.9"], &proxy), addr("203.0.113.9"));
    }
}
