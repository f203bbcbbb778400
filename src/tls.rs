//! TLS: listener server configs with an SNI certificate resolver, upstream
//! client configs, and certificate generation (self-signed, `portico cert`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{
    CipherSuite, DigitallySignedStruct, InconsistentKeys, RootCertStore, SignatureScheme, SupportedCipherSuite,
};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;

use crate::config::runtime::{self, Listener, TlsProtocols};

mod client_auth;
pub use client_auth::{ClientAuth, ClientCertificate, VerifyClient};

mod der;
mod dn;

mod validity;
pub use validity::{EXPIRY_WARNING_DAYS, Validity, crl_next_update, validity};

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
    /// RSA with this many bits: 2048, 3072 or 4096.
    Rsa(u32),
}

/// The RSA key sizes `generate_pem` accepts (and `portico cert --rsa` offers).
pub const RSA_BITS: [u32; 3] = [2048, 3072, 4096];

/// The ALPN protocols a TLS listener offers, in preference order.
pub const SERVER_ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// How long a generated certificate is valid: 825 days is the longest that
/// Apple platforms accept for a TLS server certificate, trusted by hand or not.
const VALIDITY: Duration = Duration::from_secs(825 * 24 * 60 * 60);

/// The cipher suites portico speaks, in its order: aws-lc-rs's default set,
/// AES-128-GCM first (Mozilla's "intermediate" order). With AES hardware it
/// costs both ends the least (10 AES rounds to AES-256's 14, a SHA-256 key
/// schedule to SHA-384's; docs/performance-log.md step 35 has the figures).
/// NIST counts AES-128 sound against quantum attackers too: its first
/// post-quantum security category is defined as AES-128 key search.
static CIPHER_SUITES: [SupportedCipherSuite; 9] = {
    use rustls::crypto::aws_lc_rs::cipher_suite::*;
    [
        TLS13_AES_128_GCM_SHA256,
        TLS13_AES_256_GCM_SHA384,
        TLS13_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ]
};

/// One aws-lc-rs provider for every config: building it allocates, and all
/// configs use the same algorithms anyway.
static PROVIDER: LazyLock<Arc<CryptoProvider>> = LazyLock::new(|| {
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    Arc::new(CryptoProvider { cipher_suites: CIPHER_SUITES.to_vec(), ..provider })
});

/// What a client connection's handshake agreed, named as nginx's
/// `$ssl_protocol` and `$ssl_cipher` name them (OpenSSL's names), so that log
/// lines and headers read as they did behind nginx.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsSession {
    pub protocol: &'static str,
    pub cipher: &'static str,
    /// Whether the handshake resumed an earlier session (`$ssl_session_reused`).
    pub resumed: bool,
}

impl TlsSession {
    /// The session of a connection whose handshake is done.
    pub fn of(conn: &rustls::CommonState) -> TlsSession {
        use rustls::{CipherSuite as C, ProtocolVersion as V};
        let protocol = match conn.protocol_version() {
            Some(V::TLSv1_3) => "TLSv1.3",
            Some(V::TLSv1_2) => "TLSv1.2",
            Some(other) => other.as_str().unwrap_or("unknown"),
            None => "unknown",
        };
        let cipher = conn.negotiated_cipher_suite().map(|s| s.suite()).map_or("unknown", |suite| match suite {
            C::TLS13_AES_128_GCM_SHA256 => "TLS_AES_128_GCM_SHA256",
            C::TLS13_AES_256_GCM_SHA384 => "TLS_AES_256_GCM_SHA384",
            C::TLS13_CHACHA20_POLY1305_SHA256 => "TLS_CHACHA20_POLY1305_SHA256",
            C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => "ECDHE-ECDSA-AES128-GCM-SHA256",
            C::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 => "ECDHE-ECDSA-AES256-GCM-SHA384",
            C::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 => "ECDHE-ECDSA-CHACHA20-POLY1305",
            C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => "ECDHE-RSA-AES128-GCM-SHA256",
            C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => "ECDHE-RSA-AES256-GCM-SHA384",
            C::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => "ECDHE-RSA-CHACHA20-POLY1305",
            other => other.as_str().unwrap_or("unknown"),
        });
        let resumed = conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        TlsSession { protocol, cipher, resumed }
    }
}

/// The crypto provider portico uses everywhere (aws-lc-rs, its suites in
/// portico's order).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::clone(&PROVIDER)
}

fn invalid(path: &Path, message: impl Into<String>) -> TlsError {
    TlsError::Invalid { path: path.to_path_buf(), message: message.into() }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_path_buf(), source })
}

/// Every certificate in a PEM file, in order; an error when there is none.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(path, format!("invalid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(path, "no certificate found in PEM (expected a BEGIN CERTIFICATE block)"));
    }
    Ok(certs)
}

/// Loads a PEM certificate chain and its private key, checking that they match.
///
/// The chain starts with the leaf certificate; the key may be PKCS#8
/// (`PRIVATE KEY`), PKCS#1 (`RSA PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`).
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = read_certificates(cert)?;

    let key_bytes = read(key)?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| {
        // The usual mistakes get their own hint: an encrypted key (nginx would
        // ask for a passphrase) or the certificate given twice.
        let text = String::from_utf8_lossy(&key_bytes);
        let hint = if text.contains("ENCRYPTED PRIVATE KEY") || text.contains("Proc-Type: 4,ENCRYPTED") {
            " (the key is encrypted; decrypt it first, e.g. `openssl pkey -in KEY -out KEY.plain`)"
        } else if text.contains("BEGIN CERTIFICATE") {
            " (this file holds a certificate, not a key)"
        } else {
            " (expected PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY PEM)"
        };
        match e {
            pem::Error::NoItemsFound => invalid(key, format!("no private key found{hint}")),
            e => invalid(key, format!("invalid PEM: {e}{hint}")),
        }
    })?;

    let signing_key = PROVIDER
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| invalid(key, format!("unsupported private key: {e}")))?;

    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        // Unknown: the key type cannot report its public key; nothing to compare.
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => Ok(Arc::new(certified)),
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => Err(invalid(
            key,
            format!(
                "key does not match certificate {} (its first certificate must be the one issued for this key)",
                cert.display()
            ),
        )),
        Err(e) => Err(invalid(cert, format!("invalid certificate: {e}"))),
    }
}

