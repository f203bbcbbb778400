//! Benchmarks formatting one access log line, the per-request cost of logging.

use std::hint::black_box;
use std::time::{Duration, UNIX_EPOCH};

use criterion::{Criterion, criterion_group, criterion_main};
use portico::log::{AccessRecord, Escape, LogFormat, UpstreamAttempt, format_combined, format_json};

/// nginx's `combined` with the upstream's figures, as operators often extend it.
const UPSTREAMS: &str = r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" rt=$request_time ua=$upstream_addr us=$upstream_status urt=$upstream_response_time"#;

fn record(headers: &[Option<http::HeaderValue>]) -> AccessRecord<'_> {
    AccessRecord {
        remote_addr: std::net::IpAddr::from([192, 0, 2, 7]),
        time: UNIX_EPOCH + Duration::from_secs(1_795_688_385),
        method: "GET",
        uri: "/api/am/store/v1/apis?limit=25&offset=0",
        version: http::Version::HTTP_11,
        status: 200,
        body_bytes: 5120,
        referer: Some("https://am.example.com/devportal/apis"),
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"),
        host: "am.example.com",
        upstream_addr: Some("10.0.0.1:9443"),
        duration: Duration::from_micros(12_345),
        remote_port: 51234,
        scheme: "https",
        server_name: "am.example.com",
        server_port: 443,
        upstream: &[UPSTREAM],
        tls: None,
        connection: 12,
        connection_requests: 40,
        request_length: 388,
        complete: true,
        server_addr: Some(std::net::IpAddr::from([10, 0, 0, 100])),
        peer: Some(std::net::SocketAddr::from(([192, 0, 2, 7], 51234))),
        gzipped_from: None,
        client_cert: None,
        sent_headers: &[],
        head_bytes: 190,
        headers,
        upstream_headers: &[],
        request_id: &ID,
    }
}

static ID: portico::request_id::RequestId = portico::request_id::RequestId::new();

/// The one server the request went to.
const UPSTREAM: UpstreamAttempt<'static> = UpstreamAttempt {
    addr: "10.0.0.1:9443",
    status: Some(200),
    connect_time: Some(Duration::ZERO),
    header_time: Some(Duration::from_micros(10_001)),
    response_time: Some(Duration::from_micros(11_002)),
    length: Some(5120),
    bytes_sent: Some(412),
    bytes_received: Some(5391),
};

fn bench(c: &mut Criterion) {
    let headers = [
        Some(http::HeaderValue::from_static("https://am.example.com/devportal/apis")),
        Some(http::HeaderValue::from_static("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0")),
    ];
    let record = record(&headers);
    let mut line = Vec::with_capacity(512);
    c.bench_function("format_combined", |b| {
        b.iter(|| {
            line.clear();
            format_combined(black_box(&record), &mut line);
            black_box(line.len())
        })
    });
    c.bench_function("format_json", |b| {
        b.iter(|| {
            line.clear();
            format_json(black_box(&record), &mut line);
            black_box(line.len())
        })
    });
    let Ok(upstreams) = LogFormat::parse(UPSTREAMS, Escape::Default) else { panic!("the format compiles") };
    c.bench_function("format_log_format_upstreams", |b| {
        b.iter(|| {
            line.clear();
            upstreams.format(black_box(&record), &mut line);
            black_box(line.len())
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
