//! A real one-node Kubernetes 1.20 cluster on this machine, for the tests that need pods:
//! etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy (iptables), the
//! kubelet, containerd with runc, a bridge CNI network, and a DNS server for
//! `*.svc.cluster.local`. The Kubernetes binaries are built by `tools/build-kubernetes.sh`;
//! containerd, runc, the CNI plugins, dnsmasq and iptables are Debian's
//! (`tools/install-cluster-packages.sh`). It needs root.
//!
//! Addresses exist only on this machine: pods get 10.244.0.0/24 on the bridge `serval0`,
//! whose address 10.244.0.1 is the node's (the API server, the kubelet and the DNS server
//! listen there), and Services get 10.96.0.0/24. Pod traffic is neither masqueraded nor
//! forwarded off the machine. Everything (processes, containers, mounts, network devices,
//! iptables rules, cgroups, sysctls) is put back when the [`Cluster`] is dropped, also when
//! a test panics.

mod config;
mod dns;
pub(crate) mod host;
pub mod image;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::apiserver::{
    etcd_bin, http_request, kube_cache, kubectl_bin, log_file, make_credentials, openssl,
    run_with_stdin, Output, Process, TOKEN,
};
use crate::{lease_port, PortLease};

pub use host::run;

/// The node's address: the bridge's, which pods reach as their gateway.
pub const NODE_IP: &str = "10.244.0.1";
/// The pods' addresses.
pub const POD_CIDR: &str = "10.244.0.0/24";
/// The Services' cluster IPs; the first is the `kubernetes` Service's.
pub const SERVICE_CIDR: &str = "10.96.0.0/24";
/// The bridge the pods' veths join.
pub const BRIDGE: &str = "serval0";
/// The one node.
pub const NODE_NAME: &str = "serval-node";
pub const CLUSTER_DOMAIN: &str = "cluster.local";
/// The pod sandbox image (tools/cluster/pause.c), imported at start.
pub const PAUSE_IMAGE: &str = "serval.local/pause:test";
/// Where the API server listens (on the node address).
const API_PORT: u16 = 6443;

/// How long the control plane and the node may take to become ready (seconds when idle,
/// much more on two cores that are also compiling).
const READY_WITHIN: Duration = Duration::from_secs(240);

/// Where `tools/build-kubernetes.sh` leaves the Kubernetes binaries.
pub fn kube_bin(name: &str) -> PathBuf {
    let bin = kube_cache().join("bin").join(name);
    assert!(
        bin.is_file(),
        "no {name} at {}: run `bash tools/build-kubernetes.sh` (about 12 minutes the first \
         time; .ci/run does it before the tests)",
        bin.display()
    );
    bin
}

/// The running cluster. Dropping it stops everything and restores the machine.
#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    kubeconfig: PathBuf,
    url: String,
    /// In start order; stopped in reverse.
    processes: Vec<(&'static str, Process)>,
    /// The loopback ports its processes were given, held while they run.
    ports: Vec<PortLease>,
    dns: Option<dns::ServiceRecords>,
    host: host::HostState,
}

