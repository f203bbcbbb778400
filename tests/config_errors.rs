//! Broken configurations: each reports the exact message at the exact line:column.

use std::path::Path;

/// Every error line `portico check` would print for `toml` read as `portico.toml`.
fn errors(toml: &str) -> Vec<String> {
    match portico::config::parse_str(toml, Path::new("portico.toml")) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
    }
}

/// Two valid upstreams (lines 1-4) for the tests that need something to proxy to.
const UPSTREAMS: &str = r#"[upstream.am]
servers = ["127.0.0.1:9443"]
[upstream.gw]
servers = ["127.0.0.1:8243"]
"#;

#[test]
fn unknown_key_is_named_at_its_position() {
    let toml = "[[server]]\nlistn = [\"80\"]\n";
    let errors = errors(toml);
    assert_eq!(errors.len(), 1);
    assert!(errors[0].starts_with("portico.toml:2:1: unknown field `listn`, expected one of `listen`,"), "{errors:?}");
}

#[test]
fn unknown_key_inside_an_upstream_server_table() {
    let toml = "[upstream.a]\nservers = [{ address = \"127.0.0.1:1\", wieght = 2 }]\n";
    let errors = errors(toml);
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with("portico.toml:2:39: unknown field `wieght`, expected one of `address`, `weight`"),
        "{errors:?}"
    );
}

#[test]
fn toml_syntax_error_is_reported_alone() {
    assert_eq!(errors("[upstream.am\nservers = []\n"), ["portico.toml:1:13: unclosed table, expected `]`"]);
}

#[test]
fn bad_duration() {
    let toml = format!("{UPSTREAMS}[upstream.x]\nservers = [\"127.0.0.1:1\"]\nread_timeout = \"5 min\"\n");
    assert_eq!(
        errors(&toml),
        [
            r#"portico.toml:7:16: read_timeout = "5 min": expected a duration such as "500ms", "30s", "5m", "1h" or "1d""#
        ]
    );
}

#[test]
fn bad_size() {
    let toml = "[runtime]\nmax_request_header_size = \"32 kb\"\n";
    assert_eq!(
        errors(toml),
        [
            r#"portico.toml:2:27: max_request_header_size = "32 kb": expected a size such as "16k", "1m", "1g" or a number of bytes"#
        ]
    );
}

