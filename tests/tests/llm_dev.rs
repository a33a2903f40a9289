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
/// this machine's load to need several replicas, a small body limit to test 413, and one
/// generation thread per replica: llama.cpp's threads spin while they wait for each other,
/// so two replicas of two threads each on two cores fall to a few tokens/s.
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
                "storageUri: {}\n      env:\n        - name: SERVAL_MAX_BODY_BYTES\n          value: \"65536\"\n        - name: SERVAL_THREADS\n          value: \"1\"",
                smollm2_dir().display()
            ),
        )
        .replace("scaleTarget: 150", "scaleTarget: 20");
    let path = dir.join("smollm2.yaml");
    std::fs::write(&path, manifest).unwrap();
    path
}

/// The largest `desired` the live view showed for the service.
/// The number after `key` in a live view line.
fn number_after(line: &str, key: &str) -> Option<f64> {
    line.split(key).nth(1).and_then(|r| {
        r.split_whitespace()
            .next()?
            .trim_end_matches(',')
            .parse::<f64>()
            .ok()
    })
}

/// The live view's lines for the smollm2 service.
fn smollm2_lines(dev: &Dev) -> Vec<String> {
    dev.lines
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with("default/smollm2 "))
        .cloned()
        .collect()
}

/// Whether a line shows a decision for 2 or more replicas on the tokens metric, with the
/// tokens it counted.
fn scaled_on_tokens(lines: &[String]) -> bool {
    lines.iter().any(|l| {
        let counted = |key| number_after(l, key).is_some_and(|t| t > 0.0);
        number_after(l, "tokens wants ").is_some_and(|n| n >= 2.0)
            && (counted("tok/s ") || counted("prompt tok/s "))
    })
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

/// What OpenAI's client got from `tests/python/openai_client.py`'s calls.
fn check_openai_client(seen: &serde_json::Value) {
    assert_eq!(seen["models"], json!(["smollm2"]), "models.list: {seen}");

    let chat = &seen["chat"];
    assert!(
        chat["content"]
            .as_str()
            .is_some_and(|c| c.contains("Paris")),
        "the capital of France: {chat}"
    );
    assert_eq!(chat["role"], "assistant", "{chat}");
    assert!(
        chat["finish_reason"] == "stop" || chat["finish_reason"] == "length",
        "{chat}"
    );
    let usage = |field: &str| chat["usage"][field].as_u64().unwrap_or(0);
    assert!(usage("prompt_tokens") > 0, "{chat}");
    assert!((1..=24).contains(&usage("completion_tokens")), "{chat}");
    assert_eq!(
        usage("total_tokens"),
        usage("prompt_tokens") + usage("completion_tokens"),
        "{chat}"
    );

    // One chunk per token, arriving as they are made: the first long before the last.
    let stream = &seen["stream"];
    assert!(
        stream["content_chunks"].as_u64().unwrap_or(0) >= 60,
        "{stream}"
    );
    let (first, last) = (
        stream["first_chunk_s"].as_f64().unwrap_or(f64::NAN),
        stream["last_chunk_s"].as_f64().unwrap_or(f64::NAN),
    );
    assert!(first < last / 3.0, "{stream}");
    assert_eq!(
        stream["completion_tokens"], 64,
        "usage at the end: {stream}"
    );

    // The text stops just before the stop sequence.
    assert_eq!(
        seen["completion"],
        json!({
            "text": " the primary colors of the RGB color model: red, blue, and ",
            "finish_reason": "stop",
        })
    );

    let errors = &seen["errors"];
    let refused = |status: u16, code: Option<&str>, param: Option<&str>| json!({"status": status, "code": code, "param": param});
    assert_eq!(
        errors["unknown model"],
        refused(404, Some("model_not_found"), Some("model")),
        "{errors}"
    );
    assert_eq!(errors["malformed messages"]["status"], 400, "{errors}");
    assert_eq!(
        errors["malformed messages"]["param"], "messages",
        "{errors}"
    );
    assert_eq!(
        errors["max_tokens over the context"],
        refused(400, Some("context_length_exceeded"), Some("max_tokens")),
        "{errors}"
    );
    assert_eq!(errors["prompt too long"]["status"], 400, "{errors}");
    assert_eq!(
        errors["prompt too long"]["code"], "context_length_exceeded",
        "{errors}"
    );
    assert_eq!(errors["body over the limit"]["status"], 413, "{errors}");
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
    let said = || format!("{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "openai_client.py:\n{}", said());
    let seen: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("openai_client.py: {e}:\n{}", said()));
    check_openai_client(&seen);

    // Streamed load: the queue-proxy counts output tokens, the autoscaler scales on them.
    let stop = Arc::new(AtomicBool::new(false));
    let streamed = Arc::new(AtomicU64::new(0));
    let completions = dev.url("/serving/default/smollm2/v1/completions");
    let load: Vec<_> = (0..6)
        .map(|i| {
            let (stop, streamed, url) = (stop.clone(), streamed.clone(), completions.clone());
            tokio::spawn(async move {
                // Half the streams ask for usage, which carries their prompt tokens.
                let usage = json!({"include_usage": i % 2 == 0});
                let body = json!({"model": "smollm2", "prompt": format!("Story {i}:"), "max_tokens": 120, "stream": true, "stream_options": usage, "ignore_eos": true}).to_string();
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
    // The decision that scales out names the tokens metric, and its line shows the tokens it
    // counted: output tokens/s, or prompt tokens/s when the last window held only the end
    // of a stream (its usage). The rates shown are the last scrape's; the windows that
    // decided may be higher. Waited for as such: the first scale-out can be the panic
    // window's, on concurrency, before the first tokens are counted.
    wait_until(
        Duration::from_secs(90),
        "a decision for 2 or more replicas on tokens/s",
        &dev,
        || scaled_on_tokens(&smollm2_lines(&dev)),
    )
    .await;
    // Prompt tokens come from the usage the streams asked for, and reach the live view.
    wait_until(
        Duration::from_secs(60),
        "prompt tokens in the view",
        &dev,
        || {
            dev.lines.lock().unwrap().iter().any(|l| {
                l.starts_with("default/smollm2 ")
                    && number_after(l, "prompt tok/s ").is_some_and(|t| t > 0.0)
            })
        },
    )
    .await;
    // The decision can come from the Python client's tokens before any of these streams
    // ends; every stream still has to finish whole.
    wait_until(Duration::from_secs(120), "a stream finished", &dev, || {
        streamed.load(Ordering::Relaxed) > 0
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }

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
