//! `portico demo`: the quickstart configuration with two built-in backend
//! nodes, so a first run needs nothing else.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use thiserror::Error;

use crate::config::{self, ConfigErrors};

/// The configuration `portico demo` serves (also `config/quickstart.toml`).
pub const QUICKSTART: &str = include_str!("../../config/quickstart.toml");

/// The demo backend nodes' addresses, as the quickstart configuration names them.
pub const NODES: [(&str, &str); 2] = [("node-1", "127.0.0.1:18081"), ("node-2", "127.0.0.1:18082")];

/// Arguments of `portico demo`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {}

/// Why the demo could not run.
#[derive(Debug, Error)]
pub enum DemoError {
    #[error("the built-in quickstart configuration is invalid: {0}")]
    Config(#[from] ConfigErrors),
    #[error("cannot start the runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("cannot start demo node on {addr}: {source} (is another demo running?)")]
    Node { addr: String, source: std::io::Error },
    #[error(transparent)]
    Start(#[from] crate::StartError),
}

/// Runs the demo until Ctrl-C.
pub fn run(_args: &DemoArgs) -> Result<(), DemoError> {
    let _ = tracing_subscriber::fmt().with_max_level(tracing::Level::INFO).with_target(false).try_init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(DemoError::Runtime)?;
    runtime.block_on(async {
        let snapshot = config::parse_str(QUICKSTART, Path::new("config/quickstart.toml"))?;
        for warning in &snapshot.warnings {
            tracing::warn!("{warning}");
        }
        for (name, addr) in NODES {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| DemoError::Node { addr: addr.to_owned(), source })?;
            tokio::spawn(serve_node(name, listener));
        }
        let running = crate::start(snapshot).await?;
        let addrs: Vec<String> = running.local_addrs().iter().map(ToString::to_string).collect();
        println!("portico demo: listening on {}; demo nodes on 127.0.0.1:18081 and :18082", addrs.join(", "));
        println!("Try (self-signed certificate, hence -k):");
        println!(
            "  curl -k https://localhost:8443/                      # answered by node-1, then node-2 (round robin)"
        );
        println!("  curl -k --http2 https://localhost:8443/hello         # h2 from the client, HTTP/1.1 to the node");
        println!("  curl -k -i https://localhost:8443/login              # the node sets a JSESSIONID cookie");
        println!("  curl -i http://localhost:8080/some/path?q=1          # 301 to https, path and query kept");
        println!("  curl -k -H 'X-Forwarded-For: 203.0.113.7' https://localhost:8443/  # see the forwarded headers");
        println!("Ctrl-C stops it.");
        let _ = tokio::signal::ctrl_c().await;
        running.shutdown().await;
        Ok(())
    })
}

/// Serves one demo node on `listener`: answers with its name and the
/// forwarded headers it received; `/login` sets a JSESSIONID cookie.
pub async fn serve_node(name: &'static str, listener: tokio::net::TcpListener) {
    let sessions = Arc::new(AtomicU64::new(0));
    loop {
        let Ok((stream, peer)) = listener.accept().await else { continue };
        let sessions = sessions.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| answer(name, peer, sessions.clone(), request));
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(
    name: &'static str,
    peer: SocketAddr,
    sessions: Arc<AtomicU64>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut text = format!("{name} answered {} {}\nfrom {peer}\n", request.method(), request.uri());
    for (key, value) in request.headers() {
        let key = key.as_str();
        if key == "host" || key.starts_with("x-forwarded-") || key == "cookie" {
            text.push_str(&format!("{key}: {}\n", String::from_utf8_lossy(value.as_bytes())));
        }
    }
    let mut response = Response::new(Full::new(Bytes::from(text)));
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; charset=utf-8"));
    response.headers_mut().insert("x-node", header::HeaderValue::from_static(name));
    if request.uri().path() == "/login" {
        let n = sessions.fetch_add(1, Ordering::Relaxed);
        let cookie = format!("JSESSIONID={name}-{n:08X}; Path=/; HttpOnly; Secure");
        if let Ok(value) = header::HeaderValue::from_str(&cookie) {
            response.headers_mut().insert(header::SET_COOKIE, value);
        }
    }
    Ok(response)
}
