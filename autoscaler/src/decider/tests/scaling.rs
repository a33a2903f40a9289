//! Stable mode, panic mode, rate limits, scale-down delay and the metrics themselves.

use super::*;

#[test]
fn steady_load_holds_steady() {
    let mut revision = Revision::new(base_spec());
    revision.feed(0..120, ScaleMetric::Concurrency, 50.0);
    for second in [0, 30, 59, 90, 119] {
        let decision = revision.decide(second, 5, 0);
        assert_eq!(decision.desired, 5, "at {second}s: {}", decision.reason);
        assert!(!decision.in_panic);
        assert_eq!(decision.winner, Some(ScaleMetric::Concurrency));
        assert_eq!(decision.stable_desired, 5);
    }
}

#[test]
fn burst_panics_never_scales_down_in_panic_and_exits_a_stable_window_later() {
    let mut revision = Revision::new(base_spec());
    revision.feed(0..60, ScaleMetric::Concurrency, 10.0);
    assert_eq!(revision.decide(59, 1, 0).desired, 1);

    // The burst: panic window average (5×10 + 100)/6 = 25 → 3 pods, 3× the one ready.
    revision.feed(60..65, ScaleMetric::Concurrency, 100.0);
    let entering = revision.decide(60, 1, 0);
    assert!(entering.in_panic, "{}", entering.reason);
    assert_eq!((entering.stable_desired, entering.panic_desired), (2, 3));
    assert_eq!(entering.desired, 3);

    // Still bursting: (10 + 5×100)/6 = 85 → 9 pods, 3× the 3 ready.
    let peak = revision.decide(64, 3, 0);
    assert!(peak.in_panic);
    assert_eq!(peak.desired, 9);

    // The load drops back; the threshold is no longer crossed but panic mode holds 9.
    revision.feed(65..200, ScaleMetric::Concurrency, 10.0);
    let calm = revision.decide(70, 9, 0);
    assert!(calm.in_panic);
    assert_eq!(calm.panic_desired, 4, "rate-limited to ready/2");
    assert_eq!(calm.desired, 9, "{}", calm.reason);

    // Panic last crossed at 64 s; it ends only after 64 + 60 s.
    let last_panic_tick = revision.decide(124, 9, 0);
    assert!(last_panic_tick.in_panic);
    assert_eq!(last_panic_tick.desired, 9);
    let after = revision.decide(125, 9, 0);
    assert!(!after.in_panic, "{}", after.reason);
    // One pod's worth of load, but one step down halves at most: 9/2 → 4.
    assert_eq!(after.desired, 4);
}

#[test]
fn scale_steps_are_rate_limited() {
    struct Case {
        name: &'static str,
        up_rate: f64,
        load: f64,
        ready: u32,
        want: u32,
    }
    let cases = [
        Case {
            name: "down: 10 ready halve to 5",
            up_rate: 1000.0,
            load: 0.0,
            ready: 10,
            want: 5,
        },
        Case {
            name: "down: 5 ready to 2",
            up_rate: 1000.0,
            load: 0.0,
            ready: 5,
            want: 2,
        },
        Case {
            name: "down: 3 ready to 1",
            up_rate: 1000.0,
            load: 5.0,
            ready: 3,
            want: 1,
        },
        Case {
            name: "up: 1000× ready allows 100",
            up_rate: 1000.0,
            load: 1000.0,
            ready: 1,
            want: 100,
        },
        Case {
            name: "up: rate 2 caps at 2×",
            up_rate: 2.0,
            load: 1000.0,
            ready: 3,
            want: 6,
        },
        Case {
            name: "up: ceil lets a slow rate still grow",
            up_rate: 1.1,
            load: 30.0,
            ready: 2,
            want: 3,
        },
    ];
    for case in cases {
        let mut spec = base_spec();
        spec.max_scale_up_rate = case.up_rate;
        // A threshold out of reach keeps these single steps in stable mode.
        spec.panic_threshold = 1000.0;
        let mut revision = Revision::new(spec);
        revision.feed(0..60, ScaleMetric::Concurrency, case.load);
        let decision = revision.decide(59, case.ready, 0);
        assert_eq!(
            decision.desired, case.want,
            "{}: {}",
            case.name, decision.reason
        );
    }
}

