//! SIGHUP: which listen sockets a new snapshot keeps, binds and closes, and
//! which `[runtime]` settings wait for a restart.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::config::runtime::RuntimeSettings;

/// How the listen addresses change from one snapshot to the next.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ListenerDiff {
    /// In both: the socket stays open, never re-bound.
    pub keep: Vec<SocketAddr>,
    /// Only in the new snapshot: bind before switching.
    pub bind: Vec<SocketAddr>,
    /// Only in the old snapshot: stop accepting after switching.
    pub close: Vec<SocketAddr>,
}

/// Compares listen addresses as configured (a `127.0.0.1:0` listen is the
/// same listener in both snapshots, whatever port it was given).
pub fn diff(old: &[SocketAddr], new: &[SocketAddr]) -> ListenerDiff {
    let mut result = ListenerDiff::default();
    for addr in new {
        if old.contains(addr) {
            result.keep.push(*addr);
        } else {
            result.bind.push(*addr);
        }
    }
    result.close = old.iter().filter(|addr| !new.contains(addr)).copied().collect();
    result
}

/// The `[runtime]` settings of `new` that differ from those portico started
/// with (`old`) and that a reload does not apply, one line each: they shape
/// the process (its threads, its own error log, its pid file) or what is built
/// once at start for every connection (the connection limit, hyper's header
/// timer and read buffer). Everything else in the new file applies; these wait
/// for a restart, and the operator is told so rather than left to find them
/// ignored.
pub fn restart_only(old: &RuntimeSettings, new: &RuntimeSettings) -> Vec<String> {
    fn count(n: Option<usize>) -> String {
        n.map_or_else(|| "unset (one per CPU)".to_string(), |n| n.to_string())
    }
    fn path(p: &Option<PathBuf>) -> String {
        p.as_ref().map_or_else(|| "unset".to_string(), |p| p.display().to_string())
    }
    /// A setting's name, how it reads, and what keeps its old value.
    type Setting = (&'static str, fn(&RuntimeSettings) -> String, &'static str);
    let settings: [Setting; 8] = [
        ("worker_threads", |r| count(r.worker_threads), "the threads started with it stay"),
        ("error_log", |r| path(&r.error_log), "portico's own error log stays where it is"),
        (
            "error_log_level",
            |r| format!("{:?}", r.error_log_level).to_lowercase(),
            "portico's own error log keeps its level (the servers' error_log files use the new one)",
        ),
        ("pid_file", |r| path(&r.pid_file), "the pid file stays where it was written"),
        ("max_connections", |r| r.max_connections.to_string(), "the old limit holds"),
        (
            "client_header_timeout",
            |r| format!("{:?}", r.client_header_timeout),
            "the HTTP header timer keeps the old value (TLS handshakes use the new one)",
        ),
        (
            "keepalive_timeout",
            |r| format!("{:?}", r.keepalive_timeout),
            "kept-alive connections keep the old idle limit",
        ),
        (
            "max_request_header_size",
            |r| r.max_request_header_size.to_string(),
            "the read buffer and h2 header list keep the old size (the 431 check uses the new one)",
        ),
    ];
    settings
        .into_iter()
        .filter_map(|(name, show, what)| {
            let (before, after) = (show(old), show(new));
            (before != after)
                .then(|| format!("runtime.{name} changed from {before} to {after}: {what} until portico is restarted"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_only_names_each_changed_setting_and_nothing_else() {
        let old = RuntimeSettings::default();
        assert!(restart_only(&old, &old.clone()).is_empty());
        let new = RuntimeSettings {
            worker_threads: Some(4),
            keepalive_timeout: std::time::Duration::from_secs(5),
            // Applied by a reload: not reported.
            shutdown_timeout: std::time::Duration::from_secs(1),
            client_max_body_size: Some(1),
            ..old.clone()
        };
        let lines = restart_only(&old, &new);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].starts_with("runtime.worker_threads changed from unset (one per CPU) to 4: "), "{}", lines[0]);
        assert!(lines[1].starts_with("runtime.keepalive_timeout changed from 75s to 5s: "), "{}", lines[1]);
    }

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().filter_map(|a| a.parse().ok()).collect()
    }

    #[test]
    fn keeps_binds_and_closes() {
        let old = addrs(&["0.0.0.0:80", "0.0.0.0:443", "127.0.0.1:9000"]);
        let new = addrs(&["0.0.0.0:443", "0.0.0.0:8443", "0.0.0.0:80"]);
        let d = diff(&old, &new);
        assert_eq!(d.keep, addrs(&["0.0.0.0:443", "0.0.0.0:80"]));
        assert_eq!(d.bind, addrs(&["0.0.0.0:8443"]));
        assert_eq!(d.close, addrs(&["127.0.0.1:9000"]));
    }

    #[test]
    fn unchanged_config_changes_nothing() {
        let same = addrs(&["0.0.0.0:80", "[::]:443"]);
        let d = diff(&same, &same);
        assert_eq!(d.keep, same);
        assert!(d.bind.is_empty() && d.close.is_empty());
    }
}
