//! What the cluster test measures: the duration of each step, a cold start split into its
//! phases as the API server shows them, and a load that runs while the cluster changes.

pub(crate) mod load;

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serval_tests::cluster::{condition_true, Cluster};
use serval_tests::http_client::Answer;

use super::{IRIS_REQUEST, NAMESPACE};

/// Named durations, printed as a table at the end.
#[derive(Debug, Default)]
pub(crate) struct Steps(Vec<(String, Duration)>);

impl Steps {
    pub(crate) fn record(&mut self, name: &str, took: Duration) {
        println!("cluster step: {name}: {took:.2?}");
        self.0.push((name.to_string(), took));
    }

    pub(crate) fn print(&self) {
        println!("\n| step | time |\n|---|---|");
        for (name, took) in &self.0 {
            println!("| {name} | {:.2} s |", took.as_secs_f64());
        }
    }
}

/// One cold start: the answer, and when each of [`EVENTS`] happened after the request was
/// sent (an event not seen is left out).
#[derive(Debug)]
pub(crate) struct ColdStart {
    pub(crate) answer: Answer,
    pub(crate) marks: Vec<(&'static str, Duration)>,
}

/// What happens during a cold start, in order, and where the test sees it: the API server
/// (polled every 20 ms), containerd's log, and the pod's own logs (with containerd's
/// timestamps).
pub(crate) const EVENTS: [&str; 11] = [
    "autoscaler scales the Deployment to 1",
    "ReplicaSet creates the pod",
    "scheduler binds the pod",
    "containerd: sandbox and network ready",
    "containerd: model server started",
    "model server: model loaded, listening",
    "queue-proxy: model server ready",
    "kubelet: pod IP in the API",
    "activator: pod probed healthy",
    "kubelet: pod Ready in the API",
    "activator: answer received",
];
const SCALED: usize = 0;
const CREATED: usize = 1;
const SCHEDULED: usize = 2;
const SANDBOX: usize = 3;
const STARTED: usize = 4;
const LOADED: usize = 5;
const PROXY_READY: usize = 6;
const IP_PUBLISHED: usize = 7;
const PROBED: usize = 8;
const API_READY: usize = 9;
const ANSWERED: usize = 10;

impl ColdStart {
    /// Each seen event with the time since the one before it.
    pub(crate) fn phases(&self) -> Vec<(&'static str, Duration)> {
        let mut previous = Duration::ZERO;
        self.marks
            .iter()
            .map(|(name, at)| {
                let took = at.saturating_sub(previous);
                previous = previous.max(*at);
                (*name, took)
            })
            .collect()
    }

