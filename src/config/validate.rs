//! File types -> `runtime::Snapshot`, reporting every problem at once.
//!
//! Upstreams keep their file order (`Action::Proxy` indexes them); listeners are
//! ordered by first appearance of their address. A syntax or type error stops the
//! TOML parser, so it is reported alone; every semantic problem after that is
//! collected and reported together, sorted by position.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, StatusCode};
use rustls::sign::CertifiedKey;
use toml::Spanned;

use super::error::{ConfigError, ConfigErrors};
use super::file;
use super::runtime::{
    Access, AccessLogFormat, Action, Admin, Balance, Cidr, Gzip, HeaderRule, HealthCheck, LimitReq, LimitZone,
    Listener, Location, LogLevel, Peer, ResponseHeaders, RuntimeSettings, ServerName, Snapshot, Sticky, StickyStore,
    TlsProtocols, Upstream, UpstreamTls, VirtualServer,
};
use crate::log::{BUILT_IN_FORMATS, Escape, LogFormat};
use crate::real_ip::RealIp;
use crate::template::{Template, Variable};
use crate::tls;

const DURATION_HINT: &str = r#"expected a duration such as "500ms", "30s", "5m", "1h" or "1d""#;
const SIZE_HINT: &str = r#"expected a size such as "16k", "1m", "1g" or a number of bytes"#;
const LISTEN_HINT: &str = r#"expected a port ("80"), "IPv4:PORT" ("127.0.0.1:8080") or "[IPv6]:PORT" ("[::]:443")"#;
const REDIRECT_STATUSES: [u16; 5] = [301, 302, 303, 307, 308];

/// Parses and validates `text` (read from `path`).
pub fn validate(text: &str, path: &Path) -> Result<Snapshot, ConfigErrors> {
    let parsed: file::File = toml::from_str(text).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        ConfigErrors(vec![ConfigError::at(path, text, offset, e.message().trim_end().to_owned())])
    })?;
    let mut checker = Checker {
        file: path,
        dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        text,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let snapshot = checker.snapshot(parsed);
    if checker.errors.is_empty() {
        Ok(snapshot)
    } else {
        // Stable: problems on one position keep the order they were found in.
        checker.errors.sort_by_key(|e| (e.line, e.column));
        Err(ConfigErrors(checker.errors))
    }
}

/// Walks the file types, building runtime types and collecting problems.
struct Checker<'a> {
    file: &'a Path,
    /// Relative paths in the file are relative to the file's directory.
    dir: PathBuf,
    text: &'a str,
    errors: Vec<ConfigError>,
    warnings: Vec<String>,
}

/// A `[log_format.NAME]`: its name, and its format unless it had errors.
type NamedFormat = (String, Option<Arc<LogFormat>>);

/// A validated server before it is attached to its listeners.
struct ServerEntry {
    server: Arc<VirtualServer>,
    /// Where the `[[server]]` is, to name it in messages about other servers.
    line: usize,
    listens: Vec<(SocketAddr, Spanned<String>)>,
    /// Where each of `server.server_names` is written.
    name_spans: Vec<Range<usize>>,
    tls: bool,
    /// `tls.protocols`, and where it is written when it is.
    protocols: (TlsProtocols, Option<Range<usize>>),
    default_server: Option<Range<usize>>,
    /// `proxy_protocol = true`, where it is written.
    proxy_protocol: Option<Range<usize>>,
}

