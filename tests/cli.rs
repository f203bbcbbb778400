//! The `portico` binary: check, version and help, cert, and `run` with its
//! signals (SIGTERM, SIGHUP, SIGUSR1).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use http::StatusCode;
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_portico");

fn portico(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap_or_else(|e| panic!("run portico {args:?}: {e}"))
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn show(output: &Output) -> String {
    format!(
        "status {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
        output.status,
        stdout(output),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

// ---------------------------------------------------------------------------
// check, --version, help

#[test]
fn check_prints_ok_for_a_good_file() {
    let dir = TempDir::new("cli-check");
    let file = dir.join("good.toml");
    write(
        &file,
        "[upstream.a]\nservers = [\"127.0.0.1:1\"]\n\n[[server]]\nlisten = [\"127.0.0.1:0\"]\nproxy_pass = \"a\"\n",
    );
    let output = portico(&["check", "-c", path_str(&file)]);
    assert!(output.status.success(), "{}", show(&output));
    assert_eq!(stdout(&output), "ok\n", "{}", show(&output));
}

#[test]
fn check_prints_every_error_with_its_position() {
    let dir = TempDir::new("cli-check-bad");
    let file = dir.join("bad.toml");
    write(&file, "[upstream.a]\nservers = [\"127.0.0.1:1\"]\n\n[[server]]\nlisten = [\"x\"]\nproxy_pass = \"b\"\n");
    let output = portico(&["check", "-c", path_str(&file)]);
    assert_eq!(output.status.code(), Some(1), "{}", show(&output));
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{}", show(&output));
    let prefix = format!("{}:", file.display());
    assert!(lines[0].starts_with(&format!("{prefix}5:11: ")), "{}", show(&output));
    assert!(lines[0].contains("listen \"x\""), "{}", show(&output));
    assert!(lines[1].starts_with(&format!("{prefix}6:14: ")), "{}", show(&output));
    assert!(lines[1].contains("\"b\""), "{}", show(&output));
    assert!(!text.contains("ok\n"));
}

#[test]
fn check_names_an_unknown_key_with_its_position() {
    let dir = TempDir::new("cli-check-key");
    let file = dir.join("bad.toml");
    write(
        &file,
        "[upstream.a]\nservers = [\"127.0.0.1:1\"]\n\n[[server]]\nlisten = [\"127.0.0.1:0\"]\nproxy_pass = \"a\"\nbogus = 1\n",
    );
    let output = portico(&["check", "-c", path_str(&file)]);
    assert_eq!(output.status.code(), Some(1), "{}", show(&output));
    let text = stdout(&output);
    assert!(text.starts_with(&format!("{}:7:1: ", file.display())), "{}", show(&output));
    assert!(text.contains("bogus"), "{}", show(&output));
}

#[test]
fn check_of_a_missing_file_fails() {
    let dir = TempDir::new("cli-check-missing");
    let output = portico(&["check", "-c", path_str(&dir.join("absent.toml"))]);
    assert_eq!(output.status.code(), Some(1), "{}", show(&output));
    assert!(!stdout(&output).contains("ok"), "{}", show(&output));
}

/// `portico run` stops at start with one line per cause: each error's text
/// already names what it wraps, so the cause must not be printed twice.
fn assert_fails_to_start(config: &str, dir: &TempDir, expected: &[&str]) {
    let file = dir.join("portico.toml");
    write(&file, config);
    let output = portico(&["run", "-c", path_str(&file)]);
    assert_eq!(output.status.code(), Some(1), "{}", show(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("portico: "), "{}", show(&output));
    for part in expected {
        assert_eq!(stderr.matches(part).count(), 1, "{part:?} once: {}", show(&output));
    }
}

#[test]
fn run_with_a_key_that_is_not_the_certificates_says_so_once() {
    let dir = TempDir::new("cli-run-keypair");
    let (a, b) = (TestCert::new(&["a.test"]), TestCert::new(&["b.test"]));
    let config = format!(
        "[upstream.u]\nservers = [\"127.0.0.1:1\"]\n\n[[server]]\nlisten = [\"127.0.0.1:0\"]\nproxy_pass = \"u\"\n\
         tls = {{ cert = {}, key = {} }}\n",
        toml_path(&a.cert_path()),
        toml_path(&b.key_path())
    );
    let at = format!("{}:7:7: cannot load the certificate and key", dir.join("portico.toml").display());
    assert_fails_to_start(&config, &dir, &[&at, "key does not match certificate"]);
}

#[test]
fn run_with_an_unwritable_pid_file_names_the_file_and_the_cause_once() {
    let dir = TempDir::new("cli-run-pid");
    let pid = dir.join("absent/portico.pid");
    let config = format!(
        "[runtime]\npid_file = {}\n\n[upstream.u]\nservers = [\"127.0.0.1:1\"]\n\n\
         [[server]]\nlisten = [\"127.0.0.1:0\"]\nproxy_pass = \"u\"\n",
        toml_path(&pid)
    );
    let what = format!("cannot write the pid file {}", pid.display());
    assert_fails_to_start(&config, &dir, &[&what, "No such file or directory"]);
}

#[test]
fn version() {
    let output = portico(&["--version"]);
    assert!(output.status.success(), "{}", show(&output));
    assert_eq!(stdout(&output), format!("portico {}\n", env!("CARGO_PKG_VERSION")));
}

fn assert_help(args: &[&str]) {
    let output = portico(args);
    assert!(output.status.success(), "portico {args:?}: {}", show(&output));
    assert!(stdout(&output).contains("Usage: portico"), "portico {args:?}: {}", show(&output));
}

#[test]
fn help_everywhere() {
    for args in [
        &["help"][..],
        &["--help"],
        &["-h"],
        &["run", "--help"],
        &["check", "--help"],
        &["demo", "--help"],
        &["help", "run"],
        &["help", "check"],
        &["help", "demo"],
    ] {
        assert_help(args);
    }
    let output = portico(&["run", "--help"]);
    assert!(stdout(&output).contains("--config"), "{}", show(&output));
}

#[test]
fn help_on_cert() {
    assert_help(&["cert", "--help"]);
    assert_help(&["help", "cert"]);
}

#[test]
fn help_on_import_nginx() {
    assert_help(&["import-nginx", "--help"]);
    assert_help(&["help", "import-nginx"]);
}

#[test]
fn cert_writes_a_usable_certificate_and_a_private_key() {
    let dir = TempDir::new("cli-cert");
    let out = dir.join("certs");
    let output = portico(&["cert", "--name", "a.test", "--out", path_str(&out)]);
    assert!(output.status.success(), "{}", show(&output));
    let (crt, key) = (out.join("a.test.crt"), out.join("a.test.key"));
    assert!(std::fs::read_to_string(&crt).unwrap().contains("BEGIN CERTIFICATE"));
    assert!(std::fs::read_to_string(&key).unwrap().contains("PRIVATE KEY"));
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "key mode {mode:o}");

    let config = dir.join("portico.toml");
    write(
        &config,
        &format!(
            "[upstream.a]\nservers = [\"127.0.0.1:1\"]\n\n[[server]]\nlisten = [\"127.0.0.1:0\"]\nserver_name = [\"a.test\"]\ntls = {{ cert = {}, key = {} }}\nproxy_pass = \"a\"\n",
            toml_path(&crt),
            toml_path(&key)
        ),
    );
    let output = portico(&["check", "-c", path_str(&config)]);
    assert!(output.status.success(), "{}", show(&output));
    assert_eq!(stdout(&output), "ok\n", "{}", show(&output));
}

// ---------------------------------------------------------------------------
// run and signals

/// `portico run -c FILE` as a child process, killed if the test ends early.
struct Process {
    child: Child,
    addr: SocketAddr,
    config: PathBuf,
    stderr: PathBuf,
}

impl Process {
    /// Writes `run_config` (on a free port) to `dir/portico.toml` and starts it.
    async fn run(dir: &TempDir, backend: &TestBackend, runtime: &str, server: &str) -> Process {
        let port = child_port();
        let config = dir.join("portico.toml");
        write(&config, &run_config(port, backend, runtime, server));
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        Process::start(&config, addr, dir).await
    }

    /// Starts it and waits until `addr` accepts connections.
    async fn start(config: &Path, addr: SocketAddr, dir: &TempDir) -> Process {
        let stderr = dir.join("stderr.txt");
        let child = Command::new(BIN)
            .args(["run", "-c", path_str(config)])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let mut process = Process { child, addr, config: config.to_path_buf(), stderr };
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            if let Some(status) = process.child.try_wait().unwrap() {
                panic!("portico run exited with {status}: {}", process.stderr());
            }
            assert!(Instant::now() < deadline, "portico run never listened on {addr}: {}", process.stderr());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        process
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill").arg(format!("-{name}")).arg(self.child.id().to_string()).status().unwrap();
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the process to exit (bounded).
    async fn exit_within(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "portico did not exit within {within:?}: {}", self.stderr());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn get(&self, path: &str) -> Reply {
        let mut client = Client::http1(self.addr).await.unwrap();
        client.get("cli.test", path).await.unwrap()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn run_config(port: u16, backend: &TestBackend, extra_runtime: &str, extra_server: &str) -> String {
    format!(
        "[runtime]\nshutdown_timeout = \"5s\"\n{extra_runtime}\n\n[upstream.pool]\nservers = [\"{}\"]\n\n[[server]]\nlisten = [\"127.0.0.1:{port}\"]\nproxy_pass = \"pool\"\n{extra_server}\n",
        backend.addr()
    )
}

/// Polls `path` until it contains `needle`.
async fn wait_for_text(path: &Path, needle: &str, within: Duration) -> String {
    wait_for_matches(path, needle, 1, within).await
}

/// Polls `path` until it contains `needle` at least `times` times.
async fn wait_for_matches(path: &Path, needle: &str, times: usize, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.matches(needle).count() >= times {
            return text;
        }
        assert!(Instant::now() < deadline, "{} never contained {needle:?} {times} times:\n{text}", path.display());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn run_serves_and_exits_zero_on_sigterm_after_finishing_requests() {
    serves_and_drains_on_sigterm("").await;
}

/// `worker_threads = 1` runs tokio's current-thread scheduler: the same
/// serving, draining and reloading on one thread.
#[tokio::test]
async fn one_worker_thread_serves_reloads_and_drains() {
    serves_and_drains_on_sigterm("worker_threads = 1").await;
    switches_on_sighup_and_ignores_a_broken_file("worker_threads = 1").await;
}

/// `worker_threads = 3` runs three current-thread runtimes, one per thread:
/// the main one and two workers take the accepted connections in turn, and
/// serving, reloading and draining work as with one.
#[tokio::test]
async fn three_worker_threads_take_connections_in_turn_serve_reload_and_drain() {
    connections_go_to_every_worker_thread().await;
    requests_reuse_upstream_connections_of_their_own_thread().await;
    serves_and_drains_on_sigterm("worker_threads = 3").await;
    switches_on_sighup_and_ignores_a_broken_file("worker_threads = 3").await;
}

async fn connections_go_to_every_worker_thread() {
    let dir = TempDir::new("cli-workers");
    let app = TestBackend::spawn("app").await;
    let process = Process::run(&dir, &app, "worker_threads = 3", "").await;
    let pid = process.child.id();
    let workers = worker_threads(pid);
    assert_eq!(workers.len(), 2, "threads named portico-w*: {workers:?}");
    let before: Vec<u64> = workers.iter().map(|&tid| cpu_ns(pid, tid)).collect();
    // Three connections in a row, one request each: one per runtime. A worker
    // that is handed none stays asleep, its CPU time unchanged.
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut client = Client::http1(process.addr).await.unwrap();
        assert_eq!(client.get("cli.test", "/").await.unwrap().text(), "app");
        clients.push(client);
    }
    for (&tid, before) in workers.iter().zip(before) {
        assert!(cpu_ns(pid, tid) > before, "worker thread {tid} ran none of three new connections");
    }
}

/// Two client connections in a row are served on two runtimes. Each opens
/// an upstream connection (two requests at once); afterwards each client's
/// next request goes out on the upstream connection its own thread opened,
/// not on the one released last (which the other thread opened): a request
/// on one thread using another's connection would wake that connection's
/// task across threads.
async fn requests_reuse_upstream_connections_of_their_own_thread() {
    let dir = TempDir::new("cli-workers-pool");
    let app = TestBackend::spawn("app").await;
    let process = Process::run(&dir, &app, "worker_threads = 2", "").await;
    let mut first = Client::http1(process.addr).await.unwrap();
    let mut second = Client::http1(process.addr).await.unwrap();
    // The first answers last, so its upstream connection is the one released last.
    let (slow, quick) = tokio::join!(first.get("cli.test", "/slow?ms=300"), second.get("cli.test", "/slow?ms=50"));
    assert_eq!((slow.unwrap().status, quick.unwrap().status), (StatusCode::OK, StatusCode::OK));
    let upstream_of =
        |path: &str| app.requests().iter().rev().find(|seen| seen.uri.path_and_query().unwrap() == path).unwrap().conn;
    let (of_first, of_second) = (upstream_of("/slow?ms=300"), upstream_of("/slow?ms=50"));
    assert_ne!(of_first, of_second, "two requests at once shared one upstream connection");

    assert_eq!(second.get("cli.test", "/second").await.unwrap().status, StatusCode::OK);
    assert_eq!(upstream_of("/second"), of_second, "the second client's request went out on the first's connection");
    assert_eq!(first.get("cli.test", "/first").await.unwrap().status, StatusCode::OK);
    assert_eq!(upstream_of("/first"), of_first, "the first client's request went out on the second's connection");
    assert_eq!(app.connections(), 2);
}

/// The ids of `pid`'s threads named `portico-w<N>` (the worker runtimes).
fn worker_threads(pid: u32) -> Vec<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|tid| {
            std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm")).is_ok_and(|c| c.starts_with("portico-w"))
        })
        .collect()
}

/// Nanoseconds thread `tid` of `pid` has run (the first field of its schedstat).
fn cpu_ns(pid: u32, tid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat")).unwrap();
    stat.split_whitespace().next().unwrap().parse().unwrap()
}

async fn serves_and_drains_on_sigterm(runtime: &str) {
    let dir = TempDir::new("cli-run");
    let app = TestBackend::spawn("app").await;
    let mut process = Process::run(&dir, &app, runtime, "").await;
    let addr = process.addr;

    let reply = process.get("/hello").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), "app");

    // A request in flight when SIGTERM arrives still gets its answer.
    let in_flight = tokio::spawn(async move {
        let mut client = Client::http1(addr).await.unwrap();
        client.get("cli.test", "/slow?ms=400").await.unwrap()
    });
    let deadline = Instant::now() + Duration::from_secs(2);
    while app.count() < 2 {
        assert!(Instant::now() < deadline, "the slow request never reached the backend");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    process.signal("TERM");

    let reply = tokio::time::timeout(Duration::from_secs(5), in_flight).await.unwrap().unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    let status = process.exit_within(Duration::from_secs(5)).await;
    assert_eq!(status.code(), Some(0), "{}", process.stderr());
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "still listening after exit");
}

#[tokio::test]
async fn sighup_switches_to_a_good_file_and_ignores_a_broken_one() {
    switches_on_sighup_and_ignores_a_broken_file("").await;
}

/// A reload applies the new file, and says which `[runtime]` settings in it
/// wait for a restart instead of leaving them silently ignored.
#[tokio::test]
async fn sighup_names_the_runtime_settings_that_wait_for_a_restart() {
    let dir = TempDir::new("cli-hup-runtime");
    let (a, b) = (TestBackend::spawn("A").await, TestBackend::spawn("B").await);
    let error_log = dir.join("error.log");
    let runtime = format!("error_log = {}\nerror_log_level = \"info\"", toml_path(&error_log));
    let process = Process::run(&dir, &a, &format!("{runtime}\nkeepalive_timeout = \"75s\""), "").await;
    let (port, config) = (process.addr.port(), process.config.clone());

    let changed = format!("{runtime}\nkeepalive_timeout = \"5s\"\nclient_max_body_size = \"1m\"");
    write(&config, &run_config(port, &b, &changed, ""));
    process.signal("HUP");
    let log = wait_for_text(&error_log, "reloaded", Duration::from_secs(5)).await;
    assert_eq!(process.get("/").await.text(), "B", "the rest of the file was not applied");
    let waiting: Vec<&str> = log.lines().filter(|line| line.contains("until portico is restarted")).collect();
    assert_eq!(waiting.len(), 1, "{log}");
    assert!(waiting[0].contains("runtime.keepalive_timeout changed from 75s to 5s"), "{log}");

    // The same file again: the setting still waits, so it is named again
    // (against the value portico started with, not the file loaded last).
    process.signal("HUP");
    let log = wait_for_matches(&error_log, "reloaded", 2, Duration::from_secs(5)).await;
    assert_eq!(log.matches("runtime.keepalive_timeout changed from 75s to 5s").count(), 2, "{log}");
}

async fn switches_on_sighup_and_ignores_a_broken_file(runtime: &str) {
    let dir = TempDir::new("cli-hup");
    let a = TestBackend::spawn("A").await;
    let b = TestBackend::spawn("B").await;
    let error_log = dir.join("error.log");
    let runtime = format!("{runtime}\nerror_log = {}\nerror_log_level = \"info\"", toml_path(&error_log));
    let mut process = Process::run(&dir, &a, &runtime, "").await;
    let (port, config) = (process.addr.port(), process.config.clone());
    assert_eq!(process.get("/").await.text(), "A");

    write(&config, &run_config(port, &b, &runtime, ""));
    process.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let reply = process.get("/").await;
        assert_eq!(reply.status, StatusCode::OK, "a request failed during the reload");
        if reply.text() == "B" {
            break;
        }
        assert!(Instant::now() < deadline, "SIGHUP never switched to B: {}", process.stderr());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let broken = run_config(port, &a, &runtime, "").replace("proxy_pass = \"pool\"", "proxy_pass = \"nowhere\"");
    let broken_line = broken.lines().position(|l| l.contains("nowhere")).unwrap() + 1;
    write(&config, &broken);
    process.signal("HUP");
    let log = wait_for_text(&error_log, "nowhere", Duration::from_secs(5)).await;
    let position = format!("{}:{broken_line}:", config.display());
    assert!(log.contains(&position), "the refused reload's error has no file:line:col ({position}):\n{log}");

    for _ in 0..5 {
        let reply = process.get("/").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.text(), "B", "the broken file replaced the working configuration");
    }
    process.signal("TERM");
    assert_eq!(process.exit_within(Duration::from_secs(5)).await.code(), Some(0), "{}", process.stderr());
}

#[tokio::test]
async fn sigusr1_reopens_the_access_log() {
    let dir = TempDir::new("cli-usr1");
    let app = TestBackend::spawn("app").await;
    let log = dir.join("logs/access.log");
    let rotated = dir.join("logs/access.log.1");
    let mut process = Process::run(&dir, &app, "", &format!("access_log = {}", toml_path(&log))).await;

    assert_eq!(process.get("/before").await.status, StatusCode::OK);
    wait_for_text(&log, "/before", Duration::from_secs(2)).await;
    std::fs::rename(&log, &rotated).unwrap();
    process.signal("USR1");
    // The reopen creates the file again; lines after that go to it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !log.exists() {
        assert!(Instant::now() < deadline, "SIGUSR1 did not recreate {}: {}", log.display(), process.stderr());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(process.get("/after").await.status, StatusCode::OK);
    let text = wait_for_text(&log, "/after", Duration::from_secs(2)).await;
    assert_eq!(text.lines().count(), 1, "{text}");

    process.signal("TERM");
    assert_eq!(process.exit_within(Duration::from_secs(5)).await.code(), Some(0), "{}", process.stderr());
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert_eq!(old.lines().count(), 1, "{old}");
    assert!(old.contains("\"GET /before HTTP/1.1\" 200 3 "), "{old}");
    assert_eq!(std::fs::read_to_string(&log).unwrap(), text);
}

/// Garbage instead of a ClientHello, 500 times: a line for the first, a count
/// for the rest (rate-limited per listener), and portico keeps serving TLS.
#[tokio::test]
async fn a_flood_of_failed_tls_handshakes_logs_a_line_and_a_count() {
    let dir = TempDir::new("cli-flood");
    let app = TestBackend::spawn("app").await;
    let cert = TestCert::new(&["cli.test"]);
    let error_log = dir.join("error.log");
    let runtime = format!("error_log = {}", toml_path(&error_log));
    // Its readiness probe is one more failed handshake (a connection closed at once).
    let mut process = Process::run(&dir, &app, &runtime, &format!("tls = {}", cert.toml_tls())).await;
    let addr = process.addr;

    const GARBAGE: usize = 500;
    for _ in 0..GARBAGE {
        let answer =
            raw_request_within(addr, b"GET / HTTP/1.1\r\nHost: cli.test\r\n\r\n", Duration::from_secs(5)).await;
        assert!(answer.len() < 100, "garbage got an answer: {answer:?}");
    }
    let mut client = Client::https(addr, "cli.test", &cert.roots(), &[]).await.unwrap();
    let reply = client.get("cli.test", "/after").await.unwrap();
    assert_eq!((reply.status, reply.text().as_str()), (StatusCode::OK, "app"));
    drop(client);

    process.signal("TERM");
    assert_eq!(process.exit_within(Duration::from_secs(10)).await.code(), Some(0), "{}", process.stderr());
    let log = std::fs::read_to_string(&error_log).unwrap();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("TLS handshake")).collect();
    assert!(!lines.is_empty() && lines.len() <= 3, "expected one line and a count, got:\n{log}");
    assert!(lines[0].contains(" WARN ") && lines[0].contains("failed"), "{log}");
    // Every failure is accounted for: one per line written, plus the counts.
    let counted: usize = lines
        .iter()
        .filter_map(|line| {
            let (before, _) = line.split_once(" similar suppressed")?;
            before.rsplit('(').next()?.parse::<usize>().ok()
        })
        .sum();
    let handshakes = lines.iter().filter(|l| l.contains("failed")).count() + counted;
    assert!((GARBAGE..=GARBAGE + 1).contains(&handshakes), "{handshakes} handshakes accounted for:\n{log}");
    assert!(log.contains("similar suppressed since the previous line"), "{log}");
}