/// The names a generated certificate is issued for: `"_"` (a catch-all
/// server) names no host, and no name at all means `localhost`.
fn certificate_names(names: &[String]) -> Vec<String> {
    let names: Vec<String> = names.iter().filter(|n| !n.is_empty() && n.as_str() != "_").cloned().collect();
    if names.is_empty() { vec!["localhost".to_owned()] } else { names }
}

/// A self-signed certificate and its key pair.
fn generate(names: &[String], key_type: KeyType) -> Result<(rcgen::Certificate, rcgen::KeyPair), TlsError> {
    let names = certificate_names(names);
    let key_pair = match key_type {
        KeyType::EcdsaP256 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| TlsError::Other(format!("cannot generate an ECDSA key: {e}")))?,
        KeyType::Rsa(bits) => rsa_key_pair(bits)?,
    };

    // rcgen turns names that parse as IP addresses into IP SANs, the rest into DNS SANs.
    let mut params = rcgen::CertificateParams::new(names.clone())
        .map_err(|e| TlsError::Other(format!("invalid certificate name in {names:?}: {e}")))?;
    let mut subject = rcgen::DistinguishedName::new();
    subject.push(rcgen::DnType::CommonName, names[0].as_str());
    params.distinguished_name = subject;
    // A day of slack for clocks that run behind.
    let not_before = SystemTime::now() - Duration::from_secs(24 * 60 * 60);
    params.not_before = not_before.into();
    params.not_after = (not_before + VALIDITY).into();
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    if matches!(key_type, KeyType::Rsa(_)) {
        // TLS 1.2 RSA key exchange encrypts to the key.
        params.key_usages.push(rcgen::KeyUsagePurpose::KeyEncipherment);
    }
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];

    let cert =
        params.self_signed(&key_pair).map_err(|e| TlsError::Other(format!("cannot sign the certificate: {e}")))?;
    Ok((cert, key_pair))
}

/// An RSA key pair for rcgen, of one of the sizes in [`RSA_BITS`].
fn rsa_key_pair(bits: u32) -> Result<rcgen::KeyPair, TlsError> {
    let size = match bits {
        2048 => rcgen::RsaKeySize::_2048,
        3072 => rcgen::RsaKeySize::_3072,
        4096 => rcgen::RsaKeySize::_4096,
        _ => return Err(TlsError::Other(format!("RSA key size {bits} is not supported (use 2048, 3072 or 4096)"))),
    };
    rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, size)
        .map_err(|e| TlsError::Other(format!("cannot generate an RSA key: {e}")))
}

/// Makes an in-memory self-signed certificate for `names`.
///
/// Names are as written in `server_name` (`"*.example.com"` allowed); IP
/// addresses become IP SANs; an empty list means `localhost`. ECDSA P-256.
pub fn self_signed(names: &[String]) -> Result<Arc<CertifiedKey>, TlsError> {
    let (cert, key_pair) = generate(names, KeyType::EcdsaP256)?;
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));
    CertifiedKey::from_der(vec![cert.der().clone()], key_der, &PROVIDER)
        .map(Arc::new)
        .map_err(|e| TlsError::Other(format!("cannot use the generated certificate: {e}")))
}

/// Generates a self-signed certificate for `names`: (certificate PEM, key PEM).
///
/// Names as for [`self_signed`]. The key PEM is PKCS#8 (`PRIVATE KEY`).
pub fn generate_pem(names: &[String], key_type: KeyType) -> Result<(String, String), TlsError> {
    let (cert, key_pair) = generate(names, key_type)?;
    Ok((cert.pem(), key_pair.serialize_pem()))
}

/// A TLS listener's server names: which of its servers a handshake's SNI
/// names (exact first, then the longest wildcard, else the default server).
///
/// Built once per listener (per snapshot): `lookup` runs on every handshake,
/// so each step is a hash lookup.
#[derive(Debug)]
struct ServerNames {
    exact: HashMap<String, usize>,
    /// Keyed by the suffix as `ServerName::Wildcard` stores it (`.example.com`).
    wildcard: HashMap<String, usize>,
    default: usize,
}

impl ServerNames {
    fn new(listener: &Listener) -> Self {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for (index, server) in listener.servers.iter().enumerate() {
            for name in &server.server_names {
                // The first server declaring a name keeps it, as in the Host lookup.
                match name {
                    runtime::ServerName::Exact(host) => {
                        exact.entry(host.clone()).or_insert(index);
                    }
                    runtime::ServerName::Wildcard(suffix) => {
                        wildcard.entry(suffix.clone()).or_insert(index);
                    }
                }
            }
        }
        Self { exact, wildcard, default: listener.default_server }
    }

    /// The index of the server `sni` names.
    fn lookup(&self, sni: Option<&str>) -> usize {
        let Some(host) = sni else {
            return self.default;
        };
        // rustls already lower-cases the SNI name; a trailing dot names the same host.
        let host = host.strip_suffix('.').unwrap_or(host);
        if let Some(index) = self.exact.get(host) {
            return *index;
        }
        // Each suffix starting at a dot, longest first, with at least one character
        // before it: the first hit is the longest matching wildcard.
        for (i, _) in host.match_indices('.').filter(|(i, _)| *i > 0) {
            if let Some(index) = self.wildcard.get(&host[i..]) {
                return *index;
            }
        }
        self.default
    }
}

