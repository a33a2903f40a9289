//! Autoscaler cost, printed as a table: deciding 1,000 revisions per tick with full windows,
//! and poke-to-decision latency (first request at zero until the scale call is issued).
//!
//! cargo bench -p serval-autoscaler --bench decide

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serval_api::component::ComponentExtensionSpec;
use serval_autoscaler::live::{Autoscaler, RecordingScaler};
use serval_autoscaler::{
    AutoscalerConfig, Decider, MetricSample, MetricWindows, ScaleMetric, ScalingSpec,
};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn spec(config: &AutoscalerConfig) -> ScalingSpec {
    let component = ComponentExtensionSpec {
        min_replicas: Some(0),
        container_concurrency: Some(4),
        ..Default::default()
    };
    ScalingSpec::from_annotations(&component, &BTreeMap::new(), "metadata.annotations", config)
        .expect("valid spec")
}

fn decide_many(revisions: usize, ticks: usize) -> Vec<Duration> {
    let config = AutoscalerConfig::default();
    let spec = spec(&config);
    let start = Instant::now();
    let mut state: Vec<(Decider, MetricWindows)> = (0..revisions)
        .map(|_| {
            (
                Decider::new(spec.clone(), start),
                MetricWindows::new(start, &spec),
            )
        })
        .collect();
    // A full stable window of history, as a busy cluster has.
    for second in 0..60u64 {
        let at = start + Duration::from_secs(second);
        for (i, (_, windows)) in state.iter_mut().enumerate() {
            let mut sample = MetricSample::new();
            sample.set(
                ScaleMetric::Concurrency,
                ((i + second as usize) % 17) as f64,
            );
            sample.set(ScaleMetric::Rps, ((i * 3 + second as usize) % 50) as f64);
            windows.record(at, &sample);
        }
    }
    let mut per_tick = Vec::with_capacity(ticks);
    for tick in 0..ticks {
        let now = start + Duration::from_secs(60 + tick as u64);
        let began = Instant::now();
        for (i, (decider, windows)) in state.iter_mut().enumerate() {
            let decision = decider.decide(now, windows, (i % 8) as u32 + 1, 0);
            std::hint::black_box(decision);
        }
        per_tick.push(began.elapsed());
    }
    per_tick.sort();
    per_tick
}

async fn poke_latency(pokes: usize) -> Vec<Duration> {
    let mut config = AutoscalerConfig::from_map(
        &[("allow-zero-initial-scale", "true"), ("initial-scale", "0")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
    .expect("valid config");
    config.tick_interval = Duration::from_secs(3600);
    let scaler = Arc::new(RecordingScaler::default());
    let autoscaler = Autoscaler::new(config.clone(), scaler.clone());
    let names: Vec<String> = (0..pokes)
        .map(|i| format!("default/model-{i}-predictor-1"))
        .collect();
    for name in &names {
        autoscaler.upsert_revision(name, spec(&config));
    }
    tokio::spawn(autoscaler.clone().run());
    // Wait for the first tick to settle every revision at zero.
    while scaler.calls().len() < pokes {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut latencies = Vec::with_capacity(pokes);
    for name in &names {
        let before = scaler.calls().len();
        let poked = Instant::now();
        autoscaler.poke(name);
        loop {
            let calls = scaler.calls();
            if calls.len() > before {
                latencies.push(calls[before].2.duration_since(poked));
                break;
            }
            tokio::task::yield_now().await;
        }
    }
    latencies.sort();
    latencies
}

fn main() {
    println!("| measurement | p50 | p99 | max |");
    println!("|---|---:|---:|---:|");
    for revisions in [100, 1_000, 10_000] {
        let ticks = decide_many(revisions, 50);
        println!(
            "| decide {revisions} revisions (one tick, 2 metrics, full 60 s windows) | {:.3} ms | {:.3} ms | {:.3} ms |",
            percentile(&ticks, 0.5).as_secs_f64() * 1e3,
            percentile(&ticks, 0.99).as_secs_f64() * 1e3,
            ticks.last().unwrap().as_secs_f64() * 1e3
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pokes = runtime.block_on(poke_latency(500));
    println!(
        "| poke to scale call (500 revisions at zero, one poke each) | {:.1} µs | {:.1} µs | {:.1} µs |",
        percentile(&pokes, 0.5).as_secs_f64() * 1e6,
        percentile(&pokes, 0.99).as_secs_f64() * 1e6,
        pokes.last().unwrap().as_secs_f64() * 1e6
    );
}
