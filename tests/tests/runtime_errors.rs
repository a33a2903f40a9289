//! `serval runtime` on bad input and bad start-up conditions: the right status with a JSON
//! error naming the problem, the matching gRPC code, and one clear line when it cannot
//! start. Nothing panics.

use serde_json::json;
use serval_runtimes::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use serval_runtimes::proto::model_infer_request::InferInputTensor;
use serval_runtimes::proto::{InferTensorContents, ModelInferRequest, ModelReadyRequest};
use serval_tests::http_client::{get, http1, over_unix_socket, send};
use serval_tests::runtime::{ort_dylib, test_models, Runtime};
use serval_tests::{lease_port, run_serval};

async fn error(url: &str, body: &str, status: u16) -> String {
    let answer = send(&http1(), "POST", url, body).await.unwrap();
    assert_eq!(answer.status, status, "{url} {body}: {}", answer.body);
    assert_eq!(answer.headers["content-type"], "application/json");
    answer.json()["error"]
        .as_str()
        .expect("error message")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_400_404_413_with_json_errors() {
    let dir = test_models().join("xgb-binary");
    let runtime = Runtime::start("xgb", &dir, &["--max-body-bytes=4096"]).await;
    let infer = format!("{}/v2/models/xgb/infer", runtime.url);
    let input = |shape: serde_json::Value, datatype: &str, data: serde_json::Value| {
        json!({ "inputs": [{ "name": "input-0", "shape": shape, "datatype": datatype, "data": data }] }).to_string()
    };

    assert!(error(&infer, "{not json", 400)
        .await
        .starts_with("malformed request"));
    let e = error(
        &infer,
        &input(json!([1, 4]), "FP64", json!([1, 2, 3, 4])),
        400,
    )
    .await;
    assert_eq!(
        e,
        "input input-0: shape [1, 4] does not match the model's [-1, 5] (-1 is any size)"
    );
    let e = error(
        &infer,
        &input(json!([2, 5]), "FP64", json!([1, 2, 3, 4, 5])),
        400,
    )
    .await;
    assert_eq!(
        e,
        "input input-0: shape [2, 5] needs 10 values but the data has 5"
    );
    let e = error(
        &infer,
        &input(json!([1, 5]), "BYTES", json!(["a", "b", "c", "d", "e"])),
        400,
    )
    .await;
    assert_eq!(
        e,
        "input input-0: datatype BYTES does not fit the model, which takes FP64"
    );
    let e = error(
        &infer,
        &input(json!([1, 5]), "FP64", json!([1, 2, 3, 4, true])),
        400,
    )
    .await;
    assert!(
        e.starts_with("input input-0: FP64 data must be numbers, found true"),
        "{e}"
    );
    let e = error(
        &format!("{}/v1/models/xgb:predict", runtime.url),
        r#"{"instances": [[1, 2]]}"#,
        400,
    )
    .await;
    assert!(e.contains("does not match the model's [-1, 5]"), "{e}");

    let e = error(
        &format!("{}/v2/models/other/infer", runtime.url),
        &input(json!([1, 5]), "FP64", json!([0, 0, 0, 0, 0])),
        404,
    )
    .await;
    assert_eq!(e, "model other is not served here");
    let missing = get(&http1(), &format!("{}/v1/models/other", runtime.url))
        .await
        .unwrap();
    assert_eq!(missing.status, 404);

    let big = input(json!([1, 5]), "FP64", json!(vec![0.5; 2000]));
    let e = error(&infer, &big, 413).await;
    assert_eq!(e, "request body is over the limit of 4096 bytes");
    // Still serving after all of that.
    let ok = send(
        &http1(),
        "POST",
        &infer,
        &input(json!([1, 5]), "FP64", json!([0, 0, 0, 0, 0])),
    )
    .await
    .unwrap();
    assert_eq!(ok.status, 200, "{}", ok.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_uses_the_matching_status_codes() {
    let runtime = Runtime::start("xgb", &test_models().join("xgb-binary"), &[]).await;
    let mut grpc = GrpcInferenceServiceClient::connect(runtime.grpc_url())
        .await
        .unwrap();
    let status = grpc
        .model_ready(ModelReadyRequest {
            name: "other".into(),
            version: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    let request = |shape: Vec<i64>, values: Vec<f64>| ModelInferRequest {
        model_name: "xgb".into(),
        inputs: vec![InferInputTensor {
            name: "x".into(),
            datatype: "FP64".into(),
            shape,
            contents: Some(InferTensorContents {
                fp64_contents: values,
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    let status = grpc
        .model_infer(request(vec![1, 3], vec![1.0, 2.0, 3.0]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status
            .message()
            .contains("input x: shape [1, 3] does not match"),
        "{}",
        status.message()
    );
    let status = grpc
        .model_infer(request(vec![1, 5], vec![1.0]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let ok = grpc
        .model_infer(request(vec![1, 5], vec![0.0; 5]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.outputs[0].shape, vec![1]);
}

fn start_fails(model_dir: &std::path::Path, extra: &[&str]) -> String {
    let (http_port, grpc_port) = (lease_port(), lease_port());
    let mut args = vec![
        "runtime".to_string(),
        format!("--model-dir={}", model_dir.display()),
        "--bind-address=127.0.0.1".into(),
        format!("--http-port={http_port}"),
        format!("--grpc-port={grpc_port}"),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let (code, _, stderr) = run_serval(&args);
    assert_eq!(code, 1, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("serval runtime:"))
        .collect();
    assert_eq!(errors.len(), 1, "one error line: {stderr}");
    errors[0].to_owned()
}

#[test]
fn a_missing_onnx_runtime_library_is_one_clear_error() {
    let dir = test_models().join("onnx/sklearn-logreg-iris");
    let line = start_fails(&dir, &["--ort-dylib-path=/nonexistent/libonnxruntime.so"]);
    assert!(
        line.contains("cannot load the ONNX Runtime library"),
        "{line}"
    );
    assert!(
        line.contains("/nonexistent/libonnxruntime.so does not exist"),
        "{line}"
    );
    // A file that is not the library at all.
    let line = start_fails(
        &dir,
        &[&format!(
            "--ort-dylib-path={}",
            dir.join("model.onnx").display()
        )],
    );
    assert!(
        line.contains("cannot load the ONNX Runtime library"),
        "{line}"
    );
}

#[test]
fn a_model_that_cannot_load_names_the_file_and_never_serves() {
    let dir = std::env::temp_dir().join(format!("serval-runtime-broken-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("model.json"), "{\"learner\": 3}").unwrap();
    let line = start_fails(&dir, &[]);
    assert!(line.contains("model.json"), "{line}");
    std::fs::remove_file(dir.join("model.json")).unwrap();
    std::fs::write(dir.join("model.onnx"), b"not an onnx graph").unwrap();
    let line = start_fails(
        &dir,
        &[&format!("--ort-dylib-path={}", ort_dylib().display())],
    );
    assert!(line.contains("model.onnx"), "{line}");
    let line = start_fails(&dir.join("absent"), &[]);
    assert!(line.contains("not a directory"), "{line}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_on_a_unix_socket_too_which_is_removed_at_exit_and_never_taken_over() {
    let dir = std::env::temp_dir().join(format!("serval-runtime-socket-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("runtime.sock");
    // What a runtime that was killed leaves behind.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    let flag = format!("--http-listen-unix={}", socket.display());
    let model = serval_tests::repo_root().join("examples/models/iris-xgboost");
    let mut runtime = Runtime::start("iris", &model, &[&flag]).await;

    let body = r#"{"inputs":[{"name":"input-0","shape":[1,4],"datatype":"FP32","data":[6.8,2.8,4.8,1.4]}]}"#;
    let request = format!(
        "POST /v2/models/iris/infer HTTP/1.1\r\nhost: runtime\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    // A sidecar running as another user may connect: the directory decides who can.
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&socket).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o666, "{mode:o}");
    let over_socket = over_unix_socket(&socket, &request).await;
    assert!(over_socket.starts_with("HTTP/1.1 200"), "{over_socket}");
    let over_tcp = send(
        &http1(),
        "POST",
        &format!("{}/v2/models/iris/infer", runtime.url),
        body,
    )
    .await
    .unwrap();
    assert_eq!(over_tcp.status, 200, "{}", over_tcp.body);
    let outputs =
        |json: &str| serde_json::from_str::<serde_json::Value>(json).unwrap()["outputs"].clone();
    let socket_body = over_socket.split("\r\n\r\n").nth(1).unwrap_or_default();
    assert_eq!(outputs(socket_body), outputs(&over_tcp.body));

    // A second runtime on the same socket is refused while the first still answers there.
    let line = start_fails(&model, &[&flag]);
    assert!(
        line.contains(&format!(
            "cannot listen on the Unix socket {}",
            socket.display()
        )),
        "{line}"
    );
    assert!(line.contains("address in use"), "{line}");

    runtime.process.terminate();
    let code = tokio::task::spawn_blocking(move || {
        runtime
            .process
            .wait_exit(std::time::Duration::from_secs(10))
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0));
    assert!(!socket.exists(), "the socket is removed at exit");

    // A file that is not a socket is never replaced.
    std::fs::write(&socket, "not a socket").unwrap();
    let line = start_fails(&model, &[&flag]);
    assert!(line.contains("cannot listen on the Unix socket"), "{line}");
    assert_eq!(std::fs::read_to_string(&socket).unwrap(), "not a socket");
    std::fs::remove_dir_all(dir).unwrap();
}
