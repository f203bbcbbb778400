//! Client certificates (mutual TLS toward clients): `tls.verify_client` and
//! `tls.client_ca`, the certificate passed upstream in a header
//! (`$ssl_client_escaped_cert`, `$ssl_client_verify`) and who it names
//! (`$ssl_client_s_dn`, `$ssl_client_i_dn`, `$ssl_client_serial`,
//! `$ssl_client_fingerprint`), and the 421 for a request whose Host wants a
//! certificate its handshake did not ask for.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;

use http::StatusCode;
use rcgen::DnType;
use support::*;

/// A TLS server `name` on `127.0.0.1:0` proxying to `backend`, passing the
/// client certificate on, with `extra` added to its `tls` table.
fn server(name: &str, cert: &TestCert, extra: &str, upstream: &str) -> String {
    let headers =
        "\"SSL-CLIENT-CERT\" = \"$ssl_client_escaped_cert\"\n\"SSL-CLIENT-VERIFY\" = \"$ssl_client_verify\"\n";
    server_with_headers(name, cert, extra, upstream, headers)
}

/// The same, with `headers` (TOML lines) as its `[server.headers]`.
fn server_with_headers(name: &str, cert: &TestCert, extra: &str, upstream: &str, headers: &str) -> String {
    let tls = cert.toml_tls().replace(" }", &format!("{extra} }}"));
    format!(
        "[[server]]\nlisten = [\"127.0.0.1:0\"]\nserver_name = [\"{name}\"]\ntls = {tls}\nproxy_pass = \"{upstream}\"\n\
         [server.headers]\n{headers}\n"
    )
}

fn upstream(name: &str, backend: &TestBackend) -> String {
    format!("[upstream.{name}]\nservers = [\"{}\"]\n\n", backend.addr())
}

/// `%XX` sequences decoded, as the WSO2 gateway (or any URL decoder) does.
fn url_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).expect("two hex digits after %"));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).expect("a PEM is ASCII")
}

/// The client certificate's PEM as its file holds it, LF line ends.
fn pem_of(cert: &TestCert) -> String {
    std::fs::read_to_string(cert.cert_path()).unwrap().replace("\r\n", "\n")
}

/// A request through a fresh connection as `sni`, presenting `client` if any.
async fn get(addr: SocketAddr, sni: &str, server: &TestCert, client: Option<&TestCert>) -> Result<Reply, Error> {
    let mut connect = Connect::to(addr).tls(sni, server.roots());
    if let Some(client) = client {
        connect = connect.client_cert(client);
    }
    connect.connect().await?.get(sni, "/").await
}

#[tokio::test]
async fn verify_client_on_serves_only_clients_with_a_certificate_from_client_ca() {
    let backend = TestBackend::spawn("gw").await;
    let cert = TestCert::new(&["gw.test"]);
    let member = TestCert::new(&["app-1"]);
    let stranger = TestCert::new(&["app-2"]);
    let verify = format!(", verify_client = \"on\", client_ca = {}", toml_path(&member.ca_path()));
    let mut portico =
        start_portico(&format!("{}{}", upstream("gw", &backend), server("gw.test", &cert, &verify, "gw"))).await;
    let addr = portico.addr(0);

    // Signed by client_ca: served, and the upstream gets the certificate.
    let reply = get(addr, "gw.test", &cert, Some(&member)).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    let seen = backend.last();
    let escaped = seen.header("ssl-client-cert").expect("the certificate is passed on");
    assert!(escaped.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)), "{escaped}");
    assert_eq!(url_decode(escaped), pem_of(&member));
    assert_eq!(seen.header("ssl-client-verify"), Some("SUCCESS"));

    // No certificate, or one of another CA: not served, nothing upstream.
    let before = backend.count();
    assert!(get(addr, "gw.test", &cert, None).await.is_err(), "served without a client certificate");
    assert!(get(addr, "gw.test", &cert, Some(&stranger)).await.is_err(), "served a certificate of another CA");
    assert_eq!(backend.count(), before);

    // A reload that keeps the policy keeps serving an open connection; one
    // that drops it serves clients without a certificate.
    let mut client = Connect::to(addr).tls("gw.test", cert.roots()).client_cert(&member).connect().await.unwrap();
    assert_eq!(client.get("gw.test", "/").await.unwrap().status, StatusCode::OK);
    let same = format!("{}{}", upstream("gw", &backend), server("gw.test", &cert, &verify, "gw"));
    portico.reload(&same).unwrap();
    assert_eq!(client.get("gw.test", "/").await.unwrap().status, StatusCode::OK);
    portico.reload(&format!("{}{}", upstream("gw", &backend), server("gw.test", &cert, "", "gw"))).unwrap();
    let reply = get(addr, "gw.test", &cert, None).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(backend.last().header("ssl-client-verify"), Some("NONE"));
}

