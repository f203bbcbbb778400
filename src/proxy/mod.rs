//! Handles one request: route it to a virtual server and location, then answer
//! directly (redirect, return) or forward it to an upstream and stream back.

pub mod body;
pub mod exchange;
pub mod forwarded;
pub mod gzip;
pub mod websocket;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::{Body as _, Incoming};
use thiserror::Error;

use self::body::{Progress, RequestBody, ResponseBody, UpstreamBody};
use self::exchange::Exchange;
use crate::config::runtime::{Action, LimitReq, LogLevel, Snapshot, VirtualServer};
use crate::limit_req::{Decision, Limit, Verdict, Zone, ZoneKey, admit_all};
use crate::log::{AccessLog, ErrorLog, Logs};
use crate::template::RequestContext;
use crate::tls::ClientCertificate;
use crate::upstream::http1::{self, Upload};
use crate::upstream::pool::ConnectError;
use crate::upstream::{self, Pool};
use crate::vhost::{self, Router};

/// The longest portico waits at start for mandatory health checks to pass a
/// server (`Site::first_health_checks`).
const FIRST_CHECKS_WAIT: Duration = Duration::from_secs(5);

/// Everything requests need from one configuration generation: the snapshot,
/// its routing tables, open logs and upstream pools.
pub struct Site {
    pub snapshot: Arc<Snapshot>,
    /// Index-aligned with `snapshot.upstreams`.
    pub pools: Vec<Arc<Pool>>,
    /// Index-aligned with `snapshot.listeners`.
    pub listeners: Vec<ListenerState>,
    /// Index-aligned with `snapshot.limit_zones`; kept across reloads that
    /// leave a zone's name, key, rate and size alone, as nginx keeps its zones.
    pub zones: Vec<Arc<crate::limit_req::Zone>>,
}

/// One listen address's routing table, servers and TLS acceptor.
pub struct ListenerState {
    pub router: Router,
    /// Index-aligned with the listener's `servers`.
    pub servers: Vec<Arc<ServerState>>,
    pub tls: Option<crate::tls::ServerTls>,
}

/// One virtual server with its open log files.
pub struct ServerState {
    pub config: Arc<VirtualServer>,
    pub access_log: Option<AccessLog>,
    pub error_log: Option<ErrorLog>,
    /// `/metrics` counters, kept across reloads (`crate::metrics::server`).
    pub metrics: Arc<crate::metrics::ServerMetrics>,
    /// `config.headers`, prepared for rendering per request.
    pub headers: forwarded::HeaderPlan,
}

/// Why a site could not be built from a snapshot.
#[derive(Debug, Error)]
pub enum SiteError {
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("cannot open log {}: {source}", path.display())]
    Log { path: std::path::PathBuf, source: std::io::Error },
}

impl Site {
    /// Opens logs and builds routing tables, TLS acceptors and pools. Pools of
    /// `previous` whose upstream is unchanged are kept, with their health and
    /// idle connections.
    pub fn build(snapshot: Arc<Snapshot>, logs: &Logs, previous: Option<&Site>) -> Result<Site, SiteError> {
        let pools = snapshot
            .upstreams
            .iter()
            .map(|upstream| {
                let old = previous.and_then(|site| site.pools.iter().find(|pool| pool.upstream.name == upstream.name));
                match old {
                    Some(pool)
                        if pool.upstream.same_as(upstream)
                            && same_sticky(&pool.upstream, upstream)
                            && pool.upstream.sticky.as_ref().map(|s| &s.store)
                                == upstream.sticky.as_ref().map(|s| &s.store) =>
                    {
                        pool.clone()
                    }
                    Some(pool) => {
                        // Sessions name servers by address: they stay valid for the
                        // servers still present, whatever else changed.
                        let sticky = pool.sticky.clone().filter(|_| same_sticky(&pool.upstream, upstream));
                        if let Some(table) = &sticky {
                            // A removed server that comes back later starts afresh.
                            for gone in pool
                                .upstream
                                .peers
                                .iter()
                                .filter(|old| !upstream.peers.iter().any(|new| new.address == old.address))
                            {
                                table.forget_server(&gone.address);
                            }
                        }
                        // The store is kept when its settings are (Pool::new checks).
                        let new = Pool::new(upstream.clone(), sticky, pool.store.clone());
                        new.inherit_checks(pool);
                        Arc::new(new)
                    }
                    None => Arc::new(Pool::new(upstream.clone(), None, None)),
                }
            })
            .collect();
        let zones = snapshot
            .limit_zones
            .iter()
            .map(|zone| {
                let kept = previous.and_then(|site| {
                    let at = site.snapshot.limit_zones.iter().position(|old| old == zone)?;
                    site.zones.get(at).cloned()
                });
                kept.unwrap_or_else(|| Arc::new(crate::limit_req::Zone::new(zone.rate, zone.capacity)))
            })
            .collect();
        let level = snapshot.runtime.error_log_level;
        let mut listeners = Vec::with_capacity(snapshot.listeners.len());
        for listener in &snapshot.listeners {
            let mut servers = Vec::with_capacity(listener.servers.len());
            for server in &listener.servers {
                let access_log = match &server.access_log {
                    Some(path) => Some(
                        logs.access(path, server.access_log_format.clone())
                            .map_err(|source| SiteError::Log { path: path.clone(), source })?,
                    ),
                    None => None,
                };
                let error_log = match &server.error_log {
                    Some(path) => {
                        Some(logs.error(path, level).map_err(|source| SiteError::Log { path: path.clone(), source })?)
                    }
                    None => None,
                };
                let metrics = crate::metrics::server(&server.name, listener.addr);
                let headers = forwarded::HeaderPlan::new(&server.headers);
                servers.push(Arc::new(ServerState { config: server.clone(), access_log, error_log, metrics, headers }));
            }
            let tls = if listener.tls { Some(crate::tls::ServerTls::new(listener)?) } else { None };
            listeners.push(ListenerState { router: Router::new(listener), servers, tls });
        }
        Ok(Site { snapshot, pools, listeners, zones })
    }

