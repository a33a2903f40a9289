//! The image users build (`Dockerfile`) and the one the cluster test assembles without Docker
//! (`tools/cluster/image.py`) hold the same Serval: the same files at the same paths, the
//! same link, environment, user and entrypoint. The base layers differ (Debian's slim image
//! against the host's libraries), Serval's part may not.

use std::collections::BTreeSet;
use std::process::Command;

use serval_tests::repo_root;

/// Serval's part of the final stage of the Dockerfile, in `image.py list`'s words.
fn dockerfile_part(dockerfile: &str) -> (String, BTreeSet<String>) {
    // Join continued lines, so that each instruction is one line.
    let text = dockerfile.replace("\\\n", " ");
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let version = lines
        .iter()
        .find_map(|l| l.strip_prefix("ARG ONNXRUNTIME_VERSION="))
        .expect("ARG ONNXRUNTIME_VERSION=... in the Dockerfile")
        .to_string();
    let expand = |s: &str| {
        s.replace("${ONNXRUNTIME_VERSION}", &version)
            .replace('"', "")
    };

    // Stages by name: what each `cp ... /out/` puts in /out.
    let mut stage_outputs: Vec<(String, Vec<String>)> = Vec::new();
    let mut final_stage = Vec::new();
    for line in &lines {
        if let Some(from) = line.strip_prefix("FROM ") {
            let name = from.split(" AS ").nth(1).unwrap_or("").trim().to_string();
            stage_outputs.push((name, Vec::new()));
            final_stage.clear();
            continue;
        }
        final_stage.push(*line);
        let words: Vec<String> = expand(line)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        for command in words.split(|w| w == "&&") {
            if command.first().is_some_and(|c| c == "cp")
                && command.last().is_some_and(|l| l == "/out/")
            {
                let copied = &command[1..command.len() - 1];
                let stage = stage_outputs.last_mut().expect("a stage");
                stage.1.extend(
                    copied
                        .iter()
                        .map(|f| f.rsplit('/').next().unwrap_or(f).to_string()),
                );
            }
        }
    }

    let mut part = BTreeSet::new();
    for raw in final_stage {
        let line = expand(raw);
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.first().copied() {
            Some("COPY") => {
                let from = words[1]
                    .strip_prefix("--from=")
                    .expect("COPY --from=<stage>");
                let dest = words.last().expect("a destination").trim_end_matches('/');
                let outputs = &stage_outputs
                    .iter()
                    .find(|(name, _)| name == from)
                    .unwrap_or_else(|| panic!("no stage {from}"))
                    .1;
                for file in outputs {
                    part.insert(format!("file {dest}/{file}"));
                }
            }
            Some("RUN") => {
                for command in words.split(|w| *w == "&&") {
                    let command: Vec<&str> =
                        command.iter().copied().filter(|w| *w != "RUN").collect();
                    if command.len() == 4 && command[0] == "ln" && command[1] == "-s" {
                        part.insert(format!("link {} -> {}", command[3], command[2]));
                    }
                }
            }
            Some("ENV") => {
                part.insert(format!("env {}", words[1..].join(" ")));
            }
            Some("USER") => {
                part.insert(format!("user {}", words[1]));
            }
            Some("ENTRYPOINT") => {
                let json: serde_json::Value =
                    serde_json::from_str(raw.trim_start_matches("ENTRYPOINT").trim())
                        .expect("ENTRYPOINT in JSON form");
                part.insert(format!("entrypoint {json}"));
            }
            _ => {}
        }
    }
    (version, part)
}

fn image_py_part(version: &str) -> BTreeSet<String> {
    let out = Command::new("python3")
        .arg(repo_root().join("tools/cluster/image.py"))
        .args(["list", "--onnxruntime-version", version])
        .output()
        .expect("run tools/cluster/image.py");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn the_dockerfile_and_the_test_image_install_the_same_serval() {
    let dockerfile =
        std::fs::read_to_string(repo_root().join("Dockerfile")).expect("read the Dockerfile");
    let (version, from_dockerfile) = dockerfile_part(&dockerfile);
    let from_image_py = image_py_part(&version);
    assert!(
        from_dockerfile
            .iter()
            .any(|l| l.starts_with("file /usr/local/bin/serval")),
        "nothing of Serval's found in the Dockerfile: {from_dockerfile:?}"
    );
    assert_eq!(
        from_dockerfile, from_image_py,
        "the Dockerfile (left) and tools/cluster/image.py (right) install different things"
    );
}

#[test]
fn a_file_missing_from_the_dockerfile_is_noticed() {
    let dockerfile =
        std::fs::read_to_string(repo_root().join("Dockerfile")).expect("read the Dockerfile");
    let without_sidecar = dockerfile.replace(" target/release/serval-queue-proxy", "");
    let (version, part) = dockerfile_part(&without_sidecar);
    assert_ne!(part, image_py_part(&version));
}
