//! `serval dev` beyond one predictor, through the real binary: a canary takes its share of
//! the traffic and promotion moves all of it; `latest-`/`prev-` tags reach each revision of a
//! canary; a transformer is the service's entry and calls its predictor through the
//! activator; an explainer answers `:explain`. The model servers are the small stdlib Python
//! programs in `tests/python/` (and `serval runtime` for the explainer's predictor).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serval_tests::http_client::{http1, send_with_headers, Answer, TestClient};
use serval_tests::{collect_lines, lease_port, repo_root, serval_bin, PortLease};

const SHORT_WINDOWS: &str = "stable-window: 6s\nscale-to-zero-grace-period: 1s\n";
const ISVC: &str = "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\n";
const PREDICT: &str = "/v1/models/iris:predict";
/// What the explainer's predictor, `serval runtime` on the XGBoost iris model, answers.
const IRIS_INSTANCE: &str = r#"{"instances": [[6.8, 2.8, 4.8, 1.4]]}"#;
const IRIS_SCORES: [f64; 3] = [
    0.005580267868936062,
    0.9711697697639465,
    0.02324996143579483,
];

/// `serval dev` with its live-view lines and stderr collected.
struct Dev {
    child: Child,
    port: u16,
    /// Its listening port, held while it runs.
    _lease: PortLease,
    lines: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Dev {
    fn start(dir: &Path, manifest: &Path) -> Dev {
        let lease = lease_port();
        let port = lease.port();
        let config_file = dir.join("autoscaler.yaml");
        std::fs::write(&config_file, SHORT_WINDOWS).unwrap();
        let mut child = Command::new(serval_bin())
            .current_dir(repo_root())
            .arg("dev")
            .arg(format!("--listen=127.0.0.1:{port}"))
            .arg(format!("--config={}", config_file.display()))
            .arg(format!("--log-dir={}", dir.join("logs").display()))
            .arg(manifest)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start serval dev");
        let lines = collect_lines(child.stdout.take().unwrap());
        let stderr = collect_lines(child.stderr.take().unwrap());
        Dev {
            child,
            port,
            _lease: lease,
            lines,
            stderr,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Whether one live-view line held every needle.
    fn saw_all(&self, needles: &[&str]) -> bool {
        let lines = self.lines.lock().unwrap();
        lines.iter().any(|l| needles.iter().all(|n| l.contains(n)))
    }

    /// Whether the live view showed `revision` (of namespace `default`) with `share` of its
    /// component's traffic and its one replica ready.
    fn saw_share(&self, revision: &str, share: &str) -> bool {
        self.saw_all(&[
            &format!("default/{revision} "),
            &format!(" {share:>4} ready 1/1 "),
        ])
    }

    /// What `serval dev` printed, for a failure message.
    fn output(&self) -> String {
        let lines = self.lines.lock().unwrap();
        let view = lines[lines.len().saturating_sub(20)..].join("\n");
        format!(
            "--- live view (last lines) ---\n{view}\n--- stderr ---\n{}",
            self.stderr.lock().unwrap().join("\n")
        )
    }

    async fn wait_until(&self, limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + limit;
        while !check() {
            assert!(
                Instant::now() < deadline,
                "{what} within {limit:?}\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends until `path` answers 200 within a minute: the activator holds a request while
    /// replicas start, and longer than that when they never do.
    async fn first_answer(&self, client: &TestClient, path: &str, body: &str) -> Answer {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = Err("no answer".to_string());
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, call(client, &self.url(path), &[], body)).await {
                Ok(Ok(answer)) if answer.status == 200 => return answer,
                Ok(answer) => last = answer,
                Err(_) => {}
            }
            assert!(
                Instant::now() < deadline,
                "no 200 from {path} within 60 s; last answer: {last:?}\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Ctrl-C: `serval dev` drains everything and exits 0.
    async fn interrupt_and_expect_clean_exit(mut self) {
        Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let code = loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                break status.code();
            }
            assert!(
                Instant::now() < deadline,
                "serval dev still running 30 s after Ctrl-C\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(code, Some(0), "Ctrl-C exits cleanly\n{}", self.output());
    }
}

impl Drop for Dev {
    /// A failed test still stops `serval dev` the clean way, so its replicas go with it.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .args(["-INT", &self.child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh directory for one test's manifest, config and replica logs.
fn test_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "serval-dev-components-{test}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Replaces the manifest in one step, so `serval dev` never reads half a file.
fn write_manifest(path: &Path, text: &str) {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, text).unwrap();
    std::fs::rename(&partial, path).unwrap();
}

/// A `tests/python/` program as a local container's command.
fn python(script: &str) -> String {
    let path = repo_root().join("tests/python").join(script);
    format!("[python3, {:?}]", path.display().to_string())
}

/// `iris`, served by `version_server.py --version <version>` with one warm replica.
fn versioned_iris(version: u32, canary: Option<u32>, annotations: &str) -> String {
    let canary = canary.map_or(String::new(), |p| {
        format!("    canaryTrafficPercent: {p}\n")
    });
    format!(
        "{ISVC}metadata:\n  name: iris\n{annotations}spec:\n  predictor:\n    minReplicas: 1\n{canary}    containers:\n      - name: kserve-container\n        image: local\n        command: {}\n        args: [\"--version\", \"{version}\"]\n",
        python("version_server.py")
    )
}

/// POST `body` to `url` with extra headers (`host` included).
async fn call(
    client: &TestClient,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<Answer, String> {
    send_with_headers(client, "POST", url, headers, body).await
}

/// Sends `count` predictions, `concurrency` at a time; how many each version answered, and
/// every request that did not get a 200 with a version.
async fn versions_of(
    client: &TestClient,
    url: &str,
    headers: &[(&str, &str)],
    count: usize,
    concurrency: usize,
) -> (std::collections::BTreeMap<String, usize>, Vec<String>) {
    let body = r#"{"instances": [[1.0, 2.0]]}"#;
    let answers: Vec<_> = futures_util::stream::iter(0..count)
        .map(|_| call(client, url, headers, body))
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut versions = std::collections::BTreeMap::new();
    let mut failed = Vec::new();
    for answer in answers {
        match answer {
            Ok(a) if a.status == 200 => match a.json()["version"].as_str() {
                Some(v) => *versions.entry(v.to_string()).or_insert(0) += 1,
                None => failed.push(format!("200 without a version: {}", a.body)),
            },
            Ok(a) => failed.push(format!("{} {}", a.status, a.body)),
            Err(e) => failed.push(e),
        }
    }
    (versions, failed)
}

/// Starts `iris` at version 1, then edits it into a 20% canary of version 2 and waits until
/// the live view shows both revisions ready with their shares.
async fn start_canary(dir: &Path, annotations: &str) -> (Dev, PathBuf) {
    let manifest = dir.join("iris.yaml");
    write_manifest(&manifest, &versioned_iris(1, None, annotations));
    let dev = Dev::start(dir, &manifest);
    dev.wait_until(
        Duration::from_secs(60),
        "revision 1 ready with all the traffic",
        || dev.saw_share("iris-predictor-1", "100%"),
    )
    .await;
    write_manifest(&manifest, &versioned_iris(2, Some(20), annotations));
    dev.wait_until(
        Duration::from_secs(60),
        "revision 2 ready with 20% and revision 1 with 80%",
        || dev.saw_share("iris-predictor-2", "20%") && dev.saw_share("iris-predictor-1", "80%"),
    )
    .await;
    (dev, manifest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_takes_its_share_and_promotion_moves_everything() {
    let dir = test_dir("canary");
    let (dev, manifest) = start_canary(&dir, "").await;
    let client = http1();
    let url = dev.url(&format!("/serving/default/iris{PREDICT}"));

    let (versions, failed) = versions_of(&client, &url, &[], 2000, 32).await;
    assert!(
        failed.is_empty(),
        "{} of 2000 failed during the canary: {:?}\n{}",
        failed.len(),
        &failed[..failed.len().min(5)],
        dev.output()
    );
    let canary = versions.get("2").copied().unwrap_or(0);
    let share = canary as f64 / 20.0;
    eprintln!("canary share: {share:.2}% ({versions:?})");
    assert!(
        (17.0..=23.0).contains(&share),
        "version 2 answered {share:.2}% of 2000, not 20 ± 3: {versions:?}"
    );
    assert_eq!(canary + versions.get("1").copied().unwrap_or(0), 2000);

    // Promotion: without canaryTrafficPercent the latest takes everything, the old drains.
    write_manifest(&manifest, &versioned_iris(2, None, ""));
    dev.wait_until(
        Duration::from_secs(60),
        "revision 2 promoted to 100%",
        || dev.saw_share("iris-predictor-2", "100%"),
    )
    .await;
    dev.wait_until(Duration::from_secs(30), "revision 1 drained", || {
        dev.stderr
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("default/iris-predictor-1: no longer routed"))
    })
    .await;
    let (versions, failed) = versions_of(&client, &url, &[], 200, 32).await;
    assert!(failed.is_empty(), "{failed:?}\n{}", dev.output());
    assert_eq!(
        versions.get("2"),
        Some(&200),
        "all of 200 to the promoted revision: {versions:?}"
    );
    assert!(
        !dev.saw_all(&["default/iris-predictor-3"]),
        "promotion makes no new revision\n{}",
        dev.output()
    );
    dev.interrupt_and_expect_clean_exit().await;
    std::fs::remove_dir_all(dir).unwrap();
}

/// A tagged request: URL, headers, and the version every answer must come from.
type TagCase<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_reach_latest_and_prev_during_a_canary() {
    let dir = test_dir("tags");
    let annotations = "  annotations:\n    serving.kserve.io/enable-tag-routing: \"true\"\n";
    let (dev, _manifest) = start_canary(&dir, annotations).await;
    let client = http1();
    let by_host = dev.url(PREDICT);

    let prev_path = dev.url(&format!("/serving/default/prev-iris{PREDICT}"));
    let latest_path = dev.url(&format!("/serving/default/latest-iris{PREDICT}"));
    let latest_predictor_path =
        dev.url(&format!("/serving/default/latest-iris-predictor{PREDICT}"));
    let service = dev.url(&format!("/serving/default/iris{PREDICT}"));
    let cases: [TagCase; 9] = [
        (
            &by_host,
            vec![("host", "latest-iris.default.example.com")],
            "2",
        ),
        (
            &by_host,
            vec![("host", "prev-iris.default.example.com")],
            "1",
        ),
        (
            &by_host,
            vec![("host", "latest-iris-predictor.default.example.com")],
            "2",
        ),
        (
            &by_host,
            vec![("host", "prev-iris-predictor.default.example.com:80")],
            "1",
        ),
        (&prev_path, vec![], "1"),
        (&latest_path, vec![], "2"),
        (&latest_predictor_path, vec![], "2"),
        (
            &by_host,
            vec![
                ("host", "iris.default.example.com"),
                ("x-serval-revision-tag", "prev"),
            ],
            "1",
        ),
        (&service, vec![("x-serval-revision-tag", "latest")], "2"),
    ];
    for (url, headers, want) in &cases {
        let (versions, failed) = versions_of(&client, url, headers, 100, 8).await;
        assert!(
            failed.is_empty(),
            "{url} {headers:?}: {failed:?}\n{}",
            dev.output()
        );
        assert_eq!(
            versions.get(*want),
            Some(&100),
            "{url} {headers:?}: every answer from version {want}: {versions:?}"
        );
    }

    // An unknown tag is a 404 with KServe's JSON error, by host and by header.
    for headers in [
        vec![("host", "canary-iris.default.example.com")],
        vec![
            ("host", "iris.default.example.com"),
            ("x-serval-revision-tag", "nope"),
        ],
    ] {
        let answer = call(&client, &by_host, &headers, IRIS_INSTANCE)
            .await
            .unwrap();
        assert_eq!(answer.status, 404, "{headers:?}: {}", answer.body);
        assert!(
            answer.json()["error"].is_string(),
            "{headers:?}: JSON error: {}",
            answer.body
        );
    }
    dev.interrupt_and_expect_clean_exit().await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transformer_calls_its_predictor_through_the_activator() {
    let dir = test_dir("transformer");
    let manifest = dir.join("iris.yaml");
    let text = format!(
        "{ISVC}metadata:\n  name: iris\nspec:\n  transformer:\n    minReplicas: 1\n    containers:\n      - name: transformer\n        image: local\n        command: {}\n{}",
        python("transformer.py"),
        versioned_iris(1, None, "")
            .split_once("spec:\n")
            .unwrap()
            .1
    );
    write_manifest(&manifest, &text);
    let dev = Dev::start(&dir, &manifest);
    let client = http1();
    let body = r#"{"instances": [[1.5, 2.0], [3.0, 4.25]]}"#;
    let scaled = [[15.0, 20.0], [30.0, 42.5]];

    let answer = dev
        .first_answer(&client, &format!("/serving/default/iris{PREDICT}"), body)
        .await
        .json();
    // The predictor saw what the transformer made of the input, and the transformer was given
    // the activator as its predictor host.
    assert_eq!(answer["transformed"], true, "{answer}");
    assert_eq!(answer["version"], "1", "{answer}");
    assert_eq!(
        answer["predictor_host"],
        format!("127.0.0.1:{}/serving/default/iris-predictor", dev.port),
        "{answer}"
    );
    let predictions: Vec<Vec<f64>> = serde_json::from_value(answer["predictions"].clone()).unwrap();
    assert_eq!(predictions, scaled, "{answer}");

    // By Host as on Kubernetes: the transformer is the service's entry.
    let by_host = call(
        &client,
        &dev.url(PREDICT),
        &[("host", "iris.default.example.com")],
        body,
    )
    .await
    .unwrap();
    assert_eq!(by_host.status, 200, "{}", by_host.body);
    assert_eq!(by_host.json()["transformed"], true, "{}", by_host.body);
    // The predictor on its own answers the input untransformed.
    let direct = call(
        &client,
        &dev.url(&format!("/serving/default/iris-predictor{PREDICT}")),
        &[],
        body,
    )
    .await
    .unwrap();
    assert_eq!(direct.status, 200, "{}", direct.body);
    assert!(
        direct.json().get("transformed").is_none(),
        "{}",
        direct.body
    );
    let untransformed: Vec<Vec<f64>> =
        serde_json::from_value(direct.json()["predictions"].clone()).unwrap();
    assert_eq!(untransformed, [[1.5, 2.0], [3.0, 4.25]]);

    dev.wait_until(
        Duration::from_secs(10),
        "both components in the live view, ready",
        || dev.saw_share("iris-transformer-1", "100%") && dev.saw_share("iris-predictor-1", "100%"),
    )
    .await;
    dev.interrupt_and_expect_clean_exit().await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explainer_answers_explain() {
    let dir = test_dir("explainer");
    let manifest = dir.join("iris.yaml");
    let model = repo_root().join("examples/models/iris-xgboost");
    let text = format!(
        "{ISVC}metadata:\n  name: iris\nspec:\n  predictor:\n    minReplicas: 1\n    model:\n      modelFormat: {{name: xgboost}}\n      storageUri: {:?}\n  explainer:\n    minReplicas: 1\n    containers:\n      - name: explainer\n        image: local\n        command: {}\n",
        model.display().to_string(),
        python("explainer.py")
    );
    write_manifest(&manifest, &text);
    let dev = Dev::start(&dir, &manifest);
    let client = http1();

    let explained = dev
        .first_answer(
            &client,
            "/serving/default/iris/v1/models/iris:explain",
            IRIS_INSTANCE,
        )
        .await
        .json();
    let scores: Vec<Vec<f64>> = serde_json::from_value(explained["predictions"].clone())
        .unwrap_or_else(|e| panic!("{e}: {explained}"));
    assert_eq!(scores, [IRIS_SCORES], "{explained}");
    assert_eq!(
        explained["explanations"][0]["class"], 1,
        "the explainer's reading of the predictor's scores: {explained}"
    );

    // By Host too; and `:predict` on the same service is the predictor's, unexplained.
    let by_host = call(
        &client,
        &dev.url("/v1/models/iris:explain"),
        &[("host", "iris.default.example.com")],
        IRIS_INSTANCE,
    )
    .await
    .unwrap();
    assert_eq!(by_host.status, 200, "{}", by_host.body);
    assert_eq!(by_host.json()["explanations"], explained["explanations"]);
    let predicted = call(
        &client,
        &dev.url(&format!("/serving/default/iris{PREDICT}")),
        &[],
        IRIS_INSTANCE,
    )
    .await
    .unwrap();
    assert_eq!(predicted.status, 200, "{}", predicted.body);
    let predicted = predicted.json();
    assert!(predicted.get("explanations").is_none(), "{predicted}");
    assert_eq!(predicted["predictions"], explained["predictions"]);

    dev.wait_until(
        Duration::from_secs(10),
        "the explainer in the live view, ready",
        || dev.saw_share("iris-explainer-1", "100%"),
    )
    .await;
    dev.interrupt_and_expect_clean_exit().await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transformer_that_keeps_exiting_is_reported_and_never_skipped() {
    let dir = test_dir("crashing");
    let manifest = dir.join("iris.yaml");
    let text = format!(
        "{ISVC}metadata:\n  name: iris\nspec:\n  transformer:\n    minReplicas: 1\n    containers:\n      - name: transformer\n        image: local\n        command: [python3, -c, \"import sys; print('no model here', file=sys.stderr); sys.exit(3)\"]\n{}",
        versioned_iris(1, None, "")
            .split_once("spec:\n")
            .unwrap()
            .1
    );
    write_manifest(&manifest, &text);
    let dev = Dev::start(&dir, &manifest);
    // Three quick exits in a row: the transformer's revision has failed, and serval dev
    // says why, with the exit and where the log is.
    dev.wait_until(Duration::from_secs(60), "the crash loop reported", || {
        let stderr = dev.stderr.lock().unwrap().join("\n");
        stderr.contains("TransformerReady is False: CrashLoopBackOff")
            && stderr.contains("iris-transformer-1")
    })
    .await;
    let stderr = dev.stderr.lock().unwrap().join("\n");
    assert!(
        stderr.contains("runtime exited (exit status: 3)"),
        "{stderr}"
    );
    assert!(stderr.contains(".runtime.log"), "{stderr}");
    // A request to the service is answered at once, by neither a hang nor the predictor.
    let client = http1();
    // (The activator would hold a request for a revision that is only starting for up to
    // its 300 s timeout; one for a failed component is refused.)
    let answer = tokio::time::timeout(
        Duration::from_secs(30),
        call(
            &client,
            &dev.url(&format!("/serving/default/iris{PREDICT}")),
            &[],
            IRIS_INSTANCE,
        ),
    )
    .await
    .expect("refused, not held")
    .unwrap();
    assert_eq!(answer.status, 503, "{answer:?}");
    assert!(answer.json()["error"].is_string(), "{answer:?}");
    // The predictor itself still serves.
    let direct = dev
        .first_answer(
            &client,
            &format!("/serving/default/iris-predictor{PREDICT}"),
            IRIS_INSTANCE,
        )
        .await;
    assert_eq!(direct.json()["version"], "1");
    dev.interrupt_and_expect_clean_exit().await;
    std::fs::remove_dir_all(dir).unwrap();
}
