//! Balancing algorithms: pick a server index for a client, knowing weights but not health (the caller's `usable` says that).

use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};

use crate::config::runtime::{Balance, Upstream};

/// nginx's ip_hash gives up hashing after this many retries (`if (++tries > 20)`)
/// and falls back to round robin.
const IP_HASH_MAX_TRIES: usize = 20;

/// Ring points per unit of weight (ketama's 160).
const POINTS_PER_WEIGHT: u64 = 160;

/// Bound on the ring size, so a huge weight in the file cannot allocate without
/// limit; weights are scaled down proportionally beyond it.
const MAX_RING_POINTS: u64 = 1 << 16;

/// The pool's balancing state (round-robin counters, hash rings).
#[derive(Debug)]
pub struct Balancer {
    /// Weight of every server, by index in `upstream.peers`.
    weights: Vec<u32>,
    /// Indices of non-backup servers, in file order.
    primaries: Vec<usize>,
    /// Indices of backup servers, in file order.
    backups: Vec<usize>,
    /// nginx's `total_weight`: the primaries' weights, `down` ones included, so
    /// marking a server down keeps every other client where it was.
    primary_weight: u64,
    method: Method,
    /// Smooth weighted round robin's `current_weight`, by server index. Shared
    /// by the round-robin method, ip_hash's fallback and the backup servers.
    current: Mutex<Vec<i64>>,
}

#[derive(Debug)]
enum Method {
    RoundRobin,
    IpHash,
    /// Sorted by point: (point, server index).
    Consistent(Vec<(u64, usize)>),
}

impl Balancer {
    /// Builds the balancer for `upstream`'s servers and `balance` method.
    pub fn new(upstream: &Upstream) -> Balancer {
        let peers = &upstream.peers;
        let weights: Vec<u32> = peers.iter().map(|p| p.weight).collect();
        let primaries: Vec<usize> = (0..peers.len()).filter(|&i| !peers[i].backup).collect();
        let backups: Vec<usize> = (0..peers.len()).filter(|&i| peers[i].backup).collect();
        let primary_weight = primaries.iter().map(|&i| u64::from(weights[i])).sum();
        let method = match upstream.balance {
            Balance::RoundRobin => Method::RoundRobin,
            Balance::IpHash { consistent: false } => Method::IpHash,
            Balance::IpHash { consistent: true } => Method::Consistent(build_ring(upstream, &primaries)),
        };
        Balancer { current: Mutex::new(vec![0; peers.len()]), weights, primaries, backups, primary_weight, method }
    }

    /// Picks a server for a request from `client`. `usable(i)` says whether server
    /// `i` may take it (not down, not failed, not already tried). Primary servers
    /// first; backup servers only when no primary is usable. `None` when none is.
    ///
    /// `usable` is never called while the balancer holds its lock.
    pub fn pick(&self, client: IpAddr, usable: &dyn Fn(usize) -> bool) -> Option<usize> {
        let primary = match &self.method {
            Method::RoundRobin => self.round_robin(&self.primaries, usable),
            Method::IpHash => self.ip_hash(client, usable),
            Method::Consistent(ring) => self.consistent(ring, client, usable),
        };
        // nginx moves to `peers->next` (the backups) only when no primary is left.
        primary.or_else(|| self.round_robin(&self.backups, usable))
    }

    /// nginx's smooth weighted round robin (`ngx_http_upstream_get_peer`) over
    /// `group`: each usable server's current weight grows by its weight, the
    /// largest wins (the first on ties) and loses the total.
    fn round_robin(&self, group: &[usize], usable: &dyn Fn(usize) -> bool) -> Option<usize> {
        // Ask `usable` before locking: it reads health and the request's tried
        // set, and the critical section should stay a few additions long.
        let mask = Mask::new(group, &|i| self.weights[i] > 0 && usable(i));
        if mask.none() {
            return None;
        }
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        let mut best: Option<usize> = None;
        let mut total: i64 = 0;
        for (j, &i) in group.iter().enumerate() {
            if !mask.get(j) {
                continue;
            }
            let weight = i64::from(self.weights[i]);
            current[i] += weight;
            total += weight;
            if best.is_none_or(|b| current[i] > current[b]) {
                best = Some(i);
            }
        }
        if let Some(b) = best {
            current[b] -= total;
        }
        best
    }

