//! The TOML file as written: serde types with spans, unknown keys rejected.
//!
//! Everything a user can get wrong in a way serde cannot see (a bad duration, a
//! reference to an undefined upstream) is kept as `Spanned` text here and checked
//! in `validate`, so that all such problems are reported at once with a position.
//! Keys that are required by the contract are still `Option`s for the same reason:
//! a missing one is a semantic error, not a parse failure that hides the rest.

use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use toml::Spanned;

/// The whole `portico.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    /// `[runtime]`.
    pub runtime: Option<Runtime>,
    /// `[admin]`.
    pub admin: Option<Spanned<Admin>>,
    /// `[upstream.NAME]`, in file order.
    #[serde(default)]
    pub upstream: Entries<Spanned<Upstream>>,
    /// `[limit_req.NAME]`: request-rate zones, in file order.
    #[serde(default)]
    pub limit_req: Entries<Spanned<LimitZone>>,
    /// `[log_format.NAME]`: access log layouts, in file order.
    #[serde(default)]
    pub log_format: Entries<Spanned<LogFormat>>,
    /// `[[server]]`, in file order.
    #[serde(default)]
    pub server: Vec<Spanned<Server>>,
}

/// `[log_format.NAME]` (nginx: `log_format NAME escape=... '...'`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogFormat {
    /// The line, with `$variables`.
    pub format: Option<Spanned<String>>,
    /// `default | json | none`.
    pub escape: Option<Spanned<String>>,
}

/// `[runtime]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Runtime {
    /// Tokio worker threads.
    pub worker_threads: Option<Spanned<usize>>,
    /// Path of the process-wide error log.
    pub error_log: Option<Spanned<String>>,
    /// `error | warn | info | debug`.
    pub error_log_level: Option<Spanned<String>>,
    /// Path of the pid file.
    pub pid_file: Option<Spanned<String>>,
    /// Duration.
    pub shutdown_timeout: Option<Spanned<String>>,
    /// Duration.
    pub client_header_timeout: Option<Spanned<String>>,
    /// Duration.
    pub keepalive_timeout: Option<Spanned<String>>,
    /// Size.
    pub max_request_header_size: Option<Spanned<Size>>,
    /// Size; `"0"` is unlimited.
    pub client_max_body_size: Option<Spanned<Size>>,
    /// Client connections at once.
    pub max_connections: Option<Spanned<usize>>,
    /// Size; `"0"` leaves the kernel's setting.
    pub tcp_notsent_lowat: Option<Spanned<Size>>,
    /// CIDRs or bare IPs.
    pub trusted_proxies: Option<Vec<Spanned<String>>>,
    /// A header name (nginx: `real_ip_header`).
    pub real_ip_header: Option<Spanned<String>>,
    /// nginx: `real_ip_recursive`.
    pub real_ip_recursive: Option<Spanned<bool>>,
}

/// `[admin]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    /// Listen address, same syntax as a server's `listen` entries.
    pub listen: Option<Spanned<String>>,
    /// Whether a non-loopback `listen` is allowed.
    pub allow_remote: Option<bool>,
}

/// `[upstream.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// The pool's servers.
    pub servers: Option<Vec<Spanned<UpstreamServer>>>,
    /// Speak HTTPS to the servers.
    pub tls: Option<Spanned<bool>>,
    /// Check the servers' certificates (default true).
    pub tls_verify: Option<Spanned<bool>>,
    /// Trust roots replacing the system's.
    pub ca_file: Option<Spanned<String>>,
    /// SNI and checked name, replacing each server's host.
    pub tls_server_name: Option<Spanned<String>>,
    /// TLS versions offered to the servers, nginx's spelling: `["TLSv1.2", "TLSv1.3"]`.
    pub tls_protocols: Option<Spanned<Vec<Spanned<String>>>>,
    /// PEM certificate chain portico presents when a server asks for one.
    pub tls_client_cert: Option<Spanned<String>>,
    /// Its PEM private key.
    pub tls_client_key: Option<Spanned<String>>,
    /// `round_robin | ip_hash`.
    pub balance: Option<Spanned<String>>,
    /// Consistent hashing for `ip_hash`.
    pub consistent: Option<Spanned<bool>>,
    /// Idle pooled connections per server.
    pub keepalive: Option<usize>,
    /// Duration.
    pub connect_timeout: Option<Spanned<String>>,
    /// Duration.
    pub read_timeout: Option<Spanned<String>>,
    /// Duration.
    pub send_timeout: Option<Spanned<String>>,
    /// `[upstream.NAME.sticky]`.
    pub sticky: Option<Spanned<Sticky>>,
    /// `[upstream.NAME.health_check]`.
    pub health_check: Option<Spanned<HealthCheck>>,
}

