//! Serval on a real one-node Kubernetes cluster (tests/src/cluster/): the chart installed with
//! real Helm, Serval's image (this build, assembled without Docker) running in real
//! containers, and InferenceServices served end to end through the activator, from
//! `helm install` to scale to zero and back.
//!
//! One cluster serves every step, in order, in one test: starting it costs about 20 s and
//! the steps build on each other (the chart, then a model, then its revisions). Each step
//! prints what it measured.

use std::time::{Duration, Instant};

use serde_json::Value;
use serval_tests::cluster::{condition_true, image, Cluster, NODE_IP};
use serval_tests::http_client::{http1, send_with_headers};
use serval_tests::repo_root;
use serval_tests::runtime::Runtime;
use serval_tests::storage::S3Server;

mod cluster_steps;

use cluster_steps::load::{self, Load};
use cluster_steps::{cold_start, ColdStart, Steps, UsageSample, EVENTS};

const NAMESPACE: &str = "default";

/// The chart's values for a two-core node: one activator, small CPU requests, and short
/// autoscaling windows so that scale to zero happens within the test.
const VALUES: &str = r#"
image:
  tag: test
activator:
  replicas: 1
  hpa:
    enabled: false
  resources:
    requests:
      cpu: 100m
controller:
  resources:
    requests:
      cpu: 50m
autoscaler:
  resources:
    requests:
      cpu: 50m
  config:
    stable-window: "6s"
    scale-to-zero-grace-period: "4s"
runtimes:
  serval:
    resources:
      requests:
        cpu: 100m
        memory: 128Mi
"#;

/// The models directory, shared with the pods as a hostPath PersistentVolume.
fn models_volume() -> String {
    format!(
        r#"apiVersion: v1
kind: PersistentVolume
metadata:
  name: example-models
spec:
  capacity:
    storage: 1Gi
  accessModes: [ReadOnlyMany]
  storageClassName: ""
  hostPath:
    path: {models}
  claimRef:
    namespace: {NAMESPACE}
    name: example-models
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: example-models
  namespace: {NAMESPACE}
spec:
  accessModes: [ReadOnlyMany]
  storageClassName: ""
  volumeName: example-models
  resources:
    requests:
      storage: 1Gi
"#,
        models = repo_root().join("examples/models").display()
    )
}

/// The XGBoost iris example as users write it, with its model on the PVC.
const XGBOOST_IRIS: &str = r#"apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: xgboost-iris
spec:
  predictor:
    minReplicas: 0
    model:
      modelFormat:
        name: xgboost
      protocolVersion: v2
      storageUri: pvc://example-models/iris-xgboost
      # KServe's default is 1 CPU and 2Gi; this node has two CPUs.
      resources:
        requests:
          cpu: 100m
          memory: 128Mi
        limits:
          cpu: "1"
          memory: 512Mi
    scaleMetric: concurrency
    scaleTarget: 2
    maxReplicas: 3
"#;

/// The same flower in KServe's V1 protocol, and the same times 10 (what the transformer
/// sends its predictor).
const IRIS_V1: &str = r#"{"instances":[[6.8,2.8,4.8,1.4]]}"#;
const IRIS_V1_TIMES_10: &str = r#"{"instances":[[68.0,28.0,48.0,14.0]]}"#;

const XGBOOST_MODEL: (&str, &str) = ("xgboost", "iris-xgboost");
const ONNX_MODEL: (&str, &str) = ("onnx", "iris-onnx");

/// The transformer image (tests/src/bin/iris-transformer.rs).
const TRANSFORMER_IMAGE: &str = "serval.local/iris-transformer:test";

/// xgboost-iris with another model (format, directory) and an optional canary percent.
fn xgboost_iris_with(model: (&str, &str), canary: Option<u32>) -> String {
    let (format, dir) = model;
    let canary = canary.map_or(String::new(), |p| {
        format!("    canaryTrafficPercent: {p}\n")
    });
    XGBOOST_IRIS
        .replace("name: xgboost\n", &format!("name: {format}\n"))
        .replace("iris-xgboost", dir)
        .replace(
            "    minReplicas: 0\n",
            &format!("    minReplicas: 0\n{canary}"),
        )
}

