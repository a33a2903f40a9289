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
import argparse, os, statistics, subprocess, sys, tempfile, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import activator as bench  # noqa: E402  (free_port, wait_for, stop_all)
from activator_ab import comm, descendants, measure  # noqa: E402

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
        results = {label: [] for label, *_ in paths}
        for round_ in range(args.rounds):
            for label, url, host, roles in paths:
                bench.wrk(url, args.concurrency, 1, host, script)
                r, cpu = measure(url, host, args.concurrency, args.duration, roles, script)
                if r["non2xx"]:
                    sys.exit(f"{r['non2xx']} non-2xx answers from {url}")
                results[label].append((r, cpu))
                print(f"round {round_ + 1}/{args.rounds} {label}: {r['rps']:.0f} req/s",
                      file=sys.stderr, flush=True)
        report(results, args)
    finally:
        bench.stop_all(procs)


def report(results, args):
    direct = results["direct"]
    print(f"concurrency {args.concurrency}, {args.rounds} rounds of {args.duration} s, "
          "medians (min–max)\n")
    print("| path | req/s | vs direct | p50 added µs | activator CPU µs/req "
          "| queue-proxy CPU µs/req | runtime CPU µs/req |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, runs in results.items():
        rps = statistics.median(r["rps"] for r, _ in runs)
        ratios = [r["rps"] / d["rps"] for (r, _), (d, _) in zip(runs, direct)]
        added = statistics.median((r["p50"] - d["p50"]) * 1000
                                  for (r, _), (d, _) in zip(runs, direct))

        def cell(role):
            values = [cpu[role] for _, cpu in runs if role in cpu]
            return f"{statistics.median(values):.1f}" if values else "-"
        print(f"| {label} | {rps:.0f} | {statistics.median(ratios):.2f}x "
              f"({min(ratios):.2f}–{max(ratios):.2f}) | {added:.0f} | {cell('activator')} | "
              f"{cell('queue-proxy')} | {cell('runtime')} |")


if __name__ == "__main__":
    main()
