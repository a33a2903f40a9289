#!/usr/bin/env python3
"""`serval controller` at scale: N InferenceServices applied at once to a real kube-apiserver
(etcd + kube-apiserver 1.20 on loopback, started as tests/src/apiserver.rs does: TLS, a
static token for a system:masters user, RBAC), then the time until every one has its
revision Deployment and its status (`status.observedGeneration` equal to its generation and
`status.components.predictor.latestCreatedRevision` set), and the controller's peak memory
(VmHWM at the end; VmRSS also sampled every 100 ms) and CPU time (utime + stime).

The InferenceServices are written to --appliers files and applied by as many `kubectl apply
-f FILE` processes at once; the clock starts when they start. Progress is read with list
calls from the API server's watch cache (Deployments as metadata only, InferenceServices in
full) over HTTPS with the token, every --poll seconds or as fast as the lists return; a time
is taken when both lists of a round have returned, so it is an upper bound. No kubelet or
controller-manager runs: a Deployment is stored, never rolled out, which is all the
controller waits for before writing the status. The controller runs as the admin user, with
its defaults (all namespaces, no leader election, no admission webhook).

Everything (processes, the temp dir with etcd's data, keys, logs) is removed on exit,
Ctrl-C and SIGTERM included; --keep leaves the temp dir (logs) for a look. --no-controller
runs the same apply without a controller: what the API server alone takes.

usage: bench/controller_scale.py [--count 1000] [--serval PATH] [--appliers 4]
                                 [--poll 2] [--timeout 600] [--keep] [--no-controller]
"""
import argparse, json, os, re, shutil, signal, socket, ssl, statistics, subprocess, sys, tempfile, threading, time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN = "serval-bench-token"
SYSTEM = "serval-system"
NS = "bench"
CRDS = ["inferenceservices.serving.kserve.io", "servingruntimes.serving.kserve.io",
        "clusterservingruntimes.serving.kserve.io"]
ISVC_LABEL = "serving.kserve.io/inferenceservice"

ISVC = """apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: model-{i}
  namespace: {ns}
spec:
  predictor:
    minReplicas: 0
    model:
      modelFormat:
        name: sklearn
      storageUri: gs://bucket/model-{i}
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log(*parts):
    print(*parts, file=sys.stderr, flush=True)


class Bench:
    """The processes and the temp dir; `close` ends them all, whatever happened."""

    def __init__(self, keep):
        self.dir = tempfile.mkdtemp(prefix="serval-bench-controller-")
        self.keep = keep
        self.procs = []  # (name, Popen)

    def spawn(self, name, cmd, env=None):
        out = open(os.path.join(self.dir, f"{name}.log"), "ab")
        # A session of its own: a Ctrl-C reaches this script only, which then stops each
        # process in order (the API server before etcd) and waits for it.
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env,
                             start_new_session=True)
        out.close()
        self.procs.append((name, p))
        return p

    def close(self):
        # One at a time, last started first: the controller stops while its API server still
        # answers, and the API server before etcd.
        for name, p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                log(f"{name} outlived SIGTERM by 15 s; killing it")
                p.kill()
                p.wait()
        if self.keep:
            log(f"kept {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.dir, name)

    def tail(self, name, lines=20):
        try:
            return "\n".join(open(self.path(f"{name}.log"), errors="replace").read().splitlines()[-lines:])
        except OSError:
            return ""

    def check_alive(self):
        for name, p in self.procs:
            if name in ("etcd", "kube-apiserver", "controller") and p.poll() is not None:
                raise RuntimeError(f"{name} exited ({p.returncode}):\n{self.tail(name)}")


def openssl(cwd, *args):
    out = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)}: {out.stderr}")


def make_credentials(d):
    """A CA, a serving certificate for 127.0.0.1 signed by it, the service-account key and the
    token file, as make_credentials in tests/src/apiserver.rs."""
    openssl(d, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
            "-subj", "/CN=serval-bench-ca", "-days", "7")
    openssl(d, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "apiserver.key", "-out", "apiserver.csr",
            "-subj", "/CN=kube-apiserver")
    with open(os.path.join(d, "apiserver.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    openssl(d, "x509", "-req", "-in", "apiserver.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "apiserver.crt", "-extfile", "apiserver.ext", "-days", "7")
    openssl(d, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "sa.key")
    with open(os.path.join(d, "tokens.csv"), "w") as f:
        f.write(f"{TOKEN},serval-bench,serval-bench,system:masters\n")


class Api:
    """Requests to the API server over HTTPS with the bearer token."""

    def __init__(self, port, ca):
        self.base = f"https://127.0.0.1:{port}"
        self.ctx = ssl.create_default_context(cafile=ca)

    def get(self, path, accept="application/json", timeout=60):
        req = urllib.request.Request(self.base + path, headers={
            "Authorization": f"Bearer {TOKEN}", "Accept": accept})
        with urllib.request.urlopen(req, context=self.ctx, timeout=timeout) as r:
            return r.status, r.read()

    def list(self, path, metadata_only=False):
        """Every item of a list, served from the API server's watch cache (resourceVersion=0),
        so that the benchmark's own polling reads nothing from etcd."""
        accept = ("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
                  if metadata_only else "application/json")
        _, body = self.get(f"{path}?resourceVersion=0", accept)
        return json.loads(body).get("items") or []