/// `[upstream.NAME.health_check]`: active checks (NGINX Plus's `health_check`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// Path and query asked for.
    pub uri: Option<Spanned<String>>,
    /// Duration between checks of one server.
    pub interval: Option<Spanned<String>>,
    /// Duration: connect and answer within it.
    pub timeout: Option<Spanned<String>>,
    /// Failed checks in a row that take a server out.
    pub fails: Option<Spanned<u32>>,
    /// Passed checks in a row that bring it back.
    pub passes: Option<Spanned<u32>>,
    /// Statuses that pass: `"200-399"`, `"200, 204"`.
    pub status: Option<Spanned<String>>,
    /// The Host header sent.
    pub host: Option<Spanned<String>>,
    /// No traffic to a server until its first check passes.
    pub mandatory: Option<bool>,
    /// The port checked on each server's host, instead of its own (wide
    /// enough to report 0 or 70000 as portico's error, not serde's).
    pub port: Option<Spanned<i64>>,
    /// Text the response body must contain.
    pub body: Option<Spanned<String>>,
}

/// One entry of `servers`: `"host:port"` or a table.
#[derive(Debug)]
pub enum UpstreamServer {
    /// `"host:port"` (its span is the enclosing `Spanned`'s).
    Address(String),
    /// `{ address = "host:port", weight = 2, ... }`.
    Table(UpstreamServerTable),
}

/// The table form of an upstream server.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamServerTable {
    /// `"host:port"`.
    pub address: Option<Spanned<String>>,
    /// At least 1.
    pub weight: Option<Spanned<u32>>,
    /// Failures within `fail_timeout` before the server is skipped; 0 disables.
    pub max_fails: Option<u32>,
    /// Duration.
    pub fail_timeout: Option<Spanned<String>>,
    /// Used only when every primary server is down.
    pub backup: Option<bool>,
    /// Taken out by hand.
    pub down: Option<bool>,
    /// Only requests bound to it (sticky sessions) go to it.
    pub drain: Option<Spanned<bool>>,
}

impl<'de> Deserialize<'de> for UpstreamServer {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Hand-written rather than `#[serde(untagged)]` so that a mistake inside the
        // table form (an unknown key, say) keeps its own message and position.
        struct ServerVisitor;
        impl<'de> Visitor<'de> for ServerVisitor {
            type Value = UpstreamServer;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#""host:port" or a table such as { address = "host:port", weight = 2 }"#)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(UpstreamServer::Address(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let table = UpstreamServerTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(UpstreamServer::Table(table))
            }
        }
        deserializer.deserialize_any(ServerVisitor)
    }
}

/// `[upstream.NAME.sticky]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sticky {
    /// Cookie name to learn.
    pub learn: Option<Spanned<String>>,
    /// Table name (default: the upstream's name).
    pub zone: Option<String>,
    /// Size; capacity is one session per 25 bytes.
    pub size: Option<Spanned<Size>>,
    /// Duration.
    pub timeout: Option<Spanned<String>>,
    /// `redis://...` or `rediss://...`: share the table with other nodes.
    pub store: Option<Spanned<String>>,
    /// Prepended to every Redis key (several clusters on one Redis).
    pub store_prefix: Option<Spanned<String>>,
    /// Duration: longest wait for Redis on a local miss.
    pub store_timeout: Option<Spanned<String>>,
}

