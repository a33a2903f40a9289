#!/usr/bin/env python3
"""Train small XGBoost, LightGBM and scikit-learn models and record what Python predicts.

Usage: make-test-models.py OUTDIR

For every model this writes OUTDIR/<name>/ holding the model file(s) and expected.json:

    {
      "library": "xgboost" | "lightgbm",
      "version": "<library version>",
      "objective": "<objective as the library names it>",
      "n_features": <int>,
      "inputs": [[float | null, ...], ...],     # null = missing (NaN)
      "predictions": [...],                     # Booster.predict(inputs), flattened row-major
      "margins": [...],                         # the raw scores, flattened row-major
      "n_outputs": <int>                        # values per row in "predictions"
    }

XGBoost models are saved as model.json and model.ubj; LightGBM models as model.txt and a
copy named model.bst (the name KServe's lgbserver loads). Everything is seeded and
single-threaded, so reruns produce the same files.

scikit-learn models are converted to ONNX with skl2onnx (zipmap off, so a classifier has
a `label` and a `probabilities` tensor) into OUTDIR/onnx/<name>/model.onnx, with
expected.json:

    {
      "library": "sklearn", "estimator": "<class name>", "n_features": <int>,
      "input_name": "<ONNX input>", "inputs": [[float, ...], ...],
      "onnxruntime": {"<output>": {"datatype": "FP32" | "INT64" | "BYTES",
                                   "shape": [...], "data": [...]}},
      "sklearn": {"predict": [...], "predict_proba": [[...], ...] | null}
    }

They sit one level down so the tree-model tests, which read OUTDIR/*/expected.json, do
not see them.
"""

import json
import os
import shutil
import sys

import lightgbm as lgb
import numpy as np
import xgboost as xgb
from sklearn.datasets import load_iris
from sklearn.ensemble import (GradientBoostingClassifier, RandomForestClassifier,
                              RandomForestRegressor)
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

SEED = 20240601


def regression_data(n=400, n_features=6, nan_fraction=0.05, seed=SEED):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_features))
    # A feature with many exact zeros, for LightGBM's zero-as-missing handling.
    X[:, 1] = np.where(rng.random(n) < 0.3, 0.0, X[:, 1])
    y = 3.0 * X[:, 0] - 2.0 * X[:, 1] + np.sin(2.0 * X[:, 2]) + 0.5 * X[:, 3] * X[:, 4]
    y += rng.normal(scale=0.1, size=n)
    X[rng.random(X.shape) < nan_fraction] = np.nan
    return X, y


def binary_data(n=400, n_features=5, seed=SEED + 1):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_features))
    logit = 1.5 * X[:, 0] - X[:, 1] + X[:, 2] * X[:, 3]
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.float64)
    X[rng.random(X.shape) < 0.04] = np.nan
    return X, y


def count_data(n=400, n_features=4, seed=SEED + 2):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_features))
    y = rng.poisson(np.exp(0.5 * X[:, 0] - 0.3 * X[:, 1] + 0.5)).astype(np.float64)
    return X, y


def categorical_data(n=400, seed=SEED + 3):
    rng = np.random.default_rng(seed)
    cat = rng.integers(0, 12, size=n).astype(np.float64)
    num = rng.normal(size=(n, 2))
    effect = np.array([2.0, -1.0, 0.5, 3.0, -2.0, 0.0, 1.0, -0.5, 2.5, -3.0, 0.2, 1.2])
    y = effect[cat.astype(int)] + num[:, 0] + rng.normal(scale=0.1, size=n)
    X = np.column_stack([cat, num])
    X[rng.random(X.shape) < 0.03] = np.nan
    return X, y


def test_inputs(X, thresholds, seed):
    """Fixed rows to predict: training rows, rows with missing values, rows sitting
    exactly on split thresholds, and extreme values."""
    rng = np.random.default_rng(seed)
    n_features = X.shape[1]
    rows = [X[i].copy() for i in range(0, min(len(X), 40))]
    for i in range(8):
        row = X[100 + i].copy()
        row[rng.random(n_features) < 0.5] = np.nan
        rows.append(row)
    rows.append(np.full(n_features, np.nan))
    rows.append(np.zeros(n_features))
    rows.append(np.full(n_features, 1e30))
    rows.append(np.full(n_features, -1e30))
    # Values equal to split thresholds exercise `<` versus `<=` at the boundary.
    for feature, threshold in thresholds[:24]:
        row = X[feature % len(X)].copy()
        row[feature] = threshold
        rows.append(row)
    return np.array(rows, dtype=np.float64)


def to_json_list(array):
    return [None if np.isnan(v) else float(v) for v in np.asarray(array, dtype=np.float64).ravel()]


