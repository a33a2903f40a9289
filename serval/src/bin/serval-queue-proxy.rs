//! `serval-queue-proxy`: the sidecar on its own, for the model pods. It takes the same flags
//! and environment as `serval queue-proxy` and runs the same code, but links nothing of the
//! other roles: one sidecar per pod, so its resident code pages and the relocations the
//! loader applies at start-up count once per pod (6.5–6.8 against 10.3–11.0 MiB idle, see
//! docs/benchmarks.md).

use std::process::ExitCode;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "serval-queue-proxy",
    version,
    about = "The per-pod sidecar: concurrency limit, stats, readiness and drain"
)]
struct Cli {
    #[command(flatten)]
    config: serval_queue_proxy::Config,
}

fn main() -> ExitCode {
    let config = Cli::parse().config;
    let threads = config.worker_threads.max(1);
    serval::process::serve_on(
        threads,
        "queue-proxy",
        serval_queue_proxy::run(config, serval::signal::shutdown()),
    )
}
