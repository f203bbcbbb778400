//! `balance = "ip_hash"` against a real nginx: for several hundred client /24s
//! (source addresses on 127.0.0.0/8, all loopback on Linux), portico and nginx
//! with the same server list in the same order send each client to the same
//! backend, with plain and weighted/`down` server lists. Then `consistent =
//! true`: removing one of four servers moves only that server's clients, where
//! nginx's hash moves most of them.
//!
//! nginx (Debian package `nginx`) must be installed; `.ci/run` installs it. A
//! missing nginx fails the nginx tests instead of skipping them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use http::StatusCode;
use support::*;
use tokio::task::JoinSet;

/// How many distinct client /24s each comparison routes.
const CLIENT_NETS: usize = 320;

/// Requests in flight at once (per proxy).
const BATCH: usize = 64;

/// One upstream server as both configurations spell it.
struct Server<'a> {
    backend: &'a TestBackend,
    weight: u32,
    down: bool,
}

impl<'a> Server<'a> {
    fn plain(backend: &'a TestBackend) -> Server<'a> {
        Server { backend, weight: 1, down: false }
    }
}

/// The client /24s, as `(A, B)` of `127.A.B.0/24`: a deterministic, varied
/// spread over 127.1.0.0 - 127.254.255.255 (127.0.x.x avoided only so that no
/// client shares a /24 with 127.0.0.1, where the proxies and backends listen).
fn client_nets() -> Vec<(u8, u8)> {
    let mut seen = BTreeSet::new();
    let mut nets = Vec::new();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    while nets.len() < CLIENT_NETS {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let a = 1 + ((x >> 33) % 254) as u8;
        let b = ((x >> 45) % 256) as u8;
        if seen.insert((a, b)) {
            nets.push((a, b));
        }
    }
    nets
}

fn client(net: (u8, u8), host: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, net.0, net.1, host)
}

/// Sends one GET from each source address to `proxy`, each on its own
/// connection, `BATCH` at a time; returns the answering backend's name (the
/// body) per address, in order.
async fn route_all(proxy: SocketAddr, sources: &[Ipv4Addr]) -> Vec<String> {
    let mut names = vec![String::new(); sources.len()];
    for (chunk_index, chunk) in sources.chunks(BATCH).enumerate() {
        let mut set = JoinSet::new();
        for (j, &ip) in chunk.iter().enumerate() {
            let i = chunk_index * BATCH + j;
            set.spawn(async move {
                let source = ip.to_string();
                let mut client = Connect::to(proxy)
                    .source_ip(&source)
                    .connect()
                    .await
                    .unwrap_or_else(|e| panic!("connect {source} -> {proxy}: {e}"));
                let reply = client.get("iphash.test", "/").await.unwrap_or_else(|e| panic!("GET from {source}: {e}"));
                assert_eq!(reply.status, StatusCode::OK, "{source} via {proxy}: {}", reply.text());
                (i, reply.text())
            });
        }
        while let Some(done) = set.join_next().await {
            let (i, name) = done.unwrap();
            names[i] = name;
        }
    }
    names
}

/// Every client address of the comparison: `127.A.B.1` for each /24, then
/// `127.A.B.200` for each.
fn sources(nets: &[(u8, u8)]) -> Vec<Ipv4Addr> {
    nets.iter().map(|&n| client(n, 1)).chain(nets.iter().map(|&n| client(n, 200))).collect()
}

// ---- portico ----------------------------------------------------------------

fn portico_toml(servers: &[Server<'_>], balance: &str, consistent: bool) -> String {
    let mut list = String::new();
    for s in servers {
        let _ = write!(list, "\n  {{ address = \"{}\", weight = {}", s.backend.addr(), s.weight);
        if s.down {
            list.push_str(", down = true");
        }
        list.push_str(" },");
    }
    format!(
        r#"
[upstream.up]
servers = [{list}
]
balance = "{balance}"
consistent = {consistent}

[[server]]
listen = ["127.0.0.1:0"]
proxy_pass = "up"
"#
    )
}

// ---- nginx ------------------------------------------------------------------

/// `/usr/sbin/nginx`, else `nginx` on PATH; panics (the test fails) when there
/// is none.
fn nginx_binary() -> PathBuf {
    let debian = PathBuf::from("/usr/sbin/nginx");
    if debian.is_file() {
        return debian;
    }
    let on_path = std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).map(|dir| dir.join("nginx")).find(|p| p.is_file()));
    on_path.unwrap_or_else(|| {
        panic!(
            "nginx is not installed (looked for /usr/sbin/nginx and nginx on PATH). These tests compare \
             portico's ip_hash with a real nginx: install it with `apt-get install nginx` (.ci/run does)."
        )
    })
}

