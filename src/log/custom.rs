//! `[log_format.NAME]`: access log lines laid out as an nginx `log_format`,
//! so that the tools reading an operator's logs keep working. Compiled once
//! at load; a line is written from the request's facts without parsing.

use http::{HeaderMap, HeaderName, HeaderValue};
use thiserror::Error;

use super::{
    AccessRecord, UpstreamAttempt, Utc, protocol, push_ip, push_iso8601, push_json_escaped, push_nginx_escaped,
    push_num, push_seconds, push_time_local,
};
use crate::template::{Piece, TemplateError, header_variable, http_variable, pieces};
use crate::tls::ClientCertificate;

/// A compiled access log format.
#[derive(Debug, PartialEq, Eq)]
pub struct LogFormat {
    parts: Vec<Piece<LogVariable>>,
    escape: Escape,
    /// The request headers and cookies its `$http_NAME` and `$cookie_NAME`
    /// read, each once.
    request_values: Vec<RequestValue>,
    /// The upstream answer's headers its `$upstream_http_NAME` read, each once.
    upstream_headers: Vec<HeaderName>,
    /// The query arguments its `$arg_NAME` read, each once.
    args: Vec<Box<str>>,
    /// The answer's headers its `$sent_http_NAME` read, each once.
    sent_headers: Vec<HeaderName>,
    /// What it prints that a request must measure or keep: asked per
    /// request, so found once here.
    prints_host: bool,
    times_upstream: bool,
    times_connect: bool,
    counts_upstream_traffic: bool,
    counts_request: bool,
    keeps_sent_head: bool,
}

/// A value of the request a format prints, kept from the request as it came
/// (its headers change on the way to the upstream).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestValue {
    /// `$http_NAME`, `$content_type`, `$content_length`: a header's first value.
    Header(HeaderName),
    /// `$cookie_NAME`: a cookie's value (the name matched case-sensitively,
    /// as browsers send it back).
    Cookie(Box<str>),
}

impl RequestValue {
    /// Its value among `headers`.
    pub fn of(&self, headers: &HeaderMap) -> Option<HeaderValue> {
        match self {
            RequestValue::Header(name) => headers.get(name).cloned(),
            RequestValue::Cookie(name) => {
                crate::template::cookie_value(headers, name).and_then(|value| HeaderValue::from_str(value).ok())
            }
        }
    }
}

/// How values are written (nginx's `log_format ... escape=`); literal text
/// is written as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// `"`, `\` and bytes outside printable ASCII as `\xHH`; a value that is
    /// not there as `-`.
    Default,
    /// Escaped for the inside of a JSON string; a value not there is empty.
    Json,
    /// As they are; a value not there as `-`. Header values cannot hold a
    /// line break, so a line stays one line.
    None,
}

impl Escape {
    /// The mode nginx's `escape=NAME` names: `default`, `json` or `none`.
    pub fn from_name(name: &str) -> Option<Escape> {
        match name {
            "default" => Some(Escape::Default),
            "json" => Some(Escape::Json),
            "none" => Some(Escape::None),
            _ => None,
        }
    }
}

/// The names of portico's own formats, which no `[log_format.NAME]` may take.
pub const BUILT_IN_FORMATS: [&str; 2] = ["combined", "json"];

/// What a log format's `$name` can be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LogVariable {
    RemoteAddr,
    RemotePort,
    RemoteUser,
    TimeLocal,
    TimeIso8601,
    Msec,
    Request,
    RequestMethod,
    RequestUri,
    Uri,
    Args,
    ServerProtocol,
    Scheme,
    Host,
    ServerName,
    ServerPort,
    Status,
    BodyBytesSent,
    RequestTime,
    UpstreamAddr,
    UpstreamStatus,
    UpstreamResponseTime,
    UpstreamHeaderTime,
    RequestId,
    SslProtocol,
    SslCipher,
    Connection,
    ConnectionRequests,
    Pid,
    Hostname,
    RequestLength,
    RequestCompletion,
    ServerAddr,
    RealipRemoteAddr,
    RealipRemotePort,
    SslSessionReused,
    UpstreamConnectTime,
    UpstreamResponseLength,
    UpstreamBytesSent,
    UpstreamBytesReceived,
    /// portico keeps no cache: never there, as in nginx without `proxy_cache`.
    UpstreamCacheStatus,
    GzipRatio,
    SslClientVerify,
    SslClientSDn,
    SslClientIDn,
    SslClientSerial,
    SslClientFingerprint,
    BytesSent,
    /// `$http_NAME` or `$cookie_NAME`: its index in `request_values`.
    Value(usize),
    /// `$upstream_http_NAME`: its index in `upstream_headers`.
    UpstreamHttp(usize),
    /// `$arg_NAME`: its index in `args`.
    Arg(usize),
    /// `$sent_http_NAME`: its index in `sent_headers`.
    SentHttp(usize),
}

