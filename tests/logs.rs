//! Access and error logs as files: nginx `combined` and JSON lines, written
//! within a second, per server, for every kind of answer, and reopened.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::{Method, StatusCode, Version};
use support::raw_backend::{Framing, RawBackend, keep};
use support::*;
use tokio::io::AsyncWriteExt;

// ---------------------------------------------------------------------------
// Reading log files

/// The file's complete lines (none if it does not exist).
fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).map(|t| t.lines().map(str::to_owned).collect()).unwrap_or_default()
}

/// Polls until `path` holds at least `n` lines; panics after `within`.
async fn wait_lines(path: &Path, n: usize, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    loop {
        let found = lines(path);
        if found.len() >= n {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{} has {} lines after {within:?}, expected {n}: {found:?}",
            path.display(),
            found.len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One nginx `combined` line, parsed strictly.
#[derive(Debug)]
struct Combined {
    ip: IpAddr,
    /// Seconds since the epoch.
    time: u64,
    method: String,
    uri: String,
    protocol: String,
    status: u16,
    bytes: u64,
    referer: String,
    user_agent: String,
}

/// `IP - - [dd/Mon/yyyy:HH:MM:SS +0000] "METHOD URI PROTO" STATUS BYTES "REF" "UA"`.
fn parse_combined(line: &str) -> Result<Combined, String> {
    let err = |what: &str| format!("{what} in {line:?}");
    let (ip, rest) = line.split_once(" - - [").ok_or_else(|| err("no ' - - ['"))?;
    let ip: IpAddr = ip.parse().map_err(|_| err("bad address"))?;
    let (time, rest) = rest.split_once("] \"").ok_or_else(|| err("no '] \"'"))?;
    let time = parse_time(time).ok_or_else(|| err("bad time"))?;
    let (request, rest) = rest.split_once("\" ").ok_or_else(|| err("unterminated request"))?;
    let parts: Vec<&str> = request.split(' ').collect();
    let [method, uri, protocol] = parts[..] else { return Err(err("request is not three words")) };
    if method.is_empty() || !uri.starts_with('/') || !protocol.starts_with("HTTP/") {
        return Err(err("bad request line"));
    }
    let (status, rest) = rest.split_once(' ').ok_or_else(|| err("no status"))?;
    if status.len() != 3 || !status.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err("bad status"));
    }
    let (bytes, rest) = rest.split_once(' ').ok_or_else(|| err("no bytes"))?;
    if bytes.is_empty() || !bytes.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err("bad bytes"));
    }
    let rest = rest.strip_prefix('"').ok_or_else(|| err("referer not quoted"))?;
    let (referer, rest) = rest.split_once("\" \"").ok_or_else(|| err("bad referer"))?;
    let user_agent = rest.strip_suffix('"').ok_or_else(|| err("user agent not quoted"))?;
    if referer.contains('"') || user_agent.contains('"') {
        return Err(err("unescaped quote"));
    }
    Ok(Combined {
        ip,
        time,
        method: method.to_owned(),
        uri: uri.to_owned(),
        protocol: protocol.to_owned(),
        status: status.parse().map_err(|_| err("status"))?,
        bytes: bytes.parse().map_err(|_| err("bytes"))?,
        referer: referer.to_owned(),
        user_agent: user_agent.to_owned(),
    })
}

/// `dd/Mon/yyyy:HH:MM:SS +0000` as seconds since the epoch.
fn parse_time(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    if b.len() != 26 || b[2] != b'/' || b[6] != b'/' || b[11] != b':' || b[14] != b':' || b[17] != b':' {
        return None;
    }
    if &text[20..] != " +0000" {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u64> {
        let s = &text[range];
        s.bytes().all(|c| c.is_ascii_digit()).then(|| s.parse().ok()).flatten()
    };
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month = MONTHS.iter().position(|m| *m == &text[3..6])? as u64 + 1;
    let (day, year, hour, minute, second) = (num(0..2)?, num(7..11)?, num(12..14)?, num(15..17)?, num(18..20)?);
    if !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm), for years after 1970.
    let (y, m) = if month <= 2 { (year - 1, month + 9) } else { (year, month - 3) };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// A JSON value of a flat log object.
#[derive(Debug, PartialEq)]
enum Json {
    Str(String),
    Num(String),
    Null,
}

/// Parses one flat JSON object (string, number and null values).
fn parse_json_object(line: &str) -> Result<BTreeMap<String, Json>, String> {
    let err = |what: &str| format!("{what} in {line:?}");
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;
    let string = |i: &mut usize| -> Result<String, String> {
        if chars.get(*i) != Some(&'"') {
            return Err(err("expected a string"));
        }
        *i += 1;
        let mut out = String::new();
        loop {
            match chars.get(*i) {
                None => return Err(err("unterminated string")),
                Some('"') => {
                    *i += 1;
                    return Ok(out);
                }
                Some('\\') => {
                    let escaped = match chars.get(*i + 1) {
                        Some('"') => '"',
                        Some('\\') => '\\',
                        Some('/') => '/',
                        Some('n') => '\n',
                        Some('r') => '\r',
                        Some('t') => '\t',
                        Some('u') => {
                            let hex: String =
                                chars.get(*i + 2..*i + 6).ok_or_else(|| err("short \\u"))?.iter().collect();
                            let code = u32::from_str_radix(&hex, 16).map_err(|_| err("bad \\u"))?;
                            *i += 4;
                            char::from_u32(code).ok_or_else(|| err("bad \\u"))?
                        }
                        _ => return Err(err("bad escape")),
                    };
                    out.push(escaped);
                    *i += 2;
                }
                Some(c) if (*c as u32) < 0x20 => return Err(err("control character in string")),
                Some(c) => {
                    out.push(*c);
                    *i += 1;
                }
            }
        }
    };
    if chars.first() != Some(&'{') || chars.last() != Some(&'}') {
        return Err(err("not an object"));
    }
    i += 1;
    let mut map = BTreeMap::new();
    loop {
        let key = string(&mut i)?;
        if chars.get(i) != Some(&':') {
            return Err(err("expected ':'"));
        }
        i += 1;
        let value = match chars.get(i) {
            Some('"') => Json::Str(string(&mut i)?),
            Some('n') if chars[i..].starts_with(&['n', 'u', 'l', 'l']) => {
                i += 4;
                Json::Null
            }
            Some(c) if c.is_ascii_digit() || *c == '-' => {
                let start = i;
                while chars.get(i).is_some_and(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | 'e' | 'E' | '+')) {
                    i += 1;
                }
                Json::Num(chars[start..i].iter().collect())
            }
            _ => return Err(err("unexpected value")),
        };
        if map.insert(key.clone(), value).is_some() {
            return Err(err(&format!("duplicate key {key}")));
        }
        match chars.get(i) {
            Some(',') => i += 1,
            Some('}') if i + 1 == chars.len() => return Ok(map),
            _ => return Err(err("expected ',' or the end")),
        }
    }
}

