//! Shared helpers for portico's integration tests: real sockets on 127.0.0.0/8,
//! ephemeral ports, readiness by construction (everything is bound before it
//! is returned), no sleeps.
//!
//! Each test file starts with:
//! ```ignore
//! #![allow(clippy::unwrap_used, clippy::expect_used)]
//! mod support;
//! use support::*;
//! ```

// Each test file uses a different subset of the helpers, and panicking on a
// broken test setup is what a test helper should do.
#![allow(dead_code, unused_imports, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

pub mod backend;
pub mod body;
pub mod cert;
pub mod client;
pub mod config;
pub mod metrics;
pub mod raw_backend;
pub mod sessions;
pub mod websocket;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub use backend::{Seen, SilentBackend, TestBackend};
pub use body::{Body, pattern, verify_pattern};
pub use cert::{TestCert, toml_path};
pub use client::{Client, Connect, Reply, TlsInfo, WebSocket};
pub use config::AppConfig;
pub use metrics::{Scrape, admin_get, scrape, scrape_until};

/// The error type helpers return; any error converts into it with `?`.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// A running portico started from a test's TOML.
pub struct Portico {
    running: Option<portico::Running>,
    addrs: Vec<SocketAddr>,
}

/// Parses and validates `toml` (as file `test.toml` in the current directory;
/// use absolute paths for certificates and logs), starts portico on this
/// runtime, and returns once every listener is bound. Panics with the
/// configuration errors or the start error.
///
/// Listen on `127.0.0.1:0` and read the real addresses with `addr(i)`:
/// `Running::local_addrs()[i]`, one per `snapshot.listeners` entry, in order.
pub async fn start_portico(toml: &str) -> Portico {
    match try_start_portico(toml).await {
        Ok(portico) => portico,
        Err(StartFailure::Config(errors)) => {
            panic!("test config is invalid:\n{errors}\n--- test.toml ---\n{toml}")
        }
        Err(StartFailure::Start(error)) => panic!("portico did not start: {error}"),
    }
}

/// Why `try_start_portico` failed.
#[derive(Debug)]
pub enum StartFailure {
    Config(portico::config::ConfigErrors),
    Start(portico::StartError),
}

impl std::fmt::Display for StartFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartFailure::Config(errors) => write!(f, "{errors}"),
            StartFailure::Start(error) => write!(f, "{error}"),
        }
    }
}

/// Why `Portico::reload` refused a configuration.
#[derive(Debug)]
pub enum ReloadFailure {
    Config(portico::config::ConfigErrors),
    Reload(portico::ReloadError),
}

impl std::fmt::Display for ReloadFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReloadFailure::Config(errors) => write!(f, "{errors}"),
            ReloadFailure::Reload(error) => write!(f, "{error}"),
        }
    }
}

/// `start_portico` for tests that expect it to fail.
pub async fn try_start_portico(toml: &str) -> Result<Portico, StartFailure> {
    init_tracing();
    let snapshot = portico::config::parse_str(toml, Path::new("test.toml")).map_err(StartFailure::Config)?;
    let running = portico::start(snapshot).await.map_err(StartFailure::Start)?;
    let addrs = running.local_addrs().to_vec();
    Ok(Portico { running: Some(running), addrs })
}

impl Portico {
    /// The bound address of listener `i`.
    pub fn addr(&self, i: usize) -> SocketAddr {
        *self.addrs.get(i).unwrap_or_else(|| {
            panic!("portico has {} bound listeners ({:?}); no listener {i}", self.addrs.len(), self.addrs)
        })
    }

    /// Every bound listener address.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The running portico (for APIs the wrapper does not cover).
    pub fn running(&self) -> &portico::Running {
        self.running.as_ref().expect("portico is running until shutdown")
    }

    /// The bound address of the admin endpoint; panics without `[admin]`.
    pub fn admin_addr(&self) -> SocketAddr {
        self.running().admin_addr().expect("the test config has an [admin] listen")
    }

    /// The status of `GET path` for `host` on listener 0, from a client bound
    /// to `source` (a 127.0.0.0/8 address: per-address behaviour).
    pub async fn status_from(&self, source: &str, host: &str, path: &str) -> http::StatusCode {
        let mut client = Connect::to(self.addr(0)).source_ip(source).connect().await.unwrap();
        client.get(host, path).await.unwrap().status
    }

