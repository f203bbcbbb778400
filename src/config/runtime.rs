//! Validated configuration: what `validate` produces and the hot path reads.
//!
//! Nothing here is an `Option` that validation already filled in, and nothing is
//! a string that should have been parsed (durations, addresses, templates).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use rustls::sign::CertifiedKey;
use rustls_pki_types::CertificateDer;

use crate::template::Template;

/// One validated `portico.toml`.
#[derive(Debug)]
pub struct Snapshot {
    /// The file this snapshot was read from (for messages and reload).
    pub source: PathBuf,
    /// `[runtime]`.
    pub runtime: RuntimeSettings,
    /// `[admin]`, absent when not configured.
    pub admin: Option<Admin>,
    /// `[upstream.NAME]`, in file order. `Action::Proxy` indexes into this.
    pub upstreams: Vec<Arc<Upstream>>,
    /// `[limit_req.NAME]`, in file order. `LimitReq::zone` indexes into this.
    pub limit_zones: Vec<LimitZone>,
    /// One entry per distinct listen address, in order of first appearance.
    pub listeners: Vec<Listener>,
    /// Non-fatal findings (e.g. `tls_verify = false`, self-signed certificates),
    /// logged as warnings at start and by `portico check`.
    pub warnings: Vec<String>,
}

/// `[runtime]`, with defaults applied.
#[derive(Debug, Clone)]
pub struct RuntimeSettings {
    /// `None`: one per CPU.
    pub worker_threads: Option<usize>,
    /// `None`: stderr.
    pub error_log: Option<PathBuf>,
    pub error_log_level: LogLevel,
    pub pid_file: Option<PathBuf>,
    pub shutdown_timeout: Duration,
    pub client_header_timeout: Duration,
    pub keepalive_timeout: Duration,
    /// Bytes; request line plus headers.
    pub max_request_header_size: usize,
    /// Bytes; `None` = unlimited (the file's "0").
    pub client_max_body_size: Option<u64>,
    pub max_connections: usize,
    /// Bytes a client connection's socket may hold unsent before portico's
    /// writes wait (`TCP_NOTSENT_LOWAT`); 0 leaves the kernel's setting.
    pub tcp_notsent_lowat: u32,
    pub trusted_proxies: Vec<Cidr>,
    /// `real_ip_header`: the client's address from a trusted proxy's header.
    pub real_ip: Option<crate::real_ip::RealIp>,
}

impl RuntimeSettings {
    /// Whether `ip` is one of `trusted_proxies` (none when the list is empty).
    pub fn is_trusted_proxy(&self, ip: std::net::IpAddr) -> bool {
        Cidr::any_contains(&self.trusted_proxies, ip)
    }
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        Self {
            worker_threads: None,
            error_log: None,
            error_log_level: LogLevel::Warn,
            pid_file: None,
            shutdown_timeout: Duration::from_secs(30),
            client_header_timeout: Duration::from_secs(60),
            keepalive_timeout: Duration::from_secs(75),
            max_request_header_size: 32 * 1024,
            client_max_body_size: None,
            max_connections: 10_000,
            tcp_notsent_lowat: 16 * 1024,
            trusted_proxies: Vec::new(),
            real_ip: None,
        }
    }
}

/// `error_log_level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
}

/// An IP network such as `10.0.0.0/8` or `::1/128`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: std::net::IpAddr,
    pub prefix_len: u8,
}

impl Cidr {
    /// Whether any network in `list` holds `ip`.
    pub fn any_contains(list: &[Cidr], ip: std::net::IpAddr) -> bool {
        list.iter().any(|net| net.contains(ip))
    }

