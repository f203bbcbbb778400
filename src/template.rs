//! Header and redirect templates: `"https://$host$request_uri"` compiled once at
//! load, rendered per request without re-parsing.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use thiserror::Error;

use crate::request_id::RequestId;
use crate::tls::ClientCertificate;

/// A compiled template: literal text and variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

type Part = Piece<Variable>;

/// The variables a template may use (see the configuration contract).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Variable {
    /// Host without port and trailing dot, lower-case; else the server name.
    Host,
    /// The Host header (or h2 `:authority`) as sent.
    HttpHost,
    RemoteAddr,
    RemotePort,
    Scheme,
    ServerPort,
    ServerName,
    /// Path and query as sent.
    RequestUri,
    ProxyAddXForwardedFor,
    /// `$http_NAME`: a request header, `_` read as `-`.
    Http(http::HeaderName),
    /// `$cookie_NAME`: a request cookie's value.
    Cookie(String),
    /// The client's TLS certificate, PEM and URL-encoded (`verify_client`).
    SslClientEscapedCert,
    /// `SUCCESS`, `FAILED:reason` or `NONE`.
    SslClientVerify,
    /// The client certificate's subject, RFC 2253 form as nginx prints it.
    SslClientSDn,
    /// Its issuer, in the same form.
    SslClientIDn,
    /// Its serial number, upper-case hex.
    SslClientSerial,
    /// The SHA-1 of its DER, lower-case hex.
    SslClientFingerprint,
    /// 32 random hex digits, the same wherever the request prints it.
    RequestId,
    /// The current time in seconds, with milliseconds (`X-Request-Start: t=${msec}`).
    Msec,
    RequestMethod,
    /// The path as sent, without the query.
    Uri,
    /// The query as sent (`$args`, `$query_string`).
    Args,
    /// `$arg_NAME`: the first `NAME=` of the query, as sent.
    Arg(String),
    ServerProtocol,
    ServerAddr,
    /// The client connection's serial number.
    Connection,
    Pid,
    Hostname,
    /// `TLSv1.3` or `TLSv1.2`; empty on a plain connection.
    SslProtocol,
    /// OpenSSL's name of the cipher suite; empty on a plain connection.
    SslCipher,
}

/// Why a template did not compile.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TemplateError {
    #[error(
        "unknown variable `${0}` (known: $host, $http_host, $remote_addr, $remote_port, $scheme, $server_port, $server_name, $request_uri, $proxy_add_x_forwarded_for, $ssl_client_escaped_cert, $ssl_client_verify, $ssl_client_s_dn, $ssl_client_i_dn, $ssl_client_serial, $ssl_client_fingerprint, $ssl_protocol, $ssl_cipher, $request_id, $msec, $request_method, $uri, $args, $query_string, $server_protocol, $server_addr, $connection, $pid, $hostname, $http_NAME, $cookie_NAME, $arg_NAME)"
    )]
    UnknownVariable(String),
    #[error("`$` must be followed by a variable name (write `$$` for a literal `$`)")]
    EmptyVariable,
    #[error("`${{` is not closed by `}}`")]
    UnclosedBrace,
    #[error("templates cannot contain control characters such as CR or LF")]
    ControlCharacter,
}

/// What a template is rendered against: one request as the proxy sees it.
pub struct RequestContext<'a> {
    pub host: &'a str,
    pub http_host: &'a str,
    /// The client: `$remote_addr`, `$remote_port`.
    pub remote: SocketAddr,
    /// Whom the connection came from, which `$proxy_add_x_forwarded_for`
    /// appends: the client, unless `real_ip_header` found it in a header
    /// (and then the proxy that sent it).
    pub peer: IpAddr,
    pub scheme: &'a str,
    pub server_port: u16,
    pub server_name: &'a str,
    pub request_uri: &'a str,
    pub headers: &'a HeaderMap,
    /// Whether the peer may pass on its X-Forwarded-For (`trusted_proxies`).
    pub peer_trusted: bool,
    /// What the TLS handshake established about a client certificate.
    pub client_cert: Option<&'a ClientCertificate>,
    /// `$request_id`, made when first printed.
    pub request_id: &'a RequestId,
    /// `$ssl_protocol` and `$ssl_cipher`; `None` on plain connections.
    pub tls: Option<crate::tls::TlsSession>,
    /// `$request_method` and `$server_protocol`.
    pub method: &'a str,
    pub version: http::Version,
    /// `$server_addr`: the address the request came in on.
    pub server_addr: IpAddr,
    /// `$connection`.
    pub connection: u64,
}

