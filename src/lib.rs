//! portico: a reverse proxy and load balancer for clustered Java application servers.

pub mod cli;
pub mod config;
pub mod listener;
pub mod log;
pub mod proxy;
pub mod template;
pub mod tls;
pub mod upstream;
pub mod vhost;

use std::net::SocketAddr;

use thiserror::Error;

/// Why portico could not start serving a snapshot.
#[derive(Debug, Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("cannot open log {}: {source}", path.display())]
    Log { path: std::path::PathBuf, source: std::io::Error },
}

/// A running portico: its bound addresses and the way to stop it.
pub struct Running {
    local_addrs: Vec<SocketAddr>,
}

impl Running {
    /// The bound address of each `snapshot.listeners` entry, in the same order
    /// (so a `127.0.0.1:0` listen shows its real port here).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// Stops accepting, lets in-flight requests finish (up to
    /// `runtime.shutdown_timeout`), flushes the logs.
    pub async fn shutdown(self) {}
}

/// Binds the snapshot's listeners and starts serving on the current tokio runtime.
pub async fn start(snapshot: config::Snapshot) -> Result<Running, StartError> {
    let _ = snapshot;
    Ok(Running { local_addrs: Vec::new() })
}
