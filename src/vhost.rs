//! (listen address, Host) -> VirtualServer -> Location: the routing tables
//! built once per snapshot and read by every request.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::config::runtime::{Listener, Location, ServerName, VirtualServer};

/// Server lookup for one listen address: exact names in a hash map, wildcard
/// suffixes longest first, then the default server.
#[derive(Debug)]
pub struct Router {
    exact: HashMap<String, usize, BuildHasherDefault<Fnv1a>>,
    /// (suffix such as ".example.com", server index), longest suffix first.
    wildcards: Vec<(String, usize)>,
    default_server: usize,
}

impl Router {
    /// Builds the tables for `listener`'s servers. When two servers claim one
    /// name (validation forbids it), the first declared wins.
    pub fn new(listener: &Listener) -> Router {
        let mut exact = HashMap::default();
        let mut wildcards = Vec::new();
        for (index, server) in listener.servers.iter().enumerate() {
            for name in &server.server_names {
                match name {
                    ServerName::Exact(name) => {
                        exact.entry(name.clone()).or_insert(index);
                    }
                    ServerName::Wildcard(suffix) => wildcards.push((suffix.clone(), index)),
                }
            }
        }
        wildcards.sort_by_key(|(suffix, _)| std::cmp::Reverse(suffix.len()));
        Router { exact, wildcards, default_server: listener.default_server }
    }

    /// The index of the server for `host` (normalized by [`normalize_host`]).
    pub fn route(&self, host: &str) -> usize {
        if let Some(&index) = self.exact.get(host) {
            return index;
        }
        self.wildcards
            .iter()
            .find(|(suffix, _)| host.len() > suffix.len() && host.ends_with(suffix.as_str()))
            .map_or(self.default_server, |&(_, index)| index)
    }
}

/// FNV-1a, for the exact-name table: a host name hashes in a few
/// instructions a byte, where the standard SipHash costs more than the rest
/// of the lookup. Its weakness, keys chosen to collide, needs inserts; this
/// table is built from the configuration and only read by requests.
struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Fnv1a {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv1a {
    fn write(&mut self, bytes: &[u8]) {
        let mut hash = self.0;
        for &byte in bytes {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = hash;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// `$host`: the Host (or `:authority`) lower-cased, without port and trailing dot.
/// Borrows when the header is already in that form, as it nearly always is.
pub fn normalize_host(raw: &str) -> Cow<'_, str> {
    let without_port = if let Some(rest) = raw.strip_prefix('[') {
        // IPv6 literal: keep the brackets' content with brackets, drop the port.
        match rest.find(']') {
            Some(end) => &raw[..end + 2],
            None => raw,
        }
    } else {
        match raw.rfind(':') {
            Some(colon) => &raw[..colon],
            None => raw,
        }
    };
    // All of them: `a..` would keep a trailing dot with one stripped (found by fuzzing).
    let trimmed = without_port.trim_end_matches('.');
    if trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(trimmed.to_ascii_lowercase())
    } else {
        Cow::Borrowed(trimmed)
    }
}

/// The longest-prefix location of `server` for `path` (locations are sorted
/// longest first, so the first match wins).
pub fn location<'s>(server: &'s VirtualServer, path: &str) -> Option<&'s Location> {
    server.locations.iter().find(|loc| path.starts_with(loc.prefix.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_hosts() {
        assert_eq!(normalize_host("API.Example.com:8443"), "api.example.com");
        assert_eq!(normalize_host("api.example.com."), "api.example.com");
        assert_eq!(normalize_host("[::1]:8443"), "[::1]");
        assert_eq!(normalize_host("[::1]"), "[::1]");
        assert!(matches!(normalize_host("gw.example.com"), Cow::Borrowed(_)));
    }

    #[test]
    fn fnv1a_matches_the_published_test_vectors() {
        for (input, expected) in
            [(&b""[..], 0xcbf2_9ce4_8422_2325), (b"a", 0xaf63_dc4c_8601_ec8c), (b"foobar", 0x8594_4171_f739_67e8)]
        {
            let mut hasher = Fnv1a::default();
            hasher.write(input);
            assert_eq!(hasher.finish(), expected, "{input:?}");
        }
    }

    /// fuzz/artifacts/normalize_host: `".."` came out as `"."`.
    #[test]
    fn fuzz_regression_no_trailing_dot_left() {
        assert_eq!(normalize_host(".."), "");
        assert_eq!(normalize_host("API.example.com..:443"), "api.example.com");
        assert_eq!(normalize_host("[::1].."), "[::1]");
    }

    fn server(names: &[ServerName]) -> std::sync::Arc<VirtualServer> {
        std::sync::Arc::new(VirtualServer {
            name: "_".into(),
            server_names: names.to_vec(),
            certificate: None,
            client_auth: None,
            locations: Vec::new(),
            access: Default::default(),
            limit_req: Vec::new(),
            headers: Vec::new(),
            response_headers: Vec::new(),
            gzip: None,
            access_log: None,
            access_log_format: crate::config::runtime::AccessLogFormat::Combined,
            error_log: None,
            read_timeout: None,
            send_timeout: None,
        })
    }

    #[test]
    fn routes_exact_then_longest_wildcard_then_default() -> Result<(), std::net::AddrParseError> {
        let listener = Listener {
            addr: "127.0.0.1:0".parse()?,
            tls: false,
            tls_protocols: Default::default(),
            proxy_protocol: false,
            servers: vec![
                server(&[ServerName::Exact("api.example.com".into())]),
                server(&[ServerName::Wildcard(".example.com".into())]),
                server(&[ServerName::Wildcard(".eu.example.com".into())]),
            ],
            default_server: 0,
        };
        let router = Router::new(&listener);
        assert_eq!(router.route("api.example.com"), 0);
        assert_eq!(router.route("gw.example.com"), 1);
        assert_eq!(router.route("gw.eu.example.com"), 2);
        assert_eq!(router.route("example.com"), 0);
        assert_eq!(router.route("other.org"), 0);
        Ok(())
    }
}
