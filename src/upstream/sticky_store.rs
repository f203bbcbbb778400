//! `[upstream.NAME.sticky] store`: the sticky table shared between portico
//! nodes through Redis (or Valkey, or anything speaking RESP with `GETEX`).
//!
//! The local [`StickyTable`] stays the fast path and the truth for this node:
//! a session found there is routed without asking Redis, and Redis only fills
//! the table's misses. Redis holds one key per session,
//! `{prefix}{upstream}:{hex of SHA-256(session value), first 16 bytes}` ->
//! the server's configured address (`"10.0.0.5:9443"`), with the session
//! `timeout` as its time to live. The value is hashed so that whoever can read
//! Redis cannot take over sessions; the address, not the server's index, so that
//! nodes whose upstreams list the same servers in another order agree, and so
//! that a name no longer in the upstream is simply not found (`Pool::peer_index`).
//!
//! Nothing here can fail or block a request:
//! - writes (learn, forget, a use's refresh) are `try_send` to a bounded queue
//!   that one task per store drains in pipelined batches; a full queue drops the
//!   write and counts it;
//! - a local miss asks Redis at most once per value every [`REMEMBER`] (answers,
//!   found or not, are shared by concurrent requests for the same value), only
//!   while connected, for at most `store_timeout`, with at most [`MAX_IN_FLIGHT`]
//!   questions at once;
//! - the task keeps the connection: it pings while idle, and on an error drops
//!   the connection, marks the store down (lookups stop at once) and reconnects
//!   with backoff, logging one line per change of state.
//!
//! The task stops when its [`StickyStore`] is dropped (the last pool using it
//! went away after a reload), even while it waits to reconnect.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::fmt::Write as _;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use thiserror::Error;
use tokio::sync::{OnceCell, mpsc, oneshot};

use super::sticky::StickyTable;
use crate::config::runtime;

/// Writes waiting for the task; more are dropped (and counted).
const QUEUE: usize = 4096;
/// Most writes sent in one pipeline.
const MAX_BATCH: usize = 256;
/// Longest wait for a batch of writes or a ping; longer counts as Redis being down.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest wait for a connection (TCP, TLS, AUTH, SELECT).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How often an idle connection is checked, so that `up` tells the truth.
const PING_EVERY: Duration = Duration::from_secs(1);
/// First wait before reconnecting, doubled after each failure up to `BACKOFF_MAX`.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long Redis's answer for a value is remembered: a flood of requests with
/// an unknown cookie asks Redis once per value in this time, not once per request.
pub const REMEMBER: Duration = Duration::from_secs(5);
/// Most values remembered; when full, values not remembered are not asked about.
const MAX_REMEMBERED: usize = 8192;
/// Most questions to Redis at once; beyond, a miss is balanced without asking.
const MAX_IN_FLIGHT: usize = 64;

/// Why a store could not be started.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("invalid Redis URL {url}: {source}")]
    Url { url: String, source: redis::RedisError },
    #[error("the sticky store needs a tokio runtime")]
    NoRuntime,
}

/// Connection state, as `/metrics` and `/status` show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not connected yet since the store started.
    Connecting,
    Up,
    /// Lost or never reached; reconnecting with backoff.
    Down,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Connecting => "connecting",
            State::Up => "up",
            State::Down => "down",
        }
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Writes Redis accepted.
    pub writes: u64,
    /// Writes dropped: the queue was full, or Redis failed the batch.
    pub writes_dropped: u64,
    /// Questions sent to Redis on local misses.
    pub lookups: u64,
    /// Questions Redis answered with a server.
    pub lookup_hits: u64,
    /// Questions that timed out or failed.
    pub lookup_failures: u64,
    /// Local misses not asked about: too many values remembered or questions in flight.
    pub lookups_skipped: u64,
}

