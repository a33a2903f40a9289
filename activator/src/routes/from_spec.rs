//! Route settings from what users write: a revision's throttling from its component spec,
//! a service's rate limit and tag routing from its annotations. Shared by `serval dev` and
//! the Kubernetes route source.

use std::collections::BTreeMap;
use std::time::Duration;

use serval_api::annotations::AutoscalingAnnotations;
use serval_api::component::ComponentExtensionSpec;

use super::{RateLimit, RevisionSettings, ServiceRoute};

/// KServe's default request timeout.
const DEFAULT_TIMEOUT_SECONDS: i64 = 300;

/// How the activator treats requests for a revision of `component`.
pub fn revision_settings(name: &str, component: &ComponentExtensionSpec) -> RevisionSettings {
    RevisionSettings {
        name: name.to_string(),
        container_concurrency: component.container_concurrency.unwrap_or(0).max(0) as usize,
        timeout: Duration::from_secs(
            component
                .timeout_seconds
                .unwrap_or(DEFAULT_TIMEOUT_SECONDS)
                .max(1) as u64,
        ),
        queue_bound: None,
    }
}

/// The service's rate limit and tag routing, from its annotations.
pub fn apply_annotations(route: &mut ServiceRoute, annotations: &BTreeMap<String, String>) {
    let (parsed, _) = AutoscalingAnnotations::parse(annotations, "metadata.annotations");
    route.rate_limit = parsed
        .rate_limit
        .map(|rate| RateLimit::new(rate, parsed.rate_limit_burst));
    route.tag_routing = parsed.enable_tag_routing.unwrap_or(false);
}
