//! The simulator's one error type: bad input is reported with the file and line at fault.

use std::path::PathBuf;

/// Everything that can stop a simulation before it produces numbers.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: the trace holds no requests")]
    EmptyTrace { path: PathBuf },
    #[error("{0}")]
    Usage(String),
    #[error("cannot write plot {path}: {message}")]
    Plot { path: PathBuf, message: String },
}

impl SimError {
    pub(crate) fn parse(path: &std::path::Path, line: usize, message: impl Into<String>) -> Self {
        Self::Parse {
            path: path.to_path_buf(),
            line,
            message: message.into(),
        }
    }

    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
