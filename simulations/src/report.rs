//! Per-policy results: the numbers of every service added up, percentiles over every
//! request, a terminal table and JSON.

use serde::Serialize;

use crate::engine::Outcome;

/// One policy's results on one trace.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub policy: String,
    pub requests: u64,
    /// Replica-seconds (GPU-seconds for GPU replicas): the cost.
    pub replica_seconds: f64,
    /// Requests that had to wait for a replica to start or free up in the activator.
    pub cold_starts: u64,
    pub cold_start_share: f64,
    pub replica_starts: u64,
    pub p50_wait_ms: f64,
    pub p99_wait_ms: f64,
    pub max_wait_ms: f64,
    /// Time to first token (wait plus prefill); only for LLM traces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p50_ttft_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_ttft_ms: Option<f64>,
    pub dropped: u64,
}

/// Adds up `outcomes` (one per service) of `policy`.
pub fn summarise(policy: &str, outcomes: &[Outcome], llm: bool) -> Summary {
    let mut waits: Vec<f64> = outcomes
        .iter()
        .flat_map(|o| o.waits.iter().copied())
        .collect();
    let mut ttfts: Vec<f64> = if llm {
        outcomes
            .iter()
            .flat_map(|o| o.ttfts.iter().copied())
            .collect()
    } else {
        Vec::new()
    };
    waits.sort_by(f64::total_cmp);
    ttfts.sort_by(f64::total_cmp);
    let dropped: u64 = outcomes.iter().map(|o| o.dropped).sum();
    let requests = waits.len() as u64 + dropped;
    let cold: u64 = outcomes.iter().map(|o| o.cold).sum();
    let ms = |v: Option<f64>| v.map_or(0.0, |s| round3(s * 1000.0));
    Summary {
        policy: policy.to_string(),
        requests,
        replica_seconds: round3(outcomes.iter().map(|o| o.replica_seconds).sum()),
        cold_starts: cold,
        cold_start_share: if requests == 0 {
            0.0
        } else {
            round3(cold as f64 / requests as f64 * 100.0) / 100.0
        },
        replica_starts: outcomes.iter().map(|o| o.starts).sum(),
        p50_wait_ms: ms(percentile(&waits, 50.0)),
        p99_wait_ms: ms(percentile(&waits, 99.0)),
        max_wait_ms: ms(waits.last().copied()),
        p50_ttft_ms: llm.then(|| ms(percentile(&ttfts, 50.0))),
        p99_ttft_ms: llm.then(|| ms(percentile(&ttfts, 99.0))),
        dropped,
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted.get(rank.min(sorted.len()) - 1).copied()
}

/// A fixed-width table, one row per policy.
pub fn table(summaries: &[Summary]) -> String {
    let llm = summaries.iter().any(|s| s.p50_ttft_ms.is_some());
    let mut out = format!(
        "{:<11} {:>9} {:>14} {:>12} {:>7} {:>11} {:>11} {:>11}",
        "policy",
        "requests",
        "replica-s",
        "cold starts",
        "cold%",
        "p50 wait",
        "p99 wait",
        "max wait"
    );
    if llm {
        out.push_str(&format!(" {:>11} {:>11}", "p50 ttft", "p99 ttft"));
    }
    out.push_str(&format!(" {:>8}\n", "dropped"));
    for s in summaries {
        out.push_str(&format!(
            "{:<11} {:>9} {:>14.0} {:>12} {:>6.2}% {:>11} {:>11} {:>11}",
            s.policy,
            s.requests,
            s.replica_seconds,
            s.cold_starts,
            s.cold_start_share * 100.0,
            duration(s.p50_wait_ms),
            duration(s.p99_wait_ms),
            duration(s.max_wait_ms),
        ));
        if llm {
            out.push_str(&format!(
                " {:>11} {:>11}",
                duration(s.p50_ttft_ms.unwrap_or(0.0)),
                duration(s.p99_ttft_ms.unwrap_or(0.0))
            ));
        }
        out.push_str(&format!(" {:>8}\n", s.dropped));
    }
    out
}

fn duration(ms: f64) -> String {
    if ms < 1000.0 {
        format!("{ms:.0}ms")
    } else {
        format!("{:.2}s", ms / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&[3.0], 99.0), Some(3.0));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
