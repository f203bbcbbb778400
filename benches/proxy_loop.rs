//! Whole-proxy harness for instruction counts and idle memory: portico runs in
//! one process (run that one under `valgrind --tool=callgrind` or `perf stat`),
//! the TLS backend and the client in another, so that only the proxy is counted.
//!
//! ```text
//! cargo bench --bench proxy_loop --no-run      # prints the binary's path
//! B=target/release/deps/proxy_loop-HASH
//! $B certs /tmp/pl                             # CA + leaf for localhost
//! valgrind --tool=callgrind $B proxy /tmp/pl < fifo &   # exits on EOF of stdin
//! $B drive /tmp/pl 20000                       # backend + N keep-alive requests over one TLS connection
//! $B idle /tmp/pl 1000 PROXY_PID               # VmRSS delta of 1000 idle TLS connections (one request each)
//! ```
//! `benches/load/proxy_loop.sh` runs the whole sequence. Scenario 1 of
//! `docs/performance.md`: TLS to the client, HTTPS with keep-alive to the backend,
//! a 128-byte response.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, pem::PemObject};
use tokio::net::{TcpListener, TcpStream};

const PROXY: &str = "127.0.0.1:18443";
const BACKEND: &str = "127.0.0.1:19443";
const BODY: &[u8; 128] = &[b'x'; 128];

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let dir = args.get(1).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/tmp/portico-proxy-loop"));
    let number = |i: usize, default: usize| args.get(i).and_then(|n| n.parse().ok()).unwrap_or(default);
    match args.first().map(String::as_str) {
        Some("certs") => certs(&dir),
        Some("proxy") => runtime(1)?.block_on(proxy(&dir)),
        Some("drive") => runtime(1)?.block_on(drive(&dir, number(2, 20_000), number(3, 1))),
        Some("idle") => runtime(1)?.block_on(idle(&dir, number(2, 1000), number(3, 0))),
        // `cargo bench` runs every bench target with no arguments: nothing to do.
        _ => Ok(()),
    }
}

fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()
}

fn certs(dir: &Path) -> Result<(), BoxError> {
    std::fs::create_dir_all(dir)?;
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name.push(DnType::CommonName, "portico proxy_loop CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate()?;
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])?.signed_by(&leaf_key, &issuer)?;
    std::fs::write(dir.join("cert.pem"), leaf.pem())?;
    std::fs::write(dir.join("key.pem"), leaf_key.serialize_pem())?;
    std::fs::write(dir.join("ca.pem"), ca_cert.pem())?;
    Ok(())
}

/// portico with scenario 1's shape; runs until stdin closes.
async fn proxy(dir: &Path) -> Result<(), BoxError> {
    let config = format!(
        r#"
[upstream.b]
servers = ["{BACKEND}"]
tls = true
tls_verify = false
keepalive = 32
[[server]]
listen = ["{PROXY}"]
server_name = ["localhost"]
tls = {{ cert = "{cert}", key = "{key}" }}
proxy_pass = "b"
"#,
        cert = dir.join("cert.pem").display(),
        key = dir.join("key.pem").display(),
    );
    let snapshot = portico::config::parse_str(&config, &dir.join("proxy_loop.toml")).map_err(|e| format!("{e:?}"))?;
    let running = portico::start(snapshot).await?;
    println!("READY {}", std::process::id());
    let _ = tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink)
    })
    .await;
    running.shutdown().await;
    Ok(())
}

fn tls_client(dir: &Path) -> Result<tokio_rustls::TlsConnector, BoxError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(dir.join("ca.pem"))?)?;
    let provider = portico::tls::provider();
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn client(connector: &tokio_rustls::TlsConnector) -> Result<Sender, BoxError> {
    let tcp = TcpStream::connect(PROXY).await?;
    tcp.set_nodelay(true)?;
    let tls = connector.connect(ServerName::try_from("localhost")?, tcp).await?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

async fn get(sender: &mut Sender) -> Result<(), BoxError> {
    sender.ready().await?;
    let request = Request::get("/small").header("host", "localhost").body(Empty::new())?;
    let response = sender.send_request(request).await?;
    if !response.status().is_success() {
        return Err(format!("status {}", response.status()).into());
    }
    let body = response.into_body().collect().await?.to_bytes();
    if body.len() != BODY.len() {
        return Err(format!("body of {} bytes", body.len()).into());
    }
    Ok(())
}

/// The TLS backend: 128 bytes for any request.
async fn backend(dir: &Path) -> Result<(), BoxError> {
    let certs = vec![CertificateDer::from_pem_file(dir.join("cert.pem"))?];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from_pem_file(dir.join("key.pem"))?);
    let provider = portico::tls::provider();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind(BACKEND).await?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let service = hyper::service::service_fn(|_: Request<Incoming>| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(BODY))))
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
            });
        }
    });
    Ok(())
}

async fn wait_for_proxy() -> Result<(), BoxError> {
    let addr: SocketAddr = PROXY.parse()?;
    for _ in 0..600 {
        if TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err("proxy did not come up".into())
}

/// Starts the backend and sends `n` requests over `conns` keep-alive TLS connections.
async fn drive(dir: &Path, n: usize, conns: usize) -> Result<(), BoxError> {
    backend(dir).await?;
    wait_for_proxy().await?;
    let connector = tls_client(dir)?;
    let conns = conns.max(1);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..conns {
        let mut sender = client(&connector).await?;
        let share = n / conns + usize::from(i < n % conns);
        tasks.push(tokio::spawn(async move {
            for _ in 0..share {
                get(&mut sender).await?;
            }
            Ok::<_, BoxError>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let elapsed = start.elapsed();
    println!("{n} requests over {conns} connection(s) in {:.3} s", elapsed.as_secs_f64());
    Ok(())
}

fn rss_kib(pid: usize) -> Result<u64, BoxError> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).ok_or("no VmRSS")?;
    Ok(line.split_whitespace().nth(1).ok_or("bad VmRSS")?.parse()?)
}

/// Opens `n` TLS connections to the proxy, one request each, and reports the
/// proxy's VmRSS before and after, with the connections still open.
async fn idle(dir: &Path, n: usize, pid: usize) -> Result<(), BoxError> {
    backend(dir).await?;
    wait_for_proxy().await?;
    let connector = tls_client(dir)?;
    // One warm-up request so that the upstream connection and TLS state exist already.
    get(&mut client(&connector).await?).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = rss_kib(pid)?;
    let mut open = Vec::with_capacity(n);
    for _ in 0..n {
        let mut sender = client(&connector).await?;
        get(&mut sender).await?;
        open.push(sender);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib(pid)?;
    let per = (after.saturating_sub(before)) as f64 / n as f64;
    println!("{n} idle TLS connections: VmRSS {before} KiB -> {after} KiB, {per:.2} KiB per connection");
    drop(open);
    Ok(())
}