/// Whether this process runs as root (effective uid 0), from /proc.
fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status").ok().is_some_and(|status| {
        status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1).map(|euid| euid == "0"))
            .unwrap_or(false)
    })
}

/// A real nginx child process (single process, foreground), killed on drop so
/// that a failing assertion still stops it.
struct Nginx {
    child: Child,
    addr: SocketAddr,
    dir: TempDir,
}

impl Nginx {
    /// Starts nginx proxying `127.0.0.1:<free port>` to an `ip_hash` upstream of
    /// `servers`, in order, and returns once it accepts connections.
    fn start(servers: &[Server<'_>]) -> Nginx {
        let binary = nginx_binary();
        let dir = TempDir::new("nginx-iphash");
        let port = child_port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let config = nginx_conf(dir.path(), addr, servers);
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, &config).unwrap();
        let stderr = std::fs::File::create(dir.join("stderr.log")).unwrap();
        // -p: prefix for relative paths; -e: the error log used before the
        // config is read (else /var/log/nginx/error.log, not writable as non-root).
        let child = Command::new(&binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        let mut nginx = Nginx { child, addr, dir };
        nginx.wait_ready(&config);
        nginx
    }

    /// Polls a TCP connect (bounded) until nginx listens; panics with its logs if
    /// it exits or does not listen within 10 s.
    fn wait_ready(&mut self, config: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("nginx exited at start ({status}):\n{}\n--- nginx.conf ---\n{config}", self.logs());
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not listen on {} within 10 s:\n{}\n--- nginx.conf ---\n{config}",
                self.addr,
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn logs(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        format!("--- stderr ---\n{}--- error.log ---\n{}", read("stderr.log"), read("error.log"))
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nginx_conf(dir: &Path, listen: SocketAddr, servers: &[Server<'_>]) -> String {
    let d = dir.display();
    // As root, name root explicitly: nginx would otherwise look up `nobody` and
    // chown its temp directories to it. As anyone else `user` is only a warning,
    // so leave it out.
    let user = if running_as_root() { "user root;" } else { "" };
    let mut upstream = String::new();
    for s in servers {
        let _ = write!(upstream, "\n        server {} weight={}", s.backend.addr(), s.weight);
        if s.down {
            upstream.push_str(" down");
        }
        upstream.push(';');
    }
    format!(
        r"
{user}
daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;

events {{
    worker_connections 1024;
}}

http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;

    upstream up {{
        ip_hash;{upstream}
    }}

    server {{
        listen {listen};
        location / {{
            proxy_pass http://up;
        }}
    }}
}}
"
    )
}

// ---- the comparison ---------------------------------------------------------

/// Routes every client /24 (two addresses in each) through nginx and portico
/// and asserts they agree everywhere; returns how many /24s each backend got.
async fn compare_with_nginx(servers: &[Server<'_>]) -> BTreeMap<String, usize> {
    let nets = client_nets();
    let sources = sources(&nets);
    // Starting nginx polls with short blocking sleeps; keep them off the
    // runtime's other tasks (the backends).
    let nginx = tokio::task::block_in_place(|| Nginx::start(servers));
    let portico = start_portico(&portico_toml(servers, "ip_hash", false)).await;

    let (by_nginx, by_portico) = tokio::join!(route_all(nginx.addr, &sources), route_all(portico.addr(0), &sources));

    let n = nets.len();
    let mut differ = Vec::new();
    let mut split_by_nginx = Vec::new();
    let mut split_by_portico = Vec::new();
    let mut counts = BTreeMap::new();
    for (k, &net) in nets.iter().enumerate() {
        let (first, second) = (k, n + k);
        if by_nginx[first] != by_portico[first] {
            differ.push(format!(
                "127.{}.{}.0/24: nginx -> {}, portico -> {}",
                net.0, net.1, by_nginx[first], by_portico[first]
            ));
        }
        if by_nginx[first] != by_nginx[second] {
            split_by_nginx
                .push(format!("127.{}.{}.0/24: .1 -> {}, .200 -> {}", net.0, net.1, by_nginx[first], by_nginx[second]));
        }
        if by_portico[first] != by_portico[second] {
            split_by_portico.push(format!(
                "127.{}.{}.0/24: .1 -> {}, .200 -> {}",
                net.0, net.1, by_portico[first], by_portico[second]
            ));
        }
        *counts.entry(by_nginx[first].clone()).or_insert(0) += 1;
    }
    assert!(
        differ.is_empty(),
        "portico and nginx disagree for {} of {n} client /24s:\n{}\n{}",
        differ.len(),
        differ.join("\n"),
        nginx.logs()
    );
    assert!(split_by_nginx.is_empty(), "nginx split a /24 (test assumption broken):\n{}", split_by_nginx.join("\n"));
    assert!(split_by_portico.is_empty(), "portico split a /24:\n{}", split_by_portico.join("\n"));

    portico.shutdown().await;
    drop(nginx);
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_hash_places_every_client_where_nginx_does() {
    let a = TestBackend::spawn("a").await;
    let b = TestBackend::spawn("b").await;
    let c = TestBackend::spawn("c").await;
    let servers = [Server::plain(&a), Server::plain(&b), Server::plain(&c)];

    let counts = compare_with_nginx(&servers).await;

    // Every server got a fair share: the comparison exercised all of them.
    for name in ["a", "b", "c"] {
        let got = counts.get(name).copied().unwrap_or(0);
        assert!(got > CLIENT_NETS / 6, "backend {name} got {got} of {CLIENT_NETS} /24s: {counts:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_hash_with_weights_and_a_down_server_places_every_client_where_nginx_does() {
    let a = TestBackend::spawn("a").await;
    let b = TestBackend::spawn("b").await;
    let c = TestBackend::spawn("c").await;
    let d = TestBackend::spawn("d").await;
    // The down server sits between others, so its hash slot must be kept and
    // its clients rehashed exactly as nginx does.
    let servers = [
        Server { backend: &a, weight: 2, down: false },
        Server { backend: &b, weight: 1, down: false },
        Server { backend: &c, weight: 1, down: true },
        Server { backend: &d, weight: 1, down: false },
    ];

    let counts = compare_with_nginx(&servers).await;

    assert_eq!(c.count(), 0, "the down server was used: {counts:?}");
    for name in ["a", "b", "d"] {
        assert!(counts.get(name).copied().unwrap_or(0) > 0, "backend {name} got no client: {counts:?}");
    }
    // Weight 2 of the 4 live units (plus c's rehashed clients): about 40-50%.
    let heavy = counts["a"];
    assert!(heavy > counts["b"] && heavy > counts["d"], "weight 2 should get the most: {counts:?}");
}

// ---- consistent = true ------------------------------------------------------

/// Which backend each client /24 reaches through a portico with `servers`.
async fn portico_placement(servers: &[Server<'_>], consistent: bool, nets: &[(u8, u8)]) -> Vec<String> {
    let portico = start_portico(&portico_toml(servers, "ip_hash", consistent)).await;
    let sources: Vec<Ipv4Addr> = nets.iter().map(|&n| client(n, 1)).collect();
    let names = route_all(portico.addr(0), &sources).await;
    portico.shutdown().await;
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hash_moves_only_the_removed_servers_clients() {
    let backends = [
        TestBackend::spawn("a").await,
        TestBackend::spawn("b").await,
        TestBackend::spawn("c").await,
        TestBackend::spawn("d").await,
    ];
    let all: Vec<Server<'_>> = backends.iter().map(Server::plain).collect();
    // Remove "c", a server in the middle of the list.
    let fewer: Vec<Server<'_>> = backends.iter().filter(|b| b.name() != "c").map(Server::plain).collect();
    let nets = client_nets();
    let n = nets.len();

    // consistent = true: only c's clients move, and they are about a quarter.
    let before = portico_placement(&all, true, &nets).await;
    let after = portico_placement(&fewer, true, &nets).await;
    let mut moved = 0;
    let mut wrongly_moved = Vec::new();
    for (k, net) in nets.iter().enumerate() {
        if before[k] != after[k] {
            moved += 1;
            if before[k] != "c" {
                wrongly_moved.push(format!("127.{}.{}.0/24: {} -> {}", net.0, net.1, before[k], after[k]));
            }
        }
    }
    let on_c = before.iter().filter(|s| *s == "c").count();
    assert!(
        wrongly_moved.is_empty(),
        "consistent hash moved clients of servers that stayed:\n{}",
        wrongly_moved.join("\n")
    );
    assert_eq!(moved, on_c, "every client of the removed server moves, and no other");
    assert!(moved > 0, "no client was on the removed server");
    assert!(moved * 100 <= n * 35, "consistent hash moved {moved} of {n} /24s (more than 35%)");

    // Plain ip_hash (nginx's, proven equal above): most clients move.
    let before = portico_placement(&all, false, &nets).await;
    let after = portico_placement(&fewer, false, &nets).await;
    let plain_moved = before.iter().zip(&after).filter(|(x, y)| x != y).count();
    assert!(plain_moved * 100 > n * 50, "nginx-compatible ip_hash moved only {plain_moved} of {n} /24s");
    eprintln!(
        "removing 1 of 4 servers moved {moved}/{n} clients with consistent = true, {plain_moved}/{n} with ip_hash"
    );
}