impl Checker<'_> {
    fn error(&mut self, span: Range<usize>, message: String) {
        self.errors.push(ConfigError::at(self.file, self.text, span.start, message));
    }

    fn line(&self, span: &Range<usize>) -> usize {
        super::error::line_column(self.text, span.start).0
    }

    fn path(&self, value: &str) -> PathBuf {
        self.dir.join(value)
    }

    fn snapshot(&mut self, parsed: file::File) -> Snapshot {
        let runtime = self.runtime(parsed.runtime.unwrap_or_default());
        let admin = parsed.admin.and_then(|a| self.admin(a));
        let names: Vec<String> = parsed.upstream.0.iter().map(|(name, _)| name.get_ref().clone()).collect();
        let mut upstreams = Vec::new();
        for (name, upstream) in parsed.upstream.0 {
            if let Some(u) = self.upstream(&name, upstream) {
                upstreams.push(Arc::new(u));
            }
        }
        let zone_names: Vec<String> = parsed.limit_req.0.iter().map(|(name, _)| name.get_ref().clone()).collect();
        let limit_zones: Vec<LimitZone> =
            parsed.limit_req.0.into_iter().filter_map(|(name, zone)| self.limit_zone(name, zone)).collect();
        let log_formats: Vec<NamedFormat> =
            parsed.log_format.0.into_iter().filter_map(|(name, format)| self.log_format(name, format)).collect();
        let servers: Vec<ServerEntry> =
            parsed.server.into_iter().map(|s| self.server(s, &names, &zone_names, &log_formats)).collect();
        let listeners = self.listeners(&servers);
        if runtime.trusted_proxies.is_empty()
            && let Some(span) = servers.iter().find_map(|s| s.proxy_protocol.clone())
        {
            self.error(
                span,
                "proxy_protocol = true needs [runtime] trusted_proxies: the addresses of the load balancers \
                 whose PROXY header names the client (nginx: set_real_ip_from)"
                    .into(),
            );
        }
        if runtime.trusted_proxies.is_empty()
            && let Some(open) = listeners.iter().find(|l| !l.addr.ip().is_loopback())
        {
            self.warnings.push(format!(
                "[runtime] trusted_proxies is not set: an incoming X-Forwarded-For is appended to, as nginx does, so \
                 clients of {} can put any address before theirs; list the proxies in front of portico there \
                 (a loopback address alone trusts none)",
                open.addr
            ));
        }
        Snapshot {
            source: self.file.to_path_buf(),
            runtime,
            admin,
            upstreams,
            limit_zones,
            listeners,
            warnings: std::mem::take(&mut self.warnings),
        }
    }

    fn duration(&mut self, key: &str, value: Option<Spanned<String>>, default: Duration) -> Duration {
        let Some(value) = value else { return default };
        parse_duration(value.get_ref()).unwrap_or_else(|| {
            self.error(value.span(), format!("{key} = {:?}: {DURATION_HINT}", value.get_ref()));
            default
        })
    }

    fn optional_duration(&mut self, key: &str, value: Option<Spanned<String>>) -> Option<Duration> {
        value.map(|v| self.duration(key, Some(v), Duration::ZERO))
    }

    fn size(&mut self, key: &str, value: Option<Spanned<file::Size>>, default: u64) -> u64 {
        let Some(value) = value else { return default };
        let parsed = match value.get_ref() {
            file::Size::Bytes(n) => u64::try_from(*n).ok(),
            file::Size::Text(text) => parse_size(text),
        };
        parsed.unwrap_or_else(|| {
            let shown = match value.get_ref() {
                file::Size::Bytes(n) => n.to_string(),
                file::Size::Text(text) => format!("{text:?}"),
            };
            self.error(value.span(), format!("{key} = {shown}: {SIZE_HINT}"));
            default
        })
    }

    /// A log or pid file path; `None` when absent or empty.
    fn file_path(&mut self, key: &str, value: Option<Spanned<String>>) -> Option<PathBuf> {
        let value = value?;
        if value.get_ref().is_empty() {
            self.error(value.span(), format!("{key} = \"\": give a file path, or leave {key} out"));
            return None;
        }
        Some(self.path(value.get_ref()))
    }

    fn runtime(&mut self, r: file::Runtime) -> RuntimeSettings {
        let d = RuntimeSettings::default();
        let worker_threads = r.worker_threads.and_then(|n| {
            if *n.get_ref() == 0 {
                self.error(n.span(), "worker_threads = 0: use at least 1, or leave it out for one per CPU".into());
            }
            Some(*n.get_ref()).filter(|&n| n > 0)
        });
        let error_log_level = match r.error_log_level {
            None => d.error_log_level,
            Some(level) => match level.get_ref().to_ascii_lowercase().as_str() {
                "error" => LogLevel::Error,
                "warn" => LogLevel::Warn,
                "info" => LogLevel::Info,
                "debug" => LogLevel::Debug,
                _ => {
                    self.error(
                        level.span(),
                        format!(
                            "error_log_level = {:?}: expected \"error\", \"warn\", \"info\" or \"debug\"",
                            level.get_ref()
                        ),
                    );
                    d.error_log_level
                }
            },
        };
        let header_size = r.max_request_header_size.map(|s| (s.span(), s));
        let max_request_header_size = match header_size {
            None => d.max_request_header_size,
            Some((span, s)) => {
                let n = self.size("max_request_header_size", Some(s), d.max_request_header_size as u64);
                if n == 0 {
                    self.error(span, "max_request_header_size = 0: must be at least 1k, such as \"32k\"".into());
                }
                usize::try_from(n).unwrap_or(usize::MAX)
            }
        };
        let client_max_body_size = match r.client_max_body_size {
            None => d.client_max_body_size,
            Some(s) => Some(self.size("client_max_body_size", Some(s), 0)).filter(|&n| n > 0),
        };
        let max_connections = match r.max_connections {
            None => d.max_connections,
            Some(n) if *n.get_ref() == 0 => {
                self.error(n.span(), "max_connections = 0: must be at least 1".into());
                d.max_connections
            }
            Some(n) => *n.get_ref(),
        };
        let tcp_notsent_lowat = match r.tcp_notsent_lowat {
            None => d.tcp_notsent_lowat,
            Some(s) => {
                let span = s.span();
                let n = self.size("tcp_notsent_lowat", Some(s), u64::from(d.tcp_notsent_lowat));
                match u32::try_from(n) {
                    Ok(n) if n <= 1 << 30 => n,
                    _ => {
                        self.error(
                            span,
                            format!("tcp_notsent_lowat = {n}: at most \"1g\"; \"0\" leaves the kernel's setting"),
                        );
                        d.tcp_notsent_lowat
                    }
                }
            }
        };
        let trusted_proxies = r
            .trusted_proxies
            .unwrap_or_default()
            .into_iter()
            .filter_map(|c| {
                let parsed = parse_cidr(c.get_ref());
                if parsed.is_none() {
                    self.error(
                        c.span(),
                        format!(
                            "trusted_proxies entry {:?}: expected a CIDR such as \"10.0.0.0/8\" or \"::1/128\", or an IP address",
                            c.get_ref()
                        ),
                    );
                }
                parsed
            })
            .collect::<Vec<_>>();
        let real_ip = self.real_ip(r.real_ip_header, r.real_ip_recursive, &trusted_proxies);
        RuntimeSettings {
            worker_threads,
            error_log: self.file_path("error_log", r.error_log),
            error_log_level,
            pid_file: self.file_path("pid_file", r.pid_file),
            shutdown_timeout: self.duration("shutdown_timeout", r.shutdown_timeout, d.shutdown_timeout),
            client_header_timeout: self.duration(
                "client_header_timeout",
                r.client_header_timeout,
                d.client_header_timeout,
            ),
            keepalive_timeout: self.duration("keepalive_timeout", r.keepalive_timeout, d.keepalive_timeout),
            max_request_header_size,
            client_max_body_size,
            max_connections,
            tcp_notsent_lowat,
            trusted_proxies,
            real_ip,
        }
    }

    /// `real_ip_header` and `real_ip_recursive`, which believe only `trusted`.
    fn real_ip(
        &mut self,
        header: Option<Spanned<String>>,
        recursive: Option<Spanned<bool>>,
        trusted: &[Cidr],
    ) -> Option<RealIp> {
        let Some(header) = header else {
            if let Some(recursive) = recursive {
                self.error(
                    recursive.span(),
                    "real_ip_recursive without real_ip_header: name the header the proxies in front of portico \
                     put the client's address in, such as real_ip_header = \"X-Forwarded-For\""
                        .into(),
                );
            }
            return None;
        };
        if header.get_ref().eq_ignore_ascii_case("proxy_protocol") {
            self.error(
                header.span(),
                "real_ip_header = \"proxy_protocol\": set proxy_protocol = true on the [[server]]s whose \
                 balancer sends the PROXY header instead; the address it names is the client's"
                    .into(),
            );
            return None;
        }
        let Ok(name) = HeaderName::from_bytes(header.get_ref().as_bytes()) else {
            self.error(
                header.span(),
                format!(
                    "real_ip_header = {:?}: not a header name; expected one such as \"X-Forwarded-For\"",
                    header.get_ref()
                ),
            );
            return None;
        };
        if trusted.is_empty() {
            self.error(
                header.span(),
                "real_ip_header needs [runtime] trusted_proxies: the addresses of the proxies whose header is believed \
                 (nginx: set_real_ip_from); from any other client the header would let it choose its own address"
                    .into(),
            );
            return None;
        }
        Some(RealIp { header: name, recursive: recursive.is_some_and(|r| *r.get_ref()) })
    }

    fn admin(&mut self, admin: Spanned<file::Admin>) -> Option<Admin> {
        let span = admin.span();
        let admin = admin.into_inner();
        let Some(listen) = admin.listen else {
            self.error(span, "[admin] needs listen, such as listen = \"127.0.0.1:9901\"".into());
            return None;
        };
        let Some(addr) = parse_listen(listen.get_ref()) else {
            self.error(listen.span(), format!("listen = {:?}: {LISTEN_HINT}", listen.get_ref()));
            return None;
        };
        if !addr.ip().is_loopback() && admin.allow_remote != Some(true) {
            self.error(
                listen.span(),
                format!(
                    "listen = {:?}: the admin endpoint would be reachable from other hosts; listen on 127.0.0.1 or [::1], or set allow_remote = true",
                    listen.get_ref()
                ),
            );
            return None;
        }
        Some(Admin { listen: addr })
    }

    fn upstream(&mut self, name: &Spanned<String>, upstream: Spanned<file::Upstream>) -> Option<Upstream> {
        let name_span = name.span();
        let name = name.get_ref().clone();
        let u = upstream.into_inner();
        let mut ok = true;

        let mut peers = Vec::new();
        for server in u.servers.unwrap_or_default() {
            match self.peer(&name, server) {
                Some(p) => peers.push(p),
                None => ok = false,
            }
        }
        if ok && peers.is_empty() {
            self.error(
                name_span.clone(),
                format!("upstream \"{name}\" has no servers: add servers = [\"host:port\", ...]"),
            );
            ok = false;
        } else if ok && peers.iter().all(|p| p.backup) {
            self.error(
                name_span.clone(),
                format!("upstream \"{name}\" needs at least one non-backup server: backup servers only take over when the others are down"),
            );
            ok = false;
        }

        let tls_on = u.tls.as_ref().is_some_and(|t| *t.get_ref());
        let verify = u.tls_verify.as_ref().is_none_or(|v| *v.get_ref());
        if !tls_on {
            let stray = [
                u.tls_verify.as_ref().map(|v| ("tls_verify", v.span())),
                u.ca_file.as_ref().map(|v| ("ca_file", v.span())),
                u.tls_server_name.as_ref().map(|v| ("tls_server_name", v.span())),
                u.tls_protocols.as_ref().map(|v| ("tls_protocols", v.span())),
                u.tls_client_cert.as_ref().map(|v| ("tls_client_cert", v.span())),
                u.tls_client_key.as_ref().map(|v| ("tls_client_key", v.span())),
            ];
            for (key, span) in stray.into_iter().flatten() {
                self.error(
                    span,
                    format!(
                        "{key} has no effect without tls = true in upstream \"{name}\": add tls = true or remove {key}"
                    ),
                );
                ok = false;
            }
        }
        let mut tls = None;
        if let (true, Some(tls_span)) = (tls_on, u.tls.as_ref().map(Spanned::span)) {
            if !verify {
                self.warnings.push(format!("upstream \"{name}\": tls_verify = false accepts any server certificate"));
            }
            let server_name = u.tls_server_name.and_then(|n| {
                if rustls_pki_types::ServerName::try_from(n.get_ref().as_str()).is_err() {
                    self.error(
                        n.span(),
                        format!("tls_server_name = {:?}: expected a DNS name or IP address", n.get_ref()),
                    );
                    ok = false;
                    return None;
                }
                Some(n.into_inner())
            });
            // Read here, once: the certificates both build the trust store
            // and tell a reload whether the file changed.
            let ca_file = u.ca_file.and_then(|f| {
                let path = self.path(f.get_ref());
                if !path.is_file() {
                    self.error(f.span(), format!("ca_file {} does not exist", path.display()));
                    ok = false;
                    return None;
                }
                match tls::read_certificates(&path) {
                    Ok(certificates) => Some((path, certificates)),
                    Err(e) => {
                        self.error(f.span(), format!("upstream \"{name}\": cannot set up TLS: {e}"));
                        ok = false;
                        None
                    }
                }
            });
            // A bad list is reported once, not again as a TLS set-up failure.
            let protocols = u.tls_protocols.map_or_else(TlsProtocols::default, |list| {
                let before = self.errors.len();
                let protocols = self.tls_protocols("tls_protocols", &list);
                ok &= self.errors.len() == before;
                protocols
            });
            let client_cert = match (&u.tls_client_cert, &u.tls_client_key) {
                (Some(cert), Some(key)) => {
                    let pair = self.key_pair(
                        &format!("upstream \"{name}\""),
                        ("tls_client_cert", cert),
                        ("tls_client_key", key),
                        cert.span(),
                    );
                    ok &= pair.is_some();
                    pair
                }
                (None, None) => None,
                (Some(given), None) | (None, Some(given)) => {
                    let (have, missing) = if u.tls_client_cert.is_some() {
                        ("tls_client_cert", "tls_client_key")
                    } else {
                        ("tls_client_key", "tls_client_cert")
                    };
                    self.error(
                        given.span(),
                        format!(
                            "{have} needs {missing} in upstream \"{name}\": the certificate and its key go together"
                        ),
                    );
                    ok = false;
                    None
                }
            };
            if ok {
                let ca = ca_file.as_ref().map(|(path, certificates)| (path.as_path(), certificates.as_slice()));
                match tls::upstream_client_config(verify, ca, protocols, client_cert.clone()) {
                    Ok(client_config) => {
                        tls = Some(UpstreamTls {
                            verify,
                            server_name,
                            client_config,
                            ca_certificates: ca_file.map(|(_, certificates)| certificates),
                            protocols,
                            client_cert,
                        })
                    }
                    Err(e) => {
                        self.error(tls_span, format!("upstream \"{name}\": cannot set up TLS: {e}"));
                        ok = false;
                    }
                }
            }
        }

        let consistent = u.consistent.as_ref().is_some_and(|c| *c.get_ref());
        let balance = match u.balance.as_ref().map(|b| b.get_ref().as_str()) {
            None | Some("round_robin") => Balance::RoundRobin,
            Some("ip_hash") => Balance::IpHash { consistent },
            Some(other) => {
                let span = u.balance.as_ref().map_or(name_span.clone(), Spanned::span);
                self.error(span, format!("balance = {other:?}: expected \"round_robin\" or \"ip_hash\""));
                ok = false;
                Balance::RoundRobin
            }
        };
        if let Some(c) = u.consistent.as_ref().filter(|c| *c.get_ref())
            && !matches!(balance, Balance::IpHash { .. })
        {
            self.error(
                c.span(),
                "consistent = true only applies to balance = \"ip_hash\": add it or remove consistent".into(),
            );
            ok = false;
        }

        let sixty = Duration::from_secs(60);
        let connect_timeout = self.duration("connect_timeout", u.connect_timeout, sixty);
        let read_timeout = self.duration("read_timeout", u.read_timeout, sixty);
        let send_timeout = self.duration("send_timeout", u.send_timeout, sixty);
        let sticky = u.sticky.and_then(|s| self.sticky(&name, s));
        let health_check = match u.health_check {
            Some(check) => {
                let check = self.health_check(check);
                ok &= check.is_some();
                check
            }
            None => None,
        };

        ok.then(|| Upstream {
            name,
            peers,
            tls,
            balance,
            keepalive: u.keepalive.unwrap_or(32),
            connect_timeout,
            read_timeout,
            send_timeout,
            sticky,
            health_check,
        })
    }

    /// `[upstream.NAME.health_check]`; `None` after reporting a problem.
    fn health_check(&mut self, check: Spanned<file::HealthCheck>) -> Option<HealthCheck> {
        let c = check.into_inner();
        let before = self.errors.len();
        let uri = match c.uri {
            None => "/".to_owned(),
            Some(uri) => {
                let valid = uri.get_ref().starts_with('/')
                    && uri.get_ref().parse::<http::uri::PathAndQuery>().is_ok_and(|p| p.as_str() == uri.get_ref());
                if !valid {
                    self.error(
                        uri.span(),
                        format!(
                            "uri = {:?}: expected a path such as \"/services/Version\" (it starts with /, \
                             no spaces or control characters)",
                            uri.get_ref()
                        ),
                    );
                }
                uri.into_inner()
            }
        };
        let positive = |this: &mut Self, key: &str, value: Option<Spanned<String>>, default: Duration| {
            let span = value.as_ref().map(Spanned::span);
            let errors = this.errors.len();
            let duration = this.duration(key, value, default);
            if let (Some(span), true) = (span, duration.is_zero() && this.errors.len() == errors) {
                this.error(span, format!("{key} must be longer than 0s, such as {key} = \"5s\""));
            }
            duration
        };
        let interval = positive(self, "interval", c.interval, Duration::from_secs(5));
        let timeout = positive(self, "timeout", c.timeout, interval.min(Duration::from_secs(5)));
        let mut count = |key: &str, value: Option<Spanned<u32>>| match value {
            None => 1,
            Some(n) if *n.get_ref() == 0 => {
                self.error(n.span(), format!("{key} = 0: a check verdict needs at least 1 check, such as {key} = 1"));
                1
            }
            Some(n) => n.into_inner(),
        };
        let fails = count("fails", c.fails);
        let passes = count("passes", c.passes);
        let status = match c.status {
            None => vec![(200, 399)],
            Some(text) => parse_status_ranges(text.get_ref()).unwrap_or_else(|why| {
                self.error(
                    text.span(),
                    format!(
                        "status = {:?}: {why}; expected codes and ranges such as \"200-399\" or \"200, 204\"",
                        text.get_ref()
                    ),
                );
                Vec::new()
            }),
        };
        let host = c.host.and_then(|host| {
            if host.get_ref().is_empty() || http::HeaderValue::from_str(host.get_ref()).is_err() {
                self.error(
                    host.span(),
                    format!("host = {:?}: expected a host name such as \"localhost\"", host.get_ref()),
                );
                return None;
            }
            Some(host.into_inner())
        });
        let port = c.port.and_then(|port| match u16::try_from(*port.get_ref()) {
            Ok(n) if n > 0 => Some(n),
            _ => {
                self.error(
                    port.span(),
                    format!(
                        "port = {}: expected a port from 1 to 65535, such as port = 9763 (leave it out to check \
                         each server on its own port)",
                        port.get_ref()
                    ),
                );
                None
            }
        });
        let body = c.body.and_then(|body| {
            let len = body.get_ref().len();
            let why = if len == 0 {
                "body = \"\": every response contains the empty text; leave body out to test the status alone, \
                 or name text only a healthy answer contains, such as body = \"UP\""
                    .to_owned()
            } else if len > HealthCheck::BODY_LIMIT {
                format!(
                    "body is {len} bytes long: a check reads at most the first {} bytes of the response body, \
                     so it could never be found",
                    HealthCheck::BODY_LIMIT
                )
            } else {
                return Some(body.into_inner());
            };
            self.error(body.span(), why);
            None
        });
        if self.errors.len() > before {
            return None;
        }
        Some(HealthCheck {
            uri,
            interval,
            timeout,
            fails,
            passes,
            status,
            host,
            mandatory: c.mandatory.unwrap_or(false),
            port,
            body,
        })
    }

    fn peer(&mut self, upstream: &str, server: Spanned<file::UpstreamServer>) -> Option<Peer> {
        let span = server.span();
        let (address, table) = match server.into_inner() {
            file::UpstreamServer::Address(a) => (Spanned::new(span, a), None),
            file::UpstreamServer::Table(t) => match t.address.clone() {
                Some(a) => (a, Some(t)),
                None => {
                    self.error(
                        span,
                        format!("a server of upstream \"{upstream}\" has no address: add address = \"host:port\""),
                    );
                    return None;
                }
            },
        };
        let mut ok = true;
        let host = match split_host_port(address.get_ref()) {
            Some(host) => Some(host),
            None => {
                self.error(
                    address.span(),
                    format!(
                        "server {:?}: expected \"host:port\" such as \"10.0.0.1:8080\", \"app1.internal:8080\" or \"[fd00::1]:8080\"",
                        address.get_ref()
                    ),
                );
                None
            }
        };
        let socket_addr = host.as_ref().and_then(|_| match address.get_ref().to_socket_addrs() {
            Ok(mut addrs) => addrs.next().or_else(|| {
                self.error(address.span(), format!("server {:?}: the name resolves to no address", address.get_ref()));
                None
            }),
            Err(e) => {
                self.error(address.span(), format!("server {:?}: cannot resolve: {e}", address.get_ref()));
                None
            }
        });
        let mut weight = 1;
        let mut max_fails = 1;
        let mut fail_timeout = Duration::from_secs(10);
        let mut backup = false;
        let mut down = false;
        let mut drain = false;
        if let Some(t) = table {
            if let Some(w) = t.weight {
                if *w.get_ref() == 0 {
                    self.error(
                        w.span(),
                        "weight = 0: must be at least 1 (use down = true to take a server out)".into(),
                    );
                    ok = false;
                }
                weight = *w.get_ref();
            }
            max_fails = t.max_fails.unwrap_or(1);
            fail_timeout = self.duration("fail_timeout", t.fail_timeout, fail_timeout);
            backup = t.backup.unwrap_or(false);
            down = t.down.unwrap_or(false);
            if let Some(d) = t.drain {
                drain = *d.get_ref();
                if drain && down {
                    self.error(
                        d.span(),
                        "drain = true with down = true: a server either takes its sessions' requests (drain) or none (down); keep one".into(),
                    );
                    ok = false;
                }
            }
        }
        match (host, socket_addr, ok) {
            (Some(host), Some(socket_addr), true) => Some(Peer {
                address: address.into_inner(),
                host,
                socket_addr,
                weight,
                max_fails,
                fail_timeout,
                backup,
                down,
                drain,
            }),
            _ => None,
        }
    }

    fn sticky(&mut self, upstream: &str, sticky: Spanned<file::Sticky>) -> Option<Sticky> {
        let span = sticky.span();
        let s = sticky.into_inner();
        let mut ok = true;
        let learn = match s.learn {
            None => {
                self.error(
                    span,
                    format!("[upstream.{upstream}.sticky] needs learn = \"COOKIE\", such as learn = \"JSESSIONID\""),
                );
                ok = false;
                String::new()
            }
            Some(l) if !is_cookie_name(l.get_ref()) => {
                self.error(
                    l.span(),
                    format!("learn = {:?}: expected a cookie name such as \"JSESSIONID\" (letters, digits and !#$%&'*+-.^_`|~)", l.get_ref()),
                );
                ok = false;
                String::new()
            }
            Some(l) => l.into_inner(),
        };
        let size_span = s.size.as_ref().map(Spanned::span);
        let bytes = self.size("size", s.size, 1024 * 1024);
        if let (Some(span), 0) = (size_span, bytes) {
            self.error(span, "size: the session table needs room, such as size = \"1m\"".into());
            ok = false;
        }
        let timeout = self.duration("timeout", s.timeout, Duration::from_secs(600));
        let store = self.sticky_store(upstream, s.store, s.store_prefix, s.store_timeout);
        if store.is_err() {
            ok = false;
        }
        ok.then(|| Sticky {
            learn,
            zone: s.zone.unwrap_or_else(|| upstream.to_owned()),
            capacity: usize::try_from(bytes / 25).unwrap_or(usize::MAX).max(1),
            timeout,
            store: store.ok().flatten(),
        })
    }

    /// `store`, `store_prefix` and `store_timeout`: `Ok(None)` without a store,
    /// `Err` after reporting a problem.
    fn sticky_store(
        &mut self,
        upstream: &str,
        url: Option<Spanned<String>>,
        prefix: Option<Spanned<String>>,
        timeout: Option<Spanned<String>>,
    ) -> Result<Option<StickyStore>, ()> {
        let Some(url) = url else {
            for (key, span) in
                [("store_prefix", prefix.map(|p| p.span())), ("store_timeout", timeout.map(|t| t.span()))]
            {
                if let Some(span) = span {
                    self.error(
                        span,
                        format!(
                            "{key} only applies with a store: add store = \"redis://HOST:6379/0\" to \
                             [upstream.{upstream}.sticky] or remove {key}"
                        ),
                    );
                }
            }
            return Ok(None);
        };
        let mut ok = true;
        if let Err(problem) = check_store_url(url.get_ref()) {
            // Never echo the URL: it may hold a password.
            self.error(
                url.span(),
                format!("store: {problem}; expected a URL such as \"redis://127.0.0.1:6379/0\" or \"rediss://redis.internal:6380/0\""),
            );
            ok = false;
        }
        let lookup_timeout = match timeout {
            None => Duration::from_millis(20),
            Some(t) => match parse_duration(t.get_ref()) {
                Some(d) if !d.is_zero() && d <= Duration::from_secs(1) => d,
                Some(_) => {
                    self.error(
                        t.span(),
                        format!(
                            "store_timeout = {:?}: a request waits this long for Redis on a local miss; \
                             use more than \"0s\" and at most \"1s\" (default \"20ms\")",
                            t.get_ref()
                        ),
                    );
                    ok = false;
                    Duration::ZERO
                }
                None => {
                    self.error(t.span(), format!("store_timeout = {:?}: {DURATION_HINT}", t.get_ref()));
                    ok = false;
                    Duration::ZERO
                }
            },
        };
        let prefix = prefix.map_or_else(|| "portico:sticky:".to_owned(), Spanned::into_inner);
        if ok { Ok(Some(StickyStore { url: url.into_inner(), prefix, lookup_timeout })) } else { Err(()) }
    }

    fn server(
        &mut self,
        server: Spanned<file::Server>,
        upstreams: &[String],
        zones: &[String],
        formats: &[NamedFormat],
    ) -> ServerEntry {
        let span = server.span();
        let line = self.line(&span);
        let mut s = server.into_inner();

        let mut listens: Vec<(SocketAddr, Spanned<String>)> = Vec::new();
        match s.listen.take() {
            Some(l) if !l.get_ref().is_empty() => {
                for entry in l.into_inner() {
                    let Some(addr) = parse_listen(entry.get_ref()) else {
                        self.error(entry.span(), format!("listen {:?}: {LISTEN_HINT}", entry.get_ref()));
                        continue;
                    };
                    if listens.iter().any(|(a, _)| *a == addr) {
                        self.error(
                            entry.span(),
                            format!("listen {:?}: this server already listens on {addr}; remove one", entry.get_ref()),
                        );
                        continue;
                    }
                    listens.push((addr, entry));
                }
            }
            other => {
                let at = other.map_or(span.clone(), |l| l.span());
                self.error(at, "this [[server]] has no listen address: add listen = [\"80\"] or similar".into());
            }
        }

        let mut server_names = Vec::new();
        let mut raw_names = Vec::new();
        let mut name_spans = Vec::new();
        for name in &s.server_name {
            match parse_server_name(name.get_ref()) {
                Ok(parsed) => {
                    name_spans.push(name.span());
                    raw_names.push(name.get_ref().trim_end_matches('.').to_ascii_lowercase());
                    server_names.push(parsed);
                }
                Err(why) => self.error(name.span(), format!("server_name {:?}: {why}", name.get_ref())),
            }
        }
        let name = raw_names.first().cloned().unwrap_or_else(|| "_".to_owned());

        let certificate = s.tls.as_ref().and_then(|t| self.certificate(&name, t, &raw_names));
        let client_auth = s.tls.as_ref().and_then(|t| self.client_auth(t));
        let protocols = match s.tls.as_ref().and_then(|t| t.get_ref().protocols.as_ref()) {
            Some(list) => (self.tls_protocols("protocols", list), Some(list.span())),
            None => (TlsProtocols::default(), None),
        };

        let locations = self.locations(&s, upstreams, zones, span.clone());
        let access = self.access(s.allow.as_ref(), s.deny.as_ref()).unwrap_or_default();
        let limit_req = s.limit_req.as_ref().and_then(|l| self.limit_reqs(l, zones)).unwrap_or_default();
        let headers = match s.headers {
            Some(h) => self.headers(h),
            None => default_headers(),
        };
        let response_headers = s.response_headers.as_ref().map(|h| self.response_headers(h)).unwrap_or_default();
        let gzip = s.gzip.as_ref().and_then(|g| self.gzip(g));
        let access_log_format = match s.access_log_format {
            None => AccessLogFormat::Combined,
            Some(f) => match f.get_ref().as_str() {
                "combined" => AccessLogFormat::Combined,
                "json" => AccessLogFormat::Json,
                other => match formats.iter().find(|(name, _)| name == other) {
                    Some((_, Some(format))) => AccessLogFormat::Custom(format.clone()),
                    // Its own error is reported where it is written.
                    Some((_, None)) => AccessLogFormat::Combined,
                    None => {
                        let mut known = vec!["\"combined\"".to_owned(), "\"json\"".to_owned()];
                        known.extend(formats.iter().map(|(name, _)| format!("{name:?}")));
                        self.error(
                            f.span(),
                            format!(
                                "access_log_format = {other:?}: expected {}, or a [log_format.{other}] table \
                                 with format = \"...\"",
                                known.join(", ")
                            ),
                        );
                        AccessLogFormat::Combined
                    }
                },
            },
        };
        let access_log = self.file_path("access_log", s.access_log);
        let error_log = self.file_path("error_log", s.error_log);
        let read_timeout = self.optional_duration("read_timeout", s.read_timeout);
        let send_timeout = self.optional_duration("send_timeout", s.send_timeout);
        let default_server = s.default_server.filter(|d| *d.get_ref()).map(|d| d.span());
        let proxy_protocol = s.proxy_protocol.filter(|p| *p.get_ref()).map(|p| p.span());

        // Kept even when something above failed: the listener checks only need
        // its names and addresses, and their findings are worth reporting too.
        ServerEntry {
            server: Arc::new(VirtualServer {
                name,
                server_names,
                certificate,
                client_auth,
                locations,
                access,
                limit_req,
                headers,
                response_headers,
                gzip,
                access_log,
                access_log_format,
                error_log,
                read_timeout,
                send_timeout,
            }),
            line,
            listens,
            name_spans,
            tls: s.tls.is_some(),
            protocols,
            default_server,
            proxy_protocol,
        }
    }

    /// A server's `tls.protocols` or an upstream's `tls_protocols` (`key`):
    /// nginx's names for the versions portico speaks.
    fn tls_protocols(&mut self, key: &str, list: &Spanned<Vec<Spanned<String>>>) -> TlsProtocols {
        let mut chosen = TlsProtocols { tls12: false, tls13: false };
        for protocol in list.get_ref() {
            match protocol.get_ref().as_str() {
                "TLSv1.2" => chosen.tls12 = true,
                "TLSv1.3" => chosen.tls13 = true,
                old @ ("SSLv2" | "SSLv3" | "TLSv1" | "TLSv1.1") => self.error(
                    protocol.span(),
                    format!("{key}: portico does not speak {old}, only TLSv1.2 and TLSv1.3; remove it"),
                ),
                other => {
                    self.error(protocol.span(), format!("{key} = [{other:?}]: expected \"TLSv1.2\" and/or \"TLSv1.3\""))
                }
            }
        }
        if list.get_ref().is_empty() {
            self.error(list.span(), format!("{key} = []: name \"TLSv1.2\", \"TLSv1.3\" or both"));
        }
        chosen
    }

    /// A server's `tls.verify_client`, `tls.client_ca` and `tls.client_crl`.
    fn client_auth(&mut self, tls: &Spanned<file::ServerTls>) -> Option<Arc<tls::ClientAuth>> {
        let t = tls.get_ref();
        let files = [("client_ca", &t.client_ca), ("client_crl", &t.client_crl)];
        let unused = |this: &mut Self| {
            for (key, value) in files {
                if let Some(value) = value {
                    this.error(
                        value.span(),
                        format!("{key} is used only with verify_client = \"on\", \"optional\" or \"optional_no_ca\": add one, or remove {key}"),
                    );
                }
            }
        };
        let Some(verify) = t.verify_client.as_ref() else {
            unused(self);
            return None;
        };
        let mode = match tls::VerifyClient::parse(verify.get_ref()) {
            Some(mode) => mode,
            None if verify.get_ref() == "off" => {
                unused(self);
                return None;
            }
            None => {
                self.error(
                    verify.span(),
                    format!(
                        "verify_client = {:?}: expected \"on\", \"optional\", \"optional_no_ca\" or \"off\"",
                        verify.get_ref()
                    ),
                );
                return None;
            }
        };
        let client_ca = match &t.client_ca {
            Some(ca) => Some((self.existing_file("client_ca", ca)?, ca.span())),
            None if mode != tls::VerifyClient::OptionalNoCa => {
                self.error(
                    verify.span(),
                    format!(
                        "verify_client = \"{}\" needs client_ca = \"ca.pem\": the CA certificates a client certificate must chain to",
                        mode.as_str()
                    ),
                );
                return None;
            }
            None => None,
        };
        let client_crl = match &t.client_crl {
            Some(crl) if client_ca.is_none() => {
                self.error(
                    crl.span(),
                    "client_crl needs client_ca: revocation is checked along a client's chain to those CAs".into(),
                );
                return None;
            }
            Some(crl) => Some((self.existing_file("client_crl", crl)?, crl.span())),
            None => None,
        };
        let ca_path = client_ca.as_ref().map(|(path, _)| path.as_path());
        match tls::ClientAuth::new(mode, ca_path, client_crl.as_ref().map(|(path, _)| path.as_path())) {
            Ok(policy) => {
                if let Some((crl_path, _)) = &client_crl {
                    self.crl_dates(crl_path, policy.crls(), crate::log::unix_now());
                }
                Some(Arc::new(policy))
            }
            Err(e) => {
                // Reported at the file it names.
                let failed = match &e {
                    tls::TlsError::Read { path, .. } | tls::TlsError::Invalid { path, .. } => Some(path.clone()),
                    tls::TlsError::Other(_) => None,
                };
                let (key, at) = match (&client_crl, failed) {
                    (Some((crl, span)), Some(failed)) if *crl == failed => ("client_crl", span.clone()),
                    _ => ("client_ca", client_ca.map_or_else(|| verify.span(), |(_, span)| span)),
                };
                self.error(at, format!("cannot load {key}: {e}"));
                None
            }
        }
    }

    /// Warns of each CRL in `path` past its next update at `now`: its CA has
    /// published a newer one, which may revoke more. rustls still checks
    /// against it; OpenSSL, and so nginx, would refuse every client certificate.
    fn crl_dates(&mut self, path: &Path, crls: &[rustls_pki_types::CertificateRevocationListDer<'_>], now: i64) {
        for next in crls.iter().filter_map(|crl| tls::crl_next_update(crl)) {
            if next <= now {
                self.warnings.push(format!(
                    "client_crl {}: a list in it was due to be replaced on {}: fetch its CA's current one (portico still checks against this one; nginx would refuse every client certificate)",
                    path.display(),
                    crate::log::utc_date(next)
                ));
            }
        }
    }

    /// The path `value` names, if it is a file; else an error at it, naming `key`.
    fn existing_file(&mut self, key: &str, value: &Spanned<String>) -> Option<PathBuf> {
        let path = self.path(value.get_ref());
        if path.is_file() {
            return Some(path);
        }
        self.error(value.span(), format!("{key} file {} does not exist", path.display()));
        None
    }

    fn certificate(
        &mut self,
        name: &str,
        tls: &Spanned<file::ServerTls>,
        names: &[String],
    ) -> Option<Arc<CertifiedKey>> {
        let t = tls.get_ref();
        let self_signed = t.self_signed.as_ref().is_some_and(|s| *s.get_ref());
        match (&t.cert, &t.key, self_signed) {
            (None, None, true) => {
                self.warnings.push(format!("server \"{name}\" uses a self-signed certificate: for trials only"));
                let names = if names.is_empty() { vec!["localhost".to_owned()] } else { names.to_vec() };
                tls::self_signed(&names)
                    .map_err(|e| self.error(tls.span(), format!("cannot make a self-signed certificate: {e}")))
                    .ok()
            }
            (Some(cert), Some(key), false) => {
                self.key_pair(&format!("server \"{name}\""), ("cert", cert), ("key", key), tls.span())
            }
            _ => {
                self.error(
                    tls.span(),
                    "tls: expected { cert = \"server.crt\", key = \"server.key\" } or { self_signed = true }".into(),
                );
                None
            }
        }
    }

    /// A certificate chain and its key from the files `cert` and `key` name
    /// (each with its key's name, for the messages), for `owner` (`server "a"`,
    /// `upstream "b"`); a failure to load them is reported at `span`.
    fn key_pair(
        &mut self,
        owner: &str,
        cert: (&str, &Spanned<String>),
        key: (&str, &Spanned<String>),
        span: Range<usize>,
    ) -> Option<Arc<CertifiedKey>> {
        let cert_path = self.path(cert.1.get_ref());
        let key_path = self.path(key.1.get_ref());
        let mut exist = true;
        for ((what, value), path) in [(cert, &cert_path), (key, &key_path)] {
            if !path.is_file() {
                self.error(value.span(), format!("{what} file {} does not exist", path.display()));
                exist = false;
            }
        }
        if !exist {
            return None;
        }
        if let Ok(meta) = std::fs::metadata(&key_path) {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                self.warnings.push(format!(
                    "key file {} is readable by group or others (mode {mode:04o}): chmod 600 it",
                    key_path.display()
                ));
            }
        }
        let certified = tls::load_certified_key(&cert_path, &key_path)
            .map_err(|e| self.error(span, format!("cannot load the certificate and key: {e}")))
            .ok()?;
        self.certificate_dates(owner, &cert_path, &certified, crate::log::unix_now());
        Some(certified)
    }

    /// Warns of a certificate that has expired, expires within
    /// [`tls::EXPIRY_WARNING_DAYS`], or is not valid yet (`now` in Unix seconds):
    /// nginx uses such a certificate without a word, and the other end refuses it.
    fn certificate_dates(&mut self, owner: &str, path: &Path, certified: &CertifiedKey, now: i64) {
        let Some(validity) = certified.cert.first().and_then(|leaf| tls::validity(leaf)) else { return };
        let file = path.display();
        let after = crate::log::utc_date(validity.not_after);
        let days_left = (validity.not_after - now) / 86_400;
        if validity.not_after <= now {
            self.warnings.push(format!("{owner}: certificate {file} expired on {after}: it is refused; renew it"));
        } else if days_left < tls::EXPIRY_WARNING_DAYS {
            self.warnings
                .push(format!("{owner}: certificate {file} expires on {after}, in {days_left} days: renew it"));
        }
        if validity.not_before > now {
            let before = crate::log::utc_date(validity.not_before);
            self.warnings
                .push(format!("{owner}: certificate {file} is not valid before {before}: it is refused until then"));
        }
    }

    fn locations(
        &mut self,
        s: &file::Server,
        upstreams: &[String],
        zones: &[String],
        server_span: Range<usize>,
    ) -> Vec<Location> {
        // Each location and where it was declared, before sorting.
        let mut found: Vec<(Location, Range<usize>)> = Vec::new();

        if s.redirect.is_none()
            && let Some(status) = &s.redirect_status
        {
            self.error(
                status.span(),
                "redirect_status without redirect: add redirect = \"https://...\" or remove it".into(),
            );
        }
        match (&s.redirect, &s.proxy_pass) {
            (Some(redirect), Some(proxy_pass)) => {
                let at =
                    if redirect.span().start > proxy_pass.span().start { redirect.span() } else { proxy_pass.span() };
                self.error(
                    at,
                    "a server takes either redirect or proxy_pass, not both: put one of them in a [[server.location]]"
                        .into(),
                );
            }
            (Some(redirect), None) => {
                if let Some(action) = self.redirect(redirect, s.redirect_status.as_ref()) {
                    found.push((shorthand(action), redirect.span()));
                }
            }
            (None, Some(proxy_pass)) => {
                if let Some(action) = self.proxy(proxy_pass, upstreams) {
                    found.push((shorthand(action), proxy_pass.span()));
                }
            }
            (None, None) => {}
        }

        for loc in &s.location {
            let loc_span = loc.span();
            let l = loc.get_ref();
            let Some(prefix) = &l.prefix else {
                self.error(loc_span, "[[server.location]] needs prefix, such as prefix = \"/\"".into());
                continue;
            };
            if !prefix.get_ref().starts_with('/') {
                self.error(prefix.span(), format!("prefix = {:?}: must start with \"/\"", prefix.get_ref()));
                continue;
            }
            if let Some((_, earlier)) = found.iter().find(|(l, _)| l.prefix == *prefix.get_ref()) {
                let line = self.line(earlier);
                self.error(
                    prefix.span(),
                    format!(
                        "prefix = {:?}: this server already handles {:?} (line {line}); merge the two",
                        prefix.get_ref(),
                        prefix.get_ref()
                    ),
                );
                continue;
            }
            if l.redirect.is_none()
                && let Some(status) = &l.redirect_status
            {
                self.error(
                    status.span(),
                    "redirect_status without redirect: add redirect = \"https://...\" or remove it".into(),
                );
            }
            let count = [l.proxy_pass.is_some(), l.return_status.is_some(), l.redirect.is_some()]
                .into_iter()
                .filter(|&b| b)
                .count();
            if count != 1 {
                let what = if count == 0 { "nothing" } else { "more than one of them" };
                self.error(
                    prefix.span(),
                    format!(
                        "location {:?}: give exactly one of proxy_pass, return or redirect (found {what})",
                        prefix.get_ref()
                    ),
                );
                continue;
            }
            let action = if let Some(p) = &l.proxy_pass {
                self.proxy(p, upstreams)
            } else if let Some(r) = &l.redirect {
                self.redirect(r, l.redirect_status.as_ref())
            } else if let Some(status) = &l.return_status {
                match u16::try_from(*status.get_ref())
                    .ok()
                    .filter(|c| (100..=599).contains(c))
                    .map(StatusCode::from_u16)
                {
                    Some(Ok(status)) => Some(Action::Return { status }),
                    _ => {
                        self.error(
                            status.span(),
                            format!("return = {}: expected an HTTP status from 100 to 599", status.get_ref()),
                        );
                        None
                    }
                }
            } else {
                None
            };
            let access = self.access(l.allow.as_ref(), l.deny.as_ref());
            let limit_req = l.limit_req.as_ref().and_then(|limit| self.limit_reqs(limit, zones));
            let response_headers = l.response_headers.as_ref().map(|h| self.response_headers(h));
            let gzip = l.gzip.as_ref().map(|g| self.gzip(g));
            if let Some(action) = action {
                let location =
                    Location { prefix: prefix.get_ref().clone(), action, access, limit_req, response_headers, gzip };
                found.push((location, prefix.span()));
            }
        }

        if found.is_empty() && s.redirect.is_none() && s.proxy_pass.is_none() && s.location.is_empty() {
            self.error(
                server_span,
                "this [[server]] has no way to answer: add proxy_pass = \"UPSTREAM\", redirect = \"https://...\" or a [[server.location]]".into(),
            );
        }
        // Longest prefix first so that the first match is the best one.
        found.sort_by_key(|(location, _)| std::cmp::Reverse(location.prefix.len()));
        found.into_iter().map(|(location, _)| location).collect()
    }

    /// `[log_format.NAME]`, compiled; its format `None` after reporting a
    /// problem, and `None` for a name that is one of portico's own formats.
    fn log_format(&mut self, name: Spanned<String>, format: Spanned<file::LogFormat>) -> Option<NamedFormat> {
        let span = format.span();
        let format = format.into_inner();
        let label = name.get_ref().clone();
        if BUILT_IN_FORMATS.contains(&label.as_str()) {
            self.error(
                name.span(),
                format!("[log_format.{label}]: {label:?} is portico's own format; give this one another name"),
            );
            return None;
        }
        let escape = match &format.escape {
            None => Escape::Default,
            Some(name) => Escape::from_name(name.get_ref()).unwrap_or_else(|| {
                let message = format!("escape = {:?}: expected \"default\", \"json\" or \"none\"", name.get_ref());
                self.error(name.span(), message);
                Escape::Default
            }),
        };
        let Some(text) = format.format else {
            self.error(
                span,
                format!(
                    "[log_format.{label}] needs format = \"...\", such as \
                     format = '$remote_addr - $remote_user [$time_local] \"$request\" $status $body_bytes_sent'"
                ),
            );
            return Some((label, None));
        };
        match LogFormat::parse(text.get_ref(), escape) {
            Ok(compiled) => Some((label, Some(Arc::new(compiled)))),
            Err(e) => {
                self.error(text.span(), format!("[log_format.{label}] format: {e}"));
                Some((label, None))
            }
        }
    }

    /// `[limit_req.NAME]`; `None` after reporting a problem.
    fn limit_zone(&mut self, name: Spanned<String>, zone: Spanned<file::LimitZone>) -> Option<LimitZone> {
        let span = zone.span();
        let z = zone.into_inner();
        let before = self.errors.len();
        let rate = match &z.rate {
            None => {
                self.error(
                    span,
                    format!(
                        "[limit_req.{}] needs rate = \"Nr/s\" or \"Nr/m\", such as rate = \"10r/s\"",
                        name.get_ref()
                    ),
                );
                0
            }
            Some(text) => parse_rate(text.get_ref()).unwrap_or_else(|| {
                self.error(
                    text.span(),
                    format!(
                        "rate = {:?}: expected requests per second or minute, such as \"10r/s\" or \"30r/m\"",
                        text.get_ref()
                    ),
                );
                0
            }),
        };
        let size_span = z.size.as_ref().map(Spanned::span);
        let bytes = self.size("size", z.size, 1024 * 1024);
        // nginx: "one megabyte zone can keep about 16 thousand 64-byte states".
        let capacity = usize::try_from(bytes / 64).unwrap_or(usize::MAX);
        if let (Some(span), 0) = (size_span, capacity) {
            self.error(span, "size: the zone needs room for at least one address, such as size = \"1m\"".into());
        }
        let key = match &z.key {
            None => None,
            Some(text) => match Template::parse(text.get_ref()) {
                // The address itself, without rendering it: as no key.
                Ok(key) if key.is_just(&Variable::RemoteAddr) => None,
                Ok(key) => Some(key),
                Err(e) => {
                    self.error(text.span(), format!("key = {:?}: {e}", text.get_ref()));
                    None
                }
            },
        };
        let key_text = z.key.map_or_else(|| "$remote_addr".to_owned(), Spanned::into_inner);
        let rate_text = z.rate.map(Spanned::into_inner).unwrap_or_default();
        (self.errors.len() == before).then(|| LimitZone {
            name: name.into_inner(),
            key,
            key_text,
            rate,
            rate_text,
            capacity,
        })
    }

    /// A server's or location's `limit_req`, one table or a list of them;
    /// `None` after reporting a problem.
    fn limit_reqs(&mut self, limits: &Spanned<file::LimitReqs>, zones: &[String]) -> Option<Vec<LimitReq>> {
        match limits.get_ref() {
            file::LimitReqs::One(limit) => self.limit_req(limits.span(), limit, zones).map(|l| vec![l]),
            file::LimitReqs::List(list) => {
                if list.is_empty() {
                    self.error(
                        limits.span(),
                        "limit_req = []: list at least one { zone = \"NAME\" }, or remove the line".into(),
                    );
                    return None;
                }
                let before = self.errors.len();
                let mut out = Vec::with_capacity(list.len());
                for (i, limit) in list.iter().enumerate() {
                    let name = limit.get_ref().zone.as_ref();
                    let earlier = list[..i]
                        .iter()
                        .any(|l| l.get_ref().zone.as_ref().map(Spanned::get_ref) == name.map(Spanned::get_ref));
                    if let Some(name) = name.filter(|_| earlier) {
                        // nginx refuses it too ("is duplicate"): one bucket would count a request twice.
                        self.error(
                            name.span(),
                            format!(
                                "limit_req zone {:?} is listed twice here; keep one (a zone counts a request once)",
                                name.get_ref()
                            ),
                        );
                        continue;
                    }
                    out.extend(self.limit_req(limit.span(), limit.get_ref(), zones));
                }
                (self.errors.len() == before).then_some(out)
            }
        }
    }

    /// One `{ zone = "NAME", ... }` at `span`; `None` after reporting a problem.
    fn limit_req(&mut self, span: Range<usize>, l: &file::LimitReq, zones: &[String]) -> Option<LimitReq> {
        let before = self.errors.len();
        let zone = match &l.zone {
            None => {
                self.error(span, "limit_req needs zone = \"NAME\", a [limit_req.NAME] table".into());
                None
            }
            Some(name) => {
                let found = zones.iter().position(|z| z == name.get_ref());
                if found.is_none() {
                    let known = if zones.is_empty() { "none".to_owned() } else { zones.join(", ") };
                    self.error(
                        name.span(),
                        format!(
                            "limit_req zone {:?} is not defined (defined: {known}); add [limit_req.{}]",
                            name.get_ref(),
                            name.get_ref()
                        ),
                    );
                }
                found
            }
        };
        let mut count = |key: &str, value: &Option<Spanned<i64>>| match value {
            None => 0,
            Some(n) => u64::try_from(*n.get_ref()).unwrap_or_else(|_| {
                self.error(n.span(), format!("{key} = {}: expected 0 or more requests", n.get_ref()));
                0
            }),
        };
        let burst = count("burst", &l.burst);
        let delay = count("delay", &l.delay);
        let delay_free = match (&l.nodelay, &l.delay) {
            (Some(nodelay), Some(_)) if *nodelay.get_ref() => {
                self.error(
                    nodelay.span(),
                    "nodelay = true and delay: keep one (nodelay sends the whole burst at once, delay that many of it)"
                        .into(),
                );
                0
            }
            (Some(nodelay), _) if *nodelay.get_ref() => burst,
            _ => delay,
        };
        let status = match &l.status {
            None => StatusCode::SERVICE_UNAVAILABLE,
            Some(code) => {
                match u16::try_from(*code.get_ref()).ok().filter(|c| (400..=599).contains(c)).map(StatusCode::from_u16)
                {
                    Some(Ok(status)) => status,
                    _ => {
                        self.error(
                            code.span(),
                            format!("status = {}: expected a status from 400 to 599, such as 429", code.get_ref()),
                        );
                        StatusCode::SERVICE_UNAVAILABLE
                    }
                }
            }
        };
        let zone = zone?;
        (self.errors.len() == before).then_some(LimitReq { zone, burst, delay_free, status })
    }

    /// A server's or location's `allow` and `deny`; `None` when it has neither.
    fn access(
        &mut self,
        allow: Option<&Spanned<Vec<Spanned<String>>>>,
        deny: Option<&Spanned<Vec<Spanned<String>>>>,
    ) -> Option<Access> {
        if allow.is_none() && deny.is_none() {
            return None;
        }
        let mut list = |key: &str, entries: Option<&Spanned<Vec<Spanned<String>>>>| {
            let Some(entries) = entries else { return Vec::new() };
            if entries.get_ref().is_empty() {
                self.error(
                    entries.span(),
                    format!("{key} = []: lists no address; remove it, or list CIDRs such as \"10.0.0.0/8\""),
                );
            }
            let mut nets = Vec::new();
            for entry in entries.get_ref() {
                match entry.get_ref().as_str() {
                    "all" => nets.extend(parse_cidr("0.0.0.0/0").into_iter().chain(parse_cidr("::/0"))),
                    text => match parse_cidr(text) {
                        Some(net) => nets.push(net),
                        None => self.error(
                            entry.span(),
                            format!(
                                "{key} entry {text:?}: expected a CIDR such as \"10.0.0.0/8\", an IP address, or \"all\""
                            ),
                        ),
                    },
                }
            }
            nets
        };
        let access = Access { allow: list("allow", allow), deny: list("deny", deny) };
        if let (Some(allow), Some(deny)) = (allow, deny)
            && deny.get_ref().iter().any(|entry| entry.get_ref() == "all")
        {
            self.error(
                deny.span(),
                format!(
                    "deny = [\"all\"] refuses every client, also those allow lists (line {}): remove deny; allow alone refuses every other address",
                    self.line(&allow.span())
                ),
            );
        }
        Some(access)
    }

    fn proxy(&mut self, proxy_pass: &Spanned<String>, upstreams: &[String]) -> Option<Action> {
        let name = proxy_pass.get_ref();
        if let Some(upstream) = upstreams.iter().position(|u| u == name) {
            return Some(Action::Proxy { upstream });
        }
        let defined = if upstreams.is_empty() {
            "none is defined: add [upstream.NAME] with servers = [...]".to_owned()
        } else {
            format!("defined: {}", upstreams.join(", "))
        };
        self.error(proxy_pass.span(), format!("proxy_pass = {name:?}: no upstream named {name:?} ({defined})"));
        None
    }

    fn redirect(&mut self, redirect: &Spanned<String>, status: Option<&Spanned<i64>>) -> Option<Action> {
        let code = match status {
            None => Some(StatusCode::MOVED_PERMANENTLY),
            Some(s) => {
                let code = u16::try_from(*s.get_ref())
                    .ok()
                    .filter(|c| REDIRECT_STATUSES.contains(c))
                    .and_then(|c| StatusCode::from_u16(c).ok());
                if code.is_none() {
                    self.error(
                        s.span(),
                        format!("redirect_status = {}: expected 301, 302, 303, 307 or 308", s.get_ref()),
                    );
                }
                code
            }
        };
        let location = match Template::parse(redirect.get_ref()) {
            Ok(t) => Some(t),
            Err(e) => {
                self.error(redirect.span(), format!("redirect = {:?}: {e}", redirect.get_ref()));
                None
            }
        };
        Some(Action::Redirect { location: location?, status: code? })
    }

    fn headers(&mut self, headers: file::Entries<Spanned<String>>) -> Vec<HeaderRule> {
        let mut rules = Vec::new();
        for (key, value) in headers.0 {
            let name = match HeaderName::from_bytes(key.get_ref().as_bytes()) {
                Ok(name) => name,
                Err(_) => {
                    self.error(key.span(), format!("header {:?}: not a valid header name", key.get_ref()));
                    continue;
                }
            };
            if name == http::header::CONTENT_LENGTH || name == http::header::TRANSFER_ENCODING {
                // A value of the rule's own would contradict the body portico
                // sends: the server would read the next request from it.
                let message = format!(
                    "header {:?}: portico frames the request body itself and sends this header as the body needs it; remove this line",
                    key.get_ref()
                );
                self.error(key.span(), message);
                continue;
            }
            if value.get_ref().is_empty() {
                rules.push(HeaderRule { name, value: None });
                continue;
            }
            match Template::parse(value.get_ref()) {
                Ok(t) => rules.push(HeaderRule { name, value: Some(t) }),
                Err(e) => self.error(value.span(), format!("{} = {:?}: {e}", key.get_ref(), value.get_ref())),
            }
        }
        rules
    }

    /// `[server.response_headers]`: literal values (a header the same for every
    /// response: HSTS, X-Frame-Options...), `""` to remove the upstream's.
    /// `gzip = true | false | { types, min_length, level }`; `None` is off.
    fn gzip(&mut self, setting: &Spanned<file::GzipSetting>) -> Option<Gzip> {
        let defaults = file::Gzip::default();
        let table = match setting.get_ref() {
            file::GzipSetting::Switch(false) => return None,
            file::GzipSetting::Switch(true) => &defaults,
            file::GzipSetting::Table(table) => table,
        };
        let mut types: Vec<String> = match &table.types {
            None => Gzip::DEFAULT_TYPES.iter().map(|t| (*t).to_owned()).collect(),
            Some(list) => list
                .get_ref()
                .iter()
                .filter_map(|t| {
                    let text = t.get_ref().trim().to_ascii_lowercase();
                    let media = text.split_once('/').filter(|(kind, subtype)| {
                        let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic() && b != b';');
                        token(kind) && token(subtype) && !subtype.contains('/')
                    });
                    if media.is_none() && text != "*" {
                        self.error(
                            t.span(),
                            format!(
                                "gzip types entry {:?}: expected a media type such as \"application/json\", or \"*\" for any",
                                t.get_ref()
                            ),
                        );
                        return None;
                    }
                    Some(text)
                })
                .collect(),
        };
        // As nginx's gzip_types: text/html is always compressed.
        if !types.iter().any(|t| t == "text/html") {
            types.push("text/html".to_owned());
        }
        let min_length = self.size("gzip min_length", table.min_length.clone(), 20);
        let level = match &table.level {
            None => 1,
            Some(level) => match u32::try_from(*level.get_ref()).ok().filter(|l| (1..=9).contains(l)) {
                Some(level) => level,
                None => {
                    self.error(
                        level.span(),
                        format!("gzip level = {}: expected 1 (fastest, the default) to 9 (smallest)", level.get_ref()),
                    );
                    1
                }
            },
        };
        Some(Gzip { types, min_length, level })
    }

    fn response_headers(&mut self, headers: &file::Entries<Spanned<String>>) -> ResponseHeaders {
        let mut rules = Vec::new();
        for (key, value) in &headers.0 {
            let Ok(name) = HeaderName::from_bytes(key.get_ref().as_bytes()) else {
                self.error(key.span(), format!("header {:?}: not a valid header name", key.get_ref()));
                continue;
            };
            // Framing and connection management are portico's to set on each side.
            let framing = [
                http::header::CONTENT_LENGTH,
                http::header::TRANSFER_ENCODING,
                http::header::CONNECTION,
                http::header::UPGRADE,
                http::header::TRAILER,
                http::header::TE,
                HeaderName::from_static("keep-alive"),
                HeaderName::from_static("proxy-connection"),
            ];
            if framing.contains(&name) {
                self.error(
                    key.span(),
                    format!(
                        "response header {:?}: portico sets it as the connection and body need it; remove this line",
                        key.get_ref()
                    ),
                );
                continue;
            }
            let text = value.get_ref();
            if text.contains('$') {
                self.error(
                    value.span(),
                    format!("{} = {text:?}: response headers take literal text, not variables", key.get_ref()),
                );
                continue;
            }
            if text.is_empty() {
                rules.push((name, None));
                continue;
            }
            match http::HeaderValue::from_str(text) {
                Ok(v) => rules.push((name, Some(v))),
                Err(_) => self.error(
                    value.span(),
                    format!("{} = {text:?}: not a valid header value (control characters?)", key.get_ref()),
                ),
            }
        }
        rules
    }

    fn listeners(&mut self, servers: &[ServerEntry]) -> Vec<Listener> {
        struct Building {
            listener: Listener,
            /// Index in `servers` of each server on this listener.
            members: Vec<usize>,
            default_set: bool,
        }
        let mut building: Vec<Building> = Vec::new();
        let mut by_addr: HashMap<SocketAddr, usize> = HashMap::new();
        for (index, entry) in servers.iter().enumerate() {
            for (addr, listen) in &entry.listens {
                let slot = *by_addr.entry(*addr).or_insert_with(|| {
                    building.push(Building {
                        listener: Listener {
                            addr: *addr,
                            tls: entry.tls,
                            tls_protocols: entry.protocols.0,
                            proxy_protocol: entry.proxy_protocol.is_some(),
                            servers: Vec::new(),
                            default_server: 0,
                        },
                        members: Vec::new(),
                        default_set: false,
                    });
                    building.len() - 1
                });
                let Some(b) = building.get_mut(slot) else {
                    continue;
                };
                if let Some(&first) = b.members.first()
                    && let Some(other) = servers.get(first)
                    && other.tls != entry.tls
                {
                    let (with, without) = if entry.tls { (entry, other) } else { (other, entry) };
                    let message = format!(
                        "listen {:?}: server \"{}\" (line {}) uses TLS on {addr} but server \"{}\" (line {}) does not; an address is either TLS or plain for all its servers",
                        listen.get_ref(),
                        with.server.name,
                        with.line,
                        without.server.name,
                        without.line
                    );
                    self.error(listen.span(), message);
                    continue;
                }
                // The servers on one address share its handshake settings
                // (certificates by SNI, session cache, ticket keys): and so
                // its versions.
                if let Some(&first) = b.members.first()
                    && let Some(other) = servers.get(first)
                    && other.protocols.0 != entry.protocols.0
                {
                    let message = format!(
                        "tls.protocols: server \"{}\" (line {}) speaks {} on {addr} and server \"{}\" (line {}) {}; the servers on one address must name the same protocols",
                        entry.server.name,
                        entry.line,
                        entry.protocols.0,
                        other.server.name,
                        other.line,
                        other.protocols.0
                    );
                    self.error(entry.protocols.1.clone().unwrap_or_else(|| listen.span()), message);
                    continue;
                }
                // The header comes before anything that could tell the
                // servers on one address apart.
                if let Some(&first) = b.members.first()
                    && let Some(other) = servers.get(first)
                    && other.proxy_protocol.is_some() != entry.proxy_protocol.is_some()
                {
                    let (with, without) = if entry.proxy_protocol.is_some() { (entry, other) } else { (other, entry) };
                    let message = format!(
                        "proxy_protocol: server \"{}\" (line {}) expects a PROXY protocol header on {addr} but server \"{}\" (line {}) does not; the servers on one address must agree",
                        with.server.name, with.line, without.server.name, without.line
                    );
                    self.error(entry.proxy_protocol.clone().unwrap_or_else(|| listen.span()), message);
                    continue;
                }
                let mut clashed = false;
                for (name, span) in entry.server.server_names.iter().zip(&entry.name_spans) {
                    let other = b.members.iter().filter_map(|&m| servers.get(m));
                    if let Some(other) = other.into_iter().find(|o| o.server.server_names.contains(name)) {
                        let shown = match name {
                            ServerName::Exact(n) => n.clone(),
                            ServerName::Wildcard(suffix) => format!("*{suffix}"),
                        };
                        let message = format!(
                            "server_name \"{shown}\": server \"{}\" (line {}) already uses this name on {addr}; each name may appear once per address",
                            other.server.name, other.line
                        );
                        self.error(span.clone(), message);
                        clashed = true;
                    }
                }
                if clashed {
                    continue;
                }
                if let Some(default_span) = &entry.default_server {
                    if b.default_set {
                        let first =
                            b.members.iter().filter_map(|&m| servers.get(m)).find(|s| s.default_server.is_some());
                        let (other, other_line) = first.map_or(("?", 0), |s| (s.server.name.as_str(), s.line));
                        let message = format!(
                            "default_server = true: server \"{other}\" (line {other_line}) is already the default server on {addr}; keep one"
                        );
                        self.error(default_span.clone(), message);
                        continue;
                    }
                    b.default_set = true;
                    b.listener.default_server = b.members.len();
                }
                b.members.push(index);
                b.listener.servers.push(Arc::clone(&entry.server));
            }
        }
        building.into_iter().map(|b| b.listener).collect()
    }
}

