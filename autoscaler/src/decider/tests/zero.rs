//! Scale to zero: when, and when not.

use super::*;

/// Five seconds of light traffic on one pod, then scraped zeros: the stable window is all
/// zeros from 69 s on.
fn idle_after_light_traffic(spec: ScalingSpec) -> Revision {
    let mut revision = Revision::new(spec);
    revision.feed(0..10, ScaleMetric::Concurrency, 5.0);
    revision.feed(10..400, ScaleMetric::Concurrency, 0.0);
    revision
}

/// Decides every second in `seconds` with one ready pod and the given queue, returning the
/// first second that decided zero.
fn first_zero(revision: &mut Revision, seconds: std::ops::Range<u64>, queued: u32) -> Option<u64> {
    seconds
        .into_iter()
        .find(|&s| revision.decide(s, 1, queued).desired == 0)
}

#[test]
fn zero_only_after_a_stable_window_of_no_traffic_and_the_grace_period() {
    let mut revision = idle_after_light_traffic(base_spec());
    // Quiet from 10 s; the stable window is all zeros at 69 s; 30 s of grace after that.
    assert_eq!(first_zero(&mut revision, 0..99, 0), None);
    let at_99 = revision.decide(99, 1, 0);
    assert_eq!(at_99.desired, 0, "{}", at_99.reason);
    assert!(at_99.reason.contains("scaling to zero"), "{}", at_99.reason);
    // Once at zero it stays there while nothing arrives.
    assert_eq!(revision.decide(100, 0, 0).desired, 0);
}

#[test]
fn pod_retention_period_keeps_the_last_pod_longer() {
    let mut spec = base_spec();
    spec.scale_to_zero_pod_retention_period = Duration::from_secs(90);
    let mut revision = idle_after_light_traffic(spec);
    // Idle from 69 s; the longer of grace (30 s) and retention (90 s) applies.
    assert_eq!(first_zero(&mut revision, 0..400, 0), Some(159));
}

#[test]
fn not_while_the_activator_holds_requests() {
    let mut revision = idle_after_light_traffic(base_spec());
    assert_eq!(first_zero(&mut revision, 0..99, 0), None);
    // A request is buffered exactly when zero would have come.
    assert_eq!(revision.decide(99, 1, 2).desired, 1);
    // It restarts the grace period.
    assert_eq!(first_zero(&mut revision, 100..400, 0), Some(130));
}

#[test]
fn a_new_revision_stays_up_for_a_stable_window_first() {
    let mut revision = Revision::new(base_spec());
    revision.feed(0..400, ScaleMetric::Concurrency, 0.0);
    // No traffic ever: active from 0 s, so idle from 60 s, zero at 90 s.
    assert_eq!(revision.decide(0, 1, 0).desired, 1);
    let decision = revision.decide(1, 1, 0);
    assert_eq!(decision.desired, 1);
    assert!(
        decision.reason.contains("stable window"),
        "{}",
        decision.reason
    );
    assert_eq!(first_zero(&mut revision, 2..400, 0), Some(90));
}

#[test]
fn never_on_missing_data() {
    // Nothing ever scraped: keep what there is.
    let mut unscraped = Revision::new(base_spec());
    assert_eq!(first_zero(&mut unscraped, 0..400, 0), None);

    // Scrapes stop at 10 s (zeros before that); once the data ages out nothing changes.
    let mut stopped = Revision::new(base_spec());
    stopped.feed(0..10, ScaleMetric::Concurrency, 0.0);
    assert_eq!(first_zero(&mut stopped, 0..400, 0), None);
    let decision = stopped.decide(400, 1, 0);
    assert_eq!(decision.winner, None);
    assert!(
        decision.reason.contains("no metrics"),
        "{}",
        decision.reason
    );
}

#[test]
fn an_autoscaler_restart_keeps_the_current_scale() {
    let mut revision = Revision::resumed(base_spec(), 4);
    let blind = revision.decide(0, 4, 0);
    assert_eq!(blind.desired, 4, "{}", blind.reason);
    // Fresh data says one pod is enough, but the restart began in panic mode.
    revision.feed(1..200, ScaleMetric::Concurrency, 5.0);
    let early = revision.decide(30, 4, 0);
    assert!(early.in_panic);
    assert_eq!(early.desired, 4);
    // A stable window after the restart, it scales down (halving at most).
    let later = revision.decide(61, 4, 0);
    assert!(!later.in_panic, "{}", later.reason);
    assert_eq!(later.desired, 2);
}
