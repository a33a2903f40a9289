//! Real clients, unchanged, against the real binary: tritonclient (HTTP with and without
//! binary tensors, gRPC) and the kserve package's REST client (V1 and V2). Each runs in
//! its own Python process: tritonclient.grpc and kserve register the same protobuf package.

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};
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

/// Runs a client script; what it saw, as the JSON it prints.
fn run_client(script: &str, url: &str, model: &str, dir: &Path) -> Value {
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
        output.status.success(),
        "{script} on {model}:\n{stdout}\n{stderr}"
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{script} on {model}: {e}:\n{stdout}\n{stderr}"))
}

/// Absolute up to 1, relative beyond: what the runtime guarantees against onnxruntime.
fn close(got: f64, want: f64, tolerance: f64) -> bool {
    (got - want).abs() <= tolerance * want.abs().max(1.0)
}

/// `got` (values, strings or numbers) equals `want` (expected.json's), numbers within
/// `tolerance`.
fn assert_values(what: &str, got: &Value, want: &Value, tolerance: f64) {
    let (got, want) = (got.as_array().unwrap(), want.as_array().unwrap());
    assert_eq!(got.len(), want.len(), "{what}: {got:?} vs {want:?}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let equal = match (g.as_f64(), w.as_f64()) {
            (Some(g), Some(w)) => close(g, w, tolerance),
            _ => g == w,
        };
        assert!(equal, "{what}: value {i}: {g} vs {w}");
    }
}

/// Each named set of output tensors the client returned is onnxruntime's, by name.
fn assert_outputs(what: &str, seen: &Value, expected: &Value, sets: &[&str]) {
    let want = expected["onnxruntime"].as_object().unwrap();
    for set in sets {
        let got = seen["outputs"][set]
            .as_object()
            .unwrap_or_else(|| panic!("{what}: no {set} outputs in {seen}"));
        let names = |m: &serde_json::Map<String, Value>| {
            m.keys().cloned().collect::<std::collections::BTreeSet<_>>()
        };
        assert_eq!(names(got), names(want), "{what} ({set}): output names");
        for (name, want) in want {
            let what = format!("{what} ({set}) {name}");
            assert_eq!(got[name]["shape"], want["shape"], "{what}: shape");
            assert_values(&what, &got[name]["data"], &want["data"], 1e-6);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tritonclient_and_kserve_clients_work_unchanged() {
    for name in [
        "sklearn-rf-classifier",
        "sklearn-logreg-iris-strings",
        "sklearn-rf-regressor",
    ] {
        let dir = test_models().join("onnx").join(name);
        let expected: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap())
                .unwrap();
        let runtime = Runtime::start(name, &dir, &[]).await;

        let http = run_client("triton_http.py", &runtime.url, name, &dir);
        let what = format!("tritonclient.http on {name}");
        assert_eq!(
            (&http["live"], &http["ready"], &http["model_ready"]),
            (&json!(true), &json!(true), &json!(true)),
            "{what}: {http}"
        );
        assert_eq!(http["input_datatype"], "FP32", "{what}");
        assert_outputs(&what, &http, &expected, &["json", "binary"]);

        let grpc = run_client("triton_grpc.py", &runtime.grpc_url(), name, &dir);
        let what = format!("tritonclient.grpc on {name}");
        assert_eq!(
            (&grpc["live"], &grpc["ready"], &grpc["model_ready"]),
            (&json!(true), &json!(true), &json!(true)),
            "{what}: {grpc}"
        );
        assert_eq!(grpc["platform"], "onnxruntime_onnx", "{what}");
        assert_outputs(&what, &grpc, &expected, &["raw"]);
        assert_eq!(
            grpc["unknown_model_status"], "StatusCode.NOT_FOUND",
            "{what}: an unknown model"
        );

        let kserve = run_client("kserve_rest.py", &runtime.url, name, &dir);
        let what = format!("kserve REST on {name}");
        let (v1, v2) = (&kserve["v1"], &kserve["v2"]);
        assert_eq!(
            (
                &v1["live"],
                &v1["model_ready"],
                &v2["ready"],
                &v2["model_ready"]
            ),
            (&json!(true), &json!(true), &json!(true), &json!(true)),
            "{what}: {kserve}"
        );
        assert_values(
            &format!("{what} V1"),
            &v1["predictions"],
            &expected["sklearn"]["predict"],
            1e-4,
        );
        assert_eq!(v2["ids"], json!(["from-kserve", "from-kserve"]), "{what}");
        assert_outputs(&format!("{what} V2"), v2, &expected, &["json", "binary"]);
    }
}
