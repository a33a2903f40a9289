#!/usr/bin/env python3
"""Side by side: the same nginx backend reached directly, through a queue-proxy, and through
the activator + queue-proxy (both run by `serval dev`), with wrk at several concurrencies;
then, in a fresh `serval dev` per protocol, the process's memory while the activator holds
10,000 requests for a revision whose one pod never becomes ready. Prints markdown tables.

usage: bench/activator.py [--serval target/release/serval] [--duration 8] [--held 10000 (0 skips)]
"""
import argparse, json, os, re, socket, subprocess, sys, tempfile, time, urllib.request

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

NGINX = """worker_processes 1; pid {work}/nginx-PORT.pid; error_log {work}/nginx-PORT.err; daemon off;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 1000000;
  client_body_temp_path {work}; proxy_temp_path {work}; fastcgi_temp_path {work};
  uwsgi_temp_path {work}; scgi_temp_path {work};
  server {{ listen 127.0.0.1:PORT; location / {{ default_type application/json; return 200 '{{"predictions":[1]}}'; }} }} }}
"""

MANIFEST = """apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {{name: {name}}}
spec:
  predictor:
    minReplicas: {min}
    maxReplicas: {max}
    containers:
      - name: kserve-container
        image: local
        command: ["sh", "-c", "{command}"]
"""

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}

def latency(text, pct):
    m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)", text, re.M)
    return float(m.group(1)) * UNITS[m.group(2)] if m else float("nan")

def wrk(url, conns, duration, host=None, script=None):
    """`script`: a wrk Lua script (for example a POST body) instead of plain GETs."""
    cmd = ["wrk", f"-t{1 if conns == 1 else 2}", f"-c{conns}", f"-d{duration}s", "--latency"]
    if host:
        cmd += ["-H", f"Host: {host}"]
    if script:
        cmd += ["-s", script]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True).stdout
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50": latency(out, 50), "p99": latency(out, 99), "non2xx": int(non2xx.group(1)) if non2xx else 0}

def rss_mb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0

def wait_for(pred, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.1)
    sys.exit(f"timed out waiting for {what}")

def nginx_service(work, max_replicas):
    """In `work`: a manifests dir whose service `bench` runs nginx returning a constant (one
    replica at least), and the config of one more nginx for the direct path. Returns
    (manifests dir, direct port, direct nginx config)."""
    template = os.path.join(work, "nginx.tmpl")
    open(template, "w").write(NGINX.format(work=work))
    serve = f"sed s/PORT/$PORT/g {template} > {work}/nginx-$PORT.conf && exec nginx -c {work}/nginx-$PORT.conf -p {work}"
    manifests = os.path.join(work, "manifests")
    os.makedirs(manifests)
    open(os.path.join(manifests, "bench.yaml"), "w").write(
        MANIFEST.format(name="bench", min=1, max=max_replicas, command=serve))
    direct_port = free_port()
    direct_conf = os.path.join(work, f"nginx-{direct_port}.conf")
    open(direct_conf, "w").write(open(template).read().replace("PORT", str(direct_port)))
    return manifests, direct_port, direct_conf