impl Cluster {
    /// Starts the whole cluster in a fresh directory and waits until the node is Ready, the
    /// `default` service account has its token, kube-proxy has programmed the `kubernetes`
    /// Service and the DNS server knows it. `images` are OCI archives imported into the
    /// node's containerd before the kubelet starts (the pause image is always imported).
    pub fn start(images: &[PathBuf]) -> Self {
        preflight();
        let dir = std::env::temp_dir().join(format!("serval-cluster-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the cluster's directory");
        let mut cluster = Self {
            kubeconfig: dir.join("kubeconfig"),
            dir,
            url: String::new(),
            processes: Vec::new(),
            ports: Vec::new(),
            dns: None,
            host: host::HostState::default(),
        };
        let started = Instant::now();
        let step = |what: &str| eprintln!("cluster: {what} ({:.0?})", started.elapsed());

        step("network: bridge, route, iptables, sysctls");
        cluster.host.set_up();
        let kubernetes_ip = first_service_ip();
        make_credentials(
            &cluster.dir,
            &format!(
                "IP:{NODE_IP},IP:{kubernetes_ip},IP:127.0.0.1,DNS:localhost,DNS:kubernetes,\
                 DNS:kubernetes.default,DNS:kubernetes.default.svc,\
                 DNS:kubernetes.default.svc.{CLUSTER_DOMAIN}"
            ),
        );
        make_kubelet_client_certificate(&cluster.dir);
        std::fs::write(
            &cluster.kubeconfig,
            config::kubeconfig(
                &cluster.dir,
                &format!("https://{NODE_IP}:{API_PORT}"),
                TOKEN,
            ),
        )
        .expect("write the kubeconfig");

        step("containerd");
        cluster.start_containerd();
        let pause = cluster.dir.join("pause.tar");
        crate::cluster::image::pause(&pause);
        for image in std::iter::once(&pause).chain(images) {
            cluster.ctr(&["images", "import", &image.display().to_string()]);
        }

        step("etcd and kube-apiserver");
        cluster.start_control_plane();
        cluster.wait(
            "the API server",
            |c| matches!(c.get("/readyz"), Ok((200, body)) if body == "ok"),
        );

        step("DNS, controller-manager, scheduler, kube-proxy, kubelet");
        cluster.start_dns();
        cluster.start_node();

        cluster.wait("the node to be Ready", |c| {
            c.json(&format!("/api/v1/nodes/{NODE_NAME}"))
                .is_some_and(|node| condition_true(&node, "Ready"))
        });
        cluster.wait("the default service account's token", |c| {
            c.json("/api/v1/namespaces/default/serviceaccounts/default")
                .is_some_and(|sa| sa["secrets"].as_array().is_some_and(|s| !s.is_empty()))
        });
        cluster.wait("kube-proxy's rules for the kubernetes Service", |_| {
            run("iptables-save", &["-t", "nat"]).contains("default/kubernetes:https")
        });
        cluster.wait("the DNS record of the kubernetes Service", |c| {
            std::fs::read_to_string(c.dir.join("dns/services")).is_ok_and(|hosts| {
                hosts.contains(&format!("kubernetes.default.svc.{CLUSTER_DOMAIN}"))
            })
        });
        step("ready");
        cluster
    }

    /// The kubeconfig of a `system:masters` user (`https://10.244.0.1:6443`).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The API server over plain HTTP through `kubectl proxy` (no credentials needed).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `GET path` on the API server: (status, body).
    pub fn get(&self, path: &str) -> Result<(u16, String), String> {
        http_request(&self.url, "GET", path, "")
    }

    /// `GET path` as JSON, when it answers 200.
    pub fn json(&self, path: &str) -> Option<Value> {
        match self.get(path) {
            Ok((200, body)) => serde_json::from_str(&body).ok(),
            _ => None,
        }
    }

    /// Runs `kubectl` against the cluster with `stdin`.
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

    /// Runs `helm` against the cluster.
    pub fn helm<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        run_with_stdin(
            Command::new(crate::helm_bin())
                .arg("--kubeconfig")
                .arg(&self.kubeconfig)
                .args(args),
            "",
        )
    }

