//! The admission webhook's server and certificate, with no cert-manager: the controller keeps
//! a CA and a serving certificate for its webhook Service in a Secret (made when missing,
//! remade a month before it expires or when the names change), patches the CA into the
//! webhook configurations' `caBundle` (the old CA too, while the new certificate takes over),
//! and serves `/validate` and `/mutate` over TLS on every replica, leader or not.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::Json;
use axum::routing::post;
use axum::Router;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use k8s_openapi::ByteString;
use kube::api::{Api, ApiResource, DynamicObject, ObjectMeta, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::{json, Value};
use tokio_rustls::rustls::crypto::ring::default_provider;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use super::admission::answer;

/// The webhook configurations the chart installs, whose `caBundle` the controller keeps.
pub const VALIDATING_WEBHOOK: &str = "serval-validating-webhook";
pub const MUTATING_WEBHOOK: &str = "serval-defaulting-webhook";
const NOT_AFTER: &str = "serving.serval.dev/not-after";
const NAMES: &str = "serving.serval.dev/names";
const VALID_FOR_DAYS: i64 = 365;
const RENEW_BEFORE_DAYS: i64 = 30;
const CHECK_EVERY: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook Secret {name}: {source}")]
    Secret {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("making the webhook certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("the webhook certificate in Secret {0} cannot be read")]
    Unreadable(String),
    #[error("TLS: {0}")]
    Tls(#[from] tokio_rustls::rustls::Error),
    #[error("patching caBundle of {name}: {source}")]
    CaBundle {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Where the webhook is served and how it is reached.
#[derive(Clone, Debug)]
pub struct WebhookOptions {
    pub listen: SocketAddr,
    pub namespace: String,
    /// The webhook Service's name; the certificate names `<service>.<ns>.svc` and longer.
    pub service: String,
    pub secret: String,
    /// Extra certificate names (or IP addresses) the API server may reach the webhook by.
    pub extra_names: Vec<String>,
}

impl WebhookOptions {
    fn names(&self) -> Vec<String> {
        let base = format!("{}.{}", self.service, self.namespace);
        let mut names = vec![
            self.service.clone(),
            base.clone(),
            format!("{base}.svc"),
            format!("{base}.svc.cluster.local"),
        ];
        names.extend(self.extra_names.iter().cloned());
        names
    }
}

/// A CA and the serving certificate it signed, in PEM.
#[derive(Clone, Debug, PartialEq)]
struct Keys {
    ca: String,
    cert: String,
    key: String,
    not_after: Timestamp,
    names: String,
}

fn days(n: i64) -> SignedDuration {
    SignedDuration::from_secs(n * 86_400)
}

fn make_keys(names: &[String]) -> Result<Keys, WebhookError> {
    let not_after = Timestamp::now() + days(VALID_FOR_DAYS);
    let date = not_after
        .to_zoned(k8s_openapi::jiff::tz::TimeZone::UTC)
        .date();
    let expiry = rcgen::date_time_ymd(i32::from(date.year()), date.month() as u8, date.day() as u8);
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "serval-webhook-ca");
    ca_params.not_after = expiry;
    let ca = ca_params.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(names.to_vec())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, names[0].as_str());
    params.not_after = expiry;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Keys {
        ca: ca.pem(),
        cert: cert.pem(),
        key: key.serialize_pem(),
        not_after,
        names: names.join(","),
    })
}

/// Whether `keys` may keep serving at `now`: for the same names, and not within a month of
/// expiring.
fn still_good(keys: &Keys, names: &[String], now: Timestamp) -> bool {
    keys.not_after > now + days(RENEW_BEFORE_DAYS) && keys.names == names.join(",")
}

fn text(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

fn read_keys(secret: &Secret) -> Option<Keys> {
    let annotations = secret.metadata.annotations.as_ref()?;
    Some(Keys {
        ca: text(secret, "ca.crt")?,
        cert: text(secret, "tls.crt")?,
        key: text(secret, "tls.key")?,
        not_after: annotations.get(NOT_AFTER)?.parse().ok()?,
        names: annotations.get(NAMES)?.clone(),
    })
}

fn secret_of(options: &WebhookOptions, keys: &Keys, resource_version: Option<String>) -> Secret {
    let data = BTreeMap::from([
        (
            "ca.crt".to_string(),
            ByteString(keys.ca.clone().into_bytes()),
        ),
        (
            "tls.crt".to_string(),
            ByteString(keys.cert.clone().into_bytes()),
        ),
        (
            "tls.key".to_string(),
            ByteString(keys.key.clone().into_bytes()),
        ),
    ]);
    Secret {
        metadata: ObjectMeta {
            name: Some(options.secret.clone()),
            namespace: Some(options.namespace.clone()),
            resource_version,
            annotations: Some(BTreeMap::from([
                (NOT_AFTER.to_string(), keys.not_after.to_string()),
                (NAMES.to_string(), keys.names.clone()),
            ])),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".to_string()),
        data: Some(data),
        ..Default::default()
    }
}

/// The keys in the Secret, made (or remade) when missing, near expiry or for other names.
/// Returns them with the CA they replace, if any. Replicas racing here agree through the
/// Secret's resourceVersion: the loser reads the winner's keys.
async fn current_keys(
    client: &Client,
    options: &WebhookOptions,
) -> Result<(Keys, Option<String>), WebhookError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &options.namespace);
    let failed = |source| WebhookError::Secret {
        name: options.secret.clone(),
        source,
    };
    let names = options.names();
    loop {
        let existing = api.get_opt(&options.secret).await.map_err(failed)?;
        let keys = existing.as_ref().and_then(read_keys);
        if let Some(keys) = keys
            .as_ref()
            .filter(|k| still_good(k, &names, Timestamp::now()))
        {
            return Ok((keys.clone(), None));
        }
        let fresh = make_keys(&names)?;
        let written = match &existing {
            None => api
                .create(&PostParams::default(), &secret_of(options, &fresh, None))
                .await
                .map(|_| ()),
            Some(old) => api
                .replace(
                    &options.secret,
                    &PostParams::default(),
                    &secret_of(options, &fresh, old.metadata.resource_version.clone()),
                )
                .await
                .map(|_| ()),
        };
        match written {
            Ok(()) => {
                tracing::info!(secret = %options.secret, not_after = %fresh.not_after, "made the webhook certificate");
                return Ok((fresh, keys.map(|k| k.ca)));
            }
            // Another replica wrote it first: use what it wrote.
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(e) => return Err(failed(e)),
        }
    }
}

/// Puts `bundle` into every webhook's `caBundle` of both configurations.
async fn patch_ca_bundles(client: &Client, bundle: &str) -> Result<(), WebhookError> {
    let encoded = ByteString(bundle.as_bytes().to_vec());
    let validating = ApiResource::erase::<ValidatingWebhookConfiguration>(&());
    let mutating = ApiResource::erase::<MutatingWebhookConfiguration>(&());
    patch_ca_bundle(client, &validating, VALIDATING_WEBHOOK, &encoded).await?;
    patch_ca_bundle(client, &mutating, MUTATING_WEBHOOK, &encoded).await
}

/// One webhook configuration's `caBundle`s, when the configuration exists.
async fn patch_ca_bundle(
    client: &Client,
    resource: &ApiResource,
    name: &str,
    bundle: &ByteString,
) -> Result<(), WebhookError> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), resource);
    let failed = |source| WebhookError::CaBundle {
        name: name.to_string(),
        source,
    };
    let Some(config) = api.get_opt(name).await.map_err(failed)? else {
        return Ok(());
    };
    let webhooks: Vec<Value> = config.data["webhooks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| json!({"name": w["name"], "clientConfig": {"caBundle": bundle}}))
        .collect();
    let patch = Patch::Strategic(json!({ "webhooks": webhooks }));
    api.patch(name, &PatchParams::default(), &patch)
        .await
        .map_err(failed)?;
    Ok(())
}