def stop_all(procs):
    """SIGINT to every process (serval dev drains), then wait; kill what outlives 40 s."""
    for p in procs:
        p.send_signal(2)
    for p in procs:
        try:
            p.wait(timeout=40)
        except subprocess.TimeoutExpired:
            p.kill()

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--serval", default="target/release/serval")
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--concurrency", default="1,32,256")
    ap.add_argument("--held", type=int, default=10000)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="serval-bench-act-")
    manifests, direct_port, direct_conf = nginx_service(work, max_replicas=0)
    procs = [subprocess.Popen(["nginx", "-c", direct_conf, "-p", work], stderr=subprocess.DEVNULL)]
    port = free_port()
    dev_log = os.path.join(work, "dev.log")
    view_log = os.path.join(work, "view.log")
    dev = subprocess.Popen([args.serval, "dev", f"--listen=127.0.0.1:{port}", f"--log-dir={work}/logs", manifests],
                           stdout=open(view_log, "w"), stderr=open(dev_log, "w"), env={**os.environ, "RUST_LOG": "info"})
    procs.append(dev)
    try:
        def proxy_port():
            for line in open(dev_log):
                if '"replica started"' in line and "bench-predictor" in line:
                    return int(json.loads(line)["proxy"].rsplit(":", 1)[1])
            return None
        wait_for(lambda: proxy_port() is not None, 60, "the bench replica")
        qp = proxy_port()
        activator = f"http://127.0.0.1:{port}/"
        host = "bench.default.example.com"
        def answers():
            try:
                req = urllib.request.Request(activator, headers={"Host": host})
                return urllib.request.urlopen(req, timeout=2).status == 200
            except Exception:
                return False
        wait_for(answers, 60, "the activator path")
        paths = [("direct", f"http://127.0.0.1:{direct_port}/", None),
                 ("queue-proxy", f"http://127.0.0.1:{qp}/", None),
                 ("activator + queue-proxy", activator, host)]
        rows = []
        for conns in [int(c) for c in args.concurrency.split(",")]:
            base = None
            for name, url, h in paths:
                print(f"c={conns}: {name}", file=sys.stderr, flush=True)
                wrk(url, conns, 2, h)
                r = wrk(url, conns, args.duration, h)
                base = base or r
                rows.append((name, conns, r, base))
        print("| path | conns | req/s | p50 ms | p99 ms | vs direct req/s | p50 added µs | non-2xx |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for name, conns, r, d in rows:
            print(f"| {name} | {conns} | {r['rps']:.0f} | {r['p50']:.3f} | {r['p99']:.3f} | "
                  f"{r['rps'] / d['rps']:.2f}x | {(r['p50'] - d['p50']) * 1000:.0f} | {r['non2xx']} |")
    finally:
        stop_all(procs)
    if args.held > 0:
        held_memory(args.serval, args.held, work)


def held_memory(serval, held, work):
    """RSS of a fresh `serval dev` serving one revision whose single pod never answers, idle
    and at the peak while a load generator keeps `held` requests waiting, per protocol. One
    pod at most: the activator's held count would otherwise scale the revision out."""
    manifests = os.path.join(work, "stuck")
    os.makedirs(manifests, exist_ok=True)
    open(os.path.join(manifests, "stuck.yaml"), "w").write(
        MANIFEST.format(name="stuck", min=0, max=1, command="exec sleep 3600"))
    loads = [
        ("HTTP/2, 10 connections x 1,000 streams (h2load)",
         lambda url: ["h2load", "-n", str(held), "-c", "10", "-m", str(max(1, held // 10)), "-T", "60s",
                      "-H", "host: stuck.default.example.com", url]),
        ("HTTP/1.1, one connection per request (wrk)",
         lambda url: ["wrk", "-t2", f"-c{held}", "-d20s", "--timeout", "60s",
                      "-H", "Host: stuck.default.example.com", url]),
    ]
    print()
    print("| `serval dev` process (activator, autoscaler, supervisor), fresh | requests held | RSS idle | RSS peak |")
    print("|---|---:|---:|---:|")
    for label, command in loads:
        port = free_port()
        view_log = os.path.join(work, f"stuck-view-{port}.log")
        dev = subprocess.Popen([serval, "dev", f"--listen=127.0.0.1:{port}", f"--log-dir={work}/logs-{port}", manifests],
                               stdout=open(view_log, "w"), stderr=subprocess.DEVNULL)
        try:
            time.sleep(3)
            idle = rss_mb(dev.pid)
            print(f"holding {held} requests: {label}", file=sys.stderr, flush=True)
            load = subprocess.Popen(command(f"http://127.0.0.1:{port}/"),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            peak, most_held = idle, 0
            deadline = time.time() + 18
            while time.time() < deadline:
                peak = max(peak, rss_mb(dev.pid))
                for line in open(view_log).read().splitlines()[-4:]:
                    m = re.search(r"default/stuck .* held (\d+)", line)
                    if m:
                        most_held = max(most_held, int(m.group(1)))
                time.sleep(0.2)
            load.terminate()
            load.wait()
            print(f"| {label} | {most_held} | {idle:.1f} MiB | {peak:.1f} MiB |", flush=True)
        finally:
            dev.send_signal(2)
            try:
                dev.wait(timeout=40)
            except subprocess.TimeoutExpired:
                dev.kill()


if __name__ == "__main__":
    main()
