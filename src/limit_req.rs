//! Request rates per key (`[limit_req.NAME]`, nginx's `limit_req`): a leaky
//! bucket per client address, or per value of the zone's `key` template, that
//! drains at `rate`; a request fills it by one, one that would overfill it past
//! `burst` is refused, and one that finds it partly full waits until its turn
//! unless `nodelay`.
//!
//! The arithmetic is nginx's (`ngx_http_limit_req_lookup`), in milli-requests
//! and milliseconds, so that a zone translated from nginx lets through the
//! same requests. The table is bounded: a zone holds at most `capacity`
//! keys, split over shards each behind its own mutex (held for a few
//! arithmetic steps, never across an await). A full shard first drops the
//! keys whose bucket has drained; if none has, the new key is refused, as
//! nginx answers when its zone's memory is exhausted. A rendered key is never
//! stored: the table holds its 64-bit hash, so an entry costs the same
//! whatever a client sends.
//!
//! Several limits on one request (`admit_all`) are nginx's
//! `ngx_http_limit_req_handler`: all are checked first (`peek`), and only
//! when none refuses does each count the request (`commit`).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Most shards a zone is split into.
const MAX_SHARDS: usize = 16;

/// After a sweep of a full shard found nothing to drop, new keys are refused
/// without another sweep for this long: a flood of new keys must not turn
/// every request into a walk over the shard.
const SWEEP_PAUSE: Duration = Duration::from_millis(100);

/// What a request may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Pass,
    /// Go ahead after this long (its turn in the bucket).
    Delay(Duration),
    /// Refused: the bucket would overflow its burst, or the table is full.
    Reject,
}

/// What a zone counts a request under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ZoneKey {
    /// The client's address: a zone without `key` (nginx's
    /// `$binary_remote_addr`), made without rendering anything.
    Addr(IpAddr),
    /// A rendered `key`'s hash under the zone's own random key
    /// (`Zone::hash_key`), so that clients can neither aim collisions nor
    /// grow an entry by sending a longer value. Two values that collide by
    /// chance share a bucket: about one pair in 2^64.
    Hashed(u64),
}

/// One zone's table: key -> bucket.
#[derive(Debug)]
pub struct Zone {
    /// Milli-requests per second, nginx's `ctx->rate`.
    rate: u64,
    shards: Box<[Mutex<Shard>]>,
    /// Times are milliseconds since this instant.
    epoch: Instant,
    /// Requests passed at once, delayed and refused (`counts` names them).
    counts: [AtomicU64; 3],
    /// Hashes rendered keys: random per zone (and kept with it across reloads).
    hasher: RandomState,
}

#[derive(Debug, Default)]
struct Shard {
    buckets: HashMap<ZoneKey, Bucket>,
    share: usize,
    /// Until when (ms since the epoch) a full shard refuses new keys without
    /// sweeping again.
    paused_until: u64,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Milli-requests still in the bucket at `last`.
    excess: u64,
    /// Milliseconds since the zone's epoch.
    last: u64,
}

/// One of several limits a request must pass (nginx's several `limit_req`
/// lines on one level).
#[derive(Debug, Clone, Copy)]
pub struct Limit<'z> {
    pub zone: &'z Zone,
    /// `None`: the request's key is empty, and this zone does not count it
    /// (nginx: "requests with an empty key value are not accounted").
    pub key: Option<ZoneKey>,
    pub burst: u64,
    pub delay_free: u64,
}

/// What a request's limits decided together, naming the limit that decided
/// (as the caller tagged it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict<T> {
    Pass,
    /// Wait this long: the longest delay any limit asked, this one's.
    Delay(Duration, T),
    /// Refused by this limit; no zone counted the request in a bucket.
    Reject(T),
}

impl Zone {
    /// A zone draining `rate` milli-requests per second, holding at most
    /// `capacity` keys (at least one per shard).
    pub fn new(rate: u64, capacity: usize) -> Zone {
        let count = MAX_SHARDS.min(capacity.max(1));
        let shards = (0..count)
            .map(|i| {
                // The capacity divided exactly: shares differ by at most one.
                let share = capacity / count + usize::from(i < capacity % count);
                Mutex::new(Shard { buckets: HashMap::new(), share: share.max(1), paused_until: 0 })
            })
            .collect();
        Zone {
            rate: rate.max(1),
            shards,
            epoch: Instant::now(),
            counts: Default::default(),
            hasher: RandomState::new(),
        }
    }