/// Picks the certificate of the server the SNI names.
#[derive(Debug)]
struct SniResolver {
    names: Arc<ServerNames>,
    /// By server index (a server without one: none on a valid TLS listener).
    certificates: Vec<Option<Arc<CertifiedKey>>>,
    /// The default server's, else the first one's.
    fallback: Arc<CertifiedKey>,
}

impl SniResolver {
    fn new(listener: &Listener, names: Arc<ServerNames>) -> Result<Self, TlsError> {
        let fallback = listener
            .servers
            .get(listener.default_server)
            .and_then(|server| server.certificate.clone())
            .or_else(|| listener.servers.iter().find_map(|server| server.certificate.clone()))
            .ok_or_else(|| {
                TlsError::Other(format!("TLS listener {} has no server with a certificate", listener.addr))
            })?;
        let certificates = listener.servers.iter().map(|server| server.certificate.clone()).collect();
        Ok(Self { names, certificates, fallback })
    }

    fn lookup(&self, sni: Option<&str>) -> &Arc<CertifiedKey> {
        self.certificates.get(self.names.lookup(sni)).and_then(Option::as_ref).unwrap_or(&self.fallback)
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(self.lookup(client_hello.server_name())))
    }
}

/// A TLS listener's handshakes: TLS 1.2/1.3 (or the one its servers'
/// `tls.protocols` name), ALPN h2 + http/1.1, the
/// certificate chosen by SNI among the listener's servers (default server's
/// certificate when SNI is absent or matches none).
///
/// The cipher suite is the first of portico's order ([`CIPHER_SUITES`]) that
/// the client offers, unless the first suite the client lists that portico
/// knows is ChaCha20-Poly1305: a client puts it first when it has no AES
/// hardware, and then gets it (the rule of Go's crypto/tls and BoringSSL).
/// Most clients list AES-256-GCM first (OpenSSL, Java, rustls), and would
/// get it if their order decided.
///
/// A server with a client-certificate policy (`tls.verify_client`) has
/// handshakes of its own, chosen by SNI as its certificate is.
///
/// Resumption: the rustls in-memory session cache plus stateless tickets
/// (TLS 1.3 and 1.2), with keys that live as long as this value; both orders
/// share them. Each server with a policy has its own cache and keys, so a
/// session made without a client certificate cannot be resumed where one
/// is asked for.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// The servers without a client-certificate policy.
    open: Handshakes,
    /// By SNI, for each server with a policy: the policy and its handshakes.
    /// Empty when no server on the listener has one (the lookup is skipped).
    policed: Arc<Policed>,
}

#[derive(Debug, Default)]
struct Policed {
    names: Option<Arc<ServerNames>>,
    /// By server index.
    by_server: Vec<Option<(Arc<ClientAuth>, Handshakes)>>,
}

/// One set of handshake settings in both cipher orders.
#[derive(Debug, Clone)]
struct Handshakes {
    /// Portico's order decides.
    ours: Arc<rustls::ServerConfig>,
    /// The client's order decides.
    theirs: Arc<rustls::ServerConfig>,
}

impl Handshakes {
    fn new(
        listener: &Listener,
        resolver: Arc<SniResolver>,
        client_auth: Option<&ClientAuth>,
    ) -> Result<Handshakes, TlsError> {
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&versions(listener.tls_protocols))
            .map_err(|e| TlsError::Other(format!("TLS listener {}: {e}", listener.addr)))?;
        let builder = match client_auth {
            Some(policy) => builder.with_client_cert_verifier(policy.verifier()),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(resolver);
        config.alpn_protocols = SERVER_ALPN.iter().map(|p| p.to_vec()).collect();
        config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new().map_err(|e| {
            TlsError::Other(format!("TLS listener {}: cannot make session tickets: {e}", listener.addr))
        })?;
        // A clone shares the resolver, the session cache and the ticket keys.
        let theirs = Arc::new(config.clone());
        config.ignore_client_order = true;
        Ok(Handshakes { ours: Arc::new(config), theirs })
    }
}

impl ServerTls {
    pub fn new(listener: &Listener) -> Result<ServerTls, TlsError> {
        let names = Arc::new(ServerNames::new(listener));
        let resolver = Arc::new(SniResolver::new(listener, Arc::clone(&names))?);
        let open = Handshakes::new(listener, Arc::clone(&resolver), None)?;
        let mut policed = Policed::default();
        if listener.servers.iter().any(|server| server.client_auth.is_some()) {
            policed.names = Some(names);
            for server in &listener.servers {
                let handshakes = match &server.client_auth {
                    Some(policy) => {
                        Some((Arc::clone(policy), Handshakes::new(listener, Arc::clone(&resolver), Some(policy))?))
                    }
                    None => None,
                };
                policed.by_server.push(handshakes);
            }
        }
        Ok(ServerTls { open, policed: Arc::new(policed) })
    }

    /// Reads the client's hello, picks the server's handshakes by SNI and the
    /// cipher order, completes the handshake. Also gives the client-certificate
    /// policy it ran under, if any.
    pub async fn accept<IO: AsyncRead + AsyncWrite + Unpin>(
        &self,
        io: IO,
    ) -> std::io::Result<(TlsStream<IO>, Option<Arc<ClientAuth>>)> {
        let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io).await?;
        let hello = start.client_hello();
        let policed = self.policed.names.as_ref().and_then(|names| {
            let index = names.lookup(hello.server_name());
            self.policed.by_server.get(index).and_then(Option::as_ref)
        });
        let (handshakes, policy) = match policed {
            Some((policy, handshakes)) => (handshakes, Some(Arc::clone(policy))),
            None => (&self.open, None),
        };
        let config = if prefers_chacha(hello.cipher_suites()) { &handshakes.theirs } else { &handshakes.ours };
        Ok((start.into_stream(Arc::clone(config)).await?, policy))
    }
}

