//! The CRDs and the manifest corpus against a real API server (kube-apiserver 1.20 and etcd,
//! see `serval_tests::apiserver`; 1.20 is the oldest Kubernetes the chart's `kubeVersion`
//! admits): `serval crd` installs with kubectl and its CRDs become Established; every valid
//! manifest is created and stored unchanged; and the invalid corpus splits exactly as
//! observed between what the API server rejects (Kubernetes' own rules and the CRD schema),
//! what kubectl refuses before sending, and what only `serval validate` catches.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serval_tests::apiserver::ApiServer;
use serval_tests::{repo_root, run_serval};

const CRDS: [&str; 4] = [
    "inferenceservices.serving.kserve.io",
    "servingruntimes.serving.kserve.io",
    "clusterservingruntimes.serving.kserve.io",
    "localmodelcaches.serving.kserve.io",
];

/// One API server at a time: each is etcd plus a kube-apiserver, heavy on a small machine.
static ONE_SERVER: Mutex<()> = Mutex::new(());

fn start() -> (std::sync::MutexGuard<'static, ()>, ApiServer) {
    let guard = ONE_SERVER.lock().unwrap_or_else(|e| e.into_inner());
    (guard, ApiServer::start())
}

fn serval_crds() -> String {
    let (code, stdout, stderr) = run_serval(["crd"]);
    assert_eq!(code, 0, "serval crd: {stderr}");
    stdout
}

/// `serval crd | kubectl apply -f -`, then waits until all three CRDs are Established.
fn install_crds(server: &ApiServer) -> String {
    let applied = server.kubectl(["apply", "-f", "-"], &serval_crds());
    assert_eq!(applied.code, 0, "kubectl apply: {}", applied.stderr);
    server.wait_established(&CRDS);
    applied.stdout
}

fn corpus(kind: &str) -> Vec<PathBuf> {
    let dir = repo_root().join("tests/manifests").join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn file_name(path: &Path) -> &str {
    path.file_name().unwrap().to_str().unwrap()
}

fn documents(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &serde_yaml::Value| !v.is_null())
        .map(|v| serde_json::to_value(v).unwrap())
        .collect()
}

/// On 1.20 this needs every `enum` in the schemas to list only values: kubectl's client-side
/// validation (a 1.20 server has no server-side field validation) fails on a `null` member
/// ("unknown object type \"nil\""), and the server's v1-to-internal CRD conversion drops
/// out half-way on one, then refuses the CRD with "per-version schemas may not all be set to
/// identical values". `nullable: true` already admits null.
#[test]
fn serval_crds_install_with_kubectl_and_become_established() {
    let (_one, server) = start();

    // The client-side dry run: kubectl builds its patch against the server's OpenAPI.
    let dry = server.kubectl(["apply", "--dry-run=client", "-f", "-"], &serval_crds());
    assert_eq!(
        dry.code, 0,
        "kubectl apply --dry-run=client: {}",
        dry.stderr
    );
    for crd in CRDS {
        assert!(
            dry.stdout.contains(&format!(
                "customresourcedefinition.apiextensions.k8s.io/{crd} created (dry run)"
            )),
            "{}",
            dry.stdout
        );
    }

    let applied = install_crds(&server);
    for crd in CRDS {
        assert!(
            applied.contains(&format!(
                "customresourcedefinition.apiextensions.k8s.io/{crd} created"
            )),
            "{applied}"
        );
    }

    // Served as KServe serves them: v1beta1 InferenceService, v1alpha1 runtimes.
    let (status, body) = server.get("/apis/serving.kserve.io").unwrap();
    assert_eq!(status, 200, "{body}");
    let group: serde_json::Value = serde_json::from_str(&body).unwrap();
    let versions: Vec<&str> = group["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["v1beta1", "v1alpha1"], "{body}");
    for (version, kind, namespaced) in [
        ("v1beta1", "InferenceService", true),
        ("v1alpha1", "ServingRuntime", true),
        ("v1alpha1", "ClusterServingRuntime", false),
        ("v1alpha1", "LocalModelCache", false),
    ] {
        let (status, body) = server
            .get(&format!("/apis/serving.kserve.io/{version}"))
            .unwrap();
        assert_eq!(status, 200, "{body}");
        let list: serde_json::Value = serde_json::from_str(&body).unwrap();
        let resource = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["kind"] == kind && !r["name"].as_str().unwrap().contains('/'))
            .unwrap_or_else(|| panic!("{kind} not in {body}"));
        assert_eq!(resource["namespaced"], namespaced, "{kind}");
    }

    // Applying the same output again changes nothing.
    let again = server.kubectl(["apply", "-f", "-"], &serval_crds());
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(
        again.stdout.matches(" unchanged").count(),
        CRDS.len(),
        "{}",
        again.stdout
    );
}