    /// Starts the health checks of the pools that have none running yet, and
    /// stops those of `previous`'s pools this site does not keep. Called once
    /// the site serves, so that a site built and then refused checks nothing.
    pub fn start_health_checks(&self, previous: Option<&Site>) {
        for pool in &self.pools {
            upstream::health_check::start(pool);
        }
        for old in previous.map_or(&[][..], |site| &site.pools) {
            if !self.pools.iter().any(|pool| Arc::ptr_eq(pool, old)) {
                old.retire();
            }
        }
    }

    /// At start, waits until every upstream with `mandatory` health checks has
    /// a server that passed (or none left to check), for at most its check
    /// `timeout` and never more than `FIRST_CHECKS_WAIT`: accepting before
    /// that would answer the first clients with 502. Their connections wait
    /// in the listen backlog meanwhile. All checks began together, so each
    /// upstream's limit counts from now, not from the end of the last wait.
    pub async fn first_health_checks(&self) {
        let started = tokio::time::Instant::now();
        for pool in &self.pools {
            let (Some(checks), Some(check)) = (pool.checks(), &pool.upstream.health_check) else { continue };
            if !check.mandatory {
                continue;
            }
            let wait = check.timeout.min(FIRST_CHECKS_WAIT);
            if tokio::time::timeout_at(started + wait, checks.first_pass()).await.is_err() {
                tracing::warn!(
                    "upstream \"{}\": no server passed its first health check within {wait:?}; \
                     its requests get 502 until one does",
                    pool.upstream.name
                );
            }
        }
    }

    /// The index of the listener configured at `addr`.
    pub fn listener_index(&self, addr: SocketAddr) -> Option<usize> {
        self.snapshot.listeners.iter().position(|l| l.addr == addr)
    }
}

/// What a request's `limits` (one or more, `limit_req`) decide, naming the
/// limit that decided. One limit counts in one step (`Zone::admit`, the
/// address made into a key without rendering anything when its zone has no
/// `key`); several are checked all before any counts (`admit_all`).
fn limit_requests<'l>(
    site: &Site,
    limits: &'l [LimitReq],
    client: IpAddr,
    ctx: &RequestContext<'_>,
) -> Verdict<&'l LimitReq> {
    if let [limit] = limits {
        let Some(zone) = site.zones.get(limit.zone) else { return Verdict::Pass };
        let Some(key) = zone_key(site, limit, zone, client, ctx) else { return Verdict::Pass };
        return match zone.admit(key, limit.burst, limit.delay_free) {
            Decision::Pass => Verdict::Pass,
            Decision::Delay(wait) => Verdict::Delay(wait, limit),
            Decision::Reject => Verdict::Reject(limit),
        };
    }
    let pending: Vec<(Limit<'_>, &LimitReq)> = limits
        .iter()
        .filter_map(|limit| {
            let zone = site.zones.get(limit.zone)?;
            let key = zone_key(site, limit, zone, client, ctx);
            Some((Limit { zone, key, burst: limit.burst, delay_free: limit.delay_free }, limit))
        })
        .collect();
    match admit_all(&pending, std::time::Instant::now()) {
        Verdict::Pass => Verdict::Pass,
        Verdict::Delay(wait, limit) => Verdict::Delay(wait, *limit),
        Verdict::Reject(limit) => Verdict::Reject(*limit),
    }
}

/// What `limit`'s zone counts a request from `client` under: the address,
/// or the hash of the zone's `key` rendered; `None` when that renders empty
/// (nginx does not count such a request).
fn zone_key(site: &Site, limit: &LimitReq, zone: &Zone, client: IpAddr, ctx: &RequestContext<'_>) -> Option<ZoneKey> {
    match site.snapshot.limit_zones.get(limit.zone).and_then(|z| z.key.as_ref()) {
        None => Some(ZoneKey::Addr(crate::template::canonical_ip(client))),
        Some(key) => zone.hash_key(&key.render(ctx)),
    }
}

/// The name of the zone `limit` counts in, for log lines.
fn zone_name<'s>(site: &'s Site, limit: &LimitReq) -> &'s str {
    site.snapshot.limit_zones.get(limit.zone).map_or("", |zone| zone.name.as_str())
}

