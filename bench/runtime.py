#!/usr/bin/env python3
"""Side-by-side benchmark of model servers on the same models and the same load generator:
`serval runtime` vs KServe's Python model server (bench/kserve_model_server.py, a
`kserve.Model` subclass doing what sklearnserver/xgbserver do) vs MLServer
(mlserver-sklearn, mlserver-xgboost).

Models (bench/make_bench_models.py): an iris logistic regression, a 50-tree random forest
and a 100-tree XGBoost model on breast cancer. Serval serves the skl2onnx conversion of the
sklearn models and the same XGBoost model.json; KServe and MLServer the joblib files and
the model.json.

Load: wrk POSTing a fixed JSON body with 1 or 64 rows, at several concurrencies, one server
at a time. Serval and KServe are driven over KServe V1 (`:predict` with `instances`);
MLServer over Open Inference Protocol V2 REST (`/infer`; it does not speak V1), and Serval
over the same V2 body for the like-for-like row. Each answer is checked for the right
number of predictions before measuring. Prints markdown tables (raw numbers, then Serval's
ratios) to stdout, progress to stderr.

usage: bench/runtime.py [--serval target/bench/release/serval] [--duration 5]
                        [--concurrency 1,8,64] [--rows 1,64] [--models DIR]
"""
import argparse, glob, json, os, re, signal, socket, subprocess, sys, tempfile, time
import urllib.error, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOME = os.path.expanduser("~")
SERVAL_VENV = os.path.join(HOME, ".cache/serval-venv")
MLSERVER_VENV = os.path.join(HOME, ".cache/serval-bench-mlserver-venv")

# name -> (Serval's model directory, KServe/MLServer model file, MLServer implementation)
MODELS = {
    "iris-logreg": ("iris-logreg-onnx", "iris-logreg/model.joblib", "mlserver_sklearn.SKLearnModel"),
    "cancer-rf": ("cancer-rf-onnx", "cancer-rf/model.joblib", "mlserver_sklearn.SKLearnModel"),
    "cancer-xgb": ("cancer-xgb", "cancer-xgb/model.json", "mlserver_xgboost.XGBoostModel"),
}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def http(url, body=None, timeout=10):
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Server:
    """A server process in its own process group, so stopping it stops its workers too."""

    def __init__(self, label, argv, ready_url, workdir, env=None, cwd=None):
        self.label = label
        self.log_path = os.path.join(workdir, re.sub(r"\W+", "-", label) + ".log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, cwd=cwd,
                                     env={**os.environ, **(env or {})}, start_new_session=True)
        deadline = time.time() + 180
        while time.time() < deadline:
            if self.proc.poll() is not None:
                self.fail(f"exited with status {self.proc.returncode} before it was ready")
            try:
                if http(ready_url, timeout=1)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        self.fail(f"not ready at {ready_url} after 180 s")

    def fail(self, why):
        self.stop()
        with open(self.log_path, errors="replace") as f:
            tail = f.read()[-3000:]
        raise SystemExit(f"{self.label}: {why}\n--- {self.log_path} ---\n{tail}")

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        try:  # whatever is left of the group (workers that outlived their parent)
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.log.close()


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def parse_latency(text, pct):
    m = re.search(rf"^\s+{pct}(?:\.0+)?%\s+([\d.]+)(us|ms|s)\b", text, re.M)
    return float(m.group(1)) * UNITS[m.group(2)] if m else float("nan")


