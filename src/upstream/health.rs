//! Passive health, as nginx's `max_fails`/`fail_timeout`: a server that fails `max_fails` times within `fail_timeout` is skipped for `fail_timeout`.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::config::runtime::Upstream;

/// Failure counts and down-until times, one slot per server.
///
/// Lock-free: every request reads it, so each slot is a pair of atomics and
/// times are nanoseconds since this `Health` was built. Races between
/// concurrent updates only shift a count by one, which passive health (an
/// estimate anyway) tolerates; nginx's per-worker counters are no more exact.
#[derive(Debug)]
pub struct Health {
    base: Instant,
    slots: Box<[Slot]>,
}

#[derive(Debug)]
struct Slot {
    /// Failures in the current window (nginx `peer->fails`).
    fails: AtomicU32,
    /// nginx `peer->checked`: when the window began to count from, i.e. the last
    /// failure or the last probe of a down server. Stored as nanos since `base`
    /// plus one, so 0 means "never".
    checked: AtomicU64,
    /// 0 disables marking down (nginx `max_fails=0`, and the one-server pool).
    max_fails: u32,
    fail_timeout: u64,
    down: bool,
}

impl Health {
    /// One slot per server of `upstream`.
    pub fn new(upstream: &Upstream) -> Health {
        // nginx sets `peers->single` only for exactly one server and no backups,
        // and then never counts its failures: refusing the only server would just
        // turn every request into a 502 for fail_timeout.
        let single = upstream.peers.len() == 1;
        let slots = upstream
            .peers
            .iter()
            .map(|peer| Slot {
                fails: AtomicU32::new(0),
                checked: AtomicU64::new(0),
                max_fails: if single { 0 } else { peer.max_fails },
                fail_timeout: nanos(peer.fail_timeout),
                down: peer.down,
            })
            .collect();
        Health { base: Instant::now(), slots }
    }

    /// Whether server `peer` may take traffic at `now` (not `down = true`, not failed).
    pub fn is_usable(&self, peer: usize, now: Instant) -> bool {
        let Some(slot) = self.slots.get(peer) else {
            return false;
        };
        if slot.down {
            return false;
        }
        if slot.max_fails == 0 || slot.fails.load(Ordering::Relaxed) < slot.max_fails {
            return true;
        }
        // nginx: skipped while `now - checked <= fail_timeout`; afterwards it is
        // offered again with its failure count intact, so one more failure puts
        // it straight back down.
        self.since(slot.checked.load(Ordering::Relaxed), now) > slot.fail_timeout
    }