/// Every variable by name: what `parse` accepts and its error lists.
const VARIABLES: [(&str, LogVariable); 49] = [
    ("remote_addr", LogVariable::RemoteAddr),
    ("remote_port", LogVariable::RemotePort),
    ("remote_user", LogVariable::RemoteUser),
    ("time_local", LogVariable::TimeLocal),
    ("time_iso8601", LogVariable::TimeIso8601),
    ("msec", LogVariable::Msec),
    ("request", LogVariable::Request),
    ("request_method", LogVariable::RequestMethod),
    ("request_uri", LogVariable::RequestUri),
    ("uri", LogVariable::Uri),
    ("args", LogVariable::Args),
    ("query_string", LogVariable::Args),
    ("server_protocol", LogVariable::ServerProtocol),
    ("scheme", LogVariable::Scheme),
    ("host", LogVariable::Host),
    ("server_name", LogVariable::ServerName),
    ("server_port", LogVariable::ServerPort),
    ("status", LogVariable::Status),
    ("body_bytes_sent", LogVariable::BodyBytesSent),
    ("request_time", LogVariable::RequestTime),
    ("upstream_addr", LogVariable::UpstreamAddr),
    ("upstream_status", LogVariable::UpstreamStatus),
    ("upstream_response_time", LogVariable::UpstreamResponseTime),
    ("upstream_header_time", LogVariable::UpstreamHeaderTime),
    ("request_id", LogVariable::RequestId),
    ("ssl_protocol", LogVariable::SslProtocol),
    ("ssl_cipher", LogVariable::SslCipher),
    ("connection", LogVariable::Connection),
    ("connection_requests", LogVariable::ConnectionRequests),
    ("pid", LogVariable::Pid),
    ("hostname", LogVariable::Hostname),
    ("request_length", LogVariable::RequestLength),
    ("request_completion", LogVariable::RequestCompletion),
    ("server_addr", LogVariable::ServerAddr),
    ("realip_remote_addr", LogVariable::RealipRemoteAddr),
    ("realip_remote_port", LogVariable::RealipRemotePort),
    ("ssl_session_reused", LogVariable::SslSessionReused),
    ("upstream_connect_time", LogVariable::UpstreamConnectTime),
    ("upstream_response_length", LogVariable::UpstreamResponseLength),
    ("upstream_bytes_sent", LogVariable::UpstreamBytesSent),
    ("upstream_bytes_received", LogVariable::UpstreamBytesReceived),
    ("upstream_cache_status", LogVariable::UpstreamCacheStatus),
    ("gzip_ratio", LogVariable::GzipRatio),
    ("ssl_client_verify", LogVariable::SslClientVerify),
    ("ssl_client_s_dn", LogVariable::SslClientSDn),
    ("ssl_client_i_dn", LogVariable::SslClientIDn),
    ("ssl_client_serial", LogVariable::SslClientSerial),
    ("ssl_client_fingerprint", LogVariable::SslClientFingerprint),
    ("bytes_sent", LogVariable::BytesSent),
];

/// Variables that are a request header by another name.
const HEADER_ALIASES: [(&str, HeaderName); 2] =
    [("content_type", http::header::CONTENT_TYPE), ("content_length", http::header::CONTENT_LENGTH)];

/// Why a log format did not compile.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum LogFormatError {
    #[error(
        "unknown variable `${0}` in a log format (known: {known}, $content_type, $content_length, $http_NAME, $cookie_NAME, $arg_NAME, $upstream_http_NAME, $sent_http_NAME)",
        known = known_names()
    )]
    UnknownVariable(String),
    #[error(transparent)]
    Syntax(#[from] TemplateError),
}

fn known_names() -> String {
    VARIABLES.iter().map(|(name, _)| format!("${name}")).collect::<Vec<_>>().join(", ")
}

