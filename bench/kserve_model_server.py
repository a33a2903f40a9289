#!/usr/bin/env python3
"""KServe's Python model server serving a joblib (scikit-learn) or model.json (XGBoost)
model: the stand-in for KServe's sklearnserver and xgbserver, which are not on PyPI.
The `kserve.Model` subclass does what theirs do: sklearnserver loads the one
`*.joblib`/`*.pkl`/`*.pickle` file with joblib and answers `model.predict(instances)`;
xgbserver loads `model.json`/`*.bst`/`*.ubj` into an `xgb.Booster` (nthread 1, its
default) and answers `booster.predict(DMatrix(instances))`. Everything else is the
`kserve` package's ModelServer with its defaults (one uvicorn worker, latency logging on),
so its flags work: --http_port, --grpc_port, --enable_grpc, --workers, ...

usage: bench/kserve_model_server.py --model_name NAME --model_dir DIR [--http_port 8080]
(run it with a Python that has kserve, scikit-learn and xgboost: ~/.cache/serval-venv)
"""
import argparse, os, pathlib

import kserve
from kserve.errors import InferenceError
from kserve.utils.utils import get_predict_input, get_predict_response

SKLEARN_EXTENSIONS = (".joblib", ".pkl", ".pickle")
XGBOOST_EXTENSIONS = (".json", ".bst", ".ubj")


class BenchModel(kserve.Model):
    def __init__(self, name, model_dir, nthread=1):
        super().__init__(name)
        self.model_dir = model_dir
        self.nthread = nthread
        self.kind = None
        self.ready = False

    def load(self):
        files = sorted(p for p in pathlib.Path(self.model_dir).iterdir() if p.is_file())
        sk = [p for p in files if p.suffix in SKLEARN_EXTENSIONS]
        xg = [p for p in files if p.suffix in XGBOOST_EXTENSIONS and p.name != "meta.json"
              and p.name != "rows.json"]
        if sk:
            import joblib
            self._model = joblib.load(sk[0])
            self.kind = "sklearn"
        elif xg:
            import xgboost as xgb
            self._booster = xgb.Booster(params={"nthread": self.nthread}, model_file=str(xg[0]))
            self.kind = "xgboost"
        else:
            raise RuntimeError(f"no model file in {self.model_dir}")
        self.ready = True
        return self.ready

    def predict(self, payload, headers=None):
        try:
            instances = get_predict_input(payload)
            if self.kind == "sklearn":
                result = self._model.predict(instances)
            else:
                import xgboost as xgb
                result = self._booster.predict(xgb.DMatrix(instances, nthread=self.nthread))
            return get_predict_response(payload, result, self.name)
        except Exception as e:
            raise InferenceError(str(e))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(parents=[kserve.model_server.parser])
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--nthread", type=int, default=1)
    args, _ = parser.parse_known_args()
    model = BenchModel(args.model_name, args.model_dir, args.nthread)
    model.load()
    kserve.ModelServer().start([model])
