//! `allow` / `deny` (nginx's access module): the client's address decides
//! whether a server or location answers, 403 otherwise; a location's own
//! rules replace the server's. Clients connect from chosen 127.0.0.0/8
//! addresses.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use http::StatusCode;
use support::*;

#[tokio::test]
async fn allow_and_deny_per_server_and_location() {
    let backend = TestBackend::spawn("app").await;
    let log_dir = TempDir::new("access");
    let error_log = log_dir.join("error.log");
    let toml = AppConfig::new(backend.addr())
        .server(&format!(
            r#"allow = ["127.0.1.0/24", "127.0.3.3"]
deny = ["127.0.1.66"]
error_log = {}

[[server.location]]
prefix = "/public/"
proxy_pass = "app"
allow = ["all"]

[[server.location]]
prefix = "/carbon/"
proxy_pass = "app"
deny = ["127.0.1.7", "127.0.3.0/24"]

[[server.location]]
prefix = "/inherits/"
return = 204"#,
            toml_path(&error_log)
        ))
        .build();
    let portico = start_portico(&toml).await;

    for (source, path, expected) in [
        // The server's rules: its allow list, less its deny list.
        ("127.0.1.5", "/", StatusCode::OK),
        ("127.0.3.3", "/", StatusCode::OK),
        ("127.0.2.5", "/", StatusCode::FORBIDDEN),
        ("127.0.1.66", "/", StatusCode::FORBIDDEN),
        // A location without rules of its own keeps the server's, also for
        // what it answers itself.
        ("127.0.1.5", "/inherits/x", StatusCode::NO_CONTENT),
        ("127.0.2.5", "/inherits/x", StatusCode::FORBIDDEN),
        // A location with its own replaces them entirely.
        ("127.0.2.5", "/public/x", StatusCode::OK),
        ("127.0.1.66", "/public/x", StatusCode::OK),
        ("127.0.1.7", "/carbon/x", StatusCode::FORBIDDEN),
        ("127.0.3.3", "/carbon/x", StatusCode::FORBIDDEN),
        ("127.0.2.5", "/carbon/x", StatusCode::OK),
        ("127.0.1.7", "/", StatusCode::OK),
    ] {
        let before = backend.count();
        assert_eq!(portico.status_from(source, "app.test", path).await, expected, "{source} {path}");
        let forwarded = usize::from(expected == StatusCode::OK);
        assert_eq!(backend.count(), before + forwarded, "{source} {path}: forwarded only when answered");
    }
    portico.shutdown().await;
    let log = std::fs::read_to_string(&error_log).unwrap();
    let refusals: Vec<&str> = log.lines().filter(|l| l.contains("access forbidden by rule")).collect();
    assert_eq!(refusals.len(), 5, "{log}");
    assert!(refusals.iter().all(|l| l.contains("[error]")), "{log}");
    assert!(refusals[0].contains("client: 127.0.2.5"), "{log}");
}

/// A path no location takes is refused before it is found missing, as nginx
/// does: a client that may not see the server learns nothing of its paths.
#[tokio::test]
async fn refused_before_not_found() {
    let backend = TestBackend::spawn("app").await;
    let toml = format!(
        r#"
[upstream.app]
servers = ["{}"]

[[server]]
listen = ["127.0.0.1:0"]
server_name = ["app.test"]
allow = ["127.0.1.0/24"]

[[server.location]]
prefix = "/only/"
proxy_pass = "app"
"#,
        backend.addr()
    );
    let portico = start_portico(&toml).await;
    assert_eq!(portico.status_from("127.0.2.5", "app.test", "/elsewhere").await, StatusCode::FORBIDDEN);
    assert_eq!(portico.status_from("127.0.1.5", "app.test", "/elsewhere").await, StatusCode::NOT_FOUND);
    assert_eq!(portico.status_from("127.0.1.5", "app.test", "/only/x").await, StatusCode::OK);
    portico.shutdown().await;
}
