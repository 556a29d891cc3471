//! The client's address behind a reverse proxy, for the failed-authentication limit.
//!
//! The TCP peer is the client unless it is one of `http.trusted_proxies` (IP addresses or CIDR ranges;
//! none by default, so the forwarding header is ignored). When it is, the client is the right-most
//! address in `http.client_ip_header` (default `x-forwarded-for`; `forwarded` reads RFC 7239 `for=`) that
//! is not itself a trusted proxy: each proxy appends the address it received the request from, so
//! everything left of the last trusted hop was written by the client and cannot be believed. An entry
//! that does not parse ends the walk at the hop to its right (the client then shares that proxy's
//! allowance rather than choosing its own). If every entry is a trusted proxy, the left-most counts.
//! IPv4-mapped IPv6 addresses (a dual-stack listener's view of IPv4 clients) count as IPv4.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use axum::http::{HeaderMap, HeaderName};

/// An address range: an address and a prefix length (`10.0.0.0/8`, `2001:db8::/32`, `192.0.2.7`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not an IP address or a CIDR range such as 10.0.0.0/8");
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| bad())?)),
            None => (s.trim(), None),
        };
        let parsed: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if parsed.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        // `::ffff:10.0.0.0/104` is the IPv4 range 10.0.0.0/8.
        match (parsed, parsed.to_canonical()) {
            (IpAddr::V6(_), v4 @ IpAddr::V4(_)) if prefix >= 96 => Ok(IpNet { addr: v4, prefix: prefix - 96 }),
            _ => Ok(IpNet { addr: parsed, prefix }),
        }
    }
}

/// How the client address is found (see the module docs).
#[derive(Debug, Clone)]
pub struct ClientIp {
    trusted: Vec<IpNet>,
    header: HeaderName,
}

pub const DEFAULT_HEADER: &str = "x-forwarded-for";

impl ClientIp {
    pub fn new(trusted: Vec<IpNet>, header: HeaderName) -> Self {
        ClientIp { trusted, header }
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(ip))
    }

    /// The client address of a request that came from `peer` with `headers`.
    pub fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.is_trusted(peer) {
            return peer;
        }
        let forwarded = self.header == "forwarded";
        let entries: Vec<&str> =
            headers.get_all(&self.header).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).collect();
        let mut client = peer;
        for entry in entries.iter().rev() {
            let parsed = if forwarded { forwarded_for(entry) } else { parse_addr(entry) };
            let Some(ip) = parsed else { break };
            client = ip;
            if !self.is_trusted(ip) {
                break;
            }
        }
        client
    }
}

/// An address as proxies write it: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`, `[2001:db8::1]:4711`.
fn parse_addr(s: &str) -> Option<IpAddr> {
    let s = s.trim().trim_matches('"');
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa.ip().to_canonical());
    }
    s.strip_prefix('[')?.strip_suffix(']')?.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

/// The `for=` address of one RFC 7239 `Forwarded` element (`for=192.0.2.60;proto=https`).
fn forwarded_for(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        k.trim().eq_ignore_ascii_case("for").then(|| parse_addr(v)).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn headers(name: &'static str, values: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(name, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn ranges_parse_and_match() {
        let n: IpNet = "10.0.0.0/8".parse().unwrap();
        assert!(n.contains(ip("10.200.1.2")) && !n.contains(ip("11.0.0.1")));
        assert!(n.contains(ip("::ffff:10.1.1.1")), "IPv4-mapped addresses are IPv4");
        assert!("192.0.2.7".parse::<IpNet>().unwrap().contains(ip("192.0.2.7")));
        assert!(!"192.0.2.7".parse::<IpNet>().unwrap().contains(ip("192.0.2.8")));
        let v6: IpNet = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:1::5")) && !v6.contains(ip("2001:db9::1")));
        assert!("0.0.0.0/0".parse::<IpNet>().unwrap().contains(ip("203.0.113.9")));
        assert_eq!("::ffff:10.0.0.0/104".parse::<IpNet>().unwrap(), "10.0.0.0/8".parse().unwrap());
        for bad in ["10.0.0.0/33", "proxy.internal", "10.0.0.0/x", ""] {
            assert!(bad.parse::<IpNet>().unwrap_err().contains("CIDR"), "{bad}");
        }
    }

    #[test]
    fn the_client_is_the_right_most_untrusted_hop_behind_a_trusted_peer() {
        let c = ClientIp::new(nets(&["127.0.0.1", "10.0.0.0/8"]), HeaderName::from_static(DEFAULT_HEADER));
        let xff = |v: &'static [&'static str]| headers(DEFAULT_HEADER, v);
        // Untrusted peer: the header is ignored.
        assert_eq!(c.resolve(ip("192.0.2.1"), &xff(&["198.51.100.7"])), ip("192.0.2.1"));
        // Trusted peer, no header: the peer.
        assert_eq!(c.resolve(ip("127.0.0.1"), &HeaderMap::new()), ip("127.0.0.1"));
        assert_eq!(c.resolve(ip("127.0.0.1"), &xff(&["198.51.100.7"])), ip("198.51.100.7"));
        // A spoofed left-most entry does not count; internal hops are skipped; several header lines join.
        assert_eq!(c.resolve(ip("127.0.0.1"), &xff(&["6.6.6.6, 198.51.100.7, 10.1.2.3"])), ip("198.51.100.7"));
        assert_eq!(c.resolve(ip("::ffff:127.0.0.1"), &xff(&["6.6.6.6", "198.51.100.7:5555"])), ip("198.51.100.7"));
        assert_eq!(c.resolve(ip("127.0.0.1"), &xff(&["[2001:db8::1]:80, 10.0.0.9"])), ip("2001:db8::1"));
        // Every hop trusted: the left-most. Garbage: the trusted hop to its right.
        assert_eq!(c.resolve(ip("127.0.0.1"), &xff(&["10.0.0.1, 10.0.0.2"])), ip("10.0.0.1"));
        assert_eq!(c.resolve(ip("127.0.0.1"), &xff(&["198.51.100.7, nonsense, 10.0.0.2"])), ip("10.0.0.2"));
        // Nothing trusted by default.
        let none = ClientIp::new(vec![], HeaderName::from_static(DEFAULT_HEADER));
        assert_eq!(none.resolve(ip("127.0.0.1"), &xff(&["198.51.100.7"])), ip("127.0.0.1"));
    }

    #[test]
    fn the_forwarded_header_is_read_by_its_for_parameter() {
        let c = ClientIp::new(nets(&["127.0.0.1"]), HeaderName::from_static("forwarded"));
        let h = headers("forwarded", &[r#"for=198.51.100.7;proto=https, for="[2001:db8::2]:4711""#]);
        assert_eq!(c.resolve(ip("127.0.0.1"), &h), ip("2001:db8::2"));
        let h = headers("forwarded", &["for=192.0.2.43, for=unknown"]);
        assert_eq!(c.resolve(ip("127.0.0.1"), &h), ip("127.0.0.1"), "an obfuscated hop stops the walk");
    }
}
