#!/usr/bin/env bash
# The storage tests' peers, from PyPI, into a venv outside the clone: moto's S3 server
# (a real S3 API on loopback), boto3 to seed it, and the AWS CLI for the benchmark.
# Prints the venv's path. Usage: tools/install-storage-test-tools.sh
set -euo pipefail
venv="${SERVAL_VENV_DIR:-$HOME/.cache/serval-venvs}/storage"
stamp="$venv/.serval-storage-tools-v1"
if [[ ! -f "$stamp" ]]; then
    python3 -m venv "$venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        'moto[server]>=5,<6' 'boto3>=1.34,<2' 'awscli>=1.32,<2' >&2
    touch "$stamp"
fi
echo "$venv"