// ---------------------------------------------------------------------------
// Configurations

fn upstream(backends: &[&TestBackend]) -> String {
    let servers: Vec<String> = backends.iter().map(|b| format!("\"{}\"", b.addr())).collect();
    format!("[upstream.pool]\nservers = [{}]\n", servers.join(", "))
}

async fn wait_then_check(path: &Path, n: usize) -> Combined {
    let found = wait_lines(path, n, Duration::from_secs(1)).await;
    assert_eq!(found.len(), n, "{found:#?}");
    parse_combined(&found[n - 1]).unwrap()
}

// ---------------------------------------------------------------------------

#[tokio::test]
async fn combined_lines_are_exact_and_prompt() {
    let dir = TempDir::new("logs");
    let log = dir.join("a/b/access.log");
    let app = TestBackend::spawn("app").await;
    let toml = format!(
        "{}\n[[server]]\nlisten = [\"127.0.0.1:0\"]\nserver_name = [\"log.test\"]\nproxy_pass = \"pool\"\naccess_log = {}\n",
        upstream(&[&app]),
        toml_path(&log)
    );
    let portico = start_portico(&toml).await;
    assert!(log.is_file(), "the access log and its parent directories are created at start");
    let mut client = Connect::to(portico.addr(0)).source_ip("127.0.3.4").connect().await.unwrap();
    let started = now_secs();

    // 1: a plain GET with a query, User-Agent and Referer.
    let headers = [("user-agent", "probe/1.0 (test)"), ("referer", "http://ref.test/page?x=1")];
    let reply = client.get_with("log.test", "/plain?x=1&y=2", &headers).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    let line = wait_then_check(&log, 1).await;
    assert_eq!(line.ip, "127.0.3.4".parse::<IpAddr>().unwrap());
    assert!(
        line.time >= started.saturating_sub(1) && line.time <= now_secs() + 1,
        "time {} vs now {}",
        line.time,
        now_secs()
    );
    assert_eq!(
        (line.method.as_str(), line.uri.as_str(), line.protocol.as_str()),
        ("GET", "/plain?x=1&y=2", "HTTP/1.1")
    );
    assert_eq!((line.status, line.bytes), (200, reply.body.len() as u64));
    assert_eq!(line.bytes, 3);
    assert_eq!(line.referer, "http://ref.test/page?x=1");
    assert_eq!(line.user_agent, "probe/1.0 (test)");

    // 2: a large body; no headers logged as "-".
    let reply = client.get("log.test", "/big?bytes=123457").await.unwrap();
    assert_eq!(reply.body.len(), 123_457);
    let line = wait_then_check(&log, 2).await;
    assert_eq!((line.status, line.bytes), (200, 123_457));
    assert_eq!((line.referer.as_str(), line.user_agent.as_str()), ("-", "-"));

    // 3: an upstream's error status.
    let reply = client.get("log.test", "/status/404").await.unwrap();
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let line = wait_then_check(&log, 3).await;
    assert_eq!((line.status, line.bytes, line.uri.as_str()), (404, reply.body.len() as u64, "/status/404"));

    // 4: a POST, its body echoed.
    let reply = client.post("log.test", "/echo", body::full(vec![b'x'; 777])).await.unwrap();
    assert_eq!(reply.body.len(), 777);
    let line = wait_then_check(&log, 4).await;
    assert_eq!((line.method.as_str(), line.status, line.bytes), ("POST", 200, 777));

    // 5: quotes and backslashes cannot break the line (nginx escapes them as \xHH).
    let headers = [("user-agent", "evil\" \"agent\\"), ("referer", "\"")];
    client.get_with("log.test", "/q", &headers).await.unwrap();
    let line = wait_then_check(&log, 5).await;
    assert_eq!(line.user_agent, "evil\\x22 \\x22agent\\x5C");
    assert_eq!(line.referer, "\\x22");

    // Nothing else was written meanwhile.
    assert_eq!(lines(&log).len(), 5);
}

#[tokio::test]
async fn h2_requests_log_http_2() {
    let dir = TempDir::new("logs-h2");
    let log = dir.join("access.log");
    let cert = TestCert::new(&["log.test"]);
    let app = TestBackend::spawn("app").await;
    let toml = format!(
        "{}\n[[server]]\nlisten = [\"127.0.0.1:0\"]\nserver_name = [\"log.test\"]\ntls = {}\nproxy_pass = \"pool\"\naccess_log = {}\n",
        upstream(&[&app]),
        cert.toml_tls(),
        toml_path(&log)
    );
    let portico = start_portico(&toml).await;
    let mut client = Client::https(portico.addr(0), "log.test", &cert.roots(), &["h2"]).await.unwrap();
    assert_eq!(client.version(), Version::HTTP_2);

    let reply = client.get_with("log.test", "/h2/path", &[("user-agent", "h2-probe")]).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);

    let line = wait_then_check(&log, 1).await;
    assert_eq!(line.protocol, "HTTP/2.0");
    assert_eq!((line.method.as_str(), line.uri.as_str()), ("GET", "/h2/path"));
    assert_eq!((line.status, line.bytes, line.user_agent.as_str()), (200, 3, "h2-probe"));
}

