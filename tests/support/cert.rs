//! Test certificates: a fresh CA and a leaf for the given names, written as
//! PEM files for portico's config and kept as DER for rustls clients and servers.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SerialNumber};
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::TempDir;

/// A leaf certificate for some names, issued by its own throwaway CA.
///
/// Files (removed when this is dropped, so keep it alive while portico uses them):
/// `cert_path()` the leaf PEM, `key_path()` its PKCS#8 key PEM, `ca_path()` the CA
/// PEM (for an upstream's `ca_file`), `chain_path()` leaf then CA.
pub struct TestCert {
    names: Vec<String>,
    dir: TempDir,
    leaf: CertificateDer<'static>,
    ca: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
    /// The CA's parameters and key, to issue siblings and sign CRLs.
    issuer: Arc<Issuer<'static, KeyPair>>,
    ca_pem: String,
    /// The CA's subject CN, `portico test CA ...`.
    ca_name: String,
    serial: SerialNumber,
}

impl TestCert {
    /// Issues a leaf for `names` (DNS names or IP addresses; the first is also
    /// the subject CN) and writes the PEM files into a fresh temp directory.
    pub fn new(names: &[&str]) -> TestCert {
        assert!(!names.is_empty(), "TestCert::new needs at least one name");
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();

        let ca_key = KeyPair::generate().expect("generate CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        let ca_name = format!("portico test CA {:016x}", super::random_u64());
        ca_params.distinguished_name.push(DnType::CommonName, ca_name.clone());
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign CA");
        let issuer = Arc::new(Issuer::new(ca_params, ca_key));
        let ca = (issuer, ca_cert.der().clone(), ca_cert.pem(), ca_name);
        TestCert::issued(&names, ca, None, None)
    }

    /// Another leaf for `names` from this one's CA (a second client of the
    /// same organisation, say).
    pub fn sibling(&self, names: &[&str]) -> TestCert {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        TestCert::issued(&names, self.ca_parts(), None, None)
    }

    /// Another leaf from this one's CA whose subject is `subject`, one
    /// attribute an RDN in this order (each type once), and whose serial
    /// number is `serial` (big-endian, positive).
    pub fn sibling_named(&self, names: &[&str], subject: &[(DnType, &str)], serial: &[u8]) -> TestCert {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut dn = rcgen::DistinguishedName::new();
        for (ty, value) in subject {
            dn.push(ty.clone(), *value);
        }
        TestCert::issued(&names, self.ca_parts(), Some(dn), Some(SerialNumber::from_slice(serial)))
    }

    /// The CA's subject CN.
    pub fn ca_name(&self) -> &str {
        &self.ca_name
    }

    fn ca_parts(&self) -> CaParts {
        (Arc::clone(&self.issuer), self.ca.clone(), self.ca_pem.clone(), self.ca_name.clone())
    }

    fn issued(
        names: &[String],
        (issuer, ca, ca_pem, ca_name): CaParts,
        subject: Option<rcgen::DistinguishedName>,
        serial: Option<SerialNumber>,
    ) -> TestCert {
        let leaf_key = KeyPair::generate().expect("generate leaf key");
        let mut leaf_params = CertificateParams::new(names.to_vec()).expect("leaf names");
        match subject {
            Some(dn) => leaf_params.distinguished_name = dn,
            None => leaf_params.distinguished_name.push(DnType::CommonName, names[0].clone()),
        }
        let serial = serial.unwrap_or_else(|| SerialNumber::from(super::random_u64() >> 1));
        leaf_params.serial_number = Some(serial.clone());
        let leaf_cert = leaf_params.signed_by(&leaf_key, &issuer).expect("sign leaf");

        let dir = TempDir::new("cert");
        let leaf_pem = leaf_cert.pem();
        write(&dir.join("cert.pem"), &leaf_pem);
        write(&dir.join("key.pem"), &leaf_key.serialize_pem());
        write(&dir.join("ca.pem"), &ca_pem);
        write(&dir.join("chain.pem"), &format!("{leaf_pem}{ca_pem}"));

        TestCert {
            names: names.to_vec(),
            dir,
            leaf: leaf_cert.der().clone(),
            ca,
            key: PrivatePkcs8KeyDer::from(leaf_key.serialize_der()),
            issuer,
            ca_pem,
            ca_name,
            serial,
        }
    }

    /// Writes a CRL from this certificate's CA that revokes `revoked` (leaves
    /// of the same CA), and returns its path; `name` tells CRLs apart.
    pub fn crl_path(&self, name: &str, revoked: &[&TestCert]) -> PathBuf {
        let now = rcgen::date_time_ymd(2026, 1, 1);
        let params = rcgen::CertificateRevocationListParams {
            this_update: now,
            next_update: rcgen::date_time_ymd(2099, 1, 1),
            crl_number: SerialNumber::from(super::random_u64() >> 1),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|cert| rcgen::RevokedCertParams {
                    serial_number: cert.serial.clone(),
                    revocation_time: now,
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.issuer).expect("sign CRL");
        let path = self.dir.join(format!("{name}.crl.pem"));
        write(&path, &crl.pem().expect("CRL as PEM"));
        path
    }

    /// The names the leaf is valid for.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The leaf certificate, PEM.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    /// The leaf's private key, PKCS#8 PEM.
    pub fn key_path(&self) -> PathBuf {
        self.dir.join("key.pem")
    }

    /// The issuing CA, PEM (what an upstream's `ca_file` would point at).
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Leaf followed by the CA, PEM.
    pub fn chain_path(&self) -> PathBuf {
        self.dir.join("chain.pem")
    }

    /// The leaf, DER: compare with `Client::peer_certificate()` to see which
    /// certificate a server chose.
    pub fn der(&self) -> &CertificateDer<'static> {
        &self.leaf
    }

    /// The CA, DER.
    pub fn ca_der(&self) -> &CertificateDer<'static> {
        &self.ca
    }

