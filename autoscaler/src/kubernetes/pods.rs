//! A revision's pods as scrape targets: only pods that are ready, have an IP and are not
//! terminating, reached on the queue-proxy's admin port.

use k8s_openapi::api::core::v1::Pod;
use serval_api::revision::{ADMIN_PORT_NAME, DEFAULT_ADMIN_PORT, REVISION_LABEL};

use super::RevisionKey;
use crate::live::PodTarget;

/// The revision a pod belongs to, from its label.
pub(crate) fn revision_of(pod: &Pod) -> Option<RevisionKey> {
    let namespace = pod.metadata.namespace.clone()?;
    let name = pod.metadata.labels.as_ref()?.get(REVISION_LABEL)?.clone();
    Some(RevisionKey { namespace, name })
}

/// Where to read the pod's `/stats`, when it is ready to be counted.
pub(crate) fn scrape_target(pod: &Pod) -> Option<PodTarget> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let status = pod.status.as_ref()?;
    let ready = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    let ip = status.pod_ip.as_deref().filter(|ip| !ip.is_empty())?;
    if !ready {
        return None;
    }
    let port = pod
        .spec
        .iter()
        .flat_map(|s| &s.containers)
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| p.name.as_deref() == Some(ADMIN_PORT_NAME))
        .and_then(|p| u16::try_from(p.container_port).ok())
        .unwrap_or(DEFAULT_ADMIN_PORT);
    // IPv6 pod addresses need brackets in a URL.
    let host = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_string()
    };
    Some(PodTarget {
        name: pod.metadata.name.clone().unwrap_or_default(),
        stats_url: format!("http://{host}:{port}/stats"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ready: &str, ip: Option<&str>, admin_port: Option<i32>) -> Pod {
        let ports = admin_port
            .map(|p| serde_json::json!([{ "name": ADMIN_PORT_NAME, "containerPort": p }]));
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "iris-predictor-1-abc",
                "namespace": "ml",
                "labels": { REVISION_LABEL: "iris-predictor-1" }
            },
            "spec": { "containers": [
                { "name": "kserve-container", "image": "serval" },
                { "name": "queue-proxy", "image": "serval", "ports": ports }
            ]},
            "status": {
                "podIP": ip,
                "conditions": [{ "type": "Ready", "status": ready }]
            }
        }))
        .unwrap()
    }

    #[test]
    fn ready_pods_are_scraped_on_their_admin_port() {
        let target = scrape_target(&pod("True", Some("10.1.2.3"), Some(9191))).unwrap();
        assert_eq!(target.stats_url, "http://10.1.2.3:9191/stats");
        assert_eq!(target.name, "iris-predictor-1-abc");
        let default_port = scrape_target(&pod("True", Some("fd00::7"), None)).unwrap();
        assert_eq!(default_port.stats_url, "http://[fd00::7]:9091/stats");
        let key = revision_of(&pod("True", None, None)).unwrap();
        assert_eq!(key.to_string(), "ml/iris-predictor-1");
    }

    #[test]
    fn unready_addressless_and_terminating_pods_are_not() {
        assert!(scrape_target(&pod("False", Some("10.1.2.3"), None)).is_none());
        assert!(scrape_target(&pod("True", None, None)).is_none());
        let mut leaving = pod("True", Some("10.1.2.3"), None);
        leaving.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                "2026-01-01T00:00:00Z".parse().unwrap(),
            ));
        assert!(scrape_target(&leaving).is_none());
    }
}
