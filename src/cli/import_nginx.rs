//! `portico import-nginx`: translates an nginx configuration (such as the WSO2 API-M guide's) into portico TOML.
//!
//! It translates what the configuration's author meant, and says (on the notes
//! stream and in TOML comments) wherever that differs from what nginx does.
//! Every directive it cannot translate is reported with its file:line.

use std::io::Write;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::config;
use crate::config::runtime::Cidr;
use crate::nginx::{self, Directive, Place};
use crate::template::Template;

/// Arguments of `portico import-nginx`.
#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// The nginx configuration to translate (nginx.conf or a conf.d file).
    pub file: PathBuf,
}

/// Why nothing was translated.
#[derive(Debug, Error)]
pub enum ImportError {
    #[error(transparent)]
    Parse(#[from] nginx::ParseError),
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

/// Writes the translation of `args.file` to `out` and every note (untranslated
/// directives, differences from nginx, what `portico check` would still say) to `notes`.
pub fn run(args: &ImportArgs, out: &mut dyn Write, notes: &mut dyn Write) -> Result<(), ImportError> {
    let directives = nginx::parse_file(&args.file)?;
    let conf_dir = args.file.parent().map(Path::to_path_buf).unwrap_or_default();
    let translation = translate(&directives, &args.file, &conf_dir);
    out.write_all(translation.toml.as_bytes())?;
    for note in &translation.notes {
        writeln!(notes, "{note}")?;
    }
    // Certificates and hosts that exist only on the nginx machine show up here;
    // saying so now beats a surprise at `portico run`.
    if let Err(errors) = config::parse_str(&translation.toml, Path::new("portico.toml")) {
        writeln!(notes, "portico check would report on the output as it stands, here (lines of the output):")?;
        for error in &errors.0 {
            writeln!(notes, "  {error}")?;
        }
    }
    Ok(())
}

/// The TOML text and the notes about it, one a line.
#[derive(Debug, Default)]
pub struct Translation {
    /// The contract's TOML.
    pub toml: String,
    /// `file:line: ...` lines.
    pub notes: Vec<String>,
}

/// Translates parsed nginx `directives` read from `source`; relative
/// certificate paths resolve against `conf_dir`, as nginx resolves them.
pub fn translate(directives: &[Directive], source: &Path, conf_dir: &Path) -> Translation {
    let mut t = Translator {
        conf_dir,
        notes: Vec::new(),
        runtime: Vec::new(),
        upstreams: Vec::new(),
        servers: Vec::new(),
        matches: Vec::new(),
        zones: Vec::new(),
        real_ip: Vec::new(),
        log_formats: Vec::new(),
    };
    t.main(directives);
    t.finish_upstreams();
    t.finish_matches();
    t.finish_protocols();
    t.finish_proxy_protocol();
    let trusted = t.finish_trusted_proxies();
    t.finish_real_ip_header();
    t.finish_proxy_protocol_trust(trusted);
    let toml = t.render(source);
    Translation { toml, notes: t.notes }
}

/// A header as nginx's `proxy_set_header` sets it.
#[derive(Debug, Clone)]
struct Header {
    name: String,
    value: String,
    place: Place,
}

/// An `access_log` or `error_log`.
#[derive(Debug, Clone)]
enum Log {
    Off,
    Path(String),
}

/// What nginx inherits from http to server to location.
#[derive(Debug, Clone, Default)]
struct Scope {
    headers: Vec<Header>,
    /// `add_header` and `proxy_hide_header` (value `""`) lines in effect: a
    /// level with lines of its own of either inherits none of that kind.
    add_headers: Vec<Header>,
    hide_headers: Vec<Header>,
    read_timeout: Option<String>,
    send_timeout: Option<String>,
    connect_timeout: Option<String>,
    ssl_verify: Option<bool>,
    ssl_trusted: Option<String>,
    ssl_name: Option<String>,
    /// `proxy_ssl_certificate` and `proxy_ssl_certificate_key`, resolved, and where.
    ssl_client_cert: Option<(String, Place)>,
    ssl_client_key: Option<(String, Place)>,
    access_log: Option<Log>,
    /// The `log_format` its `access_log` names, when it is one translated.
    access_log_format: Option<String>,
    error_log: Option<Log>,
    ssl_certificate: Option<String>,
    ssl_certificate_key: Option<String>,
    /// `ssl_protocols`, as written, and where.
    ssl_protocols: Option<(Vec<String>, Place)>,
    /// `proxy_ssl_protocols`, as written, and where.
    proxy_ssl_protocols: Option<(Vec<String>, Place)>,
    /// `ssl_verify_client`, as written, and where.
    ssl_verify_client: Option<(String, Place)>,
    /// `ssl_client_certificate`, resolved as nginx reads it, and where.
    ssl_client_certificate: Option<(String, Place)>,
    /// `ssl_crl`, resolved, and where.
    ssl_crl: Option<(String, Place)>,
    /// `ssl_trusted_certificate`, resolved, and where: the CAs when there is
    /// no `ssl_client_certificate`.
    ssl_trusted_certificate: Option<(String, Place)>,
    /// The `allow` and `deny` lines in effect, in order.
    access: Vec<Directive>,
    /// Whether `access` is the level above's: a level with a line of its own
    /// inherits none of them.
    access_inherited: bool,
    /// The `limit_req` lines in effect, inherited as `access` is.
    limit_req: Vec<Directive>,
    limit_req_inherited: bool,
    /// `limit_req_status`, inherited apart from the lines, as nginx does.
    limit_req_status: Option<u16>,
    /// Whether `limit_req_dry_run on` is in effect: nginx only counts then.
    limit_req_dry_run: bool,
    /// nginx's realip settings in effect.
    real_ip: RealIp,
    /// nginx's gzip settings in effect, each inherited on its own as nginx does.
    gzip: GzipScope,
    /// Whether `real_ip.from` is the level above's: a level with
    /// `set_real_ip_from` lines of its own inherits none, as nginx merges them.
    real_ip_from_inherited: bool,
}

/// nginx's `gzip`, `gzip_types`, `gzip_min_length` and `gzip_comp_level` at a level.
#[derive(Debug, Clone, Default, PartialEq)]
struct GzipScope {
    on: bool,
    /// `gzip_types` as written (nginx's default is text/html alone).
    types: Option<Vec<String>>,
    min_length: Option<String>,
    level: Option<u32>,
}

impl GzipScope {
    /// portico's `gzip` for these settings; `None` when off.
    fn out(&self) -> Option<GzipOut> {
        self.on.then(|| GzipOut {
            types: self.types.clone().unwrap_or_else(|| vec!["text/html".to_owned()]),
            min_length: self.min_length.clone(),
            level: self.level,
        })
    }
}

/// A server's or location's `gzip = { ... }`.
#[derive(Debug, Clone, PartialEq)]
struct GzipOut {
    types: Vec<String>,
    min_length: Option<String>,
    level: Option<u32>,
}

/// nginx's realip settings at a level (`set_real_ip_from`, `real_ip_header`,
/// `real_ip_recursive`).
#[derive(Debug, Clone, Default, PartialEq)]
struct RealIp {
    /// The `set_real_ip_from` addresses portico can trust.
    from: Vec<String>,
    /// The first `set_real_ip_from` line in effect, translated or not.
    from_place: Option<Place>,
    /// `real_ip_header`, as written, and where.
    header: Option<(String, Place)>,
    /// `real_ip_recursive`, and where.
    recursive: Option<(bool, Place)>,
}

impl RealIp {
    /// The header nginx reads, `None` where its realip module does nothing
    /// (no address to trust), and the line naming it (`None`: nginx's default).
    fn header_read(&self) -> Option<(&str, Option<&Place>)> {
        if self.from.is_empty() {
            return None;
        }
        Some(match &self.header {
            Some((name, place)) => (name.as_str(), Some(place)),
            None => ("X-Real-IP", None),
        })
    }

    /// Whether nginx takes the client's address from the PROXY header here.
    fn reads_proxy_protocol(&self) -> bool {
        self.header_read().is_some_and(|(name, _)| name.eq_ignore_ascii_case("proxy_protocol"))
    }
}

/// A server's or location's realip settings, weighed once every server is read:
/// portico has one set for all.
#[derive(Debug)]
struct RealIpContext {
    /// The server's or location's line.
    place: Place,
    /// The server's line (the same for a server).
    server: Place,
    real_ip: RealIp,
}

#[derive(Debug, Clone)]
struct Peer {
    address: String,
    weight: Option<u32>,
    max_fails: Option<u32>,
    fail_timeout: Option<String>,
    backup: bool,
    down: bool,
    /// NGINX Plus `drain`: only the requests of its sticky sessions.
    drain: bool,
}

#[derive(Debug, Clone)]
struct StickyOut {
    learn: String,
    zone: Option<String>,
    size: Option<String>,
    timeout: Option<String>,
}

/// How an upstream is used by the `proxy_pass` lines that name it.
#[derive(Debug, Clone)]
struct UpstreamTls {
    verify: bool,
    /// Whether `proxy_ssl_verify` was written (else nginx's default, off).
    verify_written: bool,
    ca_file: Option<String>,
    server_name: Option<String>,
    /// `tls_protocols` when `proxy_ssl_protocols` names one of the two portico speaks.
    protocols: Option<Vec<String>>,
    /// `tls_client_cert` and `tls_client_key` (nginx: `proxy_ssl_certificate(_key)`).
    client_cert: Option<(String, String)>,
}

/// A TLS server's client-certificate keys (nginx: `ssl_verify_client`,
/// `ssl_client_certificate`, `ssl_crl`).
#[derive(Debug, Clone)]
struct ClientAuthOut {
    mode: String,
    ca: Option<String>,
    crl: Option<String>,
}

#[derive(Debug, Default)]
struct UpstreamOut {
    name: String,
    place: Option<Place>,
    peers: Vec<Peer>,
    ip_hash: bool,
    keepalive: Option<u64>,
    sticky: Option<StickyOut>,
    /// The first `health_check` of a location proxying here, and where.
    health_check: Option<(HealthCheckOut, Place)>,
    /// `Some(None)` for http://, `Some(Some(..))` for https://.
    scheme: Option<Option<UpstreamTls>>,
    connect_timeout: Option<String>,
    comments: Vec<String>,
}

/// `[upstream.NAME.health_check]` (NGINX Plus: `health_check`), nginx's
/// defaults filled in: they are portico's too.
#[derive(Debug, Clone, PartialEq)]
struct HealthCheckOut {
    uri: String,
    interval: String,
    fails: u32,
    passes: u32,
    /// `status`, and the `match` block it came from.
    status: Option<(String, String)>,
    /// `body`: the literal text of the `match` block's `body ~` line, and
    /// the block's name.
    body: Option<(String, String)>,
    mandatory: bool,
    /// `port=`: each server's host is checked on this port.
    port: Option<u16>,
}

/// A `log_format`: its `[log_format.NAME]`, or why it is not one.
#[derive(Debug)]
struct LogFormatOut {
    /// nginx's name, which its `access_log` lines use.
    name: String,
    /// The `[log_format.NAME]` it is written as: nginx's name, unless that
    /// is one of portico's own formats.
    table_name: String,
    place: Place,
    /// `format` and `escape`, or why portico cannot write the line.
    table: Result<(String, Option<String>), String>,
}

/// A `limit_req_zone`, and its `[limit_req.NAME]` when it translates.
#[derive(Debug)]
struct LimitZoneOut {
    name: String,
    place: Place,
    table: Option<LimitZoneTable>,
}

/// A translated `limit_req_zone`'s `[limit_req.NAME]`.
#[derive(Debug)]
struct LimitZoneTable {
    /// `None`: the client address, portico's default.
    key: Option<String>,
    rate: String,
    size: String,
}

/// An NGINX Plus `match` block (http level), and whether a `health_check` named it.
#[derive(Debug)]
struct MatchBlock {
    directive: Directive,
    used: bool,
}

#[derive(Debug, Clone)]
enum Action {
    Proxy(String),
    Redirect { url: String, status: u16, from: String },
    Return(u16),
}

#[derive(Debug, Clone)]
struct LocationOut {
    prefix: String,
    action: Action,
    /// Its own `allow` and `deny`, which replace the server's; `None` inherits them.
    access: Option<AccessOut>,
    /// Its own `limit_req` lines, which replace the server's; `None` inherits them.
    limit_req: Option<Vec<LimitOut>>,
    /// Its own response headers (it has `add_header` or `proxy_hide_header`
    /// lines), which replace the server's; `None` inherits them.
    response_headers: Option<Vec<(Header, &'static str)>>,
    /// Its own `gzip` where it differs from the server's (`Some(None)`: off).
    gzip: Option<Option<GzipOut>>,
}

/// A server's or location's `limit_req`, and the line it came from.
#[derive(Debug, Clone, PartialEq)]
struct LimitOut {
    zone: String,
    burst: Option<u32>,
    nodelay: bool,
    delay: Option<u32>,
    /// When not 503, portico's default as nginx's.
    status: Option<u16>,
    place: Place,
}

/// A server's or location's `allow` and `deny`; both empty lets every client in.
#[derive(Debug, Clone, Default, PartialEq)]
struct AccessOut {
    allow: Vec<String>,
    deny: Vec<String>,
}

impl AccessOut {
    /// Whether some client is refused.
    fn refuses(&self) -> bool {
        !self.deny.is_empty() || self.allow.iter().any(|a| a != "all")
    }
}

#[derive(Debug, Clone, Default)]
struct ServerOut {
    place: Option<Place>,
    listen: Vec<String>,
    default_server: bool,
    names: Vec<String>,
    tls: Option<(String, String)>,
    tls_missing: bool,
    /// `tls.protocols` when `ssl_protocols` names one of the two portico speaks.
    protocols: Option<Vec<String>>,
    /// `tls.verify_client`, `tls.client_ca` and `tls.client_crl`.
    client_auth: Option<ClientAuthOut>,
    redirect: Option<(String, u16, String)>,
    locations: Vec<LocationOut>,
    headers: Option<Vec<Header>>,
    /// `[server.response_headers]`, with the directive each came from.
    response_headers: Vec<(Header, &'static str)>,
    access_log: Option<String>,
    access_log_format: Option<String>,
    error_log: Option<String>,
    read_timeout: Option<String>,
    send_timeout: Option<String>,
    access: AccessOut,
    limit_req: Option<Vec<LimitOut>>,
    /// Each listen line: address, whether it has `proxy_protocol`, and where.
    listen_lines: Vec<(String, bool, Place)>,
    /// `proxy_protocol = true`, or `Some(false)` to write it commented out
    /// (portico needs trusted_proxies for it).
    proxy_protocol: Option<bool>,
    gzip: Option<GzipOut>,
    comments: Vec<String>,
}

struct Translator<'a> {
    conf_dir: &'a Path,
    notes: Vec<String>,
    /// `[runtime]` keys: (key, TOML value, comment).
    runtime: Vec<(String, String, Option<String>)>,
    upstreams: Vec<UpstreamOut>,
    servers: Vec<ServerOut>,
    matches: Vec<MatchBlock>,
    /// Every `limit_req_zone` with a name, translated or not, for the `limit_req` lines naming it.
    zones: Vec<LimitZoneOut>,
    /// Every server's realip settings, and each location's that differ from its server's.
    real_ip: Vec<RealIpContext>,
    /// Every `log_format`, translated or not, for the `access_log` lines naming it.
    log_formats: Vec<LogFormatOut>,
}

/// Why a directive nginx knows has no portico counterpart.
fn why_untranslated(name: &str) -> &'static str {
    match name {
        "gzip_disable" => "portico compresses for every client that accepts gzip, without per-browser exceptions",
        "gzip_buffers" => "portico compresses as the body streams, without gzip buffers",
        "gzip_static" | "gunzip" => "portico serves no files and does not decompress",
        n if n.starts_with("proxy_buffer") || n.starts_with("proxy_temp") || n.starts_with("proxy_max_temp") => {
            "portico streams bodies without buffering them"
        }
        "proxy_request_buffering" | "proxy_busy_buffers_size" => "portico streams bodies without buffering them",
        "ssl_verify_depth" => {
            "portico sets no depth for client certificate chains: it takes any chain to client_ca that rustls-webpki accepts (up to 6 intermediate CAs)"
        }
        "ssl_trusted_certificate" => {
            "portico staples no OCSP responses, and checks client certificates against client_ca (nginx: ssl_client_certificate) alone"
        }
        n if n.starts_with("ssl_") => "portico speaks TLS 1.2 and 1.3 with rustls's own ciphers and session handling",
        n if n.starts_with("proxy_next_upstream") => {
            "portico retries errors and timeouts on the next server for requests safe to repeat, as nginx's default"
        }
        n if n.starts_with("proxy_cache") => "portico does not cache responses",
        "proxy_ssl_ciphers" | "proxy_ssl_session_reuse" | "proxy_ssl_conf_command" => {
            "portico speaks TLS 1.2 and 1.3 to HTTPS upstreams with rustls's own ciphers, and resumes sessions per server"
        }
        "proxy_ignore_client_abort" => {
            "portico cancels the upstream request when the client goes and logs it as 499, as nginx does by default (off)"
        }
        "proxy_redirect" => "portico does not rewrite the upstream's Location headers",
        "add_header" | "proxy_hide_header" => {
            "portico sets response headers per server and location ([server.response_headers])"
        }
        "more_set_headers" => "portico does not add response headers",
        "root" | "index" | "try_files" | "alias" | "autoindex" | "sendfile" | "tcp_nopush" | "types"
        | "default_type" | "etag" => "portico serves no files",
        "limit_req_zone" | "log_format" => "nginx takes it at http level only",
        "limit_req" | "limit_req_status" => "nginx takes it in http, server and location blocks",
        "limit_req_log_level" => "portico logs refused requests at error and delayed ones at warn, nginx's default",
        "limit_req_dry_run" => {
            "portico has no dry run: the limit_req lines it covers are left out, since nginx only counts their requests"
        }
        n if n.starts_with("limit_conn") => {
            "portico does not limit connections per key; [runtime] max_connections bounds them all"
        }
        "auth_basic" | "auth_basic_user_file" | "auth_request" => {
            "portico has no authentication: it allows or denies client addresses only (allow, deny)"
        }
        "events" | "worker_connections" => "portico bounds client connections with [runtime] max_connections instead",
        "stream" | "mail" => "portico proxies HTTP only",
        "health_check" => "NGINX Plus takes it in a location that proxies to an upstream block",
        "match" => "NGINX Plus takes match blocks at http level, for health_check",
        // NGINX Plus `sticky learn ... sync` shares the table through zone_sync.
        "sync" => "portico shares the table through Redis: add store = \"redis://HOST:6379/0\" to the sticky table",
        "map" | "geo" | "if" | "set" => "portico has no configurable variables or conditions",
        "user" | "worker_rlimit_nofile" | "load_module" | "daemon" | "master_process" => {
            "portico runs as the user systemd starts it as, in the foreground"
        }
        _ => "no equivalent in portico",
    }
}

impl Translator<'_> {
    fn untranslated(&mut self, d: &Directive, why: &str) {
        self.notes.push(format!("{}: directive \"{}\" not translated: {why}", d.place, d.name));
    }

    fn note(&mut self, place: &Place, text: String) {
        self.notes.push(format!("{place}: note: {text}"));
    }

    /// Adds `line` (a whole note or untranslated line) unless it is there: a
    /// line of an outer level is met again by every level inheriting it.
    fn note_once(&mut self, line: String) {
        if !self.notes.contains(&line) {
            self.notes.push(line);
        }
    }

    fn set_runtime(&mut self, key: &str, value: String, comment: Option<String>) {
        if let Some(entry) = self.runtime.iter_mut().find(|(k, _, _)| k == key) {
            *entry = (key.to_owned(), value, comment);
        } else {
            self.runtime.push((key.to_owned(), value, comment));
        }
    }

    /// The top level: main context, or a conf.d file's bare upstream/server blocks.
    fn main(&mut self, directives: &[Directive]) {
        let mut scope = Scope::default();
        let mut http = Vec::new();
        for d in directives {
            match d.name.as_str() {
                "http" if d.block.is_some() => http.extend(d.block.iter().flatten()),
                "pid" => match d.args.as_slice() {
                    [path] => self.set_runtime("pid_file", quote(path), Some("nginx: pid".into())),
                    _ => self.untranslated(d, "expected one path"),
                },
                "worker_processes" => match d.args.as_slice() {
                    [n] if n == "auto" => {}
                    [n] if n.parse::<u32>().is_ok_and(|n| n > 0) => self.set_runtime(
                        "worker_threads",
                        n.clone(),
                        Some("nginx: worker_processes (threads of one process here)".into()),
                    ),
                    _ => self.untranslated(d, "expected a number or auto"),
                },
                "error_log" => self.runtime_error_log(d),
                "events"
                | "stream"
                | "mail"
                | "user"
                | "worker_rlimit_nofile"
                | "load_module"
                | "daemon"
                | "master_process"
                | "env"
                | "thread_pool"
                | "worker_cpu_affinity"
                | "worker_priority" => self.untranslated(d, why_untranslated(&d.name)),
                // A conf.d file holds what an http block would.
                _ => http.push(d),
            }
        }
        // Settings apply to every server whatever their order in the block, so read them first.
        let mut own_headers = Vec::new();
        for d in &http {
            if !matches!(d.name.as_str(), "upstream" | "server") {
                self.http_directive(d, &mut scope, &mut own_headers);
            }
        }
        scope.headers = own_headers;
        // nginx resolves proxy_pass names once everything is read: an upstream
        // block after the server that names it is still the one named.
        for d in http.iter().filter(|d| d.name == "upstream") {
            self.upstream(d);
        }
        for d in http.iter().filter(|d| d.name == "server") {
            self.server(d, &scope);
        }
        if !self.runtime.iter().any(|(k, _, _)| k == "client_max_body_size") {
            self.set_runtime(
                "client_max_body_size",
                quote("1m"),
                Some("nginx's default limit, kept: \"0\" lifts it".into()),
            );
        }
    }

    fn runtime_error_log(&mut self, d: &Directive) {
        let Some(path) = d.args.first() else {
            return self.untranslated(d, "expected a path");
        };
        if path != "stderr" {
            if path.starts_with("syslog:") || path.starts_with("memory:") {
                return self.untranslated(d, "portico logs to a file or stderr");
            }
            self.set_runtime("error_log", quote(path), None);
        }
        if let Some(level) = d.args.get(1) {
            match error_level(level) {
                Some(mapped) => self.set_runtime(
                    "error_log_level",
                    quote(mapped),
                    (mapped != level).then(|| format!("nginx: {level}")),
                ),
                None => self.untranslated(d, "unknown level"),
            }
        }
    }

    /// An http-level directive: inherited settings or runtime ones.
    fn http_directive(&mut self, d: &Directive, scope: &mut Scope, own_headers: &mut Vec<Header>) {
        match d.name.as_str() {
            "client_max_body_size" => self.client_max_body_size(d),
            "add_header" | "proxy_hide_header" => {
                if let Some(header) = self.response_header(d) {
                    let list = if d.name == "add_header" { &mut scope.add_headers } else { &mut scope.hide_headers };
                    list.push(header);
                }
            }
            "keepalive_timeout" => match d.args.first().and_then(|a| duration(a)) {
                Some(t) => {
                    if d.args.len() > 1 {
                        self.note(
                            &d.place,
                            "keepalive_timeout's second value (the Keep-Alive header) is not sent".into(),
                        );
                    }
                    self.set_runtime("keepalive_timeout", quote(&t), None);
                }
                None => self.untranslated(d, "expected a duration"),
            },
            "match" => match (d.args.as_slice(), &d.block) {
                ([name], Some(_)) if self.matches.iter().any(|m| m.directive.args.first() == Some(name)) => {
                    self.untranslated(d, "a second match block of the same name")
                }
                ([_], Some(_)) => self.matches.push(MatchBlock { directive: d.clone(), used: false }),
                _ => self.untranslated(d, "expected a name and a block"),
            },
            "limit_req_zone" => self.limit_req_zone(d),
            "log_format" => self.log_format(d),
            "client_header_timeout" => match d.args.as_slice() {
                [t] if duration(t).is_some() => {
                    self.set_runtime("client_header_timeout", quote(&duration(t).unwrap_or_default()), None);
                }
                _ => self.untranslated(d, "expected a duration"),
            },
            _ => {
                if !self.common(d, scope, own_headers) {
                    self.untranslated(d, why_untranslated(&d.name));
                }
            }
        }
    }

    /// `log_format NAME [escape=default|json|none] STRING...` as
    /// `[log_format.NAME]`, when portico has every variable it prints.
    fn log_format(&mut self, d: &Directive) {
        let Some((name, rest)) = d.args.split_first() else {
            return self.untranslated(d, "expected a name and the format");
        };
        // nginx refuses a second format of a name, and a format named combined.
        if name == "combined" || self.log_formats.iter().any(|f| &f.name == name) {
            return self.untranslated(d, "a format of this name is already defined");
        }
        // `json` is a common name for nginx formats and portico's own one.
        let table_name = if crate::log::BUILT_IN_FORMATS.contains(&name.as_str()) {
            self.note(
                &d.place,
                format!(
                    "log_format {name} is written as [log_format.nginx_{name}]: portico's own format is named {name}"
                ),
            );
            format!("nginx_{name}")
        } else {
            name.clone()
        };
        let (escape, strings) = match rest.split_first() {
            Some((first, strings)) if first.starts_with("escape=") => (first.strip_prefix("escape="), strings),
            _ => (None, rest),
        };
        let mut text = strings.concat();
        let mode = escape.map_or(Some(crate::log::Escape::Default), crate::log::Escape::from_name);
        let table = match (mode, strings.is_empty()) {
            (_, true) => Err("it has no format string".to_owned()),
            (None, _) => Err(format!("escape={} is not one portico knows (default, json, none)", escape.unwrap_or(""))),
            (Some(mode), _) => loop {
                match crate::log::LogFormat::parse(&text, mode) {
                    Ok(_) => break Ok((text, escape.filter(|e| *e != "default").map(str::to_owned))),
                    // A variable of a module portico lacks ($geoip_*, $pipe):
                    // written as nginx writes one without a value, so that the
                    // line keeps its fields for the tools that parse it.
                    Err(crate::log::LogFormatError::UnknownVariable(variable)) => {
                        let blank = if mode == crate::log::Escape::Json { "" } else { "-" };
                        let Some(blanked) = blank_variable(&text, &variable, blank) else {
                            break Err(format!("unknown variable `${variable}`"));
                        };
                        text = blanked;
                        self.note(
                            &d.place,
                            format!(
                                "log_format {name}: ${variable} is not a variable portico has; written as \"{blank}\", as nginx writes a variable without a value"
                            ),
                        );
                    }
                    Err(e) => break Err(e.to_string()),
                }
            },
        };
        if let Err(why) = &table {
            self.note(
                &d.place,
                format!("log_format {name} is not translated ({why}); access logs naming it are written in the combined format"),
            );
        }
        self.log_formats.push(LogFormatOut { name: name.clone(), table_name, place: d.place.clone(), table });
    }

    /// `limit_req_zone KEY zone=NAME:SIZE [rate=RATE] [sync]` as `[limit_req.NAME]`.
    fn limit_req_zone(&mut self, d: &Directive) {
        let Some((key, params)) = d.args.split_first() else {
            return self.untranslated(d, "expected a key, zone=NAME:SIZE and rate=RATE");
        };
        let zone = params.iter().find_map(|p| p.strip_prefix("zone=")).and_then(|z| z.split_once(':'));
        let Some((name, size)) = zone.filter(|(name, _)| !name.is_empty()) else {
            return self.untranslated(d, "expected zone=NAME:SIZE");
        };
        if self.zones.iter().any(|z| z.name == name) {
            return self.untranslated(d, "a second limit_req_zone of the same name");
        }
        let mut problems = Vec::new();
        let key = match zone_key(key) {
            Ok(key) => key,
            Err(why) => {
                problems.push(why);
                None
            }
        };
        // nginx's default rate, when none is written.
        let mut rate = "1r/s".to_owned();
        let mut sync = false;
        for param in params {
            match param.split_once('=') {
                Some(("zone", _)) => {}
                Some(("rate", value)) => match limit_rate(value) {
                    Some(r) => rate = r,
                    None => problems.push(format!("{param}: expected Nr/s or Nr/m, N a whole number above 0")),
                },
                None if param == "sync" => sync = true,
                _ => problems.push(format!("unknown parameter {param}")),
            }
        }
        // portico's zone must hold one address (64 bytes); nginx's 8 memory pages.
        if config::validate::parse_size(size).is_none_or(|bytes| bytes < 64) {
            problems.push(format!("zone size {size:?}: expected a size such as 10m"));
        }
        // Kept without a table when untranslated: the limit_req lines naming it are left out then.
        let table = problems.is_empty().then(|| LimitZoneTable { key, rate, size: size.to_owned() });
        if !problems.is_empty() {
            self.untranslated(d, &problems.join("; "));
        }
        if sync && table.is_some() {
            self.note(
                &d.place,
                format!("limit_req_zone {name}: sync (NGINX Plus zone_sync) is not translated: portico's zones are per node, each counting the requests it takes"),
            );
        }
        self.zones.push(LimitZoneOut { name: name.to_owned(), place: d.place.clone(), table });
    }

    fn client_max_body_size(&mut self, d: &Directive) {
        match d.args.as_slice() {
            [size] if config::validate::parse_size(size).is_some() => {
                if let Some((_, old, _)) = self.runtime.iter().find(|(k, _, _)| k == "client_max_body_size")
                    && *old != quote(size)
                {
                    self.note(
                        &d.place,
                        format!("client_max_body_size {size}: portico has one limit for all servers; the last one read is kept"),
                    );
                }
                self.set_runtime("client_max_body_size", quote(size), Some("nginx: client_max_body_size".into()));
            }
            _ => self.untranslated(d, "expected a size such as 1m"),
        }
    }

    /// Directives valid at http, server and location level. Returns whether `d` was one.
    fn common(&mut self, d: &Directive, scope: &mut Scope, own_headers: &mut Vec<Header>) -> bool {
        let one = d.args.first().map(String::as_str);
        match d.name.as_str() {
            "proxy_set_header" => match d.args.as_slice() {
                [name, value] => self.header(d, name, value, own_headers),
                _ => self.untranslated(d, "expected a header name and a value"),
            },
            "proxy_read_timeout" | "proxy_send_timeout" | "proxy_connect_timeout" => {
                match (d.args.len(), one.and_then(duration)) {
                    (1, Some(t)) => match d.name.as_str() {
                        "proxy_read_timeout" => scope.read_timeout = Some(t),
                        "proxy_send_timeout" => scope.send_timeout = Some(t),
                        _ => scope.connect_timeout = Some(t),
                    },
                    _ => self.untranslated(d, "expected a duration such as 60s or 5m"),
                }
            }
            "gzip" => match (one, d.args.len()) {
                (Some("on"), 1) => scope.gzip.on = true,
                (Some("off"), 1) => scope.gzip.on = false,
                _ => self.untranslated(d, "expected on or off"),
            },
            "gzip_types" if !d.args.is_empty() => {
                scope.gzip.types = Some(d.args.iter().map(|t| t.to_ascii_lowercase()).collect());
            }
            "gzip_min_length" => match one.filter(|n| d.args.len() == 1 && config::validate::parse_size(n).is_some()) {
                Some(length) => scope.gzip.min_length = Some(length.to_owned()),
                None => self.untranslated(d, "expected a length such as 256 or 1k"),
            },
            "gzip_comp_level" => match one.and_then(|n| n.parse::<u32>().ok()).filter(|l| (1..=9).contains(l)) {
                Some(level) if d.args.len() == 1 => scope.gzip.level = Some(level),
                _ => self.untranslated(d, "expected a level from 1 to 9"),
            },
            // portico always sends Vary: Accept-Encoding with what it may compress.
            "gzip_vary" if matches!(one, Some("on" | "off")) && d.args.len() == 1 => {}
            "gzip_http_version" => match one {
                Some("1.1") if d.args.len() == 1 => {}
                _ => self.note(
                    &d.place,
                    format!(
                        "gzip_http_version {}: portico compresses for HTTP/1.1 and h2 clients only (an HTTP/1.0 client gets no chunked body)",
                        d.args.join(" ")
                    ),
                ),
            },
            "gzip_proxied" => {
                if d.args != ["any"] {
                    self.note(
                        &d.place,
                        format!(
                            "gzip_proxied {}: portico compresses answers to every request, those that came through another proxy (with a Via header) too, as nginx's gzip_proxied any",
                            d.args.join(" ")
                        ),
                    );
                }
            }
            "proxy_ssl_verify" => match one {
                Some("on") => scope.ssl_verify = Some(true),
                Some("off") => scope.ssl_verify = Some(false),
                _ => self.untranslated(d, "expected on or off"),
            },
            "proxy_ssl_trusted_certificate" => match one {
                Some(path) if !path.contains('$') => scope.ssl_trusted = Some(self.conf_path(path)),
                _ => self.untranslated(d, "expected a file path"),
            },
            "proxy_ssl_name" => match one {
                Some(name) if !name.contains('$') => scope.ssl_name = Some(name.to_owned()),
                // `$proxy_host` is nginx's default: the server's host, as portico's.
                Some("$proxy_host") => scope.ssl_name = None,
                _ => self.untranslated(d, "portico takes a fixed tls_server_name, not variables"),
            },
            // portico always sends SNI; nginx only with this on.
            "proxy_ssl_server_name" if one == Some("on") => {}
            "proxy_http_version" if one == Some("1.1") => {}
            "proxy_http_version" => self.untranslated(d, "portico speaks HTTP/1.1 to upstreams"),
            "access_log" => {
                match d.args.as_slice() {
                    [off] if off == "off" => scope.access_log = Some(Log::Off),
                    [path, rest @ ..] if !path.starts_with("syslog:") && !path.contains('$') => {
                        scope.access_log_format = match rest.first().map(String::as_str) {
                            None | Some("combined") => None,
                            Some(format) => match self.log_formats.iter().find(|f| f.name == format) {
                                Some(LogFormatOut { table: Ok(_), table_name, .. }) => Some(table_name.clone()),
                                // Its own note says why.
                                Some(_) => None,
                                None => {
                                    self.note(
                                        &d.place,
                                        format!("access_log format \"{format}\" is not defined before this line (nginx refuses that): portico writes the combined format"),
                                    );
                                    None
                                }
                            },
                        };
                        if rest.len() > 1 {
                            self.note(&d.place, "access_log buffering and conditions are not translated".into());
                        }
                        scope.access_log = Some(Log::Path(path.clone()));
                    }
                    _ => self.untranslated(d, "portico writes access logs to a file"),
                }
            }
            "error_log" => match d.args.as_slice() {
                [path, rest @ ..] if !path.starts_with("syslog:") && !path.starts_with("memory:") => {
                    if let Some(level) = rest.first() {
                        self.note(
                            &d.place,
                            format!("error_log level \"{level}\" is not translated: one level for all logs, [runtime] error_log_level"),
                        );
                    }
                    scope.error_log = Some(if path == "stderr" { Log::Off } else { Log::Path(path.clone()) });
                }
                _ => self.untranslated(d, "portico writes error logs to a file"),
            },
            "ssl_certificate" if d.args.len() == 1 && !d.args[0].contains('$') && !d.args[0].starts_with("data:") => {
                scope.ssl_certificate = Some(self.conf_path(&d.args[0]));
            }
            "ssl_certificate_key"
                if d.args.len() == 1 && !d.args[0].contains('$') && !d.args[0].starts_with("data:") =>
            {
                scope.ssl_certificate_key = Some(self.conf_path(&d.args[0]));
            }
            "allow" | "deny" => {
                if std::mem::take(&mut scope.access_inherited) {
                    scope.access.clear();
                }
                if d.args.first().is_some_and(|a| a.starts_with("unix:")) {
                    // Still a line of the level's own: nginx inherits none then.
                    self.untranslated(d, "portico listens on TCP only, where the line matches no client");
                } else {
                    scope.access.push(d.clone());
                }
            }
            "limit_req" => {
                if std::mem::take(&mut scope.limit_req_inherited) {
                    scope.limit_req.clear();
                }
                scope.limit_req.push(d.clone());
            }
            "limit_req_status" => {
                match one.and_then(positive).filter(|c| d.args.len() == 1 && (400..=599).contains(c)) {
                    Some(code) => scope.limit_req_status = u16::try_from(code).ok(),
                    None => self.untranslated(d, "expected a status from 400 to 599"),
                }
            }
            "limit_req_log_level" if d.args.len() == 1 && one == Some("error") => {}
            "limit_req_dry_run" => match (one, d.args.len()) {
                (Some("on"), 1) => {
                    scope.limit_req_dry_run = true;
                    self.untranslated(d, why_untranslated(&d.name));
                }
                (Some("off"), 1) => scope.limit_req_dry_run = false,
                _ => self.untranslated(d, "expected on or off"),
            },
            "set_real_ip_from" => self.set_real_ip_from(d, scope),
            "real_ip_header" => match d.args.as_slice() {
                [name]
                    if name.eq_ignore_ascii_case("proxy_protocol")
                        || http::HeaderName::from_bytes(name.as_bytes()).is_ok() =>
                {
                    scope.real_ip.header = Some((name.clone(), d.place.clone()));
                }
                _ => self.untranslated(d, "expected a header name or proxy_protocol"),
            },
            "real_ip_recursive" => match (one, d.args.len()) {
                (Some("on"), 1) => scope.real_ip.recursive = Some((true, d.place.clone())),
                (Some("off"), 1) => scope.real_ip.recursive = Some((false, d.place.clone())),
                _ => self.untranslated(d, "expected on or off"),
            },
            "ssl_protocols" if !d.args.is_empty() => scope.ssl_protocols = Some((d.args.clone(), d.place.clone())),
            "proxy_ssl_protocols" if !d.args.is_empty() => {
                scope.proxy_ssl_protocols = Some((d.args.clone(), d.place.clone()));
            }
            "ssl_verify_client" => match d.args.as_slice() {
                [mode] if matches!(mode.as_str(), "on" | "optional" | "optional_no_ca" | "off") => {
                    scope.ssl_verify_client = Some((mode.clone(), d.place.clone()));
                }
                _ => self.untranslated(d, "expected on, optional, optional_no_ca or off"),
            },
            // Files kept with where they were named, for the notes.
            "proxy_ssl_certificate"
            | "proxy_ssl_certificate_key"
            | "ssl_client_certificate"
            | "ssl_crl"
            | "ssl_trusted_certificate" => match d.args.as_slice() {
                [path] if !path.contains('$') => {
                    let slot = match d.name.as_str() {
                        "proxy_ssl_certificate" => &mut scope.ssl_client_cert,
                        "proxy_ssl_certificate_key" => &mut scope.ssl_client_key,
                        "ssl_crl" => &mut scope.ssl_crl,
                        "ssl_trusted_certificate" => &mut scope.ssl_trusted_certificate,
                        _ => &mut scope.ssl_client_certificate,
                    };
                    *slot = Some((self.conf_path(path), d.place.clone()));
                }
                _ => self.untranslated(d, "expected a file path"),
            },
            _ => return false,
        }
        true
    }

    /// `set_real_ip_from ADDRESS|CIDR`: an address for `[runtime] trusted_proxies`.
    fn set_real_ip_from(&mut self, d: &Directive, scope: &mut Scope) {
        if std::mem::take(&mut scope.real_ip_from_inherited) {
            scope.real_ip.from.clear();
            scope.real_ip.from_place = None;
        }
        // Still a line of the level's own, translated or not: nginx inherits none then.
        scope.real_ip.from_place.get_or_insert_with(|| d.place.clone());
        match d.args.as_slice() {
            [unix] if unix == "unix:" => {
                self.untranslated(d, "portico listens on TCP only, where no client comes from a UNIX socket")
            }
            [address] if config::validate::parse_cidr(address).is_some() => {
                if !scope.real_ip.from.contains(address) {
                    scope.real_ip.from.push(address.clone());
                }
            }
            _ => self.untranslated(d, "portico's trusted_proxies takes a CIDR such as 10.0.0.0/8 or an IP address"),
        }
    }

    fn header(&mut self, d: &Directive, name: &str, value: &str, own: &mut Vec<Header>) {
        let lower = name.to_ascii_lowercase();
        // Headers portico sets itself, which a rule could only contradict.
        let sets_itself = match lower.as_str() {
            "upgrade" | "connection" => Some("portico tunnels WebSocket upgrades without it"),
            "content-length" | "transfer-encoding" => Some("portico frames the request body itself"),
            _ => None,
        };
        if let Some(why) = sets_itself {
            self.note(&d.place, format!("proxy_set_header {name} is left out: {why}"));
            return;
        }
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return self.untranslated(d, "not a valid header name");
        }
        // nginx's deprecated `$ssl_client_cert` is the PEM with a tab after each
        // newline, which no header may carry: the URL-encoded PEM is what works.
        let escaped = replace_variable(value, "ssl_client_cert", "ssl_client_escaped_cert");
        if escaped != value {
            self.note(
                &d.place,
                format!("proxy_set_header {name}: $ssl_client_cert (nginx's deprecated multi-line PEM) is written as $ssl_client_escaped_cert, the same PEM URL-encoded, as nginx recommends: check that the upstream URL-decodes the header"),
            );
        }
        let value = escaped.as_str();
        if let Err(e) = Template::parse(value) {
            return self.untranslated(d, &format!("{value:?}: {e}"));
        }
        own.retain(|h| !h.name.eq_ignore_ascii_case(name));
        own.push(Header { name: name.to_owned(), value: value.to_owned(), place: d.place.clone() });
    }

