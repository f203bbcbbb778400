//! The client's address as a trusted proxy in front of portico reports it in
//! a request header (`[runtime] real_ip_header`): nginx's realip module,
//! with `trusted_proxies` as its `set_real_ip_from`.

use std::net::{IpAddr, SocketAddr};

use http::{HeaderMap, HeaderName};

use crate::config::runtime::Cidr;

/// `real_ip_header` and `real_ip_recursive`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealIp {
    pub header: HeaderName,
    /// Skip, from the right, the addresses that are trusted proxies too.
    pub recursive: bool,
}

impl RealIp {
    /// The client's address for a request that `peer`, a trusted proxy, sent
    /// with `headers`; `None` keeps the peer's own.
    ///
    /// As nginx: the header's entries (of every line of it, the last line
    /// last) are read from the right. Without `recursive` the rightmost is
    /// the client; with it, the first that is not a trusted proxy, or the
    /// leftmost when all are. An entry that is not an address (with or
    /// without a port) before that point leaves the peer's address standing:
    /// nginx does the same, and the header is then not worth believing.
    pub fn client(&self, headers: &HeaderMap, trusted: &[Cidr]) -> Option<SocketAddr> {
        let mut found = None;
        for value in headers.get_all(&self.header).iter().rev() {
            let text = value.to_str().ok()?;
            for entry in text.rsplit([',', ' ', '\t']).filter(|e| !e.is_empty()) {
                let address = parse_entry(entry)?;
                found = Some(address);
                if !self.recursive || !Cidr::any_contains(trusted, address.ip()) {
                    return found;
                }
            }
        }
        found
    }
}

/// `192.0.2.7`, `192.0.2.7:4711`, `2001:db8::1` or `[2001:db8::1]:4711`; port
/// 0 when none is given.
fn parse_entry(entry: &str) -> Option<SocketAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, 0));
    }
    if let Some(bracketed) = entry.strip_prefix('[').and_then(|e| e.strip_suffix(']')) {
        return bracketed.parse::<std::net::Ipv6Addr>().ok().map(|ip| SocketAddr::new(IpAddr::V6(ip), 0));
    }
    entry.parse::<SocketAddr>().ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use http::HeaderValue;

    use super::*;
    use crate::config::validate::parse_cidr;

    fn headers(lines: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for line in lines {
            map.append("x-forwarded-for", HeaderValue::from_str(line).unwrap());
        }
        map
    }

    fn client(recursive: bool, lines: &[&str]) -> Option<String> {
        let real_ip = RealIp { header: HeaderName::from_static("x-forwarded-for"), recursive };
        let trusted = [parse_cidr("10.0.0.0/8").unwrap(), parse_cidr("2001:db8:ffff::/48").unwrap()];
        real_ip.client(&headers(lines), &trusted).map(|a| a.to_string())
    }

    #[test]
    fn the_rightmost_entry_without_recursion() {
        assert_eq!(client(false, &["192.0.2.7"]).as_deref(), Some("192.0.2.7:0"));
        assert_eq!(client(false, &["198.51.100.1, 192.0.2.7"]).as_deref(), Some("192.0.2.7:0"));
        assert_eq!(client(false, &["198.51.100.1, 10.1.2.3"]).as_deref(), Some("10.1.2.3:0"));
        assert_eq!(client(false, &["198.51.100.1", "10.1.2.3,"]).as_deref(), Some("10.1.2.3:0"));
    }

    #[test]
    fn recursion_skips_trusted_proxies_from_the_right() {
        assert_eq!(client(true, &["198.51.100.1, 192.0.2.7, 10.1.2.3"]).as_deref(), Some("192.0.2.7:0"));
        assert_eq!(client(true, &["198.51.100.1", "10.0.0.9, 10.1.2.3"]).as_deref(), Some("198.51.100.1:0"));
        // All trusted: the leftmost.
        assert_eq!(client(true, &["10.0.0.9,10.1.2.3"]).as_deref(), Some("10.0.0.9:0"));
        assert_eq!(client(true, &["2001:db8::1, [2001:db8:ffff::2]:443"]).as_deref(), Some("[2001:db8::1]:0"));
    }

    #[test]
    fn ports_and_brackets() {
        assert_eq!(client(false, &["192.0.2.7:4711"]).as_deref(), Some("192.0.2.7:4711"));
        assert_eq!(client(false, &["[2001:db8::1]:4711"]).as_deref(), Some("[2001:db8::1]:4711"));
        assert_eq!(client(false, &["[2001:db8::1]"]).as_deref(), Some("[2001:db8::1]:0"));
        assert_eq!(client(false, &["2001:db8::1"]).as_deref(), Some("[2001:db8::1]:0"));
    }

    #[test]
    fn what_is_not_an_address_keeps_the_peer() {
        assert_eq!(client(false, &[]), None);
        assert_eq!(client(false, &[""]), None);
        assert_eq!(client(false, &["unknown"]), None);
        assert_eq!(client(false, &["192.0.2.7, unknown"]), None);
        // Past the client, what is written does not matter.
        assert_eq!(client(true, &["junk, 192.0.2.7, 10.1.2.3"]).as_deref(), Some("192.0.2.7:0"));
        assert_eq!(client(true, &["junk, 10.1.2.3"]), None);
        assert_eq!(client(false, &["192.0.2.300"]), None);
    }
}