/// `[limit_req.NAME]` (nginx's `limit_req_zone KEY zone=NAME:SIZE rate=RATE`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitZone {
    /// What requests are counted under (template); default the client address.
    pub key: Option<Spanned<String>>,
    /// `"10r/s"` or `"600r/m"`.
    pub rate: Option<Spanned<String>>,
    /// Size; 16 000 keys per `"1m"`, as nginx.
    pub size: Option<Spanned<Size>>,
}

/// A server's or location's `limit_req`: one table, or an array of them
/// (nginx's several `limit_req` lines on a level), every one applied.
#[derive(Debug)]
pub enum LimitReqs {
    /// `limit_req = { zone = "NAME", ... }` (its span is the enclosing `Spanned`'s).
    One(LimitReq),
    /// `limit_req = [{ zone = "A" }, { zone = "B", ... }]`.
    List(Vec<Spanned<LimitReq>>),
}

impl<'de> Deserialize<'de> for LimitReqs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Hand-written, as `UpstreamServer`'s: a mistake inside a table keeps
        // its own message and position.
        struct LimitReqsVisitor;
        impl<'de> Visitor<'de> for LimitReqsVisitor {
            type Value = LimitReqs;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a table such as { zone = "NAME", burst = 20 } or an array of them"#)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                Ok(LimitReqs::One(LimitReq::deserialize(de::value::MapAccessDeserializer::new(map))?))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut list = Vec::new();
                while let Some(limit) = seq.next_element()? {
                    list.push(limit);
                }
                Ok(LimitReqs::List(list))
            }
        }
        deserializer.deserialize_any(LimitReqsVisitor)
    }
}

/// A server's or location's `limit_req = { zone = "NAME", ... }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitReq {
    /// A `[limit_req.NAME]`.
    pub zone: Option<Spanned<String>>,
    /// Requests that may wait in a key's bucket beyond the rate.
    pub burst: Option<Spanned<i64>>,
    /// Send the burst at once rather than at the rate.
    pub nodelay: Option<Spanned<bool>>,
    /// How many of the burst go at once (nginx's `delay=N`).
    pub delay: Option<Spanned<i64>>,
    /// Answer to a refused request (default 503, nginx's `limit_req_status`).
    pub status: Option<Spanned<i64>>,
}

/// `[[server]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// `"80"`, `"127.0.0.1:8080"`, `"[::]:443"`.
    pub listen: Option<Spanned<Vec<Spanned<String>>>>,
    /// Exact names or `*.example.com`.
    #[serde(default)]
    pub server_name: Vec<Spanned<String>>,
    /// The listener's default server.
    pub default_server: Option<Spanned<bool>>,
    /// Connections on its addresses begin with a PROXY protocol header.
    pub proxy_protocol: Option<Spanned<bool>>,
    /// TLS termination.
    pub tls: Option<Spanned<ServerTls>>,
    /// Redirect every request (template).
    pub redirect: Option<Spanned<String>>,
    /// 301 | 302 | 303 | 307 | 308.
    pub redirect_status: Option<Spanned<i64>>,
    /// Shorthand for one location `"/"`.
    pub proxy_pass: Option<Spanned<String>>,
    /// `[[server.location]]`.
    #[serde(default)]
    pub location: Vec<Spanned<Location>>,
    /// `[server.headers]`, in file order.
    pub headers: Option<Entries<Spanned<String>>>,
    /// `[server.response_headers]`, in file order.
    pub response_headers: Option<Entries<Spanned<String>>>,
    /// Client addresses answered (CIDRs, IPs or `"all"`); others get 403.
    pub allow: Option<Spanned<Vec<Spanned<String>>>>,
    /// Client addresses refused with 403.
    pub deny: Option<Spanned<Vec<Spanned<String>>>>,
    /// Request rates (per client address, or per zone key).
    pub limit_req: Option<Spanned<LimitReqs>>,
    /// Compress upstream responses.
    pub gzip: Option<Spanned<GzipSetting>>,
    /// Path.
    pub access_log: Option<Spanned<String>>,
    /// `combined | json`.
    pub access_log_format: Option<Spanned<String>>,
    /// Path.
    pub error_log: Option<Spanned<String>>,
    /// Duration.
    pub read_timeout: Option<Spanned<String>>,
    /// Duration.
    pub send_timeout: Option<Spanned<String>>,
}

