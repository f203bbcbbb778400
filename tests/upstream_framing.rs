//! How portico's upstream HTTP/1 client reads and writes the wire: response
//! framing (chunked with extensions and trailers, close-delimited, HTTP/1.0,
//! `Connection: close`, HEAD, 204/304, interim 1xx), malformed or truncated
//! responses, stale kept-alive connections, how request bodies are framed
//! toward the backend, large response heads and answers that come while the
//! request body is still uploading (the client's connection kept after one);
//! chunked framing and reuse over an HTTPS upstream too.
//!
//! The backend is a raw TCP server (`RawBackend`, tests/support): it reads each
//! request head (and, by default, its body), records it, and writes exactly
//! the bytes the test chose, so every response framing is under the test's
//! control. Each test asserts what the client receives and, where it matters,
//! how many upstream connections carried the requests (keep-alive reuse).
//!
//! Where the behaviour is portico's own choice rather than a requirement, the
//! assertion is marked "current behaviour" in a comment.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, StatusCode, Version};
use http_body_util::BodyExt;
use support::raw_backend::*;
use support::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

// --- portico and the client side -----------------------------------------------

/// `app.test` in front of the backend, with bounded upstream timeouts.
fn config(backend: &RawBackend) -> String {
    AppConfig::new(backend.addr).upstream("read_timeout = \"5s\"\nsend_timeout = \"5s\"").build()
}

/// The same with the backend as an HTTPS upstream for `backend.internal`.
fn tls_config(backend: &RawBackend, cert: &TestCert) -> String {
    AppConfig::new(backend.addr)
        .upstream(&format!(
            "read_timeout = \"5s\"\ntls = true\nca_file = {}\ntls_server_name = \"backend.internal\"",
            toml_path(&cert.ca_path())
        ))
        .build()
}

async fn client(portico: &Portico) -> Client {
    Client::http1(portico.addr(0)).await.unwrap()
}

/// `method path` on app.test, the whole answer, bounded by `WITHIN`.
async fn call(client: &mut Client, method: Method, path: &str) -> Reply {
    let request = client.request(method.clone(), "app.test", path).body(body::empty()).unwrap();
    tokio::time::timeout(WITHIN, client.reply(request))
        .await
        .unwrap_or_else(|_| panic!("{method} {path}: no answer within {WITHIN:?}"))
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

async fn get(client: &mut Client, path: &str) -> Reply {
    call(client, Method::GET, path).await
}

/// `GET path` on a fresh client connection.
async fn get_fresh(portico: &Portico, path: &str) -> Reply {
    get(&mut client(portico).await, path).await
}

/// `GET path`: the head's status (or the error before a head), then the body
/// (or the error that cut it short).
async fn get_outcome(portico: &Portico, path: &str) -> Result<(StatusCode, Result<Bytes, String>), String> {
    let mut client = client(portico).await;
    let request = client.request(Method::GET, "app.test", path).body(body::empty()).unwrap();
    let response = tokio::time::timeout(WITHIN, client.send(request))
        .await
        .expect("a head or an error")
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body = tokio::time::timeout(WITHIN, response.into_body().collect())
        .await
        .expect("the body ends or fails")
        .map(|b| b.to_bytes())
        .map_err(|e| e.to_string());
    Ok((status, body))
}

/// A response cut short must not reach the client as a whole one: either the
/// connection ends before the head (all of the answer came in one read, and
/// the failure came before hyper wrote the head) or the body fails.
fn assert_not_complete(outcome: Result<(StatusCode, Result<Bytes, String>), String>) {
    if let Ok((status, body)) = outcome {
        assert_eq!(status, StatusCode::OK);
        assert!(body.is_err(), "a truncated body must not look complete: {body:?}");
    }
}

/// The exchange on one raw connection to portico: `bytes` out, everything
/// back until portico closes (send `Connection: close`).
async fn raw(portico: &Portico, bytes: &[u8]) -> Vec<u8> {
    raw_request_within(portico.addr(0), bytes, WITHIN).await
}

/// The statuses of every response head in `response` (1xx ones included).
fn statuses(response: &[u8]) -> Vec<u16> {
    let text = String::from_utf8_lossy(response);
    text.split("\r\n").filter(|l| l.starts_with("HTTP/1.")).filter_map(|l| l.split(' ').nth(1)?.parse().ok()).collect()
}

/// What follows the last response head in `response`.
fn last_body(response: &[u8]) -> &[u8] {
    let mut rest = response;
    let mut body = response;
    while let Some(at) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
        body = &rest[at + 4..];
        if !body.starts_with(b"HTTP/1.") {
            break;
        }
        rest = body;
    }
    body
}

/// A chunked response: chunk extensions (one with a quoted value), a
/// one-byte chunk, no trailers.
const CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
    5;foo=bar\r\nhello\r\n1\r\n \r\nb\r\nchunked wor\r\n2;a=1;b=\"q\"\r\nld\r\n0\r\n\r\n";
/// The same with trailer fields after the last chunk.
const CHUNKED_TRAILERS: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n\
    5;foo=bar\r\nhello\r\n1\r\n \r\nb\r\nchunked wor\r\n2;a=1;b=\"q\"\r\nld\r\n0\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n";