/// Whether two upstream versions can share one sticky table (same cookie,
/// same bounds).
fn same_sticky(old: &crate::config::runtime::Upstream, new: &crate::config::runtime::Upstream) -> bool {
    match (&old.sticky, &new.sticky) {
        (Some(a), Some(b)) => {
            a.learn.eq_ignore_ascii_case(&b.learn) && a.capacity == b.capacity && a.timeout == b.timeout
        }
        (None, None) => true,
        _ => false,
    }
}

/// One client connection: where it came in and from whom.
pub struct ConnInfo {
    pub site: Arc<Site>,
    /// Index into `site.listeners`.
    pub listener: usize,
    pub remote: SocketAddr,
    pub local: SocketAddr,
    /// What the TLS handshake agreed (`$ssl_protocol`, `$ssl_cipher`);
    /// `None` on a plain connection.
    pub tls_session: Option<crate::tls::TlsSession>,
    /// The connection's serial number since start (`$connection`).
    pub id: u64,
    /// Whether `remote` may pass on its X-Forwarded-For (`trusted_proxies`).
    pub peer_trusted: bool,
    /// Header values that are the same for each request on this connection.
    pub values: forwarded::ConnValues,
    /// What the TLS handshake established about a client certificate, when
    /// it ran under a server's `verify_client`.
    pub client_cert: Option<Arc<ClientCertificate>>,
}

impl ConnInfo {
    /// Context for a connection accepted on `listener` from `remote`, over
    /// TLS when it has a `tls_session`.
    pub fn new(
        site: Arc<Site>,
        listener: usize,
        remote: SocketAddr,
        local: SocketAddr,
        tls_session: Option<crate::tls::TlsSession>,
        client_cert: Option<Arc<ClientCertificate>>,
    ) -> ConnInfo {
        static CONNECTIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let id = CONNECTIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let runtime = &site.snapshot.runtime;
        let peer_trusted = runtime.trusted_proxies.is_empty() || runtime.is_trusted_proxy(remote.ip());
        ConnInfo {
            site,
            listener,
            remote,
            local,
            tls_session,
            id,
            peer_trusted,
            values: forwarded::ConnValues::default(),
            client_cert,
        }
    }

    /// `$scheme`: `https` over TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        scheme(self.tls_session.is_some())
    }

    /// The same connection on a reloaded site's listener `listener`, keeping
    /// its number (a number is skipped, as nginx's numbers skip too).
    pub fn on_site(&self, site: Arc<Site>, listener: usize) -> ConnInfo {
        let mut fresh =
            ConnInfo::new(site, listener, self.remote, self.local, self.tls_session, self.client_cert.clone());
        fresh.id = self.id;
        fresh
    }

    /// The client's address for a request with `headers`: the connection's
    /// peer, or the address a trusted proxy names in `real_ip_header`.
    fn client(&self, headers: &http::HeaderMap) -> SocketAddr {
        let runtime = &self.site.snapshot.runtime;
        match &runtime.real_ip {
            // `peer_trusted` is exact here: real_ip needs trusted_proxies.
            Some(real_ip) if self.peer_trusted => {
                real_ip.client(headers, &runtime.trusted_proxies).unwrap_or(self.remote)
            }
            _ => self.remote,
        }
    }

    /// Whether this connection's handshake asked for a client certificate as
    /// `server` does (nginx answers 421 too when a request's Host names a
    /// server whose `ssl_verify_client` the SNI-chosen handshake did not run).
    fn meets_client_auth(&self, server: &VirtualServer) -> bool {
        match (&server.client_auth, &self.client_cert) {
            (None, _) => true,
            (Some(wanted), Some(made)) => wanted.same_as(&made.policy),
            (Some(_), None) => false,
        }
    }
}

/// `$scheme` of a connection over TLS or not.
fn scheme(tls: bool) -> &'static str {
    if tls { "https" } else { "http" }
}

