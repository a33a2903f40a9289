#!/usr/bin/env python3
"""What a prompt token costs a language-model replica, in output tokens: the number to put
in `serving.serval.dev/prompt-token-cost` (or config-autoscaler's `prompt-token-cost`).

Starts `serval runtime` on a GGUF model directory (by default SmolLM2-135M-Instruct from
`bash tools/link-smollm2.sh`), or measures a running OpenAI-compatible server with --url,
and measures two rates on it, one after the other:

- prefill: long prompts (`--prompt-words` words, about 1.5 tokens each), one output token,
  one request at a time; prompt tokens (from `usage`) over the wall time;
- decode: `--sequences` requests at once, each a short prompt and `--max-tokens` output
  tokens (`ignore_eos`); output tokens over the wall time.

The cost is decode rate over prefill rate: the share of a replica a prompt token takes,
counted in output tokens. Prints a markdown table to stdout, progress to stderr.

usage: bench/prompt_token_cost.py [--serval target/release/serval] [--model-dir DIR]
                                  [--url http://host:port/v1] [--rounds 3]
"""
import argparse, concurrent.futures, json, os, subprocess, sys, threading, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILLER = "the quick brown fox jumps over the lazy dog and keeps running through the field "


def post(url, body):
    request = urllib.request.Request(
        url + "/completions", data=json.dumps(body).encode(),
        headers={"content-type": "application/json"})
    started = time.monotonic()
    with urllib.request.urlopen(request, timeout=600) as response:
        answer = json.load(response)
    return time.monotonic() - started, answer


def start_runtime(binary, model_dir, model):
    """`serval runtime` on ports it picks itself; its ready log line says which."""
    proc = subprocess.Popen(
        [binary, "runtime", "--model-dir", model_dir, "--model-name", model,
         "--http-port", "0", "--grpc-port", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if "ready" in record.get("message", "") and "http" in record:
            port = record["http"].rsplit(":", 1)[1]
            # Keep reading its log so the runtime never blocks on a full pipe.
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return proc, f"http://127.0.0.1:{port}/v1"
    sys.exit(f"serval runtime exited before it was ready (exit code {proc.wait()})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--serval", default=os.path.join(ROOT, "target/release/serval"))
    ap.add_argument("--model-dir", default=os.path.join(ROOT, "examples/models/smollm2"))
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--url", help="an OpenAI-compatible server's /v1 URL instead of starting one")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--prompt-words", type=int, default=600)
    ap.add_argument("--sequences", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=128)
    args = ap.parse_args()

    proc, url = (None, args.url) if args.url else start_runtime(args.serval, args.model_dir, args.model)
    try:
        rows = []
        for round_ in range(args.rounds):
            print(f"round {round_ + 1}/{args.rounds}: prefill", file=sys.stderr)
            tokens = seconds = 0.0
            for i in range(3):
                # A different first word each time, so no prompt prefix is reused.
                prompt = f"{round_}-{i} " + FILLER * (args.prompt_words // 16)
                took, answer = post(url, {"model": args.model, "prompt": prompt,
                                          "max_tokens": 1, "temperature": 0})
                tokens += answer["usage"]["prompt_tokens"]
                seconds += took
            prefill = tokens / seconds
            print(f"round {round_ + 1}/{args.rounds}: decode", file=sys.stderr)

            def one(i):
                return post(url, {"model": args.model, "prompt": f"Story {round_}-{i}:",
                                  "max_tokens": args.max_tokens, "ignore_eos": True,
                                  "temperature": 0})[1]
            started = time.monotonic()
            with concurrent.futures.ThreadPoolExecutor(args.sequences) as pool:
                answers = list(pool.map(one, range(args.sequences)))
            wall = time.monotonic() - started
            decode = sum(a["usage"]["completion_tokens"] for a in answers) / wall
            rows.append((prefill, decode))
    finally:
        if proc:
            proc.terminate()
            proc.wait()

    print(f"| round | prefill prompt tokens/s | decode output tokens/s ({args.sequences} sequences) | prompt-token cost |")
    print("|---:|---:|---:|---:|")
    for n, (prefill, decode) in enumerate(rows, 1):
        print(f"| {n} | {prefill:.0f} | {decode:.0f} | {decode / prefill:.3f} |")
    costs = sorted(d / p for p, d in rows)
    print(f"\nmedian prompt-token cost: {costs[len(costs) // 2]:.3f}")


if __name__ == "__main__":
    main()
