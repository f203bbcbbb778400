//! One request's facts kept for its access log line, its error lines and its metrics.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use http::{HeaderValue, Method, Uri, Version};

use super::ServerState;
use super::body::Progress;
use crate::config::runtime::LogLevel;
use crate::log::{AccessLog, AccessRecord, LogFormat, UpstreamAttempt};
use crate::request_id::RequestId;
use crate::upstream::Pool;
use crate::upstream::http1::{Conn, Traffic};

/// What the access log and error lines need to know about one request.
pub struct Exchange {
    server: Arc<ServerState>,
    remote: SocketAddr,
    /// Only read for the access log line.
    started_at: Option<SystemTime>,
    start: Instant,
    method: Method,
    uri: Uri,
    version: Version,
    referer: Option<HeaderValue>,
    user_agent: Option<HeaderValue>,
    /// `$host`; only kept when the access log's format prints it.
    host: String,
    /// `$request_id`, for the header templates and the log line alike.
    request_id: RequestId,
    status: u16,
    upstream: Option<(Arc<Pool>, usize)>,
    /// What only a `[log_format.NAME]` line prints, kept only for one: boxed,
    /// so that the request's future stays as small as before for the others.
    custom: Option<Box<CustomFacts>>,
    /// Whether the request was counted and logged (`finish`).
    finished: bool,
}

/// The facts of a request that only custom access log formats print.
struct CustomFacts {
    /// The format: what it prints says what is kept and measured.
    format: Arc<LogFormat>,
    server_addr: std::net::IpAddr,
    server_port: u16,
    /// The connection's peer (`$realip_remote_addr`).
    peer: SocketAddr,
    tls: Option<crate::tls::TlsSession>,
    client_cert: Option<Arc<crate::tls::ClientCertificate>>,
    connection: u64,
    connection_requests: u64,
    /// The request head's length as HTTP/1.1 text, when the format prints
    /// `$request_length`; the body, if any, counts in `request_body`.
    request_head: u64,
    request_body: Option<Arc<Progress>>,
    /// The request headers and cookies the format prints, in its order.
    headers: Vec<Option<HeaderValue>>,
    /// The upstream answer's headers it prints, once the answer came.
    upstream_headers: Vec<Option<HeaderValue>>,
    /// The headers of the answer sent it prints, and the head's length as
    /// HTTP/1.1 text, once the head is final (`keep_sent_head`).
    sent_headers: Vec<Option<HeaderValue>>,
    head_bytes: u64,
    /// Each upstream server the request went to, in turn (nginx lists them
    /// all after a retry).
    attempts: Vec<Attempt>,
    /// Whether gzip compressed that body on its way.
    gzipped: bool,
}

/// One server a request went to, as a custom format prints it.
struct Attempt {
    /// The server's index in the pool.
    peer: usize,
    /// When it was picked, when the format prints one of its times.
    start: Option<Instant>,
    /// Its answer's status, or the one its failure gave (502, 504).
    status: Option<u16>,
    connect_time: Option<std::time::Duration>,
    header_time: Option<std::time::Duration>,
    /// To the end of its answer, or to its failure.
    response_time: Option<std::time::Duration>,
    /// Its answer's body bytes (0 for a failure).
    length: Option<u64>,
    /// The connection's count when the attempt took it, when the format
    /// prints its bytes.
    traffic_from: Option<Traffic>,
    /// The bytes the attempt sent and received, once it is over.
    traffic: Option<Traffic>,
}

/// A `date` line's length: an HTTP date is always 29 characters.
const DATE_LINE: usize = "date: Thu, 01 Jan 1970 00:00:00 GMT\r\n".len();

/// nginx's status for a request the client gave up on before its answer.
const CLIENT_CLOSED_REQUEST: u16 = 499;