const CHUNKED_BODY: &str = "hello chunked world";

/// Backend: `/chunked` and `/trailers` as above, anything else 200 "next".
fn chunked_script(w: &Wire) -> Answer {
    match w.path() {
        "/chunked" => keep(CHUNKED),
        "/trailers" => keep(CHUNKED_TRAILERS),
        _ => ok("next"),
    }
}

// --- response framing and reuse ------------------------------------------------

/// 1: a chunked response with chunk extensions arrives as its concatenated
/// data, and its connection carries the next request.
#[tokio::test]
async fn chunked_response_with_extensions_is_reused() {
    let backend = RawBackend::spawn(chunked_script).await;
    let portico = start_portico(&config(&backend)).await;
    let mut client = client(&portico).await;

    let reply = get(&mut client, "/chunked").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), CHUNKED_BODY);
    // Current behaviour: chunked toward the client too (no Content-Length invented).
    assert_eq!(reply.header("transfer-encoding"), Some("chunked"), "{:?}", reply.headers);
    let reply = get(&mut client, "/next").await;
    assert_eq!((reply.status, reply.text().as_str()), (StatusCode::OK, "next"));

    assert_eq!(backend.conns(), [0, 0], "both requests on one upstream connection");
    assert_eq!(backend.connections(), 1);
}

/// 1: with trailer fields after the last chunk, the body still arrives whole
/// and the next request on the client connection is answered.
#[tokio::test]
async fn chunked_response_with_trailers_arrives_whole() {
    let backend = RawBackend::spawn(chunked_script).await;
    let portico = start_portico(&config(&backend)).await;
    let mut client = client(&portico).await;

    let reply = get(&mut client, "/trailers").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), CHUNKED_BODY);
    assert_eq!(reply.header("trailer"), None, "hop-by-hop, not passed on");
    let reply = get(&mut client, "/next").await;
    assert_eq!((reply.status, reply.text().as_str()), (StatusCode::OK, "next"));
    assert_eq!(backend.requests().len(), 2);
}

/// 1: ... and the upstream connection is reused after the trailers.
#[tokio::test]
async fn chunked_response_with_trailers_is_reused() {
    let backend = RawBackend::spawn(chunked_script).await;
    let portico = start_portico(&config(&backend)).await;
    let mut client = client(&portico).await;

    assert_eq!(get(&mut client, "/trailers").await.text(), CHUNKED_BODY);
    assert_eq!(get(&mut client, "/next").await.text(), "next");
    assert_eq!(backend.conns(), [0, 0], "both requests on one upstream connection");
}

/// 1 over TLS: the chunked response from an HTTPS upstream, then reuse.
#[tokio::test]
async fn chunked_response_over_upstream_tls_is_reused() {
    let cert = TestCert::new(&["backend.internal"]);
    let backend = RawBackend::spawn_tls(&cert, chunked_script).await;
    let portico = start_portico(&tls_config(&backend, &cert)).await;
    let mut client = client(&portico).await;

    let reply = get(&mut client, "/chunked").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), CHUNKED_BODY);
    let reply = get(&mut client, "/next").await;
    assert_eq!((reply.status, reply.text().as_str()), (StatusCode::OK, "next"));
    let reply = get(&mut client, "/chunked").await;
    assert_eq!(reply.text(), CHUNKED_BODY);

    assert_eq!(backend.conns(), [0, 0, 0], "every request on one upstream TLS connection");
    assert_eq!(backend.connections(), 1);
}

/// 2: a body framed by the connection's close (HTTP/1.1, neither
/// Content-Length nor Transfer-Encoding) arrives whole; the next request
/// needs a new upstream connection.
#[tokio::test]
async fn close_delimited_response_is_read_to_the_end_and_not_reused() {
    let body = "framed by close, ".repeat(1000);
    let answer = format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n{body}");
    let backend = RawBackend::spawn(move |w| if w.path() == "/eof" { close(&answer) } else { ok("next") }).await;
    let portico = start_portico(&config(&backend)).await;
    let mut client = client(&portico).await;

    let reply = get(&mut client, "/eof").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), body);
    let reply = get(&mut client, "/next").await;
    assert_eq!((reply.status, reply.text().as_str()), (StatusCode::OK, "next"));

    assert_eq!(backend.conns(), [0, 1]);
}

/// 3: an HTTP/1.0 response without `Connection: keep-alive` ends its
/// connection (portico does not reuse it even though the backend would read on).
#[tokio::test]
async fn http10_response_without_keep_alive_is_not_reused() {
    let backend = RawBackend::spawn(|w| match w.path() {
        "/old" => keep("HTTP/1.0 200 OK\r\nContent-Length: 6\r\n\r\nold ok"),
        _ => ok("next"),
    })
    .await;
    let portico = start_portico(&config(&backend)).await;

    let reply = get_fresh(&portico, "/old").await;
    assert_eq!((reply.status, reply.text().as_str()), (StatusCode::OK, "old ok"));
    // portico answers in HTTP/1.1 whatever the upstream spoke (hyper's client
    // passed an upstream's HTTP/1.0 on, and HTTP/1.1 clients then closed).
    assert_eq!(reply.version, Version::HTTP_11);
    let reply = get_fresh(&portico, "/next").await;
    assert_eq!((reply.status, reply.text().as_str()), (StatusCode::OK, "next"));

    assert_eq!(backend.conns(), [0, 1], "an HTTP/1.0 answer without keep-alive ends the connection");
}

