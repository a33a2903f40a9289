//! `oci+fetch://registry/repository:tag` (or `@sha256:...`): an OCI image pulled over the
//! registry HTTP API (anonymous or `OCI_USERNAME`/`OCI_PASSWORD`, with the registry's
//! bearer-token exchange), whose layers the fetch engine reads like any files; the caller
//! unpacks their `models/` tree, where KServe's modelcar images keep the model.

use std::ops::Range;
use std::sync::Mutex;

use futures_util::future::BoxFuture;
use reqwest::header::{ACCEPT, AUTHORIZATION, RANGE, WWW_AUTHENTICATE};
use reqwest::StatusCode;

use super::{checked_body, json_body, successful, transport_error, ByteStream, RemoteFile, Source};
use crate::environment::Environment;
use crate::error::StorageError;
use crate::redact::Redactor;

const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.docker.distribution.manifest.v2+json";

/// An image reference: where its registry is and what to pull.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ImageReference {
    pub(crate) registry: String,
    pub(crate) repository: String,
    pub(crate) reference: String,
}

impl ImageReference {
    /// `host[:port]/path[:tag|@digest]`, with Docker Hub's defaults.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let (name, reference) = match text.split_once('@') {
            Some((name, digest)) => (name, digest.to_string()),
            None => match text.rsplit_once(':') {
                Some((name, tag)) if !tag.contains('/') => (name, tag.to_string()),
                _ => (text, "latest".to_string()),
            },
        };
        let (first, rest) = name.split_once('/').unwrap_or(("", name));
        let (registry, repository) = if first == "docker.io" || first == "index.docker.io" {
            // Docker Hub's name is not where its registry API answers.
            let rest = if rest.contains('/') {
                rest.to_string()
            } else {
                format!("library/{rest}")
            };
            ("registry-1.docker.io".to_string(), rest)
        } else if first.contains('.') || first.contains(':') || first == "localhost" {
            (first.to_string(), rest.to_string())
        } else if first.is_empty() {
            (
                "registry-1.docker.io".to_string(),
                format!("library/{rest}"),
            )
        } else {
            ("registry-1.docker.io".to_string(), name.to_string())
        };
        (!repository.is_empty() && !reference.is_empty()).then_some(Self {
            registry,
            repository,
            reference,
        })
    }

    fn base(&self) -> String {
        let host = self.registry.split(':').next().unwrap_or_default();
        let plain = matches!(host, "localhost" | "127.0.0.1" | "[::1]");
        format!(
            "{}://{}/v2/{}",
            if plain { "http" } else { "https" },
            self.registry,
            self.repository
        )
    }
}

pub(crate) struct OciSource {
    image: ImageReference,
    credentials: Option<(String, String)>,
    token: Mutex<Option<String>>,
    client: reqwest::Client,
    what: String,
    redactor: Redactor,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    #[serde(default)]
    manifests: Vec<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    digest: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(serde::Deserialize)]
struct Platform {
    architecture: String,
    os: String,
}

impl OciSource {
    pub(crate) fn new(
        image: ImageReference,
        env: &Environment,
        client: reqwest::Client,
        what: String,
        redactor: Redactor,
    ) -> Self {
        let credentials = match (env.get("OCI_USERNAME"), env.get("OCI_PASSWORD")) {
            (Some(user), Some(password)) => Some((user.to_string(), password.to_string())),
            _ => None,
        };
        Self {
            image,
            credentials,
            token: Mutex::new(None),
            client,
            what,
            redactor,
        }
    }

    /// GET `url`, answering the registry's authentication challenge once.
    async fn get(
        &self,
        url: &str,
        accept: Option<&str>,
        range: Option<&Range<u64>>,
    ) -> Result<reqwest::Response, StorageError> {
        let response = self.send(url, accept, range).await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let challenge = response
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let header = self.answer(&challenge).await?;
        if let Ok(mut token) = self.token.lock() {
            *token = Some(header);
        }
        self.send(url, accept, range).await
    }

    async fn send(
        &self,
        url: &str,
        accept: Option<&str>,
        range: Option<&Range<u64>>,
    ) -> Result<reqwest::Response, StorageError> {
        let mut request = self.client.get(url);
        if let Some(accept) = accept {
            request = request.header(ACCEPT, accept);
        }
        if let Some(range) = range {
            request = request.header(RANGE, format!("bytes={}-{}", range.start, range.end - 1));
        }
        let token = self.token.lock().map(|t| t.clone()).unwrap_or_default();
        if let Some(token) = token {
            request = request.header(AUTHORIZATION, token);
        }
        request
            .send()
            .await
            .map_err(|e| transport_error(e, &self.what, &self.redactor))
    }