/// One upstream's connection to the shared table, with its background task.
pub struct StickyStore {
    shared: Arc<Shared>,
    /// `timeout / 4` in milliseconds, here rather than behind `shared` since
    /// every local hit reads it.
    refresh_every_ms: u64,
    writes: mpsc::Sender<Write>,
    /// Dropped with the store: tells the task to stop, even while it is not
    /// reading `writes` (waiting to reconnect).
    _stop: oneshot::Sender<()>,
}

/// What the request path and the task share.
struct Shared {
    /// The configuration the store was started with (a reload keeps the store
    /// only when this is unchanged).
    config: runtime::StickyStore,
    upstream: String,
    /// `config.url` without its password, for logs and `/status`.
    display_url: String,
    /// The session `timeout`, as every key's time to live.
    ttl_ms: u64,
    /// The session `timeout` (a reload with another one starts a new store).
    timeout: Duration,
    /// Set while connected; lookups use a clone (one socket for all).
    connection: Mutex<Option<MultiplexedConnection>>,
    state: AtomicU8,
    remembered: Mutex<Remembered>,
    in_flight: AtomicUsize,
    hasher: RandomState,
    writes: AtomicU64,
    writes_dropped: AtomicU64,
    lookups: AtomicU64,
    lookup_hits: AtomicU64,
    lookup_failures: AtomicU64,
    lookups_skipped: AtomicU64,
}

/// Redis's answers for recently asked values, keyed by a local hash of the value.
#[derive(Default)]
struct Remembered {
    answers: HashMap<u64, Answer>,
    /// When the map was last swept of old answers (at most once per second).
    swept: Option<Instant>,
}

struct Answer {
    asked: Instant,
    /// Filled by the first request to ask; the others wait on it.
    server: Arc<OnceCell<Option<Arc<str>>>>,
}

/// One write for the task.
#[derive(Debug)]
enum Write {
    /// The session belongs to the server (learned or rebound).
    Set { key: String, server: String },
    /// The session was used: keep it alive.
    Refresh { key: String },
    /// The session's cookie was deleted.
    Delete { key: String },
}

