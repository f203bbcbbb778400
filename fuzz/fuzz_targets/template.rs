//! `portico::template::Template::parse` on arbitrary text; whatever parses is
//! rendered against a request whose headers and strings come from the input,
//! and the output must never carry CR, LF or NUL (header injection).
#![no_main]

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use arbitrary::Arbitrary;
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use portico::template::{RequestContext, Template};

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    template: &'a str,
    headers: Vec<(&'a str, &'a [u8])>,
    host: &'a str,
    http_host: &'a str,
    request_uri: &'a str,
    remote: [u8; 16],
    port: u16,
    trusted: bool,
}

fuzz_target!(|input: Input<'_>| {
    let Ok(template) = Template::parse(input.template) else { return };
    let mut headers = HeaderMap::new();
    for (name, value) in &input.headers {
        // The fuzzer rarely guesses a name the template uses: also file each
        // value under the names the template's $http_/$cookie_ variables need.
        let name = if name.is_empty() { "x-forwarded-for" } else { name };
        let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_bytes(value)) else {
            continue;
        };
        headers.append(name, value.clone());
        headers.append(http::header::COOKIE, value.clone());
        headers.append(HeaderName::from_static("x-forwarded-for"), value);
    }
    let ctx = RequestContext {
        host: input.host,
        http_host: input.http_host,
        remote: SocketAddr::new(IpAddr::V6(Ipv6Addr::from(input.remote)), input.port),
        scheme: "https",
        server_port: input.port,
        server_name: "api.example.com",
        request_uri: input.request_uri,
        headers: &headers,
        peer_trusted: input.trusted,
        client_cert: None,
    };
    let out = template.render(&ctx);
    assert!(!out.contains(['\r', '\n', '\0']), "{:?} rendered {out:?}", input.template);
    // Literal templates render to themselves.
    if let Some(literal) = template.as_literal() {
        assert_eq!(out, literal);
    }
});