    /// The body of the admin endpoint's `path` (`/metrics`, `/status`),
    /// asserting a 200; panics without `[admin]`.
    pub async fn admin_text(&self, path: &str) -> String {
        let mut client = Client::http1(self.admin_addr()).await.unwrap();
        let reply = client.get("admin", path).await.unwrap();
        assert_eq!(reply.status, http::StatusCode::OK, "admin {path}");
        reply.text()
    }

    /// The process's log files: `logs().reopen()` is what SIGUSR1 does.
    pub fn logs(&self) -> &portico::log::Logs {
        self.running().logs()
    }

    /// Parses `toml` (as `test.toml`, like `start_portico`) and switches to it
    /// with `Running::reload`, then refreshes `addrs()`. On error nothing
    /// changes and the old configuration keeps serving.
    pub fn reload(&mut self, toml: &str) -> Result<(), ReloadFailure> {
        let snapshot = portico::config::parse_str(toml, Path::new("test.toml")).map_err(ReloadFailure::Config)?;
        let running = self.running.as_mut().expect("portico is running until shutdown");
        running.reload(snapshot).map_err(ReloadFailure::Reload)?;
        self.addrs = running.local_addrs();
        Ok(())
    }

    /// Graceful shutdown: stop accepting, let in-flight requests finish.
    pub async fn shutdown(mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
    }
}

/// Waits (bounded) until `condition` holds; panics naming `what` after `within`.
pub async fn eventually(what: &str, within: Duration, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !condition() {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Writes `bytes` on a fresh connection to `addr` and returns everything the
/// server sends until it closes the connection (or 5 s pass). Write errors are
/// ignored (the server may answer and close early). Send `Connection: close`
/// when the server would otherwise keep the connection open.
pub async fn raw_request(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    raw_request_within(addr, bytes, Duration::from_secs(5)).await
}

/// `raw_request` with a chosen deadline.
pub async fn raw_request_within(addr: SocketAddr, bytes: &[u8], within: Duration) -> Vec<u8> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    let _ = stream.write_all(bytes).await;
    let _ = stream.flush().await;
    read_until_close(&mut stream, within).await
}

/// Reads until EOF, a read error, or the deadline; returns what arrived.
pub async fn read_until_close<R>(reader: &mut R, within: Duration) -> Vec<u8>
where
    R: tokio::io::AsyncRead + Unpin,
{
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, reader.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => return out,
        }
    }
}

/// The status code of a raw HTTP/1.x response (`HTTP/1.1 400 ...`), if any.
pub fn raw_status(response: &[u8]) -> Option<u16> {
    let line = response.split(|&b| b == b'\r').next()?;
    let text = std::str::from_utf8(line).ok()?;
    let mut words = text.split(' ');
    words.next().filter(|v| v.starts_with("HTTP/"))?;
    words.next()?.parse().ok()
}

/// A port on 127.0.0.1 for a child process (nginx, redis-server, the portico
/// binary) to bind itself.
///
/// Binding port 0, reading the port and closing the socket is racy: until the
/// child binds, the kernel may hand the same port to any socket of the tests
/// running in parallel (CI once saw nginx's port taken by a test backend, so
/// every "nginx" answer came from that backend). These ports come from below
/// the ephemeral range, which neither `bind(port 0)` nor `connect` allocates,
/// differ for every call in this process, and are checked free.
pub fn child_port() -> u16 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    const FIRST: u32 = 10_000;
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    let span = ephemeral_low.saturating_sub(FIRST);
    assert!(span >= 1_000, "the ephemeral port range starts at {ephemeral_low}: no room below it for child ports");
    // Start each test process elsewhere so that a leftover child of an earlier
    // run is unlikely to hold the first ports.
    let start = std::process::id() % span;
    for _ in 0..span {
        let offset = (start + NEXT.fetch_add(1, Ordering::SeqCst) as u32) % span;
        let port = u16::try_from(FIRST + offset).expect("below the ephemeral range, so below 65536");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {FIRST}..{ephemeral_low} on 127.0.0.1");
}

/// A fresh directory under the system temp dir, removed when dropped.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `<tmp>/portico-test-<label>-<pid>-<unique>`.
    pub fn new(label: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "portico-test-{label}-{}-{}-{:08x}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst),
            random_u64() as u32
        ));
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path inside the directory.
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// 64 unpredictable bits (std's per-process random hash keys, a counter and the
/// clock): enough for session ids and WebSocket keys in tests.
pub fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::SeqCst));
    hasher.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    hasher.finish()
}

/// Sends portico's logs to the test's captured output (`RUST_LOG=debug cargo
/// test -- --nocapture` to see them).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}
