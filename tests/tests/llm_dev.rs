//! A language model through `serval dev` end to end: OpenAI's Python client, unchanged,
//! through the activator and queue-proxy; streamed output tokens counted by the
//! queue-proxy drive `scaleMetric: tokens`; idle goes to zero and the next request is held
//! and served.

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use serval_tests::dev::Dev;
use serval_tests::http_client::{http1, send};
use serval_tests::repo_root;
use serval_tests::runtime::{smollm2_dir, venv};

const WINDOWS: &str = "stable-window: 6s\nscale-to-zero-grace-period: 1s\n";

/// `examples/smollm2.yaml` with its model in the test venv, a token target low enough for
/// this machine's load to need several replicas, and a small body limit to test 413.
fn manifest(dir: &std::path::Path) -> std::path::PathBuf {
    let example = std::fs::read_to_string(repo_root().join("examples/smollm2.yaml"))
        .expect("examples/smollm2.yaml");
    assert!(
        example.contains("storageUri: ./models/smollm2") && example.contains("scaleTarget: 150")
    );
    let manifest = example
        .replace(
            "storageUri: ./models/smollm2",
            &format!(
                "storageUri: {}\n      env:\n        - name: SERVAL_MAX_BODY_BYTES\n          value: \"65536\"",
                smollm2_dir().display()
            ),
        )
        .replace("scaleTarget: 150", "scaleTarget: 20");
    let path = dir.join("smollm2.yaml");
    std::fs::write(&path, manifest).unwrap();
    path
}

/// The largest `desired` the live view showed for the service.
fn most_desired(dev: &Dev) -> u32 {
    dev.lines
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with("default/smollm2 "))
        .filter_map(|l| {
            let rest = l.split("(desired ").nth(1)?;
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .max()
        .unwrap_or(0)
}

async fn wait_until(limit: Duration, what: &str, dev: &Dev, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "{what} within {limit:?}; last line: {}\n{}",
            dev.last_line(),
            dev.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_clients_token_scaling_and_scale_to_zero_through_serval_dev() {
    let dir = std::env::temp_dir().join(format!("serval-llm-dev-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = manifest(&dir);
    let dev = Dev::start(WINDOWS, &[manifest.to_str().unwrap()]);
    let client = http1();
    let chat = dev.url("/serving/default/smollm2/v1/chat/completions");
    let hello = json!({"model": "smollm2", "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 8}).to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match send(&client, "POST", &chat, &hello).await {
            Ok(answer) if answer.status == 200 => break,
            other => {
                assert!(
                    Instant::now() < deadline,
                    "no answer from serval dev: {other:?}\n{}",
                    dev.stderr()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    // OpenAI's client, unchanged, through the activator.
    let output = Command::new(venv().join("bin/python"))
        .arg(repo_root().join("tests/python/openai_client.py"))
        .arg(dev.url("/serving/default/smollm2/v1"))
        .arg("smollm2")
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("all checks passed"),
        "openai_client.py:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // Streamed load: the queue-proxy counts output tokens, the autoscaler scales on them.
    let stop = Arc::new(AtomicBool::new(false));
    let streamed = Arc::new(AtomicU64::new(0));
    let completions = dev.url("/serving/default/smollm2/v1/completions");
    let load: Vec<_> = (0..6)
        .map(|i| {
            let (stop, streamed, url) = (stop.clone(), streamed.clone(), completions.clone());
            tokio::spawn(async move {
                let body = json!({"model": "smollm2", "prompt": format!("Story {i}:"), "max_tokens": 120, "stream": true, "ignore_eos": true}).to_string();
                let client = http1();
                while !stop.load(Ordering::Relaxed) {
                    let answer = send(&client, "POST", &url, &body).await.expect("stream");
                    assert_eq!(answer.status, 200, "{}", answer.body);
                    assert!(answer.body.ends_with("data: [DONE]\n\n"));
                    streamed.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    wait_until(Duration::from_secs(90), "scaled up on tokens", &dev, || {
        most_desired(&dev) >= 2
    })
    .await;
    let scaled_on_tokens = dev
        .lines
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with("default/smollm2 "))
        .any(|l| {
            l.split("tok/s ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next()?.parse::<f64>().ok())
                .is_some_and(|t| t >= 40.0)
        });
    assert!(scaled_on_tokens, "the live view never showed tokens/s");
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    assert!(streamed.load(Ordering::Relaxed) > 0);

    // Idle: every replica goes; the next request is held, a replica starts, it is served.
    wait_until(Duration::from_secs(60), "scaled to zero", &dev, || {
        dev.saw("ready 0/0 (desired 0)")
    })
    .await;
    wait_until(
        Duration::from_secs(30),
        "replica processes gone",
        &dev,
        || dev.children().is_empty(),
    )
    .await;
    let cold = send(&client, "POST", &chat, &hello).await.unwrap();
    assert_eq!(cold.status, 200, "{}", cold.body);
    assert!(cold.json()["choices"][0]["message"]["content"].is_string());
    assert!(!dev.children().is_empty(), "a replica serves again");
    let _ = std::fs::remove_dir_all(&dir);
}
