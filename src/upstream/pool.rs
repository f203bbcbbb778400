//! Upstream server connections, kept alive per server.

/// One upstream's servers, health, balancer and idle connections.
#[derive(Debug)]
pub struct Pool {}