/// A transformer (this build's iris-transformer) in front of the XGBoost model.
/// The XGBoost iris predictor of the examples below, its model at `storage_uri`: `spec` is
/// added to the predictor's fields and `limits` to its model's resource limits (both as
/// indented YAML lines).
fn iris_predictor(storage_uri: &str, spec: &str, limits: &str) -> String {
    format!(
        r#"  predictor:
    minReplicas: 0
{spec}    model:
      modelFormat:
        name: xgboost
      storageUri: {storage_uri}
      resources:
        requests:
          cpu: 100m
          memory: 128Mi
        limits:
          cpu: "1"
          memory: 512Mi
{limits}"#
    )
}

/// A transformer (this build's iris-transformer) in front of the XGBoost model, which the
/// storage initializer fetches from the S3 server with the `s3-reader` account's Secret.
fn transformed_iris() -> String {
    format!(
        r#"apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: iris-transformed
spec:
  transformer:
    minReplicas: 0
    containers:
      - name: kserve-container
        image: {TRANSFORMER_IMAGE}
        resources:
          requests:
            cpu: 50m
            memory: 32Mi
          limits:
            cpu: 500m
            memory: 128Mi
{}"#,
        iris_predictor(
            "s3://models/iris-xgboost",
            "    serviceAccountName: s3-reader\n",
            ""
        )
    )
}

/// KServe's way to reach an S3-compatible server: a Secret with the keys and the endpoint
/// in annotations, attached to the model's service account.
fn s3_credentials(s3: &S3Server) -> String {
    format!(
        r#"apiVersion: v1
kind: Secret
metadata:
  name: s3-credentials
  namespace: {NAMESPACE}
  annotations:
    serving.kserve.io/s3-endpoint: {NODE_IP}:{port}
    serving.kserve.io/s3-usehttps: "0"
    serving.kserve.io/s3-region: us-east-1
type: Opaque
stringData:
  AWS_ACCESS_KEY_ID: {access_key}
  AWS_SECRET_ACCESS_KEY: {secret_key}
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: s3-reader
  namespace: {NAMESPACE}
secrets:
  - name: s3-credentials
"#,
        port = s3.port,
        access_key = s3.access_key,
        secret_key = s3.secret_key,
    )
}

/// A model that asks for a GPU this node does not have, with a 10 s request timeout.
fn gpu_iris() -> String {
    format!(
        "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata:\n  name: gpu-iris\nspec:\n{}",
        iris_predictor(
            "pvc://example-models/iris-xgboost",
            "    timeout: 10\n",
            "          nvidia.com/gpu: \"1\"\n"
        )
    )
}

const IRIS_REQUEST: &str =
    r#"{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[6.8,2.8,4.8,1.4]}]}"#;

