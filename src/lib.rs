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
use std::sync::Arc;

use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::listener::Shared;
use crate::log::Logs;
use crate::proxy::{Site, SiteError};

/// Why portico could not start serving a snapshot.
#[derive(Debug, Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Site(#[from] SiteError),
}

/// A running portico: its bound addresses and the way to stop it.
pub struct Running {
    local_addrs: Vec<SocketAddr>,
    shared: Arc<Shared>,
    logs: Logs,
    stop: watch::Sender<bool>,
    accept_loops: Vec<JoinHandle<()>>,
}

impl Running {
    /// The bound address of each `snapshot.listeners` entry, in the same order
    /// (so a `127.0.0.1:0` listen shows its real port here).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// The process's log files (for SIGUSR1 reopen and the runtime error log).
    pub fn logs(&self) -> &Logs {
        &self.logs
    }

    /// Stops accepting, lets in-flight requests finish (up to
    /// `runtime.shutdown_timeout`), flushes the logs.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for accept_loop in self.accept_loops {
            let _ = accept_loop.await;
        }
        let grace = self.shared.site.load().snapshot.runtime.shutdown_timeout;
        if let Some(graceful) = self.shared.take_graceful()
            && tokio::time::timeout(grace, graceful.shutdown()).await.is_err()
        {
            tracing::warn!("shutdown_timeout ({grace:?}) reached with requests still in flight; closing them");
        }
        let logs = self.logs.clone();
        let _ = tokio::task::spawn_blocking(move || logs.shutdown()).await;
    }
}

/// Binds the snapshot's listeners and starts serving on the current tokio
/// runtime, with logs of its own.
pub async fn start(snapshot: config::Snapshot) -> Result<Running, StartError> {
    start_with_logs(snapshot, Logs::new()).await
}

/// As [`start`], writing through `logs` (which may already hold the runtime error log).
pub async fn start_with_logs(snapshot: config::Snapshot, logs: Logs) -> Result<Running, StartError> {
    let snapshot = Arc::new(snapshot);
    let mut listeners = Vec::with_capacity(snapshot.listeners.len());
    let mut local_addrs = Vec::with_capacity(snapshot.listeners.len());
    for listener in &snapshot.listeners {
        let bound = listener::bind(listener.addr).map_err(|source| StartError::Bind { addr: listener.addr, source })?;
        local_addrs.push(bound.local_addr().map_err(|source| StartError::Bind { addr: listener.addr, source })?);
        listeners.push(bound);
    }
    let site = Arc::new(Site::build(snapshot, &logs)?);
    let shared = Arc::new(Shared::new(site));
    let (stop, stopped) = watch::channel(false);
    let accept_loops = listeners
        .into_iter()
        .enumerate()
        .map(|(index, bound)| tokio::spawn(listener::accept_loop(bound, index, shared.clone(), stopped.clone())))
        .collect();
    Ok(Running { local_addrs, shared, logs, stop, accept_loops })
}