#[test]
fn every_valid_manifest_is_created_and_stored_unchanged() {
    let (_one, server) = start();
    install_crds(&server);
    // The namespaces the corpus names (no controller runs, but a namespace is Active at once).
    for namespace in ["models", "llm"] {
        let created = server.kubectl(["create", "namespace", namespace], "");
        assert_eq!(created.code, 0, "{}", created.stderr);
    }

    let files = corpus("valid");
    assert!(files.len() >= 15, "the valid corpus: {files:?}");
    for file in &files {
        let name = file_name(file);
        let dry = server.kubectl(
            ["apply", "--dry-run=server", "-f"]
                .into_iter()
                .map(String::from)
                .chain([file.display().to_string()]),
            "",
        );
        assert_eq!(
            dry.code, 0,
            "{name}: kubectl apply --dry-run=server: {}",
            dry.stderr
        );
        let applied = server.kubectl(
            ["apply", "-f"]
                .into_iter()
                .map(String::from)
                .chain([file.display().to_string()]),
            "",
        );
        assert_eq!(applied.code, 0, "{name}: kubectl apply: {}", applied.stderr);
        assert!(applied.stderr.is_empty(), "{name}: {}", applied.stderr);

        // What the server keeps is what was written: the CRD schema knows every field the
        // corpus uses (an unknown field would be pruned without a word).
        for original in documents(file) {
            let api_version = original["apiVersion"].as_str().unwrap();
            if !api_version.starts_with("serving.kserve.io/") {
                continue;
            }
            let kind = original["kind"].as_str().unwrap();
            let object = original["metadata"]["name"].as_str().unwrap();
            let namespace = original["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default");
            let plural = match kind {
                "InferenceService" => "inferenceservices",
                "ServingRuntime" => "servingruntimes",
                "ClusterServingRuntime" => "clusterservingruntimes",
                other => panic!("{name}: unexpected kind {other}"),
            };
            let path = if kind == "ClusterServingRuntime" {
                format!("/apis/{api_version}/{plural}/{object}")
            } else {
                format!("/apis/{api_version}/namespaces/{namespace}/{plural}/{object}")
            };
            let (status, body) = server.get(&path).unwrap();
            assert_eq!(status, 200, "{name}: GET {path}: {body}");
            let stored: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(
                stored["spec"], original["spec"],
                "{name}: {kind}/{object} spec changed in storage"
            );
            for field in ["labels", "annotations"] {
                let mut stored = stored["metadata"][field].clone();
                if let Some(map) = stored.as_object_mut() {
                    // kubectl's own record of the last applied configuration.
                    map.remove("kubectl.kubernetes.io/last-applied-configuration");
                    if map.is_empty() {
                        stored = serde_json::Value::Null;
                    }
                }
                assert_eq!(
                    stored, original["metadata"][field],
                    "{name}: {kind}/{object} metadata.{field}"
                );
            }
        }
    }
}

/// Invalid manifests the API server itself rejects on a server-side dry run: Kubernetes'
/// object-name rule, or the CRD's OpenAPI schema (a `required` field, an `enum`, a `type`).
/// Each message names the field, as `serval validate` does.
const REJECTED_BY_THE_API_SERVER: &[(&str, &str)] = &[
    (
        "bad-name.yaml",
        "metadata.name: Invalid value: \"1Iris_Model\"",
    ),
    (
        "bad-protocol.yaml",
        "spec.predictor.model.protocolVersion: Unsupported value: \"v3\"",
    ),
    (
        "missing-model-format.yaml",
        "spec.predictor.model.modelFormat: Required value",
    ),
    (
        "unknown-scale-metric.yaml",
        "spec.predictor.scaleMetric: Unsupported value: \"latency\"",
    ),
    (
        "wrong-type.yaml",
        "spec.predictor.maxReplicas: Invalid value: \"string\"",
    ),
];

/// Invalid manifests kubectl refuses before any request, because the server could not take
/// them either: it serves no `serving.kubeflow.org/v1alpha2` (the KFServing group, gone since
/// KServe 0.7), and annotations are strings in every object's metadata. (Checked against the
/// server too, below.)
const REJECTED_BY_KUBECTL: &[(&str, &str)] = &[
    (
        "old-api-version.yaml",
        "no matches for kind \"InferenceService\" in version \"serving.kubeflow.org/v1alpha2\"",
    ),
    (
        "unquoted-annotation.yaml",
        "ObjectMeta.metadata.annotations of type string",
    ),
];

