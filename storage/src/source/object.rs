//! S3, GCS, Azure Blob and local directories through `object_store`.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path as FsPath;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, RetryConfig};

use super::{ByteStream, RemoteFile, Source, SourceOptions};
use crate::environment::Environment;
use crate::error::StorageError;
use crate::redact::Redactor;

/// A configured store, and whether it reads without credentials.
pub(super) struct Store {
    pub objects: Arc<dyn ObjectStore>,
    pub anonymous: bool,
}

pub(crate) struct ObjectSource {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    /// Set by `list` when the URI names one object rather than a prefix.
    single_object: std::sync::OnceLock<bool>,
    /// Each file's ETag, from the listing or else from its first read: every read of the
    /// file must be served with it.
    etags: Mutex<HashMap<String, String>>,
    /// No credentials were found: a refusal says so rather than blaming credentials.
    anonymous: bool,
    what: String,
    redactor: Redactor,
}

impl ObjectSource {
    pub(super) fn new(
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        what: String,
        redactor: Redactor,
    ) -> Self {
        Self {
            store,
            // The prefix as written (`Path::from` would percent-encode `~`, `%`, ...).
            prefix: Path::parse(prefix).unwrap_or_else(|_| Path::from(prefix)),
            single_object: std::sync::OnceLock::new(),
            etags: Mutex::default(),
            anonymous: false,
            what,
            redactor,
        }
    }

    /// A source over `store`, saying whether it reads without credentials.
    pub(super) fn over(store: Store, prefix: &str, what: String, redactor: Redactor) -> Self {
        Self {
            anonymous: store.anonymous,
            ..Self::new(store.objects, prefix, what, redactor)
        }
    }

    fn error(&self, error: object_store::Error) -> StorageError {
        match object_error(error, &self.what, &self.redactor) {
            StorageError::Denied { what, detail } if self.anonymous => StorageError::Denied {
                what,
                detail: detail.replace(
                    "the server refused the credentials",
                    "no credentials were found, and anonymous reads are refused",
                ),
            },
            other => other,
        }
    }

    /// Ranges of two versions must never make one file: a read served another version
    /// than the listing saw, or than the file's first read, fails the fetch (a rerun
    /// lists the new version). Not every store puts ETags in its listings.
    fn same_version(&self, path: &str, served: &str) -> Result<(), StorageError> {
        let mut etags = self.etags.lock().unwrap_or_else(|e| e.into_inner());
        let expected = etags
            .entry(path.to_string())
            .or_insert_with(|| served.to_string());
        if bare_etag(expected) == bare_etag(served) {
            return Ok(());
        }
        Err(StorageError::Changed {
            what: self.what.clone(),
            file: path.to_string(),
            was: expected.clone(),
            now: served.to_string(),
        })
    }

    fn object_path(&self, file: &RemoteFile) -> Path {
        if self.single_object.get() == Some(&true) {
            self.prefix.clone()
        } else if self.prefix.as_ref().is_empty() {
            Path::parse(&file.path).unwrap_or_else(|_| Path::from(file.path.as_str()))
        } else {
            let joined = format!("{}/{}", self.prefix, file.path);
            Path::parse(&joined).unwrap_or_else(|_| Path::from(joined))
        }
    }
}

