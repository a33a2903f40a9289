//! The admission webhook's decisions, pure: an `AdmissionReview` in, its answer out.
//! Validation is `serval validate`'s (the CRD schema, then the rules a schema cannot say),
//! so `kubectl apply` of an invalid InferenceService fails naming the field; defaulting
//! fills what KServe's defaulter fills, the model containers' resources.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};
use serval_api::manifest::check_document;

/// KServe's default resources for a component container that states none.
const DEFAULT_CPU: &str = "1";
const DEFAULT_MEMORY: &str = "2Gi";

/// The answer to one AdmissionReview (`v1` or `v1beta1`, answered in the same version).
pub fn answer(review: &Value, mutate: bool) -> Value {
    let api_version = review
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("admission.k8s.io/v1");
    let request = review.get("request").cloned().unwrap_or(Value::Null);
    let uid = request.get("uid").cloned().unwrap_or(json!(""));
    let object = request.get("object").cloned().unwrap_or(Value::Null);
    let response = if mutate {
        defaulted(&object)
    } else {
        validated(object)
    };
    let mut response = response;
    response["uid"] = uid;
    json!({"apiVersion": api_version, "kind": "AdmissionReview", "response": response})
}

fn validated(object: Value) -> Value {
    let document = check_document(1, object);
    let warnings: Vec<String> = document.warnings.clone();
    if document.errors.is_empty() {
        return json!({"allowed": true, "warnings": warnings});
    }
    let what = format!(
        "{} {}",
        document.kind,
        document.name.as_deref().unwrap_or("(unnamed)")
    );
    let problems: Vec<String> = document.errors.iter().map(ToString::to_string).collect();
    json!({
        "allowed": false,
        "warnings": warnings,
        "status": {
            "code": 422,
            "reason": "Invalid",
            "message": format!("{what}: {}", problems.join("; ")),
        },
    })
}

/// JSON Patch operations that give each component container without `resources` KServe's
/// defaults. Only InferenceServices are defaulted.
fn defaulted(object: &Value) -> Value {
    let mut patch = Vec::new();
    if object.get("kind").and_then(Value::as_str) == Some("InferenceService") {
        let defaults = json!({
            "requests": {"cpu": DEFAULT_CPU, "memory": DEFAULT_MEMORY},
            "limits": {"cpu": DEFAULT_CPU, "memory": DEFAULT_MEMORY},
        });
        let predictor = &object["spec"]["predictor"];
        let frameworks = [
            "model",
            "sklearn",
            "xgboost",
            "lightgbm",
            "onnx",
            "tensorflow",
            "pytorch",
            "triton",
            "pmml",
            "paddle",
            "huggingface",
        ];
        for field in frameworks {
            if predictor.get(field).is_some_and(Value::is_object)
                && predictor[field].get("resources").is_none()
            {
                patch.push(json!({
                    "op": "add",
                    "path": format!("/spec/predictor/{field}/resources"),
                    "value": defaults,
                }));
            }
        }
        for component in ["predictor", "transformer", "explainer"] {
            let containers = object["spec"][component]["containers"].as_array();
            for (i, container) in containers.into_iter().flatten().enumerate() {
                if container.get("resources").is_none() {
                    patch.push(json!({
                        "op": "add",
                        "path": format!("/spec/{component}/containers/{i}/resources"),
                        "value": defaults,
                    }));
                }
            }
        }
    }
    if patch.is_empty() {
        return json!({"allowed": true});
    }
    let encoded = STANDARD.encode(serde_json::to_vec(&patch).unwrap_or_default());
    json!({"allowed": true, "patchType": "JSONPatch", "patch": encoded})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn review(object: Value) -> Value {
        json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {"uid": "u-1", "operation": "CREATE", "object": object},
        })
    }

    fn isvc(predictor: Value) -> Value {
        json!({
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": {"name": "iris", "namespace": "ml"},
            "spec": {"predictor": predictor},
        })
    }

    #[test]
    fn an_invalid_service_is_refused_naming_the_field() {
        let bad =
            isvc(json!({"minReplicas": 5, "maxReplicas": 2, "sklearn": {"storageUri": "gs://m"}}));
        let answer = answer(&review(bad), false);
        assert_eq!(answer["response"]["uid"], "u-1");
        assert_eq!(answer["response"]["allowed"], false);
        let message = answer["response"]["status"]["message"].as_str().unwrap();
        assert!(message.contains("spec.predictor.minReplicas"), "{message}");
        assert!(message.starts_with("InferenceService iris"), "{message}");

        let good = isvc(json!({"sklearn": {"storageUri": "gs://m"}}));
        assert_eq!(answer_of(good), json!(true));
    }

    fn answer_of(object: Value) -> Value {
        answer(&review(object), false)["response"]["allowed"].clone()
    }

    #[test]
    fn defaulting_adds_kserves_resources_where_none_are_given() {
        let object = isvc(json!({"sklearn": {"storageUri": "gs://m"}}));
        let answer = answer(&review(object), true);
        assert_eq!(answer["response"]["patchType"], "JSONPatch");
        let patch = STANDARD
            .decode(answer["response"]["patch"].as_str().unwrap())
            .unwrap();
        let patch: Value = serde_json::from_slice(&patch).unwrap();
        assert_eq!(
            patch,
            json!([{"op": "add", "path": "/spec/predictor/sklearn/resources", "value": {
                "requests": {"cpu": "1", "memory": "2Gi"},
                "limits": {"cpu": "1", "memory": "2Gi"},
            }}])
        );
        let given = isvc(json!({"sklearn": {"storageUri": "gs://m", "resources": {}}}));
        assert!(answer_of_mutate(given).get("patch").is_none());
    }

    fn answer_of_mutate(object: Value) -> Value {
        answer(&review(object), true)["response"].clone()
    }
}
