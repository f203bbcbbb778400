//! `portico::config::parse_str` on a complete, valid-shaped configuration
//! whose values come from the fuzzer: gets past the TOML parser to every
//! semantic check (durations, sizes, listen addresses, CIDRs, templates,
//! header names, cookie names, statuses, self-signed certificates, client
//! certificate policies, upstream client certificates, health checks,
//! access rules, request rates...).
#![no_main]

use std::path::Path;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Values<'a> {
    strings: Vec<&'a str>,
    numbers: Vec<i64>,
    flags: Vec<bool>,
}

/// A TOML basic string holding `text` exactly.
fn quote(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Fills `{s0}`..`{s45}`, `{n0}`..`{n9}` and `{b0}`..`{b9}`.
fn fill(template: &str, v: &Values<'_>) -> String {
    let mut out = template.to_owned();
    // Missing values are empty: the fuzzer fills the slots it reaches.
    for i in (0..46).rev() {
        out = out.replace(&format!("{{s{i}}}"), &quote(v.strings.get(i).copied().unwrap_or("")));
    }
    for i in (0..10).rev() {
        out = out.replace(&format!("{{n{i}}}"), &v.numbers.get(i).copied().unwrap_or(0).to_string());
    }
    for i in (0..10).rev() {
        out = out.replace(&format!("{{b{i}}}"), &v.flags.get(i).copied().unwrap_or(false).to_string());
    }
    out
}

const TEMPLATE: &str = r#"
[runtime]
error_log_level = {s0}
shutdown_timeout = {s1}
client_header_timeout = {s2}
keepalive_timeout = {s3}
max_request_header_size = {s4}
client_max_body_size = {n0}
trusted_proxies = [{s5}, "10.0.0.0/8"]
real_ip_header = {s41}
real_ip_recursive = {b8}

[admin]
listen = {s6}
allow_remote = {b0}

[limit_req.zone]
rate = {s34}
size = {s35}

[limit_req.keyed]
key = {s40}
rate = "10r/s"

[log_format.x]
format = {s44}
escape = {s45}

[upstream.pool]
servers = ["127.0.0.1:9001", { address = "[::1]:9002", weight = {n1}, max_fails = 3, fail_timeout = {s7}, backup = {b1}, drain = {b7} }]
balance = {s8}
consistent = {b2}
tls = {b5}
tls_client_cert = {s26}
tls_client_key = {s27}
connect_timeout = {s9}
read_timeout = {s10}

[upstream.pool.sticky]
learn = {s11}
size = {s12}
timeout = {s13}

[upstream.pool.health_check]
uri = {s30}
interval = {s31}
timeout = {s1}
fails = {n5}
passes = {n6}
status = {s32}
host = {s33}
mandatory = {b6}
port = {n8}
body = {s39}

[[server]]
listen = [{s14}, "127.0.0.1:18080"]
server_name = [{s15}, "*.example.com"]
default_server = {b3}
redirect = {s16}
redirect_status = {n2}
proxy_protocol = {b9}

[[server]]
listen = ["127.0.0.1:18443"]
server_name = [{s17}]
tls = { self_signed = {b4}, verify_client = {s24}, client_ca = {s25} }
proxy_pass = "pool"
gzip = { types = [{s42}, "application/json"], min_length = {s43}, level = {n9} }
access_log_format = {s18}
send_timeout = {s19}

[server.headers]
{s20} = {s21}
X-Forwarded-For = "$proxy_add_x_forwarded_for"

[server.response_headers]
{s28} = {s29}

[[server.location]]
prefix = {s22}
redirect = {s23}
redirect_status = {n3}
allow = [{s36}, "10.0.0.0/8"]
deny = [{s37}]
limit_req = [{ zone = {s38}, burst = {n7}, nodelay = {b2} }, { zone = "keyed", delay = {n1} }]

[[server.location]]
prefix = "/status"
return = {n4}
"#;

fuzz_target!(|values: Values<'_>| {
    let text = fill(TEMPLATE, &values);
    let path = Path::new("/nonexistent/portico-fuzz/portico.toml");
    if let Err(errors) = portico::config::parse_str(&text, path) {
        let _ = errors.to_string();
    }
});
