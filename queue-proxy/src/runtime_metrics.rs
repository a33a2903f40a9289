//! The runtime's own queue depth, read from its Prometheus endpoint (e.g. vLLM's
//! `vllm:num_requests_waiting`), for the `queue` scaling metric.

/// Sums every sample of `metric` (all label sets) in a Prometheus text exposition; `None`
/// when the metric is absent.
pub fn sum_metric(exposition: &str, metric: &str) -> Option<f64> {
    let mut total = None;
    for line in exposition.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(metric) else {
            continue;
        };
        // The name must end here: `foo` must not match `foo_total`.
        let after_labels = match rest.chars().next() {
            Some('{') => rest.find('}').map(|end| &rest[end + 1..]),
            Some(' ') | Some('\t') => Some(rest),
            _ => None,
        };
        let value = after_labels
            .and_then(|r| r.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok());
        if let Some(v) = value.filter(|v| v.is_finite()) {
            *total.get_or_insert(0.0) += v;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_label_sets_and_matches_whole_names() {
        let text = "# HELP vllm:num_requests_waiting Waiting.\n\
                    # TYPE vllm:num_requests_waiting gauge\n\
                    vllm:num_requests_waiting{model_name=\"a\"} 3.0\n\
                    vllm:num_requests_waiting{model_name=\"b\",engine=\"0\"} 4\n\
                    vllm:num_requests_waiting_total 100\n\
                    vllm:num_requests_running{model_name=\"a\"} 9\n";
        assert_eq!(sum_metric(text, "vllm:num_requests_waiting"), Some(7.0));
        assert_eq!(
            sum_metric("queue_depth 2 1700000000\n", "queue_depth"),
            Some(2.0)
        );
        assert_eq!(sum_metric(text, "missing"), None);
    }
}
