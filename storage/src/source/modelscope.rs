//! `modelscope://org/model[:revision]` through ModelScope's HTTP API
//! (`MODELSCOPE_ENDPOINT`, default https://www.modelscope.cn; `MODELSCOPE_API_TOKEN`).

use std::ops::Range;

use futures_util::future::BoxFuture;
use reqwest::header::AUTHORIZATION;

use super::{json_body, send_checked, ByteStream, RemoteFile, Source};
use crate::environment::Environment;
use crate::error::StorageError;
use crate::redact::Redactor;

pub(super) struct ModelScopeSource {
    endpoint: String,
    repo: String,
    revision: String,
    token: Option<String>,
    client: reqwest::Client,
    what: String,
    redactor: Redactor,
}

#[derive(serde::Deserialize)]
struct Listing {
    #[serde(rename = "Data", default)]
    data: Option<ListingData>,
    #[serde(rename = "Message", default)]
    message: Option<String>,
}

#[derive(serde::Deserialize)]
struct ListingData {
    #[serde(rename = "Files", default)]
    files: Vec<FileEntry>,
}

#[derive(serde::Deserialize)]
struct FileEntry {
    #[serde(rename = "Path")]
    path: String,
    #[serde(rename = "Type", default)]
    kind: String,
    #[serde(rename = "Size", default)]
    size: Option<u64>,
    #[serde(rename = "Sha256", default)]
    sha256: Option<String>,
}

impl ModelScopeSource {
    pub(super) fn new(
        repo: &str,
        revision: &str,
        env: &Environment,
        client: reqwest::Client,
        what: String,
        redactor: Redactor,
    ) -> Self {
        Self {
            endpoint: env
                .get("MODELSCOPE_ENDPOINT")
                .map(str::to_string)
                .or_else(|| env.get("MODELSCOPE_DOMAIN").map(|d| format!("https://{d}")))
                .unwrap_or_else(|| "https://www.modelscope.cn".to_string())
                .trim_end_matches('/')
                .to_string(),
            repo: repo.to_string(),
            revision: revision.to_string(),
            token: env.get("MODELSCOPE_API_TOKEN").map(str::to_string),
            client,
            what,
            redactor,
        }
    }

    fn request(&self, url: &str) -> reqwest::RequestBuilder {
        let request = self.client.get(url);
        match &self.token {
            Some(token) => request.header(AUTHORIZATION, format!("Bearer {token}")),
            None => request,
        }
    }

    fn query(pairs: &[(&str, &str)]) -> String {
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish()
    }
}

impl Source for ModelScopeSource {
    fn list(&self) -> BoxFuture<'_, Result<Vec<RemoteFile>, StorageError>> {
        Box::pin(async move {
            let url = format!(
                "{}/api/v1/models/{}/repo/files?{}",
                self.endpoint,
                self.repo,
                Self::query(&[("Revision", &self.revision), ("Recursive", "true")])
            );
            let response = send_checked(self.request(&url), &self.what, &self.redactor).await?;
            let listing: Listing = json_body(response, &self.what, "file listing").await?;
            let Some(data) = listing.data else {
                return Err(StorageError::NotFound {
                    what: self.what.clone(),
                    detail: listing
                        .message
                        .map(|m| format!(" ({})", self.redactor.clean(&m)))
                        .unwrap_or_default(),
                });
            };
            let mut files = Vec::new();
            for entry in data.files.into_iter().filter(|f| f.kind != "tree") {
                if super::safe_relative(&entry.path).is_none() {
                    return Err(StorageError::UnsafeEntry {
                        archive: self.what.clone(),
                        entry: entry.path,
                    });
                }
                files.push(RemoteFile {
                    path: entry.path,
                    size: entry.size,
                    version: entry.sha256,
                });
            }
            if files.is_empty() {
                return Err(StorageError::Empty {
                    what: self.what.clone(),
                });
            }
            Ok(files)
        })
    }

    fn read(
        &self,
        file: &RemoteFile,
        range: Option<Range<u64>>,
    ) -> BoxFuture<'_, Result<ByteStream, StorageError>> {
        let url = format!(
            "{}/api/v1/models/{}/repo?{}",
            self.endpoint,
            self.repo,
            Self::query(&[("Revision", &self.revision), ("FilePath", &file.path)])
        );
        Box::pin(async move {
            super::ranged_get(self.request(&url), range, &self.what, &self.redactor).await
        })
    }

    fn ranged(&self) -> bool {
        true
    }

    fn unpacks_archives(&self) -> bool {
        false
    }
}