    /// nginx's ip_hash (`ngx_http_upstream_get_ip_hash_peer`), so that the same
    /// server list sends every client where nginx sent it.
    fn ip_hash(&self, client: IpAddr, usable: &dyn Fn(usize) -> bool) -> Option<usize> {
        // nginx uses round robin outright for a single server (`peers->single`).
        if self.primaries.len() < 2 || self.primary_weight == 0 {
            return self.round_robin(&self.primaries, usable);
        }
        let (key, len) = ip_hash_key(client);
        let mut hash: u64 = 89;
        // One first try plus 20 retries: nginx falls back once `++tries > 20`.
        for _ in 0..=IP_HASH_MAX_TRIES {
            // The hash keeps accumulating across tries (nginx saves `iphp->hash`),
            // so each retry lands on a fresh, still deterministic, server.
            hash = ip_hash_step(hash, &key[..len]);
            let mut w = hash % self.primary_weight;
            // Walk in file order subtracting weights (`while (w >= peer->weight)`);
            // a down server still takes its slot, as in nginx.
            for &i in &self.primaries {
                let weight = u64::from(self.weights[i]);
                if w < weight {
                    if usable(i) {
                        return Some(i);
                    }
                    break;
                }
                w -= weight;
            }
        }
        self.round_robin(&self.primaries, usable)
    }

    /// Consistent hash of the ip_hash key: the first ring point at or after the
    /// key's hash, walking clockwise past servers that are not usable.
    fn consistent(&self, ring: &[(u64, usize)], client: IpAddr, usable: &dyn Fn(usize) -> bool) -> Option<usize> {
        if ring.is_empty() {
            return None;
        }
        let (key, len) = ip_hash_key(client);
        let point = mix(fnv1a(FNV_OFFSET, &key[..len]));
        let start = ring.partition_point(|&(p, _)| p < point);
        let mut checked_any = false;
        let mut last = usize::MAX;
        for k in 0..ring.len() {
            let (_, i) = ring[(start + k) % ring.len()];
            // Neighbouring points often belong to one server; ask once.
            if i == last {
                continue;
            }
            last = i;
            if usable(i) {
                return Some(i);
            }
            // With every primary unusable the walk would visit the whole ring;
            // one pass over the servers settles that instead.
            if !checked_any {
                checked_any = true;
                if !self.primaries.iter().any(|&p| self.weights[p] > 0 && usable(p)) {
                    return None;
                }
            }
        }
        None
    }
}

/// The bytes of `ip` that nginx's ip_hash hashes and their count: the first
/// three octets of an IPv4 address (so a /24 stays together), all sixteen of an
/// IPv6 one. IPv4-mapped IPv6 counts as IPv4, so a dual-stack listener sends a
/// client where nginx's separate IPv4 listener did.
pub fn ip_hash_key(ip: IpAddr) -> ([u8; 16], usize) {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    let mut key = [0u8; 16];
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            key[..3].copy_from_slice(&[a, b, c]);
            (key, 3)
        }
        IpAddr::V6(v6) => (v6.octets(), 16),
    }
}

/// One round of nginx's ip_hash over `key`: `hash = (hash * 113 + byte) % 6271`.
pub fn ip_hash_step(mut hash: u64, key: &[u8]) -> u64 {
    for &b in key {
        hash = (hash * 113 + u64::from(b)) % 6271;
    }
    hash
}

