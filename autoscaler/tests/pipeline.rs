//! The public API end to end, as the tick loop uses it: manifest fields and annotations to a
//! spec, scraped `Stat`s to samples, samples to windows, windows to a decision.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serval_api::component::ComponentExtensionSpec;
use serval_api::Stat;
use serval_autoscaler::{
    activator_sample, pod_sample, sample_size, AutoscalerConfig, Decider, MetricWindows,
    ScaleMetric, ScalingSpec,
};

fn pod(concurrency: f64, proxied: f64) -> Stat {
    Stat {
        pod_name: "iris-predictor-1".into(),
        window_ms: 1000,
        average_concurrency: concurrency,
        average_proxied_concurrency: proxied,
        request_count: 10,
        ..Stat::default()
    }
}

#[test]
fn scraped_stats_drive_a_decision() {
    let config = AutoscalerConfig::from_map(&BTreeMap::new()).expect("defaults");
    let component = ComponentExtensionSpec {
        container_concurrency: Some(10),
        min_replicas: Some(0),
        ..ComponentExtensionSpec::default()
    };
    let annotations: BTreeMap<String, String> = [(
        "serving.serval.dev/metrics".to_string(),
        "concurrency,rps".to_string(),
    )]
    .into();
    let spec = ScalingSpec::from_annotations(&component, &annotations, "metadata", &config)
        .expect("valid annotations");
    assert_eq!(spec.metrics.len(), 2);

    let base = Instant::now();
    let mut windows = MetricWindows::new(base, &spec);
    let mut decider = Decider::resume(spec, base, 4);
    let ready = 4;
    assert_eq!(sample_size(ready), 4);
    for second in 0..120 {
        let now = base + Duration::from_secs(second);
        // Each pod has 7 in flight, 2 of which came through the activator, which
        // reports those 8 (4 pods × 2) itself: 4 × 5 + 8 = 28 in total.
        let pods: Vec<Stat> = (0..ready).map(|_| pod(7.0, 2.0)).collect();
        windows.record(now, &pod_sample(&pods, ready, 0.1));
        let activator = Stat {
            average_concurrency: 8.0,
            window_ms: 1000,
            ..Stat::default()
        };
        windows.record(now, &activator_sample(&[activator]));
        let decision = decider.decide(now, &windows, ready, 0);
        if second == 119 {
            // 28 in flight over a target of 7 (10 × 70%) per pod.
            assert_eq!(decision.desired, 4, "{}", decision.reason);
            assert_eq!(decision.winner, Some(ScaleMetric::Concurrency));
            assert!(!decision.in_panic);
        }
    }
}

/// A language model whose requests carry long prompts: the prefill work counts toward the
/// `tokens` metric at the revision's prompt-token cost, so it gets the replicas its output
/// tokens alone would not ask for.
#[test]
fn prompt_tokens_size_a_language_model() {
    let config = AutoscalerConfig::from_map(&BTreeMap::new()).expect("defaults");
    let component = ComponentExtensionSpec {
        min_replicas: Some(0),
        ..ComponentExtensionSpec::default()
    };
    let decide = |annotations: &[(&str, &str)]| {
        let annotations: BTreeMap<String, String> = annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let spec = ScalingSpec::from_annotations(&component, &annotations, "metadata", &config)
            .expect("valid annotations");
        let base = Instant::now();
        let mut windows = MetricWindows::new(base, &spec);
        let cost = spec.prompt_token_cost;
        let mut decider = Decider::resume(spec, base, 2);
        let mut last = None;
        for second in 0..60 {
            let now = base + Duration::from_secs(second);
            // Each pod decodes 50 output tokens/s and prefills 2000 prompt tokens/s.
            let pods: Vec<Stat> = (0..2)
                .map(|_| Stat {
                    output_tokens: 50,
                    prompt_tokens: 2000,
                    ..pod(1.0, 0.0)
                })
                .collect();
            windows.record(now, &pod_sample(&pods, 2, cost));
            last = Some(decider.decide(now, &windows, 2, 0));
        }
        last.expect("decided")
    };
    let tokens = [
        ("autoscaling.knative.dev/metric", "tokens"),
        ("autoscaling.knative.dev/target", "100"),
    ];
    // Output alone: 2 × 50 = 100 tokens/s against 70 per pod (100 at 70%): 2 pods.
    let output_only = decide(&[
        tokens[0],
        tokens[1],
        ("serving.serval.dev/prompt-token-cost", "0"),
    ]);
    assert_eq!(output_only.desired, 2, "{}", output_only.reason);
    // At the default cost of 0.1: 2 × (50 + 200) = 500 tokens/s of work: 8 pods.
    let with_prompts = decide(&tokens);
    assert_eq!(with_prompts.desired, 8, "{}", with_prompts.reason);
    assert_eq!(with_prompts.winner, Some(ScaleMetric::Tokens));
}
