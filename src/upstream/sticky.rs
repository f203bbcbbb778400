//! `sticky.learn`: the bounded table of learned session cookies -> the server that owns them, consulted before `balance`.
//!
//! A session value is stored only as a 64-bit keyed hash (SipHash with a random
//! key per table), never as the string: an entry costs the same whatever the
//! cookie's length, and learning allocates nothing. Two values with the same hash
//! share an entry; with a random key nobody can aim for that, and by chance it
//! happens about once in 10^14 learns per table, sending one session to the server
//! that owns the other, which is no worse than an unknown session would get.
//!
//! The table is split into shards, each a mutex around a map and an LRU list
//! kept in a `Vec` by index, so threads contend only when their sessions hash to
//! the same shard.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use http::HeaderMap;
use http::header::{COOKIE, SET_COOKIE};

/// Most shards a table is split into: enough that worker threads rarely meet on
/// one, few enough that a shard's share of the capacity stays large.
const MAX_SHARDS: usize = 64;

/// Most entries per shard. Each shard is least-recently-used on its own, so small
/// tables get few shards to keep eviction close to a global LRU. Under constant
/// eviction std's map keeps at least 16/7 buckets per entry (removals leave
/// tombstones, and it rehashes in place only while at most half full); a share of
/// at most 896, 7/16 of 2048, stays at that best ratio.
const SHARD_SHARE: usize = 896;

/// "No node" in the LRU links and the free list; also marks a free slot's server.
const NIL: u32 = u32::MAX;

/// Learned sessions: session value -> address of the server it belongs to
/// (`Peer.address`, stable across reloads), with least-recently-used eviction
/// and idle expiry. Shared by all worker threads.
///
/// The bound: the capacity is divided exactly among the shards (shares differ
/// by at most one), and a shard never holds more than its share, so the table
/// never holds more than `capacity` entries. As each shard evicts its own least
/// recently used entry, a full shard may evict while others still have room, and
/// the evicted entry is the oldest of its shard, not necessarily of the table.
pub struct StickyTable {
    shards: Box<[Padded]>,
    hasher: RandomState,
    /// Times are kept as milliseconds since this instant (8 bytes, not 16).
    epoch: Instant,
    timeout_ms: u64,
    capacity: usize,
}

/// Keeps each shard's mutex on its own cache line, so that locking one shard does
/// not slow down threads using its neighbour.
#[repr(align(64))]
struct Padded(Mutex<Shard>);

/// One shard: a map from key to slot and a doubly linked LRU list through `nodes`.
struct Shard {
    index: HashMap<u64, u32, BuildHasherDefault<Remix>>,
    nodes: Vec<Node>,
    /// Most recently used.
    head: u32,
    /// Least recently used: evicted first, and where expired entries gather.
    tail: u32,
    /// Free slots, chained through `Node::next`.
    free: u32,
    /// Most entries this shard may hold.
    share: usize,
    /// Server addresses, referred to by `Node::server`. Each shard holds its own
    /// copies so that cloning one on lookup touches no memory shared with other shards.
    servers: Vec<Arc<str>>,
    // Counters live under the shard's lock, already held when they change, rather
    // than in atomics that every thread would bounce between cores.
    hits: u64,
    misses: u64,
    evictions: u64,
    expiries: u64,
    learned: u64,
}

/// One entry (32 bytes).
#[derive(Debug, Clone, Copy)]
struct Node {
    key: u64,
    /// Last use, in milliseconds since `StickyTable::epoch`.
    used: u64,
    prev: u32,
    next: u32,
    /// Index into `Shard::servers`; `NIL` while the slot is free.
    server: u32,
    /// When the shared store last heard of this session (learned, read or
    /// refreshed): milliseconds since the epoch, wrapping every 49 days, which
    /// only makes one refresh early or late. Fills what was padding.
    stored: u32,
}

/// Counters for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StickyStats {
    /// Sessions held now (some may have expired but not yet been swept).
    pub entries: usize,
    /// Lookups that found a live session.
    pub hits: u64,
    /// Lookups that found none (including expired ones).
    pub misses: u64,
    /// Sessions dropped to make room for new ones.
    pub evictions: u64,
    /// Sessions dropped for being unused longer than `timeout`.
    pub expiries: u64,
    /// Sessions learned new or rebound to another server.
    pub learned: u64,
}

