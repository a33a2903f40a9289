//! Turning per-pod `Stat`s into revision-wide totals, the way Knative's scraper does: scrape
//! a sample of the ready pods, average it, and extrapolate to all of them.

use serval_api::component::ScaleMetric;
use serval_api::Stat;

use crate::metrics::MetricSample;

/// How many ready pods to scrape for a mean within ±5 (σ² = 100) at 95% confidence:
/// n = N·X / (N + X − 1) with X = 1.96² · 100 / 5² ≈ 15.37, all pods up to 3. It never
/// exceeds 16, however many pods there are.
pub fn sample_size(ready_pods: u32) -> u32 {
    if ready_pods <= 3 {
        return ready_pods;
    }
    let x = 1.96 * 1.96 * 100.0 / (5.0 * 5.0);
    let n = f64::from(ready_pods);
    (n * x / (n + x - 1.0)).ceil() as u32
}

/// Revision totals from the stats of the pods that were scraped this tick, extrapolated to
/// `ready_pods`. Concurrency and requests that came through the activator are left out:
/// the activator reports them itself (see [`activator_sample`]). A metric no scraped pod
/// reports (a runtime without a queue gauge, a pod without a GPU) stays absent. `tokens` is
/// the replicas' token work in output tokens: output tokens plus `prompt_token_cost` per
/// prompt token.
pub fn pod_sample(stats: &[Stat], ready_pods: u32, prompt_token_cost: f64) -> MetricSample {
    let mut sample = MetricSample::new();
    if stats.is_empty() || ready_pods == 0 {
        return sample;
    }
    let pods = f64::from(ready_pods);
    let mut extrapolate = |metric, values: Vec<f64>| {
        if let Some(mean) = mean(&values) {
            sample.set(metric, mean * pods);
        }
    };
    extrapolate(
        ScaleMetric::Concurrency,
        stats
            .iter()
            .filter_map(|s| finite(s.average_concurrency - s.average_proxied_concurrency))
            .map(|c| c.max(0.0))
            .collect(),
    );
    extrapolate(
        ScaleMetric::Rps,
        stats
            .iter()
            .filter_map(|s| {
                let direct = s.request_count.saturating_sub(s.proxied_request_count);
                per_second(direct as f64, s.window_ms)
            })
            .collect(),
    );
    extrapolate(
        ScaleMetric::Tokens,
        stats
            .iter()
            .filter_map(|s| {
                let prompt = s.prompt_tokens as f64 * prompt_token_cost.max(0.0);
                per_second(s.output_tokens as f64 + prompt, s.window_ms)
            })
            .collect(),
    );
    extrapolate(
        ScaleMetric::Queue,
        stats
            .iter()
            .filter_map(|s| s.runtime_queue_depth.and_then(finite))
            .map(|q| q.max(0.0))
            .collect(),
    );
    // Summed over pods, a utilisation percentage divided by the per-pod target gives the
    // pods needed, as the HPA computes it.
    extrapolate(
        ScaleMetric::Gpu,
        stats
            .iter()
            .filter_map(|s| s.gpu.as_ref().and_then(|g| finite(g.utilization_percent)))
            .map(|u| u.clamp(0.0, 100.0))
            .collect(),
    );
    // cpu and memory are not measured by queue-proxy yet: they stay absent.
    sample
}

/// Revision totals from the activators' reports for this revision: the requests they hold
/// or are proxying, which the pods' own stats leave out.
pub fn activator_sample(stats: &[Stat]) -> MetricSample {
    let mut sample = MetricSample::new();
    if stats.is_empty() {
        return sample;
    }
    let concurrency: f64 = stats
        .iter()
        .filter_map(|s| finite(s.average_concurrency))
        .map(|c| c.max(0.0))
        .sum();
    sample.set(ScaleMetric::Concurrency, concurrency);
    let rates: Vec<f64> = stats
        .iter()
        .filter_map(|s| per_second(s.request_count as f64, s.window_ms))
        .collect();
    if !rates.is_empty() {
        sample.set(ScaleMetric::Rps, rates.iter().sum());
    }
    sample.set_held_requests(stats.iter().map(|s| s.held_request_count as f64).sum());
    sample
}

/// Two consecutive windows of one reporter as one: counts add up, averages are weighted by
/// each window's length. For reports that arrive faster than they are recorded, so none is
/// lost and none counts twice.
pub(crate) fn merge_windows(earlier: &Stat, later: Stat) -> Stat {
    let window_ms = earlier.window_ms.saturating_add(later.window_ms);
    let weighted = |a: f64, b: f64| {
        if window_ms == 0 {
            b
        } else {
            (a * earlier.window_ms as f64 + b * later.window_ms as f64) / window_ms as f64
        }
    };
    Stat {
        window_ms,
        average_concurrency: weighted(earlier.average_concurrency, later.average_concurrency),
        average_proxied_concurrency: weighted(
            earlier.average_proxied_concurrency,
            later.average_proxied_concurrency,
        ),
        request_count: earlier.request_count.saturating_add(later.request_count),
        proxied_request_count: earlier
            .proxied_request_count
            .saturating_add(later.proxied_request_count),
        proxied_bytes: earlier.proxied_bytes.saturating_add(later.proxied_bytes),
        output_tokens: earlier.output_tokens.saturating_add(later.output_tokens),
        prompt_tokens: earlier.prompt_tokens.saturating_add(later.prompt_tokens),
        held_request_count: earlier
            .held_request_count
            .saturating_add(later.held_request_count),
        ..later
    }
}

