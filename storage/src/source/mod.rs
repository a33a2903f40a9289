//! Where bytes come from: a listing of files, and ranged reads of one file. Each kind of
//! storage is one module; the fetch engine only sees [`Source`].

mod git;
mod http;
mod huggingface;
mod modelscope;
mod object;
pub(crate) mod oci;

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;

use crate::environment::Environment;
use crate::error::StorageError;
use crate::redact::Redactor;
use crate::uri::{Location, StorageUri};

/// One file to fetch, its path relative to the destination ('/'-separated).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RemoteFile {
    pub path: String,
    pub size: Option<u64>,
    /// ETag, LFS object id or other version the source reports; a change means re-fetch.
    pub version: Option<String>,
}

pub type ByteStream = BoxStream<'static, Result<Bytes, StorageError>>;

pub trait Source: Send + Sync {
    /// Every file under the URI; an empty prefix is [`StorageError::Empty`].
    fn list(&self) -> BoxFuture<'_, Result<Vec<RemoteFile>, StorageError>>;
    /// The bytes of `file`, or of `range` of it.
    fn read(
        &self,
        file: &RemoteFile,
        range: Option<Range<u64>>,
    ) -> BoxFuture<'_, Result<ByteStream, StorageError>>;
    /// Whether `read` honours ranges (after `list`).
    fn ranged(&self) -> bool;
    /// A single file fetched from here is unpacked when it is an archive.
    fn unpacks_archives(&self) -> bool;
}

/// Settings every source shares.
#[derive(Clone, Debug)]
pub struct SourceOptions {
    /// Retries of one request inside a client before the fetch engine's own retries.
    pub request_retries: usize,
    pub connect_timeout: std::time::Duration,
}

impl Default for SourceOptions {
    fn default() -> Self {
        Self {
            request_retries: 2,
            connect_timeout: std::time::Duration::from_secs(10),
        }
    }
}

/// The source for `uri`, configured from `env` with KServe's variable names.
pub async fn open(
    uri: &StorageUri,
    env: &Environment,
    options: &SourceOptions,
) -> Result<Arc<dyn Source>, StorageError> {
    install_crypto_provider();
    let redactor = env.redactor();
    let what = uri.to_string();
    Ok(match &uri.location {
        Location::S3 { bucket, prefix } => Arc::new(object::ObjectSource::over(
            object::s3(bucket, env, options, &what, &redactor)?,
            prefix,
            what,
            redactor,
        )),
        Location::Gcs { bucket, prefix } => Arc::new(object::ObjectSource::over(
            object::gcs(bucket, env, options, &what, &redactor).await?,
            prefix,
            what,
            redactor,
        )),
        Location::Azure {
            account,
            container,
            prefix,
        } => Arc::new(object::ObjectSource::over(
            object::azure(
                account.as_deref(),
                container,
                env,
                options,
                &what,
                &redactor,
            )?,
            prefix,
            what,
            redactor,
        )),
        Location::Local { path } => {
            let (store, prefix) = object::local(path, &what)?;
            Arc::new(object::ObjectSource::new(store, &prefix, what, redactor))
        }
        Location::Image { reference } => Arc::new(oci::OciSource::new(
            oci::ImageReference::parse(reference).ok_or_else(|| StorageError::InvalidUri {
                uri: what.clone(),
                reason: "expected oci+fetch://<registry>/<repository>[:<tag>|@<digest>]".into(),
            })?,
            env,
            client(options)?,
            what,
            redactor,
        )),
        Location::Git { url, reference } => Arc::new(git::GitSource::new(
            url,
            reference.as_deref(),
            what,
            redactor,
        )),
        Location::Http { url } => Arc::new(http::HttpSource::new(
            url.clone(),
            client(options)?,
            what,
            redactor,
        )),
        Location::ModelScope { repo, revision } => Arc::new(modelscope::ModelScopeSource::new(
            repo,
            revision,
            env,
            client(options)?,
            what,
            redactor,
        )),
        Location::HuggingFace { repo, revision } => Arc::new(huggingface::HuggingFaceSource::new(
            repo,
            revision,
            env,
            client(options)?,
            what,
            redactor,
        )),
    })
}

fn client(options: &SourceOptions) -> Result<reqwest::Client, StorageError> {
    reqwest::Client::builder()
        .connect_timeout(options.connect_timeout)
        .build()
        .map_err(|e| StorageError::Remote {
            what: "HTTP client".into(),
            detail: e.to_string(),
            transient: false,
        })
}