    /// Counts one failure (connect error, reset, timeout, bad response).
    pub fn record_failure(&self, peer: usize, now: Instant) {
        let Some(slot) = self.slots.get(peer) else {
            return;
        };
        if slot.max_fails == 0 {
            return;
        }
        let previous = slot.checked.swap(self.stamp(now), Ordering::Relaxed);
        let fails = slot.fails.load(Ordering::Relaxed);
        if fails < slot.max_fails && self.since(previous, now) > slot.fail_timeout {
            // `max_fails` counts failures within `fail_timeout` (nginx's documented
            // meaning): an old failure does not add up with a new one.
            slot.fails.store(1, Ordering::Relaxed);
        } else {
            // Saturating: wrapping to 0 would bring a dead server back.
            let _ = slot.fails.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |f| Some(f.saturating_add(1)));
        }
    }

    /// A good answer: clears the failure count.
    pub fn record_success(&self, peer: usize) {
        let Some(slot) = self.slots.get(peer) else {
            return;
        };
        // Read first: a store on every success would bounce the cache line
        // between cores for the common case of a healthy server.
        if slot.fails.load(Ordering::Relaxed) != 0 {
            slot.fails.store(0, Ordering::Relaxed);
        }
    }

    /// Call after the balancer chose `peer` at `now`. When `peer` is a down server
    /// whose `fail_timeout` has passed, this request becomes its probe and the
    /// server is hidden from others for another `fail_timeout` unless the probe
    /// succeeds, as nginx does by moving `checked` when it picks such a peer: a
    /// black-holed server then costs one connect timeout per `fail_timeout`, not
    /// one per request. Optional: without it every request may probe.
    pub fn record_pick(&self, peer: usize, now: Instant) {
        let Some(slot) = self.slots.get(peer) else {
            return;
        };
        if slot.max_fails == 0 || slot.fails.load(Ordering::Relaxed) < slot.max_fails {
            return;
        }
        let checked = slot.checked.load(Ordering::Relaxed);
        if self.since(checked, now) > slot.fail_timeout {
            // Losing the race means another request already became the probe.
            let _ = slot.checked.compare_exchange(checked, self.stamp(now), Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// Failures currently counted against `peer` (for status pages and logs).
    pub fn failures(&self, peer: usize) -> u32 {
        self.slots.get(peer).map_or(0, |slot| slot.fails.load(Ordering::Relaxed))
    }

    /// `now` as a stored time: nanos since `base`, plus one so 0 stays "never".
    fn stamp(&self, now: Instant) -> u64 {
        nanos(now.saturating_duration_since(self.base)).saturating_add(1)
    }

    /// Nanos from stored time `stamp` to `now`; "never" is infinitely long ago.
    fn since(&self, stamp: u64, now: Instant) -> u64 {
        if stamp == 0 {
            return u64::MAX;
        }
        nanos(now.saturating_duration_since(self.base)).saturating_sub(stamp - 1)
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::config::runtime::{Balance, Peer};

    /// `(max_fails, fail_timeout secs, down)` per server.
    fn upstream(peers: &[(u32, u64, bool)]) -> Upstream {
        Upstream {
            name: "test".into(),
            peers: peers
                .iter()
                .enumerate()
                .map(|(i, &(max_fails, secs, down))| Peer {
                    address: format!("127.0.0.1:{}", i + 1),
                    host: "127.0.0.1".into(),
                    socket_addr: format!("127.0.0.1:{}", i + 1).parse().unwrap(),
                    weight: 1,
                    max_fails,
                    fail_timeout: Duration::from_secs(secs),
                    backup: false,
                    down,
                    drain: false,
                })
                .collect(),
            tls: None,
            balance: Balance::RoundRobin,
            keepalive: 0,
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            sticky: None,
            health_check: None,
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn fresh_servers_are_usable() {
        let h = Health::new(&upstream(&[(1, 10, false), (1, 10, false)]));
        let t = Instant::now();
        assert!(h.is_usable(0, t));
        assert!(h.is_usable(1, t));
    }

    #[test]
    fn unknown_index_is_unusable_and_ignored() {
        let h = Health::new(&upstream(&[(1, 10, false), (1, 10, false)]));
        let t = Instant::now();
        assert!(!h.is_usable(2, t));
        h.record_failure(7, t);
        h.record_success(7);
        h.record_pick(7, t);
        assert_eq!(h.failures(7), 0);
    }

    #[test]
    fn down_is_never_usable() {
        let h = Health::new(&upstream(&[(1, 10, true), (0, 10, false)]));
        let t = Instant::now();
        assert!(!h.is_usable(0, t));
        h.record_success(0);
        assert!(!h.is_usable(0, t + secs(3600)));
    }

    #[test]
    fn max_fails_reached_marks_down_for_fail_timeout() {
        let h = Health::new(&upstream(&[(3, 10, false), (1, 10, false)]));
        let t = Instant::now();
        h.record_failure(0, t);
        h.record_failure(0, t + secs(1));
        assert!(h.is_usable(0, t + secs(1)), "2 of 3 failures: still usable");
        h.record_failure(0, t + secs(2));
        assert!(!h.is_usable(0, t + secs(2)));
        // nginx: unusable while now - checked <= fail_timeout, counted from the last failure.
        assert!(!h.is_usable(0, t + secs(12)));
        assert!(h.is_usable(0, t + secs(12) + Duration::from_millis(1)));
        assert!(h.is_usable(1, t), "other servers are unaffected");
    }

    #[test]
    fn failure_after_recovery_marks_down_again_at_once() {
        let h = Health::new(&upstream(&[(3, 10, false), (1, 10, false)]));
        let t = Instant::now();
        for _ in 0..3 {
            h.record_failure(0, t);
        }
        let later = t + secs(30);
        assert!(h.is_usable(0, later));
        h.record_failure(0, later);
        assert!(!h.is_usable(0, later), "one failure suffices after a down period");
        assert!(!h.is_usable(0, later + secs(10)));
        assert!(h.is_usable(0, later + secs(11)));
    }

    #[test]
    fn success_resets_failures() {
        let h = Health::new(&upstream(&[(2, 10, false), (1, 10, false)]));
        let t = Instant::now();
        h.record_failure(0, t);
        h.record_success(0);
        assert_eq!(h.failures(0), 0);
        h.record_failure(0, t);
        assert!(h.is_usable(0, t), "count restarted after the success");
        h.record_failure(0, t);
        assert!(!h.is_usable(0, t));
        // A successful probe after the timeout makes the server fully healthy.
        h.record_success(0);
        h.record_failure(0, t + secs(11));
        assert!(h.is_usable(0, t + secs(11)));
    }

    #[test]
    fn failures_outside_the_window_do_not_add_up() {
        let h = Health::new(&upstream(&[(2, 10, false), (1, 10, false)]));
        let t = Instant::now();
        h.record_failure(0, t);
        h.record_failure(0, t + secs(11));
        assert_eq!(h.failures(0), 1);
        assert!(h.is_usable(0, t + secs(11)));
        h.record_failure(0, t + secs(12));
        assert!(!h.is_usable(0, t + secs(12)), "two within 10s");
    }

    #[test]
    fn max_fails_zero_never_marks_down() {
        let h = Health::new(&upstream(&[(0, 10, false), (1, 10, false)]));
        let t = Instant::now();
        for _ in 0..100 {
            h.record_failure(0, t);
        }
        assert!(h.is_usable(0, t));
    }

    #[test]
    fn single_server_is_never_marked_down_but_honours_down() {
        let h = Health::new(&upstream(&[(1, 10, false)]));
        let t = Instant::now();
        for _ in 0..5 {
            h.record_failure(0, t);
        }
        assert!(h.is_usable(0, t));

        let h = Health::new(&upstream(&[(1, 10, true)]));
        assert!(!h.is_usable(0, t));
    }

    #[test]
    fn pick_after_timeout_makes_one_probe() {
        let h = Health::new(&upstream(&[(1, 10, false), (1, 10, false)]));
        let t = Instant::now();
        h.record_failure(0, t);
        let later = t + secs(11);
        assert!(h.is_usable(0, later));
        h.record_pick(0, later);
        assert!(!h.is_usable(0, later), "others wait for the probe");
        assert!(h.is_usable(0, later + secs(11)), "a lost probe does not hide it for ever");
        h.record_success(0);
        assert!(h.is_usable(0, later), "a good probe brings it back");
    }

    #[test]
    fn pick_of_a_healthy_server_changes_nothing() {
        let h = Health::new(&upstream(&[(2, 10, false), (1, 10, false)]));
        let t = Instant::now();
        h.record_failure(0, t);
        h.record_pick(0, t + secs(20));
        h.record_failure(0, t + secs(21));
        assert!(h.is_usable(0, t + secs(21)), "old failure is outside the window");
    }

    #[test]
    fn times_before_creation_do_not_panic() {
        let before = Instant::now();
        let h = Health::new(&upstream(&[(1, 10, false), (1, 10, false)]));
        h.record_failure(0, before);
        assert!(!h.is_usable(0, before));
        assert!(!h.is_usable(0, h.base + secs(10)));
        assert!(h.is_usable(0, h.base + secs(11)));
    }
}
