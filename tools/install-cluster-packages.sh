#!/usr/bin/env bash
# Debian's packages the one-node test cluster (tests/src/cluster/) runs on: containerd (1.6,
# with its CRI plugin), runc, the CNI plugins (bridge, host-local, loopback), dnsmasq for
# cluster DNS, iptables and conntrack for kube-proxy, and gcc's static libc for the pause
# image. The Kubernetes binaries come from tools/build-kubernetes.sh.
set -euo pipefail
missing=()
command -v containerd >/dev/null 2>&1 || missing+=(containerd)
command -v runc >/dev/null 2>&1 || missing+=(runc)
[ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
command -v dnsmasq >/dev/null 2>&1 || missing+=(dnsmasq-base)
command -v iptables >/dev/null 2>&1 || missing+=(iptables)
command -v conntrack >/dev/null 2>&1 || missing+=(conntrack)
[ -f /usr/lib/x86_64-linux-gnu/libc.a ] || missing+=(libc6-dev)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "install-cluster-packages: installing ${missing[*]} with apt"
    if [ "$(id -u)" -eq 0 ]; then sudo=(); else sudo=(sudo); fi
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "install-cluster-packages: containerd $(containerd --version | cut -d' ' -f3), runc $(runc --version | head -1 | cut -d' ' -f3), dnsmasq, iptables, CNI plugins in /usr/lib/cni"
