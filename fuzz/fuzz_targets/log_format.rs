//! `portico::log::LogFormat::parse` on arbitrary text, in every escape mode;
//! whatever parses writes a line for a request whose strings and header
//! values come from the input, as the proxy could see them. The line must be
//! one line (a client cannot forge another), and with `escape = "default"`
//! printable ASCII only; nothing may panic.
#![no_main]

use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, UNIX_EPOCH};

use arbitrary::Arbitrary;
use http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use portico::log::{AccessRecord, Escape, LogFormat, UpstreamAttempt};

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    format: &'a str,
    escape: u8,
    method: &'a str,
    uri: &'a str,
    host: &'a str,
    headers: Vec<&'a [u8]>,
    remote: [u8; 16],
    port: u16,
    status: u16,
    body_bytes: u64,
    upstream_status: Option<u16>,
    secs: u64,
    micros: u64,
    upstream_micros: Option<u64>,
    facts: Facts,
}

/// The facts only the newer variables print.
#[derive(Arbitrary, Debug)]
struct Facts {
    requests: u64,
    length: u64,
    complete: bool,
    server: Option<[u8; 16]>,
    peer: Option<([u8; 16], u16)>,
    tls: Option<(bool, bool)>,
    connect_micros: Option<u64>,
    upstream_length: Option<u64>,
    gzipped_from: Option<u64>,
}

fuzz_target!(|input: Input<'_>| {
    let escape = match input.escape % 3 {
        0 => Escape::Default,
        1 => Escape::Json,
        _ => Escape::None,
    };
    let Ok(format) = LogFormat::parse(input.format, escape) else { return };
    // What reaches the log from a request: a method, target and Host hyper
    // or portico's loop accepted, header values the http crate accepted.
    let (Ok(method), Ok(uri)) = (http::Method::from_bytes(input.method.as_bytes()), input.uri.parse::<http::Uri>())
    else {
        return;
    };
    let uri = uri.path_and_query().map_or("/", |pq| pq.as_str());
    // `$host` comes from a Host header (or an authority) read as text.
    let Ok(host) = HeaderValue::from_str(input.host) else { return };
    let Ok(host) = host.to_str() else { return };
    // The i-th header a format prints has the input's i-th value, in the
    // request and in the upstream's answer alike.
    let values_for = |count: usize| -> Vec<Option<HeaderValue>> {
        (0..count).map(|i| input.headers.get(i).and_then(|v| HeaderValue::from_bytes(v).ok())).collect()
    };
    let values = values_for(format.request_values().len());
    let upstream_values = values_for(format.upstream_headers().len());
    let facts = &input.facts;
    // One server, or a retry's two: the second as the first, answered.
    let first = UpstreamAttempt {
        addr: "10.0.0.1:8243",
        status: input.upstream_status,
        connect_time: facts.connect_micros.map(Duration::from_micros),
        header_time: input.upstream_micros.map(|m| Duration::from_micros(m / 2)),
        response_time: input.upstream_micros.map(Duration::from_micros),
        length: facts.upstream_length,
        bytes_sent: facts.upstream_length.map(|l| l / 3),
        bytes_received: facts.upstream_length,
    };
    let attempts = match (input.upstream_status, facts.complete) {
        (None, _) => vec![],
        (Some(_), false) => vec![first],
        (Some(_), true) => vec![first, UpstreamAttempt { status: Some(200), ..first }],
    };
    let record = AccessRecord {
        remote_addr: IpAddr::V6(Ipv6Addr::from(input.remote)),
        time: UNIX_EPOCH + Duration::from_secs(input.secs % (1 << 40)),
        method: method.as_str(),
        uri,
        version: http::Version::HTTP_11,
        status: input.status,
        body_bytes: input.body_bytes,
        referer: None,
        user_agent: None,
        host,
        upstream_addr: Some("10.0.0.1:8243"),
        duration: Duration::from_micros(input.micros),
        remote_port: input.port,
        scheme: "https",
        server_name: "api.example.com",
        server_port: 443,
        upstream: &attempts,
        tls: facts.tls.map(|(tls13, resumed)| portico::tls::TlsSession {
            protocol: if tls13 { "TLSv1.3" } else { "TLSv1.2" },
            cipher: "TLS_AES_128_GCM_SHA256",
            resumed,
        }),
        connection: input.body_bytes / 3,
        connection_requests: facts.requests,
        request_length: facts.length,
        complete: facts.complete,
        server_addr: facts.server.map(|ip| IpAddr::V6(Ipv6Addr::from(ip))),
        peer: facts.peer.map(|(ip, port)| std::net::SocketAddr::from((Ipv6Addr::from(ip), port))),
        gzipped_from: facts.gzipped_from,
        client_cert: None,
        sent_headers: &upstream_values,
        head_bytes: facts.length / 2,
        headers: &values,
        upstream_headers: &upstream_values,
        request_id: &portico::request_id::RequestId::new(),
    };
    let mut line = Vec::new();
    format.format(&record, &mut line);
    let Some((last, rest)) = line.split_last() else { panic!("no newline for {:?}", input.format) };
    assert_eq!(*last, b'\n');
    assert!(!rest.contains(&b'\n') && !rest.contains(&b'\r'), "{:?} wrote {line:?}", input.format);
    if escape == Escape::Default && input.format.is_ascii() {
        // Every value escaped; the literal text is the operator's own.
        let outside = rest.iter().any(|b| !(0x20..0x7f).contains(b) && *b != b'\t');
        assert!(!outside, "{:?} wrote {:?}", input.format, String::from_utf8_lossy(&line));
    }
});
