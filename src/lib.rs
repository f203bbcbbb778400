//! portico: a reverse proxy and load balancer for clustered Java application servers.

pub mod admin;
pub mod cli;
pub mod config;
pub mod framing;
pub mod limit_req;
pub mod listener;
pub mod log;
pub mod metrics;
pub mod nginx;
pub mod proxy;
pub mod proxy_protocol;
pub mod ratelimit;
pub mod real_ip;
pub mod reload;
pub mod request_id;
pub mod systemd;
pub mod template;
#[cfg(test)]
mod test_support;
pub mod tls;
pub mod upstream;
pub mod vhost;
pub mod workers;

use std::net::SocketAddr;
use std::sync::Arc;

use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admin::AdminServer;
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

/// One bound listen socket and its accept loop.
struct AcceptLoop {
    /// As configured (`127.0.0.1:0` stays that, whatever port it got).
    addr: SocketAddr,
    local: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// A running portico: its bound addresses and the way to reload or stop it.
pub struct Running {
    shared: Arc<Shared>,
    logs: Logs,
    accept_loops: Vec<AcceptLoop>,
    /// `[admin]`, when configured.
    admin: Option<AdminServer>,
    started_with: config::runtime::RuntimeSettings,
}

/// Why a reload was refused; the old configuration keeps serving.
#[derive(Debug, Error)]
pub enum ReloadError {
    #[error(transparent)]
    Start(#[from] StartError),
}

impl Running {
    /// The bound address of each `snapshot.listeners` entry of the current
    /// snapshot, in the same order (a `127.0.0.1:0` listen shows its real port).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        let site = self.shared.site.load();
        site.snapshot
            .listeners
            .iter()
            .filter_map(|l| self.accept_loops.iter().find(|a| a.addr == l.addr).map(|a| a.local))
            .collect()
    }

    /// The bound address of the admin endpoint (`[admin] listen`), if configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|admin| admin.local)
    }

    /// Counts a reload refused before reaching [`Running::reload`] (the file
    /// did not load or validate) in `portico_reloads_total{result="error"}`.
    pub fn reload_refused(&self) {
        self.shared.instance.reloaded(false);
    }

    /// The `[runtime]` settings portico started with: those a reload cannot
    /// change are still these, whatever the files loaded since said.
    pub fn started_with(&self) -> &config::runtime::RuntimeSettings {
        &self.started_with
    }

    /// The process's log files (for SIGUSR1 reopen and the runtime error log).
    pub fn logs(&self) -> &Logs {
        &self.logs
    }

    /// Switches to `snapshot`: new listen sockets are bound first, then new
    /// connections use the new configuration while requests in flight finish
    /// on the old one; kept sockets are never re-bound, removed ones close.
    /// A changed `[admin] listen` is bound anew and the old one closed.
    /// On error nothing changes. Either way the result is counted in `/metrics`.
    pub fn reload(&mut self, snapshot: config::Snapshot) -> Result<(), ReloadError> {
        let result = self.switch(snapshot);
        self.shared.instance.reloaded(result.is_ok());
        result
    }

    fn switch(&mut self, snapshot: config::Snapshot) -> Result<(), ReloadError> {
        let snapshot = Arc::new(snapshot);
        let old = self.shared.site.load_full();
        let old_addrs: Vec<SocketAddr> = old.snapshot.listeners.iter().map(|l| l.addr).collect();
        let new_addrs: Vec<SocketAddr> = snapshot.listeners.iter().map(|l| l.addr).collect();
        let changes = reload::diff(&old_addrs, &new_addrs);
        let mut bound = Vec::with_capacity(changes.bind.len());
        for addr in &changes.bind {
            bound.push((*addr, bind(*addr)?));
        }
        let admin_addr = snapshot.admin.as_ref().map(|admin| admin.listen);
        let admin_changed = admin_addr != self.admin.as_ref().map(|admin| admin.addr);
        let admin_listener = match admin_addr {
            Some(addr) if admin_changed => Some((addr, bind(addr)?)),
            _ => None,
        };
        let site = Arc::new(Site::build(snapshot, &self.logs, Some(&old)).map_err(StartError::from)?);
        self.shared.site.store(Arc::clone(&site));
        site.start_health_checks(Some(&old));
        for (addr, listener) in bound {
            self.accept_loops.push(spawn_accept_loop(addr, listener, &self.shared)?);
        }
        self.accept_loops.retain(|accept_loop| {
            let removed = changes.close.contains(&accept_loop.addr);
            if removed {
                let _ = accept_loop.stop.send(true);
            }
            !removed
        });
        if admin_changed {
            if let Some(old_admin) = self.admin.take() {
                old_admin.close();
            }
            if let Some((addr, listener)) = admin_listener {
                self.admin = Some(self.spawn_admin(addr, listener)?);
            }
        }
        Ok(())
    }

