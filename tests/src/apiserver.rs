//! A real Kubernetes API server for tests: etcd and kube-apiserver 1.20 on loopback, built by
//! `tools/build-kubernetes.sh` (from Debian's Kubernetes source and Go; etcd is Debian's
//! `etcd-server`). Nothing else of a cluster runs: no controller-manager, scheduler or kubelet,
//! so objects are stored, validated and served, but no controller acts on them (a Deployment
//! gets no ReplicaSet, a namespace is never finalised).
//!
//! The API server speaks only TLS (1.20 no longer opens the plain-HTTP "insecure" port: any
//! port but 0 is refused): the harness makes a CA and a serving certificate for 127.0.0.1
//! with openssl, and a static bearer token for a `system:masters` user. The kubeconfig it
//! writes uses both, so kubectl and Rust clients go through real TLS. For tests that want
//! plain HTTP, `url()` is a `kubectl proxy` in front of it, authenticated as that user.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::{lease_port, repo_root, PortLease};

/// How long etcd plus kube-apiserver may take to answer `/readyz` (seconds on an idle machine;
/// much more on two cores busy compiling).
const READY_WITHIN: Duration = Duration::from_secs(120);

/// The cache `tools/build-kubernetes.sh` builds into.
pub(crate) fn kube_cache() -> PathBuf {
    match std::env::var_os("SERVAL_KUBE_CACHE") {
        Some(dir) => PathBuf::from(dir),
        None => {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/serval-kube")
        }
    }
}

/// The kube-apiserver binary: `$SERVAL_KUBE_APISERVER`, or the one
/// `tools/build-kubernetes.sh` leaves in its cache. Panics, saying how to build it, when
/// there is none: a Kubernetes test must not pass by not running.
pub fn kube_apiserver_bin() -> PathBuf {
    let bin = std::env::var_os("SERVAL_KUBE_APISERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| kube_cache().join("bin/kube-apiserver"));
    assert!(
        bin.is_file(),
        "no kube-apiserver at {}: run `bash tools/build-kubernetes.sh` (about 5 minutes \
         the first time; .ci/run does it before the tests)",
        bin.display()
    );
    bin
}

/// The etcd binary: `$SERVAL_ETCD`, or `etcd` on PATH (Debian's `etcd-server`, which
/// `tools/build-kubernetes.sh` installs).
pub fn etcd_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("SERVAL_ETCD") {
        return PathBuf::from(bin);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("etcd"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("no etcd on PATH: run `bash tools/build-kubernetes.sh` (installs etcd-server)")
        })
}

/// A real `kubectl` binary: the one `tools/install-k8s-clients.sh` puts in `tools/bin`
/// (installed on first use), as `helm_bin` does for helm.
pub fn kubectl_bin() -> PathBuf {
    static KUBECTL: OnceLock<PathBuf> = OnceLock::new();
    KUBECTL
        .get_or_init(|| {
            let local = repo_root().join("tools/bin/kubectl");
            if !local.exists() {
                let status = Command::new("bash")
                    .arg(repo_root().join("tools/install-k8s-clients.sh"))
                    .status()
                    .expect("run tools/install-k8s-clients.sh");
                assert!(status.success(), "installing kubectl failed");
            }
            local
        })
        .clone()
}

/// A revision's Deployment as the controller writes it: labelled with the revision, its
/// component's KServe fields as JSON in an annotation (`component_spec`), and `replicas`.
pub fn revision_deployment(
    namespace: &str,
    revision: &str,
    replicas: u32,
    component_spec: &str,
) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {revision}
  namespace: {namespace}
  labels:
    serving.serval.dev/revision: {revision}
  annotations:
    serving.serval.dev/component-spec: '{component_spec}'
spec:
  replicas: {replicas}
  selector:
    matchLabels:
      serving.serval.dev/revision: {revision}
  template:
    metadata:
      labels:
        serving.serval.dev/revision: {revision}
    spec:
      containers:
      - name: kserve-container
        image: serval
"#
    )
}

/// A `serval` role started against the test's API server, killed when dropped.
#[derive(Debug)]
pub struct ServalRole {
    child: Child,
    /// The ports it was given, held while it runs.
    ports: Vec<PortLease>,
}

impl ServalRole {
    /// Holds `port` (one this role was told to listen on) for as long as it runs.
    pub fn holding(mut self, port: PortLease) -> Self {
        self.ports.push(port);
        self
    }
}