fn finite(value: f64) -> Option<f64> {
    value.is_finite().then_some(value)
}

/// An amount over a window as a rate; a window of no length tells nothing.
fn per_second(amount: f64, window_ms: u64) -> Option<f64> {
    (window_ms > 0).then(|| amount * 1000.0 / window_ms as f64)
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serval_api::stat::GpuStat;

    #[test]
    fn sample_size_follows_knatives_formula() {
        let cases = [
            (0, 0),
            (1, 1),
            (3, 3),
            (4, 4),
            (10, 7),
            (100, 14),
            (1000, 16),
            (u32::MAX, 16),
        ];
        for (pods, want) in cases {
            assert_eq!(sample_size(pods), want, "{pods} pods");
        }
    }

    fn stat(concurrency: f64, proxied: f64, requests: u64, proxied_requests: u64) -> Stat {
        Stat {
            pod_name: "p".into(),
            window_ms: 2000,
            average_concurrency: concurrency,
            average_proxied_concurrency: proxied,
            request_count: requests,
            proxied_request_count: proxied_requests,
            ..Stat::default()
        }
    }

    #[test]
    fn extrapolates_the_sampled_mean_and_leaves_out_proxied_requests() {
        let stats = [stat(4.0, 1.0, 20, 4), stat(2.0, 1.0, 10, 2)];
        let sample = pod_sample(&stats, 10, 0.1);
        // Direct concurrency 3 and 1: mean 2 over 10 pods.
        assert_eq!(sample.get(ScaleMetric::Concurrency), Some(20.0));
        // Direct requests 16 and 8 over 2 s: 8 and 4 per second, mean 6 over 10 pods.
        assert_eq!(sample.get(ScaleMetric::Rps), Some(60.0));
        assert_eq!(sample.get(ScaleMetric::Tokens), Some(0.0));
        assert_eq!(sample.get(ScaleMetric::Queue), None);
        assert_eq!(sample.get(ScaleMetric::Gpu), None);
        assert_eq!(sample.get(ScaleMetric::Cpu), None);
    }

    #[test]
    fn tokens_queue_and_gpu_come_from_the_pods_that_report_them() {
        let with_gpu = Stat {
            output_tokens: 3000,
            runtime_queue_depth: Some(6.0),
            gpu: Some(GpuStat {
                devices: 1,
                utilization_percent: 90.0,
                ..GpuStat::default()
            }),
            ..stat(1.0, 0.0, 1, 0)
        };
        let without_gpu = Stat {
            output_tokens: 1000,
            ..stat(1.0, 0.0, 1, 0)
        };
        let sample = pod_sample(&[with_gpu, without_gpu], 4, 0.1);
        assert_eq!(sample.get(ScaleMetric::Tokens), Some(4000.0));
        assert_eq!(sample.get(ScaleMetric::Queue), Some(24.0));
        assert_eq!(sample.get(ScaleMetric::Gpu), Some(360.0));
    }

    #[test]
    fn prompt_tokens_count_at_their_cost_in_output_tokens() {
        let long_prompts = Stat {
            output_tokens: 200,
            prompt_tokens: 8000,
            ..stat(1.0, 0.0, 1, 0)
        };
        // 2 s window: (200 + 0.05 × 8000) / 2 = 300 output tokens/s of work, on 3 pods.
        let sample = pod_sample(std::slice::from_ref(&long_prompts), 3, 0.05);
        assert_eq!(sample.get(ScaleMetric::Tokens), Some(900.0));
        // A cost of 0 scales on output tokens alone.
        let sample = pod_sample(&[long_prompts], 3, 0.0);
        assert_eq!(sample.get(ScaleMetric::Tokens), Some(300.0));
    }

    #[test]
    fn nothing_scraped_is_no_sample_and_bad_numbers_are_dropped() {
        assert!(pod_sample(&[], 3, 0.1).is_empty());
        assert!(pod_sample(&[stat(1.0, 0.0, 1, 0)], 0, 0.1).is_empty());
        let broken = Stat {
            window_ms: 0,
            ..stat(f64::NAN, 0.0, 5, 0)
        };
        let sample = pod_sample(&[broken], 2, 0.1);
        assert_eq!(sample.get(ScaleMetric::Concurrency), None);
        assert_eq!(sample.get(ScaleMetric::Rps), None);
    }

    #[test]
    fn activators_report_what_they_hold() {
        let sample = activator_sample(&[stat(3.0, 0.0, 4, 0), stat(2.0, 0.0, 2, 0)]);
        assert_eq!(sample.get(ScaleMetric::Concurrency), Some(5.0));
        assert_eq!(sample.get(ScaleMetric::Rps), Some(3.0));
        assert!(activator_sample(&[]).is_empty());
    }

    #[test]
    fn two_windows_of_one_reporter_merge_into_one_without_loss() {
        let first = Stat {
            window_ms: 1000,
            average_concurrency: 2.0,
            request_count: 10,
            held_request_count: 4,
            ..Stat::default()
        };
        let second = Stat {
            window_ms: 3000,
            average_concurrency: 6.0,
            request_count: 30,
            held_request_count: 1,
            ..Stat::default()
        };
        let merged = merge_windows(&first, second);
        assert_eq!(merged.window_ms, 4000);
        assert_eq!(merged.average_concurrency, 5.0, "weighted by window length");
        assert_eq!(merged.request_count, 40);
        assert_eq!(merged.held_request_count, 5);
        let sample = activator_sample(&[merged]);
        assert_eq!(sample.get(ScaleMetric::Rps), Some(10.0));
    }
}
