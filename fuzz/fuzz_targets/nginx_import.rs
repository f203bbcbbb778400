//! The nginx importer: `portico::nginx::parse_str` on arbitrary text, and for
//! what parses, `portico::cli::import_nginx::translate` (what `portico
//! import-nginx` runs). The translation must be TOML (whatever the input, the
//! importer writes quoted strings and keys, never broken syntax), and
//! `portico::config::parse_str` on it must not panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // `include` reads files (an absolute `include /dev/zero;` never ends):
    // the fuzzer stays off the filesystem. No escape spells a letter, so a
    // word reading `include` needs these bytes in the input.
    if text.contains("include") {
        return;
    }
    let dir = Path::new("/nonexistent/portico-fuzz");
    let Ok(directives) = portico::nginx::parse_str(text, &dir.join("nginx.conf")) else { return };
    let translation = portico::cli::import_nginx::translate(&directives, &dir.join("nginx.conf"), dir);
    if let Err(e) = translation.toml.parse::<toml::Table>() {
        panic!("the translation is not TOML: {e}\n{}", translation.toml);
    }
    let _ = portico::config::parse_str(&translation.toml, &dir.join("portico.toml"));
});
