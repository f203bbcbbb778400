//! Counters behind `/metrics`: per virtual server and per upstream server, kept process-wide so reloads keep them.
//!
//! The hot path only touches atomics it already holds an `Arc` to: a counter
//! set is looked up (under a lock) once, when a `Site` or `Pool` is built, and
//! the same label set always gets the same counters back, so a reload that
//! rebuilds a server or a pool continues its counts instead of restarting them.

use std::collections::HashMap;
use std::fmt::{Display, Write as _};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Upper bounds of the latency histogram's buckets, in microseconds (5 ms .. 60 s).
pub const LATENCY_BUCKETS_US: [u64; 13] = [
    5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000, 30_000_000,
    60_000_000,
];

/// The same bounds as Prometheus `le` label values (seconds).
pub const LATENCY_BUCKET_LABELS: [&str; 13] =
    ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30", "60"];

/// Status class labels, index-aligned with `StatusClasses`.
pub const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Counts by HTTP status class (1xx..5xx).
#[derive(Debug, Default)]
pub struct StatusClasses([AtomicU64; 5]);

impl StatusClasses {
    /// Counts one `status`; codes outside 100..=599 are not counted.
    pub fn record(&self, status: u16) {
        if let Some(slot) = usize::from(status / 100).checked_sub(1).and_then(|i| self.0.get(i)) {
            slot.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The count per class, in `STATUS_CLASSES` order.
    pub fn get(&self) -> [u64; 5] {
        std::array::from_fn(|i| self.0[i].load(Ordering::Relaxed))
    }

    /// All classes together.
    pub fn total(&self) -> u64 {
        self.get().iter().sum()
    }
}

/// A latency histogram with the fixed `LATENCY_BUCKETS_US` bounds.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Per bucket, not cumulative: one increment per observation; summed at scrape time.
    buckets: [AtomicU64; 13],
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        // Longer than the last bound: counted only in `count` (the `+Inf` bucket).
        if let Some(i) = LATENCY_BUCKETS_US.iter().position(|&bound| us <= bound) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Cumulative bucket counts (Prometheus `le` semantics), in bound order.
    pub fn cumulative(&self) -> [u64; 13] {
        let mut total = 0;
        std::array::from_fn(|i| {
            total += self.buckets[i].load(Ordering::Relaxed);
            total
        })
    }

    /// Sum of observations, in seconds.
    pub fn sum_seconds(&self) -> f64 {
        self.sum_us.load(Ordering::Relaxed) as f64 / 1e6
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

/// One virtual server's counters (on one listen address).
#[derive(Debug, Default)]
pub struct ServerMetrics {
    /// Responses sent to clients, by status class.
    pub requests: StatusClasses,
    /// Time from the request head to the end of the response.
    pub latency: Histogram,
    /// Response body bytes sent to clients.
    pub sent_bytes: AtomicU64,
}

impl ServerMetrics {
    /// Counts one finished request.
    pub fn record(&self, status: u16, elapsed: Duration, body_bytes: u64) {
        self.requests.record(status);
        self.latency.observe(elapsed);
        self.sent_bytes.fetch_add(body_bytes, Ordering::Relaxed);
    }
}

/// One upstream server's counters (within one upstream).
#[derive(Debug, Default)]
pub struct PeerMetrics {
    /// Response heads received from it, by status class.
    pub responses: StatusClasses,
    /// Connect errors, timeouts and bad responses.
    pub failures: AtomicU64,
    /// Times it was chosen for an attempt (retries included).
    pub selected: AtomicU64,
    /// Connections opened to it (each a TLS handshake on an HTTPS upstream):
    /// against `selected`, how well the idle pool is reused.
    pub connections_opened: AtomicU64,
    /// Active health checks (`health_check`) that passed and failed.
    pub checks_passed: AtomicU64,
    pub checks_failed: AtomicU64,
}

/// Every counter set ever handed out, by label set.
#[derive(Default)]
struct Registry {
    servers: Mutex<HashMap<(String, SocketAddr), Arc<ServerMetrics>>>,
    peers: Mutex<HashMap<(String, String), Arc<PeerMetrics>>>,
}

static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::default);

/// The counters of virtual server `name` on listen address `listen` (as
/// configured), created on first use. Call when building a site, not per request.
pub fn server(name: &str, listen: SocketAddr) -> Arc<ServerMetrics> {
    let mut servers = REGISTRY.servers.lock().unwrap_or_else(PoisonError::into_inner);
    servers.entry((name.to_owned(), listen)).or_default().clone()
}

/// The counters of server `address` (as written in the file) of upstream
/// `upstream`, created on first use. Call when building a pool, not per request.
pub fn peer(upstream: &str, address: &str) -> Arc<PeerMetrics> {
    let mut peers = REGISTRY.peers.lock().unwrap_or_else(PoisonError::into_inner);
    peers.entry((upstream.to_owned(), address.to_owned())).or_default().clone()
}

/// What belongs to one running portico rather than to the process (tests run
/// several in one process): reloads, configuration generation, connections.
#[derive(Debug)]
pub struct Instance {
    started: Instant,
    generation: AtomicU64,
    reloads_ok: AtomicU64,
    reloads_error: AtomicU64,
    active_connections: AtomicU64,
    parked_connections: AtomicU64,
    draining: AtomicBool,
}

impl Default for Instance {
    fn default() -> Self {
        Instance {
            started: Instant::now(),
            // The configuration loaded at start is generation 1.
            generation: AtomicU64::new(1),
            reloads_ok: AtomicU64::new(0),
            reloads_error: AtomicU64::new(0),
            active_connections: AtomicU64::new(0),
            parked_connections: AtomicU64::new(0),
            draining: AtomicBool::new(false),
        }
    }
}

impl Instance {
    /// Counts one reload attempt; a successful one starts a new generation.
    pub fn reloaded(&self, ok: bool) {
        if ok {
            self.reloads_ok.fetch_add(1, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Relaxed);
        } else {
            self.reloads_error.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Reloads so far: (succeeded, refused or failed).
    pub fn reloads(&self) -> (u64, u64) {
        (self.reloads_ok.load(Ordering::Relaxed), self.reloads_error.load(Ordering::Relaxed))
    }

    /// 1 at start, plus one per successful reload.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// Time since start.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Counts a client connection as open until the returned guard is dropped.
    pub fn connection(&self) -> ConnectionGuard<'_> {
        self.active_connections.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard(&self.active_connections)
    }

    /// Client connections open now (TLS handshakes included).
    pub fn active_connections(&self) -> u64 {
        self.active_connections.load(Ordering::Relaxed)
    }

    /// Counts a client connection as parked (idle, without hyper's buffers)
    /// until the returned guard is dropped.
    pub fn parked(&self) -> ConnectionGuard<'_> {
        self.parked_connections.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard(&self.parked_connections)
    }

    /// Client connections parked now.
    pub fn parked_connections(&self) -> u64 {
        self.parked_connections.load(Ordering::Relaxed)
    }

    /// Marks the start of the shutdown drain (`/healthz` answers 503 from now on).
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

/// One open client connection; see [`Instance::connection`].
#[derive(Debug)]
pub struct ConnectionGuard<'a>(&'a AtomicU64);

impl Drop for ConnectionGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Prometheus metric types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// A Prometheus text exposition (format 0.0.4) being written.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// Starts metric family `name`: its `# HELP` and `# TYPE` lines. Write all
    /// of a family's samples right after, as the format requires.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// One sample line: `name{label="value",...} value`.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (label, label_value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{label}=\"{}\"", escape_label_value(label_value));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// The samples of one histogram (`_bucket` per bound and `+Inf`, `_sum`, `_count`).
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], histogram: &Histogram) {
        let bucket = format!("{name}_bucket");
        let mut with_le: Vec<(&str, &str)> = labels.to_vec();
        with_le.push(("le", ""));
        let last = with_le.len() - 1;
        for (bound, count) in LATENCY_BUCKET_LABELS.iter().zip(histogram.cumulative()) {
            with_le[last].1 = bound;
            self.sample(&bucket, &with_le, count);
        }
        // Read `count` once for both lines so that `+Inf` and `_count` agree.
        let count = histogram.count();
        with_le[last].1 = "+Inf";
        self.sample(&bucket, &with_le, count);
        self.sample(&format!("{name}_sum"), labels, histogram.sum_seconds());
        self.sample(&format!("{name}_count"), labels, count);
    }

    /// The finished text.
    pub fn finish(self) -> String {
        self.out
    }
}

