#!/usr/bin/env python3
"""Cold start in `serval dev`: first request at zero until its response, split into phases
from the processes' own JSON logs. Prints a markdown table (median over --runs).

usage: bench/cold_start.py [--serval target/release/serval] [--runs 5] [MANIFEST...]
       (ONNX examples need ORT_DYLIB_PATH, e.g. from `pip install onnxruntime`)
"""
import argparse, datetime, glob, json, os, socket, statistics, subprocess, sys, tempfile, time, urllib.request

BODIES = {
    "xgboost-iris": ("/v2/models/xgboost-iris/infer",
                     {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [6.8, 2.8, 4.8, 1.4]}]}),
    "sklearn-iris": ("/v2/models/sklearn-iris/infer",
                     {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [6.8, 2.8, 4.8, 1.4]}]}),
}
CONFIG = "stable-window: 6s\nscale-to-zero-grace-period: 1s\nallow-zero-initial-scale: true\ninitial-scale: 0\n"

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

def ts(record):
    return datetime.datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00")).timestamp()

def records(path):
    out = []
    try:
        with open(path) as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
    except FileNotFoundError:
        pass
    return out

def first_after(recs, t0, pred):
    hits = [r for r in recs if ts(r) >= t0 and pred(r)]
    return min(hits, key=ts) if hits else None

def measure(serval, manifest, runs):
    name = os.path.basename(manifest).rsplit(".", 1)[0]
    path, body = BODIES[name]
    work = tempfile.mkdtemp(prefix="serval-cold-")
    cfg = os.path.join(work, "autoscaler.yaml")
    open(cfg, "w").write(CONFIG)
    port = free_port()
    dev_log = os.path.join(work, "dev.log")
    dev_out = open(os.path.join(work, "view.log"), "w")
    dev = subprocess.Popen([serval, "dev", f"--listen=127.0.0.1:{port}", f"--config={cfg}",
                            f"--log-dir={work}/logs", manifest],
                           stdout=dev_out, stderr=open(dev_log, "w"), env={**os.environ, "RUST_LOG": "info"})
    url = f"http://127.0.0.1:{port}/serving/default/{name}{path}"
    phases = []
    try:
        for run in range(runs):
            deadline = time.time() + 60
            while "ready 0/0" not in (open(os.path.join(work, "view.log")).read().splitlines() or [""])[-1]:
                if time.time() > deadline:
                    sys.exit(f"{name}: never scaled to zero; see {work}")
                time.sleep(0.1)
            time.sleep(0.5)
            t0 = time.time()
            req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
            with urllib.request.urlopen(req, timeout=60) as r:
                assert r.status == 200, r.status
                r.read()
            t_end = time.time()
            time.sleep(0.5)
            dev_recs = records(dev_log)
            runtime_recs = [r for f in glob.glob(f"{work}/logs/*.runtime.log") for r in records(f)]
            decision = first_after(dev_recs, t0, lambda r: r.get("message") == "scaling decision" and r.get("desired", 0) >= 1)
            started = first_after(dev_recs, t0, lambda r: r.get("message") == "replica started")
            ready = first_after(runtime_recs, t0, lambda r: r.get("message") == "model server ready")
            healthy = first_after(dev_recs, t0, lambda r: r.get("message") == "pod health changed" and r.get("healthy") is True)
            if not all([decision, started, ready, healthy]):
                print(f"{name} run {run}: missing log lines, skipped", file=sys.stderr)
                continue
            load = ready.get("load_ms", 0) / 1e3
            phases.append({
                "poke to decision": ts(decision) - t0,
                "decision to spawn": ts(started) - ts(decision),
                "process start": ts(ready) - load - ts(started),
                "model load": load,
                "ready to activator probe": ts(healthy) - ts(ready),
                "forward + first inference": t_end - ts(healthy),
                "total": t_end - t0,
            })
            print(f"{name} run {run}: {t_end - t0:.3f} s", file=sys.stderr, flush=True)
    finally:
        dev.send_signal(2)
        try:
            dev.wait(timeout=30)
        except subprocess.TimeoutExpired:
            dev.kill()
    return name, phases

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--serval", default="target/release/serval")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("manifests", nargs="*", default=["examples/xgboost-iris.yaml", "examples/sklearn-iris.yaml"])
    args = ap.parse_args()
    results = [measure(args.serval, m, args.runs) for m in args.manifests]
    keys = ["poke to decision", "decision to spawn", "process start", "model load",
            "ready to activator probe", "forward + first inference", "total"]
    print("| phase (median ms) | " + " | ".join(f"{n} ({len(p)} runs)" for n, p in results) + " |")
    print("|---|" + "---:|" * len(results))
    for k in keys:
        cells = [f"{statistics.median(p[k] for p in ph) * 1e3:.1f}" if ph else "-" for _, ph in results]
        print(f"| {k} | " + " | ".join(cells) + " |")

if __name__ == "__main__":
    main()