/// A server whose one upstream answers `/slow` late, with access and error logs.
async fn slow_upstream_setup(label: &str, cert: Option<&TestCert>) -> (TempDir, TestBackend, Portico) {
    let dir = TempDir::new(label);
    let app = TestBackend::spawn("app").await;
    let logs = format!(
        "access_log = {}\nerror_log = {}",
        toml_path(&dir.join("access.log")),
        toml_path(&dir.join("error.log"))
    );
    let toml = AppConfig::new(app.addr())
        .server_name("log.test")
        .runtime("error_log_level = \"info\"")
        .tls(cert)
        .server(&logs)
        .build();
    let portico = start_portico(&toml).await;
    (dir, app, portico)
}

/// The client is gone before the upstream answered: one access line with
/// nginx's 499 and no bytes, an info line saying so, and the request not
/// sent again.
async fn assert_given_up(dir: &TempDir, app: &TestBackend, uri: &str, protocol: &str) {
    let line = wait_then_check(&dir.join("access.log"), 1).await;
    assert_eq!((line.status, line.bytes), (499, 0), "{line:?}");
    assert_eq!((line.uri.as_str(), line.protocol.as_str()), (uri, protocol));
    let errors = wait_lines(&dir.join("error.log"), 1, Duration::from_secs(1)).await;
    assert!(errors[0].contains("[info]") && errors[0].contains("client closed"), "{errors:?}");
    assert_eq!(app.count(), 1, "the request was sent again");
}

#[tokio::test]
async fn a_client_that_closes_before_the_answer_is_logged_as_499() {
    let (dir, app, portico) = slow_upstream_setup("logs-499", None).await;
    let mut tcp = Connect::to(portico.addr(0)).tcp().await.unwrap();
    tcp.write_all(b"GET /slow?ms=8000 HTTP/1.1\r\nHost: log.test\r\n\r\n").await.unwrap();
    eventually("the upstream has the request", Duration::from_secs(2), || app.count() == 1).await;
    drop(tcp);
    assert_given_up(&dir, &app, "/slow?ms=8000", "HTTP/1.1").await;
    // The answer is waited for without the client, to keep the connection,
    // but for 5 s at most: this one would take 8.
    assert_eq!(app.open_connections(), 1, "the upstream request was not waited for");
    eventually("the wait given up", Duration::from_secs(7), || app.open_connections() == 0).await;
}