    /// The leaf's private key.
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }

    /// Roots that trust this certificate (and only it).
    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone()).expect("add test CA to roots");
        roots
    }

    /// `{ cert = "...", key = "..." }`, for a `tls = ` line in a test config.
    pub fn toml_tls(&self) -> String {
        format!("{{ cert = {}, key = {} }}", toml_path(&self.cert_path()), toml_path(&self.key_path()))
    }

    /// A rustls server config serving this leaf, TLS 1.2 and 1.3, with these
    /// ALPN protocols (empty: no ALPN).
    pub fn server_config(&self, alpn: &[&str]) -> rustls::ServerConfig {
        self.server_config_for(alpn, rustls::DEFAULT_VERSIONS)
    }

    /// A rustls server config serving this leaf (ALPN http/1.1) that requires
    /// a client certificate issued by `clients`' CA.
    pub fn server_config_requiring(&self, clients: &TestCert) -> rustls::ServerConfig {
        let provider = portico::tls::provider();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(clients.roots()),
            Arc::clone(&provider),
        )
        .build()
        .expect("a client verifier over the test CA");
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("the provider supports the default TLS versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![self.leaf.clone()], self.key_der())
            .expect("test key matches its certificate");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config
    }

    /// The same, speaking only `versions`.
    pub fn server_config_for(
        &self,
        alpn: &[&str],
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> rustls::ServerConfig {
        let mut config = rustls::ServerConfig::builder_with_provider(portico::tls::provider())
            .with_protocol_versions(versions)
            .expect("the provider supports these TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![self.leaf.clone()], self.key_der())
            .expect("test key matches its certificate");
        config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        config
    }
}

/// What a leaf is issued with: the CA's parameters and key, DER, PEM and CN.
type CaParts = (Arc<Issuer<'static, KeyPair>>, CertificateDer<'static>, String, String);

/// A path as a TOML basic string, quoted.
pub fn toml_path(path: &Path) -> String {
    let text = path.to_str().expect("test paths are UTF-8");
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}
