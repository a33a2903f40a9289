//! Pods from EndpointSlices: each revision's private Service (labelled with the revision)
//! has slices listing its pods' addresses, ready or not; the activator probes them itself,
//! so a pod takes traffic as soon as its queue-proxy answers. The slice fields read here
//! are the same in `discovery.k8s.io/v1` and `v1beta1`, so either version works.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use serde::Deserialize;
use serval_api::revision::{ADMIN_PORT_NAME, DEFAULT_ADMIN_PORT, REVISION_LABEL};

use crate::endpoints::PodEndpoint;

/// The private Service's port that reaches the queue-proxy's user port.
pub const HTTP_PORT_NAME: &str = "http";
/// The queue-proxy's user port when the slice does not name one.
const DEFAULT_HTTP_PORT: u16 = 8012;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct SliceData {
    #[serde(default)]
    endpoints: Vec<SliceEndpoint>,
    #[serde(default)]
    ports: Option<Vec<SlicePort>>,
}

#[derive(Debug, Deserialize)]
struct SliceEndpoint {
    #[serde(default)]
    addresses: Vec<String>,
    #[serde(default)]
    conditions: Option<Conditions>,
    #[serde(default, rename = "targetRef")]
    target_ref: Option<TargetRef>,
}

#[derive(Debug, Deserialize)]
struct Conditions {
    #[serde(default)]
    terminating: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct TargetRef {
    #[serde(default)]
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SlicePort {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    port: Option<i32>,
}

/// The revision key (`<namespace>/<revision>`) of a slice, from its label.
pub(crate) fn revision_of(
    namespace: Option<&str>,
    labels: &BTreeMap<String, String>,
) -> Option<String> {
    Some(format!("{}/{}", namespace?, labels.get(REVISION_LABEL)?))
}

impl SliceData {
    fn port(&self, name: &str, default: u16) -> u16 {
        self.ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(default)
    }

    /// The pods listed, terminating ones left out.
    pub(crate) fn pods(&self) -> Vec<PodEndpoint> {
        let http = self.port(HTTP_PORT_NAME, DEFAULT_HTTP_PORT);
        let admin = self.port(ADMIN_PORT_NAME, DEFAULT_ADMIN_PORT);
        self.endpoints
            .iter()
            .filter(|e| {
                !e.conditions
                    .as_ref()
                    .and_then(|c| c.terminating)
                    .unwrap_or(false)
            })
            .filter_map(|e| {
                let ip: IpAddr = e.addresses.first()?.parse().ok()?;
                let address = SocketAddr::new(ip, http);
                let health = SocketAddr::new(ip, admin);
                let name = e
                    .target_ref
                    .as_ref()
                    .and_then(|t| t.name.clone())
                    .unwrap_or_else(|| ip.to_string());
                let health_url = format!("http://{health}/healthz").parse().ok();
                Some(PodEndpoint::new(name, address, health_url))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_pods_on_the_named_ports_and_skips_terminating_ones() {
        let slice: SliceData = serde_json::from_value(serde_json::json!({
            "ports": [{ "name": "http", "port": 8012 }, { "name": "serval-admin", "port": 9091 }],
            "endpoints": [
                { "addresses": ["10.0.0.7"], "conditions": { "ready": false }, "targetRef": { "name": "iris-a" } },
                { "addresses": ["fd00::9"], "conditions": { "ready": true } },
                { "addresses": ["10.0.0.8"], "conditions": { "terminating": true } }
            ]
        }))
        .unwrap();
        let pods = slice.pods();
        assert_eq!(pods.len(), 2);
        assert_eq!(pods[0].name, "iris-a");
        assert_eq!(pods[0].address, "10.0.0.7:8012".parse().unwrap());
        assert_eq!(
            pods[0].health_url.as_ref().unwrap().to_string(),
            "http://10.0.0.7:9091/healthz"
        );
        assert_eq!(pods[1].address, "[fd00::9]:8012".parse().unwrap());
        let labels = BTreeMap::from([(REVISION_LABEL.to_string(), "iris-predictor-1".to_string())]);
        assert_eq!(
            revision_of(Some("ml"), &labels).unwrap(),
            "ml/iris-predictor-1"
        );
    }
}