#[tokio::test]
async fn an_h2_stream_reset_before_the_answer_is_logged_as_499() {
    let cert = TestCert::new(&["log.test"]);
    let (dir, app, portico) = slow_upstream_setup("logs-499-h2", Some(&cert)).await;
    let mut client = Client::https(portico.addr(0), "log.test", &cert.roots(), &["h2"]).await.unwrap();
    assert_eq!(client.version(), Version::HTTP_2);
    tokio::select! {
        reply = client.get("log.test", "/slow?ms=3000") => panic!("answered: {reply:?}"),
        () = eventually("the upstream has the request", Duration::from_secs(2), || app.count() == 1) => {}
    }
    // The request future is dropped: the client resets the stream and keeps the connection.
    assert_given_up(&dir, &app, "/slow?ms=3000", "HTTP/2.0").await;
    let reply = client.get("log.test", "/after").await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn json_lines_have_the_right_keys_and_values() {
    let dir = TempDir::new("logs-json");
    let log = dir.join("access.json");
    let app = TestBackend::spawn("app").await;
    let toml = format!(
        "{}\n[[server]]\nlisten = [\"127.0.0.1:0\"]\nserver_name = [\"log.test\"]\nproxy_pass = \"pool\"\naccess_log = {}\naccess_log_format = \"json\"\n",
        upstream(&[&app]),
        toml_path(&log)
    );
    let portico = start_portico(&toml).await;
    let mut client = Client::http1(portico.addr(0)).await.unwrap();

    client.get_with("LOG.test:80", "/j?a=1", &[("user-agent", "json \"probe\"\\")]).await.unwrap();
    let reply = client.get_with("log.test", "/big?bytes=4321", &[("referer", "http://r.test/")]).await.unwrap();
    assert_eq!(reply.body.len(), 4321);

    let found = wait_lines(&log, 2, Duration::from_secs(1)).await;
    assert_eq!(found.len(), 2, "{found:#?}");
    let first = parse_json_object(&found[0]).unwrap();
    let second = parse_json_object(&found[1]).unwrap();
    for key in [
        "time",
        "remote_addr",
        "method",
        "uri",
        "protocol",
        "status",
        "body_bytes_sent",
        "referer",
        "user_agent",
        "host",
        "upstream_addr",
        "request_time",
    ] {
        assert!(first.contains_key(key), "no {key:?} in {}", found[0]);
    }
    let s = |v: &str| Json::Str(v.to_owned());
    let n = |v: &str| Json::Num(v.to_owned());
    assert_eq!(first["remote_addr"], s("127.0.0.1"));
    assert_eq!(first["method"], s("GET"));
    assert_eq!(first["uri"], s("/j?a=1"));
    assert_eq!(first["protocol"], s("HTTP/1.1"));
    assert_eq!(first["status"], n("200"));
    assert_eq!(first["body_bytes_sent"], n("3"));
    assert_eq!(first["referer"], Json::Null);
    assert_eq!(first["user_agent"], s("json \"probe\"\\"));
    assert_eq!(first["host"], s("log.test"));
    assert_eq!(first["upstream_addr"], s(&app.addr().to_string()));
    let Json::Str(time) = &first["time"] else { panic!("time is not a string: {}", found[0]) };
    assert!(time.len() == 20 && time.ends_with('Z') && time.as_bytes()[10] == b'T', "time {time:?}");
    assert_eq!(second["body_bytes_sent"], n("4321"));
    assert_eq!(second["referer"], s("http://r.test/"));
    assert_eq!(second["user_agent"], Json::Null);
}

/// A `[log_format.NAME]` as the server's `access_log_format` (`{:?}` quotes
/// the format as TOML does: `\"` and `\\`).
fn custom_config(app: &TestBackend, log: &Path, format: &str, escape: &str) -> String {
    format!(
        "{}[upstream.dead]\nservers = [\"127.0.0.1:1\"]\n\n[log_format.main]\nformat = {format:?}\nescape = \"{escape}\"\n\n\
         [[server]]\nlisten = [\"127.0.0.1:0\"]\nserver_name = [\"log.test\"]\naccess_log = {}\naccess_log_format = \"main\"\n\
         [[server.location]]\nprefix = \"/\"\nproxy_pass = \"pool\"\n[[server.location]]\nprefix = \"/dead\"\nproxy_pass = \"dead\"\n",
        upstream(&[app]),
        toml_path(log)
    )
}

#[tokio::test]
async fn custom_formats_write_nginx_variables_and_follow_a_reload() {
    let dir = TempDir::new("logs-custom");
    let log = dir.join("access.log");
    let app = TestBackend::spawn("app").await;
    let format = r#"$remote_addr:$remote_port $scheme $host $server_name:$server_port "$request" $status $body_bytes_sent "$http_x_request_id" $upstream_addr $upstream_status $uri $args $upstream_http_x_backend"#;
    let mut portico = start_portico(&custom_config(&app, &log, format, "default")).await;
    let mut client = Connect::to(portico.addr(0)).source_ip("127.0.3.9").connect().await.unwrap();
    let port = client.local_addr().port();
    let listen = portico.addr(0).port();

    let reply = client.get_with("LOG.test", "/plain?x=1", &[("x-request-id", "r\"1")]).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    let reply = client.get("log.test", "/dead/end").await.unwrap();
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    let found = wait_lines(&log, 2, Duration::from_secs(1)).await;
    assert_eq!(
        found,
        [
            format!(
                "127.0.3.9:{port} http log.test log.test:{listen} \"GET /plain?x=1 HTTP/1.1\" 200 3 \"r\\x221\" {} 200 /plain x=1 app",
                app.addr()
            ),
            // The server that failed is logged with the status its failure gave.
            format!(
                "127.0.3.9:{port} http log.test log.test:{listen} \"GET /dead/end HTTP/1.1\" 502 16 \"-\" 127.0.0.1:1 502 /dead/end - -"
            ),
        ]
    );

    // A reload's format takes the next line: JSON escaping, times as numbers
    // (the upstream's at least the 150 ms the backend waits, within the request's).
    let json = r#"{"uri":"$request_uri","id":"$http_x_request_id","rt":$request_time,"urt":$upstream_response_time,"t":"$time_iso8601"}"#;
    portico.reload(&custom_config(&app, &log, json, "json")).unwrap();
    client.get_with("log.test", "/slow?ms=150", &[("x-request-id", "q\"2")]).await.unwrap();
    let found = wait_lines(&log, 3, Duration::from_secs(1)).await;
    let third = parse_json_object(&found[2]).unwrap();
    assert_eq!(third["uri"], Json::Str("/slow?ms=150".into()));
    assert_eq!(third["id"], Json::Str("q\"2".into()));
    let seconds = |key: &str| match &third[key] {
        Json::Num(n) => n.parse::<f64>().unwrap(),
        other => panic!("{key} is {other:?} in {}", found[2]),
    };
    assert!(seconds("urt") >= 0.15 && seconds("urt") <= seconds("rt") && seconds("rt") < 1.0, "{}", found[2]);
    let Json::Str(time) = &third["t"] else { panic!("t is not a string: {}", found[2]) };
    assert!(time.len() == 25 && time.ends_with("+00:00") && time.as_bytes()[10] == b'T', "time {time:?}");
    assert_eq!(found.len(), 3);
}

#[tokio::test]
async fn request_id_is_one_value_for_the_upstream_and_the_log() {
    let dir = TempDir::new("logs-request-id");
    let app = TestBackend::spawn("app").await;
    // The first server sends it upstream and logs it; the second only logs it.
    let toml = format!(
        "{}[log_format.ids]\nformat = \"$request_id $uri\"\n\n\
         [[server]]\nlisten = [\"127.0.0.1:0\"]\nserver_name = [\"sent.test\"]\nproxy_pass = \"pool\"\naccess_log = {}\naccess_log_format = \"ids\"\n\
         [server.headers]\nX-Request-ID = \"$request_id\"\nHost = \"$http_host\"\n\n\
         [[server]]\nlisten = [\"127.0.0.1:0\"]\nserver_name = [\"logged.test\"]\nproxy_pass = \"pool\"\naccess_log = {}\naccess_log_format = \"ids\"\n",
        upstream(&[&app]),
        toml_path(&dir.join("sent.log")),
        toml_path(&dir.join("logged.log"))
    );
    let portico = start_portico(&toml).await;
    let mut sent = Vec::new();
    for path in ["/one", "/two"] {
        let mut client = Client::http1(portico.addr(0)).await.unwrap();
        assert_eq!(client.get("sent.test", path).await.unwrap().status, StatusCode::OK);
        let seen = app.last();
        let id = seen.headers.get("x-request-id").expect("the upstream got the id").to_str().unwrap().to_owned();
        sent.push(format!("{id} {path}"));
    }
    assert_eq!(wait_lines(&dir.join("sent.log"), 2, Duration::from_secs(1)).await, sent);
    let hex = |line: &str| {
        line.len() == 32 + 5 && line[..32].bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    };
    assert!(sent.iter().all(|line| hex(line)) && sent[0][..32] != sent[1][..32], "{sent:?}");

    let mut client = Client::http1(portico.addr(0)).await.unwrap();
    assert_eq!(client.get("logged.test", "/tri").await.unwrap().status, StatusCode::OK);
    assert!(app.last().headers.get("x-request-id").is_none());
    let logged = wait_lines(&dir.join("logged.log"), 1, Duration::from_secs(1)).await;
    assert!(
        hex(&logged[0]) && logged[0].ends_with(" /tri") && !sent.iter().any(|s| s[..32] == logged[0][..32]),
        "{logged:?}"
    );
}

#[tokio::test]
async fn tls_session_and_connection_variables() {
    let dir = TempDir::new("logs-tls");
    let log = dir.join("access.log");
    let cert = TestCert::new(&["log.test"]);
    let app = TestBackend::spawn("app").await;
    let toml = tls_logged(
        &app,
        &cert,
        &log,
        "$connection $scheme $ssl_protocol $ssl_cipher $upstream_header_time",
        "[server.headers]\nX-SSL = \"$ssl_protocol $ssl_cipher\"\nHost = \"$http_host\"",
    );
    let mut portico = start_portico(&toml).await;
    let sent = |app: &TestBackend| app.last().headers.get("x-ssl").map(|v| v.to_str().unwrap().to_owned());

    let mut first = Connect::to(portico.addr(0)).tls("log.test", cert.roots()).connect().await.unwrap();
    first.get("log.test", "/a").await.unwrap();
    assert_eq!(sent(&app).as_deref(), Some("TLSv1.3 TLS_AES_128_GCM_SHA256"));
    // A reload between two requests of one connection keeps its number.
    portico.reload(&toml).unwrap();
    first.get("log.test", "/b").await.unwrap();
    let mut second = Connect::to(portico.addr(0)).tls("log.test", cert.roots()).tls12_only().connect().await.unwrap();
    second.get("log.test", "/slow?ms=100").await.unwrap();
    let tls12 = sent(&app).unwrap();
    assert!(tls12.starts_with("TLSv1.2 ECDHE-") && tls12.ends_with("-AES128-GCM-SHA256"), "{tls12}");

    let lines = wait_lines(&log, 3, Duration::from_secs(1)).await;
    let fields: Vec<Vec<&str>> = lines.iter().map(|l| l.split(' ').collect()).collect();
    assert!(fields.iter().all(|f| f.len() == 5 && f[1] == "https"), "{lines:?}");
    assert_eq!(fields[0][..4], fields[1][..4], "{lines:?}");
    assert_eq!(fields[0][2..4], ["TLSv1.3", "TLS_AES_128_GCM_SHA256"]);
    assert_eq!(format!("{} {}", fields[2][2], fields[2][3]), tls12);
    let number = |f: &[&str]| f[0].parse::<u64>().unwrap();
    assert!(number(&fields[2]) > number(&fields[0]), "{lines:?}");
    let header_time = |f: &[&str]| f[4].parse::<f64>().unwrap();
    assert!(header_time(&fields[0]) < 0.1 && header_time(&fields[2]) >= 0.1, "{lines:?}");
}

/// Writes `request` (head and body) on `stream` and reads one whole
/// Content-Length framed answer off it: all its bytes, head and body.
async fn raw_answer<S>(stream: &mut S, request: &[u8]) -> Vec<u8>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::AsyncReadExt;
    stream.write_all(request).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let length: usize =
                head.lines().find_map(|l| l.strip_prefix("content-length:")).map_or(0, |v| v.trim().parse().unwrap());
            if got.len() >= end + 4 + length {
                return got;
            }
        }
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before the whole answer");
        got.extend_from_slice(&buf[..n]);
    }
}