/// Malformed HTTP/1 requests, 200 times: hyper's connection errors are logged
/// (at info) one per interval with a count, not once per connection.
#[tokio::test]
async fn a_flood_of_malformed_requests_logs_a_line_and_a_count() {
    let dir = TempDir::new("cli-flood-h1");
    let app = TestBackend::spawn("app").await;
    let error_log = dir.join("error.log");
    let runtime = format!("error_log = {}\nerror_log_level = \"info\"", toml_path(&error_log));
    let mut process = Process::run(&dir, &app, &runtime, "").await;
    let addr = process.addr;

    const MALFORMED: usize = 200;
    for _ in 0..MALFORMED {
        let answer = raw_request(addr, b"GET / HTTP/1.1\r\nHost: cli.test\r\nX(A): one\r\n\r\n").await;
        assert_eq!(raw_status(&answer), Some(400), "{}", String::from_utf8_lossy(&answer));
    }
    assert_eq!(process.get("/after").await.status, StatusCode::OK);
    process.signal("TERM");
    assert_eq!(process.exit_within(Duration::from_secs(10)).await.code(), Some(0), "{}", process.stderr());
    let log = std::fs::read_to_string(&error_log).unwrap();
    let lines: Vec<&str> =
        log.lines().filter(|l| l.contains("connection from") || l.contains("connection errors on")).collect();
    assert!(!lines.is_empty() && lines.len() <= 3, "expected one line and a count, got:\n{log}");
    assert!(lines.iter().any(|l| l.contains("similar suppressed since the previous line")), "{log}");
}

