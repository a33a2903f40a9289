//! A revision's pod for the activator tests: a backend that answers with its own name (so
//! a test can tell revisions and pods apart) and records every request id it served in a
//! ledger shared by all pods (so a test can prove nothing was served twice), behind a real
//! `serval queue-proxy` process that the test may kill.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::Router;
use http_body_util::Full;

use crate::http_client::{Answer, TestClient};
use crate::{bind_loopback, lease_port, ServalProcess};

/// Every request id served, over all pods of a test.
#[derive(Debug, Default)]
pub struct Ledger {
    ids: Mutex<HashMap<String, u32>>,
}

impl Ledger {
    fn record(&self, id: &str) {
        *self.ids.lock().unwrap().entry(id.to_string()).or_default() += 1;
    }

    /// Request ids served more than once.
    pub fn duplicates(&self) -> Vec<String> {
        let ids = self.ids.lock().unwrap();
        ids.iter()
            .filter(|(_, n)| **n > 1)
            .map(|(id, _)| id.clone())
            .collect()
    }

    pub fn served(&self) -> usize {
        self.ids.lock().unwrap().values().map(|n| *n as usize).sum()
    }
}

/// What one backend saw.
#[derive(Debug)]
pub struct NamedBackend {
    pub name: String,
    served: AtomicUsize,
    ledger: Arc<Ledger>,
    last_headers: Mutex<HeaderMap>,
}

impl NamedBackend {
    pub fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }

    pub fn last_headers(&self) -> HeaderMap {
        self.last_headers.lock().unwrap().clone()
    }
}

#[derive(serde::Deserialize)]
struct Delay {
    ms: Option<u64>,
}

/// Answers any path with `<name>:<request body>`, after `?ms=` milliseconds if given.
async fn answer(
    State(backend): State<Arc<NamedBackend>>,
    Query(delay): Query<Delay>,
    headers: HeaderMap,
    body: Bytes,
) -> String {
    if let Some(ms) = delay.ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none")
        .to_string();
    backend.ledger.record(&id);
    backend.served.fetch_add(1, Ordering::SeqCst);
    *backend.last_headers.lock().unwrap() = headers;
    format!("{}:{}", backend.name, String::from_utf8_lossy(&body))
}

/// Serves a named backend on a free port (HTTP/1.1 and HTTP/2 cleartext).
pub async fn start_backend(name: &str, ledger: Arc<Ledger>) -> (u16, Arc<NamedBackend>) {
    let backend = Arc::new(NamedBackend {
        name: name.to_string(),
        served: AtomicUsize::new(0),
        ledger,
        last_headers: Mutex::new(HeaderMap::new()),
    });
    let listener = bind_loopback().await;
    let port = listener.local_addr().expect("backend address").port();
    let app = Router::new().fallback(answer).with_state(backend.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (port, backend)
}

/// A backend behind a real queue-proxy.
#[derive(Debug)]
pub struct RevisionPod {
    pub backend: Arc<NamedBackend>,
    /// The queue-proxy's user port.
    pub address: SocketAddr,
    /// The queue-proxy's readiness URL.
    pub health_url: String,
    proxy: Option<ServalProcess>,
}

impl RevisionPod {
    /// Starts the backend and its queue-proxy (with `extra` flags); does not wait for them.
    pub async fn start(name: &str, ledger: Arc<Ledger>, extra: &[&str]) -> Self {
        let (upstream, backend) = start_backend(name, ledger).await;
        let (port, admin_port) = (lease_port(), lease_port());
        let mut args = vec![
            "queue-proxy".to_string(),
            format!("--listen=127.0.0.1:{port}"),
            format!("--admin-listen=127.0.0.1:{admin_port}"),
            format!("--upstream=127.0.0.1:{upstream}"),
            "--gpu=false".to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        Self {
            backend,
            address: port.addr(),
            health_url: format!("http://127.0.0.1:{admin_port}/healthz"),
            proxy: Some(ServalProcess::start(args).holding(port).holding(admin_port)),
        }
    }

    /// Kills the queue-proxy at once (SIGKILL), as a crashed pod.
    pub fn kill_proxy(&mut self) {
        drop(self.proxy.take());
    }
}

/// Sends a request with extra headers.
pub async fn send_with(
    client: &TestClient,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<Answer, String> {
    let mut request = http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| e.to_string())?;
    let response = client
        .request(request)
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}
