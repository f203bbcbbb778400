//! The configuration most tests start from: one `[[server]]` on an ephemeral
//! loopback port proxying everything to the one-server upstream `app`. Each
//! test adds only the lines it is about.

use std::net::SocketAddr;

use super::TestCert;

/// Builds the TOML of one server in front of one backend.
#[derive(Debug, Clone)]
pub struct AppConfig {
    backend: SocketAddr,
    server_name: String,
    runtime: String,
    admin: bool,
    upstream: String,
    server: String,
}

impl AppConfig {
    /// `server_name = ["app.test"]`, proxying to `backend`.
    pub fn new(backend: SocketAddr) -> AppConfig {
        AppConfig {
            backend,
            server_name: "app.test".into(),
            runtime: String::new(),
            admin: false,
            upstream: String::new(),
            server: String::new(),
        }
    }

    pub fn server_name(mut self, name: &str) -> AppConfig {
        self.server_name = name.into();
        self
    }

    /// Lines for the `[runtime]` table.
    pub fn runtime(mut self, lines: &str) -> AppConfig {
        self.runtime.push_str(lines);
        self.runtime.push('\n');
        self
    }

    /// An admin listener on an ephemeral port.
    pub fn admin(mut self) -> AppConfig {
        self.admin = true;
        self
    }

    /// Lines for the `[upstream.app]` table.
    pub fn upstream(mut self, lines: &str) -> AppConfig {
        self.upstream.push_str(lines);
        self.upstream.push('\n');
        self
    }

    /// Lines for the `[[server]]` table, after `proxy_pass`; they may end
    /// with sub-tables such as `[server.headers]`.
    pub fn server(mut self, lines: &str) -> AppConfig {
        self.server.push_str(lines);
        self.server.push('\n');
        self
    }

    /// TLS on the server's listener with `cert`; plain when `None`.
    pub fn tls(self, cert: Option<&TestCert>) -> AppConfig {
        match cert {
            Some(cert) => self.server(&format!("tls = {}", cert.toml_tls())),
            None => self,
        }
    }

    pub fn build(&self) -> String {
        let admin = if self.admin { "[admin]\nlisten = \"127.0.0.1:0\"\n" } else { "" };
        format!(
            "[runtime]\n{}\n{admin}\n[upstream.app]\nservers = [\"{}\"]\n{}\n\
             [[server]]\nlisten = [\"127.0.0.1:0\"]\nserver_name = [\"{}\"]\nproxy_pass = \"app\"\n{}",
            self.runtime, self.backend, self.upstream, self.server_name, self.server
        )
    }
}
