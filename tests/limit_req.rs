//! `[limit_req.NAME]` and `limit_req = { zone, burst, nodelay | delay, status }`
//! (nginx's limit_req): each client address (or value of the zone's `key`)
//! has its own bucket; past the burst, requests are refused; without
//! `nodelay` the burst waits its turn; several limits on one level all apply.
//! Clients connect from chosen 127.0.0.0/8 addresses.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use http::StatusCode;
use support::*;

/// A server for app.test over `backend` with `[limit_req.zone]` lines `zone`
/// and the server lines `server` (which may end with locations).
fn config(backend: &TestBackend, zone: &str, server: &str) -> String {
    format!(
        r#"
[admin]
listen = "127.0.0.1:0"

[limit_req.per_client]
{zone}

[upstream.app]
servers = ["{}"]

[[server]]
listen = ["127.0.0.1:0"]
server_name = ["app.test"]
proxy_pass = "app"
{server}
"#,
        backend.addr()
    )
}

/// The status of `GET path` for app.test from a client bound to `source`,
/// sending `X-Api-Key: key` when there is one.
async fn status_with_key(portico: &Portico, source: &str, key: Option<&str>, path: &str) -> StatusCode {
    let mut client = Connect::to(portico.addr(0)).source_ip(source).connect().await.unwrap();
    let headers: Vec<(&str, &str)> = key.map(|key| ("x-api-key", key)).into_iter().collect();
    client.get_with("app.test", path, &headers).await.unwrap().status
}

/// The `portico_limit_req_requests_total` samples of `zone`: passed, delayed, rejected.
async fn counts(portico: &Portico, zone: &str) -> [u64; 3] {
    let text = portico.admin_text("/metrics").await;
    ["passed", "delayed", "rejected"].map(|result| {
        let prefix = format!("portico_limit_req_requests_total{{zone=\"{zone}\",result=\"{result}\"}} ");
        let line = text.lines().find_map(|l| l.strip_prefix(&prefix));
        line.unwrap_or_else(|| panic!("{prefix} in:\n{text}")).parse().unwrap()
    })
}

/// One request per minute with a burst of 2: three at once pass, the fourth
/// is refused; another address has a bucket of its own; a location's own
/// limit replaces the server's and answers with its status.
#[tokio::test]
async fn past_the_burst_requests_are_refused_per_address() {
    let backend = TestBackend::spawn("app").await;
    let logs = TempDir::new("limit-req");
    let error_log = logs.join("error.log");
    let server = format!(
        r#"limit_req = {{ zone = "per_client", burst = 2, nodelay = true }}
error_log = {}

[[server.location]]
prefix = "/login/"
proxy_pass = "app"
limit_req = {{ zone = "per_client", status = 429 }}"#,
        toml_path(&error_log)
    );
    let portico = start_portico(&config(&backend, "rate = \"1r/m\"", &server)).await;

    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(portico.status_from("127.0.1.5", "app.test", "/").await);
    }
    assert_eq!(seen, [StatusCode::OK, StatusCode::OK, StatusCode::OK, StatusCode::SERVICE_UNAVAILABLE]);
    assert_eq!(backend.count(), 3, "the refused request was not forwarded");
    assert_eq!(portico.status_from("127.0.1.6", "app.test", "/").await, StatusCode::OK, "another address");
    // The location's limit has no burst, in the same zone: 127.0.1.7's
    // first request passes, its second is refused with 429.
    assert_eq!(portico.status_from("127.0.1.7", "app.test", "/login/x").await, StatusCode::OK);
    assert_eq!(portico.status_from("127.0.1.7", "app.test", "/login/x").await, StatusCode::TOO_MANY_REQUESTS);

    let text = portico.admin_text("/metrics").await;
    for (result, count) in [("passed", 5), ("delayed", 0), ("rejected", 2)] {
        let line = format!("portico_limit_req_requests_total{{zone=\"per_client\",result=\"{result}\"}} {count}");
        assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
    }
    assert!(text.lines().any(|l| l == "portico_limit_req_addresses{zone=\"per_client\"} 3"), "{text}");
    let status = portico.admin_text("/status").await;
    let row = "<tr><td>per_client</td><td>$remote_addr</td><td>1r/m</td><td>3 of 16384</td><td>5</td><td>0</td><td>2</td></tr>";
    assert!(status.contains(row), "{status}");
    portico.shutdown().await;
    let log = std::fs::read_to_string(&error_log).unwrap();
    let refusals: Vec<&str> = log.lines().filter(|l| l.contains("limiting requests by zone \"per_client\"")).collect();
    assert_eq!(refusals.len(), 2, "{log}");
    assert!(refusals[0].contains("[error]") && refusals[0].contains("client: 127.0.1.5"), "{log}");
}

