//! Clients over real sockets: HTTP/1.1 or h2, plain or TLS (with SNI, ALPN and
//! the served certificate visible), from a chosen source address.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONNECTION, HOST, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE};
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::{CipherSuite, ProtocolVersion, RootCertStore, SupportedCipherSuite};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

use super::Error;
use super::body::{self, Body};
use super::cert::TestCert;
use super::websocket;

/// How to open a client connection; `Client::http1` and `Client::https` cover
/// the common cases.
///
/// ```ignore
/// let client = Connect::to(addr).source_ip("127.0.1.5")
///     .tls("api.test", cert.roots()).alpn(&["h2", "http/1.1"])
///     .connect().await?;
/// ```
pub struct Connect {
    addr: SocketAddr,
    source: Option<IpAddr>,
    tls: Option<TlsOptions>,
    /// Written as soon as the socket connects (a PROXY protocol header).
    preamble: Vec<u8>,
}

struct TlsOptions {
    sni: String,
    verify: Verify,
    alpn: Vec<Vec<u8>>,
    tls12_only: bool,
    /// Cipher suites to offer, in order (default: portico's own list).
    suites: Option<Vec<SupportedCipherSuite>>,
    /// A certificate (leaf) and key to present when the server asks for one.
    client_cert: Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>,
}

enum Verify {
    Roots(RootCertStore),
    Insecure,
}

impl Connect {
    /// Plain TCP to `addr`, from an ephemeral source address.
    pub fn to(addr: SocketAddr) -> Connect {
        Connect { addr, source: None, tls: None, preamble: Vec::new() }
    }

    /// Sends `bytes` first, before any TLS or HTTP: what a load balancer
    /// speaking the PROXY protocol puts in front of a connection.
    pub fn preamble(mut self, bytes: &[u8]) -> Connect {
        self.preamble = bytes.to_vec();
        self
    }

    /// Binds the client socket to this address (port 0) before connecting,
    /// e.g. `"127.0.1.5"`: any 127.0.0.0/8 address works on Linux.
    pub fn source_ip(mut self, ip: &str) -> Connect {
        self.source = Some(ip.parse().unwrap_or_else(|e| panic!("source ip {ip:?}: {e}")));
        self
    }

    /// Speaks TLS, sending `sni` (an IP address here sends no SNI, as rustls
    /// does) and verifying the server's chain against `roots` for that name.
    pub fn tls(mut self, sni: &str, roots: RootCertStore) -> Connect {
        self.tls = Some(TlsOptions {
            sni: sni.to_owned(),
            verify: Verify::Roots(roots),
            alpn: vec![b"http/1.1".to_vec()],
            tls12_only: false,
            suites: None,
            client_cert: None,
        });
        self
    }

    /// Speaks TLS, sending `sni`, accepting any server certificate (for
    /// `self_signed` servers, and for looking at the certificate a server
    /// picks for a name it has no certificate for).
    pub fn tls_insecure(mut self, sni: &str) -> Connect {
        self.tls = Some(TlsOptions {
            sni: sni.to_owned(),
            verify: Verify::Insecure,
            alpn: vec![b"http/1.1".to_vec()],
            tls12_only: false,
            suites: None,
            client_cert: None,
        });
        self
    }

    /// ALPN protocols to offer (default `http/1.1`; empty offers none). When
    /// the server picks `h2` the client speaks h2. Call after `tls`.
    pub fn alpn(mut self, protocols: &[&str]) -> Connect {
        let tls = self.tls.as_mut().expect("Connect::alpn needs tls first");
        tls.alpn = protocols.iter().map(|p| p.as_bytes().to_vec()).collect();
        self
    }

    /// Offers TLS 1.2 only. Call after `tls`.
    pub fn tls12_only(mut self) -> Connect {
        self.tls.as_mut().expect("Connect::tls12_only needs tls first").tls12_only = true;
        self
    }

    /// Offers these cipher suites, in this order. Call after `tls`.
    pub fn cipher_suites(mut self, suites: &[SupportedCipherSuite]) -> Connect {
        self.tls.as_mut().expect("Connect::cipher_suites needs tls first").suites = Some(suites.to_vec());
        self
    }

    /// Presents `cert`'s leaf (and proves its key) when the server asks for
    /// a client certificate. Call after `tls`.
    pub fn client_cert(mut self, cert: &TestCert) -> Connect {
        self.tls.as_mut().expect("Connect::client_cert needs tls first").client_cert =
            Some((cert.der().clone(), cert.key_der()));
        self
    }

    /// Just the connected TCP socket (source address applied), for raw tests.
    pub async fn tcp(&self) -> std::io::Result<TcpStream> {
        let mut stream = match self.source {
            None => TcpStream::connect(self.addr).await?,
            Some(ip) => {
                let socket = if ip.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
                socket.bind(SocketAddr::new(ip, 0))?;
                socket.connect(self.addr).await?
            }
        };
        stream.set_nodelay(true)?;
        // Nothing to write without a preamble (write_all of nothing returns at once).
        tokio::io::AsyncWriteExt::write_all(&mut stream, &self.preamble).await?;
        Ok(stream)
    }