    /// An `add_header NAME VALUE [always]` or `proxy_hide_header NAME` line as
    /// a response header (`""` for the second), or `None` with a note.
    fn response_header(&mut self, d: &Directive) -> Option<Header> {
        let (name, value) = match (d.name.as_str(), d.args.as_slice()) {
            ("proxy_hide_header", [name]) => (name, ""),
            ("add_header", [name, value]) => {
                self.note(
                    &d.place,
                    format!("add_header {name}: portico sets it on every response the server sends, as nginx's add_header ... always (without always, nginx adds it to 2xx and 3xx answers only)"),
                );
                (name, value.as_str())
            }
            ("add_header", [name, value, always]) if always == "always" => (name, value.as_str()),
            _ => {
                let expected =
                    if d.name == "add_header" { "a name, a value and perhaps always" } else { "a header name" };
                self.untranslated(d, &format!("expected {expected}"));
                return None;
            }
        };
        let lower = name.to_ascii_lowercase();
        let framing = ["content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te", "trailer"];
        if framing.contains(&lower.as_str()) || http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            self.untranslated(d, "portico sets the framing and connection headers itself");
            return None;
        }
        if value.contains('$') || http::HeaderValue::from_str(value).is_err() {
            self.untranslated(d, "portico's response headers are literal text, without variables");
            return None;
        }
        Some(Header { name: name.clone(), value: value.to_owned(), place: d.place.clone() })
    }

    /// A path as nginx reads it: relative ones from its configuration directory.
    fn conf_path(&self, path: &str) -> String {
        if Path::new(path).is_absolute() || self.conf_dir.as_os_str().is_empty() {
            path.to_owned()
        } else {
            self.conf_dir.join(path).display().to_string()
        }
    }

    /// Merges a level's own `proxy_set_header` lines over its parent's. nginx
    /// drops the parent's entirely when a level has any; the importer keeps the
    /// ones not overridden (what the author meant) and says so.
    fn merge_headers(&mut self, parent: &[Header], own: Vec<Header>, place: &Place, what: &str) -> Vec<Header> {
        if own.is_empty() {
            return parent.to_vec();
        }
        let mut merged = Vec::new();
        for h in parent {
            if !own.iter().any(|o| o.name.eq_ignore_ascii_case(&h.name)) {
                self.note(
                    &h.place,
                    format!(
                        "proxy_set_header {} {} is kept for {what} (line {}); nginx never sends it there, since a level with proxy_set_header lines of its own inherits none",
                        h.name, h.value, place.line
                    ),
                );
                merged.push(h.clone());
            }
        }
        merged.extend(own);
        merged
    }

    fn upstream(&mut self, d: &Directive) {
        let [name] = d.args.as_slice() else {
            return self.untranslated(d, "expected one upstream name");
        };
        if self.upstreams.iter().any(|u| &u.name == name) {
            return self.untranslated(d, "a second upstream of the same name");
        }
        let mut up = UpstreamOut { name: name.clone(), place: Some(d.place.clone()), ..UpstreamOut::default() };
        for inner in d.block.iter().flatten() {
            match inner.name.as_str() {
                "server" => {
                    if let Some(peer) = self.peer(inner) {
                        up.peers.push(peer);
                    }
                }
                "ip_hash" if inner.args.is_empty() => up.ip_hash = true,
                "keepalive" => match inner.args.as_slice() {
                    [n] if n.parse::<u64>().is_ok() => up.keepalive = n.parse().ok(),
                    _ => self.untranslated(inner, "expected a number"),
                },
                "sticky" => up.sticky = self.sticky(inner),
                "zone" => {} // nginx's shared memory for the pool; portico shares it anyway.
                "keepalive_timeout" | "keepalive_requests" | "keepalive_time" => {
                    self.untranslated(inner, "portico keeps pooled connections open while they are usable")
                }
                "least_conn" | "hash" | "random" | "least_time" | "ntlm" | "queue" => {
                    self.untranslated(inner, "portico balances round_robin or ip_hash")
                }
                _ => self.untranslated(inner, why_untranslated(&inner.name)),
            }
        }
        if up.peers.is_empty() {
            self.note(&d.place, format!("upstream {name} has no server that could be translated"));
        }
        self.upstreams.push(up);
    }

    fn peer(&mut self, d: &Directive) -> Option<Peer> {
        let Some(address) = d.args.first() else {
            self.untranslated(d, "expected an address");
            return None;
        };
        if address.starts_with("unix:") {
            self.untranslated(d, "portico connects to upstreams over TCP only");
            return None;
        }
        let mut peer = Peer {
            address: with_port(address, 80),
            weight: None,
            max_fails: None,
            fail_timeout: None,
            backup: false,
            down: false,
            drain: false,
        };
        for param in &d.args[1..] {
            let (key, value) = param.split_once('=').unwrap_or((param, ""));
            match key {
                "weight" => peer.weight = value.parse().ok().filter(|w| *w > 0),
                "max_fails" => peer.max_fails = value.parse().ok(),
                "fail_timeout" => peer.fail_timeout = duration(value),
                "backup" => peer.backup = true,
                "down" => peer.down = true,
                "drain" => peer.drain = true,
                _ => {
                    self.note(
                        &d.place,
                        format!("server parameter \"{param}\" is not translated: {}", why_untranslated(key)),
                    );
                    continue;
                }
            }
            let bad = match key {
                "weight" => peer.weight.is_none(),
                "max_fails" => peer.max_fails.is_none(),
                "fail_timeout" => peer.fail_timeout.is_none(),
                _ => false,
            };
            if bad {
                self.note(&d.place, format!("server parameter \"{param}\" is not translated: not a valid value"));
            }
        }
        // portico refuses the pair; NGINX Plus sends a down server nothing, drain or not.
        if peer.down && peer.drain {
            peer.drain = false;
            self.note(
                &d.place,
                "server parameter \"drain\" is left out: the server is also down, which NGINX Plus lets win (it sends the server no requests at all), and portico takes down or drain, not both".into(),
            );
        }
        Some(peer)
    }

    /// `sticky learn create=$upstream_cookie_X lookup=$cookie_X zone=NAME:SIZE [timeout=T]`.
    fn sticky(&mut self, d: &Directive) -> Option<StickyOut> {
        if d.args.first().map(String::as_str) != Some("learn") {
            self.untranslated(d, "portico learns sessions from a cookie (sticky learn) only");
            return None;
        }
        let (mut create, mut lookup, mut zone, mut size, mut timeout) = (None, None, None, None, None);
        for param in &d.args[1..] {
            match param.split_once('=') {
                Some(("create", v)) => create = v.strip_prefix("$upstream_cookie_").map(str::to_owned),
                Some(("lookup", v)) => lookup = v.strip_prefix("$cookie_").map(str::to_owned),
                Some(("zone", v)) => {
                    let (z, s) = v.split_once(':').unwrap_or((v, ""));
                    zone = Some(z.to_owned());
                    size = (!s.is_empty()).then(|| s.to_owned());
                }
                Some(("timeout", v)) => timeout = duration(v),
                _ => self.note(
                    &d.place,
                    format!("sticky parameter \"{param}\" is not translated: {}", why_untranslated(param)),
                ),
            }
        }
        let Some(cookie) = create else {
            self.untranslated(d, "portico learns a cookie the upstream sets: expected create=$upstream_cookie_NAME");
            return None;
        };
        if lookup.as_deref().is_some_and(|l| !l.eq_ignore_ascii_case(&cookie)) {
            self.note(
                &d.place,
                "sticky learn looks up another cookie than it creates: portico looks up the created one".into(),
            );
        }
        // nginx matches cookie names in any case; the Java servers behind the
        // WSO2 configurations set the session cookie as JSESSIONID.
        let learn = if cookie.eq_ignore_ascii_case("jsessionid") { "JSESSIONID".to_owned() } else { cookie };
        Some(StickyOut { learn, zone, size, timeout })
    }

    fn server(&mut self, d: &Directive, http: &Scope) {
        let mut scope =
            Scope { access_inherited: true, limit_req_inherited: true, real_ip_from_inherited: true, ..http.clone() };
        let mut own_headers = Vec::new();
        let (mut own_add, mut own_hide) = (Vec::new(), Vec::new());
        let mut out = ServerOut { place: Some(d.place.clone()), ..ServerOut::default() };
        let mut listens: Vec<(String, bool)> = Vec::new();
        let mut ssl_on = false;
        let mut locations = Vec::new();
        let mut server_action: Option<(Action, Place)> = None;
        for inner in d.block.iter().flatten() {
            match inner.name.as_str() {
                "listen" => self.listen(inner, &mut listens, &mut out),
                "server_name" => self.server_names(inner, &mut out.names),
                "ssl" => match inner.args.first().map(String::as_str) {
                    Some("on") => ssl_on = true,
                    Some("off") => {}
                    _ => self.untranslated(inner, "expected on or off"),
                },
                "location" => locations.push(inner),
                "rewrite" | "return" => {
                    if let Some(action) = self.rewrite_or_return(inner) {
                        if server_action.is_none() {
                            server_action = Some((action, inner.place.clone()));
                        } else {
                            self.note(
                                &inner.place,
                                format!("{} after an earlier redirect or return is never reached", inner.name),
                            );
                        }
                    }
                }
                "client_max_body_size" => self.client_max_body_size(inner),
                "add_header" | "proxy_hide_header" => {
                    if let Some(header) = self.response_header(inner) {
                        let own = if inner.name == "add_header" { &mut own_add } else { &mut own_hide };
                        own.push(header);
                    }
                }
                _ => {
                    if !self.common(inner, &mut scope, &mut own_headers) {
                        self.untranslated(inner, why_untranslated(&inner.name));
                    }
                }
            }
        }
        scope.headers = self.merge_headers(&http.headers, own_headers, &d.place, "this server");
        // As nginx: a server with lines of its own inherits none of that kind.
        if !own_add.is_empty() {
            scope.add_headers = own_add;
        }
        if !own_hide.is_empty() {
            scope.hide_headers = own_hide;
        }
        out.response_headers = response_headers(&scope);
        // portico has no http level: each server takes the lines it inherits.
        let open = if scope.access_inherited {
            "the servers inheriting them answer every client"
        } else {
            "this server answers every client"
        };
        out.access = self.access_rules(&scope.access, open).unwrap_or_default();

        if listens.is_empty() {
            self.note(&d.place, "a server without listen: nginx listens on *:80, so does the translation".into());
            listens.push(("80".into(), false));
        }
        let tls = ssl_on || listens.iter().any(|(_, ssl)| *ssl);
        if tls {
            match (&scope.ssl_certificate, &scope.ssl_certificate_key) {
                (Some(cert), key) => out.tls = Some((cert.clone(), key.clone().unwrap_or_else(|| cert.clone()))),
                (None, _) => {
                    out.tls_missing = true;
                    self.note(&d.place, "TLS without ssl_certificate (nginx refuses this): a self-signed certificate is written; replace it".into());
                }
            }
            if let Some((protocols, place)) = &scope.ssl_protocols {
                out.protocols = self.protocols("ssl_protocols", protocols, place);
            }
            // Per server, not per address: portico picks a server's policy by SNI.
            out.client_auth = self.client_auth(&scope, &d.place);
        }

        // The primary location decides the server-wide settings portico has per server.
        let mut located: Vec<(LocationOut, Scope, Place)> = Vec::new();
        for loc in locations {
            if let Some(found) = self.location(loc, &scope, &out.access) {
                located.push(found);
            }
        }
        // A location's realip settings matter apart from its server's only where they differ.
        self.real_ip.push(RealIpContext {
            place: d.place.clone(),
            server: d.place.clone(),
            real_ip: scope.real_ip.clone(),
        });
        for (_, s, place) in located.iter().filter(|(_, s, _)| s.real_ip != scope.real_ip) {
            self.real_ip.push(RealIpContext {
                place: place.clone(),
                server: d.place.clone(),
                real_ip: s.real_ip.clone(),
            });
        }
        let primary = located.iter().position(|(l, _, _)| l.prefix == "/").or((located.len() == 1).then_some(0));
        let settings = primary.map_or(scope.clone(), |i| located[i].1.clone());
        for (i, (loc, s, place)) in located.iter().enumerate() {
            if Some(i) == primary {
                continue;
            }
            let differs = s.read_timeout != settings.read_timeout
                || s.send_timeout != settings.send_timeout
                || format!("{:?}", s.headers) != format!("{:?}", settings.headers)
                || format!("{:?}{:?}{:?}", s.access_log, s.access_log_format, s.error_log)
                    != format!("{:?}{:?}{:?}", settings.access_log, settings.access_log_format, settings.error_log);
            if differs {
                self.note(
                    place,
                    format!("location {}: its own headers, timeouts or logs are not translated: portico sets them per server, as location / has them", loc.prefix),
                );
            }
        }

        // nginx answers a server's return or rewrite before it counts a request
        // (its locations are never looked at), and a location's: portico writes
        // a limit_req only where nginx counts.
        let server_limit = self.limit_req(&scope).filter(|_| server_action.is_none());
        for (loc, s, place) in &mut located {
            let counted = matches!(loc.action, Action::Proxy(_));
            let limit = self.limit_req(s).filter(|_| counted);
            match (limit, &server_limit) {
                (limit, server) if limit.as_ref() == server.as_ref() => {}
                (Some(limit), _) => loc.limit_req = Some(limit),
                (None, Some(server)) => {
                    let why = if !counted {
                        "nginx answers its return or redirect before it counts a request"
                    } else if s.limit_req_dry_run {
                        "there, with limit_req_dry_run on, nginx only counts"
                    } else {
                        "nginx applies the location's own limit_req lines, which are not translated"
                    };
                    let text = format!(
                        "location {}: portico applies the server's limit_req ({}) here too, having no way to turn it off for a location: {why}",
                        loc.prefix,
                        zones_named(server)
                    );
                    self.note(place, text);
                }
                (None, None) => {}
            }
        }
        out.limit_req = server_limit.clone();

        // gzip: the server's, and a location's own where nginx's differs there.
        out.gzip = scope.gzip.out();
        for (loc, s, _) in &mut located {
            let own = s.gzip.out();
            if matches!(loc.action, Action::Proxy(_)) && own != out.gzip {
                loc.gzip = Some(own);
            }
        }

        // nginx counts a request before allow/deny refuse it; portico refuses first.
        let mut counted_first = Vec::new();
        if server_limit.is_some() && out.access.refuses() {
            counted_first.push(d.place.clone());
        }
        // A server's return or redirect leaves its locations unreached.
        for (loc, _, place) in located.iter().filter(|_| server_action.is_none()) {
            let inherited = server_limit.as_ref().filter(|_| matches!(loc.action, Action::Proxy(_)));
            let limited = loc.limit_req.as_ref().or(inherited).is_some();
            let own = loc.limit_req.is_some() || loc.access.is_some();
            if own && limited && loc.access.as_ref().unwrap_or(&out.access).refuses() {
                counted_first.push(place.clone());
            }
        }
        for place in counted_first {
            self.note(&place, "limit_req and allow/deny both apply here: portico checks allow/deny first and counts only the clients it lets in, where nginx counts every request first (a refused client over the limit gets limit_req's status there, not 403)".into());
        }

        // nginx answers return and rewrite before it checks allow/deny (a
        // server's before its locations are even looked at); portico checks first.
        let answers: Vec<(&Action, Option<&AccessOut>, &Place)> = match &server_action {
            Some((action, place)) => vec![(action, None, place)],
            None => located.iter().map(|(l, _, place)| (&l.action, l.access.as_ref(), place)).collect(),
        };
        let mut refused_first = Vec::new();
        for (action, access, place) in answers {
            let answered =
                matches!(action, Action::Redirect { .. }) || matches!(action, Action::Return(s) if *s != 403);
            if answered && access.unwrap_or(&out.access).refuses() {
                refused_first.push(place.clone());
            }
        }
        for place in refused_first {
            self.note(&place, "allow/deny refuse clients this redirect or return would answer: nginx answers return and rewrite before it checks allow/deny, so there every client gets the answer".into());
        }

        match server_action {
            Some((Action::Redirect { url, status, from }, _)) => {
                if !located.is_empty() {
                    self.note(&d.place, "the server's redirect answers every request: its locations are never reached, in nginx as here".into());
                }
                out.redirect = Some((url, status, from));
            }
            Some((Action::Return(status), _)) => out.locations.push(LocationOut {
                prefix: "/".into(),
                action: Action::Return(status),
                access: None,
                limit_req: None,
                response_headers: None,
                gzip: None,
            }),
            Some((Action::Proxy(_), _)) | None => {
                out.locations = located.iter().map(|(l, _, _)| l.clone()).collect();
            }
        }

        let proxies = out.locations.iter().any(|l| matches!(l.action, Action::Proxy(_)));
        if proxies {
            if settings.headers.is_empty() {
                self.note(
                    &d.place,
                    "no proxy_set_header: portico sends its default X-Forwarded-* headers and the client's Host; nginx would send Host as the upstream's name and no X-Forwarded-*".into(),
                );
            } else {
                out.headers = Some(settings.headers.clone());
            }
            out.read_timeout = settings.read_timeout.clone();
            out.send_timeout = settings.send_timeout.clone();
        }
        out.access_log = match &settings.access_log {
            Some(Log::Path(p)) => Some(p.clone()),
            _ => None,
        };
        out.access_log_format = out.access_log.as_ref().and(settings.access_log_format.clone());
        out.error_log = match &settings.error_log {
            Some(Log::Path(p)) => Some(p.clone()),
            _ => None,
        };

        // portico's tls belongs to a whole server: one nginx server that mixes
        // `listen 80` and `listen 443 ssl` becomes two.
        let plain: Vec<String> = listens.iter().filter(|(_, ssl)| !*ssl && !ssl_on).map(|(a, _)| a.clone()).collect();
        let secure: Vec<String> = listens.iter().filter(|(_, ssl)| *ssl || ssl_on).map(|(a, _)| a.clone()).collect();
        if !plain.is_empty() && !secure.is_empty() {
            let mut plain_out = out.clone();
            plain_out.listen = plain;
            plain_out.tls = None;
            plain_out.tls_missing = false;
            plain_out.protocols = None;
            plain_out.client_auth = None;
            plain_out.comments.push("the plain-HTTP listens of the nginx server below".into());
            self.servers.push(plain_out);
            out.listen = secure;
            out.comments.push("the TLS listens of the same nginx server".into());
        } else {
            out.listen = if secure.is_empty() { plain } else { secure };
        }
        self.servers.push(out);
    }

    fn listen(&mut self, d: &Directive, listens: &mut Vec<(String, bool)>, out: &mut ServerOut) {
        let Some(address) = d.args.first() else {
            return self.untranslated(d, "expected an address");
        };
        let address = match address.strip_prefix("*:") {
            Some(port) => port.to_owned(),
            None if address.parse::<std::net::IpAddr>().is_ok() => format!("{address}:80"),
            None if address.starts_with('[') && address.ends_with(']') => format!("{address}:80"),
            None => address.clone(),
        };
        if config::validate::parse_listen(&address).is_none() {
            return self.untranslated(d, "portico listens on \"PORT\", \"IP:PORT\" or \"[IPv6]:PORT\"");
        }
        let mut ssl = false;
        let mut proxy_protocol = false;
        for param in &d.args[1..] {
            match param.as_str() {
                "ssl" => ssl = true,
                "default_server" | "default" => out.default_server = true,
                // portico offers h2 by ALPN on every TLS listener.
                "http2" => {}
                // Made the server's proxy_protocol by finish_proxy_protocol.
                "proxy_protocol" => proxy_protocol = true,
                _ => self.note(&d.place, format!("listen parameter \"{param}\" is not translated")),
            }
        }
        out.listen_lines.push((address.clone(), proxy_protocol, d.place.clone()));
        if !listens.iter().any(|(a, _)| *a == address) {
            listens.push((address, ssl));
        }
    }

    fn server_names(&mut self, d: &Directive, names: &mut Vec<String>) {
        for name in &d.args {
            // `_` and "" are nginx's spellings of "no name" (a catch-all by convention).
            if name.is_empty() || name == "_" {
                continue;
            }
            if name.starts_with('~') || name.contains('$') || name.ends_with(".*") {
                self.note(
                    &d.place,
                    format!("server_name {name} is not translated: portico matches exact names and *.example.com"),
                );
            } else if let Some(domain) = name.strip_prefix('.') {
                // nginx's `.example.com` is the domain and every name under it.
                names.push(domain.to_owned());
                names.push(format!("*.{domain}"));
            } else {
                names.push(name.clone());
            }
        }
    }

    /// `rewrite ^/(.*) https://HOST/$1 permanent` and `return CODE [URL]`.
    fn rewrite_or_return(&mut self, d: &Directive) -> Option<Action> {
        let from = format!("{} {}", d.name, d.args.join(" "));
        if d.name == "return" {
            let (status, url) = match d.args.as_slice() {
                [url] if url.starts_with("http://") || url.starts_with("https://") => (302, Some(url.clone())),
                [code] => (code.parse::<u16>().ok()?, None),
                [code, url] => (code.parse::<u16>().ok().unwrap_or(0), Some(url.clone())),
                _ => (0, None),
            };
            return match (status, url) {
                (301 | 302 | 303 | 307 | 308, Some(url)) => self.redirect_action(d, url, status, from),
                (100..=599, None) if status != 444 => Some(Action::Return(status)),
                _ => {
                    self.untranslated(d, "portico returns a bare status, or redirects with 301, 302, 303, 307 or 308");
                    None
                }
            };
        }
        let [regex, replacement, rest @ ..] = d.args.as_slice() else {
            self.untranslated(d, "expected a regex and a replacement");
            return None;
        };
        let status = match rest {
            [flag] if flag == "permanent" => 301,
            [flag] if flag == "redirect" => 302,
            [] if replacement.starts_with("http://") || replacement.starts_with("https://") => 302,
            _ => {
                self.untranslated(d, "portico has no internal rewrites, only redirects of the whole path");
                return None;
            }
        };
        // nginx appends the query string unless the replacement ends in `?`,
        // so `^/(.*)` -> `X/$1` redirects to X + the request URI as sent.
        let url = match regex.as_str() {
            "^/(.*)" | "^/(.*)$" => replacement.strip_suffix("/$1").map(|base| format!("{base}$request_uri")),
            "^(.*)" | "^(.*)$" | "^(.+)$" | "^(.+)" => {
                replacement.strip_suffix("$1").map(|base| format!("{base}$request_uri"))
            }
            "^" | "^/" | ".*" | "^.*$" | "^.*" if !replacement.contains("$1") && !replacement.ends_with('?') => {
                Some(replacement.clone())
            }
            _ => None,
        };
        match url {
            Some(url) if !url.contains("$1") && !url.ends_with('?') => self.redirect_action(d, url, status, from),
            _ => {
                self.untranslated(d, "portico redirects whole requests: only rewrites of every path such as ^/(.*) to https://HOST/$1 translate");
                None
            }
        }
    }

    fn redirect_action(&mut self, d: &Directive, url: String, status: u16, from: String) -> Option<Action> {
        // `$uri` is `$request_uri` without the query; portico has only the latter.
        let url =
            url.replace("$request_uri", "\u{0}").replace("$uri$is_args$args", "\u{0}").replace('\u{0}', "$request_uri");
        match Template::parse(&url) {
            Ok(_) => Some(Action::Redirect { url, status, from }),
            Err(e) => {
                self.untranslated(d, &format!("{url:?}: {e}"));
                None
            }
        }
    }

    fn location(
        &mut self,
        d: &Directive,
        server: &Scope,
        server_access: &AccessOut,
    ) -> Option<(LocationOut, Scope, Place)> {
        let prefix = match d.args.as_slice() {
            [prefix] if prefix.starts_with('/') => prefix.clone(),
            // `^~` only stops regex locations from winning; portico has none.
            [modifier, prefix] if modifier == "^~" && prefix.starts_with('/') => prefix.clone(),
            _ => {
                self.untranslated(d, "portico matches path prefixes only (no =, ~, ~* or named locations)");
                return None;
            }
        };
        let mut scope =
            Scope { access_inherited: true, limit_req_inherited: true, real_ip_from_inherited: true, ..server.clone() };
        let mut own_headers = Vec::new();
        let (mut own_add, mut own_hide) = (Vec::new(), Vec::new());
        let mut action = None;
        let mut proxy = None;
        let mut checks = Vec::new();
        for inner in d.block.iter().flatten() {
            match inner.name.as_str() {
                "proxy_pass" => proxy = Some(inner),
                "health_check" => checks.push(inner),
                "rewrite" | "return" => {
                    if let Some(a) = self.rewrite_or_return(inner) {
                        action.get_or_insert(a);
                    }
                }
                "location" => self.untranslated(inner, "portico has no nested locations"),
                "ssl_verify_client" | "ssl_client_certificate" | "ssl_crl" | "ssl_trusted_certificate" => {
                    self.untranslated(inner, "nginx takes it in http and server blocks only")
                }
                "client_max_body_size" => self.client_max_body_size(inner),
                "add_header" | "proxy_hide_header" => {
                    if let Some(header) = self.response_header(inner) {
                        let own = if inner.name == "add_header" { &mut own_add } else { &mut own_hide };
                        own.push(header);
                    }
                }
                _ => {
                    if !self.common(inner, &mut scope, &mut own_headers) {
                        self.untranslated(inner, why_untranslated(&inner.name));
                    }
                }
            }
        }
        scope.headers = self.merge_headers(&server.headers, own_headers, &d.place, &format!("location {prefix}"));
        // As nginx: lines of its own of either kind replace the server's of
        // that kind; portico's location table then replaces the server's whole.
        let has_own = !own_add.is_empty() || !own_hide.is_empty();
        if !own_add.is_empty() {
            scope.add_headers = own_add;
        }
        if !own_hide.is_empty() {
            scope.hide_headers = own_hide;
        }
        let response_headers = has_own.then(|| response_headers(&scope));
        let access = if scope.access_inherited {
            None
        } else {
            let inherits = *server_access != AccessOut::default();
            let open = if inherits {
                "the location takes the server's allow/deny instead"
            } else {
                "the location answers every client"
            };
            match self.access_rules(&scope.access, open) {
                // Lines letting every client in still replace the server's.
                Some(lists) if lists == AccessOut::default() && inherits => {
                    Some(AccessOut { allow: vec!["all".into()], deny: Vec::new() })
                }
                Some(lists) if lists == AccessOut::default() => None,
                lists => lists,
            }
        };
        if let Some(p) = proxy {
            if action.is_some() {
                self.note(&p.place, "proxy_pass after a redirect or return is never reached".into());
            } else {
                action = self.proxy_pass(p, &prefix, &scope).map(Action::Proxy);
            }
        }
        let upstream = match &action {
            Some(Action::Proxy(name)) => Some(name.clone()),
            _ => None,
        };
        for check in checks {
            self.health_check(check, upstream.as_deref());
        }
        match action {
            Some(action) => {
                let location = LocationOut { prefix, action, access, limit_req: None, response_headers, gzip: None };
                Some((location, scope, d.place.clone()))
            }
            None => {
                if proxy.is_none() {
                    self.untranslated(d, "a location that neither proxies, redirects nor returns a status");
                }
                None
            }
        }
    }

    /// The `limit_req` lines in effect at a level (`scope`) as portico's list
    /// (every one applies, as nginx's), or `None` where nginx applies none
    /// that portico can say.
    fn limit_req(&mut self, scope: &Scope) -> Option<Vec<LimitOut>> {
        let mut kept: Vec<LimitOut> = Vec::new();
        for d in &scope.limit_req {
            let why = match self.limit_req_line(d) {
                Ok(limit) => match kept.iter().find(|k| k.zone == limit.zone) {
                    None => {
                        kept.push(limit);
                        continue;
                    }
                    Some(first) => {
                        format!("zone {} is limited at {} already (nginx: \"is duplicate\")", limit.zone, first.place)
                    }
                },
                Err(why) => why,
            };
            let note = format!("{}: directive \"limit_req\" not translated: {why}", d.place);
            // Lines of the level above are met again by every level inheriting them.
            self.note_once(note);
        }
        if scope.limit_req_dry_run || kept.is_empty() {
            return None;
        }
        let status = scope.limit_req_status.filter(|s| *s != 503);
        Some(kept.into_iter().map(|limit| LimitOut { status, ..limit }).collect())
    }

    /// One `limit_req zone=NAME [burst=N] [nodelay | delay=N]` line, or why it is left out.
    fn limit_req_line(&self, d: &Directive) -> Result<LimitOut, String> {
        let mut out = LimitOut {
            zone: String::new(),
            burst: None,
            nodelay: false,
            delay: None,
            status: None,
            place: d.place.clone(),
        };
        for arg in &d.args {
            match arg.split_once('=') {
                Some(("zone", name)) => out.zone = name.to_owned(),
                Some(("burst", n)) if positive(n).is_some() => out.burst = positive(n),
                // The later of nodelay and delay wins, as in nginx.
                Some(("delay", n)) if positive(n).is_some() => (out.nodelay, out.delay) = (false, positive(n)),
                None if arg == "nodelay" => (out.nodelay, out.delay) = (true, None),
                _ => {
                    return Err(format!(
                        "{arg}: expected zone=NAME, burst=N, nodelay or delay=N, N a whole number above 0"
                    ));
                }
            }
        }
        if out.zone.is_empty() {
            return Err("expected zone=NAME".into());
        }
        match self.zones.iter().find(|z| z.name == out.zone) {
            None => Err(format!("no limit_req_zone defines zone {}", out.zone)),
            Some(zone) if zone.table.is_none() => {
                Err(format!("the limit_req_zone of zone {} ({}) is not translated", out.zone, zone.place))
            }
            Some(_) => Ok(out),
        }
    }

    /// A level's `allow` and `deny` lines as portico's lists (both empty when
    /// they let every client in), or `None`, with a note saying what happens
    /// instead (`open`), where portico's lists cannot do what nginx does.
    fn access_rules(&mut self, rules: &[Directive], open: &str) -> Option<AccessOut> {
        let Some(first) = rules.first() else { return Some(AccessOut::default()) };
        match access_lists(rules) {
            Ok(lists) => Some(lists),
            Err(why) => {
                let note = format!(
                    "{}: note: allow/deny here is NOT translated: {why}, which portico's allow/deny cannot express (it refuses the clients deny lists, then, when allow lists any, all others); {open} until you write allow/deny by hand",
                    first.place
                );
                // http-level lines are met again by every server inheriting them.
                self.note_once(note);
                None
            }
        }
    }

    /// The upstream a `proxy_pass` names, made or marked for TLS as it asks.
    fn proxy_pass(&mut self, d: &Directive, prefix: &str, scope: &Scope) -> Option<String> {
        let [url] = d.args.as_slice() else {
            self.untranslated(d, "expected one URL");
            return None;
        };
        let (tls, rest) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
            (Some(rest), _) => (false, rest),
            (_, Some(rest)) => (true, rest),
            _ => {
                self.untranslated(d, "portico proxies to http:// and https:// upstreams");
                return None;
            }
        };
        if url.contains('$') {
            self.untranslated(d, "portico takes a fixed upstream, not variables");
            return None;
        }
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        // nginx replaces the location's prefix with the URI part; equal parts change nothing.
        if !path.is_empty() && path != prefix {
            self.untranslated(
                d,
                &format!("portico forwards the path as sent; nginx would replace {prefix} with {path}"),
            );
            return None;
        }
        let has_port =
            authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) && !authority.ends_with(']');
        let name = match self.upstreams.iter().position(|u| u.name == authority && !has_port) {
            Some(_) => authority.to_owned(),
            None => {
                let address = with_port(authority, if tls { 443 } else { 80 });
                if !self.upstreams.iter().any(|u| u.name == address) {
                    self.upstreams.push(UpstreamOut {
                        name: address.clone(),
                        peers: vec![Peer {
                            address: address.clone(),
                            weight: None,
                            max_fails: None,
                            fail_timeout: None,
                            backup: false,
                            down: false,
                            drain: false,
                        }],
                        comments: vec![format!("made for proxy_pass {url} ({})", d.place)],
                        ..UpstreamOut::default()
                    });
                }
                address
            }
        };
        let protocols = match (&scope.proxy_ssl_protocols, tls) {
            (Some((written, place)), true) => self.protocols("proxy_ssl_protocols", written, place),
            _ => None,
        };
        let client_cert = match (&scope.ssl_client_cert, &scope.ssl_client_key) {
            _ if !tls => None,
            (Some((cert, _)), Some((key, _))) => Some((cert.clone(), key.clone())),
            (None, None) => None,
            (Some((path, place)), None) | (None, Some((path, place))) => {
                let (given, missing) = if scope.ssl_client_cert.is_some() {
                    ("proxy_ssl_certificate", "proxy_ssl_certificate_key")
                } else {
                    ("proxy_ssl_certificate_key", "proxy_ssl_certificate")
                };
                self.note(
                    place,
                    format!(
                        "{given} {path} is left out for proxy_pass {url} at {}: there is no {missing} to go with it",
                        d.place
                    ),
                );
                None
            }
        };
        let wanted = tls.then(|| UpstreamTls {
            verify: scope.ssl_verify.unwrap_or(false),
            verify_written: scope.ssl_verify.is_some(),
            ca_file: scope.ssl_trusted.clone(),
            server_name: scope.ssl_name.clone(),
            protocols,
            client_cert,
        });
        let connect = scope.connect_timeout.clone();
        let mut conflicts = Vec::new();
        if let Some(up) = self.upstreams.iter_mut().find(|u| u.name == name) {
            match &up.scheme {
                None => up.scheme = Some(wanted),
                Some(existing) => {
                    if format!("{existing:?}") != format!("{wanted:?}") {
                        conflicts.push(format!(
                            "upstream {name} is used with other TLS settings elsewhere: the first use is kept"
                        ));
                    }
                }
            }
            match (&up.connect_timeout, connect) {
                (None, Some(c)) => up.connect_timeout = Some(c),
                (Some(old), Some(c)) if *old != c => {
                    conflicts.push(format!(
                        "proxy_connect_timeout {c}: upstream {name} already has {old}; the first is kept"
                    ));
                }
                _ => {}
            }
        }
        for c in conflicts {
            self.note(&d.place, c);
        }
        Some(name)
    }

    /// NGINX Plus's `health_check` in a location proxying to `upstream`, as
    /// that upstream's `[upstream.NAME.health_check]`.
    fn health_check(&mut self, d: &Directive, upstream: Option<&str>) {
        // proxy_pass to an address makes an upstream without a place; NGINX Plus
        // checks upstream blocks (with a zone) only.
        let Some(name) = upstream.filter(|name| self.upstreams.iter().any(|u| u.name == *name && u.place.is_some()))
        else {
            return self.untranslated(d, "NGINX Plus checks the servers of an upstream block that the location's proxy_pass names, and this location names none");
        };
        let Some(check) = self.health_check_settings(d) else { return };
        let mut conflict = None;
        if let Some(up) = self.upstreams.iter_mut().find(|u| u.name == name) {
            match &up.health_check {
                None => up.health_check = Some((check, d.place.clone())),
                Some((first, _)) if *first == check => {}
                Some((_, first)) => {
                    conflict = Some(format!(
                        "health_check is left out: upstream {name} has the one at {first}, with other settings, and portico runs one check per upstream (NGINX Plus runs both: a server failing either takes no requests)"
                    ))
                }
            }
        }
        if let Some(text) = conflict {
            self.note(&d.place, text);
        }
    }

    /// A `health_check` line's settings, or `None` (with a note) where portico
    /// would check something else than NGINX Plus does.
    fn health_check_settings(&mut self, d: &Directive) -> Option<HealthCheckOut> {
        let mut out = HealthCheckOut {
            uri: "/".into(),
            interval: "5s".into(),
            fails: 1,
            passes: 1,
            status: None,
            body: None,
            mandatory: false,
            port: None,
        };
        let mut persistent = false;
        // Why it is left out, and the notes on what is lost if it is not.
        let mut refused = Vec::new();
        let mut lost = Vec::new();
        for param in &d.args {
            let (key, value) = param.split_once('=').unwrap_or((param, ""));
            let invalid = format!("{param} is not a valid value");
            match key {
                "interval" => match duration(value)
                    .filter(|t| config::validate::parse_duration(t).is_some_and(|t| !t.is_zero()))
                {
                    Some(t) => out.interval = t,
                    None => refused.push(invalid),
                },
                "fails" | "passes" => match value.parse::<u32>().ok().filter(|n| *n > 0) {
                    Some(n) if key == "fails" => out.fails = n,
                    Some(n) => out.passes = n,
                    None => refused.push(invalid),
                },
                // As portico's validation takes it: a path and query, nothing to escape.
                "uri" if value.starts_with('/')
                    && value.parse::<http::uri::PathAndQuery>().is_ok_and(|p| p.as_str() == value) =>
                {
                    out.uri = value.to_owned()
                }
                "uri" => refused.push(invalid),
                "mandatory" if value.is_empty() => out.mandatory = true,
                "persistent" if value.is_empty() => persistent = true,
                "match" => match self.match_tests(value) {
                    Ok((status, body)) => {
                        out.status = Some((status, value.to_owned()));
                        out.body = body.map(|text| (text, value.to_owned()));
                    }
                    Err(why) => refused.push(why),
                },
                "port" => match value.parse::<u16>().ok().filter(|port| *port > 0) {
                    Some(port) => out.port = Some(port),
                    None => refused.push(invalid),
                },
                // A check of another protocol, made as portico's GET, could take
                // out every server while they are fine.
                "type" if value == "grpc" => {
                    refused.push(format!("{param}: portico checks with an HTTP/1.1 GET, which a gRPC server need not answer"))
                }
                // They follow type=grpc, which leaves the check out.
                "grpc_service" | "grpc_status" => {}
                "jitter" => lost.push(format!("health_check parameter \"{param}\" is not translated: portico checks each server every interval, without a random delay")),
                "keepalive_time" => lost.push(format!("health_check parameter \"{param}\" is not translated: portico opens a connection for each check")),
                _ => lost.push(format!(
                    "health_check parameter \"{param}\" is not translated: {}",
                    why_untranslated(key)
                )),
            }
        }
        if !refused.is_empty() {
            self.untranslated(d, &refused.join("; "));
            return None;
        }
        if out.mandatory && !persistent {
            lost.push("health_check mandatory without persistent: portico keeps each server's verdict across a reload (NGINX Plus's persistent keeps a healthy server up), where NGINX Plus holds every server back after a reload until its first check passes".into());
        }
        for text in lost {
            self.note(&d.place, text);
        }
        Some(out)
    }

    /// The `status` and `body` of the `match` block `name`, or why there is
    /// none; its other tests are reported the first time a `health_check`
    /// names it.
    fn match_tests(&mut self, name: &str) -> Result<(String, Option<String>), String> {
        let Some(m) = self.matches.iter_mut().find(|m| m.directive.args.first().is_some_and(|n| n == name)) else {
            return Err(format!("match={name}: there is no match block of that name"));
        };
        let first_use = !std::mem::replace(&mut m.used, true);
        let block = m.directive.block.clone().unwrap_or_default();
        let (body, left_out) = match_body(&block);
        if first_use {
            for test in block.iter().filter(|test| test.name != "status" && test.name != "body") {
                self.untranslated(test, "portico's health checks test the status and a text in the body, not headers");
            }
            for (test, why) in left_out {
                self.untranslated(test, why);
            }
        }
        let status = match_statuses(&block).map_err(|why| format!("match {name}: {why}"))?;
        Ok((status, body))
    }

    /// `match` blocks no translated `health_check` named.
    fn finish_matches(&mut self) {
        let unused: Vec<Directive> = self.matches.iter().filter(|m| !m.used).map(|m| m.directive.clone()).collect();
        for d in unused {
            self.untranslated(&d, "no health_check translated here names it");
        }
    }

    /// A TLS server's (at `server`) `ssl_verify_client`, `ssl_client_certificate`
    /// (else `ssl_trusted_certificate`) and `ssl_crl` as `tls.verify_client`,
    /// `tls.client_ca` and `tls.client_crl`, or nothing where nginx would refuse
    /// the pair or ignore the certificate. The notes name the server, since an
    /// http-level directive may be kept for one server and left out for another.
    fn client_auth(&mut self, scope: &Scope, server: &Place) -> Option<ClientAuthOut> {
        let auth = self.client_verification(scope, server);
        // A client_ca without ssl_client_certificate is ssl_trusted_certificate's.
        let trusted_used = scope.ssl_client_certificate.is_none() && auth.as_ref().is_some_and(|a| a.ca.is_some());
        if let Some((_, place)) = &scope.ssl_trusted_certificate
            && !trusted_used
        {
            // An http-level line is met again by every TLS server inheriting it.
            let why = why_untranslated("ssl_trusted_certificate");
            let note = format!("{place}: directive \"ssl_trusted_certificate\" not translated: {why}");
            self.note_once(note);
        }
        let Some((crl, place)) = &scope.ssl_crl else { return auth };
        match auth {
            Some(auth @ ClientAuthOut { ca: Some(_), .. }) => Some(ClientAuthOut { crl: Some(crl.clone()), ..auth }),
            other => {
                self.note(
                    place,
                    format!("ssl_crl {crl} is left out for the server at {server}: portico checks revocation along a client's chain to client_ca (nginx: ssl_client_certificate), and this server verifies against none"),
                );
                other
            }
        }
    }

    /// [`Self::client_auth`] without the CRL.
    fn client_verification(&mut self, scope: &Scope, server: &Place) -> Option<ClientAuthOut> {
        let verify = scope.ssl_verify_client.as_ref().filter(|(mode, _)| mode != "off");
        let auth =
            |mode: &String, ca: Option<&String>| ClientAuthOut { mode: mode.clone(), ca: ca.cloned(), crl: None };
        match (verify, &scope.ssl_client_certificate) {
            (Some((mode, _)), Some((ca, _))) => Some(auth(mode, Some(ca))),
            (Some((mode, _)), None) if mode == "optional_no_ca" => Some(auth(mode, None)),
            (Some((mode, place)), None) => {
                // on or optional: nginx (since 1.27.2) verifies against ssl_trusted_certificate alone.
                if let Some((ca, trusted)) = &scope.ssl_trusted_certificate {
                    self.note(
                        trusted,
                        format!("ssl_trusted_certificate {ca} is the client_ca of the server at {server}, which has ssl_verify_client {mode} and no ssl_client_certificate: portico sends the subjects of these CAs to clients in the handshake as the ones it accepts, where nginx sends none from ssl_trusted_certificate"),
                    );
                    return Some(auth(mode, Some(ca)));
                }
                self.note(
                    place,
                    format!("ssl_verify_client {mode} is left out for the server at {server}: nginx requires ssl_client_certificate (or ssl_trusted_certificate) for it, portico's verify_client a client_ca: the CAs a client certificate must chain to"),
                );
                None
            }
            (None, Some((ca, place))) => {
                self.note(
                    place,
                    format!("ssl_client_certificate {ca} is left out for the server at {server}: without ssl_verify_client it does nothing, in nginx as in portico, where client_ca needs verify_client"),
                );
                None
            }
            (None, None) => None,
        }
    }

    /// `ssl_protocols` or `proxy_ssl_protocols` (`directive`): the versions
    /// of it portico speaks, `None` for both.
    fn protocols(&mut self, directive: &str, written: &[String], place: &Place) -> Option<Vec<String>> {
        let spoken = ["TLSv1.2", "TLSv1.3"];
        let (kept, left): (Vec<&String>, Vec<&String>) = written.iter().partition(|p| spoken.contains(&p.as_str()));
        if !left.is_empty() {
            let left: Vec<&str> = left.iter().map(|p| p.as_str()).collect();
            let what = if kept.is_empty() { "offers both instead" } else { "leaves these out" };
            let text = format!("{directive} {}: portico speaks only TLSv1.2 and TLSv1.3, and {what}", left.join(" "));
            // An http-level line is met again by every server inheriting it.
            let note = format!("{place}: note: {text}");
            self.note_once(note);
        }
        let kept: Vec<String> =
            spoken.iter().filter(|p| kept.iter().any(|k| k == *p)).map(|p| (*p).to_owned()).collect();
        (kept.len() == 1).then_some(kept)
    }

    /// portico has one set of TLS versions per listen address, where nginx
    /// lets each server write its own: servers on one address that differ
    /// take the default server's (else the first's), with a note.
    fn finish_protocols(&mut self) {
        // Each TLS address with the servers on it, in the order first seen.
        let mut addresses: Vec<(std::net::SocketAddr, Vec<usize>)> = Vec::new();
        for (i, server) in self.servers.iter().enumerate().filter(|(_, s)| s.tls.is_some() || s.tls_missing) {
            for addr in server.listen.iter().filter_map(|l| config::validate::parse_listen(l)) {
                match addresses.iter_mut().find(|(a, _)| *a == addr) {
                    Some((_, on)) if !on.contains(&i) => on.push(i),
                    Some(_) => {}
                    None => addresses.push((addr, vec![i])),
                }
            }
        }
        for (addr, on) in addresses {
            let Some(&chosen) = on.iter().find(|&&i| self.servers[i].default_server).or(on.first()) else {
                continue;
            };
            let protocols = self.servers[chosen].protocols.clone();
            if on.iter().all(|&i| self.servers[i].protocols == protocols) {
                continue;
            }
            let shown = |p: &Option<Vec<String>>| p.as_ref().map_or("TLSv1.2 TLSv1.3".to_owned(), |p| p.join(" "));
            let mut differing = Vec::new();
            for &i in &on {
                if self.servers[i].protocols != protocols {
                    let place = self.servers[i].place.as_ref().map_or_else(String::new, |p| format!(" at {p}"));
                    differing.push(format!("the server{place} had {}", shown(&self.servers[i].protocols)));
                    self.servers[i].protocols = protocols.clone();
                }
            }
            let place = self.servers[chosen].place.clone();
            let text = format!(
                "listen {addr}: portico has one set of TLS versions per address and gives this server's ({}) to all on it; {}",
                shown(&protocols),
                differing.join("; ")
            );
            match place {
                Some(place) => self.note(&place, text),
                None => self.notes.push(format!("note: {text}")),
            }
        }
    }

    /// nginx expects a PROXY protocol header on every connection to an address
    /// that any server's `listen ... proxy_protocol` names (it ORs the flag
    /// over the servers there); portico's flag is per server: a server gets it
    /// when all its addresses are such, and a note when only some are.
    fn finish_proxy_protocol(&mut self) {
        let marked: Vec<(std::net::SocketAddr, Place)> = self
            .servers
            .iter()
            .flat_map(|s| &s.listen_lines)
            .filter(|(_, proxy_protocol, _)| *proxy_protocol)
            .filter_map(|(address, _, place)| Some((config::validate::parse_listen(address)?, place.clone())))
            .collect();
        let mut notes = Vec::new();
        for server in &mut self.servers {
            let Some(place) = server.place.clone() else { continue };
            // The listen line marking an address, this server's or another's.
            let marking = |address: &String| {
                let addr = config::validate::parse_listen(address)?;
                marked.iter().find(|(a, _)| *a == addr).map(|(_, p)| p)
            };
            let (with, without): (Vec<&String>, Vec<&String>) =
                server.listen.iter().partition(|a| marking(a).is_some());
            if with.is_empty() {
                continue;
            }
            if !without.is_empty() {
                let shown = |list: &[&String]| {
                    let shown: Vec<String> = list
                        .iter()
                        .map(|address| match server.listen_lines.iter().find(|(a, _, _)| a == *address) {
                            Some((_, _, p)) => format!("{address} ({p})"),
                            None => (*address).clone(),
                        })
                        .collect();
                    shown.join(", ")
                };
                let text = format!(
                    "proxy_protocol is NOT translated: nginx expects a PROXY protocol header on listen {} but not on {}, and portico's proxy_protocol is per server: split this server into two [[server]] blocks, with proxy_protocol = true on the first",
                    shown(&with),
                    shown(&without)
                );
                notes.push((place, text));
                continue;
            }
            for address in &with {
                let own = server.listen_lines.iter().any(|(a, pp, _)| a == *address && *pp);
                if let Some(by) = marking(address).filter(|_| !own) {
                    notes.push((
                        place.clone(),
                        format!(
                            "listen {address}: nginx expects a PROXY protocol header on every connection to it, as the listen at {by} says: so does this server (proxy_protocol = true)"
                        ),
                    ));
                }
            }
            server.proxy_protocol = Some(true);
        }
        for (place, text) in notes {
            self.note(&place, text);
        }
    }

    /// `[runtime] trusted_proxies`: every address a server or location trusts
    /// (nginx: set_real_ip_from), in the order met. nginx's list is per level,
    /// portico's one for all: a note where a level's is not the whole.
    /// Returns whether it lists any.
    fn finish_trusted_proxies(&mut self) -> bool {
        let mut trusted: Vec<String> = Vec::new();
        for address in self.real_ip.iter().flat_map(|c| &c.real_ip.from) {
            if !trusted.contains(address) {
                trusted.push(address.clone());
            }
        }
        if trusted.is_empty() {
            return false;
        }
        let mut notes = Vec::new();
        for c in self.real_ip.iter().filter(|c| trusted.iter().any(|a| !c.real_ip.from.contains(a))) {
            let here = if c.real_ip.from.is_empty() {
                "no proxy".to_owned()
            } else {
                format!("only {}", c.real_ip.from.join(", "))
            };
            let text = format!(
                "set_real_ip_from: nginx trusts {here} here; portico's [runtime] trusted_proxies is one list for every server, so it trusts {} here too",
                trusted.join(", ")
            );
            notes.push((c.place.clone(), text));
        }
        for (place, text) in notes {
            self.note(&place, text);
        }
        let listed: Vec<String> = trusted.iter().map(|a| quote(a)).collect();
        self.set_runtime("trusted_proxies", format!("[{}]", listed.join(", ")), Some("nginx: set_real_ip_from".into()));
        true
    }

    /// `[runtime] real_ip_header`, one for every server where nginx's is per
    /// level: the first written where nginx reads a header, else nginx's
    /// default (X-Real-IP), with a note where nginx reads another.
    /// `real_ip_header proxy_protocol` is no header: proxy_protocol covers it.
    fn finish_real_ip_header(&mut self) {
        if self.real_ip.iter().all(|c| c.real_ip.from.is_empty()) {
            // Nothing to trust: nginx reads no header, and portico cannot without trusted_proxies.
            let mut lines = Vec::new();
            for c in &self.real_ip {
                let header = c.real_ip.header.as_ref().map(|(_, p)| ("real_ip_header", p));
                let recursive = c.real_ip.recursive.as_ref().map(|(_, p)| ("real_ip_recursive", p));
                for (name, place) in header.into_iter().chain(recursive) {
                    lines.push(format!(
                        "{place}: directive \"{name}\" not translated: no set_real_ip_from address is in effect, so nginx believes no proxy's header"
                    ));
                }
            }
            for line in lines {
                self.note_once(line);
            }
            return;
        }
        // Where nginx reads a header for the client's address (not the PROXY header).
        let reading: Vec<&RealIpContext> = self
            .real_ip
            .iter()
            .filter(|c| c.real_ip.header_read().is_some() && !c.real_ip.reads_proxy_protocol())
            .collect();
        let header = |c: &RealIpContext| c.real_ip.header.clone();
        let Some(first) = reading.iter().find(|c| c.real_ip.header.is_some()).or(reading.first()) else {
            return;
        };
        let (kept, kept_line) = match header(first) {
            Some((name, line)) => (name, Some(line)),
            None => ("X-Real-IP".to_owned(), None),
        };
        let kept_at = kept_line.as_ref().map_or_else(|| "nginx's default".to_owned(), |p| p.to_string());
        let mut notes = Vec::new();
        if kept_line.is_none() {
            let at = first.real_ip.from_place.as_ref().unwrap_or(&first.place);
            let text = "set_real_ip_from without real_ip_header: nginx reads X-Real-IP, its default: real_ip_header = \"X-Real-IP\"";
            notes.push(format!("{at}: note: {text}"));
        }
        for c in &reading {
            let note = match header(c) {
                Some((name, _)) if name.eq_ignore_ascii_case(&kept) => continue,
                Some((name, line)) => format!(
                    "{line}: note: real_ip_header {name}: portico reads one header for every server, {kept} ({kept_at})"
                ),
                None if kept.eq_ignore_ascii_case("X-Real-IP") => continue,
                None => format!(
                    "{}: note: set_real_ip_from without real_ip_header: nginx reads X-Real-IP here, its default; portico reads one header for every server, {kept} ({kept_at})",
                    c.place
                ),
            };
            notes.push(note);
        }
        let recursive = self.real_ip_recursive(&reading);
        for note in notes.into_iter().chain(recursive.1) {
            self.note_once(note);
        }
        let comment =
            if kept_line.is_some() { "nginx: real_ip_header" } else { "nginx's default without real_ip_header" };
        self.set_runtime("real_ip_header", quote(&kept), Some(comment.into()));
        if recursive.0 {
            self.set_runtime("real_ip_recursive", "true".into(), Some("nginx: real_ip_recursive on".into()));
        }
    }

    /// portico's one `real_ip_recursive` for the levels `reading` a header:
    /// the first written (else off), and notes where nginx's differs.
    fn real_ip_recursive(&self, reading: &[&RealIpContext]) -> (bool, Vec<String>) {
        let kept = reading.iter().find_map(|c| c.real_ip.recursive.clone());
        let on = kept.as_ref().is_some_and(|(on, _)| *on);
        let word = |on: bool| if on { "on" } else { "off" };
        let kept_at = kept.as_ref().map_or_else(|| "nginx's default".to_owned(), |(_, p)| p.to_string());
        let mut notes = Vec::new();
        for c in reading {
            let here = c.real_ip.recursive.as_ref().is_some_and(|(on, _)| *on);
            if here != on {
                let at = c.real_ip.recursive.as_ref().map_or(&c.place, |(_, p)| p);
                notes.push(format!(
                    "{at}: note: real_ip_recursive is {} here: portico has one for every server, {} ({kept_at})",
                    word(here),
                    word(on)
                ));
            }
        }
        (on, notes)
    }

    /// Each server's proxy_protocol against nginx's realip settings: portico
    /// takes the PROXY header's address as the client's from a trusted
    /// balancer, nginx only with set_real_ip_from and real_ip_header
    /// proxy_protocol; and portico needs trusted_proxies for it at all.
    fn finish_proxy_protocol_trust(&mut self, trusted: bool) {
        let mut notes = Vec::new();
        for server in self.servers.iter_mut().filter(|s| s.proxy_protocol.is_some()) {
            let Some(place) = server.place.clone() else { continue };
            if !trusted {
                // Commented out, so that the output still passes `portico check`.
                server.proxy_protocol = Some(false);
                notes.push((place, "listen ... proxy_protocol: proxy_protocol = true is written commented out: portico needs [runtime] trusted_proxies listing the balancers (nginx: set_real_ip_from) to take their PROXY headers; add them and uncomment it".to_owned()));
            } else if !self.real_ip.iter().any(|c| c.place == place && c.real_ip.reads_proxy_protocol()) {
                notes.push((place, "listen ... proxy_protocol without set_real_ip_from and real_ip_header proxy_protocol: nginx keeps the balancer's address in $remote_addr, portico takes the PROXY header's client address from a trusted balancer (logs, allow/deny, limit_req and ip_hash now see clients)".to_owned()));
            }
        }
        // `real_ip_header proxy_protocol` lines, and whether a server they apply to has a proxy_protocol listen.
        let mut lines: Vec<(Place, bool)> = Vec::new();
        for c in self.real_ip.iter().filter(|c| c.real_ip.reads_proxy_protocol()) {
            let Some((_, line)) = &c.real_ip.header else { continue };
            let listens = self.servers.iter().any(|s| {
                s.place.as_ref() == Some(&c.server)
                    && (s.proxy_protocol.is_some() || s.listen_lines.iter().any(|(_, pp, _)| *pp))
            });
            match lines.iter_mut().find(|(p, _)| p == line) {
                Some((_, any)) => *any |= listens,
                None => lines.push((line.clone(), listens)),
            }
        }
        for (line, _) in lines.into_iter().filter(|(_, listens)| !listens) {
            notes.push((line, "real_ip_header proxy_protocol: no server it applies to has listen ... proxy_protocol, so nginx takes no address from it here either".to_owned()));
        }
        for (place, text) in notes {
            let note = format!("{place}: note: {text}");
            self.note_once(note);
        }
    }

    /// TLS comments on the upstreams, once every proxy_pass is known.
    fn finish_upstreams(&mut self) {
        for up in &mut self.upstreams {
            if up.scheme.is_none() && up.place.is_some() {
                up.comments.push("no proxy_pass names this upstream".into());
            }
        }
    }

    fn render(&self, source: &Path) -> String {
        let mut s = String::new();
        s.push_str(&format!(
            "# Translated from {} by `portico import-nginx`.\n",
            comment(&source.display().to_string())
        ));
        s.push_str("# Notes on what differs from nginx were printed with it; check with `portico check -c FILE`.\n");
        if !self.runtime.is_empty() {
            s.push_str("\n[runtime]\n");
            for (key, value, note) in &self.runtime {
                line(&mut s, &format!("{key} = {value}"), note.as_deref());
            }
        }
        for up in &self.upstreams {
            self.render_upstream(&mut s, up);
        }
        for zone in &self.zones {
            if let Some(table) = &zone.table {
                s.push('\n');
                line(&mut s, &format!("[limit_req.{}]", key(&zone.name)), Some(&format!("nginx: {}", zone.place)));
                if let Some(k) = &table.key {
                    s.push_str(&format!("key = {}\n", quote(k)));
                }
                s.push_str(&format!("rate = {}\nsize = {}\n", quote(&table.rate), quote(&table.size)));
            }
        }
        for format in &self.log_formats {
            s.push('\n');
            let title = format!("[log_format.{}]", key(&format.table_name));
            match &format.table {
                Ok((text, escape)) => {
                    line(&mut s, &title, Some(&format!("nginx: {}", format.place)));
                    s.push_str(&format!("format = {}\n", quote(text)));
                    if let Some(escape) = escape {
                        s.push_str(&format!("escape = {}\n", quote(escape)));
                    }
                }
                Err(why) => {
                    line(
                        &mut s,
                        &format!("# {title}"),
                        Some(&format!("nginx: {}; not translated: {why}", format.place)),
                    );
                }
            }
        }
        for server in &self.servers {
            render_server(&mut s, server);
        }
        s
    }

    fn render_upstream(&self, s: &mut String, up: &UpstreamOut) {
        s.push('\n');
        for c in &up.comments {
            s.push_str(&format!("# {}\n", comment(c)));
        }
        let table = format!("upstream.{}", key(&up.name));
        line(s, &format!("[{table}]"), up.place.as_ref().map(|p| format!("nginx: {p}")).as_deref());
        let simple = up.peers.iter().all(|p| {
            p.weight.is_none() && p.max_fails.is_none() && p.fail_timeout.is_none() && !p.backup && !p.down && !p.drain
        });
        if simple {
            let list: Vec<String> = up.peers.iter().map(|p| quote(&p.address)).collect();
            s.push_str(&format!("servers = [{}]\n", list.join(", ")));
        } else {
            s.push_str("servers = [\n");
            for p in &up.peers {
                let mut fields = vec![format!("address = {}", quote(&p.address))];
                fields.extend(p.weight.map(|w| format!("weight = {w}")));
                fields.extend(p.max_fails.map(|m| format!("max_fails = {m}")));
                fields.extend(p.fail_timeout.as_ref().map(|f| format!("fail_timeout = {}", quote(f))));
                if p.backup {
                    fields.push("backup = true".into());
                }
                if p.down {
                    fields.push("down = true".into());
                }
                if p.drain {
                    fields.push("drain = true".into());
                }
                s.push_str(&format!("  {{ {} }},\n", fields.join(", ")));
            }
            s.push_str("]\n");
        }
        if let Some(Some(tls)) = &up.scheme {
            line(s, "tls = true", Some("nginx: proxy_pass https://"));
            if !tls.verify {
                if tls.verify_written {
                    line(s, "tls_verify = false", Some("nginx: proxy_ssl_verify off"));
                } else {
                    s.push_str("# nginx verifies no upstream certificate unless proxy_ssl_verify is on, and this\n");
                    s.push_str("# configuration does not turn it on: kept so. Prefer ca_file and tls_verify = true.\n");
                    s.push_str("tls_verify = false\n");
                }
            }
            if tls.verify
                && let Some(ca) = &tls.ca_file
            {
                line(s, &format!("ca_file = {}", quote(ca)), Some("nginx: proxy_ssl_trusted_certificate"));
            }
            if let Some(name) = &tls.server_name {
                line(s, &format!("tls_server_name = {}", quote(name)), Some("nginx: proxy_ssl_name"));
            }
            if let Some(protocols) = &tls.protocols {
                let listed: Vec<String> = protocols.iter().map(|v| quote(v)).collect();
                line(s, &format!("tls_protocols = [{}]", listed.join(", ")), Some("nginx: proxy_ssl_protocols"));
            }
            if let Some((cert, key)) = &tls.client_cert {
                line(s, &format!("tls_client_cert = {}", quote(cert)), Some("nginx: proxy_ssl_certificate"));
                line(s, &format!("tls_client_key = {}", quote(key)), Some("nginx: proxy_ssl_certificate_key"));
            }
        }
        if up.ip_hash {
            s.push_str("balance = \"ip_hash\"\n");
        }
        if let Some(k) = up.keepalive {
            s.push_str(&format!("keepalive = {k}\n"));
        }
        if let Some(c) = &up.connect_timeout {
            line(s, &format!("connect_timeout = {}", quote(c)), Some("nginx: proxy_connect_timeout"));
        }
        if let Some(sticky) = &up.sticky {
            s.push_str(&format!("\n[{table}.sticky]\n"));
            line(
                s,
                &format!("learn = {}", quote(&sticky.learn)),
                Some("nginx: sticky learn create=$upstream_cookie_..."),
            );
            if let Some(z) = &sticky.zone {
                s.push_str(&format!("zone = {}\n", quote(z)));
            }
            if let Some(size) = &sticky.size {
                s.push_str(&format!("size = {}\n", quote(size)));
            }
            if let Some(t) = &sticky.timeout {
                s.push_str(&format!("timeout = {}\n", quote(t)));
            }
        }
        if let Some((check, place)) = &up.health_check {
            line(s, &format!("\n[{table}.health_check]"), Some(&format!("nginx: health_check, {place}")));
            s.push_str(&format!("uri = {}\ninterval = {}\n", quote(&check.uri), quote(&check.interval)));
            for (key, n) in [("fails", check.fails), ("passes", check.passes)] {
                if n != 1 {
                    s.push_str(&format!("{key} = {n}\n"));
                }
            }
            if let Some(port) = check.port {
                s.push_str(&format!("port = {port}\n"));
            }
            if let Some((status, from)) = &check.status {
                line(s, &format!("status = {}", quote(status)), Some(&format!("nginx: match {from}")));
            }
            if let Some((body, from)) = &check.body {
                line(s, &format!("body = {}", quote(body)), Some(&format!("nginx: match {from}")));
            }
            if check.mandatory {
                s.push_str("mandatory = true\n");
            }
        }
    }
}

