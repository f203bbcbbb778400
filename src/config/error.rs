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

    /// A problem at byte `offset` of `text` (the file's contents).
    pub fn at(file: &Path, text: &str, offset: usize, message: String) -> ConfigError {
        let (line, column) = line_column(text, offset);
        ConfigError { file: file.to_path_buf(), line, column, message }
    }
}

/// The 1-based line and column (in characters) of byte `offset` in `text`.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    // A span from the parser always falls on a character boundary; step back in
    // case one does not, rather than panic on a malformed position.
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    let column = before[line_start..].chars().count() + 1;
    (line, column)
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