/// Without `nodelay` the burst goes at the rate: of three requests sent at
/// once at 10 per second, the third waits about 200 ms. (A lower bound: a
/// timer never fires early.)
#[tokio::test]
async fn without_nodelay_the_burst_waits_its_turn() {
    let backend = TestBackend::spawn("app").await;
    let server = "limit_req = { zone = \"per_client\", burst = 5 }";
    let portico = start_portico(&config(&backend, "rate = \"10r/s\"", server)).await;
    let started = Instant::now();
    let request = || async {
        let status = portico.status_from("127.0.2.9", "app.test", "/").await;
        (status, started.elapsed())
    };
    let (one, two, three) = tokio::join!(request(), request(), request());
    let mut answers = [one, two, three];
    answers.sort_by_key(|(_, took)| *took);
    assert!(answers.iter().all(|(status, _)| *status == StatusCode::OK), "{answers:?}");
    assert!(answers[2].1 >= Duration::from_millis(150), "the third waited its turn: {answers:?}");
    assert!(
        portico
            .admin_text("/metrics")
            .await
            .contains("portico_limit_req_requests_total{zone=\"per_client\",result=\"delayed\"} 2")
    );
    portico.shutdown().await;
}

/// A zone keyed by `$http_x_api_key` counts each key's requests, from
/// whichever address they come, in one bucket, and does not count requests
/// without the header (nginx: an empty key is not accounted).
#[tokio::test]
async fn a_keyed_zone_counts_per_key_across_addresses() {
    let backend = TestBackend::spawn("app").await;
    let zones = "rate = \"1r/m\"\n\n[limit_req.per_key]\nkey = \"$http_x_api_key\"\nrate = \"1r/m\"";
    let server = "limit_req = { zone = \"per_key\", burst = 1, nodelay = true }";
    let portico = start_portico(&config(&backend, zones, server)).await;

    let mut seen = Vec::new();
    for source in ["127.0.4.1", "127.0.4.2", "127.0.4.3"] {
        seen.push(status_with_key(&portico, source, Some("key-1"), "/").await);
    }
    assert_eq!(seen, [StatusCode::OK, StatusCode::OK, StatusCode::SERVICE_UNAVAILABLE], "one bucket for key-1");
    assert_eq!(status_with_key(&portico, "127.0.4.3", Some("key-2"), "/").await, StatusCode::OK, "another key");
    for _ in 0..4 {
        assert_eq!(status_with_key(&portico, "127.0.4.1", None, "/").await, StatusCode::OK, "no key: not counted");
    }
    assert_eq!(backend.count(), 7);
    assert_eq!(counts(&portico, "per_key").await, [3, 0, 1]);
    let text = portico.admin_text("/metrics").await;
    assert!(text.lines().any(|l| l == "portico_limit_req_addresses{zone=\"per_key\"} 2"), "{text}");
    let status = portico.admin_text("/status").await;
    let row = "<tr><td>per_key</td><td>$http_x_api_key</td><td>1r/m</td><td>2 of 16384</td><td>3</td><td>0</td><td>1</td></tr>";
    assert!(status.contains(row), "{status}");
    portico.shutdown().await;
}

/// Two limits on one location, per key and per address, both apply: either
/// refuses, with its own status, and a request one refuses is not counted in
/// the other's bucket (nginx accounts only once every limit passed).
#[tokio::test]
async fn several_limits_all_apply_and_a_refusal_fills_no_other_bucket() {
    let backend = TestBackend::spawn("app").await;
    let logs = TempDir::new("limit-req-several");
    let error_log = logs.join("error.log");
    let zones = "rate = \"1r/m\"\n\n[limit_req.per_key]\nkey = \"$http_x_api_key\"\nrate = \"1r/m\"";
    let server = format!(
        r#"error_log = {}

[[server.location]]
prefix = "/api/"
proxy_pass = "app"
limit_req = [{{ zone = "per_key", burst = 2, nodelay = true }}, {{ zone = "per_client", status = 429 }}]"#,
        toml_path(&error_log)
    );
    let portico = start_portico(&config(&backend, zones, &server)).await;

    // One request per address: the address's second and later are refused
    // by per_client, with its 429, and leave per_key's bucket for key-1 alone.
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(status_with_key(&portico, "127.0.5.1", Some("key-1"), "/api/x").await);
    }
    assert_eq!(
        seen,
        [StatusCode::OK, StatusCode::TOO_MANY_REQUESTS, StatusCode::TOO_MANY_REQUESTS, StatusCode::TOO_MANY_REQUESTS]
    );
    // So key-1 has two more (its burst) from other addresses; then per_key
    // refuses, with the default 503, and leaves 127.0.5.4's bucket alone.
    let mut seen = Vec::new();
    for source in ["127.0.5.2", "127.0.5.3", "127.0.5.4"] {
        seen.push(status_with_key(&portico, source, Some("key-1"), "/api/x").await);
    }
    assert_eq!(seen, [StatusCode::OK, StatusCode::OK, StatusCode::SERVICE_UNAVAILABLE]);
    assert_eq!(status_with_key(&portico, "127.0.5.4", Some("key-2"), "/api/x").await, StatusCode::OK);
    assert_eq!(backend.count(), 4);
    assert_eq!(counts(&portico, "per_key").await, [4, 0, 1]);
    assert_eq!(counts(&portico, "per_client").await, [4, 0, 3]);
    portico.shutdown().await;
    let log = std::fs::read_to_string(&error_log).unwrap();
    let by = |zone: &str| log.lines().filter(|l| l.contains(&format!("limiting requests by zone \"{zone}\""))).count();
    assert_eq!((by("per_client"), by("per_key")), (3, 1), "{log}");
}

