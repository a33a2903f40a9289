//! `hf://org/model[:revision]` through the Hugging Face Hub's HTTP API (`HF_ENDPOINT`,
//! `HF_TOKEN`): the tree listing for names, sizes and LFS ids, `resolve/` for bytes.

use std::ops::Range;

use futures_util::future::BoxFuture;
use reqwest::header::{AUTHORIZATION, LINK};

use super::{json_body, send_checked, ByteStream, RemoteFile, Source};
use crate::environment::Environment;
use crate::error::StorageError;
use crate::redact::Redactor;

pub(super) struct HuggingFaceSource {
    endpoint: String,
    repo: String,
    revision: String,
    token: Option<String>,
    client: reqwest::Client,
    what: String,
    redactor: Redactor,
}

#[derive(serde::Deserialize)]
struct TreeEntry {
    #[serde(rename = "type")]
    kind: String,
    path: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    oid: Option<String>,
    #[serde(default)]
    lfs: Option<LfsPointer>,
}

#[derive(serde::Deserialize)]
struct LfsPointer {
    oid: String,
    size: u64,
}

impl HuggingFaceSource {
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
                .get("HF_ENDPOINT")
                .unwrap_or("https://huggingface.co")
                .trim_end_matches('/')
                .to_string(),
            repo: repo.to_string(),
            revision: revision.to_string(),
            token: env
                .get("HF_TOKEN")
                .or_else(|| env.get("HUGGING_FACE_HUB_TOKEN"))
                .map(str::to_string),
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

    fn revision_segment(&self) -> String {
        url::form_urlencoded::byte_serialize(self.revision.as_bytes()).collect()
    }
}

impl Source for HuggingFaceSource {
    fn list(&self) -> BoxFuture<'_, Result<Vec<RemoteFile>, StorageError>> {
        Box::pin(async move {
            let mut url = format!(
                "{}/api/models/{}/tree/{}?recursive=true",
                self.endpoint,
                self.repo,
                self.revision_segment()
            );
            let mut files = Vec::new();
            loop {
                let response = send_checked(self.request(&url), &self.what, &self.redactor).await?;
                let next = response
                    .headers()
                    .get(LINK)
                    .and_then(|v| v.to_str().ok())
                    .and_then(next_link);
                let entries: Vec<TreeEntry> =
                    json_body(response, &self.what, "tree listing").await?;
                for entry in entries.into_iter().filter(|e| e.kind == "file") {
                    if super::safe_relative(&entry.path).is_none() {
                        return Err(StorageError::UnsafeEntry {
                            archive: self.what.clone(),
                            entry: entry.path,
                        });
                    }
                    let (size, version) = match entry.lfs {
                        Some(lfs) => (Some(lfs.size), Some(lfs.oid)),
                        None => (entry.size, entry.oid),
                    };
                    files.push(RemoteFile {
                        path: entry.path,
                        size,
                        version,
                    });
                }
                match next {
                    Some(next) => url = next,
                    None => break,
                }
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
            "{}/{}/resolve/{}/{}",
            self.endpoint,
            self.repo,
            self.revision_segment(),
            file.path
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

/// The `rel="next"` target of a `Link` header.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params.contains("rel=\"next\"").then(|| {
            target
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}