def request_stats(api):
    """{(verb, resource[/subresource]): [requests, seconds]} from the API server's /metrics."""
    stats = {}
    try:
        text = api.get("/metrics", accept="text/plain")[1].decode()
    except OSError:
        return stats
    for m in re.finditer(r'^apiserver_request_duration_seconds_(sum|count)\{([^}]*)\} (\S+)$', text, re.M):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
        key = (labels.get("verb", ""), labels.get("resource", "") +
               (f"/{labels['subresource']}" if labels.get("subresource") else ""))
        stats.setdefault(key, [0.0, 0.0])[m.group(1) == "sum"] += float(m.group(3))
    return stats


def wait_for(bench, what, timeout, probe, interval=0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        bench.check_alive()
        try:
            if probe():
                return
        except Exception as e:  # not up yet
            last = e
        time.sleep(interval)
    raise RuntimeError(f"{what} not within {timeout} s (last: {last})")


def proc_status(pid, key):
    """A kB field of /proc/<pid>/status, in MiB (None once the process is gone)."""
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def cpu_seconds(pid):
    """utime + stime of a process (all its threads)."""
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def metric(url, name):
    try:
        body = urllib.request.urlopen(url + "/metrics", timeout=5).read().decode()
    except OSError:
        return None
    m = re.search(rf"^{name} (\S+)$", body, re.M)
    return float(m.group(1)) if m else None


def kubectl(bench, kubeconfig, args, stdin=None, check=True):
    cmd = [os.path.join(REPO, "tools/bin/kubectl"), "--kubeconfig", kubeconfig,
           "--cache-dir", bench.path("kubectl-cache"), *args]
    out = subprocess.run(cmd, input=stdin, capture_output=True, text=True)
    if check and out.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {out.stderr}")
    return out


def documents(text):
    return [d.strip() for d in re.split(r"^---\s*$", text, flags=re.M) if re.search(r"^kind:", d, re.M)]


def start_cluster(bench):
    d = bench.dir
    make_credentials(d)
    etcd_bin = os.environ.get("SERVAL_ETCD") or shutil.which("etcd")
    apiserver_bin = os.environ.get("SERVAL_KUBE_APISERVER") or os.path.expanduser(
        "~/.cache/serval-kube/bin/kube-apiserver")
    if not etcd_bin or not os.path.isfile(apiserver_bin):
        sys.exit("need etcd on PATH and ~/.cache/serval-kube/bin/kube-apiserver: "
                 "run `bash tools/build-kubernetes.sh`")
    client, peer = free_port(), free_port()
    etcd_url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
    bench.spawn("etcd", [etcd_bin, "--name=serval-bench", f"--data-dir={d}/etcd",
                         f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
                         f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
                         f"--initial-cluster=serval-bench={peer_url}",
                         # etcd 3.4's default logger leaves a nil zap logger that a slow
                         # ReadIndex dereferences (a SIGSEGV seen under this benchmark's load).
                         "--logger=zap", "--log-outputs=stderr"])
    port = free_port()
    bench.spawn("kube-apiserver", [
        apiserver_bin, f"--etcd-servers={etcd_url}", "--bind-address=127.0.0.1", f"--secure-port={port}",
        f"--tls-cert-file={d}/apiserver.crt", f"--tls-private-key-file={d}/apiserver.key",
        f"--token-auth-file={d}/tokens.csv", "--authorization-mode=RBAC",
        "--service-account-issuer=https://kubernetes.default.svc",
        f"--service-account-key-file={d}/sa.key", f"--service-account-signing-key-file={d}/sa.key",
        # Every revision has a ClusterIP Service: the tests' /24 would run out at 254.
        "--service-cluster-ip-range=10.96.0.0/16",
        "--advertise-address=127.0.0.1", "--endpoint-reconciler-type=none",
        "--disable-admission-plugins=ServiceAccount", "--profiling=false"])
    kubeconfig = bench.path("kubeconfig")
    with open(kubeconfig, "w") as f:
        f.write(f"""apiVersion: v1
kind: Config
clusters:
- name: serval-bench
  cluster:
    server: https://127.0.0.1:{port}
    certificate-authority: {d}/ca.crt
users:
- name: serval-bench
  user:
    token: {TOKEN}
contexts:
- name: serval-bench
  context:
    cluster: serval-bench
    user: serval-bench
    namespace: {NS}
current-context: serval-bench
""")
    api = Api(port, f"{d}/ca.crt")
    wait_for(bench, "kube-apiserver /readyz", 180, lambda: api.get("/readyz")[1] == b"ok")
    return api, kubeconfig


def install(bench, kubeconfig):
    """Namespaces, the CRDs (until Established) and the chart's ClusterServingRuntimes."""
    kubectl(bench, kubeconfig, ["apply", "-f", "-"], stdin="".join(
        f"---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n" for ns in (SYSTEM, NS)))
    kubectl(bench, kubeconfig, ["apply", "-f", os.path.join(REPO, "helm/serval/crds/serval-crds.yaml")])
    deadline = time.monotonic() + 60
    while kubectl(bench, kubeconfig, ["wait", "--for=condition=Established", "--timeout=30s",
                                      *[f"crd/{c}" for c in CRDS]], check=False).returncode != 0:
        # A fresh CRD has no conditions yet, and kubectl wait fails at once on that.
        if time.monotonic() > deadline:
            raise RuntimeError("the CRDs were not Established within 60 s")
        time.sleep(0.2)
    rendered = subprocess.run([os.path.join(REPO, "tools/bin/helm"), "template", "serval",
                               os.path.join(REPO, "helm/serval"), "-n", SYSTEM, "--kube-version", "1.20.2"],
                              capture_output=True, text=True, check=True).stdout
    runtimes = [doc for doc in documents(rendered) if re.search(r"^kind: ClusterServingRuntime$", doc, re.M)]
    if not runtimes:
        raise RuntimeError("the rendered chart has no ClusterServingRuntime")
    kubectl(bench, kubeconfig, ["apply", "-f", "-"], stdin="\n---\n".join(runtimes) + "\n")
    return len(runtimes)


def progress(api, names):
    """(InferenceServices with a revision Deployment, with their status), among `names`."""
    deployed = {d["metadata"].get("labels", {}).get(ISVC_LABEL)
                for d in api.list(f"/apis/apps/v1/namespaces/{NS}/deployments", metadata_only=True)}
    statused = 0
    for isvc in api.list(f"/apis/serving.kserve.io/v1beta1/namespaces/{NS}/inferenceservices"):
        status = isvc.get("status") or {}
        predictor = (status.get("components") or {}).get("predictor") or {}
        if (isvc["metadata"]["name"] in names
                and status.get("observedGeneration") == isvc["metadata"].get("generation")
                and predictor.get("latestCreatedRevision")):
            statused += 1
    return len(deployed & names), statused


def main():
    default_serval = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target")),
                                  "release/serval")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=1000, help="InferenceServices to apply")
    ap.add_argument("--serval", default=default_serval, help=f"the serval binary ({default_serval})")
    ap.add_argument("--appliers", type=int, default=4, help="parallel `kubectl apply -f` processes")
    ap.add_argument("--poll", type=float, default=2.0, help="seconds between rounds of list calls")
    ap.add_argument("--timeout", type=float, default=600, help="give up after this many seconds")
    ap.add_argument("--keep", action="store_true", help="leave the temp dir (logs) behind")
    ap.add_argument("--no-controller", action="store_true",
                    help="no controller: only the apply, for what the API server alone takes")
    args = ap.parse_args()
    if not args.no_controller and not os.access(args.serval, os.X_OK):
        sys.exit(f"no serval binary at {args.serval}: cargo build --release -p serval, or pass --serval")

    def terminate(signum, _frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in the background
    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGHUP, terminate)

    bench = Bench(args.keep)
    try:
        return run(bench, args)
    except (KeyboardInterrupt, SystemExit) as e:
        log("interrupted; stopping everything")
        return 130 if isinstance(e, KeyboardInterrupt) else e.code
    except RuntimeError as e:
        log(f"failed: {e}")
        return 1
    finally:
        bench.close()