impl LogFormat {
    /// Compiles `text`, written as a header template is (`$name`, `${name}`,
    /// `$$` for a `$`).
    pub fn parse(text: &str, escape: Escape) -> Result<LogFormat, LogFormatError> {
        let mut request_values: Vec<RequestValue> = Vec::new();
        let mut upstream_headers: Vec<HeaderName> = Vec::new();
        let mut args: Vec<Box<str>> = Vec::new();
        let mut sent_headers: Vec<HeaderName> = Vec::new();
        let parts = pieces(text, |name| {
            if let Some((_, var)) = VARIABLES.iter().find(|(known, _)| *known == name) {
                return Ok::<_, LogFormatError>(*var);
            }
            if let Some((_, header)) = HEADER_ALIASES.iter().find(|(alias, _)| *alias == name) {
                return Ok(LogVariable::Value(index_of(&mut request_values, RequestValue::Header(header.clone()))));
            }
            if let Some(header) = header_variable("upstream_http_", name) {
                return Ok(LogVariable::UpstreamHttp(index_of(&mut upstream_headers, header)));
            }
            if let Some(header) = header_variable("sent_http_", name) {
                return Ok(LogVariable::SentHttp(index_of(&mut sent_headers, header)));
            }
            if let Some(cookie) = name.strip_prefix("cookie_").filter(|c| !c.is_empty()) {
                return Ok(LogVariable::Value(index_of(&mut request_values, RequestValue::Cookie(cookie.into()))));
            }
            if let Some(arg) = name.strip_prefix("arg_").filter(|a| !a.is_empty()) {
                return Ok(LogVariable::Arg(index_of(&mut args, arg.into())));
            }
            let header = http_variable(name).ok_or_else(|| LogFormatError::UnknownVariable(name.to_owned()))?;
            Ok(LogVariable::Value(index_of(&mut request_values, RequestValue::Header(header))))
        })?;
        let uses = |var: LogVariable| parts.iter().any(|p| matches!(p, Piece::Var(v) if *v == var));
        Ok(LogFormat {
            prints_host: uses(LogVariable::Host),
            times_upstream: uses(LogVariable::UpstreamResponseTime) || uses(LogVariable::UpstreamHeaderTime),
            times_connect: uses(LogVariable::UpstreamConnectTime),
            counts_upstream_traffic: uses(LogVariable::UpstreamBytesSent) || uses(LogVariable::UpstreamBytesReceived),
            counts_request: uses(LogVariable::RequestLength),
            keeps_sent_head: uses(LogVariable::BytesSent) || !sent_headers.is_empty(),
            parts,
            escape,
            request_values,
            upstream_headers,
            args,
            sent_headers,
        })
    }

    /// The request headers and cookies a line needs, kept from the request
    /// for it (`AccessRecord::headers` holds their values in this order).
    pub fn request_values(&self) -> &[RequestValue] {
        &self.request_values
    }

    /// The upstream answer's headers a line needs, kept from its head
    /// (`AccessRecord::upstream_headers` holds their values in this order).
    pub fn upstream_headers(&self) -> &[HeaderName] {
        &self.upstream_headers
    }

    /// Whether a line prints `$host`.
    pub fn prints_host(&self) -> bool {
        self.prints_host
    }

    /// Whether a line prints `$upstream_response_time` or `$upstream_header_time`.
    pub fn times_upstream(&self) -> bool {
        self.times_upstream
    }

    /// Whether a line prints `$upstream_connect_time`.
    pub fn times_connect(&self) -> bool {
        self.times_connect
    }

    /// Whether a line prints `$upstream_bytes_sent` or `$upstream_bytes_received`.
    pub fn counts_upstream_traffic(&self) -> bool {
        self.counts_upstream_traffic
    }

    /// The answer's headers a line needs, kept from its final head
    /// (`AccessRecord::sent_headers` holds their values in this order).
    pub fn sent_headers(&self) -> &[HeaderName] {
        &self.sent_headers
    }

    /// Whether a line prints some of the answer's head (`$sent_http_NAME`,
    /// `$bytes_sent`): its line waits for the head to be final.
    pub fn keeps_sent_head(&self) -> bool {
        self.keeps_sent_head
    }

    /// Whether a line prints `$request_length`.
    pub fn counts_request(&self) -> bool {
        self.counts_request
    }

    /// Appends `record` as one line (with its newline) to `out`.
    pub fn format(&self, record: &AccessRecord<'_>, out: &mut Vec<u8>) {
        for part in &self.parts {
            match part {
                Piece::Literal(text) => out.extend_from_slice(text.as_bytes()),
                Piece::Var(var) => self.value(*var, record, out),
            }
        }
        out.push(b'\n');
    }