#[test]
fn scale_down_delay_keeps_the_highest_count_for_the_delay() {
    let mut spec = base_spec();
    spec.stable_window = Duration::from_secs(6);
    spec.panic_window = Duration::from_secs(1);
    let undelayed = spec.clone();
    spec.scale_down_delay = Duration::from_secs(10);
    let mut delayed = Revision::new(spec);
    let mut plain = Revision::new(undelayed);
    for revision in [&mut delayed, &mut plain] {
        revision.feed(0..10, ScaleMetric::Concurrency, 50.0);
        revision.feed(10..40, ScaleMetric::Concurrency, 10.0);
    }
    let mut wants = Vec::new();
    for second in 0..30 {
        let with_delay = delayed.decide(second, 5, 0).desired;
        let without = plain.decide(second, 5, 0).desired;
        wants.push((second, with_delay, without));
    }
    // Without the delay 5 ready pods go down to 2 (halving) once the window is calm.
    assert_eq!(wants[15], (15, 5, 2));
    // 5 was last wanted at 10 s: it stays in force through 19 s.
    assert_eq!(wants[19].1, 5);
    assert_eq!(wants[20].1, 4);
    assert_eq!(wants[25].1, 2);
}

#[test]
fn each_metric_divides_its_total_by_its_target() {
    struct Case {
        metric: ScaleMetric,
        per_pod: f64,
        total: f64,
        ready: u32,
        want: u32,
    }
    let cases = [
        Case {
            metric: ScaleMetric::Rps,
            per_pod: 140.0,
            total: 700.0,
            ready: 5,
            want: 5,
        },
        Case {
            metric: ScaleMetric::Tokens,
            per_pod: 700.0,
            total: 3500.0,
            ready: 4,
            want: 5,
        },
        // Four pods at 90% GPU against a 70% target: 360/70 → 6.
        Case {
            metric: ScaleMetric::Gpu,
            per_pod: 70.0,
            total: 360.0,
            ready: 4,
            want: 6,
        },
        Case {
            metric: ScaleMetric::Queue,
            per_pod: 4.0,
            total: 24.0,
            ready: 4,
            want: 6,
        },
    ];
    for case in cases {
        let mut spec = base_spec();
        spec.metrics = vec![target(case.metric, case.per_pod)];
        let mut revision = Revision::new(spec);
        revision.feed(0..60, case.metric, case.total);
        let decision = revision.decide(59, case.ready, 0);
        assert_eq!(
            decision.desired, case.want,
            "{}: {}",
            case.metric, decision.reason
        );
        assert_eq!(decision.winner, Some(case.metric));
    }
}

#[test]
fn several_metrics_take_the_largest_and_name_the_winner() {
    let mut spec = base_spec();
    spec.metrics = vec![
        target(ScaleMetric::Concurrency, 10.0),
        target(ScaleMetric::Tokens, 700.0),
        target(ScaleMetric::Gpu, 70.0),
    ];
    let mut revision = Revision::new(spec);
    revision.feed(0..60, ScaleMetric::Concurrency, 30.0);
    revision.feed(0..60, ScaleMetric::Tokens, 3500.0);
    // No GPU readings: gpu is left out rather than read as zero.
    let decision = revision.decide(59, 5, 0);
    assert_eq!(decision.desired, 5);
    assert_eq!(decision.winner, Some(ScaleMetric::Tokens));
    assert_eq!(decision.metrics.len(), 2);
    let winner = decision.winning_metric().expect("a winner");
    assert_eq!(winner.stable_desired, 5);
    assert_eq!(decision.metrics[0].stable_desired, 3);
    assert!(decision.reason.contains("tokens"), "{}", decision.reason);

    // When concurrency asks for more, it wins.
    revision.feed(60..120, ScaleMetric::Concurrency, 80.0);
    revision.feed(60..120, ScaleMetric::Tokens, 3500.0);
    let decision = revision.decide(119, 5, 0);
    assert_eq!(decision.winner, Some(ScaleMetric::Concurrency));
    assert_eq!(decision.desired, 8);
}
