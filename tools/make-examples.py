#!/usr/bin/env python3
"""Writes the small models the examples serve: an sklearn iris classifier as ONNX and an
XGBoost iris classifier. Run with the test venv (tools/make-test-models.sh creates it):

    ~/.cache/serval-venv/bin/python tools/make-examples.py
"""
import os
import sys

import numpy as np
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "models")
X, y = load_iris(return_X_y=True)

# sklearn -> ONNX, without ZipMap so probabilities come back as a tensor.
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType

logreg = LogisticRegression(max_iter=1000, random_state=0).fit(X, y)
onnx_model = convert_sklearn(
    logreg,
    initial_types=[("input", FloatTensorType([None, 4]))],
    options={id(logreg): {"zipmap": False}},
    target_opset=15,
)
os.makedirs(os.path.join(root, "iris-onnx"), exist_ok=True)
with open(os.path.join(root, "iris-onnx", "model.onnx"), "wb") as f:
    f.write(onnx_model.SerializeToString())

import xgboost as xgb

booster = xgb.XGBClassifier(n_estimators=20, max_depth=3, random_state=0, n_jobs=1).fit(X, y)
os.makedirs(os.path.join(root, "iris-xgboost"), exist_ok=True)
booster.get_booster().save_model(os.path.join(root, "iris-xgboost", "model.json"))

sample = np.array([[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]])
print("sklearn:", logreg.predict(sample).tolist(), "xgboost:", booster.predict_proba(sample).round(4).tolist(), file=sys.stderr)