    fn value(&self, var: LogVariable, record: &AccessRecord<'_>, out: &mut Vec<u8>) {
        match var {
            LogVariable::RemoteAddr => push_ip(out, record.remote_addr),
            LogVariable::RemotePort => push_num(out, record.remote_port, 1),
            // portico authenticates no user.
            LogVariable::RemoteUser => self.text(out, None),
            LogVariable::TimeLocal => push_time_local(out, &Utc::from(record.time)),
            LogVariable::TimeIso8601 => {
                push_iso8601(out, &Utc::from(record.time));
                out.extend_from_slice(b"+00:00");
            }
            LogVariable::Msec => {
                // The line is written as the answer ends, as nginx's is.
                let end = record.time.checked_add(record.duration).unwrap_or(record.time);
                let since = end.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                push_num(out, since.as_secs(), 1);
                out.push(b'.');
                push_num(out, since.subsec_millis(), 3);
            }
            LogVariable::Request => {
                self.text(out, Some(record.method));
                out.push(b' ');
                self.text(out, Some(record.uri));
                out.push(b' ');
                out.extend_from_slice(protocol(record.version).as_bytes());
            }
            LogVariable::RequestMethod => self.text(out, Some(record.method)),
            LogVariable::RequestUri => self.text(out, Some(record.uri)),
            LogVariable::Uri => self.text(out, record.uri.split('?').next()),
            LogVariable::Args => self.text(out, record.uri.split_once('?').map(|(_, query)| query)),
            LogVariable::ServerProtocol => out.extend_from_slice(protocol(record.version).as_bytes()),
            LogVariable::Scheme => out.extend_from_slice(record.scheme.as_bytes()),
            LogVariable::Host => self.text(out, Some(record.host)),
            LogVariable::ServerName => self.text(out, Some(record.server_name)),
            LogVariable::ServerPort => push_num(out, record.server_port, 1),
            LogVariable::Status => push_num(out, record.status, 1),
            LogVariable::BodyBytesSent => push_num(out, record.body_bytes, 1),
            LogVariable::RequestTime => push_seconds(out, record.duration),
            LogVariable::UpstreamAddr => self.per_attempt(out, record, |out, a| self.bytes(out, a.addr.as_bytes())),
            LogVariable::UpstreamStatus => self.per_attempt(out, record, |out, a| match a.status {
                Some(status) => push_num(out, status, 1),
                None => out.push(b'-'),
            }),
            LogVariable::UpstreamResponseTime => {
                self.per_attempt(out, record, |out, a| push_time(out, a.response_time))
            }
            LogVariable::UpstreamHeaderTime => self.per_attempt(out, record, |out, a| push_time(out, a.header_time)),
            LogVariable::RequestId => out.extend_from_slice(record.request_id.as_str().as_bytes()),
            // nginx's are empty on a plain connection, which its log writes as `-`.
            LogVariable::SslProtocol => self.text(out, record.tls.map(|t| t.protocol)),
            LogVariable::SslCipher => self.text(out, record.tls.map(|t| t.cipher)),
            LogVariable::Connection => push_num(out, record.connection, 1),
            LogVariable::ConnectionRequests => push_num(out, record.connection_requests, 1),
            LogVariable::Pid => push_num(out, pid(), 1),
            LogVariable::Hostname => self.text(out, Some(hostname())),
            LogVariable::RequestLength => push_num(out, record.request_length, 1),
            // nginx's is empty, not "not found", for an unfinished request.
            LogVariable::RequestCompletion => {
                if record.complete {
                    out.extend_from_slice(b"OK");
                }
            }
            LogVariable::ServerAddr => match record.server_addr {
                Some(addr) => push_ip(out, addr),
                None => self.text(out, None),
            },
            LogVariable::RealipRemoteAddr => match record.peer {
                Some(peer) => push_ip(out, crate::template::canonical_ip(peer.ip())),
                None => self.text(out, None),
            },
            LogVariable::RealipRemotePort => match record.peer {
                Some(peer) => push_num(out, peer.port(), 1),
                None => self.text(out, None),
            },
            LogVariable::SslSessionReused => {
                self.text(out, record.tls.map(|t| if t.resumed { "r" } else { "." }));
            }
            LogVariable::UpstreamConnectTime => self.per_attempt(out, record, |out, a| push_time(out, a.connect_time)),
            LogVariable::UpstreamResponseLength => self.per_attempt(out, record, |out, a| match a.length {
                Some(length) => push_num(out, length, 1),
                None => out.push(b'-'),
            }),
            // 0 where no connection was made, as nginx prints it.
            LogVariable::UpstreamBytesSent => {
                self.per_attempt(out, record, |out, a| push_num(out, a.bytes_sent.unwrap_or(0), 1));
            }
            LogVariable::UpstreamBytesReceived => {
                self.per_attempt(out, record, |out, a| push_num(out, a.bytes_received.unwrap_or(0), 1));
            }
            LogVariable::UpstreamCacheStatus => self.text(out, None),
            LogVariable::GzipRatio => match record.gzipped_from.filter(|_| record.body_bytes > 0) {
                Some(original) => push_ratio(out, original, record.body_bytes),
                None => self.text(out, None),
            },
            // Without a `verify_client` handshake nginx's is `NONE` on TLS
            // connections and not found on plain ones.
            LogVariable::SslClientVerify => match (record.client_cert, record.tls) {
                (Some(cert), _) => self.bytes(out, cert.verify.as_bytes()),
                (None, Some(_)) => out.extend_from_slice(b"NONE"),
                (None, None) => self.text(out, None),
            },
            LogVariable::SslClientSDn => self.certificate(out, record, ClientCertificate::subject_dn),
            LogVariable::SslClientIDn => self.certificate(out, record, ClientCertificate::issuer_dn),
            LogVariable::SslClientSerial => self.certificate(out, record, ClientCertificate::serial),
            LogVariable::SslClientFingerprint => self.certificate(out, record, ClientCertificate::fingerprint),
            LogVariable::Value(index) => self.header(out, record.headers.get(index)),
            LogVariable::UpstreamHttp(index) => self.header(out, record.upstream_headers.get(index)),
            LogVariable::SentHttp(index) => self.header(out, record.sent_headers.get(index)),
            LogVariable::BytesSent => push_num(out, record.head_bytes + record.body_bytes, 1),
            LogVariable::Arg(index) => {
                let value = self.args.get(index).and_then(|name| query_argument(record.uri, name));
                self.text(out, value);
            }
        }
    }

