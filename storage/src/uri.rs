//! What a `storageUri` names, parsed once; `Display` never shows a query string or
//! user info, so a signed URL or a password in a URI cannot reach a log line.

use std::fmt;
use std::path::PathBuf;

use crate::error::StorageError;

/// Where a model lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    S3 {
        bucket: String,
        prefix: String,
    },
    Gcs {
        bucket: String,
        prefix: String,
    },
    /// Azure Blob: `az://container/prefix` (account from the environment) or
    /// `https://<account>.blob.core.windows.net/<container>/<prefix>`.
    Azure {
        account: Option<String>,
        container: String,
        prefix: String,
    },
    /// `oci+fetch://`: an OCI image whose `models/` tree is unpacked.
    Image {
        reference: String,
    },
    /// A Git repository: `https://host/org/repo.git`, optionally `@<branch or tag>`.
    Git {
        url: String,
        reference: Option<String>,
    },
    /// One file over HTTP(S); archives are unpacked.
    Http {
        url: url::Url,
    },
    /// `hf://org/model[:revision]`, through the Hugging Face HTTP API.
    HuggingFace {
        repo: String,
        revision: String,
    },
    /// `modelscope://org/model[:revision]`, through ModelScope's HTTP API.
    ModelScope {
        repo: String,
        revision: String,
    },
    /// A directory or file on this machine: `file://`, absolute and relative paths, and
    /// `pvc://` (the claim mounted under the PVC root).
    Local {
        path: PathBuf,
    },
}

/// A parsed storage URI, keeping the original text for the cache key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageUri {
    pub text: String,
    pub location: Location,
}

/// Schemes KServe documents that Serval does not fetch yet, with what to use instead.
const NOT_YET: [(&str, &str); 4] = [
    (
        "oci://",
        "modelcar images (the controller runs them beside the runtime)",
    ),
    (
        "oci+native://",
        "OCI image volumes (the controller mounts them)",
    ),
    ("hdfs://", "HDFS"),
    ("webhdfs://", "WebHDFS"),
];

impl StorageUri {
    /// Parses `text`; `pvc_root` is where `pvc://<claim>/<path>` is mounted (KServe mounts
    /// claims at `/mnt/pvc`).
    pub fn parse(text: &str, pvc_root: &std::path::Path) -> Result<Self, StorageError> {
        let invalid = |reason: &str| StorageError::InvalidUri {
            uri: crate::redact::strip_url_secrets(text),
            reason: reason.to_string(),
        };
        let location = if let Some(rest) = text.strip_prefix("s3://") {
            let (bucket, prefix) = bucket_and_prefix(rest).ok_or_else(|| invalid("no bucket"))?;
            Location::S3 { bucket, prefix }
        } else if let Some(rest) = text.strip_prefix("gs://") {
            let (bucket, prefix) = bucket_and_prefix(rest).ok_or_else(|| invalid("no bucket"))?;
            Location::Gcs { bucket, prefix }
        } else if let Some(rest) = text.strip_prefix("az://") {
            let (container, prefix) =
                bucket_and_prefix(rest).ok_or_else(|| invalid("no container"))?;
            Location::Azure {
                account: None,
                container,
                prefix,
            }
        } else if let Some(rest) = text.strip_prefix("hf://") {
            let (repo, revision) = hub_repo(rest, "main")
                .ok_or_else(|| invalid("expected hf://<org>/<model>[:<revision>]"))?;
            Location::HuggingFace { repo, revision }
        } else if let Some(rest) = text.strip_prefix("modelscope://") {
            let (repo, revision) = hub_repo(rest, "master")
                .ok_or_else(|| invalid("expected modelscope://<org>/<model>[:<revision>]"))?;
            Location::ModelScope { repo, revision }
        } else if let Some(rest) = text.strip_prefix("oci+fetch://") {
            if rest.is_empty() {
                return Err(invalid(
                    "expected oci+fetch://<registry>/<repository>[:<tag>]",
                ));
            }
            Location::Image {
                reference: rest.to_string(),
            }
        } else if let Some(rest) = text.strip_prefix("pvc://") {
            let (claim, path) = rest.split_once('/').unwrap_or((rest, ""));
            if claim.is_empty() {
                return Err(invalid("no claim name: expected pvc://<claim>/<path>"));
            }
            Location::Local {
                path: pvc_root.join(claim).join(path.trim_start_matches('/')),
            }
        } else if text.starts_with("http://") || text.starts_with("https://") {
            let url = url::Url::parse(text).map_err(|e| invalid(&e.to_string()))?;
            if let Some((repo, reference)) = git_repository(text) {
                if !url.username().is_empty() || url.password().is_some() {
                    return Err(invalid(
                        "put Git credentials in GIT_USERNAME and GIT_PASSWORD, not in the URI",
                    ));
                }
                return Ok(Self {
                    text: text.to_string(),
                    location: Location::Git {
                        url: repo,
                        reference,
                    },
                });
            }
            match azure_blob(&url) {
                Some((account, container, prefix)) => Location::Azure {
                    account: Some(account),
                    container,
                    prefix,
                },
                None => Location::Http { url },
            }
        } else if let Some(path) = text.strip_prefix("file://") {
            Location::Local {
                path: PathBuf::from(path),
            }
        } else if text.starts_with('/') || text.starts_with("./") || text.starts_with("../") {
            Location::Local {
                path: PathBuf::from(text),
            }
        } else if let Some((scheme, what)) = NOT_YET.iter().find(|(s, _)| text.starts_with(s)) {
            return Err(invalid(&format!(
                "{what} ({scheme}) are not fetched by serval storage-init"
            )));
        } else {
            return Err(invalid(
                "unknown scheme: use s3://, gs://, az://, https://, http://, hf://, pvc://, file:// or a local path",
            ));
        };
        Ok(Self {
            text: text.to_string(),
            location,
        })
    }
}