#[test]
fn serval_on_a_real_node() {
    let tokio = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let images = tempdir("serval-cluster-test-images");
    let serval_image = images.join("serval.tar");
    image::serval(&serval_image);
    let transformer_image = images.join("transformer.tar");
    image::binary(
        std::path::Path::new(env!("CARGO_BIN_EXE_iris-transformer")),
        TRANSFORMER_IMAGE,
        &transformer_image,
    );
    let mut cluster = Cluster::start(&[serval_image, transformer_image]);
    let _ = std::fs::remove_dir_all(&images);
    let mut steps = Steps::default();

    // The models' volume first: its binding is the PV controller's, not Serval's.
    apply(&cluster, &models_volume());
    cluster.wait("the models' PersistentVolumeClaim to be Bound", |c| {
        c.json(&format!(
            "/api/v1/namespaces/{NAMESPACE}/persistentvolumeclaims/example-models"
        ))
        .is_some_and(|pvc| pvc["status"]["phase"] == "Bound")
    });

    // --- helm install: the three Deployments become Ready ---------------------------
    let values = cluster_file(&cluster, "values.yaml", VALUES);
    let install_started = Instant::now();
    let installed = cluster.helm([
        "install",
        "serval",
        &repo_root().join("helm/serval").display().to_string(),
        "--namespace",
        "serval-system",
        "--create-namespace",
        "--values",
        &values,
        "--wait",
        "--timeout",
        "4m",
    ]);
    assert_eq!(installed.code, 0, "helm install: {}", installed.stderr);
    let system = cluster
        .json("/api/v1/namespaces/serval-system/pods")
        .expect("list serval-system pods");
    let ready: Vec<&str> = system["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|pod| condition_true(pod, "Ready"))
        .filter_map(|pod| pod["metadata"]["labels"]["app.kubernetes.io/component"].as_str())
        .collect();
    for component in ["controller", "activator", "autoscaler"] {
        assert!(
            ready.contains(&component),
            "no Ready {component} pod after helm install --wait: {ready:?}"
        );
    }
    steps.record("helm install --wait", install_started.elapsed());
    // `--wait` ends when the pods are Ready; the admission webhook answers once kube-proxy
    // has programmed its Service's endpoint too (about a second later), and a write before
    // that is refused as on any cluster.
    let webhook = service_ip(&cluster, "serval-system", "serval-controller-webhook");
    cluster.wait("the admission webhook's Service to answer", |_| {
        std::net::TcpStream::connect_timeout(
            &format!("{webhook}:443").parse().expect("an address"),
            Duration::from_secs(1),
        )
        .is_ok()
    });
    let activator = service_ip(&cluster, "serval-system", "serval-activator");

    // --- kubectl apply of the example: Ready, and the model's own answer ---------------
    apply(&cluster, XGBOOST_IRIS);
    cluster.wait("xgboost-iris to be Ready", |c| {
        isvc(c, "xgboost-iris").is_some_and(|isvc| condition_true(&isvc, "Ready"))
    });
    let expected = tokio.block_on(async {
        let local = Runtime::start(
            "xgboost-iris",
            &repo_root().join("examples/models/iris-xgboost"),
            &[],
        )
        .await;
        let answer = send_with_headers(
            &http1(),
            "POST",
            &format!("{}/v2/models/xgboost-iris/infer", local.url),
            &[],
            IRIS_REQUEST,
        )
        .await
        .expect("the local runtime answers");
        let v1 = |local: &Runtime, body: &'static str| {
            let url = format!("{}/v1/models/xgboost-iris:predict", local.url);
            async move {
                let answer = send_with_headers(&http1(), "POST", &url, &[], body)
                    .await
                    .expect("the local runtime answers");
                assert_eq!(answer.status, 200, "{}", answer.body);
                answer.json()["predictions"].clone()
            }
        };
        let xgboost_v1 = v1(&local, IRIS_V1).await;
        let transformed_v1 = v1(&local, IRIS_V1_TIMES_10).await;
        let onnx = Runtime::start(
            "xgboost-iris",
            &repo_root().join("examples/models/iris-onnx"),
            &[],
        )
        .await;
        let onnx_v1 = v1(&onnx, IRIS_V1).await;
        (outputs(&answer.json()), xgboost_v1, transformed_v1, onnx_v1)
    });
    let (expected, xgboost_v1, transformed_v1, onnx_v1) = expected;
    let (by_host, by_path) = tokio.block_on(async {
        let by_host = predict_by_host(
            &activator,
            "xgboost-iris",
            "/v2/models/xgboost-iris/infer",
            IRIS_REQUEST,
        )
        .await;
        let by_path = send_with_headers(
            &http1(),
            "POST",
            &format!(
                "http://{activator}/serving/{NAMESPACE}/xgboost-iris/v2/models/xgboost-iris/infer"
            ),
            &[],
            IRIS_REQUEST,
        )
        .await
        .expect("the activator answers by path");
        (by_host, by_path)
    });
    assert_eq!(by_host.status, 200, "by Host: {}", by_host.body);
    assert_eq!(by_path.status, 200, "by path: {}", by_path.body);
    assert_eq!(outputs(&by_host.json()), expected, "by Host");
    assert_eq!(outputs(&by_path.json()), expected, "by path");
    // The queue-proxy reached `serval runtime` over the socket in the pod's shared volume,
    // not the pod's loopback TCP (its pooled connection is still open).
    assert!(
        queue_proxies_connected_to_the_runtime_socket() > 0,
        "no queue-proxy has a connection to {RUNTIME_SOCKET}"
    );
    steps.record(
        "helm install to the first prediction",
        install_started.elapsed(),
    );

    // --- idle: scale to zero, stays Ready; the next request is held and served --------
    let revision = latest_revision(&cluster, "xgboost-iris");
    // SERVAL_CLUSTER_COLD_STARTS=5 for the median in docs/benchmarks.md.
    let rounds: usize = std::env::var("SERVAL_CLUSTER_COLD_STARTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    let mut cold_starts = Vec::new();
    let mut idle_usage = Vec::new();
    for _ in 0..rounds {
        let idle_since = Instant::now();
        cluster.wait("the predictor to scale to zero", |c| {
            revision_pods(c, &revision).is_empty() && deployment_replicas(c, &revision) == Some(0)
        });
        steps.record("idle to zero pods", idle_since.elapsed());
        assert!(
            isvc(&cluster, "xgboost-iris").is_some_and(|isvc| condition_true(&isvc, "Ready")),
            "xgboost-iris is not Ready at zero replicas"
        );
        // Serval's own pods, with nothing to do (a measuring window, not a wait).
        let idle_from = UsageSample::take(&cluster);
        std::thread::sleep(Duration::from_secs(3));
        idle_usage = UsageSample::take(&cluster).since(&idle_from);
        let run = cold_start(&cluster, &tokio, &activator, "xgboost-iris", &revision);
        assert_eq!(run.answer.status, 200, "cold start: {}", run.answer.body);
        assert_eq!(outputs(&run.answer.json()), expected, "after a cold start");
        run.print();
        cold_starts.push(run);
    }
    print_median(&cold_starts);

    // --- under load: replicas go up; a pod deleted under load loses no request -------
    let infer_path = "/v2/models/xgboost-iris/infer";
    let mut loaded_usage = Vec::new();
    let mut load_from = None;
    let mut deleted_one = false;
    let under_load = load::run(
        &tokio,
        &Load {
            activator: &activator,
            isvc: "xgboost-iris",
            path: infer_path,
            body: IRIS_REQUEST,
            concurrency: 16,
            duration: Duration::from_secs(60),
        },
        Duration::from_secs(10),
        |elapsed, peak| {
            // CPU and memory over the load's 4th to 9th second.
            if load_from.is_none() && elapsed > Duration::from_secs(4) {
                load_from = Some(UsageSample::take(&cluster));
            }
            if let Some(from) = load_from.as_ref().filter(|_| loaded_usage.is_empty()) {
                if elapsed > Duration::from_secs(9) {
                    loaded_usage = UsageSample::take(&cluster).since(from);
                }
            }
            // Once two pods serve, delete one (as a drain or an eviction would).
            let pods = revision_pods(&cluster, &revision);
            (!deleted_one && peak >= 2 && pods.len() >= 2).then(|| {
                deleted_one = true;
                let deleted = cluster.kubectl(["delete", "pod", &pods[0], "--wait=false"], "");
                assert_eq!(deleted.code, 0, "{}", deleted.stderr);
                format!("deleted pod {}", pods[0])
            })
        },
        || ready_pods(&cluster, &revision),
    );
    println!("under load: {under_load}");
    assert!(
        under_load.peak_pods >= 2,
        "replicas never went above one: {under_load}"
    );
    assert!(
        under_load.action.is_some(),
        "no pod was deleted under load: {under_load}"
    );
    assert_eq!(
        under_load.failed, 0,
        "requests failed under load: {under_load}"
    );
    print_usage(&idle_usage, &loaded_usage);

    // --- a rollout by kubectl apply of a new model fails no request -----------------
    let v1_path = "/v1/models/xgboost-iris:predict";
    let mut applied = false;
    let rollout = load::run(
        &tokio,
        &Load {
            activator: &activator,
            isvc: "xgboost-iris",
            path: v1_path,
            body: IRIS_V1,
            concurrency: 8,
            duration: Duration::from_secs(90),
        },
        Duration::from_secs(20),
        |elapsed, _| {
            (!applied && elapsed > Duration::from_secs(3)).then(|| {
                applied = true;
                apply(&cluster, &xgboost_iris_with(ONNX_MODEL, None));
                "applied the ONNX model".to_string()
            })
        },
        || 0,
    );
    println!("rollout under load: {rollout}");
    assert_eq!(
        rollout.failed, 0,
        "requests failed during the rollout: {rollout}"
    );
    for (body, count) in &rollout.bodies {
        let predictions = serde_json::from_str::<Value>(body).expect("JSON")["predictions"].clone();
        assert!(
            predictions == xgboost_v1 || predictions == onnx_v1,
            "{count} answers neither model gives: {body}"
        );
    }
    cluster.wait("the ONNX revision to take all traffic", |c| {
        latest_revision(c, "xgboost-iris") != revision && traffic(c, "xgboost-iris").len() == 1
    });
    let after = tokio.block_on(predict_v1(&activator, "xgboost-iris", IRIS_V1));
    assert_eq!(
        after.json()["predictions"],
        onnx_v1,
        "after the rollout: {}",
        after.body
    );

    // --- a canary at 20% splits within 3 points -----------------------------------
    apply(&cluster, &xgboost_iris_with(XGBOOST_MODEL, Some(20)));
    cluster.wait("the canary split in the status", |c| {
        traffic(c, "xgboost-iris").len() == 2
    });
    let split = load::run(
        &tokio,
        &Load {
            activator: &activator,
            isvc: "xgboost-iris",
            path: v1_path,
            body: IRIS_V1,
            concurrency: 4,
            duration: Duration::from_secs(15),
        },
        Duration::ZERO,
        |_, _| None,
        || 0,
    );
    assert_eq!(
        split.failed, 0,
        "requests failed during the canary: {split}"
    );
    let canary = split
        .bodies
        .iter()
        .filter(|(body, _)| {
            serde_json::from_str::<Value>(body).expect("JSON")["predictions"] == xgboost_v1
        })
        .map(|(_, n)| *n)
        .sum::<u64>();
    let share = 100.0 * canary as f64 / split.ok as f64;
    println!(
        "canary: {canary} of {} answers from the canary ({share:.1}%)",
        split.ok
    );
    assert!(
        (17.0..=23.0).contains(&share),
        "canaryTrafficPercent 20 sent {share:.1}% of {} requests to the canary",
        split.ok
    );

    // --- a transformer in front of a predictor whose model comes from S3 ------------
    let s3 = S3Server::start_on(NODE_IP);
    let model = std::fs::read(repo_root().join("examples/models/iris-xgboost/model.json"))
        .expect("read the example model");
    s3.put("models", "iris-xgboost/model.json", &model);
    apply(&cluster, &s3_credentials(&s3));
    apply(&cluster, &transformed_iris());
    cluster.wait("iris-transformed to be Ready", |c| {
        isvc(c, "iris-transformed").is_some_and(|isvc| condition_true(&isvc, "Ready"))
    });
    let transformed = tokio.block_on(predict_v1(&activator, "iris-transformed", IRIS_V1));
    assert_eq!(transformed.status, 200, "{}", transformed.body);
    let answer = transformed.json();
    assert_eq!(answer["transformed"], true, "{answer}");
    assert_eq!(
        answer["predictor_host"], "iris-transformed-predictor.default",
        "{answer}"
    );
    assert_eq!(answer["predictions"], transformed_v1, "{answer}");
    let fetched = cluster
        .json(&format!(
            "/api/v1/namespaces/{NAMESPACE}/pods?labelSelector=serving.kserve.io/inferenceservice=iris-transformed,component=predictor"
        ))
        .unwrap_or_default();
    let initialized = fetched["items"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|pod| {
            pod["status"]["initContainerStatuses"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| {
                    c["name"] == "storage-initializer" && c["state"]["terminated"]["exitCode"] == 0
                })
        });
    assert!(
        initialized,
        "no predictor pod of iris-transformed whose storage initializer fetched the model: {fetched}"
    );

    // --- a GPU model on a node without GPUs: Pending, says why, 504 after its timeout --
    apply(&cluster, &gpu_iris());
    cluster.wait("gpu-iris to say it cannot be scheduled", |c| {
        isvc(c, "gpu-iris").is_some_and(|isvc| {
            condition_reason(&isvc, "PredictorReady") == Some("Unschedulable".to_string())
        })
    });
    let gpu = isvc(&cluster, "gpu-iris").expect("gpu-iris");
    let message = condition_message(&gpu, "PredictorReady").unwrap_or_default();
    assert!(
        message.contains("nvidia.com/gpu"),
        "PredictorReady says: {message}"
    );
    println!("gpu-iris: PredictorReady Unknown, Unschedulable: {message}");
    let sent = Instant::now();
    let timed_out = tokio.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(120),
            predict_v1(&activator, "gpu-iris", IRIS_V1),
        )
        .await
        .expect("the request to gpu-iris hangs")
    });
    assert_eq!(timed_out.status, 504, "{}", timed_out.body);
    println!(
        "gpu-iris: 504 after {:.1?} (its timeout is 10 s)",
        sent.elapsed()
    );
    let others = tokio.block_on(predict_v1(&activator, "iris-transformed", IRIS_V1));
    assert_eq!(
        others.status, 200,
        "another service while gpu-iris waits: {}",
        others.body
    );

    // --- delete: every object and container goes ----------------------------------
    for name in ["xgboost-iris", "iris-transformed", "gpu-iris"] {
        let deleted = cluster.kubectl(["delete", "inferenceservice", name], "");
        assert_eq!(deleted.code, 0, "{}", deleted.stderr);
    }
    cluster.wait_until("the services' objects to go", |c| {
        let left: Vec<String> = ["xgboost-iris", "iris-transformed", "gpu-iris"]
            .iter()
            .flat_map(|name| owned_objects(c, name))
            .collect();
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{left:?}"))
        }
    });
    cluster.wait("the services' containers to go", |c| {
        let containers = c.ctr(&["containers", "list"]);
        !containers.contains("iris") && running_containers(c) == expected_containers(c)
    });

    steps.print();
}

