//! The one error type of configuration loading: always names the file.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read: {reason}", file.display())]
    Io { file: PathBuf, reason: String },
    #[error("{}: line {line}, column {column}: malformed JSON: {reason}", file.display())]
    Syntax {
        file: PathBuf,
        line: usize,
        column: usize,
        reason: String,
    },
    #[error("{}: {path}: {reason}", file.display())]
    Invalid {
        file: PathBuf,
        path: String,
        reason: String,
    },
}

impl ConfigError {
    pub fn invalid(file: &Path, path: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            file: file.to_path_buf(),
            path: path.into(),
            reason: reason.into(),
        }
    }
}