/// A location's list replaces the server's entirely, as nginx's lines do:
/// its requests are counted in its own zones only.
#[tokio::test]
async fn a_locations_limits_replace_the_servers() {
    let backend = TestBackend::spawn("app").await;
    let zones = "rate = \"1r/m\"\n\n[limit_req.per_key]\nkey = \"$http_x_api_key\"\nrate = \"1r/m\"";
    let server = r#"limit_req = [{ zone = "per_client" }, { zone = "per_key" }]

[[server.location]]
prefix = "/open/"
proxy_pass = "app"
limit_req = [{ zone = "per_key", burst = 5, nodelay = true }]"#;
    let portico = start_portico(&config(&backend, zones, server)).await;
    for _ in 0..3 {
        assert_eq!(status_with_key(&portico, "127.0.6.1", Some("key-1"), "/open/").await, StatusCode::OK);
    }
    // per_client never counted 127.0.6.1: its first request to the server's
    // paths passes, its second is refused.
    assert_eq!(status_with_key(&portico, "127.0.6.1", Some("key-2"), "/").await, StatusCode::OK);
    assert_eq!(status_with_key(&portico, "127.0.6.1", Some("key-3"), "/").await, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(counts(&portico, "per_client").await, [1, 0, 1]);
    assert_eq!(counts(&portico, "per_key").await, [4, 0, 0]);
    portico.shutdown().await;
}

/// A reload that leaves the zone alone keeps its buckets (as nginx keeps its
/// zones); one that changes its rate, or its key, starts a new table.
#[tokio::test]
async fn a_reload_keeps_an_unchanged_zone() {
    let backend = TestBackend::spawn("app").await;
    let server = "limit_req = { zone = \"per_client\" }";
    let mut portico = start_portico(&config(&backend, "rate = \"1r/m\"", server)).await;
    assert_eq!(portico.status_from("127.0.3.1", "app.test", "/").await, StatusCode::OK);
    assert_eq!(portico.status_from("127.0.3.1", "app.test", "/").await, StatusCode::SERVICE_UNAVAILABLE);
    portico.reload(&config(&backend, "rate = \"1r/m\"", &format!("{server}\n# reloaded"))).unwrap();
    assert_eq!(
        portico.status_from("127.0.3.1", "app.test", "/").await,
        StatusCode::SERVICE_UNAVAILABLE,
        "same zone, same bucket"
    );
    portico.reload(&config(&backend, "rate = \"2r/m\"", server)).unwrap();
    assert_eq!(portico.status_from("127.0.3.1", "app.test", "/").await, StatusCode::OK, "a new zone");
    // Keyed by one header, then by another with the same value: were the
    // zone kept, its hash of the value would find the full bucket.
    let keyed = |header: &str| format!("rate = \"2r/m\"\nkey = \"$http_{header}\"");
    portico.reload(&config(&backend, &keyed("x_api_key"), server)).unwrap();
    assert_eq!(status_with_key(&portico, "127.0.3.2", Some("k"), "/").await, StatusCode::OK);
    assert_eq!(status_with_key(&portico, "127.0.3.2", Some("k"), "/").await, StatusCode::SERVICE_UNAVAILABLE);
    portico.reload(&config(&backend, &keyed("x_api_key"), &format!("{server}\n# reloaded"))).unwrap();
    assert_eq!(
        status_with_key(&portico, "127.0.3.3", Some("k"), "/").await,
        StatusCode::SERVICE_UNAVAILABLE,
        "same key, same zone"
    );
    portico.reload(&config(&backend, &keyed("x_client_id"), server)).unwrap();
    let mut client = Connect::to(portico.addr(0)).source_ip("127.0.3.2").connect().await.unwrap();
    let reply = client.get_with("app.test", "/", &[("x-client-id", "k")]).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK, "another key, a new zone");
    portico.shutdown().await;
}
