#!/usr/bin/env bash
# The tests' one-node Kubernetes cluster, by hand (as root): builds this checkout and its
# image, starts etcd, the control plane, containerd, the kubelet, kube-proxy and cluster DNS
# on this machine, and prints the KUBECONFIG to use. Ctrl-C stops it and puts the machine
# back (containers, mounts, the bridge, iptables, sysctls). Then, in another terminal:
#
#   export KUBECONFIG=/tmp/serval-cluster-<pid>/kubeconfig
#   helm install serval helm/serval -n serval-system --create-namespace --set image.tag=test
#
# The images it imports are ghcr.io/serval-dev/serval:test (this build) and the pod sandbox.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/build-kubernetes.sh
bash tools/install-cluster-packages.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/serval-target}"
# It builds the serval binaries itself (and the test venv whose onnxruntime goes into the
# image, on first use).
cargo build --quiet -p serval-tests --bin serval-test-cluster
exec "$CARGO_TARGET_DIR/debug/serval-test-cluster"
