//! Client certificates toward clients (mutual TLS): nginx's `ssl_verify_client`
//! and `ssl_client_certificate` as a server's `tls.verify_client` and
//! `tls.client_ca`, and what a handshake established, for the
//! `$ssl_client_escaped_cert` and `$ssl_client_verify` template variables
//! (WSO2's gateway reads the certificate from such a header) and nginx's
//! `$ssl_client_s_dn`, `$ssl_client_i_dn`, `$ssl_client_serial` and
//! `$ssl_client_fingerprint` (who the client is, for upstreams that
//! authorize by it).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use http::HeaderValue;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};

use super::{TlsError, dn, provider, read_certificates, roots_of};

/// `tls.verify_client`: how a server asks clients for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyClient {
    /// A certificate that chains to `client_ca` is required: a client without
    /// one fails the handshake.
    On,
    /// Asked for; a client may send none, but one it sends must chain to
    /// `client_ca`, or the handshake fails.
    Optional,
    /// Asked for, and any certificate is taken (its key must still sign the
    /// handshake): the upstream judges it, as WSO2's gateway does.
    OptionalNoCa,
}

impl VerifyClient {
    /// nginx's values, but `"off"` (no policy at all).
    pub fn parse(value: &str) -> Option<VerifyClient> {
        match value {
            "on" => Some(VerifyClient::On),
            "optional" => Some(VerifyClient::Optional),
            "optional_no_ca" => Some(VerifyClient::OptionalNoCa),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            VerifyClient::On => "on",
            VerifyClient::Optional => "optional",
            VerifyClient::OptionalNoCa => "optional_no_ca",
        }
    }
}

/// A TLS server's client-certificate policy, built once per snapshot.
#[derive(Debug)]
pub struct ClientAuth {
    pub mode: VerifyClient,
    /// The `client_ca` certificates and `client_crl` lists, compared with
    /// another snapshot's after a reload.
    ca: Vec<CertificateDer<'static>>,
    crls: Vec<CertificateRevocationListDer<'static>>,
    /// Checks a chain against `ca` (none for `optional_no_ca` without `client_ca`).
    ca_verifier: Option<Arc<dyn ClientCertVerifier>>,
    /// What the handshake runs.
    handshake: Arc<dyn ClientCertVerifier>,
}

impl ClientAuth {
    /// `client_ca` is required for `on` and `optional`, and for `client_crl`.
    /// With CRLs, every certificate of a client's chain must be covered by one
    /// (as nginx's `ssl_crl`: OpenSSL checks the whole chain).
    pub fn new(
        mode: VerifyClient,
        client_ca: Option<&Path>,
        client_crl: Option<&Path>,
    ) -> Result<ClientAuth, TlsError> {
        let crls = match client_crl {
            Some(path) => read_crls(path)?,
            None => Vec::new(),
        };
        let (ca, ca_verifier) = match client_ca {
            Some(path) => {
                let ca = read_certificates(path)?;
                let roots = Arc::new(roots_of(path, &ca)?);
                let mut builder =
                    WebPkiClientVerifier::builder_with_provider(roots, provider()).with_crls(crls.iter().cloned());
                if mode != VerifyClient::On {
                    builder = builder.allow_unauthenticated();
                }
                let verifier = builder.build().map_err(|e| super::invalid(path, format!("client_ca: {e}")))?;
                (ca, Some(verifier))
            }
            None if client_crl.is_some() => return Err(TlsError::Other("client_crl needs client_ca".into())),
            None if mode == VerifyClient::OptionalNoCa => (Vec::new(), None),
            None => return Err(TlsError::Other(format!("verify_client = \"{}\" needs client_ca", mode.as_str()))),
        };
        let handshake = match (mode, &ca_verifier) {
            (VerifyClient::On | VerifyClient::Optional, Some(verifier)) => Arc::clone(verifier),
            _ => Arc::new(AnyClientCert {
                hints: ca_verifier.as_ref().map(|v| v.root_hint_subjects().to_vec()).unwrap_or_default(),
                algorithms: provider().signature_verification_algorithms,
            }) as Arc<dyn ClientCertVerifier>,
        };
        Ok(ClientAuth { mode, ca, crls, ca_verifier, handshake })
    }

    /// The `client_crl` lists.
    pub fn crls(&self) -> &[CertificateRevocationListDer<'static>] {
        &self.crls
    }

    /// The verifier for the handshakes of servers with this policy.
    pub fn verifier(&self) -> Arc<dyn ClientCertVerifier> {
        Arc::clone(&self.handshake)
    }

    /// Whether a handshake made under `other` (perhaps another snapshot's)
    /// asked what this policy asks.
    pub fn same_as(&self, other: &ClientAuth) -> bool {
        std::ptr::eq(self, other) || (self.mode == other.mode && self.ca == other.ca && self.crls == other.crls)
    }

