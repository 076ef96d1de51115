//! Client addresses and `allow_ips` lists.

use ipnet::IpNet;
use std::net::IpAddr;

/// Parses `10.0.0.0/8` or a bare address (`127.0.0.1`, `::1`).
pub fn parse_net(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("`{text}` is not an IP address or CIDR range"))
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

/// The client's address: the peer's, or, when the peer is a trusted proxy,
/// the right-most address in `X-Forwarded-For` that is not itself a trusted proxy.
pub fn client_ip(peer: IpAddr, forwarded_for: Option<&str>, trusted_proxies: &[IpNet]) -> IpAddr {
    let peer = canonical(peer);
    if !contains(trusted_proxies, peer) {
        return peer;
    }
    let Some(header) = forwarded_for else {
        return peer;
    };
    let mut client = peer;
    for hop in header.rsplit(',') {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) => {
                client = canonical(ip);
                if !contains(trusted_proxies, client) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    client
}

#[cfg(test)]
mod tests {
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
        assert!(parse_net("10.0.0.0/33").is_err());
        assert!(parse_net("example.com").is_err());
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let trusted = nets(&["127.0.0.1"]);
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "192.0.2.7".parse().unwrap();
        let xff = Some("198.51.100.1, 203.0.113.9");
        assert_eq!(
            client_ip(local, xff, &trusted),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(other, xff, &trusted), other);
        assert_eq!(client_ip(local, xff, &[]), local);
        assert_eq!(client_ip(local, Some("garbage"), &trusted), local);
    }
}