impl Exchange {
    /// Records the request's line and headers (cheap clones of shared bytes);
    /// `number` is the request's on its connection, counting from 1.
    pub fn new(
        server: Arc<ServerState>,
        remote: SocketAddr,
        request: &http::request::Parts,
        host: &str,
        conn: &super::ConnInfo,
        number: u64,
    ) -> Exchange {
        let logs = server.access_log.is_some();
        let custom = server.access_log.as_ref().and_then(AccessLog::custom);
        let builtin = logs && custom.is_none();
        Exchange {
            remote,
            started_at: logs.then(SystemTime::now),
            start: Instant::now(),
            method: request.method.clone(),
            uri: request.uri.clone(),
            version: request.version,
            // The combined and json lines print these; a custom format keeps
            // the headers it prints itself.
            referer: builtin.then(|| request.headers.get(http::header::REFERER).cloned()).flatten(),
            user_agent: builtin.then(|| request.headers.get(http::header::USER_AGENT).cloned()).flatten(),
            host: if server.access_log.as_ref().is_some_and(AccessLog::prints_host) {
                host.to_owned()
            } else {
                String::new()
            },
            request_id: RequestId::new(),
            status: 0,
            upstream: None,
            custom: custom.map(|format| {
                Box::new(CustomFacts {
                    format: Arc::clone(format),
                    server_addr: crate::template::canonical_ip(conn.local.ip()),
                    server_port: conn.local.port(),
                    peer: conn.remote,
                    tls: conn.tls_session,
                    client_cert: conn.client_cert.clone(),
                    connection: conn.id,
                    connection_requests: number,
                    request_head: if format.counts_request() { head_length(request) } else { 0 },
                    request_body: None,
                    headers: format.request_values().iter().map(|value| value.of(&request.headers)).collect(),
                    upstream_headers: Vec::new(),
                    sent_headers: Vec::new(),
                    head_bytes: 0,
                    attempts: Vec::new(),
                    gzipped: false,
                })
            }),
            finished: false,
            server,
        }
    }

    /// `$request_id`, made when first printed.
    pub fn request_id(&self) -> &RequestId {
        &self.request_id
    }

    /// The client's address, as logged.
    pub fn client(&self) -> SocketAddr {
        self.remote
    }

    /// Whether the request is a HEAD, whose answer goes without its body.
    pub fn is_head(&self) -> bool {
        self.method == Method::HEAD
    }

    /// The HTTP version the client spoke.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Notes the status sent to the client.
    pub fn set_status(&mut self, status: http::StatusCode) {
        self.status = status.as_u16();
    }

    /// Notes the upstream server now handling the request (and counts the attempt).
    pub fn set_upstream(&mut self, pool: &Arc<Pool>, peer: usize) {
        if let Some(metrics) = pool.peer_metrics(peer) {
            metrics.selected.fetch_add(1, Ordering::Relaxed);
        }
        self.upstream = Some((pool.clone(), peer));
        if let Some(custom) = &mut self.custom {
            let timed = custom.format.times_upstream() || custom.format.times_connect();
            custom.attempts.push(Attempt {
                peer,
                start: timed.then(Instant::now),
                status: None,
                connect_time: None,
                header_time: None,
                response_time: None,
                length: None,
                traffic_from: None,
                traffic: None,
            });
        }
    }

    /// The server picked last, as a custom format notes it.
    fn attempt(&mut self) -> Option<&mut Attempt> {
        self.custom.as_mut()?.attempts.last_mut()
    }

    /// Notes that the connection to the server picked last is made (or
    /// taken from the pool, in about no time).
    pub fn connected(&mut self, conn: &Conn) {
        let Some(custom) = &mut self.custom else { return };
        let counts = custom.format.counts_upstream_traffic();
        if let Some(attempt) = custom.attempts.last_mut() {
            attempt.connect_time = attempt.start.map(|start| start.elapsed());
            attempt.traffic_from = counts.then(|| conn.traffic());
        }
    }

    /// Notes what the attempt on `conn` has sent and received, as it ends:
    /// its answer read (or given up), or its failure.
    pub fn upstream_traffic(&mut self, conn: &Conn) {
        if let Some(attempt) = self.attempt() {
            attempt.traffic = attempt.traffic_from.map(|from| conn.traffic().since(from));
        }
    }

    /// Notes that the server picked last failed, with the status its
    /// failure gives (`None` when the client's side ended the attempt), on
    /// `conn` if one was made.
    pub fn attempt_failed(&mut self, status: Option<http::StatusCode>, conn: Option<&Conn>) {
        if let Some(conn) = conn {
            self.upstream_traffic(conn);
        }
        if let Some(attempt) = self.attempt() {
            attempt.status = status.map(|s| s.as_u16());
            attempt.response_time = attempt.start.map(|start| start.elapsed());
            attempt.length = Some(0);
        }
    }

    /// Counts the request body's bytes toward `$request_length`, when the
    /// log prints it: `progress` is the body's own count.
    pub fn count_body(&mut self, progress: &Arc<Progress>) {
        if let Some(custom) = self.custom.as_mut().filter(|c| c.format.counts_request()) {
            custom.request_body = Some(progress.clone());
        }
    }