fn render_server(s: &mut String, server: &ServerOut) {
    s.push('\n');
    for c in &server.comments {
        s.push_str(&format!("# {}\n", comment(c)));
    }
    line(s, "[[server]]", server.place.as_ref().map(|p| format!("nginx: {p}")).as_deref());
    let listen: Vec<String> = server.listen.iter().map(|l| quote(l)).collect();
    s.push_str(&format!("listen = [{}]\n", listen.join(", ")));
    if !server.names.is_empty() {
        let names: Vec<String> = server.names.iter().map(|n| quote(n)).collect();
        s.push_str(&format!("server_name = [{}]\n", names.join(", ")));
    }
    if server.default_server {
        s.push_str("default_server = true\n");
    }
    match server.proxy_protocol {
        Some(true) => line(s, "proxy_protocol = true", Some("nginx: listen ... proxy_protocol")),
        Some(false) => {
            line(s, "# proxy_protocol = true", Some("needs [runtime] trusted_proxies: the balancers' addresses"))
        }
        None => {}
    }
    // The tls table's keys after the certificate.
    let mut options = server.protocols.as_ref().map_or_else(String::new, |p| {
        let listed: Vec<String> = p.iter().map(|v| quote(v)).collect();
        format!(", protocols = [{}]", listed.join(", "))
    });
    if let Some(auth) = &server.client_auth {
        options.push_str(&format!(", verify_client = {}", quote(&auth.mode)));
        for (key, file) in [("client_ca", &auth.ca), ("client_crl", &auth.crl)] {
            if let Some(file) = file {
                options.push_str(&format!(", {key} = {}", quote(file)));
            }
        }
    }
    if let Some((cert, key)) = &server.tls {
        s.push_str(&format!("tls = {{ cert = {}, key = {}{options} }}\n", quote(cert), quote(key)));
    } else if server.tls_missing {
        line(
            s,
            &format!("tls = {{ self_signed = true{options} }}"),
            Some("nginx had ssl but no ssl_certificate: replace"),
        );
    }
    if let Some((url, status, from)) = &server.redirect {
        line(s, &format!("redirect = {}", quote(url)), Some(&format!("nginx: {from}")));
        if *status != 301 {
            s.push_str(&format!("redirect_status = {status}\n"));
        }
    }
    let shorthand = match server.locations.as_slice() {
        [
            LocationOut {
                prefix,
                action: Action::Proxy(up),
                access: None,
                limit_req: None,
                response_headers: None,
                gzip: None,
            },
        ] if prefix == "/" => Some(up),
        _ => None,
    };
    if let Some(up) = shorthand {
        line(s, &format!("proxy_pass = {}", quote(up)), Some("nginx: location / { proxy_pass ... }"));
    }
    render_access(s, &server.access);
    if let Some(limits) = &server.limit_req {
        render_limits(s, limits);
    }
    if let Some(gzip) = &server.gzip {
        render_gzip(s, Some(gzip));
    }
    if let Some(p) = &server.access_log {
        s.push_str(&format!("access_log = {}\n", quote(p)));
    }
    if let Some(f) = &server.access_log_format {
        s.push_str(&format!("access_log_format = {}\n", quote(f)));
    }
    if let Some(p) = &server.error_log {
        s.push_str(&format!("error_log = {}\n", quote(p)));
    }
    if let Some(t) = &server.read_timeout {
        line(s, &format!("read_timeout = {}", quote(t)), Some("nginx: proxy_read_timeout"));
    }
    if let Some(t) = &server.send_timeout {
        line(s, &format!("send_timeout = {}", quote(t)), Some("nginx: proxy_send_timeout"));
    }
    if let Some(headers) = &server.headers {
        line(s, "\n[server.headers]", Some("nginx: proxy_set_header"));
        for h in headers {
            s.push_str(&format!("{} = {}\n", key(&h.name), quote(&h.value)));
        }
    }
    if !server.response_headers.is_empty() {
        render_response_headers(s, "\n[server.response_headers]", &server.response_headers);
    }
    if shorthand.is_none() {
        for loc in &server.locations {
            s.push_str("\n[[server.location]]\n");
            s.push_str(&format!("prefix = {}\n", quote(&loc.prefix)));
            match &loc.action {
                Action::Proxy(up) => s.push_str(&format!("proxy_pass = {}\n", quote(up))),
                Action::Return(status) => s.push_str(&format!("return = {status}\n")),
                Action::Redirect { url, status, from } => {
                    line(s, &format!("redirect = {}", quote(url)), Some(&format!("nginx: {from}")));
                    if *status != 301 {
                        s.push_str(&format!("redirect_status = {status}\n"));
                    }
                }
            }
            if let Some(access) = &loc.access {
                render_access(s, access);
            }
            if let Some(limits) = &loc.limit_req {
                render_limits(s, limits);
            }
            if let Some(gzip) = &loc.gzip {
                render_gzip(s, gzip.as_ref());
            }
            if let Some(headers) = &loc.response_headers {
                render_response_headers(s, "[server.location.response_headers]", headers);
            }
        }
    }
}

