//! Configuration: the TOML file (`file`), its checks (`validate`) and the
//! validated form the hot path reads (`runtime`).

pub mod error;
pub mod file;
pub mod runtime;
pub mod validate;

use std::path::Path;

pub use error::{ConfigError, ConfigErrors};
pub use runtime::Snapshot;

/// Reads, parses and validates the file at `path`.
pub fn load(path: &Path) -> Result<Snapshot, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError::whole_file(path, format!("cannot read the configuration file: {e}"))])
    })?;
    parse_str(&text, path)
}

/// Parses and validates `text` as if read from `path` (used in messages and
/// to resolve relative paths).
pub fn parse_str(text: &str, path: &Path) -> Result<Snapshot, ConfigErrors> {
    validate::validate(text, path)
}
