//! The live loop against real HTTP: stats served on loopback, pokes, and a recording scaler.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serval_api::component::ComponentExtensionSpec;
use serval_api::Stat;
use serval_autoscaler::live::{Autoscaler, PodTarget, RecordingScaler};
use serval_autoscaler::{AutoscalerConfig, ScalingSpec};

fn config() -> AutoscalerConfig {
    let map: BTreeMap<String, String> = [
        ("stable-window", "6s"),
        ("tick-interval", "100ms"),
        ("allow-zero-initial-scale", "true"),
        ("initial-scale", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    AutoscalerConfig::from_map(&map).expect("valid config")
}

fn spec(config: &AutoscalerConfig, container_concurrency: i64) -> ScalingSpec {
    let component = ComponentExtensionSpec {
        min_replicas: Some(0),
        container_concurrency: Some(container_concurrency),
        ..Default::default()
    };
    ScalingSpec::from_annotations(&component, &BTreeMap::new(), "metadata.annotations", config)
        .expect("valid spec")
}

/// A queue-proxy stand-in serving a `Stat` whose concurrency the test sets (milli-units).
async fn stats_server(concurrency_milli: Arc<AtomicU64>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/stats",
        axum::routing::get(move || {
            let c = concurrency_milli.load(Ordering::SeqCst) as f64 / 1000.0;
            async move {
                axum::Json(Stat {
                    pod_name: "p".into(),
                    window_ms: 1000,
                    average_concurrency: c,
                    request_count: 1,
                    ..Stat::default()
                })
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/stats")
}

async fn wait_for(limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not met within {limit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poke_at_zero_scales_to_one_without_waiting_for_a_tick() {
    let mut config = config();
    config.tick_interval = Duration::from_secs(3600);
    let scaler = Arc::new(RecordingScaler::default());
    let autoscaler = Autoscaler::new(config.clone(), scaler.clone());
    autoscaler.upsert_revision("default/iris-predictor-1", spec(&config, 0));
    tokio::spawn(autoscaler.clone().run());
    // The first tick (at start) settles the revision at zero.
    wait_for(Duration::from_secs(5), || {
        scaler.calls().iter().any(|c| c.1 == 0)
    })
    .await;
    assert!(autoscaler.poke("default/iris-predictor-1"));
    assert!(
        !autoscaler.poke("default/unknown"),
        "unknown revisions are refused"
    );
    wait_for(Duration::from_secs(5), || {
        scaler.calls().iter().any(|c| c.1 == 1)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scraped_load_scales_up_and_a_failing_pod_is_skipped() {
    let config = config();
    let scaler = Arc::new(RecordingScaler::default());
    let autoscaler = Autoscaler::new(config.clone(), scaler.clone());
    // containerConcurrency 10: target 7 per pod.
    autoscaler.upsert_revision("default/busy", spec(&config, 10));
    let load = Arc::new(AtomicU64::new(14_000));
    let healthy = stats_server(load.clone()).await;
    autoscaler.set_pods(
        "default/busy",
        vec![
            PodTarget {
                name: "a".into(),
                stats_url: healthy.clone(),
            },
            PodTarget {
                name: "b".into(),
                stats_url: healthy,
            },
            PodTarget {
                name: "dead".into(),
                stats_url: "http://127.0.0.1:9/stats".into(),
            },
        ],
    );
    tokio::spawn(autoscaler.clone().run());
    // 3 ready pods, the dead one skipped rather than read as idle: mean 14 × 3 = 42 → 6
    // pods, twice the ready count, so panic.
    wait_for(Duration::from_secs(10), || {
        scaler.calls().iter().any(|c| c.1 >= 6)
    })
    .await;
    let view = autoscaler.views().into_iter().next().unwrap();
    assert!(view.in_panic, "{view:?}");
    assert_eq!(view.winner.as_deref(), Some("concurrency"));
    assert_eq!(
        view.observed.concurrency, 42.0,
        "shown load is extrapolated to the ready pods"
    );
    let metrics = autoscaler.metrics_text();
    assert!(
        metrics.contains("serval_autoscaler_desired_pods{revision=\"default/busy\"} 6"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revision_of_servals_class_says_what_it_learned_in_the_view_and_metrics() {
    let config = config();
    let scaler = Arc::new(RecordingScaler::default());
    let autoscaler = Autoscaler::new(config.clone(), scaler.clone());
    let component = ComponentExtensionSpec {
        min_replicas: Some(0),
        container_concurrency: Some(4),
        ..Default::default()
    };
    let annotations: BTreeMap<String, String> = [
        (
            "autoscaling.knative.dev/class",
            "serval.autoscaling.serval.dev",
        ),
        ("serving.serval.dev/cold-start-budget", "1%"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let class = ScalingSpec::from_annotations(&component, &annotations, "a", &config).unwrap();
    autoscaler.upsert_revision("default/learns", class);
    autoscaler.upsert_revision("default/kpa", spec(&config, 4));
    let load = Arc::new(AtomicU64::new(2_000));
    let url = stats_server(load).await;
    for revision in ["default/learns", "default/kpa"] {
        autoscaler.set_pods(
            revision,
            vec![PodTarget {
                name: "a".into(),
                stats_url: url.clone(),
            }],
        );
    }
    tokio::spawn(autoscaler.clone().run());
    wait_for(Duration::from_secs(10), || {
        autoscaler
            .views()
            .iter()
            .any(|v| v.revision == "default/learns" && v.desired.is_some())
    })
    .await;
    let views = autoscaler.views();
    let learns = views
        .iter()
        .find(|v| v.revision == "default/learns")
        .unwrap();
    assert!(
        learns.reason.contains("serval class: target 70%"),
        "{}",
        learns.reason
    );
    assert!(
        learns.reason.contains("learning idle times"),
        "{}",
        learns.reason
    );
    let kpa = views.iter().find(|v| v.revision == "default/kpa").unwrap();
    assert!(!kpa.reason.contains("serval class"), "{}", kpa.reason);
    let metrics = autoscaler.metrics_text();
    for gauge in [
        "serval_autoscaler_class_target_utilization{revision=\"default/learns\"} 0.7",
        "serval_autoscaler_class_keep_alive_seconds{revision=\"default/learns\"} 90",
        "serval_autoscaler_class_cold_start_seconds{revision=\"default/learns\"}",
    ] {
        assert!(metrics.contains(gauge), "{gauge} in\n{metrics}");
    }
    assert!(
        !metrics.contains("class_target_utilization{revision=\"default/kpa\"}"),
        "{metrics}"
    );
}

/// `desired` of `revision` as the autoscaler shows it.
fn desired(autoscaler: &Autoscaler<Arc<RecordingScaler>>, revision: &str) -> Option<u32> {
    autoscaler
        .views()
        .into_iter()
        .find(|v| v.revision == revision)
        .and_then(|v| v.desired)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticks_faster_than_a_second_count_each_report_once() {
    // Ten ticks a second; a pod's /stats and an activator's report each describe one second.
    let config = config();
    let scaler = Arc::new(RecordingScaler::default());
    let autoscaler = Autoscaler::new(config.clone(), scaler.clone());
    // containerConcurrency 10: target 7 per pod, so a load of 14 asks for 2.
    autoscaler.upsert_revision("default/scraped", spec(&config, 10));
    autoscaler.upsert_revision("default/held", spec(&config, 10));
    let load = Arc::new(AtomicU64::new(14_000));
    autoscaler.set_pods(
        "default/scraped",
        vec![PodTarget {
            name: "a".into(),
            stats_url: stats_server(load).await,
        }],
    );
    tokio::spawn(autoscaler.clone().run());
    // One activator report, never repeated: 14 requests held through the last second.
    let report = Stat {
        pod_name: "activator-1".into(),
        window_ms: 1000,
        average_concurrency: 14.0,
        request_count: 14,
        held_request_count: 14,
        ..Stat::default()
    };
    assert!(autoscaler.report_from_activator("default/held", report, 0));
    wait_for(Duration::from_secs(5), || {
        desired(&autoscaler, "default/scraped") == Some(2)
            && desired(&autoscaler, "default/held") == Some(2)
    })
    .await;
    // Counted once per tick instead, the same second would hold 14 several times over and
    // ask for more within a few ticks: watch two seconds (twenty ticks) of decisions.
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(2) {
        for revision in ["default/scraped", "default/held"] {
            let now = desired(&autoscaler, revision);
            assert!(now.is_some_and(|d| d <= 2), "{revision}: desired {now:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