/// `gzip = { ... }`, or `gzip = false` (`None`) for a location where nginx's is off.
fn render_gzip(s: &mut String, gzip: Option<&GzipOut>) {
    let Some(gzip) = gzip else {
        return line(s, "gzip = false", Some("nginx: gzip off"));
    };
    let types: Vec<String> = gzip.types.iter().map(|t| quote(t)).collect();
    let mut table = format!("types = [{}]", types.join(", "));
    if let Some(length) = &gzip.min_length {
        table.push_str(&format!(", min_length = {}", quote(length)));
    }
    if let Some(level) = gzip.level {
        table.push_str(&format!(", level = {level}"));
    }
    line(s, &format!("gzip = {{ {table} }}"), Some("nginx: gzip on, gzip_types, gzip_min_length, gzip_comp_level"));
}

/// A response headers table (`title`), each line naming its nginx directive.
fn render_response_headers(s: &mut String, title: &str, headers: &[(Header, &'static str)]) {
    s.push_str(&format!("{title}\n"));
    for (h, directive) in headers {
        line(s, &format!("{} = {}", key(&h.name), quote(&h.value)), Some(&format!("nginx: {directive}")));
    }
}

/// `allow` and `deny`, each when it lists anything.
fn render_access(s: &mut String, access: &AccessOut) {
    for (key, list) in [("allow", &access.allow), ("deny", &access.deny)] {
        if !list.is_empty() {
            let listed: Vec<String> = list.iter().map(|a| quote(a)).collect();
            s.push_str(&format!("{key} = [{}]\n", listed.join(", ")));
        }
    }
}

/// `limit_req = { ... }`, or an array of them with one line each for
/// several, the keys portico's defaults make unnecessary left out.
fn render_limits(s: &mut String, limits: &[LimitOut]) {
    let table = |limit: &LimitOut| {
        let mut fields = vec![format!("zone = {}", quote(&limit.zone))];
        fields.extend(limit.burst.map(|n| format!("burst = {n}")));
        if limit.nodelay {
            fields.push("nodelay = true".into());
        }
        fields.extend(limit.delay.map(|n| format!("delay = {n}")));
        fields.extend(limit.status.map(|n| format!("status = {n}")));
        format!("{{ {} }}", fields.join(", "))
    };
    if let [limit] = limits {
        line(s, &format!("limit_req = {}", table(limit)), Some(&format!("nginx: {}", limit.place)));
        return;
    }
    s.push_str("limit_req = [\n");
    for limit in limits {
        line(s, &format!("  {},", table(limit)), Some(&format!("nginx: {}", limit.place)));
    }
    s.push_str("]\n");
}

/// The zones `limits` count in, for notes: `zone a`, `zones a, b`.
fn zones_named(limits: &[LimitOut]) -> String {
    let names: Vec<&str> = limits.iter().map(|l| l.zone.as_str()).collect();
    match names.as_slice() {
        [one] => format!("zone {one}"),
        _ => format!("zones {}", names.join(", ")),
    }
}

/// A `limit_req_zone` key as a `[limit_req.NAME]` key: `None` for the client
/// address (portico's default); otherwise the key, `$binary_remote_addr`
/// inside it written `$remote_addr` (the same address as text), when every
/// variable in it is one portico has; else why not.
fn zone_key(key: &str) -> Result<Option<String>, String> {
    if key == "$binary_remote_addr" || key == "$remote_addr" {
        return Ok(None);
    }
    let text = replace_variable(key, "binary_remote_addr", "remote_addr");
    match Template::parse(&text) {
        Ok(_) => Ok(Some(text)),
        Err(e) => Err(format!("the key {key}: {e}")),
    }
}

/// Appends `text`, with `# note` after it when there is one.
fn line(s: &mut String, text: &str, note: Option<&str>) {
    s.push_str(text);
    if let Some(note) = note {
        s.push_str("  # ");
        s.push_str(&comment(note));
    }
    s.push('\n');
}

/// Text safe inside a TOML comment: one line, no control characters.
fn comment(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// A server's `add_header` and `proxy_hide_header` lines as its
/// `[server.response_headers]`: the later of two for one name wins, and an
/// added header needs no hiding (portico's replaces the upstream's).
fn response_headers(scope: &Scope) -> Vec<(Header, &'static str)> {
    let mut out: Vec<(Header, &'static str)> = Vec::new();
    let hidden = scope.hide_headers.iter().map(|h| (h, "proxy_hide_header"));
    for (h, directive) in hidden.chain(scope.add_headers.iter().map(|h| (h, "add_header"))) {
        out.retain(|(o, _)| !o.name.eq_ignore_ascii_case(&h.name));
        out.push((h.clone(), directive));
    }
    out
}

/// A TOML basic string.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A TOML key: bare when it can be, else quoted (`upstream."api.example.com"`).
fn key(text: &str) -> String {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        text.to_owned()
    } else {
        quote(text)
    }
}

/// `text` with nginx variable `$from` (or `${from}`) renamed `$to`; longer
/// names that start with `from` are left alone.
fn replace_variable(text: &str, from: &str, to: &str) -> String {
    substitute_variable(text, from, |braced| if braced { format!("${{{to}}}") } else { format!("${to}") })
}

/// `text` with nginx variable `$from` (or `${from}`) written as the literal
/// `blank`; `None` if it has no such variable.
fn blank_variable(text: &str, from: &str, blank: &str) -> Option<String> {
    let blanked = substitute_variable(text, from, |_| blank.to_owned());
    (blanked != text).then_some(blanked)
}

/// `text` with each `$from` and `${from}` written as `with` says (it is
/// told whether the variable was braced).
fn substitute_variable(text: &str, from: &str, with: impl Fn(bool) -> String) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        rest = &rest[pos + 1..];
        let braced = rest.strip_prefix('{').and_then(|r| r.strip_prefix(from)).and_then(|r| r.strip_prefix('}'));
        let bare = rest.strip_prefix(from).filter(|r| !r.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_'));
        match (braced, bare) {
            (Some(after), _) => {
                out.push_str(&with(true));
                rest = after;
            }
            (None, Some(after)) => {
                out.push_str(&with(false));
                rest = after;
            }
            (None, None) => out.push('$'),
        }
    }
    out.push_str(rest);
    out
}

/// `host` -> `host:port` when no port is given (IPv6 literals in brackets).
fn with_port(address: &str, port: u16) -> String {
    let has_port = match address.rsplit_once(':') {
        Some((host, p)) => p.parse::<u16>().is_ok() && (!host.contains(':') || host.ends_with(']')),
        None => false,
    };
    if has_port { address.to_owned() } else { format!("{address}:{port}") }
}

/// A whole number above 0, as nginx reads one (digits only), or `None`.
fn positive(text: &str) -> Option<u32> {
    text.parse().ok().filter(|n| *n > 0 && text.bytes().all(|b| b.is_ascii_digit()))
}

/// An nginx `limit_req_zone` rate (`10r/s`, `30r/m`; a bare count is per
/// second) as portico's, or `None`.
fn limit_rate(text: &str) -> Option<String> {
    let (count, unit) = match (text.strip_suffix("r/s"), text.strip_suffix("r/m")) {
        (Some(count), _) => (count, "s"),
        (_, Some(count)) => (count, "m"),
        _ => (text, "s"),
    };
    // u32: far above any real rate, and within what portico's arithmetic takes.
    Some(format!("{}r/{unit}", positive(count)?))
}

/// nginx's error_log levels in portico's four.
fn error_level(level: &str) -> Option<&'static str> {
    match level {
        "debug" => Some("debug"),
        "info" | "notice" => Some("info"),
        "warn" => Some("warn"),
        "error" | "crit" | "alert" | "emerg" => Some("error"),
        _ => None,
    }
}

/// The text an NGINX Plus `match` block's `body ~ REGEX` line looks for, as
/// portico's `health_check.body`, when the regular expression is a literal
/// text (`\.` a dot); and the `body` lines left out, with why. portico tests
/// one text: a second `body ~` line is left out.
fn match_body(block: &[Directive]) -> (Option<String>, Vec<(&Directive, &'static str)>) {
    let mut body = None;
    let mut left_out = Vec::new();
    for line in block.iter().filter(|d| d.name == "body") {
        let why = match line.args.as_slice() {
            [op, regex] if op == "~" => match regex_literal(regex) {
                Some(text) if text.len() > config::runtime::HealthCheck::BODY_LIMIT => {
                    "portico's health checks look for the text in the body's first 64 KiB, and this one is longer"
                }
                Some(_) if body.is_some() => {
                    "portico's health checks look for one text in the body, and an earlier body line of this match block is it"
                }
                Some(text) => {
                    body = Some(text);
                    continue;
                }
                None => {
                    "portico's health checks look for a literal text in the body (body = \"...\"), and this regular expression is not one"
                }
            },
            [op, _] if op == "!~" => {
                "portico's health checks look for a text the body contains (body = \"...\"), not one it lacks"
            }
            _ => "expected body ~ or !~ and a regular expression",
        };
        left_out.push((line, why));
    }
    (body, left_out)
}

/// The one text a PCRE regular expression matches, when it is a plain text:
/// no metacharacter (`.^$|?*+()[]{}`) but escaped ones, such as `\.`, which
/// are themselves (`\d`, `\b` and the like are classes and anchors, `\Q` a
/// quote: not plain). `None` otherwise, and for the empty regex.
fn regex_literal(regex: &str) -> Option<String> {
    let mut text = String::with_capacity(regex.len());
    let mut chars = regex.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped) if escaped.is_ascii_punctuation() => text.push(escaped),
                _ => return None,
            },
            '.' | '^' | '$' | '|' | '?' | '*' | '+' | '(' | ')' | '[' | ']' | '{' | '}' => return None,
            c => text.push(c),
        }
    }
    (!text.is_empty()).then_some(text)
}

