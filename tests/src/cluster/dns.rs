//! Cluster DNS without CoreDNS (no registry here ships its image): Debian's `dnsmasq` answers
//! on the node address, from a hosts file this module keeps equal to the API server's
//! Services. Pods get it as their nameserver through the kubelet's `clusterDNS`, so
//! `<service>.<namespace>.svc.cluster.local` resolves in them as on any cluster; names outside
//! `cluster.local` get no answer (nothing is forwarded off the machine).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

use super::{CLUSTER_DOMAIN, NODE_IP};
use crate::apiserver::http_request;

/// How often the hosts file is brought up to date with the Services.
const REFRESH: Duration = Duration::from_millis(500);

/// The dnsmasq command line: the hosts directory only, on the node address only.
pub(super) fn dnsmasq_args(hosts_dir: &Path) -> Vec<String> {
    vec![
        "--keep-in-foreground".into(),
        "--conf-file=/dev/null".into(),
        "--no-resolv".into(),
        "--no-hosts".into(),
        "--bind-interfaces".into(),
        format!("--listen-address={NODE_IP}"),
        "--port=53".into(),
        "--user=root".into(),
        "--pid-file=".into(),
        format!("--local=/{CLUSTER_DOMAIN}/"),
        format!("--hostsdir={}", hosts_dir.display()),
        "--log-facility=-".into(),
    ]
}

/// The thread that keeps `hosts_dir/services` equal to the Services of the API server at
/// `api_url` (plain HTTP, through `kubectl proxy`). Stops when dropped.
#[derive(Debug)]
pub(super) struct ServiceRecords {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ServiceRecords {
    pub(super) fn start(api_url: String, hosts_dir: PathBuf) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut written = String::new();
            while !flag.load(Ordering::Relaxed) {
                if let Ok((200, body)) = http_request(&api_url, "GET", "/api/v1/services", "") {
                    if let Ok(list) = serde_json::from_str::<Value>(&body) {
                        let hosts = hosts_file(&list);
                        if hosts != written {
                            write_atomically(&hosts_dir, &hosts);
                            written = hosts;
                        }
                    }
                }
                std::thread::sleep(REFRESH);
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for ServiceRecords {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `ClusterIP name` lines for every Service with a cluster IP; an ExternalName Service that
/// points at another Service in the cluster gets that Service's address (dnsmasq's hosts
/// files have no CNAMEs).
fn hosts_file(list: &Value) -> String {
    let items = list["items"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let fqdn = |item: &Value| {
        format!(
            "{}.{}.svc.{CLUSTER_DOMAIN}",
            item["metadata"]["name"].as_str().unwrap_or_default(),
            item["metadata"]["namespace"].as_str().unwrap_or_default()
        )
    };
    let mut addresses: BTreeMap<String, String> = items
        .iter()
        .filter_map(|item| {
            let ip = item["spec"]["clusterIP"].as_str()?;
            (!ip.is_empty() && ip != "None").then(|| (fqdn(item), ip.to_string()))
        })
        .collect();
    for item in items {
        let Some(target) = item["spec"]["externalName"].as_str() else {
            continue;
        };
        let target = target.trim_end_matches('.');
        let target = if target.ends_with(".svc") {
            format!("{target}.{CLUSTER_DOMAIN}")
        } else {
            target.to_string()
        };
        if let Some(ip) = addresses.get(&target).cloned() {
            addresses.insert(fqdn(item), ip);
        }
    }
    addresses
        .iter()
        .map(|(name, ip)| format!("{ip} {name}\n"))
        .collect()
}

/// Replaces the hosts file in one rename, so dnsmasq never reads half of it.
fn write_atomically(hosts_dir: &Path, hosts: &str) {
    let staging = hosts_dir.with_extension("staging");
    if std::fs::write(&staging, hosts).is_ok() {
        let _ = std::fs::rename(&staging, hosts_dir.join("services"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_and_external_names_become_host_lines() {
        let list = serde_json::json!({"items": [
            {"metadata": {"name": "serval-activator", "namespace": "serval-system"},
             "spec": {"clusterIP": "10.96.0.20"}},
            {"metadata": {"name": "headless", "namespace": "default"},
             "spec": {"clusterIP": "None"}},
            {"metadata": {"name": "iris", "namespace": "default"},
             "spec": {"type": "ExternalName",
                      "externalName": "serval-activator.serval-system.svc.cluster.local"}},
            {"metadata": {"name": "outside", "namespace": "default"},
             "spec": {"type": "ExternalName", "externalName": "example.org"}},
        ]});
        assert_eq!(
            hosts_file(&list),
            "10.96.0.20 iris.default.svc.cluster.local\n\
             10.96.0.20 serval-activator.serval-system.svc.cluster.local\n"
        );
    }
}