    /// Keeps the upstream answer's headers a custom format prints, as the
    /// server sent them (`$upstream_http_NAME`).
    pub fn keep_upstream_headers(&mut self, headers: &http::HeaderMap) {
        if let Some(custom) = &mut self.custom {
            custom.upstream_headers =
                custom.format.upstream_headers().iter().map(|name| headers.get(name).cloned()).collect();
        }
    }

    /// Whether the log line prints some of the answer's head: then it
    /// waits for the head to be final (`keep_sent_head`).
    pub fn keeps_sent_head(&self) -> bool {
        self.custom.as_ref().is_some_and(|c| c.format.keeps_sent_head())
    }

    /// Keeps what the log line prints of the answer's final head
    /// (`$sent_http_NAME`, and its length for `$bytes_sent`); `length` is
    /// the body's when known.
    pub fn keep_sent_head(&mut self, status: http::StatusCode, headers: &http::HeaderMap, length: Option<u64>) {
        let Some(custom) = &mut self.custom else { return };
        custom.sent_headers = custom.format.sent_headers().iter().map(|name| headers.get(name).cloned()).collect();
        // `HTTP/1.1 200 OK\r\n`, `name: value\r\n` each, `\r\n`, and the
        // Date and Content-Length the HTTP/1.1 writer adds where missing.
        let line = "HTTP/1.1 200 \r\n".len() + status.canonical_reason().map_or(0, str::len);
        let fields = fields_length(headers);
        let date = if headers.contains_key(http::header::DATE) { 0 } else { DATE_LINE };
        let framed =
            headers.contains_key(http::header::CONTENT_LENGTH) || headers.contains_key(http::header::TRANSFER_ENCODING);
        let content_length = match length {
            Some(length) if !framed => "content-length: \r\n".len() + length.max(1).ilog10() as usize + 1,
            _ => 0,
        };
        custom.head_bytes = (line + fields + 2 + date + content_length) as u64;
    }

    /// Counts the status set last as the upstream server's answer: call once
    /// its response head is accepted (not for answers portico makes itself).
    pub fn upstream_answered(&mut self) {
        let status = self.status;
        if let Some(attempt) = self.attempt() {
            attempt.status = Some(status);
            attempt.header_time = attempt.start.map(|start| start.elapsed());
        }
        if let Some(metrics) = self.upstream.as_ref().and_then(|(pool, peer)| pool.peer_metrics(*peer)) {
            metrics.responses.record(self.status);
        }
    }

    /// Writes one error line with the request's context (nginx's layout:
    /// what happened, then client, server, request and upstream).
    pub fn upstream_error(&self, what: std::fmt::Arguments<'_>) {
        self.error(LogLevel::Error, what);
    }

    /// Writes one line at `level` to the server's error log, or the process's.
    pub fn error(&self, level: LogLevel, what: std::fmt::Arguments<'_>) {
        // Formatted only by a log that keeps the line: a filtered level
        // (client aborts are `info`) costs no allocation.
        let upstream = UpstreamPart(self.upstream.as_ref());
        let line = format_args!(
            "{what}, client: {}, server: {}, request: \"{} {} {:?}\"{upstream}",
            crate::template::canonical_ip(self.remote.ip()),
            self.server.config.name,
            self.method,
            self.uri,
            self.version,
        );
        match &self.server.error_log {
            Some(log) => log.log(level, line),
            None => match level {
                LogLevel::Error => tracing::error!("{line}"),
                LogLevel::Warn => tracing::warn!("{line}"),
                LogLevel::Info => tracing::info!("{line}"),
                LogLevel::Debug => tracing::debug!("{line}"),
            },
        }
    }

    /// Counts the request in the server's metrics and writes the access log
    /// line: `body_bytes` were sent; `complete` is false when the exchange
    /// ended early (client gone or upstream failed).
    pub fn finish(mut self, body_bytes: u64, complete: bool) {
        self.record(body_bytes, complete);
    }

    /// `finish` for an upstream's answer: `upstream_bytes` of body came from
    /// the server, `compressed` bytes of them went to the client when gzip
    /// compressed them (else all of them).
    pub fn finish_streamed(mut self, upstream_bytes: u64, compressed: Option<u64>, complete: bool) {
        if let Some(custom) = &mut self.custom {
            custom.gzipped = compressed.is_some();
        }
        if let Some(attempt) = self.attempt() {
            attempt.length = Some(upstream_bytes);
        }
        self.record(compressed.unwrap_or(upstream_bytes), complete);
    }