impl Template {
    /// Compiles `text`. `$name` ends at the first character that is not
    /// alphanumeric or `_`; `${name}` delimits it explicitly; `$$` is a `$`.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        Ok(Template { parts: pieces(text, Variable::parse)? })
    }

    /// A template that is just this text.
    pub fn literal(text: &str) -> Template {
        Template { parts: vec![Piece::Literal(text.to_owned())] }
    }

    /// The template's text when it has no variables.
    pub fn as_literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Piece::Literal(text)] => Some(text),
            _ => None,
        }
    }

    /// Whether the template is `var` alone.
    pub fn is_just(&self, var: &Variable) -> bool {
        matches!(self.parts.as_slice(), [Piece::Var(v)] if v == var)
    }

    /// Whether the template uses `var`.
    pub fn uses(&self, var: &Variable) -> bool {
        self.parts.iter().any(|p| matches!(p, Piece::Var(v) if v == var))
    }

    /// Renders into `out` (appending). Values taken from the request are
    /// stripped of CR, LF and NUL so that no header can be injected.
    pub fn render_into(&self, ctx: &RequestContext<'_>, out: &mut String) {
        for part in &self.parts {
            match part {
                Piece::Literal(text) => out.push_str(text),
                Piece::Var(var) => var.render_into(ctx, out),
            }
        }
    }

    /// Renders into a new string.
    pub fn render(&self, ctx: &RequestContext<'_>) -> String {
        let mut out = String::new();
        self.render_into(ctx, &mut out);
        out
    }
}

/// A piece of compiled text: literal text or a variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece<V> {
    Literal(String),
    Var(V),
}

/// Splits `text` into literal text and variables, each name compiled by
/// `var`: the syntax of header templates and of access log formats alike.
pub(crate) fn pieces<V, E: From<TemplateError>>(
    text: &str,
    mut var: impl FnMut(&str) -> Result<V, E>,
) -> Result<Vec<Piece<V>>, E> {
    if text.chars().any(|c| c.is_control() && c != '\t') {
        return Err(TemplateError::ControlCharacter.into());
    }
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        literal.push_str(&rest[..pos]);
        rest = &rest[pos + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            literal.push('$');
            rest = after;
            continue;
        }
        let (name, after) = if let Some(braced) = rest.strip_prefix('{') {
            let end = braced.find('}').ok_or(TemplateError::UnclosedBrace)?;
            (&braced[..end], &braced[end + 1..])
        } else {
            let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
            (&rest[..end], &rest[end..])
        };
        if name.is_empty() {
            return Err(TemplateError::EmptyVariable.into());
        }
        if !literal.is_empty() {
            parts.push(Piece::Literal(std::mem::take(&mut literal)));
        }
        parts.push(Piece::Var(var(name)?));
        rest = after;
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        parts.push(Piece::Literal(literal));
    }
    Ok(parts)
}

/// The header `$http_NAME` reads (`_` read as `-`), if `name` is one.
pub(crate) fn http_variable(name: &str) -> Option<http::HeaderName> {
    header_variable("http_", name)
}

/// The header a variable `{prefix}NAME` reads (`_` read as `-`), if `name` is one.
pub(crate) fn header_variable(prefix: &str, name: &str) -> Option<http::HeaderName> {
    let header = name.strip_prefix(prefix).filter(|h| !h.is_empty())?;
    http::HeaderName::from_bytes(header.replace('_', "-").to_ascii_lowercase().as_bytes()).ok()
}