/// Where `serval runtime` serves REST besides its port, in a pod's shared volume.
const RUNTIME_SOCKET: &str = "/var/run/serval-sockets/8080.sock";

/// Queue-proxies on this node whose pod has a connection accepted on [`RUNTIME_SOCKET`]:
/// a pod's network namespace lists its Unix sockets in `/proc/<pid>/net/unix`, and the
/// kernel names an accepted connection by its listener's path.
fn queue_proxies_connected_to_the_runtime_socket() -> usize {
    const CONNECTED: &str = "03";
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return 0;
    };
    processes
        .flatten()
        .filter(|p| {
            std::fs::read_to_string(p.path().join("comm"))
                .is_ok_and(|comm| comm.trim() == "serval-queue-pr")
        })
        .filter(|p| {
            std::fs::read_to_string(p.path().join("net/unix"))
                .unwrap_or_default()
                .lines()
                .any(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    fields.len() == 8 && fields[5] == CONNECTED && fields[7] == RUNTIME_SOCKET
                })
        })
        .count()
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create a temp dir");
    dir
}

fn cluster_file(cluster: &Cluster, name: &str, contents: &str) -> String {
    let path = cluster
        .kubeconfig()
        .parent()
        .expect("the cluster dir")
        .join(name);
    std::fs::write(&path, contents).expect("write a file for the cluster");
    path.display().to_string()
}

