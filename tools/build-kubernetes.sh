#!/usr/bin/env bash
# Builds real Kubernetes 1.20.2 binaries for the tests: kube-apiserver for the Kubernetes API
# tests, and kubelet, kube-controller-manager, kube-scheduler and kube-proxy for the one-node
# cluster (tests/src/cluster.rs, tools/cluster.sh). From the source Debian ships (its orig
# tarball carries the vendor/ tree, so the build needs no Go module downloads), with the Go
# toolchain and etcd from Debian's packages. The machines here reach only package registries,
# so there is no prebuilt binary to fetch.
#
# Idempotent: when the binaries are already in the cache, it only checks that etcd and openssl
# are there. A cold run takes about 12 minutes on 2 shared cores (the Go build runs under
# `nice -n 15`, all five binaries in one `go build`); afterwards only the binaries (~400 MB)
# and the tarball stay in the cache.
#
#   SERVAL_KUBE_CACHE  cache dir (default ~/.cache/serval-kube); the binaries land in
#                      $SERVAL_KUBE_CACHE/bin/, GOCACHE/GOPATH live beside them while they
#                      build.
#
# Debian 12's golang-go is Go 1.19; Kubernetes 1.20 was released with Go 1.15. Three steps make
# it build and run with 1.19, each explained where it happens below: a layout fix to
# vendor/modules.txt (fix_vendor_list), reflect2 1.0.2 instead of 1.0.1 (update_reflect2), and
# the OpenAPI definitions `make` would generate. No other patches, extra flags or build tags.
set -euo pipefail

version=1.20.2
tarball_url="http://deb.debian.org/debian/pool/main/k/kubernetes/kubernetes_1.20.5+really1.20.2.orig.tar.gz"
tarball_sha256=b83c0780efb182d928dc63d46488a847f161f04e40a94b96bf5247dd671ecdfc

cache="${SERVAL_KUBE_CACHE:-$HOME/.cache/serval-kube}"
# Debian's source of github.com/modern-go/reflect2 1.0.2 (see update_reflect2 below).
reflect2=/usr/share/gocode/src/github.com/modern-go/reflect2
binaries=(kube-apiserver kubelet kube-controller-manager kube-scheduler kube-proxy)
absent=()
for b in "${binaries[@]}"; do [ -x "$cache/bin/$b" ] || absent+=("$b"); done

# Debian packages: etcd for the API server to store into and openssl for the tests' keys;
# to build, Go, reflect2's source and curl.
missing=()
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [ "${#absent[@]}" -gt 0 ]; then
    command -v go >/dev/null 2>&1 || missing+=(golang-go)
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    [ -f "$reflect2/go_above_118.go" ] || missing+=(golang-github-modern-go-reflect2-dev)
fi
if [ "${#missing[@]}" -gt 0 ]; then
    echo "build-kubernetes: installing ${missing[*]} with apt"
    if [ "$(id -u)" -eq 0 ]; then sudo=(); else sudo=(sudo); fi
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ "${#absent[@]}" -eq 0 ]; then
    echo "build-kubernetes: ${binaries[*]} are in $cache/bin; etcd is $(command -v etcd)"
    exit 0
fi

mkdir -p "$cache/bin" "$cache/src"
src="$cache/src/kubernetes-$version"
tarball="$cache/src/kubernetes-$version.orig.tar.gz"

# The first change Go 1.19 needs (Go >= 1.17 reads vendor/modules.txt more strictly): the file
# Kubernetes 1.20 vendored with Go 1.15 lists each wildcard replacement ("# path => repl v")
# between a module's header and its packages, so Go 1.19 files those packages under a
# version-less module and `go build -mod=vendor` stops with "updates to go.mod needed". This
# rewrites the file as newer Go writes it: each package under the header of the build-list
# module that owns it (longest module path prefix), the wildcard replacements at the end.
# Same modules, versions, replacements and packages; only the layout changes.
fix_vendor_list() {
    python3 - "$1" <<'PY'
import sys
path = sys.argv[1]
modules, order, wildcards, packages = {}, [], [], []
current = None
for line in open(path).read().splitlines():
    if line.startswith("# "):
        f = line.split()
        if len(f) >= 3 and f[2] == "=>":
            wildcards.append(line)
            current = None
        else:
            current = modules.setdefault(f[1], [line, [], []])
            order.append(f[1])
    elif line.startswith("## "):
        if current is not None:
            current[1].append(line)
    elif line.strip():
        packages.append(line)
for pkg in packages:
    owner = max((m for m in modules if pkg == m or pkg.startswith(m + "/")), key=len)
    modules[owner][2].append(pkg)
with open(path, "w") as out:
    for m in order:
        header, notes, pkgs = modules[m]
        out.write("\n".join([header, *notes, *pkgs]) + "\n")
    out.write("\n".join(wildcards) + "\n")
print(f"build-kubernetes: vendor/modules.txt rewritten for Go >= 1.17: {len(order)} modules, {len(packages)} packages")
PY
}

