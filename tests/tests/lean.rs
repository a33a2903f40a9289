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

/// The sidecar binary links only the queue-proxy: no Kubernetes client, no model backends.
/// Its symbol table is the evidence (debug info names every rlib, linked code or not); the
/// `serval` binary, which has them, shows that the check can see them.
#[test]
fn sidecar_binary_links_no_other_role() {
    let symbols = |path: &std::path::Path| {
        let output = Command::new("nm")
            .arg("--defined-only")
            .arg(path)
            .output()
            .expect("run nm (binutils)");
        assert!(output.status.success(), "nm {}", path.display());
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let (serval, sidecar) = (
        symbols(serval_tests::serval_bin()),
        symbols(serval_tests::queue_proxy_bin()),
    );
    for crate_name in [
        "kube_client",
        "k8s_openapi",
        "serval_runtimes",
        "serval_activator",
    ] {
        assert!(
            serval.contains(crate_name),
            "serval should link {crate_name}"
        );
        assert!(
            !sidecar.contains(crate_name),
            "serval-queue-proxy links {crate_name}"
        );
    }
    assert!(sidecar.contains("serval_queue_proxy"));
}