    /// Whether `ip` lies in this network (IPv4-mapped IPv6 counts as IPv4).
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let bits = u32::from(self.prefix_len.min(32));
                let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let bits = u32::from(self.prefix_len.min(128));
                let mask = if bits == 0 { 0 } else { u128::MAX << (128 - bits) };
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// `[admin]`.
#[derive(Debug, Clone)]
pub struct Admin {
    pub listen: SocketAddr,
}

/// `[upstream.NAME]`.
#[derive(Debug)]
pub struct Upstream {
    pub name: String,
    /// Every server, primaries and backups, in file order (indices are stable
    /// and are what ip_hash and sticky tables refer to).
    pub peers: Vec<Peer>,
    /// `Some` when `tls = true`.
    pub tls: Option<UpstreamTls>,
    pub balance: Balance,
    /// Idle pooled connections kept per server.
    pub keepalive: usize,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub send_timeout: Duration,
    pub sticky: Option<Sticky>,
    pub health_check: Option<HealthCheck>,
}

impl Upstream {
    /// Whether `other` describes the same servers and behaviour, so that a
    /// reload can keep this upstream's live state (health, idle connections).
    /// TLS settings are compared by the certificates read, not the file names.
    pub fn same_as(&self, other: &Upstream) -> bool {
        let peers_same = self.peers.len() == other.peers.len()
            && self.peers.iter().zip(&other.peers).all(|(a, b)| {
                a.address == b.address
                    && a.socket_addr == b.socket_addr
                    && a.weight == b.weight
                    && a.max_fails == b.max_fails
                    && a.fail_timeout == b.fail_timeout
                    && a.backup == b.backup
                    && a.down == b.down
                    && a.drain == b.drain
            });
        let tls_same = match (&self.tls, &other.tls) {
            (None, None) => true,
            (Some(a), Some(b)) => a.same_as(b),
            _ => false,
        };
        peers_same
            && tls_same
            && self.name == other.name
            && self.balance == other.balance
            && self.keepalive == other.keepalive
            && self.connect_timeout == other.connect_timeout
            && self.read_timeout == other.read_timeout
            && self.send_timeout == other.send_timeout
            && self.health_check == other.health_check
    }
}

/// One upstream server.
#[derive(Debug, Clone)]
pub struct Peer {
    /// As written in the file (`"10.0.0.1:9443"`, `"localhost:9443"`): used in logs,
    /// metrics and as the stable identity of the server across reloads.
    pub address: String,
    /// The host part of `address` (default TLS server name).
    pub host: String,
    /// Resolved at load time, as nginx does.
    pub socket_addr: SocketAddr,
    pub weight: u32,
    pub max_fails: u32,
    pub fail_timeout: Duration,
    pub backup: bool,
    pub down: bool,
    /// NGINX Plus's `drain`: requests bound to it by a sticky session still
    /// go to it, new ones only when no other server can take them.
    pub drain: bool,
}

/// TLS toward an upstream.
#[derive(Clone)]
pub struct UpstreamTls {
    pub verify: bool,
    /// Overrides the peer's host as SNI and the name checked in its certificate.
    pub server_name: Option<String>,
    pub client_config: Arc<rustls::ClientConfig>,
    /// What `client_config` was built from, compared by value on a reload so
    /// that files renewed under the same names apply: `ca_file`'s certificates,
    /// `tls_protocols`, and `tls_client_cert`'s chain (its key goes with it).
    pub ca_certificates: Option<Vec<CertificateDer<'static>>>,
    pub protocols: TlsProtocols,
    pub client_cert: Option<Arc<CertifiedKey>>,
}

impl UpstreamTls {
    /// Whether `other` makes the same connections: same checks, same trust,
    /// same versions, same certificate presented.
    fn same_as(&self, other: &UpstreamTls) -> bool {
        self.verify == other.verify
            && self.server_name == other.server_name
            && self.ca_certificates == other.ca_certificates
            && self.protocols == other.protocols
            && self.client_cert.as_ref().map(|c| &c.cert) == other.client_cert.as_ref().map(|c| &c.cert)
    }
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("verify", &self.verify)
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// `balance`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    IpHash { consistent: bool },
}

/// `[upstream.NAME.health_check]`: each server is asked for `uri` every
/// `interval`; `fails` failed checks in a row take it out of the balancing,
/// `passes` passed ones bring it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// Origin-form request target: path and query.
    pub uri: String,
    pub interval: Duration,
    /// The connect, the request, the response head and (with `body`) as much
    /// of the body as is read, all within this.
    pub timeout: Duration,
    pub fails: u32,
    pub passes: u32,
    /// Statuses that pass, as inclusive ranges.
    pub status: Vec<(u16, u16)>,
    /// The Host header; `None`: `tls_server_name`, else the server's address
    /// (with `port` in place of its own).
    pub host: Option<String>,
    /// A server takes no traffic until its first check has passed.
    pub mandatory: bool,
    /// Checks go to each server's host on this port; `None`: its own port.
    pub port: Option<u16>,
    /// A check passes only if the body's first [`HealthCheck::BODY_LIMIT`]
    /// bytes contain this (never empty, at most that long).
    pub body: Option<String>,
}

impl HealthCheck {
    /// The most of a response body a check reads looking for `body`.
    pub const BODY_LIMIT: usize = 64 * 1024;