    /// The last `lines` lines of a component's log (`kubelet`, `containerd`, ...).
    pub fn log_tail(&self, name: &str, lines: usize) -> String {
        let text =
            std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Runs `ctr` in the kubelet's containerd namespace.
    pub fn ctr(&self, args: &[&str]) -> String {
        let socket = self.dir.join("containerd.sock").display().to_string();
        run(
            "ctr",
            &[&["--address", &socket, "--namespace", "k8s.io"], args].concat(),
        )
    }

    /// Polls `ready` every 250 ms until it holds; panics after [`READY_WITHIN`] or when a
    /// component exits, with that component's log.
    pub fn wait(&mut self, what: &str, mut ready: impl FnMut(&Self) -> bool) {
        self.wait_until(what, |c| if ready(c) { Ok(()) } else { Err(String::new()) });
    }

    /// [`Cluster::wait`] for a check that says what it saw when it does not hold; the last
    /// such answer is in the panic.
    pub fn wait_until(&mut self, what: &str, mut check: impl FnMut(&Self) -> Result<(), String>) {
        let deadline = Instant::now() + READY_WITHIN;
        let mut last = String::new();
        while Instant::now() < deadline {
            self.check_alive();
            match check(self) {
                Ok(()) => return,
                Err(seen) => last = seen,
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!(
            "the cluster: no {what} within {READY_WITHIN:?} (last seen: {last}); kubelet's log \
             ends:\n{}",
            self.log_tail("kubelet", 30)
        );
    }

    /// Panics, with its log, when a component has exited.
    pub fn check_alive(&mut self) {
        for (name, process) in &mut self.processes {
            if let Ok(Some(status)) = process.0.try_wait() {
                let name = *name;
                panic!(
                    "{name} exited ({status}); its log ends:\n{}",
                    self.log_tail(name, 40)
                );
            }
        }
    }

    fn spawn(&mut self, name: &'static str, command: &mut Command) {
        let process = command
            .stdin(Stdio::null())
            .stdout(log_file(&self.dir, &format!("{name}.log")))
            .stderr(log_file(&self.dir, &format!("{name}.log")))
            .spawn()
            .map(Process)
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        self.processes.push((name, process));
    }

    fn start_containerd(&mut self) {
        let config = self.dir.join("containerd.toml");
        std::fs::write(&config, config::containerd(&self.dir)).expect("write containerd.toml");
        std::fs::create_dir_all(self.dir.join("cni")).expect("create the CNI config dir");
        std::fs::write(
            self.dir.join("cni/10-serval.conflist"),
            config::cni(&self.dir),
        )
        .expect("write the CNI config");
        self.spawn(
            "containerd",
            Command::new("containerd").arg("--config").arg(&config),
        );
        self.wait("containerd's socket", |c| {
            Command::new("ctr")
                .arg("--address")
                .arg(c.dir.join("containerd.sock"))
                .arg("version")
                .output()
                .is_ok_and(|o| o.status.success())
        });
    }

    fn start_control_plane(&mut self) {
        let dir = self.dir.clone();
        let file = |name: &str| dir.join(name).display().to_string();
        let (client_port, peer_port) = (lease_port(), lease_port());
        let etcd_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let etcd_args = [
            "--name=serval-cluster".to_string(),
            format!("--data-dir={}", file("etcd")),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=serval-cluster={peer_url}"),
            "--logger=zap".into(),
            "--unsafe-no-fsync".into(),
        ];
        self.spawn("etcd", Command::new(etcd_bin()).args(etcd_args));
        self.ports.extend([client_port, peer_port]);
        let apiserver_args = [
            format!("--etcd-servers={etcd_url}"),
            format!("--bind-address={NODE_IP}"),
            format!("--advertise-address={NODE_IP}"),
            format!("--secure-port={API_PORT}"),
            format!("--tls-cert-file={}", file("apiserver.crt")),
            format!("--tls-private-key-file={}", file("apiserver.key")),
            format!("--client-ca-file={}", file("ca.crt")),
            // For logs, exec and stats, the API server shows the kubelet this certificate.
            format!(
                "--kubelet-client-certificate={}",
                file("kubelet-client.crt")
            ),
            format!("--kubelet-client-key={}", file("kubelet-client.key")),
            format!("--token-auth-file={}", file("tokens.csv")),
            "--authorization-mode=RBAC".into(),
            "--service-account-issuer=https://kubernetes.default.svc".into(),
            format!("--service-account-key-file={}", file("sa.key")),
            format!("--service-account-signing-key-file={}", file("sa.key")),
            format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            "--allow-privileged=true".into(),
            "--kubelet-preferred-address-types=InternalIP".into(),
            "--profiling=false".into(),
        ];
        self.spawn(
            "kube-apiserver",
            Command::new(kube_bin("kube-apiserver")).args(apiserver_args),
        );
        let proxy_port = lease_port();
        let kubeconfig = self.kubeconfig.clone();
        self.spawn(
            "kubectl-proxy",
            Command::new(kubectl_bin())
                .arg("--kubeconfig")
                .arg(kubeconfig)
                .args([
                    "proxy",
                    "--address=127.0.0.1",
                    &format!("--port={proxy_port}"),
                ]),
        );
        self.url = format!("http://127.0.0.1:{proxy_port}");
        self.ports.push(proxy_port);
    }

    fn start_dns(&mut self) {
        let hosts_dir = self.dir.join("dns");
        std::fs::create_dir_all(&hosts_dir).expect("create the DNS hosts dir");
        self.dns = Some(dns::ServiceRecords::start(
            self.url.clone(),
            hosts_dir.clone(),
        ));
        self.spawn(
            "dnsmasq",
            Command::new("dnsmasq").args(dns::dnsmasq_args(&hosts_dir)),
        );
    }

    fn start_node(&mut self) {
        let kubeconfig = self.kubeconfig.display().to_string();
        let dir = self.dir.clone();
        let file = |name: &str| dir.join(name).display().to_string();
        let controller_manager = [
            format!("--kubeconfig={kubeconfig}"),
            format!("--service-account-private-key-file={}", file("sa.key")),
            format!("--root-ca-file={}", file("ca.crt")),
            "--leader-elect=false".into(),
            "--port=0".into(),
            "--secure-port=0".into(),
            "--use-service-account-credentials=false".into(),
            "--allocate-node-cidrs=false".into(),
            format!("--cluster-cidr={POD_CIDR}"),
            format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            // Deleted pods and finished objects go fast: the tests check that delete
            // removes everything.
            "--terminated-pod-gc-threshold=10".into(),
            "--profiling=false".into(),
        ];
        self.spawn(
            "kube-controller-manager",
            Command::new(kube_bin("kube-controller-manager")).args(controller_manager),
        );
        let scheduler = [
            format!("--kubeconfig={kubeconfig}"),
            "--leader-elect=false".into(),
            "--port=0".into(),
            "--secure-port=0".into(),
            "--profiling=false".into(),
        ];
        self.spawn(
            "kube-scheduler",
            Command::new(kube_bin("kube-scheduler")).args(scheduler),
        );
        let proxy = [
            format!("--kubeconfig={kubeconfig}"),
            format!("--hostname-override={NODE_NAME}"),
            format!("--cluster-cidr={POD_CIDR}"),
            "--proxy-mode=iptables".into(),
            // Leave the machine's conntrack sysctls alone.
            "--conntrack-max-per-core=0".into(),
            "--conntrack-tcp-timeout-established=0".into(),
            "--conntrack-tcp-timeout-close-wait=0".into(),
            format!("--healthz-bind-address={NODE_IP}:10256"),
            format!("--metrics-bind-address={NODE_IP}:10249"),
            "--profiling=false".into(),
        ];
        self.spawn(
            "kube-proxy",
            Command::new(kube_bin("kube-proxy")).args(proxy),
        );
        std::fs::write(self.dir.join("resolv.conf"), "").expect("write resolv.conf");
        std::fs::write(self.dir.join("kubelet.yaml"), config::kubelet(&self.dir))
            .expect("write kubelet.yaml");
        let socket = format!("unix://{}", file("containerd.sock"));
        let kubelet = [
            format!("--config={}", file("kubelet.yaml")),
            format!("--kubeconfig={kubeconfig}"),
            "--container-runtime=remote".into(),
            format!("--container-runtime-endpoint={socket}"),
            format!("--image-service-endpoint={socket}"),
            format!("--hostname-override={NODE_NAME}"),
            format!("--node-ip={NODE_IP}"),
            format!("--root-dir={}", file("kubelet")),
            format!("--cert-dir={}", file("kubelet-pki")),
            format!("--pod-infra-container-image={PAUSE_IMAGE}"),
            // The sandbox may not lower oom_score_adj.
            "--oom-score-adj=0".into(),
        ];
        self.spawn("kubelet", Command::new(kube_bin("kubelet")).args(kubelet));
    }

    /// Stops the containers through containerd (the kubelet is gone by then, so nothing
    /// restarts them): every task killed and deleted, every container and sandbox removed.
    fn remove_containers(&self) {
        let socket = self.dir.join("containerd.sock").display().to_string();
        let ctr = |args: &[&str]| {
            Command::new("ctr")
                .args(["--address", &socket, "--namespace", "k8s.io"])
                .args(args)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default()
        };
        for task in ctr(&["tasks", "list", "--quiet"]).lines() {
            ctr(&["tasks", "kill", "--signal", "SIGKILL", task]);
        }
        // A killed task can be deleted once its process has exited.
        for _ in 0..50 {
            let tasks = ctr(&["tasks", "list", "--quiet"]);
            if tasks.trim().is_empty() {
                break;
            }
            for task in tasks.lines() {
                ctr(&["tasks", "delete", task]);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        for container in ctr(&["containers", "list", "--quiet"]).lines() {
            ctr(&["containers", "delete", container]);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for name in ["kubelet", "kube-controller-manager", "containerd"] {
                eprintln!("{name}'s log ends:\n{}", self.log_tail(name, 15));
            }
        }
        // The kubelet first, so that nothing restarts the containers; then the containers;
        // then the rest, newest first.
        if let Some(index) = self
            .processes
            .iter()
            .position(|(name, _)| *name == "kubelet")
        {
            self.processes.remove(index).1.stop();
        }
        self.remove_containers();
        self.dns = None;
        while let Some((_, mut process)) = self.processes.pop() {
            process.stop();
        }
        host::kill_processes_naming(&self.dir);
        self.host.restore(&self.dir);
        if std::env::var_os("SERVAL_CLUSTER_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Fails early, saying what to install, when something the cluster needs is missing.
fn preflight() {
    assert!(
        run("id", &["-u"]).trim() == "0",
        "the test cluster needs root (containerd, bridges, iptables)"
    );
    for bin in [
        "containerd",
        "ctr",
        "runc",
        "dnsmasq",
        "iptables",
        "conntrack",
    ] {
        assert!(
            Command::new("sh")
                .args(["-c", &format!("command -v {bin}")])
                .output()
                .is_ok_and(|o| o.status.success()),
            "no {bin}: run `bash tools/install-cluster-packages.sh`"
        );
    }
    assert!(
        Path::new("/usr/lib/cni/bridge").exists(),
        "no CNI plugins in /usr/lib/cni: run `bash tools/install-cluster-packages.sh`"
    );
    for name in [
        "kubelet",
        "kube-controller-manager",
        "kube-scheduler",
        "kube-proxy",
    ] {
        kube_bin(name);
    }
}

/// A client certificate (group `system:masters`) the API server shows the kubelet, which
/// trusts the harness's CA (`kubelet-client.crt`, `kubelet-client.key`).
fn make_kubelet_client_certificate(dir: &Path) {
    let openssl = |args: &[&str]| openssl(dir, args);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "kubelet-client.key",
        "-out",
        "kubelet-client.csr",
        "-subj",
        "/O=system:masters/CN=kube-apiserver-kubelet-client",
    ]);
    std::fs::write(
        dir.join("kubelet-client.ext"),
        "extendedKeyUsage=clientAuth\n",
    )
    .expect("write kubelet-client.ext");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "kubelet-client.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "kubelet-client.crt",
        "-extfile",
        "kubelet-client.ext",
        "-days",
        "7",
    ]);
}

/// The `kubernetes` Service's address: the first of [`SERVICE_CIDR`].
fn first_service_ip() -> String {
    let base = SERVICE_CIDR.split('/').next().expect("a CIDR");
    let (head, last) = base.rsplit_once('.').expect("an IPv4 address");
    format!("{head}.{}", last.parse::<u8>().expect("an octet") + 1)
}

/// Whether the object's `status.conditions` has `kind` with status "True".
pub fn condition_true(object: &Value, kind: &str) -> bool {
    object["status"]["conditions"]
        .as_array()
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c["type"] == kind && c["status"] == "True")
        })
}
