//! `serval runtime` on every generated model answers what Python predicted, over V1,
//! V2 REST and V2 gRPC.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use serval_runtimes::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use serval_runtimes::proto::model_infer_request::InferInputTensor;
use serval_runtimes::proto::{InferTensorContents, ModelInferRequest, ModelMetadataRequest};
use serval_tests::http_client::{http1, send};
use serval_tests::runtime::{test_models, Runtime};

/// Absolute up to 1, relative beyond: what the tree evaluator guarantees against Python.
fn close(got: f64, want: f64, tolerance: f64) -> bool {
    (got.is_nan() && want.is_nan()) || (got - want).abs() <= tolerance * want.abs().max(1.0)
}

fn numbers(value: &Value) -> Vec<f64> {
    match value {
        Value::Array(items) => items.iter().flat_map(numbers).collect(),
        Value::Null => vec![f64::NAN],
        other => vec![other
            .as_f64()
            .unwrap_or_else(|| panic!("not a number: {other}"))],
    }
}

fn assert_close(what: &str, got: &[f64], want: &[f64], tolerance: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            close(*g, *w, tolerance),
            "{what}: value {i}: {g} vs Python's {w}"
        );
    }
}

fn dirs(under: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(under)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("expected.json").is_file())
        .collect();
    dirs.sort();
    dirs
}

fn expected(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap()
}

async fn post(url: &str, body: &Value) -> Value {
    let answer = send(&http1(), "POST", url, &body.to_string())
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{url}: {}", answer.body);
    answer.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tree_models_match_python_over_every_protocol() {
    let dirs = dirs(test_models());
    assert!(dirs.len() >= 10, "{dirs:?}");
    for dir in dirs {
        let name = dir.file_name().unwrap().to_str().unwrap().to_owned();
        let expected = expected(&dir);
        let rows = &expected["inputs"];
        let n_rows = rows.as_array().unwrap().len();
        let n_features = expected["n_features"].as_u64().unwrap();
        let want = numbers(&expected["predictions"]);
        let runtime = Runtime::start(&name, &dir, &[]).await;

        let v1 = post(
            &format!("{}/v1/models/{name}:predict", runtime.url),
            &json!({ "instances": rows }),
        )
        .await;
        assert_close(
            &format!("{name} V1"),
            &numbers(&v1["predictions"]),
            &want,
            1e-5,
        );

        let request = json!({ "inputs": [{ "name": "input-0", "shape": [n_rows, n_features], "datatype": "FP64", "data": rows }] });
        let v2 = post(&format!("{}/v2/models/{name}/infer", runtime.url), &request).await;
        assert_close(
            &format!("{name} V2"),
            &numbers(&v2["outputs"][0]["data"]),
            &want,
            1e-5,
        );

        let mut grpc = GrpcInferenceServiceClient::connect(runtime.grpc_url())
            .await
            .unwrap();
        let flat: Vec<f64> = numbers(rows);
        let input = InferInputTensor {
            name: "input-0".into(),
            datatype: "FP64".into(),
            shape: vec![n_rows as i64, n_features as i64],
            contents: Some(InferTensorContents {
                fp64_contents: flat,
                ..Default::default()
            }),
            ..Default::default()
        };
        let response = grpc
            .model_infer(ModelInferRequest {
                model_name: name.clone(),
                inputs: vec![input],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let raw = &response.raw_output_contents[0];
        let got: Vec<f64> = raw
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_close(&format!("{name} gRPC"), &got, &want, 1e-5);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onnx_models_match_onnxruntime_and_sklearn() {
    let dirs = dirs(&test_models().join("onnx"));
    assert!(dirs.len() >= 6, "{dirs:?}");
    for dir in dirs {
        let name = dir.file_name().unwrap().to_str().unwrap().to_owned();
        let expected = expected(&dir);
        let rows = &expected["inputs"];
        let n_rows = rows.as_array().unwrap().len();
        let runtime = Runtime::start(&name, &dir, &[]).await;

        // V2 REST: every output as onnxruntime gave it in Python.
        let request = json!({ "inputs": [{ "name": expected["input_name"], "shape": [n_rows, expected["n_features"]], "datatype": "FP32", "data": rows }] });
        let v2 = post(&format!("{}/v2/models/{name}/infer", runtime.url), &request).await;
        let outputs = v2["outputs"].as_array().unwrap();
        let python = expected["onnxruntime"].as_object().unwrap();
        assert_eq!(outputs.len(), python.len(), "{name}: {v2}");
        for output in outputs {
            let want = &python[output["name"].as_str().unwrap()];
            assert_eq!(output["datatype"], want["datatype"], "{name}");
            assert_eq!(output["shape"], want["shape"], "{name}");
            if want["datatype"] == "BYTES" || want["datatype"] == "INT64" {
                assert_eq!(output["data"], want["data"], "{name} {}", output["name"]);
            } else {
                assert_close(
                    &name,
                    &numbers(&output["data"]),
                    &numbers(&want["data"]),
                    1e-6,
                );
            }
        }

        // V1: the first output, i.e. what sklearn's `predict` returns.
        let v1 = post(
            &format!("{}/v1/models/{name}:predict", runtime.url),
            &json!({ "instances": rows }),
        )
        .await;
        let sklearn = &expected["sklearn"]["predict"];
        if sklearn[0].is_string() {
            assert_eq!(v1["predictions"], *sklearn, "{name}");
        } else {
            assert_close(
                &format!("{name} V1"),
                &numbers(&v1["predictions"]),
                &numbers(sklearn),
                1e-4,
            );
        }

        // gRPC metadata and raw FP32 input.
        let mut grpc = GrpcInferenceServiceClient::connect(runtime.grpc_url())
            .await
            .unwrap();
        let metadata = grpc
            .model_metadata(ModelMetadataRequest {
                name: name.clone(),
                version: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(metadata.platform, "onnxruntime_onnx");
        let raw: Vec<u8> = numbers(rows)
            .iter()
            .flat_map(|v| (*v as f32).to_le_bytes())
            .collect();
        let input = InferInputTensor {
            name: "X".into(),
            datatype: "FP32".into(),
            shape: vec![n_rows as i64, expected["n_features"].as_i64().unwrap()],
            ..Default::default()
        };
        let response = grpc
            .model_infer(ModelInferRequest {
                model_name: name.clone(),
                inputs: vec![input],
                raw_input_contents: vec![raw],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(response.outputs.len(), python.len());
        let first = &response.outputs[0];
        let want = &python[&first.name];
        if want["datatype"] == "FP32" {
            let got: Vec<f64> = response.raw_output_contents[0]
                .chunks_exact(4)
                .map(|c| f64::from(f32::from_le_bytes(c.try_into().unwrap())))
                .collect();
            assert_close(&name, &got, &numbers(&want["data"]), 1e-6);
        } else if want["datatype"] == "INT64" {
            let got: Vec<i64> = response.raw_output_contents[0]
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                .collect();
            let want: Vec<i64> = want["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap())
                .collect();
            assert_eq!(got, want, "{name}");
        }
    }
}
