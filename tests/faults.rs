//! Faults (issue 7): backends that reset, close, answer garbage, answer too
//! slowly or hang; clients that leave mid-upload or mid-download; TLS clients
//! that send garbage or nothing. In each case the client gets the right status
//! where one is still possible, the server's error_log has one line naming the
//! server, the upstream and the client, portico keeps serving, and the test
//! process's open file descriptors and live tokio tasks return to where they
//! were before the test once portico has shut down.
//!
//! Every test here takes `SERIAL`: file descriptors are per process and tests
//! run in parallel threads, so the fd baseline is only meaningful when no other
//! test of this binary opens sockets meanwhile, and only sockets and the
//! test's own files are counted (see `open_fds`). Tolerance: none for tasks
//! (each test has its own runtime) and none for fds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::StatusCode;
use http_body_util::BodyExt;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Open sockets and test files (logs) of this process. Other fds are left out:
/// tests waiting on `SERIAL` (and the harness) create and drop their runtimes'
/// epoll and eventfd descriptors at any time, but open no socket or file
/// before they hold the lock.
fn open_fds() -> usize {
    fd_targets().iter().filter(|t| t.starts_with("socket:") || t.contains("portico-test-")).count()
}

/// What each open fd is (for the failure message).
fn fd_targets() -> Vec<String> {
    let mut targets: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| std::fs::read_link(e.path()).map_or_else(|_| "?".into(), |t| t.display().to_string()))
        .collect();
    targets.sort();
    targets
}

fn live_tasks() -> usize {
    tokio::runtime::Handle::current().metrics().num_alive_tasks()
}

/// Open fds and live tasks when a test starts.
struct Baseline {
    fds: usize,
    tasks: usize,
    targets: Vec<String>,
}

impl Baseline {
    fn now() -> Baseline {
        Baseline { fds: open_fds(), tasks: live_tasks(), targets: fd_targets() }
    }

    /// Polls (up to 3 s) until no socket or test file opened since the
    /// baseline is left (a new socket has a new inode; a dup of one that was
    /// already open, such as the harness's stdio socket, is not portico's) and
    /// the live tasks are back to the baseline.
    async fn assert_restored(&self, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let new: Vec<String> = fd_targets()
                .into_iter()
                .filter(|t| t.starts_with("socket:") || t.contains("portico-test-"))
                .filter(|t| !self.targets.contains(t))
                .collect();
            let tasks = live_tasks();
            if new.is_empty() && tasks <= self.tasks {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: still open after shutdown: {new:?} (baseline {} fds); {tasks} tasks (baseline {})",
                self.fds,
                self.tasks
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// How a fake backend misbehaves once it has read a request head.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Head with Content-Length 1000, 10 body bytes, then a TCP reset.
    ResetMidResponse,
    /// Closes without a byte.
    CloseBeforeAnswer,
    /// Answers bytes that are not HTTP.
    Garbage,
    /// Answers nothing for 30 s.
    Slow,
    /// Head with Content-Length 1000, then silence with the connection open.
    HoldAfterHead,
}

/// A tiny backend that misbehaves as `fault` on every connection; stopped
/// (with its connections) when dropped.
struct FakeBackend {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeBackend {
    async fn spawn(fault: Fault) -> FakeBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                connections.spawn(misbehave(stream, fault));
            }
        });
        FakeBackend { addr, task }
    }
}

async fn read_head(stream: &mut TcpStream) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
}

