//! The controller's view of the cluster: watched caches of what it reads (revisions, pods,
//! Services, runtimes), each object trimmed to what a reconcile needs, so a reconcile never
//! lists a namespace from the API server.

use futures_util::StreamExt;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};
use tokio::sync::watch;

use super::labels;

/// The objects of one InferenceService in a store.
pub(super) fn owned_by<K>(store: &Store<K>, namespace: &str, isvc: &str) -> Vec<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    store
        .state()
        .iter()
        .filter(|o| {
            o.meta().namespace.as_deref() == Some(namespace)
                && o.meta()
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(labels::INFERENCE_SERVICE))
                    .map(String::as_str)
                    == Some(isvc)
        })
        .map(|o| (**o).clone())
        .collect()
}

/// A store of `api`'s objects that `config` selects, kept current in the background, and a
/// counter of the changes it has seen. Each object is kept as `trim` leaves it: only what a
/// reconcile reads, and never the managed fields.
pub(super) fn watched<K>(
    api: Api<K>,
    config: watcher::Config,
    trim: fn(&mut K),
) -> (Store<K>, watch::Receiver<u64>)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let (changed, changes) = watch::channel(0u64);
    let trimmed = watcher::watcher(api, config).modify(move |object: &mut K| {
        object.managed_fields_mut().clear();
        trim(object);
    });
    let stream = reflector::reflector(writer, trimmed)
        .default_backoff()
        .touched_objects();
    tokio::spawn(stream.for_each(move |_| {
        changed.send_modify(|n| *n += 1);
        std::future::ready(())
    }));
    (store, changes)
}

/// One item per change a [`watched`] store saw (changes in a burst may come as one).
pub(super) fn changes(
    mut counter: watch::Receiver<u64>,
) -> impl futures_util::Stream<Item = ()> + Send {
    counter.mark_unchanged();
    futures_util::stream::unfold(counter, |mut counter| async move {
        counter.changed().await.ok()?;
        Some(((), counter))
    })
}

/// An Api over one namespace, or all of them.
pub(super) fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}
