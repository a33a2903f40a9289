//! `serval controller` against a real kube-apiserver with RBAC enforced, running as the
//! chart's own ServiceAccount (impersonated, so it has exactly the chart's permissions): the
//! rendered chart applies; an InferenceService becomes its revision Deployment (runtime from
//! the chart's ClusterServingRuntime, queue-proxy sidecar, storage initializer, GPU and pod
//! fields), Services and KServe status; an update makes a new revision while the old one
//! keeps the traffic; a canary splits it; a transformer gets KServe's arguments; a restart
//! changes nothing; two controllers elect one leader.
//!
//! No kubelet runs here, so a revision becomes ready when the test writes its Deployment's
//! `status.readyReplicas`, as the Deployment controller would.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use serval_tests::apiserver::{http_request, ApiServer, ServalRole};
use serval_tests::{helm_bin, lease_port, repo_root};

const NS: &str = "ml";
const SYSTEM: &str = "serval-system";

/// One API server at a time: each is etcd plus a kube-apiserver, heavy on a small machine.
static ONE_SERVER: Mutex<()> = Mutex::new(());

/// The chart as `helm install` would render it for a 1.20 API server.
fn rendered_chart(include_crds: bool) -> String {
    let mut helm = std::process::Command::new(helm_bin());
    helm.args(["template", "serval"])
        .arg(repo_root().join("helm/serval"))
        .args(["--namespace", SYSTEM, "--kube-version", "1.20.2"]);
    if include_crds {
        helm.arg("--include-crds");
    }
    let out = helm.output().expect("run helm");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Installs the chart: CRDs first (and waits for them), then everything else. With
/// `webhook_port`, the webhook configurations call the controller on that loopback port by
/// URL (no kube-proxy here to reach the webhook's Service); without, they are left out.
fn install_chart(api: &ApiServer, webhook_port: Option<u16>) {
    api.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {SYSTEM}\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NS}\n"
    ));
    let crds =
        std::fs::read_to_string(repo_root().join("helm/serval/crds/serval-crds.yaml")).unwrap();
    api.apply(&crds);
    api.wait_established(&[
        "inferenceservices.serving.kserve.io",
        "servingruntimes.serving.kserve.io",
        "clusterservingruntimes.serving.kserve.io",
        "localmodelcaches.serving.kserve.io",
    ]);
    let rendered = rendered_chart(false);
    let mut documents = Vec::new();
    for text in rendered.split("\n---").filter(|doc| doc.contains("kind:")) {
        let mut doc: serde_yaml::Value = serde_yaml::from_str(text).unwrap();
        let kind = doc["kind"].as_str().unwrap_or_default().to_string();
        if kind.ends_with("WebhookConfiguration") {
            let Some(port) = webhook_port else { continue };
            for webhook in doc["webhooks"].as_sequence_mut().unwrap() {
                let path = webhook["clientConfig"]["service"]["path"]
                    .as_str()
                    .unwrap()
                    .to_string();
                webhook["clientConfig"] =
                    serde_yaml::from_str(&format!("url: https://127.0.0.1:{port}{path}")).unwrap();
            }
        }
        documents.push(serde_yaml::to_string(&doc).unwrap());
    }
    let out = api.kubectl(["apply", "-f", "-"], &documents.join("---\n"));
    assert_eq!(out.code, 0, "the rendered chart applies: {}", out.stderr);
}

/// `serval controller` as the chart's ServiceAccount; (role, its health URL).
fn start_controller(api: &ApiServer, identity: &str) -> (ServalRole, String) {
    start_controller_with(api, identity, &[])
}

fn start_controller_with(
    api: &ApiServer,
    identity: &str,
    extra: &[String],
) -> (ServalRole, String) {
    let port = lease_port();
    let kubeconfig = api.kubeconfig_as(SYSTEM, "serval-controller");
    let mut args = vec![
        "controller".to_string(),
        format!("--system-namespace={SYSTEM}"),
        format!("--health-listen=127.0.0.1:{port}"),
        "--image=registry.example/serval:test".to_string(),
        "--leader-election".to_string(),
        format!("--identity={identity}"),
        "--model-cache-host-path=/var/cache/serval/models".to_string(),
    ];
    args.extend(extra.iter().cloned());
    let url = format!("http://127.0.0.1:{port}");
    (api.serval_with(&kubeconfig, args).holding(port), url)
}

