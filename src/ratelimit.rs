//! Rate-limited error lines, for errors any client can cause at will (garbage
//! instead of a TLS ClientHello, a malformed request): one line per kind and
//! interval, and the next line says how many were held back, so that a flood
//! of bad connections cannot flood the error log.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often each kind of per-connection error may be logged, per listener.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// No line written yet.
const NEVER: u64 = u64::MAX;

/// One kind of log line, written at most once per interval. Lock-free: an
/// atomic timestamp and counter.
#[derive(Debug)]
pub struct RateLimited {
    interval: Duration,
    origin: Instant,
    /// When the last line was written, in milliseconds since `origin`.
    last: AtomicU64,
    /// Lines held back since then.
    suppressed: AtomicU64,
}

/// Lines held back before the one being written (shown as a suffix, empty for none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Suppressed {
    pub count: u64,
    /// Since the previous line written.
    pub over: Duration,
}

impl RateLimited {
    pub fn new(interval: Duration) -> RateLimited {
        RateLimited { interval, origin: Instant::now(), last: AtomicU64::new(NEVER), suppressed: AtomicU64::new(0) }
    }

    /// Whether a line may be written now, with what was held back before it;
    /// `None` counts the line as suppressed.
    pub fn allow(&self) -> Option<Suppressed> {
        let now = millis(self.origin.elapsed());
        let last = self.last.load(Ordering::Relaxed);
        let due = last == NEVER || now.saturating_sub(last) >= millis(self.interval);
        // Of several threads due at once, one writes; the others count.
        if !due || self.last.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_err() {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let count = self.suppressed.swap(0, Ordering::Relaxed);
        let over = if last == NEVER { Duration::ZERO } else { Duration::from_millis(now - last) };
        Some(Suppressed { count, over })
    }

    /// Lines held back and not yet reported (for a last line when the source goes away).
    pub fn take_suppressed(&self) -> Option<Suppressed> {
        let count = self.suppressed.swap(0, Ordering::Relaxed);
        let last = self.last.load(Ordering::Relaxed);
        let over = if last == NEVER {
            Duration::ZERO
        } else {
            self.origin.elapsed().saturating_sub(Duration::from_millis(last))
        };
        (count > 0).then_some(Suppressed { count, over })
    }
}

impl fmt::Display for Suppressed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.count == 0 {
            return Ok(());
        }
        write!(f, " ({} similar suppressed since the previous line, {:.1}s ago)", self.count, self.over.as_secs_f64())
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(NEVER - 1)
}

/// The error lines of one listener that clients can trigger, each kind rate-limited.
/// What is still held back is logged when the accept loop ends (see
/// [`ReportOnDrop`]) and, for connections that failed after that, when the
/// last connection is gone.
#[derive(Debug)]
pub struct ListenerErrors {
    /// The listen address as configured.
    addr: SocketAddr,
    accept: RateLimited,
    handshake_failed: RateLimited,
    handshake_timeout: RateLimited,
    proxy_header: RateLimited,
    connection: RateLimited,
    abandoned: RateLimited,
}

impl ListenerErrors {
    pub fn new(addr: SocketAddr) -> ListenerErrors {
        ListenerErrors {
            addr,
            accept: RateLimited::new(INTERVAL),
            handshake_failed: RateLimited::new(INTERVAL),
            handshake_timeout: RateLimited::new(INTERVAL),
            proxy_header: RateLimited::new(INTERVAL),
            connection: RateLimited::new(INTERVAL),
            abandoned: RateLimited::new(INTERVAL),
        }
    }

    /// accept() failed (EMFILE and friends: the process is out of something).
    pub fn accept_failed(&self, error: &std::io::Error) {
        if let Some(held) = self.accept.allow() {
            tracing::warn!("accept on {} failed: {error}{held}", self.addr);
        }
    }

    /// A TLS handshake failed: a client speaking something else, or one that
    /// shares no protocol version, cipher or name with this listener.
    pub fn handshake_failed(&self, remote: SocketAddr, error: &std::io::Error) {
        if let Some(held) = self.handshake_failed.allow() {
            tracing::warn!("TLS handshake with {remote} on {} failed: {error}{held}", self.addr);
        }
    }

    /// A client connected and did not finish its TLS handshake in time.
    pub fn handshake_timed_out(&self, remote: SocketAddr) {
        if let Some(held) = self.handshake_timeout.allow() {
            tracing::info!("TLS handshake with {remote} on {} timed out{held}", self.addr);
        }
    }

