//! SIGHUP: which listen sockets a new snapshot keeps, binds and closes.

use std::net::SocketAddr;

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

#[cfg(test)]
mod tests {
    use super::*;

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
