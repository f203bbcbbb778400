//! `portico::template::Template::parse` on arbitrary text; whatever parses is
//! rendered against a request whose headers and strings come from the input,
//! and the output must never carry CR, LF or NUL (header injection). A
//! client certificate, when the input has one, is arbitrary bytes: its
//! `$ssl_client_escaped_cert` must still be one clean line.
#![no_main]

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use arbitrary::Arbitrary;
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use portico::template::{RequestContext, Template};
use portico::tls::{ClientAuth, VerifyClient};
use rustls_pki_types::CertificateDer;

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
    client_cert: Option<&'a [u8]>,
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
    let client_cert = input.client_cert.and_then(|der| {
        let policy = std::sync::Arc::new(ClientAuth::new(VerifyClient::OptionalNoCa, None, None).ok()?);
        Some(policy.outcome(Some(&[CertificateDer::from(der.to_vec())])))
    });
    let ctx = RequestContext {
        host: input.host,
        http_host: input.http_host,
        remote: SocketAddr::new(IpAddr::V6(Ipv6Addr::from(input.remote)), input.port),
        peer: IpAddr::V6(Ipv6Addr::from(input.remote)),
        scheme: "https",
        server_port: input.port,
        server_name: "api.example.com",
        request_uri: input.request_uri,
        headers: &headers,
        peer_trusted: input.trusted,
        client_cert: client_cert.as_ref(),
        request_id: &portico::request_id::RequestId::new(),
        tls: None,
        method: "GET",
        version: http::Version::HTTP_11,
        server_addr: IpAddr::V6(Ipv6Addr::from(input.remote)),
        connection: u64::from(input.port),
    };
    if let Some(cert) = &client_cert {
        assert!(cert.escaped_pem.is_some(), "escaped PEM of {:?} is not a header value", input.client_cert);
    }
    let out = template.render(&ctx);
    assert!(!out.contains(['\r', '\n', '\0']), "{:?} rendered {out:?}", input.template);
    // Literal templates render to themselves.
    if let Some(literal) = template.as_literal() {
        assert_eq!(out, literal);
    }
});
