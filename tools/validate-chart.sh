#!/usr/bin/env bash
# Checks the Helm chart helm/serval without a cluster:
#   1. `helm lint --strict`;
#   2. renders it for several Kubernetes versions and API sets and checks the
#      PodDisruptionBudget and HorizontalPodAutoscaler apiVersions chosen;
#   3. no "*" in any RBAC rule;
#   4. every rendered Kubernetes object against Kubernetes' own schemas
#      (kubernetes-validate --strict), for every version it knows from 1.25 up;
#   5. the chart's ClusterServingRuntimes against the chart's own CRD schema.
# Exits non-zero on any failure. Needs python3 (venv) and the package registries once.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
chart=helm/serval
helm=tools/bin/helm
[ -x "$helm" ] || bash tools/install-k8s-clients.sh

venv="${SERVAL_VENV_DIR:-$HOME/.cache/serval-venvs}/chart"
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
    echo "== making $venv with kubernetes-validate"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check kubernetes-validate
fi
py="$venv/bin/python"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=()
fail() { echo "FAIL: $*"; failures+=("$*"); }
render() { "$helm" template serval "$chart" --namespace serval-system "$@"; }

echo "== helm lint --strict"
if ! "$helm" lint --strict "$chart"; then fail "helm lint --strict"; fi

# The apiVersion a rendered kind got ("" when absent).
api_version_of() { # file kind
    "$py" - "$1" "$2" <<'PY'
import sys, yaml
kinds = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d.get("kind") == sys.argv[2]]
print(" ".join(d["apiVersion"] for d in kinds))
PY
}

echo "== helm template: apiVersions by Kubernetes version"
check_versions() { # label want_pdb want_hpa helm-args...
    local label=$1 want_pdb=$2 want_hpa=$3
    shift 3
    local out="$work/render-$label.yaml"
    if ! render "$@" >"$out"; then fail "helm template $label"; return; fi
    local pdb hpa
    pdb=$(api_version_of "$out" PodDisruptionBudget)
    hpa=$(api_version_of "$out" HorizontalPodAutoscaler)
    if [ "$pdb" = "$want_pdb" ] && [ "$hpa" = "$want_hpa" ]; then
        echo "ok   $label: PodDisruptionBudget $pdb, HorizontalPodAutoscaler $hpa"
    else
        fail "$label: PodDisruptionBudget '$pdb' (want $want_pdb), HorizontalPodAutoscaler '$hpa' (want $want_hpa)"
    fi
}
apis=(--api-versions policy/v1/PodDisruptionBudget --api-versions autoscaling/v2/HorizontalPodAutoscaler)
check_versions default policy/v1 autoscaling/v2
check_versions kube-1.20 policy/v1beta1 autoscaling/v2beta2 --kube-version 1.20.0
check_versions kube-1.22 policy/v1 autoscaling/v2beta2 --kube-version 1.22.0
check_versions kube-1.30 policy/v1 autoscaling/v2 --kube-version 1.30.0
check_versions api-versions policy/v1 autoscaling/v2 "${apis[@]}"
check_versions kube-1.20-api-versions policy/v1 autoscaling/v2 --kube-version 1.20.0 "${apis[@]}"
# One namespace, no HPA/PDB, no runtimes: still renders (and is validated below).
minimal=(--set watchNamespace=ml --set activator.hpa.enabled=false --set activator.pdb.enabled=false
    --set runtimes.serval.enabled=false --set runtimes.sklearnserver.enabled=false
    --set runtimes.xgbserver.enabled=false --set runtimes.lgbserver.enabled=false
    --set runtimes.huggingfaceserver.enabled=false --set runtimes.tritonserver.enabled=false
    --set runtimes.mlserver.enabled=false --set runtimes.vllm.enabled=false)
check_versions minimal "" "" "${minimal[@]}"
if render --set webhook.failurePolicy=Sometimes >/dev/null 2>&1; then
    fail "webhook.failurePolicy=Sometimes was accepted"
fi

echo "== RBAC: no wildcards"
if grep -nE '^\s*(verbs|resources|apiGroups|resourceNames|nonResourceURLs):.*\*' \
        "$work/render-default.yaml" "$work/render-minimal.yaml"; then
    fail "a wildcard in an RBAC rule (grep)"
fi
if ! "$py" - "$work/render-default.yaml" "$work/render-minimal.yaml" <<'PY'; then fail "RBAC rules"; fi
import sys, yaml
bad = 0
for path in sys.argv[1:]:
    for doc in yaml.safe_load_all(open(path)):
        if not doc or doc.get("kind") not in ("Role", "ClusterRole"):
            continue
        for i, rule in enumerate(doc.get("rules") or []):
            for field in ("verbs", "resources", "apiGroups", "resourceNames", "nonResourceURLs"):
                if any("*" in v for v in rule.get(field) or []):
                    print(f"{path}: {doc['kind']}/{doc['metadata']['name']} rule {i}: '*' in {field}")
                    bad += 1
            if not rule.get("verbs") or not rule.get("resources"):
                print(f"{path}: {doc['kind']}/{doc['metadata']['name']} rule {i}: no verbs or resources")
                bad += 1
