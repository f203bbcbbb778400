//! Access and error logs: per-server files written off the runtime threads,
//! flushed within 200 ms, reopened on SIGUSR1.

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::config::runtime::{AccessLogFormat, LogLevel};

/// Every open log file of the process; hands out cheap cloneable handles.
#[derive(Clone, Default)]
pub struct Logs {}

/// One access log line's facts.
#[derive(Debug)]
pub struct AccessRecord<'a> {
    pub remote_addr: IpAddr,
    pub time: SystemTime,
    pub method: &'a str,
    /// The request target as sent (path and query).
    pub uri: &'a str,
    pub version: http::Version,
    pub status: u16,
    /// Response body bytes sent to the client.
    pub body_bytes: u64,
    pub referer: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    /// `$host` of the request.
    pub host: &'a str,
    /// The upstream server that answered, as written in the config.
    pub upstream_addr: Option<&'a str>,
    /// From the request's arrival to the end of the response.
    pub duration: Duration,
}

/// A handle to one access log file.
#[derive(Clone)]
pub struct AccessLog {}

/// A handle to one error log file.
#[derive(Clone)]
pub struct ErrorLog {}

impl Logs {
    /// An empty registry.
    pub fn new() -> Logs {
        Logs {}
    }

    /// Opens (or shares the already open) access log at `path`, creating parent directories.
    pub fn access(&self, path: &Path, format: AccessLogFormat) -> std::io::Result<AccessLog> {
        let _ = (path, format);
        Ok(AccessLog {})
    }

    /// Opens (or shares) an error log at `path`; lines below `level` are dropped.
    pub fn error(&self, path: &Path, level: LogLevel) -> std::io::Result<ErrorLog> {
        let _ = (path, level);
        Ok(ErrorLog {})
    }

    /// A writer for the process-wide tracing output.
    pub fn runtime_writer(&self, path: &Path) -> std::io::Result<fn() -> std::io::Stderr> {
        let _ = path;
        Ok(std::io::stderr)
    }

    /// Reopens every file (after logrotate moved them); no line is lost.
    pub fn reopen(&self) {}

    /// Writes and flushes everything queued, then stops the writer.
    pub fn shutdown(&self) {}
}

impl AccessLog {
    /// Queues one line; never blocks.
    pub fn log(&self, record: &AccessRecord<'_>) {
        let _ = record;
    }
}

impl ErrorLog {
    /// Queues one line; never blocks.
    pub fn log(&self, level: LogLevel, message: std::fmt::Arguments<'_>) {
        let _ = (level, message);
    }
}
