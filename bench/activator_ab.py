#!/usr/bin/env python3
"""Builds side by side on a noisy machine: each given `serval` binary runs its own
`serval dev` with the same nginx-backed service, and every round runs wrk against nginx
directly and then through each build's activator + queue-proxy, back to back. Each build's
throughput is reported as the median of its per-round ratios to direct, and each process's
CPU per request (utime + stime over the run) also relative to the nginx backend's in the
same run: the machine's speed drifts between runs, the proportions much less.

usage: bench/activator_ab.py [--rounds 8] [--duration 4] [--concurrency 32]
                             [--env NAME=VALUE ...] BINARY[:LABEL[:DEV FLAGS]] ...

e.g. bench/activator_ab.py target/release/serval:one-thread \
         target/release/serval:two-threads:--activator-threads=2
"""
import argparse, os, statistics, subprocess, sys, tempfile, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import activator as bench  # noqa: E402  (the nginx config, manifest and wrk helpers)

HOST = "bench.default.example.com"


def cpu_ticks(pid):
    """utime + stime of a process (all its threads), or 0 once it is gone."""
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return 0
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])


def children(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def descendants(pid):
    found = []
    for child in children(pid):
        found.append(child)
        found.extend(descendants(child))
    return found


def comm(pid):
    try:
        return open(f"/proc/{pid}/comm").read().strip()
    except OSError:
        return "?"


def measure(url, host, conns, duration, roles, script=None):
    """wrk for `duration` seconds; req/s and, per role, CPU µs per request."""
    before = {role: sum(cpu_ticks(p) for p in pids) for role, pids in roles.items()}
    r = bench.wrk(url, conns, duration, host, script)
    tick = os.sysconf("SC_CLK_TCK")
    requests = r["rps"] * duration
    cpu = {role: (sum(cpu_ticks(p) for p in pids) - before[role]) / tick / requests * 1e6
           for role, pids in roles.items()}
    return r, cpu


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("builds", nargs="+",
                    help="BINARY[:LABEL[:FLAGS]]: a serval binary, its label, flags for its serval dev")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--duration", type=int, default=4)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--env", action="append", default=[], help="NAME=VALUE for every serval dev")
    args = ap.parse_args()
    env = dict(os.environ, **dict(kv.split("=", 1) for kv in args.env))
    work = tempfile.mkdtemp(prefix="serval-bench-ab-")
    manifests, direct_port, direct_conf = bench.nginx_service(work, max_replicas=1)
    nginx = subprocess.Popen(["nginx", "-c", direct_conf, "-p", work], stderr=subprocess.DEVNULL)
    procs = [nginx]
    paths = []  # (label, url, host, roles)
    try:
        bench.wait_for(lambda: len(children(nginx.pid)) > 0, 10, "nginx")
        paths.append(("direct", f"http://127.0.0.1:{direct_port}/", None,
                      {"nginx": [nginx.pid] + children(nginx.pid)}))
        for i, build in enumerate(args.builds):
            binary, label, flags = (build.split(":", 2) + ["", ""])[:3]
            port = bench.free_port()
            dev = subprocess.Popen([binary, "dev", f"--listen=127.0.0.1:{port}",
                                    f"--log-dir={work}/logs-{i}", *flags.split(), manifests],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
            procs.append(dev)
            url = f"http://127.0.0.1:{port}/"
            bench.wait_for(lambda: answers(url), 60, f"{binary}'s activator path")
            family = descendants(dev.pid)
            roles = {"activator": [dev.pid],
                     "queue-proxy": [p for p in family if comm(p).startswith("serval-queue")],
                     "nginx": [p for p in family if comm(p) == "nginx"]}
            paths.append((label or binary, url, HOST, roles))
        report(rounds(paths, args), args)
    finally:
        bench.stop_all(procs)


def rounds(paths, args, script=None):
    """Each round measures every (label, url, host, roles) path back to back, after a 1 s
    warm-up; per label, each round's wrk result and CPU per request."""
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
    return results


def answers(url):
    try:
        request = urllib.request.Request(url, headers={"Host": HOST})
        return urllib.request.urlopen(request, timeout=2).status == 200
    except Exception:
        return False


def table_head(args, columns):
    """The run's line and a Markdown header: path, req/s, vs direct, p50 added, `columns`."""
    print(f"concurrency {args.concurrency}, {args.rounds} rounds of {args.duration} s, "
          "medians (min–max)\n")
    print("| path | req/s | vs direct | p50 added µs | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * (3 + len(columns)))


def path_cells(runs, direct, roles):
    """One path's req/s, ratio to direct, p50 added and each role's CPU µs per request."""
    rps = statistics.median(r["rps"] for r, _ in runs)
    ratios = [r["rps"] / d["rps"] for (r, _), (d, _) in zip(runs, direct)]
    added = statistics.median((r["p50"] - d["p50"]) * 1000 for (r, _), (d, _) in zip(runs, direct))

    def cpu_of(role):
        values = [cpu[role] for _, cpu in runs if role in cpu]
        return f"{statistics.median(values):.1f}" if values else "-"
    return ([f"{rps:.0f}", f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}–{max(ratios):.2f})",
             f"{added:.0f}"] + [cpu_of(role) for role in roles])


def report(results, args):
    table_head(args, ["activator CPU µs/req", "queue-proxy CPU µs/req",
                      "backend nginx CPU µs/req", "activator CPU / nginx CPU"])
    for label, runs in results.items():
        cells = path_cells(runs, results["direct"], ["activator", "queue-proxy", "nginx"])
        relative = [cpu["activator"] / cpu["nginx"] for _, cpu in runs
                    if "activator" in cpu and cpu.get("nginx")]
        cells.append(f"{statistics.median(relative):.2f} ({min(relative):.2f}–{max(relative):.2f})"
                     if relative else "-")
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