/// On a `proxy_protocol` server, a connection that does not begin with the
/// header is closed unanswered, with a warning that asks about the balancer.
/// Connections that close before sending anything, as the readiness probes
/// here and balancers' TCP checks do, are not worth a line.
#[tokio::test]
async fn a_connection_without_its_proxy_header_is_warned_about() {
    let dir = TempDir::new("cli-proxy-header");
    let app = TestBackend::spawn("app").await;
    let error_log = dir.join("error.log");
    let runtime = format!("error_log = {}\ntrusted_proxies = [\"127.0.5.0/24\"]", toml_path(&error_log));
    let mut process = Process::run(&dir, &app, &runtime, "proxy_protocol = true").await;

    let answer = raw_request(process.addr, b"GET / HTTP/1.1\r\nHost: cli.test\r\n\r\n").await;
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    let log = wait_for_text(&error_log, "no PROXY protocol header", Duration::from_secs(10)).await;
    assert!(
        log.contains(
            r#"the connection began with "GET / HTTP/1.1\r\n"; is the load balancer in front set to send one?"#
        ),
        "{log}"
    );
    process.signal("TERM");
    assert_eq!(process.exit_within(Duration::from_secs(10)).await.code(), Some(0), "{}", process.stderr());
    let log = std::fs::read_to_string(&error_log).unwrap();
    assert!(!log.contains("closed before"), "{log}");
    assert_eq!(app.count(), 0);
}
