//! Balancing algorithms: pick a server index from a key, knowing weights but not health.

use std::net::IpAddr;

use crate::config::runtime::Upstream;

/// The pool's balancing state (round-robin counters, hash rings).
#[derive(Debug)]
pub struct Balancer {}

impl Balancer {
    /// Builds the balancer for `upstream`'s servers and `balance` method.
    pub fn new(upstream: &Upstream) -> Balancer {
        let _ = upstream;
        Balancer {}
    }

    /// Picks a server for a request from `client`. `usable(i)` says whether server
    /// `i` may take it (not down, not failed, not already tried). Primary servers
    /// first; backup servers only when no primary is usable. `None` when none is.
    pub fn pick(&self, client: IpAddr, usable: &dyn Fn(usize) -> bool) -> Option<usize> {
        let _ = client;
        (0..1).find(|&i| usable(i))
    }
}