/// A label value as the text format wants it: `\`, `"` and newline escaped.
pub fn escape_label_value(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return value.into();
    }
    let mut out = String::with_capacity(value.len() + 4);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.into()
}

/// `# HELP` text as the format wants it: `\` and newline escaped (quotes stay).
pub fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn label_values_escape_backslash_quote_and_newline() {
        assert_eq!(escape_label_value("api.am.wso2.com"), "api.am.wso2.com");
        assert_eq!(escape_label_value(r#"a"b"#), r#"a\"b"#);
        assert_eq!(escape_label_value(r"C:\logs"), r"C:\\logs");
        assert_eq!(escape_label_value("two\nlines"), r"two\nlines");
        assert_eq!(escape_label_value("\\\"\n"), r#"\\\"\n"#);
    }

    #[test]
    fn help_escapes_backslash_and_newline_but_not_quotes() {
        assert_eq!(escape_help("say \"hi\"\\\nbye"), r#"say "hi"\\\nbye"#);
    }

    #[test]
    fn samples_and_families_follow_the_text_format() {
        let mut text = Exposition::default();
        text.family("portico_x_total", Kind::Counter, "Things.\nMore");
        text.sample("portico_x_total", &[("server", "a\"b"), ("code", "2xx")], 3);
        text.sample("portico_y", &[], 1.5);
        assert_eq!(
            text.finish(),
            "# HELP portico_x_total Things.\\nMore\n# TYPE portico_x_total counter\n\
             portico_x_total{server=\"a\\\"b\",code=\"2xx\"} 3\nportico_y 1.5\n"
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_with_inf() {
        let histogram = Histogram::default();
        histogram.observe(Duration::from_millis(1));
        histogram.observe(Duration::from_millis(5));
        histogram.observe(Duration::from_millis(70));
        histogram.observe(Duration::from_secs(61));
        assert_eq!(histogram.cumulative(), [2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3]);
        assert_eq!(histogram.count(), 4);
        let mut text = Exposition::default();
        text.histogram("lat", &[("server", "s")], &histogram);
        let text = text.finish();
        assert!(text.contains("lat_bucket{server=\"s\",le=\"0.005\"} 2\n"), "{text}");
        assert!(text.contains("lat_bucket{server=\"s\",le=\"60\"} 3\n"), "{text}");
        assert!(text.contains("lat_bucket{server=\"s\",le=\"+Inf\"} 4\n"), "{text}");
        assert!(text.contains("lat_sum{server=\"s\"} 61.076\n"), "{text}");
        assert!(text.contains("lat_count{server=\"s\"} 4\n"), "{text}");
    }

    #[test]
    fn status_classes_ignore_codes_out_of_range() {
        let classes = StatusClasses::default();
        for status in [0, 99, 101, 200, 204, 302, 404, 502, 599, 600, 999] {
            classes.record(status);
        }
        assert_eq!(classes.get(), [1, 2, 1, 1, 2]);
    }

    #[test]
    fn the_same_labels_get_the_same_counters() {
        let listen: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let a = server("metrics-unit.test", listen);
        a.record(200, Duration::from_millis(1), 10);
        assert!(Arc::ptr_eq(&a, &server("metrics-unit.test", listen)));
        assert!(!Arc::ptr_eq(&a, &server("metrics-unit.test", "127.0.0.1:2".parse().unwrap())));
        assert!(Arc::ptr_eq(&peer("u", "10.0.0.1:1"), &peer("u", "10.0.0.1:1")));
        assert!(!Arc::ptr_eq(&peer("u", "10.0.0.1:1"), &peer("v", "10.0.0.1:1")));
    }

    #[test]
    fn connection_guards_count_open_connections() {
        let instance = Instance::default();
        let a = instance.connection();
        let b = instance.connection();
        assert_eq!(instance.active_connections(), 2);
        drop(a);
        assert_eq!(instance.active_connections(), 1);
        drop(b);
        assert_eq!(instance.active_connections(), 0);
        assert_eq!(instance.generation(), 1);
        instance.reloaded(true);
        instance.reloaded(false);
        assert_eq!((instance.generation(), instance.reloads()), (2, (1, 1)));
    }
}