#[tokio::test]
async fn verify_client_optional_no_ca_passes_any_certificate_on_for_the_upstream_to_judge() {
    let backend = TestBackend::spawn("gw").await;
    let cert = TestCert::new(&["gw.test"]);
    let member = TestCert::new(&["app-1"]);
    let stranger = TestCert::new(&["app-2"]);
    let verify = format!(", verify_client = \"optional_no_ca\", client_ca = {}", toml_path(&member.ca_path()));
    let portico =
        start_portico(&format!("{}{}", upstream("gw", &backend), server("gw.test", &cert, &verify, "gw"))).await;
    let addr = portico.addr(0);

    assert_eq!(get(addr, "gw.test", &cert, Some(&member)).await.unwrap().status, StatusCode::OK);
    let seen = backend.last();
    assert_eq!(url_decode(seen.header("ssl-client-cert").unwrap()), pem_of(&member));
    assert_eq!(seen.header("ssl-client-verify"), Some("SUCCESS"));

    // Another CA's certificate is served too, marked as not verified.
    assert_eq!(get(addr, "gw.test", &cert, Some(&stranger)).await.unwrap().status, StatusCode::OK);
    let seen = backend.last();
    assert_eq!(url_decode(seen.header("ssl-client-cert").unwrap()), pem_of(&stranger));
    let verify = seen.header("ssl-client-verify").unwrap();
    assert!(verify.starts_with("FAILED:"), "{verify}");

    // Without a certificate: served, and a header the client forged itself
    // does not reach the upstream.
    let mut client = Connect::to(addr).tls("gw.test", cert.roots()).connect().await.unwrap();
    let forged = [("SSL-CLIENT-CERT", "forged"), ("SSL-CLIENT-VERIFY", "SUCCESS")];
    assert_eq!(client.get_with("gw.test", "/", &forged).await.unwrap().status, StatusCode::OK);
    let seen = backend.last();
    assert_eq!(seen.header("ssl-client-cert"), None);
    assert_eq!(seen.header("ssl-client-verify"), Some("NONE"));
}