/// 3: an HTTP/1.0 response with `Connection: keep-alive` and a Content-Length
/// keeps its connection for the next request.
#[tokio::test]
async fn http10_response_with_keep_alive_is_reused() {
    let backend = RawBackend::spawn(|w| match w.path() {
        "/old" => keep("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 6\r\n\r\nold ok"),
        _ => ok("next"),
    })
    .await;
    let portico = start_portico(&config(&backend)).await;

    let reply = get_fresh(&portico, "/old").await;
    assert_eq!((reply.status, reply.text().as_str()), (StatusCode::OK, "old ok"));
    // HTTP/1.1 in portico's status line, and the upstream's keep-alive
    // (hop-by-hop) not passed on.
    assert_eq!(reply.version, Version::HTTP_11);
    assert_eq!(reply.header("connection"), None);
    let reply = get_fresh(&portico, "/next").await;
    assert_eq!((reply.status, reply.text().as_str()), (StatusCode::OK, "next"));

    assert_eq!(backend.conns(), [0, 0]);
    assert_eq!(backend.connections(), 1);
}

/// 4: `Connection: close` with a Content-Length: the body arrives, the
/// connection is not reused (the backend would have read on).
#[tokio::test]
async fn connection_close_response_is_not_reused() {
    let backend = RawBackend::spawn(|w| match w.path() {
        "/bye" => keep("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbye"),
        _ => ok("next"),
    })
    .await;
    let portico = start_portico(&config(&backend)).await;
    let mut client = client(&portico).await;

    let reply = get(&mut client, "/bye").await;
    assert_eq!((reply.status, reply.text().as_str()), (StatusCode::OK, "bye"));
    assert_eq!(reply.header("connection"), None, "the upstream's close is not the client's");
    assert!(!client.is_closed(), "the client connection stays open");
    let reply = get(&mut client, "/next").await;
    assert_eq!((reply.status, reply.text().as_str()), (StatusCode::OK, "next"));

    assert_eq!(backend.conns(), [0, 1]);
}

/// 5: a HEAD answer's Content-Length announces a body that is not sent; it
/// is passed to the client, nothing is read as body, and the connection
/// carries the next GET.
#[tokio::test]
async fn head_response_content_length_passes_and_connection_is_reused() {
    let backend = RawBackend::spawn(|w| match w.method() {
        "HEAD" => keep("HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"),
        _ => ok("after head"),
    })
    .await;
    let portico = start_portico(&config(&backend)).await;
    let mut client = client(&portico).await;

    let reply = call(&mut client, Method::HEAD, "/file").await;
    assert_eq!(reply.status, StatusCode::OK);
    // Current behaviour: the upstream's Content-Length of a HEAD answer is passed through.
    assert_eq!(reply.header("content-length"), Some("1234"), "{:?}", reply.headers);
    assert!(reply.body.is_empty());
    let reply = get(&mut client, "/file").await;
    assert_eq!((reply.status, reply.text().as_str()), (StatusCode::OK, "after head"));

    let seen = backend.requests();
    assert_eq!(seen.iter().map(Wire::method).collect::<Vec<_>>(), ["HEAD", "GET"]);
    assert_eq!(backend.conns(), [0, 0]);
}

/// 6: 204 and 304 have no body whatever their headers say; the connection
/// carries the next request each time.
#[tokio::test]
async fn no_body_statuses_keep_the_connection() {
    let backend = RawBackend::spawn(|w| match w.path() {
        "/204" => keep("HTTP/1.1 204 No Content\r\nX-Done: yes\r\n\r\n"),
        "/304" => keep("HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 42\r\n\r\n"),
        _ => ok("next"),
    })
    .await;
    let portico = start_portico(&config(&backend)).await;
    let mut client = client(&portico).await;

    let reply = get(&mut client, "/204").await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(reply.header("x-done"), Some("yes"));
    assert!(reply.body.is_empty());
    let reply = get(&mut client, "/next").await;
    assert_eq!((reply.status, reply.text().as_str()), (StatusCode::OK, "next"));

    let reply = get(&mut client, "/304").await;
    assert_eq!(reply.status, StatusCode::NOT_MODIFIED);
    assert_eq!(reply.header("etag"), Some("\"v1\""));
    assert!(reply.body.is_empty());
    let reply = get(&mut client, "/next").await;
    assert_eq!((reply.status, reply.text().as_str()), (StatusCode::OK, "next"));

    assert_eq!(backend.conns(), [0, 0, 0, 0], "one upstream connection for all four");
}

