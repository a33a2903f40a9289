//! `serval dev` as a newcomer runs it: the real binary on the examples, requests through the
//! activator, scale to zero and back, a burst at zero, bad manifests, and a clean Ctrl-C.

use std::process::Command;
use std::time::{Duration, Instant};

use serval_tests::dev::Dev;
use serval_tests::http_client::{get, http1, http2, send};
use serval_tests::otlp::{OtlpReceiver, ReceivedSpan};
use serval_tests::repo_root;

const V2_BODY: &str = r#"{"inputs":[{"name":"input-0","shape":[2,4],"datatype":"FP64","data":[6.8,2.8,4.8,1.4,5.1,3.5,1.4,0.2]}]}"#;
const SHORT_WINDOWS: &str = "stable-window: 6s\nscale-to-zero-grace-period: 1s\n";

async fn wait_until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The listening sockets in `dir` that have a connection: the kernel names an accepted
/// connection by its listener's path.
fn connected_unix_sockets(dir: &std::path::Path) -> std::collections::BTreeSet<String> {
    const CONNECTED: &str = "03";
    let prefix = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/net/unix")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.len() == 8 && fields[5] == CONNECTED && fields[7].starts_with(&prefix))
                .then(|| fields[7].to_string())
        })
        .collect()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_like_the_runtime_scales_to_zero_and_back_and_stops_cleanly() {
    let dev = Dev::start(SHORT_WINDOWS, &["examples/xgboost-iris.yaml"]);
    let client = http1();
    let infer = dev.url("/serving/default/xgboost-iris/v2/models/xgboost-iris/infer");
    let mut first = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    while first.is_none() {
        assert!(
            Instant::now() < deadline,
            "no answer from serval dev: {}",
            dev.stderr()
        );
        match send(&client, "POST", &infer, V2_BODY).await {
            Ok(answer) if answer.status == 200 => first = Some(answer),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let through_activator = first.unwrap().json();
    // The activator reached the replica's queue-proxy, and the queue-proxy the model
    // server, over their Unix sockets, not loopback TCP: two listeners with connections.
    let sockets = std::env::temp_dir().join(format!("serval-dev-{}.sockets", dev.child.id()));
    let connected = connected_unix_sockets(&sockets);
    assert_eq!(
        connected.len(),
        2,
        "connected sockets in {}: {connected:?}",
        sockets.display()
    );

    // The same model served directly by `serval runtime` answers the same.
    let direct = serval_tests::runtime::Runtime::start(
        "xgboost-iris",
        &repo_root().join("examples/models/iris-xgboost"),
        &[],
    )
    .await;
    let direct_answer = send(
        &client,
        "POST",
        &format!("{}/v2/models/xgboost-iris/infer", direct.url),
        V2_BODY,
    )
    .await
    .unwrap();
    assert_eq!(
        through_activator["outputs"],
        direct_answer.json()["outputs"]
    );

    // V1 by Host, as on Kubernetes.
    let v1 = http::Request::post(dev.url("/v1/models/xgboost-iris:predict"))
        .header("host", "xgboost-iris.default.example.com")
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            br#"{"instances": [[6.8, 2.8, 4.8, 1.4]]}"#,
        )))
        .unwrap();
    let response = client.request(v1).await.unwrap();
    assert_eq!(response.status(), 200);

    // Idle past the shortened windows: zero replicas, and a request is served again.
    wait_until(Duration::from_secs(40), "scaled to zero", || {
        dev.saw("ready 0/0 (desired 0)")
    })
    .await;
    wait_until(Duration::from_secs(10), "replica processes gone", || {
        dev.children().is_empty()
    })
    .await;
    let cold = send(&client, "POST", &infer, V2_BODY).await.unwrap();
    assert_eq!(cold.status, 200, "{}", cold.body);
    assert_eq!(cold.json()["outputs"], through_activator["outputs"]);

    let unknown = get(&client, &dev.url("/serving/default/nope/v1/models/nope"))
        .await
        .unwrap();
    assert_eq!(unknown.status, 404);

    let (code, children) = dev.interrupt_and_wait();
    assert_eq!(code, Some(0), "Ctrl-C exits cleanly");
    assert!(!sockets.exists(), "{} left behind", sockets.display());
    assert!(!children.is_empty(), "a replica was running at Ctrl-C");
    for pid in children {
        assert!(!alive(pid), "replica process {pid} left behind");
    }
}