# The second change Go 1.19 needs: Kubernetes 1.20 vendors github.com/modern-go/reflect2 1.0.1,
# whose map iteration links into Go runtime internals that changed in Go 1.18; built with 1.19,
# kube-apiserver dies with "fatal error: fault" (SIGSEGV in mapiterinit, via json-iterator) on
# the first custom resource it decodes. reflect2 1.0.2 is the upstream fix (later Kubernetes
# releases vendor it). Swap in Debian's 1.0.2 source (golang-github-modern-go-reflect2-dev) and
# record the version in go.mod and vendor/modules.txt.
update_reflect2() {
    local dir="$1/vendor/github.com/modern-go/reflect2"
    find "$dir" -maxdepth 1 -type f \( -name '*.go' -o -name '*.s' \) -delete
    cp "$reflect2"/*.go "$reflect2"/*.s "$dir/"
    # go.mod: the replace line; modules.txt: the module line and the wildcard replacement.
    sed -i '/^\s*github.com\/modern-go\/reflect2 => /s/v1\.0\.1/v1.0.2/g' "$1/go.mod"
    sed -i '/^# github.com\/modern-go\/reflect2 /s/v1\.0\.1/v1.0.2/g' "$1/vendor/modules.txt"
    grep -q 'modern-go/reflect2 v1.0.2$' "$1/go.mod"
    echo "build-kubernetes: vendored github.com/modern-go/reflect2 1.0.1 replaced by Debian's 1.0.2"
}

if [ ! -f "$src/.extracted" ]; then
    if ! echo "$tarball_sha256  $tarball" | sha256sum -c --status 2>/dev/null; then
        echo "build-kubernetes: downloading Kubernetes $version source (34 MB) from Debian"
        curl -fsSL --retry 3 -o "$tarball.part" "$tarball_url"
        mv "$tarball.part" "$tarball"
        echo "$tarball_sha256  $tarball" | sha256sum -c --status || {
            echo "build-kubernetes: sha256 mismatch for $tarball" >&2
            rm -f "$tarball"
            exit 1
        }
    fi
    echo "build-kubernetes: extracting"
    rm -rf "$src"
    mkdir -p "$src"
    tar xzf "$tarball" -C "$src" --strip-components=1
    fix_vendor_list "$src/vendor/modules.txt"
    update_reflect2 "$src"
    touch "$src/.extracted"
fi

start=$(date +%s)
export GOCACHE="$cache/go-build" GOPATH="$cache/gopath" GOFLAGS=-mod=vendor GO111MODULE=on
export GOPROXY=off CGO_ENABLED=0

# The source tarball, like a git checkout, lacks one generated file the binaries need:
# pkg/generated/openapi/zz_generated.openapi.go (`make` writes it). Generate it as
# Makefile.generated_files does: openapi-gen from vendor/, run in a GOPATH tree (GO111MODULE=off,
# as hack/lib/init.sh sets) over every package tagged +k8s:openapi-gen, less code-generator's
# and sample-apiserver's. (Its API-rule report matches api/api-rules/violation_exceptions.list.)
openapi="$src/pkg/generated/openapi/zz_generated.openapi.go"
if [ ! -f "$openapi" ]; then
    echo "build-kubernetes: generating $openapi"
    (cd "$src" && nice -n 15 go build -trimpath -o "$cache/bin/openapi-gen" k8s.io/kube-openapi/cmd/openapi-gen)
    gopath_gen="$cache/gopath-gen"
    mkdir -p "$gopath_gen/src/k8s.io"
    ln -sfn "$src" "$gopath_gen/src/k8s.io/kubernetes"
    inputs=$(cd "$src" \
        && find -H . \( -not \( \( -path './_*' -o -path './.*' -o -path ./vendor \) -prune \) \) -type f -name '*.go' \
        | sed 's|^\./staging/src|vendor|; s|^\./||' \
        | xargs grep -l '^// *+k8s:' | xargs grep -l '+k8s:openapi-gen=' \
        | xargs -n1 dirname | LC_ALL=C sort -u \
        | grep -v '^vendor/k8s.io/code-generator/\|^vendor/k8s.io/sample-apiserver/' \
        | sed 's|^|k8s.io/kubernetes/|' | paste -sd, -)
    (cd "$gopath_gen/src/k8s.io/kubernetes" \
        && GOROOT=$(go env GOROOT) GOPATH="$gopath_gen" GO111MODULE=off GOFLAGS= nice -n 15 \
            "$cache/bin/openapi-gen" --logtostderr -i "$inputs" \
            -p k8s.io/kubernetes/pkg/generated/openapi -O zz_generated.openapi \
            -h vendor/k8s.io/code-generator/hack/boilerplate.go.txt \
            -r "$cache/src/openapi-violations.report") || { rm -f "$openapi"; exit 1; }
fi

echo "build-kubernetes: building ${absent[*]} $version with $(go version | cut -d' ' -f3) (cold: about 12 minutes on 2 cores)"
ldflags="-s -w"
ldflags+=" -X k8s.io/component-base/version.gitVersion=v$version"
ldflags+=" -X k8s.io/component-base/version.gitMajor=1"
ldflags+=" -X k8s.io/component-base/version.gitMinor=20"
ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"
ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=v$version"
ldflags+=" -X k8s.io/client-go/pkg/version.gitMajor=1"
ldflags+=" -X k8s.io/client-go/pkg/version.gitMinor=20"
out="$cache/bin/.part"
rm -rf "$out" && mkdir -p "$out"
(cd "$src" && nice -n 15 go build -mod=vendor -trimpath -ldflags="$ldflags" -o "$out/" "${absent[@]/#/./cmd/}")
for b in "${absent[@]}"; do mv "$out/$b" "$cache/bin/$b"; "$cache/bin/$b" --version; done
rmdir "$out"
echo "build-kubernetes: built ${absent[*]} in $(($(date +%s) - start)) s"
# Nothing else is needed once the binary is there: drop the 1.5 GB of sources and Go caches.
chmod -R u+w "$GOPATH" 2>/dev/null || true
rm -rf "$src" "$GOCACHE" "$GOPATH" "$cache/gopath-gen" "$cache/bin/openapi-gen"