    /// The key a request whose `key` template rendered `rendered` is counted
    /// under; `None` for an empty one, which this zone does not count.
    pub fn hash_key(&self, rendered: &str) -> Option<ZoneKey> {
        (!rendered.is_empty()).then(|| ZoneKey::Hashed(self.hasher.hash_one(rendered)))
    }

    /// Counts a request for `key` now, as `check` does, and counts its fate
    /// for `/metrics`.
    pub fn admit(&self, key: ZoneKey, burst: u64, delay_free: u64) -> Decision {
        let decision = self.check(key, Instant::now(), burst, delay_free);
        self.count(decision);
        decision
    }

    /// Counts a request for `key` at `now` against a `burst` (in requests) of
    /// which the first `delay_free` go without waiting (`nodelay`: all of
    /// them). One lock: `peek` and `commit` in one step.
    pub fn check(&self, key: ZoneKey, now: Instant, burst: u64, delay_free: u64) -> Decision {
        let now_ms = self.millis(now);
        let Some(mut shard) = self.shard(key) else { return Decision::Pass };
        let Some(excess) = shard.excess(key, self.rate, now_ms) else { return Decision::Reject };
        if excess > burst.saturating_mul(1000) {
            return Decision::Reject;
        }
        shard.buckets.insert(key, Bucket { excess, last: now_ms });
        drop(shard);
        self.decide(excess, delay_free)
    }

    /// Whether a request for `key` at `now` fits in its bucket's `burst`
    /// (and the table has room for a new key), storing nothing: the first
    /// half of `check`, for a request that other zones may yet refuse.
    pub fn peek(&self, key: ZoneKey, now: Instant, burst: u64) -> bool {
        let now_ms = self.millis(now);
        let Some(mut shard) = self.shard(key) else { return true };
        shard.excess(key, self.rate, now_ms).is_some_and(|excess| excess <= burst.saturating_mul(1000))
    }

    /// Counts a request that `peek` let through (every zone's did) in
    /// `key`'s bucket, and whether it waits, as nginx's
    /// `ngx_http_limit_req_account`: the bucket is read again, so that a
    /// request counted meanwhile is not overwritten, and the burst is not
    /// checked again. A new key that finds the table full since its `peek` is
    /// not counted: the table stays bounded.
    pub fn commit(&self, key: ZoneKey, now: Instant, delay_free: u64) -> Decision {
        let now_ms = self.millis(now);
        let Some(mut shard) = self.shard(key) else { return Decision::Pass };
        let Some(excess) = shard.excess(key, self.rate, now_ms) else { return Decision::Pass };
        shard.buckets.insert(key, Bucket { excess, last: now_ms });
        drop(shard);
        self.decide(excess, delay_free)
    }

    /// Counts a request's fate for `/metrics`.
    fn count(&self, decision: Decision) {
        let slot = match decision {
            Decision::Pass => 0,
            Decision::Delay(_) => 1,
            Decision::Reject => 2,
        };
        self.counts[slot].fetch_add(1, Ordering::Relaxed);
    }

