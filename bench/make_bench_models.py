#!/usr/bin/env python3
"""Trains the models bench/runtime.py serves, with fixed seeds, into OUT (default
/tmp/serval-bench-models):

  iris-logreg/   scikit-learn LogisticRegression on iris (4 features, 3 classes)
  cancer-rf/     scikit-learn RandomForestClassifier, 50 trees, on breast cancer (30 features)
  cancer-xgb/    XGBoost binary:logistic, 100 trees of depth 6, on breast cancer

Each sklearn model is written twice: `model.joblib` (KServe, MLServer) and, in the
sibling `<name>-onnx/` directory, `model.onnx` converted with skl2onnx (zipmap off, one
FP32 input `X`) for Serval. The XGBoost model is one `model.json` that all three load.
`rows.json` next to each model holds 64 input rows from the training set (the request
bodies), and `meta.json` says which input name and datatype Serval's V2 endpoint expects.

Needs scikit-learn, skl2onnx and xgboost (the test venv ~/.cache/serval-venv has them).

usage: bench/make_bench_models.py [OUT]
"""
import json, os, sys

import joblib
import numpy as np
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
import xgboost as xgb


def write_rows(d, X, input_name, datatype):
    # 64 rows spread over the data set, rounded so the JSON bodies stay short.
    idx = np.linspace(0, len(X) - 1, 64).astype(int)
    rows = np.round(X[idx].astype(float), 4).tolist()
    with open(os.path.join(d, "rows.json"), "w") as f:
        json.dump(rows, f)
    with open(os.path.join(d, "meta.json"), "w") as f:
        json.dump({"input": input_name, "datatype": datatype, "features": X.shape[1]}, f)


def sklearn_model(out, name, model, X, y):
    model.fit(X, y)
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    joblib.dump(model, os.path.join(d, "model.joblib"))
    onx = convert_sklearn(model, initial_types=[("X", FloatTensorType([None, X.shape[1]]))],
                          options={id(model): {"zipmap": False}}, target_opset=17)
    d_onnx = d + "-onnx"
    os.makedirs(d_onnx, exist_ok=True)
    with open(os.path.join(d_onnx, "model.onnx"), "wb") as f:
        f.write(onx.SerializeToString())
    write_rows(d, X, "X", "FP32")
    print(f"{name}: train accuracy {model.score(X, y):.3f}", file=sys.stderr)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/serval-bench-models"
    os.makedirs(out, exist_ok=True)

    iris = load_iris()
    sklearn_model(out, "iris-logreg", LogisticRegression(max_iter=1000, random_state=0),
                  iris.data, iris.target)

    cancer = load_breast_cancer()
    sklearn_model(out, "cancer-rf", RandomForestClassifier(n_estimators=50, random_state=0, n_jobs=1),
                  cancer.data, cancer.target)

    clf = xgb.XGBClassifier(n_estimators=100, max_depth=6, learning_rate=0.1,
                            objective="binary:logistic", random_state=0, n_jobs=1)
    clf.fit(cancer.data, cancer.target)
    d = os.path.join(out, "cancer-xgb")
    os.makedirs(d, exist_ok=True)
    clf.save_model(os.path.join(d, "model.json"))
    write_rows(d, cancer.data, "input-0", "FP64")
    print(f"cancer-xgb: train accuracy {clf.score(cancer.data, cancer.target):.3f}", file=sys.stderr)
    print(out)


if __name__ == "__main__":
    main()