impl StickyTable {
    /// An empty table holding at most `capacity` sessions, each forgotten after
    /// `timeout` unused. A capacity of 0 remembers nothing.
    pub fn new(capacity: usize, timeout: Duration) -> StickyTable {
        let count = capacity.div_ceil(SHARD_SHARE).clamp(1, MAX_SHARDS);
        let shards = (0..count)
            .map(|i| {
                // Spread the remainder so that the shares add up to exactly `capacity`;
                // slots are numbered in u32, so a share stays below NIL.
                let share = (capacity / count + usize::from(i < capacity % count)).min(NIL as usize - 1);
                Padded(Mutex::new(Shard::new(share)))
            })
            .collect();
        StickyTable { shards, hasher: RandomState::new(), epoch: Instant::now(), timeout_ms: millis(timeout), capacity }
    }

    /// The server `value` was learned for, if it has been used within `timeout`.
    /// Finding it counts as a use; finding it expired removes it.
    pub fn lookup(&self, value: &str, now: Instant) -> Option<Arc<str>> {
        self.find(value, now, None).map(|(server, _)| server)
    }

    /// As [`StickyTable::lookup`], and whether the shared store should hear
    /// of this use: true when it last did more than `refresh_every_ms`
    /// milliseconds ago (the session then counts as stored now). Costs one
    /// comparison more than a lookup (milliseconds, not a `Duration`, to keep
    /// the conversion off the request path).
    pub fn lookup_refreshing(&self, value: &str, now: Instant, refresh_every_ms: u64) -> Option<(Arc<str>, bool)> {
        self.find(value, now, Some(refresh_every_ms))
    }

    fn find(&self, value: &str, now: Instant, refresh_every: Option<u64>) -> Option<(Arc<str>, bool)> {
        let now = self.since_epoch(now);
        let (key, mut shard) = self.shard(value);
        let Some(&i) = shard.index.get(&key) else {
            shard.misses += 1;
            return None;
        };
        if shard.is_expired(i, now, self.timeout_ms) {
            shard.remove(i);
            shard.expiries += 1;
            shard.misses += 1;
            return None;
        }
        shard.touch(i, now);
        shard.hits += 1;
        let node = &mut shard.nodes[i as usize];
        let refresh = refresh_every.is_some_and(|every| u64::from((now as u32).wrapping_sub(node.stored)) > every);
        if refresh {
            node.stored = now as u32;
        }
        let server = node.server;
        Some((shard.servers.get(server as usize).cloned()?, refresh))
    }

    /// Remembers that session `value` belongs to `server` (its address as written),
    /// binding it anew if it belonged to another. When the value's shard is full,
    /// its least recently used session is forgotten.
    pub fn learn(&self, value: &str, server: &str, now: Instant) {
        let now = self.since_epoch(now);
        let (key, mut shard) = self.shard(value);
        if shard.share == 0 {
            return;
        }
        // Sweeping here keeps expired sessions from taking room that new ones need.
        shard.sweep(now, self.timeout_ms);
        let server = shard.intern(server);
        if let Some(&i) = shard.index.get(&key) {
            let node = &mut shard.nodes[i as usize];
            node.stored = now as u32;
            if node.server != server {
                node.server = server;
                shard.learned += 1;
            }
            shard.touch(i, now);
            return;
        }
        if shard.index.len() >= shard.share {
            let oldest = shard.tail;
            shard.remove(oldest);
            shard.evictions += 1;
        }
        let i = shard.alloc(Node { key, used: now, prev: NIL, next: NIL, server, stored: now as u32 });
        shard.index.insert(key, i);
        shard.push_front(i);
        shard.learned += 1;
    }

    /// Forgets session `value` (its cookie was deleted); returns whether it was known.
    pub fn forget(&self, value: &str) -> bool {
        let (key, mut shard) = self.shard(value);
        let Some(&i) = shard.index.get(&key) else { return false };
        shard.remove(i);
        true
    }