/// The statuses an NGINX Plus `match` block's `status` lines let pass (a
/// response must pass each; a block without one tests no status) as portico's
/// `health_check.status`: `status ! 500` is `"100-499, 501-599"`.
fn match_statuses(block: &[Directive]) -> Result<String, String> {
    // Index 0 is status 100, 499 is 599: the codes portico takes.
    let code = |text: &str| text.parse::<u16>().ok().filter(|c| (100..=599).contains(c)).map(|c| usize::from(c - 100));
    let mut passing = [true; 500];
    for line in block.iter().filter(|d| d.name == "status") {
        let (negated, parts) = match line.args.split_first() {
            Some((bang, parts)) if bang == "!" => (true, parts),
            _ => (false, line.args.as_slice()),
        };
        let bad =
            || format!("status {}: expected codes and ranges from 100 to 599, perhaps after !", line.args.join(" "));
        if parts.is_empty() {
            return Err(bad());
        }
        let mut listed = [false; 500];
        for part in parts {
            let (low, high) = part.split_once('-').unwrap_or((part, part));
            match (code(low), code(high)) {
                (Some(low), Some(high)) if low <= high => listed[low..=high].fill(true),
                _ => return Err(bad()),
            }
        }
        for (pass, listed) in passing.iter_mut().zip(listed) {
            *pass &= listed != negated;
        }
    }
    let mut ranges = Vec::new();
    let mut start = None;
    // A failing status past the end closes the last range.
    for (i, pass) in passing.into_iter().chain([false]).enumerate() {
        match (start, pass) {
            (None, true) => start = Some(i),
            (Some(first), false) if first + 1 == i => ranges.push(format!("{}", first + 100)),
            (Some(first), false) => ranges.push(format!("{}-{}", first + 100, i + 99)),
            _ => continue,
        }
        if !pass {
            start = None;
        }
    }
    if ranges.is_empty() {
        return Err("its status lines let no status pass".into());
    }
    Ok(ranges.join(", "))
}