impl Source for ObjectSource {
    fn list(&self) -> BoxFuture<'_, Result<Vec<RemoteFile>, StorageError>> {
        Box::pin(async move {
            let prefix = (!self.prefix.as_ref().is_empty()).then_some(&self.prefix);
            let objects: Vec<_> = self
                .store
                .list(prefix)
                .try_collect()
                .await
                .map_err(|e| self.error(e))?;
            let mut files = Vec::with_capacity(objects.len());
            let mut etags = HashMap::new();
            for meta in objects {
                let relative = match meta.location.prefix_match(&self.prefix) {
                    Some(parts) => parts
                        .map(|p| p.as_ref().to_string())
                        .collect::<Vec<_>>()
                        .join("/"),
                    None => continue,
                };
                if relative.is_empty() {
                    continue;
                }
                if let Some(etag) = &meta.e_tag {
                    etags.insert(relative.clone(), etag.clone());
                }
                files.push(remote_file(relative, meta));
            }
            if files.is_empty() && !self.prefix.as_ref().is_empty() {
                // The URI names one object rather than a prefix: it keeps its own name.
                let meta = self.store.head(&self.prefix).await.map_err(|e| match e {
                    object_store::Error::NotFound { .. } => StorageError::Empty {
                        what: self.what.clone(),
                    },
                    other => self.error(other),
                })?;
                let _ = self.single_object.set(true);
                let path = single_file_name(self.prefix.as_ref()).to_string();
                if let Some(etag) = &meta.e_tag {
                    etags.insert(path.clone(), etag.clone());
                }
                *self.etags.lock().unwrap_or_else(|e| e.into_inner()) = etags;
                return Ok(vec![remote_file(path, meta)]);
            }
            if files.is_empty() {
                return Err(StorageError::Empty {
                    what: self.what.clone(),
                });
            }
            files.sort_by(|a, b| a.path.cmp(&b.path));
            // "Folder" objects (empty keys ending in `/`) are directories, not files.
            let folders: Vec<String> = files
                .iter()
                .filter(|f| f.size == Some(0))
                .filter(|f| {
                    files
                        .iter()
                        .any(|o| o.path.starts_with(&format!("{}/", f.path)))
                })
                .map(|f| f.path.clone())
                .collect();
            files.retain(|f| !folders.contains(&f.path));
            *self.etags.lock().unwrap_or_else(|e| e.into_inner()) = etags;
            Ok(files)
        })
    }

    fn read(
        &self,
        file: &RemoteFile,
        range: Option<Range<u64>>,
    ) -> BoxFuture<'_, Result<ByteStream, StorageError>> {
        let location = self.object_path(file);
        let path = file.path.clone();
        Box::pin(async move {
            let options = GetOptions {
                range: range.map(GetRange::Bounded),
                ..Default::default()
            };
            let result = self
                .store
                .get_opts(&location, options)
                .await
                .map_err(|e| self.error(e))?;
            if let Some(served) = &result.meta.e_tag {
                self.same_version(&path, served)?;
            }
            let what = self.what.clone();
            let redactor = self.redactor.clone();
            Ok(result
                .into_stream()
                .map(move |chunk| chunk.map_err(|e| object_error(e, &what, &redactor)))
                .boxed())
        })
    }

    fn ranged(&self) -> bool {
        true
    }

    /// As KServe: a listing of one file that is an archive is unpacked, whether the URI
    /// names the object or a prefix holding only it.
    fn unpacks_archives(&self) -> bool {
        true
    }
}

/// A listed object as a file to fetch; its version is the ETag where the store has one.
fn remote_file(path: String, meta: object_store::ObjectMeta) -> RemoteFile {
    RemoteFile {
        path,
        size: Some(meta.size),
        version: meta
            .e_tag
            .or(meta.version)
            .or_else(|| Some(meta.last_modified.to_rfc3339())),
    }
}

/// An ETag without its quotes or weak marker: some stores quote it in a listing and not in
/// the answer to a GET, or the other way round.
fn bare_etag(etag: &str) -> &str {
    let etag = etag.trim();
    etag.strip_prefix("W/").unwrap_or(etag).trim_matches('"')
}

/// The name a single-object URI gives its file: the last segment of the prefix.
fn single_file_name(prefix: &str) -> &str {
    prefix.rsplit('/').next().unwrap_or(prefix)
}

fn object_error(error: object_store::Error, what: &str, redactor: &Redactor) -> StorageError {
    let what = what.to_string();
    let text = redactor.clean(&chain(&error));
    let code = xml_code(&text);
    let with_code = |fallback: &str| match &code {
        Some(code) => format!(" ({code})"),
        None => fallback.to_string(),
    };
    match (&error, http_status(&text)) {
        (object_store::Error::NotFound { .. }, _) | (_, Some(404)) => StorageError::NotFound {
            what,
            detail: with_code(""),
        },
        (object_store::Error::PermissionDenied { .. }, _)
        | (object_store::Error::Unauthenticated { .. }, _)
        | (_, Some(401 | 403)) => StorageError::Denied {
            what,
            detail: format!("the server refused the credentials{}", with_code("")),
        },
        (_, Some(status)) => StorageError::Remote {
            what,
            detail: format!("HTTP {status}{}", with_code("")),
            transient: matches!(status, 408 | 429 | 500..=599),
        },
        (
            object_store::Error::InvalidPath { .. }
            | object_store::Error::NotSupported { .. }
            | object_store::Error::NotImplemented { .. }
            | object_store::Error::UnknownConfigurationKey { .. },
            None,
        ) => StorageError::Remote {
            what,
            detail: text,
            transient: false,
        },
        // No HTTP status: the connection failed (refused, reset, timed out); the innermost
        // cause says which.
        (_, None) => StorageError::Remote {
            what,
            detail: redactor.clean(&innermost(&error)),
            transient: true,
        },
    }
}

fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

fn innermost(error: &dyn std::error::Error) -> String {
    let mut last = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        last = inner.to_string();
        source = inner.source();
    }
    last
}

/// The status object_store reports as "... status code: 403 Forbidden".
fn http_status(text: &str) -> Option<u16> {
    let at = text.find("status code: ")? + "status code: ".len();
    text.get(at..at + 3)?.parse().ok()
}

/// S3's and Azure's error code: `<Code>SignatureDoesNotMatch</Code>`.
fn xml_code(text: &str) -> Option<String> {
    let start = text.find("<Code>")? + "<Code>".len();
    let end = start + text[start..].find("</Code>")?;
    Some(text[start..end].to_string())
}

fn client_options(env: &Environment, options: &SourceOptions, verify_var: &str) -> ClientOptions {
    let mut client = ClientOptions::new()
        .with_connect_timeout(options.connect_timeout)
        .with_timeout_disabled()
        .with_pool_max_idle_per_host(64);
    if env.flag(verify_var) == Some(false) {
        client = client.with_allow_invalid_certificates(true);
    }
    // A private CA (KServe's `s3-cabundle`): trusted besides the system's.
    if let Some(pem) = env
        .get("AWS_CA_BUNDLE")
        .and_then(|path| std::fs::read(path).ok())
    {
        for certificate in object_store::Certificate::from_pem_bundle(&pem).unwrap_or_default() {
            client = client.with_root_certificate(certificate);
        }
    }
    client
}

fn retry(options: &SourceOptions) -> RetryConfig {
    RetryConfig {
        max_retries: options.request_retries,
        retry_timeout: Duration::from_secs(30),
        ..Default::default()
    }
}

fn config_error(what: &str, error: object_store::Error, redactor: &Redactor) -> StorageError {
    StorageError::InvalidUri {
        uri: what.to_string(),
        reason: redactor.clean(&error.to_string()),
    }
}

/// S3 and S3-compatible servers, with KServe's settings: `AWS_ENDPOINT_URL`/`S3_ENDPOINT`,
/// `S3_USE_HTTPS`, `S3_VERIFY_SSL`, `AWS_REGION`, `S3_USER_VIRTUAL_BUCKET`,
/// `awsAnonymousCredential`, and every `AWS_*` variable object_store knows (keys, session
/// token, IRSA's `AWS_WEB_IDENTITY_TOKEN_FILE` and `AWS_ROLE_ARN`).
pub(super) fn s3(
    bucket: &str,
    env: &Environment,
    options: &SourceOptions,
    what: &str,
    redactor: &Redactor,
) -> Result<Store, StorageError> {
    let mut builder = object_store::aws::AmazonS3Builder::new();
    for (key, value) in env.prefixed("AWS_") {
        if let Ok(config) = key.to_ascii_lowercase().parse() {
            builder = builder.with_config(config, value);
        }
    }
    let use_https = env.flag("S3_USE_HTTPS").unwrap_or(true);
    let endpoint = env
        .get("AWS_ENDPOINT_URL")
        .or_else(|| env.get("AWS_ENDPOINT_URL_S3"))
        .or_else(|| env.get("S3_ENDPOINT"))
        .map(|endpoint| {
            if endpoint.contains("://") {
                endpoint.to_string()
            } else {
                format!("{}://{endpoint}", if use_https { "https" } else { "http" })
            }
        });
    let region = env
        .get("AWS_REGION")
        .or_else(|| env.get("AWS_DEFAULT_REGION"))
        .unwrap_or("us-east-1");
    builder = builder
        .with_bucket_name(bucket)
        .with_region(region)
        .with_retry(retry(options))
        .with_client_options(client_options(env, options, "S3_VERIFY_SSL"))
        .with_virtual_hosted_style_request(env.flag("S3_USER_VIRTUAL_BUCKET").unwrap_or(false));
    if let Some(endpoint) = endpoint {
        builder = builder
            .with_allow_http(endpoint.starts_with("http://"))
            .with_endpoint(endpoint);
    }
    let anonymous = env.flag("awsAnonymousCredential") == Some(true);
    if anonymous {
        builder = builder.with_skip_signature(true);
    }
    built(builder.build(), anonymous, what, redactor)
}

