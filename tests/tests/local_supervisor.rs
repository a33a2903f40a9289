//! The local process backend of `serval dev`: real `serval runtime` and queue-proxy
//! (`serval-queue-proxy`) processes, scaled, replaced when they die, and drained when scaled away.

use std::time::{Duration, Instant};

use serval_controller::local::{QueueProxyCommand, ReplicaInfo, ReplicaSpec, Supervisor};
use serval_tests::http_client::{http1, send};
use serval_tests::runtime::test_models;
use serval_tests::serval_bin;

fn spec() -> ReplicaSpec {
    let model_dir = test_models().join("xgb-regression");
    let serval = serval_bin().display().to_string();
    ReplicaSpec {
        revision: "default/xgb-predictor-1".into(),
        runtime_command: vec![
            serval,
            "runtime".into(),
            "--model-name=xgb".into(),
            format!("--model-dir={}", model_dir.display()),
            "--bind-address=127.0.0.1".into(),
            "--http-port={http_port}".into(),
            "--grpc-port={grpc_port}".into(),
        ],
        runtime_env: vec![("RUST_LOG".into(), "warn".into())],
        queue_proxy_args: vec!["--gpu=false".into()],
    }
}

async fn wait_ready(supervisor: &Supervisor, revision: &str, n: usize) -> Vec<ReplicaInfo> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = supervisor.ready(revision);
        if ready.len() == n {
            return ready;
        }
        assert!(
            Instant::now() < deadline,
            "{n} ready replicas not reached: {:?}",
            supervisor.replicas(revision)
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scales_replaces_dead_replicas_and_drains() {
    let supervisor = Supervisor::new(QueueProxyCommand::beside(serval_bin()), None);
    let spec = spec();
    let revision = spec.revision.clone();
    supervisor.upsert(spec);
    assert!(supervisor.scale("default/unknown", 1).await.is_err());

    supervisor.scale(&revision, 2).await.unwrap();
    let ready = wait_ready(&supervisor, &revision, 2).await;
    let client = http1();
    for replica in &ready {
        let url = format!("http://{}/v1/models/xgb:predict", replica.proxy);
        let answer = send(
            &client,
            "POST",
            &url,
            r#"{"instances": [[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]]}"#,
        )
        .await
        .unwrap();
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.json()["predictions"].as_array().unwrap().len(), 1);
    }

    // A runtime that dies is replaced by a new replica process pair.
    let victim = ready[0].clone();
    let runtime_pid = victim.runtime_pid.unwrap();
    std::process::Command::new("kill")
        .args(["-KILL", &runtime_pid.to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now_ready = supervisor.ready(&revision);
        if now_ready.len() == 2 && now_ready.iter().all(|r| r.runtime_pid != Some(runtime_pid)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "dead replica not replaced: {now_ready:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        !alive(victim.proxy_pid.unwrap()),
        "the dead replica's queue-proxy is stopped too"
    );

    // Scaling to zero drains and stops every process.
    let pids: Vec<u32> = supervisor
        .replicas(&revision)
        .iter()
        .flat_map(|r| [r.runtime_pid, r.proxy_pid])
        .flatten()
        .collect();
    supervisor.scale(&revision, 0).await.unwrap();
    assert!(supervisor.replicas(&revision).is_empty());
    for pid in pids {
        assert!(
            !alive(pid),
            "process {pid} still running after scale to zero"
        );
    }
}