    /// Forgets every session of `server` (gone from the configuration); returns how many.
    pub fn forget_server(&self, server: &str) -> usize {
        let mut forgotten = 0;
        for padded in &self.shards {
            let mut shard = lock(padded);
            let Some(id) = shard.servers.iter().position(|s| **s == *server) else { continue };
            for i in 0..shard.nodes.len() {
                if shard.nodes[i].server as usize == id {
                    shard.remove(i as u32);
                    forgotten += 1;
                }
            }
        }
        forgotten
    }

    /// Removes sessions unused for longer than `timeout` (a periodic sweep, so that
    /// `len` and `stats` do not count them); returns how many. Like the sweep on
    /// `learn`, it walks each shard from its least recently used end and stops at
    /// the first live session.
    pub fn expire(&self, now: Instant) -> usize {
        let now = self.since_epoch(now);
        self.shards.iter().map(|padded| lock(padded).sweep(now, self.timeout_ms)).sum()
    }

    /// Sessions held now.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|padded| lock(padded).index.len()).sum()
    }

    /// Whether no session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Most sessions held at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Counters summed over the shards.
    pub fn stats(&self) -> StickyStats {
        let mut stats = StickyStats::default();
        for padded in &self.shards {
            let shard = lock(padded);
            stats.entries += shard.index.len();
            stats.hits += shard.hits;
            stats.misses += shard.misses;
            stats.evictions += shard.evictions;
            stats.expiries += shard.expiries;
            stats.learned += shard.learned;
        }
        stats
    }

    /// The value's key and its shard, locked.
    fn shard(&self, value: &str) -> (u64, MutexGuard<'_, Shard>) {
        let key = self.hasher.hash_one(value);
        // Multiply-shift maps the high half of the key onto 0..shards without a division.
        let i = ((key >> 32) * self.shards.len() as u64) >> 32;
        (key, lock(&self.shards[i as usize]))
    }

    fn since_epoch(&self, now: Instant) -> u64 {
        millis(now.saturating_duration_since(self.epoch))
    }
}

impl std::fmt::Debug for StickyTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StickyTable")
            .field("capacity", &self.capacity)
            .field("timeout_ms", &self.timeout_ms)
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

/// A shard's lock. A thread that panicked holding it left the shard consistent
/// (nothing under the lock panics on input), so its poisoning is ignored.
fn lock(padded: &Padded) -> MutexGuard<'_, Shard> {
    padded.0.lock().unwrap_or_else(PoisonError::into_inner)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Shard {
    fn new(share: usize) -> Shard {
        Shard {
            index: HashMap::default(),
            nodes: Vec::new(),
            head: NIL,
            tail: NIL,
            free: NIL,
            share,
            servers: Vec::new(),
            hits: 0,
            misses: 0,
            evictions: 0,
            expiries: 0,
            learned: 0,
        }
    }

    /// The id of `server` in this shard. The list only grows with addresses ever
    /// learned, which the configuration bounds.
    fn intern(&mut self, server: &str) -> u32 {
        if let Some(id) = self.servers.iter().position(|s| **s == *server) {
            return id as u32;
        }
        self.servers.push(Arc::from(server));
        (self.servers.len() - 1) as u32
    }

    /// A slot holding `node`: a freed one, else a new one. Growth stops at the
    /// share, so a full shard's `Vec` has no spare capacity.
    fn alloc(&mut self, node: Node) -> u32 {
        if self.free != NIL {
            let i = self.free;
            self.free = self.nodes[i as usize].next;
            self.nodes[i as usize] = node;
            return i;
        }
        let len = self.nodes.len();
        if len == self.nodes.capacity() {
            self.nodes.reserve_exact(len.max(8).min(self.share.saturating_sub(len)).max(1));
        }
        self.nodes.push(node);
        len as u32
    }

    fn is_expired(&self, i: u32, now: u64, timeout_ms: u64) -> bool {
        now.saturating_sub(self.nodes[i as usize].used) > timeout_ms
    }

    /// Removes expired sessions from the least recently used end; returns how many.
    fn sweep(&mut self, now: u64, timeout_ms: u64) -> usize {
        let mut swept = 0;
        while self.tail != NIL && self.is_expired(self.tail, now, timeout_ms) {
            self.remove(self.tail);
            swept += 1;
        }
        self.expiries += swept as u64;
        swept
    }

    /// Marks node `i` used at `now` and moves it to the front.
    fn touch(&mut self, i: u32, now: u64) {
        self.nodes[i as usize].used = now;
        if self.head != i {
            self.unlink(i);
            self.push_front(i);
        }
    }

    fn remove(&mut self, i: u32) {
        self.unlink(i);
        let node = &mut self.nodes[i as usize];
        let key = node.key;
        node.server = NIL;
        node.next = self.free;
        self.free = i;
        self.index.remove(&key);
    }

    fn unlink(&mut self, i: u32) {
        let Node { prev, next, .. } = self.nodes[i as usize];
        match prev {
            NIL => self.head = next,
            p => self.nodes[p as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.nodes[n as usize].prev = prev,
        }
    }

    fn push_front(&mut self, i: u32) {
        let old = self.head;
        let node = &mut self.nodes[i as usize];
        node.prev = NIL;
        node.next = old;
        match old {
            NIL => self.tail = i,
            o => self.nodes[o as usize].prev = i,
        }
        self.head = i;
    }
}

/// The shard map's hasher. Keys are already SipHash output, but their high bits
/// chose the shard, so all keys in one shard share those bits; the map takes its
/// bucket and tag bits from both ends of the hash, so the key is remixed
/// (splitmix64's finalizer, a bijection) to spread them again.
#[derive(Default, Clone, Copy)]
struct Remix(u64);

impl Hasher for Remix {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u64(&mut self, n: u64) {
        let mut z = n ^ self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        self.0 = z ^ (z >> 31);
    }

    // Only u64 keys are hashed; this keeps the trait whole.
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }
}

