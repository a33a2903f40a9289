//! Readiness of the runtime: probed every 50 ms until it first answers, so a new replica
//! takes traffic the moment it can, then at the normal period.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

const STARTUP_PERIOD: Duration = Duration::from_millis(50);
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// How to ask the runtime whether it is ready.
#[derive(Clone, Debug)]
pub(crate) enum Probe {
    Tcp(SocketAddr),
    Http(http::Uri),
}

impl Probe {
    pub(crate) fn new(upstream: SocketAddr, path: Option<&str>) -> Result<Self, String> {
        match path {
            None => Ok(Self::Tcp(upstream)),
            Some(path) => {
                let path = if path.starts_with('/') {
                    path.to_string()
                } else {
                    format!("/{path}")
                };
                format!("http://{upstream}{path}")
                    .parse()
                    .map(Self::Http)
                    .map_err(|e| format!("probe path {path:?}: {e}"))
            }
        }
    }
}

async fn probe_once(probe: &Probe, client: &Client<HttpConnector, Empty<bytes::Bytes>>) -> bool {
    let attempt = async {
        match probe {
            Probe::Tcp(addr) => tokio::net::TcpStream::connect(addr).await.is_ok(),
            Probe::Http(uri) => match client.get(uri.clone()).await {
                Ok(response) => {
                    let ok = response.status().is_success() || response.status().is_redirection();
                    // Drain so the connection goes back to the pool.
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

/// Probes forever, keeping `ready` current.
pub(crate) async fn run(probe: Probe, period: Duration, ready: Arc<AtomicBool>) {
    let client = Client::builder(TokioExecutor::new()).build_http();
    let mut ever_ready = false;
    loop {
        let ok = probe_once(&probe, &client).await;
        if ok != ready.swap(ok, Ordering::AcqRel) {
            tracing::info!(ready = ok, "runtime readiness changed");
        }
        ever_ready |= ok;
        tokio::time::sleep(if ever_ready { period } else { STARTUP_PERIOD }).await;
    }
}
