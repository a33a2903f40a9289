//! `serval activator` and `serval autoscaler` against a real kube-apiserver, with the test
//! playing the controller, kube-controller-manager and kubelet (none run here): a request
//! for an InferenceService at zero is held by the activator, which pokes the autoscaler,
//! which scales the revision Deployment from 0 to 1 through `/scale`; the "kubelet" then
//! starts a real queue-proxy + backend and publishes it in an EndpointSlice, and the held
//! request is answered by that pod.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serval_tests::apiserver::{revision_deployment, ApiServer};
use serval_tests::http_client::http1;
use serval_tests::revision_pod::{Ledger, RevisionPod};
use serval_tests::{lease_port, serval_bin};

const NAMESPACE: &str = "ml";
const REVISION: &str = "iris-predictor-1";

fn replicas(api: &ApiServer) -> i64 {
    api.deployment_replicas(NAMESPACE, REVISION)
}

/// The EndpointSlice version this API server serves (v1beta1 on 1.20, v1 from 1.21).
fn slice_api_version(api: &ApiServer) -> String {
    let (status, body) = api
        .get("/apis/discovery.k8s.io")
        .expect("GET discovery group");
    assert_eq!(status, 200, "{body}");
    let group: serde_json::Value = serde_json::from_str(&body).unwrap();
    group["preferredVersion"]["groupVersion"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_at_zero_is_held_scaled_for_and_served_on_kubernetes() {
    let api = tokio::task::spawn_blocking(ApiServer::start).await.unwrap();
    let crds = std::process::Command::new(serval_bin())
        .arg("crd")
        .output()
        .unwrap();
    api.apply(&String::from_utf8(crds.stdout).unwrap());
    api.wait_established(&["inferenceservices.serving.kserve.io"]);

    // The controller's part: the service, its revision Deployment at zero, and the
    // traffic it publishes in the service's status.
    api.apply(&format!(
        r#"apiVersion: v1
kind: Namespace
metadata:
  name: {NAMESPACE}
---
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: iris
  namespace: {NAMESPACE}
spec:
  predictor:
    minReplicas: 0
    model:
      modelFormat:
        name: onnx
      storageUri: s3://models/iris
---
{deployment}"#,
        deployment = revision_deployment(NAMESPACE, REVISION, 0, r#"{"minReplicas":0}"#),
    ));
    let status = api.kubectl(
        [
            "-n",
            NAMESPACE,
            "patch",
            "inferenceservice",
            "iris",
            "--subresource=status",
            "--type=merge",
            "-p",
            &format!(
                r#"{{"status":{{"components":{{"predictor":{{"latestReadyRevision":"{REVISION}","traffic":[{{"revisionName":"{REVISION}","percent":100,"latestRevision":true,"tag":"latest"}}]}}}}}}}}"#
            ),
        ],
        "",
    );
    assert_eq!(status.code, 0, "{}", status.stderr);

    let dir = std::env::temp_dir().join(format!("serval-k8s-activator-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config-autoscaler.yaml");
    std::fs::write(
        &config,
        "stable-window: 6s\nscale-to-zero-grace-period: 1s\n",
    )
    .unwrap();
    let autoscaler_port = lease_port();
    let activator_port = lease_port();
    let _autoscaler = api.serval([
        "autoscaler".to_string(),
        format!("--listen=127.0.0.1:{autoscaler_port}"),
        format!("--config={}", config.display()),
    ]);
    let _activator = api.serval([
        "activator".to_string(),
        format!("--listen=127.0.0.1:{activator_port}"),
        format!("--autoscaler-url=http://127.0.0.1:{autoscaler_port}"),
        "--domain=example.com".into(),
    ]);

    // The request, at zero. Retry only until the activator listens and knows the route.
    let client = http1();
    let send = || {
        let request = http::Request::post(format!(
            "http://127.0.0.1:{activator_port}/v1/models/iris:predict"
        ))
        .header("host", "iris.ml.example.com")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
        .unwrap();
        client.request(request)
    };
    // Until the activator listens and has the route, a request fails or gets 404 at once;
    // after that it is held, as no pod exists, and the activator pokes the autoscaler, which
    // scales the Deployment from zero: the scale-up is what shows the request is held.
    let deadline = Instant::now() + Duration::from_secs(30);
    let held = 'attempts: loop {
        let attempt = tokio::spawn(send());
        while !attempt.is_finished() {
            if replicas(&api) >= 1 {
                break 'attempts attempt;
            }
            assert!(
                Instant::now() < deadline,
                "a held request did not scale iris from zero"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let answered = attempt.await.unwrap();
        assert!(
            answered.as_ref().map_or(true, |r| r.status() == 404),
            "before the route is known: {answered:?}"
        );
        assert!(Instant::now() < deadline, "activator routes iris.ml");
    };
    assert!(!held.is_finished(), "the request waits for a pod");

    // The kubelet's and endpoint controller's part: a pod, listed in an EndpointSlice.
    let pod = RevisionPod::start(REVISION, Arc::new(Ledger::default()), &[]).await;
    let admin_port: u16 = pod
        .health_url
        .trim_start_matches("http://127.0.0.1:")
        .trim_end_matches("/healthz")
        .parse()
        .unwrap();
    api.apply(&format!(
        r#"apiVersion: {version}
kind: EndpointSlice
metadata:
  name: {REVISION}-private-x7k2p
  namespace: {NAMESPACE}
  labels:
    serving.serval.dev/revision: {REVISION}
    kubernetes.io/service-name: {REVISION}-private
addressType: IPv4
endpoints:
- addresses: ["127.0.0.1"]
  conditions:
    ready: false
  targetRef:
    kind: Pod
    name: {REVISION}-a
    namespace: {NAMESPACE}
ports:
- name: http
  port: {http}
  protocol: TCP
- name: serval-admin
  port: {admin_port}
  protocol: TCP
"#,
        version = slice_api_version(&api),
        http = pod.address.port(),
    ));
    let response = tokio::time::timeout(Duration::from_secs(20), held)
        .await
        .expect("the held request is answered once the pod is listed")
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(&body[..], format!("{REVISION}:{{}}").as_bytes());
    assert_eq!(pod.backend.served(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}
