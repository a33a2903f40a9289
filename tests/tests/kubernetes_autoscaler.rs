//! `serval autoscaler` against a real kube-apiserver: it finds a revision Deployment by
//! its label, scrapes the ready pod's real queue-proxy, and scales the Deployment through
//! its `/scale` subresource — up under load, to zero when idle, back up on a poke — and
//! after a restart it keeps the replicas it finds while it has no stats.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serval_tests::apiserver::{revision_deployment, ApiServer, ServalRole};
use serval_tests::http_client::{get, http1, send};
use serval_tests::lease_port;
use serval_tests::revision_pod::{Ledger, RevisionPod};

const NAMESPACE: &str = "ml";
const REVISION: &str = "iris-predictor-1";

/// `serval autoscaler` on the test's API server, and where its HTTP API listens.
struct AutoscalerProcess {
    _role: ServalRole,
    url: String,
}

impl AutoscalerProcess {
    fn start(api: &ApiServer, config: &std::path::Path) -> Self {
        let port = lease_port();
        let url = format!("http://127.0.0.1:{port}");
        let role = api.serval([
            "autoscaler".to_string(),
            format!("--listen=127.0.0.1:{port}"),
            format!("--namespace={NAMESPACE}"),
            format!("--config={}", config.display()),
        ]);
        Self {
            _role: role.holding(port),
            url,
        }
    }
}

fn manifests(admin_port: u16) -> String {
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata:
  name: {NAMESPACE}
---
{deployment}---
{pod}"#,
        deployment = revision_deployment(
            NAMESPACE,
            REVISION,
            1,
            r#"{"minReplicas":0,"scaleTarget":2}"#
        ),
        pod = pod_manifest(admin_port)
    )
}

fn pod_manifest(admin_port: u16) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {REVISION}-a
  namespace: {NAMESPACE}
  labels:
    serving.serval.dev/revision: {REVISION}
spec:
  containers:
  - name: kserve-container
    image: serval
  - name: queue-proxy
    image: serval
    ports:
    - name: serval-admin
      containerPort: {admin_port}
"#
    )
}

/// No kubelet runs here: the test plays it, marking the pod ready at 127.0.0.1.
fn mark_ready(api: &ApiServer) {
    let out = api.kubectl(
        [
            "-n",
            NAMESPACE,
            "patch",
            "pod",
            &format!("{REVISION}-a"),
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"podIP":"127.0.0.1","conditions":[{"type":"Ready","status":"True"}]}}"#,
        ],
        "",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
}

fn replicas(api: &ApiServer) -> i64 {
    api.deployment_replicas(NAMESPACE, REVISION)
}

