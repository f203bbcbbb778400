//! The headers the upstream sees: hop-by-hop headers dropped, the server's
//! header rules (X-Forwarded-*, Host) rendered and sent in place of the
//! request's own headers of those names.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::config::runtime::HeaderRule;
use crate::template::{RequestContext, Template, Variable};

/// `Keep-Alive`, which the `http` crate has no constant for.
pub(crate) const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");

/// Headers that describe one connection, never forwarded (RFC 9110 7.6.1).
/// Connection comes first: `remove_hop_by_hop` reads its bit.
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    KEEP_ALIVE,
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
    headers.get_all(header::CONNECTION).iter().any(|value| names_token(value, token))
}

/// Whether the comma-separated `value` (a Connection field's) names `token`,
/// in any case; a value that is not visible ASCII names nothing (as hyper reads it).
pub fn names_token(value: &HeaderValue, token: &str) -> bool {
    value.to_str().is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// Removes hop-by-hop headers and those the Connection header names. When
/// `keep_upgrade` is set, `Upgrade` and `Connection: upgrade` are kept so the
/// switch can pass through.
pub fn remove_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // One pass over the names finds which are present (most messages carry
    // none, or `Connection: keep-alive`): cheaper than seven hashed removals.
    let mut present = 0u8;
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|hop| hop == name) {
            present |= 1 << i;
        }
    }
    if present == 0 {
        return;
    }
    let upgrade = if keep_upgrade { headers.remove(header::UPGRADE) } else { None };
    if present & 1 != 0 {
        // The names it lists beyond the hop-by-hop ones, which go below anyway
        // (and are not worth a HeaderName each: "keep-alive", "close").
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| !t.is_empty() && !HOP_BY_HOP.iter().any(|hop| hop.as_str().eq_ignore_ascii_case(t)))
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
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

/// How one rule's value is made, decided once per configuration so that the
/// default rules cost no allocation per request.
#[derive(Debug)]
enum Planned {
    /// No value, or one that renders empty: the header is removed.
    Remove,
    /// A literal, validated once.
    Static(HeaderValue),
    /// `$host` alone.
    Host,
    /// `$http_host` alone.
    HttpHost,
    /// `$scheme` alone.
    Scheme,
    /// `$server_port` alone.
    ServerPort,
    /// `$proxy_add_x_forwarded_for` alone.
    AddForwardedFor,
    /// `$ssl_client_escaped_cert`, `$ssl_client_s_dn` or another of
    /// [`CLIENT_CERT_VARIABLES`] alone: the connection's value, made once.
    ClientCert(Variable),
    /// Anything else: rendered as text.
    Render,
}

/// The variables whose values a connection makes once from its client
/// certificate ([`Variable::client_cert_value`]).
const CLIENT_CERT_VARIABLES: [Variable; 5] = [
    Variable::SslClientEscapedCert,
    Variable::SslClientSDn,
    Variable::SslClientIDn,
    Variable::SslClientSerial,
    Variable::SslClientFingerprint,
];

/// A server's header rules, prepared once (in `Site::build`): literals are
/// validated up front and the default rules reuse values the request or the
/// connection already holds. A rule's value is `None` or renders empty: the
/// header is removed. Rules read the request as the client sent it
/// (X-Forwarded-For appends to itself), and their values are never put into
/// the request's map: they are written into the upstream head after the
/// request's own headers, less those of the rules' names ([`HeaderPlan::fields`]).
#[derive(Debug)]
pub struct HeaderPlan {
    rules: Vec<(HeaderRule, Planned)>,
}

/// Rules rendered without a heap allocation (more spill into a `Vec`).
const INLINE_RULES: usize = 8;

/// The rendered values of a [`HeaderPlan`], in rule order.
pub struct Rendered {
    inline: [Option<HeaderValue>; INLINE_RULES],
    spill: Vec<Option<HeaderValue>>,
}

/// Values that stay the same for every request on one client connection,
/// made on first use.
#[derive(Debug, Default)]
pub struct ConnValues {
    server_port: std::sync::OnceLock<(u16, HeaderValue)>,
    remote_ip: std::sync::OnceLock<(std::net::IpAddr, HeaderValue)>,
    /// `$host` made from a Host header it is not a copy of (one with a port,
    /// upper case or a trailing dot), keyed by that header's bytes: a copy of
    /// them, as a share of the request's buffer would keep all of it alive.
    host: std::sync::OnceLock<(Box<[u8]>, HeaderValue)>,
}