/// Google Cloud Storage. Credentials as KServe's Python client finds them:
/// `GOOGLE_APPLICATION_CREDENTIALS` when it names a file (KServe mounts the service account
/// key there); else Google's application default credentials, which are the file `gcloud
/// auth application-default login` writes or the metadata server of a GCE VM or a GKE pod
/// (Workload Identity); else none, for public buckets. The `GOOGLE_*` variables
/// object_store knows (`GOOGLE_BASE_URL`, ...) apply too.
pub(super) async fn gcs(
    bucket: &str,
    env: &Environment,
    options: &SourceOptions,
    what: &str,
    redactor: &Redactor,
) -> Result<Store, StorageError> {
    let mut builder = object_store::gcp::GoogleCloudStorageBuilder::new()
        .with_retry(retry(options))
        .with_client_options(client_options(env, options, "GCS_VERIFY_SSL"));
    for (key, value) in env.prefixed("GOOGLE_") {
        if key == "GOOGLE_APPLICATION_CREDENTIALS" {
            continue;
        }
        if let Ok(config) = key.to_ascii_lowercase().parse() {
            builder = builder.with_config(config, value);
        }
    }
    builder = builder.with_bucket_name(bucket);
    // The controller mounts every storage Secret's key file optionally: a path with no
    // file behind it means no key.
    let key_file = env
        .get("GOOGLE_APPLICATION_CREDENTIALS")
        .filter(|path| FsPath::new(path).is_file());
    let mut anonymous = false;
    if let Some(path) = key_file {
        builder = builder.with_application_credentials(path);
    } else if !gcloud_credentials_file(env).is_some_and(|f| f.is_file())
        && !metadata_server_answers(env).await
    {
        anonymous = true;
        builder = builder.with_skip_signature(true);
    }
    built(builder.build(), anonymous, what, redactor)
}

/// Where `gcloud auth application-default login` leaves its credentials.
fn gcloud_credentials_file(env: &Environment) -> Option<std::path::PathBuf> {
    let home = env.get("HOME")?;
    Some(FsPath::new(home).join(".config/gcloud/application_default_credentials.json"))
}

/// Whether a GCE or GKE metadata server is there, checked as Google's auth libraries do: its
/// root answers a request carrying `Metadata-Flavor: Google` with that header, within a
/// second (elsewhere the address does not answer, or another cloud's server does without
/// the header). The same variables as object_store's token requests say where it is.
async fn metadata_server_answers(env: &Environment) -> bool {
    let host = env
        .get("GCE_METADATA_HOST")
        .or_else(|| env.get("GCE_METADATA_ROOT"))
        .or_else(|| env.get("GCE_METADATA_IP"))
        .unwrap_or(METADATA_IP);
    let Ok(client) = reqwest::Client::builder()
        .timeout(METADATA_PROBE_TIMEOUT)
        .no_proxy()
        .build()
    else {
        return false;
    };
    let answer = client
        .get(format!("http://{host}/"))
        .header(METADATA_FLAVOR, "Google")
        .send()
        .await;
    answer.is_ok_and(|r| {
        r.headers()
            .get(METADATA_FLAVOR)
            .is_some_and(|v| v == "Google")
    })
}