def run(bench, args):
    load_start = os.getloadavg()
    log(f"temp dir {bench.dir}; starting etcd and kube-apiserver")
    api, kubeconfig = start_cluster(bench)
    runtimes = install(bench, kubeconfig)
    log(f"CRDs Established, {runtimes} ClusterServingRuntimes applied")

    controller = None
    if not args.no_controller:
        log(f"starting {args.serval} controller")
        health_port = free_port()
        health = f"http://127.0.0.1:{health_port}"
        controller = bench.spawn("controller", [
            args.serval, "controller", f"--system-namespace={SYSTEM}", f"--health-listen=127.0.0.1:{health_port}",
            "--image=registry.example/serval:bench"], env={**os.environ, "KUBECONFIG": kubeconfig})
        wait_for(bench, "the controller's /metrics", 60,
                 lambda: metric(health, "serval_controller_leading") == 1)
        time.sleep(2)  # its watches list (nothing yet) and settle
    idle_rss = proc_status(controller.pid, "VmRSS") if controller else None

    # The manifests, one file per applier.
    names = {f"model-{i}" for i in range(args.count)}
    files = []
    for k in range(args.appliers):
        path = bench.path(f"isvcs-{k}.yaml")
        with open(path, "w") as f:
            f.write("---\n".join(ISVC.format(i=i, ns=NS) for i in range(k, args.count, args.appliers)))
        files.append(path)

    peak_sampled = [idle_rss or 0.0]
    sampling = threading.Event()

    def sample():
        while not sampling.wait(0.1):
            rss = proc_status(controller.pid, "VmRSS")
            if rss:
                peak_sampled[0] = max(peak_sampled[0], rss)
    sampler = threading.Thread(target=sample, daemon=True)
    if controller:
        sampler.start()

    log(f"applying {args.count} InferenceServices with {len(files)} parallel `kubectl apply -f`")
    cpu_start = cpu_seconds(controller.pid) if controller else 0.0
    servers = {name: (p.pid, cpu_seconds(p.pid)) for name, p in bench.procs if name in ("etcd", "kube-apiserver")}
    requests_before = request_stats(api)
    t0 = time.monotonic()
    appliers = [bench.spawn(f"kubectl-apply-{k}", [
        os.path.join(REPO, "tools/bin/kubectl"), "--kubeconfig", kubeconfig, "--cache-dir",
        bench.path(f"kubectl-cache-{k}"), "apply", "-f", path]) for k, path in enumerate(files)]
    applied = []  # when the last kubectl apply returned, to the millisecond

    def wait_appliers():
        for p in appliers:
            p.wait()
        applied.append(time.monotonic() - t0)
    threading.Thread(target=wait_appliers, daemon=True).start()
    applied_at = all_deployed = all_statused = None
    rounds = []  # how long each round of lists took
    own_cpu = sum(os.times()[:2])
    last_print = -2.0
    while True:
        bench.check_alive()
        started = time.monotonic()
        if applied_at is None and applied:
            applied_at = applied[0]
            failed = [k for k, p in enumerate(appliers) if p.returncode != 0]
            if failed:
                raise RuntimeError(f"kubectl apply {failed[0]} failed:\n{bench.tail(f'kubectl-apply-{failed[0]}')}")
        if not controller:
            if applied_at is not None:
                break
            time.sleep(0.05)
            continue
        try:
            deployed, statused = progress(api, names)
            rounds.append(time.monotonic() - started)
        except OSError as e:  # an overloaded API server may time a list out: ask again
            log(f"list failed ({e}); asking again")
            time.sleep(args.poll)
            continue
        now = time.monotonic() - t0  # after the lists returned: an upper bound, within --poll
        if all_deployed is None and deployed == args.count:
            all_deployed = now
        if all_statused is None and statused == args.count:
            all_statused = now
        if now - last_print >= 2 or (all_deployed and all_statused):
            last_print = now
            log(f"{now:6.1f} s  applied {'yes' if applied_at is not None else 'no '}  deployments "
                f"{deployed}/{args.count}  status {statused}/{args.count}  "
                f"reconciles {metric(health, 'serval_controller_reconciles_total') or 0:.0f}  "
                f"RSS {proc_status(controller.pid, 'VmRSS') or 0:.1f} MiB")
        if all_deployed is not None and all_statused is not None:
            break
        if now > args.timeout:
            log(f"not done within {args.timeout} s")
            break
        time.sleep(max(0.0, args.poll - (time.monotonic() - started)))

    own_cpu = sum(os.times()[:2]) - own_cpu
    others = {name: cpu_seconds(pid) - before for name, (pid, before) in servers.items()}
    requests = request_stats(api)
    for key, (n, secs_) in requests_before.items():
        requests[key] = [requests.get(key, [0, 0])[0] - n, requests.get(key, [0, 0])[1] - secs_]
    busiest = sorted(((v[1], v[0], k) for k, v in requests.items() if v[0] > 0), reverse=True)[:6]
    by_request = "; ".join(f"{verb} {resource} {int(n)} ({t:.0f} s)" for t, n, (verb, resource) in busiest)
    servers_cpu = (f"kube-apiserver used {others['kube-apiserver']:.1f} s of CPU and etcd "
                   f"{others['etcd']:.1f} s")
    if not controller:
        print(f"no controller: {args.count} InferenceServices applied by {len(files)} parallel "
              f"`kubectl apply -f` in {applied_at:.1f} s; meanwhile {servers_cpu}. {os.cpu_count()} CPUs, "
              f"load average {load_start[0]:.2f} at start, {os.getloadavg()[0]:.2f} at end")
        print(f"API server requests by time spent answering them: {by_request}")
        return 0
    cpu = cpu_seconds(controller.pid) - cpu_start
    reconciles = metric(health, "serval_controller_reconciles_total")
    sampling.set()
    sampler.join()
    hwm = proc_status(controller.pid, "VmHWM")

    def secs(t):
        return f"{t:.1f}" if t is not None else f"not within {args.timeout:.0f}"
    print(f"serval controller ({args.serval}), {args.count} InferenceServices applied by "
          f"{len(files)} parallel `kubectl apply -f`; "
          f"{os.cpu_count()} CPUs, load average {load_start[0]:.2f} at start, {os.getloadavg()[0]:.2f} at end\n")
    print("| InferenceServices | all applied (s) | all Deployments (s) | all statuses (s) "
          "| controller peak RSS (MiB) | controller CPU (s) | reconciles |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {args.count} | {secs(applied_at)} | {secs(all_deployed)} | {secs(all_statused)} | {hwm:.1f} "
          f"| {cpu:.1f} | {reconciles or 0:.0f} |")
    print(f"\nPeak RSS is VmHWM at the end (highest VmRSS sampled every 100 ms: {peak_sampled[0]:.1f} MiB; "
          f"{idle_rss or 0:.1f} MiB idle before the apply). Times and CPU are from the start of the apply; "
          f"in the same span {servers_cpu}, and this script's {len(rounds)} rounds of lists {own_cpu:.1f} s "
          f"(a round took {statistics.median(rounds) if rounds else 0:.2f} s at the median, "
          f"{max(rounds, default=0):.2f} s at most).")
    print(f"\nAPI server requests in that span by time spent answering them (this script's own lists "
          f"included: one LIST of deployments and of inferenceservices per round): {by_request}")
    return 0 if all_deployed is not None and all_statused is not None else 1


if __name__ == "__main__":
    sys.exit(main())