async fn misbehave(mut stream: TcpStream, fault: Fault) {
    read_head(&mut stream).await;
    match fault {
        Fault::ResetMidResponse => {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789").await;
            let _ = stream.flush().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            #[allow(deprecated)]
            let _ = stream.set_linger(Some(Duration::ZERO));
            drop(stream);
        }
        Fault::CloseBeforeAnswer => drop(stream),
        Fault::Garbage => {
            let _ = stream.write_all(b"\x00\x01garbage, not HTTP at all\r\n\r\n").await;
            let _ = stream.flush().await;
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        Fault::Slow => tokio::time::sleep(Duration::from_secs(30)).await,
        Fault::HoldAfterHead => {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n").await;
            let _ = stream.flush().await;
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
    }
}

fn config(backends: &[SocketAddr], logs: &TempDir, runtime: &str) -> String {
    let servers: Vec<String> = backends.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        r#"
[runtime]
error_log_level = "info"
shutdown_timeout = "1s"
{runtime}

[upstream.app]
servers = [{}]
read_timeout = "300ms"
send_timeout = "300ms"
connect_timeout = "1s"

[[server]]
listen = ["127.0.0.1:0"]
server_name = ["app.test"]
error_log = {}

[[server.location]]
prefix = "/"
proxy_pass = "app"

[[server.location]]
prefix = "/alive"
return = 200
"#,
        servers.join(", "),
        toml_path(&logs.join("error.log"))
    )
}

/// The `[error]` lines of the server's error log (read after shutdown).
fn error_lines(logs: &TempDir) -> Vec<String> {
    let text = std::fs::read_to_string(logs.join("error.log")).unwrap_or_default();
    text.lines().filter(|l| l.contains(" [error] ")).map(str::to_owned).collect()
}

/// Exactly one error line, naming the server, the upstream and the client.
fn assert_one_error_line(logs: &TempDir, upstream: SocketAddr, what: &str) -> String {
    let lines = error_lines(logs);
    assert_eq!(lines.len(), 1, "{what}: one error line expected, got {lines:#?}");
    let line = &lines[0];
    for part in ["server: app.test", &format!("upstream: \"app\" {upstream}"), "client: 127.0.0.1"] {
        assert!(line.contains(part), "{what}: {part:?} missing from {line:?}");
    }
    line.clone()
}

/// `GET path` on a fresh connection (`/alive` is answered by portico itself).
async fn get(addr: SocketAddr, path: &str) -> Result<Reply, Error> {
    let mut client = Client::http1(addr).await?;
    client.get("app.test", path).await
}

/// Runs `fault` behind portico: returns the status (or error) of one GET and
/// how long it took, then checks log, fds and tasks.
async fn fault_case(fault: Fault) -> (Result<(StatusCode, Result<usize, String>), String>, Duration, String) {
    let baseline = Baseline::now();
    let logs = TempDir::new("faults");
    let backend = FakeBackend::spawn(fault).await;
    let backend_addr = backend.addr;
    let portico = start_portico(&config(&[backend.addr], &logs, "")).await;
    let started = Instant::now();
    let outcome = async {
        let mut client = Client::http1(portico.addr(0)).await.map_err(|e| e.to_string())?;
        let request = client.request(http::Method::GET, "app.test", "/").body(body::empty()).unwrap();
        let response = client.send(request).await.map_err(|e| e.to_string())?;
        let status = response.status();
        let body = tokio::time::timeout(Duration::from_secs(3), response.into_body().collect())
            .await
            .map_err(|_| "body read hung".to_owned())?
            .map(|b| b.to_bytes().len())
            .map_err(|e| e.to_string());
        Ok((status, body))
    }
    .await;
    let took = started.elapsed();
    // Portico keeps serving (`/alive` is answered without the broken upstream).
    let again = get(portico.addr(0), "/alive").await;
    assert!(again.as_ref().is_ok_and(|r| r.status == StatusCode::OK), "{fault:?}: portico stopped serving: {again:?}");
    portico.shutdown().await;
    drop(backend);
    let line = assert_one_error_line(&logs, backend_addr, &format!("{fault:?}"));
    drop(logs);
    baseline.assert_restored(&format!("{fault:?}")).await;
    (outcome, took, line)
}

#[tokio::test]
async fn backend_reset_mid_response_is_a_truncated_body_not_a_complete_one() {
    let _serial = SERIAL.lock().await;
    let (outcome, _, line) = fault_case(Fault::ResetMidResponse).await;
    let (status, body) = outcome.expect("the head arrived");
    assert_eq!(status, StatusCode::OK);
    assert!(body.is_err(), "a reset body must not look complete: {body:?}");
    assert!(line.contains("upstream response body failed"), "{line}");
}

#[tokio::test]
async fn backend_closing_before_answering_is_502() {
    let _serial = SERIAL.lock().await;
    let (outcome, _, _) = fault_case(Fault::CloseBeforeAnswer).await;
    assert_eq!(outcome.unwrap().0, StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn backend_answering_garbage_is_502() {
    let _serial = SERIAL.lock().await;
    let (outcome, _, _) = fault_case(Fault::Garbage).await;
    assert_eq!(outcome.unwrap().0, StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn backend_answering_too_slowly_is_504() {
    let _serial = SERIAL.lock().await;
    let (outcome, took, line) = fault_case(Fault::Slow).await;
    assert_eq!(outcome.unwrap().0, StatusCode::GATEWAY_TIMEOUT);
    assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(2), "{took:?}");
    assert!(line.contains("timed out"), "{line}");
}

#[tokio::test]
async fn backend_holding_the_body_fails_the_client_read_after_read_timeout() {
    let _serial = SERIAL.lock().await;
    let (outcome, took, line) = fault_case(Fault::HoldAfterHead).await;
    let (status, body) = outcome.expect("the head arrived");
    assert_eq!(status, StatusCode::OK);
    assert!(body.is_err(), "a stalled body must not look complete: {body:?}");
    assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(2), "{took:?}");
    assert!(line.contains("read_timeout"), "{line}");
}

/// A client that sends half a declared body and disconnects.
async fn abort_upload(addr: SocketAddr) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: 1000000\r\n\r\n").await.unwrap();
    stream.write_all(&vec![b'u'; 64 * 1024]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(stream);
    tokio::time::sleep(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn client_disconnecting_mid_upload_frees_everything() {
    let _serial = SERIAL.lock().await;
    let baseline = Baseline::now();
    let logs = TempDir::new("faults");
    let backend = TestBackend::spawn("app").await;
    let portico = start_portico(&config(&[backend.addr()], &logs, "")).await;
    abort_upload(portico.addr(0)).await;
    let reply = get(portico.addr(0), "/").await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert!(backend.requests().iter().all(|r| r.body_len != Some(1_000_000)));
    portico.shutdown().await;
    drop(backend);
    drop(logs);
    baseline.assert_restored("mid-upload").await;
}

#[tokio::test]
async fn client_disconnecting_mid_upload_is_not_an_upstream_failure() {
    let _serial = SERIAL.lock().await;
    let logs = TempDir::new("faults");
    let (one, two) = (TestBackend::spawn("one").await, TestBackend::spawn("two").await);
    let portico = start_portico(&config(&[one.addr(), two.addr()], &logs, "")).await;
    abort_upload(portico.addr(0)).await;
    for _ in 0..4 {
        assert_eq!(get(portico.addr(0), "/").await.unwrap().status, StatusCode::OK);
    }
    let (a, b) = (one.count(), two.count());
    portico.shutdown().await;
    assert!(error_lines(&logs).is_empty(), "the client's abort logged as an error: {:#?}", error_lines(&logs));
    // Round robin over two healthy servers: the 4 GETs (plus the aborted POST) split.
    assert!(a >= 2 && b >= 2, "one: {a}, two: {b}: a server was marked down for the client's abort");
}

/// A client that reads a little of a large download and disconnects.
async fn abort_download(addr: SocketAddr) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET /big?bytes=50000000 HTTP/1.1\r\nHost: app.test\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0;
    while got < 200 * 1024 {
        got += stream.read(&mut buf).await.unwrap();
    }
    drop(stream);
    tokio::time::sleep(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn client_disconnecting_mid_download_frees_everything() {
    let _serial = SERIAL.lock().await;
    let baseline = Baseline::now();
    let logs = TempDir::new("faults");
    let backend = TestBackend::spawn("app").await;
    let portico = start_portico(&config(&[backend.addr()], &logs, "")).await;
    abort_download(portico.addr(0)).await;
    assert_eq!(get(portico.addr(0), "/").await.unwrap().status, StatusCode::OK);
    portico.shutdown().await;
    drop(backend);
    drop(logs);
    baseline.assert_restored("mid-download").await;
}

#[tokio::test]
async fn client_disconnecting_mid_download_is_logged() {
    let _serial = SERIAL.lock().await;
    let logs = TempDir::new("faults");
    let backend = TestBackend::spawn("app").await;
    let portico = start_portico(&config(&[backend.addr()], &logs, "")).await;
    abort_download(portico.addr(0)).await;
    portico.shutdown().await;
    let text = std::fs::read_to_string(logs.join("error.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("client: 127.0.0.1")).collect();
    assert_eq!(lines.len(), 1, "one line for the client's disconnect: {text:?}");
    assert!(
        lines[0].contains("server: app.test") && lines[0].contains(&format!("upstream: \"app\" {}", backend.addr()))
    );
}

/// A client that reads the head and first chunk of a trickled answer
/// (`chunks` chunks of a few bytes, one every 40 ms) and disconnects, the
/// rest still to come from the server.
async fn abort_trickle(addr: SocketAddr, chunks: u64) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET /trickle?chunks={chunks}&ms=40 HTTP/1.1\r\nHost: app.test\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let (mut got, mut buf) = (Vec::new(), [0u8; 4096]);
    while !got.windows(8).any(|w| w == b"chunk 0\n") {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before the first chunk: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
}

/// Waits (on the admin listener's gauge) until the upstream `app` holds one
/// idle connection to `backend`: the one an abandoned answer was read on.
async fn wait_for_one_idle_connection(portico: &Portico, backend: &TestBackend) {
    let peer = backend.addr().to_string();
    let idle = [("upstream", "app"), ("peer", peer.as_str())];
    let gauge = "portico_upstream_idle_connections";
    let m = scrape_until(portico.admin_addr(), |m| m.get(gauge, &idle) == Some(1.0)).await;
    assert_eq!(m.value(gauge, &idle), 1.0, "the connection was not given back to the pool");
}

/// After a plain HTTP/1 client left its answer unfinished: the upstream
/// connection waits in the pool, and the next request takes it.
async fn assert_kept_for_the_next_request(portico: &Portico, backend: &TestBackend) {
    wait_for_one_idle_connection(portico, backend).await;
    assert_eq!(get(portico.addr(0), "/").await.unwrap().status, StatusCode::OK);
    assert_eq!(backend.connections(), 1, "the next request needed a new upstream connection");
    assert_eq!(backend.count(), 2);
}

/// portico with TLS (h2 offered) and the admin listener before one backend,
/// and an h2 client connected to it.
async fn h2_setup(cert: &TestCert) -> (TestBackend, Portico, Client) {
    let backend = TestBackend::spawn("app").await;
    let portico = start_portico(&AppConfig::new(backend.addr()).admin().tls(Some(cert)).build()).await;
    let client = Client::https(portico.addr(0), "app.test", &cert.roots(), &["h2"]).await.unwrap();
    assert_eq!(client.version(), http::Version::HTTP_2);
    (backend, portico, client)
}

/// After an h2 client reset a stream: as `assert_kept_for_the_next_request`,
/// the next request on the same client connection.
async fn assert_kept_after_the_reset(portico: &Portico, backend: &TestBackend, client: &mut Client) {
    wait_for_one_idle_connection(portico, backend).await;
    assert_eq!(client.get("app.test", "/").await.unwrap().status, StatusCode::OK);
    assert_eq!(backend.connections(), 1, "the next request needed a new upstream connection");
}

#[tokio::test]
async fn client_leaving_a_small_answer_early_leaves_its_upstream_connection_in_use() {
    let _serial = SERIAL.lock().await;
    let logs = TempDir::new("faults");
    let backend = TestBackend::spawn("app").await;
    let portico = start_portico(&config(&[backend.addr()], &logs, "\n[admin]\nlisten = \"127.0.0.1:0\"")).await;
    abort_trickle(portico.addr(0), 8).await;
    // portico reads the rest and drops it; the connection then waits in the pool.
    assert_kept_for_the_next_request(&portico, &backend).await;
    portico.shutdown().await;
}

#[tokio::test]
async fn an_h2_stream_reset_mid_answer_leaves_its_upstream_connection_in_use() {
    let _serial = SERIAL.lock().await;
    let cert = TestCert::new(&["app.test"]);
    let (backend, portico, mut client) = h2_setup(&cert).await;
    let request = client.request(http::Method::GET, "app.test", "/trickle?chunks=8&ms=40").body(body::empty()).unwrap();
    let mut answer = client.send(request).await.unwrap().into_body();
    let first = answer.frame().await.unwrap().unwrap().into_data().unwrap();
    assert!(first.starts_with(b"chunk 0"), "{first:?}");
    // Dropping the body with the answer unfinished resets the stream.
    drop(answer);
    assert_kept_after_the_reset(&portico, &backend, &mut client).await;
    portico.shutdown().await;
}

/// Sends `request` to `addr` and closes the connection once `backend` has the
/// request (it answers `/slow` only after the wait it names).
async fn leave_before_the_answer(addr: SocketAddr, backend: &TestBackend, request: &[u8]) {
    let before = backend.count();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    eventually("the request reached the backend", Duration::from_secs(5), || backend.count() == before + 1).await;
    drop(stream);
}

#[tokio::test]
async fn client_leaving_before_the_answer_leaves_its_upstream_connection_in_use() {
    let _serial = SERIAL.lock().await;
    let logs = TempDir::new("faults");
    let backend = TestBackend::spawn("app").await;
    let portico = start_portico(&config(&[backend.addr()], &logs, "\n[admin]\nlisten = \"127.0.0.1:0\"")).await;
    leave_before_the_answer(portico.addr(0), &backend, b"GET /slow?ms=200 HTTP/1.1\r\nHost: app.test\r\n\r\n").await;
    // portico waits for the answer without its client, reads it and keeps the connection.
    assert_kept_for_the_next_request(&portico, &backend).await;
    portico.shutdown().await;
}

#[tokio::test]
async fn an_h2_stream_reset_before_the_answer_leaves_its_upstream_connection_in_use() {
    let _serial = SERIAL.lock().await;
    let cert = TestCert::new(&["app.test"]);
    let (backend, portico, mut client) = h2_setup(&cert).await;
    let request = client.request(http::Method::GET, "app.test", "/slow?ms=200").body(body::empty()).unwrap();
    let answer = client.send(request);
    // Dropping the request before its answer came resets the stream.
    tokio::select! {
        _ = answer => panic!("answered before the backend had even waited"),
        () = eventually("the request reached the backend", Duration::from_secs(5), || backend.count() == 1) => {}
    }
    assert_kept_after_the_reset(&portico, &backend, &mut client).await;
    portico.shutdown().await;
}

#[tokio::test]
async fn client_leaving_before_the_answer_without_upstream_keepalive_closes_its_connection() {
    let _serial = SERIAL.lock().await;
    let backend = TestBackend::spawn("app").await;
    let portico = start_portico(&AppConfig::new(backend.addr()).upstream("keepalive = 0").build()).await;
    // Nothing to keep the connection for: the 3 s answer is not waited for.
    leave_before_the_answer(portico.addr(0), &backend, b"GET /slow?ms=3000 HTTP/1.1\r\nHost: app.test\r\n\r\n").await;
    eventually("the upstream connection closed", Duration::from_secs(2), || backend.open_connections() == 0).await;
    portico.shutdown().await;
}

#[tokio::test]
async fn no_more_answers_are_waited_for_than_the_pool_can_keep() {
    let _serial = SERIAL.lock().await;
    let backend = TestBackend::spawn("app").await;
    let portico = start_portico(&AppConfig::new(backend.addr()).upstream("keepalive = 1").admin().build()).await;
    // Two clients leave their requests before the answers, which take 1.5 s:
    // the pool keeps one idle connection, so one answer is waited for and the
    // other connection closes at once (as a client resetting h2 streams in a
    // flood would have every one of them held otherwise).
    let request = b"GET /slow?ms=1500 HTTP/1.1\r\nHost: app.test\r\n\r\n";
    let mut clients = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(portico.addr(0)).await.unwrap();
        stream.write_all(request).await.unwrap();
        clients.push(stream);
    }
    eventually("both requests reached the backend", Duration::from_secs(5), || backend.count() == 2).await;
    drop(clients);
    eventually("one upstream connection closed", Duration::from_secs(1), || backend.open_connections() == 1).await;
    wait_for_one_idle_connection(&portico, &backend).await;
    // The wait's room is given back as it ends: the next request left the
    // same way (on the connection kept) is waited for too.
    leave_before_the_answer(portico.addr(0), &backend, b"GET /slow?ms=200 HTTP/1.1\r\nHost: app.test\r\n\r\n").await;
    wait_for_one_idle_connection(&portico, &backend).await;
    assert_eq!(backend.connections(), 2, "the third request's connection was not kept");
    portico.shutdown().await;
}

#[tokio::test]
async fn client_leaving_an_upload_before_the_answer_closes_its_upstream_connection() {
    let _serial = SERIAL.lock().await;
    let logs = TempDir::new("faults");
    let backend = TestBackend::spawn("app").await;
    let portico = start_portico(&config(&[backend.addr()], &logs, "")).await;
    // All of this body went up, but a request with a body is not waited for:
    // when the request is dropped, portico cannot tell whether all of the body
    // was sent, and a connection with part of one on it carries nothing more.
    let request = b"POST /slow?ms=200 HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\n\r\nhello";
    leave_before_the_answer(portico.addr(0), &backend, request).await;
    eventually("the upstream connection closed", Duration::from_secs(3), || backend.open_connections() == 0).await;
    portico.shutdown().await;
}

#[tokio::test]
async fn client_leaving_a_large_answer_early_closes_its_upstream_connection() {
    let _serial = SERIAL.lock().await;
    let logs = TempDir::new("faults");
    let backend = TestBackend::spawn("app").await;
    let portico = start_portico(&config(&[backend.addr()], &logs, "")).await;
    // 50 MB, of which 200 KiB read: far more is left than is worth reading for nobody.
    abort_download(portico.addr(0)).await;
    let deadline = Instant::now() + Duration::from_secs(3);
    while backend.open_connections() > 0 {
        assert!(Instant::now() < deadline, "the upstream connection of an abandoned 50 MB answer is still open");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    portico.shutdown().await;
}

fn tls_config(backend: SocketAddr, cert: &TestCert) -> String {
    AppConfig::new(backend)
        .runtime("client_header_timeout = \"500ms\"\nshutdown_timeout = \"1s\"")
        .tls(Some(cert))
        .build()
}

#[tokio::test]
async fn tls_garbage_instead_of_client_hello_is_closed_and_others_served() {
    let _serial = SERIAL.lock().await;
    let baseline = Baseline::now();
    let cert = TestCert::new(&["app.test"]);
    let backend = TestBackend::spawn("app").await;
    let portico = start_portico(&tls_config(backend.addr(), &cert)).await;
    let started = Instant::now();
    let answer =
        raw_request_within(portico.addr(0), b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n", Duration::from_secs(3)).await;
    assert!(started.elapsed() < Duration::from_secs(1), "garbage was not closed at once");
    assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");
    let mut client = Client::https(portico.addr(0), "app.test", &cert.roots(), &["h2", "http/1.1"]).await.unwrap();
    assert_eq!(client.get("app.test", "/").await.unwrap().status, StatusCode::OK);
    drop(client);
    portico.shutdown().await;
    drop(backend);
    baseline.assert_restored("tls garbage").await;
}

#[tokio::test]
async fn tls_client_sending_nothing_is_closed_after_the_handshake_timeout() {
    let _serial = SERIAL.lock().await;
    let baseline = Baseline::now();
    let cert = TestCert::new(&["app.test"]);
    let backend = TestBackend::spawn("app").await;
    let portico = start_portico(&tls_config(backend.addr(), &cert)).await;
    let mut stream = TcpStream::connect(portico.addr(0)).await.unwrap();
    let started = Instant::now();
    let got = read_until_close(&mut stream, Duration::from_secs(3)).await;
    let took = started.elapsed();
    assert!(got.is_empty());
    assert!(took >= Duration::from_millis(400) && took < Duration::from_secs(2), "closed after {took:?}");
    drop(stream);
    portico.shutdown().await;
    drop(backend);
    baseline.assert_restored("tls silent").await;
}
