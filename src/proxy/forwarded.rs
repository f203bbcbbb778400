//! The headers the upstream sees: hop-by-hop headers dropped, the server's
//! header rules (X-Forwarded-*, Host) rendered and applied.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::config::runtime::HeaderRule;
use crate::template::RequestContext;

/// Headers that describe one connection, never forwarded (RFC 9110 7.6.1).
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Whether the request asks to switch protocols (WebSocket): `Connection: upgrade`
/// together with an `Upgrade` header.
pub fn is_upgrade_request(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && connection_has(headers, "upgrade")
}

fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Removes hop-by-hop headers and those the Connection header names. When
/// `keep_upgrade` is set, `Upgrade` and `Connection: upgrade` are kept so the
/// switch can pass through.
pub fn remove_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let upgrade = if keep_upgrade { headers.remove(header::UPGRADE) } else { None };
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    if let Some(upgrade) = upgrade {
        headers.insert(header::UPGRADE, upgrade);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Joins several Cookie headers into one, as HTTP/2 clients split them and an
/// HTTP/1.1 server expects one (RFC 9113 8.2.3).
pub fn join_cookies(headers: &mut HeaderMap) {
    let mut cookies = headers.get_all(header::COOKIE).iter();
    let (Some(first), Some(_)) = (cookies.next(), cookies.next()) else { return };
    let mut joined = first.as_bytes().to_vec();
    for value in headers.get_all(header::COOKIE).iter().skip(1) {
        joined.extend_from_slice(b"; ");
        joined.extend_from_slice(value.as_bytes());
    }
    if let Ok(value) = HeaderValue::from_bytes(&joined) {
        headers.insert(header::COOKIE, value);
    }
}

/// Renders each rule's value against `ctx` (the request as the client sent
/// it). `None` where the rule removes the header: its value is `None` or
/// renders empty. Rendering happens before any header changes because rules
/// read the headers they replace (X-Forwarded-For appends to itself).
pub fn render_rules(rules: &[HeaderRule], ctx: &RequestContext<'_>) -> Vec<Option<HeaderValue>> {
    rules
        .iter()
        .map(|rule| {
            let value = rule.value.as_ref()?;
            if let Some(text) = value.as_literal() {
                return HeaderValue::from_str(text).ok().filter(|_| !text.is_empty());
            }
            let text = value.render(ctx);
            if text.is_empty() {
                return None;
            }
            HeaderValue::from_maybe_shared(Bytes::from(text)).ok()
        })
        .collect()
}

/// Sets (or removes) each rule's header to its rendered value.
pub fn apply_rules(rules: &[HeaderRule], rendered: Vec<Option<HeaderValue>>, headers: &mut HeaderMap) {
    for (rule, value) in rules.iter().zip(rendered) {
        match value {
            Some(value) => {
                headers.insert(rule.name.clone(), value);
            }
            None => {
                headers.remove(&rule.name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::template::Template;

    #[test]
    fn drops_hop_by_hop_and_connection_named_headers() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, X-Secret"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn joins_h2_cookie_fields() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1"));
        h.append(header::COOKIE, HeaderValue::from_static("JSESSIONID=X"));
        join_cookies(&mut h);
        assert_eq!(h.get_all(header::COOKIE).iter().count(), 1);
        assert_eq!(h.get(header::COOKIE).unwrap(), "a=1; JSESSIONID=X");
    }

    #[test]
    fn keeps_upgrade_for_websocket() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(is_upgrade_request(&h));
        remove_hop_by_hop(&mut h, true);
        assert_eq!(h.get(header::UPGRADE).unwrap(), "websocket");
        assert_eq!(h.get(header::CONNECTION).unwrap(), "upgrade");
    }

    #[test]
    fn applies_rules_against_the_original_headers() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.9"));
        h.insert("x-remove-me", HeaderValue::from_static("1"));
        let rules = vec![
            HeaderRule {
                name: HeaderName::from_static("x-forwarded-for"),
                value: Some(Template::parse("$proxy_add_x_forwarded_for").unwrap()),
            },
            HeaderRule { name: HeaderName::from_static("x-remove-me"), value: None },
            HeaderRule { name: HeaderName::from_static("x-forwarded-port"), value: Some(Template::literal("443")) },
        ];
        let ctx = RequestContext {
            host: "h",
            http_host: "h",
            remote: "127.0.0.1:5".parse().unwrap(),
            scheme: "https",
            server_port: 443,
            server_name: "h",
            request_uri: "/",
            headers: &h,
            peer_trusted: true,
        };
        let rendered = render_rules(&rules, &ctx);
        apply_rules(&rules, rendered, &mut h);
        assert_eq!(h.get("x-forwarded-for").unwrap(), "10.0.0.9, 127.0.0.1");
        assert!(!h.contains_key("x-remove-me"));
        assert_eq!(h.get("x-forwarded-port").unwrap(), "443");
    }
}
