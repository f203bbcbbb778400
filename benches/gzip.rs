//! Benchmarks `gzip` on one answer: the decision (`gzip::apply`) and the
//! compressing body, for a small JSON answer (an API call) and a 64 KiB one
//! (a page of results), at level 1 (the default). Most of a small answer's
//! cost is the compressor's state, made per answer as nginx makes zlib's.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::{HeaderValue, Response, header};
use http_body_util::BodyExt;
use portico::config::runtime::Gzip;
use portico::proxy::body::ResponseBody;
use portico::proxy::gzip;

/// JSON shaped like an API Manager listing: repeated keys, varying values.
fn json(len: usize) -> Bytes {
    let mut out = String::from("{\"count\":0,\"list\":[");
    let mut i = 0;
    while out.len() < len {
        out.push_str(&format!(
            "{{\"id\":\"{i:08x}-7d2c-4f1e-9a3b-{:012x}\",\"name\":\"PizzaShackAPI{i}\",\"context\":\"/pizzashack/{i}\",\"version\":\"1.0.{i}\",\"provider\":\"admin\",\"lifeCycleStatus\":\"PUBLISHED\"}},",
            i * 7919
        ));
        i += 1;
    }
    out.truncate(len);
    Bytes::from(out)
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap_or_else(|e| panic!("{e}"));
    let config = Gzip { types: vec!["application/json".into()], min_length: 20, level: 1 };
    let mut group = c.benchmark_group("gzip");
    for (name, len) in [("json_1k", 1024), ("json_64k", 64 * 1024)] {
        let body = json(len);
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut response = Response::new(ResponseBody::full(body.clone()));
                response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                gzip::apply(&config, true, &mut response);
                let compressed = runtime.block_on(response.into_body().collect());
                black_box(compressed.map(|c| c.to_bytes().len()).unwrap_or(0))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