/// 7: interim responses (an unasked-for 100 Continue, 103 Early Hints)
/// before the final one: the client gets the final 200 and its body.
#[tokio::test]
async fn interim_responses_before_the_final_one() {
    let backend = RawBackend::spawn(|w| match w.path() {
        "/hints" => keep(
            "HTTP/1.1 100 Continue\r\n\r\n\
             HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n\
             HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Final: 1\r\n\r\nfinal",
        ),
        _ => ok("next"),
    })
    .await;
    let portico = start_portico(&config(&backend)).await;

    // hyper's client, which skips any 1xx itself.
    let mut client = client(&portico).await;
    let reply = get(&mut client, "/hints").await;
    assert_eq!((reply.status, reply.text().as_str()), (StatusCode::OK, "final"));
    assert_eq!(reply.header("x-final"), Some("1"));
    let reply = get(&mut client, "/next").await;
    assert_eq!((reply.status, reply.text().as_str()), (StatusCode::OK, "next"));

    // Raw bytes: whatever 1xx came first, the last response is the 200 and its body.
    let response = raw(&portico, b"GET /hints HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n").await;
    let all = statuses(&response);
    assert_eq!(all.last(), Some(&200), "{}", String::from_utf8_lossy(&response));
    assert!(all[..all.len() - 1].iter().all(|s| (100..200).contains(s)), "{all:?}");
    assert_eq!(last_body(&response), b"final", "{}", String::from_utf8_lossy(&response));

    assert_eq!(backend.conns(), [0, 0, 0], "the interim answers do not end the connection");
}

// --- malformed and truncated responses ---------------------------------------

/// A backend that answers `/bad` with `bad` (closing the connection after it
/// when `close_after`, else reading on), anything else 200 "fine": the GET of
/// `/bad` must be a 502, and the next request go on a fresh upstream connection.
async fn assert_bad_gateway(bad: &'static [u8], close_after: bool) {
    let backend = RawBackend::spawn(move |w| match w.path() {
        "/bad" if close_after => close(bad),
        "/bad" => keep(bad),
        _ => ok("fine"),
    })
    .await;
    let portico = start_portico(&config(&backend)).await;
    let shown = String::from_utf8_lossy(bad);

    let reply = get_fresh(&portico, "/bad").await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "upstream answered {shown:?}");
    let reply = get_fresh(&portico, "/ok").await;
    assert_eq!((reply.status, reply.text().as_str()), (StatusCode::OK, "fine"), "after {shown:?}");

    let seen = backend.requests();
    // Current behaviour: with one server, a GET that got a bad answer is not sent again.
    assert_eq!(seen.iter().map(Wire::path).collect::<Vec<_>>(), ["/bad", "/ok"], "after {shown:?}");
    assert_ne!(seen[0].conn, seen[1].conn, "a connection that answered {shown:?} was reused");
}

/// 8: bytes that are not HTTP instead of a status line.
#[tokio::test]
async fn garbage_instead_of_a_status_line_is_502() {
    assert_bad_gateway(b"\x00\x01garbage, not HTTP\r\n\r\n", false).await;
}

/// 8: a status line, then the connection closes before the head ends.
#[tokio::test]
async fn connection_closed_inside_the_head_is_502() {
    assert_bad_gateway(b"HTTP/1.1 200 OK\r\nContent-Len", true).await;
}