/// Answers one request. Never fails: every problem becomes a status code.
/// The body is `None` for a request that has none, as portico's own HTTP/1
/// loop serves it (`listener::simple_http1`); hyper's requests carry theirs.
///
/// Not an `async fn`: hyper keeps this future for each connection, and an
/// `async fn` holds a copy of its arguments beside the locals they move to.
/// Taking the request apart here, outside the `async` block, keeps one copy.
pub fn handle(
    conn: Arc<ConnInfo>,
    mut request: Request<Option<Incoming>>,
    number: u64,
) -> impl Future<Output = Result<Response<ResponseBody>, hyper::Error>> {
    let client_upgrade = (request.version() == Version::HTTP_11 && forwarded::is_upgrade_request(request.headers()))
        .then(|| hyper::upgrade::on(&mut request));
    let (mut parts, incoming) = request.into_parts();
    async move {
        // Cheap clones of shared bytes, so that the headers can change below
        // while templates still read the request as it came.
        let request_host = request_host(&parts);
        let host_header = match &request_host {
            Some(RequestHost::Header(value)) => Some(value),
            _ => None,
        };
        let http_host = request_host.as_ref().map_or("", RequestHost::as_str);
        let listener = &conn.site.listeners[conn.listener];
        let host = vhost::normalize_host(http_host);
        let server = listener.servers[listener.router.route(&host)].clone();
        let host: &str = if host.is_empty() { &server.config.name } else { &host };
        let client = conn.client(&parts.headers);
        let exchange = Exchange::new(server.clone(), client, &parts, host, &conn, number);
        let location = vhost::location(&server.config, parts.uri.path());
        // A location's own response headers replace the server's, for every
        // answer to a request it takes, as nginx's add_header in a location.
        let response_headers =
            location.and_then(|l| l.response_headers.as_deref()).unwrap_or(&server.config.response_headers);
        if let Some(status) = ambiguous(&parts, conn.site.snapshot.runtime.max_request_header_size) {
            exchange.error(LogLevel::Info, format_args!("rejected: {status}"));
            let mut response = answer(exchange, status);
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            set_response_headers(response_headers, response.headers_mut());
            body::keep_sent_head(&mut response);
            return Ok(response);
        }

        // An answer made here leaves the request body unread; HTTP/1 cannot
        // reuse the connection then, and the client must be told so.
        let close_after_answer =
            parts.version < Version::HTTP_2 && !incoming.as_ref().is_none_or(Incoming::is_end_stream);
        // `to`: a redirect's Location.
        let direct_to = |exchange, status, to: Option<HeaderValue>| {
            let mut response = answer(exchange, status);
            if close_after_answer {
                response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            set_response_headers(response_headers, response.headers_mut());
            if let Some(to) = to {
                response.headers_mut().insert(header::LOCATION, to);
            }
            body::keep_sent_head(&mut response);
            response
        };
        let direct = |exchange, status| direct_to(exchange, status, None);
        if !conn.meets_client_auth(&server.config) {
            exchange.error(
                LogLevel::Info,
                format_args!(
                    "421: the TLS handshake (by SNI) did not ask for the client certificate this server's verify_client wants"
                ),
            );
            return Ok(direct(exchange, StatusCode::MISDIRECTED_REQUEST));
        }
        let access = location.and_then(|l| l.access.as_ref()).unwrap_or(&server.config.access);
        if !access.permits(client.ip()) {
            // nginx's words and level, so that log watchers written for it still match.
            exchange.error(LogLevel::Error, format_args!("access forbidden by rule"));
            return Ok(direct(exchange, StatusCode::FORBIDDEN));
        }
        let request_uri = parts.uri.path_and_query().cloned();
        let ctx = RequestContext {
            host,
            http_host,
            remote: client,
            peer: conn.remote.ip(),
            scheme: conn.scheme(),
            server_port: conn.local.port(),
            server_name: &server.config.name,
            request_uri: request_uri.as_ref().map_or("/", |pq| pq.as_str()),
            headers: &parts.headers,
            peer_trusted: conn.peer_trusted,
            client_cert: conn.client_cert.as_deref(),
            request_id: exchange.request_id(),
            tls: conn.tls_session,
            method: parts.method.as_str(),
            version: parts.version,
            server_addr: conn.local.ip(),
            connection: conn.id,
        };
        // A location's list replaces the server's entirely, as nginx's lines.
        let limits = location.and_then(|l| l.limit_req.as_deref()).unwrap_or(&server.config.limit_req);
        if !limits.is_empty() {
            match limit_requests(&conn.site, limits, client.ip(), &ctx) {
                Verdict::Pass => {}
                Verdict::Delay(wait, limit) => {
                    exchange.error(
                        LogLevel::Warn,
                        format_args!("delaying request by {wait:?}, by zone \"{}\"", zone_name(&conn.site, limit)),
                    );
                    // Boxed: only a delayed request pays for a timer in its future.
                    Box::pin(tokio::time::sleep(wait)).await;
                }
                Verdict::Reject(limit) => {
                    // nginx's words and level, for log watchers written for it.
                    exchange.error(
                        LogLevel::Error,
                        format_args!("limiting requests by zone \"{}\"", zone_name(&conn.site, limit)),
                    );
                    return Ok(direct(exchange, limit.status));
                }
            }
        }
        let Some(location) = location else {
            return Ok(direct(exchange, StatusCode::NOT_FOUND));
        };
        match &location.action {
            Action::Return { status } => Ok(direct(exchange, *status)),
            Action::Redirect { location, status } => {
                let target = location.render(&ctx);
                Ok(direct_to(exchange, *status, HeaderValue::from_maybe_shared(Bytes::from(target)).ok()))
            }
            Action::Proxy { upstream } => {
                // A location's own gzip (or `gzip = false`) replaces the server's.
                let gzip = location.gzip.as_ref().map_or(server.config.gzip.as_ref(), Option::as_ref);
                let accepts_gzip =
                    gzip.is_some() && gzip::request_accepts(&parts.method, parts.version, &parts.headers);
                let mut rendered = server.headers.render(&ctx, host_header, &conn.values);
                forwarded::remove_hop_by_hop(&mut parts.headers, client_upgrade.is_some());
                if parts.version == Version::HTTP_2 {
                    forwarded::join_cookies(&mut parts.headers);
                }
                // h2 clients send `:authority`, HTTP/1.0 ones may send nothing:
                // an HTTP/1.1 upstream needs a Host either way.
                server.headers.default_to(&mut rendered, &mut parts.headers, header::HOST, || {
                    HeaderValue::from_str(if http_host.is_empty() { host } else { http_host }).ok()
                });
                let Some(pool) = conn.site.pools.get(*upstream).cloned() else {
                    return Ok(direct(exchange, StatusCode::BAD_GATEWAY));
                };
                let head = UpstreamHead {
                    method: parts.method,
                    uri: origin_form(&parts.uri),
                    headers: parts.headers,
                    plan: &server.headers,
                    rendered,
                };
                // Awaited through a pin: `.await` on the future itself would
                // keep room for it twice in this future (rust-lang/rust#62958).
                let mut response =
                    std::pin::pin!(forward(&conn, &server.config, pool, head, incoming, client_upgrade, exchange))
                        .await;
                if let Some(gzip) = gzip {
                    gzip::apply(gzip, accepts_gzip, &mut response);
                }
                set_response_headers(response_headers, response.headers_mut());
                body::keep_sent_head(&mut response);
                Ok(response)
            }
        }
    }
}

/// A server's or location's response headers, on a response about to be
/// sent: each replaces the header of its name, or removes it.
fn set_response_headers(rules: &[(header::HeaderName, Option<HeaderValue>)], headers: &mut http::HeaderMap) {
    for (name, value) in rules {
        match value {
            Some(value) => {
                headers.insert(name.clone(), value.clone());
            }
            None => {
                headers.remove(name);
            }
        }
    }
}

/// The longest request target or single header line accepted (nginx's
/// `large_client_header_buffers` default); longer ones are 414 / 431.
const MAX_LINE: usize = 8 * 1024;

/// Why an HTTP/1 request must be refused rather than forwarded: framing or
/// routing that two parsers could read differently (request smuggling), or a
/// line or header block over its limit. hyper has already refused most
/// malformed requests; these are the ones it accepts.
fn ambiguous(parts: &http::request::Parts, max_header_block: usize) -> Option<StatusCode> {
    if parts.version >= Version::HTTP_2 {
        return None;
    }
    // Content-Length with Transfer-Encoding: hyper hides it (it drops the
    // Content-Length); the connection's framing tracker saw it on the wire.
    if parts.extensions.get::<crate::framing::Ambiguous>().is_some() {
        return Some(StatusCode::BAD_REQUEST);
    }
    // One pass over the headers (rather than a lookup for each name); the
    // checks below keep their order, so the first problem found decides.
    let (mut transfer_encodings, mut chunked) = (0, false);
    let (mut hosts, mut host) = (0, None);
    let (mut block, mut longest) = (0, 0);
    for (name, value) in &parts.headers {
        if name == header::TRANSFER_ENCODING {
            transfer_encodings += 1;
            chunked = value.as_bytes().eq_ignore_ascii_case(b"chunked");
        } else if name == header::HOST {
            hosts += 1;
            host = host.or(Some(value));
        }
        let line = name.as_str().len() + value.len() + 4;
        longest = longest.max(line);
        block += line;
    }
    if transfer_encodings > 1 || (transfer_encodings == 1 && !chunked) {
        // Only plain `chunked` is unambiguous: other codings would be dropped
        // along with the hop-by-hop header.
        return Some(StatusCode::BAD_REQUEST);
    }
    if hosts > 1 {
        return Some(StatusCode::BAD_REQUEST);
    }
    if let (Some(authority), Some(host)) = (parts.uri.authority(), host)
        && !authority.as_str().as_bytes().eq_ignore_ascii_case(host.as_bytes())
    {
        return Some(StatusCode::BAD_REQUEST);
    }
    if parts.uri.path_and_query().map_or(0, |pq| pq.as_str().len()) > MAX_LINE {
        return Some(StatusCode::URI_TOO_LONG);
    }
    (longest > MAX_LINE || block > max_header_block).then_some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
}

/// The request line and headers as they go upstream: the request's own
/// `headers` (hop-by-hop ones gone), overridden by the header rules' values.
struct UpstreamHead<'s> {
    method: Method,
    uri: Uri,
    headers: http::HeaderMap,
    plan: &'s forwarded::HeaderPlan,
    rendered: forwarded::Rendered,
}

