//! The README's quick start, run as a newcomer runs it: its `cargo run` command line read
//! from the README and run in a shell of its own (as a terminal would), the README's `curl`
//! lines against it with the answers the README promises, the idle wait until the live view
//! shows the service at zero and its processes gone, the `curl` lines again (a cold start),
//! and Ctrl-C (SIGINT to the whole foreground process group) leaving no process behind.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serval_tests::readme::{code_blocks, code_spans, commands, Documented, Readme};
use serval_tests::{collect_lines, repo_root, serval_bin};

/// The processes of one process group, as `/proc` lists them now (zombies excluded).
fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                // After "(comm)": state, ppid, pgrp, ...
                let fields: Vec<&str> = stat
                    .rsplit(')')
                    .next()
                    .unwrap_or_default()
                    .split_whitespace()
                    .collect();
                fields.first() != Some(&"Z") && fields.get(2) == Some(&pgid.to_string().as_str())
            })
        })
        .collect()
}

/// A command line of the README running in its own process group, as in a terminal.
struct Terminal {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Terminal {
    fn start(command: &str, target_dir: &Path) -> Terminal {
        let mut child = Command::new("bash")
            .arg("-c")
            .arg(command)
            .current_dir(repo_root())
            // A `cargo test --target-dir X` run builds the same binary `cargo run` runs.
            .env("CARGO_TARGET_DIR", target_dir)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start bash");
        let stdout = collect_lines(child.stdout.take().unwrap());
        let stderr = collect_lines(child.stderr.take().unwrap());
        Terminal {
            child,
            stdout,
            stderr,
        }
    }

    fn pgid(&self) -> u32 {
        self.child.id()
    }

    fn stdout_has(&self, needle: &str) -> bool {
        self.stdout
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(needle))
    }

    fn stderr_has(&self, needle: &str) -> bool {
        self.stderr
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(needle))
    }

    fn output(&self) -> String {
        format!(
            "stdout:\n{}\nstderr:\n{}",
            self.stdout.lock().unwrap().join("\n"),
            self.stderr.lock().unwrap().join("\n")
        )
    }

    /// What Ctrl-C does: SIGINT to every process of the foreground group.
    fn ctrl_c(&self) {
        let status = Command::new("kill")
            .args(["-INT", "--", &format!("-{}", self.pgid())])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -INT failed");
    }

    fn wait(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Terminal {
    /// A failed test still takes its whole process group down.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.pgid())])
                .status();
            let _ = self.child.wait();
        }
    }
}

fn wait_until(limit: Duration, what: &str, terminal: &Terminal, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "{what} within {limit:?}\n{}",
            terminal.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs one documented command in a shell and checks its output against what the README
/// promises under it (as JSON when it is JSON), or that it answered JSON without an error.
fn run_documented(documented: &Documented) -> serde_json::Value {
    let output = Command::new("bash")
        .arg("-c")
        .arg(&documented.command)
        .current_dir(repo_root())
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}: {:?}\n{stdout}{}",
        documented.command,
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {stdout}", documented.command));
    assert!(
        answer.get("error").is_none(),
        "{}: {answer}",
        documented.command
    );
    if !documented.expected.is_empty() {
        let promised = documented.expected.join("\n");
        let promised: serde_json::Value = serde_json::from_str(&promised).unwrap_or_else(|e| {
            panic!(
                "README promises {promised:?} for {}, which is not JSON: {e}",
                documented.command
            )
        });
        assert_eq!(
            answer, promised,
            "{} answered what the README does not promise",
            documented.command
        );
    }
    answer
}

#[test]
fn the_quick_start_works_as_written() {
    let readme = Readme::load();
    let quick_start = readme.section("Quick start");
    let blocks = code_blocks(quick_start);
    let start = commands(&blocks[0]);
    assert_eq!(start.len(), 1, "the quick start starts with one command");
    let start = &start[0].command;
    let curls = commands(&blocks[1]);
    assert!(!curls.is_empty(), "the quick start has requests to send");
    assert!(
        curls.iter().all(|c| !c.expected.is_empty()),
        "the README shows what each request answers"
    );
    let at_zero = code_spans(quick_start)
        .into_iter()
        .find(|s| s.starts_with("ready "))
        .expect("the quick start says what the live view shows at zero");
    let at_zero = at_zero.as_str();

    // What `cargo run` will run, built here first so waiting for it is not a compile.
    let target_dir = serval_bin()
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_path_buf();

    let mut terminal = Terminal::start(start, &target_dir);
    let deadline = Instant::now() + Duration::from_secs(300);
    while !terminal.stderr_has("serval dev: activator on") {
        if let Ok(Some(status)) = terminal.child.try_wait() {
            panic!("`{start}` exited with {status}\n{}", terminal.output());
        }
        assert!(
            Instant::now() < deadline,
            "`serval dev` serving\n{}",
            terminal.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let answers: Vec<serde_json::Value> = curls.iter().map(run_documented).collect();
    let running = group_members(terminal.pgid());
    assert!(
        running.len() >= 3,
        "serval dev and a replica's queue-proxy and runtime run: {running:?}"
    );

    // Idle: the live view shows the service at zero and the replica's processes are gone.
    wait_until(
        Duration::from_secs(60),
        &format!("the live view showing {at_zero:?}"),
        &terminal,
        || terminal.stdout_has(at_zero),
    );
    wait_until(
        Duration::from_secs(10),
        "the replica processes gone",
        &terminal,
        || group_members(terminal.pgid()).len() == 1,
    );

    // The same requests wake it and get the same answers.
    for (documented, first) in curls.iter().zip(&answers) {
        assert_eq!(&run_documented(documented), first, "{}", documented.command);
    }

    terminal.ctrl_c();
    let code = terminal.wait(Duration::from_secs(30));
    assert_eq!(
        code,
        Some(0),
        "Ctrl-C stops serval dev cleanly\n{}",
        terminal.output()
    );
    let left: Vec<u32> = running
        .iter()
        .copied()
        .filter(|pid| group_members(terminal.pgid()).contains(pid))
        .collect();
    assert!(left.is_empty(), "processes left after Ctrl-C: {left:?}");
    assert!(
        group_members(terminal.pgid()).is_empty(),
        "nothing of the quick start's process group is left"
    );
}