    /// Connects, completes the TLS handshake if any, and starts HTTP/1.1 or
    /// (when ALPN chose it) h2.
    pub async fn connect(self) -> Result<Client, Error> {
        let tcp = self.tcp().await?;
        let local_addr = tcp.local_addr()?;
        if self.tls.is_none() {
            return Client::over(tcp, local_addr, None, false).await;
        }
        let stream = self.tls_over(tcp).await?;
        let session = stream.get_ref().1;
        let info = TlsInfo {
            peer_certificates: session
                .peer_certificates()
                .map(|certs| certs.iter().map(|c| c.clone().into_owned()).collect())
                .unwrap_or_default(),
            alpn: session.alpn_protocol().map(<[u8]>::to_vec),
            version: session.protocol_version(),
            suite: session.negotiated_cipher_suite().map(|suite| suite.suite()),
        };
        let h2 = info.alpn.as_deref() == Some(b"h2");
        Client::over(stream, local_addr, Some(info), h2).await
    }
}

impl Connect {
    /// Connects and completes the TLS handshake (after `tls`), for tests that
    /// write and read raw bytes.
    pub async fn tls_stream(&self) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Error> {
        self.tls_over(self.tcp().await?).await
    }

    /// The TLS handshake (after `tls`) over a socket the test connected itself.
    pub async fn tls_over(&self, tcp: TcpStream) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Error> {
        let options = self.tls.as_ref().expect("Connect::tls_over needs tls first");
        let connector = TlsConnector::from(Arc::new(options.client_config()?));
        let name = ServerName::try_from(options.sni.clone())?;
        Ok(connector.connect(name, tcp).await?)
    }
}

impl TlsOptions {
    fn client_config(&self) -> Result<rustls::ClientConfig, Error> {
        let mut provider = (*portico::tls::provider()).clone();
        if let Some(suites) = &self.suites {
            provider.cipher_suites.clone_from(suites);
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(provider));
        let builder = if self.tls12_only {
            builder.with_protocol_versions(&[&rustls::version::TLS12])?
        } else {
            builder.with_safe_default_protocol_versions()?
        };
        let builder = match &self.verify {
            Verify::Roots(roots) => builder.with_root_certificates(roots.clone()),
            Verify::Insecure => {
                builder.dangerous().with_custom_certificate_verifier(portico::tls::accept_any_server_cert())
            }
        };
        let mut config = match &self.client_cert {
            Some((leaf, key)) => builder.with_client_auth_cert(vec![leaf.clone()], key.clone_key())?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = self.alpn.clone();
        Ok(config)
    }
}

/// What the TLS handshake settled.
#[derive(Debug, Clone)]
pub struct TlsInfo {
    /// The chain the server sent, leaf first.
    pub peer_certificates: Vec<CertificateDer<'static>>,
    /// The ALPN protocol the server chose.
    pub alpn: Option<Vec<u8>>,
    pub version: Option<ProtocolVersion>,
    pub suite: Option<CipherSuite>,
}

enum Sender {
    H1(http1::SendRequest<Body>),
    H2(http2::SendRequest<Body>),
}

/// One client connection. Requests go one at a time (`&mut self`); later
/// requests reuse the connection (HTTP/1.1 keep-alive, or the h2 connection).
pub struct Client {
    sender: Sender,
    local_addr: SocketAddr,
    tls: Option<TlsInfo>,
    connection: Option<JoinHandle<()>>,
}

impl Client {
    /// HTTP/1.1 over plain TCP.
    pub async fn http1(addr: SocketAddr) -> Result<Client, Error> {
        Connect::to(addr).connect().await
    }

    /// TLS with `sni`, verified against `roots` (e.g. `cert.roots()`), offering
    /// `alpn` (e.g. `&["h2", "http/1.1"]`).
    pub async fn https(addr: SocketAddr, sni: &str, roots: &RootCertStore, alpn: &[&str]) -> Result<Client, Error> {
        Connect::to(addr).tls(sni, roots.clone()).alpn(alpn).connect().await
    }

    async fn over<I>(io: I, local_addr: SocketAddr, tls: Option<TlsInfo>, h2: bool) -> Result<Client, Error>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let io = TokioIo::new(io);
        let (sender, connection) = if h2 {
            let (sender, conn) = http2::handshake(TokioExecutor::new(), io).await?;
            (
                Sender::H2(sender),
                tokio::spawn(async move {
                    let _ = conn.await;
                }),
            )
        } else {
            let (sender, conn) = http1::handshake(io).await?;
            (
                Sender::H1(sender),
                tokio::spawn(async move {
                    let _ = conn.with_upgrades().await;
                }),
            )
        };
        Ok(Client { sender, local_addr, tls, connection: Some(connection) })
    }

    /// `HTTP/1.1` or `HTTP/2`, as negotiated.
    pub fn version(&self) -> Version {
        match self.sender {
            Sender::H1(_) => Version::HTTP_11,
            Sender::H2(_) => Version::HTTP_2,
        }
    }