impl StickyStore {
    /// Starts the store of `upstream` (its sessions live `timeout` unused) and
    /// its task on the current tokio runtime. Connecting happens in the task:
    /// a store that cannot reach Redis is down, not an error.
    pub fn start(upstream: &str, timeout: Duration, config: &runtime::StickyStore) -> Result<StickyStore, StoreError> {
        let client = redis::Client::open(config.url.as_str())
            .map_err(|source| StoreError::Url { url: redact(&config.url), source })?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| StoreError::NoRuntime)?;
        let shared = Arc::new(Shared {
            config: config.clone(),
            upstream: upstream.to_owned(),
            display_url: redact(&config.url),
            ttl_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX).max(1),
            timeout,
            connection: Mutex::new(None),
            state: AtomicU8::new(State::Connecting as u8),
            remembered: Mutex::default(),
            in_flight: AtomicUsize::new(0),
            hasher: RandomState::new(),
            writes: AtomicU64::new(0),
            writes_dropped: AtomicU64::new(0),
            lookups: AtomicU64::new(0),
            lookup_hits: AtomicU64::new(0),
            lookup_failures: AtomicU64::new(0),
            lookups_skipped: AtomicU64::new(0),
        });
        let (writes, queue) = mpsc::channel(QUEUE);
        let (stop, stopped) = oneshot::channel();
        runtime.spawn(run(shared.clone(), client, queue, stopped));
        let refresh_every_ms = u64::try_from((timeout / 4).as_millis()).unwrap_or(u64::MAX);
        Ok(StickyStore { shared, refresh_every_ms, writes, _stop: stop })
    }

    /// Whether this store was started for the same settings (a reload keeps it then).
    pub fn same_settings(&self, upstream: &str, timeout: Duration, config: &runtime::StickyStore) -> bool {
        let shared = &self.shared;
        shared.upstream == upstream && shared.timeout == timeout && shared.config == *config
    }

    /// The server of `value` if this node knows it. A known session is also
    /// refreshed in Redis when it was last told more than `timeout / 4` ago;
    /// otherwise this costs the same as `table.lookup`.
    pub fn lookup_local(&self, table: &StickyTable, value: &str, now: Instant) -> Option<Arc<str>> {
        let (server, refresh) = table.lookup_refreshing(value, now, self.refresh_every_ms)?;
        if refresh {
            self.refresh(value);
        }
        Some(server)
    }

    /// Kept out of line: the local hit that needs it is rare.
    #[cold]
    #[inline(never)]
    fn refresh(&self, value: &str) {
        self.send(Write::Refresh { key: self.shared.key(value) });
    }

    /// The server Redis names for `value`, asked only when this node does not
    /// know it. `None` at once while Redis is down, after `store_timeout` at
    /// most while it is slow. The caller checks that the server is still in
    /// the upstream before using (and caching) it.
    pub async fn lookup_remote(&self, value: &str) -> Option<Arc<str>> {
        let connection = self.shared.connection()?;
        let answer = self.shared.answer_for(value)?;
        answer.get_or_init(|| self.shared.ask(connection, value)).await.clone()
    }

    /// Tells Redis that `value` belongs to `server` (its configured address).
    pub fn learned(&self, value: &str, server: &str) {
        self.send(Write::Set { key: self.shared.key(value), server: server.to_owned() });
    }

    /// Tells Redis that the session `value` is gone.
    pub fn forgotten(&self, value: &str) {
        self.send(Write::Delete { key: self.shared.key(value) });
    }

    pub fn state(&self) -> State {
        self.shared.state()
    }

    /// The store's URL without its password.
    pub fn display_url(&self) -> &str {
        &self.shared.display_url
    }

    pub fn stats(&self) -> StoreStats {
        let s = &self.shared;
        StoreStats {
            writes: s.writes.load(Ordering::Relaxed),
            writes_dropped: s.writes_dropped.load(Ordering::Relaxed),
            lookups: s.lookups.load(Ordering::Relaxed),
            lookup_hits: s.lookup_hits.load(Ordering::Relaxed),
            lookup_failures: s.lookup_failures.load(Ordering::Relaxed),
            lookups_skipped: s.lookups_skipped.load(Ordering::Relaxed),
        }
    }

    fn send(&self, write: Write) {
        if self.writes.try_send(write).is_err() {
            self.shared.writes_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl std::fmt::Debug for StickyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StickyStore")
            .field("upstream", &self.shared.upstream)
            .field("url", &self.shared.display_url)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// `{prefix}{upstream}:{32 hex digits of SHA-256(value)}`.
    fn key(&self, value: &str) -> String {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, value.as_bytes());
        let mut key = String::with_capacity(self.config.prefix.len() + self.upstream.len() + 33);
        key.push_str(&self.config.prefix);
        key.push_str(&self.upstream);
        key.push(':');
        for byte in &digest.as_ref()[..16] {
            let _ = write!(key, "{byte:02x}");
        }
        key
    }

    fn state(&self) -> State {
        match self.state.load(Ordering::Relaxed) {
            s if s == State::Up as u8 => State::Up,
            s if s == State::Down as u8 => State::Down,
            _ => State::Connecting,
        }
    }

    fn connection(&self) -> Option<MultiplexedConnection> {
        self.connection.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The shared answer for `value`: the one being (or recently) asked, else a
    /// new one to fill. `None` when too many values are remembered to ask about
    /// another.
    fn answer_for(&self, value: &str) -> Option<Arc<OnceCell<Option<Arc<str>>>>> {
        let key = self.hasher.hash_one(value);
        let now = Instant::now();
        let mut remembered = self.remembered.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(answer) = remembered.answers.get(&key)
            && now.duration_since(answer.asked) < REMEMBER
        {
            return Some(answer.server.clone());
        }
        if remembered.answers.len() >= MAX_REMEMBERED {
            // A sweep walks the whole map: at most once a second, so that a
            // flood of unknown cookies does not make every request pay for it.
            if remembered.swept.is_none_or(|swept| now.duration_since(swept) >= Duration::from_secs(1)) {
                remembered.answers.retain(|_, answer| now.duration_since(answer.asked) < REMEMBER);
                remembered.swept = Some(now);
            }
            if remembered.answers.len() >= MAX_REMEMBERED {
                self.lookups_skipped.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        }
        let server = Arc::new(OnceCell::new());
        remembered.answers.insert(key, Answer { asked: now, server: server.clone() });
        Some(server)
    }

    /// Asks Redis for `value`'s server, refreshing its time to live (`GETEX`):
    /// a session found here is in use on this node now.
    async fn ask(&self, mut connection: MultiplexedConnection, value: &str) -> Option<Arc<str>> {
        // Released on drop too: a request whose client goes away mid-question
        // must not hold its slot for ever.
        let slot = InFlight::take(&self.in_flight);
        if slot.count > MAX_IN_FLIGHT {
            self.lookups_skipped.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        self.lookups.fetch_add(1, Ordering::Relaxed);
        let mut getex = redis::cmd("GETEX");
        getex.arg(self.key(value)).arg("PX").arg(self.ttl_ms);
        let asked = tokio::time::timeout(self.config.lookup_timeout, getex.query_async(&mut connection)).await;
        drop(slot);
        match asked {
            Ok(Ok(Some(server))) => {
                self.lookup_hits.fetch_add(1, Ordering::Relaxed);
                Some(Arc::from(String::into_boxed_str(server)))
            }
            Ok(Ok(None)) => None,
            Ok(Err(e)) => {
                // The task notices a lost connection and logs it, once.
                tracing::debug!(upstream = %self.upstream, "sticky store lookup failed: {e}");
                self.lookup_failures.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(_) => {
                self.lookup_failures.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Connected: lookups may ask from now on.
    fn set_up(&self, connection: MultiplexedConnection) {
        *self.connection.lock().unwrap_or_else(PoisonError::into_inner) = Some(connection);
        let before = self.state.swap(State::Up as u8, Ordering::Relaxed);
        if before == State::Down as u8 {
            tracing::warn!(
                "sticky store of upstream \"{}\" reconnected to {}: sharing sessions again",
                self.upstream,
                self.display_url
            );
        } else if before == State::Connecting as u8 {
            tracing::info!("sticky store of upstream \"{}\" connected to {}", self.upstream, self.display_url);
        }
    }

    /// Not connected: lookups stop asking, writes wait in the queue.
    fn set_down(&self, why: &str) {
        *self.connection.lock().unwrap_or_else(PoisonError::into_inner) = None;
        let before = self.state.swap(State::Down as u8, Ordering::Relaxed);
        if before != State::Down as u8 {
            tracing::warn!(
                "sticky store of upstream \"{}\" cannot use {}: {why}; serving from this node's sessions \
                 and retrying",
                self.upstream,
                self.display_url
            );
        }
    }
}

/// One question to Redis counted in flight, until dropped.
struct InFlight<'a> {
    counter: &'a AtomicUsize,
    /// Questions in flight, this one included.
    count: usize,
}

impl<'a> InFlight<'a> {
    fn take(counter: &'a AtomicUsize) -> InFlight<'a> {
        InFlight { counter, count: counter.fetch_add(1, Ordering::Relaxed) + 1 }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The store's task: connect, then write batches and ping until an error,
/// then back off and connect again; until the store is dropped.
async fn run(
    shared: Arc<Shared>,
    client: redis::Client,
    mut queue: mpsc::Receiver<Write>,
    mut stop: oneshot::Receiver<()>,
) {
    // Connection and response timeouts are applied here, per operation.
    let config = redis::AsyncConnectionConfig::new().set_connection_timeout(None).set_response_timeout(None);
    let mut backoff = BACKOFF_MIN;
    loop {
        let connected = tokio::select! {
            connected = tokio::time::timeout(CONNECT_TIMEOUT, connect(&client, &config)) => connected,
            _ = &mut stop => return,
        };
        let why = match connected {
            Ok(Ok(connection)) => {
                shared.set_up(connection.clone());
                match serve(&shared, connection, &mut queue, &mut stop, &mut backoff).await {
                    Some(why) => why,
                    None => return,
                }
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no connection within {CONNECT_TIMEOUT:?}"),
        };
        shared.set_down(&why);
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = &mut stop => return,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// A connection that has answered a PING: one that only accepts TCP is not up.
async fn connect(
    client: &redis::Client,
    config: &redis::AsyncConnectionConfig,
) -> redis::RedisResult<MultiplexedConnection> {
    let mut connection = client.get_multiplexed_async_connection_with_config(config).await?;
    redis::cmd("PING").exec_async(&mut connection).await?;
    Ok(connection)
}

/// Writes queued batches and pings while idle. Returns why the connection is
/// no longer usable, or `None` when the store was dropped. The reconnect
/// `backoff` starts over only once a command has succeeded, so that a Redis
/// that accepts connections but fails every command is retried ever more slowly.
async fn serve(
    shared: &Shared,
    mut connection: MultiplexedConnection,
    queue: &mut mpsc::Receiver<Write>,
    stop: &mut oneshot::Receiver<()>,
    backoff: &mut Duration,
) -> Option<String> {
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let command = tokio::select! {
            _ = &mut *stop => return None,
            received = queue.recv_many(&mut batch, MAX_BATCH) => {
                if received == 0 {
                    return None;
                }
                pipeline(shared, &batch)
            }
            _ = ping.tick() => {
                let mut pipe = redis::pipe();
                pipe.cmd("PING").ignore();
                pipe
            }
        };
        let count = batch.len() as u64;
        batch.clear();
        match tokio::time::timeout(COMMAND_TIMEOUT, command.exec_async(&mut connection)).await {
            Ok(Ok(())) => {
                shared.writes.fetch_add(count, Ordering::Relaxed);
                *backoff = BACKOFF_MIN;
                ping.reset();
            }
            Ok(Err(e)) if is_connection_error(&e) => {
                shared.writes_dropped.fetch_add(count, Ordering::Relaxed);
                return Some(e.to_string());
            }
            Ok(Err(e)) => {
                // Redis answered, with an error (a read-only replica, say): the
                // connection is fine, the writes are lost. Counted, not logged
                // per batch.
                tracing::debug!(upstream = %shared.upstream, "sticky store write failed: {e}");
                shared.writes_dropped.fetch_add(count, Ordering::Relaxed);
            }
            Err(_) => {
                shared.writes_dropped.fetch_add(count, Ordering::Relaxed);
                return Some(format!("no answer within {COMMAND_TIMEOUT:?}"));
            }
        }
    }
}

/// One pipeline for a batch of writes.
fn pipeline(shared: &Shared, batch: &[Write]) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    for write in batch {
        match write {
            Write::Set { key, server } => pipe.cmd("SET").arg(key).arg(server).arg("PX").arg(shared.ttl_ms).ignore(),
            Write::Refresh { key } => pipe.cmd("PEXPIRE").arg(key).arg(shared.ttl_ms).ignore(),
            Write::Delete { key } => pipe.cmd("DEL").arg(key).ignore(),
        };
    }
    pipe
}

/// Whether `e` means the connection is gone (rather than Redis refusing a command).
fn is_connection_error(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout()
}

/// `url` with its password (the user info) replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_question_gives_back_its_slot() {
        let counter = AtomicUsize::new(0);
        let first = InFlight::take(&counter);
        let second = InFlight::take(&counter);
        assert_eq!((first.count, second.count), (1, 2));
        drop(first);
        drop(second);
        assert_eq!(counter.load(Ordering::Relaxed), 0);
    }

    fn config(url: &str) -> runtime::StickyStore {
        runtime::StickyStore {
            url: url.to_owned(),
            prefix: "portico:sticky:".to_owned(),
            lookup_timeout: Duration::from_millis(20),
        }
    }

    /// A loopback port nothing listens on (bound, then closed).
    fn closed_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }

    #[test]
    fn redact_hides_the_password() {
        assert_eq!(redact("redis://:s3cret@10.0.0.9:6379/0"), "redis://***@10.0.0.9:6379/0");
        assert_eq!(redact("rediss://user:p@ss@redis.internal/1"), "rediss://***@redis.internal/1");
        assert_eq!(redact("redis://127.0.0.1:6379/0"), "redis://127.0.0.1:6379/0");
        assert_eq!(redact("redis://127.0.0.1:6379/0?x=a@b"), "redis://127.0.0.1:6379/0?x=a@b");
    }

    #[tokio::test]
    async fn keys_hash_the_value_and_name_the_upstream() {
        let store = StickyStore::start("am", Duration::from_secs(600), &config("redis://127.0.0.1:1/0")).unwrap();
        let key = store.shared.key("ABC.node1");
        assert!(key.starts_with("portico:sticky:am:"), "{key}");
        let hash = &key["portico:sticky:am:".len()..];
        assert_eq!(hash.len(), 32);
        assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()) && !key.contains("ABC"));
        // The same on every node: no per-process key.
        let other = StickyStore::start("am", Duration::from_secs(600), &config("redis://127.0.0.1:1/0")).unwrap();
        assert_eq!(other.shared.key("ABC.node1"), key);
        assert_ne!(other.shared.key("ABC.node2"), key);
    }

    #[tokio::test]
    async fn down_store_answers_at_once_and_stops_when_dropped() {
        let url = format!("redis://127.0.0.1:{}/0", closed_port());
        let store = StickyStore::start("am", Duration::from_secs(600), &config(&url)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while store.state() != State::Down {
            assert!(Instant::now() < deadline, "never marked down");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let started = Instant::now();
        assert_eq!(store.lookup_remote("abc").await, None);
        assert!(started.elapsed() < Duration::from_millis(5), "a down store must not make requests wait");
        assert_eq!(store.stats().lookups, 0);
        // Writes queue up while down, and are dropped (counted) once it is full.
        for i in 0..QUEUE + 10 {
            store.learned(&format!("s{i}"), "10.0.0.1:9443");
        }
        assert_eq!(store.stats().writes_dropped, 10);

        let task_holds = Arc::downgrade(&store.shared);
        drop(store);
        while task_holds.upgrade().is_some() {
            assert!(Instant::now() < deadline, "the store's task outlived the store");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn remembered_answers_are_bounded() {
        let store = StickyStore::start("am", Duration::from_secs(600), &config("redis://127.0.0.1:1/0")).unwrap();
        for i in 0..MAX_REMEMBERED {
            assert!(store.shared.answer_for(&format!("v{i}")).is_some());
        }
        // Asked again: the same answer, no new entry.
        let first = store.shared.answer_for("v0").unwrap();
        assert!(Arc::ptr_eq(&first, &store.shared.answer_for("v0").unwrap()));
        assert!(store.shared.answer_for("one more").is_none());
        assert_eq!(store.stats().lookups_skipped, 1);
        assert_eq!(store.shared.remembered.lock().unwrap().answers.len(), MAX_REMEMBERED);
    }

    #[test]
    fn settings_decide_whether_a_reload_keeps_the_store() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let _guard = runtime.enter();
        let ten = Duration::from_secs(600);
        let base = config("redis://127.0.0.1:1/0");
        let store = StickyStore::start("am", ten, &base).unwrap();
        assert!(store.same_settings("am", ten, &base));
        assert!(!store.same_settings("gw", ten, &base));
        assert!(!store.same_settings("am", ten * 2, &base));
        let mut other = base.clone();
        other.prefix = "cluster2:".to_owned();
        assert!(!store.same_settings("am", ten, &other));
    }

    #[test]
    fn needs_a_runtime() {
        assert!(matches!(
            StickyStore::start("am", Duration::from_secs(1), &config("redis://127.0.0.1:1/0")),
            Err(StoreError::NoRuntime)
        ));
    }
}
