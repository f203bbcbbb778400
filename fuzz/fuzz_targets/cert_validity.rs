//! `portico::tls::validity` on arbitrary bytes: the DER walk behind the
//! certificate-expiry warnings and metric must never panic, and a period it
//! reads holds dates its four-digit years can spell (0000-9999).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|der: &[u8]| {
    if let Some(validity) = portico::tls::validity(der) {
        for time in [validity.not_before, validity.not_after] {
            // 0000-01-01 00:00:00 UTC ..= 9999-12-31 23:59:60 UTC
            assert!((-62_167_219_200..=253_402_300_800).contains(&time), "{validity:?}");
        }
    }
});