impl ConnValues {
    fn server_port(&self, port: u16) -> Option<HeaderValue> {
        let (cached, value) = self.server_port.get_or_init(|| (port, HeaderValue::from(port)));
        (*cached == port).then(|| value.clone())
    }

    fn remote_ip(&self, ip: std::net::IpAddr) -> Option<HeaderValue> {
        let (cached, value) = self.remote_ip.get_or_init(|| {
            let text = crate::template::canonical_ip(ip).to_string();
            (ip, HeaderValue::from_maybe_shared(Bytes::from(text)).unwrap_or(HeaderValue::from_static("")))
        });
        (*cached == ip && !value.is_empty()).then(|| value.clone())
    }

    /// `$host` for `host_header`: the value `make` gave for the connection's
    /// first such header, or `make`'s again for a different one (an h2
    /// connection may carry several names).
    fn host(&self, host_header: &HeaderValue, make: impl FnOnce() -> Option<HeaderValue>) -> Option<HeaderValue> {
        if let Some((sent, value)) = self.host.get() {
            return if **sent == *host_header.as_bytes() { Some(value.clone()) } else { make() };
        }
        let value = make()?;
        let _ = self.host.set((host_header.as_bytes().into(), value.clone()));
        Some(value)
    }
}

impl HeaderPlan {
    pub fn new(rules: &[HeaderRule]) -> HeaderPlan {
        let exactly = |template: &Template, text: &str| Template::parse(text).is_ok_and(|t| t == *template);
        // Of two rules for one name (`Host` and `host` in the file) the later
        // wins, as if each were applied in turn.
        let shadowed = |i: usize, rule: &HeaderRule| rules[i + 1..].iter().any(|later| later.name == rule.name);
        let rules = rules
            .iter()
            .enumerate()
            .filter(|&(i, rule)| !shadowed(i, rule))
            .map(|(_, rule)| {
                let planned = match &rule.value {
                    None => Planned::Remove,
                    Some(value) => match value.as_literal() {
                        Some(text) => match HeaderValue::from_str(text) {
                            Ok(v) if !text.is_empty() => Planned::Static(v),
                            _ => Planned::Remove,
                        },
                        None if exactly(value, "$host") => Planned::Host,
                        None if exactly(value, "$http_host") => Planned::HttpHost,
                        None if exactly(value, "$scheme") => Planned::Scheme,
                        None if exactly(value, "$server_port") => Planned::ServerPort,
                        None if exactly(value, "$proxy_add_x_forwarded_for") => Planned::AddForwardedFor,
                        None => match CLIENT_CERT_VARIABLES.iter().find(|var| value.is_just(var)) {
                            Some(var) => Planned::ClientCert(var.clone()),
                            None => Planned::Render,
                        },
                    },
                };
                (rule.clone(), planned)
            })
            .collect();
        HeaderPlan { rules }
    }

    /// Whether a rule sets or removes `name`: the request's own is not sent.
    pub fn replaces(&self, name: &HeaderName) -> bool {
        self.rules.iter().any(|(rule, _)| rule.name == *name)
    }