/// What an upstream response says about the session cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned<'a> {
    /// The cookie is set to this value: learn it for the server that answered.
    Set(&'a str),
    /// The cookie is deleted (empty value or `Max-Age` <= 0): forget the session
    /// the request carried.
    Deleted,
}

/// The session a request carries: the value of cookie `name` in its Cookie
/// header(s), else a `;name=value` parameter in its `path` (Tomcat's URL
/// rewriting, `/app/page;jsessionid=ABC`; `path` excludes the query). Names are
/// matched case-insensitively, surrounding double quotes are removed, and empty
/// values are skipped. Of several cookies with that name the first is taken, as
/// Tomcat tries the first one first.
pub fn request_session<'a>(headers: &'a HeaderMap, path: &'a str, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        // Cookies are parsed as bytes: another cookie's non-ASCII value must not
        // hide the session cookie, as `HeaderValue::to_str` would for the whole header.
        .flat_map(|header| header.as_bytes().split(|&b| b == b';'))
        .filter_map(|pair| cookie_value(pair, name))
        .find(|value| !value.is_empty())
        .or_else(|| path_parameter(path, name))
}

/// What the response's Set-Cookie headers do to cookie `name`, if anything: the
/// last one naming it wins. Attributes other than `Max-Age` are ignored
/// (`Expires` is not parsed: servers that delete a cookie send `Max-Age=0` too).
pub fn response_session<'a>(headers: &'a HeaderMap, name: &str) -> Option<Learned<'a>> {
    headers.get_all(SET_COOKIE).iter().rev().find_map(|header| set_cookie(header.as_bytes(), name))
}

fn set_cookie<'a>(line: &'a [u8], name: &str) -> Option<Learned<'a>> {
    let mut parts = line.split(|&b| b == b';');
    let value = cookie_value(parts.next()?, name)?;
    let expired = parts.any(|attribute| {
        let Some((key, value)) = split_pair(attribute) else { return false };
        key.eq_ignore_ascii_case(b"max-age")
            && std::str::from_utf8(value).ok().and_then(|v| v.parse::<i64>().ok()).is_some_and(|age| age <= 0)
    });
    Some(if value.is_empty() || expired { Learned::Deleted } else { Learned::Set(value) })
}

