//! The manifest corpus under `tests/manifests`: KServe-documented manifests must parse,
//! validate and round-trip unchanged; broken ones must fail naming the right field.

use std::path::{Path, PathBuf};

use serval_api::manifest::{parse_documents, Document, Resource};

fn corpus(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/manifests")
        .join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn documents(file: &Path) -> (String, Vec<Document>) {
    let text = std::fs::read_to_string(file).unwrap();
    let docs = parse_documents(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    (text, docs)
}

fn resource_json(resource: &Resource) -> serde_json::Value {
    match resource {
        Resource::InferenceService(r) => serde_json::to_value(r),
        Resource::ServingRuntime(r) => serde_json::to_value(r),
        Resource::ClusterServingRuntime(r) => serde_json::to_value(r),
    }
    .unwrap()
}

/// Kubernetes reads an integer quantity (`nvidia.com/gpu: 1`) as the string "1".
fn quantities_as_strings(value: &mut serde_json::Value, parent: &str) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if (parent == "limits" || parent == "requests") && child.is_number() {
                    *child = serde_json::Value::String(child.to_string());
                }
                quantities_as_strings(child, key);
            }
        }
        serde_json::Value::Array(items) => items
            .iter_mut()
            .for_each(|i| quantities_as_strings(i, parent)),
        _ => {}
    }
}

#[test]
fn corpus_is_large_enough() {
    assert!(corpus("valid").len() >= 15, "at least 15 valid manifests");
    assert!(
        corpus("invalid").len() >= 10,
        "at least 10 invalid manifests"
    );
}

#[test]
fn valid_manifests_parse_validate_and_round_trip() {
    for file in corpus("valid") {
        let (text, docs) = documents(&file);
        let originals: Vec<serde_json::Value> = serde_yaml::Deserializer::from_str(&text)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .filter(|v: &serde_yaml::Value| !v.is_null())
            .map(|v| serde_json::to_value(v).unwrap())
            .collect();
        assert_eq!(docs.len(), originals.len(), "{}", file.display());
        for (doc, mut original) in docs.iter().zip(originals) {
            let shown = format!("{} {}", file.display(), doc.describe());
            assert!(doc.errors.is_empty(), "{shown}: {:?}", doc.errors);
            let unknown: Vec<_> = doc
                .warnings
                .iter()
                .filter(|w| w.contains("unknown field"))
                .collect();
            assert!(unknown.is_empty(), "{shown}: {unknown:?}");
            if !doc.api_version.starts_with("serving.kserve.io/") {
                assert!(doc.resource.is_none(), "{shown}: foreign kinds are skipped");
                continue;
            }
            let resource = doc
                .resource
                .as_ref()
                .unwrap_or_else(|| panic!("{shown}: no resource"));
            quantities_as_strings(&mut original, "");
            assert_eq!(
                resource_json(resource),
                original,
                "{shown}: round trip changed the object"
            );
        }
    }
}

#[test]
fn invalid_manifests_name_the_field() {
    for file in corpus("invalid") {
        let (text, docs) = documents(&file);
        let expected: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .collect();
        assert!(
            !expected.is_empty(),
            "{}: no '# expect:' line",
            file.display()
        );
        let errors: Vec<String> = docs
            .iter()
            .flat_map(|d| d.errors.iter().map(|e| e.path.clone()))
            .collect();
        for path in expected {
            assert!(
                errors.iter().any(|e| e == path),
                "{}: expected an error at {path}, got {errors:?}",
                file.display()
            );
        }
        assert!(
            docs.iter().all(|d| d.resource.is_none()),
            "{}",
            file.display()
        );
    }
}

#[test]
fn legacy_framework_fields_normalise_to_model() {
    use serval_api::predictor::PredictorImplementation;
    let (_, docs) = documents(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/manifests/valid/sklearn-iris-legacy.yaml"),
    );
    let Some(Resource::InferenceService(isvc)) = &docs[0].resource else {
        panic!("not an isvc")
    };
    let Some(PredictorImplementation::Model(model)) = isvc.spec.predictor.implementation() else {
        panic!("legacy sklearn field did not normalise")
    };
    assert_eq!(model.model_format.name, "sklearn");
    assert_eq!(
        model.extension.storage_uri.as_deref(),
        Some("gs://kfserving-examples/models/sklearn/1.0/model")
    );
    assert_eq!(isvc.spec.predictor.component.min_replicas_or_default(), 1);
}

#[test]
fn unknown_fields_are_warnings_with_their_path() {
    let text = r#"
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: typo}
spec:
  predictor:
    minReplica: 0
    model:
      modelFormat: {name: sklearn}
      storageUri: gs://b/m
"#;
    let docs = parse_documents(text).unwrap();
    assert!(docs[0].errors.is_empty());
    assert_eq!(
        docs[0].warnings,
        vec!["spec.predictor.minReplica: unknown field, ignored"]
    );
}

#[test]
fn malformed_yaml_is_an_error_not_a_panic() {
    for text in [
        "spec: [unclosed",
        "- just\n- a list",
        "kind: InferenceService\napiVersion: serving.kserve.io/v1beta1\nspec: 3",
    ] {
        match parse_documents(text) {
            Err(_) => {}
            Ok(docs) => assert!(
                docs.iter().all(|d| !d.errors.is_empty()),
                "{text}: {docs:?}"
            ),
        }
    }
}
