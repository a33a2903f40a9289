//! Adaptive batching in the real binary: concurrent callers are merged into fewer model
//! calls, and each gets exactly its own rows back.

use serde_json::{json, Value};
use serval_tests::http_client::{get, http1, send};
use serval_tests::runtime::{test_models, Runtime};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_each_get_their_own_rows() {
    let dir = test_models().join("xgb-regression");
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let rows = expected["inputs"].as_array().unwrap().clone();
    let predictions = expected["predictions"].as_array().unwrap().clone();
    let runtime =
        Runtime::start("reg", &dir, &["--max-batch-size=64", "--max-latency-ms=50"]).await;

    const CALLERS: usize = 24;
    let calls: Vec<_> = (0..CALLERS)
        .map(|i| {
            // Callers send 1 to 3 rows each, from different places in the fixture.
            let n = 1 + i % 3;
            let start = (i * 5) % (rows.len() - n);
            let body = json!({ "instances": rows[start..start + n] }).to_string();
            let url = format!("{}/v1/models/reg:predict", runtime.url);
            tokio::spawn(async move { (start, n, send(&http1(), "POST", &url, &body).await) })
        })
        .collect();
    for call in calls {
        let (start, n, answer) = call.await.unwrap();
        let answer = answer.unwrap();
        assert_eq!(answer.status, 200, "{}", answer.body);
        let got = answer.json()["predictions"].as_array().unwrap().clone();
        assert_eq!(got.len(), n);
        for (g, w) in got.iter().zip(&predictions[start..start + n]) {
            let (g, w) = (g.as_f64().unwrap(), w.as_f64().unwrap());
            assert!(
                (g - w).abs() <= 1e-5 * w.abs().max(1.0),
                "rows from {start}: {g} vs {w}"
            );
        }
    }

    let metrics = get(&http1(), &format!("{}/metrics", runtime.url))
        .await
        .unwrap()
        .body;
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {metrics}"))
    };
    let (calls, merged) = (
        value("serval_runtime_batch_requests_count"),
        value("serval_runtime_batch_requests_sum"),
    );
    assert_eq!(merged as usize, CALLERS, "{metrics}");
    assert!(
        calls < CALLERS as f64,
        "{CALLERS} requests took {calls} model calls: no batching"
    );
}