/// A level's nginx `allow` and `deny` lines (the first that matches a client
/// decides; none lets it in) as portico's lists (a client in deny is refused,
/// then, when allow lists any, every client outside it), when they let in
/// exactly the same clients; else which lines portico cannot say.
fn access_lists(rules: &[Directive]) -> Result<AccessOut, String> {
    let Some(first) = rules.first() else { return Ok(AccessOut::default()) };
    let at = |d: &Directive| {
        let place =
            if d.place.file == first.place.file { format!("line {}", d.place.line) } else { d.place.to_string() };
        format!("{} {} ({place})", d.name, d.args.join(" "))
    };
    // The lines a client can reach, in order: whether each allows, what it names, its network.
    let mut reached: Vec<(bool, &String, &Directive, Cidr)> = Vec::new();
    // What a client no line matches gets: the `all` line, if any, decides.
    let mut others_allowed = true;
    for d in rules {
        let allows = d.name == "allow";
        match d.args.as_slice() {
            [all] if all == "all" => {
                others_allowed = allows;
                // The lines after it are never reached.
                break;
            }
            [target] => match config::validate::parse_cidr(target) {
                // Within an earlier line's network: that line always matches first.
                Some(net) if reached.iter().any(|(_, _, _, earlier)| within(&net, earlier)) => {}
                Some(net) => reached.push((allows, target, d, net)),
                None => return Err(format!("{}: expected an IP address, a CIDR, unix: or all", at(d))),
            },
            _ => return Err(format!("{}: expected one address", at(d))),
        }
    }
    let mut out = AccessOut::default();
    for (i, (allows, target, d, net)) in reached.iter().enumerate() {
        if *allows {
            // Everyone else is let in anyway when no all line refuses them.
            if !others_allowed {
                out.allow.push((*target).clone());
            }
            continue;
        }
        // Two networks either nest or are apart: a reached line never lies within an earlier one.
        let excepted = reached[..i].iter().find(|(a, _, _, earlier)| *a && within(earlier, net));
        let excepting = reached[i + 1..].iter().find(|(a, _, _, later)| *a && within(net, later));
        match (excepted, excepting) {
            (None, _) => out.deny.push((*target).clone()),
            // Others are refused anyway; the line mattered only to allow lines after it.
            (Some(_), None) if !others_allowed => {}
            (Some((_, _, earlier, _)), None) => {
                return Err(format!("{} lets in part of {} after it", at(earlier), at(d)));
            }
            (Some((_, _, earlier, _)), Some((_, _, later, _))) => {
                return Err(format!(
                    "{} lets in part of {} after it, which keeps out part of {} after that",
                    at(earlier),
                    at(d),
                    at(later)
                ));
            }
        }
    }
    if !others_allowed && out.allow.is_empty() {
        return Ok(AccessOut { allow: Vec::new(), deny: vec!["all".into()] });
    }
    Ok(out)
}

