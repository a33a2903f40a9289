//! The activator in-process in front of real queue-proxy processes: what the activator
//! tests share.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use serval_activator::{
    Activator, Config, LocalEndpoints, PodEndpoint, RecordingAutoscaler, RouteTable,
};
use serval_tests::http_client::{http1, TestClient};
use serval_tests::revision_pod::{Ledger, RevisionPod};

pub const DOMAIN: &str = "example.com";

pub struct Gateway {
    pub activator: Arc<Activator>,
    pub url: String,
    pub routes: Arc<RouteTable>,
    pub endpoints: Arc<LocalEndpoints>,
    pub autoscaler: Arc<RecordingAutoscaler>,
    pub ledger: Arc<Ledger>,
    /// A pooled HTTP/1.1 client for talking to the activator.
    pub client: TestClient,
}

impl Gateway {
    /// Starts an activator on a free port with `configure`d settings.
    pub async fn start(configure: impl FnOnce(&mut Config)) -> Self {
        let listener = serval_tests::bind_loopback().await;
        let addr = listener.local_addr().expect("activator address");
        let mut config = Config::new(addr);
        configure(&mut config);
        let routes = Arc::new(RouteTable::new(DOMAIN));
        let endpoints = Arc::new(LocalEndpoints::new());
        let autoscaler = Arc::new(RecordingAutoscaler::default());
        let activator = Arc::new(
            Activator::start(
                config,
                routes.clone(),
                endpoints.clone(),
                autoscaler.clone(),
            )
            .expect("valid config"),
        );
        let serving = activator.clone();
        tokio::spawn(async move { serving.serve(listener, std::future::pending()).await });
        Self {
            activator,
            url: format!("http://{addr}"),
            routes,
            endpoints,
            autoscaler,
            ledger: Arc::new(Ledger::default()),
            client: http1(),
        }
    }

    /// Starts a pod (backend named `name` behind a queue-proxy) for this gateway's ledger.
    pub async fn pod(&self, name: &str, extra: &[&str]) -> RevisionPod {
        RevisionPod::start(name, self.ledger.clone(), extra).await
    }

    /// Lists `pods` as the revision's endpoints.
    pub fn set_pods(&self, revision: &str, pods: &[&RevisionPod]) {
        let endpoints = pods.iter().map(|pod| endpoint(pod)).collect();
        self.endpoints.set_pods(revision, endpoints);
    }

    /// Lists the pods and waits until the activator's probe finds them all healthy.
    pub async fn add_ready_pods(&self, revision: &str, pods: &[&RevisionPod]) {
        self.set_pods(revision, pods);
        let want = pods.len();
        wait_for(Duration::from_secs(20), || async {
            self.activator.healthy_pods(revision) == want
        })
        .await;
    }
}

pub fn endpoint(pod: &RevisionPod) -> PodEndpoint {
    let name = format!("{}-{}", pod.backend.name, pod.address.port());
    let health = pod.health_url.parse().expect("health url");
    PodEndpoint::new(name, pod.address, Some(health))
}

pub async fn wait_for<F, Fut>(limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("condition not met within {limit:?}");
}