    /// One value per upstream server tried, `, ` between them as nginx lists
    /// them; a value not there is `-` in the list, and no server at all is
    /// a value not there.
    fn per_attempt(
        &self,
        out: &mut Vec<u8>,
        record: &AccessRecord<'_>,
        value: impl Fn(&mut Vec<u8>, &UpstreamAttempt<'_>),
    ) {
        if record.upstream.is_empty() {
            return self.text(out, None);
        }
        for (i, attempt) in record.upstream.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(b", ");
            }
            value(out, attempt);
        }
    }

    /// A value of the client's certificate, if it sent one.
    fn certificate(
        &self,
        out: &mut Vec<u8>,
        record: &AccessRecord<'_>,
        value: fn(&ClientCertificate) -> Option<&HeaderValue>,
    ) {
        self.header(out, Some(&record.client_cert.and_then(value).cloned()));
    }

    /// A header's value kept for the line, if there was one.
    fn header(&self, out: &mut Vec<u8>, value: Option<&Option<http::HeaderValue>>) {
        match value.and_then(Option::as_ref) {
            Some(value) => self.bytes(out, value.as_bytes()),
            None => self.text(out, None),
        }
    }

    /// A value, escaped; `None` for one that is not there.
    fn text(&self, out: &mut Vec<u8>, value: Option<&str>) {
        match value {
            Some(value) => self.bytes(out, value.as_bytes()),
            None if self.escape == Escape::Json => {}
            None => out.push(b'-'),
        }
    }

    fn bytes(&self, out: &mut Vec<u8>, value: &[u8]) {
        match self.escape {
            Escape::Default => push_nginx_escaped(out, value),
            Escape::Json => push_json_escaped(out, value),
            Escape::None => out.extend_from_slice(value),
        }
    }
}

/// `item`'s place in `list`, added at the end when it is not there yet.
fn index_of<T: PartialEq>(list: &mut Vec<T>, item: T) -> usize {
    match list.iter().position(|known| *known == item) {
        Some(index) => index,
        None => {
            list.push(item);
            list.len() - 1
        }
    }
}

/// A time in seconds with milliseconds, or `-` when not there.
fn push_time(out: &mut Vec<u8>, time: Option<std::time::Duration>) {
    match time {
        Some(time) => push_seconds(out, time),
        None => out.push(b'-'),
    }
}

