//! Benchmarks formatting one access log line, the per-request cost of logging.

use std::hint::black_box;
use std::time::{Duration, UNIX_EPOCH};

use criterion::{Criterion, criterion_group, criterion_main};
use portico::log::{AccessRecord, format_combined, format_json};

fn record() -> AccessRecord<'static> {
    AccessRecord {
        remote_addr: std::net::IpAddr::from([192, 0, 2, 7]),
        time: UNIX_EPOCH + Duration::from_secs(1_795_688_385),
        method: "GET",
        uri: "/api/am/store/v1/apis?limit=25&offset=0",
        version: http::Version::HTTP_11,
        status: 200,
        body_bytes: 5120,
        referer: Some("https://am.example.com/devportal/apis"),
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"),
        host: "am.example.com",
        upstream_addr: Some("10.0.0.1:9443"),
        duration: Duration::from_micros(12_345),
    }
}

fn bench(c: &mut Criterion) {
    let record = record();
    let mut line = Vec::with_capacity(512);
    c.bench_function("format_combined", |b| {
        b.iter(|| {
            line.clear();
            format_combined(black_box(&record), &mut line);
            black_box(line.len())
        })
    });
    c.bench_function("format_json", |b| {
        b.iter(|| {
            line.clear();
            format_json(black_box(&record), &mut line);
            black_box(line.len())
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
