#!/usr/bin/env bash
# The storage tests' S3 server: s3s-fs, a real S3 API (SigV4 checked, ranged GETs) over a
# directory, built from crates.io into a cache outside the clone. Prints the binary's path.
# Usage: tools/install-storage-test-tools.sh
set -euo pipefail
tools="${SERVAL_TOOLS_DIR:-$HOME/.cache/serval-tools}"
bin="$tools/s3s-fs/bin/s3s-fs"
if [[ ! -x "$bin" ]]; then
    # 0.14 is the last release that builds with this machine's Rust (1.95).
    CARGO_TARGET_DIR="$tools/s3s-fs-build" cargo install s3s-fs@0.14.1 --features binary \
        --locked --quiet --root "$tools/s3s-fs" >&2
    rm -rf "$tools/s3s-fs-build"
fi
echo "$bin"
