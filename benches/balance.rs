//! Per-request cost of `Balancer::pick` for each balancing method.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use portico::config::runtime::{Balance, Peer, Upstream};
use portico::upstream::balance::Balancer;

/// Three servers weighted 5, 3, 1, as a WSO2 pool with uneven nodes might be.
fn upstream(balance: Balance) -> Upstream {
    Upstream {
        name: "bench".into(),
        peers: [5, 3, 1]
            .iter()
            .enumerate()
            .map(|(i, &weight)| {
                let address = format!("10.0.0.{}:8243", i + 1);
                Peer {
                    host: format!("10.0.0.{}", i + 1),
                    socket_addr: std::net::SocketAddr::from(([10, 0, 0, i as u8 + 1], 8243)),
                    address,
                    weight,
                    max_fails: 1,
                    fail_timeout: Duration::from_secs(10),
                    backup: false,
                    down: false,
                    drain: false,
                }
            })
            .collect(),
        tls: None,
        balance,
        keepalive: 32,
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(60),
        send_timeout: Duration::from_secs(60),
        sticky: None,
        health_check: None,
    }
}

fn bench_pick(c: &mut Criterion) {
    let methods = [
        ("round_robin", Balance::RoundRobin),
        ("ip_hash", Balance::IpHash { consistent: false }),
        ("consistent", Balance::IpHash { consistent: true }),
    ];
    let mut group = c.benchmark_group("pick");
    for (name, balance) in methods {
        let balancer = Balancer::new(&upstream(balance));
        let mut n: u32 = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                // A different /24 each time so hashing is not one cached path.
                n = n.wrapping_add(256);
                let client = IpAddr::V4(Ipv4Addr::from(n));
                balancer.pick(black_box(client), &|i| black_box(i) != usize::MAX)
            })
        });
        // With the hashed server unusable: the retry path a failed node causes.
        group.bench_function(format!("{name}_one_down"), |b| {
            b.iter(|| {
                n = n.wrapping_add(256);
                let client = IpAddr::V4(Ipv4Addr::from(n));
                balancer.pick(black_box(client), &|i| black_box(i) != 0)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_pick);
criterion_main!(benches);