/// Why one attempt at an upstream failed.
#[derive(Debug, Error)]
enum AttemptError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("upstream timed out ({0:?} without a response)")]
    Timeout(Duration),
    #[error(transparent)]
    Upstream(http1::Error),
}

impl AttemptError {
    /// Whether the server closed the connection without a byte of answer.
    fn closed_before_answer(&self) -> bool {
        matches!(self, AttemptError::Upstream(http1::Error::ClosedBeforeAnswer))
    }

    fn status(&self) -> StatusCode {
        match self {
            AttemptError::Connect(ConnectError::Timeout(_)) | AttemptError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::BAD_GATEWAY,
        }
    }
}

/// Sends the request to the session's server or the balancer's pick,
/// retrying where nothing is lost by it, and streams the answer back.
///
/// Not an `async fn`, for the reason given at `handle`.
#[allow(clippy::manual_async_fn, reason = "an async fn would hold its arguments twice")]
fn forward(
    conn: &ConnInfo,
    server: &VirtualServer,
    pool: Arc<Pool>,
    head: UpstreamHead<'_>,
    incoming: Option<Incoming>,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    mut exchange: Exchange,
) -> impl Future<Output = Response<ResponseBody>> {
    async move {
        let upstream = &pool.upstream;
        let read_timeout = server.read_timeout.unwrap_or(upstream.read_timeout);
        let send_timeout = server.send_timeout.unwrap_or(upstream.send_timeout);
        let body_empty = incoming.as_ref().is_none_or(Incoming::is_end_stream);
        let limit = conn.site.snapshot.runtime.client_max_body_size;
        if let (Some(limit), Some(length)) = (limit, incoming.as_ref().and_then(|body| body.size_hint().exact()))
            && length > limit
        {
            exchange.error(LogLevel::Info, format_args!("request body of {length} bytes exceeds client_max_body_size"));
            return answer(exchange, StatusCode::PAYLOAD_TOO_LARGE);
        }
        // The body's task stamps its progress; with no body (most requests)
        // there is nothing to share, and no allocation for it.
        let (unshared, shared);
        let (progress, request_body): (&Progress, _) = match incoming {
            Some(incoming) if !body_empty => {
                shared = Arc::new(Progress::new(false));
                exchange.count_body(&shared);
                (&*shared, RequestBody::new(incoming, shared.clone(), limit))
            }
            // An empty body of hyper's is kept until the answer, as before.
            kept => {
                unshared = (Progress::new(true), kept);
                (&unshared.0, RequestBody::empty())
            }
        };
        let mut body = Some(request_body);
        // A request may be sent again only when nothing of it is lost by doing so.
        let repeatable = body_empty && is_idempotent(&head.method);
        let client_ip: IpAddr = exchange.client().ip();
        // Sticky sessions: the session the request carries, and its server if known.
        let sticky = pool.sticky.as_ref().zip(upstream.sticky.as_ref());
        let session = sticky.and_then(|(_, config)| {
            upstream::sticky::request_session(&head.headers, head.uri.path(), &config.learn).map(str::to_owned)
        });
        let session_peer = match (sticky, &session) {
            (Some((table, _)), Some(value)) => session_server(&pool, table, value).await,
            _ => None,
        };
        let mut tried = Tried::default();
        let mut last_error: Option<StatusCode> = None;
        let head_request = head.method == Method::HEAD;

        loop {
            // A known session goes to its server while that server is usable;
            // otherwise (and on retries) the pool's balancing method decides.
            let sticky_pick = session_peer.filter(|p| !tried.contains(*p) && pool.is_usable(*p));
            let Some(peer) = sticky_pick.or_else(|| pool.pick(client_ip, |p| tried.contains(p))) else {
                let status = last_error.unwrap_or(StatusCode::BAD_GATEWAY);
                if last_error.is_none() {
                    exchange.upstream_error(format_args!("no live upstreams in \"{}\"", upstream.name));
                }
                return answer(exchange, status);
            };
            tried.insert(peer);
            exchange.set_upstream(&pool, peer);

            let connection = match pool.connect(peer).await {
                Ok(connection) => {
                    exchange.connected(&connection.conn);
                    connection
                }
                Err(e) => {
                    // Nothing was sent: any request may go to the next server.
                    exchange.upstream_error(format_args!("{e}"));
                    pool.report_failure(peer);
                    let status = AttemptError::from(e).status();
                    exchange.attempt_failed(Some(status), None);
                    last_error = Some(status);
                    continue;
                }
            };
            let Some(request_body) = body.take() else {
                let status = last_error.unwrap_or(StatusCode::BAD_GATEWAY);
                exchange.attempt_failed(Some(status), Some(&connection.conn));
                return answer(exchange, status);
            };
            let mut awaiting = AwaitingAnswer { connection: None, pool: &pool, bodiless: body_empty, head_request };
            let held = awaiting.connection.insert(connection);
            let sent = send(held, &head, request_body, progress, read_timeout, send_timeout).await;
            // Sent or not, answered or not, this request waits no more: the
            // connection is taken back (it is there: put in just above).
            let Some(connection) = awaiting.connection.take() else { continue };
            let (response, upload) = match sent {
                Ok(answered) => answered,
                Err((error, unsent)) => {
                    if progress.is_too_large() {
                        // The client's fault, not the server's: no failure counted.
                        exchange.error(LogLevel::Info, format_args!("request body exceeds client_max_body_size"));
                        exchange.attempt_failed(None, Some(&connection.conn));
                        return answer(exchange, StatusCode::PAYLOAD_TOO_LARGE);
                    }
                    if progress.client_failed() {
                        // Bad chunking or a client gone mid-upload: not the server's
                        // fault, so it is neither marked failed nor tried again.
                        exchange.error(LogLevel::Info, format_args!("client request body failed: {error}"));
                        exchange.attempt_failed(None, Some(&connection.conn));
                        let mut response = answer(exchange, StatusCode::BAD_REQUEST);
                        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
                        return response;
                    }
                    // A kept-alive connection the server closed meanwhile (the
                    // pool checks, but a close can cross the request on the
                    // wire) is not a failure of the server: the request goes
                    // again when nothing of it reached the server, or when
                    // repeating it loses nothing.
                    let retry_free =
                        connection.reused && (unsent.is_some() || (repeatable && error.closed_before_answer()));
                    if let Some(unsent) = unsent {
                        body = Some(unsent);
                    } else if repeatable {
                        body = Some(RequestBody::empty());
                    }
                    // Listed as an attempt either way, as nginx lists it.
                    exchange.attempt_failed(Some(error.status()), Some(&connection.conn));
                    if retry_free {
                        tried.remove(peer);
                        continue;
                    }
                    exchange.upstream_error(format_args!("{error}"));
                    pool.report_failure(peer);
                    if body.is_none() {
                        return answer(exchange, error.status());
                    }
                    last_error = Some(error.status());
                    continue;
                }
            };
            pool.report_success(peer);
            if let Some((table, config)) = sticky {
                let learner = Learner { table, store: pool.store.as_deref(), name: &config.learn };
                learner.learn(&response.headers, session.as_deref(), session_peer, &pool, peer);
            }
            let status = response.status;
            exchange.set_status(status);
            exchange.keep_upstream_headers(&response.headers);

            if status == StatusCode::SWITCHING_PROTOCOLS {
                if let Some(client_upgrade) = client_upgrade {
                    let mut switched = Response::new(ResponseBody::empty());
                    *switched.status_mut() = status;
                    *switched.headers_mut() = response.headers;
                    // Counted to the switch: the tunnel's bytes are not.
                    exchange.upstream_traffic(&connection.conn);
                    tokio::spawn(websocket::tunnel(client_upgrade, connection.conn, read_timeout, exchange));
                    return switched;
                }
                exchange.upstream_error(format_args!("upstream switched protocols without being asked"));
                exchange.attempt_failed(Some(StatusCode::BAD_GATEWAY), Some(&connection.conn));
                return answer(exchange, StatusCode::BAD_GATEWAY);
            }

            let mut headers = response.headers;
            forwarded::remove_hop_by_hop(&mut headers, false);
            let body = UpstreamBody::new(response.body, upload, read_timeout, pool.clone(), connection, exchange);
            let mut streamed = Response::new(ResponseBody::Upstream(Box::new(body)));
            *streamed.status_mut() = status;
            *streamed.headers_mut() = headers;
            return streamed;
        }
    }
}