/// The value of `pair` (`name=value`) if its name is `name`, trimmed and unquoted.
fn cookie_value<'a>(pair: &'a [u8], name: &str) -> Option<&'a str> {
    let (key, value) = split_pair(pair)?;
    if !key.eq_ignore_ascii_case(name.as_bytes()) {
        return None;
    }
    let value = value.strip_prefix(b"\"").and_then(|v| v.strip_suffix(b"\"")).unwrap_or(value);
    std::str::from_utf8(value).ok()
}

/// `key=value` with whitespace around both removed.
fn split_pair(pair: &[u8]) -> Option<(&[u8], &[u8])> {
    let eq = pair.iter().position(|&b| b == b'=')?;
    Some((pair[..eq].trim_ascii(), pair[eq + 1..].trim_ascii()))
}

/// The first non-empty `;name=value` parameter of any segment of `path`.
fn path_parameter<'a>(path: &'a str, name: &str) -> Option<&'a str> {
    path.split('/').flat_map(|segment| segment.split(';').skip(1)).find_map(|parameter| {
        let (key, value) = parameter.split_once('=')?;
        (key.eq_ignore_ascii_case(name) && !value.is_empty()).then_some(value)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const TEN_MINUTES: Duration = Duration::from_secs(600);

    fn value(i: usize) -> String {
        format!("{i:032X}.node1")
    }

    #[test]
    fn hit_and_miss() {
        let table = StickyTable::new(100, TEN_MINUTES);
        let now = Instant::now();
        table.learn("abc", "10.0.0.1:9443", now);
        assert_eq!(table.lookup("abc", now).as_deref(), Some("10.0.0.1:9443"));
        assert_eq!(table.lookup("abd", now), None);
        assert_eq!(table.lookup("ABC", now), None, "values are case-sensitive");
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn refresh_is_due_once_per_interval() {
        let table = StickyTable::new(100, TEN_MINUTES);
        let t0 = Instant::now();
        let every = 150_000;
        table.learn("abc", "a:1", t0);
        // Learning counts as telling the store.
        assert_eq!(table.lookup_refreshing("abc", t0 + Duration::from_secs(100), every), Some(("a:1".into(), false)));
        assert_eq!(table.lookup_refreshing("abc", t0 + Duration::from_secs(151), every), Some(("a:1".into(), true)));
        assert_eq!(table.lookup_refreshing("abc", t0 + Duration::from_secs(200), every), Some(("a:1".into(), false)));
        // Plain lookups do not consume the refresh.
        assert!(table.lookup("abc", t0 + Duration::from_secs(302)).is_some());
        assert_eq!(table.lookup_refreshing("abc", t0 + Duration::from_secs(303), every), Some(("a:1".into(), true)));
        // Learning again (a Set-Cookie, a rebind) restarts the interval.
        table.learn("abc", "b:2", t0 + Duration::from_secs(400));
        assert_eq!(table.lookup_refreshing("abc", t0 + Duration::from_secs(500), every), Some(("b:2".into(), false)));
        assert_eq!(table.lookup_refreshing("nope", t0, every), None);
    }

    #[test]
    fn rebind_moves_the_session() {
        let table = StickyTable::new(100, TEN_MINUTES);
        let now = Instant::now();
        table.learn("abc", "a:1", now);
        table.learn("abc", "a:1", now);
        table.learn("abc", "b:2", now);
        assert_eq!(table.lookup("abc", now).as_deref(), Some("b:2"));
        assert_eq!(table.len(), 1);
        // Learning the same binding again only refreshes it.
        assert_eq!(table.stats().learned, 2);
    }

    #[test]
    fn evicts_least_recently_used() {
        // One shard: eviction is exactly least recently used.
        let capacity = SHARD_SHARE;
        let table = StickyTable::new(capacity, TEN_MINUTES);
        assert_eq!(table.shards.len(), 1);
        let now = Instant::now();
        for i in 0..capacity {
            table.learn(&value(i), "a:1", now);
        }
        for i in 0..10 {
            assert!(table.lookup(&value(i), now).is_some());
        }
        for i in capacity..capacity + 10 {
            table.learn(&value(i), "a:1", now);
        }
        assert_eq!(table.len(), capacity);
        for i in 0..10 {
            assert!(table.lookup(&value(i), now).is_some(), "touched {i} was evicted");
        }
        for i in 10..20 {
            assert!(table.lookup(&value(i), now).is_none(), "untouched {i} was kept");
        }
        for i in 20..capacity + 10 {
            assert!(table.lookup(&value(i), now).is_some(), "{i} was evicted");
        }
        assert_eq!(table.stats().evictions, 10);
    }

    #[test]
    fn sharded_eviction_keeps_recent_sessions_and_the_bound() {
        let capacity = 41943; // size = "1m"
        let table = StickyTable::new(capacity, TEN_MINUTES);
        assert!(table.shards.len() > 1);
        let now = Instant::now();
        // Shards fill unevenly: `capacity` sessions leave some room unused.
        for i in 0..capacity {
            table.learn(&value(i), "a:1", now);
        }
        assert!(table.len() > capacity * 97 / 100);
        let total = capacity * 2;
        for i in capacity..total {
            table.learn(&value(i), "a:1", now);
        }
        assert_eq!(table.len(), capacity);
        assert_eq!(table.stats().evictions, capacity as u64);
        // Touch 1000 recent sessions, then learn 1000 more: each shard evicts its
        // oldest, none of which are these.
        let touched = total - 20_000..total - 19_000;
        for i in touched.clone() {
            assert!(table.lookup(&value(i), now).is_some());
        }
        for i in total..total + 1000 {
            table.learn(&value(i), "a:1", now);
        }
        assert_eq!(table.len(), capacity);
        assert_eq!(table.stats().evictions, capacity as u64 + 1000);
        for i in touched.chain(total..total + 1000) {
            assert!(table.lookup(&value(i), now).is_some(), "recent {i} was evicted");
        }
    }

    #[test]
    fn small_capacities_are_exact() {
        for capacity in [1, 2, 100, 897, 5000] {
            let table = StickyTable::new(capacity, TEN_MINUTES);
            let now = Instant::now();
            for i in 0..capacity * 3 {
                table.learn(&value(i), "a:1", now);
                assert!(table.len() <= capacity);
            }
            assert_eq!(table.len(), capacity, "capacity {capacity}");
        }
        let table = StickyTable::new(0, TEN_MINUTES);
        table.learn("abc", "a:1", Instant::now());
        assert!(table.is_empty());
    }

    #[test]
    fn expires_after_timeout() {
        let table = StickyTable::new(100, Duration::from_secs(60));
        let t0 = Instant::now();
        table.learn("abc", "a:1", t0);
        table.learn("def", "a:1", t0);
        // Each use refreshes the session.
        assert!(table.lookup("abc", t0 + Duration::from_secs(50)).is_some());
        assert!(table.lookup("abc", t0 + Duration::from_secs(100)).is_some());
        assert!(table.lookup("def", t0 + Duration::from_secs(60)).is_some(), "exactly timeout is still live");
        assert!(table.lookup("def", t0 + Duration::from_secs(121)).is_none());
        assert_eq!(table.len(), 1);
        assert!(table.lookup("abc", t0 + Duration::from_secs(161)).is_none());
        assert!(table.is_empty());
        let stats = table.stats();
        assert_eq!((stats.expiries, stats.hits, stats.misses), (2, 3, 2));
    }

    #[test]
    fn learn_and_expire_sweep_expired_sessions() {
        let table = StickyTable::new(100, Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..10 {
            table.learn(&value(i), "a:1", t0);
        }
        table.learn("late", "a:1", t0 + Duration::from_secs(30));
        assert_eq!(table.expire(t0 + Duration::from_secs(61)), 10);
        assert_eq!(table.len(), 1);
        table.learn("new", "a:1", t0 + Duration::from_secs(200));
        assert_eq!(table.len(), 1);
        assert_eq!(table.stats().expiries, 11);
    }

    #[test]
    fn stats_count_everything() {
        let table = StickyTable::new(2, TEN_MINUTES);
        let now = Instant::now();
        table.learn("a", "s:1", now);
        table.learn("b", "s:1", now);
        table.learn("b", "s:2", now);
        table.learn("c", "s:1", now); // evicts "a"
        assert!(table.lookup("b", now).is_some());
        assert!(table.lookup("a", now).is_none());
        assert_eq!(
            table.stats(),
            StickyStats { entries: 2, hits: 1, misses: 1, evictions: 1, expiries: 0, learned: 4 }
        );
    }

    #[test]
    fn forget_and_forget_server() {
        let table = StickyTable::new(5000, TEN_MINUTES);
        let now = Instant::now();
        for i in 0..3000 {
            table.learn(&value(i), if i % 3 == 0 { "gone:1" } else { "kept:1" }, now);
        }
        assert_eq!(table.forget_server("gone:1"), 1000);
        assert_eq!(table.forget_server("gone:1"), 0);
        assert_eq!(table.len(), 2000);
        assert!(table.lookup(&value(3), now).is_none());
        assert!(table.forget(&value(1)));
        assert!(!table.forget(&value(1)));
        assert!(table.lookup(&value(1), now).is_none());
        // Freed slots are reused without exceeding the bound.
        for i in 3000..8000 {
            table.learn(&value(i), "kept:1", now);
        }
        assert_eq!(table.len(), 5000);
        assert_eq!(table.lookup(&value(7999), now).as_deref(), Some("kept:1"));
    }

    #[test]
    fn poisoned_shard_keeps_working() {
        let table = Arc::new(StickyTable::new(10, TEN_MINUTES));
        let poisoner = Arc::clone(&table);
        let _ = std::thread::spawn(move || {
            let _guard = lock(&poisoner.shards[0]);
            panic!("poison the shard");
        })
        .join();
        let now = Instant::now();
        table.learn("abc", "a:1", now);
        assert_eq!(table.lookup("abc", now).as_deref(), Some("a:1"));
    }

    #[test]
    fn concurrent_use_keeps_the_bound() {
        let capacity = 2000;
        let table = Arc::new(StickyTable::new(capacity, TEN_MINUTES));
        let start = Instant::now();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let table = Arc::clone(&table);
                std::thread::spawn(move || {
                    for n in 0..25_000 {
                        let now = start + Duration::from_millis(n as u64);
                        // Values shared between threads, so they meet on the same entries.
                        let v = value((n * 7 + t * 13) % 5000);
                        if table.lookup(&v, now).is_none() {
                            table.learn(&v, if t % 2 == 0 { "a:1" } else { "b:2" }, now);
                        }
                        if n % 100 == 0 {
                            assert!(table.len() <= capacity);
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let stats = table.stats();
        assert!(stats.entries <= capacity);
        assert_eq!(stats.entries, table.len());
        assert_eq!(stats.hits + stats.misses, 100_000);
        // The LRU lists and the maps agree.
        for padded in &table.shards {
            let shard = lock(padded);
            let mut walked = 0;
            let mut i = shard.head;
            while i != NIL {
                assert!(shard.index.contains_key(&shard.nodes[i as usize].key));
                walked += 1;
                i = shard.nodes[i as usize].next;
            }
            assert_eq!(walked, shard.index.len());
            assert!(shard.index.len() <= shard.share);
        }
    }

    #[test]
    fn memory_per_entry() {
        let capacity = 41943; // size = "1m"
        let table = StickyTable::new(capacity, TEN_MINUTES);
        let now = Instant::now();
        for i in 0..capacity * 2 {
            table.learn(&value(i), "10.0.0.1:9443", now);
        }
        // The map's usable capacity is 7/8 of its buckets; each bucket holds a
        // (u64, u32) pair (16 bytes) and one control byte.
        let bytes: usize = table
            .shards
            .iter()
            .map(|padded| {
                let shard = lock(padded);
                let buckets = (shard.index.capacity() * 8).div_ceil(7).next_power_of_two();
                shard.nodes.capacity() * size_of::<Node>() + buckets * 17 + size_of::<Padded>()
            })
            .sum();
        let per_entry = bytes / capacity;
        assert_eq!(size_of::<Node>(), 32);
        // 32 for the node, 17 * 16/7 = 39 for the map.
        assert!(per_entry <= 72, "{per_entry} bytes per entry");
    }

    fn headers(name: http::HeaderName, values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(name.clone(), HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn request_session_from_cookies() {
        let h = headers(COOKIE, &["_ga=GA1.2.3; JSESSIONID=abc.node1; XSRF=1"]);
        assert_eq!(request_session(&h, "/", "JSESSIONID"), Some("abc.node1"));
        assert_eq!(request_session(&h, "/", "jsessionid"), Some("abc.node1"));
        let h = headers(COOKIE, &["XJSESSIONID=evil; JSESSIONIDX=evil2"]);
        assert_eq!(request_session(&h, "/", "JSESSIONID"), None);
        let h = headers(COOKIE, &["a=1", "  JSESSIONID = \"quoted\" ;b=2"]);
        assert_eq!(request_session(&h, "/", "JSESSIONID"), Some("quoted"));
        let h = headers(COOKIE, &["JSESSIONID=; JSESSIONID=second; JSESSIONID=third"]);
        assert_eq!(request_session(&h, "/", "JSESSIONID"), Some("second"));
        let h = headers(COOKIE, &["JSESSIONID", "=x", ";;", ""]);
        assert_eq!(request_session(&h, "/", "JSESSIONID"), None);
        // Another cookie's raw UTF-8 does not hide the session.
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_bytes("name=J\u{fc}rgen; JSESSIONID=abc".as_bytes()).unwrap());
        assert_eq!(request_session(&h, "/", "JSESSIONID"), Some("abc"));
        // A cookie wins over a path parameter.
        let h = headers(COOKIE, &["JSESSIONID=cookie"]);
        assert_eq!(request_session(&h, "/app;jsessionid=path", "JSESSIONID"), Some("cookie"));
    }

    #[test]
    fn request_session_from_path_parameter() {
        let none = HeaderMap::new();
        let name = "JSESSIONID";
        assert_eq!(request_session(&none, "/app/page;jsessionid=ABC123", name), Some("ABC123"));
        assert_eq!(request_session(&none, "/app;JSESSIONID=ABC123/page", name), Some("ABC123"));
        assert_eq!(request_session(&none, "/app/page;v=1;jsessionid=ABC.n1;x=y", name), Some("ABC.n1"));
        assert_eq!(request_session(&none, "/app/page;xjsessionid=ABC", name), None);
        assert_eq!(request_session(&none, "/app/page;jsessionid=", name), None);
        assert_eq!(request_session(&none, "/app/jsessionid=ABC", name), None);
        assert_eq!(request_session(&none, "/app/page", name), None);
        assert_eq!(request_session(&none, "", name), None);
    }

    #[test]
    fn response_session_from_set_cookie() {
        let name = "JSESSIONID";
        let h = headers(SET_COOKIE, &["JSESSIONID=abc.node1; Path=/app; Secure; HttpOnly"]);
        assert_eq!(response_session(&h, name), Some(Learned::Set("abc.node1")));
        let h = headers(SET_COOKIE, &["other=1; Path=/", "jsessionid=\"q\"", "XJSESSIONID=no"]);
        assert_eq!(response_session(&h, name), Some(Learned::Set("q")));
        let h = headers(SET_COOKIE, &["JSESSIONID=first", "JSESSIONID=last; Path=/"]);
        assert_eq!(response_session(&h, name), Some(Learned::Set("last")));
        let h = headers(SET_COOKIE, &["JSESSIONID=abc; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:10 GMT"]);
        assert_eq!(response_session(&h, name), Some(Learned::Deleted));
        let h = headers(SET_COOKIE, &["JSESSIONID=; Path=/"]);
        assert_eq!(response_session(&h, name), Some(Learned::Deleted));
        let h = headers(SET_COOKIE, &["JSESSIONID=abc; max-age = -1"]);
        assert_eq!(response_session(&h, name), Some(Learned::Deleted));
        let h = headers(SET_COOKIE, &["JSESSIONID=abc; Max-Age=3600; Max-Age=junk"]);
        assert_eq!(response_session(&h, name), Some(Learned::Set("abc")));
        let h = headers(SET_COOKIE, &["JSESSIONID=old; Max-Age=0", "JSESSIONID=new"]);
        assert_eq!(response_session(&h, name), Some(Learned::Set("new")));
        let h = headers(SET_COOKIE, &["other=1", "Path=/; JSESSIONID=abc"]);
        assert_eq!(response_session(&h, name), None);
        assert_eq!(response_session(&HeaderMap::new(), name), None);
    }
}