/// Whether the first of `offered` that portico speaks is ChaCha20-Poly1305
/// (unknown values, GREASE among them, are passed over).
fn prefers_chacha(offered: &[CipherSuite]) -> bool {
    let first_known = offered.iter().find(|suite| CIPHER_SUITES.iter().any(|ours| ours.suite() == **suite));
    matches!(
        first_known,
        Some(
            CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
                | CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
                | CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        )
    )
}

/// rustls's versions for `protocols`, TLS 1.3 first.
fn versions(protocols: TlsProtocols) -> Vec<&'static rustls::SupportedProtocolVersion> {
    let mut versions = Vec::with_capacity(2);
    if protocols.tls13 {
        versions.push(&rustls::version::TLS13);
    }
    if protocols.tls12 {
        versions.push(&rustls::version::TLS12);
    }
    versions
}

/// The client config toward an HTTPS upstream (ALPN http/1.1), offering
/// `protocols`. `verify = false` accepts any certificate; `ca_file` replaces
/// the system roots.
///
/// With `verify = false` the handshake signatures are still checked, so the
/// connection is encrypted to whoever holds the presented certificate's key.
pub fn upstream_client_config(
    verify: bool,
    ca_file: Option<(&Path, &[CertificateDer<'static>])>,
    protocols: TlsProtocols,
    client_cert: Option<Arc<CertifiedKey>>,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&versions(protocols))
        .map_err(|e| TlsError::Other(format!("upstream TLS: {e}")))?;
    let builder = if verify {
        let roots = match ca_file {
            Some((path, certificates)) => roots_of(path, certificates)?,
            None => system_roots()?,
        };
        builder.with_root_certificates(roots)
    } else {
        builder.dangerous().with_custom_certificate_verifier(accept_any_server_cert())
    };
    let mut config = match client_cert {
        Some(certified) => builder.with_client_cert_resolver(Arc::new(FixedClientCert(certified))),
        None => builder.with_no_client_auth(),
    };
    // Upstream connections are HTTP/1.1 keep-alive (see the contract).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// An upstream's `tls_client_cert`: presented whenever a server asks for a
/// certificate, whatever CAs it names (nginx's `proxy_ssl_certificate` does
/// the same; a server that will not take it ends the handshake, a 502).
#[derive(Debug)]
struct FixedClientCert(Arc<CertifiedKey>);

impl rustls::client::ResolvesClientCert for FixedClientCert {
    fn resolve(&self, _root_hint_subjects: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// `certificates` (read from `path`, which errors name) as trust anchors.
fn roots_of(path: &Path, certificates: &[CertificateDer<'static>]) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for (n, cert) in certificates.iter().enumerate() {
        roots
            .add(cert.clone())
            .map_err(|e| invalid(path, format!("certificate {} is not a usable trust anchor: {e}", n + 1)))?;
    }
    Ok(roots)
}

/// The operating system's trust roots (SSL_CERT_FILE / SSL_CERT_DIR override them).
fn system_roots() -> Result<RootCertStore, TlsError> {
    let loaded = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    // A system bundle may hold a few certificates webpki cannot use; the rest still count.
    roots.add_parsable_certificates(loaded.certs);
    if roots.is_empty() {
        let why = loaded.errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
        let why = if why.is_empty() { String::new() } else { format!(" ({why})") };
        return Err(TlsError::Other(format!(
            "no system trust roots found{why}: set ca_file on the upstream (or tls_verify = false)"
        )));
    }
    Ok(roots)
}

/// The verifier of `tls_verify = false` (also what test clients use toward a
/// self-signed portico): any certificate for any name is accepted, but the
/// handshake signature must still be made by the certificate's key.
pub fn accept_any_server_cert() -> Arc<dyn ServerCertVerifier> {
    Arc::new(AcceptAnyServerCert { algorithms: provider().signature_verification_algorithms })
}

#[derive(Debug)]
struct AcceptAnyServerCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    use std::net::SocketAddr;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use crate::config::runtime::{AccessLogFormat, VirtualServer};

    use crate::test_support::TempDir;

    fn names(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    fn server(names: &[&str], certificate: &Arc<CertifiedKey>) -> Arc<VirtualServer> {
        let server_names = names
            .iter()
            .map(|n| match n.strip_prefix('*') {
                Some(suffix) => runtime::ServerName::Wildcard(suffix.to_owned()),
                None => runtime::ServerName::Exact((*n).to_owned()),
            })
            .collect();
        Arc::new(VirtualServer {
            name: names.first().copied().unwrap_or("_").to_owned(),
            server_names,
            certificate: Some(Arc::clone(certificate)),
            client_auth: None,
            locations: Vec::new(),
            access: Default::default(),
            limit_req: Vec::new(),
            headers: Vec::new(),
            response_headers: Vec::new(),
            gzip: None,
            access_log: None,
            access_log_format: AccessLogFormat::Combined,
            error_log: None,
            read_timeout: None,
            send_timeout: None,
        })
    }

    fn listener(servers: Vec<Arc<VirtualServer>>, default_server: usize) -> Listener {
        Listener {
            addr: SocketAddr::from(([127, 0, 0, 1], 443)),
            tls: true,
            tls_protocols: Default::default(),
            proxy_protocol: false,
            servers,
            default_server,
        }
    }

    fn leaf(certified: &CertifiedKey) -> CertificateDer<'static> {
        certified.end_entity_cert().unwrap().clone().into_owned()
    }

    /// What the client saw of a handshake.
    #[derive(Debug)]
    struct Handshake {
        peer: CertificateDer<'static>,
        alpn: Option<Vec<u8>>,
        version: Option<rustls::ProtocolVersion>,
        kind: Option<rustls::HandshakeKind>,
        group: Option<rustls::NamedGroup>,
        suite: Option<CipherSuite>,
    }

    /// Runs a real handshake in memory and exchanges a byte each way (so the
    /// client also reads the session tickets). `sni = None` sends no SNI.
    async fn handshake(
        server: ServerTls,
        client: Arc<rustls::ClientConfig>,
        sni: Option<&str>,
    ) -> Result<Handshake, std::io::Error> {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let server_side = tokio::spawn(async move {
            let (mut tls, _) = server.accept(server_io).await?;
            let mut byte = [0u8; 1];
            tls.read_exact(&mut byte).await?;
            tls.write_all(&byte).await?;
            tls.shutdown().await
        });

        let mut client = (*client).clone();
        client.enable_sni = sni.is_some();
        // Without SNI the name is still what the verifier checks.
        let name = ServerName::try_from(sni.unwrap_or("no-sni.invalid").to_owned()).unwrap();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let mut tls = connector.connect(name, client_io).await?;
        tls.write_all(b"x").await?;
        let mut byte = [0u8; 1];
        tls.read_exact(&mut byte).await?;
        let (_, connection) = tls.get_ref();
        let peer = connection.peer_certificates().unwrap()[0].clone().into_owned();
        let handshake = Handshake {
            peer,
            alpn: connection.alpn_protocol().map(<[u8]>::to_vec),
            version: connection.protocol_version(),
            kind: connection.handshake_kind(),
            group: connection.negotiated_key_exchange_group().map(|group| group.name()),
            suite: connection.negotiated_cipher_suite().map(|suite| suite.suite()),
        };
        server_side.await.unwrap()?;
        Ok(handshake)
    }

    /// A client that accepts anything and offers h2 first, like a browser.
    fn browser() -> Arc<rustls::ClientConfig> {
        let mut config = (*upstream_client_config(false, None, TlsProtocols::default(), None).unwrap()).clone();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }

    #[tokio::test]
    async fn tls_sni_picks_exact_then_longest_wildcard_then_default() {
        let fallback = self_signed(&names(&["fallback.test"])).unwrap();
        let api = self_signed(&names(&["api.example.com"])).unwrap();
        let wide = self_signed(&names(&["*.example.com"])).unwrap();
        let narrow = self_signed(&names(&["*.eu.example.com"])).unwrap();
        let listener = listener(
            vec![
                server(&["fallback.test"], &fallback),
                server(&["*.example.com"], &wide),
                server(&["api.example.com"], &api),
                server(&["*.eu.example.com"], &narrow),
                server(&["default.test"], &fallback),
            ],
            0,
        );
        let config = ServerTls::new(&listener).unwrap();
        let client = browser();

        let cases = [
            (Some("api.example.com"), &api),
            (Some("API.Example.com"), &api),
            (Some("www.example.com"), &wide),
            (Some("a.b.example.com"), &wide),
            (Some("x.eu.example.com"), &narrow),
            (Some("eu.example.com"), &wide),
            (Some("example.com"), &fallback),
            (Some("unknown.test"), &fallback),
            (None, &fallback),
        ];
        for (sni, expected) in cases {
            let got = handshake(config.clone(), Arc::clone(&client), sni).await.unwrap().peer;
            assert!(got == leaf(expected), "SNI {sni:?} got the wrong certificate");
        }
    }

    #[tokio::test]
    async fn tls_default_server_certificate_without_sni() {
        let first = self_signed(&names(&["first.test"])).unwrap();
        let chosen = self_signed(&names(&["chosen.test"])).unwrap();
        let listener = listener(vec![server(&["first.test"], &first), server(&["chosen.test"], &chosen)], 1);
        let config = ServerTls::new(&listener).unwrap();
        let got = handshake(config.clone(), browser(), None).await.unwrap().peer;
        assert!(got == leaf(&chosen));
        let got = handshake(config.clone(), browser(), Some("nomatch.test")).await.unwrap().peer;
        assert!(got == leaf(&chosen));
        let got = handshake(config, browser(), Some("first.test")).await.unwrap().peer;
        assert!(got == leaf(&first));
    }

    #[tokio::test]
    async fn tls_server_offers_h2_and_http1() {
        let cert = self_signed(&[]).unwrap();
        let config = ServerTls::new(&listener(vec![server(&["localhost"], &cert)], 0)).unwrap();
        let alpn = handshake(config.clone(), browser(), Some("localhost")).await.unwrap().alpn;
        assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
        // The upstream-style client offers only http/1.1.
        let upstream = upstream_client_config(false, None, TlsProtocols::default(), None).unwrap();
        let alpn = handshake(config, upstream, Some("localhost")).await.unwrap().alpn;
        assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    }

    #[tokio::test]
    async fn tls_server_speaks_tls12_and_resumes() {
        let cert = self_signed(&names(&["localhost"])).unwrap();
        let config = ServerTls::new(&listener(vec![server(&["localhost"], &cert)], 0)).unwrap();

        // TLS 1.3, with the upstream client's (shared) resumption store.
        let client = upstream_client_config(false, None, TlsProtocols::default(), None).unwrap();
        let first = handshake(config.clone(), Arc::clone(&client), Some("localhost")).await.unwrap();
        assert_eq!(first.version, Some(rustls::ProtocolVersion::TLSv1_3));
        assert_eq!(first.kind, Some(rustls::HandshakeKind::Full));
        let again = handshake(config.clone(), client, Some("localhost")).await.unwrap();
        assert_eq!(again.kind, Some(rustls::HandshakeKind::Resumed));

        // TLS 1.2: checks the server side and the no-verify client's TLS 1.2 signatures.
        let tls12 = client_with((*provider()).clone(), &[&rustls::version::TLS12]);
        let first = handshake(config.clone(), Arc::clone(&tls12), Some("localhost")).await.unwrap();
        assert_eq!(first.version, Some(rustls::ProtocolVersion::TLSv1_2));
        assert!(first.peer == leaf(&cert));
        let again = handshake(config, tls12, Some("localhost")).await.unwrap();
        assert_eq!(again.kind, Some(rustls::HandshakeKind::Resumed));
    }

    /// A client that accepts any certificate, with `provider`'s algorithms
    /// in its order, speaking `versions`.
    fn client_with(
        provider: CryptoProvider,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<rustls::ClientConfig> {
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(versions)
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(accept_any_server_cert())
            .with_no_client_auth();
        Arc::new(config)
    }

    /// A client offering only `groups`, in that order (a key share for the
    /// first, and for X25519 too when the first is its hybrid, as browsers
    /// send them).
    fn client_with_groups(groups: Vec<&'static dyn rustls::crypto::SupportedKxGroup>) -> Arc<rustls::ClientConfig> {
        client_with(CryptoProvider { kx_groups: groups, ..(*provider()).clone() }, rustls::DEFAULT_VERSIONS)
    }

    #[tokio::test]
    async fn tls_server_takes_the_post_quantum_hybrid_when_offered() {
        use rustls::crypto::aws_lc_rs::kx_group::{SECP256R1, X25519, X25519MLKEM768};
        use rustls::{HandshakeKind, NamedGroup};

        let cert = self_signed(&[]).unwrap();
        let config = ServerTls::new(&listener(vec![server(&["localhost"], &cert)], 0)).unwrap();
        let cases = [
            // Current browsers, curl on OpenSSL 3.5: the hybrid, in one round trip.
            (vec![X25519MLKEM768, X25519], NamedGroup::X25519MLKEM768, HandshakeKind::Full),
            // OpenSSL 3.0's clients, Java 21: X25519, in one round trip too.
            (vec![X25519, SECP256R1], NamedGroup::X25519, HandshakeKind::Full),
            // The hybrid listed after X25519, with no share for it: X25519, no retry.
            (vec![X25519, X25519MLKEM768], NamedGroup::X25519, HandshakeKind::Full),
        ];
        for (groups, group, kind) in cases {
            let names: Vec<_> = groups.iter().map(|g| g.name()).collect();
            let got = handshake(config.clone(), client_with_groups(groups), Some("localhost")).await.unwrap();
            assert_eq!((got.group, got.kind), (Some(group), Some(kind)), "client offering {names:?}");
        }
    }

    #[tokio::test]
    async fn tls_server_picks_aes_128_unless_the_client_puts_chacha_first() {
        use rustls::crypto::aws_lc_rs::cipher_suite::*;
        use rustls::version::{TLS12, TLS13};

        let cert = self_signed(&[]).unwrap();
        let config = ServerTls::new(&listener(vec![server(&["localhost"], &cert)], 0)).unwrap();
        let (aes128, aes256, chacha) =
            (TLS13_AES_128_GCM_SHA256, TLS13_AES_256_GCM_SHA384, TLS13_CHACHA20_POLY1305_SHA256);
        let (aes128_12, aes256_12, chacha_12) = (
            TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        );
        let cases = [
            // OpenSSL 3's order (curl, wrk, Python); Java and rustls also
            // list AES-256 first.
            (&TLS13, vec![aes256, chacha, aes128], aes128),
            // A client without AES hardware lists ChaCha20 first, and gets it.
            (&TLS13, vec![chacha, aes128, aes256], chacha),
            // Only what the client offers.
            (&TLS13, vec![aes256], aes256),
            (&TLS13, vec![aes256, chacha], aes256),
            // The same rules in TLS 1.2.
            (&TLS12, vec![aes256_12, chacha_12, aes128_12], aes128_12),
            (&TLS12, vec![chacha_12, aes256_12, aes128_12], chacha_12),
        ];
        for (version, suites, expected) in cases {
            let names: Vec<_> = suites.iter().map(|s| s.suite()).collect();
            let client = client_with(CryptoProvider { cipher_suites: suites, ..(*provider()).clone() }, &[version]);
            let got = handshake(config.clone(), client, Some("localhost")).await.unwrap();
            assert_eq!(got.suite, Some(expected.suite()), "client offering {names:?}");
        }
    }

    #[test]
    fn chacha_is_preferred_only_when_first_among_the_suites_portico_knows() {
        let grease = CipherSuite::from(0x0a0a);
        let cases = [
            (vec![grease, CipherSuite::TLS13_CHACHA20_POLY1305_SHA256, CipherSuite::TLS13_AES_128_GCM_SHA256], true),
            (vec![grease, CipherSuite::TLS13_AES_256_GCM_SHA384, CipherSuite::TLS13_CHACHA20_POLY1305_SHA256], false),
            (vec![CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256], true),
            (vec![CipherSuite::TLS_RSA_WITH_AES_128_CBC_SHA, CipherSuite::TLS13_CHACHA20_POLY1305_SHA256], true),
            (vec![], false),
        ];
        for (offered, expected) in cases {
            assert_eq!(prefers_chacha(&offered), expected, "{offered:?}");
        }
    }

    #[tokio::test]
    async fn tls_upstream_client_asks_for_aes_128_first() {
        // A server that follows the client's order, as OpenSSL's does by
        // default (nginx, Tomcat with OpenSSL).
        let cert = self_signed(&[]).unwrap();
        let ours = ServerTls::new(&listener(vec![server(&["localhost"], &cert)], 0)).unwrap();
        let open = Handshakes { ours: Arc::clone(&ours.open.theirs), theirs: ours.open.theirs };
        let theirs = ServerTls { open, policed: ours.policed };
        let client = upstream_client_config(false, None, TlsProtocols::default(), None).unwrap();
        let got = handshake(theirs, client, Some("localhost")).await.unwrap();
        assert_eq!(got.suite, Some(CipherSuite::TLS13_AES_128_GCM_SHA256));
    }

    #[test]
    fn tls_server_config_needs_a_certificate() {
        let mut bare = server(&["a.test"], &self_signed(&[]).unwrap());
        Arc::get_mut(&mut bare).unwrap().certificate = None;
        let err = ServerTls::new(&listener(vec![bare], 0)).unwrap_err();
        assert!(err.to_string().contains("no server with a certificate"), "{err}");
    }

    #[tokio::test]
    async fn tls_upstream_verify_false_accepts_self_signed() {
        let cert = self_signed(&names(&["backend.internal"])).unwrap();
        let config = ServerTls::new(&listener(vec![server(&["backend.internal"], &cert)], 0)).unwrap();
        let client = upstream_client_config(false, None, TlsProtocols::default(), None).unwrap();
        // Any name, even one the certificate does not carry.
        handshake(config.clone(), Arc::clone(&client), Some("10-0-0-1.other")).await.unwrap();
        handshake(config, client, Some("backend.internal")).await.unwrap();
    }

    #[tokio::test]
    async fn tls_upstream_ca_file_trusts_only_its_certificates() {
        let tmp = TempDir::new("ca");
        let (cert_pem, key_pem) = generate_pem(&names(&["wso2.local"]), KeyType::EcdsaP256).unwrap();
        let cert_path = tmp.write("wso2.crt", &cert_pem);
        let key_path = tmp.write("wso2.key", &key_pem);
        let trusted = load_certified_key(&cert_path, &key_path).unwrap();
        let certificates = read_certificates(&cert_path).unwrap();
        let client =
            upstream_client_config(true, Some((&cert_path, &certificates)), TlsProtocols::default(), None).unwrap();

        let good = ServerTls::new(&listener(vec![server(&["wso2.local"], &trusted)], 0)).unwrap();
        handshake(good.clone(), Arc::clone(&client), Some("wso2.local")).await.unwrap();
        // Trusted certificate, wrong name: still rejected.
        assert!(handshake(good, Arc::clone(&client), Some("other.local")).await.is_err());

        let stranger = self_signed(&names(&["wso2.local"])).unwrap();
        let bad = ServerTls::new(&listener(vec![server(&["wso2.local"], &stranger)], 0)).unwrap();
        let err = handshake(bad, client, Some("wso2.local")).await.unwrap_err();
        // Same subject, other key: webpki tries it as the issuer and the signature fails.
        assert!(err.to_string().contains("invalid peer certificate"), "{err}");
    }

    #[test]
    fn tls_upstream_ca_file_errors() {
        let tmp = TempDir::new("ca-err");
        let err = read_certificates(&tmp.0.join("missing.pem")).unwrap_err();
        assert!(matches!(err, TlsError::Read { .. }), "{err}");
        let empty = tmp.write("empty.pem", "");
        let err = read_certificates(&empty).unwrap_err();
        assert!(err.to_string().contains("no certificate found in PEM"), "{err}");
    }

    #[test]
    fn tls_load_certified_key_pkcs8_and_sec1() {
        let tmp = TempDir::new("load");
        let (cert_pem, key_pem) = generate_pem(&names(&["a.test", "*.b.test"]), KeyType::EcdsaP256).unwrap();
        let cert = tmp.write("a.crt", &cert_pem);
        let key = tmp.write("a.key", &key_pem);
        let loaded = load_certified_key(&cert, &key).unwrap();
        assert_eq!(loaded.cert.len(), 1);
        assert_eq!(loaded.key.algorithm(), rustls::SignatureAlgorithm::ECDSA);

        // The same key as SEC1 (`EC PRIVATE KEY`, what `openssl ecparam -genkey` writes).
        let sec1 = sec1_from_pkcs8(&key_pem);
        let key_sec1 = tmp.write("a-sec1.key", &sec1);
        load_certified_key(&cert, &key_sec1).unwrap();

        // A chain: leaf then an extra certificate.
        let (other_pem, _) = generate_pem(&[], KeyType::EcdsaP256).unwrap();
        let chain = tmp.write("chain.crt", &format!("{cert_pem}{other_pem}"));
        assert_eq!(load_certified_key(&chain, &key).unwrap().cert.len(), 2);
    }

    /// SEC1 `EC PRIVATE KEY` from a PKCS#8 P-256 key: PKCS#8 wraps the SEC1
    /// structure in an OCTET STRING, last in the PKCS#8 that rcgen writes.
    fn sec1_from_pkcs8(pkcs8_pem: &str) -> String {
        let der = PrivatePkcs8KeyDer::from_pem_slice(pkcs8_pem.as_bytes()).unwrap();
        let der = der.secret_pkcs8_der();
        // ...OCTET STRING (0x04) len (0x6d) SEQUENCE (0x30) len (0x6b): rcgen writes
        // the key without the optional parameters, 109 bytes long.
        let start = der.windows(4).position(|w| w == [0x04, 0x6d, 0x30, 0x6b]).unwrap() + 2;
        let sec1 = &der[start..];
        assert_eq!(sec1.len(), 0x6b + 2);
        pem_encode("EC PRIVATE KEY", sec1)
    }

    fn pem_encode(label: &str, der: &[u8]) -> String {
        let b64 = base64_encode(der);
        let mut pem = format!("-----BEGIN {label}-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap());
            pem.push('\n');
        }
        pem.push_str(&format!("-----END {label}-----\n"));
        pem
    }

    fn base64_encode(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    /// The PKCS#1 key inside an RSA PKCS#8 one: PKCS#8 wraps it, after a
    /// version and the fixed rsaEncryption algorithm, in an OCTET STRING.
    fn pkcs1_of(pkcs8: &[u8]) -> &[u8] {
        // Version 0, then the algorithm: rsaEncryption with NULL parameters.
        const HEAD: [u8; 18] = [
            0x02, 0x01, 0x00, 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
        ];
        // SEQUENCE (30 82 LL LL), HEAD, OCTET STRING (04 82 LL LL), the PKCS#1 key.
        assert_eq!(&pkcs8[4..22], &HEAD);
        assert_eq!(&pkcs8[22..24], &[0x04, 0x82]);
        let len = usize::from(u16::from_be_bytes([pkcs8[24], pkcs8[25]]));
        let pkcs1 = &pkcs8[26..];
        assert_eq!(pkcs1.len(), len);
        pkcs1
    }

    #[test]
    fn tls_load_certified_key_pkcs1_rsa() {
        let tmp = TempDir::new("pkcs1");
        let (cert_pem, key_pem) = generate_pem(&names(&["rsa.test"]), KeyType::Rsa(2048)).unwrap();
        let cert = tmp.write("rsa.crt", &cert_pem);
        // The same key as PKCS#1 (`RSA PRIVATE KEY`, what older openssl writes).
        let pkcs8 = PrivatePkcs8KeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        let key_path = tmp.write("rsa.key", &pem_encode("RSA PRIVATE KEY", pkcs1_of(pkcs8.secret_pkcs8_der())));
        let loaded = load_certified_key(&cert, &key_path).unwrap();
        assert_eq!(loaded.key.algorithm(), rustls::SignatureAlgorithm::RSA);
    }

    #[test]
    fn tls_load_certified_key_errors() {
        let tmp = TempDir::new("load-err");
        let (cert_pem, key_pem) = generate_pem(&names(&["a.test"]), KeyType::EcdsaP256).unwrap();
        let cert = tmp.write("a.crt", &cert_pem);
        let key = tmp.write("a.key", &key_pem);
        let message = |result: Result<Arc<CertifiedKey>, TlsError>| result.unwrap_err().to_string();

        let missing = tmp.0.join("missing.crt");
        let err = message(load_certified_key(&missing, &key));
        assert!(err.starts_with(&format!("cannot read {}", missing.display())), "{err}");

        let not_pem = tmp.write("garbage.crt", "hello\n");
        let err = message(load_certified_key(&not_pem, &key));
        assert!(
            err.starts_with(&not_pem.display().to_string()) && err.contains("no certificate found in PEM"),
            "{err}"
        );

        // The key given as the certificate: no certificate in it.
        let err = message(load_certified_key(&key, &key));
        assert!(err.contains("no certificate found in PEM"), "{err}");

        // The certificate given as the key.
        let err = message(load_certified_key(&cert, &cert));
        assert!(err.starts_with(&cert.display().to_string()), "{err}");
        assert!(err.contains("no private key found") && err.contains("holds a certificate"), "{err}");

        let encrypted =
            tmp.write("enc.key", "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n");
        let err = message(load_certified_key(&cert, &encrypted));
        assert!(err.contains("no private key found") && err.contains("encrypted"), "{err}");

        let broken = tmp.write("broken.key", "-----BEGIN PRIVATE KEY-----\nnot base64!\n-----END PRIVATE KEY-----\n");
        let err = message(load_certified_key(&cert, &broken));
        assert!(err.starts_with(&broken.display().to_string()) && err.contains("invalid PEM"), "{err}");

        let (_, other_key_pem) = generate_pem(&names(&["a.test"]), KeyType::EcdsaP256).unwrap();
        let other_key = tmp.write("other.key", &other_key_pem);
        let err = message(load_certified_key(&cert, &other_key));
        assert!(err.starts_with(&other_key.display().to_string()), "{err}");
        assert!(err.contains("key does not match certificate"), "{err}");
    }

    #[test]
    fn tls_generate_names_and_key_types() {
        // IP names become IP SANs, wildcards DNS SANs; no names means localhost.
        let certified = self_signed(&names(&["*.example.com", "127.0.0.1", "::1"])).unwrap();
        let cert = rustls::server::ParsedCertificate::try_from(certified.end_entity_cert().unwrap()).unwrap();
        for ok in ["www.example.com", "127.0.0.1", "::1"] {
            let name = ServerName::try_from(ok).unwrap();
            assert!(rustls::client::verify_server_name(&cert, &name).is_ok(), "{ok}");
        }
        for bad in ["example.com", "a.b.example.com", "127.0.0.2"] {
            let name = ServerName::try_from(bad).unwrap();
            assert!(rustls::client::verify_server_name(&cert, &name).is_err(), "{bad}");
        }

        for empty in [names(&[]), names(&["_"])] {
            let certified = self_signed(&empty).unwrap();
            let cert = rustls::server::ParsedCertificate::try_from(certified.end_entity_cert().unwrap()).unwrap();
            let localhost = ServerName::try_from("localhost").unwrap();
            assert!(rustls::client::verify_server_name(&cert, &localhost).is_ok());
        }

        let (cert_pem, key_pem) = generate_pem(&names(&["a.test"]), KeyType::EcdsaP256).unwrap();
        assert!(cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));

        let err = generate_pem(&names(&["a.test"]), KeyType::Rsa(1024)).unwrap_err();
        assert!(err.to_string().contains("2048, 3072 or 4096"), "{err}");
        assert!(self_signed(&names(&["bücher.example"])).is_err());
    }
}
