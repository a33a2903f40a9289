//! Resolving one request against the table: the `/serving/<ns>/<label>/` prefix or the Host
//! gives a namespace and a host label `[<tag>-]<isvc>[-<component>]`; the component is the
//! named one, the explainer for `:explain`, or the entry; the revision is the tagged one or
//! the split's pick for the request's roll. Pure: the roll is an input.

use std::borrow::Cow;
use std::sync::Arc;

use super::{Component, RevisionSettings, RouteTable, ServiceEntry, Snapshot, Target};
use crate::error::ActivatorError;
use crate::split;

const PATH_PREFIX: &str = "/serving/";
/// Cluster-internal host suffixes accepted besides the configured domain.
const CLUSTER_SUFFIXES: [&str; 2] = ["svc.cluster.local", "svc"];

/// Where one request goes.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub(crate) service: Arc<ServiceEntry>,
    pub(crate) revision: Arc<RevisionSettings>,
    /// The path and query to forward, when the `/serving/...` prefix was stripped.
    pub(crate) path: Option<String>,
    /// What picked the revision, to pick again if traffic moves while the request waits.
    component: Component,
    tag: Option<String>,
    roll: u32,
}

/// What the request says about where it goes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestTarget<'a> {
    pub(crate) host: Option<&'a str>,
    pub(crate) path_and_query: &'a str,
    pub(crate) tag_header: Option<&'a str>,
    /// A uniform draw from `0..100` for the split.
    pub(crate) roll: u32,
}

impl RouteTable {
    /// The service and revision a request goes to. Allocates nothing unless the path has
    /// the `/serving/` prefix or the host has upper case.
    pub(crate) fn resolve(&self, request: RequestTarget<'_>) -> Result<Resolved, ActivatorError> {
        let snapshot = self.snapshot.load();
        let host;
        let (namespace, label, path) = match prefix_route(request.path_and_query) {
            Some((namespace, label, rest)) => (namespace, label, Some(rest)),
            None => {
                host = lower_case(strip_port(request.host.unwrap_or_default()));
                let (namespace, label) = self.host_route(&host).ok_or_else(|| {
                    ActivatorError::UnknownService(format!(
                        "host {:?}",
                        request.host.unwrap_or_default()
                    ))
                })?;
                (namespace, Cow::Borrowed(label), None)
            }
        };
        let (service, component, host_tag) = find(&snapshot, namespace, &label)
            .ok_or_else(|| ActivatorError::UnknownService(format!("{namespace}/{label}")))?;
        let forwarded = path.as_deref().unwrap_or(request.path_and_query);
        let component = component.unwrap_or_else(|| {
            let explain = forwarded
                .split('?')
                .next()
                .is_some_and(|p| p.ends_with(":explain"));
            let has_explainer = service.components.contains_key(&Component::Explainer);
            if explain && has_explainer {
                Component::Explainer
            } else {
                service.route.entry()
            }
        });
        let no_revision = || ActivatorError::NoRevision {
            service: service.id.clone(),
        };
        let targets = service.components.get(&component).ok_or_else(no_revision)?;
        let tag = host_tag.or(request.tag_header.filter(|_| service.route.tag_routing));
        let revision = pick(&service, targets, tag, request.roll)?;
        Ok(Resolved {
            revision,
            path,
            component,
            tag: tag.map(str::to_string),
            roll: request.roll,
            service,
        })
    }

    /// Where a request resolved earlier goes now, when its revision no longer takes traffic
    /// of its component (a rollout finished, a canary was promoted or rolled back while the
    /// request was held). `None` while the revision still takes traffic, or when the service
    /// or component is gone (the request then keeps waiting for its own deadline).
    pub(crate) fn reroute(&self, resolved: &Resolved) -> Option<Resolved> {
        let route = &resolved.service.route;
        let service = self
            .snapshot
            .load()
            .get(&route.namespace, &route.name)?
            .clone();
        let targets = service.components.get(&resolved.component)?;
        let current = |t: &&Target| t.revision.name == resolved.revision.name;
        let still_routed = match &resolved.tag {
            Some(tag) => targets
                .iter()
                .filter(current)
                .any(|t| t.tag.as_ref() == Some(tag)),
            None => targets.iter().filter(current).any(|t| t.percent > 0),
        };
        if still_routed {
            return None;
        }
        let revision = pick(&service, targets, resolved.tag.as_deref(), resolved.roll).ok()?;
        Some(Resolved {
            revision,
            path: resolved.path.clone(),
            component: resolved.component,
            tag: resolved.tag.clone(),
            roll: resolved.roll,
            service,
        })
    }

    /// A lower-case `<label>.<namespace>.<domain>` (or a cluster-internal suffix) ->
    /// (namespace, label).
    fn host_route<'h>(&self, host: &'h str) -> Option<(&'h str, &'h str)> {
        let host = host.trim_end_matches('.');
        let suffixes = std::iter::once(self.domain.as_str()).chain(CLUSTER_SUFFIXES);
        let stem = suffixes
            .filter_map(|suffix| host.strip_suffix(suffix)?.strip_suffix('.'))
            .next()
            .unwrap_or(host);
        let (label, namespace) = stem.split_once('.')?;
        (!label.is_empty() && !namespace.is_empty() && !namespace.contains('.'))
            .then_some((namespace, label))
    }
}

/// A host label: `[<tag>-]<isvc>[-<component>]`; the plain name wins over a component
/// reading, and both over a tag reading, which is searched only when neither names a service.
fn find<'a>(
    snapshot: &Snapshot,
    namespace: &str,
    label: &'a str,
) -> Option<(Arc<ServiceEntry>, Option<Component>, Option<&'a str>)> {
    if let Some(found) = snapshot.label(namespace, label) {
        return Some((found.service.clone(), found.component, None));
    }
    label.match_indices('-').find_map(|(i, _)| {
        let (tag, rest) = (&label[..i], &label[i + 1..]);
        let found = snapshot.label(namespace, rest)?;
        found
            .service
            .route
            .tag_routing
            .then(|| (found.service.clone(), found.component, Some(tag)))
    })
}

/// The tagged revision, or the split's pick for `roll`.
fn pick(
    service: &ServiceEntry,
    targets: &[Target],
    tag: Option<&str>,
    roll: u32,
) -> Result<Arc<RevisionSettings>, ActivatorError> {
    let target = match tag {
        Some(tag) => targets
            .iter()
            .find(|t| t.tag.as_deref() == Some(tag))
            .ok_or_else(|| ActivatorError::UnknownTag {
                service: service.id.clone(),
                tag: tag.to_string(),
            })?,
        None => {
            split::pick(targets, |t| t.percent, roll).ok_or_else(|| ActivatorError::NoRevision {
                service: service.id.clone(),
            })?
        }
    };
    Ok(target.revision.clone())
}

fn strip_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Host names compare in lower case; most already are, and are not copied.
fn lower_case(text: &str) -> Cow<'_, str> {
    if text.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(text.to_ascii_lowercase())
    } else {
        Cow::Borrowed(text)
    }
}

/// `/serving/<ns>/<label>/<rest>?q` -> (ns, label, `/<rest>?q`).
fn prefix_route(path_and_query: &str) -> Option<(&str, Cow<'_, str>, String)> {
    let rest = path_and_query.strip_prefix(PATH_PREFIX)?;
    let (namespace, rest) = rest.split_once('/')?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (label, tail) = rest.split_at(end);
    if namespace.is_empty() || label.is_empty() {
        return None;
    }
    let tail = if tail.starts_with('/') {
        tail.to_string()
    } else {
        format!("/{tail}")
    };
    Some((namespace, lower_case(label), tail))
}
