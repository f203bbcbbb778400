//! One upstream's live state: which server is next (`balance`), which are
//! failing (`health`), and the idle kept-alive connections to each.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use rustls_pki_types::ServerName;
use thiserror::Error;
use tokio::net::TcpStream;

use super::balance::Balancer;
use super::health::Health;
use super::health_check::Checks;
use super::http1::{Conn, Stream};
use super::sticky::StickyTable;
use super::sticky_store::StickyStore;
use crate::config::runtime::Upstream;
use crate::metrics::PeerMetrics;

/// An idle connection is closed after this long unused (nginx's upstream
/// `keepalive_timeout` default), before the server is likely to close it.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// An idle connection past the upstream's budget is closed only once it has
/// gone unused this long. Under steady load the servers' shares of the requests
/// in flight wobble by one or two from moment to moment; closing the surplus at
/// once made the pool close one connection and open another (a TLS handshake)
/// hundreds of times a second, which showed as p99 latency.
const SURPLUS_GRACE: Duration = Duration::from_secs(1);

/// TLS sessions kept per server for resumption (TLS 1.3 tickets are single-use).
const SESSIONS_PER_SERVER: usize = 64;

/// TLS sessions kept per server for health checks on a port of their own:
/// one check at a time uses them.
const CHECK_SESSIONS: usize = 4;

/// One upstream pool.
#[derive(Debug)]
pub struct Pool {
    pub upstream: Arc<Upstream>,
    balancer: Balancer,
    health: Health,
    /// Per server, when TLS is on: how to open a TLS connection to it.
    tls: Vec<Option<PeerTls>>,
    /// Per server: idle connections, most recently used last.
    idle: Vec<Mutex<Vec<Idle>>>,
    /// Idle connections over all servers, and how many may be kept:
    /// `keepalive` per server, shared the way nginx's per-upstream cache is,
    /// so that a server taking more than its share of requests for a while
    /// (round robin over unequal servers, a peer down) keeps its connections
    /// instead of closing and reopening them: a TLS handshake each, which
    /// under load took long enough to show in the p99 latency.
    idle_count: AtomicUsize,
    idle_budget: usize,
    /// Answers being read for nobody to keep their connections (`unwanted_read`).
    unwanted_reads: AtomicUsize,
    /// Whether a task will close the surplus once unused (at most one per pool).
    sweep_scheduled: AtomicBool,
    /// Learned sessions (`[upstream.NAME.sticky]`), shared across reloads.
    pub sticky: Option<Arc<StickyTable>>,
    /// The table shared with other nodes (`sticky.store`), kept across reloads
    /// that leave its settings alone; its task stops with the last pool using it.
    pub store: Option<Arc<StickyStore>>,
    /// Per server: its `/metrics` counters, shared across reloads.
    metrics: Vec<Arc<PeerMetrics>>,
    /// `[upstream.NAME.health_check]`: what the active checks say.
    checks: Option<Checks>,
    /// Whether any server is `drain = true` (the fallback pick is skipped otherwise).
    draining: bool,
}

/// How to open a TLS connection to one server.
#[derive(Debug)]
pub(super) struct PeerTls {
    /// The name for SNI and the certificate check (`None`: not a valid name).
    name: Option<ServerName<'static>>,
    /// The upstream's client settings with a session cache of this server's
    /// own: rustls keys resumable sessions by server name, and the servers of
    /// an upstream often share one (`tls_server_name`, or one IP address), so
    /// one cache offered each server the other's sessions and about half the
    /// new connections made a full handshake. nginx keeps a session per server too.
    config: Arc<rustls::ClientConfig>,
}

#[derive(Debug)]
struct Idle {
    conn: Conn,
    since: Instant,
    /// The runtime whose reactor its socket is registered with (`workers::current`).
    home: usize,
}