/// What `serval runtime` serving the example model on its own answers to [`V2_BODY`].
async fn direct_outputs() -> serde_json::Value {
    let direct = serval_tests::runtime::Runtime::start(
        "xgboost-iris",
        &repo_root().join("examples/models/iris-xgboost"),
        &[],
    )
    .await;
    let answer = send(
        &http1(),
        "POST",
        &format!("{}/v2/models/xgboost-iris/infer", direct.url),
        V2_BODY,
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.json()["outputs"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_requests_at_zero_are_all_served() {
    // Replicas stay after the burst, so each one's count can still be read.
    let config = format!(
        "{SHORT_WINDOWS}allow-zero-initial-scale: true\ninitial-scale: 0\nscale-down-delay: 60s\n"
    );
    let dev = Dev::start(&config, &["examples/xgboost-iris.yaml"]);
    let want = direct_outputs().await;
    wait_until(
        Duration::from_secs(60),
        "the service listed at zero",
        || dev.saw("ready 0/0"),
    )
    .await;
    assert!(dev.children().is_empty(), "no replica before the burst");
    let client = http2();
    let infer = dev.url("/serving/default/xgboost-iris/v2/models/xgboost-iris/infer");
    let calls: Vec<_> = (0..2000)
        .map(|_| {
            let (client, infer) = (client.clone(), infer.clone());
            tokio::spawn(async move { send(&client, "POST", &infer, V2_BODY).await })
        })
        .collect();
    for call in calls {
        let answer = call.await.unwrap().expect("an answer for every request");
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.json()["outputs"], want, "the model's own answer");
    }
    // The replicas' queue-proxies saw each request once: none was answered by anything
    // but a replica, and none was sent twice.
    // One reading of every replica decides: a second one could miss a replica that left.
    let replicas = "default-xgboost-iris-";
    let deadline = Instant::now() + Duration::from_secs(10);
    let counted = loop {
        match dev.requests_counted(replicas).await {
            Some(n) if n >= 2000 => break n,
            other => {
                assert!(
                    Instant::now() < deadline,
                    "the replicas to count 2000 requests within 10s: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(counted, 2000, "requests counted by the replicas");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_manifest_is_refused_by_field_and_the_rest_served() {
    let dir = std::env::temp_dir().join(format!("serval-dev-invalid-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata: {name: bad}\nspec:\n  predictor:\n    minReplicas: -3\n    xgboost: {storageUri: ./m}\n",
    )
    .unwrap();
    let dev = Dev::start(
        SHORT_WINDOWS,
        &["examples/xgboost-iris.yaml", bad.to_str().unwrap()],
    );
    let client = http1();
    let infer = dev.url("/serving/default/xgboost-iris/v2/models/xgboost-iris/infer");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if send(&client, "POST", &infer, V2_BODY)
            .await
            .is_ok_and(|a| a.status == 200)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "valid service not served: {}",
            dev.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        dev.stderr().contains("spec.predictor.minReplicas"),
        "{}",
        dev.stderr()
    );
    let bad_service = get(&client, &dev.url("/serving/default/bad/v1/models/bad"))
        .await
        .unwrap();
    assert_eq!(bad_service.status, 404);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editing_a_manifest_rolls_out_a_new_revision_without_failed_requests() {
    let dir = std::env::temp_dir().join(format!("serval-dev-rollout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = repo_root().join("examples/models/iris-xgboost");
    let manifest = dir.join("iris.yaml");
    let write = |concurrency: u32| {
        let text = format!(
            "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata: {{name: iris}}\nspec:\n  predictor:\n    containerConcurrency: {concurrency}\n    model:\n      modelFormat: {{name: xgboost}}\n      protocolVersion: v2\n      storageUri: {}\n",
            model.display()
        );
        std::fs::write(&manifest, text).unwrap();
    };
    write(0);
    let dev = Dev::start(SHORT_WINDOWS, &[manifest.to_str().unwrap()]);
    let client = http1();
    let infer = dev.url("/serving/default/iris/v2/models/iris/infer");
    wait_until(Duration::from_secs(60), "first revision ready", || {
        dev.saw_all(&["iris-predictor-1", "ready 1/1"])
    })
    .await;

    // Requests keep flowing while the file changes and the new revision takes over.
    let want = direct_outputs().await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (client, infer, stop, want) = (client.clone(), infer.clone(), stop.clone(), want);
        tokio::spawn(async move {
            let mut failed = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                match send(&client, "POST", &infer, V2_BODY).await {
                    Ok(a) if a.status == 200 && a.json()["outputs"] == want => {}
                    Ok(a) => failed.push(format!("{} {}", a.status, a.body)),
                    Err(e) => failed.push(e),
                }
                // Pacing only: the load need not be heavy.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            failed
        })
    };
    // The old revision's replica serves the load before the file changes...
    serval_tests::eventually(
        Duration::from_secs(20),
        "iris-predictor-1 serving the load",
        || async { dev.requests_counted("default-iris-predictor-1-").await >= Some(5) },
    )
    .await;
    write(4);
    wait_until(Duration::from_secs(60), "second revision serving", || {
        dev.saw_all(&["iris-predictor-2", "ready 1/1"])
    })
    .await;
    // ...and the new one after it takes over.
    serval_tests::eventually(
        Duration::from_secs(30),
        "iris-predictor-2 serving the load",
        || async { dev.requests_counted("default-iris-predictor-2-").await >= Some(20) },
    )
    .await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let failed = load.await.unwrap();
    assert!(
        failed.is_empty(),
        "{} failed during the rollout: {failed:?}",
        failed.len()
    );
    assert!(
        dev.stderr()
            .contains("rolling out default/iris-predictor-2"),
        "{}",
        dev.stderr()
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_exit_when_serval_dev_is_killed_outright() {
    let dev = Dev::start(SHORT_WINDOWS, &["examples/xgboost-iris.yaml"]);
    wait_until(Duration::from_secs(60), "a ready replica", || {
        dev.saw_all(&["xgboost-iris", "ready 1/1"])
    })
    .await;
    let children = dev.children();
    assert_eq!(children.len(), 2, "queue-proxy and runtime: {children:?}");
    // SIGKILL: no chance to drain; the replicas notice their supervisor is gone.
    Command::new("kill")
        .args(["-KILL", &dev.child.id().to_string()])
        .status()
        .unwrap();
    wait_until(Duration::from_secs(10), "orphaned replicas to exit", || {
        children.iter().all(|pid| !alive(*pid))
    })
    .await;
    // A process killed outright cannot remove its replicas' socket directory; the next
    // `serval dev` does.
    let sockets = std::env::temp_dir().join(format!("serval-dev-{}.sockets", dev.child.id()));
    assert!(sockets.exists(), "{} after SIGKILL", sockets.display());
    let next = Dev::start(SHORT_WINDOWS, &["examples/xgboost-iris.yaml"]);
    wait_until(Duration::from_secs(60), "the next serval dev up", || {
        next.saw("xgboost-iris")
    })
    .await;
    assert!(!sockets.exists(), "{} left behind", sockets.display());
    let (code, _) = next.interrupt_and_wait();
    assert_eq!(code, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_is_one_trace_across_activator_queue_proxy_and_runtime() {
    let collector = OtlpReceiver::start().await;
    let endpoint = collector.endpoint();
    let config = format!("{SHORT_WINDOWS}allow-zero-initial-scale: true\ninitial-scale: 0\n");
    let dev = Dev::start_with_env(
        &config,
        &["examples/xgboost-iris.yaml"],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    wait_until(Duration::from_secs(60), "serval dev up", || {
        dev.saw("xgboost-iris")
    })
    .await;

    // The caller's own trace: every hop must continue it.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let request =
        http::Request::post(dev.url("/serving/default/xgboost-iris/v2/models/xgboost-iris/infer"))
            .header("content-type", "application/json")
            .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
            .body(http_body_util::Full::new(bytes::Bytes::from_static(
                V2_BODY.as_bytes(),
            )))
            .unwrap();
    let response = http1().request(request).await.unwrap();
    assert_eq!(response.status(), 200);

    let names = [
        "activator.request",
        "activator.wait",
        "queue_proxy.request",
        "runtime.request",
        "runtime.inference",
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    let spans = loop {
        let spans = collector.trace(trace_id);
        if names.iter().all(|n| spans.iter().any(|s| s.name == *n)) {
            break spans;
        }
        assert!(
            Instant::now() < deadline,
            "spans of trace {trace_id} at the collector: {spans:#?}\n{}",
            dev.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let span = |name: &str| -> &ReceivedSpan { spans.iter().find(|s| s.name == name).unwrap() };
    let activator = span("activator.request");
    let wait = span("activator.wait");
    let queue_proxy = span("queue_proxy.request");
    let runtime = span("runtime.request");
    let inference = span("runtime.inference");

    // One process each, chained parent to child.
    assert_eq!(activator.service, "serval-dev");
    assert_eq!(queue_proxy.service, "serval-queue-proxy");
    assert_eq!(runtime.service, "serval-runtime");
    assert_eq!(activator.parent_span_id, caller_span);
    assert_eq!(wait.parent_span_id, activator.span_id);
    assert_eq!(queue_proxy.parent_span_id, activator.span_id);
    assert_eq!(runtime.parent_span_id, queue_proxy.span_id);
    assert_eq!(inference.parent_span_id, runtime.span_id);
    // The request arrived at zero: its wait is the cold start.
    assert_eq!(wait.attributes["serval.at_zero"], "true", "{wait:?}");
    assert_eq!(activator.attributes["http.response.status_code"], "200");
}