def wrk(url, lua, conns, duration):
    threads = 1 if conns == 1 else 2
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{conns}", f"-d{duration}s", "--timeout", "10s",
                          "--latency", "-s", lua, url],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {"rps": rps, "p50": parse_latency(out, 50), "p99": parse_latency(out, 99),
            "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "sockerr": sum(int(x) for x in sock.groups()) if sock else 0}


def bodies(models_dir, model, rows):
    meta = json.load(open(os.path.join(models_dir, model, "meta.json")))
    data = json.load(open(os.path.join(models_dir, model, "rows.json")))[:rows]
    while len(data) < rows:
        data = (data * 2)[:rows]
    v1 = {"instances": data}
    # The same V2 body goes to Serval and MLServer: Serval's input name and datatype
    # (MLServer takes the first input whatever its name); no `outputs`, so each server
    # answers with what it returns by default.
    v2 = {"inputs": [{"name": meta["input"], "shape": [rows, meta["features"]],
                      "datatype": meta["datatype"], "data": [x for r in data for x in r]}]}
    return json.dumps(v1, separators=(",", ":")), json.dumps(v2, separators=(",", ":"))


def check_answer(label, url, body, rows, protocol):
    status, raw = http(url, body.encode())
    if status != 200:
        raise SystemExit(f"{label}: {url} answered {status}: {raw[:500]!r}")
    ans = json.loads(raw)
    if protocol == "v1":
        n = len(ans["predictions"])
    else:
        n = ans["outputs"][0]["shape"][0]
    if n != rows:
        raise SystemExit(f"{label}: expected {rows} predictions, got {n}: {raw[:500]!r}")
    return ans


def lua_script(workdir, name, body):
    body_path = os.path.join(workdir, name + ".json")
    with open(body_path, "w") as f:
        f.write(body)
    lua = os.path.join(workdir, name + ".lua")
    with open(lua, "w") as f:
        f.write(f"""wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("{body_path}", "rb")
wrk.body = f:read("*a")
f:close()
""")
    return lua


def bench_server(args, work, server, model, endpoints, results):
    """endpoints: [(protocol, url)]; runs every rows x concurrency for each."""
    for protocol, url in endpoints:
        for rows in args.rows:
            v1, v2 = bodies(args.models, model, rows)
            body = v1 if protocol == "v1" else v2
            label = f"{server} {protocol} {model} rows={rows}"
            ans = check_answer(label, url, body, rows, protocol)
            if rows == 1:
                log(f"  {label}: {json.dumps(ans)[:160]}")
            lua = lua_script(work, f"{server}-{protocol}-{model}-{rows}", body)
            for conns in args.concurrency:
                log(f"  {server} {protocol} {model} rows={rows} c={conns} (load {loadavg()})")
                wrk(url, lua, conns, args.warmup)
                r = wrk(url, lua, conns, args.duration)
                results[(server, protocol, model, rows, conns)] = r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--serval", default=os.path.join(ROOT, "target/bench/release/serval"))
    ap.add_argument("--kserve-python", default=os.path.join(SERVAL_VENV, "bin/python"))
    ap.add_argument("--mlserver", default=os.path.join(MLSERVER_VENV, "bin/mlserver"))
    ap.add_argument("--ort-dylib-path", default=os.environ.get("ORT_DYLIB_PATH") or next(iter(sorted(
        glob.glob(os.path.join(SERVAL_VENV, "lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so*")))), ""))
    ap.add_argument("--models", default="/tmp/serval-bench-models")
    ap.add_argument("--model", default=",".join(MODELS), help="comma-separated subset of " + ",".join(MODELS))
    ap.add_argument("--servers", default="serval,kserve,mlserver")
    ap.add_argument("--python-omp-threads", type=int, default=1,
                    help="OMP_NUM_THREADS for KServe and MLServer (0: leave it unset); xgboost's "
                         "default of one OpenMP thread per core thrashes when wrk shares the cores")
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--concurrency", default="1,8,64")
    ap.add_argument("--rows", default="1,64")
    args = ap.parse_args()
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    args.rows = [int(r) for r in args.rows.split(",")]
    servers = args.servers.split(",")
    models = args.model.split(",")
    if not os.path.isdir(args.models):
        log(f"training the models into {args.models}")
        subprocess.run([args.kserve_python, os.path.join(ROOT, "bench/make_bench_models.py"), args.models],
                       check=True, stdout=subprocess.DEVNULL)
    work = tempfile.mkdtemp(prefix="serval-bench-runtime-")
    cpus = os.cpu_count()
    cpu_model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    loads = [f"start {loadavg()}"]
    log(f"{cpus} CPUs ({cpu_model}), load average {loadavg()}; logs in {work}")
    py_env = {"OMP_NUM_THREADS": str(args.python_omp_threads)} if args.python_omp_threads else {}
    results = {}
    t0 = time.time()
    for model in models:
        serval_dir, file_rel, impl = MODELS[model]
        name = model
        for server in servers:
            log(f"{model}: starting {server} (load {loadavg()})")
            if server == "serval":
                port = free_port()
                s = Server(f"serval {model}", [args.serval, "runtime", "--model-name", name,
                                               "--model-dir", os.path.join(args.models, serval_dir),
                                               "--bind-address", "127.0.0.1", "--http-port", str(port),
                                               "--grpc-port", str(free_port())],
                           f"http://127.0.0.1:{port}/v2/health/ready", work,
                           env={"ORT_DYLIB_PATH": args.ort_dylib_path, "RUST_LOG": "warn"})
                endpoints = [("v1", f"http://127.0.0.1:{port}/v1/models/{name}:predict"),
                             ("v2", f"http://127.0.0.1:{port}/v2/models/{name}/infer")]
            elif server == "kserve":
                port = free_port()
                s = Server(f"kserve {model}", [args.kserve_python, os.path.join(ROOT, "bench/kserve_model_server.py"),
                                               "--model_name", name,
                                               "--model_dir", os.path.dirname(os.path.join(args.models, file_rel)),
                                               "--http_port", str(port), "--grpc_port", str(free_port())],
                           f"http://127.0.0.1:{port}/v1/models/{name}", work, env=py_env)
                endpoints = [("v1", f"http://127.0.0.1:{port}/v1/models/{name}:predict")]
            elif server == "mlserver":
                port = free_port()
                repo = os.path.join(work, f"mlserver-{model}")
                os.makedirs(os.path.join(repo, name), exist_ok=True)
                with open(os.path.join(repo, "settings.json"), "w") as f:
                    json.dump({"host": "127.0.0.1", "http_port": port, "grpc_port": free_port(),
                               "metrics_port": free_port()}, f)
                with open(os.path.join(repo, name, "model-settings.json"), "w") as f:
                    json.dump({"name": name, "implementation": impl,
                               "parameters": {"uri": os.path.join(args.models, file_rel)}}, f)
                s = Server(f"mlserver {model}", [args.mlserver, "start", repo],
                           f"http://127.0.0.1:{port}/v2/models/{name}/ready", work, env=py_env, cwd=repo)
                endpoints = [("v2", f"http://127.0.0.1:{port}/v2/models/{name}/infer")]
            else:
                raise SystemExit(f"unknown server {server}")
            try:
                bench_server(args, work, server, model, endpoints, results)
            finally:
                s.stop()
            loads.append(f"after {server} {model} {loadavg()}")
    log(f"done in {time.time() - t0:.0f} s")

    print(f"Machine: {cpus} CPUs ({cpu_model}) shared by wrk and the server; "
          f"wrk {args.warmup} s warm-up + {args.duration} s per cell, one server running at a time; "
          f"KServe and MLServer with OMP_NUM_THREADS={args.python_omp_threads or 'unset'}.")
    print(f"Load average (1/5/15 min): {'; '.join(loads)}.")
    print()
    print("| model | rows | conns | server | protocol | req/s | p50 ms | p99 ms | non-2xx | socket errors |")
    print("|---|---:|---:|---|---|---:|---:|---:|---:|---:|")
    for model in models:
        for rows in args.rows:
            for conns in args.concurrency:
                for server in servers:
                    for protocol in ("v1", "v2"):
                        r = results.get((server, protocol, model, rows, conns))
                        if r:
                            print(f"| {model} | {rows} | {conns} | {server} | {protocol.upper()} | {r['rps']:.0f} | "
                                  f"{r['p50']:.2f} | {r['p99']:.2f} | {r['non2xx']} | {r['sockerr']} |")
    print()
    print("Serval vs the others: throughput ratio (Serval req/s ÷ theirs; target vs KServe ≥ 10x) and "
          "p99 ratio (Serval p99 ÷ theirs; target vs KServe ≤ 0.20).")
    print()
    print("| model | rows | conns | vs KServe (V1) req/s | vs KServe p99 | meets target | vs MLServer (V2) req/s | vs MLServer p99 |")
    print("|---|---:|---:|---:|---:|---|---:|---:|")
    for model in models:
        for rows in args.rows:
            for conns in args.concurrency:
                def ratio(other, protocol):
                    a = results.get(("serval", protocol, model, rows, conns))
                    b = results.get((other, protocol, model, rows, conns))
                    if not a or not b:
                        return None
                    return a["rps"] / b["rps"], a["p99"] / b["p99"]
                k = ratio("kserve", "v1")
                m = ratio("mlserver", "v2")
                ks = (f"{k[0]:.1f}x | {k[1]:.3f} | {'yes' if k[0] >= 10 and k[1] <= 0.2 else 'no'}"
                      if k else "- | - | -")
                ms = f"{m[0]:.1f}x | {m[1]:.3f}" if m else "- | -"
                print(f"| {model} | {rows} | {conns} | {ks} | {ms} |")


if __name__ == "__main__":
    main()
