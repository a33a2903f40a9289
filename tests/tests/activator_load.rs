//! The activator under load in front of real `serval queue-proxy` processes: ten thousand
//! requests held at zero and all served once a pod appears; a pod that dies mid-load.

mod activator_harness;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use activator_harness::{wait_for, Gateway, DOMAIN};
use futures_util::StreamExt;
use serval_activator::{Component, RevisionSettings, ServiceRoute};
use serval_tests::http_client::{http2, Answer};
use serval_tests::revision_pod::send_with;

const REVISION: &str = "default/iris-predictor-1";

fn iris(revision: RevisionSettings) -> ServiceRoute {
    ServiceRoute::new("default", "iris").with_canary(Component::Predictor, revision, None, None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_requests_at_zero_are_all_served_once_a_pod_is_ready() {
    const N: usize = 10_000;
    let gateway = Gateway::start(|_| {}).await;
    let revision = RevisionSettings {
        timeout: Duration::from_secs(120),
        ..RevisionSettings::new(REVISION)
    };
    gateway.routes.upsert(iris(revision)).unwrap();

    // One HTTP/2 connection carries every request: no port or file-descriptor storm.
    let client = http2();
    let started = Instant::now();
    let calls: Vec<_> = (0..N)
        .map(|i| {
            let (client, url) = (
                client.clone(),
                format!(
                    "{}/serving/default/iris/v1/models/iris:predict",
                    gateway.url
                ),
            );
            tokio::spawn(async move {
                let body = format!("request-{i}");
                let answer = send_with(&client, "POST", &url, &[], &body).await;
                (i, answer)
            })
        })
        .collect();
    wait_for(Duration::from_secs(60), || async {
        gateway.activator.queued(REVISION) == N
    })
    .await;
    let held_after = started.elapsed();
    assert_eq!(
        gateway.autoscaler.pokes().first().map(String::as_str),
        Some(REVISION)
    );

    // The pod comes up a while later; the activator finds it by probing, not by being told.
    tokio::time::sleep(Duration::from_secs(1).saturating_sub(held_after)).await;
    let pod = gateway.pod("v1", &[]).await;
    gateway.set_pods(REVISION, &[&pod]);

    let mut wrong = Vec::new();
    for call in calls {
        let (i, answer) = call.await.unwrap();
        match answer {
            Ok(a) if a.status == 200 && a.body == format!("v1:request-{i}") => {}
            other => wrong.push((i, other)),
        }
    }
    eprintln!(
        "10k at zero: all held after {held_after:?}, all answered after {:?}",
        started.elapsed()
    );
    assert!(
        wrong.is_empty(),
        "{} wrong answers, e.g. {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(3)]
    );
    assert_eq!(
        pod.backend.served(),
        N,
        "each request reached the backend exactly once"
    );
    assert!(gateway.ledger.duplicates().is_empty());
    assert_eq!(gateway.activator.total_queued(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_that_dies_mid_load_fails_only_its_own_requests_and_traffic_moves_on() {
    const N: usize = 600;
    let gateway = Gateway::start(|_| {}).await;
    gateway
        .routes
        .upsert(iris(RevisionSettings::new(REVISION)))
        .unwrap();
    let mut doomed = gateway.pod("doomed", &[]).await;
    let survivor = gateway.pod("survivor", &[]).await;
    gateway
        .add_ready_pods(REVISION, &[&doomed, &survivor])
        .await;

    let killed = Arc::new(AtomicBool::new(false));
    let url = format!("{}/v1/models/iris:predict?ms=40", gateway.url);
    let host = format!("iris.default.{DOMAIN}");
    let load = futures_util::stream::iter(0..N)
        .map(|i| {
            let (client, url, host, killed) = (
                gateway.client.clone(),
                url.clone(),
                host.clone(),
                killed.clone(),
            );
            async move {
                let after_kill = killed.load(Ordering::SeqCst);
                let answer =
                    send_with(&client, "POST", &url, &[("host", &host)], &format!("r{i}")).await;
                (after_kill, answer)
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>();
    let kill = async {
        wait_for(Duration::from_secs(30), || async {
            doomed.backend.served() >= 100
        })
        .await;
        doomed.kill_proxy();
        killed.store(true, Ordering::SeqCst);
        Instant::now()
    };
    let (answers, killed_at) = tokio::join!(load, kill);

    let mut ok = 0;
    let mut failed = Vec::new();
    for (after_kill, answer) in &answers {
        let answer: &Answer = answer.as_ref().expect("the activator always answers");
        match answer.status {
            200 => ok += 1,
            502 => {
                assert!(
                    answer.json()["error"]
                        .as_str()
                        .unwrap()
                        .contains("unavailable"),
                    "{}",
                    answer.body
                );
                failed.push(*after_kill);
            }
            other => panic!("unexpected {other}: {}", answer.body),
        }
    }
    eprintln!(
        "pod death: {ok} served, {} failed ({} of them sent after the kill); doomed served {}, survivor {}",
        failed.len(),
        failed.iter().filter(|after| **after).count(),
        doomed.backend.served(),
        survivor.backend.served()
    );
    assert_eq!(ok + failed.len(), N);
    // Only requests already on their way to the dead pod may fail: at most the concurrency.
    assert!(failed.len() <= 32, "{} failed", failed.len());
    // Requests sent after the kill went to the survivor, or were retried there because they
    // never left (connection refused). Only one racing the kill on a pooled connection may
    // still fail.
    let after_kill = failed.iter().filter(|after| **after).count();
    assert!(
        after_kill <= 4,
        "{after_kill} requests sent after the kill failed"
    );
    assert!(survivor.backend.served() > 0);
    // Nothing ran twice: a failed request was never retried after it was sent.
    assert!(
        gateway.ledger.duplicates().is_empty(),
        "{:?}",
        gateway.ledger.duplicates()
    );
    assert!(gateway.ledger.served() <= N);
    assert_eq!(gateway.activator.healthy_pods(REVISION), 1);

    // Well after the kill every request is served by the survivor.
    let before = survivor.backend.served();
    for i in 0..50 {
        let answer = send_with(
            &gateway.client,
            "POST",
            &url,
            &[("host", &host)],
            &format!("late{i}"),
        )
        .await
        .unwrap();
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (200, format!("survivor:late{i}").as_str())
        );
    }
    assert_eq!(survivor.backend.served(), before + 50);
    assert!(killed_at.elapsed() < Duration::from_secs(60));
}
