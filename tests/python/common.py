"""Shared by the client scripts: read a model's expected.json and compare answers."""

import json
import sys

import numpy as np


def load(model_dir):
    with open(f"{model_dir}/expected.json") as f:
        expected = json.load(f)
    inputs = np.array(expected["inputs"], dtype=np.float32)
    return expected, inputs


def check_output(name, got, want):
    """`got` is a numpy array from a client; `want` is expected.json's onnxruntime entry."""
    got = np.asarray(got)
    assert list(got.shape) == want["shape"], f"{name}: shape {got.shape} vs {want['shape']}"
    if want["datatype"] == "BYTES":
        values = [v.decode() if isinstance(v, bytes) else str(v) for v in got.ravel()]
        assert values == want["data"], f"{name}: {values[:5]} vs {want['data'][:5]}"
    else:
        np.testing.assert_allclose(got.ravel(), np.array(want["data"], dtype=np.float64),
                                   rtol=1e-6, atol=1e-6, err_msg=name)


def main(run):
    if len(sys.argv) != 4:
        sys.exit(f"usage: {sys.argv[0]} URL MODEL_NAME MODEL_DIR")
    url, model, model_dir = sys.argv[1:]
    run(url, model, *load(model_dir))
    print("ok")
