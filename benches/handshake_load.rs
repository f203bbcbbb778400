//! Full-handshake load for scenario 4 of `benches/load/compare.sh`: CONNS
//! connections at a time, each a new TCP connection, a full TLS handshake (the
//! client keeps no session; in TLS 1.3 rustls still offers resumption, so the
//! server issues its tickets as it would to a browser's first visit),
//! `GET PATH HTTP/1.0` and the answer read to the end.
//!
//! ```text
//! cargo bench --bench handshake_load --no-run   # prints the binary's path
//! $B 127.0.0.1:8443 3 16 /small                 # ADDR SECONDS CONNS PATH
//! HSLOAD {"connections":1234,"errors":0,"resumed":0,"wall_s":3.001,"first_error":""}
//! ```
//!
//! Why not `openssl s_time -new`: OpenSSL 3's client spends about 1.4 ms of CPU
//! per connection here, so `s_time` processes beside the backends run out of
//! CPU before the proxy does, and the rate measures the clients (steps 20 and
//! 21 of `docs/performance-log.md`). rustls's client does the same handshake
//! (TLS 1.3, X25519, the server's signature checked) for much less, which
//! leaves an RSA proxy as the limit; against ECDSA portico still outruns it. The
//! certificate chain is not checked (the certificates are self-signed), as
//! with `s_time`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustls::client::Resumption;
use rustls::{ClientConfig, HandshakeKind};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Default)]
struct Counts {
    connections: AtomicU64,
    errors: AtomicU64,
    resumed: AtomicU64,
}

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    // `cargo bench` runs every bench target with no arguments: nothing to do.
    let [addr, seconds, conns, path] = args.as_slice() else {
        if !args.is_empty() {
            eprintln!("usage: handshake_load ADDR SECONDS CONNS PATH");
            std::process::exit(2);
        }
        return Ok(());
    };
    let duration = Duration::from_secs_f64(seconds.parse()?);
    let conns: usize = conns.parse()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
    // One thread, as one s_time process is: taskset puts it beside the backends.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(run(addr.clone(), duration, conns, request))
}

async fn run(addr: String, duration: Duration, conns: usize, request: String) -> Result<(), BoxError> {
    let mut config = ClientConfig::builder_with_provider(portico::tls::provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(portico::tls::accept_any_server_cert())
        .with_no_client_auth();
    // Stores nothing: every handshake is full. rustls's TLS 1.3 ClientHello
    // offers resumption (psk_dhe_ke) all the same, so servers issue tickets.
    config.resumption = Resumption::disabled();
    let connector = TlsConnector::from(Arc::new(config));
    let counts = Arc::new(Counts::default());
    let first_error = Arc::new(std::sync::Mutex::new(String::new()));
    let request = Arc::new(request);
    let start = Instant::now();
    let deadline = start + duration;
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..conns {
        let (connector, counts, first_error, request, addr) =
            (connector.clone(), counts.clone(), first_error.clone(), request.clone(), addr.clone());
        workers.spawn(async move {
            let mut answer = Vec::with_capacity(1024);
            while Instant::now() < deadline {
                answer.clear();
                match one_connection(&connector, &addr, &request, &mut answer).await {
                    Ok(kind) => {
                        counts.connections.fetch_add(1, Ordering::Relaxed);
                        if kind == Some(HandshakeKind::Resumed) {
                            counts.resumed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(e) => {
                        counts.errors.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut first) = first_error.lock()
                            && first.is_empty()
                        {
                            *first = e.to_string().replace('"', "'");
                        }
                    }
                }
            }
        });
    }
    while workers.join_next().await.is_some() {}
    let first = first_error.lock().map(|f| f.clone()).unwrap_or_default();
    println!(
        "HSLOAD {{\"connections\":{},\"errors\":{},\"resumed\":{},\"wall_s\":{:.3},\"first_error\":\"{first}\"}}",
        counts.connections.load(Ordering::Relaxed),
        counts.errors.load(Ordering::Relaxed),
        counts.resumed.load(Ordering::Relaxed),
        start.elapsed().as_secs_f64(),
    );
    Ok(())
}

/// One connection: handshake, request, the whole answer, which must be a 200.
async fn one_connection(
    connector: &TlsConnector,
    addr: &str,
    request: &str,
    answer: &mut Vec<u8>,
) -> Result<Option<HandshakeKind>, BoxError> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let mut tls = connector.connect(ServerName::try_from("localhost")?, tcp).await?;
    let kind = tls.get_ref().1.handshake_kind();
    tls.write_all(request.as_bytes()).await?;
    tls.flush().await?;
    // A server may close without close_notify once the answer is out; what
    // matters is that a whole 200 arrived.
    if let Err(e) = tls.read_to_end(answer).await
        && e.kind() != std::io::ErrorKind::UnexpectedEof
    {
        return Err(e.into());
    }
    if !(answer.starts_with(b"HTTP/1.1 200") || answer.starts_with(b"HTTP/1.0 200")) {
        let line = answer.split(|&b| b == b'\r').next().unwrap_or_default();
        return Err(format!("answer was not a 200: {:?}", String::from_utf8_lossy(line)).into());
    }
    Ok(kind)
}