    /// The headers the request goes upstream with: its own `headers` less
    /// those the rules replace, then each rule's rendered value.
    pub fn fields<'a>(
        &'a self,
        headers: &'a HeaderMap,
        rendered: &'a Rendered,
    ) -> impl Iterator<Item = (&'a HeaderName, &'a HeaderValue)> + 'a {
        let own = headers.iter().filter(|(name, _)| !self.replaces(name));
        let set = self.rules.iter().zip(rendered.values()).filter_map(|((rule, _), v)| Some((&rule.name, v.as_ref()?)));
        own.chain(set)
    }

    /// Sends `name` with the value `make` gives when neither the request nor
    /// the rules give it one (an h2 or HTTP/1.0 request without a Host, say).
    pub fn default_to(
        &self,
        rendered: &mut Rendered,
        headers: &mut HeaderMap,
        name: HeaderName,
        make: impl FnOnce() -> Option<HeaderValue>,
    ) {
        let slot = match self.rules.iter().position(|(rule, _)| rule.name == name) {
            Some(i) => rendered.slot_mut(i),
            None if headers.contains_key(&name) => None,
            None => {
                if let Some(value) = make() {
                    headers.insert(name, value);
                }
                return;
            }
        };
        if let Some(slot @ None) = slot {
            *slot = make();
        }
    }

    /// Renders each rule against `ctx` (the request as the client sent it).
    /// `host_header` is the request's Host header when it has one (the value
    /// `ctx.http_host` was read from); `conn` caches per-connection values.
    pub fn render(&self, ctx: &RequestContext<'_>, host_header: Option<&HeaderValue>, conn: &ConnValues) -> Rendered {
        let mut out = Rendered { inline: Default::default(), spill: Vec::new() };
        // `$host` made once: the defaults use it twice (X-Forwarded-Host and
        // -Server), and a Host header with a port needs a value of its own.
        let mut host: Option<Option<HeaderValue>> = None;
        for (i, (rule, planned)) in self.rules.iter().enumerate() {
            let value = match planned {
                Planned::Remove => None,
                Planned::Static(value) => Some(value.clone()),
                Planned::Host => host
                    .get_or_insert_with(|| match host_header {
                        Some(value) if !ctx.host.is_empty() && ctx.host.as_bytes() == value.as_bytes() => {
                            Some(value.clone())
                        }
                        // Rendered (a new buffer, and a second allocation when
                        // the value is shared below) once per connection.
                        Some(value) => conn.host(value, || render_one(rule, ctx)),
                        None => render_one(rule, ctx),
                    })
                    .clone(),
                Planned::HttpHost => match host_header {
                    Some(value) if !value.is_empty() && ctx.http_host.as_bytes() == value.as_bytes() => {
                        Some(value.clone())
                    }
                    _ => render_one(rule, ctx),
                },
                Planned::Scheme => match ctx.scheme {
                    "https" => Some(HeaderValue::from_static("https")),
                    "http" => Some(HeaderValue::from_static("http")),
                    _ => render_one(rule, ctx),
                },
                Planned::ServerPort => conn.server_port(ctx.server_port).or_else(|| render_one(rule, ctx)),
                Planned::AddForwardedFor => {
                    if !ctx.peer_trusted || !ctx.headers.contains_key(X_FORWARDED_FOR) {
                        conn.remote_ip(ctx.peer).or_else(|| render_one(rule, ctx))
                    } else {
                        render_one(rule, ctx)
                    }
                }
                Planned::ClientCert(var) => ctx.client_cert.and_then(|cert| var.client_cert_value(cert)).cloned(),
                Planned::Render => render_one(rule, ctx),
            };
            match out.inline.get_mut(i) {
                Some(slot) => *slot = value,
                None => out.spill.push(value),
            }
        }
        out
    }
}

impl Rendered {
    fn values(&self) -> impl Iterator<Item = &Option<HeaderValue>> {
        self.inline.iter().chain(&self.spill)
    }