/// `$gzip_ratio` as nginx writes it: `original / compressed` with two
/// decimals, rounded half up.
fn push_ratio(out: &mut Vec<u8>, original: u64, compressed: u64) {
    let (original, compressed) = (u128::from(original), u128::from(compressed.max(1)));
    let mut whole = original / compressed;
    let mut hundredths = original * 100 / compressed % 100;
    if original * 1000 / compressed % 10 > 4 {
        hundredths += 1;
        if hundredths > 99 {
            whole += 1;
            hundredths = 0;
        }
    }
    push_num(out, u64::try_from(whole).unwrap_or(u64::MAX), 1);
    out.push(b'.');
    push_num(out, u64::try_from(hundredths).unwrap_or(0), 2);
}

/// `$arg_NAME` as nginx finds it: the value of the first `NAME=` in the
/// query (the name matched without regard to case), as sent, not decoded.
pub(crate) fn query_argument<'u>(uri: &'u str, name: &str) -> Option<&'u str> {
    let (_, query) = uri.split_once('?')?;
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        key.eq_ignore_ascii_case(name).then_some(value)
    })
}

/// The process's id (`$pid`), asked once: portico does not fork.
pub(crate) fn pid() -> u32 {
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *PID.get_or_init(std::process::id)
}

/// The machine's name (`$hostname`), read once.
pub(crate) fn hostname() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|name| name.trim().to_owned())
            .ok()
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "localhost".to_owned())
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use http::HeaderValue;

    use super::*;
    use crate::log::format_combined;
    use crate::log::tests::record;

    fn line(format: &str, escape: Escape, record: &AccessRecord<'_>) -> String {
        let mut out = Vec::new();
        LogFormat::parse(format, escape).unwrap().format(record, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn nginx_combined_written_as_a_format_is_the_combined_line() {
        const COMBINED: &str = r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent""#;
        let referer = HeaderValue::from_static("https://am.example.com/");
        let agent = HeaderValue::from_static("curl/8.5.0");
        let headers = [Some(referer), Some(agent)];
        let with_headers = AccessRecord { headers: &headers, ..record() };
        let mut builtin = Vec::new();
        format_combined(&with_headers, &mut builtin);
        assert_eq!(line(COMBINED, Escape::Default, &with_headers), String::from_utf8(builtin).unwrap());

        let without = AccessRecord { headers: &[None, None], referer: None, user_agent: None, ..record() };
        let mut builtin = Vec::new();
        format_combined(&without, &mut builtin);
        assert_eq!(line(COMBINED, Escape::Default, &without), String::from_utf8(builtin).unwrap());
    }

    #[test]
    fn every_variable_is_written_as_nginx_writes_it() {
        let format = "$remote_addr:$remote_port|$time_iso8601|$msec|$request_method|$request_uri|$uri|$args|\
                      $query_string|$server_protocol|$scheme|$host|$server_name|$server_port|$status|\
                      $body_bytes_sent|$request_time|$upstream_addr|$upstream_status|$upstream_response_time";
        assert_eq!(
            line(format, Escape::Default, &record()),
            "192.0.2.7:51234|2026-11-26T10:19:45+00:00|1795688386.234|GET|/store/apis?page=2|/store/apis|page=2|\
             page=2|HTTP/1.1|https|am.example.com|am.example.com|443|200|5120|1.234|10.0.0.1:9443|200|1.200\n"
        );
        assert_eq!(
            line("$upstream_header_time $ssl_protocol $ssl_cipher $connection $pid", Escape::Default, &record()),
            format!("0.200 TLSv1.3 TLS_AES_128_GCM_SHA256 7 {}\n", std::process::id())
        );
        assert_eq!(line("$hostname", Escape::Json, &record()), format!("{}\n", hostname()));
        assert!(!hostname().is_empty() && !hostname().contains(char::is_whitespace));
        // What is not there is `-`, as nginx writes a variable not found.
        let bare = AccessRecord { uri: "/", upstream_addr: None, upstream: &[], tls: None, ..record() };
        assert_eq!(
            line(
                "$args $upstream_addr $upstream_status $upstream_response_time $upstream_header_time $remote_user \
                 $http_x_a $ssl_protocol $ssl_cipher",
                Escape::Default,
                &bare
            ),
            "- - - - - - - - -\n"
        );
    }

    #[test]
    fn values_are_escaped_and_literal_text_is_not() {
        let value = HeaderValue::from_bytes(b"a\"b\\c\xe9").unwrap();
        let headers = [Some(value)];
        let record = AccessRecord { uri: "/q?x=\"1\"", headers: &headers, ..record() };
        assert_eq!(
            line(r#""$http_x_id" "$request_uri" \"#, Escape::Default, &record),
            "\"a\\x22b\\x5Cc\\xE9\" \"/q?x=\\x221\\x22\" \\\n"
        );
        assert_eq!(
            line(r#"{"id":"$http_x_id","uri":"$request_uri","user":"$remote_user"}"#, Escape::Json, &record),
            "{\"id\":\"a\\\"b\\\\c\\u00e9\",\"uri\":\"/q?x=\\\"1\\\"\",\"user\":\"\"}\n"
        );
        let mut raw = Vec::new();
        LogFormat::parse("$http_x_id $remote_user", Escape::None).unwrap().format(&record, &mut raw);
        assert_eq!(raw, b"a\"b\\c\xe9 -\n");
    }

    #[test]
    fn each_header_is_kept_once_in_the_order_first_written() {
        let format =
            LogFormat::parse("$http_x_b $http_X_A ${http_x_b} $cookie_x $content_type $cookie_x", Escape::Default)
                .unwrap();
        assert_eq!(
            format.request_values(),
            [
                RequestValue::Header(HeaderName::from_static("x-b")),
                RequestValue::Header(HeaderName::from_static("x-a")),
                RequestValue::Cookie("x".into()),
                RequestValue::Header(http::header::CONTENT_TYPE),
            ]
        );
        let headers = [Some(HeaderValue::from_static("b")), None];
        assert_eq!(
            line("$http_x_b $http_X_A ${http_x_b}", Escape::Default, &AccessRecord { headers: &headers, ..record() }),
            "b - b\n"
        );
        assert!(!format.prints_host() && !format.times_upstream());
        // The upstream's headers are kept apart from the request's.
        let format =
            LogFormat::parse("$upstream_http_x_node $http_x_node $upstream_http_X_Node", Escape::Json).unwrap();
        assert_eq!(format.request_values(), [RequestValue::Header(HeaderName::from_static("x-node"))]);
        assert_eq!(format.upstream_headers(), ["x-node"]);
        let sent = [Some(HeaderValue::from_static("client"))];
        let answered = [Some(HeaderValue::from_static("node-2"))];
        let record = AccessRecord { headers: &sent, upstream_headers: &answered, ..record() };
        let mut out = Vec::new();
        format.format(&record, &mut out);
        assert_eq!(out, b"node-2 client node-2\n");
        let mut out = Vec::new();
        format.format(&AccessRecord { upstream_headers: &[], ..record }, &mut out);
        assert_eq!(out, b" client \n");
        assert!(LogFormat::parse("$host $upstream_response_time", Escape::Json).unwrap().prints_host());
    }

    #[test]
    fn the_variables_of_nginx_json_analytics_format() {
        let format = "$connection_requests $request_length $request_completion $server_addr \
                      $realip_remote_addr:$realip_remote_port $ssl_session_reused $upstream_connect_time \
                      $upstream_response_length $upstream_cache_status $gzip_ratio";
        assert_eq!(line(format, Escape::Default, &record()), "3 412 OK 10.0.0.100 192.0.2.1:40000 . 0.003 5120 - -\n");
        let parsed = LogFormat::parse(format, Escape::Default).unwrap();
        assert!(parsed.times_connect() && parsed.counts_request() && !parsed.times_upstream());
        let resumed = crate::tls::TlsSession { resumed: true, ..record().tls.unwrap() };
        let unfinished = AccessRecord { complete: false, tls: Some(resumed), upstream: &[], ..record() };
        assert_eq!(
            line(
                "[$request_completion] $ssl_session_reused $upstream_connect_time $upstream_response_length",
                Escape::Default,
                &unfinished
            ),
            "[] r - -\n"
        );
        // On a plain connection, and for the facts of another format's request.
        let bare = AccessRecord { tls: None, server_addr: None, peer: None, ..record() };
        assert_eq!(
            line("$ssl_session_reused $server_addr $realip_remote_addr $realip_remote_port", Escape::Default, &bare),
            "- - - -\n"
        );
        assert_eq!(line("[$upstream_cache_status]", Escape::Json, &bare), "[]\n");
        // nginx's rounding: 5120 / 1478 = 3.4641..., 1000 / 3 = 333.333..., 2 / 3 = 0.666...
        for (from, to, ratio) in [(5120, 1478, "3.46"), (1000, 3, "333.33"), (2, 3, "0.67"), (1999, 1000, "2.00")] {
            let gzipped = AccessRecord { gzipped_from: Some(from), body_bytes: to, ..record() };
            assert_eq!(line("$gzip_ratio", Escape::Default, &gzipped), format!("{ratio}\n"));
        }
    }

    #[test]
    fn the_answers_head_as_sent() {
        let format =
            LogFormat::parse("$bytes_sent $sent_http_content_type $sent_http_x_a $upstream_http_x_a", Escape::Default)
                .unwrap();
        assert!(format.keeps_sent_head());
        assert_eq!(format.sent_headers(), [http::header::CONTENT_TYPE, HeaderName::from_static("x-a")]);
        let sent = [Some(HeaderValue::from_static("text/plain")), None];
        // 180 bytes of head and 5120 of body.
        assert_eq!(line("", Escape::Default, &record()), "\n");
        let mut out = Vec::new();
        format.format(&AccessRecord { sent_headers: &sent, ..record() }, &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), "5300 text/plain - -\n");
        assert!(!LogFormat::parse("$body_bytes_sent", Escape::Default).unwrap().keeps_sent_head());
    }

    #[test]
    fn servers_tried_in_turn_are_listed_as_nginx_lists_them() {
        use crate::log::tests::UPSTREAM;
        let refused = UpstreamAttempt {
            addr: "10.0.0.2:9443",
            status: Some(502),
            connect_time: None,
            header_time: None,
            response_time: Some(std::time::Duration::from_micros(1_500)),
            length: Some(0),
            bytes_sent: None,
            bytes_received: None,
        };
        let gone = UpstreamAttempt {
            status: None,
            header_time: None,
            response_time: None,
            length: None,
            bytes_received: Some(0),
            ..UPSTREAM
        };
        let tried = [refused, UPSTREAM, gone];
        let format = "$upstream_addr|$upstream_status|$upstream_connect_time|$upstream_header_time|\
                      $upstream_response_time|$upstream_response_length|$upstream_bytes_sent|$upstream_bytes_received";
        assert_eq!(
            line(format, Escape::Json, &AccessRecord { upstream: &tried, ..record() }),
            "10.0.0.2:9443, 10.0.0.1:9443, 10.0.0.1:9443|502, 200, -|-, 0.003, 0.003|-, 0.200, -|\
             0.001, 1.200, -|0, 5120, -|0, 412, 412|0, 5391, 0\n"
        );
        let counted = LogFormat::parse("$upstream_bytes_received", Escape::Default).unwrap();
        assert!(counted.counts_upstream_traffic() && !counted.times_upstream());
        assert!(!LogFormat::parse("$upstream_response_length", Escape::Default).unwrap().counts_upstream_traffic());
    }

    #[test]
    fn arguments_and_cookies_as_nginx_finds_them() {
        let record = AccessRecord { uri: "/s?Page=2&q=a%20b&empty=&flag&page=9", ..record() };
        assert_eq!(
            line("$arg_page|$arg_q|$arg_empty|$arg_flag|$arg_none|$arg_PAGE", Escape::Default, &record),
            "2|a%20b||-|-|2\n"
        );
        assert_eq!(line("$arg_page", Escape::Default, &AccessRecord { uri: "/s", ..record }), "-\n");
        let mut headers = http::HeaderMap::new();
        headers.append(http::header::COOKIE, HeaderValue::from_static("JSESSIONID=abc; theme=dark"));
        headers.append(http::header::COOKIE, HeaderValue::from_static("lang=en"));
        headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let format = LogFormat::parse(
            "$cookie_JSESSIONID $cookie_lang $cookie_jsessionid $content_type $content_length",
            Escape::Default,
        )
        .unwrap();
        let values: Vec<Option<HeaderValue>> = format.request_values().iter().map(|v| v.of(&headers)).collect();
        let mut out = Vec::new();
        format.format(&AccessRecord { headers: &values, ..record }, &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), "abc en - application/json -\n");
    }

    #[test]
    fn a_bad_format_says_what_is_wrong() {
        let unknown = LogFormat::parse("$remote_addr $pipe", Escape::Default).unwrap_err();
        let message = unknown.to_string();
        assert!(message.starts_with("unknown variable `$pipe` in a log format (known: $remote_addr, "), "{message}");
        assert!(
            message.ends_with("$http_NAME, $cookie_NAME, $arg_NAME, $upstream_http_NAME, $sent_http_NAME)"),
            "{message}"
        );
        assert_eq!(LogFormat::parse("${status", Escape::Default), Err(TemplateError::UnclosedBrace.into()));
        assert_eq!(LogFormat::parse("a\nb", Escape::Default), Err(TemplateError::ControlCharacter.into()));
    }
}