    fn millis(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// `key`'s shard, locked.
    fn shard(&self, key: ZoneKey) -> Option<MutexGuard<'_, Shard>> {
        let shard = self.shards.get(shard_of(key, self.shards.len()))?;
        Some(shard.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// A request with `excess` milli-requests ahead of it, `delay_free`
    /// requests of the burst going at once.
    fn decide(&self, excess: u64, delay_free: u64) -> Decision {
        let free = delay_free.saturating_mul(1000);
        if excess <= free {
            Decision::Pass
        } else {
            // nginx: (excess - delay) * 1000 / rate ms: the requests past the
            // allowance wait their turn.
            Decision::Delay(Duration::from_millis((excess - free).saturating_mul(1000) / self.rate))
        }
    }

    /// The requests counted so far by fate: `passed`, `delayed`, `rejected`.
    pub fn counts(&self) -> [(&'static str, u64); 3] {
        let [passed, delayed, rejected] = &self.counts;
        [("passed", passed), ("delayed", delayed), ("rejected", rejected)]
            .map(|(name, count)| (name, count.load(Ordering::Relaxed)))
    }

    /// Keys held now (for tests and `/metrics`).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|shard| shard.lock().unwrap_or_else(PoisonError::into_inner).buckets.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A request at `now` under several limits, each paired with what the caller wants
/// back when that limit decides: nginx's `ngx_http_limit_req_handler`. Each is
/// checked in order and the first that refuses refuses the request, counted
/// as rejected by its zone alone; no zone has counted it in a bucket then, as
/// nginx accounts only once all passed. Otherwise every zone counts it, and it
/// waits for the longest delay among them. A limit whose key is `None` is
/// skipped.
///
/// Each zone's lock is held only for its own arithmetic, so two requests for
/// one key can both pass their `peek` before either commits: both then
/// count, taking the bucket a request past its burst at most per request
/// racing. nginx has the same window between its lookup and its account.
pub fn admit_all<'l, T>(limits: &'l [(Limit<'_>, T)], now: Instant) -> Verdict<&'l T> {
    for (limit, tag) in limits {
        if let Some(key) = limit.key
            && !limit.zone.peek(key, now, limit.burst)
        {
            limit.zone.count(Decision::Reject);
            return Verdict::Reject(tag);
        }
    }
    let mut longest: Option<(Duration, &T)> = None;
    for (limit, tag) in limits {
        let Some(key) = limit.key else { continue };
        let decision = limit.zone.commit(key, now, limit.delay_free);
        limit.zone.count(decision);
        if let Decision::Delay(wait) = decision
            && longest.is_none_or(|(most, _)| wait > most)
        {
            longest = Some((wait, tag));
        }
    }
    longest.map_or(Verdict::Pass, |(wait, tag)| Verdict::Delay(wait, tag))
}

impl Shard {
    /// The requests ahead of one for `key` at `now`, in milli-requests
    /// (nginx's `excess = lr->excess - rate * ms / 1000 + 1000`, at least 0;
    /// 0 for a new key); `None` when `key` is new and the shard has no room.
    fn excess(&mut self, key: ZoneKey, rate: u64, now: u64) -> Option<u64> {
        match self.buckets.get(&key) {
            Some(bucket) => {
                let drained = rate.saturating_mul(now.saturating_sub(bucket.last)) / 1000;
                Some(bucket.excess.saturating_add(1000).saturating_sub(drained))
            }
            None => (self.buckets.len() < self.share || self.make_room(rate, now)).then_some(0),
        }
    }

    /// Drops the keys whose bucket has drained by `now`; whether that left
    /// room. A sweep that frees nothing pauses sweeping for `SWEEP_PAUSE`.
    fn make_room(&mut self, rate: u64, now: u64) -> bool {
        if now < self.paused_until {
            return false;
        }
        self.buckets.retain(|_, bucket| bucket.excess > rate.saturating_mul(now.saturating_sub(bucket.last)) / 1000);
        if self.buckets.len() < self.share {
            return true;
        }
        self.paused_until = now.saturating_add(u64::try_from(SWEEP_PAUSE.as_millis()).unwrap_or(u64::MAX));
        false
    }
}

/// Which shard holds `key`. For an address, its low bits, which vary most
/// between clients; for a hash, the hash (the map hashes again with a random
/// key inside the shard).
fn shard_of(key: ZoneKey, shards: usize) -> usize {
    let low = match key {
        ZoneKey::Addr(IpAddr::V4(v4)) => u64::from(u32::from(v4)),
        ZoneKey::Addr(IpAddr::V6(v6)) => {
            // Clients of one /64 vary in the interface half; fold in the prefix too.
            let bits = u128::from(v6);
            (bits as u64) ^ ((bits >> 64) as u64)
        }
        ZoneKey::Hashed(hash) => hash,
    };
    (low.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize % shards.max(1)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ip(text: &str) -> ZoneKey {
        ZoneKey::Addr(text.parse().unwrap())
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_burst_passes_then_the_rate_holds() {
        // 10 r/s, burst 2, nodelay: 3 at once (1 + burst), then one per 100 ms.
        let zone = Zone::new(10_000, 100);
        let t = zone.epoch;
        let client = ip("127.0.1.5");
        let at = |offset: u64| zone.check(client, t + ms(offset), 2, 2);
        assert_eq!([at(0), at(0), at(0), at(0)], [Decision::Pass, Decision::Pass, Decision::Pass, Decision::Reject]);
        assert_eq!(at(50), Decision::Reject, "half a request drained: still full");
        assert_eq!(at(100), Decision::Pass, "one drained");
        assert_eq!(at(100), Decision::Reject);
        assert_eq!(at(1000), Decision::Pass, "drained completely");
        assert_eq!(zone.check(ip("127.0.1.6"), t, 2, 2), Decision::Pass, "another address has its own bucket");
    }

    #[test]
    fn without_nodelay_the_burst_waits_its_turn() {
        // 10 r/s, burst 3, no request free of delay: each waits 100 ms per request ahead of it.
        let zone = Zone::new(10_000, 100);
        let t = zone.epoch;
        let client = ip("::1");
        let at = |offset: u64| zone.check(client, t + ms(offset), 3, 0);
        assert_eq!(
            [at(0), at(0), at(0), at(0), at(0)],
            [
                Decision::Pass,
                Decision::Delay(ms(100)),
                Decision::Delay(ms(200)),
                Decision::Delay(ms(300)),
                Decision::Reject
            ]
        );
        // nginx's `delay=1`: the first extra request goes at once.
        let zone = Zone::new(10_000, 100);
        let at = |offset: u64| zone.check(client, zone.epoch + ms(offset), 3, 1);
        assert_eq!([at(0), at(0), at(0)], [Decision::Pass, Decision::Pass, Decision::Delay(ms(100))]);
    }

    #[test]
    fn per_minute_rates_drain_slowly() {
        // 30 r/m = 500 milli-requests per second: one request per 2 s.
        let zone = Zone::new(500, 10);
        let client = ip("10.0.0.1");
        let at = |offset: u64| zone.check(client, zone.epoch + ms(offset), 0, 0);
        assert_eq!(
            [at(0), at(1000), at(2000), at(2500)],
            [Decision::Pass, Decision::Reject, Decision::Pass, Decision::Reject]
        );
    }

    #[test]
    fn a_full_table_drops_drained_addresses_or_refuses_new_ones() {
        let zone = Zone::new(1000, 1);
        let t = zone.epoch;
        assert_eq!(zone.check(ip("10.0.0.1"), t, 5, 5), Decision::Pass);
        assert_eq!(zone.check(ip("10.0.0.1"), t, 5, 5), Decision::Pass);
        // 10.0.0.1 still has a request in its bucket: no room for another address.
        assert_eq!(zone.check(ip("10.0.0.2"), t + ms(10), 5, 5), Decision::Reject);
        // Paused: refused again without a sweep, even once 10.0.0.1 has drained.
        assert_eq!(zone.check(ip("10.0.0.2"), t + ms(1050), 5, 5), Decision::Pass, "after the pause and the drain");
        assert_eq!(zone.len(), 1);
        let zone = Zone::new(1000, 1);
        zone.check(ip("10.0.0.1"), zone.epoch, 5, 5);
        zone.check(ip("10.0.0.1"), zone.epoch, 5, 5);
        assert_eq!(zone.check(ip("10.0.0.2"), zone.epoch + ms(20), 5, 5), Decision::Reject);
        assert_eq!(zone.check(ip("10.0.0.2"), zone.epoch + ms(60), 5, 5), Decision::Reject, "within the pause");
    }

    #[test]
    fn capacity_is_divided_exactly() {
        let zone = Zone::new(1000, 20);
        let shares: usize = zone.shards.iter().map(|s| s.lock().unwrap().share).sum();
        assert_eq!((zone.shards.len(), shares), (16, 20));
        assert_eq!(Zone::new(1000, 3).shards.len(), 3);
    }

    #[test]
    fn a_keyed_zone_counts_each_value_apart_and_not_empty_ones() {
        let zone = Zone::new(1000, 100);
        let t = zone.epoch;
        assert_eq!(zone.hash_key(""), None, "an empty key is not counted");
        let key = zone.hash_key("key-1").unwrap();
        assert_eq!(zone.hash_key("key-1"), Some(key), "one value, one key");
        assert_ne!(zone.hash_key("key-2"), Some(key));
        assert!(matches!(key, ZoneKey::Hashed(_)));
        // Each zone hashes with its own random key: a value's hash in one
        // zone says nothing about it in another.
        assert_ne!(Zone::new(1000, 100).hash_key("key-1"), Some(key));
        assert_eq!([zone.check(key, t, 1, 1), zone.check(key, t, 1, 1)], [Decision::Pass; 2]);
        assert_eq!(zone.check(key, t, 1, 1), Decision::Reject);
        assert_eq!(zone.check(zone.hash_key("key-2").unwrap(), t, 1, 1), Decision::Pass, "another value");
        assert_eq!(zone.check(ip("10.0.0.1"), t, 1, 1), Decision::Pass, "an address beside the hashes");
        assert_eq!(zone.len(), 3);
    }

    #[test]
    fn peek_then_commit_is_check() {
        // The same requests to two zones, one checked in one step, the other
        // peeked and (when it fits) committed, decide the same.
        let whole = Zone::new(10_000, 100);
        let split = Zone::new(10_000, 100);
        let client = ip("10.0.0.7");
        for offset in [0, 0, 0, 0, 0, 50, 100, 130, 400, 400, 400] {
            let expected = whole.check(client, whole.epoch + ms(offset), 3, 1);
            let at = split.epoch + ms(offset);
            let got = if split.peek(client, at, 3) { split.commit(client, at, 1) } else { Decision::Reject };
            assert_eq!(got, expected, "at {offset} ms");
        }
    }

    #[test]
    fn a_request_refused_by_one_limit_fills_no_other_bucket() {
        // 1 r/s; `strict` has no burst, `loose` a burst of 2, both nodelay.
        let strict = Zone::new(1000, 100);
        let loose = Zone::new(1000, 100);
        let client = ip("10.0.0.9");
        let t = strict.epoch.max(loose.epoch);
        let limits = |loose_key| {
            [
                (Limit { zone: &loose, key: loose_key, burst: 2, delay_free: 2 }, "loose"),
                (Limit { zone: &strict, key: Some(client), burst: 0, delay_free: 0 }, "strict"),
            ]
        };
        assert_eq!(admit_all(&limits(Some(client)), t), Verdict::Pass);
        for _ in 0..5 {
            assert_eq!(admit_all(&limits(Some(client)), t), Verdict::Reject(&"strict"));
        }
        assert_eq!(strict.counts().map(|(_, n)| n), [1, 0, 5], "refused by strict: counted there");
        assert_eq!(loose.counts().map(|(_, n)| n), [1, 0, 0], "and not in loose");
        // The refusals used none of loose's burst: two more fit there.
        assert!(loose.peek(client, t, 2));
        assert_eq!([loose.check(client, t, 2, 2), loose.check(client, t, 2, 2)], [Decision::Pass; 2]);
        assert_eq!(loose.check(client, t, 2, 2), Decision::Reject);
        // A limit whose key is empty is skipped: strict alone decides and counts.
        assert_eq!(admit_all(&limits(None), t + ms(1000)), Verdict::Pass);
        assert_eq!(strict.counts().map(|(_, n)| n), [2, 0, 5]);
        assert_eq!(loose.counts().map(|(_, n)| n), [1, 0, 0]);
    }

    #[test]
    fn several_limits_wait_for_the_longest_delay() {
        // 1 r/s and 10 r/s, bursts of 5 without nodelay: the second request
        // waits 1 s in one and 100 ms in the other, so 1 s (not the last's).
        let fast = Zone::new(10_000, 10);
        let slow = Zone::new(1000, 10);
        let client = ip("::1");
        let t = fast.epoch.max(slow.epoch);
        let limits = [
            (Limit { zone: &slow, key: Some(client), burst: 5, delay_free: 0 }, "slow"),
            (Limit { zone: &fast, key: Some(client), burst: 5, delay_free: 0 }, "fast"),
        ];
        assert_eq!(admit_all(&limits, t), Verdict::Pass);
        assert_eq!(admit_all(&limits, t), Verdict::Delay(ms(1000), &"slow"));
        assert_eq!(fast.counts().map(|(_, n)| n), [1, 1, 0]);
        assert_eq!(slow.counts().map(|(_, n)| n), [1, 1, 0]);
    }
}
