//! The class's estimators on traffic whose right answer is known by hand, and the decider
//! with the class on a clock driven from outside.

use std::time::{Duration, Instant};

use serval_api::component::{ComponentExtensionSpec, ScaleMetric};

use super::idle::{IdleHistory, LEARNING_KEEP_ALIVE_S, MAX_KEEP_ALIVE_S};
use super::target::{
    upper_quantile, TargetSteer, MAX_UTILISATION, MIN_UTILISATION, START_UTILISATION,
};
use super::Adaptive;
use crate::{
    AdaptiveSettings, AutoscalerConfig, Decider, MetricSample, MetricWindows, ScalingSpec,
};

fn history(gaps: &[f64], requests_each: f64) -> IdleHistory {
    let mut history = IdleHistory::default();
    for gap in gaps {
        history.busy_after(*gap);
        history.requests(requests_each);
    }
    history.close();
    history
}

#[test]
fn idle_plans_for_known_traffic() {
    struct Case {
        name: &'static str,
        gaps: Vec<f64>,
        requests_each: f64,
        budget: f64,
        prewarm: Option<(f64, f64)>,
        keep_alive: (f64, f64),
    }
    let periodic: Vec<f64> = (0..20).map(|i| 300.0 + f64::from(i % 3)).collect();
    let mut mostly_short: Vec<f64> = vec![5.0; 95];
    mostly_short.extend([2000.0; 5]);
    let mut rare_with_two_short = vec![5000.0; 4];
    rare_with_two_short.extend([2000.0; 4]);
    rare_with_two_short.extend([30.0; 2]);
    let cases = [
        Case {
            // Every 5 minutes: started a cold start and a lead before the next call, held
            // just past it.
            name: "periodic",
            gaps: periodic.clone(),
            requests_each: 1.0,
            budget: 0.01,
            prewarm: Some((270.0, 285.0)),
            keep_alive: (312.0, 318.0),
        },
        Case {
            // Short gaps inside bursts with a few long ones: with 100 requests per burst
            // a 1% budget allows every long gap to be cold, so only the short ones are
            // covered.
            name: "bursty, busy bursts",
            gaps: mostly_short.clone(),
            requests_each: 100.0,
            budget: 0.01,
            prewarm: None,
            keep_alive: (12.0, 12.2),
        },
        Case {
            // The same gaps with one request each: 5 long gaps are 5% of requests, over a
            // 1% budget, so the long gaps must be covered too. A pre-warm for them would
            // leave every short gap cold, so the replica is kept through them.
            name: "bursty, single calls",
            gaps: mostly_short,
            requests_each: 1.0,
            budget: 0.01,
            prewarm: None,
            keep_alive: (2046.0, 2048.0),
        },
        Case {
            // Too few gaps to learn from: the learning keep-alive.
            name: "learning",
            gaps: vec![40.0, 50.0],
            requests_each: 1.0,
            budget: 0.01,
            prewarm: None,
            keep_alive: (LEARNING_KEEP_ALIVE_S, LEARNING_KEEP_ALIVE_S),
        },
        Case {
            // Gaps beyond the bound's hour are cold whatever the plan, so no plan fits
            // the budget, and it is not chased at any price: holding a replica through
            // the 2000 s gaps and the short ones would leave only the four long gaps
            // cold, for over 16,000 replica-seconds. The plan spends no more than the
            // learning keep-alive would (860), and within that the fewest cold starts:
            // a pre-warm for the 2000 s gaps (6 cold, about 700).
            name: "rare, budget out of reach",
            gaps: rare_with_two_short,
            requests_each: 1.0,
            budget: 0.01,
            prewarm: Some((1900.0, 1990.0)),
            keep_alive: (2000.0, 2100.0),
        },
        Case {
            // Gaps far beyond the longest keep-alive: nothing fits the budget, so the
            // plan with the fewest cold starts, which pre-warms within the bound.
            name: "beyond the bound",
            gaps: vec![20_000.0; 10],
            requests_each: 1.0,
            budget: 0.01,
            prewarm: None,
            keep_alive: (0.0, 0.0),
        },
    ];
    for case in cases {
        let plan = history(&case.gaps, case.requests_each).plan(case.budget, 10.0);
        match (case.prewarm, plan.prewarm_at_s) {
            (None, None) => {}
            (Some((lo, hi)), Some(at)) if at >= lo && at <= hi => {}
            (want, got) => panic!("{}: pre-warm {got:?}, expected {want:?}", case.name),
        }
        let (lo, hi) = case.keep_alive;
        assert!(
            plan.keep_alive_s >= lo && plan.keep_alive_s <= hi,
            "{}: keep-alive {}, expected {lo}..={hi} ({plan:?})",
            case.name,
            plan.keep_alive_s
        );
        assert!(plan.keep_alive_s <= MAX_KEEP_ALIVE_S);
    }
}

