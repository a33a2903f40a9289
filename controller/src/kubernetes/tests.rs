//! The Kubernetes objects of a revision, built without a cluster.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;
use serval_api::inference_service::ComponentKind;
use serval_api::{ClusterServingRuntime, InferenceService};

use super::health::revision_health;
use super::revision::{revision_deployment, revision_template};
use super::storage::{storage_problem, ModelCacheSettings, StorageSecret};
use super::Settings;
use crate::rollout::RevisionHealth;

fn isvc(yaml: &str) -> InferenceService {
    let mut isvc = crate::rollout::parse_isvc(yaml);
    isvc.metadata.namespace = Some("ml".to_string());
    isvc.metadata.uid = Some("uid-1".to_string());
    isvc
}

fn runtimes() -> Vec<ClusterServingRuntime> {
    let value: serde_yaml::Value = serde_yaml::from_str(
        r#"
apiVersion: serving.kserve.io/v1alpha1
kind: ClusterServingRuntime
metadata: {name: kserve-sklearnserver}
spec:
  annotations: {serving.serval.dev/queue-depth-metric: "sklearn:waiting", autoscaling.knative.dev/target: "9"}
  supportedModelFormats: [{name: sklearn, version: "1", autoSelect: true}]
  protocolVersions: [v1, v2]
  containers:
  - name: kserve-container
    image: kserve/sklearnserver:v0.16.0
    args: ["--model_name={{.Name}}", "--model_dir=/mnt/models"]
"#,
    )
    .unwrap();
    vec![serde_json::from_value(serde_json::to_value(value).unwrap()).unwrap()]
}

fn settings() -> Settings {
    Settings {
        image: "serval:test".to_string(),
        domain: "example.com".to_string(),
        system_namespace: "serval-system".to_string(),
        activator_service: "serval-activator".to_string(),
        cluster_suffix: "svc.cluster.local".to_string(),
        model_cache: Some(ModelCacheSettings {
            host_path: "/var/cache/serval/models".to_string(),
            claim: None,
            max_size: Some("100Gi".to_string()),
        }),
        image_volumes: false,
    }
}

const SKLEARN: &str = r#"
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: iris
  annotations: {autoscaling.knative.dev/initial-scale: "0", autoscaling.knative.dev/target: "3"}
spec:
  predictor:
    minReplicas: 2
    model:
      modelFormat: {name: sklearn}
      runtimeVersion: v0.17.0
      storageUri: s3://bucket/iris
      args: ["--workers=2"]
"#;

#[test]
fn the_model_spec_is_laid_over_the_runtime_container() {
    let isvc = isvc(SKLEARN);
    let template = revision_template(&isvc, ComponentKind::Predictor, &[], &runtimes()).unwrap();
    assert_eq!(
        template.container.image.as_deref(),
        Some("kserve/sklearnserver:v0.17.0")
    );
    assert_eq!(
        template.container.args.as_deref().unwrap(),
        [
            "--model_name=iris",
            "--model_dir=/mnt/models",
            "--workers=2"
        ]
    );
    let deployment: Deployment = revision_deployment(
        &isvc,
        &template,
        "iris-predictor-1",
        "abc",
        &settings(),
        &[],
    );
    let value = serde_json::to_value(&deployment).unwrap();
    assert_eq!(
        value["metadata"]["annotations"]["autoscaling.knative.dev/target"],
        "3"
    );
    // Knative's rule: never below minReplicas, whatever the initial scale says.
    assert_eq!(value["spec"]["replicas"], 2);
    assert_eq!(
        value["metadata"]["annotations"]["serving.serval.dev/template-hash"],
        "abc"
    );
    assert_eq!(value["metadata"]["ownerReferences"][0]["uid"], "uid-1");
    let pod = &value["spec"]["template"]["spec"];
    assert_eq!(pod["volumes"][0]["name"], "kserve-provision-location");
    assert_eq!(
        pod["containers"][0]["volumeMounts"][0],
        json!({"name": "kserve-provision-location", "mountPath": "/mnt/models", "readOnly": true})
    );
    assert_eq!(pod["initContainers"][0]["image"], "serval:test");
}

fn pod_spec(yaml: &str, secrets: &[StorageSecret]) -> serde_json::Value {
    let isvc = isvc(yaml);
    let template = revision_template(&isvc, ComponentKind::Predictor, &[], &runtimes()).unwrap();
    let deployment = revision_deployment(
        &isvc,
        &template,
        "iris-predictor-1",
        "abc",
        &settings(),
        secrets,
    );
    serde_json::to_value(&deployment).unwrap()["spec"]["template"]["spec"].clone()
}

