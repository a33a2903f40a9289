//! The throttler with explicit pods and paused time: breakers, the line, its bounds, the
//! timeout, pokes at zero, and health.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::*;
use crate::endpoints::PodEndpoint;
use crate::error::ActivatorError;
use crate::routes::RevisionSettings;

fn pod(n: u16) -> PodEndpoint {
    PodEndpoint::new(
        format!("pod-{n}"),
        SocketAddr::from(([127, 0, 0, 1], 9000 + n)),
        None,
    )
}

fn settings(cc: usize, bound: usize) -> RevisionSettings {
    RevisionSettings {
        container_concurrency: cc,
        timeout: Duration::from_secs(10),
        queue_bound: Some(bound),
        ..RevisionSettings::new("r")
    }
}

fn throttler() -> (Throttler, mpsc::Receiver<String>) {
    let (tx, rx) = mpsc::channel(16);
    (Throttler::new(100, 1000, tx), rx)
}

/// Adds `pods` to the revision and marks them healthy.
fn with_pods(throttler: &Throttler, pods: &[PodEndpoint]) -> Arc<RevisionThrottle> {
    let revision = throttler.revision("r");
    for handle in revision.set_pods(pods) {
        revision.set_healthy(handle.id, true);
    }
    revision
}

fn later(secs: u64) -> Instant {
    Instant::now() + Duration::from_secs(secs)
}

#[tokio::test(start_paused = true)]
async fn breakers_hold_cc_per_pod_and_the_line_is_served_in_order() {
    let (throttler, _pokes) = throttler();
    let revision = with_pods(&throttler, &[pod(1), pod(2)]);
    let s = settings(1, 10);
    // CC 1 (first available): one request per pod, the third waits.
    let a = revision.acquire(&s, later(10)).await.unwrap();
    let b = revision.acquire(&s, later(10)).await.unwrap();
    assert_ne!(a.endpoint.name, b.endpoint.name);
    let (r1, r2) = (revision.clone(), revision.clone());
    let (s1, s2) = (s.clone(), s.clone());
    let first = tokio::spawn(async move { r1.acquire(&s1, later(10)).await });
    tokio::task::yield_now().await;
    let second = tokio::spawn(async move { r2.acquire(&s2, later(10)).await });
    tokio::task::yield_now().await;
    assert_eq!(revision.queued(), 2);
    // The freed slot goes to the first in line, on the pod that freed it.
    let freed = a.endpoint.name.clone();
    drop(a);
    let first = first.await.unwrap().unwrap();
    assert_eq!(first.endpoint.name, freed);
    assert_eq!(revision.queued(), 1);
    drop(b);
    assert!(second.await.unwrap().is_ok());
    assert_eq!(revision.queued(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_full_line_is_refused_and_a_long_wait_times_out() {
    let (throttler, _pokes) = throttler();
    let revision = throttler.revision("r");
    let s = settings(0, 2);
    let waiting: Vec<_> = (0..2)
        .map(|_| {
            let (r, s) = (revision.clone(), s.clone());
            tokio::spawn(async move { r.acquire(&s, later(10)).await })
        })
        .collect();
    tokio::task::yield_now().await;
    assert_eq!(revision.queued(), 2);
    let refused = revision.acquire(&s, later(10)).await.unwrap_err();
    assert!(
        matches!(refused, ActivatorError::Overloaded { queued: 2, .. }),
        "{refused}"
    );
    assert_eq!(refused.status(), http::StatusCode::SERVICE_UNAVAILABLE);
    // Nobody comes: both time out at the deadline (time is paused and auto-advances).
    let started = Instant::now();
    for waiter in waiting {
        let error = waiter.await.unwrap().unwrap_err();
        assert_eq!(error.status(), http::StatusCode::GATEWAY_TIMEOUT);
    }
    assert_eq!(started.elapsed(), Duration::from_secs(10));
    assert_eq!((revision.queued(), throttler.total_queued()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn the_total_bound_covers_all_revisions() {
    let (tx, _rx) = mpsc::channel(16);
    let throttler = Throttler::new(100, 1, tx);
    let (a, b) = (throttler.revision("a"), throttler.revision("b"));
    let s = settings(0, 100);
    let held = tokio::spawn(async move { a.acquire(&s, later(10)).await });
    tokio::task::yield_now().await;
    let error = b.acquire(&settings(0, 100), later(10)).await.unwrap_err();
    assert_eq!(error.status(), http::StatusCode::SERVICE_UNAVAILABLE);
    held.abort();
}

#[tokio::test(start_paused = true)]
async fn at_zero_the_autoscaler_is_poked_once_and_a_healthy_pod_serves_the_line() {
    let (throttler, mut pokes) = throttler();
    let revision = throttler.revision("r");
    let s = settings(0, 100);
    let waiters: Vec<_> = (0..5)
        .map(|_| {
            let (r, s) = (revision.clone(), s.clone());
            tokio::spawn(async move {
                r.acquire(&s, later(10))
                    .await
                    .map(|l| l.endpoint.name.clone())
            })
        })
        .collect();
    tokio::task::yield_now().await;
    assert_eq!(pokes.try_recv().unwrap(), "r");
    assert!(
        pokes.try_recv().is_err(),
        "one poke per interval, not one per request"
    );
    // A listed pod is not used until it is healthy.
    let handle = revision.set_pods(&[pod(1)]).remove(0);
    tokio::task::yield_now().await;
    assert_eq!(revision.queued(), 5);
    revision.set_healthy(handle.id, true);
    for waiter in waiters {
        assert_eq!(waiter.await.unwrap().unwrap(), "pod-1");
    }
}

#[tokio::test(start_paused = true)]
async fn an_unhealthy_pod_takes_no_new_requests_until_it_recovers() {
    let (throttler, _pokes) = throttler();
    let revision = with_pods(&throttler, &[pod(1), pod(2)]);
    let s = settings(0, 100);
    let lease = revision.acquire(&s, later(10)).await.unwrap();
    let bad = lease.endpoint.name.clone();
    lease.mark_unhealthy();
    drop(lease);
    for _ in 0..50 {
        let lease = revision.acquire(&s, later(10)).await.unwrap();
        assert_ne!(lease.endpoint.name, bad);
    }
    assert_eq!(revision.healthy_pods(), 1);
    // Removing the last healthy pod sends new requests to the line.
    let good = if bad == "pod-1" { pod(2) } else { pod(1) };
    let bad_pod = if bad == "pod-1" { pod(1) } else { pod(2) };
    revision.set_pods(&[bad_pod]);
    assert_eq!(revision.healthy_pods(), 0);
    let error = revision
        .acquire(&s, Instant::now() + Duration::from_millis(5))
        .await
        .unwrap_err();
    assert_eq!(error.status(), http::StatusCode::GATEWAY_TIMEOUT);
    drop(good);
}

#[tokio::test(start_paused = true)]
async fn a_waiter_that_gave_up_does_not_swallow_a_slot() {
    let (throttler, _pokes) = throttler();
    let revision = with_pods(&throttler, &[pod(1)]);
    let s = settings(1, 10);
    let busy = revision.acquire(&s, later(10)).await.unwrap();
    let (r, s1) = (revision.clone(), s.clone());
    let quitter = tokio::spawn(async move { r.acquire(&s1, later(10)).await });
    tokio::task::yield_now().await;
    let (r, s2) = (revision.clone(), s.clone());
    let patient = tokio::spawn(async move { r.acquire(&s2, later(10)).await });
    tokio::task::yield_now().await;
    quitter.abort();
    let _ = quitter.await;
    drop(busy);
    assert!(patient.await.unwrap().is_ok());
}
