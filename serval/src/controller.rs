//! `serval controller`: the InferenceService controller on Kubernetes.

use std::net::SocketAddr;

use serval_controller::kubernetes::storage::ModelCacheSettings;
use serval_controller::kubernetes::{self, Options, Settings, WebhookOptions};

#[derive(clap::Args, Debug)]
pub(crate) struct ControllerArgs {
    /// Where Serval runs: the activator's namespace and the leader Lease's.
    #[arg(long, env = "POD_NAMESPACE", default_value = "serval-system")]
    system_namespace: String,
    /// Reconcile InferenceServices in this namespace only (default: all namespaces).
    #[arg(long, env = "SERVAL_WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// External domain of service URLs: `http://<isvc>.<namespace>.<domain>`.
    #[arg(long, env = "SERVAL_DOMAIN", default_value = "example.com")]
    domain: String,
    /// The activator's Service in the system namespace; InferenceServices' Services point at it.
    #[arg(long, default_value = "serval-activator")]
    activator_service: String,
    /// The cluster's DNS domain.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// Serval's image, for the queue-proxy sidecar and storage initializer of model pods.
    #[arg(long, env = "SERVAL_IMAGE", default_value = concat!("ghcr.io/serval-dev/serval:", env!("CARGO_PKG_VERSION")))]
    image: String,
    /// The node model cache's directory on every node (a hostPath); InferenceServices
    /// annotated `serving.serval.dev/model-cache: "true"` fetch their model there once per
    /// node and mount it read-only. Off when unset.
    #[arg(long)]
    model_cache_host_path: Option<String>,
    /// Keep the model cache on this PersistentVolumeClaim (in each model's namespace)
    /// instead of the node's disk.
    #[arg(long)]
    model_cache_claim: Option<String>,
    /// Evict least-recently-used models from each node's cache past this size (e.g. 200Gi).
    #[arg(long)]
    model_cache_max_size: Option<String>,
    /// The cluster mounts OCI images as volumes (Kubernetes' ImageVolume feature): serve
    /// `oci+native://` models from image volumes. Without it they get a clear condition.
    #[arg(long)]
    image_volumes: bool,
    /// `/healthz`, `/readyz` and `/metrics`.
    #[arg(long, default_value = "0.0.0.0:8081")]
    health_listen: SocketAddr,
    /// Hold the `serval-controller` Lease before reconciling, so one replica writes.
    #[arg(long)]
    leader_election: bool,
    /// This replica's name in the Lease (the pod's name).
    #[arg(long, env = "POD_NAME", default_value = "serval-controller")]
    identity: String,
    /// Serve the admission webhook here (TLS, certificate made by the controller); off when
    /// unset.
    #[arg(long)]
    webhook_listen: Option<SocketAddr>,
    /// The webhook's Service in the system namespace, named in its certificate.
    #[arg(long, default_value = "serval-controller-webhook")]
    webhook_service: String,
    /// The Secret in the system namespace that keeps the webhook's CA and certificate.
    #[arg(long, default_value = "serval-controller-webhook-cert")]
    webhook_secret: String,
    /// Another name or IP address for the webhook's certificate (repeatable), for an API
    /// server that calls the webhook by URL.
    #[arg(long)]
    webhook_extra_name: Vec<String>,
}

pub(crate) async fn run(args: ControllerArgs) -> anyhow::Result<()> {
    let options = Options {
        settings: Settings {
            image: args.image,
            domain: args.domain,
            system_namespace: args.system_namespace.clone(),
            activator_service: args.activator_service,
            cluster_suffix: format!("svc.{}", args.cluster_domain),
            model_cache: args
                .model_cache_host_path
                .map(|host_path| ModelCacheSettings {
                    host_path,
                    claim: args.model_cache_claim,
                    max_size: args.model_cache_max_size,
                }),
            image_volumes: args.image_volumes,
        },
        namespace: args.namespace,
        health_listen: args.health_listen,
        leader_election: args.leader_election,
        identity: args.identity,
        webhook: args.webhook_listen.map(|listen| WebhookOptions {
            listen,
            namespace: args.system_namespace.clone(),
            service: args.webhook_service,
            secret: args.webhook_secret,
            extra_names: args.webhook_extra_name,
        }),
    };
    kubernetes::run(options, serval::signal::shutdown()).await?;
    Ok(())
}
