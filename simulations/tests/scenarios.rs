//! Small synthetic traces whose right answers are known by hand, checked per policy.

use std::time::Instant;

use serval_simulations::engine::{simulate, Outcome, SimConfig};
use serval_simulations::policy::{build, DeciderPolicy, PolicyContext, PolicyKind};
use serval_simulations::trace::Request;

const COLD: f64 = 10.0;

fn config(concurrency: u32) -> SimConfig {
    SimConfig {
        cold_start_s: COLD,
        concurrency,
        queue_limit: 10_000,
    }
}

fn requests(times: impl IntoIterator<Item = f64>, service_s: f64) -> Vec<Request> {
    times
        .into_iter()
        .map(|at| Request {
            at,
            service_s,
            first_token_s: 0.0,
            output_tokens: 0,
            prompt_tokens: 0,
        })
        .collect()
}

fn run_with(kind: PolicyKind, reqs: &[Request], span: f64, config: SimConfig) -> Outcome {
    run_budget(kind, reqs, span, config, None)
}

/// `serval` with `cold_start_budget`, as a revision annotated with it.
fn run_budget(
    kind: PolicyKind,
    reqs: &[Request],
    span: f64,
    config: SimConfig,
    cold_start_budget: Option<f64>,
) -> Outcome {
    let context = PolicyContext {
        base: Instant::now(),
        config,
        llm: false,
        decode_tps: 40.0,
        prefill_tps: 4000.0,
        cold_start_budget,
    };
    let mut policy = build(kind, reqs, &context);
    simulate(reqs, span, &config, policy.as_mut(), &mut |_| {})
}

fn run(kind: PolicyKind, reqs: &[Request], span: f64) -> Outcome {
    run_with(kind, reqs, span, config(1))
}

fn every(period: f64, n: u32) -> Vec<Request> {
    requests((0..n).map(|i| f64::from(i) * period), 0.5)
}

#[test]
fn keepalive_of_ten_minutes_keeps_a_ten_minute_period_warm() {
    let reqs = every(600.0, 10);
    let out = run(PolicyKind::Keepalive, &reqs, 6000.0);
    assert_eq!((out.cold, out.starts, out.dropped), (1, 1, 0));
    assert_eq!(out.waits.len(), 10);
    // Every 20 minutes, the instance is gone each time.
    let out = run(PolicyKind::Keepalive, &every(1200.0, 10), 12_000.0);
    assert_eq!((out.cold, out.starts), (10, 10));
}

#[test]
fn kpa_scales_to_zero_between_sparse_arrivals_and_each_one_is_cold() {
    let out = run(PolicyKind::Kpa, &every(600.0, 10), 6000.0);
    // One request in flight over a target of 0.7 per replica asks for ceil(1/0.7) = 2
    // replicas, as Knative does with containerConcurrency 1: two starts per arrival.
    assert_eq!((out.cold, out.starts), (10, 20));
    // Each waits exactly one cold start.
    assert!(
        out.waits.iter().all(|w| (w - COLD).abs() < 1e-9),
        "{:?}",
        out.waits
    );
}

#[test]
fn serval_learns_the_period_and_beats_kpa_on_both_counts() {
    let reqs = every(600.0, 20);
    let kpa = run(PolicyKind::Kpa, &reqs, 12_000.0);
    assert_eq!(kpa.cold, 20);
    // Without a budget, six idle gaps must be seen first (three in each half of the
    // history): arrivals 1-7 are cold, then each is pre-warmed. With one, three gaps.
    for (budget, cold) in [(None, 7), (Some(0.01), 4)] {
        let serval = run_budget(PolicyKind::Serval, &reqs, 12_000.0, config(1), budget);
        assert_eq!(serval.cold, cold, "{budget:?}: {:?}", serval.waits);
        // A pre-warm costs a cold start and a lead per call, not the whole gap.
        assert!(
            serval.replica_seconds < kpa.replica_seconds,
            "{budget:?}: {} vs {}",
            serval.replica_seconds,
            kpa.replica_seconds
        );
    }
}

#[test]
fn hybrid_learns_idle_times_and_prewarms() {
    let reqs = every(600.0, 30);
    let hybrid = run(PolicyKind::Hybrid, &reqs, 18_000.0);
    let keepalive = run(PolicyKind::Keepalive, &reqs, 18_000.0);
    // The fixed fallback (10 minutes) keeps it warm from the start; once the histogram is
    // representative the replica is unloaded between calls and pre-warmed before each.
    assert_eq!(hybrid.cold, 1);
    assert!(hybrid.replica_seconds < keepalive.replica_seconds / 2.0);
}

#[test]
fn a_single_burst_is_held_then_served() {
    let reqs = requests(std::iter::repeat_n(5.0, 100), 1.0);
    // Keep-alive starts one replica per held request at once: all wait one cold start.
    let out = run(PolicyKind::Keepalive, &reqs, 60.0);
    assert_eq!((out.cold, out.starts, out.dropped), (100, 100, 0));
    assert!(out.waits.iter().all(|w| (w - COLD).abs() < 1e-9));
    // Peak is warm for it: nobody waits.
    let out = run(PolicyKind::Peak, &reqs, 60.0);
    assert_eq!((out.cold, out.starts), (0, 0));
    assert!(out.waits.iter().all(|w| *w == 0.0));
    // The KPA is poked to one replica, then panics on the activator's report.
    let out = run(PolicyKind::Kpa, &reqs, 60.0);
    assert_eq!((out.cold, out.dropped, out.waits.len()), (100, 0, 100));
    // A bounded activator drops what does not fit.
    let small = SimConfig {
        queue_limit: 40,
        ..config(1)
    };
    let out = run_with(PolicyKind::Kpa, &reqs, 60.0, small);
    assert_eq!((out.cold, out.dropped, out.waits.len()), (40, 60, 40));
}