    /// What a finished handshake under this policy established, from the
    /// chain the client sent (leaf first).
    pub fn outcome(self: &Arc<Self>, chain: Option<&[CertificateDer<'static>]>) -> ClientCertificate {
        let (escaped_pem, verify, identity) = match chain {
            Some([leaf, intermediates @ ..]) => {
                let verify = match (self.mode, &self.ca_verifier) {
                    // The handshake has checked the chain against client_ca.
                    (VerifyClient::On | VerifyClient::Optional, _) => HeaderValue::from_static("SUCCESS"),
                    (VerifyClient::OptionalNoCa, None) => {
                        HeaderValue::from_static("FAILED:no client_ca to verify against")
                    }
                    (VerifyClient::OptionalNoCa, Some(ca)) => {
                        match ca.verify_client_cert(leaf, intermediates, UnixTime::now()) {
                            Ok(_) => HeaderValue::from_static("SUCCESS"),
                            Err(e) => HeaderValue::from_str(&format!("FAILED:{e}"))
                                .unwrap_or(HeaderValue::from_static("FAILED")),
                        }
                    }
                };
                // Letters, digits, `-._~%` only: always a valid header value.
                (HeaderValue::from_str(&escaped_pem(leaf)).ok(), verify, Some(Box::new(ClientIdentity::of(leaf))))
            }
            _ => (None, HeaderValue::from_static("NONE"), None),
        };
        ClientCertificate { policy: Arc::clone(self), escaped_pem, verify, identity }
    }
}

/// Every CRL in the PEM file `path`.
fn read_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let text = super::read(path)?;
    let crls = CertificateRevocationListDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| super::invalid(path, format!("bad PEM: {e}")))?;
    if crls.is_empty() {
        return Err(super::invalid(path, "no CRL found in PEM (expected a BEGIN X509 CRL block)"));
    }
    Ok(crls)
}

/// What a TLS connection's handshake established about the client's certificate.
#[derive(Debug)]
pub struct ClientCertificate {
    /// The policy the handshake ran under: that of the server its SNI chose.
    pub policy: Arc<ClientAuth>,
    /// `$ssl_client_escaped_cert`: the leaf certificate in PEM, URL-encoded
    /// (made once, shared by every request on the connection).
    pub escaped_pem: Option<HeaderValue>,
    /// `$ssl_client_verify`: `SUCCESS`, `FAILED:reason` or `NONE`.
    pub verify: HeaderValue,
    /// Who the certificate names, when there is one: boxed, so that a
    /// connection without one carries a pointer for it.
    identity: Option<Box<ClientIdentity>>,
}

impl ClientCertificate {
    /// `$ssl_client_s_dn`: the subject, as nginx prints it (RFC 2253 form,
    /// most specific first: `CN=app-1,O=Example\, Ltd,C=US`).
    pub fn subject_dn(&self) -> Option<&HeaderValue> {
        self.identity.as_ref()?.subject_dn.as_ref()
    }

    /// `$ssl_client_i_dn`: the issuer, in the same form.
    pub fn issuer_dn(&self) -> Option<&HeaderValue> {
        self.identity.as_ref()?.issuer_dn.as_ref()
    }

    /// `$ssl_client_serial`: the serial number in upper-case hex.
    pub fn serial(&self) -> Option<&HeaderValue> {
        self.identity.as_ref()?.serial.as_ref()
    }

    /// `$ssl_client_fingerprint`: the SHA-1 of the certificate in lower-case hex.
    pub fn fingerprint(&self) -> Option<&HeaderValue> {
        self.identity.as_ref().map(|identity| &identity.fingerprint)
    }
}

/// The client certificate's values nginx's `$ssl_client_*` variables give,
/// made once per connection as nginx's are made per request: a header that
/// prints them costs a reference count. `None` where the certificate's DER
/// holds no such field (or one OpenSSL, and so nginx, would refuse), and for
/// an empty subject: a header that renders empty is not sent.
#[derive(Debug)]
struct ClientIdentity {
    subject_dn: Option<HeaderValue>,
    issuer_dn: Option<HeaderValue>,
    serial: Option<HeaderValue>,
    fingerprint: HeaderValue,
}

impl ClientIdentity {
    fn of(der: &[u8]) -> ClientIdentity {
        let fields = dn::fields(der);
        // All printable ASCII (dn.rs escapes the rest): valid header values.
        let value = |text: Option<String>| text.filter(|t| !t.is_empty()).and_then(|t| HeaderValue::try_from(t).ok());
        ClientIdentity {
            subject_dn: value(fields.as_ref().and_then(|f| dn::name(f.subject))),
            issuer_dn: value(fields.as_ref().and_then(|f| dn::name(f.issuer))),
            serial: value(fields.as_ref().and_then(|f| dn::serial(f.serial))),
            fingerprint: HeaderValue::try_from(sha1_hex(der)).unwrap_or(HeaderValue::from_static("")),
        }
    }
}

