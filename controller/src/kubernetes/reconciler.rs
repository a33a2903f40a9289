//! `serval controller`: a kube-rs controller over InferenceServices. Each reconcile reads
//! what exists (the service's revision Deployments and pods, the ServingRuntimes), asks
//! [`crate::rollout::reconcile`] for the plan, and applies it: creates the new revision's
//! Deployment and Service (a revision is immutable, so an existing one is never rewritten and
//! its `replicas` stay the autoscaler's), deletes collected revisions, keeps the entry
//! Services, and writes the status only when it changed. Everything is rebuilt from the API
//! server, so a restart changes nothing that is already right.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret, Service, ServiceAccount};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;
use serval_api::annotations::serval;
use serval_api::inference_service::ComponentKind;
use serval_api::local_model_cache::covers;
use serval_api::revision::REVISION_LABEL;
use serval_api::{ClusterServingRuntime, InferenceService, LocalModelCache, ServingRuntime};

use super::cache::{changes, owned_by, scoped, watched};
use super::health::revision_health;
use super::labels;
use super::leader::{self, LeaseSettings};
use super::revision::{
    revision_deployment, revision_template, RevisionTemplate, TEMPLATE_HASH_ANNOTATION,
};
use super::server::{self, Health};
use super::services::revision_service;
use super::status_patch::merge_patch;
use super::storage::{storage_problem, StorageSecret};
use super::webhook::{WebhookError, WebhookOptions};
use super::write::{api_error, apply_entry_services, create_service, is_status};
use super::Settings;
use crate::rollout::{
    component_template, reconcile as plan, template_hash, Addressing, ObservedRevision,
    TemplateProblem, COMPONENTS,
};