async fn wait_for(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the autoscaler's `/revisions` lists `key` (it found the Deployment).
async fn wait_until_tracked(autoscaler: &AutoscalerProcess, key: &str) {
    let client = http1();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = get(&client, &format!("{}/revisions", autoscaler.url)).await;
        if answer.is_ok_and(|a| a.body.contains(key)) {
            return;
        }
        assert!(Instant::now() < deadline, "autoscaler tracks {key}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scales_a_revision_deployment_up_to_zero_and_back_and_survives_a_restart() {
    let api = tokio::task::spawn_blocking(ApiServer::start).await.unwrap();
    let ledger = Arc::new(Ledger::default());
    let mut pod = RevisionPod::start(REVISION, ledger, &[]).await;
    let admin_port: u16 = pod
        .health_url
        .trim_start_matches("http://127.0.0.1:")
        .trim_end_matches("/healthz")
        .parse()
        .unwrap();
    api.apply(&manifests(admin_port));
    mark_ready(&api);

    let dir = std::env::temp_dir().join(format!("serval-k8s-autoscaler-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config-autoscaler.yaml");
    std::fs::write(
        &config,
        "stable-window: 6s\nscale-to-zero-grace-period: 1s\n",
    )
    .unwrap();
    let autoscaler = AutoscalerProcess::start(&api, &config);
    let client = http1();
    let revision_key = format!("{NAMESPACE}/{REVISION}");
    wait_until_tracked(&autoscaler, &revision_key).await;

    // Load: 8 requests in flight at the pod against a target of 2 x 70% per pod.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let url = format!("http://{}/infer?ms=200", pod.address);
    let load: Vec<_> = (0..8)
        .map(|_| {
            let (client, url, stop) = (client.clone(), url.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let answer = send(&client, "POST", &url, "{}").await.unwrap();
                    assert_eq!(answer.status, 200);
                }
            })
        })
        .collect();
    let mut peak = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while peak < 4 {
        assert!(
            Instant::now() < deadline,
            "scaled up under load (at {peak})"
        );
        peak = peak.max(replicas(&api));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let views = get(&client, &format!("{}/revisions", autoscaler.url))
        .await
        .unwrap()
        .json();
    let view = views
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["revision"] == revision_key.as_str())
        .unwrap()
        .clone();
    assert_eq!(view["winner"], "concurrency", "{view}");
    assert!(
        view["observed"]["concurrency"].as_f64().unwrap() > 2.0,
        "{view}"
    );
    let metrics = get(&client, &format!("{}/metrics", autoscaler.url))
        .await
        .unwrap();
    assert!(
        metrics.body.contains(&format!(
            "serval_autoscaler_desired_pods{{revision=\"{revision_key}\"}}"
        )),
        "{}",
        metrics.body
    );

    // Idle: down to zero once the shortened windows have passed (minReplicas 0).
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    wait_for(Duration::from_secs(60), "scaled to zero", || {
        replicas(&api) == 0
    })
    .await;

    // At zero the pod is gone; a poke (the activator's first held request) scales it up.
    let deleted = api.kubectl(
        [
            "-n",
            NAMESPACE,
            "delete",
            "pod",
            &format!("{REVISION}-a"),
            "--wait=false",
        ],
        "",
    );
    assert_eq!(deleted.code, 0, "{}", deleted.stderr);
    let poked = send(
        &client,
        "POST",
        &format!("{}/poke", autoscaler.url),
        &format!(r#"{{"revision":"{revision_key}"}}"#),
    )
    .await
    .unwrap();
    assert_eq!(poked.status, 202, "{}", poked.body);
    wait_for(Duration::from_secs(5), "scaled from zero on a poke", || {
        replicas(&api) >= 1
    })
    .await;

    // Restart with 3 replicas whose stats cannot be read: nothing is scaled down.
    drop(autoscaler);
    let scaled = api.kubectl(
        [
            "-n",
            NAMESPACE,
            "scale",
            "deployment",
            REVISION,
            "--replicas=3",
        ],
        "",
    );
    assert_eq!(scaled.code, 0, "{}", scaled.stderr);
    pod.kill_proxy();
    api.apply(&pod_manifest(admin_port));
    mark_ready(&api);
    let restarted_at = Instant::now();
    let restarted = AutoscalerProcess::start(&api, &config);
    wait_until_tracked(&restarted, &revision_key).await;
    // The autoscaler shows a decision made with no metric winning (no stats): keep the 3.
    let view = |url: String| async move {
        let views = get(&http1(), &format!("{url}/revisions"))
            .await
            .ok()?
            .json();
        views
            .as_array()?
            .iter()
            .find(|v| v["revision"] == format!("{NAMESPACE}/{REVISION}").as_str())
            .cloned()
    };
    let keeps_three = |view: &serde_json::Value| view["desired"] == 3 && view["winner"].is_null();
    serval_tests::eventually(
        Duration::from_secs(10),
        "a decision on no stats",
        || async {
            view(restarted.url.clone())
                .await
                .is_some_and(|v| keeps_three(&v))
        },
    )
    .await;
    // What would scale it down is time without stats: the stable window (6 s) and the
    // grace period (1 s) passing. No event marks that, so watch the decision and the
    // Deployment over that span from the restart, plus a few 1 s ticks, failing on the
    // first change.
    let span = Duration::from_secs(6 + 1 + 4);
    serval_tests::throughout(
        span.saturating_sub(restarted_at.elapsed()),
        "missing stats must not scale a revision down",
        || async {
            let view = view(restarted.url.clone()).await;
            replicas(&api) == 3 && view.is_some_and(|v| keeps_three(&v))
        },
    )
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}
