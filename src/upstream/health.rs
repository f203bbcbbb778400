//! Passive health: failures counted per server within `fail_timeout`; a server
//! with `max_fails` of them is skipped for `fail_timeout`.

use std::time::Instant;

use crate::config::runtime::Upstream;

/// Failure counts and down-until times, one slot per server.
#[derive(Debug)]
pub struct Health {}

impl Health {
    /// One slot per server of `upstream`.
    pub fn new(upstream: &Upstream) -> Health {
        let _ = upstream;
        Health {}
    }

    /// Whether server `peer` may take traffic at `now` (not `down = true`, not failed).
    pub fn is_usable(&self, peer: usize, now: Instant) -> bool {
        let _ = (peer, now);
        true
    }

    /// Counts one failure (connect error, reset, timeout, bad response).
    pub fn record_failure(&self, peer: usize, now: Instant) {
        let _ = (peer, now);
    }

    /// A good answer: clears the failure count.
    pub fn record_success(&self, peer: usize) {
        let _ = peer;
    }
}