/// Whether network `inner` lies within `outer`.
fn within(inner: &Cidr, outer: &Cidr) -> bool {
    inner.addr.is_ipv4() == outer.addr.is_ipv4() && inner.prefix_len >= outer.prefix_len && outer.contains(inner.addr)
}

/// An nginx time (`60`, `60s`, `5m`, `1h30m`, `500ms`) as a contract duration,
/// keeping the nginx spelling when the contract has it.
fn duration(text: &str) -> Option<String> {
    let mut total_ms: u64 = 0;
    let mut terms = 0;
    let mut rest = text.trim();
    let mut single = None;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == ' ').unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = rest[unit_len..].trim_start();
        let ms: u64 = match unit {
            "ms" => 1,
            "" | "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            "M" => 30 * 86_400_000,
            "y" => 365 * 86_400_000,
            _ => return None,
        };
        total_ms = total_ms.checked_add(n.checked_mul(ms)?)?;
        terms += 1;
        if matches!(unit, "ms" | "s" | "m" | "h" | "d") {
            single = Some(format!("{n}{unit}"));
        } else if unit.is_empty() {
            single = Some(format!("{n}s"));
        } else {
            single = None;
        }
    }
    if terms == 0 {
        return None;
    }
    if terms == 1
        && let Some(single) = single
    {
        return Some(single);
    }
    let rendered = [(86_400_000, "d"), (3_600_000, "h"), (60_000, "m"), (1000, "s")]
        .into_iter()
        .find(|(unit, _)| total_ms.is_multiple_of(*unit) && total_ms > 0)
        .map_or_else(|| format!("{total_ms}ms"), |(unit, name)| format!("{}{name}", total_ms / unit));
    Some(rendered)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn import_durations() {
        assert_eq!(duration("60").as_deref(), Some("60s"));
        assert_eq!(duration("5m").as_deref(), Some("5m"));
        assert_eq!(duration("500ms").as_deref(), Some("500ms"));
        assert_eq!(duration("1h").as_deref(), Some("1h"));
        assert_eq!(duration("1h30m").as_deref(), Some("90m"));
        assert_eq!(duration("1w").as_deref(), Some("7d"));
        assert_eq!(duration("1s500ms").as_deref(), Some("1500ms"));
        assert_eq!(duration("").as_deref(), None);
        assert_eq!(duration("5x").as_deref(), None);
        assert_eq!(duration("m").as_deref(), None);
    }

    #[test]
    fn import_regex_literal() {
        assert_eq!(regex_literal("Welcome to nginx!").as_deref(), Some("Welcome to nginx!"));
        assert_eq!(regex_literal(r#""status":"UP""#).as_deref(), Some(r#""status":"UP""#));
        assert_eq!(regex_literal(r"version 4\.2\.0 \(GA\)").as_deref(), Some("version 4.2.0 (GA)"));
        assert_eq!(regex_literal(r"C:\\wso2").as_deref(), Some(r"C:\wso2"));
        for regex in ["", "UP|OK", "^UP$", "4.2", "a+", "[Uu]P", r"\d+", r"\bUP", r"\Q.\E", "{\"a\":1}", "x\\"] {
            assert_eq!(regex_literal(regex), None, "{regex}");
        }
    }

    #[test]
    fn import_match_bodies() {
        let body = |tests: &str| {
            let parsed = nginx::parse_str(&format!("match m {{ {tests} }}"), Path::new("nginx.conf")).unwrap();
            let block = parsed[0].block.clone().unwrap();
            let (text, left_out) = match_body(&block);
            (text, left_out.len())
        };
        assert_eq!(body("status 200;"), (None, 0));
        assert_eq!(body("body ~ \"Version\";"), (Some("Version".into()), 0));
        assert_eq!(body("body ~ \"Ver.ion\";"), (None, 1));
        assert_eq!(body("body !~ maintenance;"), (None, 1));
        assert_eq!(body("body ~ UP; body ~ OK;"), (Some("UP".into()), 1));
        assert_eq!(body("body ~ a b;"), (None, 1));
        assert_eq!(body(&format!("body ~ {};", "x".repeat(64 * 1024 + 1))), (None, 1));
    }

    #[test]
    fn import_match_statuses() {
        let statuses = |tests: &str| {
            let parsed = nginx::parse_str(&format!("match m {{ {tests} }}"), Path::new("nginx.conf")).unwrap();
            match_statuses(parsed[0].block.as_deref().unwrap())
        };
        let ok = |ranges: &str| Ok(ranges.to_owned());
        assert_eq!(statuses("status 200;"), ok("200"));
        assert_eq!(statuses("status ! 500;"), ok("100-499, 501-599"));
        assert_eq!(statuses("status 200 204;"), ok("200, 204"));
        assert_eq!(statuses("status ! 301-303 307;"), ok("100-300, 304-306, 308-599"));
        assert_eq!(statuses("status ! 400-599;"), ok("100-399"));
        assert_eq!(statuses("status ! 100;"), ok("101-599"));
        assert_eq!(statuses("status 599;"), ok("599"));
        // Every test must pass: two status lines are both met; none tests nothing.
        assert_eq!(statuses("status 200-399; status ! 204;"), ok("200-203, 205-399"));
        assert_eq!(statuses("body ~ ok;"), ok("100-599"));
        assert_eq!(statuses("status 200; status 204;"), Err("its status lines let no status pass".into()));
        for bad in ["status;", "status !;", "status 600;", "status 99;", "status 399-200;", "status 2xx;", "status -5;"]
        {
            assert!(statuses(bad).is_err_and(|e| e.contains("expected codes and ranges")), "{bad}");
        }
    }

    #[test]
    fn import_access_lists() {
        let lists = |rules: &str| access_lists(&nginx::parse_str(rules, Path::new("nginx.conf")).unwrap());
        let ok = |allow: &[&str], deny: &[&str]| {
            let owned = |l: &[&str]| l.iter().map(|a| (*a).to_owned()).collect();
            Ok(AccessOut { allow: owned(allow), deny: owned(deny) })
        };
        let (a, b) = ("10.0.0.0/8", "192.168.1.7");
        assert_eq!(lists("allow 10.0.0.0/8; allow 192.168.1.7; deny all;"), ok(&[a, b], &[]));
        assert_eq!(lists("deny 10.0.0.0/8; deny 192.168.1.7;"), ok(&[], &[a, b]));
        assert_eq!(lists("deny 10.0.0.0/8; allow all;"), ok(&[], &[a]));
        assert_eq!(lists("deny 10.9.9.9; allow 10.0.0.0/8; deny all;"), ok(&[a], &["10.9.9.9"]));
        assert_eq!(lists("deny 2001:db8::1; allow 2001:db8::/32; deny all;"), ok(&["2001:db8::/32"], &["2001:db8::1"]));
        assert_eq!(lists("allow all;"), ok(&[], &[]));
        assert_eq!(lists("deny all;"), ok(&[], &["all"]));
        assert_eq!(lists("deny 10.0.0.0/8; deny all;"), ok(&[], &["all"]));
        // A deny apart from every allow refuses what nginx refuses; lines after all are never reached.
        assert_eq!(lists("allow 10.0.0.0/8; deny 192.168.1.7; deny all; allow 1.2.3.4;"), ok(&[a], &[b]));
        // Allows before no deny change nothing when the others are let in.
        assert_eq!(lists("deny 192.168.1.7; allow 10.0.0.0/8;"), ok(&[], &[b]));
        // A line within an earlier one's network is never reached.
        assert_eq!(lists("allow 10.0.0.0/8; deny 10.1.1.1;"), ok(&[], &[]));
        assert_eq!(lists("deny 10.0.0.0/8; allow 10.1.1.1; deny all;"), ok(&[], &["all"]));
        assert_eq!(lists("deny 10.0.0.0/8; deny 10.1.2.3/8;"), ok(&[], &[a]));
        // With the others refused, a deny after the allow it cuts into refuses no one that allow lets in.
        assert_eq!(lists("allow 10.1.1.1; deny 10.0.0.0/8; deny all;"), ok(&["10.1.1.1"], &[]));
        // An allow that excepts part of a later deny: nginx lets the rest of the world in.
        assert_eq!(
            lists("allow 10.1.1.1;\ndeny 10.0.0.0/8;"),
            Err("allow 10.1.1.1 (line 1) lets in part of deny 10.0.0.0/8 (line 2) after it".into())
        );
        assert_eq!(
            lists("allow 10.1.1.1; deny 10.1.0.0/16; allow 10.0.0.0/8; deny all;"),
            Err("allow 10.1.1.1 (line 1) lets in part of deny 10.1.0.0/16 (line 1) after it, which keeps out part of allow 10.0.0.0/8 (line 1) after that".into())
        );
        // IPv4 and IPv6 networks never nest.
        assert_eq!(lists("allow ::/0; deny 10.0.0.0/8;"), ok(&[], &[a]));
        for bad in ["allow;", "deny example.com;", "allow 10.0.0.0/33;", "deny 10.0.0.1 10.0.0.2;"] {
            assert!(lists(bad).is_err_and(|e| e.contains("expected")), "{bad}");
        }
    }

    /// Every list of up to three lines over the networks within 10.0.0.0/29,
    /// all and an IPv6 one: what translates lets in whom nginx lets in.
    #[test]
    fn import_access_lists_let_in_whom_nginx_does() {
        let mut targets = vec!["all".to_owned(), "::1".to_owned()];
        for (prefix, count) in [(29, 1), (30, 2), (31, 4), (32, 8)] {
            let size = 1 << (32 - prefix);
            targets.extend((0..count).map(|n| format!("10.0.0.{}/{prefix}", n * size)));
        }
        let rules: Vec<String> =
            ["allow", "deny"].iter().flat_map(|a| targets.iter().map(move |t| format!("{a} {t};"))).collect();
        let clients: Vec<std::net::IpAddr> = (0..8)
            .map(|n| format!("10.0.0.{n}"))
            .chain(["10.0.0.8".into(), "::1".into(), "::2".into()])
            .map(|ip| ip.parse().unwrap())
            .collect();
        let net = |t: &str| config::validate::parse_cidr(if t == "all" { "::/0" } else { t }).unwrap();
        let matches = |t: &str, ip: std::net::IpAddr| t == "all" || net(t).contains(ip);
        let (mut translated, mut refused) = (0, 0);
        let mut lists = vec![String::new()];
        for _ in 0..3 {
            lists = lists.iter().flat_map(|l| rules.iter().map(move |r| format!("{l}{r}"))).collect();
            for text in &lists {
                let parsed = nginx::parse_str(text, Path::new("nginx.conf")).unwrap();
                let Ok(out) = access_lists(&parsed) else {
                    refused += 1;
                    continue;
                };
                translated += 1;
                assert!(out.allow.is_empty() || !out.deny.contains(&"all".to_owned()), "{text}");
                let any = |list: &[String], ip| list.iter().any(|t| matches(t, ip));
                for &ip in &clients {
                    let nginx = parsed.iter().find(|d| matches(&d.args[0], ip)).is_none_or(|d| d.name == "allow");
                    let portico = !any(&out.deny, ip) && (out.allow.is_empty() || any(&out.allow, ip));
                    assert_eq!(nginx, portico, "{text} -> {out:?} for {ip}");
                }
            }
        }
        // The orders portico cannot say are the exception.
        assert!(refused > 0 && translated > 10 * refused, "{translated} translated, {refused} refused");
    }

    #[test]
    fn import_toml_quoting() {
        assert_eq!(quote("a\"b\\c\n\u{7f}"), "\"a\\\"b\\\\c\\n\\u007F\"");
        assert_eq!(key("X-Forwarded-For"), "X-Forwarded-For");
        assert_eq!(key("api.am.wso2.com"), "\"api.am.wso2.com\"");
        assert_eq!(with_port("10.0.0.1", 80), "10.0.0.1:80");
        assert_eq!(with_port("10.0.0.1:9443", 80), "10.0.0.1:9443");
        assert_eq!(with_port("[::1]", 443), "[::1]:443");
        assert_eq!(with_port("[::1]:8443", 443), "[::1]:8443");
    }

    #[test]
    fn import_replace_variable() {
        let r = |text| replace_variable(text, "ssl_client_cert", "ssl_client_escaped_cert");
        assert_eq!(r("$ssl_client_cert"), "$ssl_client_escaped_cert");
        assert_eq!(
            r("a${ssl_client_cert}b $ssl_client_cert,"),
            "a${ssl_client_escaped_cert}b $ssl_client_escaped_cert,"
        );
        assert_eq!(
            r("$ssl_client_certs $ssl_client_escaped_cert $host"),
            "$ssl_client_certs $ssl_client_escaped_cert $host"
        );
        assert_eq!(r("100$ and $"), "100$ and $");
    }
}
