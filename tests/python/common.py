"""Shared by the client scripts: run a client against a model and print, as JSON, what it
returned; tests/tests/runtime_python_clients.rs compares that with the model's
expected.json."""

import json
import sys

import numpy as np


def load(model_dir):
    with open(f"{model_dir}/expected.json") as f:
        expected = json.load(f)
    inputs = np.array(expected["inputs"], dtype=np.float32)
    return expected, inputs


def tensor(got):
    """A numpy array from a client as {"shape", "data"}: flat values, strings decoded."""
    got = np.asarray(got)
    values = [v.decode() if isinstance(v, bytes) else v for v in got.ravel().tolist()]
    return {"shape": list(got.shape), "data": values}


def main(run):
    """`run(url, model, expected, inputs)` returns what the client saw, printed as JSON."""
    if len(sys.argv) != 4:
        sys.exit(f"usage: {sys.argv[0]} URL MODEL_NAME MODEL_DIR")
    url, model, model_dir = sys.argv[1:]
    print(json.dumps(run(url, model, *load(model_dir))))