    /// The Authorization header for a `Bearer realm=...` or `Basic` challenge.
    async fn answer(&self, challenge: &str) -> Result<String, StorageError> {
        let denied = |detail: &str| StorageError::Denied {
            what: self.what.clone(),
            detail: detail.to_string(),
        };
        if challenge.starts_with("Basic") {
            let (user, password) = self.credentials.as_ref().ok_or_else(|| {
                denied("the registry wants credentials: set OCI_USERNAME and OCI_PASSWORD")
            })?;
            use base64::Engine as _;
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            return Ok(format!("Basic {encoded}"));
        }
        let params = challenge_params(challenge.trim_start_matches("Bearer").trim());
        let realm = params
            .iter()
            .find(|(k, _)| k == "realm")
            .map(|(_, v)| v.clone())
            .ok_or_else(|| {
                denied("the registry refused the request without saying how to authenticate")
            })?;
        let query: Vec<(String, String)> =
            params.into_iter().filter(|(k, _)| k != "realm").collect();
        let mut request = self.client.get(&realm).query(&query);
        if let Some((user, password)) = &self.credentials {
            request = request.basic_auth(user, Some(password));
        }
        let response = request
            .send()
            .await
            .map_err(|e| transport_error(e, &self.what, &self.redactor))?;
        if !response.status().is_success() {
            return Err(denied(&format!(
                "the registry's token service answered {}",
                response.status()
            )));
        }
        #[derive(serde::Deserialize)]
        struct Token {
            #[serde(default)]
            token: Option<String>,
            #[serde(default)]
            access_token: Option<String>,
        }
        let token: Token = response.json().await.map_err(|_| {
            denied("the registry's token service answered something that is not a token")
        })?;
        token
            .token
            .or(token.access_token)
            .map(|t| format!("Bearer {t}"))
            .ok_or_else(|| denied("the registry's token service gave no token"))
    }

    async fn manifest(&self, reference: &str) -> Result<Manifest, StorageError> {
        let url = format!("{}/manifests/{reference}", self.image.base());
        let response = self.get(&url, Some(MANIFEST_TYPES), None).await?;
        let response = successful(response, &self.what, &self.redactor).await?;
        json_body(response, &self.what, "image manifest").await
    }
}

/// `realm="https://auth",service="registry",scope="repository:x:pull"` as pairs.
fn challenge_params(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].trim().trim_start_matches(',').trim().to_string();
        let after = &rest[eq + 1..];
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            (
                quoted[..end].to_string(),
                quoted.get(end + 1..).unwrap_or(""),
            )
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].to_string(), &after[end..])
        };
        out.push((key, value));
        rest = remaining;
    }
    out
}

impl Source for OciSource {
    fn list(&self) -> BoxFuture<'_, Result<Vec<RemoteFile>, StorageError>> {
        Box::pin(async move {
            let mut manifest = self.manifest(&self.image.reference).await?;
            if !manifest.manifests.is_empty() {
                // An index: this machine's platform, else the first image.
                let arch = match std::env::consts::ARCH {
                    "x86_64" => "amd64",
                    "aarch64" => "arm64",
                    other => other,
                };
                let chosen = manifest
                    .manifests
                    .iter()
                    .find(|m| {
                        m.platform
                            .as_ref()
                            .is_some_and(|p| p.os == "linux" && p.architecture == arch)
                    })
                    .or_else(|| manifest.manifests.first())
                    .map(|m| m.digest.clone())
                    .unwrap_or_default();
                manifest = self.manifest(&chosen).await?;
            }
            if manifest.layers.is_empty() {
                return Err(StorageError::Empty {
                    what: self.what.clone(),
                });
            }
            Ok(manifest
                .layers
                .into_iter()
                .enumerate()
                .map(|(i, layer)| RemoteFile {
                    // Ordered, so layers unpack in the image's order.
                    path: format!("layer-{i:03}"),
                    size: layer.size,
                    version: Some(layer.digest),
                })
                .collect())
        })
    }

    fn read(
        &self,
        file: &RemoteFile,
        range: Option<Range<u64>>,
    ) -> BoxFuture<'_, Result<ByteStream, StorageError>> {
        let url = format!(
            "{}/blobs/{}",
            self.image.base(),
            file.version.clone().unwrap_or_default()
        );
        Box::pin(async move {
            let response = self.get(&url, None, range.as_ref()).await?;
            let response = successful(response, &self.what, &self.redactor).await?;
            checked_body(response, range.is_some(), &self.what, &self.redactor).await
        })
    }

    fn ranged(&self) -> bool {
        true
    }

    fn unpacks_archives(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_follow_docker_conventions() {
        let r = ImageReference::parse("ghcr.io/org/models/llama:v1").unwrap();
        assert_eq!(
            (
                r.registry.as_str(),
                r.repository.as_str(),
                r.reference.as_str()
            ),
            ("ghcr.io", "org/models/llama", "v1")
        );
        let r = ImageReference::parse("127.0.0.1:5000/m@sha256:abc").unwrap();
        assert_eq!(
            (
                r.registry.as_str(),
                r.repository.as_str(),
                r.reference.as_str()
            ),
            ("127.0.0.1:5000", "m", "sha256:abc")
        );
        assert!(r.base().starts_with("http://"));
        let r = ImageReference::parse("kserve/model").unwrap();
        assert_eq!(
            (
                r.registry.as_str(),
                r.repository.as_str(),
                r.reference.as_str()
            ),
            ("registry-1.docker.io", "kserve/model", "latest")
        );
        assert_eq!(
            challenge_params(
                r#"realm="https://auth.example/token",service="registry",scope="repository:a/b:pull""#
            ),
            vec![
                (
                    "realm".to_string(),
                    "https://auth.example/token".to_string()
                ),
                ("service".to_string(), "registry".to_string()),
                ("scope".to_string(), "repository:a/b:pull".to_string())
            ]
        );
    }
}