/// The headers sent without a `[server.headers]` table.
fn default_headers() -> Vec<HeaderRule> {
    [
        ("x-forwarded-host", "$host"),
        ("x-forwarded-server", "$host"),
        ("x-forwarded-for", "$proxy_add_x_forwarded_for"),
        // `$server_port` rather than a literal: a server may listen on several ports.
        ("x-forwarded-port", "$server_port"),
        ("host", "$http_host"),
        ("x-forwarded-proto", "$scheme"),
    ]
    .into_iter()
    .filter_map(|(name, value)| {
        Some(HeaderRule { name: HeaderName::from_static(name), value: Some(Template::parse(value).ok()?) })
    })
    .collect()
}

/// `"500ms"`, `"30s"`, `"5m"`, `"1h"`, `"1d"`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let digits = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(digits);
    let n: u64 = number.parse().ok()?;
    let secs = match unit.trim() {
        "ms" => return Some(Duration::from_millis(n)),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(secs).map(Duration::from_secs)
}

/// `"16k"`, `"1m"`, `"1g"` (binary multiples, as nginx) or plain bytes.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let (number, multiplier) = match text.char_indices().last()? {
        (i, 'k' | 'K') => (&text[..i], 1 << 10),
        (i, 'm' | 'M') => (&text[..i], 1 << 20),
        (i, 'g' | 'G') => (&text[..i], 1 << 30),
        _ => (text, 1),
    };
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    number.parse::<u64>().ok()?.checked_mul(multiplier)
}

