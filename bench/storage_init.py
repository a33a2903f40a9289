#!/usr/bin/env python3
"""Side-by-side benchmark of model downloads from S3: `serval storage-init` (parallel ranged
GETs) against the AWS CLI (`aws s3 cp`, `--recursive` for a prefix) and boto3's transfer
manager (`download_file` with the default TransferConfig; for a prefix, list then download
each object on a ThreadPoolExecutor of 10, like the CLI's default concurrency). All three
read the same local S3 server (s3s-fs over a directory) and two datasets of random bytes: one
object of --size-mib MiB, and a prefix of --files files (a few large shards, some medium
files and many KB-sized config/tokenizer files) summing to about --prefix-mib MiB.

Each tool runs --repeat times per dataset into a fresh empty directory (caches are left as
they are; runs of the tools are interleaved); every download is checked (file set, sizes and
sha256 against the source). Prints a markdown table: median wall time of the whole process
(startup included), MiB/s, peak RSS (`/usr/bin/time -f %M`, else VmHWM polled every 10 ms)
and throughput against the AWS CLI. With --rss-sweep, also serval's peak RSS on single
objects of 256, 512, 1024 MiB (and --size-mib if larger; smaller sizes when --size-mib is
small), to show that it stays flat as the object grows.

The AWS CLI and boto3 live in a venv at ~/.cache/serval-venvs/storage-bench (created with pip
if missing); s3s-fs comes from tools/install-storage-test-tools.sh.

usage: bench/storage_init.py [--serval target/release/serval] [--size-mib 1024] [--files 200]
                             [--prefix-mib 512] [--repeat 3] [--rss-sweep] [--workdir DIR] [--keep]
"""
import argparse, base64, hashlib, json, os, platform, random, shlex, shutil, signal, socket
import statistics, subprocess, sys, tempfile, threading, time

MiB = 1 << 20
BLOCK = 8 * MiB
BUCKET = "models"
SINGLE_KEY = "single/model.bin"
PREFIX = "model"
ACCESS_KEY, SECRET_KEY = "benchaccesskey", "benchsecretkey0123456789"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.expanduser("~/.cache/serval-venvs/storage-bench")
TOOLS = ("serval", "aws cli", "boto3")
RUN_TIMEOUT = 3600

# Run with the venv's interpreter: downloads one object or a prefix with boto3's transfer
# manager and prints the seconds spent inside the process (startup and imports excluded).
BOTO3_HELPER = r'''
import os, sys, time
t0 = time.perf_counter()
import boto3
from concurrent.futures import ThreadPoolExecutor
mode, bucket, key, dest = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
t1 = time.perf_counter()
if mode == "single":
    s3.download_file(bucket, key, os.path.join(dest, key.rsplit("/", 1)[-1]))
else:
    prefix = key.rstrip("/") + "/"
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for o in page.get("Contents", []) if not o["Key"].endswith("/")]
    def fetch(k):
        path = os.path.join(dest, k[len(prefix):])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        s3.download_file(bucket, k, path)
    with ThreadPoolExecutor(max_workers=10) as pool:
        for _ in pool.map(fetch, keys):
            pass
print(f"{time.perf_counter() - t1:.3f} {t1 - t0:.3f}")
'''

def log(msg):
    print(msg, file=sys.stderr, flush=True)

def fail(msg):
    raise SystemExit(f"storage_init.py: FAILED: {msg}")

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

def b64(s):
    return base64.urlsafe_b64encode(s.encode()).decode().rstrip("=")

# ---------------------------------------------------------------- tools and the S3 server

def ensure_venv():
    py, aws = os.path.join(VENV, "bin", "python"), os.path.join(VENV, "bin", "aws")
    ok = os.path.exists(aws) and os.path.exists(py) and subprocess.run(
        [py, "-c", "import boto3"], capture_output=True).returncode == 0
    if not ok:
        log(f"setting up the AWS CLI and boto3 in {VENV}")
        if not os.path.exists(py):
            subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
        subprocess.run([py, "-m", "pip", "install", "--quiet", "awscli>=1.32,<2", "boto3>=1.34,<2"],
                       check=True, stdout=sys.stderr)
    # the CLI may carry its own botocore (awscli 1.44+ vendors one): ask it, not the venv
    cli = subprocess.run([aws, "--version"], capture_output=True, text=True, check=True)
    cli = (cli.stdout or cli.stderr).split()
    lib = subprocess.run([py, "-c", "import boto3, botocore, s3transfer; "
                          "print(boto3.__version__, botocore.__version__, s3transfer.__version__)"],
                         capture_output=True, text=True, check=True).stdout.split()
    versions = (f"{cli[0]} ({cli[-1]}); boto3 {lib[0]} (botocore {lib[1]}, s3transfer {lib[2]})")
    return py, aws, versions

