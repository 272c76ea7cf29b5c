//! Who the client is, by address: the TCP peer, unless the peer is a trusted
//! proxy (`CHAT_TRUSTED_PROXIES`); then the nearest hop its `X-Forwarded-For`
//! (or, without it, `Forwarded`) names that is not itself a trusted proxy.
//! Every per-address limit (logins, connect budget, sockets per address)
//! keys on this address; `server.rs` puts it in each request's extensions.
//!
//! The header is read right to left: each trusted proxy appends the address
//! it received from, so the rightmost untrusted entry is the first one no
//! proxy of ours vouches for. Entries to its left are the client's own claims.

use std::net::IpAddr;

use hyper::HeaderMap;
use ipnet::IpNet;

fn trusted(proxies: &[IpNet], ip: IpAddr) -> bool {
    proxies.iter().any(|n| n.contains(&ip))
}

/// Does the peer belong to a trusted proxy?
pub fn is_trusted(proxies: &[IpNet], peer: IpAddr) -> bool {
    trusted(proxies, peer.to_canonical())
}

/// One hop of `X-Forwarded-For` or a `Forwarded` `for=` value: `1.2.3.4`,
/// `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]:5678`, optionally quoted.
fn parse_hop(s: &str) -> Option<IpAddr> {
    let s = s.trim().trim_matches('"');
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split_once(']').and_then(|(ip, _)| ip.parse::<IpAddr>().ok()).map(|ip| ip.to_canonical());
    }
    // v4 with a port (a v6 without brackets parsed above or is invalid).
    let (ip, port) = s.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    ip.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// The hops the headers name, client first. `None` for an entry that is not
/// an address (`unknown`, an obfuscated name, garbage).
fn hops(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let xff: Vec<Option<IpAddr>> = headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("").split(',').map(str::to_owned).collect::<Vec<_>>())
        .filter(|h| !h.trim().is_empty())
        .map(|h| parse_hop(&h))
        .collect();
    if !xff.is_empty() {
        return xff;
    }
    headers
        .get_all("forwarded")
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("").split(',').map(str::to_owned).collect::<Vec<_>>())
        .map(|element| {
            element
                .split(';')
                .find_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    k.trim().eq_ignore_ascii_case("for").then(|| parse_hop(v))
                })
                .flatten()
        })
        .collect()
}

/// The client's address as this gateway believes it.
pub fn client_ip(proxies: &[IpNet], peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    let peer = peer.to_canonical();
    if proxies.is_empty() || !trusted(proxies, peer) {
        return peer;
    }
    let mut client = peer;
    for hop in hops(headers).into_iter().rev() {
        match hop {
            Some(ip) => {
                client = ip;
                if !trusted(proxies, ip) {
                    break;
                }
            }
            // Not an address: nothing further left is vouched for; the last
            // trusted hop stands for the client.
            None => break,
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_net;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        m
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peer_is_the_client() {
        let hs = h(&[("x-forwarded-for", "10.0.0.1")]);
        assert_eq!(client_ip(&[], ip("127.0.0.1"), &hs), ip("127.0.0.1"));
        let p = [parse_net("192.168.0.0/16").unwrap()];
        assert_eq!(client_ip(&p, ip("127.0.0.1"), &hs), ip("127.0.0.1"));
    }

    #[test]
    fn trusted_chain_is_walked_right_to_left() {
        let p = [parse_net("127.0.0.1").unwrap(), parse_net("10.1.0.0/16").unwrap()];
        // Client claims 6.6.6.6; our edge proxy 10.1.2.3 saw 203.0.113.9.
        let hs = h(&[("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.1.2.3")]);
        assert_eq!(client_ip(&p, ip("127.0.0.1"), &hs), ip("203.0.113.9"));
        // Two header lines are one list.
        let hs = h(&[("x-forwarded-for", "6.6.6.6"), ("x-forwarded-for", "203.0.113.9:4711")]);
        assert_eq!(client_ip(&p, ip("127.0.0.1"), &hs), ip("203.0.113.9"));
        // Only proxies: the leftmost stands for the client.
        let hs = h(&[("x-forwarded-for", "10.1.9.9")]);
        assert_eq!(client_ip(&p, ip("127.0.0.1"), &hs), ip("10.1.9.9"));
        // No header: the proxy itself.
        assert_eq!(client_ip(&p, ip("127.0.0.1"), &HeaderMap::new()), ip("127.0.0.1"));
        // Garbage stops the walk at the last trusted hop.
        let hs = h(&[("x-forwarded-for", "203.0.113.9, nonsense, 10.1.2.3")]);
        assert_eq!(client_ip(&p, ip("127.0.0.1"), &hs), ip("10.1.2.3"));
    }

    #[test]
    fn forwarded_header() {
        let p = [parse_net("127.0.0.0/8").unwrap()];
        let hs = h(&[("forwarded", "for=192.0.2.60;proto=http;by=203.0.113.43, for=\"[2001:db8:cafe::17]:4711\"")]);
        assert_eq!(client_ip(&p, ip("127.0.0.1"), &hs), ip("2001:db8:cafe::17"));
        let hs = h(&[("forwarded", "for=unknown")]);
        assert_eq!(client_ip(&p, ip("127.0.0.1"), &hs), ip("127.0.0.1"));
    }

    #[test]
    fn mapped_v4_peer_and_parse() {
        let p = [parse_net("127.0.0.1/32").unwrap()];
        let hs = h(&[("x-forwarded-for", "10.0.0.2")]);
        assert_eq!(client_ip(&p, ip("::ffff:127.0.0.1"), &hs), ip("10.0.0.2"));
        assert!(parse_net("10.0.0.0/33").is_err());
        assert!(parse_net("nope").is_err());
        assert_eq!(parse_net("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
    }
}