    /// Whether `status` is one that passes.
    pub fn accepts(&self, status: StatusCode) -> bool {
        let code = status.as_u16();
        self.status.iter().any(|&(low, high)| (low..=high).contains(&code))
    }
}

/// `[upstream.NAME.sticky]`.
#[derive(Debug, Clone)]
pub struct Sticky {
    /// Cookie name learned from Set-Cookie (matched case-insensitively).
    pub learn: String,
    pub zone: String,
    /// Maximum number of sessions kept.
    pub capacity: usize,
    pub timeout: Duration,
    /// `store = "redis://..."`: the table shared with other portico nodes.
    pub store: Option<StickyStore>,
}

/// `store`, `store_prefix` and `store_timeout` of `[upstream.NAME.sticky]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StickyStore {
    /// A `redis://` or `rediss://` URL, checked by the Redis client. It may
    /// hold a password: show it only through `upstream::sticky_store::redact`.
    pub url: String,
    /// Prepended to every key (default `"portico:sticky:"`).
    pub prefix: String,
    /// Longest wait for Redis when a session is not known locally.
    pub lookup_timeout: Duration,
}

/// The TLS versions a listener speaks: a server's `tls.protocols`, both
/// unless it names one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsProtocols {
    pub tls12: bool,
    pub tls13: bool,
}

impl Default for TlsProtocols {
    fn default() -> Self {
        TlsProtocols { tls12: true, tls13: true }
    }
}

impl std::fmt::Display for TlsProtocols {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.tls12, self.tls13) {
            (true, true) => f.write_str("TLSv1.2 and TLSv1.3"),
            (true, false) => f.write_str("TLSv1.2 only"),
            (false, true) => f.write_str("TLSv1.3 only"),
            (false, false) => f.write_str("no TLS version"),
        }
    }
}

/// One listen address and the virtual servers on it.
#[derive(Debug)]
pub struct Listener {
    pub addr: SocketAddr,
    /// Whether every server on this address terminates TLS.
    pub tls: bool,
    /// The TLS versions its handshakes offer (every server on it agrees).
    pub tls_protocols: TlsProtocols,
    /// Whether each connection begins with a PROXY protocol header naming
    /// the client (every server on it agrees).
    pub proxy_protocol: bool,
    pub servers: Vec<Arc<VirtualServer>>,
    /// Index into `servers`: `default_server = true`, else the first declared.
    pub default_server: usize,
}

/// One `[[server]]`.
#[derive(Debug)]
pub struct VirtualServer {
    /// The first `server_name` (or `"_"` when none): `$server_name`, log labels.
    pub name: String,
    pub server_names: Vec<ServerName>,
    /// The certificate for TLS listeners (`None` on plain ones).
    pub certificate: Option<Arc<CertifiedKey>>,
    /// `tls.verify_client`: asks clients for a certificate.
    pub client_auth: Option<Arc<crate::tls::ClientAuth>>,
    /// Sorted by prefix length, longest first, so the first match wins.
    pub locations: Vec<Location>,
    /// `allow` / `deny` for the locations without their own, and for paths
    /// no location takes (403 before 404, as nginx).
    pub access: Access,
    /// `limit_req` for the locations without their own, and for paths no
    /// location takes: every one applies (empty: none).
    pub limit_req: Vec<LimitReq>,
    /// Headers set toward the upstream, in order; `None` removes the header.
    pub headers: Vec<HeaderRule>,
    /// Headers set on every response to the client, in order; `None` removes
    /// the upstream's.
    pub response_headers: ResponseHeaders,
    /// `gzip`: compress upstream responses.
    pub gzip: Option<Gzip>,
    pub access_log: Option<PathBuf>,
    pub access_log_format: AccessLogFormat,
    pub error_log: Option<PathBuf>,
    /// Per-server overrides of the upstream's timeouts.
    pub read_timeout: Option<Duration>,
    pub send_timeout: Option<Duration>,
}

/// A `server_name` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerName {
    /// Lower-case, no trailing dot.
    Exact(String),
    /// `*.example.com` stored as `.example.com` (lower-case): matches any name
    /// ending with it that has at least one more label.
    Wildcard(String),
}

impl ServerName {
    /// Whether `host` (already lower-case, no port, no trailing dot) matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            ServerName::Exact(name) => name == host,
            ServerName::Wildcard(suffix) => host.len() > suffix.len() && host.ends_with(suffix.as_str()),
        }
    }
}

