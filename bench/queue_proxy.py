#!/usr/bin/env python3
"""Side-by-side benchmark: a small backend (nginx) reached directly and through the
`serval-queue-proxy` sidecar binary (containerConcurrency 0 and 8), with wrk at several
concurrencies, and through nginx configured as a keep-alive reverse proxy (a reference: what
a mature C proxy reaches on the same cores). Prints a markdown table with throughput,
p50/p99 and ratios, and the proxy's RSS, idle and under load, beside the idle RSS of the
same proxy run as `serval queue-proxy`.

usage: bench/queue_proxy.py [--serval target/release/serval] [--duration 10]
"""
import argparse, os, re, socket, subprocess, sys, tempfile, time, urllib.request

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

def wait_http(url, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except Exception:
            time.sleep(0.05)
    sys.exit(f"{url} did not answer")

def run_nginx(name, workdir, servers):
    """One nginx worker with `servers` (the inside of its http block) in `workdir`."""
    conf = os.path.join(workdir, f"{name}.conf")
    with open(conf, "w") as f:
        f.write(f"""
worker_processes 1;
pid {workdir}/{name}.pid;
error_log {workdir}/{name}.err;
daemon off;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path {workdir};
  proxy_temp_path {workdir};
  fastcgi_temp_path {workdir};
  uwsgi_temp_path {workdir};
  scgi_temp_path {workdir};
{servers}
}}""")
    return subprocess.Popen(["nginx", "-c", conf, "-p", workdir], stderr=subprocess.DEVNULL)

def start_nginx(port, workdir):
    return run_nginx("nginx", workdir, f"""
  server {{
    listen 127.0.0.1:{port};
    location / {{ default_type application/json; return 200 '{{"predictions":[1]}}'; }}
  }}""")

def start_nginx_proxy(port, backend, workdir):
    """nginx as a plain keep-alive reverse proxy in front of the backend: what a mature C
    proxy achieves on the same cores, as a reference for the queue-proxy rows."""
    return run_nginx("nginx-proxy", workdir, f"""
  upstream backend {{ server 127.0.0.1:{backend}; keepalive 512; keepalive_requests 1000000; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }}
  }}""")

def rss_kb(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}

def parse_latency(text, pct):
    m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)", text, re.M)
    return float(m.group(1)) * UNITS[m.group(2)] if m else float("nan")

def wrk(url, conns, duration):
    threads = 1 if conns == 1 else 2
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{conns}", f"-d{duration}s", "--latency", url],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50": parse_latency(out, 50), "p99": parse_latency(out, 99),
            "non2xx": int(errors.group(1)) if errors else 0}

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--serval", default="target/release/serval")
    ap.add_argument("--sidecar", help="default: serval-queue-proxy beside --serval")
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--concurrency", default="1,32,256")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="serval-bench-")
    backend = free_port()
    nginx = start_nginx(backend, work)
    procs = [nginx]
    try:
        wait_http(f"http://127.0.0.1:{backend}/")
        sidecar = args.sidecar or os.path.join(os.path.dirname(args.serval), "serval-queue-proxy")

        def start_proxy(command, cc):
            port, admin = free_port(), free_port()
            p = subprocess.Popen(command + [f"--listen=127.0.0.1:{port}",
                                  f"--admin-listen=127.0.0.1:{admin}", f"--upstream=127.0.0.1:{backend}",
                                  f"--container-concurrency={cc}", "--gpu=false"],
                                 stderr=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "warn"})
            procs.append(p)
            wait_http(f"http://127.0.0.1:{admin}/healthz")
            time.sleep(1.5)
            return port, p, rss_kb(p.pid)

        one_binary = start_proxy([args.serval, "queue-proxy"], 0)
        one_binary[1].terminate()
        one_binary[1].wait(timeout=40)
        proxies = {cc: start_proxy([sidecar], cc) for cc in (0, 8)}
        reference = free_port()
        procs.append(start_nginx_proxy(reference, backend, work))
        wait_http(f"http://127.0.0.1:{reference}/")
        rows = []
        for conns in [int(c) for c in args.concurrency.split(",")]:
            print(f"concurrency {conns}: direct", file=sys.stderr, flush=True)
            wrk(f"http://127.0.0.1:{backend}/", conns, 2)  # warm-up
            direct = wrk(f"http://127.0.0.1:{backend}/", conns, args.duration)
            rows.append(("direct", conns, direct, None))
            for cc, (port, p, _) in proxies.items():
                print(f"concurrency {conns}: queue-proxy cc={cc}", file=sys.stderr, flush=True)
                wrk(f"http://127.0.0.1:{port}/", conns, 2)
                r = wrk(f"http://127.0.0.1:{port}/", conns, args.duration)
                rows.append((f"queue-proxy cc={cc}", conns, r, direct))
            print(f"concurrency {conns}: nginx as proxy", file=sys.stderr, flush=True)
            wrk(f"http://127.0.0.1:{reference}/", conns, 2)
            r = wrk(f"http://127.0.0.1:{reference}/", conns, args.duration)
            rows.append(("nginx as proxy (reference)", conns, r, direct))
        print("| path | conns | req/s | p50 ms | p99 ms | vs direct req/s | p50 added µs | non-2xx |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for name, conns, r, d in rows:
            ratio = f"{r['rps'] / d['rps']:.2f}x" if d else "1.00x"
            added = f"{(r['p50'] - d['p50']) * 1000:.0f}" if d else "-"
            print(f"| {name} | {conns} | {r['rps']:.0f} | {r['p50']:.3f} | {r['p99']:.3f} | {ratio} | {added} | {r['non2xx']} |")
        print()
        print("| queue-proxy | RSS idle | peak RSS under load |")
        print("|---|---:|---:|")
        for cc, (port, p, idle) in proxies.items():
            print(f"| serval-queue-proxy cc={cc} | {idle / 1024:.1f} MiB | {rss_kb(p.pid, 'VmHWM') / 1024:.1f} MiB |")
        print(f"| serval queue-proxy cc=0 | {one_binary[2] / 1024:.1f} MiB | - |")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=40)
            except subprocess.TimeoutExpired:
                p.kill()

if __name__ == "__main__":
    main()