/// A server's `tls`: `{ cert, key }` or `{ self_signed = true }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTls {
    /// PEM certificate chain.
    pub cert: Option<Spanned<String>>,
    /// PEM private key.
    pub key: Option<Spanned<String>>,
    /// An in-memory certificate for trials.
    pub self_signed: Option<Spanned<bool>>,
    /// TLS versions offered to clients, nginx's spelling: `["TLSv1.2", "TLSv1.3"]`.
    pub protocols: Option<Spanned<Vec<Spanned<String>>>>,
    /// Ask clients for a certificate: `on | optional | optional_no_ca | off`.
    pub verify_client: Option<Spanned<String>>,
    /// PEM file of the CAs a client certificate must chain to.
    pub client_ca: Option<Spanned<String>>,
    /// PEM file of revocation lists from those CAs.
    pub client_crl: Option<Spanned<String>>,
}

/// `[[server.location]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Location {
    /// Path prefix, starting with `/`.
    pub prefix: Option<Spanned<String>>,
    /// Upstream name.
    pub proxy_pass: Option<Spanned<String>>,
    /// Answer with this status.
    #[serde(rename = "return")]
    pub return_status: Option<Spanned<i64>>,
    /// Redirect (template).
    pub redirect: Option<Spanned<String>>,
    /// 301 | 302 | 303 | 307 | 308.
    pub redirect_status: Option<Spanned<i64>>,
    /// Client addresses answered (CIDRs, IPs or `"all"`); replaces the server's.
    pub allow: Option<Spanned<Vec<Spanned<String>>>>,
    /// Client addresses refused with 403; replaces the server's.
    pub deny: Option<Spanned<Vec<Spanned<String>>>>,
    /// Request rates (per client address, or per zone key); replace the server's.
    pub limit_req: Option<Spanned<LimitReqs>>,
    /// `[server.location.response_headers]`, in file order; replaces the server's.
    pub response_headers: Option<Entries<Spanned<String>>>,
    /// Compress upstream responses; replaces the server's (`false` turns it off).
    pub gzip: Option<Spanned<GzipSetting>>,
}

/// `gzip = true | false | { types, min_length, level }`.
#[derive(Debug)]
pub enum GzipSetting {
    Switch(bool),
    Table(Gzip),
}

/// `gzip = { ... }`: on, with these settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gzip {
    /// Content types compressed (`"*"`: any); text/html always is.
    pub types: Option<Spanned<Vec<Spanned<String>>>>,
    /// Size; shorter bodies (by Content-Length) go as they are.
    pub min_length: Option<Spanned<Size>>,
    /// 1 (fastest) to 9 (smallest).
    pub level: Option<Spanned<i64>>,
}

impl<'de> Deserialize<'de> for GzipSetting {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct GzipVisitor;
        impl<'de> Visitor<'de> for GzipVisitor {
            type Value = GzipSetting;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true, false, or a table such as { types = [\"application/json\"], level = 1 }")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(GzipSetting::Switch(v))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                Gzip::deserialize(de::value::MapAccessDeserializer::new(map)).map(GzipSetting::Table)
            }
        }
        deserializer.deserialize_any(GzipVisitor)
    }
}

/// A size: `"16k"`, `"1m"`, `"1g"`, `"1024"` or an integer number of bytes.
#[derive(Debug, Clone)]
pub enum Size {
    /// An integer.
    Bytes(i64),
    /// A string, parsed in `validate`.
    Text(String),
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a size such as "16k", "1m" or a number of bytes"#)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Size::Bytes(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Size::Bytes(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Size::Text(v.to_owned()))
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

/// A table's entries in file order, each key with its span (`[upstream.*]`,
/// `[server.headers]`): order matters for headers and upstream indices.
#[derive(Debug)]
pub struct Entries<T>(pub Vec<(Spanned<String>, T)>);

impl<T> Default for Entries<T> {
    fn default() -> Self {
        Entries(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Entries<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for EntriesVisitor<T> {
            type Value = Entries<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }
        deserializer.deserialize_map(EntriesVisitor(PhantomData))
    }
}