fn apply(cluster: &Cluster, yaml: &str) {
    let out = cluster.kubectl(["apply", "-f", "-"], yaml);
    assert_eq!(out.code, 0, "kubectl apply: {}\n{yaml}", out.stderr);
}

fn isvc(cluster: &Cluster, name: &str) -> Option<Value> {
    cluster.json(&format!(
        "/apis/serving.kserve.io/v1beta1/namespaces/{NAMESPACE}/inferenceservices/{name}"
    ))
}

fn latest_revision(cluster: &Cluster, name: &str) -> String {
    let isvc = isvc(cluster, name).expect("the InferenceService");
    isvc["status"]["components"]["predictor"]["latestReadyRevision"]
        .as_str()
        .unwrap_or_else(|| panic!("no latestReadyRevision in {isvc}"))
        .to_string()
}

fn service_ip(cluster: &Cluster, namespace: &str, name: &str) -> String {
    let service = cluster
        .json(&format!("/api/v1/namespaces/{namespace}/services/{name}"))
        .unwrap_or_else(|| panic!("no Service {namespace}/{name}"));
    service["spec"]["clusterIP"]
        .as_str()
        .expect("a cluster IP")
        .to_string()
}

/// Names of the revision's pods that are not being deleted.
fn revision_pods(cluster: &Cluster, revision: &str) -> Vec<String> {
    let pods = cluster
        .json(&format!(
            "/api/v1/namespaces/{NAMESPACE}/pods?labelSelector=serving.serval.dev/revision={revision}"
        ))
        .unwrap_or_default();
    pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|pod| pod["metadata"]["deletionTimestamp"].is_null())
        .filter_map(|pod| pod["metadata"]["name"].as_str().map(str::to_string))
        .collect()
}

