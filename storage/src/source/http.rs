//! One file over HTTP(S): its size and version from a HEAD, ranged GETs when the server
//! accepts them. A signed URL's query string is sent but never shown.

use std::ops::Range;
use std::sync::OnceLock;

use futures_util::future::BoxFuture;
use reqwest::header::{ACCEPT_RANGES, CONTENT_LENGTH, ETAG, LAST_MODIFIED, RANGE};

use super::{status_error, transport_error, ByteStream, RemoteFile, Source};
use crate::error::StorageError;
use crate::redact::Redactor;

pub(super) struct HttpSource {
    url: url::Url,
    client: reqwest::Client,
    ranged: OnceLock<bool>,
    what: String,
    redactor: Redactor,
}

impl HttpSource {
    pub(super) fn new(
        url: url::Url,
        client: reqwest::Client,
        what: String,
        redactor: Redactor,
    ) -> Self {
        Self {
            url,
            client,
            ranged: OnceLock::new(),
            what,
            redactor,
        }
    }

    /// The file's name: the URL's last path segment, decoded.
    fn file_name(&self) -> String {
        let segment = self
            .url
            .path_segments()
            .and_then(|mut s| s.next_back())
            .unwrap_or_default();
        let decoded = url::form_urlencoded::parse(format!("n={segment}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        match super::safe_relative(&decoded) {
            Some(path) if path.components().count() == 1 => decoded,
            _ => "model".to_string(),
        }
    }
}

impl Source for HttpSource {
    fn list(&self) -> BoxFuture<'_, Result<Vec<RemoteFile>, StorageError>> {
        Box::pin(async move {
            let response = self
                .client
                .head(self.url.clone())
                .send()
                .await
                .map_err(|e| transport_error(e, &self.what, &self.redactor))?;
            let status = response.status();
            if !status.is_success() && status != reqwest::StatusCode::METHOD_NOT_ALLOWED {
                return Err(status_error(status, &self.what, "", &self.redactor));
            }
            let headers = response.headers();
            let header = |name| {
                headers
                    .get(name)
                    .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
            };
            let size = status
                .is_success()
                .then(|| header(CONTENT_LENGTH).and_then(|v| v.parse().ok()))
                .flatten();
            let ranged =
                size.is_some() && header(ACCEPT_RANGES).is_some_and(|v| v.contains("bytes"));
            let _ = self.ranged.set(ranged);
            let version = header(ETAG)
                .or_else(|| header(LAST_MODIFIED))
                .map(str::to_string);
            Ok(vec![RemoteFile {
                path: self.file_name(),
                size,
                version,
            }])
        })
    }

    fn read(
        &self,
        _file: &RemoteFile,
        range: Option<Range<u64>>,
    ) -> BoxFuture<'_, Result<ByteStream, StorageError>> {
        Box::pin(async move {
            let mut request = self.client.get(self.url.clone());
            if let Some(range) = &range {
                request = request.header(RANGE, format!("bytes={}-{}", range.start, range.end - 1));
            }
            let response = request
                .send()
                .await
                .map_err(|e| transport_error(e, &self.what, &self.redactor))?;
            super::checked_body(response, range.is_some(), &self.what, &self.redactor).await
        })
    }

    fn ranged(&self) -> bool {
        self.ranged.get() == Some(&true)
    }

    fn unpacks_archives(&self) -> bool {
        true
    }
}
