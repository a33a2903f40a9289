use std::time::Duration;

use super::*;

fn component(
    cc: Option<i64>,
    scale_target: Option<i32>,
    scale_metric: Option<ScaleMetric>,
) -> ComponentExtensionSpec {
    ComponentExtensionSpec {
        container_concurrency: cc,
        scale_target,
        scale_metric,
        ..ComponentExtensionSpec::default()
    }
}

fn resolve(
    component: &ComponentExtensionSpec,
    annotations: &AutoscalingAnnotations,
) -> ScalingSpec {
    ScalingSpec::resolve(component, annotations, &AutoscalerConfig::default())
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn target_precedence_follows_kserve_on_knative() {
    struct Case {
        name: &'static str,
        component: ComponentExtensionSpec,
        annotations: AutoscalingAnnotations,
        want_total: f64,
        want_target: f64,
    }
    let target = |t: f64| AutoscalingAnnotations {
        target: Some(t),
        ..AutoscalingAnnotations::default()
    };
    let cases = [
        Case {
            name: "cc 0 uses the default 100 at 70%",
            component: component(None, None, None),
            annotations: AutoscalingAnnotations::default(),
            want_total: 100.0,
            want_target: 70.0,
        },
        Case {
            name: "cc sets the total",
            component: component(Some(10), None, None),
            annotations: AutoscalingAnnotations::default(),
            want_total: 10.0,
            want_target: 7.0,
        },
        Case {
            name: "target annotation replaces cc 0's default",
            component: component(None, None, None),
            annotations: target(20.0),
            want_total: 20.0,
            want_target: 14.0,
        },
        Case {
            name: "target annotation is capped at cc",
            component: component(Some(10), None, None),
            annotations: target(50.0),
            want_total: 10.0,
            want_target: 7.0,
        },
        Case {
            name: "scaleTarget wins over the annotation",
            component: component(None, Some(5), None),
            annotations: target(50.0),
            want_total: 5.0,
            want_target: 3.5,
        },
        Case {
            name: "utilisation annotation overrides the config",
            component: component(Some(10), None, None),
            annotations: AutoscalingAnnotations {
                target_utilization_percentage: Some(50.0),
                ..AutoscalingAnnotations::default()
            },
            want_total: 10.0,
            want_target: 5.0,
        },
        Case {
            name: "rps defaults to 200 and is not capped by cc",
            component: component(Some(1), None, Some(ScaleMetric::Rps)),
            annotations: AutoscalingAnnotations::default(),
            want_total: 200.0,
            want_target: 140.0,
        },
        Case {
            name: "gpu target is a percentage, without utilisation",
            component: component(None, Some(60), Some(ScaleMetric::Gpu)),
            annotations: AutoscalingAnnotations::default(),
            want_total: 60.0,
            want_target: 60.0,
        },
        Case {
            name: "queue target is a depth, without utilisation",
            component: component(None, None, Some(ScaleMetric::Queue)),
            annotations: AutoscalingAnnotations::default(),
            want_total: 4.0,
            want_target: 4.0,
        },
        Case {
            name: "tokens take utilisation",
            component: component(None, None, Some(ScaleMetric::Tokens)),
            annotations: AutoscalingAnnotations::default(),
            want_total: 1000.0,
            want_target: 700.0,
        },
    ];
    for case in cases {
        let spec = resolve(&case.component, &case.annotations);
        let primary = spec.metrics[0];
        assert!(
            close(primary.total, case.want_total),
            "{}: {primary:?}",
            case.name
        );
        assert!(
            close(primary.target, case.want_target),
            "{}: {primary:?}",
            case.name
        );
    }
}

#[test]
fn metric_list_annotation_scales_on_several_metrics() {
    let annotations = AutoscalingAnnotations {
        metrics: vec![
            ScaleMetric::Concurrency,
            ScaleMetric::Tokens,
            ScaleMetric::Tokens,
        ],
        ..AutoscalingAnnotations::default()
    };
    // scaleTarget applies to the named metric when it is listed.
    let spec = resolve(
        &component(None, Some(2000), Some(ScaleMetric::Tokens)),
        &annotations,
    );
    let metrics: Vec<ScaleMetric> = spec.metrics.iter().map(|m| m.metric).collect();
    assert_eq!(metrics, vec![ScaleMetric::Concurrency, ScaleMetric::Tokens]);
    assert!(close(spec.metrics[0].total, 100.0));
    assert!(close(spec.metrics[1].total, 2000.0));
    assert_eq!(spec.burst_metric.metric, ScaleMetric::Concurrency);

    let rps = resolve(
        &component(None, None, None),
        &AutoscalingAnnotations {
            metric: Some(ScaleMetric::Rps),
            ..AutoscalingAnnotations::default()
        },
    );
    assert_eq!(rps.metrics[0].metric, ScaleMetric::Rps);
    assert_eq!(rps.burst_metric.metric, ScaleMetric::Rps);
}

#[test]
fn bounds_windows_and_defaults() {
    let defaults = resolve(
        &ComponentExtensionSpec::default(),
        &AutoscalingAnnotations::default(),
    );
    assert_eq!(defaults.min_scale, 1, "KServe's minReplicas default");
    assert_eq!(defaults.max_scale, 0);
    assert_eq!(defaults.initial_scale, 1);
    assert_eq!(defaults.stable_window, Duration::from_secs(60));
    assert_eq!(defaults.panic_window, Duration::from_secs(6));
    assert!(close(defaults.panic_threshold, 2.0));
    assert_eq!(defaults.target_burst_capacity, 211.0);
    assert_eq!(defaults.metrics[0].metric, ScaleMetric::Concurrency);

    let annotations = AutoscalingAnnotations {
        min_scale: Some(2),
        max_scale: Some(8),
        window: Some(Duration::from_secs(120)),
        panic_window_percentage: Some(5.0),
        scale_down_delay: Some(Duration::from_secs(30)),
        target_burst_capacity: Some(0.0),
        activation_scale: Some(3),
        ..AutoscalingAnnotations::default()
    };
    let from_annotations = resolve(&ComponentExtensionSpec::default(), &annotations);
    assert_eq!(from_annotations.min_scale, 2);
    assert_eq!(from_annotations.max_scale, 8);
    assert_eq!(from_annotations.panic_window, Duration::from_secs(6));
    assert_eq!(from_annotations.scale_down_delay, Duration::from_secs(30));
    assert_eq!(from_annotations.target_burst_capacity, 0.0);
    assert_eq!(from_annotations.activation_scale, 3);

    let fields = ComponentExtensionSpec {
        min_replicas: Some(0),
        max_replicas: Some(4),
        ..ComponentExtensionSpec::default()
    };
    let from_fields = resolve(&fields, &annotations);
    assert_eq!((from_fields.min_scale, from_fields.max_scale), (0, 4));
}

#[test]
fn min_replicas_zero_starts_at_zero_only_when_the_cluster_allows_it() {
    let fields = ComponentExtensionSpec {
        min_replicas: Some(0),
        ..ComponentExtensionSpec::default()
    };
    let none = AutoscalingAnnotations::default();
    assert_eq!(resolve(&fields, &none).initial_scale, 1);
    let allow = AutoscalerConfig {
        allow_zero_initial_scale: true,
        ..AutoscalerConfig::default()
    };
    assert_eq!(
        ScalingSpec::resolve(&fields, &none, &allow).initial_scale,
        0
    );
    let explicit = AutoscalingAnnotations {
        initial_scale: Some(3),
        ..AutoscalingAnnotations::default()
    };
    assert_eq!(
        ScalingSpec::resolve(&fields, &explicit, &allow).initial_scale,
        3
    );
}

#[test]
fn from_annotations_reads_the_aggregation_algorithm() {
    let map: BTreeMap<String, String> = [
        (METRIC_AGGREGATION_ALGORITHM, "weighted-exponential"),
        ("autoscaling.knative.dev/target", "10"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let spec = ScalingSpec::from_annotations(
        &ComponentExtensionSpec::default(),
        &map,
        "metadata.annotations",
        &AutoscalerConfig::default(),
    )
    .expect("valid");
    assert_eq!(spec.aggregation, Aggregation::WeightedExponential);
    assert!(close(spec.metrics[0].target, 7.0));

    let mut bad = map.clone();
    bad.insert(METRIC_AGGREGATION_ALGORITHM.into(), "median".into());
    let errors = ScalingSpec::from_annotations(
        &ComponentExtensionSpec::default(),
        &bad,
        "metadata.annotations",
        &AutoscalerConfig::default(),
    )
    .expect_err("median is not an algorithm");
    assert_eq!(
        errors[0].path,
        format!("metadata.annotations[{METRIC_AGGREGATION_ALGORITHM}]")
    );
}