#[test]
fn the_service_account_s3_secret_reaches_the_initializer_by_reference() {
    let secret = StorageSecret {
        name: "s3creds".to_string(),
        annotations: [
            ("serving.kserve.io/s3-endpoint", "minio.storage:9000"),
            ("serving.kserve.io/s3-usehttps", "0"),
            ("serving.kserve.io/s3-region", "eu-west-1"),
            ("serving.kserve.io/s3-verifyssl", "0"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        keys: vec![
            "AWS_ACCESS_KEY_ID".to_string(),
            "AWS_SECRET_ACCESS_KEY".to_string(),
        ],
    };
    // A Secret listed first that holds other keys takes none of these.
    let hf = StorageSecret {
        name: "hf-token".to_string(),
        keys: vec!["HF_TOKEN".to_string()],
        ..Default::default()
    };
    let pod = pod_spec(SKLEARN, &[hf, secret]);
    let init = &pod["initContainers"][0];
    assert_eq!(
        init["args"],
        json!(["storage-init", "s3://bucket/iris", "/mnt/models"])
    );
    let env = init["env"].as_array().unwrap();
    let var = |name: &str| {
        env.iter()
            .find(|e| e["name"] == name)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(
        var("AWS_SECRET_ACCESS_KEY")["valueFrom"]["secretKeyRef"],
        json!({"name": "s3creds", "key": "AWS_SECRET_ACCESS_KEY"})
    );
    assert_eq!(
        var("HF_TOKEN")["valueFrom"]["secretKeyRef"]["name"],
        "hf-token"
    );
    assert!(var("AZ_CLIENT_SECRET").is_null(), "no Secret holds it");
    assert_eq!(
        var("AWS_ENDPOINT_URL")["value"],
        "http://minio.storage:9000"
    );
    assert_eq!(var("S3_ENDPOINT")["value"], "minio.storage:9000");
    assert_eq!(var("S3_USE_HTTPS")["value"], "0");
    assert_eq!(var("AWS_REGION")["value"], "eu-west-1");
    assert_eq!(var("S3_VERIFY_SSL")["value"], "0");
    // No secret value is ever written into the Deployment.
    assert!(env
        .iter()
        .all(|e| e.get("value").is_none() || e["name"] != "AWS_SECRET_ACCESS_KEY"));
    assert_eq!(init["securityContext"]["runAsNonRoot"], true);
}

#[test]
fn storage_uris_pvc_and_the_node_model_cache_shape_the_pod() {
    let many = SKLEARN.replace(
        "      storageUri: s3://bucket/iris\n",
        "      storageUri: s3://bucket/iris\n      storageUris:\n      - {uri: \"gs://bucket/tokenizer\", mountPath: /mnt/tokenizer}\n",
    );
    let pod = pod_spec(&many, &[]);
    assert_eq!(
        pod["initContainers"][0]["args"],
        json!([
            "storage-init",
            "s3://bucket/iris",
            "/mnt/models",
            "gs://bucket/tokenizer",
            "/mnt/tokenizer"
        ])
    );
    let mounts = &pod["containers"][0]["volumeMounts"];
    assert_eq!(mounts[1]["mountPath"], "/mnt/tokenizer");

    let claim = SKLEARN.replace("s3://bucket/iris", "pvc://models-claim/iris/v1");
    let pod = pod_spec(&claim, &[]);
    assert!(pod.get("initContainers").is_none(), "{pod}");
    assert_eq!(
        pod["containers"][0]["volumeMounts"][0],
        json!({"name": "kserve-pvc-source-0", "mountPath": "/mnt/models", "subPath": "iris/v1", "readOnly": true})
    );
    assert_eq!(
        pod["volumes"][0]["persistentVolumeClaim"]["claimName"],
        "models-claim"
    );

    let cached = SKLEARN.replace(
        "autoscaling.knative.dev/target: \"3\"}",
        "autoscaling.knative.dev/target: \"3\", serving.serval.dev/model-cache: \"true\"}",
    );
    let pod = pod_spec(&cached, &[]);
    assert_eq!(
        pod["initContainers"][0]["args"],
        json!([
            "storage-init",
            "--cache-dir=/var/cache/serval/models",
            "--cache-max-size=100Gi",
            "s3://bucket/iris"
        ])
    );
    assert_eq!(
        pod["containers"][0]["volumeMounts"][0],
        json!({
            "name": "serval-model-cache",
            "mountPath": "/mnt/models",
            "subPath": format!("{}/model", serval_api::model_cache::entry_name("s3://bucket/iris")),
            "readOnly": true
        })
    );
    assert_eq!(
        pod["volumes"][0]["hostPath"]["path"],
        "/var/cache/serval/models"
    );
}

#[test]
fn oci_models_run_as_modelcars_image_volumes_or_a_clear_problem() {
    let car = SKLEARN.replace("s3://bucket/iris", "oci://registry.example/models/iris:1");
    let pod = pod_spec(&car, &[]);
    assert_eq!(pod["shareProcessNamespace"], true);
    assert_eq!(pod["initContainers"][0]["name"], "modelcar-init");
    assert_eq!(
        pod["initContainers"][0]["image"],
        "registry.example/models/iris:1"
    );
    assert_eq!(
        pod["initContainers"].as_array().unwrap().len(),
        1,
        "no storage initializer"
    );
    let modelcar = &pod["containers"][2];
    assert_eq!(modelcar["name"], "modelcar");
    assert_eq!(
        modelcar["command"][2],
        "ln -sfn /proc/$$$$/root/models /mnt/models && sleep infinity"
    );
    // The runtime reads the model through /proc/<pid>/root: both run as one user.
    assert_eq!(modelcar["securityContext"]["runAsUser"], 1010);
    assert_eq!(pod["containers"][0]["securityContext"]["runAsUser"], 1010);
    assert_eq!(modelcar["volumeMounts"][0]["mountPath"], "/mnt");
    assert_eq!(pod["containers"][0]["volumeMounts"][0]["mountPath"], "/mnt");

    let native = isvc(&SKLEARN.replace(
        "s3://bucket/iris",
        "oci+native://registry.example/models/iris:1",
    ));
    let template = revision_template(&native, ComponentKind::Predictor, &[], &runtimes()).unwrap();
    let problem = storage_problem(&template, &settings()).unwrap();
    assert_eq!(problem.reason, "ImageVolumeUnsupported");
    let with_volumes = Settings {
        image_volumes: true,
        ..settings()
    };
    assert!(storage_problem(&template, &with_volumes).is_none());
    let deployment = revision_deployment(
        &native,
        &template,
        "iris-predictor-1",
        "abc",
        &with_volumes,
        &[],
    );
    let pod = &serde_json::to_value(&deployment).unwrap()["spec"]["template"]["spec"];
    assert_eq!(
        pod["volumes"][0]["image"]["reference"],
        "registry.example/models/iris:1"
    );
    assert_eq!(pod["containers"][0]["volumeMounts"][0]["subPath"], "models");
}

#[test]
fn no_runtime_and_an_art_explainer_are_problems_that_name_the_field() {
    let pmml = isvc(&SKLEARN.replace("name: sklearn", "name: pmml"));
    let problem = revision_template(&pmml, ComponentKind::Predictor, &[], &runtimes()).unwrap_err();
    assert_eq!(problem.reason, "NoSupportingRuntime");
    assert!(
        problem.message.starts_with("spec.predictor"),
        "{}",
        problem.message
    );

    let art = isvc(&format!(
        "{SKLEARN}  explainer:\n    art:\n      type: SquareAttack\n"
    ));
    let problem = revision_template(&art, ComponentKind::Explainer, &[], &runtimes()).unwrap_err();
    assert!(
        problem.message.starts_with("spec.explainer.art"),
        "{}",
        problem.message
    );
}

fn pod(status: serde_json::Value) -> Pod {
    serde_json::from_value(json!({"metadata": {"name": "p"}, "status": status})).unwrap()
}

#[test]
fn health_reads_ready_replicas_and_stuck_containers() {
    let deployment = |status: serde_json::Value| -> Deployment {
        serde_json::from_value(json!({"metadata": {"name": "d"}, "status": status})).unwrap()
    };
    assert_eq!(
        revision_health(&deployment(json!({"readyReplicas": 1})), &[]),
        RevisionHealth::Ready
    );
    assert_eq!(
        revision_health(&deployment(json!({})), &[]),
        RevisionHealth::NotReady
    );
    let pulling = pod(json!({"containerStatuses": [{
        "name": "kserve-container", "ready": false, "restartCount": 0, "image": "x", "imageID": "",
        "state": {"waiting": {"reason": "ImagePullBackOff", "message": "pull access denied"}}
    }]}));
    match revision_health(&deployment(json!({})), &[&pulling]) {
        RevisionHealth::Failed { reason, message } => {
            assert_eq!(reason, "ImagePullBackOff");
            assert!(message.contains("pull access denied"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let pending = pod(json!({"conditions": [{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."
    }]}));
    match revision_health(&deployment(json!({})), &[&pending]) {
        RevisionHealth::Waiting { reason, message } => {
            assert_eq!(reason, "Unschedulable");
            assert_eq!(
                message,
                "pod p: 0/1 nodes are available: 1 Insufficient nvidia.com/gpu."
            );
        }
        other => panic!("{other:?}"),
    }
    let crashing_init = pod(json!({"initContainerStatuses": [{
        "name": "storage-initializer", "ready": false, "restartCount": 3, "image": "x", "imageID": "",
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"exitCode": 1, "message": "s3://bucket/iris: access denied"}}
    }]}));
    match revision_health(&deployment(json!({})), &[&crashing_init]) {
        RevisionHealth::Failed { reason, message } => {
            assert_eq!(reason, "StorageInitializerFailed");
            assert!(message.contains("access denied"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}