/// The server a request's session belongs to, if it is known and still in the
/// upstream: this node's table first; on a miss, the shared store (when one is
/// configured), whose answer is cached in the table.
async fn session_server(pool: &Pool, table: &upstream::sticky::StickyTable, value: &str) -> Option<usize> {
    let now = std::time::Instant::now();
    let Some(store) = &pool.store else {
        return table.lookup(value, now).and_then(|address| pool.peer_index(&address));
    };
    if let Some(address) = store.lookup_local(table, value, now) {
        return pool.peer_index(&address);
    }
    // Boxed: the Redis round trip's state is needed on a local miss only, and
    // inline it would grow every request's future (see `handle`).
    let address = Box::pin(store.lookup_remote(value)).await?;
    // A server Redis still names but that is gone from the upstream is ignored
    // (and not cached, so the table only ever holds configured addresses).
    let peer = pool.peer_index(&address)?;
    table.learn(value, &pool.upstream.peers[peer].address, std::time::Instant::now());
    Some(peer)
}

/// Where an accepted response's session news goes: this node's table and,
/// when configured, the shared store.
struct Learner<'a> {
    table: &'a upstream::sticky::StickyTable,
    store: Option<&'a upstream::sticky_store::StickyStore>,
    /// The session cookie's name.
    name: &'a str,
}

