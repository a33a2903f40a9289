use super::*;

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_are_what_an_empty_config_map_gives() {
    let parsed = AutoscalerConfig::from_map(&BTreeMap::new()).expect("empty map is valid");
    assert_eq!(parsed, AutoscalerConfig::default());
    assert_eq!(parsed.stable_window, Duration::from_secs(60));
    assert_eq!(parsed.target_burst_capacity, 211.0);
    assert_eq!(parsed.tick_interval, Duration::from_secs(1));
}

#[test]
fn parses_knative_keys_and_ignores_unknown_ones() {
    let config = AutoscalerConfig::from_map(&map(&[
        ("stable-window", "2m"),
        ("container-concurrency-target-percentage", "0.8"),
        ("target-burst-capacity", "-1"),
        ("scale-to-zero-grace-period", "45s"),
        ("enable-scale-to-zero", "false"),
        ("activator-capacity", "100"),
        ("pod-autoscaler-class", "kpa.autoscaling.knative.dev"),
        ("tokens-target-default", "500"),
        ("prompt-token-cost", "0.05"),
    ]))
    .expect("valid");
    assert_eq!(config.stable_window, Duration::from_secs(120));
    assert!((config.container_concurrency_target_percentage - 80.0).abs() < 1e-9);
    assert_eq!(config.target_burst_capacity, -1.0);
    assert_eq!(config.scale_to_zero_grace_period, Duration::from_secs(45));
    assert!(!config.enable_scale_to_zero);
    assert_eq!(config.tokens_target_default, 500.0);
    assert_eq!(config.prompt_token_cost, 0.05);
}

#[test]
fn bad_values_name_their_key() {
    let cases = [
        ("stable-window", "sixty"),
        ("stable-window", "2s"),
        ("max-scale-down-rate", "1"),
        ("target-burst-capacity", "-2"),
        ("initial-scale", "0"),
        ("initial-scale", "-1"),
        ("enable-scale-to-zero", "yes"),
        ("panic-threshold-percentage", "NaN"),
        ("scale-to-zero-grace-period", "0s"),
        ("prompt-token-cost", "-0.1"),
        ("prompt-token-cost", "101"),
    ];
    for (key, value) in cases {
        let err = AutoscalerConfig::from_map(&map(&[(key, value)]))
            .expect_err(&format!("{key}={value} should be rejected"));
        assert_eq!(err.key, key, "{err}");
    }
}

#[test]
fn zero_initial_scale_needs_the_allow_flag() {
    let config = AutoscalerConfig::from_map(&map(&[
        ("initial-scale", "0"),
        ("allow-zero-initial-scale", "true"),
    ]))
    .expect("valid");
    assert_eq!(config.initial_scale, 0);
}
