//! Request rates per client address (`[limit_req.NAME]`, nginx's `limit_req`):
//! a leaky bucket per address that drains at `rate`; a request fills it by
//! one, one that would overfill it past `burst` is refused, and one that finds
//! it partly full waits until its turn unless `nodelay`.
//!
//! The arithmetic is nginx's (`ngx_http_limit_req_lookup`), in milli-requests
//! and milliseconds, so that a zone translated from nginx lets through the
//! same requests. The table is bounded: a zone holds at most `capacity`
//! addresses, split over shards each behind its own mutex (held for a few
//! arithmetic steps, never across an await). A full shard first drops the
//! addresses whose bucket has drained; if none has, the new address is
//! refused, as nginx answers when its zone's memory is exhausted.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Most shards a zone is split into.
const MAX_SHARDS: usize = 16;

/// After a sweep of a full shard found nothing to drop, new addresses are
/// refused without another sweep for this long: a flood of new addresses must
/// not turn every request into a walk over the shard.
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

/// One zone's table: address -> bucket.
#[derive(Debug)]
pub struct Zone {
    /// Milli-requests per second, nginx's `ctx->rate`.
    rate: u64,
    shards: Box<[Mutex<Shard>]>,
    /// Times are milliseconds since this instant.
    epoch: Instant,
    /// Requests passed at once, delayed and refused (`counts` names them).
    counts: [AtomicU64; 3],
}

#[derive(Debug, Default)]
struct Shard {
    buckets: HashMap<IpAddr, Bucket>,
    share: usize,
    /// Until when (ms since the epoch) a full shard refuses new addresses
    /// without sweeping again.
    paused_until: u64,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Milli-requests still in the bucket at `last`.
    excess: u64,
    /// Milliseconds since the zone's epoch.
    last: u64,
}

impl Zone {
    /// A zone draining `rate` milli-requests per second, holding at most
    /// `capacity` addresses (at least one per shard).
    pub fn new(rate: u64, capacity: usize) -> Zone {
        let count = MAX_SHARDS.min(capacity.max(1));
        let shards = (0..count)
            .map(|i| {
                // The capacity divided exactly: shares differ by at most one.
                let share = capacity / count + usize::from(i < capacity % count);
                Mutex::new(Shard { buckets: HashMap::new(), share: share.max(1), paused_until: 0 })
            })
            .collect();
        Zone { rate: rate.max(1), shards, epoch: Instant::now(), counts: Default::default() }
    }

    /// Counts a request from `client` now, as `check` does, and counts its
    /// fate for `/metrics`.
    pub fn admit(&self, client: IpAddr, burst: u64, delay_free: u64) -> Decision {
        let decision = self.check(client, Instant::now(), burst, delay_free);
        let slot = match decision {
            Decision::Pass => 0,
            Decision::Delay(_) => 1,
            Decision::Reject => 2,
        };
        self.counts[slot].fetch_add(1, Ordering::Relaxed);
        decision
    }

    /// Counts a request from `client` at `now` against a `burst` (in
    /// requests) of which the first `delay_free` go without waiting
    /// (`nodelay`: all of them).
    pub fn check(&self, client: IpAddr, now: Instant, burst: u64, delay_free: u64) -> Decision {
        let now_ms = u64::try_from(now.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX);
        let Some(shard) = self.shards.get(shard_of(client, self.shards.len())) else {
            return Decision::Pass;
        };
        let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
        // The requests ahead of this one, in milli-requests: nginx's
        // `excess = lr->excess - rate * ms / 1000 + 1000`, at least 0.
        let excess = match shard.buckets.get(&client) {
            Some(bucket) => {
                let drained = self.rate.saturating_mul(now_ms.saturating_sub(bucket.last)) / 1000;
                bucket.excess.saturating_add(1000).saturating_sub(drained)
            }
            None => {
                if shard.buckets.len() >= shard.share && !shard.make_room(self.rate, now_ms) {
                    return Decision::Reject;
                }
                0
            }
        };
        if excess > burst.saturating_mul(1000) {
            return Decision::Reject;
        }
        shard.buckets.insert(client, Bucket { excess, last: now_ms });
        drop(shard);
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

    /// Addresses held now (for tests and `/metrics`).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|shard| shard.lock().unwrap_or_else(PoisonError::into_inner).buckets.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Shard {
    /// Drops the addresses whose bucket has drained by `now`; whether that
    /// left room. A sweep that frees nothing pauses sweeping for `SWEEP_PAUSE`.
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

/// Which shard holds `client`: its low address bits, which vary most between
/// clients (the map hashes with a random key inside the shard).
fn shard_of(client: IpAddr, shards: usize) -> usize {
    let low = match client {
        IpAddr::V4(v4) => u64::from(u32::from(v4)),
        IpAddr::V6(v6) => {
            // Clients of one /64 vary in the interface half; fold in the prefix too.
            let bits = u128::from(v6);
            (bits as u64) ^ ((bits >> 64) as u64)
        }
    };
    (low.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize % shards.max(1)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
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
}