/// How many of the revision's pods are Ready.
fn ready_pods(cluster: &Cluster, revision: &str) -> usize {
    let pods = cluster
        .json(&format!(
            "/api/v1/namespaces/{NAMESPACE}/pods?labelSelector=serving.serval.dev/revision={revision}"
        ))
        .unwrap_or_default();
    pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|pod| condition_true(pod, "Ready"))
        .count()
}

fn deployment_replicas(cluster: &Cluster, revision: &str) -> Option<i64> {
    cluster
        .json(&format!(
            "/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{revision}"
        ))
        .and_then(|d| d["spec"]["replicas"].as_i64())
}

/// What the controller made for `isvc` that still exists: Deployments, ReplicaSets, pods,
/// Services, EndpointSlices labelled with it.
fn owned_objects(cluster: &Cluster, isvc: &str) -> Vec<String> {
    let selector = format!("labelSelector=serving.kserve.io/inferenceservice={isvc}");
    let mut left = Vec::new();
    for (kind, path) in [
        (
            "deployment",
            format!("/apis/apps/v1/namespaces/{NAMESPACE}/deployments"),
        ),
        (
            "replicaset",
            format!("/apis/apps/v1/namespaces/{NAMESPACE}/replicasets"),
        ),
        ("pod", format!("/api/v1/namespaces/{NAMESPACE}/pods")),
        (
            "service",
            format!("/api/v1/namespaces/{NAMESPACE}/services"),
        ),
    ] {
        let list = cluster
            .json(&format!("{path}?{selector}"))
            .unwrap_or_default();
        for item in list["items"].as_array().into_iter().flatten() {
            left.push(format!(
                "{kind}/{}",
                item["metadata"]["name"].as_str().unwrap_or_default()
            ));
        }
    }
    left
}

