//! One error type whose `Display` is the one line a user reads; every message built from
//! a foreign error has been through the redactor first.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("storage URI {uri}: {reason}")]
    InvalidUri { uri: String, reason: String },
    /// `detail` is empty or starts with a space: ` (NoSuchBucket)`.
    #[error("{what}: not found{detail}")]
    NotFound { what: String, detail: String },
    #[error("{what}: nothing to download (no objects under this prefix)")]
    Empty { what: String },
    #[error("{what}: access denied: {detail}")]
    Denied { what: String, detail: String },
    #[error("{what}: {detail}")]
    Remote {
        what: String,
        detail: String,
        transient: bool,
    },
    /// A read was served another version (ETag) of the file than the listing or its
    /// earlier reads.
    #[error("{what}: {file} changed while it was being fetched (ETag {was}, then {now}); run again to fetch the new version")]
    Changed {
        what: String,
        file: String,
        was: String,
        now: String,
    },
    #[error("no space left on device writing {path} ({needed} bytes still to write)")]
    NoSpace { path: PathBuf, needed: u64 },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{archive}: entry {entry:?} is a link or would be written outside the destination; refusing to unpack")]
    UnsafeEntry { archive: String, entry: String },
    #[error("archive {archive}: {detail}")]
    Archive { archive: String, detail: String },
}

impl StorageError {
    /// Worth another try: a dropped connection, a timeout, a server error.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Remote {
                transient: true,
                ..
            }
        )
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        if source.raw_os_error() == Some(28) || source.kind() == std::io::ErrorKind::StorageFull {
            return Self::NoSpace { path, needed: 0 };
        }
        Self::Io { path, source }
    }
}
