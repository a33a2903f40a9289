//! The queue-proxy as a pod runs it: the real `serval-queue-proxy` sidecar binary in front of
//! a real backend. (`serval queue-proxy`, the same code in the one binary, is what the
//! activator and `serval dev` tests run.)

use std::net::SocketAddr;
use std::time::Duration;

use serval_tests::http_client::{get, http1, http2, over_unix_socket, send};
use serval_tests::{backend, eventually, lease_port, queue_proxy_bin, ServalProcess};

struct Pod {
    proxy: ServalProcess,
    address: SocketAddr,
    url: String,
    admin: String,
}

/// Starts a queue-proxy in front of `upstream` with extra flags; waits until it is ready.
async fn start_proxy(upstream: SocketAddr, extra: &[&str]) -> Pod {
    let (port, admin_port) = (lease_port(), lease_port());
    let mut args = vec![
        format!("--listen=127.0.0.1:{port}"),
        format!("--admin-listen=127.0.0.1:{admin_port}"),
        format!("--upstream={upstream}"),
        "--gpu=false".to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let pod = Pod {
        address: port.addr(),
        url: format!("http://127.0.0.1:{port}"),
        admin: format!("http://127.0.0.1:{admin_port}"),
        proxy: ServalProcess::start_program(queue_proxy_bin(), args)
            .holding(port)
            .holding(admin_port),
    };
    eventually(Duration::from_secs(20), "the queue-proxy ready", || async {
        get(&http1(), &format!("{}/healthz", pod.admin))
            .await
            .is_ok_and(|a| a.status == 200)
    })
    .await;
    pod
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_waits_for_the_runtime() {
    // The runtime comes up after the proxy: its port is named before anything listens.
    let upstream = lease_port();
    let (port, admin_port) = (lease_port(), lease_port());
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
    eventually(Duration::from_secs(20), "the admin server up", || async {
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

    backend::start_on(&upstream).await;
    eventually(
        Duration::from_secs(5),
        "ready once the runtime is",
        || async { get(&http1(), &health).await.is_ok_and(|a| a.status == 200) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_concurrency_is_never_exceeded_and_overflow_gets_503() {
    let (upstream, state) = backend::start().await;
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
    let (upstream, _) = backend::start().await;
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
    eventually(
        Duration::from_secs(5),
        "12 output tokens counted",
        || async {
            let metrics = get(&client, &format!("{}/metrics", pod.admin))
                .await
                .unwrap()
                .body;
            let counted = metrics.lines().find_map(|l| {
                l.strip_prefix("serval_queue_proxy_output_tokens_total ")?
                    .trim()
                    .parse::<u64>()
                    .ok()
            });
            counted == Some(12)
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_report_concurrency_requests_and_runtime_queue_depth() {
    let (upstream, _) = backend::start().await;
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
    eventually(Duration::from_secs(5), "a window of about 4", || async {
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
    let (upstream, _) = backend::start().await;
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
    let (upstream, _) = backend::start().await;
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
    let (upstream, state) = backend::start().await;
    let mut pod = start_proxy(upstream, &["--drain-period=1s"]).await;
    let client = http1();
    let slow = |ms: u64, calls: &mut Vec<_>| {
        for _ in 0..20 {
            let (client, url) = (client.clone(), format!("{}/slow?ms={ms}", pod.url));
            calls.push(tokio::spawn(async move { get(&client, &url).await }));
        }
    };
    // Requests in flight when SIGTERM arrives.
    let mut calls = Vec::new();
    slow(400, &mut calls);
    eventually(
        Duration::from_secs(10),
        "20 requests at the backend",
        || async { state.in_flight() == 20 },
    )
    .await;
    pod.proxy.terminate();
    eventually(
        Duration::from_secs(5),
        "readiness failing while draining",
        || async {
            get(&client, &format!("{}/healthz", pod.admin))
                .await
                .is_ok_and(|h| h.status == 503)
        },
    )
    .await;
    // Requests arriving during the drain period, outlasting it: the proxy must still take
    // them, and finish them after it stops accepting.
    slow(1500, &mut calls);
    eventually(
        Duration::from_secs(5),
        "the requests sent while draining reach the backend",
        || async { state.served() + state.in_flight() == 40 },
    )
    .await;
    eventually(
        Duration::from_secs(10),
        "the listener closed at the end of the drain period",
        || async { tokio::net::TcpStream::connect(pod.address).await.is_err() },
    )
    .await;
    let in_flight_at_close = state.in_flight();
    assert!(
        in_flight_at_close > 0,
        "no request was in flight when the proxy stopped accepting (served {})",
        state.served()
    );
    for call in calls {
        let answer = call
            .await
            .unwrap()
            .expect("an accepted request is answered");
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.body, "slow done");
    }
    assert_eq!(state.served(), 40);
    let code = tokio::task::spawn_blocking(move || pod.proxy.wait_exit(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(
        code,
        Some(0),
        "exits cleanly after finishing the {in_flight_at_close} requests in flight"
    );
}

/// Starts a queue-proxy that is expected to refuse to start; its exit and stderr.
async fn refused_start(args: &[String]) -> (std::process::ExitStatus, String) {
    let mut refused = std::process::Command::new(queue_proxy_bin())
        .args(args)
        .arg("--gpu=false")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = refused.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = refused.kill();
            panic!("the queue-proxy started with {args:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut refused.stderr.take().unwrap(), &mut stderr).unwrap();
    (status, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_on_a_unix_socket_too_and_removes_it_at_exit() {
    let dir = std::env::temp_dir().join(format!("serval-qp-socket-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("qp.sock");
    // What a queue-proxy that was killed leaves behind.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());

    let (upstream, state) = backend::start().await;
    let listen_unix = format!("--listen-unix={}", socket.display());
    let mut pod = start_proxy(upstream, &[&listen_unix, "--drain-period=0s"]).await;
    // A second proxy on the same socket is refused: the first one still answers there.
    let (port, admin_port) = (lease_port(), lease_port());
    let (status, stderr) = refused_start(&[
        format!("--listen=127.0.0.1:{port}"),
        format!("--admin-listen=127.0.0.1:{admin_port}"),
        format!("--upstream={upstream}"),
        listen_unix.clone(),
    ])
    .await;
    assert!(!status.success());
    assert!(stderr.contains("address in use"), "{stderr}");
    let response = over_unix_socket(
        &socket,
        "POST /echo HTTP/1.1\r\nhost: pod\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("hello"), "{response}");
    assert_eq!(state.served(), 1);
    // The TCP port still answers.
    let tcp = send(&http1(), "POST", &format!("{}/echo", pod.url), "again")
        .await
        .unwrap();
    assert_eq!(tcp.body, "again");

    pod.proxy.terminate();
    let code = tokio::task::spawn_blocking(move || pod.proxy.wait_exit(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(code, Some(0));
    assert!(!socket.exists(), "the socket is removed at exit");

    // A file that is not a socket is never replaced: the proxy refuses to start and says why.
    std::fs::write(&socket, "not a socket").unwrap();
    let (port, admin_port) = (lease_port(), lease_port());
    let (status, stderr) = refused_start(&[
        format!("--listen=127.0.0.1:{port}"),
        format!("--admin-listen=127.0.0.1:{admin_port}"),
        format!("--upstream={upstream}"),
        listen_unix,
    ])
    .await;
    assert!(!status.success());
    assert!(
        stderr.contains(&format!(
            "cannot listen on the Unix socket {}",
            socket.display()
        )),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&socket).unwrap(), "not a socket");
    std::fs::remove_dir_all(dir).unwrap();
}
