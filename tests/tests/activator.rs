//! The activator (in-process, as `serval dev` embeds it) in front of real `serval
//! queue-proxy` processes: routing, canary split, tag routing, forwarding headers, rate
//! limits, and the bounds on what it holds.

mod activator_harness;

use std::time::{Duration, Instant};

use activator_harness::{Gateway, DOMAIN};
use futures_util::StreamExt;
use serval_activator::{Component, RateLimit, RevisionSettings, ServiceRoute};
use serval_tests::http_client::{http1, Answer};
use serval_tests::revision_pod::send_with;

fn host(name: &str) -> String {
    format!("{name}.default.{DOMAIN}")
}

async fn call(gateway: &Gateway, host: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut all = vec![("host", host)];
    all.extend_from_slice(headers);
    send_with(
        &gateway.client,
        "POST",
        &format!("{}{path}", gateway.url),
        &all,
        "x",
    )
    .await
    .expect("the activator answers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_hosts_get_404_json() {
    let gateway = Gateway::start(|_| {}).await;
    for (host, path) in [
        ("nope.default.example.com", "/v1/models/nope:predict"),
        ("localhost", "/"),
        ("127.0.0.1", "/serving/default/nope/v1/models/nope:predict"),
    ] {
        let answer = call(&gateway, host, path, &[]).await;
        assert_eq!(answer.status, 404, "{host}{path}: {}", answer.body);
        assert!(answer.json()["error"]
            .as_str()
            .unwrap()
            .contains("no InferenceService"));
        assert!(answer.headers.contains_key("x-request-id"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_split_matches_the_percentage_and_tags_pick_a_revision() {
    let gateway = Gateway::start(|_| {}).await;
    let (v1, v2) = (gateway.pod("v1", &[]).await, gateway.pod("v2", &[]).await);
    let mut route = ServiceRoute::new("default", "iris").with_canary(
        Component::Predictor,
        RevisionSettings::new("default/iris-predictor-2"),
        Some(RevisionSettings::new("default/iris-predictor-1")),
        Some(20),
    );
    route.tag_routing = true;
    gateway.routes.upsert(route).unwrap();
    gateway
        .add_ready_pods("default/iris-predictor-1", &[&v1])
        .await;
    gateway
        .add_ready_pods("default/iris-predictor-2", &[&v2])
        .await;

    let iris = host("iris");
    let answers: Vec<Answer> = futures_util::stream::iter(0..5000)
        .map(|_| call(&gateway, &iris, "/v1/models/iris:predict", &[]))
        .buffer_unordered(32)
        .collect()
        .await;
    assert!(
        answers.iter().all(|a| a.status == 200),
        "every request is served"
    );
    let canary = answers.iter().filter(|a| a.body.starts_with("v2:")).count();
    let percent = canary as f64 * 100.0 / 5000.0;
    assert!((17.0..=23.0).contains(&percent), "canary took {percent}%");
    assert_eq!(v1.backend.served() + v2.backend.served(), 5000);
    assert!(gateway.ledger.duplicates().is_empty());

    // Tag hosts and the tag header pick a revision whatever the split says.
    for _ in 0..20 {
        let prev = call(&gateway, &host("prev-iris"), "/", &[]).await;
        assert_eq!(prev.body, "v1:x");
        let latest = call(&gateway, &iris, "/", &[("x-serval-revision-tag", "latest")]).await;
        assert_eq!(latest.body, "v2:x");
    }
    let unknown = call(&gateway, &iris, "/", &[("x-serval-revision-tag", "nope")]).await;
    assert_eq!(unknown.status, 404);
    // The path prefix selects the service too, and is stripped before forwarding.
    let by_path = call(
        &gateway,
        "10.1.2.3",
        "/serving/default/prev-iris/v1/models/iris:predict",
        &[],
    )
    .await;
    assert_eq!(by_path.body, "v1:x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_requests_carry_ids_forwarding_headers_and_the_trace() {
    let gateway = Gateway::start(|_| {}).await;
    let pod = gateway.pod("only", &[]).await;
    let route = ServiceRoute::new("default", "iris").with_canary(
        Component::Predictor,
        RevisionSettings::new("default/iris-predictor-1"),
        None,
        None,
    );
    gateway.routes.upsert(route).unwrap();
    gateway
        .add_ready_pods("default/iris-predictor-1", &[&pod])
        .await;
    let trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let answer = call(
        &gateway,
        &host("iris"),
        "/v1/models/iris:predict",
        &[("traceparent", trace), ("x-request-id", "client-id-1")],
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.headers["x-request-id"], "client-id-1");
    let seen = pod.backend.last_headers();
    assert_eq!(seen["traceparent"], trace);
    assert_eq!(seen["x-request-id"], "client-id-1");
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(seen["x-forwarded-host"], host("iris").as_str());
    assert!(seen.contains_key(serval_api::headers::VIA_ACTIVATOR));
    // Without a client id the activator makes one.
    let fresh = call(&gateway, &host("iris"), "/", &[]).await;
    assert_eq!(fresh.headers["x-request-id"].len(), 32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_refuses_excess_with_429_and_retry_after() {
    let gateway = Gateway::start(|_| {}).await;
    let pod = gateway.pod("only", &[]).await;
    let mut route = ServiceRoute::new("default", "iris").with_canary(
        Component::Predictor,
        RevisionSettings::new("default/iris-predictor-1"),
        None,
        None,
    );
    route.rate_limit = Some(RateLimit::new(5.0, Some(5)));
    gateway.routes.upsert(route).unwrap();
    gateway
        .add_ready_pods("default/iris-predictor-1", &[&pod])
        .await;

    let started = Instant::now();
    let mut answers = Vec::new();
    for _ in 0..30 {
        answers.push(call(&gateway, &host("iris"), "/", &[]).await);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let ok = answers.iter().filter(|a| a.status == 200).count();
    let limited: Vec<_> = answers.iter().filter(|a| a.status == 429).collect();
    assert_eq!(ok + limited.len(), 30);
    // The burst of 5, plus 5 per second that passed.
    assert!(
        ok >= 5 && ok as f64 <= 5.0 + 5.0 * elapsed + 1.0,
        "{ok} in {elapsed}s"
    );
    assert!(!limited.is_empty());
    for answer in limited {
        assert_eq!(answer.headers["retry-after"], "1");
        assert!(answer.json()["error"]
            .as_str()
            .unwrap()
            .starts_with("rate limited"));
    }
    assert_eq!(pod.backend.served(), ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_line_gets_503_and_a_long_wait_gets_504() {
    let gateway = Gateway::start(|_| {}).await;
    let revision = RevisionSettings {
        timeout: Duration::from_secs(1),
        queue_bound: Some(5),
        ..RevisionSettings::new("default/iris-predictor-1")
    };
    let route = ServiceRoute::new("default", "iris").with_canary(
        Component::Predictor,
        revision,
        None,
        None,
    );
    gateway.routes.upsert(route).unwrap();

    // No pod comes: five wait, the rest are refused at once.
    let iris = host("iris");
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let (url, iris) = (gateway.url.clone(), iris.clone());
            tokio::spawn(async move {
                let started = Instant::now();
                let answer = send_with(
                    &http1(),
                    "POST",
                    &format!("{url}/"),
                    &[("host", &iris)],
                    "x",
                )
                .await
                .expect("an answer");
                (answer, started.elapsed())
            })
        })
        .collect();
    let mut by_status = std::collections::BTreeMap::<u16, Vec<(Answer, Duration)>>::new();
    for call in calls {
        let (answer, took) = call.await.unwrap();
        by_status
            .entry(answer.status)
            .or_default()
            .push((answer, took));
    }
    let refused = &by_status[&503];
    let timed_out = &by_status[&504];
    assert_eq!((refused.len(), timed_out.len()), (3, 5), "{by_status:?}");
    for (answer, took) in refused {
        assert_eq!(answer.headers["retry-after"], "1");
        assert!(answer.json()["error"]
            .as_str()
            .unwrap()
            .starts_with("overloaded"));
        assert!(
            *took < Duration::from_millis(900),
            "refused at once, not after {took:?}"
        );
    }
    for (answer, took) in timed_out {
        assert!(answer.json()["error"]
            .as_str()
            .unwrap()
            .starts_with("timed out"));
        assert!(*took >= Duration::from_millis(950), "{took:?}");
    }
    assert_eq!(gateway.activator.total_queued(), 0);
    assert_eq!(gateway.autoscaler.pokes(), ["default/iris-predictor-1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_held_for_a_revision_that_loses_its_traffic_go_where_it_went() {
    let gateway = Gateway::start(|_| {}).await;
    // The first revision has no pod (it is going away, as at the end of a rollout).
    let old = RevisionSettings {
        timeout: Duration::from_secs(20),
        ..RevisionSettings::new("default/iris-predictor-1")
    };
    let route =
        ServiceRoute::new("default", "iris").with_canary(Component::Predictor, old, None, None);
    gateway.routes.upsert(route).unwrap();
    let iris = host("iris");
    let held: Vec<_> = (0..5)
        .map(|_| {
            let (url, iris) = (gateway.url.clone(), iris.clone());
            tokio::spawn(async move {
                send_with(
                    &http1(),
                    "POST",
                    &format!("{url}/"),
                    &[("host", &iris)],
                    "x",
                )
                .await
                .expect("an answer")
            })
        })
        .collect();
    activator_harness::wait_for(Duration::from_secs(10), || async {
        gateway.activator.queued("default/iris-predictor-1") == 5
    })
    .await;

    // The new revision is ready and takes all of the traffic.
    let v2 = gateway.pod("v2", &[]).await;
    gateway
        .add_ready_pods("default/iris-predictor-2", &[&v2])
        .await;
    let route = ServiceRoute::new("default", "iris").with_canary(
        Component::Predictor,
        RevisionSettings::new("default/iris-predictor-2"),
        None,
        None,
    );
    gateway.routes.upsert(route).unwrap();

    for request in held {
        let answer = request.await.unwrap();
        assert_eq!((answer.status, answer.body.as_str()), (200, "v2:x"));
    }
    assert_eq!(gateway.activator.queued("default/iris-predictor-1"), 0);
}