    fn record(&mut self, body_bytes: u64, complete: bool) {
        self.finished = true;
        let duration = self.start.elapsed();
        self.server.metrics.record(self.status, duration, body_bytes);
        let Some(log) = &self.server.access_log else { return };
        let upstream_addr =
            self.upstream.as_ref().and_then(|(pool, peer)| pool.upstream.peers.get(*peer)).map(|p| p.address.as_str());
        let custom = self.custom.as_deref();
        // The servers tried, the last one's times running to now.
        let pool = self.upstream.as_ref().map(|(pool, _)| pool);
        let attempts: Vec<UpstreamAttempt<'_>> = custom
            .map_or(&[][..], |c| &c.attempts[..])
            .iter()
            .map(|a| UpstreamAttempt {
                addr: pool.and_then(|p| p.upstream.peers.get(a.peer)).map_or("-", |p| p.address.as_str()),
                status: a.status,
                connect_time: a.connect_time,
                header_time: a.header_time,
                response_time: a.response_time.or_else(|| a.start.map(|start| start.elapsed())),
                length: a.length,
                bytes_sent: a.traffic.map(|t| t.sent),
                bytes_received: a.traffic.map(|t| t.received),
            })
            .collect();
        log.log(&AccessRecord {
            remote_addr: crate::template::canonical_ip(self.remote.ip()),
            time: self.started_at.unwrap_or_else(SystemTime::now),
            method: self.method.as_str(),
            uri: self.uri.path_and_query().map_or("/", |pq| pq.as_str()),
            version: self.version,
            status: self.status,
            body_bytes,
            referer: self.referer.as_ref().and_then(|v| v.to_str().ok()),
            user_agent: self.user_agent.as_ref().and_then(|v| v.to_str().ok()),
            host: &self.host,
            upstream_addr,
            duration,
            remote_port: self.remote.port(),
            server_name: &self.server.config.name,
            scheme: custom.map_or("", |c| super::scheme(c.tls.is_some())),
            server_port: custom.map_or(0, |c| c.server_port),
            upstream: &attempts,
            tls: custom.and_then(|c| c.tls),
            connection: custom.map_or(0, |c| c.connection),
            connection_requests: custom.map_or(0, |c| c.connection_requests),
            request_length: custom
                .map_or(0, |c| c.request_head + c.request_body.as_ref().map_or(0, |body| body.bytes_read())),
            complete,
            server_addr: custom.map(|c| c.server_addr),
            peer: custom.map(|c| c.peer),
            gzipped_from: custom.filter(|c| c.gzipped).and_then(|c| c.attempts.last()).and_then(|a| a.length),
            client_cert: custom.and_then(|c| c.client_cert.as_deref()),
            sent_headers: custom.map_or(&[], |c| &c.sent_headers),
            head_bytes: custom.map_or(0, |c| c.head_bytes),
            headers: custom.map_or(&[], |c| &c.headers),
            upstream_headers: custom.map_or(&[], |c| &c.upstream_headers),
            request_id: &self.request_id,
        });
    }
}

/// `, upstream: "NAME" ADDRESS` when a server was picked, else nothing.
struct UpstreamPart<'a>(Option<&'a (Arc<Pool>, usize)>);

impl std::fmt::Display for UpstreamPart<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Some((pool, peer)) = self.0 else { return Ok(()) };
        let address = pool.upstream.peers.get(*peer).map_or("?", |p| p.address.as_str());
        write!(f, ", upstream: \"{}\" {}", pool.upstream.name, address)
    }
}

impl Drop for Exchange {
    /// A request dropped before it was finished is one whose answer never
    /// came: hyper drops the request's future when the client closes the
    /// connection or resets the h2 stream, which also cancels the upstream
    /// request. It is logged and counted as nginx does, with 499.
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if self.status == 0 {
            self.status = CLIENT_CLOSED_REQUEST;
            self.error(LogLevel::Info, format_args!("client closed the connection before the response was sent"));
        }
        self.record(0, false);
    }
}

/// The request head's length as HTTP/1.1 text: request line, `name: value`
/// lines and the empty line (h2's compressed head has no such length; nginx
/// counts its own way there).
fn head_length(request: &http::request::Parts) -> u64 {
    let target = request.uri.path_and_query().map_or(1, |pq| pq.as_str().len());
    let line = request.method.as_str().len() + 1 + target + 1 + "HTTP/1.1\r\n".len();
    (line + fields_length(&request.headers) + 2) as u64
}

/// The length of `headers` as HTTP/1.1 lines, `name: value\r\n` each.
fn fields_length(headers: &http::HeaderMap) -> usize {
    headers.iter().map(|(name, value)| name.as_str().len() + 2 + value.len() + 2).sum()
}
