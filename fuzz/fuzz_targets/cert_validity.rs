//! `portico::tls::validity` and `crl_next_update` on arbitrary bytes: the DER
//! walks behind the certificate-expiry and stale-CRL warnings and the expiry
//! metric must never panic, and a date they read is one a four-digit year can
//! spell (0000-9999). The same bytes as a client's certificate: the names,
//! serial and fingerprint read from it (`$ssl_client_s_dn` and the rest) are
//! printable ASCII, and nothing panics.
#![no_main]

use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use portico::tls::{ClientAuth, VerifyClient};
use rustls_pki_types::CertificateDer;

static POLICY: LazyLock<Arc<ClientAuth>> = LazyLock::new(|| {
    Arc::new(ClientAuth::new(VerifyClient::OptionalNoCa, None, None).unwrap_or_else(|e| panic!("{e}")))
});

fuzz_target!(|der: &[u8]| {
    // 0000-01-01 00:00:00 UTC ..= 9999-12-31 23:59:60 UTC
    let spelled = -62_167_219_200..=253_402_300_800;
    if let Some(validity) = portico::tls::validity(der) {
        for time in [validity.not_before, validity.not_after] {
            assert!(spelled.contains(&time), "{validity:?}");
        }
    }
    if let Some(next) = portico::tls::crl_next_update(der) {
        assert!(spelled.contains(&next), "{next}");
    }
    let client = POLICY.outcome(Some(&[CertificateDer::from(der.to_vec())]));
    let fingerprint = client.fingerprint().map(|v| v.as_bytes().len());
    assert_eq!(fingerprint, Some(40));
    for value in [client.subject_dn(), client.issuer_dn(), client.serial()].into_iter().flatten() {
        let bytes = value.as_bytes();
        assert!(!bytes.is_empty() && bytes.iter().all(|b| (0x20..0x7f).contains(b)), "{value:?}");
    }
});
