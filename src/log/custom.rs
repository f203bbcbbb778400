//! `[log_format.NAME]`: access log lines laid out as an nginx `log_format`,
//! so that the tools reading an operator's logs keep working. Compiled once
//! at load; a line is written from the request's facts without parsing.

use http::HeaderName;
use thiserror::Error;

use super::{
    AccessRecord, Utc, protocol, push_ip, push_iso8601, push_json_escaped, push_nginx_escaped, push_num, push_seconds,
    push_time_local,
};
use crate::template::{Piece, TemplateError, header_variable, http_variable, pieces};

/// A compiled access log format.
#[derive(Debug, PartialEq, Eq)]
pub struct LogFormat {
    parts: Vec<Piece<LogVariable>>,
    escape: Escape,
    /// The request headers its `$http_NAME` read, each once.
    request_headers: Vec<HeaderName>,
    /// The upstream answer's headers its `$upstream_http_NAME` read, each once.
    upstream_headers: Vec<HeaderName>,
    /// Whether it prints `$host`, and an upstream time: asked per request,
    /// so found once here.
    prints_host: bool,
    times_upstream: bool,
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
    Pid,
    Hostname,
    /// `$http_NAME`: its index in `request_headers`.
    Http(usize),
    /// `$upstream_http_NAME`: its index in `upstream_headers`.
    UpstreamHttp(usize),
}

/// Every variable by name: what `parse` accepts and its error lists.
const VARIABLES: [(&str, LogVariable); 30] = [
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
    ("pid", LogVariable::Pid),
    ("hostname", LogVariable::Hostname),
];

/// Why a log format did not compile.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum LogFormatError {
    #[error(
        "unknown variable `${0}` in a log format (known: {known}, $http_NAME, $upstream_http_NAME)",
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
        let mut request_headers: Vec<HeaderName> = Vec::new();
        let mut upstream_headers: Vec<HeaderName> = Vec::new();
        let parts = pieces(text, |name| {
            if let Some((_, var)) = VARIABLES.iter().find(|(known, _)| *known == name) {
                return Ok::<_, LogFormatError>(*var);
            }
            if let Some(header) = header_variable("upstream_http_", name) {
                return Ok(LogVariable::UpstreamHttp(index_of(&mut upstream_headers, header)));
            }
            let header = http_variable(name).ok_or_else(|| LogFormatError::UnknownVariable(name.to_owned()))?;
            Ok(LogVariable::Http(index_of(&mut request_headers, header)))
        })?;
        let uses = |var: LogVariable| parts.iter().any(|p| matches!(p, Piece::Var(v) if *v == var));
        let prints_host = uses(LogVariable::Host);
        let times_upstream = uses(LogVariable::UpstreamResponseTime) || uses(LogVariable::UpstreamHeaderTime);
        Ok(LogFormat { parts, escape, request_headers, upstream_headers, prints_host, times_upstream })
    }

    /// The request headers a line needs, kept from the request for it
    /// (`AccessRecord::headers` holds their values in this order).
    pub fn request_headers(&self) -> &[HeaderName] {
        &self.request_headers
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
            LogVariable::UpstreamAddr => self.text(out, record.upstream_addr),
            LogVariable::UpstreamStatus => match record.upstream_status {
                Some(status) => push_num(out, status, 1),
                None => self.text(out, None),
            },
            LogVariable::UpstreamResponseTime => match record.upstream_time {
                Some(time) => push_seconds(out, time),
                None => self.text(out, None),
            },
            LogVariable::UpstreamHeaderTime => match record.upstream_header_time {
                Some(time) => push_seconds(out, time),
                None => self.text(out, None),
            },
            LogVariable::RequestId => out.extend_from_slice(record.request_id.as_str().as_bytes()),
            // nginx's are empty on a plain connection, which its log writes as `-`.
            LogVariable::SslProtocol => self.text(out, record.tls.map(|t| t.protocol)),
            LogVariable::SslCipher => self.text(out, record.tls.map(|t| t.cipher)),
            LogVariable::Connection => push_num(out, record.connection, 1),
            LogVariable::Pid => push_num(out, pid(), 1),
            LogVariable::Hostname => self.text(out, Some(hostname())),
            LogVariable::Http(index) => self.header(out, record.headers.get(index)),
            LogVariable::UpstreamHttp(index) => self.header(out, record.upstream_headers.get(index)),
        }
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

/// `header`'s place in `list`, added at the end when it is not there yet.
fn index_of(list: &mut Vec<HeaderName>, header: HeaderName) -> usize {
    match list.iter().position(|h| *h == header) {
        Some(index) => index,
        None => {
            list.push(header);
            list.len() - 1
        }
    }
}

/// The process's id (`$pid`), asked once: portico does not fork.
fn pid() -> u32 {
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *PID.get_or_init(std::process::id)
}

/// The machine's name (`$hostname`), read once.
fn hostname() -> &'static str {
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
        let bare = AccessRecord {
            uri: "/",
            upstream_addr: None,
            upstream_status: None,
            upstream_time: None,
            upstream_header_time: None,
            tls: None,
            ..record()
        };
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
        let format = LogFormat::parse("$http_x_b $http_X_A ${http_x_b} $cookie_x", Escape::Default);
        assert_eq!(format, Err(LogFormatError::UnknownVariable("cookie_x".into())));
        let format = LogFormat::parse("$http_x_b $http_X_A ${http_x_b}", Escape::Default).unwrap();
        let names: Vec<&str> = format.request_headers().iter().map(HeaderName::as_str).collect();
        assert_eq!(names, ["x-b", "x-a"]);
        let headers = [Some(HeaderValue::from_static("b")), None];
        assert_eq!(
            line("$http_x_b $http_X_A ${http_x_b}", Escape::Default, &AccessRecord { headers: &headers, ..record() }),
            "b - b\n"
        );
        assert!(!format.prints_host() && !format.times_upstream());
        // The upstream's headers are kept apart from the request's.
        let format =
            LogFormat::parse("$upstream_http_x_node $http_x_node $upstream_http_X_Node", Escape::Json).unwrap();
        assert_eq!(format.request_headers(), ["x-node"]);
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
    fn a_bad_format_says_what_is_wrong() {
        let unknown = LogFormat::parse("$remote_addr $bytes_sent", Escape::Default).unwrap_err();
        let message = unknown.to_string();
        assert!(
            message.starts_with("unknown variable `$bytes_sent` in a log format (known: $remote_addr, "),
            "{message}"
        );
        assert!(message.ends_with("$hostname, $http_NAME, $upstream_http_NAME)"), "{message}");
        assert_eq!(LogFormat::parse("${status", Escape::Default), Err(TemplateError::UnclosedBrace.into()));
        assert_eq!(LogFormat::parse("a\nb", Escape::Default), Err(TemplateError::ControlCharacter.into()));
    }
}