impl Learner<'_> {
    /// A Set-Cookie of the session cookie binds its value to `peer`; a deletion
    /// forgets it; a request whose session landed elsewhere than its binding
    /// rebinds it to `peer`.
    fn learn(
        &self,
        headers: &http::HeaderMap,
        session: Option<&str>,
        session_peer: Option<usize>,
        pool: &Pool,
        peer: usize,
    ) {
        let now = std::time::Instant::now();
        let address = &pool.upstream.peers[peer].address;
        let bind = |value: &str| {
            self.table.learn(value, address, now);
            if let Some(store) = self.store {
                store.learned(value, address);
            }
        };
        match upstream::sticky::response_session(headers, self.name) {
            Some(upstream::sticky::Learned::Set(value)) => bind(value),
            Some(upstream::sticky::Learned::Deleted) => {
                if let Some(value) = session {
                    self.table.forget(value);
                    if let Some(store) = self.store {
                        store.forgotten(value);
                    }
                }
            }
            None => {
                if let Some(value) = session
                    && session_peer != Some(peer)
                {
                    bind(value);
                }
            }
        }
    }
}

/// An upstream connection while its answer's head is awaited. Dropped with
/// it still there, the request was dropped (its client went away) before an
/// answer came: if all of the request went, the answer is read on without it
/// and the connection kept (`body::drain`), else the connection closes.
struct AwaitingAnswer<'p> {
    connection: Option<crate::upstream::pool::Connection>,
    pool: &'p Arc<Pool>,
    /// The request has no body: once its head is out, all of it is.
    bodiless: bool,
    head_request: bool,
}