/// The field manager of everything the controller writes.
pub(super) const MANAGER: &str = "serval-controller";
/// How often a service is looked at again while a revision is starting (for the progress
/// deadline), and when nothing is pending.
const PENDING_RECHECK: Duration = Duration::from_secs(10);
const IDLE_RECHECK: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("cannot reach the Kubernetes API server: {0}")]
    Client(#[source] kube::Error),
    #[error("{action} {kind} {namespace}/{name}: {source}")]
    Api {
        action: &'static str,
        kind: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("the health server: {0}")]
    Health(#[source] std::io::Error),
    #[error("leader election: {0}")]
    Lease(#[source] kube::Error),
    #[error("lost the leader Lease; stopping so that only one controller writes")]
    LeadershipLost,
    #[error("admission webhook: {0}")]
    Webhook(#[from] WebhookError),
}

/// How `serval controller` runs.
#[derive(Clone, Debug)]
pub struct Options {
    pub settings: Settings,
    /// Watch one namespace only; all when `None`.
    pub namespace: Option<String>,
    /// `/healthz`, `/readyz`, `/metrics`.
    pub health_listen: SocketAddr,
    /// Hold the `serval-controller` Lease in the system namespace before reconciling.
    pub leader_election: bool,
    /// This replica's name in the Lease.
    pub identity: String,
    /// The admission webhook, served by every replica; none when `None`.
    pub webhook: Option<WebhookOptions>,
}

struct Context {
    client: Client,
    settings: Settings,
    runtimes: Store<ServingRuntime>,
    cluster_runtimes: Store<ClusterServingRuntime>,
    model_caches: Store<LocalModelCache>,
    /// What the controller made, as watched: a reconcile reads these instead of listing from
    /// the API server, which would read every object of the namespace each time.
    deployments: Store<Deployment>,
    services: Store<Service>,
    pods: Store<Pod>,
    health: Arc<Health>,
}

/// A component's revision template and its hash, or why it has none.
type Template = Result<(RevisionTemplate, String), TemplateProblem>;

/// The templates of every component the spec has.
fn templates(isvc: &InferenceService, ctx: &Context) -> Vec<(ComponentKind, Template)> {
    let namespace = isvc.namespace().unwrap_or_default();
    let namespaced: Vec<ServingRuntime> = ctx
        .runtimes
        .state()
        .iter()
        .filter(|r| r.namespace().as_deref() == Some(namespace.as_str()))
        .map(|r| (**r).clone())
        .collect();
    let cluster: Vec<ClusterServingRuntime> = ctx
        .cluster_runtimes
        .state()
        .iter()
        .map(|r| (**r).clone())
        .collect();
    COMPONENTS
        .iter()
        .filter_map(|kind| {
            let component = component_template(isvc, *kind)?;
            let template = revision_template(isvc, *kind, &namespaced, &cluster)
                .map(|t| with_local_model_cache(t, &ctx.model_caches))
                .and_then(|t| match storage_problem(&t, &ctx.settings) {
                    Some(problem) => Err(problem),
                    None => Ok(t),
                })
                .map(|t| {
                    // What shapes the pods: the spec, and what the runtime added to it.
                    let hash = template_hash(&json!({
                        "component": component,
                        "container": t.container,
                        "pod": t.pod,
                        "runtime": t.runtime,
                    }));
                    (t, hash)
                });
            Some((*kind, template))
        })
        .collect()
}

/// KServe's `LocalModelCache` covering the component's storage URI asks for the node model
/// cache, as Serval's own annotation does.
fn with_local_model_cache(
    mut template: RevisionTemplate,
    caches: &Store<LocalModelCache>,
) -> RevisionTemplate {
    let covered = template.storage_uri.as_deref().is_some_and(|uri| {
        caches
            .state()
            .iter()
            .any(|cache| covers(&cache.spec.source_model_uri, uri))
    });
    if covered {
        template
            .annotations
            .insert(serval::MODEL_CACHE.to_string(), "true".to_string());
    }
    template
}

/// The Secrets the component's ServiceAccount names (KServe's `default` when none is
/// set): their annotations and key names. Values are dropped at once; they reach the
/// storage initializer by reference.
async fn storage_secrets(
    client: &Client,
    namespace: &str,
    template: &RevisionTemplate,
) -> Result<Vec<StorageSecret>, ControllerError> {
    let account = template
        .pod
        .service_account_name
        .clone()
        .unwrap_or_else(|| "default".to_string());
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let Some(found) = accounts.get_opt(&account).await.map_err(api_error(
        "get",
        "ServiceAccount",
        namespace,
        &account,
    ))?
    else {
        return Ok(Vec::new());
    };
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut out = Vec::new();
    for reference in found.secrets.iter().flatten() {
        let Some(name) = reference.name.clone() else {
            continue;
        };
        if let Some(secret) = secrets
            .get_opt(&name)
            .await
            .map_err(api_error("get", "Secret", namespace, &name))?
        {
            let keys = secret
                .data
                .iter()
                .flat_map(|d| d.keys())
                .chain(secret.string_data.iter().flat_map(|d| d.keys()))
                .cloned()
                .collect();
            out.push(StorageSecret {
                name,
                annotations: secret.metadata.annotations.unwrap_or_default(),
                keys,
            });
        }
    }
    Ok(out)
}

async fn reconcile(
    isvc: Arc<InferenceService>,
    ctx: Arc<Context>,
) -> Result<Action, ControllerError> {
    if isvc.metadata.deletion_timestamp.is_some() {
        // Owner references take everything with it.
        return Ok(Action::await_change());
    }
    let namespace = isvc.namespace().unwrap_or_default();
    let name = isvc.name_any();
    let client = ctx.client.clone();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let services: Api<Service> = Api::namespaced(client.clone(), &namespace);
    let existing = owned_by(&ctx.deployments, &namespace, &name);
    let existing_pods = owned_by(&ctx.pods, &namespace, &name);
    let existing_services = owned_by(&ctx.services, &namespace, &name);

    let observed: Vec<ObservedRevision> = existing
        .iter()
        .filter_map(|deployment| {
            let labels = deployment.metadata.labels.as_ref()?;
            let revision = labels.get(REVISION_LABEL)?;
            let kind = COMPONENTS
                .into_iter()
                .find(|k| labels.get(labels::COMPONENT).map(String::as_str) == Some(k.as_str()))?;
            let its_pods: Vec<&Pod> = existing_pods
                .iter()
                .filter(|p| p.labels().get(REVISION_LABEL) == Some(revision))
                .collect();
            Some(ObservedRevision {
                name: revision.clone(),
                component: kind,
                template_hash: deployment
                    .annotations()
                    .get(TEMPLATE_HASH_ANNOTATION)
                    .cloned()
                    .unwrap_or_default(),
                created: deployment
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| SystemTime::from(t.0))
                    .unwrap_or(SystemTime::UNIX_EPOCH),
                health: revision_health(deployment, &its_pods),
            })
        })
        .collect();

    let templates = templates(&isvc, &ctx);
    let hashes: Vec<(ComponentKind, Result<String, TemplateProblem>)> = templates
        .iter()
        .map(|(k, t)| {
            (
                *k,
                t.as_ref()
                    .map(|(_, hash)| hash.clone())
                    .map_err(Clone::clone),
            )
        })
        .collect();
    let addressing = Addressing {
        domain: ctx.settings.domain.clone(),
        cluster_suffix: ctx.settings.cluster_suffix.clone(),
    };
    let decided = plan(&isvc, &hashes, &observed, &addressing, SystemTime::now());

    for new in &decided.create {
        let Some((_, Ok((template, _)))) = templates.iter().find(|(k, _)| *k == new.component)
        else {
            continue;
        };
        let secrets = if template.storage_uri.is_some() || !template.storage_uris.is_empty() {
            storage_secrets(&client, &namespace, template).await?
        } else {
            Vec::new()
        };
        let deployment = revision_deployment(
            &isvc,
            template,
            &new.name,
            &new.template_hash,
            &ctx.settings,
            &secrets,
        );
        match deployments
            .create(&PostParams::default(), &deployment)
            .await
        {
            Ok(_) => tracing::info!(%namespace, revision = %new.name, "created revision"),
            Err(e) if is_status(&e, 409) => {}
            Err(e) => return Err(api_error("create", "Deployment", &namespace, &new.name)(e)),
        }
    }

    // Every revision kept has its private Service; created once, never rewritten.
    let service_names: Vec<String> = existing_services.iter().map(|s| s.name_any()).collect();
    let kept = observed
        .iter()
        .map(|r| (r.component, r.name.clone()))
        .chain(decided.create.iter().map(|c| (c.component, c.name.clone())))
        .filter(|(_, name)| !decided.delete.contains(name));
    for (kind, revision) in kept {
        if !service_names.contains(&revision) {
            create_service(
                &services,
                &revision_service(&isvc, kind, &revision),
                &namespace,
            )
            .await?;
        }
    }
    apply_entry_services(&isvc, &ctx.settings, &services, &existing_services).await?;

    for revision in &decided.delete {
        for result in [
            deployments
                .delete(revision, &DeleteParams::background())
                .await
                .map(|_| ()),
            services
                .delete(revision, &DeleteParams::background())
                .await
                .map(|_| ()),
        ] {
            match result {
                Ok(()) => {}
                Err(e) if is_status(&e, 404) => {}
                Err(e) => return Err(api_error("delete", "revision", &namespace, revision)(e)),
            }
        }
        tracing::info!(%namespace, %revision, "deleted revision");
    }

    let before = serde_json::to_value(isvc.status.clone().unwrap_or_default()).unwrap_or_default();
    let after = serde_json::to_value(&decided.status).unwrap_or_default();
    if let Some(change) = merge_patch(&before, &after) {
        let isvcs: Api<InferenceService> = Api::namespaced(client, &namespace);
        isvcs
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": change})),
            )
            .await
            .map_err(api_error(
                "update",
                "status of InferenceService",
                &namespace,
                &name,
            ))?;
    }
    ctx.health.reconciled();
    let pending = decided
        .status
        .conditions
        .iter()
        .any(|c| c.status == "Unknown");
    Ok(Action::requeue(if pending {
        PENDING_RECHECK
    } else {
        IDLE_RECHECK
    }))
}

fn error_policy(
    isvc: Arc<InferenceService>,
    error: &ControllerError,
    _ctx: Arc<Context>,
) -> Action {
    tracing::warn!(
        namespace = isvc.namespace().unwrap_or_default(),
        name = %isvc.name_any(),
        error = %error,
        "reconcile failed; retrying"
    );
    Action::requeue(Duration::from_secs(5))
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(
    options: Options,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ControllerError> {
    // The controller wants a shutdown future it can share between threads.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(());
    });
    let client = Client::try_default()
        .await
        .map_err(ControllerError::Client)?;
    let health = Arc::new(Health::default());
    let listener = tokio::net::TcpListener::bind(options.health_listen)
        .await
        .map_err(ControllerError::Health)?;
    tokio::spawn(server::serve(listener, health.clone()));

    // Every replica answers the API server's admission calls, leading or not.
    let webhook = options
        .webhook
        .clone()
        .map(|webhook| tokio::spawn(super::webhook::serve(client.clone(), webhook)));
    let leadership = if options.leader_election {
        let lease = LeaseSettings::new(&options.settings.system_namespace, &options.identity);
        leader::acquire(&client, &lease)
            .await
            .map_err(ControllerError::Lease)?;
        Some(tokio::spawn(leader::keep(client.clone(), lease)))
    } else {
        None
    };
    health.leading();

    let namespace = options.namespace.as_deref();
    let (runtimes, runtime_changes) = watched(
        scoped::<ServingRuntime>(&client, namespace),
        watcher::Config::default(),
        |_| {},
    );
    let (cluster_runtimes, cluster_changes) = watched(
        Api::<ClusterServingRuntime>::all(client.clone()),
        watcher::Config::default(),
        |_| {},
    );
    let (model_caches, cache_changes) = watched(
        Api::<LocalModelCache>::all(client.clone()),
        watcher::Config::default(),
        |_| {},
    );
    // A runtime or model cache that changes may change every service's revisions.
    let runtimes_changed = futures_util::stream::select(
        futures_util::stream::select(changes(runtime_changes), changes(cluster_changes)),
        changes(cache_changes),
    );

    let managed =
        watcher::Config::default().labels(&format!("{}={}", labels::MANAGED_BY, labels::MANAGER));
    let pods = watcher::Config::default().labels(REVISION_LABEL);
    let context = Arc::new(Context {
        client: client.clone(),
        settings: options.settings.clone(),
        runtimes,
        cluster_runtimes,
        model_caches,
        // A revision is read by its labels, annotations and status; its pods by their status.
        deployments: watched(
            scoped(&client, namespace),
            managed.clone(),
            |d: &mut Deployment| {
                if let Some(spec) = d.spec.as_mut() {
                    spec.template = Default::default();
                }
            },
        )
        .0,
        services: watched(scoped(&client, namespace), managed.clone(), |_| {}).0,
        pods: watched(scoped(&client, namespace), pods.clone(), |p: &mut Pod| {
            p.spec = None
        })
        .0,
        health: health.clone(),
    });
    // The first reconciles must see what exists (or they would make it again) and every
    // runtime (or they would report one missing).
    let _ = context.deployments.wait_until_ready().await;
    let _ = context.services.wait_until_ready().await;
    let _ = context.pods.wait_until_ready().await;
    let _ = context.runtimes.wait_until_ready().await;
    let _ = context.cluster_runtimes.wait_until_ready().await;
    let _ = context.model_caches.wait_until_ready().await;
    let controller = Controller::new(
        scoped::<InferenceService>(&client, namespace),
        watcher::Config::default(),
    )
    .owns(scoped::<Deployment>(&client, namespace), managed.clone())
    .owns(scoped::<Service>(&client, namespace), managed)
    .watches(scoped::<Pod>(&client, namespace), pods, |pod: Pod| {
        let owner = pod.labels().get(labels::INFERENCE_SERVICE).cloned();
        let namespace = pod.namespace();
        owner.into_iter().map(move |name| {
            let reference = ObjectRef::new(&name);
            match &namespace {
                Some(ns) => reference.within(ns),
                None => reference,
            }
        })
    })
    .reconcile_all_on(runtimes_changed)
    .graceful_shutdown_on(async move {
        let _ = stopped.await;
    })
    .run(reconcile, error_policy, context)
    .for_each(|_| async {});
    let lost = async move {
        match leadership {
            Some(task) => {
                let _ = task.await;
            }
            None => std::future::pending().await,
        }
    };
    let webhook_failed = async move {
        match webhook {
            Some(task) => match task.await {
                Ok(Err(e)) => e,
                _ => std::future::pending().await,
            },
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = controller => Ok(()),
        () = lost => Err(ControllerError::LeadershipLost),
        failed = webhook_failed => Err(ControllerError::Webhook(failed)),
    }
}