/// The consistent-hash ring of the primaries: `POINTS_PER_WEIGHT` points per
/// unit of weight, each at the hash of the address as written, `#` and the
/// point number. Keyed by address, not index, so adding or removing one server
/// leaves every other server's points in place.
fn build_ring(upstream: &Upstream, primaries: &[usize]) -> Vec<(u64, usize)> {
    let total: u64 = primaries.iter().map(|&i| u64::from(upstream.peers[i].weight)).sum();
    let mut ring = Vec::new();
    for &i in primaries {
        let peer = &upstream.peers[i];
        let weight = u64::from(peer.weight);
        if weight == 0 {
            continue;
        }
        let points = if total.saturating_mul(POINTS_PER_WEIGHT) <= MAX_RING_POINTS {
            weight * POINTS_PER_WEIGHT
        } else {
            (weight * MAX_RING_POINTS / total).max(1)
        };
        let base = fnv1a(FNV_OFFSET, peer.address.as_bytes());
        for n in 0..points {
            // The point number as bytes rather than text: no allocation per point.
            let h = fnv1a(fnv1a(base, b"#"), &n.to_le_bytes());
            ring.push((mix(h), i));
        }
    }
    // Ties (vanishingly rare) are broken by index so the ring is deterministic.
    ring.sort_unstable();
    ring
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a (64-bit), continuing from `hash`.
fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// MurmurHash3's 64-bit finaliser: FNV-1a of short keys that differ in the last
/// byte differs mostly in low bits, and ring positions need all bits spread.
fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Which members of a group are usable, gathered before taking the lock.
/// Groups of up to 128 servers (all real ones) need no allocation.
enum Mask {
    Small(u128),
    Large(Vec<bool>),
}

impl Mask {
    fn new(group: &[usize], usable: &dyn Fn(usize) -> bool) -> Mask {
        if group.len() <= 128 {
            let mut bits = 0u128;
            for (j, &i) in group.iter().enumerate() {
                if usable(i) {
                    bits |= 1 << j;
                }
            }
            Mask::Small(bits)
        } else {
            Mask::Large(group.iter().map(|&i| usable(i)).collect())
        }
    }

    fn get(&self, j: usize) -> bool {
        match self {
            Mask::Small(bits) => j < 128 && bits & (1 << j) != 0,
            Mask::Large(v) => v.get(j).copied().unwrap_or(false),
        }
    }

    fn none(&self) -> bool {
        match self {
            Mask::Small(bits) => *bits == 0,
            Mask::Large(v) => !v.contains(&true),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::Duration;

    use super::*;
    use crate::config::runtime::Peer;

    /// Servers as `(address, weight, backup)`.
    fn upstream(balance: Balance, peers: &[(&str, u32, bool)]) -> Upstream {
        Upstream {
            name: "test".into(),
            peers: peers
                .iter()
                .map(|&(address, weight, backup)| Peer {
                    address: address.into(),
                    host: address.split(':').next().unwrap().into(),
                    socket_addr: address.parse().unwrap(),
                    weight,
                    max_fails: 1,
                    fail_timeout: Duration::from_secs(10),
                    backup,
                    down: false,
                    drain: false,
                })
                .collect(),
            tls: None,
            balance,
            keepalive: 0,
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            sticky: None,
            health_check: None,
        }
    }

    fn three(balance: Balance, weights: [u32; 3]) -> Upstream {
        upstream(
            balance,
            &[
                ("127.0.0.1:1", weights[0], false),
                ("127.0.0.1:2", weights[1], false),
                ("127.0.0.1:3", weights[2], false),
            ],
        )
    }

    const IP_HASH: Balance = Balance::IpHash { consistent: false };
    const CONSISTENT: Balance = Balance::IpHash { consistent: true };

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    fn client() -> IpAddr {
        v4(192, 0, 2, 1)
    }

    fn picks(b: &Balancer, n: usize, usable: &dyn Fn(usize) -> bool) -> Vec<Option<usize>> {
        (0..n).map(|_| b.pick(client(), usable)).collect()
    }

    #[test]
    fn round_robin_equal_weights_alternate() {
        let b = Balancer::new(&upstream(Balance::RoundRobin, &[("127.0.0.1:1", 1, false), ("127.0.0.1:2", 1, false)]));
        let got = picks(&b, 6, &|_| true);
        assert_eq!(got, [0, 1, 0, 1, 0, 1].map(Some));
    }

    #[test]
    fn round_robin_is_smooth() {
        let b = Balancer::new(&upstream(Balance::RoundRobin, &[("127.0.0.1:1", 2, false), ("127.0.0.1:2", 1, false)]));
        assert_eq!(picks(&b, 6, &|_| true), [0, 1, 0, 0, 1, 0].map(Some));

        // nginx's documented example: weights 5,1,1 give a a b a c a a.
        let b = Balancer::new(&three(Balance::RoundRobin, [5, 1, 1]));
        assert_eq!(picks(&b, 7, &|_| true), [0, 0, 1, 0, 2, 0, 0].map(Some));
    }

    #[test]
    fn round_robin_respects_weights_over_a_cycle() {
        let b = Balancer::new(&three(Balance::RoundRobin, [3, 2, 1]));
        let mut counts = [0; 3];
        for p in picks(&b, 600, &|_| true) {
            counts[p.unwrap()] += 1;
        }
        assert_eq!(counts, [300, 200, 100]);
    }

    #[test]
    fn round_robin_skips_unusable() {
        let b = Balancer::new(&three(Balance::RoundRobin, [1, 1, 1]));
        let got = picks(&b, 4, &|i| i != 1);
        assert_eq!(got, [0, 2, 0, 2].map(Some));
        assert_eq!(b.pick(client(), &|_| false), None);
    }

    #[test]
    fn backups_only_when_no_primary_is_usable() {
        let u = upstream(
            Balance::RoundRobin,
            &[("127.0.0.1:1", 1, false), ("127.0.0.1:2", 1, true), ("127.0.0.1:3", 1, false), ("127.0.0.1:4", 2, true)],
        );
        let b = Balancer::new(&u);
        for p in picks(&b, 10, &|_| true) {
            assert!(matches!(p, Some(0 | 2)));
        }
        // Primaries gone: backups by weight (1 and 3 weigh 1 and 2).
        assert_eq!(picks(&b, 3, &|i| i == 1 || i == 3), [3, 1, 3].map(Some));
        assert_eq!(b.pick(client(), &|i| i == 1), Some(1));
        assert_eq!(b.pick(client(), &|_| false), None);

        for balance in [IP_HASH, CONSISTENT] {
            let b = Balancer::new(&upstream(
                balance,
                &[("127.0.0.1:1", 1, false), ("127.0.0.1:2", 1, true), ("127.0.0.1:3", 1, false)],
            ));
            assert_ne!(b.pick(client(), &|_| true), Some(1), "{balance:?}");
            assert_eq!(b.pick(client(), &|i| i == 1), Some(1), "{balance:?}");
        }
    }

    #[test]
    fn zero_weights_never_panic() {
        for balance in [Balance::RoundRobin, IP_HASH, CONSISTENT] {
            let b = Balancer::new(&three(balance, [0, 0, 0]));
            assert_eq!(b.pick(client(), &|_| true), None, "{balance:?}");
            let b = Balancer::new(&three(balance, [0, 1, 0]));
            assert_eq!(b.pick(client(), &|_| true), Some(1), "{balance:?}");
            let b = Balancer::new(&upstream(balance, &[]));
            assert_eq!(b.pick(client(), &|_| true), None, "{balance:?}");
        }
    }

    #[test]
    fn huge_weights_are_fine() {
        for balance in [Balance::RoundRobin, IP_HASH, CONSISTENT] {
            let b = Balancer::new(&three(balance, [u32::MAX, u32::MAX, 1]));
            for _ in 0..10 {
                assert!(b.pick(client(), &|_| true).is_some(), "{balance:?}");
            }
        }
    }

    #[test]
    fn ip_hash_key_takes_three_octets_or_sixteen_bytes() {
        let (k, n) = ip_hash_key(v4(10, 20, 30, 40));
        assert_eq!(&k[..n], &[10, 20, 30]);
        let mapped = IpAddr::V6(Ipv4Addr::new(10, 20, 30, 40).to_ipv6_mapped());
        assert_eq!(ip_hash_key(mapped), (k, n));
        let v6: Ipv6Addr = "2001:db8::1".parse().unwrap();
        assert_eq!(ip_hash_key(IpAddr::V6(v6)), (v6.octets(), 16));
    }

    #[test]
    fn ip_hash_matches_hand_computed_nginx_values() {
        // Key 127.0.1: 89 -> (89*113+127)%6271 = 3913 -> (3913*113+0)%6271 = 3199
        // -> (3199*113+1)%6271 = 4041; 4041 % 3 = 0.
        assert_eq!(ip_hash_step(89, &[127, 0, 1]), 4041);
        // Second try continues from 4041: 5248 -> 3550 -> 6078; 6078 % 3 = 0 again.
        assert_eq!(ip_hash_step(4041, &[127, 0, 1]), 6078);
        // Third: 3402 -> 1895 -> 922; 922 % 3 = 1.
        assert_eq!(ip_hash_step(6078, &[127, 0, 1]), 922);

        let b = Balancer::new(&three(IP_HASH, [1, 1, 1]));
        for last in [0, 1, 77, 255] {
            assert_eq!(b.pick(v4(127, 0, 1, last), &|_| true), Some(0));
            // Server 0 down: tries 1 and 2 both hash to 0, try 3 lands on 1.
            assert_eq!(b.pick(v4(127, 0, 1, last), &|i| i != 0), Some(1));
        }

        // Weights 1,2,1 (total 4): 4041 % 4 = 1, which the walk gives to server 1
        // (w=1 >= 1 -> w=0 on server 1, 0 < 2).
        let b = Balancer::new(&three(IP_HASH, [1, 2, 1]));
        assert_eq!(b.pick(v4(127, 0, 1, 9), &|_| true), Some(1));
        // Server 1 unusable: 6078 % 4 = 2 and 922 % 4 = 2 fall on server 1 again;
        // the fourth try, 6027 % 4 = 3, is past 1+2 and lands on server 2.
        assert_eq!(ip_hash_step(922, &[127, 0, 1]), 6027);
        assert_eq!(b.pick(v4(127, 0, 1, 9), &|i| i != 1), Some(2));
    }

    #[test]
    fn ip_hash_total_weight_counts_down_servers() {
        // A down server keeps its slot: clients of the others stay put when it
        // is taken out (nginx counts down servers in total_weight).
        let b = Balancer::new(&three(IP_HASH, [1, 1, 1]));
        let mut moved = 0;
        for i in 0..1000u32 {
            let ip = v4(10, (i / 256) as u8, (i % 256) as u8, 1);
            let before = b.pick(ip, &|_| true).unwrap();
            let after = b.pick(ip, &|s| s != 2).unwrap();
            if before != 2 {
                assert_eq!(before, after);
            } else {
                moved += 1;
            }
        }
        assert!(moved > 200 && moved < 450, "{moved}");
    }

    #[test]
    fn ip_hash_is_sticky_and_spreads() {
        let b = Balancer::new(&three(IP_HASH, [1, 1, 1]));
        let mut counts = [0; 3];
        for i in 0..3000u32 {
            let ip = v4(172, (i / 256) as u8, (i % 256) as u8, 7);
            let p = b.pick(ip, &|_| true).unwrap();
            assert_eq!(b.pick(v4(172, (i / 256) as u8, (i % 256) as u8, 200), &|_| true), Some(p));
            counts[p] += 1;
        }
        for c in counts {
            assert!(c > 700, "{counts:?}");
        }
    }

    #[test]
    fn ip_hash_gives_up_after_twenty_retries() {
        let b = Balancer::new(&three(IP_HASH, [1, 1, 1]));
        let calls = RefCell::new(Vec::new());
        let p = b.pick(client(), &|i| {
            calls.borrow_mut().push(i);
            false
        });
        assert_eq!(p, None);
        // 21 hash tries, then round robin asks each primary once.
        assert_eq!(calls.borrow().len(), 21 + 3);
        // Only server 2 usable, but a key whose 21 tries all miss it still
        // reaches it through the round-robin fallback.
        assert_eq!(b.pick(client(), &|i| i == 2), Some(2));
    }

    #[test]
    fn ip_hash_single_primary_is_round_robin() {
        let b = Balancer::new(&upstream(IP_HASH, &[("127.0.0.1:1", 3, false)]));
        assert_eq!(b.pick(client(), &|_| true), Some(0));
        assert_eq!(b.pick(client(), &|_| false), None);
    }

    #[test]
    fn ip_hash_ipv6_uses_all_bytes() {
        let b = Balancer::new(&three(IP_HASH, [1, 1, 1]));
        let ip: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let expected = (ip_hash_step(89, &ip.octets()) % 3) as usize;
        assert_eq!(b.pick(IpAddr::V6(ip), &|_| true), Some(expected));
    }

    fn four_servers() -> Vec<(&'static str, u32, bool)> {
        vec![
            ("10.0.0.1:8243", 1, false),
            ("10.0.0.2:8243", 1, false),
            ("10.0.0.3:8243", 1, false),
            ("10.0.0.4:8243", 1, false),
        ]
    }

    /// Client /24 -> server address, for every one of 10,000 /24s.
    fn assignment(balance: Balance, servers: &[(&str, u32, bool)]) -> HashMap<u32, String> {
        let u = upstream(balance, servers);
        let b = Balancer::new(&u);
        (0..10_000u32)
            .map(|i| {
                let ip = v4(100, (i >> 8) as u8, (i & 0xff) as u8, 1);
                (i, u.peers[b.pick(ip, &|_| true).unwrap()].address.clone())
            })
            .collect()
    }

    #[test]
    fn consistent_hash_moves_only_the_removed_servers_keys() {
        let all = four_servers();
        let mut fewer = all.clone();
        let removed = fewer.remove(2).0;

        let before = assignment(CONSISTENT, &all);
        let after = assignment(CONSISTENT, &fewer);
        let mut moved = 0;
        for (key, server) in &before {
            if after[key] != *server {
                assert_eq!(server, removed, "key {key} moved off a server that stayed");
                moved += 1;
            }
        }
        assert!(moved < 3_500, "consistent moved {moved}");
        assert!(moved > 1_500, "the removed server held about a quarter: {moved}");

        let before = assignment(IP_HASH, &all);
        let after = assignment(IP_HASH, &fewer);
        let moved = before.iter().filter(|(k, s)| after[*k] != **s).count();
        assert!(moved > 5_000, "nginx hash moved {moved}");
    }

    #[test]
    fn consistent_hash_spreads_by_weight() {
        let mut servers = four_servers();
        servers[0].1 = 2;
        let counts = assignment(CONSISTENT, &servers).into_values().fold(HashMap::new(), |mut m, s| {
            *m.entry(s).or_insert(0) += 1;
            m
        });
        let heavy = counts["10.0.0.1:8243"];
        for (server, &c) in &counts {
            if server != "10.0.0.1:8243" {
                assert!(c > 1_400 && c < 2_600, "{counts:?}");
                assert!(heavy > c, "{counts:?}");
            }
        }
    }

    #[test]
    fn consistent_hash_walks_past_unusable_servers() {
        let u = upstream(CONSISTENT, &four_servers());
        let b = Balancer::new(&u);
        for i in 0..1000u32 {
            let ip = v4(100, (i >> 8) as u8, (i & 0xff) as u8, 1);
            let first = b.pick(ip, &|_| true).unwrap();
            let second = b.pick(ip, &|s| s != first).unwrap();
            assert_ne!(first, second);
            assert_eq!(b.pick(ip, &|s| s != first), Some(second), "stable fallback");
            assert_eq!(b.pick(ip, &|s| s == 3), Some(3));
        }
        assert_eq!(b.pick(client(), &|_| false), None);
    }

    #[test]
    fn poisoned_lock_does_not_panic() {
        let b = std::sync::Arc::new(Balancer::new(&three(Balance::RoundRobin, [1, 1, 1])));
        let b2 = b.clone();
        let _ = std::thread::spawn(move || {
            let _guard = b2.current.lock().unwrap();
            panic!("poison the lock");
        })
        .join();
        assert!(b.pick(client(), &|_| true).is_some());
    }
}
