//! The queue-proxy sits in every model pod: its dependency tree must stay free of the
//! heavy crates other roles need (Kubernetes clients and types, ML backends, gRPC codegen).

use std::process::Command;

use serval_tests::repo_root;

#[test]
fn queue_proxy_does_not_pull_heavy_crates() {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(repo_root())
        .args([
            "tree",
            "-p",
            "serval-queue-proxy",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--offline",
        ])
        .output()
        .expect("run cargo tree");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8_lossy(&output.stdout);
    let crates: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(crates.contains(&"serval-queue-proxy"), "{tree}");
    let heavy = [
        "kube",
        "kube-core",
        "k8s-openapi",
        "schemars",
        "tract-onnx",
        "candle-core",
        "ort",
        "tonic",
        "prost",
        "serde_yaml",
    ];
    let found: Vec<&&str> = heavy.iter().filter(|h| crates.contains(h)).collect();
    assert!(found.is_empty(), "queue-proxy depends on {found:?}");
}
