//! A steady load through the activator while the test changes the cluster, counting every
//! request that did not get a 200.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serval_tests::http_client::{http1, send_with_headers};

use super::NAMESPACE;

/// A request the load sends that has no answer by then counts as failed (so a request
/// held forever fails the test instead of hanging it).
const ANSWER_WITHIN: Duration = Duration::from_secs(60);

/// What a load saw.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) ok: u64,
    pub(crate) failed: u64,
    /// The first few failures, as the client saw them.
    pub(crate) failures: Vec<String>,
    /// What the test did under load, as `on_tick` reported it.
    pub(crate) action: Option<String>,
    /// The most pods seen serving at once.
    pub(crate) peak_pods: usize,
    /// Answers by their body, when `by_body` asked for it.
    pub(crate) bodies: Vec<(String, u64)>,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ok, {} failed, at most {} pods; action: {}",
            self.ok,
            self.failed,
            self.peak_pods,
            self.action.as_deref().unwrap_or("none")
        )?;
        for failure in &self.failures {
            write!(f, "\n  failure: {failure}")?;
        }
        Ok(())
    }
}

/// The load's shape.
#[derive(Debug, Clone)]
pub(crate) struct Load<'a> {
    pub(crate) activator: &'a str,
    pub(crate) isvc: &'a str,
    pub(crate) path: &'a str,
    pub(crate) body: &'a str,
    pub(crate) concurrency: usize,
    pub(crate) duration: Duration,
}

/// Runs `load` for its duration, calling `on_tick(elapsed, peak_pods)` every 250 ms; the
/// first time it returns what it did, the load goes on for `after_action` more (or to its
/// end, if sooner). `pods` counts the pods serving now.
pub(crate) fn run(
    tokio: &tokio::runtime::Runtime,
    load: &Load<'_>,
    after_action: Duration,
    mut on_tick: impl FnMut(Duration, usize) -> Option<String>,
    mut pods: impl FnMut() -> usize,
) -> Outcome {
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(Mutex::new((0u64, Vec::<String>::new())));
    let bodies = Arc::new(Mutex::new(std::collections::BTreeMap::<String, u64>::new()));
    let url = format!("http://{}{}", load.activator, load.path);
    let host = format!("{}.{NAMESPACE}.example.com", load.isvc);
    let clients: Vec<_> = (0..load.concurrency)
        .map(|_| {
            let (stop, ok, failures, bodies) =
                (stop.clone(), ok.clone(), failures.clone(), bodies.clone());
            let (url, host, body) = (url.clone(), host.clone(), load.body.to_string());
            tokio.spawn(async move {
                let client = http1();
                while !stop.load(Ordering::Relaxed) {
                    let headers = [("host", host.as_str())];
                    let sent = send_with_headers(&client, "POST", &url, &headers, &body);
                    let answered = tokio::time::timeout(ANSWER_WITHIN, sent)
                        .await
                        .unwrap_or_else(|_| Err(format!("no answer within {ANSWER_WITHIN:?}")));
                    match answered {
                        Ok(answer) if answer.status == 200 => {
                            ok.fetch_add(1, Ordering::Relaxed);
                            *bodies
                                .lock()
                                .expect("bodies")
                                .entry(answer.body)
                                .or_default() += 1;
                        }
                        outcome => {
                            let mut f = failures.lock().expect("failures");
                            f.0 += 1;
                            if f.1.len() < 5 {
                                f.1.push(match outcome {
                                    Ok(answer) => format!("{}: {}", answer.status, answer.body),
                                    Err(e) => e,
                                });
                            }
                        }
                    }
                }
            })
        })
        .collect();

    let started = Instant::now();
    let mut outcome = Outcome::default();
    let mut end = started + load.duration;
    while Instant::now() < end {
        let elapsed = started.elapsed();
        outcome.peak_pods = outcome.peak_pods.max(pods());
        if let Some(action) = on_tick(elapsed, outcome.peak_pods) {
            if outcome.action.is_none() {
                println!("under load at {elapsed:.1?}: {action}");
                outcome.action = Some(action);
                end = end.min(Instant::now() + after_action);
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        let _ = tokio.block_on(client);
    }
    outcome.ok = ok.load(Ordering::Relaxed);
    let failures = failures.lock().expect("failures");
    outcome.failed = failures.0;
    outcome.failures = failures.1.clone();
    outcome.bodies = bodies
        .lock()
        .expect("bodies")
        .iter()
        .map(|(body, n)| (body.clone(), *n))
        .collect();
    outcome
}
