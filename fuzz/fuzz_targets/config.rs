//! `portico::config::parse_str` on arbitrary UTF-8: the TOML parser and every
//! check after it must report problems, never panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // A directory that does not exist: relative cert/log paths resolve to nothing.
    if let Err(errors) = portico::config::parse_str(text, Path::new("/nonexistent/portico-fuzz/portico.toml")) {
        // Messages carry line:column computed from spans; render them too.
        let _ = errors.to_string();
    }
});