impl Variable {
    fn parse(name: &str) -> Result<Variable, TemplateError> {
        Ok(match name {
            "host" => Variable::Host,
            "http_host" => Variable::HttpHost,
            "remote_addr" => Variable::RemoteAddr,
            "remote_port" => Variable::RemotePort,
            "scheme" => Variable::Scheme,
            "server_port" => Variable::ServerPort,
            "server_name" => Variable::ServerName,
            "request_uri" => Variable::RequestUri,
            "proxy_add_x_forwarded_for" => Variable::ProxyAddXForwardedFor,
            "ssl_client_escaped_cert" => Variable::SslClientEscapedCert,
            "ssl_client_verify" => Variable::SslClientVerify,
            "ssl_client_s_dn" => Variable::SslClientSDn,
            "ssl_client_i_dn" => Variable::SslClientIDn,
            "ssl_client_serial" => Variable::SslClientSerial,
            "ssl_client_fingerprint" => Variable::SslClientFingerprint,
            "request_id" => Variable::RequestId,
            "ssl_protocol" => Variable::SslProtocol,
            "ssl_cipher" => Variable::SslCipher,
            "msec" => Variable::Msec,
            "request_method" => Variable::RequestMethod,
            "uri" => Variable::Uri,
            "args" | "query_string" => Variable::Args,
            "server_protocol" => Variable::ServerProtocol,
            "server_addr" => Variable::ServerAddr,
            "connection" => Variable::Connection,
            "pid" => Variable::Pid,
            "hostname" => Variable::Hostname,
            _ => {
                if let Some(header) = http_variable(name) {
                    Variable::Http(header)
                } else if let Some(cookie) = name.strip_prefix("cookie_").filter(|c| !c.is_empty()) {
                    Variable::Cookie(cookie.to_owned())
                } else if let Some(arg) = name.strip_prefix("arg_").filter(|a| !a.is_empty()) {
                    Variable::Arg(arg.to_owned())
                } else {
                    return Err(TemplateError::UnknownVariable(name.to_owned()));
                }
            }
        })
    }

    fn render_into(&self, ctx: &RequestContext<'_>, out: &mut String) {
        match self {
            Variable::Host => push_clean(out, ctx.host),
            Variable::HttpHost => push_clean(out, ctx.http_host),
            Variable::RemoteAddr => {
                let _ = write!(out, "{}", canonical_ip(ctx.remote.ip()));
            }
            Variable::RemotePort => {
                let _ = write!(out, "{}", ctx.remote.port());
            }
            Variable::Scheme => out.push_str(ctx.scheme),
            Variable::ServerPort => {
                let _ = write!(out, "{}", ctx.server_port);
            }
            Variable::ServerName => out.push_str(ctx.server_name),
            Variable::RequestId => out.push_str(ctx.request_id.as_str()),
            Variable::SslProtocol => out.push_str(ctx.tls.map_or("", |t| t.protocol)),
            Variable::SslCipher => out.push_str(ctx.tls.map_or("", |t| t.cipher)),
            Variable::RequestUri => push_clean(out, ctx.request_uri),
            Variable::Msec => {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                let _ = write!(out, "{}.{:03}", now.as_secs(), now.subsec_millis());
            }
            Variable::RequestMethod => out.push_str(ctx.method),
            Variable::Uri => push_clean(out, ctx.request_uri.split('?').next().unwrap_or_default()),
            Variable::Args => push_clean(out, ctx.request_uri.split_once('?').map_or("", |(_, query)| query)),
            Variable::Arg(name) => {
                push_clean(out, crate::log::query_argument(ctx.request_uri, name).unwrap_or_default())
            }
            Variable::ServerProtocol => out.push_str(crate::log::protocol(ctx.version)),
            Variable::ServerAddr => {
                let _ = write!(out, "{}", canonical_ip(ctx.server_addr));
            }
            Variable::Connection => {
                let _ = write!(out, "{}", ctx.connection);
            }
            Variable::Pid => {
                let _ = write!(out, "{}", crate::log::pid());
            }
            Variable::Hostname => out.push_str(crate::log::hostname()),
            Variable::ProxyAddXForwardedFor => {
                if ctx.peer_trusted {
                    let mut first = true;
                    for value in ctx.headers.get_all(http::header::HeaderName::from_static("x-forwarded-for")) {
                        if let Ok(value) = value.to_str() {
                            let value = value.trim();
                            if value.is_empty() {
                                continue;
                            }
                            if !first {
                                out.push_str(", ");
                            }
                            push_clean(out, value);
                            first = false;
                        }
                    }
                    if !first {
                        out.push_str(", ");
                    }
                }
                let _ = write!(out, "{}", canonical_ip(ctx.peer));
            }
            Variable::Http(name) => {
                let mut first = true;
                for value in ctx.headers.get_all(name) {
                    if let Ok(value) = value.to_str() {
                        if !first {
                            out.push_str(", ");
                        }
                        push_clean(out, value);
                        first = false;
                    }
                }
            }
            Variable::Cookie(name) => {
                if let Some(value) = cookie_value(ctx.headers, name) {
                    push_clean(out, value);
                }
            }
            Variable::SslClientVerify => match ctx.client_cert {
                Some(cert) => out.push_str(cert.verify.to_str().unwrap_or_default()),
                None => out.push_str("NONE"),
            },
            Variable::SslClientEscapedCert
            | Variable::SslClientSDn
            | Variable::SslClientIDn
            | Variable::SslClientSerial
            | Variable::SslClientFingerprint => {
                if let Some(value) = ctx.client_cert.and_then(|cert| self.client_cert_value(cert)) {
                    out.push_str(value.to_str().unwrap_or_default());
                }
            }
        }
    }