/// SHA-1 of `der` in lower-case hex, as nginx's `$ssl_client_fingerprint`
/// (what upstreams and allow-lists compare; not a security choice of ours).
fn sha1_hex(der: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, der);
    let mut hex = String::with_capacity(40);
    for byte in digest.as_ref() {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// `optional_no_ca`: any chain is taken, but the handshake signature must be
/// made by the presented certificate's key.
#[derive(Debug)]
struct AnyClientCert {
    /// The `client_ca` subjects, when there is one: a client picks its certificate by them.
    hints: Vec<DistinguishedName>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
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

/// A certificate as nginx's `$ssl_client_escaped_cert` gives it: PEM (64
/// base64 characters a line, as OpenSSL writes it), then every byte but
/// letters, digits and `-._~` percent-encoded, so that it fits one header
/// line and any URL decoder restores it (`+` is encoded too, for Java's).
fn escaped_pem(der: &[u8]) -> String {
    let mut pem = String::with_capacity(der.len() * 4 / 3 + 80);
    pem.push_str("-----BEGIN CERTIFICATE-----\n");
    let encoded = base64(der);
    for line in encoded.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    let mut escaped = String::with_capacity(pem.len() + pem.len() / 8);
    for byte in pem.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            escaped.push(char::from(byte));
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            escaped.push('%');
            escaped.push(char::from(HEX[usize::from(byte >> 4)]));
            escaped.push(char::from(HEX[usize::from(byte & 15)]));
        }
    }
    escaped
}

/// Standard base64 with padding (RFC 4648), as PEM uses.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        let vectors =
            [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("foobar", "Zm9vYmFy")];
        for (plain, encoded) in vectors {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain:?}");
        }
    }

    #[test]
    fn escaped_pem_is_one_header_line_that_url_decodes_to_pem() {
        let der: Vec<u8> = (0..=255u8).cycle().take(700).collect();
        let escaped = escaped_pem(&der);
        assert!(escaped.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)), "{escaped}");
        assert!(escaped.starts_with("-----BEGIN%20CERTIFICATE-----%0A"), "{escaped}");
        assert!(escaped.ends_with("%0A-----END%20CERTIFICATE-----%0A"), "{escaped}");
        // Decoded: 64-character lines of the base64.
        let mut decoded = Vec::new();
        let bytes = escaped.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or_default();
                decoded.push(u8::from_str_radix(hex, 16).unwrap_or_default());
                i += 3;
            } else {
                decoded.push(bytes[i]);
                i += 1;
            }
        }
        let pem = String::from_utf8(decoded).unwrap_or_default();
        let lines: Vec<&str> = pem.lines().collect();
        assert_eq!(lines.first(), Some(&"-----BEGIN CERTIFICATE-----"));
        assert_eq!(lines.last(), Some(&"-----END CERTIFICATE-----"));
        let body = &lines[1..lines.len() - 1];
        assert!(body[..body.len() - 1].iter().all(|l| l.len() == 64), "{body:?}");
        assert_eq!(body.concat(), base64(&der));
    }

    #[test]
    fn sha1_hex_is_lower_case_sha1() {
        // FIPS 180-2's "abc".
        assert_eq!(sha1_hex(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
    }

    #[test]
    fn a_certificate_gives_its_names_serial_and_fingerprint_and_none_gives_nothing() {
        let policy =
            Arc::new(ClientAuth::new(VerifyClient::OptionalNoCa, None, None).unwrap_or_else(|e| panic!("{e}")));
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| panic!("{e}"));
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::CountryName, "US");
        params.distinguished_name.push(rcgen::DnType::CommonName, "app-1");
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x0a, 0xbc]));
        let key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        let der = params.self_signed(&key).unwrap_or_else(|e| panic!("{e}")).der().clone();
        let cert = policy.outcome(Some(std::slice::from_ref(&der)));
        let text = |value: Option<&HeaderValue>| value.map(|v| v.to_str().unwrap_or_default().to_owned());
        assert_eq!(text(cert.subject_dn()).as_deref(), Some("CN=app-1,C=US"));
        assert_eq!(text(cert.issuer_dn()).as_deref(), Some("CN=app-1,C=US"));
        assert_eq!(text(cert.serial()).as_deref(), Some("0ABC"));
        assert_eq!(text(cert.fingerprint()), Some(sha1_hex(&der)));

        // DER that is no certificate still has a fingerprint, and nothing else.
        let junk = policy.outcome(Some(&[CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x01])]));
        assert_eq!(text(junk.fingerprint()), Some(sha1_hex(&[0x30, 0x03, 0x02, 0x01, 0x01])));
        assert!(junk.subject_dn().is_none() && junk.issuer_dn().is_none() && junk.serial().is_none());

        let none = policy.outcome(None);
        assert!(none.subject_dn().is_none() && none.issuer_dn().is_none());
        assert!(none.serial().is_none() && none.fingerprint().is_none());
    }

    #[test]
    fn verify_client_needs_client_ca_except_optional_no_ca() {
        for mode in [VerifyClient::On, VerifyClient::Optional] {
            let err = ClientAuth::new(mode, None, None).err().map(|e| e.to_string()).unwrap_or_default();
            assert_eq!(err, format!("verify_client = \"{}\" needs client_ca", mode.as_str()));
        }
        assert!(ClientAuth::new(VerifyClient::OptionalNoCa, None, None).is_ok());
    }
}