/// rustls needs one process-wide crypto provider; ring is the one the workspace builds.
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// `path` as a relative path that stays inside a destination: no root, no `..`, no empty
/// or `.` segments.
pub(crate) fn safe_relative(path: &str) -> Option<std::path::PathBuf> {
    let trimmed = path.trim_start_matches("./");
    if trimmed.is_empty() || trimmed.starts_with('/') || trimmed.contains('\\') {
        return None;
    }
    let mut out = std::path::PathBuf::new();
    for segment in trimmed.split('/') {
        match segment {
            "" | "." => continue,
            ".." => return None,
            s => out.push(s),
        }
    }
    (!out.as_os_str().is_empty() && Path::new(&out).is_relative()).then_some(out)
}

/// An HTTP status as the error a user reads.
pub(crate) fn status_error(
    status: reqwest::StatusCode,
    what: &str,
    body: &str,
    redactor: &Redactor,
) -> StorageError {
    let detail = redactor.clean(&format!(
        "HTTP {status}: {}",
        body.chars().take(200).collect::<String>()
    ));
    match status.as_u16() {
        401 | 403 => StorageError::Denied {
            what: what.to_string(),
            detail,
        },
        404 => StorageError::NotFound {
            what: what.to_string(),
            detail: String::new(),
        },
        408 | 429 | 500..=599 => StorageError::Remote {
            what: what.to_string(),
            detail,
            transient: true,
        },
        _ => StorageError::Remote {
            what: what.to_string(),
            detail,
            transient: false,
        },
    }
}

/// Sends `request` for `range` of a file (all of it when `None`) and returns the body.
pub(crate) async fn ranged_get(
    request: reqwest::RequestBuilder,
    range: Option<Range<u64>>,
    what: &str,
    redactor: &Redactor,
) -> Result<ByteStream, StorageError> {
    let request = match &range {
        Some(range) => request.header(
            reqwest::header::RANGE,
            format!("bytes={}-{}", range.start, range.end - 1),
        ),
        None => request,
    };
    let response = send_checked(request, what, redactor).await?;
    checked_body(response, range.is_some(), what, redactor).await
}

/// Sends `request`; a failed connection or an error status becomes the error a user reads.
pub(crate) async fn send_checked(
    request: reqwest::RequestBuilder,
    what: &str,
    redactor: &Redactor,
) -> Result<reqwest::Response, StorageError> {
    let response = request
        .send()
        .await
        .map_err(|e| transport_error(e, what, redactor))?;
    successful(response, what, redactor).await
}

/// `response` when its status is a success, else the error a user reads.
pub(crate) async fn successful(
    response: reqwest::Response,
    what: &str,
    redactor: &Redactor,
) -> Result<reqwest::Response, StorageError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = response.text().await.unwrap_or_default();
    Err(status_error(status, what, &body, redactor))
}

/// A JSON body, or an error naming `describe` ("file listing", "image manifest").
pub(crate) async fn json_body<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
    what: &str,
    describe: &str,
) -> Result<T, StorageError> {
    response.json().await.map_err(|e| StorageError::Remote {
        what: what.to_string(),
        detail: format!("unexpected {describe}: {}", e.without_url()),
        transient: false,
    })
}

/// A successful response's body as a stream; a full answer to a ranged request is refused
/// rather than misplaced.
pub(crate) async fn checked_body(
    response: reqwest::Response,
    ranged: bool,
    what: &str,
    redactor: &Redactor,
) -> Result<ByteStream, StorageError> {
    use futures_util::StreamExt;
    let status = response.status();
    if ranged && status != reqwest::StatusCode::PARTIAL_CONTENT {
        return Err(StorageError::Remote {
            what: what.to_string(),
            detail: format!("asked for a byte range, got {status}"),
            transient: false,
        });
    }
    let what = what.to_string();
    let redactor = redactor.clone();
    Ok(response
        .bytes_stream()
        .map(move |chunk| chunk.map_err(|e| transport_error(e, &what, &redactor)))
        .boxed())
}

/// A transport error (connection refused, reset, timeout): always worth a retry.
pub(crate) fn transport_error(
    error: reqwest::Error,
    what: &str,
    redactor: &Redactor,
) -> StorageError {
    let error = error.without_url();
    let mut detail = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(inner) = source {
        detail.push_str(": ");
        detail.push_str(&inner.to_string());
        source = inner.source();
    }
    StorageError::Remote {
        what: what.to_string(),
        detail: redactor.clean(&detail),
        transient: true,
    }
}

#[cfg(test)]
mod tests {
    use super::safe_relative;

    #[test]
    fn relative_paths_cannot_leave_the_destination() {
        assert_eq!(
            safe_relative("a/b.bin").unwrap(),
            std::path::Path::new("a/b.bin")
        );
        assert_eq!(
            safe_relative("./a//b").unwrap(),
            std::path::Path::new("a/b")
        );
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "a\\..\\x", "."] {
            assert!(safe_relative(bad).is_none(), "{bad}");
        }
    }
}