impl Drop for ServalRole {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a command printed, and how it ended.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// etcd and kube-apiserver, started for one test and killed (with their data) on drop.
#[derive(Debug)]
pub struct ApiServer {
    etcd: Process,
    apiserver: Process,
    proxy: Process,
    dir: PathBuf,
    url: String,
    kubeconfig: PathBuf,
}

impl ApiServer {
    /// Starts etcd and kube-apiserver on free loopback ports, with their data, keys and logs
    /// in a fresh temporary directory, and waits until `/readyz` answers `ok`.
    pub fn start() -> Self {
        let apiserver_bin = kube_apiserver_bin();
        let etcd_bin = etcd_bin();

        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "serval-apiserver-{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the API server's temp dir");

        make_credentials(&dir, "IP:127.0.0.1,DNS:localhost");

        let (client_port, peer_port) = (lease_port(), lease_port());
        let etcd_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let etcd = Command::new(&etcd_bin)
            .arg("--name=serval-test")
            .arg(format!("--data-dir={}", dir.join("etcd").display()))
            .arg(format!("--listen-client-urls={etcd_url}"))
            .arg(format!("--advertise-client-urls={etcd_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=serval-test={peer_url}"))
            // Debian's etcd 3.4 with its default (capnslog) logger can crash on a slow read.
            .arg("--logger=zap")
            .stdin(Stdio::null())
            .stdout(log_file(&dir, "etcd.log"))
            .stderr(log_file(&dir, "etcd.log"))
            .spawn()
            .map(Process)
            .unwrap_or_else(|e| panic!("start {}: {e}", etcd_bin.display()));