fn get(api: &ApiServer, path: &str) -> Option<Value> {
    match api.get(path) {
        Ok((200, body)) => serde_json::from_str(&body).ok(),
        _ => None,
    }
}

fn wait_for<T>(what: &str, limit: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn deployment(api: &ApiServer, name: &str) -> Option<Value> {
    get(
        api,
        &format!("/apis/apps/v1/namespaces/{NS}/deployments/{name}"),
    )
}

fn service(api: &ApiServer, name: &str) -> Option<Value> {
    get(api, &format!("/api/v1/namespaces/{NS}/services/{name}"))
}

fn isvc(api: &ApiServer, name: &str) -> Value {
    get(
        api,
        &format!("/apis/serving.kserve.io/v1beta1/namespaces/{NS}/inferenceservices/{name}"),
    )
    .expect("the InferenceService")
}

/// What the Deployment controller and kubelet would write once a replica is ready.
fn mark_ready(api: &ApiServer, name: &str) {
    let path = format!("/apis/apps/v1/namespaces/{NS}/deployments/{name}/status");
    let mut current = deployment(api, name).expect("the Deployment");
    current["status"] =
        json!({"replicas": 1, "readyReplicas": 1, "availableReplicas": 1, "updatedReplicas": 1});
    let (status, body) = api.request("PUT", &path, &current.to_string()).unwrap();
    assert_eq!(status, 200, "{body}");
}

/// (revision, percent) of a component's published traffic.
fn traffic(isvc: &Value, component: &str) -> Vec<(String, i64)> {
    isvc["status"]["components"][component]["traffic"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            (
                t["revisionName"].as_str().unwrap_or_default().to_string(),
                t["percent"].as_i64().unwrap_or(-1),
            )
        })
        .collect()
}

fn condition(isvc: &Value, kind: &str) -> String {
    isvc["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == kind)
        .and_then(|c| c["status"].as_str())
        .unwrap_or("absent")
        .to_string()
}

/// (reason, message) of a condition that is False.
fn reason_of(isvc: &Value, kind: &str) -> Option<(String, String)> {
    let condition = isvc["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind && c["status"] == "False")?;
    Some((
        condition["reason"].as_str()?.to_string(),
        condition["message"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    ))
}

/// A pod of `revision` whose runtime image cannot be pulled, as the kubelet reports it.
fn stuck_pod(api: &ApiServer, isvc: &str, revision: &str) {
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": format!("{revision}-abc"), "namespace": NS, "labels": {
            "serving.serval.dev/revision": revision,
            "serving.kserve.io/inferenceservice": isvc,
            "component": "predictor",
            "app.kubernetes.io/managed-by": "serval",
        }},
        "spec": {"containers": [{"name": "kserve-container", "image": "kserve/sklearnserver:nope"}]},
    });
    let path = format!("/api/v1/namespaces/{NS}/pods");
    let (status, body) = api.request("POST", &path, &pod.to_string()).unwrap();
    assert_eq!(status, 201, "{body}");
    let mut created: Value = serde_json::from_str(&body).unwrap();
    created["status"] = json!({"phase": "Pending", "containerStatuses": [{
        "name": "kserve-container", "ready": false, "restartCount": 0,
        "image": "kserve/sklearnserver:nope", "imageID": "",
        "state": {"waiting": {"reason": "ImagePullBackOff",
            "message": "Back-off pulling image: pull access denied"}},
    }]});
    let name = format!("{revision}-abc");
    let (status, body) = api
        .request(
            "PUT",
            &format!("{path}/{name}/status"),
            &created.to_string(),
        )
        .unwrap();
    assert_eq!(status, 200, "{body}");
}