fn tls_config(keys: &Keys) -> Result<Arc<ServerConfig>, WebhookError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(keys.cert.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|_| WebhookError::Unreadable("tls.crt".to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(keys.key.as_bytes())
        .map_err(|_| WebhookError::Unreadable("tls.key".to_string()))?;
    let config = ServerConfig::builder_with_provider(Arc::new(default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(Arc::new(config))
}

/// Makes sure of the certificate and caBundle; returns the TLS config to serve with.
async fn refresh(
    client: &Client,
    options: &WebhookOptions,
) -> Result<Arc<ServerConfig>, WebhookError> {
    let (keys, replaced_ca) = current_keys(client, options).await?;
    // The old CA stays trusted until every replica serves the new certificate.
    let bundle = match replaced_ca {
        Some(old) => format!("{}{old}", keys.ca),
        None => keys.ca.clone(),
    };
    patch_ca_bundles(client, &bundle).await?;
    tls_config(&keys)
}

fn router() -> Router {
    Router::new()
        .route(
            "/validate",
            post(|Json(review): Json<Value>| async move { Json(answer(&review, false)) }),
        )
        .route(
            "/mutate",
            post(|Json(review): Json<Value>| async move { Json(answer(&review, true)) }),
        )
}

/// Serves the webhook until the process ends, renewing the certificate when it must.
pub(super) async fn serve(client: Client, options: WebhookOptions) -> Result<(), WebhookError> {
    let config = Arc::new(RwLock::new(refresh(&client, &options).await?));
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|source| WebhookError::Bind {
            addr: options.listen,
            source,
        })?;
    tracing::info!(listen = %options.listen, "admission webhook serving");
    let renewing = config.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(CHECK_EVERY).await;
            match refresh(&client, &options).await {
                Ok(fresh) => *renewing.write().unwrap_or_else(|e| e.into_inner()) = fresh,
                Err(e) => tracing::warn!(error = %e, "renewing the webhook certificate"),
            }
        }
    });
    let app = router();
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a webhook connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = TlsAcceptor::from(config.read().unwrap_or_else(|e| e.into_inner()).clone());
        let app = app.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(stream).await else {
                return;
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let _ =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        vec!["hook.ns.svc".to_string(), "127.0.0.1".to_string()]
    }

    #[test]
    fn made_keys_serve_tls_and_are_renewed_a_month_before_they_expire() {
        let keys = make_keys(&names()).unwrap();
        assert!(keys.ca.starts_with("-----BEGIN CERTIFICATE-----"));
        tls_config(&keys).expect("the certificate and key make a TLS config");
        let now = Timestamp::now();
        assert!(still_good(&keys, &names(), now));
        assert!(still_good(
            &keys,
            &names(),
            now + days(VALID_FOR_DAYS - RENEW_BEFORE_DAYS - 2)
        ));
        assert!(!still_good(
            &keys,
            &names(),
            now + days(VALID_FOR_DAYS - RENEW_BEFORE_DAYS + 1)
        ));
        // Another Service name needs another certificate.
        assert!(!still_good(&keys, &names()[..1], now));
    }

    #[test]
    fn keys_survive_the_secret() {
        let options = WebhookOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            namespace: "serval-system".to_string(),
            service: "hook".to_string(),
            secret: "hook-cert".to_string(),
            extra_names: Vec::new(),
        };
        let keys = make_keys(&options.names()).unwrap();
        let secret = secret_of(&options, &keys, None);
        assert_eq!(read_keys(&secret), Some(keys));
    }
}