def write_expected(out, library, version, objective, inputs, predictions, margins):
    predictions = np.asarray(predictions, dtype=np.float64)
    n_outputs = 1 if predictions.ndim == 1 else predictions.shape[1]
    doc = {
        "library": library,
        "version": version,
        "objective": objective,
        "n_features": int(inputs.shape[1]),
        "n_outputs": int(n_outputs),
        "inputs": [[None if np.isnan(v) else float(v) for v in row] for row in inputs],
        "predictions": to_json_list(predictions),
        "margins": to_json_list(margins),
    }
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(doc, f, indent=1, allow_nan=False)
        f.write("\n")


def xgb_thresholds(model_path):
    with open(model_path) as f:
        model = json.load(f)
    out = []
    booster = model["learner"]["gradient_booster"]
    booster = booster.get("gbtree", booster)  # dart wraps a gbtree
    for tree in booster["model"]["trees"][:3]:
        for i, left in enumerate(tree["left_children"]):
            if left != -1:
                out.append((tree["split_indices"][i], tree["split_conditions"][i]))
    return out


def make_xgb(outdir, name, params, X, y, rounds):
    out = os.path.join(outdir, name)
    os.makedirs(out)
    params = dict(params, nthread=1, seed=SEED, max_depth=params.get("max_depth", 4))
    booster = xgb.train(params, xgb.DMatrix(X, label=y), num_boost_round=rounds)
    json_path = os.path.join(out, "model.json")
    booster.save_model(json_path)
    booster.save_model(os.path.join(out, "model.ubj"))
    # Predict with the model as loaded from disk: that is what a server sees.
    loaded = xgb.Booster(model_file=json_path)
    inputs = test_inputs(X, xgb_thresholds(json_path), SEED)
    dmatrix = xgb.DMatrix(inputs)
    predictions = loaded.predict(dmatrix)
    margins = loaded.predict(dmatrix, output_margin=True)
    write_expected(out, "xgboost", xgb.__version__, params["objective"], inputs,
                   predictions, margins)


def lgb_thresholds(booster):
    out = []

    def walk(node):
        if "split_feature" in node:
            if node.get("decision_type") == "<=":
                out.append((node["split_feature"], node["threshold"]))
            walk(node["left_child"])
            walk(node["right_child"])

    for tree in booster.dump_model()["tree_info"][:3]:
        walk(tree["tree_structure"])
    return out


def make_lgb(outdir, name, params, X, y, rounds, categorical=()):
    out = os.path.join(outdir, name)
    os.makedirs(out)
    params = dict(params, num_threads=1, seed=SEED, deterministic=True, verbose=-1,
                  num_leaves=params.get("num_leaves", 15), min_data_in_leaf=5)
    dataset = lgb.Dataset(X, label=y, categorical_feature=list(categorical) or "auto",
                          free_raw_data=False)
    booster = lgb.train(params, dataset, num_boost_round=rounds)
    txt_path = os.path.join(out, "model.txt")
    booster.save_model(txt_path)
    shutil.copyfile(txt_path, os.path.join(out, "model.bst"))
    loaded = lgb.Booster(model_file=txt_path)
    inputs = test_inputs(X, lgb_thresholds(loaded), SEED + 7)
    if categorical:
        # Unseen, negative and fractional categories.
        for value in (12.0, 40.0, 100.0, -1.0, 2.5):
            row = inputs[0].copy()
            row[categorical[0]] = value
            inputs = np.vstack([inputs, row])
    predictions = loaded.predict(inputs)
    margins = loaded.predict(inputs, raw_score=True)
    write_expected(out, "lightgbm", lgb.__version__, params["objective"], inputs,
                   predictions, margins)


ONNX_DATATYPES = {np.dtype(np.float32): "FP32", np.dtype(np.float64): "FP64",
                  np.dtype(np.int64): "INT64"}


def onnx_output(value):
    value = np.asarray(value)
    if value.dtype.kind in "OUS":
        datatype, data = "BYTES", [str(v) for v in value.ravel()]
    else:
        datatype = ONNX_DATATYPES[value.dtype]
        data = [v.item() for v in value.ravel()]
    return {"datatype": datatype, "shape": list(value.shape), "data": data}


def make_onnx(outdir, name, estimator, X, y):
    """Fits `estimator`, converts it with skl2onnx and records onnxruntime's and
    scikit-learn's predictions on fixed float32 rows."""
    import onnxruntime as ort
    from skl2onnx import to_onnx

    out = os.path.join(outdir, "onnx", name)
    os.makedirs(out)
    X = X.astype(np.float32)
    estimator.fit(X, y)
    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    options = {id(final): {"zipmap": False}} if hasattr(final, "predict_proba") else None
    onx = to_onnx(estimator, X[:1], options=options, target_opset=17)
    path = os.path.join(out, "model.onnx")
    with open(path, "wb") as f:
        f.write(onx.SerializeToString())
    rng = np.random.default_rng(SEED + 11)
    inputs = np.vstack([X[:24], X[rng.integers(0, len(X), 8)] + 0.25]).astype(np.float32)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    names = [o.name for o in session.get_outputs()]
    values = session.run(names, {input_name: inputs})
    predict = estimator.predict(inputs)
    proba = estimator.predict_proba(inputs) if hasattr(final, "predict_proba") else None
    doc = {
        "library": "sklearn",
        "estimator": type(final).__name__,
        "n_features": int(X.shape[1]),
        "input_name": input_name,
        "inputs": [[float(v) for v in row] for row in inputs],
        "onnxruntime": {n: onnx_output(v) for n, v in zip(names, values)},
        "sklearn": {
            "predict": [v.item() if hasattr(v, "item") else str(v) for v in predict],
            "predict_proba": None if proba is None else proba.tolist(),
        },
    }
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(doc, f, indent=1, allow_nan=False)
        f.write("\n")