/// A connection to one server, ready for one request.
#[derive(Debug)]
pub struct Connection {
    pub conn: Conn,
    /// Index of the server in `upstream.peers`.
    pub peer: usize,
    /// Whether it came from the idle pool (a failure on it may be the server
    /// having closed it meanwhile, not the server being down).
    pub reused: bool,
    /// The runtime whose reactor its socket is registered with (`workers::current`).
    home: usize,
}

/// One answer being read for nobody (`Pool::unwanted_read`); its room is
/// given back when this is dropped.
#[derive(Debug)]
pub struct UnwantedRead(Arc<Pool>);

impl UnwantedRead {
    pub fn pool(&self) -> &Arc<Pool> {
        &self.0
    }
}

impl Drop for UnwantedRead {
    fn drop(&mut self) {
        self.0.unwanted_reads.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why no connection to a server could be made.
#[derive(Debug, Error)]
pub enum ConnectError {
    #[error("connect timed out after {0:?}")]
    Timeout(Duration),
    #[error("connect failed: {0}")]
    Io(#[source] std::io::Error),
    #[error("TLS handshake failed: {0}")]
    Tls(#[source] std::io::Error),
    #[error("invalid TLS server name {0:?}")]
    ServerName(String),
}

impl Pool {
    /// A pool with fresh health and balancing state for `upstream`. `sticky`
    /// is a table carried over from the previous configuration, if any;
    /// without one a sticky upstream gets a new table. `store` likewise, used
    /// only when its settings are still those configured.
    pub fn new(upstream: Arc<Upstream>, sticky: Option<Arc<StickyTable>>, store: Option<Arc<StickyStore>>) -> Pool {
        let sticky_config = upstream.sticky.as_ref();
        let sticky = sticky_config
            .map(|config| sticky.unwrap_or_else(|| Arc::new(StickyTable::new(config.capacity, config.timeout))));
        let store = sticky_config.and_then(|config| {
            let settings = config.store.as_ref()?;
            if let Some(store) = store.filter(|store| store.same_settings(&upstream.name, config.timeout, settings)) {
                return Some(store);
            }
            match StickyStore::start(&upstream.name, config.timeout, settings) {
                Ok(store) => Some(Arc::new(store)),
                Err(e) => {
                    // Validation checked the URL; without a store the table stays local.
                    tracing::error!("upstream \"{}\": sticky store not started: {e}", upstream.name);
                    None
                }
            }
        });
        let tls = upstream
            .peers
            .iter()
            .map(|peer| {
                let tls = upstream.tls.as_ref()?;
                let name = tls.server_name.as_deref().unwrap_or(&peer.host);
                let mut config = (*tls.client_config).clone();
                config.resumption = rustls::client::Resumption::in_memory_sessions(SESSIONS_PER_SERVER);
                Some(PeerTls { name: ServerName::try_from(name.to_owned()).ok(), config: Arc::new(config) })
            })
            .collect();
        Pool {
            balancer: Balancer::new(&upstream),
            health: Health::new(&upstream),
            tls,
            idle: upstream.peers.iter().map(|_| Mutex::new(Vec::new())).collect(),
            idle_count: AtomicUsize::new(0),
            idle_budget: upstream.keepalive.saturating_mul(upstream.peers.len()),
            unwanted_reads: AtomicUsize::new(0),
            sweep_scheduled: AtomicBool::new(false),
            sticky,
            store,
            metrics: upstream.peers.iter().map(|peer| crate::metrics::peer(&upstream.name, &peer.address)).collect(),
            checks: upstream.health_check.as_ref().map(|check| Checks::new(check, &upstream.peers)),
            draining: upstream.peers.iter().any(|peer| peer.drain),
            upstream,
        }
    }

    /// Takes over what `old`'s health checks said of the servers still
    /// configured, by address, so that a reload neither sends traffic to a
    /// server they had taken out nor waits for a check of one they had passed.
    pub fn inherit_checks(&self, old: &Pool) {
        let (Some(checks), Some(old_checks)) = (&self.checks, &old.checks) else { return };
        for (peer, server) in self.upstream.peers.iter().enumerate() {
            if let Some(old_peer) = old.peer_index(&server.address) {
                checks.inherit(peer, old_checks.verdict(old_peer), old_checks.last_failure(old_peer));
            }
        }
    }

    /// The active health checks, when configured.
    pub fn checks(&self) -> Option<&Checks> {
        self.checks.as_ref()
    }

    /// Stops the health checks of a pool a reload replaced.
    pub fn retire(&self) {
        if let Some(checks) = &self.checks {
            checks.retire();
        }
    }

    /// Counts one health check of `peer` in its metrics.
    pub fn count_check(&self, peer: usize, passed: bool) {
        if let Some(metrics) = self.metrics.get(peer) {
            let counter = if passed { &metrics.checks_passed } else { &metrics.checks_failed };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Whether `peer` may take traffic at `now`: passive health, then the
    /// active checks' verdict.
    fn usable(&self, peer: usize, now: Instant) -> bool {
        self.health.is_usable(peer, now) && self.checks.as_ref().is_none_or(|checks| checks.allows(peer))
    }

    /// The next server for a request from `client`, skipping servers for which
    /// `tried` says true and those that are down or failing. Draining servers
    /// only when no other can take it (a request bound to one by a sticky
    /// session does not come here). `None`: no server can take it.
    pub fn pick(&self, client: IpAddr, tried: impl Fn(usize) -> bool) -> Option<usize> {
        let now = Instant::now();
        let peers = &self.upstream.peers;
        let open = |peer: usize| !tried(peer) && self.usable(peer, now);
        self.balancer
            .pick(client, &|peer| peers.get(peer).is_some_and(|p| !p.drain) && open(peer))
            .or_else(|| self.draining.then(|| self.balancer.pick(client, &open)).flatten())
    }

    /// The index of the server configured as `address` (sessions name servers
    /// by address so that they survive reloads that reorder or remove servers).
    pub fn peer_index(&self, address: &str) -> Option<usize> {
        self.upstream.peers.iter().position(|peer| peer.address == address)
    }

    /// Whether `peer` may take traffic now (sticky routing asks before using it).
    pub fn is_usable(&self, peer: usize) -> bool {
        peer < self.upstream.peers.len() && self.usable(peer, Instant::now())
    }

    /// Counts a failure of `peer` toward `max_fails` (and in its metrics).
    pub fn report_failure(&self, peer: usize) {
        if let Some(metrics) = self.metrics.get(peer) {
            metrics.failures.fetch_add(1, Ordering::Relaxed);
        }
        self.health.record_failure(peer, Instant::now());
    }

    /// Failures currently counted against `peer` toward `max_fails`.
    pub fn failures(&self, peer: usize) -> u32 {
        self.health.failures(peer)
    }

    /// The `/metrics` counters of `peer`.
    pub fn peer_metrics(&self, peer: usize) -> Option<&PeerMetrics> {
        self.metrics.get(peer).map(|m| &**m)
    }

    /// Records that `peer` answered.
    pub fn report_success(&self, peer: usize) {
        self.health.record_success(peer);
    }

    /// An idle connection to `peer` if one is still open, else a new one.
    pub async fn connect(&self, peer: usize) -> Result<Connection, ConnectError> {
        if let Some((conn, home)) = self.take_idle(peer) {
            return Ok(Connection { conn, peer, reused: true, home });
        }
        // Boxed: opening (TCP and TLS handshakes) needs a few KiB of state
        // that, kept inline, would make every request's future that much bigger
        // (more memory per connection, more to move) for a rare path.
        let conn = Box::pin(self.open(peer)).await?;
        if let Some(metrics) = self.metrics.get(peer) {
            metrics.connections_opened.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Connection { conn, peer, reused: false, home: crate::workers::current() })
    }

    /// Keeps `conn`, whose last response was read whole and allows another
    /// request, for reuse. Past the upstream's idle budget, connections idle
    /// the longest (on any server) are closed once unused for `SURPLUS_GRACE`.
    pub fn release(self: &Arc<Self>, conn: Connection) {
        if !conn.conn.is_clean() || self.upstream.keepalive == 0 {
            return;
        }
        let Some(slot) = self.idle.get(conn.peer) else { return };
        let now = Instant::now();
        let count = {
            let mut idle = lock(slot);
            idle.push(Idle { conn: conn.conn, since: now, home: conn.home });
            // Counted under the lock, so that no pop can count it first.
            self.idle_count.fetch_add(1, Ordering::Relaxed) + 1
        };
        if count > self.idle_budget {
            self.close_surplus(now);
            self.schedule_sweep();
        }
    }

    /// Room to read on, for nobody, an answer whose client has gone, so that
    /// its connection can be kept (`proxy::body::drain`): at most as many at
    /// once as the idle connections the pool may keep, as each is read only
    /// to be kept (none with `keepalive = 0`). A client that resets h2 streams
    /// as fast as it can thus cannot have portico hold more upstream
    /// connections open for it than that; the others close at once.
    pub fn unwanted_read(self: &Arc<Self>) -> Option<UnwantedRead> {
        if self.unwanted_reads.fetch_add(1, Ordering::Relaxed) >= self.idle_budget {
            self.unwanted_reads.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(UnwantedRead(self.clone()))
    }

    /// Makes sure a surplus still young now is closed once unused, also when
    /// no further request comes to release a connection and trim it then.
    fn schedule_sweep(self: &Arc<Self>) {
        if self.idle_count.load(Ordering::Relaxed) <= self.idle_budget
            || self.sweep_scheduled.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.sweep_scheduled.store(false, Ordering::Release);
            return;
        };
        runtime.spawn(sweep(Arc::downgrade(self)));
    }

    /// Idle connections to `peer` kept for reuse now.
    pub fn idle_connections(&self, peer: usize) -> usize {
        self.idle.get(peer).map_or(0, |slot| lock(slot).len())
    }

    /// While over the idle budget, closes the connection idle the longest
    /// (over all servers) if it has been unused for `SURPLUS_GRACE`.
    ///
    /// However large the surplus, it is not closed sooner: it is what the
    /// requests in flight a moment ago needed, and under load they need it
    /// again at once. h2 clients with many streams each (16 x 10 on the
    /// benchmark, against an idle budget of 64) made a cap at twice the budget
    /// close and reopen about one connection per 34 requests, each a TLS
    /// handshake. The number of connections is bounded by the requests in
    /// flight, not by this.
    fn close_surplus(&self, now: Instant) {
        while self.idle_count.load(Ordering::Relaxed) > self.idle_budget {
            // One lock at a time; a list that changed meanwhile is looked at again.
            let oldest = self
                .idle
                .iter()
                .enumerate()
                .filter_map(|(peer, slot)| lock(slot).first().map(|entry| (entry.since, peer)))
                .min();
            let Some((since, peer)) = oldest else { return };
            if now.saturating_duration_since(since) < SURPLUS_GRACE {
                return;
            }
            let mut idle = lock(&self.idle[peer]);
            if idle.first().is_some_and(|entry| entry.since == since) {
                idle.remove(0);
                self.idle_count.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// The most recently used idle connection to `peer` registered with the
    /// caller's runtime, else the most recently used one: with a runtime per
    /// core, a socket of another runtime's reactor wakes its request across
    /// threads, which is what runtimes per core avoid. Connections the server
    /// has closed meanwhile are dropped on the way.
    fn take_idle(&self, peer: usize) -> Option<(Conn, usize)> {
        let mut idle = lock(self.idle.get(peer)?);
        let here = crate::workers::current();
        loop {
            let at = idle.iter().rposition(|entry| entry.home == here).or(idle.len().checked_sub(1))?;
            let mut entry = idle.remove(at);
            self.idle_count.fetch_sub(1, Ordering::Relaxed);
            if entry.since.elapsed() < IDLE_TIMEOUT && entry.conn.is_idle_and_open() {
                return Some((entry.conn, entry.home));
            }
        }
    }

    /// A new connection to `peer`, TCP and TLS as the upstream says (health
    /// checks use it directly, outside the pool).
    pub(super) async fn open(&self, peer: usize) -> Result<Conn, ConnectError> {
        self.open_at(peer, self.upstream.peers[peer].socket_addr, self.tls[peer].as_ref()).await
    }

    /// How a health check on another port of `peer`'s host speaks TLS, when
    /// the upstream does: the same settings and name, with a session cache of
    /// its own. The other port is often another TLS server (a WSO2 node's
    /// servlet port beside its gateway port), whose sessions the traffic port
    /// would not resume: shared, they would cost traffic full handshakes.
    pub(super) fn check_tls(&self, peer: usize) -> Option<PeerTls> {
        let tls = self.tls.get(peer)?.as_ref()?;
        let mut config = (*tls.config).clone();
        config.resumption = rustls::client::Resumption::in_memory_sessions(CHECK_SESSIONS);
        Some(PeerTls { name: tls.name.clone(), config: Arc::new(config) })
    }

    /// A new connection to `peer`'s host on `port` (a health check's own),
    /// speaking TLS as `tls` (from [`Pool::check_tls`]) says.
    pub(super) async fn open_port(&self, peer: usize, port: u16, tls: Option<&PeerTls>) -> Result<Conn, ConnectError> {
        let mut addr = self.upstream.peers[peer].socket_addr;
        addr.set_port(port);
        self.open_at(peer, addr, tls).await
    }

    /// A new connection to `addr`, on behalf of `peer` (whose host names it
    /// when TLS has no valid name), TLS as `tls` says.
    async fn open_at(&self, peer: usize, addr: SocketAddr, tls: Option<&PeerTls>) -> Result<Conn, ConnectError> {
        let timeout = self.upstream.connect_timeout;
        let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ConnectError::Timeout(timeout))?
            .map_err(ConnectError::Io)?;
        // Small proxied messages must not wait for Nagle's delayed ACK.
        tcp.set_nodelay(true).map_err(ConnectError::Io)?;
        match tls {
            None => Ok(Conn::new(Stream::Plain(tcp))),
            Some(tls) => {
                let name =
                    tls.name.clone().ok_or_else(|| ConnectError::ServerName(self.upstream.peers[peer].host.clone()))?;
                let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
                let stream = tokio::time::timeout(timeout, connector.connect(name, tcp))
                    .await
                    .map_err(|_| ConnectError::Timeout(timeout))?
                    .map_err(ConnectError::Tls)?;
                Ok(Conn::new(Stream::Tls(Box::new(stream))))
            }
        }
    }
}

/// Closes the pool's surplus of idle connections as it comes of age, until
/// none is left; ends early when the pool is gone (a reload replaced it).
async fn sweep(weak: Weak<Pool>) {
    loop {
        tokio::time::sleep(SURPLUS_GRACE).await;
        let Some(pool) = weak.upgrade() else { return };
        pool.close_surplus(Instant::now());
        if pool.idle_count.load(Ordering::Relaxed) > pool.idle_budget {
            continue;
        }
        pool.sweep_scheduled.store(false, Ordering::Release);
        // A release that went over the budget just now saw the flag still set
        // and left the sweep to this task: look again.
        if pool.idle_count.load(Ordering::Relaxed) <= pool.idle_budget
            || pool.sweep_scheduled.swap(true, Ordering::AcqRel)
        {
            return;
        }
    }
}

/// A server's idle list; one poisoned by a panic elsewhere is still consistent.
fn lock(slot: &Mutex<Vec<Idle>>) -> MutexGuard<'_, Vec<Idle>> {
    slot.lock().unwrap_or_else(PoisonError::into_inner)
}