    /// A connection on a `proxy_protocol` listener did not begin with a good
    /// PROXY header. One closed before sending anything (a balancer's TCP
    /// health check) is not worth a line; one without a header is a warning,
    /// since the balancer in front is likely not set to send it.
    pub fn proxy_header_failed(&self, remote: SocketAddr, error: &crate::proxy_protocol::ProxyHeaderError) {
        use crate::proxy_protocol::ProxyHeaderError::{Closed, Missing};
        if matches!(error, Closed) {
            return;
        }
        if let Some(held) = self.proxy_header.allow() {
            if matches!(error, Missing(_)) {
                tracing::warn!(
                    "connection from {remote} on {}: {error}; is the load balancer in front set to send one?{held}",
                    self.addr
                );
            } else {
                tracing::info!("connection from {remote} on {}: {error}{held}", self.addr);
            }
        }
    }

    /// An HTTP connection ended with an error (malformed request, reset, timeout).
    pub fn connection_failed(&self, remote: SocketAddr, error: &dyn fmt::Display) {
        if let Some(held) = self.connection.allow() {
            tracing::info!("connection from {remote} on {}: {error}{held}", self.addr);
        }
    }

    /// A connection closed for abandoning most of its requests (h2 rapid reset).
    pub fn abandoned(&self, remote: SocketAddr, requests: u64) {
        if let Some(held) = self.abandoned.allow() {
            tracing::warn!(
                "closing the connection from {remote} on {}: {requests} requests abandoned before their answer \
                 (rapid reset?){held}",
                self.addr
            );
        }
    }
}

impl ListenerErrors {
    /// Logs how many lines of each kind are held back, and forgets them.
    pub fn report_held(&self) {
        // Each at the level its own lines have.
        let kinds = [
            (&self.accept, "accept errors", true),
            (&self.handshake_failed, "TLS handshake failures", true),
            (&self.handshake_timeout, "TLS handshake timeouts", false),
            (&self.proxy_header, "PROXY protocol header failures", false),
            (&self.connection, "connection errors", false),
            (&self.abandoned, "connections closed for abandoned requests", true),
        ];
        for (limiter, what, warn) in kinds {
            let Some(held) = limiter.take_suppressed() else { continue };
            if warn {
                tracing::warn!("{what} on {}{held}; the listener has closed", self.addr);
            } else {
                tracing::info!("{what} on {}{held}; the listener has closed", self.addr);
            }
        }
    }
}

impl Drop for ListenerErrors {
    fn drop(&mut self) {
        self.report_held();
    }
}

/// Held by an accept loop: when the loop ends (shutdown, or a reload removed
/// the listener) the held-back counts are logged at once, not whenever the
/// last connection happens to finish, which may be after the logs have shut down.
pub struct ReportOnDrop(pub std::sync::Arc<ListenerErrors>);

impl Drop for ReportOnDrop {
    fn drop(&mut self) {
        self.0.report_held();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_and_the_next_counts_the_rest() {
        let limited = RateLimited::new(Duration::from_millis(200));
        let first = limited.allow();
        assert_eq!(first, Some(Suppressed { count: 0, over: Duration::ZERO }));
        assert_eq!(first.map(|s| s.to_string()), Some(String::new()));
        assert!((0..99).all(|_| limited.allow().is_none()));
        std::thread::sleep(Duration::from_millis(250));
        let Some(next) = limited.allow() else { panic!("the interval has passed: a line is due") };
        assert_eq!(next.count, 99);
        assert!(next.over >= Duration::from_millis(200), "{next:?}");
        let text = next.to_string();
        assert!(text.starts_with(" (99 similar suppressed since the previous line, 0."), "{text}");
        assert!(limited.allow().is_none());
        assert_eq!(limited.take_suppressed().map(|s| s.count), Some(1));
        assert_eq!(limited.take_suppressed(), None);
    }

    #[test]
    fn threads_racing_write_one_line_and_count_the_others() {
        let limited = std::sync::Arc::new(RateLimited::new(Duration::from_secs(3600)));
        let written: usize = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let limited = &limited;
                    scope.spawn(move || (0..1000).filter(|_| limited.allow().is_some()).count())
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
        });
        assert_eq!(written, 1);
        assert_eq!(limited.take_suppressed().map(|s| s.count), Some(3999));
    }
}