/// 8: a Content-Length that is not a number.
#[tokio::test]
async fn non_numeric_content_length_is_502() {
    assert_bad_gateway(b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n0123456789", false).await;
}

/// 8: two different Content-Length values.
#[tokio::test]
async fn conflicting_content_lengths_are_502() {
    assert_bad_gateway(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", false).await;
}

/// 8: Content-Length together with Transfer-Encoding: chunked (the
/// response-splitting shape) is refused as a bad answer.
#[tokio::test]
async fn content_length_with_chunked_is_502() {
    assert_bad_gateway(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\nb\r\nhello world\r\n0\r\n\r\n",
        false,
    )
    .await;
}

/// 9: the backend closes after 10 of 100 declared body bytes: the client
/// must not see a complete success.
#[tokio::test]
async fn backend_closing_mid_body_is_not_a_complete_response() {
    let backend = RawBackend::spawn(|w| match w.path() {
        "/short" => close("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789"),
        _ => ok("fine"),
    })
    .await;
    let portico = start_portico(&config(&backend)).await;

    assert_not_complete(get_outcome(&portico, "/short").await);

    // Raw: the client sees the declared length and fewer bytes, then the close.
    let response = raw(&portico, b"GET /short HTTP/1.1\r\nHost: app.test\r\n\r\n").await;
    let text = String::from_utf8_lossy(&response);
    assert!(last_body(&response).len() < 100, "{text}");

    assert_eq!(get_fresh(&portico, "/ok").await.text(), "fine");
    assert_eq!(backend.conns(), [0, 1, 2]);
}

/// 9: a chunk size line that is not hex: the client must not see a
/// complete success.
#[tokio::test]
async fn bad_chunk_size_is_not_a_complete_response() {
    let backend = RawBackend::spawn(|w| match w.path() {
        "/zz" => keep("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\nworld\r\n0\r\n\r\n"),
        _ => ok("fine"),
    })
    .await;
    let portico = start_portico(&config(&backend)).await;

    assert_not_complete(get_outcome(&portico, "/zz").await);

    assert_eq!(get_fresh(&portico, "/ok").await.text(), "fine");
    assert_eq!(backend.conns(), [0, 1], "the connection with broken chunking was reused");
}

// --- stale kept-alive connections ----------------------------------------------

/// 10: the backend closes a kept-alive connection while it is idle in
/// portico's pool: the next GET, and then a POST with a body, are still
/// answered (on a fresh connection).
#[tokio::test]
async fn stale_idle_connection_is_not_used() {
    let idle_close = Arc::new(Notify::new());
    let signal = idle_close.clone();
    let backend = RawBackend::spawn(move |w| {
        let body = format!("{} {}", w.method(), w.path());
        let bytes = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        Answer { bytes: bytes.into_bytes(), then: Then::CloseWhen(signal.clone()), read_body: true }
    })
    .await;
    let portico = start_portico(&config(&backend)).await;
    let mut client = client(&portico).await;

    assert_eq!(get(&mut client, "/one").await.text(), "GET /one");
    idle_close.notify_one();
    backend.wait_closed(1).await;

    let reply = get(&mut client, "/two").await;
    assert_eq!((reply.status, reply.text().as_str()), (StatusCode::OK, "GET /two"));
    idle_close.notify_one();
    backend.wait_closed(2).await;

    let request = client.request(Method::POST, "app.test", "/three").body(body::full("small")).unwrap();
    let reply = tokio::time::timeout(WITHIN, client.reply(request)).await.unwrap().unwrap();
    assert_eq!((reply.status, reply.text().as_str()), (StatusCode::OK, "POST /three"));

    let seen = backend.requests();
    assert_eq!(seen.iter().map(|w| (w.path(), w.conn)).collect::<Vec<_>>(), [("/one", 0), ("/two", 1), ("/three", 2)]);
    assert_eq!(seen[2].body, b"small");
}

/// 10, the race the test above waits out: the backend closes a kept-alive
/// connection just as the next GET arrives on it (reads it, answers nothing).
/// An idempotent request that got no byte back on a reused connection can go
/// again on a fresh one, as nginx does for a cached connection.
#[tokio::test]
async fn keep_alive_race_retries_a_get_on_a_fresh_connection() {
    let backend =
        RawBackend::spawn(|w| if w.conn == 0 && w.path() == "/two" { close(b"") } else { ok(w.path()) }).await;
    let portico = start_portico(&config(&backend)).await;
    let mut client = client(&portico).await;

    assert_eq!(get(&mut client, "/one").await.text(), "/one");
    let reply = get(&mut client, "/two").await;
    assert_eq!((reply.status, reply.text().as_str()), (StatusCode::OK, "/two"));
    let seen = backend.requests();
    assert_eq!(seen.iter().map(|w| (w.path(), w.conn)).collect::<Vec<_>>(), [("/one", 0), ("/two", 0), ("/two", 1)]);
}

// --- request framing toward the backend ----------------------------------------

/// 11: how request bodies are framed toward the backend.
#[tokio::test]
async fn request_body_framing_toward_the_backend() {
    let backend = RawBackend::spawn(|_| ok("seen")).await;
    let portico = start_portico(&config(&backend)).await;

    // Content-Length from the client: the same length upstream.
    let mut client = client(&portico).await;
    let request = client.request(Method::POST, "app.test", "/length").body(body::full("hello")).unwrap();
    let reply = tokio::time::timeout(WITHIN, client.reply(request)).await.unwrap().unwrap();
    assert_eq!(reply.status, StatusCode::OK);

    // Chunked from the client.
    let response = raw(
        &portico,
        b"POST /chunked HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
          5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&response), Some(200), "{}", String::from_utf8_lossy(&response));

    // No body.
    assert_eq!(get(&mut client, "/nobody").await.status, StatusCode::OK);

    // An explicit Content-Length: 0.
    let response =
        raw(&portico, b"POST /zero HTTP/1.1\r\nHost: app.test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
    assert_eq!(raw_status(&response), Some(200), "{}", String::from_utf8_lossy(&response));

    let seen = backend.requests();
    let by_path = |path: &str| seen.iter().find(|w| w.path() == path).unwrap_or_else(|| panic!("{path}: {seen:?}"));

    let length = by_path("/length");
    assert_eq!(length.header("content-length"), Some("5"), "{length:?}");
    assert!(!length.has("transfer-encoding"), "{length:?}");
    assert_eq!(length.body, b"hello");

    let chunked = by_path("/chunked");
    // Current behaviour: a chunked upload goes on chunked (not buffered into a Content-Length).
    assert_eq!(chunked.framing, Framing::Chunked, "{chunked:?}");
    assert_eq!(chunked.header("transfer-encoding"), Some("chunked"), "{chunked:?}");
    assert!(!chunked.has("content-length"), "{chunked:?}");
    assert_eq!(chunked.body, b"hello world");

    let nobody = by_path("/nobody");
    assert_eq!(nobody.framing, Framing::None, "{nobody:?}");
    assert!(!nobody.has("content-length") && !nobody.has("transfer-encoding"), "{nobody:?}");

    let zero = by_path("/zero");
    // Current behaviour: the client's Content-Length: 0 is passed on as is.
    assert_eq!(zero.framing, Framing::Length(0), "{zero:?}");
    assert_eq!(zero.header("content-length"), Some("0"), "{zero:?}");
    assert!(!zero.has("transfer-encoding"), "{zero:?}");
    assert!(zero.body.is_empty());

    assert!(seen.iter().all(|w| w.line.ends_with(" HTTP/1.1")), "{seen:?}");
}

// --- large heads and early answers ---------------------------------------------

/// 12: a response head with one 20 KiB header field.
#[tokio::test]
async fn large_response_header_passes_through() {
    let big = "h".repeat(20 * 1024);
    let answer = format!("HTTP/1.1 200 OK\r\nX-Big: {big}\r\nContent-Length: 4\r\n\r\nbody");
    let backend = RawBackend::spawn(move |w| if w.path() == "/big" { keep(&answer) } else { ok("next") }).await;
    let portico = start_portico(&config(&backend)).await;
    let mut client = client(&portico).await;

    let reply = get(&mut client, "/big").await;
    // Current behaviour: passed through whole (nginx's default proxy_buffer_size would make it a 502).
    assert_eq!((reply.status, reply.text().as_str()), (StatusCode::OK, "body"));
    assert_eq!(reply.header("x-big").map(str::len), Some(big.len()));
    assert_eq!(reply.header("x-big"), Some(big.as_str()));
    let reply = get(&mut client, "/next").await;
    assert_eq!(reply.text(), "next");
    assert_eq!(backend.conns(), [0, 0]);
}

/// 12: a response head larger than the client's read buffer (one 512 KiB
/// header field).
#[tokio::test]
async fn oversized_response_head_is_502() {
    let answer = format!("HTTP/1.1 200 OK\r\nX-Huge: {}\r\nContent-Length: 4\r\n\r\nbody", "h".repeat(512 * 1024));
    let backend = RawBackend::spawn(move |w| if w.path() == "/huge" { keep(&answer) } else { ok("next") }).await;
    let portico = start_portico(&config(&backend)).await;

    // Current behaviour: hyper's limit (its ~400 KiB read buffer) makes it a 502.
    assert_eq!(get_fresh(&portico, "/huge").await.status, StatusCode::BAD_GATEWAY);
    assert_eq!(get_fresh(&portico, "/next").await.text(), "next");
    assert_eq!(backend.conns(), [0, 1]);
}

/// 13: the backend answers at once, then reads the upload to its end, as
/// Tomcat and nginx do: the client's connection carries its next request,
/// portico reading the rest of the upload and dropping it (up to 1 MiB more),
/// for a body with a Content-Length and a chunked one alike.
#[tokio::test]
async fn answer_before_the_upload_ends_keeps_the_client_connection() {
    const PIECE: usize = 16 * 1024;
    const PIECES: usize = 32; // 512 KiB
    let backend = RawBackend::spawn(|w| if w.path() == "/upload" { early() } else { ok("next") }).await;
    let portico = start_portico(&config(&backend)).await;

    for chunked in [false, true] {
        let stream = TcpStream::connect(portico.addr(0)).await.unwrap();
        let (mut read, mut write) = stream.into_split();
        // The rest of the upload waits for the answer: sent at once, it could
        // all reach the backend first on a busy machine, and the upstream
        // connection would then be finished and rightly reused.
        let (answered, answer_read) = tokio::sync::oneshot::channel::<()>();
        let uploader = tokio::spawn(async move {
            let framing = if chunked {
                "Transfer-Encoding: chunked".to_owned()
            } else {
                format!("Content-Length: {}", PIECE * PIECES)
            };
            let head = format!("POST /upload HTTP/1.1\r\nHost: app.test\r\n{framing}\r\n\r\n");
            write.write_all(head.as_bytes()).await?;
            let piece = vec![b'u'; PIECE];
            let mut answer_read = Some(answer_read);
            for i in 0..PIECES {
                if let Some(answer_read) = answer_read.take_if(|_| i == 1) {
                    let _ = answer_read.await;
                }
                if chunked {
                    write.write_all(format!("{PIECE:x}\r\n").as_bytes()).await?;
                }
                write.write_all(&piece).await?;
                if chunked {
                    write.write_all(b"\r\n").await?;
                }
            }
            if chunked {
                write.write_all(b"0\r\n\r\n").await?;
            }
            std::io::Result::Ok(write)
        });
        let first = read_answer(&mut read, b"early").await;
        assert_eq!(raw_status(&first), Some(200), "{}", String::from_utf8_lossy(&first));
        let _ = answered.send(());
        let mut write = tokio::time::timeout(WITHIN, uploader)
            .await
            .expect("the upload was not all read")
            .unwrap()
            .unwrap_or_else(|e| panic!("chunked {chunked}: the upload was cut short: {e}"));

        write.write_all(b"GET /next HTTP/1.1\r\nHost: app.test\r\n\r\n").await.unwrap();
        let second = read_answer(&mut read, b"next").await;
        assert_eq!(raw_status(&second), Some(200), "chunked {chunked}: {}", String::from_utf8_lossy(&second));
    }
    // An upstream connection left inside a request body is not used again:
    // each upload's closes, its GET opens the next.
    assert_eq!(backend.conns(), [0, 1, 1, 2]);
}

/// 13: as above with 3 MiB still to come when the answer is complete: past
/// the 1 MiB portico reads and drops, the client's connection closes after
/// the answer rather than taking in an upload nobody wants.
#[tokio::test]
async fn answer_before_a_long_upload_closes_the_client_connection() {
    const LEN: usize = 3 << 20;
    let backend = RawBackend::spawn(|_| early()).await;
    let portico = start_portico(&config(&backend)).await;

    let (mut read, uploader) = upload(&portico, LEN).await;
    let first = read_answer(&mut read, b"early").await;
    assert_eq!(raw_status(&first), Some(200), "{}", String::from_utf8_lossy(&first));
    // Then the end of the connection (a FIN, or a reset for the unread rest).
    let write = uploader.await.unwrap();
    let mut buf = [0u8; 1024];
    let after = tokio::time::timeout(WITHIN, read.read(&mut buf)).await.expect("the connection stayed open");
    assert!(matches!(after, Ok(0) | Err(_)), "more came after the answer: {after:?}");
    drop(write);
}

/// Starts `POST /upload` with a Content-Length of `len` on a new connection
/// to portico, its body written in 16 KiB pieces up to the first write that
/// fails. The write half comes back from the task, still open: dropping it
/// would send a FIN, which ends the connection whatever portico does.
async fn upload(
    portico: &Portico,
    len: usize,
) -> (tokio::net::tcp::OwnedReadHalf, tokio::task::JoinHandle<tokio::net::tcp::OwnedWriteHalf>) {
    let stream = TcpStream::connect(portico.addr(0)).await.unwrap();
    let (read, mut write) = stream.into_split();
    let uploader = tokio::spawn(async move {
        let head = format!("POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: {len}\r\n\r\n");
        let _ = write.write_all(head.as_bytes()).await;
        let chunk = vec![b'u'; 16 * 1024];
        for _ in 0..len / chunk.len() {
            if write.write_all(&chunk).await.is_err() {
                break;
            }
        }
        write
    });
    (read, uploader)
}

/// Reads from `read` until what came ends with `tail`; panics after `WITHIN`.
async fn read_answer<R: AsyncRead + Unpin>(read: &mut R, tail: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(tail) {
        let n = tokio::time::timeout(WITHIN, read.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no answer ending in {tail:?} within {WITHIN:?}: {got:?}"))
            .unwrap_or(0);
        assert!(n > 0, "connection closed before an answer ending in {tail:?}: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    got
}

/// 13: the backend answers 413 and closes as soon as it has the head,
/// without reading the 1 MiB body the client is still sending: the client
/// gets an answer (today a 502, see below) and portico keeps serving.
#[tokio::test]
async fn backend_answering_413_and_closing_mid_upload() {
    const LEN: usize = 1 << 20;
    let backend = RawBackend::spawn(|w| match w.path() {
        "/upload" => Answer {
            bytes: b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
            then: Then::Close,
            read_body: false,
        },
        _ => ok("fine"),
    })
    .await;
    let portico = start_portico(&config(&backend)).await;

    let (mut read, uploader) = upload(&portico, LEN).await;
    let response = read_until_close(&mut read, WITHIN).await;
    // The server's answer, not a 502 for the upload it cut short (hyper's
    // client failed on the write and never reported the 413).
    assert_eq!(raw_status(&response), Some(413), "{}", String::from_utf8_lossy(&response));
    drop(uploader.await.unwrap());

    let seen = backend.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].framing, Framing::Length(LEN as u64));
    // portico keeps serving, on a new upstream connection.
    assert_eq!(get_fresh(&portico, "/ok").await.text(), "fine");
    assert_eq!(backend.conns(), [0, 1]);
}

// --- the answer on the client's wire: portico's own HTTP/1 loop and hyper ----

/// A raw answer split up: the status line, the header lines (names
/// lower-cased, `date` left out but required), sorted, and the body
/// (de-chunked when chunked, and then nothing may follow it).
async fn wire_answer(response: &[u8]) -> (String, Vec<String>, Vec<u8>) {
    let text = String::from_utf8_lossy(response);
    let at = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or_else(|| panic!("no head: {text}"));
    let head = String::from_utf8_lossy(&response[..at]);
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default().to_owned();
    let mut headers: Vec<String> = lines
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap_or_else(|| panic!("bad header line {line:?}"));
            format!("{}: {}", name.to_ascii_lowercase(), value.trim())
        })
        .collect();
    let dates = headers.iter().filter(|h| h.starts_with("date: ")).count();
    assert_eq!(dates, 1, "one date header: {text}");
    headers.retain(|h| !h.starts_with("date: "));
    headers.sort();
    let mut body = response[at + 4..].to_vec();
    if headers.iter().any(|h| h == "transfer-encoding: chunked") {
        // The raw backend's reader of chunked request bodies, over the bytes.
        let (mut rest, mut buf) = (&response[at + 4..], Vec::new());
        body = read_body(&mut rest, &mut buf, Framing::Chunked)
            .await
            .unwrap_or_else(|| panic!("bad chunked body: {text}"));
        assert!(rest.is_empty() && buf.is_empty(), "bytes after the last chunk: {text}");
    }
    (status, headers, body)
}

/// 14: portico answers simple requests (no body, no upgrade) with an HTTP/1
/// loop of its own and leaves the others to hyper (here, made hyper's by a
/// `TE: trailers` field, which the hop-by-hop rule drops on the way up):
/// every kind of upstream answer reaches the client alike from both, status
/// line, header fields, framing and body, with one `date`.
#[tokio::test]
async fn answers_are_written_alike_by_portico_s_loop_and_by_hyper() {
    let backend = RawBackend::spawn(|w| match w.path() {
        "/length" => keep(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Multi: 1\r\nX-Multi: 2\r\nContent-Length: 5\r\n\r\nhello",
        ),
        "/empty" => keep("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        "/chunked" => keep(CHUNKED),
        "/trailers" => keep(CHUNKED_TRAILERS),
        "/close-delimited" => close("HTTP/1.1 200 OK\r\nX-Till: close\r\n\r\nuntil the end"),
        "/204" => keep("HTTP/1.1 204 No Content\r\nX-Done: yes\r\n\r\n"),
        "/304" => keep("HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 42\r\n\r\n"),
        "/head" => keep("HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"),
        "/dated" => {
            keep("HTTP/1.1 404 Not Found\r\nDate: Tue, 01 Jan 2030 00:00:00 GMT\r\nContent-Length: 4\r\n\r\nnope")
        }
        "/odd-status" => keep("HTTP/1.1 599 Whatever\r\nContent-Length: 2\r\n\r\nok"),
        "/upstream-close" => keep("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbye"),
        _ => ok("next"),
    })
    .await;
    let portico = start_portico(&config(&backend)).await;
    let cases = [
        ("GET", "/length"),
        ("GET", "/empty"),
        ("GET", "/chunked"),
        ("GET", "/trailers"),
        ("GET", "/close-delimited"),
        ("GET", "/204"),
        ("GET", "/304"),
        ("HEAD", "/head"),
        ("HEAD", "/length"),
        ("GET", "/dated"),
        ("GET", "/odd-status"),
        ("GET", "/upstream-close"),
        ("GET", "/missing-route-is-next"),
    ];
    for (method, path) in cases {
        let simple = format!("{method} {path} HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n");
        let for_hyper =
            format!("{method} {path} HTTP/1.1\r\nHost: app.test\r\nTE: trailers\r\nConnection: close\r\n\r\n");
        let ours = raw(&portico, simple.as_bytes()).await;
        let hypers = raw(&portico, for_hyper.as_bytes()).await;
        assert_eq!(
            wire_answer(&ours).await,
            wire_answer(&hypers).await,
            "{method} {path}\nportico's loop:\n{}\nhyper:\n{}",
            String::from_utf8_lossy(&ours),
            String::from_utf8_lossy(&hypers)
        );
    }
    // What the comparison rests on: each of the answers was made.
    let (status, headers, body) =
        wire_answer(&raw(&portico, b"GET /chunked HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n").await)
            .await;
    assert_eq!((status.as_str(), body.as_slice()), ("HTTP/1.1 200 OK", CHUNKED_BODY.as_bytes()));
    assert!(headers.contains(&"connection: close".to_owned()), "{headers:?}");
    let (status, headers, body) =
        wire_answer(&raw(&portico, b"HEAD /head HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n").await).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(headers, ["connection: close", "content-length: 1234"]);
    assert!(body.is_empty(), "{body:?}");
    assert_eq!(backend.requests().len(), 2 * cases.len() + 2);
}

/// 15: requests pipelined in one write, bodiless ones (portico's loop) and one
/// with a body (hyper's) between them, are all answered, in order, and the
/// last one's `Connection: close` is answered with the same and a close.
#[tokio::test]
async fn pipelined_requests_are_answered_in_order_across_both_http1_servers() {
    let backend = RawBackend::spawn(|w| {
        let body = format!("{} {}:{}", w.method(), w.path(), String::from_utf8_lossy(&w.body));
        ok(&body)
    })
    .await;
    let portico = start_portico(&config(&backend)).await;
    let started = std::time::Instant::now();
    let response = raw(
        &portico,
        b"GET /a HTTP/1.1\r\nHost: app.test\r\n\r\n\
          POST /b HTTP/1.1\r\nHost: app.test\r\nContent-Length: 4\r\n\r\nbody\
          GET /c HTTP/1.1\r\nHost: app.test\r\n\r\n\
          HEAD /d HTTP/1.1\r\nHost: app.test\r\n\r\n\
          GET /e HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    let text = String::from_utf8_lossy(&response);
    assert!(started.elapsed() < WITHIN / 2, "the connection was not closed after the last answer: {text}");
    // Bodies run into the next status line: counted as text, not by lines.
    assert_eq!(text.matches("HTTP/1.1 200 OK\r\n").count(), 5, "{text}");
    let order: Vec<usize> = ["GET /a:", "POST /b:", "GET /c:", "GET /e:"]
        .iter()
        .map(|body| text.find(body).unwrap_or_else(|| panic!("no {body:?} in {text}")))
        .collect();
    assert!(order.is_sorted(), "answers out of order: {text}");
    let last_head = &text[text.rfind("HTTP/1.1 ").unwrap_or(0)..];
    assert!(last_head.to_ascii_lowercase().contains("connection: close"), "{text}");
    let seen = backend.requests();
    let lines: Vec<String> = seen.iter().map(|w| format!("{} {}", w.method(), w.path())).collect();
    assert_eq!(lines, ["GET /a", "POST /b", "GET /c", "HEAD /d", "GET /e"]);
    assert_eq!(seen[1].body, b"body");
}
