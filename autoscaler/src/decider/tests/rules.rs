//! Activation scale, initial scale, bounds, activator pokes and excess burst capacity.

use super::*;

#[test]
fn activation_scale_applies_to_any_traffic() {
    let mut spec = base_spec();
    spec.activation_scale = 3;

    // A poke before any metric shows the request.
    let mut poked = Revision::resumed(spec.clone(), 0);
    let decision = poked.decide(0, 0, 1);
    assert_eq!(decision.desired, 3, "{}", decision.reason);

    // The activator's own report of one request in flight.
    let mut reported = Revision::resumed(spec.clone(), 0);
    reported.feed(0..1, ScaleMetric::Concurrency, 1.0);
    let decision = reported.decide(0, 0, 0);
    assert_eq!(decision.stable_desired, 3);
    assert_eq!(decision.desired, 3);

    // Load that needs more than activation scale is not held back by it.
    let mut loaded = Revision::resumed(spec, 0);
    loaded.feed(0..1, ScaleMetric::Concurrency, 55.0);
    assert_eq!(loaded.decide(0, 0, 0).desired, 6);
}

#[test]
fn poke_at_zero_scales_to_one_by_default() {
    let mut revision = Revision::resumed(base_spec(), 0);
    let idle = revision.decide(0, 0, 0);
    assert_eq!(idle.desired, 0, "{}", idle.reason);
    let poked = revision.decide(1, 0, 2);
    assert_eq!(poked.desired, 1);
    assert!(
        poked.reason.contains("activator holds 2"),
        "{}",
        poked.reason
    );
}

#[test]
fn initial_scale_holds_until_reached_once() {
    let mut spec = base_spec();
    spec.initial_scale = 3;
    let mut revision = Revision::new(spec);
    // No metrics at all yet: the new revision still gets its initial pods.
    let first = revision.decide(0, 0, 0);
    assert_eq!(first.desired, 3, "{}", first.reason);
    revision.feed(1..10, ScaleMetric::Concurrency, 0.0);
    assert_eq!(revision.decide(1, 1, 0).desired, 3);
    // Reached at 2 s; from then on the load decides (3 ready halve to 1).
    assert_eq!(revision.decide(2, 3, 0).desired, 3);
    assert_eq!(revision.decide(3, 3, 0).desired, 1);

    let mut spec = base_spec();
    spec.initial_scale = 0;
    let mut at_zero = Revision::new(spec);
    assert_eq!(at_zero.decide(0, 0, 0).desired, 0);
}

#[test]
fn min_and_max_scale_bound_the_result() {
    let mut spec = base_spec();
    spec.min_scale = 2;
    spec.max_scale = 4;
    let mut revision = Revision::new(spec);
    revision.feed(0..60, ScaleMetric::Concurrency, 0.0);
    let low = revision.decide(59, 2, 0);
    assert_eq!(low.desired, 2, "{}", low.reason);
    revision.feed(60..120, ScaleMetric::Concurrency, 1000.0);
    let high = revision.decide(119, 4, 0);
    assert_eq!(high.desired, 4, "{}", high.reason);

    let mut spec = base_spec();
    spec.enable_scale_to_zero = false;
    let mut never_zero = Revision::new(spec);
    never_zero.feed(0..600, ScaleMetric::Concurrency, 0.0);
    assert_eq!(never_zero.decide(599, 1, 0).desired, 1);
}

#[test]
fn excess_burst_capacity_by_target_burst_capacity() {
    struct Case {
        name: &'static str,
        tbc: f64,
        load: Option<f64>,
        want: i64,
    }
    let cases = [
        // 3 pods × 100 − 211 − 50 in flight.
        Case {
            name: "headroom left",
            tbc: 211.0,
            load: Some(50.0),
            want: 39,
        },
        Case {
            name: "headroom short",
            tbc: 211.0,
            load: Some(100.0),
            want: -11,
        },
        Case {
            name: "no data keeps the activator in",
            tbc: 211.0,
            load: None,
            want: -1,
        },
        Case {
            name: "0: activator only at zero",
            tbc: 0.0,
            load: Some(100.0),
            want: 0,
        },
        Case {
            name: "-1: activator always",
            tbc: -1.0,
            load: Some(0.0),
            want: -1,
        },
    ];
    for case in cases {
        let mut spec = base_spec();
        spec.target_burst_capacity = case.tbc;
        spec.burst_metric = MetricTarget {
            metric: ScaleMetric::Concurrency,
            target: 70.0,
            total: 100.0,
        };
        let mut revision = Revision::new(spec);
        if let Some(load) = case.load {
            revision.feed(0..60, ScaleMetric::Concurrency, load);
        }
        let decision = revision.decide(59, 3, 0);
        assert_eq!(decision.excess_burst_capacity, case.want, "{}", case.name);
        assert_eq!(decision.activator_in_path(), case.want < 0, "{}", case.name);
    }
}