/// `"80"` (all IPv4 interfaces), `"127.0.0.1:8080"`, `"[::]:80"`.
pub fn parse_listen(text: &str) -> Option<SocketAddr> {
    if let Ok(port) = text.parse::<u16>() {
        return Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
    }
    text.parse().ok()
}

/// `"10.0.0.0/8"`, `"::1/128"`, or a bare IP (a single address).
pub fn parse_cidr(text: &str) -> Option<Cidr> {
    let (addr, prefix) = match text.split_once('/') {
        Some((addr, prefix)) => (addr.parse::<IpAddr>().ok()?, Some(prefix.parse::<u8>().ok()?)),
        None => (text.parse::<IpAddr>().ok()?, None),
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix_len = prefix.unwrap_or(max);
    (prefix_len <= max).then_some(Cidr { addr, prefix_len })
}

/// The host of `"host:port"` (brackets of an IPv6 literal removed), when the
/// port is a number and an IPv6 host is bracketed.
fn split_host_port(address: &str) -> Option<String> {
    let (host, port) = address.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    let host = match host.strip_prefix('[') {
        Some(inner) => inner.strip_suffix(']')?,
        None if host.contains(':') => return None,
        None => host,
    };
    (!host.is_empty()).then(|| host.to_owned())
}

/// Lower-cased, trailing dot removed; `*.example.com` is a wildcard.
fn parse_server_name(text: &str) -> Result<ServerName, &'static str> {
    let name = text.trim_end_matches('.').to_ascii_lowercase();
    if name.is_empty() {
        return Err("a name cannot be empty (leave server_name = [] for none)");
    }
    if name.chars().any(|c| c.is_whitespace() || c == '/' || c == ':') {
        return Err("expected a host name such as \"api.example.com\" (no port, path or spaces)");
    }
    match name.strip_prefix('*') {
        Some(suffix) if suffix.starts_with('.') && suffix.len() > 1 && !suffix.contains('*') => {
            Ok(ServerName::Wildcard(suffix.to_owned()))
        }
        Some(_) => Err("`*` is only allowed as a whole first label, such as \"*.example.com\""),
        None if name.contains('*') => Err("`*` is only allowed as a whole first label, such as \"*.example.com\""),
        None => Ok(ServerName::Exact(name)),
    }
}

