//! The queue-proxy as a pod runs it: the real `serval-queue-proxy` sidecar binary in front of
//! a real backend. (`serval queue-proxy`, the same code in the one binary, is what the
//! activator and `serval dev` tests run.)

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serval_tests::http_client::{get, http1, http2, send};
use serval_tests::{backend, free_port, queue_proxy_bin, ServalProcess};

struct Pod {
    proxy: ServalProcess,
    url: String,
    admin: String,
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Starts a queue-proxy in front of `upstream` with extra flags; waits until it is ready.
async fn start_proxy(upstream: u16, extra: &[&str]) -> Pod {
    let (port, admin_port) = (free_port(), free_port());
    let mut args = vec![
        format!("--listen=127.0.0.1:{port}"),
        format!("--admin-listen=127.0.0.1:{admin_port}"),
        format!("--upstream=127.0.0.1:{upstream}"),
        "--gpu=false".to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let proxy = ServalProcess::start_program(queue_proxy_bin(), args);
    let pod = Pod {
        proxy,
        url: format!("http://127.0.0.1:{port}"),
        admin: format!("http://127.0.0.1:{admin_port}"),
    };
    wait_for(Duration::from_secs(20), || async {
        get(&http1(), &format!("{}/healthz", pod.admin))
            .await
            .is_ok_and(|a| a.status == 200)
    })
    .await;
    pod
}

async fn wait_for<F, Fut>(limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("condition not met within {limit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_waits_for_the_runtime() {
    let upstream = free_port();
    let (port, admin_port) = (free_port(), free_port());
    let _proxy = ServalProcess::start_program(
        queue_proxy_bin(),
        [
            format!("--listen=127.0.0.1:{port}"),
            format!("--admin-listen=127.0.0.1:{admin_port}"),
            format!("--upstream=127.0.0.1:{upstream}"),
            "--probe-path=/metrics".to_string(),
        ],
    );
    let health = format!("http://127.0.0.1:{admin_port}/healthz");
    wait_for(Duration::from_secs(20), || async {
        get(&http1(), &health).await.is_ok()
    })
    .await;
    let before = get(&http1(), &health).await.unwrap();
    assert_eq!(
        before.status, 503,
        "not ready before the runtime answers: {}",
        before.body
    );
    // A request now reaches no runtime: a clean JSON error, not a hang.
    let early = get(&http1(), &format!("http://127.0.0.1:{port}/echo"))
        .await
        .unwrap();
    assert_eq!(early.status, 502);
    assert!(
        early.json()["error"]
            .as_str()
            .unwrap()
            .contains("unavailable"),
        "{}",
        early.body
    );

    backend::start(addr(upstream)).await;
    wait_for(Duration::from_secs(5), || async {
        get(&http1(), &health).await.is_ok_and(|a| a.status == 200)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_concurrency_is_never_exceeded_and_overflow_gets_503() {
    let upstream = free_port();
    let state = backend::start(addr(upstream)).await;
    let pod = start_proxy(upstream, &["--container-concurrency=4"]).await;
    let client = http1();
    let calls: Vec<_> = (0..200)
        .map(|_| {
            let (client, url) = (client.clone(), format!("{}/slow?ms=100", pod.url));
            tokio::spawn(async move { get(&client, &url).await })
        })
        .collect();
    let (mut ok, mut refused) = (0, 0);
    for call in calls {
        let answer = call.await.unwrap().expect("every caller gets an answer");
        match answer.status {
            200 => ok += 1,
            503 => {
                refused += 1;
                assert!(answer.json()["error"]
                    .as_str()
                    .unwrap()
                    .starts_with("overloaded"));
                assert_eq!(answer.headers["retry-after"], "1");
            }
            other => panic!("unexpected status {other}: {}", answer.body),
        }
    }
    assert_eq!(ok + refused, 200);
    assert!(state.peak() <= 4, "runtime saw {} at once", state.peak());
    assert!(
        refused > 0,
        "200 callers against 4 slots + 40 queued must overflow"
    );
    assert!(ok >= 44, "the 4 running and 40 queued are served: {ok}");
    assert_eq!(state.served(), ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_output_tokens_of_streamed_and_plain_completions() {
    let upstream = free_port();
    backend::start(addr(upstream)).await;
    let pod = start_proxy(upstream, &["--stats-window=200ms"]).await;
    let client = http1();
    let plain = send(
        &client,
        "POST",
        &format!("{}/v1/completions", pod.url),
        r#"{"prompt":"hi"}"#,
    )
    .await
    .unwrap();
    assert_eq!(plain.json()["usage"]["completion_tokens"], 5);
    let streamed = send(
        &client,
        "POST",
        &format!("{}/v1/chat/completions", pod.url),
        r#"{"stream":true}"#,
    )
    .await
    .unwrap();
    assert_eq!(
        streamed.body.matches("\"content\"").count(),
        7,
        "SSE passes through whole"
    );
    // 5 from usage + 7 streamed chunks, reported by the cumulative counter and by /stats.
    wait_for(Duration::from_secs(5), || async {
        let metrics = get(&client, &format!("{}/metrics", pod.admin))
            .await
            .unwrap()
            .body;
        metrics.contains("serval_queue_proxy_output_tokens_total 12")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_report_concurrency_requests_and_runtime_queue_depth() {
    let upstream = free_port();
    backend::start(addr(upstream)).await;
    let pod = start_proxy(
        upstream,
        &[
            "--queue-depth-metric=test_queue_depth",
            "--kv-cache-metric=test_kv_cache_usage",
        ],
    )
    .await;
    let client = http1();
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let (client, url) = (client.clone(), format!("{}/slow?ms=1500", pod.url));
            tokio::spawn(async move { get(&client, &url).await })
        })
        .collect();
    // Somewhere during the 1.5 s of four held requests, one whole 1 s window sees about 4.
    wait_for(Duration::from_secs(5), || async {
        let stat = get(&client, &format!("{}/stats", pod.admin))
            .await
            .unwrap()
            .json();
        stat["averageConcurrency"].as_f64().unwrap_or(0.0) > 3.0
    })
    .await;
    let stat = get(&client, &format!("{}/stats", pod.admin))
        .await
        .unwrap()
        .json();
    assert_eq!(
        stat["runtimeQueueDepth"], 3.0,
        "2 + 1 summed over label sets: {stat}"
    );
    assert_eq!(stat["runtimeKvCacheUsage"], 0.25, "{stat}");
    assert!(stat.get("gpu").is_none(), "no GPU here: {stat}");
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap().status, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_runtime_gets_504() {
    let upstream = free_port();
    backend::start(addr(upstream)).await;
    let pod = start_proxy(upstream, &["--first-byte-timeout=300ms"]).await;
    let client = http1();
    let answer = get(&client, &format!("{}/slow?ms=2000", pod.url))
        .await
        .unwrap();
    assert_eq!(answer.status, 504);
    assert!(
        answer.json()["error"]
            .as_str()
            .unwrap()
            .contains("timed out"),
        "{}",
        answer.body
    );
    let fast = get(&client, &format!("{}/slow?ms=10", pod.url))
        .await
        .unwrap();
    assert_eq!(fast.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_cleartext_passes_through() {
    let upstream = free_port();
    backend::start(addr(upstream)).await;
    let pod = start_proxy(upstream, &[]).await;
    let answer = send(&http2(), "POST", &format!("{}/echo", pod.url), "over h2c")
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, "over h2c");
    assert_eq!(
        answer.headers["x-backend-version"], "HTTP/2.0",
        "HTTP/2 end to end"
    );
    let answer = send(&http1(), "POST", &format!("{}/echo", pod.url), "over h1")
        .await
        .unwrap();
    assert_eq!(answer.headers["x-backend-version"], "HTTP/1.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_load_loses_no_request() {
    let upstream = free_port();
    let state = backend::start(addr(upstream)).await;
    let mut pod = start_proxy(upstream, &["--drain-period=1s"]).await;
    let client = http1();
    // Requests in flight when SIGTERM arrives, and more arriving during the drain period.
    let mut calls = Vec::new();
    for _ in 0..20 {
        let (client, url) = (client.clone(), format!("{}/slow?ms=400", pod.url));
        calls.push(tokio::spawn(async move { get(&client, &url).await }));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while state.in_flight() < 20 {
        assert!(
            Instant::now() < deadline,
            "the 20 slow requests never reached the backend"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    pod.proxy.terminate();
    // Readiness fails once the proxy has taken the signal.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let health = get(&client, &format!("{}/healthz", pod.admin)).await;
        if health.is_ok_and(|h| h.status == 503) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "readiness never failed while draining"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for _ in 0..20 {
        let (client, url) = (client.clone(), format!("{}/slow?ms=200", pod.url));
        calls.push(tokio::spawn(async move { get(&client, &url).await }));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for call in calls {
        let answer = call
            .await
            .unwrap()
            .expect("an accepted request is answered");
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    assert_eq!(state.served(), 40);
    let code = tokio::task::spawn_blocking(move || pod.proxy.wait_exit(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "exits cleanly after draining");
}
