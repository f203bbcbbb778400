//! Active health checks, `[upstream.NAME.health_check]` (NGINX Plus's
//! `health_check`): each server is asked for a URI every `interval`, on a
//! connection of its own (to the check's `port` on the server's host, when it
//! has one), its status judged and, with `body`, its body searched for a
//! text; `fails` failed checks in a row take it out of
//! the balancing until `passes` pass in a row. Requests never wait for a
//! check: they read one atomic per server. Passive health (`max_fails`)
//! still applies on top.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use http::header::{self, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use tokio::sync::Notify;

use super::Pool;
use super::http1::{self, BodyReader, Conn, Framing};
use super::pool::{ConnectError, PeerTls};
use crate::config::runtime::{HealthCheck, Peer};

/// What the checks last said of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not checked yet, under `mandatory`: takes no traffic.
    Checking,
    Passing,
    Failing,
}

/// The checks of one pool's servers, read by every request that picks one.
#[derive(Debug)]
pub struct Checks {
    /// Index-aligned with the upstream's peers.
    servers: Box<[ServerCheck]>,
    /// Whether the tasks were started (a pool kept across a reload has them).
    started: AtomicBool,
    /// Set when a reload replaced the pool: its tasks stop at their next turn
    /// even while old connections still hold the pool.
    retired: AtomicBool,
    /// Told of every verdict that changes (`first_pass` waits on it).
    changed: Notify,
}

#[derive(Debug)]
struct ServerCheck {
    verdict: AtomicU8,
    /// Why the last check failed, for `/status`; written by the server's task only.
    last_failure: Mutex<Option<String>>,
}

impl Checks {
    /// Every server `Checking` under `mandatory`, else `Passing`; those
    /// `down = true`, never checked, `Failing`.
    pub fn new(check: &HealthCheck, peers: &[Peer]) -> Checks {
        let initial = if check.mandatory { Verdict::Checking } else { Verdict::Passing };
        Checks {
            servers: peers
                .iter()
                .map(|peer| {
                    let verdict = if peer.down { Verdict::Failing } else { initial };
                    ServerCheck { verdict: AtomicU8::new(verdict as u8), last_failure: Mutex::new(None) }
                })
                .collect(),
            started: AtomicBool::new(false),
            retired: AtomicBool::new(false),
            changed: Notify::new(),
        }
    }

    /// Resolves once some server passes, or none is waiting for its first
    /// check: what a mandatory upstream needs to answer anything but 502.
    pub async fn first_pass(&self) {
        loop {
            // Made before looking, so that a change in between still wakes it.
            let changed = self.changed.notified();
            let verdicts = (0..self.servers.len()).map(|peer| self.verdict(peer));
            let mut checking = false;
            for verdict in verdicts {
                match verdict {
                    Verdict::Passing => return,
                    Verdict::Checking => checking = true,
                    Verdict::Failing => {}
                }
            }
            if !checking {
                return;
            }
            changed.await;
        }
    }

    /// Whether the checks let `peer` take traffic.
    pub fn allows(&self, peer: usize) -> bool {
        self.verdict(peer) == Verdict::Passing
    }

    pub fn verdict(&self, peer: usize) -> Verdict {
        match self.servers.get(peer).map(|server| server.verdict.load(Ordering::Relaxed)) {
            Some(v) if v == Verdict::Passing as u8 => Verdict::Passing,
            Some(v) if v == Verdict::Failing as u8 => Verdict::Failing,
            _ => Verdict::Checking,
        }
    }

    /// Why `peer`'s last check failed, if it did.
    pub fn last_failure(&self, peer: usize) -> Option<String> {
        let server = self.servers.get(peer)?;
        server.last_failure.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Takes `peer`'s verdict from a pool this one replaces: a reload must not
    /// send traffic to a server the checks had taken out, nor hold back one
    /// they had passed. A server never checked there keeps its own start.
    pub fn inherit(&self, peer: usize, verdict: Verdict, last_failure: Option<String>) {
        if verdict != Verdict::Checking {
            self.set(peer, verdict);
            self.set_failure(peer, last_failure);
        }
    }

    /// Whether this call is the one to start the tasks.
    pub fn claim_start(&self) -> bool {
        !self.started.swap(true, Ordering::AcqRel)
    }

    pub fn retire(&self) {
        self.retired.store(true, Ordering::Relaxed);
    }

    fn set(&self, peer: usize, verdict: Verdict) {
        if let Some(server) = self.servers.get(peer) {
            server.verdict.store(verdict as u8, Ordering::Relaxed);
            self.changed.notify_waiters();
        }
    }

    fn set_failure(&self, peer: usize, why: Option<String>) {
        if let Some(server) = self.servers.get(peer) {
            *server.last_failure.lock().unwrap_or_else(PoisonError::into_inner) = why;
        }
    }
}

/// Checks in a row with the same result, counted by one server's task.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Streak {
    passed: u32,
    failed: u32,
}