fn manifest(storage: &str, canary: Option<u32>, transformer: bool) -> String {
    let canary = canary.map_or(String::new(), |p| {
        format!("    canaryTrafficPercent: {p}\n")
    });
    let transformer = if transformer {
        "  transformer:\n    containers:\n    - name: kserve-container\n      image: kserve/image-transformer:v0.16.0\n"
    } else {
        ""
    };
    format!(
        r#"apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: iris
  namespace: {NS}
  annotations:
    autoscaling.knative.dev/target: "4"
spec:
{transformer}  predictor:
    minReplicas: 0
    timeout: 60
{canary}    serviceAccountName: model-reader
    nodeSelector:
      gpu: "true"
    tolerations:
    - key: nvidia.com/gpu
      operator: Exists
      effect: NoSchedule
    model:
      modelFormat:
        name: sklearn
      storageUri: {storage}
      resources:
        limits:
          nvidia.com/gpu: "1"
"#
    )
}

fn container<'a>(deployment: &'a Value, name: &str) -> &'a Value {
    deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no container {name} in {deployment:#}"))
}

fn resource_versions(api: &ApiServer) -> Vec<(String, String)> {
    let mut versions = Vec::new();
    for (kind, path) in [
        (
            "deployment",
            format!("/apis/apps/v1/namespaces/{NS}/deployments"),
        ),
        ("service", format!("/api/v1/namespaces/{NS}/services")),
        (
            "isvc",
            format!("/apis/serving.kserve.io/v1beta1/namespaces/{NS}/inferenceservices"),
        ),
    ] {
        for item in get(api, &path).unwrap()["items"].as_array().unwrap() {
            versions.push((
                format!("{kind}/{}", item["metadata"]["name"].as_str().unwrap()),
                item["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            ));
        }
    }
    versions
}

fn metric(health: &str, name: &str) -> Option<f64> {
    let (_, body) = http_request(health, "GET", "/metrics", "").ok()?;
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} "))?.trim().parse().ok())
}

#[test]
fn inference_services_become_revisions_services_and_status_under_the_charts_rbac() {
    let _one = ONE_SERVER.lock().unwrap_or_else(|e| e.into_inner());
    let api = ApiServer::start();
    install_chart(&api, None);
    let (controller, health) = start_controller(&api, "controller-a");
    let file = |text: &str| {
        let out = api.kubectl(["apply", "-f", "-"], text);
        assert_eq!(out.code, 0, "{}", out.stderr);
    };

    // The ServiceAccount the model runs as names its storage Secret, as KServe users set it
    // up; the controller may read only the Secret's metadata.
    file(&format!(
        r#"apiVersion: v1
kind: Secret
metadata:
  name: s3creds
  namespace: {NS}
  annotations:
    serving.kserve.io/s3-endpoint: minio.storage:9000
    serving.kserve.io/s3-usehttps: "0"
    serving.kserve.io/s3-region: eu-west-1
stringData:
  AWS_ACCESS_KEY_ID: AKIAEXAMPLE
  AWS_SECRET_ACCESS_KEY: never-in-a-deployment
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: model-reader
  namespace: {NS}
secrets:
- name: s3creds
"#
    ));

    // A new service: its first revision, Services and status.
    file(&manifest("gs://models/iris/1", None, false));
    let first = wait_for(
        "the first revision's Deployment",
        Duration::from_secs(60),
        || deployment(&api, "iris-predictor-1"),
    );
    let labels = &first["metadata"]["labels"];
    assert_eq!(labels["serving.serval.dev/revision"], "iris-predictor-1");
    assert_eq!(labels["serving.kserve.io/inferenceservice"], "iris");
    assert_eq!(labels["component"], "predictor");
    let annotations = &first["metadata"]["annotations"];
    let component_spec: Value = serde_json::from_str(
        annotations["serving.serval.dev/component-spec"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(component_spec["minReplicas"], 0);
    assert_eq!(annotations["autoscaling.knative.dev/target"], "4");
    assert_eq!(
        first["metadata"]["ownerReferences"][0]["kind"],
        "InferenceService"
    );
    assert_eq!(
        first["spec"]["replicas"], 1,
        "initial scale 1, then the autoscaler's"
    );
    let pod = &first["spec"]["template"]["spec"];
    let runtime = container(&first, "kserve-container");
    assert!(
        runtime["image"]
            .as_str()
            .unwrap()
            .starts_with("kserve/sklearnserver:"),
        "{runtime:#}"
    );
    assert_eq!(
        runtime["args"],
        json!([
            "--model_name=iris",
            "--model_dir=/mnt/models",
            "--http_port=8080"
        ])
    );
    assert_eq!(runtime["resources"]["limits"]["nvidia.com/gpu"], "1");
    let sidecar = container(&first, "queue-proxy");
    assert_eq!(sidecar["image"], "registry.example/serval:test");
    assert!(sidecar["args"]
        .as_array()
        .unwrap()
        .contains(&json!("--request-timeout=60s")));
    assert_eq!(sidecar["readinessProbe"]["httpGet"]["path"], "/healthz");
    // The queue-proxy reaches `serval runtime` through a socket in a volume both mount.
    let sockets = json!({"name": "serval-sockets", "mountPath": "/var/run/serval-sockets"});
    assert!(sidecar["volumeMounts"]
        .as_array()
        .unwrap()
        .contains(&sockets));
    assert!(runtime["volumeMounts"]
        .as_array()
        .unwrap()
        .contains(&sockets));
    assert!(sidecar["args"]
        .as_array()
        .unwrap()
        .contains(&json!("--local-sockets=/var/run/serval-sockets")));
    assert!(runtime["env"].as_array().unwrap().contains(&json!({
        "name": "SERVAL_HTTP_LISTEN_UNIX",
        "value": "/var/run/serval-sockets/8080.sock"
    })));
    assert!(first["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .contains(&json!({"name": "serval-sockets", "emptyDir": {}})));
    // The model server stops only once the queue-proxy has drained; the queue-proxy
    // drains on its own SIGTERM.
    assert_eq!(
        runtime["lifecycle"]["preStop"]["httpGet"]["path"],
        "/wait-for-drain"
    );
    assert_eq!(runtime["lifecycle"]["preStop"]["httpGet"]["port"], 9091);
    assert!(sidecar["lifecycle"].is_null(), "{}", sidecar["lifecycle"]);
    assert!(sidecar["ports"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "serval-admin"));
    let init = &pod["initContainers"][0];
    assert_eq!(init["name"], "storage-initializer");
    assert_eq!(
        init["args"],
        json!(["storage-init", "gs://models/iris/1", "/mnt/models"])
    );
    let init_env = init["env"].as_array().unwrap();
    let var = |name: &str| init_env.iter().find(|e| e["name"] == name).cloned();
    assert_eq!(
        var("AWS_SECRET_ACCESS_KEY").unwrap()["valueFrom"]["secretKeyRef"],
        json!({"name": "s3creds", "key": "AWS_SECRET_ACCESS_KEY"})
    );
    assert_eq!(
        var("AWS_ENDPOINT_URL").unwrap()["value"],
        "http://minio.storage:9000"
    );
    assert_eq!(var("AWS_REGION").unwrap()["value"], "eu-west-1");
    assert!(
        !first.to_string().contains("never-in-a-deployment"),
        "a Secret's value reached the Deployment"
    );
    assert_eq!(pod["serviceAccountName"], "model-reader");
    assert_eq!(pod["nodeSelector"]["gpu"], "true");
    assert_eq!(pod["tolerations"][0]["key"], "nvidia.com/gpu");
    assert_eq!(pod["terminationGracePeriodSeconds"], 90);

    let private = wait_for("the revision's Service", Duration::from_secs(30), || {
        service(&api, "iris-predictor-1")
    });
    assert_eq!(
        private["spec"]["selector"]["serving.serval.dev/revision"],
        "iris-predictor-1"
    );
    assert_eq!(
        private["metadata"]["labels"]["serving.serval.dev/revision"],
        "iris-predictor-1"
    );
    for entry in ["iris", "iris-predictor"] {
        let svc = wait_for("the entry Services", Duration::from_secs(30), || {
            service(&api, entry)
        });
        assert_eq!(svc["spec"]["type"], "ExternalName");
        assert_eq!(
            svc["spec"]["externalName"],
            "serval-activator.serval-system.svc.cluster.local"
        );
    }
    let status = wait_for("a status", Duration::from_secs(30), || {
        let current = isvc(&api, "iris");
        (condition(&current, "PredictorReady") == "Unknown").then_some(current)
    });
    assert_eq!(status["status"]["url"], "http://iris.ml.example.com");
    assert_eq!(
        status["status"]["address"]["url"],
        "http://iris.ml.svc.cluster.local"
    );
    assert_eq!(status["status"]["observedGeneration"], 1);
    assert_eq!(
        status["status"]["components"]["predictor"]["latestCreatedRevision"],
        "iris-predictor-1"
    );

    // Ready: the status says so, and kubectl prints KServe's columns.
    mark_ready(&api, "iris-predictor-1");
    wait_for("Ready", Duration::from_secs(30), || {
        (condition(&isvc(&api, "iris"), "Ready") == "True").then_some(())
    });
    let printed = api.kubectl(["get", "isvc", "iris", "-n", NS], "");
    assert!(
        printed.stdout.contains("URL") && printed.stdout.contains("http://iris.ml.example.com"),
        "{}",
        printed.stdout
    );
    assert!(printed.stdout.contains("True"), "{}", printed.stdout);

    // An update: a new revision, while the old one keeps all the traffic.
    file(&manifest("gs://models/iris/2", Some(20), false));
    wait_for("the second revision", Duration::from_secs(30), || {
        deployment(&api, "iris-predictor-2")
    });
    let during = wait_for("the update observed", Duration::from_secs(30), || {
        let current = isvc(&api, "iris");
        (current["status"]["observedGeneration"] == 2).then_some(current)
    });
    assert_eq!(
        traffic(&during, "predictor"),
        [("iris-predictor-1".to_string(), 100)]
    );
    // Ready: the canary takes 20%, the previous revision the rest.
    mark_ready(&api, "iris-predictor-2");
    let split = wait_for("the canary split", Duration::from_secs(30), || {
        let current = isvc(&api, "iris");
        (traffic(&current, "predictor").len() == 2).then_some(current)
    });
    assert_eq!(
        traffic(&split, "predictor"),
        [
            ("iris-predictor-2".to_string(), 20),
            ("iris-predictor-1".to_string(), 80)
        ]
    );
    assert!(
        deployment(&api, "iris-predictor-1").is_some(),
        "the previous revision stays"
    );

    // Promotion collects the previous revision.
    file(&manifest("gs://models/iris/2", None, false));
    wait_for("the promotion published", Duration::from_secs(30), || {
        (traffic(&isvc(&api, "iris"), "predictor") == [("iris-predictor-2".to_string(), 100)])
            .then_some(())
    });
    wait_for(
        "the previous revision collected",
        Duration::from_secs(30),
        || deployment(&api, "iris-predictor-1").is_none().then_some(()),
    );
    assert!(service(&api, "iris-predictor-1").is_none());

    // A transformer: KServe's arguments, its own Service; the predictor keeps its revision.
    file(&manifest("gs://models/iris/2", None, true));
    let transformer = wait_for("the transformer", Duration::from_secs(30), || {
        deployment(&api, "iris-transformer-1")
    });
    let args = container(&transformer, "kserve-container")["args"].clone();
    assert_eq!(
        args,
        json!([
            "--model_name",
            "iris",
            "--predictor_host",
            "iris-predictor.ml",
            "--http_port",
            "8080"
        ])
    );
    wait_for("the transformer's Service", Duration::from_secs(30), || {
        service(&api, "iris-transformer")
    });
    assert!(
        deployment(&api, "iris-predictor-3").is_none(),
        "the predictor did not change"
    );
    mark_ready(&api, "iris-transformer-1");
    wait_for("Ready with a transformer", Duration::from_secs(30), || {
        let current = isvc(&api, "iris");
        (condition(&current, "TransformerReady") == "True"
            && condition(&current, "Ready") == "True")
            .then_some(())
    });

    // KServe's LocalModelCache naming a model: its pods fetch into, and mount from, the
    // node model cache.
    file(&format!(
        "apiVersion: serving.kserve.io/v1alpha1\nkind: LocalModelCache\nmetadata:\n  name: llm\nspec:\n  sourceModelUri: gs://models/llm\n  modelSize: 10Gi\n  nodeGroups: [gpu]\n---\n{}",
        manifest("gs://models/llm/v3", None, false).replace("name: iris", "name: llm")
    ));
    let cached = wait_for(
        "the cached model's revision",
        Duration::from_secs(30),
        || deployment(&api, "llm-predictor-1"),
    );
    let pod = &cached["spec"]["template"]["spec"];
    assert_eq!(
        pod["initContainers"][0]["args"],
        json!([
            "storage-init",
            "--cache-dir=/var/cache/serval/models",
            "gs://models/llm/v3"
        ])
    );
    assert!(
        pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["hostPath"]["path"] == "/var/cache/serval/models"),
        "{pod:#}"
    );
    assert_eq!(
        container(&cached, "kserve-container")["volumeMounts"][0]["readOnly"],
        true
    );

    // A model no runtime serves: never Ready, and the condition says why.
    let pmml = manifest("gs://models/other", None, false)
        .replace("name: iris", "name: nope")
        .replace("name: sklearn", "name: pmml");
    file(&pmml);
    let (reason, message) = wait_for(
        "the missing runtime reported",
        Duration::from_secs(30),
        || reason_of(&isvc(&api, "nope"), "PredictorReady"),
    );
    assert_eq!(reason, "NoSupportingRuntime");
    assert!(message.contains("pmml"), "{message}");
    assert_eq!(condition(&isvc(&api, "nope"), "Ready"), "False");

    // An image that cannot be pulled: the revision's pod says so, and so does the status.
    file(&manifest("gs://models/pull", None, false).replace("name: iris", "name: pull"));
    wait_for("the revision", Duration::from_secs(30), || {
        deployment(&api, "pull-predictor-1")
    });
    stuck_pod(&api, "pull", "pull-predictor-1");
    let (_, message) = wait_for("the pull failure reported", Duration::from_secs(30), || {
        reason_of(&isvc(&api, "pull"), "PredictorReady").filter(|(r, _)| r == "ImagePullBackOff")
    });
    assert!(message.contains("pull access denied"), "{message}");
    assert_eq!(condition(&isvc(&api, "pull"), "Ready"), "False");

    // A restart rebuilds from the API server and writes nothing.
    let before = resource_versions(&api);
    let status_before = isvc(&api, "iris")["status"].clone();
    let reconciles = metric(&health, "serval_controller_reconciles_total").unwrap();
    assert!(reconciles > 0.0);
    drop(controller);
    let (_controller, health) = start_controller(&api, "controller-b");
    wait_for(
        "the restarted controller reconciling",
        Duration::from_secs(60),
        || (metric(&health, "serval_controller_reconciles_total")? >= 1.0).then_some(()),
    );
    let after = resource_versions(&api);
    let changed: Vec<_> = after.iter().filter(|v| !before.contains(v)).collect();
    assert!(
        changed.is_empty(),
        "a restart changed objects: {changed:?}\nstatus before: {status_before:#}\nafter: {:#}",
        isvc(&api, "iris")["status"]
    );
    assert_eq!(
        after.len(),
        before.len(),
        "a restart made or removed objects"
    );

    // Deleting the service: every object it made is owned by it, for the garbage collector.
    for name in ["iris-predictor-2", "iris-transformer-1"] {
        let owner = &deployment(&api, name).unwrap()["metadata"]["ownerReferences"][0];
        assert_eq!(owner["name"], "iris");
        assert_eq!(owner["controller"], true);
    }
    let out = api.kubectl(["delete", "isvc", "iris", "-n", NS, "--wait=false"], "");
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn two_controllers_elect_one_leader_and_the_standby_takes_over() {
    let _one = ONE_SERVER.lock().unwrap_or_else(|e| e.into_inner());
    let api = ApiServer::start();
    install_chart(&api, None);
    let (first, first_health) = start_controller(&api, "controller-a");
    wait_for("a leader", Duration::from_secs(60), || {
        (metric(&first_health, "serval_controller_leading")? == 1.0).then_some(())
    });
    let (_second, second_health) = start_controller(&api, "controller-b");
    wait_for("the standby answering", Duration::from_secs(30), || {
        metric(&second_health, "serval_controller_leading")
    });
    let lease = get(
        &api,
        &format!("/apis/coordination.k8s.io/v1/namespaces/{SYSTEM}/leases/serval-controller"),
    )
    .unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "controller-a");
    assert_eq!(
        metric(&second_health, "serval_controller_leading"),
        Some(0.0)
    );

    // The standby does nothing while it waits.
    api.apply(&manifest("gs://models/iris/1", None, false));
    wait_for("the leader's revision", Duration::from_secs(30), || {
        deployment(&api, "iris-predictor-1")
    });

    // The leader dies without a word: the standby takes the Lease once it expires.
    drop(first);
    wait_for("the standby leading", Duration::from_secs(60), || {
        (metric(&second_health, "serval_controller_leading")? == 1.0).then_some(())
    });
    let lease = get(
        &api,
        &format!("/apis/coordination.k8s.io/v1/namespaces/{SYSTEM}/leases/serval-controller"),
    )
    .unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "controller-b");
}

#[test]
fn the_webhook_refuses_an_invalid_service_by_field_and_fills_kserves_defaults() {
    let _one = ONE_SERVER.lock().unwrap_or_else(|e| e.into_inner());
    let api = ApiServer::start();
    let port = lease_port();
    install_chart(&api, Some(port.port()));
    let (_controller, _health) = start_controller_with(
        &api,
        "controller-a",
        &[
            format!("--webhook-listen=127.0.0.1:{port}"),
            "--webhook-extra-name=127.0.0.1".to_string(),
        ],
    );
    // The controller makes its certificate and hands its CA to the API server.
    for name in ["serval-validating-webhook", "serval-defaulting-webhook"] {
        let kind = if name.contains("validating") {
            "validating"
        } else {
            "mutating"
        };
        wait_for("caBundle patched", Duration::from_secs(60), || {
            let config = get(
                &api,
                &format!(
                    "/apis/admissionregistration.k8s.io/v1/{kind}webhookconfigurations/{name}"
                ),
            )?;
            config["webhooks"][0]["clientConfig"]["caBundle"]
                .as_str()
                .map(|_| ())
        });
    }
    let secret = get(
        &api,
        &format!("/api/v1/namespaces/{SYSTEM}/secrets/serval-controller-webhook-cert"),
    )
    .unwrap();
    assert_eq!(secret["type"], "kubernetes.io/tls");

    // Invalid: refused through the webhook, naming the field.
    let invalid = manifest("gs://models/iris/1", None, false)
        .replace("minReplicas: 0", "minReplicas: 5\n    maxReplicas: 2");
    let refused = wait_for("the webhook answering", Duration::from_secs(60), || {
        let out = api.kubectl(["apply", "-f", "-"], &invalid);
        (out.code != 0 && out.stderr.contains("denied the request")).then_some(out.stderr)
    });
    assert!(refused.contains("spec.predictor.minReplicas"), "{refused}");
    assert!(get(
        &api,
        &format!("/apis/serving.kserve.io/v1beta1/namespaces/{NS}/inferenceservices/iris")
    )
    .is_none());

    // Valid, without resources on a component's container: KServe's defaults are filled in.
    let valid = manifest("gs://models/iris/1", None, true);
    let out = api.kubectl(["apply", "-f", "-"], &valid);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let stored = isvc(&api, "iris");
    assert_eq!(
        stored["spec"]["transformer"]["containers"][0]["resources"],
        json!({"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}})
    );
    // The model's own resources are kept as written.
    assert_eq!(
        stored["spec"]["predictor"]["model"]["resources"]["limits"]["nvidia.com/gpu"],
        "1"
    );
}
