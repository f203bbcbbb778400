//! Configuration errors that name the file, line and column and say what to do.

use std::path::{Path, PathBuf};

use thiserror::Error;

/// One problem found in a configuration file.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{}:{line}:{column}: {message}", file.display())]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based.
    pub line: usize,
    /// 1-based.
    pub column: usize,
    pub message: String,
}

impl ConfigError {
    /// A problem with the file as a whole (it cannot be read, say).
    pub fn whole_file(file: &Path, message: String) -> ConfigError {
        ConfigError { file: file.to_path_buf(), line: 1, column: 1, message }
    }
}

/// Every problem found in one file, in file order.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}
