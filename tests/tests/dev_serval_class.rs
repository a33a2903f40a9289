//! Serval's autoscaler class in `serval dev`: an InferenceService annotated with it and
//! called on a schedule learns its idle times, goes to zero between calls, and has a
//! replica ready again before each call arrives, so no call waits for a cold start.

use std::time::{Duration, Instant};

use serval_tests::dev::Dev;
use serval_tests::http_client::{http1, send};
use serval_tests::repo_root;

const V2_BODY: &str =
    r#"{"inputs":[{"name":"input-0","shape":[1,4],"datatype":"FP64","data":[6.8,2.8,4.8,1.4]}]}"#;
/// The client calls this often: long enough for a replica to go and come back.
const PERIOD: Duration = Duration::from_secs(24);
/// Calls 1-4 are learned from (three idle gaps are needed); these are checked.
const CHECKED_CALLS: std::ops::Range<usize> = 5..8;

fn manifest() -> String {
    format!(
        "apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: periodic
  annotations:
    autoscaling.knative.dev/class: serval.autoscaling.serval.dev
    serving.serval.dev/cold-start-budget: \"1%\"
spec:
  predictor:
    minReplicas: 0
    model:
      modelFormat: {{name: xgboost}}
      protocolVersion: v2
      storageUri: {}
",
        repo_root().join("examples/models/iris-xgboost").display()
    )
}

/// The latest live-view line about the service.
fn latest(dev: &Dev) -> String {
    dev.lines
        .lock()
        .unwrap()
        .iter()
        .rev()
        .find(|l| l.starts_with("default/periodic "))
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_periodic_service_is_prewarmed_before_its_calls() {
    let dir = std::env::temp_dir().join(format!("serval-dev-class-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("periodic.yaml");
    std::fs::write(&path, manifest()).unwrap();
    let dev = Dev::start("tick-interval: 1s\n", &[path.to_str().unwrap()]);
    let client = http1();
    let infer = dev.url("/serving/default/periodic/v2/models/periodic/infer");

    // The schedule is the workload: one call every PERIOD from the first answer on.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match send(&client, "POST", &infer, V2_BODY).await {
            Ok(answer) if answer.status == 200 => break,
            _ => {
                assert!(Instant::now() < deadline, "never served: {}", dev.stderr());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let start = tokio::time::Instant::now();
    let mut released_between = Vec::new();
    let mut seen = dev.lines.lock().unwrap().len();
    for call in 2..CHECKED_CALLS.end {
        // The arrival time is the workload itself, not a wait for the system.
        tokio::time::sleep_until(start + PERIOD * (call as u32 - 1)).await;
        let went_to_zero = {
            let lines = dev.lines.lock().unwrap();
            let gap = &lines[seen..];
            seen = lines.len();
            gap.iter()
                .any(|l| l.starts_with("default/periodic ") && l.contains("ready 0/0"))
        };
        let before = latest(&dev);
        let answer = send(&client, "POST", &infer, V2_BODY).await.unwrap();
        assert_eq!(answer.status, 200, "call {call}: {}", answer.body);
        if CHECKED_CALLS.contains(&call) {
            assert!(
                before.contains("ready 1/1"),
                "call {call} arrived with no replica ready: {before}\n{}",
                dev.lines.lock().unwrap().join("\n")
            );
            released_between.push(went_to_zero);
        }
    }
    // Pre-warmed, not kept alive: in the gaps before the checked calls it was at zero.
    assert!(
        released_between.iter().all(|r| *r),
        "{released_between:?}\n{}",
        dev.lines.lock().unwrap().join("\n")
    );
    assert!(
        dev.saw("pre-warm"),
        "{}",
        dev.lines.lock().unwrap().join("\n")
    );
    std::fs::remove_dir_all(dir).ok();
}
