//! TLS: listener server configs with an SNI certificate resolver, upstream
//! client configs, and certificate generation (self-signed, `portico cert`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::sign::CertifiedKey;
use thiserror::Error;

use crate::config::runtime::Listener;

/// A certificate, key or trust store that could not be loaded or made.
#[derive(Debug, Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("{0}")]
    Other(String),
}

/// The key algorithm of a generated certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    EcdsaP256,
    Rsa(u32),
}

/// Loads a PEM certificate chain and its private key, checking that they match.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let _ = (cert, key);
    Err(TlsError::Other("not built yet".into()))
}

/// Makes an in-memory self-signed certificate for `names`.
pub fn self_signed(names: &[String]) -> Result<Arc<CertifiedKey>, TlsError> {
    let _ = names;
    Err(TlsError::Other("not built yet".into()))
}

/// Generates a self-signed certificate for `names`: (certificate PEM, key PEM).
pub fn generate_pem(names: &[String], key_type: KeyType) -> Result<(String, String), TlsError> {
    let _ = (names, key_type);
    Err(TlsError::Other("not built yet".into()))
}

/// The server config of a TLS listener: TLS 1.2/1.3, ALPN h2 + http/1.1, the
/// certificate chosen by SNI among the listener's servers (default server's
/// certificate when SNI is absent or matches none).
pub fn server_config(listener: &Listener) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let _ = listener;
    Err(TlsError::Other("not built yet".into()))
}

/// The client config toward an HTTPS upstream (ALPN http/1.1).
/// `verify = false` accepts any certificate; `ca_file` replaces the system roots.
pub fn upstream_client_config(verify: bool, ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let _ = (verify, ca_file);
    Err(TlsError::Other("not built yet".into()))
}