    fn spawn_admin(&self, addr: SocketAddr, listener: tokio::net::TcpListener) -> Result<AdminServer, StartError> {
        AdminServer::spawn(addr, listener, self.shared.clone(), self.logs.clone())
            .map_err(|source| StartError::Bind { addr, source })
    }

    /// Stops accepting, lets in-flight requests finish (up to
    /// `runtime.shutdown_timeout`), flushes the logs.
    pub async fn shutdown(self) {
        // `/healthz` says so at once, so that a load balancer in front stops
        // sending traffic while requests drain; the admin endpoint stays up until then.
        self.shared.instance.drain();
        for accept_loop in &self.accept_loops {
            let _ = accept_loop.stop.send(true);
        }
        for accept_loop in self.accept_loops {
            let _ = accept_loop.task.await;
        }
        let grace = self.shared.site.load().snapshot.runtime.shutdown_timeout;
        if let Some(graceful) = self.shared.take_graceful()
            && tokio::time::timeout(grace, graceful.shutdown()).await.is_err()
        {
            tracing::warn!("shutdown_timeout ({grace:?}) reached with requests still in flight; closing them");
        }
        if let Some(admin) = self.admin {
            admin.stop().await;
        }
        let logs = self.logs.clone();
        let _ = tokio::task::spawn_blocking(move || logs.shutdown()).await;
    }
}

fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, StartError> {
    listener::bind(addr).map_err(|source| StartError::Bind { addr, source })
}

fn spawn_accept_loop(
    addr: SocketAddr,
    listener: tokio::net::TcpListener,
    shared: &Arc<Shared>,
) -> Result<AcceptLoop, StartError> {
    let local = listener.local_addr().map_err(|source| StartError::Bind { addr, source })?;
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(listener::accept_loop(listener, addr, shared.clone(), stopped));
    Ok(AcceptLoop { addr, local, stop, task })
}

/// Binds the snapshot's listeners and starts serving on the current tokio
/// runtime, with logs of its own.
pub async fn start(snapshot: config::Snapshot) -> Result<Running, StartError> {
    start_with_workers(snapshot, Logs::new(), None).await
}

/// As [`start`], writing through `logs` (which may already hold the runtime
/// error log) and handing accepted connections in turn to the current runtime
/// and to each of `workers`' (`portico run` with `worker_threads` above 1).
pub async fn start_with_workers(
    snapshot: config::Snapshot,
    logs: Logs,
    workers: Option<workers::Spread>,
) -> Result<Running, StartError> {
    let snapshot = Arc::new(snapshot);
    let mut bound = Vec::with_capacity(snapshot.listeners.len());
    for listener in &snapshot.listeners {
        bound.push((listener.addr, bind(listener.addr)?));
    }
    let admin_listener = match &snapshot.admin {
        Some(admin) => Some((admin.listen, bind(admin.listen)?)),
        None => None,
    };
    let started_with = snapshot.runtime.clone();
    let site = Arc::new(Site::build(snapshot, &logs, None)?);
    site.start_health_checks(None);
    site.first_health_checks().await;
    let shared = Arc::new(Shared::new(site, workers));
    let mut accept_loops = Vec::with_capacity(bound.len());
    for (addr, listener) in bound {
        accept_loops.push(spawn_accept_loop(addr, listener, &shared)?);
    }
    let mut running = Running { shared, logs, accept_loops, admin: None, started_with };
    if let Some((addr, listener)) = admin_listener {
        running.admin = Some(running.spawn_admin(addr, listener)?);
    }
    Ok(running)
}