/// Running containers on the node, as containerd counts them (sandboxes included).
fn running_containers(cluster: &Cluster) -> usize {
    cluster
        .ctr(&["tasks", "list"])
        .lines()
        .skip(1)
        .filter(|line| line.contains("RUNNING"))
        .count()
}

/// The containers the API server's running pods account for: one sandbox per pod plus
/// its running containers.
fn expected_containers(cluster: &Cluster) -> usize {
    let pods = cluster.json("/api/v1/pods").unwrap_or_default();
    pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|pod| pod["status"]["phase"] == "Running")
        .map(|pod| {
            1 + pod["status"]["containerStatuses"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|c| !c["state"]["running"].is_null())
                .count()
        })
        .sum()
}

/// The predictor's traffic targets in the status.
fn traffic(cluster: &Cluster, name: &str) -> Vec<Value> {
    isvc(cluster, name)
        .and_then(|isvc| {
            isvc["status"]["components"]["predictor"]["traffic"]
                .as_array()
                .cloned()
        })
        .unwrap_or_default()
}

fn condition_field(object: &Value, kind: &str, field: &str) -> Option<String> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)?[field]
        .as_str()
        .map(str::to_string)
}

fn condition_reason(object: &Value, kind: &str) -> Option<String> {
    condition_field(object, kind, "reason")
}

