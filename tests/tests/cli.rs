//! The `serval` binary as a user meets it: `crd`, `validate`, and the roles not built yet.

use serval_tests::{helm_bin, repo_root, run_serval};

#[test]
fn crd_prints_the_crds_as_yaml() {
    let (code, stdout, _) = run_serval(["crd"]);
    assert_eq!(code, 0);
    let names: Vec<String> = serde_yaml::Deserializer::from_str(&stdout)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &serde_yaml::Value| !v.is_null())
        .map(|v| v["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        [
            "inferenceservices.serving.kserve.io",
            "servingruntimes.serving.kserve.io",
            "clusterservingruntimes.serving.kserve.io",
            "localmodelcaches.serving.kserve.io"
        ]
    );
}

#[test]
fn chart_crds_match_the_types() {
    let (_, generated, _) = run_serval(["crd"]);
    let committed =
        std::fs::read_to_string(repo_root().join("helm/serval/crds/serval-crds.yaml")).unwrap();
    assert!(
        committed == generated,
        "helm/serval/crds/serval-crds.yaml is out of date: run `serval crd > helm/serval/crds/serval-crds.yaml`"
    );
}

#[test]
fn crds_fit_client_side_apply() {
    // `kubectl apply` keeps the whole object in an annotation limited to 256 KiB.
    let (_, generated, _) = run_serval(["crd"]);
    for doc in serde_yaml::Deserializer::from_str(&generated) {
        let value: serde_yaml::Value = serde::Deserialize::deserialize(doc).unwrap();
        if value.is_null() {
            continue;
        }
        let size = serde_json::to_string(&value).unwrap().len();
        assert!(
            size < 256 * 1024,
            "{} is {size} bytes",
            value["metadata"]["name"].as_str().unwrap()
        );
    }
}

#[test]
fn chart_lints_and_renders() {
    let helm = helm_bin();
    let chart = repo_root().join("helm/serval");
    let lint = std::process::Command::new(&helm)
        .arg("lint")
        .arg(&chart)
        .output()
        .unwrap();
    assert!(
        lint.status.success(),
        "helm lint: {}",
        String::from_utf8_lossy(&lint.stdout)
    );
    let template = std::process::Command::new(&helm)
        .args(["template", "serval"])
        .arg(&chart)
        .arg("--include-crds")
        .output()
        .unwrap();
    assert!(
        template.status.success(),
        "{}",
        String::from_utf8_lossy(&template.stderr)
    );
    let rendered = String::from_utf8_lossy(&template.stdout);
    assert!(rendered.contains("name: inferenceservices.serving.kserve.io"));
}

#[test]
fn validate_accepts_the_valid_corpus_and_the_examples() {
    let (code, stdout, stderr) = run_serval(["validate", "tests/manifests/valid", "examples"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("InferenceService/sklearn-iris: valid"),
        "{stdout}"
    );
    assert!(!stderr.contains("unknown field"), "{stderr}");
}

#[test]
fn validate_names_file_and_field_and_fails() {
    let (code, stdout, stderr) = run_serval([
        "validate",
        "tests/manifests/valid/sklearn-iris.yaml",
        "tests/manifests/invalid/min-greater-than-max.yaml",
        "tests/manifests/invalid/unknown-scale-metric.yaml",
    ]);
    assert_eq!(code, 1);
    assert!(
        stdout.contains("3 document(s) checked, 2 invalid"),
        "{stdout}"
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "one line per problem: {stderr}");
    assert!(lines[0].starts_with(
        "tests/manifests/invalid/min-greater-than-max.yaml: InferenceService/bad-replicas: spec.predictor.minReplicas:"
    ));
    assert!(lines[1].contains("spec.predictor.scaleMetric: unsupported value \"latency\""));
}

#[test]
fn validate_reports_unreadable_input_without_panicking() {
    let dir = std::env::temp_dir().join(format!("serval-validate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let broken = dir.join("broken.yaml");
    std::fs::write(
        &broken,
        "apiVersion: serving.kserve.io/v1beta1\nkind: [unclosed\n",
    )
    .unwrap();
    let missing = dir.join("missing.yaml");
    let (code, _, stderr) = run_serval([
        std::ffi::OsStr::new("validate"),
        broken.as_os_str(),
        missing.as_os_str(),
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("broken.yaml: document 1: invalid YAML"),
        "{stderr}"
    );
    assert!(stderr.contains("missing.yaml: cannot read"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn kubernetes_roles_without_a_cluster_say_so_in_one_line() {
    for (role, listen) in [
        ("autoscaler", "--listen=127.0.0.1:0"),
        ("activator", "--listen=127.0.0.1:0"),
        ("controller", "--health-listen=127.0.0.1:0"),
    ] {
        let dir = std::env::temp_dir().join(format!("serval-no-cluster-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let output = std::process::Command::new(serval_tests::serval_bin())
            .args([role, listen])
            .env("KUBECONFIG", dir.join("missing-kubeconfig"))
            .env("HOME", &dir)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "serval {role}: cannot reach the Kubernetes API server"
            )),
            "{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
