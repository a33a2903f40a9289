//! The images the cluster runs, assembled without Docker by `tools/cluster/image.py` as OCI
//! archives that containerd imports: Serval's (the test build's binaries) and the pause image.

use std::path::Path;
use std::process::Command;

use crate::repo_root;

/// The repository and tag of the test build's image; the chart is installed with them.
pub const SERVAL_REPOSITORY: &str = "ghcr.io/serval-dev/serval";
pub const SERVAL_TAG: &str = "test";

/// Writes Serval's image (the `serval` and `serval-queue-proxy` of this test build, ONNX
/// Runtime from the test venv) to `out`.
pub fn serval(out: &Path) {
    image_py(&[
        "serval".as_ref(),
        "--serval".as_ref(),
        crate::serval_bin().as_os_str(),
        "--queue-proxy".as_ref(),
        crate::queue_proxy_bin().as_os_str(),
        "--onnxruntime".as_ref(),
        crate::runtime::ort_dylib().as_os_str(),
        "--ref".as_ref(),
        format!("{SERVAL_REPOSITORY}:{SERVAL_TAG}").as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
}

/// Writes the pod sandbox image [`super::PAUSE_IMAGE`] to `out`.
pub fn pause(out: &Path) {
    image_py(&[
        "pause".as_ref(),
        "--ref".as_ref(),
        super::PAUSE_IMAGE.as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
}

fn image_py(args: &[&std::ffi::OsStr]) {
    let out = Command::new("python3")
        .arg(repo_root().join("tools/cluster/image.py"))
        .args(args)
        .output()
        .expect("run tools/cluster/image.py");
    assert!(
        out.status.success(),
        "tools/cluster/image.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes an image of one program of this build (`binary`) and the libraries it links, as
/// `reference`, to `out`; its entrypoint is `/usr/local/bin/<file name>`.
pub fn binary(binary: &Path, reference: &str, out: &Path) {
    image_py(&[
        "binary".as_ref(),
        "--binary".as_ref(),
        binary.as_os_str(),
        "--ref".as_ref(),
        reference.as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
}
