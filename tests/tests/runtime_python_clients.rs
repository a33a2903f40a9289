//! Real clients, unchanged, against the real binary: tritonclient (HTTP with and without
//! binary tensors, gRPC) and the kserve package's REST client (V1 and V2). Each runs in
//! its own Python process: tritonclient.grpc and kserve register the same protobuf package.

use std::process::Command;

use serval_tests::repo_root;
use serval_tests::runtime::{test_models, venv, Runtime};

/// Makes sure the venv has the clients (`tools/make-test-models.sh` installs them).
fn python_with_clients() -> std::path::PathBuf {
    let python = venv().join("bin/python");
    let has_clients = |python: &std::path::Path| {
        Command::new(python)
            .args(["-c", "import tritonclient.http, tritonclient.grpc"])
            .status()
            .is_ok_and(|s| s.success())
            && Command::new(python)
                .args(["-c", "import kserve"])
                .status()
                .is_ok_and(|s| s.success())
    };
    if !has_clients(&python) {
        let status = Command::new("bash")
            .arg(repo_root().join("tools/make-test-models.sh"))
            .arg(test_models())
            .status()
            .expect("run tools/make-test-models.sh");
        assert!(
            status.success() && has_clients(&python),
            "installing the Python clients failed"
        );
    }
    python
}

fn run_client(script: &str, url: &str, model: &str, dir: &std::path::Path) {
    let output = Command::new(python_with_clients())
        .current_dir(repo_root().join("tests/python"))
        .args([script, url, model])
        .arg(dir)
        .output()
        .expect("run python");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(
        output.status.success() && stdout.contains("ok"),
        "{script} on {model}:\n{stdout}\n{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tritonclient_and_kserve_clients_work_unchanged() {
    for name in [
        "sklearn-rf-classifier",
        "sklearn-logreg-iris-strings",
        "sklearn-rf-regressor",
    ] {
        let dir = test_models().join("onnx").join(name);
        let runtime = Runtime::start(name, &dir, &[]).await;
        run_client("triton_http.py", &runtime.url, name, &dir);
        run_client("triton_grpc.py", &runtime.grpc_url(), name, &dir);
        run_client("kserve_rest.py", &runtime.url, name, &dir);
    }
}