impl fmt::Display for StorageUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::redact::strip_url_secrets(&self.text))
    }
}

/// `https://host/org/repo.git[@ref]` as (repository URL, ref).
fn git_repository(text: &str) -> Option<(String, Option<String>)> {
    if text.contains('?') {
        return None;
    }
    if let Some(at) = text.rfind(".git@") {
        let reference = &text[at + 5..];
        return (!reference.is_empty() && !reference.contains('/'))
            .then(|| (text[..at + 4].to_string(), Some(reference.to_string())));
    }
    text.ends_with(".git").then(|| (text.to_string(), None))
}

/// `org/model[:revision]` of a model hub.
fn hub_repo(rest: &str, default_revision: &str) -> Option<(String, String)> {
    let (repo, revision) = match rest.rsplit_once(':') {
        Some((repo, revision)) if !revision.is_empty() => (repo, revision),
        _ => (rest, default_revision),
    };
    let repo = repo.trim_matches('/');
    let parts: Vec<&str> = repo.split('/').collect();
    (parts.len() == 2
        && parts
            .iter()
            .all(|p| !p.is_empty() && *p != ".." && *p != "."))
    .then(|| (repo.to_string(), revision.to_string()))
}

fn bucket_and_prefix(rest: &str) -> Option<(String, String)> {
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    (!bucket.is_empty()).then(|| (bucket.to_string(), prefix.trim_matches('/').to_string()))
}

/// `https://<account>.blob.core.windows.net/<container>/<prefix>`.
fn azure_blob(url: &url::Url) -> Option<(String, String, String)> {
    let account = url.host_str()?.strip_suffix(".blob.core.windows.net")?;
    let (container, prefix) = bucket_and_prefix(url.path().trim_start_matches('/'))?;
    Some((account.to_string(), container, prefix))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn parse(text: &str) -> Result<Location, StorageError> {
        StorageUri::parse(text, Path::new("/mnt/pvc")).map(|u| u.location)
    }

    #[test]
    fn kserve_uris_name_their_location() {
        assert_eq!(
            parse("s3://models/iris/v1/").unwrap(),
            Location::S3 {
                bucket: "models".into(),
                prefix: "iris/v1".into()
            }
        );
        assert_eq!(
            parse("gs://kfserving-examples/models/sklearn/1.0/model").unwrap(),
            Location::Gcs {
                bucket: "kfserving-examples".into(),
                prefix: "models/sklearn/1.0/model".into()
            }
        );
        assert_eq!(
            parse("https://acct.blob.core.windows.net/triton/simple_string/").unwrap(),
            Location::Azure {
                account: Some("acct".into()),
                container: "triton".into(),
                prefix: "simple_string".into()
            }
        );
        assert_eq!(
            parse("hf://meta-llama/Llama-3.1-8B:abc123").unwrap(),
            Location::HuggingFace {
                repo: "meta-llama/Llama-3.1-8B".into(),
                revision: "abc123".into()
            }
        );
        assert_eq!(
            parse("hf://org/model").unwrap(),
            Location::HuggingFace {
                repo: "org/model".into(),
                revision: "main".into()
            }
        );
        assert_eq!(
            parse("pvc://task-pv-claim/models/iris").unwrap(),
            Location::Local {
                path: "/mnt/pvc/task-pv-claim/models/iris".into()
            }
        );
        assert!(matches!(
            parse("https://example.com/model.tar.gz?X-Amz-Signature=abc").unwrap(),
            Location::Http { .. }
        ));
    }

    #[test]
    fn unsupported_and_malformed_uris_say_why_without_secrets() {
        let err = parse("oci://registry/model:1").unwrap_err().to_string();
        assert!(err.contains("not fetched by serval storage-init"), "{err}");
        let err = parse("ftp://host/model").unwrap_err().to_string();
        assert!(err.contains("unknown scheme"), "{err}");
        let err = parse("hf://just-a-name").unwrap_err().to_string();
        assert!(err.contains("hf://<org>/<model>"), "{err}");
        let err = parse("https://user:hunter2@example.com/repo.git")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("GIT_USERNAME") && !err.contains("hunter2"),
            "{err}"
        );
        assert_eq!(
            parse("https://github.com/org/model.git@v1.2").unwrap(),
            Location::Git {
                url: "https://github.com/org/model.git".into(),
                reference: Some("v1.2".into())
            }
        );
        assert!(parse("s3://").is_err());
    }
}
