//! `portico run`: serve a configuration in the foreground until SIGTERM/SIGINT.

use std::path::PathBuf;

use thiserror::Error;

use crate::config::runtime::LogLevel;
use crate::config::{self, ConfigErrors};
use crate::log::Logs;

/// Arguments of `portico run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The configuration file.
    #[arg(short, long, default_value = "/etc/portico/portico.toml")]
    pub config: PathBuf,
}

/// Why `portico run` stopped with an error.
#[derive(Debug, Error)]
pub enum RunError {
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    #[error("cannot start the runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("cannot open the error log {}: {source}", path.display())]
    ErrorLog { path: PathBuf, source: std::io::Error },
    #[error("cannot write the pid file {}: {source}", path.display())]
    PidFile { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Start(#[from] crate::StartError),
    #[error("cannot listen for signals: {0}")]
    Signals(#[source] std::io::Error),
}

/// Loads the file, serves it, and returns after a graceful shutdown.
pub fn run(args: &RunArgs) -> Result<(), RunError> {
    let snapshot = config::load(&args.config)?;
    let logs = Logs::new();
    init_tracing(&logs, snapshot.runtime.error_log.as_deref(), snapshot.runtime.error_log_level)?;
    // One current-thread runtime per thread: tokio's multi-thread scheduler,
    // with its work stealing and cross-thread wake-ups, cost more CPU per
    // request with one thread (docs/performance-log.md §10) and with two (§28).
    // The main runtime accepts, and serves its turn of the connections beside
    // signals, reloads and the admin endpoint; `workers` serve the others.
    // Blocking work (reading a reloaded file) still goes to spawn_blocking.
    let threads = snapshot
        .runtime
        .worker_threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(RunError::Runtime)?;
    // With one thread, no workers: every connection stays on the main runtime.
    let (workers, spread) = crate::workers::Workers::start(threads.saturating_sub(1)).map_err(RunError::Runtime)?;
    if let Some(path) = &snapshot.runtime.pid_file {
        std::fs::write(path, format!("{}\n", std::process::id()))
            .map_err(|source| RunError::PidFile { path: path.clone(), source })?;
    }
    let pid_file = snapshot.runtime.pid_file.clone();
    let result = runtime.block_on(serve(args.config.clone(), snapshot, logs, spread));
    // Drained: what the workers still run is idle (upstream connections).
    drop(workers);
    if let Some(path) = pid_file {
        let _ = std::fs::remove_file(path);
    }
    result
}

async fn serve(
    path: PathBuf,
    snapshot: config::Snapshot,
    logs: Logs,
    workers: crate::workers::Spread,
) -> Result<(), RunError> {
    use tokio::signal::unix::{SignalKind, signal};
    for warning in &snapshot.warnings {
        tracing::warn!("{warning}");
    }
    let listens: Vec<String> = snapshot.listeners.iter().map(|l| l.addr.to_string()).collect();
    let mut running = crate::start_with_workers(snapshot, logs, Some(workers)).await?;
    tracing::info!("portico {} serving on {}", env!("CARGO_PKG_VERSION"), listens.join(", "));
    crate::systemd::notify("READY=1");
    let mut terminate = signal(SignalKind::terminate()).map_err(RunError::Signals)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(RunError::Signals)?;
    let mut reopen = signal(SignalKind::user_defined1()).map_err(RunError::Signals)?;
    let mut hangup = signal(SignalKind::hangup()).map_err(RunError::Signals)?;
    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = reopen.recv() => {
                tracing::info!("SIGUSR1: reopening log files");
                running.logs().reopen();
            }
            _ = hangup.recv() => reload(&path, &mut running).await,
        }
    }
    tracing::info!("shutting down: no new connections, finishing requests in flight");
    crate::systemd::notify("STOPPING=1");
    running.shutdown().await;
    Ok(())
}

/// SIGHUP: read and validate the file again; switch only when all of it is good.
async fn reload(path: &std::path::Path, running: &mut crate::Running) {
    tracing::info!("SIGHUP: reloading {}", path.display());
    crate::systemd::notify(&crate::systemd::reloading_message());
    let owned = path.to_path_buf();
    // Reading the file and resolving upstream names may block: not on a runtime thread.
    let loaded = tokio::task::spawn_blocking(move || config::load(&owned)).await;
    match loaded {
        Ok(Ok(snapshot)) => {
            for warning in &snapshot.warnings {
                tracing::warn!("{warning}");
            }
            let waiting = crate::reload::restart_only(running.started_with(), &snapshot.runtime);
            match running.reload(snapshot) {
                Ok(()) => {
                    for line in &waiting {
                        tracing::warn!("{line}");
                    }
                    tracing::info!("reloaded {}", path.display());
                }
                Err(e) => tracing::error!(
                    "reload of {} failed, still serving the previous configuration: {e}",
                    path.display()
                ),
            }
        }
        Ok(Err(errors)) => {
            running.reload_refused();
            for error in &errors.0 {
                tracing::error!("reload refused, still serving the previous configuration: {error}");
            }
        }
        Err(e) => {
            running.reload_refused();
            tracing::error!("reload failed: {e}");
        }
    }
    crate::systemd::notify("READY=1");
}

/// Process-wide diagnostics: stderr, or the runtime `error_log` file.
fn init_tracing(logs: &Logs, error_log: Option<&std::path::Path>, level: LogLevel) -> Result<(), RunError> {
    let filter = match level {
        LogLevel::Error => tracing::Level::ERROR,
        LogLevel::Warn => tracing::Level::WARN,
        LogLevel::Info => tracing::Level::INFO,
        LogLevel::Debug => tracing::Level::DEBUG,
    };
    let builder = tracing_subscriber::fmt().with_max_level(filter).with_target(false);
    // A second initialisation (tests running several servers) keeps the first.
    let _ = match error_log {
        Some(path) => {
            let writer =
                logs.runtime_writer(path).map_err(|source| RunError::ErrorLog { path: path.to_path_buf(), source })?;
            builder.with_ansi(false).with_writer(writer).try_init()
        }
        None => builder.with_writer(std::io::stderr).try_init(),
    };
    Ok(())
}
