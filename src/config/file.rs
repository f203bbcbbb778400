//! The TOML file as written: serde types with spans, unknown keys rejected.