fn condition_message(object: &Value, kind: &str) -> Option<String> {
    condition_field(object, kind, "message")
}

/// A V2 answer's outputs, the part that depends on the model.
fn outputs(answer: &Value) -> Value {
    answer["outputs"].clone()
}

/// `body` to `path` on the activator, addressed to `isvc` by Host.
async fn predict_by_host(
    activator: &str,
    isvc: &str,
    path: &str,
    body: &str,
) -> serval_tests::http_client::Answer {
    let host = format!("{isvc}.{NAMESPACE}.example.com");
    send_with_headers(
        &http1(),
        "POST",
        &format!("http://{activator}{path}"),
        &[("host", &host)],
        body,
    )
    .await
    .expect("the activator answers by Host")
}

/// `body` to `isvc`'s V1 `:predict` through the activator.
async fn predict_v1(activator: &str, isvc: &str, body: &str) -> serval_tests::http_client::Answer {
    predict_by_host(activator, isvc, &format!("/v1/models/{isvc}:predict"), body).await
}

/// CPU and memory of each pod, idle and under load, from its containers' cgroups.
fn print_usage(idle: &[(String, f64, f64)], loaded: &[(String, f64, f64)]) {
    println!("\n| pod | CPU idle (m) | memory idle (MiB) | CPU under load (m) | memory under load (MiB) |");
    println!("|---|---|---|---|---|");
    let mut names: Vec<&String> = idle.iter().chain(loaded).map(|(n, _, _)| n).collect();
    names.sort();
    names.dedup();
    let find = |set: &[(String, f64, f64)], name: &str| {
        set.iter()
            .find(|(n, _, _)| n == name)
            .map_or(("-".to_string(), "-".to_string()), |(_, cpu, mem)| {
                (format!("{cpu:.0}"), format!("{mem:.1}"))
            })
    };
    for name in names {
        let (idle_cpu, idle_mem) = find(idle, name);
        let (load_cpu, load_mem) = find(loaded, name);
        println!("| {name} | {idle_cpu} | {idle_mem} | {load_cpu} | {load_mem} |");
    }
}

/// The median time of each cold-start event over `runs`, in the order the medians fall.
fn print_median(runs: &[ColdStart]) {
    let mut medians: Vec<(&str, f64)> = EVENTS
        .iter()
        .filter_map(|event| {
            let mut times: Vec<f64> = runs
                .iter()
                .filter_map(|run| run.marks.iter().find(|(name, _)| name == event))
                .map(|(_, at)| at.as_secs_f64() * 1e3)
                .collect();
            times.sort_by(f64::total_cmp);
            Some((*event, *times.get(times.len() / 2)?))
        })
        .collect();
    medians.sort_by(|a, b| a.1.total_cmp(&b.1));
    println!(
        "\n| cold start, median of {} (ms since the request) | at | phase |",
        runs.len()
    );
    println!("|---|---|---|");
    let mut previous = 0.0;
    for (event, median) in medians {
        println!("| {event} | {median:.0} | +{:.0} |", median - previous);
        previous = median;
    }
}