#[test]
fn tcp_notsent_lowat_is_at_most_1g() {
    // A size like any other (bad_size above); past 1g it is refused.
    let toml = "[runtime]\ntcp_notsent_lowat = \"2g\"\n";
    assert_eq!(
        errors(toml),
        [r#"portico.toml:2:21: tcp_notsent_lowat = 2147483648: at most "1g"; "0" leaves the kernel's setting"#]
    );
    assert!(errors("[runtime]\ntcp_notsent_lowat = \"1g\"\n").is_empty());
    assert!(errors("[runtime]\ntcp_notsent_lowat = 0\n").is_empty());
}

#[test]
fn proxy_pass_to_an_undefined_upstream_lists_the_defined_ones() {
    let toml = format!("{UPSTREAMS}[[server]]\nlisten = [\"80\"]\nproxy_pass = \"api\"\n");
    assert_eq!(errors(&toml), [r#"portico.toml:7:14: proxy_pass = "api": no upstream named "api" (defined: am, gw)"#]);
}

#[test]
fn one_address_both_tls_and_plain_names_both_servers() {
    // The certificate files are missing on purpose: the check does not need them.
    let toml = format!(
        r#"{UPSTREAMS}[[server]]
listen = ["127.0.0.1:8080"]
server_name = ["plain.example"]
proxy_pass = "am"
[[server]]
listen = ["127.0.0.1:8080"]
server_name = ["secure.example"]
tls = {{ cert = "/nonexistent/a.crt", key = "/nonexistent/a.key" }}
proxy_pass = "gw"
"#
    );
    assert_eq!(
        errors(&toml),
        [
            r#"portico.toml:10:11: listen "127.0.0.1:8080": server "secure.example" (line 9) uses TLS on 127.0.0.1:8080 but server "plain.example" (line 5) does not; an address is either TLS or plain for all its servers"#,
            "portico.toml:12:16: cert file /nonexistent/a.crt does not exist",
            "portico.toml:12:44: key file /nonexistent/a.key does not exist",
        ]
    );
}

#[test]
fn same_server_name_twice_on_one_address() {
    let toml = format!(
        r#"{UPSTREAMS}[[server]]
listen = ["80"]
server_name = ["API.example.", "*.b.example"]
proxy_pass = "am"
[[server]]
listen = ["0.0.0.0:80"]
server_name = ["api.example"]
proxy_pass = "gw"
[[server]]
listen = ["81"]
server_name = ["api.example"]
proxy_pass = "gw"
"#
    );
    assert_eq!(
        errors(&toml),
        [
            r#"portico.toml:11:16: server_name "api.example": server "api.example" (line 5) already uses this name on 0.0.0.0:80; each name may appear once per address"#
        ]
    );
}

#[test]
fn two_default_servers_on_one_address() {
    let toml = format!(
        r#"{UPSTREAMS}[[server]]
listen = ["80"]
default_server = true
proxy_pass = "am"
[[server]]
listen = ["80"]
server_name = ["b.example"]
default_server = true
proxy_pass = "gw"
"#
    );
    assert_eq!(
        errors(&toml),
        [
            r#"portico.toml:12:18: default_server = true: server "_" (line 5) is already the default server on 0.0.0.0:80; keep one"#
        ]
    );
}

#[test]
fn same_listen_twice_in_one_server() {
    let toml = format!("{UPSTREAMS}[[server]]\nlisten = [\"80\", \"0.0.0.0:80\"]\nproxy_pass = \"am\"\n");
    assert_eq!(
        errors(&toml),
        [r#"portico.toml:6:17: listen "0.0.0.0:80": this server already listens on 0.0.0.0:80; remove one"#]
    );
}

#[test]
fn invalid_listen_string() {
    let toml = format!("{UPSTREAMS}[[server]]\nlisten = [\"localhost:80\", \"99999\"]\nproxy_pass = \"am\"\n");
    let hint = r#"expected a port ("80"), "IPv4:PORT" ("127.0.0.1:8080") or "[IPv6]:PORT" ("[::]:443")"#;
    assert_eq!(
        errors(&toml),
        [
            format!(r#"portico.toml:6:11: listen "localhost:80": {hint}"#),
            format!(r#"portico.toml:6:27: listen "99999": {hint}"#),
        ]
    );
}

#[test]
fn cert_file_that_does_not_exist() {
    let toml = format!(
        r#"{UPSTREAMS}[[server]]
listen = ["443"]
tls = {{ cert = "/x/y.crt", key = "/x/y.key" }}
proxy_pass = "am"
"#
    );
    assert_eq!(
        errors(&toml),
        ["portico.toml:7:16: cert file /x/y.crt does not exist", "portico.toml:7:34: key file /x/y.key does not exist",]
    );
}

#[test]
fn tls_needs_cert_and_key_or_self_signed() {
    let toml =
        format!("{UPSTREAMS}[[server]]\nlisten = [\"443\"]\ntls = {{ cert = \"/x/y.crt\" }}\nproxy_pass = \"am\"\n");
    assert_eq!(
        errors(&toml),
        [r#"portico.toml:7:7: tls: expected { cert = "server.crt", key = "server.key" } or { self_signed = true }"#]
    );
}

#[test]
fn server_with_no_way_to_answer() {
    let toml = format!("{UPSTREAMS}\n[[server]]\nlisten = [\"80\"]\n");
    assert_eq!(
        errors(&toml),
        [
            r#"portico.toml:6:1: this [[server]] has no way to answer: add proxy_pass = "UPSTREAM", redirect = "https://..." or a [[server.location]]"#
        ]
    );
}

#[test]
fn bad_redirect_status() {
    let toml = "[[server]]\nlisten = [\"80\"]\nredirect = \"https://x$request_uri\"\nredirect_status = 300\n";
    assert_eq!(errors(toml), ["portico.toml:4:19: redirect_status = 300: expected 301, 302, 303, 307 or 308"]);
}

#[test]
fn unknown_template_variable_in_a_header() {
    let toml = format!(
        "{UPSTREAMS}[[server]]\nlisten = [\"80\"]\nproxy_pass = \"am\"\n[server.headers]\nX-Real-IP = \"$remote_ip\"\n"
    );
    assert_eq!(
        errors(&toml),
        [
            r#"portico.toml:9:13: X-Real-IP = "$remote_ip": unknown variable `$remote_ip` (known: $host, $http_host, $remote_addr, $remote_port, $scheme, $server_port, $server_name, $request_uri, $proxy_add_x_forwarded_for, $ssl_client_escaped_cert, $ssl_client_verify, $ssl_client_s_dn, $ssl_client_i_dn, $ssl_client_serial, $ssl_client_fingerprint, $ssl_protocol, $ssl_cipher, $request_id, $msec, $request_method, $uri, $args, $query_string, $server_protocol, $server_addr, $connection, $pid, $hostname, $http_NAME, $cookie_NAME, $arg_NAME)"#
        ]
    );
}

#[test]
fn header_rules_may_not_set_the_body_framing() {
    let toml = format!(
        "{UPSTREAMS}[[server]]\nlisten = [\"80\"]\nproxy_pass = \"am\"\n[server.headers]\nContent-Length = \"5\"\ntransfer-encoding = \"\"\n"
    );
    let why = "portico frames the request body itself and sends this header as the body needs it; remove this line";
    assert_eq!(
        errors(&toml),
        [
            format!(r#"portico.toml:9:1: header "Content-Length": {why}"#),
            format!(r#"portico.toml:10:1: header "transfer-encoding": {why}"#),
        ]
    );
}

#[test]
fn upstream_with_no_servers() {
    assert_eq!(
        errors("[upstream.empty]\nservers = []\n"),
        [r#"portico.toml:1:11: upstream "empty" has no servers: add servers = ["host:port", ...]"#]
    );
}

#[test]
fn upstream_with_only_backup_servers() {
    assert_eq!(
        errors("[upstream.b]\nservers = [{ address = \"127.0.0.1:1\", backup = true }]\n"),
        [
            r#"portico.toml:1:11: upstream "b" needs at least one non-backup server: backup servers only take over when the others are down"#
        ]
    );
}

#[test]
fn bad_cidr_in_trusted_proxies() {
    let toml = "[runtime]\ntrusted_proxies = [\"10.0.0.0/8\", \"10.0.0.0/33\", \"::1\", \"proxy1\"]\n";
    let hint = r#"expected a CIDR such as "10.0.0.0/8" or "::1/128", or an IP address"#;
    assert_eq!(
        errors(toml),
        [
            format!(r#"portico.toml:2:34: trusted_proxies entry "10.0.0.0/33": {hint}"#),
            format!(r#"portico.toml:2:56: trusted_proxies entry "proxy1": {hint}"#),
        ]
    );
}

#[test]
fn admin_listen_off_loopback_needs_allow_remote() {
    assert_eq!(
        errors("[admin]\nlisten = \"0.0.0.0:9901\"\n"),
        [
            r#"portico.toml:2:10: listen = "0.0.0.0:9901": the admin endpoint would be reachable from other hosts; listen on 127.0.0.1 or [::1], or set allow_remote = true"#
        ]
    );
    assert_eq!(errors("[admin]\nlisten = \"0.0.0.0:9901\"\nallow_remote = true\n"), Vec::<String>::new());
}

#[test]
fn weight_zero() {
    assert_eq!(
        errors("[upstream.a]\nservers = [{ address = \"127.0.0.1:1\", weight = 0 }]\n"),
        ["portico.toml:2:48: weight = 0: must be at least 1 (use down = true to take a server out)"]
    );
}

#[test]
fn return_status_out_of_range() {
    let toml = "[[server]]\nlisten = [\"80\"]\n\n[[server.location]]\nprefix = \"/\"\nreturn = 600\n";
    assert_eq!(errors(toml), ["portico.toml:6:10: return = 600: expected an HTTP status from 100 to 599"]);
}

#[test]
fn location_problems() {
    let toml = format!(
        r#"{UPSTREAMS}[[server]]
listen = ["80"]
proxy_pass = "am"
[[server.location]]
prefix = "/"
return = 404
[[server.location]]
prefix = "internal"
return = 403
[[server.location]]
prefix = "/a"
[[server.location]]
prefix = "/b"
return = 404
proxy_pass = "gw"
"#
    );
    assert_eq!(
        errors(&toml),
        [
            r#"portico.toml:9:10: prefix = "/": this server already handles "/" (line 7); merge the two"#,
            r#"portico.toml:12:10: prefix = "internal": must start with "/""#,
            r#"portico.toml:15:10: location "/a": give exactly one of proxy_pass, return or redirect (found nothing)"#,
            r#"portico.toml:17:10: location "/b": give exactly one of proxy_pass, return or redirect (found more than one of them)"#,
        ]
    );
}

#[test]
fn upstream_address_problems() {
    let toml = "[upstream.a]\nservers = [\"nohost\", \"::1:80\", \"[::1]:80\"]\nconsistent = true\n";
    let hint = r#"expected "host:port" such as "10.0.0.1:8080", "app1.internal:8080" or "[fd00::1]:8080""#;
    assert_eq!(
        errors(toml),
        [
            format!(r#"portico.toml:2:12: server "nohost": {hint}"#),
            format!(r#"portico.toml:2:22: server "::1:80": {hint}"#),
            r#"portico.toml:3:14: consistent = true only applies to balance = "ip_hash": add it or remove consistent"#
                .to_owned(),
        ]
    );
}

#[test]
fn sticky_problems() {
    let toml = r#"[upstream.a]
servers = ["127.0.0.1:1"]
[upstream.a.sticky]
learn = "JSESSION ID"
store = "http://cache:6379"
size = "0"
"#;
    assert_eq!(
        errors(toml),
        [
            r#"portico.toml:4:9: learn = "JSESSION ID": expected a cookie name such as "JSESSIONID" (letters, digits and !#$%&'*+-.^_`|~)"#,
            // The URL is not echoed: it may hold a password.
            r#"portico.toml:5:9: store: the URL must start with redis:// or rediss://, not http://; expected a URL such as "redis://127.0.0.1:6379/0" or "rediss://redis.internal:6380/0""#,
            r#"portico.toml:6:8: size: the session table needs room, such as size = "1m""#,
        ]
    );
}

#[test]
fn every_problem_is_reported_at_once_in_file_order() {
    let toml = format!(
        r#"{UPSTREAMS}[[server]]
listen = ["80"]
proxy_pass = "api"
read_timeout = "forever"
[[server]]
listen = ["nope"]
proxy_pass = "am"
[runtime]
worker_threads = 0
"#
    );
    let errors = errors(&toml);
    let positions: Vec<&str> = errors.iter().filter_map(|e| e.split(": ").next()).collect();
    assert_eq!(positions, ["portico.toml:7:14", "portico.toml:8:16", "portico.toml:10:11", "portico.toml:13:18"]);
}

#[test]
fn tls_protocols_name_only_the_versions_portico_speaks() {
    let toml = format!(
        r#"{UPSTREAMS}[[server]]
listen = ["127.0.0.1:8443"]
tls = {{ self_signed = true, protocols = ["TLSv1.1", "TLS1.3", "TLSv1.3"] }}
proxy_pass = "am"
[[server]]
listen = ["127.0.0.1:9443"]
tls = {{ self_signed = true, protocols = [] }}
proxy_pass = "am"
"#
    );
    assert_eq!(
        errors(&toml),
        [
            "portico.toml:7:42: protocols: portico does not speak TLSv1.1, only TLSv1.2 and TLSv1.3; remove it",
            r#"portico.toml:7:53: protocols = ["TLS1.3"]: expected "TLSv1.2" and/or "TLSv1.3""#,
            r#"portico.toml:11:41: protocols = []: name "TLSv1.2", "TLSv1.3" or both"#,
        ]
    );
}

#[test]
fn servers_on_one_address_name_the_same_tls_protocols() {
    let toml = format!(
        r#"{UPSTREAMS}[[server]]
listen = ["127.0.0.1:8443"]
server_name = ["a.example"]
tls = {{ self_signed = true, protocols = ["TLSv1.3"] }}
proxy_pass = "am"
[[server]]
listen = ["127.0.0.1:8443"]
server_name = ["b.example"]
tls = {{ self_signed = true, protocols = ["TLSv1.2"] }}
proxy_pass = "gw"
[[server]]
listen = ["127.0.0.1:8443"]
server_name = ["c.example"]
tls = {{ self_signed = true }}
proxy_pass = "gw"
[[server]]
listen = ["127.0.0.1:8443"]
server_name = ["d.example"]
tls = {{ self_signed = true, protocols = ["TLSv1.3", "TLSv1.3"] }}
proxy_pass = "gw"
"#
    );
    // A repeated name is harmless (d.example), and no key means both (c.example).
    assert_eq!(
        errors(&toml),
        [
            r#"portico.toml:13:41: tls.protocols: server "b.example" (line 10) speaks TLSv1.2 only on 127.0.0.1:8443 and server "a.example" (line 5) TLSv1.3 only; the servers on one address must name the same protocols"#,
            r#"portico.toml:16:11: tls.protocols: server "c.example" (line 15) speaks TLSv1.2 and TLSv1.3 on 127.0.0.1:8443 and server "a.example" (line 5) TLSv1.3 only; the servers on one address must name the same protocols"#,
        ]
    );
}

#[test]
fn upstream_tls_protocols_are_checked_and_need_tls() {
    let toml = r#"[upstream.am]
servers = ["127.0.0.1:9443"]
tls = true
tls_protocols = ["TLSv1", "TLSv1.3"]
[upstream.gw]
servers = ["127.0.0.1:8243"]
tls_protocols = ["TLSv1.3"]
"#;
    assert_eq!(
        errors(toml),
        [
            "portico.toml:4:18: tls_protocols: portico does not speak TLSv1, only TLSv1.2 and TLSv1.3; remove it",
            r#"portico.toml:7:17: tls_protocols has no effect without tls = true in upstream "gw": add tls = true or remove tls_protocols"#,
        ]
    );
}

#[test]
fn verify_client_and_client_ca_are_checked() {
    let toml = format!(
        r#"{UPSTREAMS}[[server]]
listen = ["127.0.0.1:8443"]
server_name = ["a.example"]
tls = {{ self_signed = true, verify_client = "sometimes" }}
proxy_pass = "am"
[[server]]
listen = ["127.0.0.1:8443"]
server_name = ["b.example"]
tls = {{ self_signed = true, verify_client = "on" }}
proxy_pass = "am"
[[server]]
listen = ["127.0.0.1:8443"]
server_name = ["c.example"]
tls = {{ self_signed = true, client_ca = "Cargo.toml" }}
proxy_pass = "am"
[[server]]
listen = ["127.0.0.1:8443"]
server_name = ["d.example"]
tls = {{ self_signed = true, verify_client = "optional", client_ca = "/nonexistent/ca.pem" }}
proxy_pass = "am"
[[server]]
listen = ["127.0.0.1:8443"]
server_name = ["e.example"]
tls = {{ self_signed = true, verify_client = "optional", client_ca = "Cargo.toml" }}
proxy_pass = "am"
[[server]]
listen = ["127.0.0.1:8443"]
server_name = ["f.example"]
tls = {{ self_signed = true, verify_client = "optional_no_ca" }}
proxy_pass = "am"
"#
    );
    // optional_no_ca needs no client_ca (f.example).
    assert_eq!(
        errors(&toml),
        [
            r#"portico.toml:8:45: verify_client = "sometimes": expected "on", "optional", "optional_no_ca" or "off""#,
            r#"portico.toml:13:45: verify_client = "on" needs client_ca = "ca.pem": the CA certificates a client certificate must chain to"#,
            r#"portico.toml:18:41: client_ca is used only with verify_client = "on", "optional" or "optional_no_ca": add one, or remove client_ca"#,
            "portico.toml:23:69: client_ca file /nonexistent/ca.pem does not exist",
            "portico.toml:28:69: cannot load client_ca: Cargo.toml: no certificate found in PEM (expected a BEGIN CERTIFICATE block)",
        ]
    );
}

#[test]
fn upstream_tls_client_cert_needs_its_key_and_tls() {
    let toml = r#"[upstream.am]
servers = ["127.0.0.1:9443"]
tls = true
tls_client_cert = "/nonexistent/lb.crt"
[upstream.gw]
servers = ["127.0.0.1:8243"]
tls = true
tls_client_key = "/nonexistent/lb.key"
[upstream.km]
servers = ["127.0.0.1:9444"]
tls_client_cert = "/nonexistent/lb.crt"
tls_client_key = "/nonexistent/lb.key"
[upstream.pub]
servers = ["127.0.0.1:9445"]
tls = true
tls_client_cert = "/nonexistent/lb.crt"
tls_client_key = "/nonexistent/lb.key"
"#;
    assert_eq!(
        errors(toml),
        [
            r#"portico.toml:4:19: tls_client_cert needs tls_client_key in upstream "am": the certificate and its key go together"#,
            r#"portico.toml:8:18: tls_client_key needs tls_client_cert in upstream "gw": the certificate and its key go together"#,
            r#"portico.toml:11:19: tls_client_cert has no effect without tls = true in upstream "km": add tls = true or remove tls_client_cert"#,
            r#"portico.toml:12:18: tls_client_key has no effect without tls = true in upstream "km": add tls = true or remove tls_client_key"#,
            "portico.toml:16:19: tls_client_cert file /nonexistent/lb.crt does not exist",
            "portico.toml:17:18: tls_client_key file /nonexistent/lb.key does not exist",
        ]
    );
}

#[test]
fn client_crl_needs_client_ca_and_verify_client() {
    let toml = format!(
        r#"{UPSTREAMS}[[server]]
listen = ["127.0.0.1:8443"]
server_name = ["a.example"]
tls = {{ self_signed = true, client_crl = "/nonexistent/clients.crl" }}
proxy_pass = "am"
[[server]]
listen = ["127.0.0.1:8443"]
server_name = ["b.example"]
tls = {{ self_signed = true, verify_client = "optional_no_ca", client_crl = "/nonexistent/clients.crl" }}
proxy_pass = "am"
[[server]]
listen = ["127.0.0.1:8443"]
server_name = ["c.example"]
tls = {{ self_signed = true, verify_client = "on", client_ca = "Cargo.toml", client_crl = "/nonexistent/clients.crl" }}
proxy_pass = "am"
"#
    );
    assert_eq!(
        errors(&toml),
        [
            r#"portico.toml:8:42: client_crl is used only with verify_client = "on", "optional" or "optional_no_ca": add one, or remove client_crl"#,
            "portico.toml:13:76: client_crl needs client_ca: revocation is checked along a client's chain to those CAs",
            "portico.toml:18:90: client_crl file /nonexistent/clients.crl does not exist",
        ]
    );
}

#[test]
fn response_headers_are_literal_and_leave_framing_to_portico() {
    let toml = format!(
        r#"{UPSTREAMS}[[server]]
listen = ["127.0.0.1:8080"]
proxy_pass = "am"
[server.response_headers]
Content-Length = "0"
Connection = "close"
X-Host = "$host"
"X Bad" = "1"
X-Ok = "yes"
"#
    );
    assert_eq!(
        errors(&toml),
        [
            r#"portico.toml:9:1: response header "Content-Length": portico sets it as the connection and body need it; remove this line"#,
            r#"portico.toml:10:1: response header "Connection": portico sets it as the connection and body need it; remove this line"#,
            r#"portico.toml:11:10: X-Host = "$host": response headers take literal text, not variables"#,
            r#"portico.toml:12:1: header "X Bad": not a valid header name"#,
        ]
    );
}

#[test]
fn health_check_problems_are_each_named() {
    let toml = r#"[upstream.am]
servers = ["127.0.0.1:9443"]
[upstream.am.health_check]
uri = "services/Version"
interval = "0s"
timeout = "soon"
fails = 0
status = "200-99, 600"
host = "bad\nhost"
"#;
    assert_eq!(
        errors(toml),
        [
            r#"portico.toml:4:7: uri = "services/Version": expected a path such as "/services/Version" (it starts with /, no spaces or control characters)"#,
            r#"portico.toml:5:12: interval must be longer than 0s, such as interval = "5s""#,
            r#"portico.toml:6:11: timeout = "soon": expected a duration such as "500ms", "30s", "5m", "1h" or "1d""#,
            "portico.toml:7:9: fails = 0: a check verdict needs at least 1 check, such as fails = 1",
            r#"portico.toml:8:10: status = "200-99, 600": "99" is not a status code from 100 to 599; expected codes and ranges such as "200-399" or "200, 204""#,
            r#"portico.toml:9:8: host = "bad\nhost": expected a host name such as "localhost""#,
        ]
    );
    let unknown = "[upstream.am]\nservers = [\"127.0.0.1:9443\"]\n[upstream.am.health_check]\nurl = \"/\"\n";
    let found = errors(unknown);
    assert!(found[0].starts_with("portico.toml:4:1: unknown field `url`, expected one of `uri`,"), "{found:?}");
    let ports = "[upstream.am]\nservers = [\"127.0.0.1:9443\"]\n[upstream.am.health_check]\nport = 0\n\
                 [upstream.gw]\nservers = [\"127.0.0.1:8243\"]\n[upstream.gw.health_check]\nport = 65536\n";
    assert_eq!(
        errors(ports),
        [
            "portico.toml:4:8: port = 0: expected a port from 1 to 65535, such as port = 9763 (leave it out to check each server on its own port)",
            "portico.toml:8:8: port = 65536: expected a port from 1 to 65535, such as port = 9763 (leave it out to check each server on its own port)",
        ]
    );
    let body = |text: &str, gw_text: &str| {
        format!(
            "[upstream.am]\nservers = [\"127.0.0.1:9443\"]\n[upstream.am.health_check]\nbody = \"{text}\"\n\
             [upstream.gw]\nservers = [\"127.0.0.1:8243\"]\n[upstream.gw.health_check]\nbody = \"{gw_text}\"\n"
        )
    };
    assert_eq!(
        errors(&body("", &"x".repeat(65537))),
        [
            r#"portico.toml:4:8: body = "": every response contains the empty text; leave body out to test the status alone, or name text only a healthy answer contains, such as body = "UP""#,
            "portico.toml:8:8: body is 65537 bytes long: a check reads at most the first 65536 bytes of the response body, so it could never be found",
        ]
    );
    assert!(errors(&body("UP", &"x".repeat(65536))).is_empty(), "64 KiB of text can be found");
    let backwards = "[upstream.am]\nservers = [\"127.0.0.1:9443\"]\n[upstream.am.health_check]\nstatus = \"399-200\"\n";
    assert_eq!(
        errors(backwards),
        [
            r#"portico.toml:4:10: status = "399-200": "399-200" ends before it starts; expected codes and ranges such as "200-399" or "200, 204""#
        ]
    );
}

#[test]
fn allow_and_deny_problems() {
    let toml = format!(
        r#"{UPSTREAMS}[[server]]
listen = ["80"]
proxy_pass = "am"
allow = ["10.0.0.0/33", "intranet"]
deny = ["all"]

[[server.location]]
prefix = "/carbon/"
return = 403
allow = []
"#
    );
    assert_eq!(
        errors(&toml),
        [
            r#"portico.toml:8:10: allow entry "10.0.0.0/33": expected a CIDR such as "10.0.0.0/8", an IP address, or "all""#,
            r#"portico.toml:8:25: allow entry "intranet": expected a CIDR such as "10.0.0.0/8", an IP address, or "all""#,
            r#"portico.toml:9:8: deny = ["all"] refuses every client, also those allow lists (line 8): remove deny; allow alone refuses every other address"#,
            r#"portico.toml:14:9: allow = []: lists no address; remove it, or list CIDRs such as "10.0.0.0/8""#,
        ]
    );
}

#[test]
fn drain_and_down_together() {
    let toml = "[upstream.am]\nservers = [{ address = \"127.0.0.1:9443\", down = true, drain = true }]\n";
    assert_eq!(
        errors(toml),
        [
            "portico.toml:2:63: drain = true with down = true: a server either takes its sessions' requests (drain) or none (down); keep one"
        ]
    );
}

#[test]
fn limit_req_problems() {
    let toml = format!(
        r#"{UPSTREAMS}[limit_req.login]
rate = "10 per second"
size = "0"

[limit_req.api]

[[server]]
listen = ["80"]
proxy_pass = "am"
limit_req = {{ zone = "logins", burst = -1, nodelay = true, delay = 2, status = 200 }}
"#
    );
    assert_eq!(
        errors(&toml),
        [
            r#"portico.toml:6:8: rate = "10 per second": expected requests per second or minute, such as "10r/s" or "30r/m""#,
            r#"portico.toml:7:8: size: the zone needs room for at least one address, such as size = "1m""#,
            r#"portico.toml:9:1: [limit_req.api] needs rate = "Nr/s" or "Nr/m", such as rate = "10r/s""#,
            r#"portico.toml:14:22: limit_req zone "logins" is not defined (defined: login, api); add [limit_req.logins]"#,
            "portico.toml:14:40: burst = -1: expected 0 or more requests",
            "portico.toml:14:54: nodelay = true and delay: keep one (nodelay sends the whole burst at once, delay that many of it)",
            "portico.toml:14:80: status = 200: expected a status from 400 to 599, such as 429",
        ]
    );
}

#[test]
fn client_address_problems() {
    // proxy_protocol and real_ip_header believe only trusted_proxies, which is empty.
    let toml = format!(
        r#"{UPSTREAMS}[runtime]
real_ip_header = "X-Forwarded-For"

[[server]]
listen = ["80"]
proxy_pass = "am"
proxy_protocol = true
"#
    );
    assert_eq!(
        errors(&toml),
        [
            r#"portico.toml:6:18: real_ip_header needs [runtime] trusted_proxies: the addresses of the proxies whose header is believed (nginx: set_real_ip_from); from any other client the header would let it choose its own address"#,
            "portico.toml:11:18: proxy_protocol = true needs [runtime] trusted_proxies: the addresses of the load balancers whose PROXY header names the client (nginx: set_real_ip_from)",
        ]
    );
    let toml = format!(
        r#"{UPSTREAMS}[runtime]
trusted_proxies = ["10.0.0.0/8"]
real_ip_header = "proxy_protocol"

[[server]]
listen = ["443"]
proxy_pass = "am"
proxy_protocol = true

[[server]]
listen = ["443"]
server_name = ["gw.example"]
proxy_pass = "gw"
"#
    );
    assert_eq!(
        errors(&toml),
        [
            r#"portico.toml:7:18: real_ip_header = "proxy_protocol": set proxy_protocol = true on the [[server]]s whose balancer sends the PROXY header instead; the address it names is the client's"#,
            r#"portico.toml:15:11: proxy_protocol: server "_" (line 9) expects a PROXY protocol header on 0.0.0.0:443 but server "gw.example" (line 14) does not; the servers on one address must agree"#,
        ]
    );
    let toml = "[runtime]\ntrusted_proxies = [\"10.0.0.0/8\"]\nreal_ip_header = \"X Forwarded\"\n";
    assert_eq!(
        errors(toml),
        [
            r#"portico.toml:3:18: real_ip_header = "X Forwarded": not a header name; expected one such as "X-Forwarded-For""#
        ]
    );
    let toml = "[runtime]\nreal_ip_recursive = true\n";
    assert_eq!(
        errors(toml),
        [
            r#"portico.toml:2:21: real_ip_recursive without real_ip_header: name the header the proxies in front of portico put the client's address in, such as real_ip_header = "X-Forwarded-For""#
        ]
    );
}

#[test]
fn gzip_problems() {
    let toml = format!(
        r#"{UPSTREAMS}[[server]]
listen = ["80"]
proxy_pass = "am"
gzip = true

[[server.location]]
prefix = "/api/"
proxy_pass = "gw"
gzip = "on"
"#
    );
    assert_eq!(
        errors(&toml),
        [
            r#"portico.toml:13:8: invalid type: string "on", expected true, false, or a table such as { types = ["application/json"], level = 1 }"#,
        ]
    );
    let toml = format!(
        r#"{UPSTREAMS}[[server]]
listen = ["80"]
proxy_pass = "am"
gzip = {{ types = ["application/json", "json", "text/ html"], min_length = "1 k", level = 10, vary = true }}
"#
    );
    assert_eq!(
        errors(&toml),
        ["portico.toml:8:94: unknown field `vary`, expected one of `types`, `min_length`, `level`"]
    );
    let toml = format!(
        r#"{UPSTREAMS}[[server]]
listen = ["80"]
proxy_pass = "am"
gzip = {{ types = ["application/json", "json", "text/ html"], min_length = "1 k", level = 10 }}
"#
    );
    assert_eq!(
        errors(&toml),
        [
            r#"portico.toml:8:39: gzip types entry "json": expected a media type such as "application/json", or "*" for any"#,
            r#"portico.toml:8:47: gzip types entry "text/ html": expected a media type such as "application/json", or "*" for any"#,
            r#"portico.toml:8:75: gzip min_length = "1 k": expected a size such as "16k", "1m", "1g" or a number of bytes"#,
            "portico.toml:8:90: gzip level = 10: expected 1 (fastest, the default) to 9 (smallest)",
        ]
    );
}

#[test]
fn log_format_problems() {
    let toml = format!(
        r#"{UPSTREAMS}[log_format.main]
format = '$remote_addr "$request" $geoip_country_code'
[log_format.json]
format = "$status"
[log_format.short]
escape = "html"
[log_format.fine]
format = "$status $http_x_id"

[[server]]
listen = ["80"]
proxy_pass = "am"
access_log = "/var/log/portico/access.log"
access_log_format = "mian"

[[server]]
listen = ["81"]
proxy_pass = "am"
access_log = "/var/log/portico/access.log"
access_log_format = "main"
"#
    );
    assert_eq!(
        errors(&toml),
        [
            "portico.toml:6:10: [log_format.main] format: unknown variable `$geoip_country_code` in a log format (known: \
             $remote_addr, $remote_port, $remote_user, $time_local, $time_iso8601, $msec, $request, $request_method, \
             $request_uri, $uri, $args, $query_string, $server_protocol, $scheme, $host, $server_name, $server_port, \
             $status, $body_bytes_sent, $request_time, $upstream_addr, $upstream_status, $upstream_response_time, \
             $upstream_header_time, $request_id, $ssl_protocol, $ssl_cipher, $connection, $connection_requests, $pid, \
             $hostname, $request_length, $request_completion, $server_addr, $realip_remote_addr, $realip_remote_port, \
             $ssl_session_reused, $upstream_connect_time, $upstream_response_length, $upstream_bytes_sent, \
             $upstream_bytes_received, $upstream_cache_status, $gzip_ratio, $ssl_client_verify, $ssl_client_s_dn, \
             $ssl_client_i_dn, $ssl_client_serial, $ssl_client_fingerprint, $bytes_sent, $content_type, $content_length, $http_NAME, $cookie_NAME, \
             $arg_NAME, $upstream_http_NAME, $sent_http_NAME)",
            r#"portico.toml:7:13: [log_format.json]: "json" is portico's own format; give this one another name"#,
            r#"portico.toml:9:1: [log_format.short] needs format = "...", such as format = '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent'"#,
            r#"portico.toml:10:10: escape = "html": expected "default", "json" or "none""#,
            r#"portico.toml:18:21: access_log_format = "mian": expected "combined", "json", "main", "short", "fine", or a [log_format.mian] table with format = "...""#,
        ]
    );
}

#[test]
fn limit_req_keys_and_lists() {
    let toml = format!(
        r#"{UPSTREAMS}[limit_req.a]
rate = "1r/s"
key = "$geoip_country_code"

[limit_req.b]
rate = "1r/s"
key = "${{http_x_api_key"

[[server]]
listen = ["80"]
proxy_pass = "am"
limit_req = []

[[server.location]]
prefix = "/x/"
proxy_pass = "am"
limit_req = [{{ zone = "a" }}, {{ burst = 2 }}, {{ zone = "b", burst = -1 }}, {{ zone = "a", nodelay = true }}]
"#
    );
    let known = "known: $host, $http_host, $remote_addr, $remote_port, $scheme, $server_port, $server_name, $request_uri, $proxy_add_x_forwarded_for, $ssl_client_escaped_cert, $ssl_client_verify, $ssl_client_s_dn, $ssl_client_i_dn, $ssl_client_serial, $ssl_client_fingerprint, $ssl_protocol, $ssl_cipher, $request_id, $msec, $request_method, $uri, $args, $query_string, $server_protocol, $server_addr, $connection, $pid, $hostname, $http_NAME, $cookie_NAME, $arg_NAME";
    assert_eq!(
        errors(&toml),
        [
            format!(
                "portico.toml:7:7: key = \"$geoip_country_code\": unknown variable `$geoip_country_code` ({known})"
            ),
            r#"portico.toml:11:7: key = "${http_x_api_key": `${` is not closed by `}`"#.to_owned(),
            r#"portico.toml:16:13: limit_req = []: list at least one { zone = "NAME" }, or remove the line"#.to_owned(),
            r#"portico.toml:21:30: limit_req needs zone = "NAME", a [limit_req.NAME] table"#.to_owned(),
            "portico.toml:21:67: burst = -1: expected 0 or more requests".to_owned(),
            r#"portico.toml:21:82: limit_req zone "a" is listed twice here; keep one (a zone counts a request once)"#
                .to_owned(),
        ]
    );
}