    /// The client side of the TCP connection.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The TLS handshake's outcome, for TLS clients.
    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    /// The leaf certificate the server presented (TLS clients only).
    pub fn peer_certificate(&self) -> Option<&CertificateDer<'static>> {
        self.tls.as_ref()?.peer_certificates.first()
    }

    /// A request builder for `path` on virtual host `host`: HTTP/1.1 gets an
    /// origin-form URI and a `Host` header, h2 an absolute URI (`:authority`).
    pub fn request(&self, method: Method, host: &str, path: &str) -> http::request::Builder {
        match self.sender {
            Sender::H1(_) => Request::builder().method(method).uri(path).header(HOST, host),
            Sender::H2(_) => {
                let scheme = if self.tls.is_some() { "https" } else { "http" };
                Request::builder().method(method).uri(format!("{scheme}://{host}{path}"))
            }
        }
    }

    /// Sends a request and returns the response head with a streaming body.
    pub async fn send(&mut self, request: Request<Body>) -> Result<Response<Incoming>, Error> {
        Ok(match &mut self.sender {
            Sender::H1(sender) => {
                sender.ready().await?;
                sender.send_request(request).await?
            }
            Sender::H2(sender) => {
                sender.ready().await?;
                sender.send_request(request).await?
            }
        })
    }

    /// Sends a request and reads the whole response.
    pub async fn reply(&mut self, request: Request<Body>) -> Result<Reply, Error> {
        let response = self.send(request).await?;
        Reply::read(response).await
    }

    /// `GET path` on virtual host `host`.
    pub async fn get(&mut self, host: &str, path: &str) -> Result<Reply, Error> {
        self.get_with(host, path, &[]).await
    }

    /// `GET path` on `host` with extra request headers.
    pub async fn get_with(&mut self, host: &str, path: &str, headers: &[(&str, &str)]) -> Result<Reply, Error> {
        let mut builder = self.request(Method::GET, host, path);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        self.reply(builder.body(body::empty())?).await
    }

    /// `POST path` on `host` with this body.
    pub async fn post(&mut self, host: &str, path: &str, body: Body) -> Result<Reply, Error> {
        let request = self.request(Method::POST, host, path).body(body)?;
        self.reply(request).await
    }

    /// Opens a WebSocket on this HTTP/1.1 connection: sends the upgrade,
    /// requires `101` and a correct `Sec-WebSocket-Accept`, and returns the
    /// raw upgraded byte stream.
    pub async fn websocket(&mut self, host: &str, path: &str) -> Result<WebSocket, Error> {
        if !matches!(self.sender, Sender::H1(_)) {
            return Err("WebSocket upgrades need an HTTP/1.1 client".into());
        }
        let key = websocket::new_key();
        let request = self
            .request(Method::GET, host, path)
            .header(UPGRADE, "websocket")
            .header(CONNECTION, "Upgrade")
            .header(SEC_WEBSOCKET_KEY, &key)
            .header(SEC_WEBSOCKET_VERSION, "13")
            .body(body::empty())?;
        let response = self.send(request).await?;
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            let status = response.status();
            let reply = Reply::read(response).await?;
            return Err(format!("WebSocket upgrade answered {status}: {}", reply.text()).into());
        }
        let expected = websocket::accept_key(key.as_bytes());
        let accept = response.headers().get(SEC_WEBSOCKET_ACCEPT);
        if accept.map(|v| v.as_bytes()) != Some(expected.as_bytes()) {
            return Err(format!("Sec-WebSocket-Accept {accept:?}, expected {expected}").into());
        }
        let headers = response.headers().clone();
        let upgraded = hyper::upgrade::on(response).await?;
        Ok(WebSocket { headers, io: TokioIo::new(upgraded) })
    }

    /// Whether the connection can no longer send requests.
    pub fn is_closed(&self) -> bool {
        match &self.sender {
            Sender::H1(sender) => sender.is_closed(),
            Sender::H2(sender) => sender.is_closed(),
        }
    }

    /// Waits until the server (or an error) ends the connection; the client
    /// keeps its end open meanwhile. Bound it with `tokio::time::timeout`.
    pub async fn closed(&mut self) {
        if let Some(connection) = self.connection.take() {
            let _ = connection.await;
        }
    }
}

/// An upgraded WebSocket connection: raw bytes both ways (no framing).
pub struct WebSocket {
    /// The 101 response's headers.
    pub headers: HeaderMap,
    /// `AsyncRead + AsyncWrite`.
    pub io: TokioIo<Upgraded>,
}

/// A whole response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// Reads the rest of a response.
    pub async fn read(response: Response<Incoming>) -> Result<Reply, Error> {
        let (parts, incoming) = response.into_parts();
        let body = incoming.collect().await?.to_bytes();
        Ok(Reply { status: parts.status, version: parts.version, headers: parts.headers, body })
    }

    /// The body as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A response header as text (the first, if repeated).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Every value of a response header, as text.
    pub fn headers_all(&self, name: &str) -> Vec<&str> {
        self.headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect()
    }
}
