//! Reading queue-proxies' `/stats`: a sample of a revision's pods each tick, concurrently,
//! each with a timeout. A pod that fails is skipped, never counted as idle.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serval_api::Stat;

const SCRAPE_TIMEOUT: Duration = Duration::from_secs(3);
const MAX_STAT_BYTES: usize = 64 * 1024;

/// A ready pod and where its queue-proxy serves `/stats`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodTarget {
    pub name: String,
    /// `http://<ip>:<admin-port>/stats`
    pub stats_url: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Scraper {
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl Scraper {
    pub(crate) fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(SCRAPE_TIMEOUT));
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    async fn scrape(&self, pod: &PodTarget) -> Option<Stat> {
        let attempt = async {
            let uri: http::Uri = pod.stats_url.parse().ok()?;
            let response = self.client.get(uri).await.ok()?;
            if !response.status().is_success() {
                return None;
            }
            let body = http_body_util::Limited::new(response.into_body(), MAX_STAT_BYTES);
            let bytes = body.collect().await.ok()?.to_bytes();
            serde_json::from_slice::<Stat>(&bytes).ok()
        };
        let stat = tokio::time::timeout(SCRAPE_TIMEOUT, attempt)
            .await
            .ok()
            .flatten();
        if stat.is_none() {
            tracing::debug!(pod = %pod.name, url = %pod.stats_url, "scrape failed; pod skipped this tick");
        }
        // An empty window from a pod that just started says nothing about load yet.
        stat.filter(|s| s.window_ms > 0)
    }

    /// Scrapes up to `n` pods, spread over the list and rotated by `round` so every pod is
    /// read over successive ticks, concurrently.
    pub(crate) async fn scrape_sample(
        &self,
        pods: &[PodTarget],
        n: usize,
        round: usize,
    ) -> Vec<Stat> {
        if pods.is_empty() || n == 0 {
            return Vec::new();
        }
        let n = n.min(pods.len());
        let step = pods.len() as f64 / n as f64;
        let chosen = (0..n).map(|i| &pods[(round + (i as f64 * step) as usize) % pods.len()]);
        futures_util::future::join_all(chosen.map(|pod| self.scrape(pod)))
            .await
            .into_iter()
            .flatten()
            .collect()
    }
}
