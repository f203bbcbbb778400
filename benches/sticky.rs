//! Per-request cost of the sticky session table and of finding the session cookie,
//! and of the request path's lookup with and without a shared store configured.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use http::header::{COOKIE, HeaderMap, HeaderValue};
use portico::config::runtime;
use portico::upstream::sticky::{StickyTable, request_session};
use portico::upstream::sticky_store::StickyStore;

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

/// A table of `SESSIONS` known sessions and a store for the same upstream,
/// its task on `runtime`. A local hit never reaches Redis, so the store's
/// connection does not matter: it points at 127.0.0.1:6379 and may be up or down.
struct Known {
    table: StickyTable,
    store: StickyStore,
    values: Vec<String>,
    now: Instant,
    _runtime: tokio::runtime::Runtime,
}

fn known() -> Known {
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => panic!("tokio runtime: {e}"),
    };
    let now = Instant::now();
    let timeout = Duration::from_secs(600);
    let table = StickyTable::new(CAPACITY, timeout);
    let values: Vec<String> = (0..SESSIONS).map(session).collect();
    for (i, v) in values.iter().enumerate() {
        table.learn(v, SERVERS[i % 3], now);
    }
    let config = runtime::StickyStore {
        url: "redis://127.0.0.1:6379/0".to_owned(),
        prefix: "portico:sticky:".to_owned(),
        lookup_timeout: Duration::from_millis(20),
    };
    let store = {
        let _guard = runtime.enter();
        match StickyStore::start("am", timeout, &config) {
            Ok(store) => store,
            Err(e) => panic!("sticky store: {e}"),
        }
    };
    Known { table, store, values, now, _runtime: runtime }
}

impl Known {
    /// `proxy::session_server` on a local hit without a store.
    fn local_only(&self, i: usize) -> Option<std::sync::Arc<str>> {
        self.table.lookup(black_box(&self.values[i]), self.now)
    }

    /// The same with a store configured.
    fn with_store(&self, i: usize) -> Option<std::sync::Arc<str>> {
        self.store.lookup_local(&self.table, black_box(&self.values[i]), self.now)
    }
}

/// The request path's lookup of a session this node knows, with and without
/// a shared store configured, on the same table.
fn bench_store(c: &mut Criterion) {
    let known = known();
    let mut group = c.benchmark_group("sticky_request_path");
    let mut i = 0;
    group.bench_function("local_hit_local_only", |b| {
        b.iter(|| {
            i = (i + 1) % SESSIONS;
            black_box(known.local_only(i))
        })
    });
    let mut j = 0;
    group.bench_function("local_hit_with_store", |b| {
        b.iter(|| {
            j = (j + 1) % SESSIONS;
            black_box(known.with_store(j))
        })
    });
    group.finish();
}

criterion_group!(benches, bench_table, bench_store);

/// `STICKY_PATH=local_only|with_store STICKY_LOOKUPS=N`: only N local hits of
/// one path, then exit; run under `valgrind --tool=callgrind` with two values
/// of N, the difference in instructions over the difference in N is the cost
/// of one lookup, free of the noise of a shared machine. Otherwise criterion.
fn main() {
    if let Ok(path) = std::env::var("STICKY_PATH") {
        let lookups: usize = std::env::var("STICKY_LOOKUPS").ok().and_then(|n| n.parse().ok()).unwrap_or(100_000);
        let known = known();
        let lookup = match path.as_str() {
            "local_only" => Known::local_only,
            "with_store" => Known::with_store,
            other => panic!("STICKY_PATH={other}: expected local_only or with_store"),
        };
        for n in 0..lookups {
            black_box(lookup(&known, n % SESSIONS));
        }
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