/// One header rule from `[server.headers]` (or the default set).
#[derive(Debug, Clone)]
pub struct HeaderRule {
    pub name: http::HeaderName,
    /// `None` removes the header (the file's `""`).
    pub value: Option<Template>,
}

/// `access_log_format`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogFormat {
    Combined,
    Json,
    /// A `[log_format.NAME]`.
    Custom(Arc<crate::log::LogFormat>),
}

/// One `[[server.location]]` (or the shorthand `proxy_pass`/`redirect` on a server).
#[derive(Debug)]
pub struct Location {
    pub prefix: String,
    pub action: Action,
    /// Its own `allow` / `deny`, replacing the server's (as nginx's
    /// `allow`/`deny` in a location replace the server's).
    pub access: Option<Access>,
    /// Its own `limit_req` list, replacing the server's entirely.
    pub limit_req: Option<Vec<LimitReq>>,
    /// Its own `[server.location.response_headers]`, replacing the server's
    /// (as nginx's `add_header` in a location replaces the server's).
    pub response_headers: Option<ResponseHeaders>,
    /// Its own `gzip`, replacing the server's: `Some(None)` is `gzip = false`.
    pub gzip: Option<Option<Gzip>>,
}

/// `gzip`: which upstream responses are compressed, and how hard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gzip {
    /// Media types, lower case; `"*"` is any.
    pub types: Vec<String>,
    /// Bodies with a Content-Length below this go as they are.
    pub min_length: u64,
    /// 1 to 9.
    pub level: u32,
}

impl Gzip {
    /// What is compressed without a `types` list: text, and the text-based
    /// formats APIs and web apps send (nginx's default is text/html alone).
    pub const DEFAULT_TYPES: [&str; 10] = [
        "text/html",
        "text/plain",
        "text/css",
        "text/xml",
        "text/javascript",
        "application/javascript",
        "application/json",
        "application/xml",
        "application/problem+json",
        "image/svg+xml",
    ];

    /// Whether a response with this Content-Type is compressed (`"*"`: any,
    /// one without a type too, as nginx's `gzip_types *`).
    pub fn covers(&self, content_type: Option<&http::HeaderValue>) -> bool {
        if self.types.iter().any(|t| t == "*") {
            return true;
        }
        let Some(media) = content_type.and_then(|v| v.to_str().ok()) else { return false };
        let media = media.split(';').next().unwrap_or("").trim();
        self.types.iter().any(|t| t.eq_ignore_ascii_case(media))
    }
}

/// Headers set on responses to the client, in order; `None` removes the
/// upstream's header of that name.
pub type ResponseHeaders = Vec<(http::HeaderName, Option<http::HeaderValue>)>;

/// `[limit_req.NAME]`: a table of request rates per client address, or per
/// value of `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitZone {
    pub name: String,
    /// What requests are counted under; `None`: the client's address
    /// (`limit_req::ZoneKey::Addr`, nothing rendered).
    pub key: Option<Template>,
    /// The key as written (`"$remote_addr"` without one), for `/status`.
    pub key_text: String,
    /// Milli-requests per second (nginx's `ctx->rate`): "10r/s" is 10 000.
    pub rate: u64,
    /// The rate as written ("10r/s", "30r/m"), for `/status`.
    pub rate_text: String,
    /// Most keys held.
    pub capacity: usize,
}

/// `limit_req = { zone, burst, nodelay | delay, status }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitReq {
    /// Index into `Snapshot::limit_zones`.
    pub zone: usize,
    pub burst: u64,
    /// How many of the burst go without waiting (`nodelay`: all).
    pub delay_free: u64,
    /// The answer to a refused request.
    pub status: StatusCode,
}

/// `allow` / `deny`: the client addresses a server or location answers; the
/// others get 403. A `deny` match refuses; then, when `allow` lists any, only
/// those are answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    pub allow: Vec<Cidr>,
    pub deny: Vec<Cidr>,
}

impl Access {
    /// Whether a client at `ip` (the connection's address) is answered.
    pub fn permits(&self, ip: std::net::IpAddr) -> bool {
        !Cidr::any_contains(&self.deny, ip) && (self.allow.is_empty() || Cidr::any_contains(&self.allow, ip))
    }
}

/// What a location does with a request.
#[derive(Debug)]
pub enum Action {
    /// Forward to `Snapshot::upstreams[index]`.
    Proxy { upstream: usize },
    /// Answer with this status and an empty body.
    Return { status: StatusCode },
    /// Answer with a redirect to the rendered template.
    Redirect { location: Template, status: StatusCode },
}
