//! `portico import-nginx` on the WSO2 guide's six deployments (written one directive a line) and on edge cases.
//!
//! Validation is honest rather than lenient: the fixtures name certificates under
//! /etc/nginx/ssl/ as the guide does, which no test machine has, so each test
//! writes a real certificate and key into a temporary directory and points the
//! fixture at them before importing; the output must then pass
//! `portico::config::parse_str` with no error at all.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::error::Error;
use std::path::{Path, PathBuf};

use portico::cli::import_nginx::{ImportArgs, run};
use portico::tls::{KeyType, generate_pem};

mod support;
use support::cert::TestCert;

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("portico-import-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Imports `path`: (TOML, notes).
fn import(path: &Path) -> Result<(String, String), Box<dyn Error>> {
    let mut out = Vec::new();
    let mut notes = Vec::new();
    run(&ImportArgs { file: path.to_path_buf() }, &mut out, &mut notes)?;
    Ok((String::from_utf8(out)?, String::from_utf8(notes)?))
}

/// Checks that an imported `toml` validates with no error, as if written to
/// `dir`/portico.toml; the error shows the TOML.
fn assert_valid(toml: &str, dir: &Path) -> Result<(), Box<dyn Error>> {
    portico::config::parse_str(toml, &dir.join("portico.toml")).map_err(|e| format!("{e}\n---\n{toml}"))?;
    Ok(())
}

/// Imports `conf` and checks that the result validates as if written to
/// `dir`/portico.toml; returns (TOML, notes).
fn import_valid(conf: &Path, dir: &Path) -> Result<(String, String), Box<dyn Error>> {
    let (toml, notes) = import(conf)?;
    assert_valid(&toml, dir)?;
    Ok((toml, notes))
}

/// Asserts that each of `expected` is in the importer's `notes` exactly once.
fn assert_noted_once(notes: &str, expected: &[String]) {
    for note in expected {
        assert_eq!(notes.matches(note.as_str()).count(), 1, "{note}\nin:\n{notes}");
    }
}

/// The `[upstream.NAME]` table of an imported `toml`, up to its blank line.
fn upstream_table(toml: &str, name: &str) -> String {
    let at = toml.find(&format!("[upstream.{name}]")).unwrap_or_else(|| panic!("{name}:\n{toml}"));
    let rest = &toml[at..];
    rest[..rest.find("\n\n").unwrap_or(rest.len())].to_owned()
}

/// Imports fixture `name` with its /etc/nginx/ssl/ certificate replaced by a
/// real one, checks that the output validates, and returns (TOML, notes).
fn import_fixture(name: &str) -> Result<(String, String), Box<dyn Error>> {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nginx").join(name);
    let text = std::fs::read_to_string(&fixture)?;
    assert!(text.contains("/etc/nginx/ssl/wso2.crt"), "{name} names the guide's certificate");
    let tmp = TempDir::new(name);
    let (cert, key) = generate_pem(&["am.wso2.com".to_owned(), "*.am.wso2.com".to_owned()], KeyType::EcdsaP256)?;
    std::fs::write(tmp.0.join("wso2.crt"), cert)?;
    std::fs::write(tmp.0.join("wso2.key"), key)?;
    let ssl_dir = format!("{}/", tmp.0.display());
    let conf = tmp.0.join(name);
    std::fs::write(&conf, text.replace("/etc/nginx/ssl/", &ssl_dir))?;

    let (toml, notes) = import(&conf)?;
    assert_valid(&toml, &tmp.0).map_err(|e| format!("{name}:\n{e}"))?;
    assert!(!notes.contains("portico check would report"), "{notes}");
    // The notes name the fixture's own lines; compare without the temp dir.
    let notes = notes.replace(&format!("{}/", tmp.0.display()), "");
    let toml = toml.replace(&ssl_dir, "/etc/nginx/ssl/");
    Ok((toml, notes))
}

/// The parts every WSO2 deployment shares: the port-80 redirect, TLS on 443 with
/// the guide's headers (the server-level X-Forwarded-Port kept, with its note),
/// timeouts, logs, and unverified HTTPS to the upstream with the comment saying why.
fn assert_wso2_shape(name: &str, toml: &str, notes: &str, host: &str, upstream: &str, logs: &str) {
    let redirect =
        format!("redirect = \"https://{host}$request_uri\"  # nginx: rewrite ^/(.*) https://{host}/$1 permanent\n");
    assert!(toml.contains(&redirect), "{name}: {toml}");
    let server = format!(
        "listen = [\"443\"]\nserver_name = [\"{host}\"]\ntls = {{ cert = \"/etc/nginx/ssl/wso2.crt\", key = \"/etc/nginx/ssl/wso2.key\" }}\nproxy_pass = \"{upstream}\""
    );
    assert!(toml.contains(&server), "{name}: {toml}");
    assert!(toml.contains(&format!("access_log = \"/etc/nginx/log/{logs}/https/access.log\"")), "{name}");
    assert!(toml.contains(&format!("error_log = \"/etc/nginx/log/{logs}/https/error.log\"")), "{name}");
    assert!(toml.contains("read_timeout = \"5m\"") && toml.contains("send_timeout = \"5m\""), "{name}");
    let headers = "[server.headers]  # nginx: proxy_set_header\nX-Forwarded-Port = \"443\"\nX-Forwarded-Host = \"$host\"\nX-Forwarded-Server = \"$host\"\nX-Forwarded-For = \"$proxy_add_x_forwarded_for\"\nHost = \"$http_host\"\n";
    assert!(toml.contains(headers), "{name}: {toml}");
    // Each 443 server's X-Forwarded-Port line gets a note naming the location that drops it in nginx.
    let fixture =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nginx").join(name))
            .unwrap_or_default();
    let lines_of = |needle: &str| -> Vec<usize> {
        fixture.lines().enumerate().filter(|(_, l)| l.trim() == needle).map(|(i, _)| i + 1).collect()
    };
    let header_lines = lines_of("proxy_set_header X-Forwarded-Port 443;");
    let location_lines = lines_of("location / {");
    assert!(!header_lines.is_empty() && header_lines.len() == location_lines.len(), "{name}");
    for (header, location) in header_lines.iter().zip(&location_lines) {
        let note = format!(
            "{name}:{header}: note: proxy_set_header X-Forwarded-Port 443 is kept for location / (line {location}); nginx never sends it there"
        );
        assert!(notes.contains(&note), "{name}: {note}\n{notes}");
    }
    let upstream_tls = format!("[upstream.\"{upstream}\"]");
    let at = toml.find(&upstream_tls).unwrap_or_else(|| panic!("{name}: no {upstream_tls}\n{toml}"));
    let section = &toml[at..];
    let section = &section[..section[1..].find("\n[").map_or(section.len(), |i| i + 1)];
    assert!(section.contains("tls = true  # nginx: proxy_pass https://\n"), "{name}: {section}");
    assert!(
        section.contains("# nginx verifies no upstream certificate unless proxy_ssl_verify is on")
            && section.contains("\ntls_verify = false\n"),
        "{name}: {section}"
    );
    assert!(!notes.contains("not translated"), "{name}: {notes}");
}

fn assert_sticky(toml: &str, upstream: &str) {
    let sticky = format!(
        "[upstream.\"{upstream}\".sticky]\nlearn = \"JSESSIONID\"  # nginx: sticky learn create=$upstream_cookie_...\nzone = \"client_sessions\"\nsize = \"1m\"\n"
    );
    assert!(toml.contains(&sticky), "{toml}");
    // `#ip_hash;` is a comment: the pool stays round robin, with sessions learned.
    assert!(!toml.contains("ip_hash"), "{toml}");
}

#[test]
fn import_single_node() -> Result<(), Box<dyn Error>> {
    let (toml, notes) = import_fixture("single-node.conf")?;
    assert!(toml.contains("servers = [\"10.0.1.10:9443\"]"), "{toml}");
    assert!(toml.contains("servers = [\"10.0.1.10:8243\"]"), "{toml}");
    assert_wso2_shape("single-node.conf", &toml, &notes, "api.am.wso2.com", "sslapi.am.wso2.com", "am");
    assert!(toml.contains("server_name = [\"gw.am.wso2.com\"]\ntls"), "{toml}");
    assert!(!toml.contains(".sticky]"));
    Ok(())
}

#[test]
fn import_active_active() -> Result<(), Box<dyn Error>> {
    let (toml, notes) = import_fixture("active-active.conf")?;
    assert!(toml.contains("servers = [\"10.0.1.11:9443\", \"10.0.1.12:9443\"]"), "{toml}");
    assert!(toml.contains("servers = [\"10.0.1.11:8243\", \"10.0.1.12:8243\"]"), "{toml}");
    assert_wso2_shape("active-active.conf", &toml, &notes, "api.am.wso2.com", "sslapi.am.wso2.com", "am");
    assert_sticky(&toml, "sslapi.am.wso2.com");
    Ok(())
}

#[test]
fn import_distributed_gateway() -> Result<(), Box<dyn Error>> {
    let (toml, notes) = import_fixture("distributed-gateway.conf")?;
    assert!(toml.contains("servers = [\"10.0.2.10:9443\"]"), "{toml}");
    assert!(toml.contains("servers = [\"10.0.2.11:8243\", \"10.0.2.12:8243\"]"), "{toml}");
    assert_wso2_shape("distributed-gateway.conf", &toml, &notes, "mgtgw.am.wso2.com", "mgtgw.am.wso2.com", "gwm");
    assert!(toml.contains("access_log = \"/etc/nginx/log/gw/https/access.log\""));
    Ok(())
}

#[test]
fn import_publisher_store_key_manager() -> Result<(), Box<dyn Error>> {
    for (file, role, net, logs) in [
        ("publisher.conf", "publisher", 3, "publisher"),
        ("store-devportal.conf", "store", 4, "store"),
        ("key-manager.conf", "km", 5, "km"),
    ] {
        let (toml, notes) = import_fixture(file)?;
        let host = format!("{role}.am.wso2.com");
        assert!(toml.contains(&format!("servers = [\"10.0.{net}.11:9443\", \"10.0.{net}.12:9443\"]")), "{toml}");
        assert_wso2_shape(file, &toml, &notes, &host, &host, logs);
        assert_sticky(&toml, &host);
    }
    Ok(())
}

#[test]
fn import_conf_d_include_and_http_block() -> Result<(), Box<dyn Error>> {
    let tmp = TempDir::new("include");
    std::fs::create_dir_all(tmp.0.join("conf.d"))?;
    std::fs::write(
        tmp.0.join("nginx.conf"),
        "user nginx;\nworker_processes 4;\npid /run/nginx.pid;\nerror_log /var/log/nginx/error.log notice;\nevents {\n    worker_connections 1024;\n}\nhttp {\n    client_max_body_size 10m;\n    proxy_set_header Host $host;\n    include conf.d/*.conf;\n}\n",
    )?;
    std::fs::write(
        tmp.0.join("conf.d/10-upstream.conf"),
        "upstream app {\n    ip_hash;\n    server 127.0.0.1:8080 weight=2 max_fails=3 fail_timeout=30s;\n    server 127.0.0.1:8081 backup;\n    keepalive 16;\n}\n",
    )?;
    std::fs::write(
        tmp.0.join("conf.d/20-server.conf"),
        "server {\n    listen 8080;\n    server_name app.example.com;\n    location / {\n        proxy_pass http://app;\n        proxy_connect_timeout 5;\n    }\n    location /legacy/ {\n        proxy_pass http://127.0.0.1:9000;\n        proxy_buffering off;\n    }\n    location /internal/ {\n        return 403;\n    }\n}\n",
    )?;
    let (toml, notes) = import(&tmp.0.join("nginx.conf"))?;
    assert_valid(&toml, &tmp.0)?;

    assert!(toml.contains("worker_threads = 4"), "{toml}");
    assert!(toml.contains("pid_file = \"/run/nginx.pid\""), "{toml}");
    assert!(toml.contains("error_log_level = \"info\"  # nginx: notice"), "{toml}");
    assert!(toml.contains("client_max_body_size = \"10m\""), "{toml}");
    assert!(toml.contains("{ address = \"127.0.0.1:8080\", weight = 2, max_fails = 3, fail_timeout = \"30s\" },"));
    assert!(toml.contains("{ address = \"127.0.0.1:8081\", backup = true },"), "{toml}");
    assert!(toml.contains("balance = \"ip_hash\"\nkeepalive = 16\nconnect_timeout = \"5s\""), "{toml}");
    // A literal address gets an upstream of its own.
    assert!(toml.contains("[upstream.\"127.0.0.1:9000\"]"), "{toml}");
    assert!(toml.contains("prefix = \"/legacy/\"\nproxy_pass = \"127.0.0.1:9000\""), "{toml}");
    assert!(toml.contains("prefix = \"/internal/\"\nreturn = 403"), "{toml}");
    // The http-level header reaches the server through the include.
    assert!(toml.contains("[server.headers]  # nginx: proxy_set_header\nHost = \"$host\"\n"), "{toml}");

    let server_conf = tmp.0.join("conf.d/20-server.conf");
    assert!(
        notes.contains(&format!(
            "{}:10: directive \"proxy_buffering\" not translated: portico streams bodies without buffering them",
            server_conf.display()
        )),
        "{notes}"
    );
    let nginx_conf = tmp.0.join("nginx.conf");
    assert!(notes.contains(&format!("{}:1: directive \"user\" not translated:", nginx_conf.display())), "{notes}");
    assert!(notes.contains(&format!("{}:5: directive \"events\" not translated:", nginx_conf.display())), "{notes}");
    Ok(())
}

#[test]
fn import_reports_untranslated_directives_with_file_and_line() -> Result<(), Box<dyn Error>> {
    let tmp = TempDir::new("untranslated");
    let conf = tmp.0.join("site.conf");
    std::fs::write(
        &conf,
        "server {\n    listen 80 default_server;\n    gzip on;\n    location ~ \\.php$ {\n        proxy_pass http://127.0.0.1:9000;\n    }\n    location / {\n        proxy_pass https://10.0.0.9;\n        proxy_ssl_verify on;\n        proxy_ssl_trusted_certificate /etc/ssl/ca.pem;\n        rewrite ^/old/(.*)$ /new/$1 last;\n        proxy_ssl_ciphers HIGH;\n        proxy_ignore_client_abort on;\n    }\n}\n",
    )?;
    let (toml, notes) = import(&conf)?;
    let at = |line: usize, name: &str| format!("{}:{line}: directive \"{name}\" not translated: ", conf.display());
    // gzip on alone: nginx's default types, text/html.
    assert!(!notes.contains(":3:"), "{notes}");
    assert!(toml.contains("gzip = { types = [\"text/html\"] }"), "{toml}");
    assert!(notes.contains(&at(4, "location")), "{notes}");
    assert!(notes.contains(&at(11, "rewrite")), "{notes}");
    assert!(
        notes.contains(&format!("{}portico speaks TLS 1.2 and 1.3 to HTTPS upstreams", at(12, "proxy_ssl_ciphers"))),
        "{notes}"
    );
    assert!(
        notes.contains(&format!("{}portico cancels the upstream request", at(13, "proxy_ignore_client_abort"))),
        "{notes}"
    );
    // proxy_ssl_verify on: verified, with the given roots.
    assert!(toml.contains("[upstream.\"10.0.0.9:443\"]"), "{toml}");
    assert!(toml.contains("tls = true") && !toml.contains("tls_verify"), "{toml}");
    assert!(toml.contains("ca_file = \"/etc/ssl/ca.pem\""), "{toml}");
    assert!(toml.contains("default_server = true"), "{toml}");
    // Without proxy_set_header, the default headers differ from nginx's; said so.
    assert!(notes.contains("no proxy_set_header: portico sends its default X-Forwarded-* headers"), "{notes}");
    Ok(())
}

#[test]
fn import_leaves_out_headers_portico_sets_itself() -> Result<(), Box<dyn Error>> {
    let tmp = TempDir::new("own-headers");
    let conf = tmp.0.join("site.conf");
    std::fs::write(
        &conf,
        "server {\n    listen 80;\n    location / {\n        proxy_pass http://127.0.0.1:9000;\n        proxy_set_header Upgrade $http_upgrade;\n        proxy_set_header Connection \"upgrade\";\n        proxy_set_header Content-Length \"\";\n        proxy_set_header Transfer-Encoding chunked;\n        proxy_set_header X-Real-Host $host;\n    }\n}\n",
    )?;
    let (toml, notes) = import(&conf)?;
    let at = |line: usize| format!("{}:{line}: note: ", conf.display());
    for (line, name, why) in [
        (5, "Upgrade", "portico tunnels WebSocket upgrades without it"),
        (6, "Connection", "portico tunnels WebSocket upgrades without it"),
        (7, "Content-Length", "portico frames the request body itself"),
        (8, "Transfer-Encoding", "portico frames the request body itself"),
    ] {
        assert!(notes.contains(&format!("{}proxy_set_header {name} is left out: {why}", at(line))), "{notes}");
        assert!(!toml.to_ascii_lowercase().contains(&name.to_ascii_lowercase()), "{toml}");
    }
    assert!(toml.contains("X-Real-Host = \"$host\""), "{toml}");
    assert_valid(&toml, &tmp.0)?;
    Ok(())
}

#[test]
fn import_parse_error_names_file_and_line() -> Result<(), Box<dyn Error>> {
    let tmp = TempDir::new("syntax");
    let conf = tmp.0.join("broken.conf");
    std::fs::write(&conf, "upstream am {\n    server 10.0.0.1:9443\n}\n")?;
    let err = import(&conf).unwrap_err().to_string();
    assert_eq!(err, format!("{}:3: unexpected \"}}\": the directive before it has no \";\"", conf.display()));

    // The guide's flattened text: `#ip_hash;` hides the upstream's `}`.
    std::fs::write(
        &conf,
        "upstream a { server 10.0.0.1:9443; #ip_hash; sticky learn create=$upstream_cookie_jsessionid lookup=$cookie_jsessionid zone=client_sessions:1m; }\n",
    )?;
    let err = import(&conf).unwrap_err().to_string();
    assert!(err.starts_with(&format!("{}:2: unexpected end of file, expecting \"}}\"", conf.display())), "{err}");
    Ok(())
}

#[test]
fn import_mixed_listens_and_return_redirect() -> Result<(), Box<dyn Error>> {
    let tmp = TempDir::new("mixed");
    let conf = tmp.0.join("mixed.conf");
    std::fs::write(
        &conf,
        "server {\n    listen 8081;\n    listen 8443 ssl;\n    server_name .example.com;\n    ssl_certificate certs/example.crt;\n    ssl_certificate_key certs/example.key;\n    return 301 https://$host$request_uri;\n}\n",
    )?;
    let (toml, _notes) = import(&conf)?;
    // One nginx server with plain and TLS listens is two portico servers.
    assert!(
        toml.contains("listen = [\"8081\"]\nserver_name = [\"example.com\", \"*.example.com\"]\nredirect"),
        "{toml}"
    );
    let cert = tmp.0.join("certs/example.crt");
    assert!(
        toml.contains(&format!(
            "listen = [\"8443\"]\nserver_name = [\"example.com\", \"*.example.com\"]\ntls = {{ cert = \"{}\"",
            cert.display()
        )),
        "{toml}"
    );
    assert_eq!(toml.matches("redirect = \"https://$host$request_uri\"").count(), 2, "{toml}");
    Ok(())
}

#[test]
fn import_sticky_sync_points_at_the_redis_store() -> Result<(), Box<dyn Error>> {
    let tmp = TempDir::new("sync");
    let conf = tmp.0.join("sync.conf");
    std::fs::write(
        &conf,
        "upstream am {\n    server 10.0.0.1:9443;\n    sticky learn create=$upstream_cookie_jsessionid lookup=$cookie_jsessionid zone=client_sessions:1m sync;\n}\n",
    )?;
    let (toml, notes) = import(&conf)?;
    assert!(toml.contains("learn = \"JSESSIONID\""), "{toml}");
    assert!(notes.lines().any(|n| n.contains("sticky parameter \"sync\"") && n.contains("store = ")), "{notes}");
    Ok(())
}

#[test]
fn import_ssl_protocols_keeps_the_versions_portico_speaks_one_set_per_address() -> Result<(), Box<dyn Error>> {
    let tmp = TempDir::new("protocols");
    let (cert, key) = generate_pem(&["a.test".to_owned()], KeyType::EcdsaP256)?;
    std::fs::write(tmp.0.join("a.crt"), cert)?;
    std::fs::write(tmp.0.join("a.key"), key)?;
    let conf = tmp.0.join("protocols.conf");
    let tls = "ssl_certificate a.crt; ssl_certificate_key a.key; location / { proxy_pass http://am; }";
    std::fs::write(
        &conf,
        format!(
            "http {{
ssl_protocols TLSv1 TLSv1.1 TLSv1.2;
upstream am {{ server 127.0.0.1:9443; }}
server {{ listen 443 ssl; server_name a.test; {tls} }}
server {{ listen 443 ssl; server_name b.test; ssl_protocols TLSv1.3; {tls} }}
server {{ listen 8443 ssl; server_name c.test; ssl_protocols TLSv1.2 TLSv1.3; {tls} }}
server {{ listen 9443 ssl; server_name d.test; ssl_protocols SSLv3; {tls} }}
server {{ listen 10443 ssl; server_name e.test; ssl_protocols TLSv1.3; {tls} }}
}}
"
        ),
    )?;
    let (toml, notes) = import_valid(&conf, &tmp.0)?;
    let tls_line = |name: &str| {
        let at = toml.find(&format!("server_name = [\"{name}\"]\ntls = ")).unwrap_or_else(|| panic!("{name}:\n{toml}"));
        toml[at..].lines().nth(1).unwrap_or_default().to_owned()
    };
    // nginx's TLSv1 TLSv1.1 TLSv1.2 is TLS 1.2 alone here, and b.test on the
    // same address takes a.test's (the first); both, as portico's default, are
    // written as nothing.
    for name in ["a.test", "b.test"] {
        assert!(tls_line(name).ends_with(r#".key", protocols = ["TLSv1.2"] }"#), "{name}: {}", tls_line(name));
    }
    assert!(tls_line("e.test").ends_with(r#".key", protocols = ["TLSv1.3"] }"#), "{}", tls_line("e.test"));
    for name in ["c.test", "d.test"] {
        assert!(tls_line(name).ends_with(".key\" }"), "{name}: {}", tls_line(name));
    }
    let conf = conf.display();
    assert_noted_once(
        &notes,
        &[
            format!(
                "{conf}:2: note: ssl_protocols TLSv1 TLSv1.1: portico speaks only TLSv1.2 and TLSv1.3, and leaves these out\n"
            ),
            format!(
                "{conf}:7: note: ssl_protocols SSLv3: portico speaks only TLSv1.2 and TLSv1.3, and offers both instead\n"
            ),
            format!(
                "{conf}:4: note: listen 0.0.0.0:443: portico has one set of TLS versions per address and gives this server's (TLSv1.2) to all on it; the server at {conf}:5 had TLSv1.3\n"
            ),
        ],
    );
    Ok(())
}

#[test]
fn import_proxy_ssl_protocols_becomes_the_upstreams_tls_protocols() -> Result<(), Box<dyn Error>> {
    let tmp = TempDir::new("proxy-protocols");
    let conf = tmp.0.join("proxy-protocols.conf");
    std::fs::write(
        &conf,
        "http {
proxy_ssl_protocols TLSv1 TLSv1.1 TLSv1.2;
upstream am { server 127.0.0.1:9443; }
upstream gw { server 127.0.0.1:8243; }
upstream plain { server 127.0.0.1:8080; }
server {
    listen 8080;
    location / { proxy_pass https://am; }
    location /api { proxy_pass https://am; }
    location /gw { proxy_ssl_protocols TLSv1.2 TLSv1.3; proxy_pass https://gw; }
    location /plain { proxy_pass http://plain; }
}
}
",
    )?;
    let (toml, notes) = import_valid(&conf, &tmp.0)?;
    let upstream = |name: &str| upstream_table(&toml, name);
    // nginx's TLSv1 TLSv1.1 TLSv1.2 toward am is TLS 1.2 alone; gw's TLSv1.2
    // TLSv1.3 is portico's default, written as nothing; plain has no TLS.
    assert!(upstream("am").contains(r#"tls_protocols = ["TLSv1.2"]  # nginx: proxy_ssl_protocols"#), "{toml}");
    assert!(!upstream("gw").contains("tls_protocols"), "{toml}");
    assert!(!upstream("plain").contains("tls"), "{toml}");
    let note = format!(
        "{}:2: note: proxy_ssl_protocols TLSv1 TLSv1.1: portico speaks only TLSv1.2 and TLSv1.3, and leaves these out\n",
        conf.display()
    );
    assert_noted_once(&notes, &[note]);
    Ok(())
}

/// Writes a.crt and a.key (a server certificate for `names`) and
/// ca/clients.pem (a real CA, for ssl_client_certificate) into `dir`.
fn write_mtls_files(dir: &Path, names: &[&str]) -> Result<(), Box<dyn Error>> {
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let (cert, key) = generate_pem(&names, KeyType::EcdsaP256)?;
    std::fs::write(dir.join("a.crt"), cert)?;
    std::fs::write(dir.join("a.key"), key)?;
    std::fs::create_dir_all(dir.join("ca"))?;
    std::fs::copy(TestCert::new(&["client.test"]).ca_path(), dir.join("ca/clients.pem"))?;
    Ok(())
}

/// The `tls = ` line of the server named `name`.
fn tls_line<'a>(toml: &'a str, name: &str) -> &'a str {
    let at = toml.find(&format!("server_name = [\"{name}\"]\ntls = ")).unwrap_or_else(|| panic!("{name}:\n{toml}"));
    toml[at..].lines().nth(1).unwrap_or_default()
}

#[test]
fn import_wso2_mutual_tls_asks_for_the_client_certificate_and_passes_it_on() -> Result<(), Box<dyn Error>> {
    let tmp = TempDir::new("mtls-wso2");
    write_mtls_files(&tmp.0, &["gw.am.wso2.com"])?;
    let conf = tmp.0.join("mtls.conf");
    std::fs::write(
        &conf,
        "upstream sslgw.am.wso2.com {
    server 10.0.1.10:8243;
}
server {
    listen 443 ssl;
    server_name gw.am.wso2.com;
    ssl_certificate a.crt;
    ssl_certificate_key a.key;
    ssl_verify_client optional_no_ca;
    location / {
        proxy_set_header Host $http_host;
        proxy_set_header SSL-CLIENT-CERT $ssl_client_escaped_cert;
        proxy_set_header X-SSL-Client-Verify $ssl_client_verify;
        proxy_pass https://sslgw.am.wso2.com;
    }
}
",
    )?;
    let (toml, notes) = import_valid(&conf, &tmp.0)?;
    // Any certificate is asked for and taken, with no CA: the gateway judges it.
    assert!(tls_line(&toml, "gw.am.wso2.com").ends_with(".key\", verify_client = \"optional_no_ca\" }"), "{toml}");
    assert!(!toml.contains("client_ca"), "{toml}");
    let headers = "[server.headers]  # nginx: proxy_set_header\nHost = \"$http_host\"\nSSL-CLIENT-CERT = \"$ssl_client_escaped_cert\"\nX-SSL-Client-Verify = \"$ssl_client_verify\"\n";
    assert!(toml.contains(headers), "{toml}");
    assert!(!notes.contains("not translated") && !notes.contains("ssl_"), "{notes}");
    Ok(())
}

#[test]
fn import_client_certificate_names_serial_and_fingerprint_as_nginx_names_them() -> Result<(), Box<dyn Error>> {
    let tmp = TempDir::new("mtls-dn");
    write_mtls_files(&tmp.0, &["gw.test"])?;
    let conf = tmp.0.join("mtls.conf");
    std::fs::write(
        &conf,
        "server {
    listen 443 ssl;
    server_name gw.test;
    ssl_certificate a.crt;
    ssl_certificate_key a.key;
    ssl_verify_client on;
    ssl_client_certificate ca/clients.pem;
    location / {
        proxy_set_header X-SSL-DN $ssl_client_s_dn;
        proxy_set_header X-SSL-Issuer ${ssl_client_i_dn};
        proxy_set_header X-SSL-Serial $ssl_client_serial;
        proxy_set_header X-SSL-Fingerprint \"sha1=$ssl_client_fingerprint\";
        proxy_pass http://127.0.0.1:9000;
    }
}
",
    )?;
    let (toml, notes) = import_valid(&conf, &tmp.0)?;
    let headers = "X-SSL-DN = \"$ssl_client_s_dn\"\nX-SSL-Issuer = \"${ssl_client_i_dn}\"\nX-SSL-Serial = \"$ssl_client_serial\"\nX-SSL-Fingerprint = \"sha1=$ssl_client_fingerprint\"\n";
    assert!(toml.contains(headers), "{toml}");
    assert!(!notes.contains("not translated") && !notes.contains("ssl_client"), "{notes}");
    Ok(())
}

#[test]
fn import_ssl_verify_client_on_with_ssl_client_certificate_per_server() -> Result<(), Box<dyn Error>> {
    let tmp = TempDir::new("mtls-on");
    write_mtls_files(&tmp.0, &["a.test", "b.test"])?;
    let conf = tmp.0.join("mtls.conf");
    let tls = "ssl_certificate a.crt; ssl_certificate_key a.key; location / { proxy_pass http://127.0.0.1:9000; }";
    std::fs::write(
        &conf,
        format!(
            "server {{ listen 8443 ssl; server_name a.test; ssl_verify_client on; ssl_client_certificate ca/clients.pem; {tls} }}
server {{ listen 8443 ssl; server_name b.test; {tls} }}
"
        ),
    )?;
    let (toml, notes) = import_valid(&conf, &tmp.0)?;
    // The CA file resolves against nginx's configuration directory, as ssl_certificate does.
    let ca = tmp.0.join("ca/clients.pem");
    let a = tls_line(&toml, "a.test");
    assert!(a.ends_with(&format!(".key\", verify_client = \"on\", client_ca = \"{}\" }}", ca.display())), "{a}");
    // b.test shares the address and keeps asking for nothing: portico picks the policy by SNI.
    assert!(tls_line(&toml, "b.test").ends_with(".key\" }"), "{toml}");
    assert!(!notes.contains("ssl_"), "{notes}");
    Ok(())
}

#[test]
fn import_notes_client_certificate_directives_it_leaves_out() -> Result<(), Box<dyn Error>> {
    let tmp = TempDir::new("mtls-notes");
    write_mtls_files(&tmp.0, &["a.test", "b.test"])?;
    let conf = tmp.0.join("mtls.conf");
    std::fs::write(
        &conf,
        "server {
    listen 8443 ssl;
    server_name a.test;
    ssl_certificate a.crt;
    ssl_certificate_key a.key;
    ssl_client_certificate ca/clients.pem;
    ssl_verify_depth 2;
    ssl_trusted_certificate ca/clients.pem;
    location / {
        ssl_verify_client optional_no_ca;
        proxy_pass http://127.0.0.1:9000;
    }
}
server {
    listen 9443 ssl;
    server_name b.test;
    ssl_certificate a.crt;
    ssl_certificate_key a.key;
    ssl_verify_client optional;
    location / { proxy_pass http://127.0.0.1:9000; }
}
",
    )?;
    let (toml, notes) = import_valid(&conf, &tmp.0)?;
    assert!(!toml.contains("verify_client") && !toml.contains("client_ca"), "{toml}");
    let ca = tmp.0.join("ca/clients.pem");
    let conf = conf.display();
    assert_noted_once(
        &notes,
        &[
            format!(
                "{conf}:6: note: ssl_client_certificate {} is left out for the server at {conf}:1: without ssl_verify_client it does nothing",
                ca.display()
            ),
            format!(
                "{conf}:7: directive \"ssl_verify_depth\" not translated: portico sets no depth for client certificate chains"
            ),
            format!(
                "{conf}:8: directive \"ssl_trusted_certificate\" not translated: portico staples no OCSP responses"
            ),
            format!(
                "{conf}:10: directive \"ssl_verify_client\" not translated: nginx takes it in http and server blocks only"
            ),
            format!(
                "{conf}:19: note: ssl_verify_client optional is left out for the server at {conf}:14: nginx requires ssl_client_certificate (or ssl_trusted_certificate) for it"
            ),
        ],
    );
    Ok(())
}

#[test]
fn import_http_level_ssl_verify_client_is_inherited_by_each_tls_server() -> Result<(), Box<dyn Error>> {
    let tmp = TempDir::new("mtls-http");
    write_mtls_files(&tmp.0, &["a.test", "b.test", "c.test"])?;
    let conf = tmp.0.join("mtls.conf");
    let tls = "ssl_certificate a.crt; ssl_certificate_key a.key; location / { proxy_pass http://127.0.0.1:9000; }";
    std::fs::write(
        &conf,
        format!(
            "http {{
ssl_verify_client on;
ssl_client_certificate ca/clients.pem;
server {{ listen 443 ssl; server_name a.test; {tls} }}
server {{ listen 443 ssl; server_name b.test; ssl_verify_client optional_no_ca; {tls} }}
server {{ listen 8443 ssl; server_name c.test; ssl_verify_client off; {tls} }}
server {{ listen 8080; server_name d.test; location / {{ proxy_pass http://127.0.0.1:9000; }} }}
}}
"
        ),
    )?;
    let (toml, notes) = import_valid(&conf, &tmp.0)?;
    let ca = tmp.0.join("ca/clients.pem");
    let with_ca = |mode: &str| format!(".key\", verify_client = \"{mode}\", client_ca = \"{}\" }}", ca.display());
    assert!(tls_line(&toml, "a.test").ends_with(&with_ca("on")), "{toml}");
    assert!(tls_line(&toml, "b.test").ends_with(&with_ca("optional_no_ca")), "{toml}");
    assert!(tls_line(&toml, "c.test").ends_with(".key\" }"), "{toml}");
    // The plain server has no tls table to put it in.
    assert_eq!(toml.matches("verify_client").count(), 2, "{toml}");
    let note = format!(
        "{conf}:3: note: ssl_client_certificate {} is left out for the server at {conf}:6: ",
        ca.display(),
        conf = conf.display()
    );
    assert_noted_once(&notes, &[note]);
    assert_eq!(notes.matches("ssl_client_certificate").count(), 1, "{notes}");
    Ok(())
}

#[test]
fn import_ssl_client_cert_is_passed_on_url_encoded() -> Result<(), Box<dyn Error>> {
    let tmp = TempDir::new("mtls-cert-var");
    write_mtls_files(&tmp.0, &["a.test"])?;
    let conf = tmp.0.join("mtls.conf");
    std::fs::write(
        &conf,
        "server {
    listen 8443 ssl;
    server_name a.test;
    ssl_certificate a.crt;
    ssl_certificate_key a.key;
    ssl_verify_client optional_no_ca;
    location / {
        proxy_set_header X-Client-Cert $ssl_client_cert;
        proxy_pass http://127.0.0.1:9000;
    }
}
",
    )?;
    let (toml, notes) = import_valid(&conf, &tmp.0)?;
    assert!(toml.contains("X-Client-Cert = \"$ssl_client_escaped_cert\"\n"), "{toml}");
    let note = format!(
        "{}:8: note: proxy_set_header X-Client-Cert: $ssl_client_cert (nginx's deprecated multi-line PEM) is written as $ssl_client_escaped_cert, the same PEM URL-encoded",
        conf.display()
    );
    assert_noted_once(&notes, &[note]);
    assert!(!notes.contains("not translated"), "{notes}");
    Ok(())
}

#[test]
fn import_proxy_ssl_certificate_becomes_the_upstreams_client_certificate() -> Result<(), Box<dyn Error>> {
    let tmp = TempDir::new("proxy-client-cert");
    let (cert, key) = generate_pem(&["lb.wso2.com".to_owned()], KeyType::EcdsaP256)?;
    std::fs::write(tmp.0.join("lb.crt"), cert)?;
    std::fs::write(tmp.0.join("lb.key"), key)?;
    let conf = tmp.0.join("proxy-client-cert.conf");
    std::fs::write(
        &conf,
        "http {
proxy_ssl_certificate lb.crt;
proxy_ssl_certificate_key lb.key;
upstream am { server 127.0.0.1:9443; }
upstream gw { server 127.0.0.1:8243; }
upstream plain { server 127.0.0.1:8080; }
server {
    listen 8080;
    location / { proxy_pass https://am; }
    location /gw { proxy_ssl_certificate_key off.key; proxy_ssl_certificate_key lb.key; proxy_pass https://gw; }
    location /plain { proxy_pass http://plain; }
}
server {
    listen 8081;
    proxy_ssl_certificate_key $key;
    location / { proxy_pass https://127.0.0.1:9444; }
}
}
",
    )?;
    let (toml, notes) = import_valid(&conf, &tmp.0)?;
    let upstream = |name: &str| upstream_table(&toml, name);
    // The paths resolve against the nginx file's directory, as nginx reads them.
    let dir = tmp.0.display();
    for name in ["am", "gw"] {
        let wanted = format!(
            "tls_client_cert = \"{dir}/lb.crt\"  # nginx: proxy_ssl_certificate\n\
             tls_client_key = \"{dir}/lb.key\"  # nginx: proxy_ssl_certificate_key"
        );
        assert!(upstream(name).contains(&wanted), "{name}:\n{toml}");
    }
    assert!(!upstream("plain").contains("tls"), "{toml}");
    let untranslated =
        format!("{}:15: directive \"proxy_ssl_certificate_key\" not translated: expected a file path", conf.display());
    assert_noted_once(&notes, &[untranslated]);

    // A certificate without its key is left out, with a note.
    let conf = tmp.0.join("cert-alone.conf");
    std::fs::write(
        &conf,
        "http {\nserver {\n    listen 8080;\n    proxy_ssl_certificate lb.crt;\n    location / { proxy_pass https://127.0.0.1:9443; }\n}\n}\n",
    )?;
    let (toml, notes) = import_valid(&conf, &tmp.0)?;
    assert!(!toml.contains("tls_client"), "{toml}");
    let note = format!(
        "{conf}:4: note: proxy_ssl_certificate {dir}/lb.crt is left out for proxy_pass https://127.0.0.1:9443 at {conf}:5: there is no proxy_ssl_certificate_key to go with it",
        conf = conf.display()
    );
    assert_noted_once(&notes, &[note]);
    Ok(())
}

#[test]
fn import_ssl_crl_becomes_client_crl_where_a_client_ca_is_checked() -> Result<(), Box<dyn Error>> {
    let tmp = TempDir::new("mtls-crl");
    write_mtls_files(&tmp.0, &["a.test", "b.test"])?;
    // A CA and a CRL it signed, in place of write_mtls_files' CA.
    let clients = TestCert::new(&["client.test"]);
    std::fs::copy(clients.ca_path(), tmp.0.join("ca/clients.pem"))?;
    std::fs::copy(clients.crl_path("clients", &[]), tmp.0.join("ca/clients.crl"))?;
    let conf = tmp.0.join("mtls.conf");
    let tls = "ssl_certificate a.crt; ssl_certificate_key a.key; location / { proxy_pass http://127.0.0.1:9000; }";
    std::fs::write(
        &conf,
        format!(
            "http {{
ssl_crl ca/clients.crl;
server {{ listen 8443 ssl; server_name a.test; ssl_verify_client on; ssl_client_certificate ca/clients.pem; {tls} }}
server {{ listen 8443 ssl; server_name b.test; ssl_verify_client optional_no_ca; {tls} }}
}}
"
        ),
    )?;
    let (toml, notes) = import_valid(&conf, &tmp.0)?;
    let (ca, crl) = (tmp.0.join("ca/clients.pem"), tmp.0.join("ca/clients.crl"));
    let a = tls_line(&toml, "a.test");
    let wanted =
        format!(", verify_client = \"on\", client_ca = \"{}\", client_crl = \"{}\" }}", ca.display(), crl.display());
    assert!(a.ends_with(&wanted), "{a}");
    assert!(tls_line(&toml, "b.test").ends_with(".key\", verify_client = \"optional_no_ca\" }"), "{toml}");
    let note = format!(
        "{conf}:2: note: ssl_crl {crl} is left out for the server at {conf}:4: portico checks revocation along a client's chain to client_ca",
        conf = conf.display(),
        crl = crl.display()
    );
    assert_noted_once(&notes, &[note]);
    Ok(())
}

#[test]
fn import_ssl_trusted_certificate_is_the_client_ca_where_there_is_no_ssl_client_certificate()
-> Result<(), Box<dyn Error>> {
    let tmp = TempDir::new("mtls-trusted");
    write_mtls_files(&tmp.0, &["a.test", "b.test", "c.test"])?;
    std::fs::copy(TestCert::new(&["other.test"]).ca_path(), tmp.0.join("ca/other.pem"))?;
    let conf = tmp.0.join("mtls.conf");
    let tls = "ssl_certificate a.crt; ssl_certificate_key a.key; location / { proxy_pass http://127.0.0.1:9000; }";
    std::fs::write(
        &conf,
        format!(
            "http {{
ssl_trusted_certificate ca/clients.pem;
server {{ listen 8443 ssl; server_name a.test; ssl_verify_client on; {tls} }}
server {{ listen 8443 ssl; server_name b.test; ssl_verify_client on; ssl_client_certificate ca/other.pem; {tls} }}
server {{ listen 8443 ssl; server_name c.test; ssl_verify_client optional; {tls} }}
}}
"
        ),
    )?;
    let (toml, notes) = import_valid(&conf, &tmp.0)?;
    let (trusted, other) = (tmp.0.join("ca/clients.pem"), tmp.0.join("ca/other.pem"));
    let with_ca =
        |mode: &str, ca: &Path| format!(".key\", verify_client = \"{mode}\", client_ca = \"{}\" }}", ca.display());
    // nginx (since 1.27.2) verifies against ssl_trusted_certificate alone when
    // there is no ssl_client_certificate; with one, against both (portico: the latter).
    assert!(tls_line(&toml, "a.test").ends_with(&with_ca("on", &trusted)), "{toml}");
    assert!(tls_line(&toml, "b.test").ends_with(&with_ca("on", &other)), "{toml}");
    assert!(tls_line(&toml, "c.test").ends_with(&with_ca("optional", &trusted)), "{toml}");
    let conf = conf.display();
    let used = |mode: &str, line: usize| {
        format!(
            "{conf}:2: note: ssl_trusted_certificate {} is the client_ca of the server at {conf}:{line}, which has ssl_verify_client {mode} and no ssl_client_certificate: portico sends the subjects of these CAs to clients in the handshake as the ones it accepts, where nginx sends none from ssl_trusted_certificate",
            trusted.display()
        )
    };
    assert_noted_once(
        &notes,
        &[
            used("on", 3),
            used("optional", 5),
            format!(
                "{conf}:2: directive \"ssl_trusted_certificate\" not translated: portico staples no OCSP responses"
            ),
        ],
    );
    assert!(!notes.contains("is left out"), "{notes}");
    Ok(())
}

#[test]
fn import_add_header_and_proxy_hide_header_become_response_headers() -> Result<(), Box<dyn Error>> {
    let tmp = TempDir::new("add-header");
    let conf = tmp.0.join("add-header.conf");
    std::fs::write(
        &conf,
        "http {
add_header Strict-Transport-Security \"max-age=63072000\" always;
server {
    listen 8080;
    server_name a.test;
    proxy_hide_header X-Powered-By;
    location / { proxy_pass http://127.0.0.1:9000; }
}
server {
    listen 8080;
    server_name b.test;
    add_header X-Frame-Options DENY;
    add_header X-Request $request_id always;
    location / { add_header X-Inner 1 always; proxy_pass http://127.0.0.1:9000; }
    location /api/ { proxy_hide_header X-Powered-By; proxy_pass http://127.0.0.1:9000; }
}
}
",
    )?;
    let (toml, notes) = import_valid(&conf, &tmp.0)?;
    // a.test inherits the http level's add_header and hides the upstream's header.
    let a = &toml[toml.find("server_name = [\"a.test\"]").unwrap_or_else(|| panic!("{toml}"))..];
    let a = &a[..a.find("\n[[server]]").unwrap_or(a.len())];
    assert!(
        a.contains(
            "[server.response_headers]\nX-Powered-By = \"\"  # nginx: proxy_hide_header\n\
             Strict-Transport-Security = \"max-age=63072000\"  # nginx: add_header\n"
        ),
        "{a}"
    );
    // b.test has add_header lines of its own, so, as in nginx, none of the http level's.
    let b = &toml[toml.find("server_name = [\"b.test\"]").unwrap_or_else(|| panic!("{toml}"))..];
    assert!(b.contains("[server.response_headers]\nX-Frame-Options = \"DENY\"  # nginx: add_header\n"), "{b}");
    assert!(!b.contains("Strict-Transport-Security"), "{b}");
    // Its location / has an add_header of its own: a table of its own that
    // replaces the server's for what it takes, so it is written out in full.
    assert!(
        b.contains(
            "[[server.location]]\nprefix = \"/\"\nproxy_pass = \"127.0.0.1:9000\"\n\
             [server.location.response_headers]\nX-Inner = \"1\"  # nginx: add_header\n"
        ),
        "{b}"
    );
    assert!(
        a.contains("proxy_pass = \"127.0.0.1:9000\"  # nginx: location /"),
        "a.test's location / has no lines of its own: {a}"
    );
    // /api/ hides a header of its own and keeps the server's add_header lines,
    // as nginx inherits each kind apart.
    assert!(
        b.contains(
            "prefix = \"/api/\"\nproxy_pass = \"127.0.0.1:9000\"\n[server.location.response_headers]\n\
             X-Powered-By = \"\"  # nginx: proxy_hide_header\nX-Frame-Options = \"DENY\"  # nginx: add_header\n"
        ),
        "{b}"
    );
    let conf = conf.display();
    assert_noted_once(
        &notes,
        &[
            format!(
                "{conf}:12: note: add_header X-Frame-Options: portico sets it on every response the server sends, as nginx's add_header ... always"
            ),
            format!(
                "{conf}:13: directive \"add_header\" not translated: portico's response headers are literal text, without variables"
            ),
        ],
    );
    assert!(!notes.contains(&format!("{conf}:14:")), "{notes}");
    Ok(())
}

#[test]
fn import_health_check_becomes_the_upstreams_health_check() -> Result<(), Box<dyn Error>> {
    let tmp = TempDir::new("health-check");
    let conf = tmp.0.join("health-check.conf");
    std::fs::write(
        &conf,
        "http {
match am_ok {
    status ! 500;
    header Content-Type = application/json;
    body ~ \"Version\";
}
upstream am { zone am 64k; server 127.0.0.1:9443; server 127.0.0.1:9444; }
upstream gw { zone gw 64k; server 127.0.0.1:8243; }
server {
    listen 8080;
    location / {
        proxy_pass https://am;
        health_check uri=/services/Version interval=10 fails=3 passes=2 port=9763 mandatory persistent match=am_ok jitter=1s;
    }
    location /gw {
        proxy_pass http://gw;
        health_check;
    }
}
}
",
    )?;
    let (toml, notes) = import_valid(&conf, &tmp.0)?;
    let conf = conf.display();
    assert_eq!(
        upstream_table(&toml, "am.health_check"),
        format!(
            "[upstream.am.health_check]  # nginx: health_check, {conf}:13\n\
             uri = \"/services/Version\"\n\
             interval = \"10s\"\n\
             fails = 3\n\
             passes = 2\n\
             port = 9763\n\
             status = \"100-499, 501-599\"  # nginx: match am_ok\n\
             body = \"Version\"  # nginx: match am_ok\n\
             mandatory = true"
        )
    );
    // NGINX Plus's defaults are portico's: a bare health_check is GET / every 5s.
    assert_eq!(
        upstream_table(&toml, "gw.health_check"),
        format!("[upstream.gw.health_check]  # nginx: health_check, {conf}:17\nuri = \"/\"\ninterval = \"5s\"")
    );
    assert_noted_once(
        &notes,
        &[
            format!(
                "{conf}:4: directive \"header\" not translated: portico's health checks test the status and a text in the body, not headers"
            ),
            format!(
                "{conf}:13: note: health_check parameter \"jitter=1s\" is not translated: portico checks each server every interval, without a random delay"
            ),
        ],
    );
    // persistent is what portico does anyway; match and health_check are consumed.
    assert!(
        !notes.contains("persistent") && !notes.contains("\"match\"") && !notes.contains("\"health_check\""),
        "{notes}"
    );
    Ok(())
}

/// A match block's `body ~` line whose regular expression is a plain text
/// (escapes such as `\.` taken as the character) is portico's `body`; other
/// body tests are left out, each named.
#[test]
fn import_match_body_becomes_the_checks_body() -> Result<(), Box<dyn Error>> {
    let tmp = TempDir::new("health-check-body");
    let conf = tmp.0.join("health-check-body.conf");
    std::fs::write(
        &conf,
        r#"http {
match literal {
    status 200;
    body ~ "\"status\": ?\"UP\"";
    body ~ "\"version\":\"4\.2\.0\"";
}
match plain { body ~ "\"version\":\"4\.2\.0\""; body ~ "\"status\":\"UP\""; }
match regex {
    body ~ "UP|OK";
    body !~ "maintenance";
}
upstream am { zone am 64k; server 127.0.0.1:9443; }
upstream gw { zone gw 64k; server 127.0.0.1:8243; }
upstream km { zone km 64k; server 127.0.0.1:9444; }
server {
    listen 8080;
    location / { proxy_pass http://am; health_check match=literal; }
    location /gw { proxy_pass http://gw; health_check match=plain; }
    location /km { proxy_pass http://km; health_check match=regex; }
}
}
"#,
    )?;
    let (toml, notes) = import_valid(&conf, &tmp.0)?;
    let conf = conf.display();
    // The regex on line 4 is not a text; line 5's is, with its dots escaped.
    assert_eq!(
        upstream_table(&toml, "am.health_check"),
        format!(
            "[upstream.am.health_check]  # nginx: health_check, {conf}:17\n\
             uri = \"/\"\n\
             interval = \"5s\"\n\
             status = \"200\"  # nginx: match literal\n\
             body = \"\\\"version\\\":\\\"4.2.0\\\"\"  # nginx: match literal"
        )
    );
    // portico looks for one text: the first.
    assert!(
        upstream_table(&toml, "gw.health_check")
            .contains("body = \"\\\"version\\\":\\\"4.2.0\\\"\"  # nginx: match plain"),
        "{toml}"
    );
    let km = upstream_table(&toml, "km.health_check");
    assert!(km.contains("status = \"100-599\"  # nginx: match regex") && !km.contains("\nbody = "), "{km}");
    let left_out = |line: usize, why: &str| format!("{conf}:{line}: directive \"body\" not translated: {why}");
    assert_noted_once(
        &notes,
        &[
            left_out(
                4,
                "portico's health checks look for a literal text in the body (body = \"...\"), and this regular expression is not one",
            ),
            left_out(
                7,
                "portico's health checks look for one text in the body, and an earlier body line of this match block is it",
            ),
            left_out(
                9,
                "portico's health checks look for a literal text in the body (body = \"...\"), and this regular expression is not one",
            ),
            left_out(
                10,
                "portico's health checks look for a text the body contains (body = \"...\"), not one it lacks",
            ),
        ],
    );
    Ok(())
}

#[test]
fn import_notes_health_checks_it_leaves_out() -> Result<(), Box<dyn Error>> {
    let tmp = TempDir::new("health-check-notes");
    let conf = tmp.0.join("health-check.conf");
    std::fs::write(
        &conf,
        "http {
match ok { status 200-399; }
match never { status 200; status 204; }
upstream am { zone am 64k; server 127.0.0.1:9443; }
upstream gw { zone gw 64k; server 127.0.0.1:8243; }
upstream grpc { zone grpc 64k; server 127.0.0.1:50051; }
server {
    listen 8080;
    health_check;
    location / {
        proxy_pass http://am;
        health_check uri=/health mandatory keepalive_time=60s;
    }
    location /again { proxy_pass http://am; health_check uri=/other; }
    location /direct { proxy_pass http://127.0.0.1:9000; health_check; }
    location /gw {
        proxy_pass http://gw;
        health_check port=65536 uri=/health;
        health_check uri=health;
        health_check match=missing;
        health_check match=never;
    }
    location /grpc { proxy_pass http://grpc; health_check type=grpc grpc_service=api; }
}
}
",
    )?;
    let (toml, notes) = import_valid(&conf, &tmp.0)?;
    let conf = conf.display();
    // The first check of am is kept; gw and grpc get none.
    assert_eq!(
        upstream_table(&toml, "am.health_check"),
        format!(
            "[upstream.am.health_check]  # nginx: health_check, {conf}:12\nuri = \"/health\"\ninterval = \"5s\"\nmandatory = true"
        )
    );
    assert_eq!(toml.matches("health_check]").count(), 1, "{toml}");
    let left_out = |line: usize, why: &str| format!("{conf}:{line}: directive \"health_check\" not translated: {why}");
    assert_noted_once(
        &notes,
        &[
            format!("{conf}:2: directive \"match\" not translated: no health_check translated here names it"),
            left_out(9, "NGINX Plus takes it in a location that proxies to an upstream block"),
            format!(
                "{conf}:12: note: health_check parameter \"keepalive_time=60s\" is not translated: portico opens a connection for each check"
            ),
            format!(
                "{conf}:12: note: health_check mandatory without persistent: portico keeps each server's verdict across a reload"
            ),
            format!(
                "{conf}:14: note: health_check is left out: upstream am has the one at {conf}:12, with other settings, and portico runs one check per upstream"
            ),
            left_out(
                15,
                "NGINX Plus checks the servers of an upstream block that the location's proxy_pass names, and this location names none",
            ),
            left_out(18, "port=65536 is not a valid value"),
            left_out(19, "uri=health is not a valid value"),
            left_out(20, "match=missing: there is no match block of that name"),
            left_out(21, "match never: its status lines let no status pass"),
            left_out(23, "type=grpc: portico checks with an HTTP/1.1 GET, which a gRPC server need not answer"),
        ],
    );
    assert!(!notes.contains("grpc_service"), "{notes}");
    Ok(())
}

#[test]
fn import_upstream_block_after_the_server_naming_it() -> Result<(), Box<dyn Error>> {
    let tmp = TempDir::new("upstream-after");
    let conf = tmp.0.join("upstream-after.conf");
    std::fs::write(
        &conf,
        "http {
server { listen 8080; location / { proxy_pass http://am; health_check uri=/health; } }
upstream am { zone am 64k; server 127.0.0.1:9443; }
}
",
    )?;
    let (toml, notes) = import_valid(&conf, &tmp.0)?;
    // As in nginx: the block, not an upstream made for a host named am.
    assert!(toml.contains("proxy_pass = \"am\""), "{toml}");
    assert!(!toml.contains("am:80") && !toml.contains("no proxy_pass names this upstream"), "{toml}");
    assert!(upstream_table(&toml, "am.health_check").contains("uri = \"/health\""), "{toml}");
    assert!(!notes.contains("not translated"), "{notes}");
    Ok(())
}

#[test]
fn import_drain_marks_the_upstream_server_draining() -> Result<(), Box<dyn Error>> {
    let tmp = TempDir::new("drain");
    let conf = tmp.0.join("drain.conf");
    std::fs::write(
        &conf,
        "upstream am {
    zone am 64k;
    server 127.0.0.1:9443;
    server 127.0.0.1:9444 drain;
    server 127.0.0.1:9445 drain down;
    sticky learn create=$upstream_cookie_jsessionid lookup=$cookie_jsessionid zone=client_sessions:1m;
}
server { listen 8080; location / { proxy_pass http://am; } }
",
    )?;
    let (toml, notes) = import_valid(&conf, &tmp.0)?;
    assert!(
        upstream_table(&toml, "am").contains(
            "servers = [\n  \
             { address = \"127.0.0.1:9443\" },\n  \
             { address = \"127.0.0.1:9444\", drain = true },\n  \
             { address = \"127.0.0.1:9445\", down = true },\n]"
        ),
        "{toml}"
    );
    // portico refuses drain with down; NGINX Plus lets down win.
    assert_noted_once(
        &notes,
        &[format!(
            "{}:5: note: server parameter \"drain\" is left out: the server is also down, which NGINX Plus lets win",
            conf.display()
        )],
    );
    assert!(!notes.contains(":4:"), "{notes}");
    Ok(())
}

/// The `[[server]]` of an imported `toml` that listens on `port` alone, with
/// its locations, up to the next server.
fn server_table(toml: &str, port: &str) -> String {
    let at = toml.find(&format!("listen = [\"{port}\"]")).unwrap_or_else(|| panic!("{port}:\n{toml}"));
    let rest = &toml[at..];
    rest[..rest.find("[[server]]").unwrap_or(rest.len())].trim_end().to_owned()
}

#[test]
fn import_allow_deny_become_the_servers_and_locations_lists() -> Result<(), Box<dyn Error>> {
    let tmp = TempDir::new("access");
    let conf = tmp.0.join("access.conf");
    std::fs::write(
        &conf,
        "http {
allow 10.0.0.0/8;
allow 192.168.1.7;
deny all;
upstream am { server 127.0.0.1:9443; }
server {
    listen 8080;
    location / { proxy_pass http://am; }
    location /carbon/ {
        deny 10.9.9.9;
        allow 10.0.0.0/8;
        deny all;
        proxy_pass http://am;
    }
    location /public/ { allow all; proxy_pass http://am; }
}
server {
    listen 8081;
    deny 10.9.9.9;
    deny 2001:db8::/32;
    allow all;
    location / { proxy_pass http://am; }
}
server { listen 8082; deny all; location / { proxy_pass http://am; } }
}
",
    )?;
    let (toml, notes) = import_valid(&conf, &tmp.0)?;
    // The http level's lines are the server's; its location / inherits them, as in nginx.
    assert_eq!(
        server_table(&toml, "8080"),
        "listen = [\"8080\"]
allow = [\"10.0.0.0/8\", \"192.168.1.7\"]

[[server.location]]
prefix = \"/\"
proxy_pass = \"am\"

[[server.location]]
prefix = \"/carbon/\"
proxy_pass = \"am\"
allow = [\"10.0.0.0/8\"]
deny = [\"10.9.9.9\"]

[[server.location]]
prefix = \"/public/\"
proxy_pass = \"am\"
allow = [\"all\"]"
    );
    // A server's own lines replace the http level's.
    assert_eq!(
        server_table(&toml, "8081"),
        "listen = [\"8081\"]\nproxy_pass = \"am\"  # nginx: location / { proxy_pass ... }\ndeny = [\"10.9.9.9\", \"2001:db8::/32\"]"
    );
    assert!(server_table(&toml, "8082").ends_with("\ndeny = [\"all\"]"), "{toml}");
    assert!(!server_table(&toml, "8082").contains("allow"), "{toml}");
    assert!(!notes.contains("allow") && !notes.contains("deny"), "{notes}");
    Ok(())
}

#[test]
fn import_notes_allow_deny_orders_portico_cannot_express() -> Result<(), Box<dyn Error>> {
    let tmp = TempDir::new("access-notes");
    let conf = tmp.0.join("access.conf");
    std::fs::write(
        &conf,
        "http {
allow 10.1.1.1;
deny 10.0.0.0/8;
upstream am { server 127.0.0.1:9443; }
server {
    listen 8080;
    location / { proxy_pass http://am; }
    location /x/ { deny 10.1.0.0/16; allow 10.0.0.0/8; deny all; proxy_pass http://am; }
    location /y/ { allow 10.1.1.1; deny 10.1.0.0/16; proxy_pass http://am; }
}
server { listen 8081; location / { proxy_pass http://am; } }
server {
    listen 8082;
    allow 10.0.0.0/8;
    deny all;
    location / { proxy_pass http://am; }
    location /odd/ {
        allow 10.1.1.1;
        deny 10.1.0.0/16;
        allow 10.0.0.0/8;
        deny all;
        proxy_pass http://am;
    }
    location /sock/ { allow unix:; proxy_pass http://am; }
    location /old/ { return 301 https://example.com$request_uri; }
    location /gone/ { return 403; }
}
}
",
    )?;
    let (toml, notes) = import_valid(&conf, &tmp.0)?;
    let conf = conf.display();
    let not_translated = |line: usize, why: &str, open: &str| {
        format!(
            "{conf}:{line}: note: allow/deny here is NOT translated: {why}, which portico's allow/deny cannot express (it refuses the clients deny lists, then, when allow lists any, all others); {open} until you write allow/deny by hand"
        )
    };
    assert_noted_once(
        &notes,
        &[
            // Once, though both servers inherit the lines.
            not_translated(
                2,
                "allow 10.1.1.1 (line 2) lets in part of deny 10.0.0.0/8 (line 3) after it",
                "the servers inheriting them answer every client",
            ),
            not_translated(
                9,
                "allow 10.1.1.1 (line 9) lets in part of deny 10.1.0.0/16 (line 9) after it",
                "the location answers every client",
            ),
            not_translated(
                18,
                "allow 10.1.1.1 (line 18) lets in part of deny 10.1.0.0/16 (line 19) after it, which keeps out part of allow 10.0.0.0/8 (line 20) after that",
                "the location takes the server's allow/deny instead",
            ),
            format!(
                "{conf}:24: directive \"allow\" not translated: portico listens on TCP only, where the line matches no client"
            ),
            format!(
                "{conf}:25: note: allow/deny refuse clients this redirect or return would answer: nginx answers return and rewrite before it checks allow/deny, so there every client gets the answer"
            ),
        ],
    );
    // A return 403 answers the refused clients alike.
    assert!(!notes.contains(&format!("{conf}:26:")), "{notes}");
    // The servers inheriting untranslated lines, and such a location, have no
    // lists; a location's own that portico can say are kept.
    assert_eq!(
        server_table(&toml, "8080"),
        "listen = [\"8080\"]

[[server.location]]
prefix = \"/\"
proxy_pass = \"am\"

[[server.location]]
prefix = \"/x/\"
proxy_pass = \"am\"
allow = [\"10.0.0.0/8\"]
deny = [\"10.1.0.0/16\"]

[[server.location]]
prefix = \"/y/\"
proxy_pass = \"am\""
    );
    assert!(!server_table(&toml, "8081").contains("allow") && !server_table(&toml, "8081").contains("deny"));
    let server = server_table(&toml, "8082");
    assert!(server.starts_with("listen = [\"8082\"]\nallow = [\"10.0.0.0/8\"]\n"), "{toml}");
    assert!(server.contains("prefix = \"/odd/\"\nproxy_pass = \"am\"\n\n"), "{toml}");
    // A unix: line is still the location's own: it inherits none of the server's.
    assert!(server.contains("prefix = \"/sock/\"\nproxy_pass = \"am\"\nallow = [\"all\"]"), "{toml}");
    assert_eq!(server.matches("allow =").count(), 2, "{toml}");
    assert!(!server.contains("deny"), "{toml}");
    Ok(())
}

#[test]
fn import_limit_req_zone_keyed_by_a_query_argument_or_the_path() -> Result<(), Box<dyn Error>> {
    let tmp = TempDir::new("limit-arg");
    let conf = tmp.0.join("limit.conf");
    std::fs::write(
        &conf,
        "http {
limit_req_zone $arg_api_key zone=keyed:10m rate=10r/s;
limit_req_zone $uri zone=per_path:1m rate=100r/s;
upstream am { server 127.0.0.1:9443; }
server { listen 8080; limit_req zone=keyed; limit_req zone=per_path; location / { proxy_pass http://am; } }
}
",
    )?;
    let (toml, notes) = import_valid(&conf, &tmp.0)?;
    let conf = conf.display();
    assert!(
        toml.contains(&format!(
            "[limit_req.keyed]  # nginx: {conf}:2\nkey = \"$arg_api_key\"\nrate = \"10r/s\"\nsize = \"10m\"\n\n\
             [limit_req.per_path]  # nginx: {conf}:3\nkey = \"$uri\"\n"
        )),
        "{toml}"
    );
    assert!(!notes.contains("limit_req_zone"), "{notes}");
    Ok(())
}

#[test]
fn import_limit_req_zone_becomes_a_limit_req_table() -> Result<(), Box<dyn Error>> {
    let tmp = TempDir::new("limit-zone");
    let conf = tmp.0.join("limit.conf");
    std::fs::write(
        &conf,
        "http {
limit_req_zone $binary_remote_addr zone=per_client:10m rate=10r/s;
limit_req_zone $remote_addr zone=slow:1m rate=30r/m sync;
limit_req_zone $binary_remote_addr zone=bare:64k rate=5;
limit_req_zone $geoip_country_code zone=per_uri:10m rate=100r/s;
limit_req_zone $binary_remote_addr zone=hourly:10m rate=10r/h;
limit_req_zone $binary_remote_addr zone=per_client:1m rate=1r/s;
limit_conn_zone $binary_remote_addr zone=conns:10m;
upstream am { server 127.0.0.1:9443; }
server { listen 8080; location / { proxy_pass http://am; } }
}
",
    )?;
    let (toml, notes) = import_valid(&conf, &tmp.0)?;
    let conf = conf.display();
    // Near the upstreams, before the servers; a bare count is per second, as nginx reads it.
    let zones = format!(
        "[limit_req.per_client]  # nginx: {conf}:2
rate = \"10r/s\"
size = \"10m\"

[limit_req.slow]  # nginx: {conf}:3
rate = \"30r/m\"
size = \"1m\"

[limit_req.bare]  # nginx: {conf}:4
rate = \"5r/s\"
size = \"64k\"

[[server]]"
    );
    assert!(toml.contains(&zones), "{toml}");
    assert!(toml.find("[upstream.am]") < toml.find("[limit_req."), "{toml}");
    assert_noted_once(
        &notes,
        &[
            format!(
                "{conf}:3: note: limit_req_zone slow: sync (NGINX Plus zone_sync) is not translated: portico's zones are per node, each counting the requests it takes"
            ),
            format!(
                "{conf}:5: directive \"limit_req_zone\" not translated: the key $geoip_country_code: unknown variable `$geoip_country_code` ({KNOWN})"
            ),
            format!(
                "{conf}:6: directive \"limit_req_zone\" not translated: rate=10r/h: expected Nr/s or Nr/m, N a whole number above 0"
            ),
            format!("{conf}:7: directive \"limit_req_zone\" not translated: a second limit_req_zone of the same name"),
            format!(
                "{conf}:8: directive \"limit_conn_zone\" not translated: portico does not limit connections per key; [runtime] max_connections bounds them all"
            ),
        ],
    );
    assert!(!toml.contains("per_uri") && !toml.contains("hourly"), "{toml}");
    Ok(())
}

/// The variables a template knows, as the importer's notes name them.
const KNOWN: &str = "known: $host, $http_host, $remote_addr, $remote_port, $scheme, $server_port, $server_name, $request_uri, $proxy_add_x_forwarded_for, $ssl_client_escaped_cert, $ssl_client_verify, $ssl_client_s_dn, $ssl_client_i_dn, $ssl_client_serial, $ssl_client_fingerprint, $ssl_protocol, $ssl_cipher, $request_id, $msec, $request_method, $uri, $args, $query_string, $server_protocol, $server_addr, $connection, $pid, $hostname, $http_NAME, $cookie_NAME, $arg_NAME";

#[test]
fn import_limit_req_zone_keys_and_several_lines_per_level() -> Result<(), Box<dyn Error>> {
    let tmp = TempDir::new("limit-keys");
    let conf = tmp.0.join("limit.conf");
    std::fs::write(
        &conf,
        "http {
limit_req_zone $binary_remote_addr zone=per_client:10m rate=10r/s;
limit_req_zone $http_x_api_key zone=per_key:10m rate=100r/s;
limit_req_zone \"$binary_remote_addr:${cookie_session}\" zone=per_session:1m rate=1r/s;
limit_req_zone $server_name zone=per_host:1m rate=1000r/s;
limit_req_zone $binary_remote_addr$ssl_session_id zone=per_token:1m rate=1r/s;
upstream am { server 127.0.0.1:9443; }
server {
    listen 8080;
    limit_req zone=per_client burst=20;
    limit_req zone=per_key burst=100 nodelay;
    limit_req_status 429;
    location / { proxy_pass http://am; }
    location /token {
        limit_req zone=per_session;
        limit_req zone=per_host burst=5;
        limit_req zone=per_session burst=1;
        proxy_pass http://am;
    }
}
}
",
    )?;
    let (toml, notes) = import_valid(&conf, &tmp.0)?;
    let conf = conf.display();
    // The client address is portico's default key; any other key of
    // variables portico has is written as is, $binary_remote_addr inside it
    // as $remote_addr.
    let zones = format!(
        "[limit_req.per_client]  # nginx: {conf}:2
rate = \"10r/s\"
size = \"10m\"

[limit_req.per_key]  # nginx: {conf}:3
key = \"$http_x_api_key\"
rate = \"100r/s\"
size = \"10m\"

[limit_req.per_session]  # nginx: {conf}:4
key = \"$remote_addr:${{cookie_session}}\"
rate = \"1r/s\"
size = \"1m\"

[limit_req.per_host]  # nginx: {conf}:5
key = \"$server_name\"
rate = \"1000r/s\"
size = \"1m\"

[[server]]"
    );
    assert!(toml.contains(&zones), "{toml}");
    assert!(!toml.contains("per_token"), "{toml}");
    // Several lines on a level are all kept, as an array; a location's replace the server's.
    assert_eq!(
        server_table(&toml, "8080"),
        format!(
            "listen = [\"8080\"]
limit_req = [
  {{ zone = \"per_client\", burst = 20, status = 429 }},  # nginx: {conf}:10
  {{ zone = \"per_key\", burst = 100, nodelay = true, status = 429 }},  # nginx: {conf}:11
]

[[server.location]]
prefix = \"/\"
proxy_pass = \"am\"

[[server.location]]
prefix = \"/token\"
proxy_pass = \"am\"
limit_req = [
  {{ zone = \"per_session\", status = 429 }},  # nginx: {conf}:15
  {{ zone = \"per_host\", burst = 5, status = 429 }},  # nginx: {conf}:16
]"
        )
    );
    assert_noted_once(
        &notes,
        &[
            format!(
                "{conf}:6: directive \"limit_req_zone\" not translated: the key $binary_remote_addr$ssl_session_id: unknown variable `$ssl_session_id` ({KNOWN})"
            ),
            format!(
                "{conf}:17: directive \"limit_req\" not translated: zone per_session is limited at {conf}:15 already (nginx: \"is duplicate\")"
            ),
        ],
    );
    assert_eq!(notes.matches("limit_req").count(), 2, "{notes}");
    Ok(())
}

#[test]
fn import_limit_req_becomes_the_servers_and_locations_limit_req() -> Result<(), Box<dyn Error>> {
    let tmp = TempDir::new("limit-req");
    let conf = tmp.0.join("limit.conf");
    std::fs::write(
        &conf,
        "http {
limit_req_zone $binary_remote_addr zone=per_client:10m rate=10r/s;
limit_req_zone $binary_remote_addr zone=token:1m rate=30r/m;
limit_req zone=per_client burst=20;
limit_req_status 429;
upstream am { server 127.0.0.1:9443; }
server { listen 8080; location / { proxy_pass http://am; } }
server {
    listen 8081;
    limit_req zone=per_client burst=20 nodelay;
    limit_req_status 503;
    location / { proxy_pass http://am; }
    location /oauth2/token { limit_req zone=token burst=5 delay=2; proxy_pass http://am; }
    location /api/ { limit_req_status 429; proxy_pass http://am; }
}
server {
    listen 8082;
    location / { limit_req zone=token nodelay delay=3; proxy_pass http://am; }
}
}
",
    )?;
    let (toml, notes) = import_valid(&conf, &tmp.0)?;
    let conf = conf.display();
    // The http level's line and status go to each server without its own.
    assert_eq!(
        server_table(&toml, "8080"),
        format!(
            "listen = [\"8080\"]
proxy_pass = \"am\"  # nginx: location / {{ proxy_pass ... }}
limit_req = {{ zone = \"per_client\", burst = 20, status = 429 }}  # nginx: {conf}:4"
        )
    );
    // A location's own line replaces the server's; its own limit_req_status
    // alone applies the server's line with that status, as nginx inherits them apart.
    assert_eq!(
        server_table(&toml, "8081"),
        format!(
            "listen = [\"8081\"]
limit_req = {{ zone = \"per_client\", burst = 20, nodelay = true }}  # nginx: {conf}:10

[[server.location]]
prefix = \"/\"
proxy_pass = \"am\"

[[server.location]]
prefix = \"/oauth2/token\"
proxy_pass = \"am\"
limit_req = {{ zone = \"token\", burst = 5, delay = 2 }}  # nginx: {conf}:13

[[server.location]]
prefix = \"/api/\"
proxy_pass = \"am\"
limit_req = {{ zone = \"per_client\", burst = 20, nodelay = true, status = 429 }}  # nginx: {conf}:10"
        )
    );
    // A location / with a line of its own is written out in full; the later
    // of nodelay and delay wins, as in nginx.
    assert_eq!(
        server_table(&toml, "8082"),
        format!(
            "listen = [\"8082\"]
limit_req = {{ zone = \"per_client\", burst = 20, status = 429 }}  # nginx: {conf}:4

[[server.location]]
prefix = \"/\"
proxy_pass = \"am\"
limit_req = {{ zone = \"token\", delay = 3, status = 429 }}  # nginx: {conf}:18"
        )
    );
    assert!(!notes.contains("limit_req"), "{notes}");
    Ok(())
}

#[test]
fn import_notes_limit_req_lines_it_leaves_out() -> Result<(), Box<dyn Error>> {
    let tmp = TempDir::new("limit-req-notes");
    let conf = tmp.0.join("limit.conf");
    std::fs::write(
        &conf,
        "http {
limit_req_zone $binary_remote_addr zone=a:10m rate=10r/s;
limit_req_zone $binary_remote_addr zone=b:10m rate=1r/s;
limit_req_zone $jwt_claim_sub zone=keyed:10m rate=10r/s;
limit_req_zone $binary_remote_addr zone=hourly:10m rate=10r/h;
limit_req zone=a;
limit_req zone=b burst=5;
limit_req_log_level warn;
upstream am { server 127.0.0.1:9443; }
server { listen 8080; location / { proxy_pass http://am; } }
server { listen 8081; location / { proxy_pass http://am; } }
server {
    listen 8082;
    limit_req zone=keyed;
    limit_req zone=b burst=0;
    limit_req zone=nowhere;
    limit_req zone=hourly;
    limit_req_status 600;
    location / { proxy_pass http://am; }
}
server {
    listen 8083;
    location / { proxy_pass http://am; }
    location /old/ { return 301 https://example.com$request_uri; }
    location /keyed/ { limit_req zone=keyed; proxy_pass http://am; }
    location /dry/ { limit_req_dry_run on; proxy_pass http://am; }
}
server { listen 8084; return 301 https://example.com$request_uri; }
}
",
    )?;
    let (toml, notes) = import_valid(&conf, &tmp.0)?;
    let conf = conf.display();
    let not_translated = |line: usize, directive: &str, why: &str| {
        format!("{conf}:{line}: directive \"{directive}\" not translated: {why}")
    };
    let kept_for = |line: usize, prefix: &str, why: &str| {
        format!(
            "{conf}:{line}: note: location {prefix}: portico applies the server's limit_req (zones a, b) here too, having no way to turn it off for a location: {why}"
        )
    };
    assert_noted_once(
        &notes,
        &[
            format!(
                "{conf}:4: directive \"limit_req_zone\" not translated: the key $jwt_claim_sub: unknown variable `$jwt_claim_sub` ({KNOWN})"
            ),
            not_translated(
                8,
                "limit_req_log_level",
                "portico logs refused requests at error and delayed ones at warn, nginx's default",
            ),
            not_translated(14, "limit_req", &format!("the limit_req_zone of zone keyed ({conf}:4) is not translated")),
            not_translated(
                15,
                "limit_req",
                "burst=0: expected zone=NAME, burst=N, nodelay or delay=N, N a whole number above 0",
            ),
            not_translated(16, "limit_req", "no limit_req_zone defines zone nowhere"),
            not_translated(17, "limit_req", &format!("the limit_req_zone of zone hourly ({conf}:5) is not translated")),
            not_translated(18, "limit_req_status", "expected a status from 400 to 599"),
            kept_for(24, "/old/", "nginx answers its return or redirect before it counts a request"),
            not_translated(25, "limit_req", &format!("the limit_req_zone of zone keyed ({conf}:4) is not translated")),
            kept_for(25, "/keyed/", "nginx applies the location's own limit_req lines, which are not translated"),
            not_translated(
                26,
                "limit_req_dry_run",
                "portico has no dry run: the limit_req lines it covers are left out, since nginx only counts their requests",
            ),
            kept_for(26, "/dry/", "there, with limit_req_dry_run on, nginx only counts"),
        ],
    );
    // Every line of a level is kept (none is "left out"); a server whose own
    // lines all go has none.
    assert!(!notes.contains("one limit_req per"), "{notes}");
    let inherited = format!(
        "limit_req = [\n  {{ zone = \"a\" }},  # nginx: {conf}:6\n  {{ zone = \"b\", burst = 5 }},  # nginx: {conf}:7\n]"
    );
    for port in ["8080", "8081"] {
        assert!(server_table(&toml, port).ends_with(&inherited), "{toml}");
    }
    assert!(!server_table(&toml, "8082").contains("limit_req"), "{toml}");
    let server = server_table(&toml, "8083");
    assert!(server.starts_with(&format!("listen = [\"8083\"]\n{inherited}\n")), "{toml}");
    assert_eq!(server.matches("limit_req").count(), 1, "{toml}");
    // nginx answers a server's redirect before it counts: no limit_req, and nothing to say.
    assert!(!server_table(&toml, "8084").contains("limit_req"), "{toml}");
    assert!(!notes.contains(&format!("{conf}:28:")), "{notes}");
    Ok(())
}

#[test]
fn import_notes_that_nginx_counts_limit_req_before_allow_deny() -> Result<(), Box<dyn Error>> {
    let tmp = TempDir::new("limit-req-access");
    let conf = tmp.0.join("limit.conf");
    std::fs::write(
        &conf,
        "http {
limit_req_zone $binary_remote_addr zone=a:10m rate=10r/s;
upstream am { server 127.0.0.1:9443; }
server {
    listen 8080;
    limit_req zone=a;
    deny 10.9.9.9;
    location / { proxy_pass http://am; }
    location /open/ { allow all; proxy_pass http://am; }
    location /gone/ { return 410; }
}
server {
    listen 8081;
    location / { proxy_pass http://am; }
    location /admin/ { limit_req zone=a burst=5; allow 10.0.0.0/8; deny all; proxy_pass http://am; }
}
server {
    listen 8082;
    allow 10.0.0.0/8;
    deny all;
    location / { proxy_pass http://am; }
    location /api/ { limit_req zone=a; proxy_pass http://am; }
}
}
",
    )?;
    let (_, notes) = import_valid(&conf, &tmp.0)?;
    let conf = conf.display();
    let both = "note: limit_req and allow/deny both apply here: portico checks allow/deny first and counts only the clients it lets in, where nginx counts every request first (a refused client over the limit gets limit_req's status there, not 403)";
    // Once for each server or location that has either of its own and both in
    // effect: not where a location lets everyone in or answers before nginx counts.
    assert_noted_once(&notes, &[4, 15, 22].map(|line| format!("{conf}:{line}: {both}")));
    assert_eq!(notes.matches(both).count(), 3, "{notes}");
    Ok(())
}

#[test]
fn import_realip_becomes_the_runtime_client_address_keys() -> Result<(), Box<dyn Error>> {
    let tmp = TempDir::new("realip");
    let conf = tmp.0.join("realip.conf");
    std::fs::write(
        &conf,
        "http {
set_real_ip_from 10.0.0.0/8;
set_real_ip_from 192.0.2.1;
set_real_ip_from 10.0.0.0/8;
real_ip_header X-Forwarded-For;
real_ip_recursive on;
upstream am { server 127.0.0.1:9443; }
server { listen 8080; location / { proxy_pass http://am; } }
server { listen 8081; location / { proxy_pass http://am; } }
}
",
    )?;
    let (toml, notes) = import_valid(&conf, &tmp.0)?;
    let runtime = "trusted_proxies = [\"10.0.0.0/8\", \"192.0.2.1\"]  # nginx: set_real_ip_from
real_ip_header = \"X-Forwarded-For\"  # nginx: real_ip_header
real_ip_recursive = true  # nginx: real_ip_recursive on
";
    assert!(toml.contains(runtime), "{toml}");
    assert!(!notes.contains("real_ip"), "{notes}");
    Ok(())
}

#[test]
fn import_set_real_ip_from_alone_reads_x_real_ip_as_nginx_does() -> Result<(), Box<dyn Error>> {
    let tmp = TempDir::new("realip-default");
    let conf = tmp.0.join("realip.conf");
    std::fs::write(
        &conf,
        "server {
    listen 8080;
    set_real_ip_from 10.0.0.0/8;
    location / { proxy_pass http://127.0.0.1:9000; }
}
",
    )?;
    let (toml, notes) = import_valid(&conf, &tmp.0)?;
    assert!(
        toml.contains("trusted_proxies = [\"10.0.0.0/8\"]  # nginx: set_real_ip_from\nreal_ip_header = \"X-Real-IP\"  # nginx's default without real_ip_header\n"),
        "{toml}"
    );
    assert!(!toml.contains("real_ip_recursive"), "{toml}");
    let conf = conf.display();
    assert_noted_once(
        &notes,
        &[format!(
            "{conf}:3: note: set_real_ip_from without real_ip_header: nginx reads X-Real-IP, its default: real_ip_header = \"X-Real-IP\"\n"
        )],
    );
    Ok(())
}

#[test]
fn import_real_ip_header_and_recursive_are_one_for_every_server() -> Result<(), Box<dyn Error>> {
    let tmp = TempDir::new("realip-differ");
    let conf = tmp.0.join("realip.conf");
    std::fs::write(
        &conf,
        "http {
set_real_ip_from 10.0.0.0/8;
upstream am { server 127.0.0.1:9443; }
server { listen 8080; real_ip_header X-Forwarded-For; real_ip_recursive on; location / { proxy_pass http://am; } }
server { listen 8081; real_ip_header CF-Connecting-IP; location / { proxy_pass http://am; } }
server { listen 8082; location / { proxy_pass http://am; } }
server { listen 8083; real_ip_header x-forwarded-for; real_ip_recursive on; location / { proxy_pass http://am; } }
}
",
    )?;
    let (toml, notes) = import_valid(&conf, &tmp.0)?;
    // The first line written is kept; nginx's default (8082) is no line written.
    assert!(
        toml.contains("real_ip_header = \"X-Forwarded-For\"  # nginx: real_ip_header\nreal_ip_recursive = true"),
        "{toml}"
    );
    let conf = conf.display();
    let kept_header = format!("portico reads one header for every server, X-Forwarded-For ({conf}:4)");
    let kept_recursive = format!("portico has one for every server, on ({conf}:4)");
    assert_noted_once(
        &notes,
        &[
            format!("{conf}:5: note: real_ip_header CF-Connecting-IP: {kept_header}\n"),
            format!("{conf}:5: note: real_ip_recursive is off here: {kept_recursive}\n"),
            format!(
                "{conf}:6: note: set_real_ip_from without real_ip_header: nginx reads X-Real-IP here, its default; {kept_header}\n"
            ),
            format!("{conf}:6: note: real_ip_recursive is off here: {kept_recursive}\n"),
        ],
    );
    assert!(!notes.contains(&format!("{conf}:7: note: real_ip")), "{notes}");
    Ok(())
}

#[test]
fn import_set_real_ip_from_per_server_becomes_their_union() -> Result<(), Box<dyn Error>> {
    let tmp = TempDir::new("realip-union");
    let conf = tmp.0.join("realip.conf");
    std::fs::write(
        &conf,
        "http {
set_real_ip_from 10.0.0.0/8;
real_ip_header X-Forwarded-For;
upstream am { server 127.0.0.1:9443; }
server { listen 8080; location / { proxy_pass http://am; } }
server { listen 8081; set_real_ip_from 192.0.2.1; location / { proxy_pass http://am; } }
server {
    listen 8082;
    location / { proxy_pass http://am; }
    location /lb/ { set_real_ip_from 2001:db8::/32; proxy_pass http://am; }
}
server { listen 8083; set_real_ip_from unix:; location / { proxy_pass http://am; } }
}
",
    )?;
    let (toml, notes) = import_valid(&conf, &tmp.0)?;
    assert!(
        toml.contains(
            "trusted_proxies = [\"10.0.0.0/8\", \"192.0.2.1\", \"2001:db8::/32\"]  # nginx: set_real_ip_from\n"
        ),
        "{toml}"
    );
    let conf = conf.display();
    let union = "portico's [runtime] trusted_proxies is one list for every server, so it trusts 10.0.0.0/8, 192.0.2.1, 2001:db8::/32 here too";
    assert_noted_once(
        &notes,
        &[
            format!("{conf}:5: note: set_real_ip_from: nginx trusts only 10.0.0.0/8 here; {union}\n"),
            format!("{conf}:6: note: set_real_ip_from: nginx trusts only 192.0.2.1 here; {union}\n"),
            format!("{conf}:7: note: set_real_ip_from: nginx trusts only 10.0.0.0/8 here; {union}\n"),
            format!("{conf}:10: note: set_real_ip_from: nginx trusts only 2001:db8::/32 here; {union}\n"),
            format!("{conf}:12: note: set_real_ip_from: nginx trusts no proxy here; {union}\n"),
        ],
    );
    assert_eq!(notes.matches("note: set_real_ip_from:").count(), 5, "{notes}");
    Ok(())
}

#[test]
fn import_notes_set_real_ip_from_it_cannot_trust() -> Result<(), Box<dyn Error>> {
    let tmp = TempDir::new("realip-unix");
    let conf = tmp.0.join("realip.conf");
    std::fs::write(
        &conf,
        "server {
    listen 8080;
    set_real_ip_from unix:;
    set_real_ip_from lb.example.com;
    set_real_ip_from 10.0.0.0/33;
    real_ip_header X-Forwarded-For;
    location / { proxy_pass http://127.0.0.1:9000; }
}
",
    )?;
    let (toml, notes) = import_valid(&conf, &tmp.0)?;
    assert!(!toml.contains("trusted_proxies") && !toml.contains("real_ip"), "{toml}");
    let conf = conf.display();
    let cidr = "portico's trusted_proxies takes a CIDR such as 10.0.0.0/8 or an IP address";
    assert_noted_once(
        &notes,
        &[
            format!(
                "{conf}:3: directive \"set_real_ip_from\" not translated: portico listens on TCP only, where no client comes from a UNIX socket\n"
            ),
            format!("{conf}:4: directive \"set_real_ip_from\" not translated: {cidr}\n"),
            format!("{conf}:5: directive \"set_real_ip_from\" not translated: {cidr}\n"),
            format!(
                "{conf}:6: directive \"real_ip_header\" not translated: no set_real_ip_from address is in effect, so nginx believes no proxy's header\n"
            ),
        ],
    );
    Ok(())
}

#[test]
fn import_listen_proxy_protocol_becomes_the_servers_proxy_protocol() -> Result<(), Box<dyn Error>> {
    let tmp = TempDir::new("proxy-protocol");
    write_mtls_files(&tmp.0, &["a.test"])?;
    let conf = tmp.0.join("pp.conf");
    std::fs::write(
        &conf,
        "http {
upstream am { server 127.0.0.1:9443; }
server {
    listen 443 ssl proxy_protocol;
    server_name a.test;
    ssl_certificate a.crt;
    ssl_certificate_key a.key;
    set_real_ip_from 10.1.0.0/16;
    real_ip_header proxy_protocol;
    location / { proxy_pass http://am; }
}
}
",
    )?;
    let (toml, notes) = import_valid(&conf, &tmp.0)?;
    assert!(toml.contains("trusted_proxies = [\"10.1.0.0/16\"]"), "{toml}");
    assert!(toml.contains("\nproxy_protocol = true  # nginx: listen ... proxy_protocol\n"), "{toml}");
    // The PROXY header is no header portico reads: the server's proxy_protocol covers it.
    assert!(!toml.contains("real_ip_header") && !toml.contains("real_ip_recursive"), "{toml}");
    assert!(!notes.contains("proxy_protocol") && !notes.contains("real_ip"), "{notes}");
    Ok(())
}

#[test]
fn import_listen_proxy_protocol_without_realip() -> Result<(), Box<dyn Error>> {
    let tmp = TempDir::new("proxy-protocol-untrusted");
    let conf = tmp.0.join("pp.conf");
    std::fs::write(
        &conf,
        "server {
    listen 8080 proxy_protocol;
    location / { proxy_pass http://127.0.0.1:9000; }
}
",
    )?;
    // Without set_real_ip_from, portico has no balancer to trust: commented out, so that it still validates.
    let (toml, notes) = import_valid(&conf, &tmp.0)?;
    assert!(
        toml.contains("\n# proxy_protocol = true  # needs [runtime] trusted_proxies: the balancers' addresses\n"),
        "{toml}"
    );
    assert!(!toml.contains("\nproxy_protocol"), "{toml}");
    let at = conf.display();
    assert_noted_once(
        &notes,
        &[format!(
            "{at}:1: note: listen ... proxy_protocol: proxy_protocol = true is written commented out: portico needs [runtime] trusted_proxies listing the balancers (nginx: set_real_ip_from) to take their PROXY headers; add them and uncomment it\n"
        )],
    );

    // With set_real_ip_from but not real_ip_header proxy_protocol, nginx kept
    // the balancer's address; portico takes the client's.
    std::fs::write(
        &conf,
        "server {
    listen 8080 proxy_protocol;
    set_real_ip_from 10.1.0.0/16;
    real_ip_header X-Forwarded-For;
    location / { proxy_pass http://127.0.0.1:9000; }
}
",
    )?;
    let (toml, notes) = import_valid(&conf, &tmp.0)?;
    assert!(toml.contains("\nproxy_protocol = true  # nginx: listen ... proxy_protocol\n"), "{toml}");
    assert!(toml.contains("real_ip_header = \"X-Forwarded-For\""), "{toml}");
    assert_noted_once(
        &notes,
        &[format!(
            "{at}:1: note: listen ... proxy_protocol without set_real_ip_from and real_ip_header proxy_protocol: nginx keeps the balancer's address in $remote_addr, portico takes the PROXY header's client address from a trusted balancer (logs, allow/deny, limit_req and ip_hash now see clients)\n"
        )],
    );

    // real_ip_header proxy_protocol where no listen has proxy_protocol: nginx takes no address from it.
    std::fs::write(
        &conf,
        "server {
    listen 8080;
    set_real_ip_from 10.1.0.0/16;
    real_ip_header proxy_protocol;
    location / { proxy_pass http://127.0.0.1:9000; }
}
",
    )?;
    let (toml, notes) = import_valid(&conf, &tmp.0)?;
    assert!(!toml.contains("proxy_protocol") && !toml.contains("real_ip_header"), "{toml}");
    assert_noted_once(
        &notes,
        &[format!(
            "{at}:4: note: real_ip_header proxy_protocol: no server it applies to has listen ... proxy_protocol, so nginx takes no address from it here either\n"
        )],
    );
    Ok(())
}

#[test]
fn import_proxy_protocol_on_some_listens_of_a_server() -> Result<(), Box<dyn Error>> {
    let tmp = TempDir::new("proxy-protocol-mixed");
    write_mtls_files(&tmp.0, &["a.test"])?;
    let conf = tmp.0.join("pp.conf");
    std::fs::write(
        &conf,
        "http {
set_real_ip_from 10.1.0.0/16;
real_ip_header proxy_protocol;
upstream am { server 127.0.0.1:9443; }
server {
    listen 8080 proxy_protocol;
    listen 8081;
    location / { proxy_pass http://am; }
}
server {
    listen 8090;
    listen 8443 ssl proxy_protocol;
    ssl_certificate a.crt;
    ssl_certificate_key a.key;
    location / { proxy_pass http://am; }
}
}
",
    )?;
    let (toml, notes) = import_valid(&conf, &tmp.0)?;
    let conf = conf.display();
    assert!(!server_table(&toml, "8080\", \"8081").contains("proxy_protocol"), "{toml}");
    assert_noted_once(
        &notes,
        &[format!(
            "{conf}:5: note: proxy_protocol is NOT translated: nginx expects a PROXY protocol header on listen 8080 ({conf}:6) but not on 8081 ({conf}:7), and portico's proxy_protocol is per server: split this server into two [[server]] blocks, with proxy_protocol = true on the first\n"
        )],
    );
    // A server the importer splits into its plain and TLS listens gets it where all are marked.
    assert!(!server_table(&toml, "8090").contains("proxy_protocol"), "{toml}");
    assert!(server_table(&toml, "8443").contains("\nproxy_protocol = true"), "{toml}");
    assert_eq!(notes.lines().filter(|l| l.contains("proxy_protocol")).count(), 1, "{notes}");
    Ok(())
}

#[test]
fn import_proxy_protocol_applies_to_every_server_on_the_address() -> Result<(), Box<dyn Error>> {
    let tmp = TempDir::new("proxy-protocol-address");
    let conf = tmp.0.join("pp.conf");
    std::fs::write(
        &conf,
        "http {
set_real_ip_from 10.1.0.0/16;
real_ip_header proxy_protocol;
upstream am { server 127.0.0.1:9443; }
server { listen 8080 proxy_protocol; server_name a.test; location / { proxy_pass http://am; } }
server { listen 8080; server_name b.test; location / { proxy_pass http://am; } }
}
",
    )?;
    // nginx expects the header on the address for both servers; portico would refuse them disagreeing.
    let (toml, notes) = import_valid(&conf, &tmp.0)?;
    assert_eq!(toml.matches("\nproxy_protocol = true").count(), 2, "{toml}");
    let conf = conf.display();
    assert_noted_once(
        &notes,
        &[format!(
            "{conf}:6: note: listen 8080: nginx expects a PROXY protocol header on every connection to it, as the listen at {conf}:5 says: so does this server (proxy_protocol = true)\n"
        )],
    );
    Ok(())
}

#[test]
fn import_gzip_becomes_the_servers_and_locations_gzip() -> Result<(), Box<dyn Error>> {
    let tmp = TempDir::new("gzip");
    let conf = tmp.0.join("gzip.conf");
    std::fs::write(
        &conf,
        "http {
gzip on;
gzip_types application/json text/CSS;
gzip_min_length 1k;
gzip_proxied expired;
gzip_vary on;
gzip_buffers 16 8k;
upstream am { server 127.0.0.1:9443; }
server { listen 8080; location / { proxy_pass http://am; } }
server {
    listen 8081;
    gzip_comp_level 5;
    location / { proxy_pass http://am; }
    location /files/ { gzip off; proxy_pass http://am; }
    location /api/ { gzip_types *; proxy_pass http://am; }
}
server { listen 8082; gzip off; location / { proxy_pass http://am; } location /ui/ { gzip on; proxy_pass http://am; } }
}
",
    )?;
    let (toml, notes) = import_valid(&conf, &tmp.0)?;
    let on = "# nginx: gzip on, gzip_types, gzip_min_length, gzip_comp_level";
    let servers: Vec<&str> = toml.split("[[server]]").skip(1).collect();
    assert_eq!(servers.len(), 3, "{toml}");
    // nginx's settings inherited one by one; text/html stays implied.
    assert!(
        servers[0]
            .contains(&format!("gzip = {{ types = [\"application/json\", \"text/css\"], min_length = \"1k\" }}  {on}")),
        "{toml}"
    );
    assert!(
        servers[1].contains(&format!(
            "gzip = {{ types = [\"application/json\", \"text/css\"], min_length = \"1k\", level = 5 }}  {on}"
        )),
        "{toml}"
    );
    // Locations whose gzip differs from their server's have their own.
    let files = servers[1].split("prefix = \"/files/\"").nth(1).unwrap_or_default();
    assert!(files.starts_with("\nproxy_pass = \"am\"\ngzip = false  # nginx: gzip off\n"), "{toml}");
    let api = servers[1].split("prefix = \"/api/\"").nth(1).unwrap_or_default();
    assert!(api.contains("gzip = { types = [\"*\"], min_length = \"1k\", level = 5 }"), "{toml}");
    assert!(!servers[2].split("[[server.location]]").next().unwrap_or_default().contains("gzip ="), "{toml}");
    let ui = servers[2].split("prefix = \"/ui/\"").nth(1).unwrap_or_default();
    assert!(ui.contains("gzip = { types = [\"application/json\", \"text/css\"], min_length = \"1k\" }"), "{toml}");
    let conf = conf.display();
    assert_noted_once(
        &notes,
        &[
            format!(
                "{conf}:5: note: gzip_proxied expired: portico compresses answers to every request, those that came through another proxy (with a Via header) too, as nginx's gzip_proxied any"
            ),
            format!(
                "{conf}:7: directive \"gzip_buffers\" not translated: portico compresses as the body streams, without gzip buffers"
            ),
        ],
    );
    assert!(!notes.contains("gzip_vary") && !notes.contains(":2:") && !notes.contains(":3:"), "{notes}");
    Ok(())
}

#[test]
fn import_log_format_becomes_a_log_format_table() -> Result<(), Box<dyn Error>> {
    let tmp = TempDir::new("log-format");
    let conf = tmp.0.join("logs.conf");
    std::fs::write(
        &conf,
        r#"http {
log_format main '$remote_addr - $remote_user [$time_local] "$request" '
                '$status $body_bytes_sent "$http_x_forwarded_for" rt=$request_time urt=$upstream_response_time id=$request_id';
log_format json escape=json '{"uri":"$request_uri","status":$status}';
log_format bytes '$remote_addr $geoip_country_code ${remote_port}x ${pipe}';
log_format geo escape=json '{"c":"$geoip_city","s":$status}';
access_log /var/log/nginx/access.log main;
upstream am { server 127.0.0.1:9443; }
server { listen 8080; location / { proxy_pass http://am; } }
server { listen 8081; access_log /var/log/nginx/js.log json; location / { proxy_pass http://am; } }
server { listen 8082; access_log /var/log/nginx/b.log bytes; location / { proxy_pass http://am; } }
server { listen 8083; access_log /var/log/nginx/c.log combined; location / { proxy_pass http://am; } }
server { listen 8084; access_log /var/log/nginx/u.log later; location / { proxy_pass http://am; } }
server { listen 8085; log_format later '$status'; location / { proxy_pass http://am; } }
}
"#,
    )?;
    let (toml, notes) = import_valid(&conf, &tmp.0)?;
    let conf = conf.display();
    // nginx's strings joined as nginx joins them.
    assert!(
        toml.contains(&format!(
            "[log_format.main]  # nginx: {conf}:2\nformat = \"$remote_addr - $remote_user [$time_local] \\\"$request\\\" \
             $status $body_bytes_sent \\\"$http_x_forwarded_for\\\" rt=$request_time urt=$upstream_response_time id=$request_id\"\n"
        )),
        "{toml}"
    );
    assert!(
        toml.contains(&format!(
            "[log_format.nginx_json]  # nginx: {conf}:4\nformat = \"{{\\\"uri\\\":\\\"$request_uri\\\",\\\"status\\\":$status}}\"\nescape = \"json\"\n"
        )),
        "{toml}"
    );
    // A variable of a module portico lacks is written as nginx writes one
    // without a value: the line keeps its fields.
    assert!(
        toml.contains(&format!(
            "[log_format.bytes]  # nginx: {conf}:5\nformat = \"$remote_addr - ${{remote_port}}x -\"\n"
        )),
        "{toml}"
    );
    assert!(toml.contains("format = \"{\\\"c\\\":\\\"\\\",\\\"s\\\":$status}\"\nescape = \"json\"\n"), "{toml}");
    let servers: Vec<&str> = toml.split("[[server]]").skip(1).collect();
    assert_eq!(servers.len(), 6, "{toml}");
    let format_of =
        |server: &str| server.lines().find_map(|l| l.strip_prefix("access_log_format = ")).map(str::to_owned);
    // The http level's format is inherited with its access_log.
    assert_eq!(format_of(servers[0]).as_deref(), Some("\"main\""), "{toml}");
    // nginx's `json` is not portico's own json format: it keeps its line under another name.
    assert_eq!(format_of(servers[1]).as_deref(), Some("\"nginx_json\""), "{toml}");
    assert_eq!(format_of(servers[2]).as_deref(), Some("\"bytes\""), "{toml}");
    // `combined` and one not yet defined: the combined format.
    assert_eq!((format_of(servers[3]), format_of(servers[4])), (None, None), "{toml}");
    assert_noted_once(
        &notes,
        &[
            format!(
                "{conf}:5: note: log_format bytes: $geoip_country_code is not a variable portico has; written as \"-\", as nginx writes a variable without a value"
            ),
            format!(
                "{conf}:5: note: log_format bytes: $pipe is not a variable portico has; written as \"-\", as nginx writes a variable without a value"
            ),
            format!(
                "{conf}:6: note: log_format geo: $geoip_city is not a variable portico has; written as \"\", as nginx writes a variable without a value"
            ),
            format!(
                "{conf}:13: note: access_log format \"later\" is not defined before this line (nginx refuses that): portico writes the combined format"
            ),
            format!("{conf}:14: directive \"log_format\" not translated: nginx takes it at http level only"),
            format!(
                "{conf}:4: note: log_format json is written as [log_format.nginx_json]: portico's own format is named json"
            ),
        ],
    );
    assert!(!notes.contains(":2:") && !notes.contains(":7:"), "{notes}");
    Ok(())
}
