//! `portico::vhost::normalize_host`: no panic; the result has no ASCII upper
//! case, no trailing dot, and is a slice of the input modulo case.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|raw: &str| {
    let host = portico::vhost::normalize_host(raw);
    assert!(!host.bytes().any(|b| b.is_ascii_uppercase()), "{raw:?} -> {host:?}: upper case");
    assert!(!host.ends_with('.'), "{raw:?} -> {host:?}: trailing dot");
    assert!(raw.to_ascii_lowercase().contains(host.as_ref()), "{raw:?} -> {host:?}: not from the input");
});
