//! Per-request cost of the sticky session table and of finding the session cookie.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use http::header::{COOKIE, HeaderMap, HeaderValue};
use portico::upstream::sticky::{StickyTable, request_session};

/// Sessions in a `size = "1m"` table (validate allows 25 bytes each).
const CAPACITY: usize = 41943;
const SESSIONS: usize = 40_000;

/// A Tomcat-style JSESSIONID: 32 hex digits and the node's jvmRoute.
fn session(i: usize) -> String {
    format!("{:032X}.node{}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15), i % 3 + 1)
}

const SERVERS: [&str; 3] = ["10.0.0.1:9443", "10.0.0.2:9443", "10.0.0.3:9443"];

fn bench_table(c: &mut Criterion) {
    let now = Instant::now();
    let table = StickyTable::new(CAPACITY, Duration::from_secs(600));
    let values: Vec<String> = (0..SESSIONS).map(session).collect();
    for (i, v) in values.iter().enumerate() {
        table.learn(v, SERVERS[i % 3], now);
    }
    let mut group = c.benchmark_group("sticky");
    let mut i = 0;
    group.bench_function("lookup_hit_40k", |b| {
        b.iter(|| {
            i = (i + 1) % SESSIONS;
            black_box(table.lookup(black_box(&values[i]), now))
        })
    });

    // Values never seen, more of them than the table holds: every learn evicts.
    let full = StickyTable::new(SESSIONS, Duration::from_secs(600));
    for v in &values {
        full.learn(v, SERVERS[0], now);
    }
    let fresh: Vec<String> = (SESSIONS..SESSIONS * 3).map(session).collect();
    let mut j = 0;
    group.bench_function("learn_evict_full", |b| {
        b.iter(|| {
            j = (j + 1) % fresh.len();
            full.learn(black_box(&fresh[j]), SERVERS[j % 3], now)
        })
    });

    let mut headers = HeaderMap::new();
    headers.insert(
        COOKIE,
        HeaderValue::from_static(
            "_ga=GA1.2.1234567890.1700000000; i18next=en-US; \
             JSESSIONID=6A1B2C3D4E5F60718293A4B5C6D7E8F9.node1; XSRF-TOKEN=0123456789abcdef0123456789abcdef",
        ),
    );
    group.bench_function("request_session", |b| {
        b.iter(|| black_box(request_session(black_box(&headers), black_box("/publisher/apis"), "JSESSIONID")))
    });
    group.finish();
}

criterion_group!(benches, bench_table);
criterion_main!(benches);