def make_sklearn_onnx(outdir, Xi, yi, Xr, yr):
    yi = yi.astype(np.int64)
    Xr = np.nan_to_num(Xr)
    species = np.array(["setosa", "versicolor", "virginica"])[yi]
    make_onnx(outdir, "sklearn-logreg-iris", LogisticRegression(max_iter=500), Xi, yi)
    make_onnx(outdir, "sklearn-logreg-iris-strings", LogisticRegression(max_iter=500),
              Xi, species)
    make_onnx(outdir, "sklearn-rf-classifier",
              RandomForestClassifier(n_estimators=50, max_depth=6, random_state=SEED), Xi, yi)
    make_onnx(outdir, "sklearn-rf-regressor",
              RandomForestRegressor(n_estimators=30, max_depth=6, random_state=SEED), Xr, yr)
    make_onnx(outdir, "sklearn-gb-classifier",
              GradientBoostingClassifier(n_estimators=30, max_depth=3, random_state=SEED),
              Xi, yi)
    make_onnx(outdir, "sklearn-scaler-logreg",
              make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)), Xi, yi)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make-test-models.py OUTDIR")
    outdir = sys.argv[1]
    os.makedirs(outdir, exist_ok=True)

    Xr, yr = regression_data()
    Xb, yb = binary_data()
    Xc, yc = count_data()
    Xk, yk = categorical_data()
    Xi, yi = load_iris(return_X_y=True)
    yi = yi.astype(np.float64)

    make_xgb(outdir, "xgb-regression", {"objective": "reg:squarederror", "eta": 0.3}, Xr, yr, 40)
    make_xgb(outdir, "xgb-regression-base-score",
             {"objective": "reg:squarederror", "base_score": 7.25, "max_depth": 6}, Xr, yr, 25)
    make_xgb(outdir, "xgb-binary", {"objective": "binary:logistic", "eta": 0.2}, Xb, yb, 30)
    make_xgb(outdir, "xgb-binary-base-score",
             {"objective": "binary:logistic", "base_score": 0.3}, Xb, yb, 20)
    make_xgb(outdir, "xgb-binary-logitraw", {"objective": "binary:logitraw"}, Xb, yb, 20)
    make_xgb(outdir, "xgb-multiclass-softprob",
             {"objective": "multi:softprob", "num_class": 3, "max_depth": 3}, Xi, yi, 20)
    make_xgb(outdir, "xgb-multiclass-softmax",
             {"objective": "multi:softmax", "num_class": 3, "max_depth": 3}, Xi, yi, 20)
    make_xgb(outdir, "xgb-poisson", {"objective": "count:poisson", "max_depth": 3}, Xc, yc, 30)
    make_xgb(outdir, "xgb-dart",
             {"objective": "reg:squarederror", "booster": "dart", "rate_drop": 0.1,
              "skip_drop": 0.0}, Xr, yr, 20)

    make_lgb(outdir, "lgb-regression", {"objective": "regression"}, Xr, yr, 40)
    make_lgb(outdir, "lgb-regression-zero-missing",
             {"objective": "regression", "zero_as_missing": True}, Xr, yr, 30)
    make_lgb(outdir, "lgb-regression-no-missing",
             {"objective": "regression", "use_missing": False}, Xr, yr, 30)
    make_lgb(outdir, "lgb-binary", {"objective": "binary"}, Xb, yb, 30)
    make_lgb(outdir, "lgb-multiclass", {"objective": "multiclass", "num_class": 3}, Xi, yi, 20)
    make_lgb(outdir, "lgb-multiclassova",
             {"objective": "multiclassova", "num_class": 3}, Xi, yi, 20)
    make_lgb(outdir, "lgb-poisson", {"objective": "poisson"}, Xc, yc, 30)
    make_lgb(outdir, "lgb-categorical", {"objective": "regression", "cat_smooth": 1.0},
             Xk, yk, 30, categorical=(0,))
    make_lgb(outdir, "lgb-random-forest",
             {"objective": "binary", "boosting": "rf", "bagging_fraction": 0.7,
              "bagging_freq": 1, "feature_fraction": 0.8}, Xb, yb, 20)

    make_sklearn_onnx(outdir, Xi, yi, Xr, yr)


if __name__ == "__main__":
    main()