    /// The value of a variable made once per connection from the client
    /// certificate (`None` for the other variables, and where it is empty).
    pub fn client_cert_value<'c>(&self, cert: &'c ClientCertificate) -> Option<&'c http::HeaderValue> {
        match self {
            Variable::SslClientEscapedCert => cert.escaped_pem.as_ref(),
            Variable::SslClientSDn => cert.subject_dn(),
            Variable::SslClientIDn => cert.issuer_dn(),
            Variable::SslClientSerial => cert.serial(),
            Variable::SslClientFingerprint => cert.fingerprint(),
            _ => None,
        }
    }
}

/// The address as a client would write it: IPv4-mapped IPv6 shown as IPv4.
pub fn canonical_ip(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
        v4 => v4,
    }
}

/// Finds cookie `name` (case-sensitive, as browsers send it) in the Cookie headers.
pub fn cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get_all(http::header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(
        |pair| {
            let (k, v) = pair.split_once('=')?;
            (k.trim() == name).then(|| v.trim())
        },
    )
}

fn push_clean(out: &mut String, value: &str) {
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        out.extend(value.chars().filter(|c| !matches!(c, '\r' | '\n' | '\0')));
    } else {
        out.push_str(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx<'a>(headers: &'a HeaderMap, trusted: bool) -> RequestContext<'a> {
        RequestContext {
            host: "api.example.com",
            http_host: "API.example.com:8443",
            remote: "127.0.1.5:40000".parse().unwrap_or_else(|_| unreachable!()),
            peer: "127.0.1.5".parse().unwrap_or_else(|_| unreachable!()),
            scheme: "https",
            server_port: 8443,
            server_name: "api.example.com",
            request_uri: "/a/b?c=d",
            headers,
            peer_trusted: trusted,
            client_cert: None,
            request_id: &REQUEST_ID,
            tls: None,
            method: "GET",
            version: http::Version::HTTP_11,
            server_addr: "127.0.0.1".parse().unwrap_or_else(|_| unreachable!()),
            connection: 9,
        }
    }

    static REQUEST_ID: RequestId = RequestId::new();

    #[test]
    fn renders_variables_and_literals() -> Result<(), TemplateError> {
        let headers = HeaderMap::new();
        let t = Template::parse("https://$host$request_uri")?;
        assert_eq!(t.render(&ctx(&headers, true)), "https://api.example.com/a/b?c=d");
        let t = Template::parse("${scheme}x$$y:$server_port $remote_addr:$remote_port $http_host")?;
        assert_eq!(t.render(&ctx(&headers, true)), "httpsx$y:8443 127.0.1.5:40000 API.example.com:8443");
        Ok(())
    }

    #[test]
    fn x_forwarded_for_appends_only_for_trusted_peers() -> Result<(), TemplateError> {
        let mut headers = HeaderMap::new();
        headers.append("x-forwarded-for", http::HeaderValue::from_static("10.1.1.1"));
        headers.append("x-forwarded-for", http::HeaderValue::from_static("10.2.2.2, 10.3.3.3"));
        let t = Template::parse("$proxy_add_x_forwarded_for")?;
        assert_eq!(t.render(&ctx(&headers, true)), "10.1.1.1, 10.2.2.2, 10.3.3.3, 127.0.1.5");
        assert_eq!(t.render(&ctx(&headers, false)), "127.0.1.5");
        let empty = HeaderMap::new();
        assert_eq!(t.render(&ctx(&empty, true)), "127.0.1.5");
        Ok(())
    }

    #[test]
    fn headers_and_cookies() -> Result<(), TemplateError> {
        let mut headers = HeaderMap::new();
        headers.insert("x-custom-id", http::HeaderValue::from_static("abc"));
        headers.insert("cookie", http::HeaderValue::from_static("a=1; JSESSIONID=XYZ; b=2"));
        let t = Template::parse("$http_x_custom_id/$cookie_JSESSIONID/$cookie_missing")?;
        assert_eq!(t.render(&ctx(&headers, true)), "abc/XYZ/");
        Ok(())
    }

    #[test]
    fn client_certificate_variables_are_empty_without_one() -> Result<(), TemplateError> {
        let headers = HeaderMap::new();
        let t = Template::parse("[$ssl_client_s_dn|$ssl_client_i_dn|$ssl_client_serial|${ssl_client_fingerprint}]")?;
        assert_eq!(t.render(&ctx(&headers, true)), "[|||]");
        let policy = crate::tls::ClientAuth::new(crate::tls::VerifyClient::OptionalNoCa, None, None)
            .map_err(|_| TemplateError::EmptyVariable)?;
        let absent = std::sync::Arc::new(policy).outcome(None);
        let mut ctx = ctx(&headers, true);
        ctx.client_cert = Some(&absent);
        assert_eq!(t.render(&ctx), "[|||]");
        Ok(())
    }

    #[test]
    fn request_line_connection_and_clock_variables() -> Result<(), TemplateError> {
        let headers = HeaderMap::new();
        let t = Template::parse("$request_method $uri ? $args|$query_string|$arg_c|${arg_x}|$server_protocol")?;
        assert_eq!(t.render(&ctx(&headers, true)), "GET /a/b ? c=d|c=d|d||HTTP/1.1");
        let t = Template::parse("$server_addr $connection $pid $hostname")?;
        let pid = std::process::id();
        assert_eq!(t.render(&ctx(&headers, true)), format!("127.0.0.1 9 {pid} {}", crate::log::hostname()));
        // nginx's $msec: seconds since the epoch with milliseconds, now.
        let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let msec = Template::parse("t=${msec}")?.render(&ctx(&headers, true));
        let (secs, millis) = msec.trim_start_matches("t=").split_once('.').unwrap_or_default();
        assert_eq!(millis.len(), 3, "{msec}");
        let secs: u64 = secs.parse().unwrap_or_default();
        assert!(secs >= before.as_secs() && secs <= before.as_secs() + 5, "{msec}");
        Ok(())
    }

    #[test]
    fn rejects_bad_templates() {
        assert_eq!(Template::parse("$nope"), Err(TemplateError::UnknownVariable("nope".into())));
        assert_eq!(Template::parse("a$"), Err(TemplateError::EmptyVariable));
        assert_eq!(Template::parse("${host"), Err(TemplateError::UnclosedBrace));
        assert_eq!(Template::parse("a\r\nb"), Err(TemplateError::ControlCharacter));
    }
}