def s3s_fs_binary():
    out = subprocess.run(["bash", os.path.join(REPO, "tools", "install-storage-test-tools.sh")],
                         capture_output=True, text=True)
    if out.returncode != 0:
        fail(f"tools/install-storage-test-tools.sh: {out.stderr.strip()}")
    path = out.stdout.strip().splitlines()[-1]
    if not os.access(path, os.X_OK):
        fail(f"no s3s-fs at {path}")
    return path

def start_server(binary, root, workdir):
    port = free_port()
    logf = open(os.path.join(workdir, "s3s-fs.log"), "wb")
    proc = subprocess.Popen([binary, "--host", "127.0.0.1", "--port", str(port),
                             "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY, root],
                            stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT)
    logf.close()
    deadline = time.time() + 30
    while True:
        if proc.poll() is not None:
            fail(f"s3s-fs exited with {proc.returncode}; see {workdir}/s3s-fs.log")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, port
        except OSError:
            if time.time() > deadline:
                fail(f"s3s-fs did not listen on port {port}")
            time.sleep(0.05)

def stop(proc):
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()

# ---------------------------------------------------------------- datasets

def put(root, key, size, rng_bytes=os.urandom):
    """Writes `size` random bytes as s3://BUCKET/key, with the info file that spares s3s-fs
    hashing the object on every request; returns the sha256."""
    path = os.path.join(root, BUCKET, key)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            block = rng_bytes(min(BLOCK, left))
            h.update(block)
            f.write(block)
            left -= len(block)
    digest = h.hexdigest()
    with open(os.path.join(root, f".bucket-{b64(BUCKET)}.object-{b64(key)}.internal.json"), "w") as f:
        json.dump({"e_tag": f'"{digest[:32]}"'}, f)
    return digest

def prefix_layout(files, total):
    """Sizes of a model repository: a few large shards, some MiB-sized files and many KB-sized
    config/tokenizer files, summing to `total` bytes over `files` files. {relpath: size}"""
    rng = random.Random(1234)
    shards = max(1, min(8, files // 50))
    medium = min(files - shards, files // 10)
    small = files - shards - medium
    named = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
             "special_tokens_map.json", "model.safetensors.index.json", "README.md", "LICENSE"]
    layout = {}
    for i in range(small):
        name = named[i] if i < len(named) else f"tokenizer/extra/vocab-{i:04d}.json"
        layout[name] = int(2 ** rng.uniform(9, 19))          # 512 B .. 512 KiB
    budget = max(0, total - sum(layout.values()))
    for i in range(medium):
        layout[f"extras/blob-{i:03d}.bin"] = int(rng.uniform(0.5, 4) * MiB)
    scale = min(1.0, 0.2 * budget / max(1, sum(layout[f"extras/blob-{i:03d}.bin"] for i in range(medium))))
    for i in range(medium):   # medium files: at most a fifth of what the small ones left
        layout[f"extras/blob-{i:03d}.bin"] = max(1024, int(layout[f"extras/blob-{i:03d}.bin"] * scale))
    left = max(shards * 1024, total - sum(layout.values()))
    weights = [1.0] * (shards - 1) + [0.6] if shards > 1 else [1.0]   # last shard smaller
    for i, w in enumerate(weights):
        size = left - sum(int(left * x / sum(weights)) for x in weights[:-1]) if i == shards - 1 \
            else int(left * w / sum(weights))
        layout[f"model-{i + 1:05d}-of-{shards:05d}.safetensors"] = size
    return layout

def seed(root, args):
    datasets = {}
    log(f"seeding s3://{BUCKET}/{SINGLE_KEY} ({args.size_mib} MiB)")
    datasets["single"] = {"uri": f"s3://{BUCKET}/{SINGLE_KEY}", "key": SINGLE_KEY, "single": True,
                          "expect": {os.path.basename(SINGLE_KEY): (args.size_mib * MiB, put(root, SINGLE_KEY, args.size_mib * MiB))}}
    layout = prefix_layout(args.files, args.prefix_mib * MiB)
    log(f"seeding s3://{BUCKET}/{PREFIX}/ ({len(layout)} files, {sum(layout.values()) / MiB:.1f} MiB, "
        f"largest {max(layout.values()) / MiB:.1f} MiB, smallest {min(layout.values())} B)")
    datasets["prefix"] = {"uri": f"s3://{BUCKET}/{PREFIX}", "key": PREFIX, "single": False,
                          "expect": {rel: (size, put(root, f"{PREFIX}/{rel}", size)) for rel, size in layout.items()}}
    sweep = []
    if args.rss_sweep:
        sizes = {s for s in (256, 512, 1024) if s <= args.size_mib} | {args.size_mib}
        if len(sizes) < 3:
            sizes |= {s for s in (args.size_mib // 4, args.size_mib // 2) if s > 0}
        for mib in sorted(sizes):
            if mib == args.size_mib:
                sweep.append((mib, datasets["single"]))
                continue
            key = f"sweep/object-{mib}MiB.bin"
            log(f"seeding s3://{BUCKET}/{key} ({mib} MiB)")
            sweep.append((mib, {"uri": f"s3://{BUCKET}/{key}", "key": key, "single": True,
                                "expect": {os.path.basename(key): (mib * MiB, put(root, key, mib * MiB))}}))
    return datasets, sweep

# ---------------------------------------------------------------- measuring one run

def proc_tree_hwm_kb(pid, stop_event, result):
    """Fallback without /usr/bin/time: polls VmHWM of `pid` and its descendants every 10 ms;
    the result is the sum over processes of each one's high-water mark."""
    hwm = {}
    while not stop_event.is_set():
        children = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                    children.setdefault(ppid, []).append(int(entry))
                except (OSError, IndexError, ValueError):
                    pass
        todo, tree = [pid], []
        while todo:
            p = todo.pop()
            tree.append(p)
            todo.extend(children.get(p, []))
        for p in tree:
            try:
                with open(f"/proc/{p}/status") as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            hwm[p] = max(hwm.get(p, 0), int(line.split()[1]))
            except OSError:
                pass
        stop_event.wait(0.01)
    result.append(sum(hwm.values()))

def kill_tree(proc):
    """Kills `proc` (under /usr/bin/time, the tool is its child) and waits for it."""
    children = []
    try:
        with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as f:
            children = [int(p) for p in f.read().split()]
    except OSError:
        pass
    for pid in children:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    proc.kill()
    proc.wait()

def measure(cmd, env, workdir):
    """Runs `cmd`; returns (wall seconds, peak RSS KiB, stdout, stderr)."""
    timefile = os.path.join(workdir, "time.out")
    use_time = os.access("/usr/bin/time", os.X_OK)
    full = ["/usr/bin/time", "-f", "%M", "-o", timefile] + cmd if use_time else cmd
    out_path, err_path = os.path.join(workdir, "run.stdout"), os.path.join(workdir, "run.stderr")
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(full, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        if not use_time:
            stop_event, result = threading.Event(), []
            poller = threading.Thread(target=proc_tree_hwm_kb, args=(proc.pid, stop_event, result))
            poller.start()
        try:
            rc = proc.wait(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            rc = "timeout"
        finally:   # also on Ctrl-C or SIGTERM: leave no tool running behind
            wall = time.perf_counter() - t0
            if proc.poll() is None:
                kill_tree(proc)
            if not use_time:
                stop_event.set()
                poller.join()
    with open(out_path, errors="replace") as f:
        stdout = f.read()
    with open(err_path, errors="replace") as f:
        stderr = f.read()
    if rc != 0:
        fail(f"{shlex.join(cmd)} exited with {rc}\n--- stdout\n{stdout[-3000:]}\n--- stderr\n{stderr[-3000:]}")
    if use_time:
        with open(timefile) as f:
            peak = int(f.read().strip().splitlines()[-1])
    else:
        peak = result[0]
    return wall, peak, stdout, stderr

# serval writes this last, listing every file it fetched (how it knows a directory is whole)
SERVAL_MARKER = ".serval-model-complete"

def verify(dest, expect, what, allowed_extra=()):
    found = {}
    for dirpath, dirnames, filenames in os.walk(dest):
        for name in filenames:
            path = os.path.join(dirpath, name)
            found[os.path.relpath(path, dest)] = path
    missing = sorted(set(expect) - set(found))
    extra = sorted(set(found) - set(expect) - set(allowed_extra))
    if missing or extra:
        fail(f"{what}: wrong file set in {dest}: missing {missing[:10]} ({len(missing)}), "
             f"unexpected {extra[:10]} ({len(extra)})")
    for rel, (size, digest) in expect.items():
        got = os.path.getsize(found[rel])
        if got != size:
            fail(f"{what}: {rel} is {got} bytes, expected {size}")
        h = hashlib.sha256()
        with open(found[rel], "rb") as f:
            while block := f.read(BLOCK):
                h.update(block)
        if h.hexdigest() != digest:
            fail(f"{what}: {rel} has sha256 {h.hexdigest()}, expected {digest}")

def command(tool, dataset, dest, ctx):
    single = dataset["single"]
    if tool == "serval":
        return [ctx["serval"], "storage-init", "--quiet", dataset["uri"], dest]
    if tool == "aws cli":
        base = [ctx["aws"], "--endpoint-url", ctx["endpoint"], "s3", "cp", "--only-show-errors"]
        if single:
            return base + [dataset["uri"], dest + "/"]
        return base + ["--recursive", dataset["uri"] + "/", dest + "/"]
    return [ctx["python"], ctx["helper"], "single" if single else "prefix", BUCKET, dataset["key"], dest]

def run_once(tool, dataset, name, rep, ctx):
    dest = os.path.join(ctx["workdir"], "dest", f"{tool.replace(' ', '-')}-{name}-{rep}")
    os.makedirs(dest)
    wall, peak, stdout, stderr = measure(command(tool, dataset, dest, ctx), ctx["env"], ctx["workdir"])
    verify(dest, dataset["expect"], f"{tool} on {name}", (SERVAL_MARKER,) if tool == "serval" else ())
    shutil.rmtree(dest)
    os.sync()   # the next run should not pay for this one's writeback
    note = ""
    if tool == "serval" and stderr.strip():
        note = f"  [{stderr.strip().splitlines()[-1]}]"
    elif tool == "boto3" and stdout.strip():
        inside, startup = stdout.split()[:2]
        note = f"  [in-process {inside} s, startup+imports {startup} s]"
    total = sum(size for size, _ in dataset["expect"].values())
    log(f"    {wall:8.2f} s  {total / MiB / wall:8.1f} MiB/s  peak RSS {peak / 1024:7.1f} MiB  ok{note}")
    return wall, peak

# ---------------------------------------------------------------- main

def main():
    default_serval = os.path.join(os.environ["CARGO_TARGET_DIR"], "release", "serval") \
        if os.environ.get("CARGO_TARGET_DIR") else os.path.join(REPO, "target", "release", "serval")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--serval", default=default_serval)
    ap.add_argument("--size-mib", type=int, default=1024, help="the single object's size")
    ap.add_argument("--files", type=int, default=200, help="files under the prefix")
    ap.add_argument("--prefix-mib", type=int, default=512, help="the prefix's total size")
    ap.add_argument("--repeat", type=int, default=3, help="runs per tool and dataset (median)")
    ap.add_argument("--rss-sweep", action="store_true", help="serval's peak RSS against object size")
    ap.add_argument("--workdir", help="where the server's data and downloads go (default: /tmp)")
    ap.add_argument("--keep", action="store_true", help="leave the work directory behind")
    args = ap.parse_args()
    if args.size_mib < 1 or args.files < 1 or args.prefix_mib < 1 or args.repeat < 1:
        ap.error("sizes, --files and --repeat must be positive")
    if not os.access(args.serval, os.X_OK):
        ap.error(f"no serval binary at {args.serval} (build it, or pass --serval)")
    args.serval = os.path.abspath(args.serval)

    # SIGTERM and SIGHUP unwind through the finally blocks like Ctrl-C does.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: sys.exit(128 + signum))

    if args.workdir:
        os.makedirs(args.workdir, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="serval-storage-bench-", dir=args.workdir)
    server = None
    try:
        python, aws, versions = ensure_venv()
        s3s_fs = s3s_fs_binary()
        root = os.path.join(workdir, "s3")
        os.makedirs(os.path.join(root, BUCKET))
        datasets, sweep = seed(root, args)
        os.sync()   # the first run should not pay for the seeding's writeback
        server, port = start_server(s3s_fs, root, workdir)
        endpoint = f"http://127.0.0.1:{port}"
        log(f"s3s-fs listening on {endpoint} (data in {root})")
        helper = os.path.join(workdir, "boto3_download.py")
        with open(helper, "w") as f:
            f.write(BOTO3_HELPER)
        env = {**os.environ,
               "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
               "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
               "AWS_ENDPOINT_URL": endpoint, "AWS_EC2_METADATA_DISABLED": "true",
               # no profile of this machine's user should change how the tools behave
               "AWS_CONFIG_FILE": os.path.join(workdir, "no-aws-config"),
               "AWS_SHARED_CREDENTIALS_FILE": os.path.join(workdir, "no-aws-credentials")}
        for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_S3_FORCE_PATH_STYLE", "RUST_LOG"):
            env.pop(var, None)
        ctx = {"serval": args.serval, "aws": aws, "python": python, "helper": helper,
               "endpoint": endpoint, "env": env, "workdir": workdir}

        results = {}
        for name, dataset in datasets.items():
            for rep in range(1, args.repeat + 1):
                for tool in TOOLS:   # interleaved, so that drift hits every tool alike
                    log(f"[{name}] {tool}: run {rep}/{args.repeat}")
                    results.setdefault((name, tool), []).append(run_once(tool, dataset, name, rep, ctx))

        sweep_rows = []
        for mib, dataset in sweep:
            runs = []
            for rep in range(1, args.repeat + 1):
                log(f"[rss sweep {mib} MiB] serval: run {rep}/{args.repeat}")
                runs.append(run_once("serval", dataset, f"sweep{mib}", rep, ctx))
            sweep_rows.append((mib, runs))

        print()
        print("| dataset | tool | median s | MiB/s | peak RSS MiB | throughput vs AWS CLI |")
        print("|---|---|---:|---:|---:|---:|")
        for name, dataset in datasets.items():
            total = sum(size for size, _ in dataset["expect"].values()) / MiB
            label = f"single object {total:.0f} MiB" if name == "single" else \
                f"prefix, {len(dataset['expect'])} files, {total:.0f} MiB"
            rate = {tool: total / statistics.median(w for w, _ in results[(name, tool)]) for tool in TOOLS}
            for tool in TOOLS:
                runs = results[(name, tool)]
                median = statistics.median(w for w, _ in runs)
                peak = max(p for _, p in runs) / 1024
                print(f"| {label} | {tool} | {median:.2f} | {rate[tool]:.1f} | {peak:.1f} | "
                      f"{rate[tool] / rate['aws cli']:.2f}x |")
        if sweep_rows:
            print()
            print("| object MiB | serval peak RSS MiB | serval median s |")
            print("|---:|---:|---:|")
            for mib, runs in sweep_rows:
                print(f"| {mib} | {max(p for _, p in runs) / 1024:.1f} | {statistics.median(w for w, _ in runs):.2f} |")
        print()
        rss_how = "/usr/bin/time -f %M (largest process)" if os.access("/usr/bin/time", os.X_OK) \
            else "VmHWM polled every 10 ms (sum over the process tree)"
        print(f"machine: nproc {len(os.sched_getaffinity(0))}, kernel {platform.release()}; "
              f"server: s3s-fs on 127.0.0.1; {versions}; serval {args.serval}; median of {args.repeat} runs, "
              f"wall time of the whole process; peak RSS: max over runs, {rss_how}")
        print(f"command: {shlex.join([os.path.basename(sys.executable)] + sys.argv)}")
    finally:
        stop(server)
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

if __name__ == "__main__":
    main()