/// RFC 6265 cookie-name: an RFC 7230 token.
/// A server's `proxy_pass` or `redirect` as its location "/", which has no
/// rules of its own: the server's apply.
fn shorthand(action: Action) -> Location {
    Location { prefix: "/".to_owned(), action, access: None, limit_req: None, response_headers: None, gzip: None }
}

/// `"10r/s"` or `"30r/m"` as milli-requests per second (nginx's `ctx->rate`:
/// `rate * 1000 / scale`); `None` for anything else or zero.
fn parse_rate(text: &str) -> Option<u64> {
    let (count, scale) = match text.strip_suffix("r/s") {
        Some(count) => (count, 1),
        None => (text.strip_suffix("r/m")?, 60),
    };
    let count: u64 = count.parse().ok().filter(|&n| n > 0)?;
    count.checked_mul(1000).map(|milli| (milli / scale).max(1))
}

/// `"200-399"`, `"200, 204, 301-302"`: status codes and inclusive ranges,
/// separated by commas or spaces, each within 100-599.
fn parse_status_ranges(text: &str) -> Result<Vec<(u16, u16)>, String> {
    let code = |part: &str| match part.trim().parse::<u16>() {
        Ok(code) if (100..=599).contains(&code) => Ok(code),
        _ => Err(format!("{:?} is not a status code from 100 to 599", part.trim())),
    };
    let mut ranges = Vec::new();
    for part in text.split([',', ' ']).filter(|part| !part.is_empty()) {
        let range = match part.split_once('-') {
            Some((low, high)) => (code(low)?, code(high)?),
            None => (code(part)?, code(part)?),
        };
        if range.0 > range.1 {
            return Err(format!("{part:?} ends before it starts"));
        }
        ranges.push(range);
    }
    if ranges.is_empty() {
        return Err("no status given".to_owned());
    }
    Ok(ranges)
}

