//! Per-request cost of routing and header work: vhost lookup and rendering
//! the default forwarded headers, on a config shaped like the WSO2 deployments.

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue};
use portico::proxy::forwarded;
use portico::template::RequestContext;
use portico::vhost::{self, Router};

/// Five WSO2 host names on one TLS address plus a wildcard, as operators run them.
const CONFIG: &str = r#"
[upstream.am]
servers = ["127.0.0.1:9443", "127.0.0.2:9443"]
[[server]]
listen = ["127.0.0.1:8443"]
server_name = ["api.am.wso2.com"]
tls = { self_signed = true }
proxy_pass = "am"
[[server]]
listen = ["127.0.0.1:8443"]
server_name = ["gw.am.wso2.com"]
tls = { self_signed = true }
proxy_pass = "am"
[[server]]
listen = ["127.0.0.1:8443"]
server_name = ["publisher.am.wso2.com", "store.am.wso2.com", "km.am.wso2.com"]
tls = { self_signed = true }
proxy_pass = "am"
[[server]]
listen = ["127.0.0.1:8443"]
server_name = ["*.dev.wso2.com"]
tls = { self_signed = true }
proxy_pass = "am"
"#;

fn request_path(c: &mut Criterion) {
    let Ok(snapshot) = portico::config::parse_str(CONFIG, Path::new("bench.toml")) else {
        panic!("bench config must be valid");
    };
    let listener = &snapshot.listeners[0];
    let router = Router::new(listener);
    c.bench_function("vhost route exact (Host with port)", |b| {
        b.iter(|| router.route(&vhost::normalize_host(black_box("store.am.wso2.com:443"))))
    });
    c.bench_function("vhost route wildcard", |b| b.iter(|| router.route(black_box("a.dev.wso2.com"))));

    let server = &listener.servers[0];
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("api.am.wso2.com"));
    headers.insert("user-agent", HeaderValue::from_static("Mozilla/5.0 (X11; Linux x86_64)"));
    headers.insert("accept", HeaderValue::from_static("*/*"));
    headers.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
    let ctx = RequestContext {
        host: "api.am.wso2.com",
        http_host: "api.am.wso2.com",
        remote: ([192, 0, 2, 10], 51000).into(),
        peer: [192, 0, 2, 10].into(),
        scheme: "https",
        server_port: 443,
        server_name: "api.am.wso2.com",
        request_uri: "/api/am/publisher/v4/apis?limit=10",
        headers: &headers,
        peer_trusted: true,
        client_cert: None,
        request_id: &portico::request_id::RequestId::new(),
        tls: None,
        method: "GET",
        version: http::Version::HTTP_11,
        server_addr: [10, 0, 0, 100].into(),
        connection: 1,
    };
    let plan = forwarded::HeaderPlan::new(&server.headers);
    let conn = forwarded::ConnValues::default();
    let host_value = headers.get("host").cloned();
    // As the upstream head is written: the request's fields less those the
    // rules replace, then the rules' values, as `name: value` lines.
    let mut head = Vec::with_capacity(1024);
    c.bench_function("forwarded headers: prepared plan, render the default six and write the fields", |b| {
        b.iter(|| {
            let mut out = headers.clone();
            let rendered = plan.render(black_box(&ctx), host_value.as_ref(), &conn);
            forwarded::remove_hop_by_hop(&mut out, false);
            head.clear();
            for (name, value) in plan.fields(&out, &rendered) {
                head.extend_from_slice(name.as_str().as_bytes());
                head.extend_from_slice(b": ");
                head.extend_from_slice(value.as_bytes());
                head.extend_from_slice(b"\r\n");
            }
            head.len()
        })
    });
}

criterion_group!(benches, request_path);
criterion_main!(benches);