impl Streak {
    /// Counts one check and says what the server's verdict is now. A server
    /// not checked yet (`mandatory`) takes its first check's result at once,
    /// as NGINX Plus does; otherwise the verdict turns only after `fails`
    /// failed or `passes` passed checks in a row.
    pub fn record(&mut self, passed: bool, now: Verdict, check: &HealthCheck) -> Verdict {
        if passed {
            self.passed = self.passed.saturating_add(1);
            self.failed = 0;
        } else {
            self.failed = self.failed.saturating_add(1);
            self.passed = 0;
        }
        match now {
            Verdict::Checking if passed => Verdict::Passing,
            Verdict::Checking => Verdict::Failing,
            Verdict::Passing if self.failed >= check.fails => Verdict::Failing,
            Verdict::Failing if self.passed >= check.passes => Verdict::Passing,
            unchanged => unchanged,
        }
    }
}

/// Why a check failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckFailure {
    #[error("{0}")]
    Connect(#[from] ConnectError),
    #[error("{0}")]
    Http(#[from] http1::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("status {0}")]
    Status(StatusCode),
    /// The body ended without `body`'s text.
    #[error("body lacks {0:?}")]
    BodyLacks(String),
    /// The body's first [`HealthCheck::BODY_LIMIT`] bytes lack it.
    #[error("body lacks {0:?} in its first 64 KiB")]
    BodyLacksWithin(String),
}

/// Checks server `peer` of `pool` until the pool is gone or retired.
pub async fn run(pool: Weak<Pool>, peer: usize) {
    let Some((check, host, name, address, target)) = pool.upgrade().and_then(|pool| {
        let check = pool.upstream.health_check.clone()?;
        let server = pool.upstream.peers.get(peer)?;
        // A port of the check's own: the same port written again is the server's.
        let port = check.port.filter(|&port| port != server.socket_addr.port());
        // The server's address with the check's port in place of its own.
        let other_port =
            port.map(|port| format!("{}:{port}", server.address.rsplit_once(':').map_or(&*server.address, |(h, _)| h)));
        // Validated as a header value; the server's address always is one.
        let host = check
            .host
            .as_deref()
            .or(pool.upstream.tls.as_ref().and_then(|tls| tls.server_name.as_deref()))
            .or(other_port.as_deref())
            .unwrap_or(&server.address);
        let host = HeaderValue::from_str(host).ok()?;
        let target = Target {
            what: match port {
                Some(port) => format!("GET {} on port {port}", check.uri),
                None => format!("GET {}", check.uri),
            },
            port: port.map(|port| (port, pool.check_tls(peer))),
        };
        Some((check, host, pool.upstream.name.clone(), server.address.clone(), target))
    }) else {
        return;
    };
    let fields: [(HeaderName, HeaderValue); 3] = [
        (header::HOST, host),
        (header::USER_AGENT, HeaderValue::from_static(concat!("portico/", env!("CARGO_PKG_VERSION"), " health check"))),
        (header::CONNECTION, HeaderValue::from_static("close")),
    ];
    let mut streak = Streak::default();
    let mut ticks = tokio::time::interval(check.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let what = &target.what;
    loop {
        ticks.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        let Some(checks) = pool.checks() else { return };
        if checks.retired.load(Ordering::Relaxed) {
            return;
        }
        let result = match tokio::time::timeout(check.timeout, ask(&pool, peer, &check, &target, &fields)).await {
            Ok(result) => result,
            Err(_) => Err(CheckFailure::Timeout(check.timeout)),
        };
        pool.count_check(peer, result.is_ok());
        let before = checks.verdict(peer);
        let after = streak.record(result.is_ok(), before, &check);
        if let Err(why) = &result {
            checks.set_failure(peer, Some(format!("{what}: {why}")));
        }
        if after == before {
            continue;
        }
        checks.set(peer, after);
        match &result {
            Err(why) => tracing::warn!(
                "upstream \"{name}\" server {address} failed {} health check(s) in a row ({what}: {why}): \
                 it takes no traffic until {} pass",
                streak.failed,
                check.passes,
            ),
            Ok(()) if before == Verdict::Checking => {
                tracing::info!("upstream \"{name}\" server {address} passed its first health check ({what})")
            }
            Ok(()) => tracing::warn!(
                "upstream \"{name}\" server {address} passed {} health check(s) in a row ({what}): it takes traffic again",
                streak.passed,
            ),
        }
    }
}

/// Where one server's checks go.
struct Target {
    /// A port of the check's own, other than the server's, and how to speak
    /// TLS there; `None`: the server's own port, as traffic goes.
    port: Option<(u16, Option<PeerTls>)>,
    /// `GET /health`, or `GET /health on port 9763`: the check as `/status`
    /// and the log name it.
    what: String,
}

/// One check: a new connection, `GET uri`, the response's status and (with
/// `body`) as much of its body as it takes to find the text.
async fn ask(
    pool: &Pool,
    peer: usize,
    check: &HealthCheck,
    target: &Target,
    fields: &[(HeaderName, HeaderValue)],
) -> Result<(), CheckFailure> {
    let mut conn = match &target.port {
        Some((port, tls)) => pool.open_port(peer, *port, tls.as_ref()).await?,
        None => pool.open(peer).await?,
    };
    conn.send_head(&Method::GET, &check.uri, fields.iter().map(|(n, v)| (n, v)), Framing::Empty).await?;
    let mut head = std::future::poll_fn(|cx| conn.poll_head(cx, &mut None, false)).await?;
    if !check.accepts(head.status) {
        return Err(CheckFailure::Status(head.status));
    }
    match &check.body {
        None => Ok(()),
        Some(text) => find_in_body(&mut conn, &mut head.body, text).await,
    }
}

/// Reads the response body until `text` shows in it, at most its first
/// [`HealthCheck::BODY_LIMIT`] bytes (Content-Length, chunked or up to the
/// close alike). Only a piece and the few bytes before it that a match across
/// pieces needs are held.
async fn find_in_body(conn: &mut Conn, body: &mut BodyReader, text: &str) -> Result<(), CheckFailure> {
    let finder = memchr::memmem::Finder::new(text.as_bytes());
    let overlap = text.len().saturating_sub(1);
    let mut window: Vec<u8> = Vec::new();
    let mut read = 0;
    loop {
        let Some(piece) = std::future::poll_fn(|cx| conn.poll_body(cx, body, &mut None)).await.transpose()? else {
            return Err(CheckFailure::BodyLacks(text.to_owned()));
        };
        let piece = piece.get(..HealthCheck::BODY_LIMIT - read).unwrap_or(&piece);
        read += piece.len();
        window.extend_from_slice(piece);
        if finder.find(&window).is_some() {
            return Ok(());
        }
        if read == HealthCheck::BODY_LIMIT {
            return Err(CheckFailure::BodyLacksWithin(text.to_owned()));
        }
        window.drain(..window.len().saturating_sub(overlap));
    }
}

/// Starts the tasks checking `pool`'s servers (not those `down = true`) on the
/// current runtime, once per pool.
pub fn start(pool: &Arc<Pool>) {
    let Some(checks) = pool.checks() else { return };
    if !checks.claim_start() {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::error!("upstream \"{}\": health checks not started (no runtime)", pool.upstream.name);
        return;
    };
    for (peer, server) in pool.upstream.peers.iter().enumerate() {
        if !server.down {
            runtime.spawn(run(Arc::downgrade(pool), peer));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(fails: u32, passes: u32, mandatory: bool) -> HealthCheck {
        HealthCheck {
            uri: "/".into(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            fails,
            passes,
            status: vec![(200, 399)],
            host: None,
            mandatory,
            port: None,
            body: None,
        }
    }

    /// `n` servers, those in `down` with `down = true`.
    fn peers(n: usize, down: &[usize]) -> Vec<Peer> {
        (0..n)
            .map(|i| Peer {
                address: format!("127.0.0.1:{}", i + 1),
                host: "127.0.0.1".into(),
                socket_addr: std::net::SocketAddr::from(([127, 0, 0, 1], 1)),
                weight: 1,
                max_fails: 1,
                fail_timeout: Duration::from_secs(10),
                backup: false,
                down: down.contains(&i),
                drain: false,
            })
            .collect()
    }

    /// Runs `results` through a streak from `start`, returning each verdict.
    fn verdicts(check: &HealthCheck, start: Verdict, results: &[bool]) -> Vec<Verdict> {
        let mut streak = Streak::default();
        let mut now = start;
        results
            .iter()
            .map(|&passed| {
                now = streak.record(passed, now, check);
                now
            })
            .collect()
    }

    use Verdict::{Checking, Failing, Passing};

    #[test]
    fn fails_in_a_row_take_a_server_out_and_passes_in_a_row_bring_it_back() {
        let c = check(2, 3, false);
        assert_eq!(
            verdicts(&c, Passing, &[false, true, false, false, true, true, false, true, true, true]),
            [Passing, Passing, Passing, Failing, Failing, Failing, Failing, Failing, Failing, Passing]
        );
    }

    #[test]
    fn one_and_one_follow_each_check() {
        let c = check(1, 1, false);
        assert_eq!(verdicts(&c, Passing, &[true, false, true, false]), [Passing, Failing, Passing, Failing]);
    }

    #[test]
    fn the_first_check_decides_a_mandatory_server_at_once() {
        let c = check(3, 3, true);
        assert_eq!(verdicts(&c, Checking, &[true, false, false, false]), [Passing, Passing, Passing, Failing]);
        assert_eq!(verdicts(&c, Checking, &[false, true, true, true]), [Failing, Failing, Failing, Passing]);
    }

    #[test]
    fn verdicts_start_as_mandatory_says_and_only_passing_allows_traffic() {
        let checks = Checks::new(&check(1, 1, true), &peers(2, &[]));
        assert_eq!((checks.verdict(0), checks.allows(0)), (Checking, false));
        checks.set(1, Passing);
        assert!(checks.allows(1));
        checks.set(1, Failing);
        assert!(!checks.allows(1));
        assert!(!checks.allows(2), "an unknown server is not allowed");
        assert!(Checks::new(&check(1, 1, false), &peers(1, &[])).allows(0));
        let with_down = Checks::new(&check(1, 1, true), &peers(2, &[1]));
        assert_eq!((with_down.verdict(0), with_down.verdict(1)), (Checking, Failing), "down: never checked");
    }

    #[tokio::test]
    async fn first_pass_waits_for_a_passing_server_or_no_more_checking() {
        let checks = Checks::new(&check(1, 1, true), &peers(3, &[2]));
        let mut first = std::pin::pin!(checks.first_pass());
        assert!(futures_poll(&mut first).is_pending(), "two servers still checking");
        checks.set(0, Failing);
        assert!(futures_poll(&mut first).is_pending(), "one still checking");
        checks.set(1, Passing);
        assert!(futures_poll(&mut first).is_ready());
        let none_left = Checks::new(&check(1, 1, true), &peers(1, &[]));
        none_left.set(0, Failing);
        assert!(
            futures_poll(&mut std::pin::pin!(none_left.first_pass())).is_ready(),
            "all failed: nothing to wait for"
        );
    }

    /// Polls `future` once with a no-op waker.
    fn futures_poll<F: std::future::Future>(future: &mut std::pin::Pin<&mut F>) -> std::task::Poll<F::Output> {
        future.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
    }

    #[test]
    fn inherit_keeps_a_verdict_but_not_checking() {
        let checks = Checks::new(&check(1, 1, false), &peers(2, &[]));
        checks.inherit(0, Failing, Some("GET /: status 503".into()));
        checks.inherit(1, Checking, None);
        assert_eq!((checks.verdict(0), checks.verdict(1)), (Failing, Passing));
        assert_eq!(checks.last_failure(0).as_deref(), Some("GET /: status 503"));
        assert!(checks.claim_start() && !checks.claim_start(), "tasks start once");
    }
}