/// An answer's status line and the length of its body.
fn status_and_length(answer: &[u8]) -> (String, usize) {
    let end = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let status = String::from_utf8_lossy(&answer[..end]).lines().next().unwrap().to_owned();
    (status, answer.len() - end)
}

/// A TLS server `log.test` proxying to `app`, logging to `log` in `format`,
/// with `server_extra` (TOML lines) added to the server.
fn tls_logged(app: &TestBackend, cert: &TestCert, log: &Path, format: &str, server_extra: &str) -> String {
    AppConfig::new(app.addr())
        .server_name("log.test")
        .upstream(&format!("[log_format.main]\nformat = {format:?}\n"))
        .tls(Some(cert))
        .server(&format!("access_log = {}\naccess_log_format = \"main\"\n{server_extra}", toml_path(log)))
        .build()
}

#[tokio::test]
async fn json_analytics_variables_measure_the_request_and_its_upstream() {
    let dir = TempDir::new("logs-analytics");
    let log = dir.join("access.log");
    let cert = TestCert::new(&["log.test"]);
    let app = TestBackend::spawn("app").await;
    let format = "$connection_requests $request_length [$request_completion] $server_addr $realip_remote_addr \
                  $ssl_session_reused $upstream_connect_time $upstream_response_length $upstream_cache_status \
                  $arg_user $cookie_sid $content_type";
    let toml = tls_logged(&app, &cert, &log, format, "");
    let portico = start_portico(&toml).await;
    // One client configuration for both connections: the second resumes the
    // first one's session.
    let config = rustls::ClientConfig::builder_with_provider(portico::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(cert.roots())
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let connect = Connect::to(portico.addr(0)).source_ip("127.0.3.10");
    let name = rustls_pki_types::ServerName::try_from("log.test").unwrap();
    let mut first = connector.connect(name.clone(), connect.tcp().await.unwrap()).await.unwrap();

    let get = "GET /big?bytes=1000&user=ann HTTP/1.1\r\nHost: log.test\r\nCookie: a=1; sid=s-42\r\n\r\n";
    let ok = |length: usize| ("HTTP/1.1 200 OK".to_owned(), length);
    assert_eq!(status_and_length(&raw_answer(&mut first, get.as_bytes()).await), ok(1000));
    let upload = vec![b'u'; 5000];
    let post = "POST /echo HTTP/1.1\r\nHost: log.test\r\nContent-Type: text/plain\r\nContent-Length: 5000\r\n\r\n";
    let request = [post.as_bytes(), &upload].concat();
    assert_eq!(status_and_length(&raw_answer(&mut first, &request).await), ok(5000));
    let mut second = connector.connect(name, connect.tcp().await.unwrap()).await.unwrap();
    assert_eq!(status_and_length(&raw_answer(&mut second, get.as_bytes()).await), ok(1000));

    let lines = wait_lines(&log, 3, Duration::from_secs(1)).await;
    let fields: Vec<Vec<&str>> = lines.iter().map(|l| l.split(' ').collect()).collect();
    let (first_get, first_post, resumed) = (&fields[0], &fields[1], &fields[2]);
    // The request's number on its connection, the head as sent (and the body).
    assert_eq!(first_get[..2], ["1", &get.len().to_string()], "{lines:?}");
    assert_eq!(first_post[..2], ["2", &(post.len() + 5000).to_string()], "{lines:?}");
    assert_eq!(resumed[..2], ["1", &get.len().to_string()], "{lines:?}");
    for line in &fields {
        assert_eq!(line[2..5], ["[OK]", "127.0.0.1", "127.0.3.10"], "{lines:?}");
        assert_eq!(line[8], "-", "no cache: {lines:?}");
    }
    assert_eq!([first_get[5], first_post[5], resumed[5]], [".", ".", "r"], "{lines:?}");
    // The first request opened the upstream connection, the next reused it.
    let seconds = |f: &[&str]| f[6].parse::<f64>().unwrap();
    assert!(seconds(first_get) < 1.0 && first_post[6] == "0.000", "{lines:?}");
    assert_eq!([first_get[7], first_post[7]], ["1000", "5000"], "{lines:?}");
    assert_eq!(first_get[9..], ["ann", "s-42", "-"], "{lines:?}");
    assert_eq!(first_post[9..], ["-", "-", "text/plain"], "{lines:?}");
}

#[tokio::test]
async fn gzip_answers_log_the_bytes_the_client_got() {
    let dir = TempDir::new("logs-gzip");
    let log = dir.join("access.log");
    let cert = TestCert::new(&["log.test"]);
    let app = TestBackend::spawn("app").await;
    let format = "$server_protocol $body_bytes_sent $upstream_response_length $gzip_ratio";
    let toml = tls_logged(&app, &cert, &log, format, "gzip = true");
    let portico = start_portico(&toml).await;
    let path = "/big?bytes=200000&set=Content-Type:text/plain";
    let mut got = Vec::new();
    for alpn in [&["http/1.1"][..], &["h2"]] {
        let mut client = Client::https(portico.addr(0), "log.test", &cert.roots(), alpn).await.unwrap();
        let reply = client.get_with("log.test", path, &[("accept-encoding", "gzip")]).await.unwrap();
        assert_eq!(reply.header("content-encoding"), Some("gzip"));
        got.push(reply.body.len());
        let plain = client.get("log.test", path).await.unwrap();
        assert_eq!(plain.body.len(), 200_000);
    }
    let lines = wait_lines(&log, 4, Duration::from_secs(1)).await;
    for (i, protocol) in ["HTTP/1.1", "HTTP/2.0"].into_iter().enumerate() {
        let compressed: Vec<&str> = lines[2 * i].split(' ').collect();
        // What went to the client, what came from the server, and their ratio.
        assert_eq!(compressed[..3], [protocol, &got[i].to_string(), "200000"], "{lines:?}");
        let ratio: f64 = compressed[3].parse().unwrap();
        assert!((ratio - 200_000.0 / got[i] as f64).abs() < 0.01 && ratio > 4.0, "{lines:?}");
        assert_eq!(lines[2 * i + 1], format!("{protocol} 200000 200000 -"));
    }
}

#[tokio::test]
async fn sent_headers_and_bytes_sent_are_the_answer_as_it_went() {
    let dir = TempDir::new("logs-sent");
    let log = dir.join("access.log");
    let app = TestBackend::spawn("app").await;
    let toml = format!(
        "{}[log_format.sent]\nformat = \"$status $bytes_sent $body_bytes_sent $sent_http_content_type $sent_http_location $sent_http_x_site $request_completion\"\n\n\
         [[server]]\nlisten = [\"127.0.0.1:0\"]\nserver_name = [\"t.test\"]\naccess_log = {}\naccess_log_format = \"sent\"\n\
         [server.response_headers]\nX-Site = \"t\"\n\
         [[server.location]]\nprefix = \"/\"\nproxy_pass = \"pool\"\n\
         [[server.location]]\nprefix = \"/old/\"\nredirect = \"https://$host/new/\"\n\
         [[server.location]]\nprefix = \"/internal/\"\nreturn = 403\n",
        upstream(&[&app]),
        toml_path(&log)
    );
    let portico = start_portico(&toml).await;
    let mut stream = tokio::net::TcpStream::connect(portico.addr(0)).await.unwrap();
    let mut sizes = Vec::new();
    for path in ["/headers?set=Content-Type:text/html", "/old/x", "/internal/x"] {
        let answer = raw_answer(&mut stream, format!("GET {path} HTTP/1.1\r\nHost: t.test\r\n\r\n").as_bytes()).await;
        sizes.push(answer.len());
    }
    let lines = wait_lines(&log, 3, Duration::from_secs(1)).await;
    let fields: Vec<Vec<&str>> = lines.iter().map(|l| l.split(' ').collect()).collect();
    // Headers as the client got them: the upstream's, the redirect's and
    // the server's own added to each.
    assert_eq!(fields[0][3..], ["text/html", "-", "t", "OK"], "{lines:?}");
    assert_eq!(fields[1][..1], ["301"], "{lines:?}");
    assert_eq!(fields[1][3..], ["text/plain;", "charset=utf-8", "https://t.test/new/", "t", "OK"], "{lines:?}");
    assert_eq!(fields[2][..1], ["403"], "{lines:?}");
    // Every byte of each answer, head and body.
    let counted: Vec<usize> = fields.iter().map(|f| f[1].parse().unwrap()).collect();
    assert_eq!(counted, sizes, "{lines:?}");

    // A HEAD's answer: its head alone, logged whole.
    stream.write_all(b"HEAD /internal/x HTTP/1.1\r\nHost: t.test\r\n\r\n").await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tokio::io::AsyncReadExt::read_exact(&mut stream, &mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let lines = wait_lines(&log, 4, Duration::from_secs(1)).await;
    assert_eq!(lines[3], format!("403 {} 0 text/plain; charset=utf-8 - t OK", head.len()));
}

#[tokio::test]
async fn a_retry_lists_each_server_tried_as_nginx_does() {
    let dir = TempDir::new("logs-retry");
    let log = dir.join("access.log");
    let app = TestBackend::spawn("app").await;
    let toml = format!(
        "[upstream.pair]\nservers = [\"127.0.0.1:1\", \"{}\"]\n\n\
         [log_format.tried]\nformat = \"$upstream_addr|$upstream_status|$upstream_connect_time|$upstream_response_length|$status\"\n\n\
         [[server]]\nlisten = [\"127.0.0.1:0\"]\nserver_name = [\"t.test\"]\nproxy_pass = \"pair\"\n\
         access_log = {}\naccess_log_format = \"tried\"\n",
        app.addr(),
        toml_path(&log)
    );
    let portico = start_portico(&toml).await;
    let mut client = Client::http1(portico.addr(0)).await.unwrap();
    // Round robin sends one of the two to the refusing server first; the
    // other goes to the app alone.
    for _ in 0..2 {
        assert_eq!(client.get("t.test", "/plain").await.unwrap().status, StatusCode::OK);
    }
    let mut lines = wait_lines(&log, 2, Duration::from_secs(1)).await;
    lines.sort_by_key(String::len);
    let app = app.addr();
    let fields: Vec<Vec<&str>> = lines.iter().map(|l| l.split('|').collect()).collect();
    assert_eq!(fields[0], [app.to_string().as_str(), "200", fields[0][2], "3", "200"], "{lines:?}");
    assert_eq!(fields[1][..2], [format!("127.0.0.1:1, {app}"), "502, 200".to_owned()], "{lines:?}");
    // No connection to the first, a fresh one to the second; no body from the first.
    let times: Vec<&str> = fields[1][2].split(", ").collect();
    assert!(times.len() == 2 && times[0] == "-" && times[1].parse::<f64>().is_ok_and(|t| t < 1.0), "{lines:?}");
    assert_eq!(fields[1][3..], ["0, 3", "200"], "{lines:?}");
}

#[tokio::test]
async fn upstream_bytes_are_each_requests_own_on_a_kept_alive_connection() {
    const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-from: raw\r\n\r\nhello";
    let dir = TempDir::new("logs-upstream-bytes");
    let log = dir.join("access.log");
    let backend = RawBackend::spawn(|_| keep(ANSWER)).await;
    let toml = format!(
        "[upstream.raw]\nservers = [\"{}\"]\n\n\
         [log_format.bytes]\nformat = \"$request_method $upstream_bytes_sent $upstream_bytes_received $upstream_response_length\"\n\n\
         [[server]]\nlisten = [\"127.0.0.1:0\"]\nserver_name = [\"b.test\"]\nproxy_pass = \"raw\"\n\
         access_log = {}\naccess_log_format = \"bytes\"\n",
        backend.addr,
        toml_path(&log)
    );
    let portico = start_portico(&toml).await;
    let mut client = Client::http1(portico.addr(0)).await.unwrap();
    let post = client.request(Method::POST, "b.test", "/up").body(support::body::full(vec![b'u'; 1000])).unwrap();
    assert_eq!(client.reply(post).await.unwrap().status, StatusCode::OK);
    assert_eq!(client.get("b.test", "/down").await.unwrap().status, StatusCode::OK);
    let lines = wait_lines(&log, 2, Duration::from_secs(1)).await;
    // One upstream connection carried both; each line counts its own request,
    // as the backend read it off the wire (a Content-Length body, or none).
    assert_eq!(backend.conns(), [0, 0]);
    let wires = backend.requests();
    assert_eq!(wires[0].framing, Framing::Length(1000));
    assert_eq!(wires[1].framing, Framing::None);
    let sent: Vec<usize> = wires.iter().map(|w| w.head_len + w.body.len()).collect();
    assert_eq!(lines[0], format!("POST {} {} 5", sent[0], ANSWER.len()));
    assert_eq!(lines[1], format!("GET {} {} 5", sent[1], ANSWER.len()));
    portico.shutdown().await;
}

#[tokio::test]
async fn error_log_names_the_upstream_and_the_server() {
    let dir = TempDir::new("logs-error");
    let access = dir.join("access.log");
    let errors = dir.join("err/error.log");
    let gone = TestBackend::spawn("gone").await;
    gone.stop().await;
    let toml = format!(
        "{}\n[[server]]\nlisten = [\"127.0.0.1:0\"]\nserver_name = [\"err.test\"]\nproxy_pass = \"pool\"\naccess_log = {}\nerror_log = {}\n",
        upstream(&[&gone]),
        toml_path(&access),
        toml_path(&errors)
    );
    let portico = start_portico(&toml).await;
    let mut client = Client::http1(portico.addr(0)).await.unwrap();

    let reply = client.get("err.test", "/down").await.unwrap();
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);

    let found = wait_lines(&errors, 1, Duration::from_secs(1)).await;
    let line = &found[0];
    assert!(line.contains("[error]"), "{line}");
    assert!(line.contains("\"pool\""), "the upstream's name is missing: {line}");
    assert!(line.contains(&gone.addr().to_string()), "the server's address is missing: {line}");
    assert!(line.contains("server: err.test"), "the virtual server is missing: {line}");
    assert!(line.contains("GET /down"), "the request is missing: {line}");
    let access_line = wait_then_check(&access, 1).await;
    assert_eq!((access_line.status, access_line.bytes), (502, reply.body.len() as u64));

    portico.shutdown().await;
    assert_eq!(lines(&errors).len(), 1, "{:#?}", lines(&errors));
}

#[tokio::test]
async fn each_server_writes_only_its_own_access_log() {
    let dir = TempDir::new("logs-split");
    let (log_a, log_b) = (dir.join("a.log"), dir.join("b.log"));
    let app = TestBackend::spawn("app").await;
    let toml = format!(
        "{}
[[server]]
listen = [\"127.0.0.1:0\"]
server_name = [\"a.test\"]
proxy_pass = \"pool\"
access_log = {}

[[server]]
listen = [\"127.0.0.1:0\"]
server_name = [\"b.test\"]
proxy_pass = \"pool\"
access_log = {}
",
        upstream(&[&app]),
        toml_path(&log_a),
        toml_path(&log_b)
    );
    let portico = start_portico(&toml).await;
    let mut client = Client::http1(portico.addr(0)).await.unwrap();
    for i in 0..3 {
        client.get("a.test", &format!("/a/{i}")).await.unwrap();
    }
    for i in 0..2 {
        client.get("b.test", &format!("/b/{i}")).await.unwrap();
    }
    wait_lines(&log_a, 3, Duration::from_secs(1)).await;
    wait_lines(&log_b, 2, Duration::from_secs(1)).await;
    portico.shutdown().await;

    let uris = |path: &Path| -> Vec<String> { lines(path).iter().map(|l| parse_combined(l).unwrap().uri).collect() };
    assert_eq!(uris(&log_a), ["/a/0", "/a/1", "/a/2"]);
    assert_eq!(uris(&log_b), ["/b/0", "/b/1"]);
}

#[tokio::test]
async fn return_answers_are_logged() {
    let dir = TempDir::new("logs-return");
    let log = dir.join("access.log");
    let app = TestBackend::spawn("app").await;
    let toml = format!(
        "{}
[[server]]
listen = [\"127.0.0.1:0\"]
server_name = [\"t.test\"]
access_log = {}

[[server.location]]
prefix = \"/\"
proxy_pass = \"pool\"

[[server.location]]
prefix = \"/internal/\"
return = 403
",
        upstream(&[&app]),
        toml_path(&log)
    );
    let portico = start_portico(&toml).await;
    let mut client = Client::http1(portico.addr(0)).await.unwrap();

    let reply = client.get("t.test", "/internal/secret").await.unwrap();
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(app.count(), 0);

    let line = wait_then_check(&log, 1).await;
    assert_eq!((line.uri.as_str(), line.status, line.bytes), ("/internal/secret", 403, reply.body.len() as u64));

    // A HEAD's answer goes without its body, and is logged with none.
    let head = client.request(Method::HEAD, "t.test", "/internal/secret").body(body::empty()).unwrap();
    assert_eq!(client.reply(head).await.unwrap().status, StatusCode::FORBIDDEN);
    let line = wait_then_check(&log, 2).await;
    assert_eq!((line.method.as_str(), line.status, line.bytes), ("HEAD", 403, 0));
}

#[tokio::test]
async fn redirects_are_logged_with_their_body_size() {
    let dir = TempDir::new("logs-redirect");
    let log = dir.join("access.log");
    let toml = format!(
        "[[server]]
listen = [\"127.0.0.1:0\"]
server_name = [\"r.test\"]
redirect = \"https://r.test$request_uri\"
access_log = {}
",
        toml_path(&log)
    );
    let portico = start_portico(&toml).await;
    let mut client = Client::http1(portico.addr(0)).await.unwrap();

    let reply = client.get("r.test", "/old?q=1").await.unwrap();
    assert_eq!(reply.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(reply.header("location"), Some("https://r.test/old?q=1"));

    let line = wait_then_check(&log, 1).await;
    assert_eq!((line.uri.as_str(), line.status), ("/old?q=1", 301));
    assert_eq!(line.bytes, reply.body.len() as u64, "body the client got: {:?}", reply.text());
}

#[tokio::test]
async fn reopen_moves_later_lines_to_a_new_file_and_loses_none() {
    let dir = TempDir::new("logs-reopen");
    let log = dir.join("access.log");
    let rotated = dir.join("access.log.1");
    let app = TestBackend::spawn("app").await;
    let toml = format!(
        "{}\n[[server]]\nlisten = [\"127.0.0.1:0\"]\nproxy_pass = \"pool\"\naccess_log = {}\n",
        upstream(&[&app]),
        toml_path(&log)
    );
    let portico = start_portico(&toml).await;
    let mut client = Client::http1(portico.addr(0)).await.unwrap();
    client.get("log.test", "/before/1").await.unwrap();
    client.get("log.test", "/before/2").await.unwrap();
    wait_lines(&log, 2, Duration::from_secs(1)).await;

    // logrotate: move the file, then signal (what SIGUSR1 does).
    std::fs::rename(&log, &rotated).unwrap();
    portico.logs().reopen();
    client.get("log.test", "/after/1").await.unwrap();

    let found = wait_lines(&log, 1, Duration::from_secs(1)).await;
    assert_eq!(parse_combined(&found[0]).unwrap().uri, "/after/1");
    portico.shutdown().await;
    let uris = |path: &Path| -> Vec<String> { lines(path).iter().map(|l| parse_combined(l).unwrap().uri).collect() };
    assert_eq!(uris(&rotated), ["/before/1", "/before/2"]);
    assert_eq!(uris(&log), ["/after/1"]);
}

#[test]
fn the_parsers_reject_what_they_should() {
    let good = "127.0.0.1 - - [05/Mar/2026:10:19:45 +0000] \"GET /x HTTP/1.1\" 200 12 \"-\" \"ua\"";
    let parsed = parse_combined(good).unwrap();
    assert_eq!(parsed.time, 1_772_705_985);
    assert_eq!(parsed.method, Method::GET.as_str());
    for bad in [
        "127.0.0.1 - - [5/Mar/2026:10:19:45 +0000] \"GET /x HTTP/1.1\" 200 12 \"-\" \"ua\"",
        "127.0.0.1 - - [05/Mar/2026:10:19:45 +0100] \"GET /x HTTP/1.1\" 200 12 \"-\" \"ua\"",
        "127.0.0.1 - - [05/Mar/2026:10:19:45 +0000] \"GET /x\" 200 12 \"-\" \"ua\"",
        "127.0.0.1 - - [05/Mar/2026:10:19:45 +0000] \"GET /x HTTP/1.1\" 200 - \"-\" \"ua\"",
        "127.0.0.1 - - [05/Mar/2026:10:19:45 +0000] \"GET /x HTTP/1.1\" 200 12 \"-\" \"u\"a\"",
        "nobody - - [05/Mar/2026:10:19:45 +0000] \"GET /x HTTP/1.1\" 200 12 \"-\" \"ua\"",
    ] {
        assert!(parse_combined(bad).is_err(), "accepted {bad}");
    }
    assert!(parse_json_object("{\"a\":1,\"b\":\"x\\\"\",\"c\":null}").is_ok());
    assert!(parse_json_object("{\"a\":1,}").is_err());
    assert!(parse_json_object("{\"a\":1 \"b\":2}").is_err());
}
