//! `portico::tls::validity` and `crl_next_update` on arbitrary bytes: the DER
//! walks behind the certificate-expiry and stale-CRL warnings and the expiry
//! metric must never panic, and a date they read is one a four-digit year can
//! spell (0000-9999).
#![no_main]

use libfuzzer_sys::fuzz_target;

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
});
