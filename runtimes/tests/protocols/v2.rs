//! Open Inference Protocol V2 over REST: metadata, health, tensor JSON and binary data.

use axum::body::Body;
use http::Request;
use serde_json::json;

use crate::{call, get, post, served};

#[tokio::test]
async fn health_and_metadata() {
    let served = served(1 << 20);
    assert_eq!(
        get(&served, "/v2/health/live").await.json(),
        json!({ "live": true })
    );
    assert_eq!(
        get(&served, "/v2/health/ready").await.json(),
        json!({ "ready": true })
    );
    assert_eq!(
        get(&served, "/v2").await.json()["extensions"],
        json!(["binary_tensor_data"])
    );
    let metadata = get(&served, "/v2/models/summer").await.json();
    assert_eq!(metadata["platform"], "test");
    assert_eq!(
        metadata["inputs"],
        json!([{ "name": "features", "datatype": "FP32", "shape": [-1, 3] }])
    );
    assert_eq!(
        metadata["outputs"][1],
        json!({ "name": "label", "datatype": "BYTES", "shape": [-1] })
    );
    assert_eq!(
        get(&served, "/v2/models/summer/versions/1").await.json(),
        metadata
    );
    assert_eq!(
        get(&served, "/v2/models/summer/ready").await.json(),
        json!({ "name": "summer", "ready": true })
    );
    assert_eq!(
        get(&served, "/v2/models/summer/versions/1/ready")
            .await
            .status,
        200
    );
    assert_eq!(get(&served, "/v2/models/nope/ready").await.status, 404);
}

#[tokio::test]
async fn infers_with_tensor_json_and_requested_outputs() {
    let served = served(1 << 20);
    let body = json!({
        "id": "abc",
        "inputs": [{ "name": "input-0", "shape": [2, 3], "datatype": "FP64", "data": [[1, 2, 3], [0, 0, -1]] }],
        "outputs": [{ "name": "label" }],
    });
    let answer = post(
        &served,
        "/v2/models/summer/versions/7/infer",
        body.to_string(),
    )
    .await;
    assert_eq!(answer.status, 200, "{:?}", answer.json());
    assert_eq!(
        answer.json(),
        json!({
            "model_name": "summer", "model_version": "7", "id": "abc",
            "outputs": [{ "name": "label", "datatype": "BYTES", "shape": [2], "data": ["positive", "other"] }],
        })
    );
    let all = post(
        &served,
        "/v2/models/summer/infer",
        body.to_string()
            .replace(r#","outputs":[{"name":"label"}]"#, ""),
    )
    .await;
    assert_eq!(
        all.json()["outputs"][0],
        json!({ "name": "sum", "datatype": "FP32", "shape": [2], "data": [6.0, -1.0] })
    );
}

#[tokio::test]
async fn mistakes_are_400_naming_the_input_or_output() {
    let served = served(1 << 20);
    let infer = |body: serde_json::Value| {
        let served = served.clone();
        async move {
            post(&served, "/v2/models/summer/infer", body.to_string())
                .await
                .error(400)
        }
    };
    let input = |shape: serde_json::Value, datatype: &str, data: serde_json::Value| json!({ "inputs": [{ "name": "x", "shape": shape, "datatype": datatype, "data": data }] });
    let e = infer(input(json!([1, 3]), "FP32", json!([1, 2]))).await;
    assert_eq!(e, "input x: shape [1, 3] needs 3 values but the data has 2");
    let e = infer(input(json!([1, 4]), "FP32", json!([1, 2, 3, 4]))).await;
    assert!(e.contains("does not match the model's [-1, 3]"), "{e}");
    let e = infer(input(json!([1, 3]), "BYTES", json!(["a", "b", "c"]))).await;
    assert_eq!(
        e,
        "input x: datatype BYTES does not fit the model, which takes FP32"
    );
    let e = infer(input(json!([1, 3]), "INT8", json!([1, 2, 300]))).await;
    assert!(e.contains("300 is out of range for INT8"), "{e}");
    let mut body = input(json!([1, 3]), "FP32", json!([1, 2, 3]));
    body["outputs"] = json!([{ "name": "proba" }]);
    assert_eq!(
        infer(body).await,
        "output proba is not an output of the model (it has sum, label)"
    );
    assert!(infer(json!({ "inputs": "no" }))
        .await
        .starts_with("malformed request"));
}

#[tokio::test]
async fn binary_tensor_extension_in_and_out() {
    let served = served(1 << 20);
    let header = json!({
        "inputs": [{ "name": "features", "shape": [1, 3], "datatype": "FP32", "parameters": { "binary_data_size": 12 } }],
        "parameters": { "binary_data_output": true },
    })
    .to_string();
    let mut body = header.clone().into_bytes();
    for v in [1.0f32, 2.0, 4.0] {
        body.extend_from_slice(&v.to_le_bytes());
    }
    let request = Request::post("/v2/models/summer/infer")
        .header("inference-header-content-length", header.len())
        .body(Body::from(body))
        .unwrap();
    let answer = call(&served, request).await;
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    let json_len: usize = answer.headers["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&answer.body[..json_len]).unwrap();
    assert_eq!(
        json["outputs"][0]["parameters"],
        json!({ "binary_data_size": 4 })
    );
    assert_eq!(
        json["outputs"][1]["parameters"],
        json!({ "binary_data_size": 12 })
    );
    let raw = &answer.body[json_len..];
    assert_eq!(f32::from_le_bytes(raw[..4].try_into().unwrap()), 7.0);
    assert_eq!(&raw[4..], b"\x08\0\0\0positive");
}