        let secure_port = lease_port();
        let apiserver = Command::new(&apiserver_bin)
            .args(Self::flags(&dir, &etcd_url, secure_port.port()))
            .stdin(Stdio::null())
            .stdout(log_file(&dir, "kube-apiserver.log"))
            .stderr(log_file(&dir, "kube-apiserver.log"))
            .spawn()
            .map(Process)
            .unwrap_or_else(|e| panic!("start {}: {e}", apiserver_bin.display()));

        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\n\
                 kind: Config\n\
                 clusters:\n\
                 - name: serval-test\n  cluster:\n    server: https://127.0.0.1:{secure_port}\n    certificate-authority: {ca}\n\
                 users:\n\
                 - name: serval-test\n  user:\n    token: {TOKEN}\n\
                 contexts:\n\
                 - name: serval-test\n  context:\n    cluster: serval-test\n    user: serval-test\n    namespace: default\n\
                 current-context: serval-test\n",
                ca = dir.join("ca.crt").display(),
            ),
        )
        .expect("write the kubeconfig");

        // Plain HTTP for the tests' own requests.
        let proxy_port = lease_port();
        let proxy = Command::new(kubectl_bin())
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args([
                "proxy",
                "--address=127.0.0.1",
                &format!("--port={proxy_port}"),
            ])
            .stdin(Stdio::null())
            .stdout(log_file(&dir, "kubectl-proxy.log"))
            .stderr(log_file(&dir, "kubectl-proxy.log"))
            .spawn()
            .map(Process)
            .expect("start kubectl proxy");
        let url = format!("http://127.0.0.1:{proxy_port}");

        let mut server = Self {
            etcd,
            apiserver,
            proxy,
            dir,
            url,
            kubeconfig,
        };
        server.wait_ready();
        server
    }

    /// The kube-apiserver command line (besides the binary).
    fn flags(dir: &Path, etcd_url: &str, secure_port: u16) -> Vec<String> {
        let file = |name: &str| dir.join(name).display().to_string();
        vec![
            format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={secure_port}"),
            format!("--tls-cert-file={}", file("apiserver.crt")),
            format!("--tls-private-key-file={}", file("apiserver.key")),
            // One user, in system:masters, with a static token. RBAC is enforced, as on a
            // real cluster: that user may do anything (and impersonate service accounts, so
            // a Serval role can run with exactly the chart's permissions).
            format!("--token-auth-file={}", file("tokens.csv")),
            "--authorization-mode=RBAC".into(),
            // 1.20 requires a token signer even when no service-account token is minted.
            "--service-account-issuer=https://kubernetes.default.svc".into(),
            format!("--service-account-key-file={}", file("sa.key")),
            format!("--service-account-signing-key-file={}", file("sa.key")),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
            // A loopback address cannot be an Endpoints address: keep the `kubernetes`
            // Service without endpoints rather than log a rejected update every 10 s.
            "--advertise-address=127.0.0.1".into(),
            "--endpoint-reconciler-type=none".into(),
            // No controller-manager creates the `default` service account, so this plug-in
            // would refuse every Pod.
            "--disable-admission-plugins=ServiceAccount".into(),
            "--profiling=false".into(),
        ]
    }

    /// `http://127.0.0.1:PORT`: the API server over plain HTTP, through `kubectl proxy`
    /// (requests need no credentials; they reach the server as the `system:masters` user).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A kubeconfig file for this server: `https://127.0.0.1:PORT` with its CA and the
    /// token (current context `serval-test`, namespace `default`).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// `GET path` on the API server (through the proxy): (status, body).
    pub fn get(&self, path: &str) -> Result<(u16, String), String> {
        self.request("GET", path, "")
    }

    /// `method path` with a JSON `body` (empty: none) on the API server, through the proxy:
    /// (status, body).
    pub fn request(&self, method: &str, path: &str, body: &str) -> Result<(u16, String), String> {
        http_request(&self.url, method, path, body)
    }

    /// Runs `kubectl --kubeconfig <this server's> args`, with `stdin` as its standard input.
    pub fn kubectl<I, S>(&self, args: I, stdin: &str) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        run_with_stdin(
            Command::new(kubectl_bin())
                .arg("--kubeconfig")
                .arg(&self.kubeconfig)
                .args(args),
            stdin,
        )
    }

    /// Waits until every CustomResourceDefinition in `crds` (names like
    /// `inferenceservices.serving.kserve.io`) is Established. `kubectl wait` fails at once,
    /// instead of waiting, while a fresh CRD has no `status.conditions` yet, so it is asked
    /// again until the deadline.
    pub fn wait_established(&self, crds: &[&str]) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let args: Vec<String> = ["wait", "--for=condition=Established", "--timeout=30s"]
            .into_iter()
            .map(String::from)
            .chain(crds.iter().map(|c| format!("crd/{c}")))
            .collect();
        loop {
            let waited = self.kubectl(&args, "");
            if waited.code == 0 {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "kubectl wait: {}",
                waited.stderr
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    /// `kubectl apply -f -` of `yaml`; panics with kubectl's message when refused.
    pub fn apply(&self, yaml: &str) {
        let out = self.kubectl(["apply", "-f", "-"], yaml);
        assert_eq!(out.code, 0, "{}\n{yaml}", out.stderr);
    }

    /// `spec.replicas` of a Deployment, read through its `/scale` subresource.
    pub fn deployment_replicas(&self, namespace: &str, name: &str) -> i64 {
        let path = format!("/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale");
        let (status, body) = self.get(&path).expect("GET scale");
        assert_eq!(status, 200, "{body}");
        let scale: serde_json::Value = serde_json::from_str(&body).expect("a Scale");
        scale["spec"]["replicas"].as_i64().unwrap_or(0)
    }

    /// A kubeconfig that acts as the service account `namespace/name` (the admin user
    /// impersonates it), so RBAC gives it exactly what its Roles grant.
    pub fn kubeconfig_as(&self, namespace: &str, name: &str) -> PathBuf {
        let text = std::fs::read_to_string(&self.kubeconfig).expect("read the kubeconfig");
        let user = format!("system:serviceaccount:{namespace}:{name}");
        let impersonating = text.replacen(
            "    token: ",
            &format!(
                "    as: {user}\n    as-groups: [system:serviceaccounts, \"system:serviceaccounts:{namespace}\", system:authenticated]\n    token: "
            ),
            1,
        );
        let path = self.dir.join(format!("kubeconfig-{namespace}-{name}"));
        std::fs::write(&path, impersonating).expect("write the kubeconfig");
        path
    }

    /// Starts `serval <args>` talking to this server (`KUBECONFIG`); killed on drop.
    pub fn serval<I, S>(&self, args: I) -> ServalRole
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.serval_with(&self.kubeconfig, args)
    }

    /// Starts `serval <args>` with the given kubeconfig; killed on drop.
    pub fn serval_with<I, S>(&self, kubeconfig: &Path, args: I) -> ServalRole
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let child = Command::new(crate::serval_bin())
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .spawn()
            .expect("start serval");
        ServalRole {
            child,
            ports: Vec::new(),
        }
    }

    /// The last `lines` lines of one of the logs (`etcd.log`, `kube-apiserver.log`,
    /// `kubectl-proxy.log`).
    pub fn log_tail(&self, name: &str, lines: usize) -> String {
        let text = std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_WITHIN;
        let mut last = String::from("no answer yet");
        while Instant::now() < deadline {
            let exited = [
                ("etcd", &mut self.etcd),
                ("kube-apiserver", &mut self.apiserver),
                ("kubectl-proxy", &mut self.proxy),
            ]
            .into_iter()
            .find_map(|(name, child)| Some((name, child.0.try_wait().ok()??)));
            if let Some((name, status)) = exited {
                panic!(
                    "{name} exited ({status}) before the API server was ready:\n{}",
                    self.log_tail(&format!("{name}.log"), 30)
                );
            }
            match self.get("/readyz") {
                Ok((200, body)) if body == "ok" => return,
                Ok((status, body)) => last = format!("{status}: {body}"),
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "kube-apiserver not ready within {READY_WITHIN:?} (last /readyz: {last}):\n{}",
            self.log_tail("kube-apiserver.log", 30)
        );
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.proxy.stop();
        self.apiserver.stop();
        self.etcd.stop();
        if std::thread::panicking() {
            eprintln!(
                "kube-apiserver log (last lines):\n{}",
                self.log_tail("kube-apiserver.log", 20)
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A child process killed on drop, so that a panic half-way through `start` leaves none.
#[derive(Debug)]
pub(crate) struct Process(pub(crate) Child);

impl Process {
    pub(crate) fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The bearer token of the one user (tests only: it never leaves the machine).
pub(crate) const TOKEN: &str = "serval-test-token";

/// Writes, with openssl, a CA (`ca.crt`), a serving certificate for `subject_alt_names`
/// (openssl's syntax: `IP:127.0.0.1,DNS:localhost`) signed by it (`apiserver.crt`,
/// `apiserver.key`), the service-account signing key (`sa.key`), and the static token file
/// (`tokens.csv`).
pub(crate) fn make_credentials(dir: &Path, subject_alt_names: &str) {
    let openssl = |args: &[&str]| openssl(dir, args);
    let days = ["-days", "7"];
    openssl(
        &[
            &[
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
            ],
            &["-out", "ca.crt", "-subj", "/CN=serval-test-ca"][..],
            &days,
        ]
        .concat(),
    );
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "apiserver.key",
        "-out",
        "apiserver.csr",
        "-subj",
        "/CN=kube-apiserver",
    ]);
    std::fs::write(
        dir.join("apiserver.ext"),
        format!(
            "subjectAltName={subject_alt_names}\n\
             basicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature,keyEncipherment\n\
             extendedKeyUsage=serverAuth\n"
        ),
    )
    .expect("write apiserver.ext");
    openssl(
        &[
            &[
                "x509",
                "-req",
                "-in",
                "apiserver.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
            ],
            &[
                "-CAcreateserial",
                "-out",
                "apiserver.crt",
                "-extfile",
                "apiserver.ext",
            ][..],
            &days,
        ]
        .concat(),
    );
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        "sa.key",
    ]);
    std::fs::write(
        dir.join("tokens.csv"),
        format!("{TOKEN},serval-test,serval-test,system:masters\n"),
    )
    .expect("write tokens.csv");
}

/// Runs `command` with `stdin` as its standard input and collects what it printed.
pub(crate) fn run_with_stdin(command: &mut Command, stdin: &str) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the command");
    let mut pipe = child.stdin.take().expect("stdin");
    let input = stdin.to_string();
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(input.as_bytes());
    });
    let out = child.wait_with_output().expect("wait for the command");
    let _ = writer.join();
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `openssl args` in `dir`, panicking with its stderr when it fails.
pub(crate) fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl (tools/build-kubernetes.sh installs it)");
    assert!(
        out.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub(crate) fn log_file(dir: &Path, name: &str) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(name))
        .unwrap_or_else(|e| panic!("open {name}: {e}"))
}

/// A blocking HTTP/1.0 request (so the answer is neither chunked nor kept alive):
/// (status, body).
/// `method path` with a JSON `body` against a plain-HTTP server at `base` (`http://host:port`):
/// (status, body).
pub fn http_request(
    base: &str,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, String), String> {
    let addr = base.strip_prefix("http://").ok_or("not an http:// URL")?;
    let mut stream = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let mut request =
        format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: application/json\r\n");
    if !body.is_empty() {
        request += &format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
    }
    request += "\r\n";
    request += body;
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| e.to_string())?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no HTTP header end in {response:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {head:?}"))?;
    Ok((status, body.to_string()))
}
