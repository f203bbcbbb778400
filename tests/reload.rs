//! `Running::reload`: new connections use the new configuration, kept listen
//! sockets stay, added ones are bound, removed ones close, requests in flight
//! finish, and a bad configuration changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::StatusCode;
use support::*;

/// One server per listen address in `listens`, all proxying to `backend`.
fn config(backend: &TestBackend, listens: &[&str]) -> String {
    let mut toml = format!("[upstream.pool]\nservers = [\"{}\"]\n", backend.addr());
    for listen in listens {
        toml.push_str(&format!("\n[[server]]\nlisten = [\"{listen}\"]\nproxy_pass = \"pool\"\n"));
    }
    toml
}

async fn fresh_get(addr: SocketAddr, path: &str) -> String {
    let mut client = Client::http1(addr).await.unwrap();
    let reply = client.get("reload.test", path).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    reply.text()
}

#[tokio::test]
async fn new_connections_use_the_new_upstream_on_the_same_socket() {
    let a = TestBackend::spawn("A").await;
    let b = TestBackend::spawn("B").await;
    let mut portico = start_portico(&config(&a, &["127.0.0.1:0"])).await;
    let addr = portico.addr(0);
    let mut old_client = Client::http1(addr).await.unwrap();
    assert_eq!(old_client.get("reload.test", "/").await.unwrap().text(), "A");

    portico.reload(&config(&b, &["127.0.0.1:0"])).unwrap();

    assert_eq!(portico.addrs(), [addr], "the kept listen socket was re-bound");
    for i in 0..5 {
        assert_eq!(fresh_get(addr, &format!("/{i}")).await, "B");
    }
    // A connection kept alive across the reload serves its next request on
    // the new configuration too: long-lived clients must not keep old upstreams.
    let reply = old_client.get("reload.test", "/old-conn").await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), "B");
    assert_eq!(a.count(), 1);
    assert_eq!(b.count(), 6);
}

#[tokio::test]
async fn added_listen_addresses_are_bound_and_removed_ones_closed() {
    let app = TestBackend::spawn("app").await;
    let mut portico = start_portico(&config(&app, &["127.0.0.1:0"])).await;
    let first = portico.addr(0);

    portico.reload(&config(&app, &["127.0.0.1:0", "127.0.0.2:0"])).unwrap();
    assert_eq!(portico.addrs().len(), 2);
    assert_eq!(portico.addr(0), first);
    let second = portico.addr(1);
    assert_eq!(second.ip().to_string(), "127.0.0.2");
    assert_eq!(fresh_get(second, "/").await, "app");
    assert_eq!(fresh_get(first, "/").await, "app");

    portico.reload(&config(&app, &["127.0.0.1:0"])).unwrap();
    assert_eq!(portico.addrs(), [first]);
    // The accept loop stops right after the switch; give it a moment to close.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match tokio::net::TcpStream::connect(second).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
            other => {
                assert!(Instant::now() < deadline, "{second} still accepts after its removal: {other:?}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    assert_eq!(fresh_get(first, "/").await, "app");
}

#[tokio::test]
async fn a_request_in_flight_during_a_reload_completes() {
    let a = TestBackend::spawn("A").await;
    let b = TestBackend::spawn("B").await;
    let mut portico = start_portico(&config(&a, &["127.0.0.1:0"])).await;
    let addr = portico.addr(0);

    let in_flight = tokio::spawn(async move {
        let mut client = Client::http1(addr).await.unwrap();
        client.get("reload.test", "/slow?ms=500").await.unwrap()
    });
    // Bounded wait until the slow request has reached the backend.
    let deadline = Instant::now() + Duration::from_secs(2);
    while a.count() == 0 {
        assert!(Instant::now() < deadline, "the slow request never reached the backend");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!in_flight.is_finished());

    portico.reload(&config(&b, &["127.0.0.1:0"])).unwrap();
    assert_eq!(fresh_get(addr, "/").await, "B");

    let reply = tokio::time::timeout(Duration::from_secs(5), in_flight).await.unwrap().unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), "A");
}

#[tokio::test]
async fn a_broken_configuration_keeps_the_old_one_serving() {
    let a = TestBackend::spawn("A").await;
    let b = TestBackend::spawn("B").await;
    let mut portico = start_portico(&config(&a, &["127.0.0.1:0"])).await;
    let addr = portico.addr(0);

    let broken = config(&b, &["127.0.0.1:0"]).replace("proxy_pass = \"pool\"", "proxy_pass = \"nowhere\"");
    match portico.reload(&broken) {
        Err(ReloadFailure::Config(errors)) => assert!(errors.to_string().contains("nowhere"), "{errors}"),
        other => panic!("a reference to a missing upstream was accepted: {other:?}"),
    }
    let unknown_key = format!("{}\nno_such_key = 1\n", config(&b, &["127.0.0.1:0"]));
    assert!(matches!(portico.reload(&unknown_key), Err(ReloadFailure::Config(_))));

    assert_eq!(portico.addrs(), [addr]);
    assert_eq!(fresh_get(addr, "/").await, "A");
    assert_eq!(b.count(), 0);
}

#[tokio::test]
async fn a_reload_that_cannot_bind_changes_nothing() {
    let a = TestBackend::spawn("A").await;
    let b = TestBackend::spawn("B").await;
    let mut portico = start_portico(&config(&a, &["127.0.0.1:0"])).await;
    let addr = portico.addr(0);
    // Someone else holds this address.
    let taken = std::net::TcpListener::bind("127.0.0.3:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();

    let result = portico.reload(&config(&b, &["127.0.0.1:0", &taken_addr]));

    assert!(matches!(result, Err(ReloadFailure::Reload(_))), "{result:?}");
    assert_eq!(portico.addrs(), [addr]);
    assert_eq!(fresh_get(addr, "/").await, "A");
    assert_eq!(b.count(), 0);
}
