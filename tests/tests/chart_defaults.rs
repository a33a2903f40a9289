//! The Helm chart agrees with the code it deploys: its `config-autoscaler` ConfigMap holds
//! exactly the autoscaler's defaults (every key the autoscaler reads, each at its default),
//! and the controller is pointed at the activator Service the chart makes, on the port the
//! InferenceServices' Services are called on.

use std::collections::BTreeMap;

use serval_autoscaler::AutoscalerConfig;
use serval_tests::{helm_bin, repo_root};

fn rendered() -> Vec<serde_yaml::Value> {
    let out = std::process::Command::new(helm_bin())
        .args(["template", "serval"])
        .arg(repo_root().join("helm/serval"))
        .args(["--namespace", "serval-system"])
        .output()
        .expect("run helm");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .split("\n---")
        .filter_map(|doc| serde_yaml::from_str::<serde_yaml::Value>(doc).ok())
        .filter(|doc| doc.get("kind").is_some())
        .collect()
}

fn find<'a>(docs: &'a [serde_yaml::Value], kind: &str, name: &str) -> &'a serde_yaml::Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("the chart has no {kind} {name}"))
}

#[test]
fn config_autoscaler_holds_the_autoscalers_defaults() {
    let docs = rendered();
    let config_map = find(&docs, "ConfigMap", "config-autoscaler");
    let data: BTreeMap<String, String> =
        serde_yaml::from_value(config_map["data"].clone()).expect("string data");
    let parsed = AutoscalerConfig::from_map(&data).expect("the chart's keys parse");
    assert_eq!(parsed, AutoscalerConfig::default());
    // Every key is one the autoscaler reads: a nonsense value is refused or changes it.
    for key in data.keys() {
        let mut changed = data.clone();
        changed.insert(key.clone(), "not-a-value".to_string());
        let read = AutoscalerConfig::from_map(&changed);
        assert!(
            read.as_ref() != Ok(&parsed),
            "{key} is not read by the autoscaler"
        );
    }
    assert!(
        data.len() >= 20,
        "the chart sets every Knative key: {}",
        data.len()
    );
}

#[test]
fn the_controller_points_at_the_charts_activator_service() {
    let docs = rendered();
    let controller = find(&docs, "Deployment", "serval-controller");
    let args: Vec<String> = serde_yaml::from_value(
        controller["spec"]["template"]["spec"]["containers"][0]["args"].clone(),
    )
    .unwrap();
    let activator_service = args
        .iter()
        .find_map(|a| a.strip_prefix("--activator-service="))
        .expect("--activator-service");
    let service = find(&docs, "Service", activator_service);
    let ports = service["spec"]["ports"].as_sequence().unwrap();
    assert!(
        ports.iter().any(|p| p["port"] == 80),
        "InferenceService Services are called on port 80: {ports:?}"
    );
    assert!(args.iter().any(|a| a == "--leader-election"));
    assert!(args.iter().any(|a| a.starts_with("--webhook-listen=")));
}