#[tokio::test]
async fn the_certificates_subject_issuer_serial_and_fingerprint_reach_the_upstream_as_nginx_prints_them() {
    let backend = TestBackend::spawn("gw").await;
    let cert = TestCert::new(&["gw.test"]);
    let member = TestCert::new(&["app-1"]);
    // DER order C, L, O, OU, CN: printed most specific first, with `,` `+`
    // `;` and a trailing space escaped and UTF-8 as `\XX` (as `openssl x509
    // -nameopt RFC2253` prints this certificate's subject).
    let subject = [
        (DnType::CountryName, "US"),
        (DnType::LocalityName, "Z\u{fc}rich"),
        (DnType::OrganizationName, "Example, Ltd"),
        (DnType::OrganizationalUnitName, "Ops+Dev;EU"),
        (DnType::CommonName, "app-1 "),
    ];
    let serial = [0x8f, 0x01, 0xab, 0xcd, 0x00, 0x42];
    let client = member.sibling_named(&["app-1"], &subject, &serial);
    let headers = "\"X-SSL-DN\" = \"$ssl_client_s_dn\"\n\"X-SSL-Issuer\" = \"${ssl_client_i_dn}\"\n\
                   \"X-SSL-Serial\" = \"$ssl_client_serial\"\n\"X-SSL-Fingerprint\" = \"$ssl_client_fingerprint\"\n\
                   \"X-SSL-Both\" = \"$ssl_client_serial/$ssl_client_fingerprint\"\n";
    // The access log prints them too (unescaped, to compare them as sent).
    let dir = TempDir::new("client-cert-log");
    let log = dir.join("access.log");
    let logged = format!("proxy_pass = \"gw\"\naccess_log = {}\naccess_log_format = \"certs\"\n", toml_path(&log));
    let config = |verify: &str| {
        format!(
            "[log_format.certs]\nformat = \"$ssl_client_verify|$ssl_client_s_dn|$ssl_client_i_dn|$ssl_client_serial|$ssl_client_fingerprint\"\nescape = \"none\"\n\n{}{}",
            upstream("gw", &backend),
            server_with_headers("gw.test", &cert, verify, "gw", headers).replace("proxy_pass = \"gw\"\n", &logged)
        )
    };
    let verify = format!(", verify_client = \"optional\", client_ca = {}", toml_path(&member.ca_path()));
    let mut portico = start_portico(&config(&verify)).await;
    let addr = portico.addr(0);

    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, client.der());
    let fingerprint: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let forged = [("X-SSL-DN", "CN=admin"), ("X-SSL-Serial", "01"), ("X-SSL-Fingerprint", "00")];
    let mut connection = Connect::to(addr).tls("gw.test", cert.roots()).client_cert(&client).connect().await.unwrap();
    for _ in 0..2 {
        // Twice on one connection: values made once serve every request.
        assert_eq!(connection.get_with("gw.test", "/", &forged).await.unwrap().status, StatusCode::OK);
        let seen = backend.last();
        assert_eq!(seen.header("x-ssl-dn"), Some(r"CN=app-1\ ,OU=Ops\+Dev\;EU,O=Example\, Ltd,L=Z\C3\BCrich,C=US"));
        assert_eq!(seen.header("x-ssl-issuer"), Some(format!("CN={}", member.ca_name()).as_str()));
        assert_eq!(seen.header("x-ssl-serial"), Some("8F01ABCD0042"));
        assert_eq!(seen.header("x-ssl-fingerprint"), Some(fingerprint.as_str()));
        assert_eq!(seen.header("x-ssl-both"), Some(format!("8F01ABCD0042/{fingerprint}").as_str()));
    }

    // No certificate sent, or none asked for: nothing, and the client's own
    // headers of those names are not passed on either.
    let mut without = Connect::to(addr).tls("gw.test", cert.roots()).connect().await.unwrap();
    assert_eq!(without.get_with("gw.test", "/", &forged).await.unwrap().status, StatusCode::OK);
    let none = |seen: Seen| {
        for name in ["x-ssl-dn", "x-ssl-issuer", "x-ssl-serial", "x-ssl-fingerprint"] {
            assert_eq!(seen.header(name), None, "{name}");
        }
        assert_eq!(seen.header("x-ssl-both"), Some("/"));
    };
    none(backend.last());
    portico.reload(&config("")).unwrap();
    let mut plain_tls = Connect::to(addr).tls("gw.test", cert.roots()).client_cert(&client).connect().await.unwrap();
    assert_eq!(plain_tls.get_with("gw.test", "/", &forged).await.unwrap().status, StatusCode::OK);
    none(backend.last());

    let lines = || std::fs::read_to_string(&log).unwrap_or_default().lines().map(str::to_owned).collect::<Vec<_>>();
    eventually("four access log lines", std::time::Duration::from_secs(2), || lines().len() >= 4).await;
    let with = format!(
        r"SUCCESS|CN=app-1\ ,OU=Ops\+Dev\;EU,O=Example\, Ltd,L=Z\C3\BCrich,C=US|CN={}|8F01ABCD0042|{fingerprint}",
        member.ca_name()
    );
    assert_eq!(lines(), [&with, &with, "NONE|-|-|-|-", "NONE|-|-|-|-"]);
}