fn is_cookie_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Why `url` cannot be a sticky store: the scheme, or what the Redis client says.
/// The message never contains the URL itself (it may hold a password).
fn check_store_url(url: &str) -> Result<(), String> {
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        return Err(match url.split_once("://") {
            Some((scheme, _)) => format!("the URL must start with redis:// or rediss://, not {scheme}://"),
            None => "the URL must start with redis:// or rediss://".to_owned(),
        });
    }
    redis::IntoConnectionInfo::into_connection_info(url).map(drop).map_err(|e| {
        // "Invalid database number - InvalidClientConfig": the description alone
        // (the details can quote the URL).
        let text = e.to_string();
        let reason = text.split(" - ").next().unwrap_or("invalid URL");
        format!("the Redis client cannot use this URL ({reason})")
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const VALID: &str = r#"
[runtime]
error_log = "logs/error.log"
max_request_header_size = "16k"
client_max_body_size = 1048576
tcp_notsent_lowat = "64k"
trusted_proxies = ["10.0.0.0/8", "::1"]

[admin]
listen = "127.0.0.1:9901"

[upstream.zeta]
servers = ["127.0.0.1:9001", { address = "127.0.0.1:9002", weight = 3, max_fails = 0, fail_timeout = "30s", backup = true }]
balance = "ip_hash"
consistent = true

[upstream.alpha]
servers = ["localhost:9003"]
read_timeout = "5m"

[upstream.alpha.sticky]
learn = "JSESSIONID"

[[server]]
listen = ["127.0.0.1:0", "[::1]:0"]
server_name = ["Api.Example.COM.", "*.example.net"]
proxy_pass = "alpha"
access_log = "/var/log/a.log"
access_log_format = "json"
send_timeout = "500ms"

[[server.location]]
prefix = "/internal/"
return = 403

[[server.location]]
prefix = "/old"
redirect = "https://$host/new"
redirect_status = 308

[server.headers]
X-Zed = "$remote_addr"
Host = ""
X-Alpha = "fixed"

[[server]]
listen = ["127.0.0.1:0"]
default_server = true
redirect = "https://example.com$request_uri"
"#;

    #[test]
    fn builds_the_snapshot() {
        let snap = validate(VALID, Path::new("/etc/portico/portico.toml")).unwrap();
        let rt = &snap.runtime;
        assert_eq!(rt.error_log.as_deref(), Some(Path::new("/etc/portico/logs/error.log")));
        assert_eq!(rt.max_request_header_size, 16 * 1024);
        assert_eq!(rt.client_max_body_size, Some(1024 * 1024));
        assert_eq!(rt.tcp_notsent_lowat, 64 * 1024);
        assert_eq!(rt.trusted_proxies.len(), 2);
        assert_eq!(rt.trusted_proxies[1].prefix_len, 128);
        assert_eq!(rt.shutdown_timeout, Duration::from_secs(30));
        assert_eq!(snap.admin.unwrap().listen, "127.0.0.1:9901".parse().unwrap());

        // File order, not alphabetical: proxy_pass = "alpha" is index 1.
        let names: Vec<&str> = snap.upstreams.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["zeta", "alpha"]);
        let zeta = &snap.upstreams[0];
        assert_eq!(zeta.balance, Balance::IpHash { consistent: true });
        assert_eq!(zeta.keepalive, 32);
        assert_eq!(zeta.connect_timeout, Duration::from_secs(60));
        let backup = &zeta.peers[1];
        assert_eq!((backup.weight, backup.max_fails, backup.backup), (3, 0, true));
        assert_eq!(backup.fail_timeout, Duration::from_secs(30));
        assert_eq!(zeta.peers[0].host, "127.0.0.1");
        let alpha = &snap.upstreams[1];
        assert_eq!(alpha.peers[0].host, "localhost");
        assert_eq!(alpha.read_timeout, Duration::from_secs(300));
        let sticky = alpha.sticky.as_ref().unwrap();
        assert_eq!((sticky.zone.as_str(), sticky.capacity), ("alpha", 41943));
        assert_eq!(sticky.timeout, Duration::from_secs(600));

        // Identical "127.0.0.1:0" strings share one listener; the second server is its default.
        assert_eq!(snap.listeners.len(), 2);
        let first = &snap.listeners[0];
        assert_eq!((first.servers.len(), first.default_server, first.tls), (2, 1, false));
        assert_eq!(snap.listeners[1].servers.len(), 1);
        assert!(Arc::ptr_eq(&first.servers[0], &snap.listeners[1].servers[0]));

        let api = &first.servers[0];
        assert_eq!(api.name, "api.example.com");
        assert_eq!(
            api.server_names,
            [ServerName::Exact("api.example.com".into()), ServerName::Wildcard(".example.net".into())]
        );
        let prefixes: Vec<&str> = api.locations.iter().map(|l| l.prefix.as_str()).collect();
        assert_eq!(prefixes, ["/internal/", "/old", "/"]);
        assert!(matches!(api.locations[0].action, Action::Return { status } if status == 403));
        assert!(matches!(api.locations[1].action, Action::Redirect { status, .. } if status == 308));
        assert!(matches!(api.locations[2].action, Action::Proxy { upstream: 1 }));
        let headers: Vec<(&str, bool)> = api.headers.iter().map(|h| (h.name.as_str(), h.value.is_some())).collect();
        assert_eq!(headers, [("x-zed", true), ("host", false), ("x-alpha", true)]);
        assert_eq!(api.access_log_format, AccessLogFormat::Json);
        assert_eq!(api.send_timeout, Some(Duration::from_millis(500)));
        assert_eq!(api.read_timeout, None);

        let redirect = &first.servers[1];
        assert_eq!(redirect.name, "_");
        assert!(matches!(redirect.locations[0].action, Action::Redirect { status, .. } if status == 301));
        let defaults: Vec<&str> = redirect.headers.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(
            defaults,
            [
                "x-forwarded-host",
                "x-forwarded-server",
                "x-forwarded-for",
                "x-forwarded-port",
                "host",
                "x-forwarded-proto"
            ]
        );
        assert!(snap.warnings.is_empty());
    }

    #[test]
    fn an_empty_file_is_a_valid_idle_config() {
        let snap = validate("", Path::new("portico.toml")).unwrap();
        assert!(snap.listeners.is_empty() && snap.upstreams.is_empty() && snap.admin.is_none());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1d"), Some(Duration::from_secs(86_400)));
        for bad in ["", "5", "s", "1.5s", "-1s", "5 min", "99999999999999999999s"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn rates_in_milli_requests_per_second() {
        assert_eq!(parse_rate("10r/s"), Some(10_000));
        assert_eq!(parse_rate("1r/s"), Some(1000));
        assert_eq!(parse_rate("30r/m"), Some(500));
        // nginx's integer division: 1r/m is 16 milli-requests per second.
        assert_eq!(parse_rate("1r/m"), Some(16));
        for bad in ["0r/s", "10", "r/s", "1.5r/s", "-1r/s", "10r/h", "99999999999999999999r/s"] {
            assert_eq!(parse_rate(bad), None, "{bad}");
        }
    }

    #[test]
    fn health_check_defaults_and_status_lists() {
        let with = |check: &str| {
            let toml = format!("[upstream.am]\nservers = [\"127.0.0.1:9443\"]\n[upstream.am.health_check]\n{check}\n");
            let snap = validate(&toml, Path::new("/etc/portico/portico.toml")).unwrap();
            snap.upstreams[0].health_check.clone().unwrap()
        };
        let defaults = with("");
        assert_eq!(
            defaults,
            HealthCheck {
                uri: "/".into(),
                interval: Duration::from_secs(5),
                timeout: Duration::from_secs(5),
                fails: 1,
                passes: 1,
                status: vec![(200, 399)],
                host: None,
                mandatory: false,
                port: None,
                body: None,
            }
        );
        assert!(defaults.accepts(StatusCode::OK) && defaults.accepts(StatusCode::FOUND));
        assert!(!defaults.accepts(StatusCode::NOT_FOUND) && !defaults.accepts(StatusCode::CONTINUE));
        // The timeout follows a shorter interval, and stops at 5s for a longer one.
        assert_eq!(with("interval = \"2s\"").timeout, Duration::from_secs(2));
        assert_eq!(with("interval = \"1m\"").timeout, Duration::from_secs(5));
        let listed = with("uri = \"/health?full=1\"\nstatus = \"200, 204 300-302\"\nmandatory = true");
        assert_eq!(listed.status, [(200, 200), (204, 204), (300, 302)]);
        assert!(listed.accepts(StatusCode::NO_CONTENT) && !listed.accepts(StatusCode::CREATED));
        assert_eq!((listed.uri.as_str(), listed.mandatory), ("/health?full=1", true));
        assert_eq!(with("port = 9763").port, Some(9763));
        assert_eq!(with("body = \"\\\"status\\\": \\\"UP\\\"\"").body.as_deref(), Some("\"status\": \"UP\""));
        assert!(
            validate("[upstream.am]\nservers = [\"127.0.0.1:1\"]", Path::new("p.toml")).unwrap().upstreams[0]
                .health_check
                .is_none()
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0"), Some(0));
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size("16k"), Some(16 * 1024));
        assert_eq!(parse_size("1M"), Some(1 << 20));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        for bad in ["", "k", "1kb", "-1", "1.5m", "1 k"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(parse_listen("80"), Some("0.0.0.0:80".parse().unwrap()));
        assert_eq!(parse_listen("127.0.0.1:8080"), Some("127.0.0.1:8080".parse().unwrap()));
        assert_eq!(parse_listen("[::]:80"), Some("[::]:80".parse().unwrap()));
        assert_eq!(parse_listen("[::1]:8443"), Some("[::1]:8443".parse().unwrap()));
        for bad in ["", "localhost:80", "65536", "::1:80", "*:80"] {
            assert_eq!(parse_listen(bad), None, "{bad}");
        }
    }

    #[test]
    fn cidrs() {
        let net = parse_cidr("10.0.0.0/8").unwrap();
        assert!(net.contains("10.1.2.3".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        assert_eq!(parse_cidr("192.0.2.1").unwrap().prefix_len, 32);
        assert_eq!(parse_cidr("::1").unwrap().prefix_len, 128);
        for bad in ["10.0.0.0/33", "::/129", "10.0.0.0/", "host", "10.0.0.0/8/8"] {
            assert_eq!(parse_cidr(bad), None, "{bad}");
        }
    }

    #[test]
    fn server_names() {
        assert_eq!(parse_server_name("Example.COM."), Ok(ServerName::Exact("example.com".into())));
        assert_eq!(parse_server_name("*.Example.com"), Ok(ServerName::Wildcard(".example.com".into())));
        for bad in ["", ".", "*", "*.", "*example.com", "a.*.com", "a.com:80"] {
            assert!(parse_server_name(bad).is_err(), "{bad}");
        }
    }

    /// A checker of `text` read as `portico.toml` in the current directory.
    fn checker(text: &str) -> Checker<'_> {
        Checker { file: Path::new("portico.toml"), dir: PathBuf::new(), text, errors: Vec::new(), warnings: Vec::new() }
    }

    #[test]
    fn tls_verify_false_warns() {
        // Upstream TLS reaches tls.rs (which may fail here), so only the warning,
        // recorded whatever tls.rs says, is checked.
        let toml = "[upstream.x]\nservers = [\"127.0.0.1:1\"]\ntls = true\ntls_verify = false\n";
        let mut checker = checker(toml);
        let parsed: file::File = toml::from_str(toml).unwrap();
        let snapshot = checker.snapshot(parsed);
        assert_eq!(snapshot.warnings, ["upstream \"x\": tls_verify = false accepts any server certificate"]);
    }

    #[test]
    fn open_listeners_without_trusted_proxies_warn() {
        let config = |listen: &str, trusted: &str| {
            format!(
                "[runtime]\n{trusted}\n[upstream.u]\nservers = [\"127.0.0.1:1\"]\n[[server]]\nlisten = [\"{listen}\"]\nproxy_pass = \"u\"\n"
            )
        };
        let warned = |text: String| {
            let snapshot = validate(&text, Path::new("portico.toml")).unwrap();
            snapshot.warnings.iter().any(|w| w.contains("trusted_proxies is not set"))
        };
        assert!(warned(config("80", "")));
        assert!(!warned(config("127.0.0.1:8080", "")));
        assert!(!warned(config("80", "trusted_proxies = [\"10.0.0.0/8\"]")));
    }

    #[test]
    fn certificates_expired_expiring_or_not_yet_valid_warn() {
        let tmp = crate::test_support::TempDir::new("certdates");
        let dir = &tmp.0;
        let mut params = rcgen::CertificateParams::new(vec!["a.test".to_owned()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2030, 1, 1);
        params.not_after = rcgen::date_time_ymd(2030, 3, 1);
        let key = rcgen::KeyPair::generate().unwrap();
        std::fs::write(dir.join("a.crt"), params.self_signed(&key).unwrap().pem()).unwrap();
        std::fs::write(dir.join("a.key"), key.serialize_pem()).unwrap();
        let certified = tls::load_certified_key(&dir.join("a.crt"), &dir.join("a.key")).unwrap();

        let warnings_at = |now: i64| {
            let mut checker = checker("");
            checker.certificate_dates("server \"a.test\"", Path::new("/etc/portico/a.crt"), &certified, now);
            checker.warnings
        };
        let day = 86_400;
        let start = 1_893_456_000; // 2030-01-01 00:00 UTC
        let end = 1_898_553_600; // 2030-03-01 00:00 UTC
        assert_eq!(
            warnings_at(start - 1),
            [
                "server \"a.test\": certificate /etc/portico/a.crt is not valid before 2030-01-01 00:00 UTC: it is refused until then"
            ]
        );
        assert!(warnings_at(start).is_empty());
        assert!(warnings_at(end - 14 * day).is_empty());
        assert_eq!(
            warnings_at(end - 14 * day + 1),
            ["server \"a.test\": certificate /etc/portico/a.crt expires on 2030-03-01 00:00 UTC, in 13 days: renew it"]
        );
        assert_eq!(
            warnings_at(end),
            [
                "server \"a.test\": certificate /etc/portico/a.crt expired on 2030-03-01 00:00 UTC: it is refused; renew it"
            ]
        );
    }

    #[test]
    fn crls_past_their_next_update_warn() {
        let crl = crate::test_support::crl_der((2030, 1, 1), (2030, 3, 1));
        let crls = [rustls_pki_types::CertificateRevocationListDer::from(crl)];
        let warnings_at = |now: i64| {
            let mut checker = checker("");
            checker.crl_dates(Path::new("/etc/portico/clients.crl"), &crls, now);
            checker.warnings
        };
        let end = 1_898_553_600; // 2030-03-01 00:00 UTC
        assert!(warnings_at(end - 1).is_empty());
        assert_eq!(
            warnings_at(end),
            [
                "client_crl /etc/portico/clients.crl: a list in it was due to be replaced on 2030-03-01 00:00 UTC: fetch its CA's current one (portico still checks against this one; nginx would refuse every client certificate)"
            ]
        );
    }

    #[test]
    fn key_files_readable_by_others_warn() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("portico-keymode-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = tls::generate_pem(&["a.test".to_owned()], tls::KeyType::EcdsaP256).unwrap();
        std::fs::write(dir.join("a.crt"), cert).unwrap();
        std::fs::write(dir.join("a.key"), key).unwrap();
        let text = "[upstream.u]\nservers = [\"127.0.0.1:1\"]\n[[server]]\nlisten = [\"127.0.0.1:0\"]\n\
                    tls = { cert = \"a.crt\", key = \"a.key\" }\nproxy_pass = \"u\"\n";
        let path = dir.join("portico.toml");
        std::fs::set_permissions(dir.join("a.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
        let warnings = validate(text, &path).unwrap().warnings;
        assert!(
            warnings.iter().any(|w| w.contains("a.key is readable by group or others (mode 0644)")),
            "{warnings:?}"
        );
        std::fs::set_permissions(dir.join("a.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
        let warnings = validate(text, &path).unwrap().warnings;
        assert!(!warnings.iter().any(|w| w.contains("readable by group")), "{warnings:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