#[test]
fn kpa_on_steady_load_settles_at_load_over_target_with_no_later_cold_starts() {
    // 10 requests/s of 1 s each: concurrency 10, target 0.7 per replica -> 15 replicas.
    let steady = |secs: u32| requests((0..secs * 10).map(|i| f64::from(i) / 10.0), 1.0);
    let short = run(PolicyKind::Kpa, &steady(600), 600.0);
    let long = run(PolicyKind::Kpa, &steady(1200), 1200.0);
    assert_eq!(short.timeline[590].0, 15);
    assert_eq!(long.timeline[1190].0, 15);
    assert_eq!(
        short.cold, long.cold,
        "no cold starts after the first minutes"
    );
    assert_eq!(short.starts, long.starts);
}

#[test]
fn peak_counts_the_most_concurrent_requests() {
    let reqs = requests([0.0, 0.5, 0.9, 1.0, 5.0], 1.0);
    assert_eq!(serval_simulations::policy::peak_replicas(&reqs, 1), 3);
    assert_eq!(serval_simulations::policy::peak_replicas(&reqs, 2), 2);
}

#[test]
fn runs_are_deterministic() {
    let mut rng = serval_simulations::rng::SplitMix64::new(42);
    let mut t = 0.0;
    let reqs: Vec<Request> = (0..2000)
        .map(|_| {
            t += rng.next_f64() * rng.next_f64() * 4.0;
            Request {
                at: t,
                service_s: 0.2 + rng.next_f64() * 3.0,
                first_token_s: 0.1,
                output_tokens: 50,
                prompt_tokens: 0,
            }
        })
        .collect();
    for kind in PolicyKind::ALL {
        let a = run_with(kind, &reqs, t, config(4));
        let b = run_with(kind, &reqs, t, config(4));
        assert_eq!(a, b, "{kind:?}");
        assert_eq!(a.waits.len() as u64 + a.dropped, 2000, "{kind:?}");
    }
}

#[test]
fn the_simulator_runs_the_live_autoscalers_decider() {
    // The decider policies hold the very type the live loop uses.
    fn decider_of(policy: &DeciderPolicy) -> &serval_autoscaler::Decider {
        &policy.decider
    }
    let context = PolicyContext {
        base: Instant::now(),
        config: config(1),
        llm: false,
        decode_tps: 40.0,
        prefill_tps: 4000.0,
        cold_start_budget: None,
    };
    let kpa = DeciderPolicy::kpa(&context);
    assert_eq!(
        std::any::type_name_of_val(decider_of(&kpa)),
        std::any::type_name::<serval_autoscaler::Decider>()
    );
    assert_eq!(decider_of(&kpa).spec().stable_window.as_secs(), 60);
}

#[test]
fn serval_is_the_live_class_with_its_budget() {
    // A typo in a key would silently fall back to the KPA, so check what was resolved.
    let context = |llm| PolicyContext {
        base: Instant::now(),
        config: config(8),
        llm,
        decode_tps: 40.0,
        prefill_tps: 4000.0,
        cold_start_budget: None,
    };
    let serval = DeciderPolicy::serval(&context(true), Some(0.01));
    let spec = serval.decider.spec();
    let adaptive = spec.adaptive.expect("Serval's class");
    assert!(adaptive
        .cold_start_budget
        .is_some_and(|b| (b - 0.01).abs() < 1e-12));
    let unstated = DeciderPolicy::serval(&context(true), None);
    let adaptive = unstated.decider.spec().adaptive.expect("Serval's class");
    assert_eq!(adaptive.cold_start_budget, None);
    // Concurrency 8, and tokens at a full replica's decode rate (8 x 40/s).
    let totals: Vec<f64> = spec.metrics.iter().map(|m| m.total).collect();
    assert_eq!(totals, vec![8.0, 320.0]);
    // A prompt token costs a slot 1/4000 s against an output token's 1/40 s.
    assert!((spec.prompt_token_cost - 0.01).abs() < 1e-12);
    let serval = DeciderPolicy::serval(&context(false), Some(0.01));
    assert_eq!(serval.decider.spec().metrics.len(), 1);
    assert!(DeciderPolicy::kpa(&context(false))
        .decider
        .spec()
        .adaptive
        .is_none());
}

#[test]
fn serval_on_steady_load_needs_little_headroom() {
    // 10 requests/s of 1 s each: concurrency 10 that never rises, so with a budget the
    // learned target is the 90% cap: ceil(10 / 0.9) = 12 replicas, against the KPA's 15 at
    // 70%. Without a budget the class keeps the KPA's target.
    let steady = requests((0..12_000).map(|i| f64::from(i) / 10.0), 1.0);
    let serval = run_budget(PolicyKind::Serval, &steady, 1200.0, config(1), Some(0.02));
    let unstated = run(PolicyKind::Serval, &steady, 1200.0);
    let kpa = run(PolicyKind::Kpa, &steady, 1200.0);
    assert_eq!(serval.timeline[1190].0, 12);
    assert_eq!(unstated.timeline[1190].0, 15);
    assert_eq!(kpa.timeline[1190].0, 15);
}
