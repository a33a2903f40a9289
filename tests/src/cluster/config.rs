//! The configuration files of the one-node cluster: containerd's, the CNI network's, the
//! kubelet's, and the kubeconfig every component and test client uses.

use std::path::Path;

use super::{BRIDGE, CLUSTER_DOMAIN, NODE_IP, NODE_NAME, PAUSE_IMAGE, POD_CIDR};

/// containerd 1.6 with its CRI plugin, everything under `dir` (state, images, socket).
/// `restrict_oom_score_adj`: the sandbox may not lower oom_score_adj, and runc fails with
/// "can't get final child's PID from pipe: EOF" until containerd stops asking it to.
/// `netns_mounts_under_state_dir`: the pods' network namespaces are pinned under `dir`, so
/// teardown finds (and unmounts) them with the rest.
pub(super) fn containerd(dir: &Path) -> String {
    let d = dir.display();
    format!(
        r#"version = 2
root = "{d}/containerd/root"
state = "{d}/containerd/state"
oom_score = 0

[grpc]
  address = "{d}/containerd.sock"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{d}/cni"
"#
    )
}

/// One bridge network for the pods, on the bridge the harness made (so its address, the
/// node's, exists before any pod). No masquerading: pod addresses never leave this machine.
/// Hairpin mode lets a pod reach itself through its own Service.
pub(super) fn cni(dir: &Path) -> String {
    serde_json::json!({
        "cniVersion": "0.4.0",
        "name": "serval",
        "plugins": [{
            "type": "bridge",
            "bridge": BRIDGE,
            "isGateway": true,
            "ipMasq": false,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": POD_CIDR, "gateway": NODE_IP}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": dir.join("cni-ipam").display().to_string(),
            },
        }],
    })
    .to_string()
}

/// The kubelet: cgroupfs (no systemd; cgroups v1), no QoS cgroups, the harness's DNS on
/// the node address, eviction only when the disk is nearly full (the tests' images must
/// stay), and the API server authenticating to it by client certificate (none is issued,
/// so logs and exec are off, which no test uses).
pub(super) fn kubelet(dir: &Path) -> String {
    let d = dir.display();
    format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {NODE_IP}
port: 10250
readOnlyPort: 0
healthzPort: 0
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: false
  x509:
    clientCAFile: {d}/ca.crt
authorization:
  mode: AlwaysAllow
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
clusterDNS:
  - {NODE_IP}
clusterDomain: {CLUSTER_DOMAIN}
resolvConf: {d}/resolv.conf
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  imagefs.available: 1%
  nodefs.inodesFree: 1%
nodeStatusUpdateFrequency: 4s
syncFrequency: 10s
"#
    )
}

/// A kubeconfig for `server` with the harness's CA and the `system:masters` token.
pub(super) fn kubeconfig(dir: &Path, server: &str, token: &str) -> String {
    format!(
        "apiVersion: v1\n\
         kind: Config\n\
         clusters:\n\
         - name: {NODE_NAME}\n  cluster:\n    server: {server}\n    certificate-authority: {ca}\n\
         users:\n\
         - name: admin\n  user:\n    token: {token}\n\
         contexts:\n\
         - name: {NODE_NAME}\n  context:\n    cluster: {NODE_NAME}\n    user: admin\n    namespace: default\n\
         current-context: {NODE_NAME}\n",
        ca = dir.join("ca.crt").display(),
    )
}
