//! One file over HTTP(S): its size and version from a one-byte GET, ranged GETs when the
//! server accepts them. A signed URL's query string is sent but never shown.

use std::ops::Range;
use std::sync::OnceLock;

use futures_util::future::BoxFuture;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, ETAG, LAST_MODIFIED, RANGE};

use super::{send_checked, ByteStream, RemoteFile, Source};
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
            // A GET of the first byte rather than a HEAD: a pre-signed URL is signed for GET
            // only. A 206 gives the size and proves ranges work; a 200 means no ranges.
            let request = self.client.get(self.url.clone()).header(RANGE, "bytes=0-0");
            let response = send_checked(request, &self.what, &self.redactor).await?;
            let status = response.status();
            let headers = response.headers();
            let header = |name| {
                headers
                    .get(name)
                    .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
            };
            let ranged = status == reqwest::StatusCode::PARTIAL_CONTENT;
            let size = if ranged {
                header(CONTENT_RANGE)
                    .and_then(|v| v.rsplit('/').next())
                    .and_then(|total| total.parse().ok())
            } else {
                header(CONTENT_LENGTH).and_then(|v| v.parse().ok())
            };
            let _ = self.ranged.set(ranged && size.is_some());
            let version = header(ETAG)
                .or_else(|| header(LAST_MODIFIED))
                .map(str::to_string);
            // The rest of a full answer is not read: dropping the response closes it.
            drop(response);
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
            let request = self.client.get(self.url.clone());
            super::ranged_get(request, range, &self.what, &self.redactor).await
        })
    }

    fn ranged(&self) -> bool {
        self.ranged.get() == Some(&true)
    }

    fn unpacks_archives(&self) -> bool {
        true
    }
}