const METADATA_IP: &str = "169.254.169.254";
const METADATA_FLAVOR: &str = "Metadata-Flavor";
const METADATA_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Azure Blob Storage with KServe's variables: a storage key, a service principal
/// (`AZ_CLIENT_ID`, `AZ_CLIENT_SECRET`, `AZ_TENANT_ID`), a SAS token, or anonymous for
/// public containers.
pub(super) fn azure(
    account: Option<&str>,
    container: &str,
    env: &Environment,
    options: &SourceOptions,
    what: &str,
    redactor: &Redactor,
) -> Result<Store, StorageError> {
    let account = account
        .or_else(|| env.get("AZURE_STORAGE_ACCOUNT_NAME"))
        .or_else(|| env.get("AZURE_STORAGE_ACCOUNT"))
        .ok_or_else(|| StorageError::InvalidUri {
            uri: what.to_string(),
            reason: "az:// needs the storage account in AZURE_STORAGE_ACCOUNT_NAME".into(),
        })?;
    let mut anonymous = false;
    let mut builder = object_store::azure::MicrosoftAzureBuilder::new()
        .with_account(account)
        .with_container_name(container)
        .with_retry(retry(options))
        .with_client_options(client_options(env, options, "AZURE_VERIFY_SSL"));
    let client_id = env
        .get("AZ_CLIENT_ID")
        .or_else(|| env.get("AZURE_CLIENT_ID"));
    let client_secret = env
        .get("AZ_CLIENT_SECRET")
        .or_else(|| env.get("AZURE_CLIENT_SECRET"));
    let tenant = env
        .get("AZ_TENANT_ID")
        .or_else(|| env.get("AZURE_TENANT_ID"));
    if let Some(key) = env.get("AZURE_STORAGE_ACCESS_KEY") {
        builder = builder.with_access_key(key);
    } else if let (Some(id), Some(secret), Some(tenant)) = (client_id, client_secret, tenant) {
        builder = builder
            .with_client_id(id)
            .with_client_secret(secret)
            .with_tenant_id(tenant);
    } else if let Some(sas) = env.get("AZURE_STORAGE_SAS_TOKEN") {
        let pairs = url::form_urlencoded::parse(sas.trim_start_matches('?').as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect::<Vec<_>>();
        builder = builder.with_sas_authorization(pairs);
    } else {
        anonymous = true;
        builder = builder.with_skip_signature(true);
    }
    built(builder.build(), anonymous, what, redactor)
}

fn built(
    store: object_store::Result<impl ObjectStore>,
    anonymous: bool,
    what: &str,
    redactor: &Redactor,
) -> Result<Store, StorageError> {
    Ok(Store {
        objects: Arc::new(store.map_err(|e| config_error(what, e, redactor))?),
        anonymous,
    })
}

/// A local directory, or one file in it (the prefix then names the file).
pub(super) fn local(
    path: &FsPath,
    what: &str,
) -> Result<(Arc<dyn ObjectStore>, String), StorageError> {
    let path = path.canonicalize().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => StorageError::NotFound {
            what: what.to_string(),
            detail: String::new(),
        },
        _ => StorageError::io(path, e),
    })?;
    let (root, prefix) = if path.is_dir() {
        (path.clone(), String::new())
    } else {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        (
            path.parent().unwrap_or(FsPath::new("/")).to_path_buf(),
            name,
        )
    };
    let store = object_store::local::LocalFileSystem::new_with_prefix(&root).map_err(|e| {
        StorageError::InvalidUri {
            uri: what.to_string(),
            reason: e.to_string(),
        }
    })?;
    Ok((Arc::new(store), prefix))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use object_store::memory::InMemory;
    use object_store::PutPayload;

    use super::*;

    async fn read_all(
        source: &ObjectSource,
        file: &RemoteFile,
        range: Range<u64>,
    ) -> Result<Bytes, StorageError> {
        let chunks: Vec<Bytes> = source.read(file, Some(range)).await?.try_collect().await?;
        Ok(chunks.concat().into())
    }

    #[tokio::test]
    async fn a_range_of_another_version_than_the_listing_saw_is_refused() {
        let store = Arc::new(InMemory::new());
        let key = Path::from("model/weights.bin");
        store
            .put(&key, PutPayload::from(vec![1u8; 64]))
            .await
            .unwrap();
        let source = ObjectSource::new(
            store.clone(),
            "model",
            "mem://model".into(),
            Redactor::default(),
        );
        let files = source.list().await.unwrap();
        assert_eq!(files.len(), 1);

        // Replaced between the listing and the first read: the listing's ETag is the one.
        store
            .put(&key, PutPayload::from(vec![2u8; 64]))
            .await
            .unwrap();
        let error = read_all(&source, &files[0], 0..32).await.unwrap_err();
        assert!(
            matches!(&error, StorageError::Changed { file, .. } if file == "weights.bin"),
            "{error}"
        );
        assert!(
            !error.is_transient(),
            "a retry would be served the new version again"
        );
        assert!(
            error
                .to_string()
                .starts_with("mem://model: weights.bin changed while it was being fetched (ETag "),
            "{error}"
        );

        // A new listing sees the new version, and its reads go through until it changes.
        let files = source.list().await.unwrap();
        assert_eq!(
            read_all(&source, &files[0], 0..32).await.unwrap(),
            vec![2u8; 32]
        );
        store
            .put(&key, PutPayload::from(vec![3u8; 64]))
            .await
            .unwrap();
        assert!(matches!(
            read_all(&source, &files[0], 32..64).await,
            Err(StorageError::Changed { .. })
        ));
    }

    #[test]
    fn etags_compare_without_quotes_or_a_weak_marker() {
        assert_eq!(bare_etag("\"0x8D4\""), "0x8D4");
        assert_eq!(bare_etag("0x8D4"), "0x8D4");
        assert_eq!(bare_etag("W/\"abc-2\""), "abc-2");
        assert_ne!(bare_etag("\"abc\""), bare_etag("\"abd\""));
    }
}
