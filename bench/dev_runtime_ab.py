#!/usr/bin/env python3
"""Builds side by side with Serval's own model server: each given `serval` binary runs its
own `serval dev` with the example XGBoost iris model (one replica), and every round runs
wrk with a V2 inference request against a `serval runtime` of the same model directly, then
through each build's activator + queue-proxy + runtime, back to back. Reports each build's
throughput as the median of its per-round ratios to direct, and the CPU per request of the
activator, the queue-proxy and the runtime (utime + stime over the run).

usage: bench/dev_runtime_ab.py [--rounds 8] [--duration 4] [--concurrency 32]
                               BINARY[:LABEL] ...
"""
import argparse, os, subprocess, sys, tempfile, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import activator as bench  # noqa: E402  (free_port, wait_for, stop_all)
from activator_ab import comm, descendants, path_cells, rounds, table_head  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_DIR = os.path.join(ROOT, "examples", "models", "iris-xgboost")
HOST = "xgboost-iris.default.example.com"
PATH = "/v2/models/xgboost-iris/infer"
BODY = ('{"inputs":[{"name":"input-0","shape":[1,4],"datatype":"FP32",'
        '"data":[6.8,2.8,4.8,1.4]}]}')
MANIFEST = f"""apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {{name: xgboost-iris}}
spec:
  predictor:
    minReplicas: 1
    maxReplicas: 1
    model:
      modelFormat: {{name: xgboost}}
      protocolVersion: v2
      storageUri: {MODEL_DIR}
"""
WRK_SCRIPT = f"""wrk.method = "POST"
wrk.body = '{BODY}'
wrk.headers["Content-Type"] = "application/json"
"""


def answers(url, host=None):
    request = urllib.request.Request(url, data=BODY.encode(), method="POST",
                                     headers={"Content-Type": "application/json",
                                              **({"Host": host} if host else {})})
    try:
        return urllib.request.urlopen(request, timeout=2).status == 200
    except Exception:
        return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("builds", nargs="+", help="BINARY[:LABEL]: a serval binary and its label")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--duration", type=int, default=4)
    ap.add_argument("--concurrency", type=int, default=32)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="serval-bench-dev-runtime-")
    script = os.path.join(work, "infer.lua")
    open(script, "w").write(WRK_SCRIPT)
    manifests = os.path.join(work, "manifests")
    os.makedirs(manifests)
    open(os.path.join(manifests, "iris.yaml"), "w").write(MANIFEST)
    first = args.builds[0].split(":")[0]
    direct_port = bench.free_port()
    direct = subprocess.Popen([first, "runtime", "--model-name=xgboost-iris",
                               f"--model-dir={MODEL_DIR}", "--bind-address=127.0.0.1",
                               f"--http-port={direct_port}", f"--grpc-port={bench.free_port()}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs = [direct]
    paths = []  # (label, url, host, roles)
    try:
        direct_url = f"http://127.0.0.1:{direct_port}{PATH}"
        bench.wait_for(lambda: answers(direct_url), 30, "the direct runtime")
        paths.append(("direct", direct_url, None, {"runtime": [direct.pid]}))
        for i, build in enumerate(args.builds):
            binary, label = (build.split(":", 1) + [""])[:2]
            port = bench.free_port()
            dev = subprocess.Popen([binary, "dev", f"--listen=127.0.0.1:{port}",
                                    f"--log-dir={work}/logs-{i}", manifests],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(dev)
            url = f"http://127.0.0.1:{port}{PATH}"
            bench.wait_for(lambda: answers(url, HOST), 60, f"{binary}'s activator path")
            family = descendants(dev.pid)
            roles = {"activator": [dev.pid],
                     "queue-proxy": [p for p in family if comm(p).startswith("serval-queue")],
                     "runtime": [p for p in family
                                 if comm(p) == "serval" and p != dev.pid]}
            paths.append((label or binary, url, HOST, roles))
        report(rounds(paths, args, script), args)
    finally:
        bench.stop_all(procs)


def report(results, args):
    roles = ["activator", "queue-proxy", "runtime"]
    table_head(args, [f"{role} CPU µs/req" for role in roles])
    for label, runs in results.items():
        print(f"| {label} | " + " | ".join(path_cells(runs, results["direct"], roles)) + " |")


if __name__ == "__main__":
    main()