impl Drop for AwaitingAnswer<'_> {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take()
            && self.bodiless
            && connection.conn.awaits_head()
        {
            let unread = body::Unread::Answer { head_request: self.head_request };
            body::drain(connection, unread, self.pool);
        }
    }
}

/// Sends the request and waits for the response head. The wait times out
/// only after `read_timeout` (`send_timeout` while the body is still
/// uploading) without the request body moving, so a long upload is not cut
/// short. What is left of the upload comes back with the head; the body
/// comes back with the error when the request head could not be written.
async fn send(
    connection: &mut crate::upstream::pool::Connection,
    head: &UpstreamHead<'_>,
    body: RequestBody,
    progress: &Progress,
    read_timeout: Duration,
    send_timeout: Duration,
) -> Result<(http1::ResponseHead, Option<Upload>), (AttemptError, Option<RequestBody>)> {
    let target = head.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let head_request = head.method == Method::HEAD;
    let mut upload = None;
    let answered = {
        let conn = &mut connection.conn;
        let upload = &mut upload;
        let response = async move {
            let framing = http1::framing(&head.headers, &body);
            let fields = head.plan.fields(&head.headers, &head.rendered);
            if let Err(e) = conn.send_head(&head.method, target, fields, framing).await {
                return Err((AttemptError::Upstream(e), Some(body)));
            }
            *upload = Upload::new(body, framing);
            std::future::poll_fn(|cx| conn.poll_head(cx, upload, head_request))
                .await
                .map_err(|e| (AttemptError::Upstream(e), None))
        };
        tokio::pin!(response);
        loop {
            let limit = if progress.is_done() { read_timeout } else { send_timeout };
            let deadline = progress.last() + limit;
            tokio::select! {
                result = &mut response => break result,
                () = tokio::time::sleep_until(deadline.into()) => {
                    let limit = if progress.is_done() { read_timeout } else { send_timeout };
                    if progress.last() + limit <= std::time::Instant::now() {
                        break Err((AttemptError::Timeout(limit), None));
                    }
                }
            }
        }
    };
    answered.map(|head| (head, upload))
}

/// The servers one request has tried: a bit per server up to 64, without
/// allocating; beyond that a list.
#[derive(Default)]
struct Tried {
    bits: u64,
    more: Vec<usize>,
}

impl Tried {
    fn contains(&self, peer: usize) -> bool {
        match u32::try_from(peer).ok().and_then(|p| 1u64.checked_shl(p)) {
            Some(bit) => self.bits & bit != 0,
            None => self.more.contains(&peer),
        }
    }

    fn insert(&mut self, peer: usize) {
        match u32::try_from(peer).ok().and_then(|p| 1u64.checked_shl(p)) {
            Some(bit) => self.bits |= bit,
            None if !self.more.contains(&peer) => self.more.push(peer),
            None => {}
        }
    }

    fn remove(&mut self, peer: usize) {
        match u32::try_from(peer).ok().and_then(|p| 1u64.checked_shl(p)) {
            Some(bit) => self.bits &= !bit,
            None => self.more.retain(|p| *p != peer),
        }
    }
}

fn is_idempotent(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE)
}

/// The Host as the client sent it, held without copying its bytes.
enum RequestHost {
    Header(HeaderValue),
    Authority(http::uri::Authority),
}

impl RequestHost {
    fn as_str(&self) -> &str {
        match self {
            RequestHost::Header(value) => value.to_str().unwrap_or_default(),
            RequestHost::Authority(authority) => authority.as_str(),
        }
    }
}

/// The Host header, else (h2, absolute-form) the URI's authority.
fn request_host(parts: &http::request::Parts) -> Option<RequestHost> {
    match parts.headers.get(header::HOST).filter(|v| v.to_str().is_ok()) {
        Some(host) => Some(RequestHost::Header(host.clone())),
        None => parts.uri.authority().cloned().map(RequestHost::Authority),
    }
}

/// The request target toward the upstream: path and query only.
fn origin_form(uri: &Uri) -> Uri {
    match uri.path_and_query() {
        Some(pq) => Uri::from(pq.clone()),
        None => Uri::from_static("/"),
    }
}

/// A response made here, with the access log line written at once, or
/// when it is sent if the line prints some of its final head.
fn answer(mut exchange: Exchange, status: StatusCode) -> Response<ResponseBody> {
    exchange.set_status(status);
    let page = error_page(status);
    let typed = page.is_some();
    let body = if exchange.keeps_sent_head() {
        ResponseBody::answered(page, exchange)
    } else {
        // A HEAD answer goes without its body, and is logged so.
        let sent = if exchange.is_head() { 0 } else { page.as_ref().map_or(0, |p| p.len() as u64) };
        exchange.finish(sent, true);
        ResponseBody::Full(page)
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    if typed {
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    }
    response
}

/// The body of an answer made here: `404 Not Found` and the like for
/// errors and redirects, nothing for the others.
fn error_page(status: StatusCode) -> Option<Bytes> {
    (status.is_client_error() || status.is_server_error() || status.is_redirection()).then(|| {
        let reason = status.canonical_reason().unwrap_or("");
        Bytes::from(format!("{} {reason}\n", status.as_u16()))
    })
}