    pub(crate) fn print(&self) {
        println!("cold start on a real node (since the request was sent):");
        for ((name, at), (_, took)) in self.marks.iter().zip(self.phases()) {
            println!(
                "  {name:<42} at {:>6.0} ms  (+{:>5.0} ms)",
                at.as_secs_f64() * 1e3,
                took.as_secs_f64() * 1e3
            );
        }
    }
}

/// Sends one request to `isvc` at zero pods and follows its revision while the request is
/// held.
pub(crate) fn cold_start(
    cluster: &Cluster,
    tokio: &tokio::runtime::Runtime,
    activator: &str,
    isvc: &str,
    revision: &str,
) -> ColdStart {
    let (activator, isvc) = (activator.to_string(), isvc.to_string());
    let path = format!("/v2/models/{isvc}/infer");
    let sent = SystemTime::now();
    let started = Instant::now();
    let request = tokio
        .spawn(async move { super::predict_by_host(&activator, &isvc, &path, IRIS_REQUEST).await });
    let mut seen: Vec<Option<Duration>> = vec![None; EVENTS.len()];
    let mut pod_name = None;
    while !request.is_finished() {
        let reached = api_events(cluster, revision, &mut pod_name);
        for (event, reached) in reached.into_iter().enumerate() {
            if reached && seen[event].is_none() {
                seen[event] = Some(started.elapsed());
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "the cold start's request is still held after 3 minutes"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    seen[ANSWERED] = Some(started.elapsed());
    let answer = tokio.block_on(request).expect("the request task");
    if let Some(pod) = &pod_name {
        let since = |at: Option<SystemTime>| at.and_then(|t| t.duration_since(sent).ok());
        let (sandbox, started) = containerd_events(cluster, pod);
        seen[SANDBOX] = since(sandbox);
        seen[STARTED] = since(started);
        let logged = |args: &[&str], needles: &[&str]| since(log_time(cluster, args, needles));
        seen[LOADED] = logged(&[pod, "-c", "kserve-container"], &["model server ready"]);
        seen[PROXY_READY] = logged(&[pod, "-c", "queue-proxy"], &[r#""ready":true"#]);
        seen[PROBED] = logged(
            &["-n", "serval-system", "deploy/serval-activator"],
            &[pod, r#""healthy":true"#],
        );
    }
    let mut marks: Vec<_> = EVENTS
        .iter()
        .zip(seen)
        .filter_map(|(name, at)| Some((*name, at?)))
        .collect();
    marks.sort_by_key(|(_, at)| *at);
    ColdStart { answer, marks }
}

/// Which of the events the API server shows have happened.
fn api_events(cluster: &Cluster, revision: &str, pod_name: &mut Option<String>) -> Vec<bool> {
    let mut reached = vec![false; EVENTS.len()];
    reached[SCALED] = cluster
        .json(&format!(
            "/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{revision}"
        ))
        .and_then(|d| d["spec"]["replicas"].as_i64())
        .unwrap_or(0)
        > 0;
    let pods = cluster
        .json(&format!(
            "/api/v1/namespaces/{NAMESPACE}/pods?labelSelector=serving.serval.dev/revision={revision}"
        ))
        .unwrap_or_default();
    if let Some(pod) = pods["items"].as_array().and_then(|items| {
        items
            .iter()
            .find(|p| p["metadata"]["deletionTimestamp"].is_null())
    }) {
        *pod_name = pod["metadata"]["name"].as_str().map(str::to_string);
        reached[CREATED] = true;
        reached[SCHEDULED] = !pod["spec"]["nodeName"].is_null();
        reached[IP_PUBLISHED] = pod["status"]["podIP"]
            .as_str()
            .is_some_and(|ip| !ip.is_empty());
        reached[API_READY] = condition_true(pod, "Ready");
    }
    reached
}

/// When containerd had `pod`'s sandbox ready and its model server started, from its log.
fn containerd_events(cluster: &Cluster, pod: &str) -> (Option<SystemTime>, Option<SystemTime>) {
    let log = cluster.log_tail("containerd", 5000);
    let time_of = |line: &str| {
        let rest = line.strip_prefix("time=\"")?;
        parse_rfc3339(&rest[..rest.find('"')?])
    };
    let sandbox_line = log.lines().find(|l| {
        l.contains("RunPodSandbox for")
            && l.contains(&format!("Name:{pod},"))
            && l.contains("returns sandbox id")
    });
    let sandbox = sandbox_line.and_then(time_of);
    let sandbox_id = sandbox_line.and_then(|l| quoted_after(l, "returns sandbox id"));
    let container_id = sandbox_id.and_then(|sandbox| {
        log.lines()
            .find(|l| {
                l.contains("CreateContainer within sandbox")
                    && l.contains(&sandbox)
                    && l.contains("Name:kserve-container,")
                    && l.contains("returns container id")
            })
            .and_then(|l| quoted_after(l, "returns container id"))
    });
    let started = container_id.and_then(|id| {
        log.lines()
            .find(|l| {
                l.contains(&format!(
                    "StartContainer for \\\"{id}\\\" returns successfully"
                ))
            })
            .and_then(time_of)
    });
    (sandbox, started)
}

/// The id in `... marker \"ID\"` (containerd quotes inside its quoted msg field).
fn quoted_after(line: &str, marker: &str) -> Option<String> {
    let rest = &line[line.find(marker)? + marker.len()..];
    let rest = rest.trim_start().strip_prefix("\\\"")?;
    Some(rest[..rest.find("\\\"")?].to_string())
}

/// When `kubectl logs --timestamps <args>` first shows a line containing all of `needles`
/// (containerd's timestamp).
fn log_time(cluster: &Cluster, args: &[&str], needles: &[&str]) -> Option<SystemTime> {
    let logs = cluster.kubectl(
        std::iter::once("logs")
            .chain(std::iter::once("--timestamps"))
            .chain(args.iter().copied()),
        "",
    );
    logs.stdout
        .lines()
        .find(|line| needles.iter().all(|needle| line.contains(needle)))
        .and_then(|line| parse_rfc3339(line.split_whitespace().next()?))
}

/// `2026-12-06T16:23:11.743934494Z` (UTC, any number of fraction digits).
fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let text = text.strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let mut ymd = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, d) = (ymd.next()?.ok()?, ymd.next()?.ok()?, ymd.next()?.ok()?);
    let (hms, fraction) = time.split_once('.').unwrap_or((time, "0"));
    let mut hms = hms.split(':').map(|p| p.parse::<u64>());
    let (h, min, s) = (hms.next()?.ok()?, hms.next()?.ok()?, hms.next()?.ok()?);
    let nanos: u32 = format!("{fraction:0<9}")[..9].parse().ok()?;
    // Days since 1970-01-01 in the proleptic Gregorian calendar (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = u64::try_from(era * 146_097 + doe - 719_468).ok()?;
    Some(UNIX_EPOCH + Duration::new(days * 86_400 + h * 3600 + min * 60 + s, nanos))
}

/// Each running pod's CPU time and memory (working set) at one moment, summed over its
/// containers, read from the containers' cgroups (containerd puts them under `k8s.io/<id>`).
#[derive(Debug)]
pub(crate) struct UsageSample {
    at: Instant,
    pods: BTreeMap<String, (u64, u64)>,
}

impl UsageSample {
    pub(crate) fn take(cluster: &Cluster) -> Self {
        let at = Instant::now();
        let mut pods = BTreeMap::new();
        let list = cluster.json("/api/v1/pods").unwrap_or_default();
        for pod in list["items"].as_array().into_iter().flatten() {
            let name = pod["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let statuses = pod["status"]["containerStatuses"].as_array();
            for status in statuses.into_iter().flatten() {
                let Some(id) = status["containerID"]
                    .as_str()
                    .and_then(|id| id.strip_prefix("containerd://"))
                else {
                    continue;
                };
                let cgroup = |controller: &str, file: &str| {
                    std::fs::read_to_string(format!(
                        "/sys/fs/cgroup/{controller}/k8s.io/{id}/{file}"
                    ))
                    .ok()
                };
                let Some(cpu) =
                    cgroup("cpuacct", "cpuacct.usage").and_then(|v| v.trim().parse::<u64>().ok())
                else {
                    continue;
                };
                let usage = cgroup("memory", "memory.usage_in_bytes")
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(0);
                let inactive = cgroup("memory", "memory.stat")
                    .and_then(|stat| {
                        stat.lines()
                            .find_map(|l| l.strip_prefix("total_inactive_file "))
                            .and_then(|v| v.trim().parse::<u64>().ok())
                    })
                    .unwrap_or(0);
                let entry = pods.entry(name.clone()).or_insert((0, 0));
                entry.0 += cpu;
                entry.1 += usage.saturating_sub(inactive);
            }
        }
        Self { at, pods }
    }

    /// (pod, CPU in millicores between `earlier` and this sample, memory in MiB now) for the
    /// pods in both.
    pub(crate) fn since(&self, earlier: &Self) -> Vec<(String, f64, f64)> {
        let seconds = self.at.duration_since(earlier.at).as_secs_f64().max(1e-3);
        self.pods
            .iter()
            .filter_map(|(name, (cpu, memory))| {
                let (before, _) = earlier.pods.get(name)?;
                let millicores = cpu.saturating_sub(*before) as f64 / 1e6 / seconds;
                Some((name.clone(), millicores, *memory as f64 / 1_048_576.0))
            })
            .collect()
    }
}

#[test]
fn rfc3339_times() {
    assert_eq!(
        parse_rfc3339("1970-01-02T00:00:01.5Z"),
        Some(UNIX_EPOCH + Duration::from_millis(86_401_500))
    );
    assert_eq!(
        parse_rfc3339("2026-12-06T16:23:11.743934494Z")
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok()),
        Some(Duration::new(1_796_574_191, 743_934_494))
    );
}