#[tokio::test]
async fn a_host_whose_server_wants_a_certificate_the_handshake_did_not_ask_for_is_421() {
    let open_backend = TestBackend::spawn("open").await;
    let gw_backend = TestBackend::spawn("gw").await;
    let open_cert = TestCert::new(&["open.test"]);
    let gw_cert = TestCert::new(&["gw.test"]);
    let member = TestCert::new(&["app-1"]);
    let verify = format!(", verify_client = \"on\", client_ca = {}", toml_path(&member.ca_path()));
    let toml = format!(
        "{}{}{}{}",
        upstream("open", &open_backend),
        upstream("gw", &gw_backend),
        server("open.test", &open_cert, "", "open"),
        server("gw.test", &gw_cert, &verify, "gw"),
    );
    let portico = start_portico(&toml).await;
    let addr = portico.addr(0);
    assert_eq!(portico.addrs().len(), 1, "both servers on one listener");

    // open.test's handshake asks for no certificate: served without one.
    let mut open = Connect::to(addr).tls("open.test", open_cert.roots()).connect().await.unwrap();
    let reply = open.get("open.test", "/").await.unwrap();
    assert_eq!((reply.status, reply.text()), (StatusCode::OK, "open".to_owned()));
    // On that connection, a request for gw.test is misdirected: its server's
    // certificate check never ran.
    let reply = open.get("gw.test", "/").await.unwrap();
    assert_eq!(reply.status, StatusCode::MISDIRECTED_REQUEST);
    assert_eq!(gw_backend.count(), 0, "a request without the certificate reached the upstream");

    // gw.test's handshake wants one; on that connection open.test is served too.
    let mut gw = Connect::to(addr).tls("gw.test", gw_cert.roots()).client_cert(&member).connect().await.unwrap();
    let reply = gw.get("gw.test", "/").await.unwrap();
    assert_eq!((reply.status, reply.text()), (StatusCode::OK, "gw".to_owned()));
    let reply = gw.get("open.test", "/").await.unwrap();
    assert_eq!((reply.status, reply.text()), (StatusCode::OK, "open".to_owned()));
    assert!(get(addr, "gw.test", &gw_cert, None).await.is_err(), "gw.test served without a certificate");
}

#[tokio::test]
async fn h2_clients_present_their_certificate_too() {
    let backend = TestBackend::spawn("gw").await;
    let cert = TestCert::new(&["gw.test"]);
    let member = TestCert::new(&["app-1"]);
    let verify = format!(", verify_client = \"optional\", client_ca = {}", toml_path(&member.ca_path()));
    let portico =
        start_portico(&format!("{}{}", upstream("gw", &backend), server("gw.test", &cert, &verify, "gw"))).await;
    let addr = portico.addr(0);

    let connect = || Connect::to(addr).tls("gw.test", cert.roots()).alpn(&["h2"]);
    let mut client = connect().client_cert(&member).connect().await.unwrap();
    assert_eq!(client.version(), http::Version::HTTP_2);
    for _ in 0..2 {
        assert_eq!(client.get("gw.test", "/").await.unwrap().status, StatusCode::OK);
        let seen = backend.last();
        assert_eq!(url_decode(seen.header("ssl-client-cert").unwrap()), pem_of(&member));
        assert_eq!(seen.header("ssl-client-verify"), Some("SUCCESS"));
    }
    // `optional`: no certificate is served, as NONE.
    let mut client = connect().connect().await.unwrap();
    assert_eq!(client.get("gw.test", "/").await.unwrap().status, StatusCode::OK);
    assert_eq!(backend.last().header("ssl-client-verify"), Some("NONE"));
}

#[tokio::test]
async fn client_crl_refuses_revoked_certificates_and_a_reload_applies_a_new_list_to_open_connections() {
    let backend = TestBackend::spawn("gw").await;
    let cert = TestCert::new(&["gw.test"]);
    let member = TestCert::new(&["app-1"]);
    let revoked = member.sibling(&["app-2"]);
    let config = |crl: &std::path::Path| {
        let verify = format!(
            ", verify_client = \"on\", client_ca = {}, client_crl = {}",
            toml_path(&member.ca_path()),
            toml_path(crl)
        );
        format!("{}{}", upstream("gw", &backend), server("gw.test", &cert, &verify, "gw"))
    };
    let mut portico = start_portico(&config(&member.crl_path("first", &[&revoked]))).await;
    let addr = portico.addr(0);

    assert!(get(addr, "gw.test", &cert, Some(&revoked)).await.is_err(), "a revoked certificate was served");
    let mut client = Connect::to(addr).tls("gw.test", cert.roots()).client_cert(&member).connect().await.unwrap();
    assert_eq!(client.get("gw.test", "/").await.unwrap().status, StatusCode::OK);

    // The member revoked too, by reload: its open connection is not served
    // another request under the old list, and a new one is refused.
    portico.reload(&config(&member.crl_path("second", &[&revoked, &member]))).unwrap();
    assert_eq!(client.get("gw.test", "/").await.unwrap().status, StatusCode::MISDIRECTED_REQUEST);
    assert!(get(addr, "gw.test", &cert, Some(&member)).await.is_err(), "served after its revocation");
    assert_eq!(backend.count(), 1);
}