#[test]
fn without_a_budget_a_plan_replaces_the_kpas_only_where_it_saves_on_both_counts() {
    let periodic: Vec<f64> = (0..20).map(|i| 300.0 + f64::from(i % 3)).collect();
    // Periodic in the older half, then short and very long gaps: over the whole history
    // a pre-warm for the 300 s gaps still has fewer cold starts (10 against 15) for less
    // than the KPA's keep-alive, but in the newer half alone it has twice its cold starts.
    let mut changed = vec![300.0; 10];
    changed.extend([20.0, 1000.0].repeat(5));
    // Name, gaps, the pre-warm's range if any, the keep-alive's range.
    type Case = (&'static str, Vec<f64>, Option<(f64, f64)>, (f64, f64));
    let cases: [Case; 4] = [
        // Cold after every gap under the KPA; a pre-warm catches them all for less.
        ("periodic", periodic, Some((270.0, 290.0)), (300.0, 320.0)),
        // Every call warm under the KPA: a shorter keep-alive or a pre-warm is cheaper
        // and no colder over these gaps, but a gap just longer would be cold.
        ("short gaps", vec![30.0; 20], None, (90.0, 90.0)),
        ("the pattern changed", changed, None, (90.0, 90.0)),
        // Each half needs the gaps a plan is learned from.
        ("learning", vec![300.0; 5], None, (90.0, 90.0)),
    ];
    for (name, gaps, prewarm, (lo, hi)) in cases {
        let plan = history(&gaps, 1.0).plan_against_kpa(10.0, 90.0);
        match (prewarm, plan.prewarm_at_s) {
            (None, None) => {}
            (Some((from, to)), Some(at)) if at >= from && at <= to => {}
            (want, got) => panic!("{name}: pre-warm {got:?}, expected {want:?} ({plan:?})"),
        }
        assert!(
            plan.keep_alive_s >= lo && plan.keep_alive_s <= hi,
            "{name}: keep-alive {} ({plan:?})",
            plan.keep_alive_s
        );
    }
    // The KPA's keep-alive is the revision's: a 120 s stable window and the 30 s grace
    // keep 120 s gaps warm, so the class keeps them warm too.
    let longer = history(&[120.0; 20], 1.0).plan_against_kpa(10.0, 150.0);
    assert_eq!(
        (longer.prewarm_at_s, longer.keep_alive_s),
        (None, 150.0),
        "{longer:?}"
    );
    let kept = history(&[30.0; 20], 1.0).plan_against_kpa(10.0, 90.0);
    assert_eq!(kept.predicted_cold_share, Some(0.0), "{kept:?}");
    assert_eq!(
        history(&[300.0; 5], 1.0)
            .plan_against_kpa(10.0, 90.0)
            .predicted_cold_share,
        None
    );
}

#[test]
fn a_busy_period_reported_in_two_halves_is_one() {
    let mut history = IdleHistory::default();
    for _ in 0..5 {
        history.busy_after(300.0);
        history.requests(1.0);
        history.close();
        // The same call's report lands two seconds later.
        history.busy_after(2.0);
        history.close();
    }
    assert_eq!(history.len(), 5);
    let plan = history.plan(0.01, 10.0);
    assert!(plan.prewarm_at_s.is_some(), "{plan:?}");
}

#[test]
fn a_plan_holds_one_replica_only_inside_its_window() {
    let plan = history(&[300.0; 10], 1.0).plan(0.01, 10.0);
    let at = plan.prewarm_at_s.expect("a pre-warm");
    assert_eq!(plan.replicas_at(0.0), 0);
    assert_eq!(plan.replicas_at(at - 1.0), 0);
    assert_eq!(plan.replicas_at(at), 1);
    assert_eq!(plan.replicas_at(plan.keep_alive_s - 0.5), 1);
    // A service that never comes back: nothing after the keep-alive, ever.
    assert_eq!(plan.replicas_at(plan.keep_alive_s), 0);
    assert_eq!(plan.replicas_at(1e9), 0);
}

#[test]
fn the_target_leaves_room_for_the_spread_of_the_load() {
    struct Case {
        name: &'static str,
        /// Per-second loads, in order.
        loads: Vec<f64>,
        utilisation: (f64, f64),
    }
    let alternate = |low: f64, high: f64, seconds: usize| -> Vec<f64> {
        (0..seconds)
            .map(|s| if s % 2 == 0 { low } else { high })
            .collect()
    };
    // 10 ± 2 at a 1% tail (z = 2.33): 10 / (10 + 4.65) = 68%.
    let z = upper_quantile(0.01);
    let periodic = 10.0 / (10.0 + z * 2.0);
    let mut step = vec![5.0; 600];
    step.extend([20.0; 300]);
    let mut step_settled = step.clone();
    step_settled.extend([20.0; 3600]);
    let cases = [
        Case {
            name: "steady",
            loads: vec![10.0; 600],
            utilisation: (MAX_UTILISATION, MAX_UTILISATION),
        },
        Case {
            name: "periodic, mild",
            loads: alternate(8.0, 12.0, 600),
            utilisation: (periodic - 0.01, periodic + 0.01),
        },
        Case {
            name: "bursty",
            loads: alternate(2.0, 18.0, 600),
            utilisation: (MIN_UTILISATION, MIN_UTILISATION),
        },
        Case {
            name: "a sudden step",
            loads: step,
            utilisation: (MIN_UTILISATION, 0.8),
        },
        Case {
            name: "a step long past",
            loads: step_settled,
            utilisation: (0.88, MAX_UTILISATION),
        },
        Case {
            name: "too little seen",
            loads: vec![3.0; 30],
            utilisation: (START_UTILISATION, START_UTILISATION),
        },
    ];
    for case in cases {
        let mut steer = TargetSteer::new(Some(0.01));
        let mut measured = TargetSteer::new(None);
        for load in &case.loads {
            steer.observe_load(*load);
            measured.observe_load(*load);
        }
        let choice = steer.choice();
        let utilisation = choice.utilisation.expect("a budget sizes the target");
        let (lo, hi) = case.utilisation;
        assert!(
            utilisation >= lo - 1e-9 && utilisation <= hi + 1e-9,
            "{}: {choice:?}",
            case.name
        );
        // Without a budget the load is measured, and the configured target stands.
        let measured = measured.choice();
        assert_eq!(measured.utilisation, None, "{}", case.name);
        assert_eq!(
            (measured.load, measured.spread),
            (choice.load, choice.spread)
        );
    }
}

#[test]
fn the_held_share_counts_what_the_activators_report() {
    let base = Instant::now();
    let mut steer = TargetSteer::new(Some(0.01));
    for second in 1..=100 {
        let held = if second % 10 == 0 { 1.0 } else { 0.0 };
        steer.observe_held(base + Duration::from_secs(second), held, 5.0);
    }
    // 10 of 500 requests, give or take the decay over 100 s.
    let share = steer.choice().held_share.expect("requests were seen");
    assert!((share - 0.02).abs() < 0.002, "{share}");
}

#[test]
fn normal_quantiles() {
    for (tail, z) in [(0.5, 0.0), (0.05, 1.6449), (0.01, 2.3263), (0.001, 3.0902)] {
        assert!(
            (upper_quantile(tail) - z).abs() < 1e-3,
            "{tail}: {}",
            upper_quantile(tail)
        );
    }
}

fn serval_spec(budget: Option<&str>) -> ScalingSpec {
    let component = ComponentExtensionSpec {
        min_replicas: Some(0),
        container_concurrency: Some(1),
        ..Default::default()
    };
    let annotations = [
        (
            "autoscaling.knative.dev/class",
            Some("serval.autoscaling.serval.dev"),
        ),
        ("serving.serval.dev/cold-start-budget", budget),
    ]
    .into_iter()
    .filter_map(|(k, v)| Some((k.to_string(), v?.to_string())))
    .collect();
    ScalingSpec::from_annotations(&component, &annotations, "a", &AutoscalerConfig::default())
        .expect("valid")
}

/// What a periodic revision went through.
struct Periodic {
    /// Per call, whether a replica was ready when it arrived.
    warm: Vec<bool>,
    /// Seconds with a replica (starting or ready) in the last `last` periods.
    replica_seconds_late: u64,
    last: crate::Decision,
}

/// A revision called every `period` seconds, each call busy for one second, driven tick by
/// tick the way the live loop drives it; a replica is ready `cold` seconds after it is
/// asked for.
fn periodic_calls(period: u64, calls: u64, cold: u64, last: u64) -> Periodic {
    let base = Instant::now();
    let spec = serval_spec(Some("1%"));
    let mut windows = MetricWindows::new(base, &spec);
    let mut decider = Decider::new(spec, base);
    let mut asked_at: Option<u64> = None;
    let mut ready = 0u32;
    let mut warm = Vec::new();
    let mut replica_seconds_late = 0;
    let end = period * calls + 1;
    let mut decision = None;
    for second in 0..end {
        let at = base + Duration::from_secs(second);
        let calling = second % period == 0 && second > 0;
        if calling {
            warm.push(ready > 0);
        }
        let queued = u32::from(calling && ready == 0);
        if ready > 0 && calling {
            let mut sample = MetricSample::new();
            sample.set(ScaleMetric::Concurrency, 1.0);
            sample.set(ScaleMetric::Rps, 1.0);
            windows.record(at, &sample);
        }
        let decided = decider.decide(at, &windows, ready, queued);
        match (decided.desired, asked_at) {
            (0, _) => {
                ready = 0;
                asked_at = None;
            }
            (_, None) if ready == 0 => asked_at = Some(second),
            _ => {}
        }
        if asked_at.is_some_and(|t| second >= t + cold) {
            ready = 1;
        }
        if decided.desired > 0 && second + last * period >= end {
            replica_seconds_late += 1;
        }
        decision = Some(decided);
    }
    Periodic {
        warm,
        replica_seconds_late,
        last: decision.expect("decided"),
    }
}

#[test]
fn a_periodic_revision_is_prewarmed_before_its_calls() {
    let run = periodic_calls(120, 12, 3, 4);
    // A new revision starts at one replica (initial scale), which has gone by the second
    // call: the first calls after it are cold while idle times are learned; the last
    // ones are warm.
    assert!(!run.warm[1], "{:?}", run.warm);
    assert!(
        run.warm[run.warm.len() - 4..].iter().all(|w| *w),
        "{:?}",
        run.warm
    );
    // Warm by a pre-warm, not by a keep-alive through the gap: a replica for a small part
    // of each period.
    assert!(
        run.replica_seconds_late < 4 * 40,
        "{} replica-seconds over 4 periods of 120 s",
        run.replica_seconds_late
    );
    let prediction = run.last.prediction.expect("the class predicts");
    assert!(prediction.plan.prewarm_at_s.is_some(), "{prediction:?}");
    assert!(run.last.reason.contains("pre-warm"), "{}", run.last.reason);
}

/// A class revision serving one request at a time, 0.5 s each at one a second (or the KPA
/// beside it), then four seconds of either a burst of ten requests that the activator
/// holds while a replica starts, or (`held` false) requests that take ten times as long
/// with nothing held. Returns the last decision.
fn four_seconds_after(spec: ScalingSpec, held: bool) -> crate::Decision {
    let base = Instant::now();
    let mut windows = MetricWindows::new(base, &spec);
    let mut decider = Decider::new(spec, base);
    let mut decision = None;
    for second in 0..125u64 {
        let at = base + Duration::from_secs(second);
        let slow = !held && second >= 120;
        let mut pods = MetricSample::new();
        pods.set(ScaleMetric::Concurrency, if slow { 5.0 } else { 0.5 });
        pods.set(ScaleMetric::Rps, 1.0);
        windows.record(at, &pods);
        let mut queued = 0;
        if held && second >= 120 {
            let mut activator = MetricSample::new();
            activator.set(ScaleMetric::Concurrency, 10.0);
            let arrived = if second == 120 { 10.0 } else { 0.0 };
            activator.set(ScaleMetric::Rps, arrived);
            activator.set_held_requests(arrived);
            windows.record(at, &activator);
            queued = 10;
        }
        decision = Some(decider.decide(at, &windows, 1, queued));
    }
    decision.expect("decided")
}

#[test]
fn held_requests_ask_for_the_replicas_that_drain_them_not_one_each() {
    let kpa = {
        let component = ComponentExtensionSpec {
            min_replicas: Some(0),
            container_concurrency: Some(1),
            ..Default::default()
        };
        ScalingSpec::from_annotations(
            &component,
            &Default::default(),
            "a",
            &AutoscalerConfig::default(),
        )
        .expect("valid")
    };
    let knative = four_seconds_after(kpa, true);
    assert!(
        knative.desired >= 10,
        "the KPA counts the wait: {knative:?}"
    );
    let serval = four_seconds_after(serval_spec(Some("2%")), true);
    // About 2.5 requests a second (the burst in the panic window) of 0.5 s at the 90%
    // target, and ten held requests of 0.5 s drained within a 10 s cold start: 2.
    assert_eq!(serval.desired, 2, "{}", serval.reason);
    assert!(
        serval.reason.contains("10 held need 2"),
        "{}",
        serval.reason
    );
    assert!(serval.reason.contains("service 0.50s"), "{}", serval.reason);
    // Nothing held: the load is load, however long its requests now take.
    let slower = four_seconds_after(serval_spec(Some("2%")), false);
    assert!(slower.desired >= 4, "{}", slower.reason);
    assert!(!slower.reason.contains("held need"), "{}", slower.reason);
}

#[test]
fn without_a_budget_the_class_keeps_the_kpas_target_and_delay() {
    // Ten requests in flight for five minutes, then one, at containerConcurrency 1.
    let run = |spec: ScalingSpec| {
        let base = Instant::now();
        let mut windows = MetricWindows::new(base, &spec);
        let mut decider = Decider::new(spec, base);
        let mut steady = None;
        let mut decision = None;
        for second in 0..330u64 {
            let at = base + Duration::from_secs(second);
            let mut pods = MetricSample::new();
            pods.set(
                ScaleMetric::Concurrency,
                if second < 300 { 10.0 } else { 1.0 },
            );
            pods.set(ScaleMetric::Rps, 10.0);
            windows.record(at, &pods);
            let ready = decision.as_ref().map_or(1, |d: &crate::Decision| d.desired);
            let decided = decider.decide(at, &windows, ready.max(1), 0);
            if second == 299 {
                steady = Some(decided.clone());
            }
            decision = Some(decided);
        }
        steady.expect("decided")
    };
    // The KPA: 10 / 0.7 per pod.
    let unstated = run(serval_spec(None));
    assert_eq!(unstated.desired, 15, "{}", unstated.reason);
    let prediction = unstated.prediction.expect("the class predicts");
    assert_eq!(prediction.target.utilisation, None);
    assert_eq!(prediction.cold_start_budget, None);
    assert!(
        unstated.reason.contains("the KPA's target"),
        "{}",
        unstated.reason
    );
    assert!(unstated.reason.contains("no budget"), "{}", unstated.reason);
    assert!(
        unstated.reason.contains("(0 of 6 gaps)"),
        "{}",
        unstated.reason
    );
    // With a budget the steady load needs little headroom (90%).
    let budget = run(serval_spec(Some("2%")));
    assert_eq!(budget.desired, 12, "{}", budget.reason);
    // A scale-down delay buys fewer cold starts with replica-seconds: only with a budget,
    // two cold starts (10 s assumed before one is measured).
    let delay = |budget| {
        Adaptive::new(
            AdaptiveSettings {
                cold_start_budget: budget,
            },
            &serval_spec(None),
        )
        .scale_down_delay()
    };
    assert_eq!(delay(None), Duration::ZERO);
    assert_eq!(delay(Some(0.02)), Duration::from_secs(20));
}