    fn slot_mut(&mut self, i: usize) -> Option<&mut Option<HeaderValue>> {
        match i.checked_sub(INLINE_RULES) {
            None => self.inline.get_mut(i),
            Some(j) => self.spill.get_mut(j),
        }
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// One rule rendered from its template, the general case of the plan.
fn render_one(rule: &HeaderRule, ctx: &RequestContext<'_>) -> Option<HeaderValue> {
    let value = rule.value.as_ref()?;
    if let Some(text) = value.as_literal() {
        return HeaderValue::from_str(text).ok().filter(|_| !text.is_empty());
    }
    let text = value.render(ctx);
    if text.is_empty() {
        return None;
    }
    HeaderValue::from_maybe_shared(Bytes::from(text)).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::Arc;

    use rustls_pki_types::CertificateDer;

    use crate::tls::{ClientAuth, VerifyClient};

    /// The plain reference the plan must match: every rule rendered against
    /// `ctx`, before any header changes.
    fn render_rules(rules: &[HeaderRule], ctx: &RequestContext<'_>) -> Vec<Option<HeaderValue>> {
        rules.iter().map(|rule| render_one(rule, ctx)).collect()
    }

    /// Sets (or removes) each rule's header to its rendered value.
    fn apply_rules(rules: &[HeaderRule], rendered: Vec<Option<HeaderValue>>, headers: &mut HeaderMap) {
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

    /// What `plan.fields` sends, as a map (values of one name in order).
    fn sent(plan: &HeaderPlan, headers: &HeaderMap, rendered: &Rendered) -> HeaderMap {
        let mut out = HeaderMap::new();
        for (name, value) in plan.fields(headers, rendered) {
            out.append(name.clone(), value.clone());
        }
        out
    }

    fn context(headers: &HeaderMap) -> RequestContext<'_> {
        RequestContext {
            host: "h",
            http_host: "h",
            remote: "127.0.0.1:5".parse().unwrap(),
            peer: "127.0.0.1".parse().unwrap(),
            scheme: "https",
            server_port: 443,
            server_name: "h",
            request_uri: "/",
            headers,
            peer_trusted: true,
            client_cert: None,
            request_id: &REQUEST_ID,
            tls: None,
            method: "GET",
            version: http::Version::HTTP_11,
            server_addr: "127.0.0.1".parse().unwrap(),
            connection: 1,
        }
    }

    static REQUEST_ID: crate::request_id::RequestId = crate::request_id::RequestId::new();

    #[test]
    fn fields_replace_every_value_of_a_rule_name_and_keep_the_rest_in_order() {
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", HeaderValue::from_static("10.0.0.9"));
        h.append("x-forwarded-for", HeaderValue::from_static("10.0.0.8"));
        h.append("accept", HeaderValue::from_static("a"));
        h.append("accept", HeaderValue::from_static("b"));
        h.append("x-gone", HeaderValue::from_static("1"));
        let rules = vec![
            HeaderRule { name: HeaderName::from_static("x-forwarded-for"), value: Some(Template::literal("1.2.3.4")) },
            HeaderRule { name: HeaderName::from_static("x-gone"), value: None },
        ];
        let plan = HeaderPlan::new(&rules);
        let rendered = plan.render(&context(&h), None, &ConnValues::default());
        let fields: Vec<(&str, &[u8])> = plan.fields(&h, &rendered).map(|(n, v)| (n.as_str(), v.as_bytes())).collect();
        assert_eq!(fields, [("accept", &b"a"[..]), ("accept", b"b"), ("x-forwarded-for", b"1.2.3.4")]);
    }

    #[test]
    fn the_later_of_two_rules_for_one_name_wins() {
        let h = HeaderMap::new();
        let name = HeaderName::from_static("x-twice");
        for (first, second, expected) in
            [(Some("one"), Some("two"), Some("two")), (Some("one"), None, None), (None, Some("two"), Some("two"))]
        {
            let rules = vec![
                HeaderRule { name: name.clone(), value: first.map(Template::literal) },
                HeaderRule { name: name.clone(), value: second.map(Template::literal) },
            ];
            let plan = HeaderPlan::new(&rules);
            let rendered = plan.render(&context(&h), None, &ConnValues::default());
            let got = sent(&plan, &h, &rendered);
            assert_eq!(got.get_all(&name).iter().count(), usize::from(expected.is_some()), "{first:?} {second:?}");
            assert_eq!(got.get(&name).map(|v| v.to_str().unwrap()), expected);
        }
    }

    #[test]
    fn default_to_fills_only_a_header_nothing_else_sends() {
        let host = HeaderValue::from_static("fallback");
        let rule = |value: Option<&str>| HeaderRule { name: header::HOST, value: value.map(Template::literal) };
        // (the request's Host, the rules' Host) -> what goes up
        for (own, rules, expected) in [
            (None, vec![], "fallback"),
            (Some("a.test"), vec![], "a.test"),
            (None, vec![rule(Some("ruled"))], "ruled"),
            (Some("a.test"), vec![rule(Some("ruled"))], "ruled"),
            (Some("a.test"), vec![rule(None)], "fallback"),
        ] {
            let mut h = HeaderMap::new();
            if let Some(own) = own {
                h.insert(header::HOST, HeaderValue::from_static(own));
            }
            let plan = HeaderPlan::new(&rules);
            let mut rendered = plan.render(&context(&h), None, &ConnValues::default());
            plan.default_to(&mut rendered, &mut h, header::HOST, || Some(host.clone()));
            let got = sent(&plan, &h, &rendered);
            assert_eq!(got.get_all(header::HOST).iter().collect::<Vec<_>>(), [expected], "{own:?} {rules:?}");
        }
    }

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
    fn connection_tokens_of_any_case_remove_only_what_they_name() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("Keep-Alive, ,close"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("128"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 2);
        assert!(h.contains_key(header::CONTENT_LENGTH) && h.contains_key("x-kept"));

        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("X-Secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        h.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        remove_hop_by_hop(&mut h, false);
        assert!(h.is_empty(), "{h:?}");
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
    fn rules_read_the_headers_they_replace() {
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
        let plan = HeaderPlan::new(&rules);
        let rendered = plan.render(&context(&h), None, &ConnValues::default());
        let h = sent(&plan, &h, &rendered);
        assert_eq!(h.get("x-forwarded-for").unwrap(), "10.0.0.9, 127.0.0.1");
        assert!(!h.contains_key("x-remove-me"));
        assert_eq!(h.get("x-forwarded-port").unwrap(), "443");
    }

    #[test]
    fn plan_renders_what_render_rules_renders() {
        let rule = |name: &'static str, value: Option<&str>| HeaderRule {
            name: HeaderName::from_static(name),
            value: value.map(|v| Template::parse(v).unwrap()),
        };
        let rules = vec![
            rule("x-forwarded-host", Some("$host")),
            rule("x-forwarded-server", Some("$host")),
            rule("x-forwarded-for", Some("$proxy_add_x_forwarded_for")),
            rule("x-forwarded-port", Some("$server_port")),
            rule("host", Some("$http_host")),
            rule("x-forwarded-proto", Some("$scheme")),
            rule("x-literal", Some("fixed")),
            rule("x-empty", Some("")),
            rule("x-gone", None),
            rule("x-mixed", Some("$scheme://$host$request_uri")),
            rule("ssl-client-cert", Some("$ssl_client_escaped_cert")),
            rule("ssl-client-verify", Some("$ssl_client_verify")),
            rule("ssl-client-s-dn", Some("$ssl_client_s_dn")),
            rule("ssl-client-i-dn", Some("${ssl_client_i_dn}")),
            rule("ssl-client-serial", Some("$ssl_client_serial")),
            rule("ssl-client-fingerprint", Some("$ssl_client_fingerprint")),
            rule("ssl-client-both", Some("$ssl_client_serial/$ssl_client_fingerprint")),
        ];
        let plan = HeaderPlan::new(&rules);
        let shared = ConnValues::default();
        let policy = Arc::new(ClientAuth::new(VerifyClient::OptionalNoCa, None, None).unwrap());
        let presented = policy.outcome(Some(&[CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x01])]));
        // A certificate whose names and serial number print too.
        let key = rcgen::KeyPair::generate().unwrap();
        let named = rcgen::CertificateParams::new(vec!["app-1".to_owned()]).unwrap().self_signed(&key).unwrap();
        let named = policy.outcome(Some(&[named.der().clone()]));
        assert!(named.subject_dn().is_some() && named.serial().is_some());
        let absent = policy.outcome(None);
        for (host_header, host, xff, trusted) in [
            (Some("api.example.com"), "api.example.com", None, true),
            (Some("API.example.com:8443"), "api.example.com", Some("10.0.0.1"), true),
            (Some("api.example.com"), "api.example.com", Some("10.0.0.1"), false),
            (Some("Other.example.com:8443"), "other.example.com", None, true),
            (None, "fallback", Some(" "), true),
        ] {
            let mut h = HeaderMap::new();
            if let Some(v) = host_header {
                h.insert(header::HOST, HeaderValue::from_static(v));
            }
            if let Some(v) = xff {
                h.insert("x-forwarded-for", HeaderValue::from_static(v));
            }
            let host_value = h.get(header::HOST).cloned();
            let conn = ConnValues::default();
            let cases = ["192.0.2.1:5", "[::ffff:192.0.2.1]:5", "[2001:db8::1]:5"]
                .into_iter()
                .flat_map(|remote| [None, Some(&presented), Some(&named), Some(&absent)].map(|cert| (remote, cert)));
            for (remote, client_cert) in cases {
                let ctx = RequestContext {
                    host,
                    http_host: host_header.unwrap_or(""),
                    remote: remote.parse().unwrap(),
                    peer: remote.parse::<std::net::SocketAddr>().unwrap().ip(),
                    server_port: 8443,
                    server_name: "s",
                    request_uri: "/a?b",
                    peer_trusted: trusted,
                    client_cert,
                    ..context(&h)
                };
                let mut expected = h.clone();
                apply_rules(&rules, render_rules(&rules, &ctx), &mut expected);
                let rendered = plan.render(&ctx, host_value.as_ref(), &conn);
                assert_eq!(sent(&plan, &h, &rendered), expected, "{host_header:?} {remote}");
                // One connection that sees every case in turn (h2 can carry
                // several hosts): what it cached for one must not leak into another.
                let rendered = plan.render(&ctx, host_value.as_ref(), &shared);
                assert_eq!(sent(&plan, &h, &rendered), expected, "{host_header:?} {remote}, shared connection");
            }
        }
    }
}
