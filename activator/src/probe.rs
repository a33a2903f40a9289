//! The activator's own view of pod health: each pod a revision lists is probed directly
//! (its queue-proxy's `/healthz`) every 200 ms until it answers, so held requests go out the
//! moment it can serve rather than when an external readiness signal arrives; a healthy pod
//! is probed again less often, and a pod that failed a request at once.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::watch;

use crate::endpoints::{EndpointsSnapshot, PodEndpoint};
use crate::throttler::{PodHandle, RevisionThrottle, Throttler};

const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

type ProbeClient = Client<HttpConnector, Empty<Bytes>>;

/// Probe periods.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Periods {
    pub(crate) unhealthy: Duration,
    pub(crate) healthy: Duration,
}

async fn probe_once(client: &ProbeClient, pod: &PodEndpoint) -> bool {
    let attempt = async {
        match &pod.health_url {
            None => tokio::net::TcpStream::connect(pod.address).await.is_ok(),
            Some(url) => match client.get(url.clone()).await {
                Ok(response) => {
                    let ok = response.status().is_success();
                    let _ = response.into_body().collect().await;
                    ok
                }
                Err(_) => false,
            },
        }
    };
    tokio::time::timeout(PROBE_TIMEOUT, attempt)
        .await
        .unwrap_or(false)
}

/// Probes one pod until it leaves the revision's endpoints.
async fn watch_pod(
    revision: Arc<RevisionThrottle>,
    pod: PodHandle,
    client: ProbeClient,
    periods: Periods,
) {
    while let Some(healthy) = revision.pod_health(pod.id) {
        if healthy {
            tokio::select! {
                // A failed request: probe at once.
                _ = pod.wake.notified() => continue,
                _ = tokio::time::sleep(periods.healthy) => {}
            }
            if !probe_once(&client, &pod.endpoint).await {
                revision.set_healthy(pod.id, false);
            }
        } else if probe_once(&client, &pod.endpoint).await {
            revision.set_healthy(pod.id, true);
        } else {
            tokio::time::sleep(periods.unhealthy).await;
        }
    }
}

/// Keeps every revision's pod list current and starts a prober per new pod.
pub(crate) async fn sync_endpoints(
    throttler: Arc<Throttler>,
    mut endpoints: watch::Receiver<EndpointsSnapshot>,
    periods: Periods,
) {
    let client: ProbeClient = Client::builder(TokioExecutor::new()).build_http();
    // Owned here, so stopping the activator stops every prober.
    let mut probes = tokio::task::JoinSet::new();
    let mut known: EndpointsSnapshot = Arc::default();
    loop {
        let snapshot = endpoints.borrow_and_update().clone();
        for (name, pods) in snapshot.iter() {
            let revision = throttler.revision(name);
            for pod in revision.set_pods(pods) {
                tracing::debug!(revision = %name, pod = %pod.endpoint.name, "probing new pod");
                probes.spawn(watch_pod(revision.clone(), pod, client.clone(), periods));
            }
        }
        for gone in known.keys().filter(|name| !snapshot.contains_key(*name)) {
            if let Some(revision) = throttler.get(gone) {
                revision.set_pods(&[]);
            }
        }
        known = snapshot;
        loop {
            tokio::select! {
                changed = endpoints.changed() => match changed {
                    Ok(()) => break,
                    // The source went away: keep the pods as they are.
                    Err(_) => {
                        while probes.join_next().await.is_some() {}
                        return;
                    }
                },
                Some(_) = probes.join_next() => {}
            }
        }
    }
}