/// Invalid manifests the API server accepts: only `serval validate` (and Serval's controller)
/// rejects them. Some rules cannot be a CRD schema at all: cross-field ones (minReplicas <=
/// maxReplicas; exactly one predictor implementation; a GPU target is a percentage only when
/// scaleMetric is gpu), the meaning of annotation values (Knative's autoscaling window and
/// target), runtime argument templates and format priorities, and the storage URI schemes
/// Serval can fetch. Others could be schema bounds but are not in the generated CRD (as in
/// KServe's own): no `minimum` on minReplicas, containerConcurrency or maxBatchSize, no
/// `maximum` on canaryTrafficPercent, no `minItems` on containers, and a transformer's
/// `containers` is not `required`.
const ONLY_SERVAL_VALIDATE: &[&str] = &[
    "bad-annotations.yaml",
    "bad-storage-uri.yaml",
    "batcher-and-gpu-target.yaml",
    "canary-out-of-range.yaml",
    "min-greater-than-max.yaml",
    "negative-min.yaml",
    "no-implementation.yaml",
    "runtime-bad-template.yaml",
    "runtime-without-containers.yaml",
    "transformer-without-containers.yaml",
    "two-implementations.yaml",
];

/// The fields a corpus file's `# expect:` lines name (what `serval validate` must report).
fn expected_fields(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("# expect: "))
        .map(String::from)
        .collect()
}

fn server_dry_run(server: &ApiServer, file: &Path) -> serval_tests::apiserver::Output {
    // --validate=false: no client-side schema check, so the server decides.
    server.kubectl(
        ["apply", "--dry-run=server", "--validate=false", "-f"]
            .into_iter()
            .map(String::from)
            .chain([file.display().to_string()]),
        "",
    )
}

#[test]
fn invalid_manifests_split_between_the_api_server_and_serval_validate() {
    let (_one, server) = start();
    install_crds(&server);

    // Every invalid manifest is in exactly one group.
    let mut grouped: Vec<&str> = REJECTED_BY_THE_API_SERVER
        .iter()
        .chain(REJECTED_BY_KUBECTL)
        .map(|(f, _)| *f)
        .chain(ONLY_SERVAL_VALIDATE.iter().copied())
        .collect();
    grouped.sort_unstable();
    let files = corpus("invalid");
    let names: Vec<&str> = files.iter().map(|f| file_name(f)).collect();
    assert_eq!(
        grouped, names,
        "classify every tests/manifests/invalid file here"
    );
    let path = |name: &str| repo_root().join("tests/manifests/invalid").join(name);

    for (name, message) in REJECTED_BY_THE_API_SERVER {
        let out = server_dry_run(&server, &path(name));
        assert_ne!(
            out.code, 0,
            "{name}: the API server accepted it: {}",
            out.stdout
        );
        assert!(
            out.stderr
                .contains(&format!("The {} ", kind_of(&path(name))))
                && out.stderr.contains(" is invalid: "),
            "{name}: not the API server's validation error: {}",
            out.stderr
        );
        assert!(out.stderr.contains(message), "{name}: {}", out.stderr);
        for field in expected_fields(&path(name)) {
            assert!(
                out.stderr.contains(&format!("{field}: ")),
                "{name}: {field} not named: {}",
                out.stderr
            );
        }
    }

    for (name, message) in REJECTED_BY_KUBECTL {
        let out = server_dry_run(&server, &path(name));
        assert_ne!(out.code, 0, "{name}: accepted: {}", out.stdout);
        assert!(out.stderr.contains(message), "{name}: {}", out.stderr);
    }
    // The server agrees: no such group, and a number is no annotation.
    let (status, body) = server.get("/apis/serving.kubeflow.org/v1alpha2").unwrap();
    assert_eq!(status, 404, "{body}");
    let unquoted = &documents(&path("unquoted-annotation.yaml"))[0];
    let (status, body) = server
        .request(
            "POST",
            "/apis/serving.kserve.io/v1beta1/namespaces/default/inferenceservices?dryRun=All",
            &unquoted.to_string(),
        )
        .unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("Annotations: ReadString"), "{body}");

    for name in ONLY_SERVAL_VALIDATE {
        let out = server_dry_run(&server, &path(name));
        assert_eq!(
            out.code, 0,
            "{name}: now rejected by the API server (move it to REJECTED_BY_THE_API_SERVER): {}",
            out.stderr
        );
        assert!(
            out.stdout.contains("(server dry run)"),
            "{name}: {}",
            out.stdout
        );
        let (code, _, stderr) =
            run_serval(["validate".to_string(), path(name).display().to_string()]);
        assert_eq!(code, 1, "{name}: serval validate accepted it");
        for field in expected_fields(&path(name)) {
            assert!(
                stderr.contains(&format!(": {field}: ")),
                "{name}: serval validate does not name {field}: {stderr}"
            );
        }
    }
}

fn kind_of(path: &Path) -> String {
    documents(path)[0]["kind"].as_str().unwrap().to_string()
}
