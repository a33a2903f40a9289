//! The queue-proxy sits in every model pod: its dependency tree must stay free of the
//! heavy crates other roles need (Kubernetes clients and types, ML backends, gRPC codegen,
//! the other roles themselves).

use std::collections::BTreeSet;
use std::process::Command;

use serval_tests::repo_root;

/// Crates the sidecar must not depend on. Each one is in `Cargo.lock` (the test checks),
/// so adding it to the sidecar takes no new download and the check can fail offline.
const HEAVY: [&str; 15] = [
    // Kubernetes clients and types.
    "kube",
    "kube-client",
    "kube-core",
    "kube-runtime",
    "k8s-openapi",
    "schemars",
    "serde_yaml",
    // ML backends.
    "ort",
    "llama-cpp-2",
    // gRPC and protobuf.
    "tonic",
    "prost",
    // The other roles.
    "serval-activator",
    "serval-autoscaler",
    "serval-controller",
    "serval-runtimes",
];

/// The crates in `package`'s normal (non-dev, non-build) dependency tree.
fn dependency_tree(package: &str) -> BTreeSet<String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(repo_root())
        .args([
            "tree",
            "-p",
            package,
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
    let tree = String::from_utf8_lossy(&output.stdout).into_owned();
    let crates: BTreeSet<String> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    assert!(crates.contains(package), "{tree}");
    crates
}

#[test]
fn queue_proxy_does_not_pull_heavy_crates() {
    let lock = std::fs::read_to_string(repo_root().join("Cargo.lock")).expect("Cargo.lock");
    let locked: BTreeSet<&str> = lock
        .lines()
        .filter_map(|l| l.strip_prefix("name = \""))
        .filter_map(|l| l.strip_suffix('"'))
        .collect();
    let stale: Vec<&&str> = HEAVY.iter().filter(|h| !locked.contains(**h)).collect();
    assert!(
        stale.is_empty(),
        "not in Cargo.lock, so the check for them cannot fail: {stale:?}"
    );

    // The full binary has every one of them: the tree and the parsing can see them.
    let serval = dependency_tree("serval");
    let missing: Vec<&&str> = HEAVY.iter().filter(|h| !serval.contains(**h)).collect();
    assert!(missing.is_empty(), "serval's tree lacks {missing:?}");

    let sidecar = dependency_tree("serval-queue-proxy");
    let found: Vec<&&str> = HEAVY.iter().filter(|h| sidecar.contains(**h)).collect();
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