print(f"ok   no wildcard in any Role or ClusterRole" if not bad else f"{bad} bad RBAC rule(s)")
sys.exit(1 if bad else 0)
PY

echo "== autoscaler.config values are strings"
if ! "$py" - "$chart/values.yaml" <<'PY'; then fail "autoscaler.config"; fi
import sys, yaml
config = yaml.safe_load(open(sys.argv[1]))["autoscaler"]["config"]
bad = [k for k, v in config.items() if not isinstance(v, str)]
print(f"ok   {len(config)} keys, all strings" if not bad else f"not strings: {bad}")
sys.exit(1 if bad else 0)
PY

# Splits a rendered chart: Kubernetes' own kinds to $2, serving.kserve.io objects to $3.
split() {
    "$py" - "$@" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
own = [d for d in docs if not d["apiVersion"].startswith("serving.kserve.io/")]
crd = [d for d in docs if d["apiVersion"].startswith("serving.kserve.io/")]
yaml.safe_dump_all(own, open(sys.argv[2], "w"), sort_keys=False)
yaml.safe_dump_all(crd, open(sys.argv[3], "w"), sort_keys=False)
PY
}

versions=$("$py" -c '
import kubernetes_validate.utils as u
vs = sorted(set(u.all_versions()), key=lambda v: tuple(map(int, v.split("."))))
print(" ".join(v for v in vs if tuple(map(int, v.split(".")))[:2] >= (1, 25)))')
echo "== kubernetes-validate --strict for $versions"
validated=()
for v in $versions; do
    for variant in default minimal; do
        args=(--kube-version "$v")
        [ "$variant" = minimal ] && args+=("${minimal[@]}")
        out="$work/k-$v-$variant.yaml"
        if ! render "${args[@]}" >"$out"; then fail "helm template --kube-version $v ($variant)"; continue; fi
        split "$out" "$work/own.yaml" "$work/crd.yaml"
        report=$("$venv/bin/kubernetes-validate" --strict -k "$v" "$work/own.yaml" 2>&1) || true
        # kubernetes-validate only warns about a kind it has no schema for (e.g. an API
        # version the release removed): that is a failure here too.
        if grep -qE '^(ERROR|WARN|FATAL)' <<<"$report" || ! grep -q '^INFO' <<<"$report"; then
            grep -vE '^INFO' <<<"$report" || true
            fail "kubernetes-validate $v ($variant)"
        else
            validated+=("$v/$variant:$(grep -c '^INFO' <<<"$report")")
        fi
    done
done
echo "ok   validated (version/variant:objects): ${validated[*]}"

echo "== ClusterServingRuntimes against the chart's CRD schema"
split "$work/render-default.yaml" "$work/own.yaml" "$work/crd.yaml"
if ! "$py" - "$chart/crds/serval-crds.yaml" "$work/crd.yaml" <<'PY'; then fail "runtimes vs CRD schema"; fi
import sys, yaml, jsonschema
crds = {}
for crd in yaml.safe_load_all(open(sys.argv[1])):
    for v in crd["spec"]["versions"]:
        key = (f'{crd["spec"]["group"]}/{v["name"]}', crd["spec"]["names"]["kind"])
        crds[key] = v["schema"]["openAPIV3Schema"]

def unknown(obj, schema, path):
    """Fields the API server would prune: not in `properties`, where the schema lists them."""
    out = []
    if isinstance(obj, dict) and schema.get("type") == "object":
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        if schema.get("x-kubernetes-preserve-unknown-fields") or (props is None and extra is None):
            return out
        for k, v in obj.items():
            if props and k in props:
                out += unknown(v, props[k], f"{path}.{k}")
            elif isinstance(extra, dict):
                out += unknown(v, extra, f"{path}.{k}")
            elif path == "" and k in ("apiVersion", "kind", "metadata"):
                continue
            else:
                out.append(f"{path}.{k}")
    elif isinstance(obj, list) and "items" in schema:
        for i, v in enumerate(obj):
            out += unknown(v, schema["items"], f"{path}[{i}]")
    return out

bad = 0
docs = [d for d in yaml.safe_load_all(open(sys.argv[2])) if d]
for doc in docs:
    name = f'{doc["kind"]}/{doc["metadata"]["name"]}'
    schema = crds.get((doc["apiVersion"], doc["kind"]))
    if schema is None:
        print(f"{name}: no CRD for {doc['apiVersion']}"); bad += 1; continue
    for e in jsonschema.Draft4Validator(schema).iter_errors(doc):
        print(f"{name}: {'.'.join(map(str, e.path))}: {e.message}"); bad += 1
    for field in unknown(doc, schema, ""):
        print(f"{name}: {field}: not in the CRD schema (the API server would drop it)"); bad += 1
print(f"ok   {len(docs)} objects match the CRD schema" if not bad else f"{bad} problem(s)")
sys.exit(1 if bad else 0)
PY

echo
if [ ${#failures[@]} -eq 0 ]; then
    echo "chart OK: lint, apiVersion selection, RBAC, Kubernetes schemas ${versions// /, }, CRD schema"
else
    echo "chart FAILED (${#failures[@]}):"
    printf '  - %s\n' "${failures[@]}"
    exit 1
fi
