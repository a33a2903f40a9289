//! The REST protocols in-process: the router as a value, driven with `oneshot`, over a
//! small model defined here, so every parsing and encoding rule is tested without a
//! socket or a model file.

mod v1;
mod v2;

use std::sync::Arc;

use axum::body::Body;
use http::Request;
use http_body_util::BodyExt;
use serval_runtimes::model::{Model, TensorSpec};
use serval_runtimes::tensor::{Datatype, Tensor, TensorData};
use serval_runtimes::{Config, InferError, Served};
use tower::ServiceExt;

/// Takes rows of three FP32 features; returns each row's sum and a label saying whether
/// it is positive.
#[derive(Debug)]
struct SumModel {
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
}

impl SumModel {
    fn new() -> Self {
        let spec = |name: &str, datatype, shape: &[i64]| TensorSpec {
            name: name.into(),
            datatype,
            shape: shape.to_vec(),
        };
        Self {
            inputs: vec![spec("features", Datatype::Fp32, &[-1, 3])],
            outputs: vec![
                spec("sum", Datatype::Fp32, &[-1]),
                spec("label", Datatype::Bytes, &[-1]),
            ],
        }
    }
}

impl Model for SumModel {
    fn platform(&self) -> &'static str {
        "test"
    }
    fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }
    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }
    fn predict(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, InferError> {
        let Some(Tensor {
            data: TensorData::Fp32(values),
            shape,
            ..
        }) = inputs.into_iter().next()
        else {
            return Err(InferError::Model("expected FP32".into()));
        };
        let sums: Vec<f32> = values.chunks(3).map(|row| row.iter().sum()).collect();
        let labels = sums
            .iter()
            .map(|s| {
                if *s > 0.0 {
                    b"positive".to_vec()
                } else {
                    b"other".to_vec()
                }
            })
            .collect();
        Ok(vec![
            Tensor {
                name: "sum".into(),
                shape: vec![shape[0]],
                data: TensorData::Fp32(sums),
            },
            Tensor {
                name: "label".into(),
                shape: vec![shape[0]],
                data: TensorData::Bytes(labels),
            },
        ])
    }
}

fn served(max_body_bytes: usize) -> Arc<Served> {
    let mut config = Config::new("summer", "/nonexistent");
    config.max_body_bytes = max_body_bytes;
    Arc::new(Served::new(&config, Arc::new(SumModel::new())))
}

struct Answer {
    status: u16,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    /// The `{"error": ...}` message, asserting the status.
    fn error(&self, status: u16) -> String {
        assert_eq!(
            self.status,
            status,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        self.json()["error"]
            .as_str()
            .expect("an error message")
            .to_owned()
    }
}

async fn call(served: &Arc<Served>, request: Request<Body>) -> Answer {
    let response = serval_runtimes::http::router(served.clone())
        .oneshot(request)
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

async fn get(served: &Arc<Served>, path: &str) -> Answer {
    call(served, Request::get(path).body(Body::empty()).unwrap()).await
}

async fn post(served: &Arc<Served>, path: &str, body: impl Into<Body>) -> Answer {
    call(
        served,
        Request::post(path)
            .header("content-type", "application/json")
            .body(body.into())
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn unknown_routes_are_json_404s() {
    let served = served(1 << 20);
    assert_eq!(
        get(&served, "/v3/nothing").await.error(404),
        "no route for /v3/nothing"
    );
    assert!(get(&served, "/v1/models/other")
        .await
        .error(404)
        .contains("model other"));
}

#[tokio::test]
async fn bodies_over_the_limit_get_413() {
    let served = served(64);
    let body = format!(r#"{{"instances": [[{}]]}}"#, "1, ".repeat(40) + "1");
    let answer = post(&served, "/v1/models/summer:predict", body.clone()).await;
    assert!(answer.error(413).contains("over the limit of 64 bytes"));
    // Without Content-Length the limit is found while reading.
    let stream =
        futures_util::stream::iter(vec![Ok::<_, std::io::Error>(bytes::Bytes::from(body))]);
    let request = Request::post("/v2/models/summer/infer")
        .body(Body::from_stream(stream))
        .unwrap();
    assert_eq!(call(&served, request).await.status, 413);
}

#[tokio::test]
async fn metrics_use_kserve_names() {
    let served = served(1 << 20);
    post(
        &served,
        "/v1/models/summer:predict",
        r#"{"instances": [[1, 2, 3]]}"#,
    )
    .await;
    let text = String::from_utf8(get(&served, "/metrics").await.body).unwrap();
    assert!(
        text.contains("request_predict_seconds_count{model_name=\"summer\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("request_preprocess_seconds_count{model_name=\"summer\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("request_postprocess_seconds_count{model_name=\"summer\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE request_explain_seconds histogram"),
        "{text}"
    );
}
