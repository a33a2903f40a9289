//! What the cluster changes on the machine, recorded before it starts and put back when it
//! stops: the bridge and its route, iptables (kubelet's and kube-proxy's chains, and the
//! rule that keeps pod traffic on this machine), two sysctls, cgroups, mounts and processes.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{BRIDGE, NODE_IP, POD_CIDR, SERVICE_CIDR};

/// The machine as it was before the cluster started.
#[derive(Debug, Default)]
pub(super) struct HostState {
    iptables: Option<String>,
    ip6tables: Option<String>,
    sysctls: Vec<(PathBuf, String)>,
    cgroups: Vec<PathBuf>,
}

const SYSCTLS: [(&str, &str); 2] = [
    ("/proc/sys/net/ipv4/ip_forward", "1"),
    ("/proc/sys/net/bridge/bridge-nf-call-iptables", "1"),
];

/// Runs `program args`, panicking with its stderr when it fails.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `program args` and ignores how it ends (teardown goes on whatever fails).
fn try_run(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|out| out.status.success())
}

impl HostState {
    /// Records the machine's state, then sets up the pods' network: the bridge with the node
    /// address, a route for the Service range through it (so the host reaches cluster IPs
    /// even without a default route), forwarding, iptables on bridged traffic (kube-proxy's
    /// rules must see pod-to-pod Service traffic), and a rule dropping pod traffic that would
    /// leave by any other interface.
    pub(super) fn set_up(&mut self) {
        self.iptables = Some(run("iptables-save", &[]));
        self.ip6tables = Command::new("ip6tables-save")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        self.cgroups = cgroup_dirs();
        if Path::new(&format!("/sys/class/net/{BRIDGE}")).exists() {
            // Left by a run that was killed before its teardown.
            try_run("ip", &["link", "delete", BRIDGE]);
        }
        for (path, value) in SYSCTLS {
            let path = PathBuf::from(path);
            let old = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
            std::fs::write(&path, value).unwrap_or_else(|e| panic!("set {}: {e}", path.display()));
            self.sysctls.push((path, old.trim().to_string()));
        }
        run("ip", &["link", "add", BRIDGE, "type", "bridge"]);
        run(
            "ip",
            &["addr", "add", &format!("{NODE_IP}/24"), "dev", BRIDGE],
        );
        run("ip", &["link", "set", BRIDGE, "up"]);
        run(
            "ip",
            &["route", "add", SERVICE_CIDR, "dev", BRIDGE, "src", NODE_IP],
        );
        run(
            "iptables",
            &[
                "-I",
                "FORWARD",
                "-s",
                POD_CIDR,
                "!",
                "-o",
                BRIDGE,
                "-j",
                "DROP",
                "-m",
                "comment",
                "--comment",
                "serval test cluster: pod traffic stays here",
            ],
        );
    }

    /// Puts back everything `set_up` and the cluster changed, after the processes are gone:
    /// mounts under `dir`, leftover processes in the cluster's cgroups, the cgroups, the
    /// bridge, iptables as saved, the sysctls.
    pub(super) fn restore(&mut self, dir: &Path) {
        unmount_under(dir);
        let before = std::mem::take(&mut self.cgroups);
        for cgroup in cgroup_dirs().into_iter().filter(|c| !before.contains(c)) {
            remove_cgroup(&cgroup);
        }
        try_run("ip", &["link", "delete", BRIDGE]);
        // iptables-restore only replaces the tables its input names, and a table that did
        // not exist before has nothing to name: empty the tables the kubelet and kube-proxy
        // write, then put back what was saved.
        for (program, save) in [
            ("iptables", self.iptables.take()),
            ("ip6tables", self.ip6tables.take()),
        ] {
            let Some(saved) = save else { continue };
            for table in ["filter", "nat", "mangle"] {
                try_run(program, &["-t", table, "-F"]);
                try_run(program, &["-t", table, "-X"]);
            }
            restore_rules(&format!("{program}-restore"), &saved);
        }
        for (path, value) in self.sysctls.drain(..) {
            let _ = std::fs::write(path, value);
        }
    }
}

fn restore_rules(program: &str, saved: &str) {
    use std::io::Write;
    if let Ok(mut child) = Command::new(program)
        .stdin(std::process::Stdio::piped())
        .spawn()
    {
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(saved.as_bytes());
        }
        let _ = child.wait();
    }
}

/// The top-level cgroups of every v1 hierarchy (where the kubelet and containerd make
/// theirs).
fn cgroup_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        for entry in std::fs::read_dir(hierarchy.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(entry.path());
            }
        }
    }
    dirs
}

/// Kills what still runs in `cgroup` and removes it, children first.
fn remove_cgroup(cgroup: &Path) {
    for entry in std::fs::read_dir(cgroup).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_cgroup(&entry.path());
        }
    }
    if let Ok(procs) = std::fs::read_to_string(cgroup.join("cgroup.procs")) {
        for pid in procs.lines().filter(|p| !p.is_empty()) {
            try_run("kill", &["-KILL", pid]);
        }
    }
    for _ in 0..50 {
        if std::fs::remove_dir(cgroup).is_ok() || !cgroup.exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Unmounts every mount point under `dir` (volumes, overlay roots, network namespaces),
/// deepest first.
fn unmount_under(dir: &Path) {
    let prefix = dir.display().to_string();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<String> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|p| p.replace("\\040", " "))
        .filter(|p| p.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    points.dedup();
    for point in points {
        if !try_run("umount", &[&point]) {
            try_run("umount", &["--lazy", &point]);
        }
    }
}

/// Kills every process (but this one) whose command line names `dir`: containerd's shims,
/// which outlive containerd.
pub(super) fn kill_processes_naming(dir: &Path) {
    let needle = dir.display().to_string();
    let me = std::process::id().to_string();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if pid == me || !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            if String::from_utf8_lossy(&cmdline).contains(&needle) {
                try_run("kill", &["-KILL", &pid]);
            }
        }
    }
}
