//! `serval`: the one binary of Serval. Every role (controller, activator, autoscaler,
//! queue-proxy, runtime) is a subcommand, so one image serves them all, and `serval dev`
//! runs the whole platform on one machine.

mod activator;
mod autoscaler;
mod controller;
mod dev;
mod storage_init;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serval::process::{serve, serve_on};
use serval::signal;

#[derive(Parser, Debug)]
#[command(
    name = "serval",
    version,
    about = "Serverless model serving for Kubernetes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the CustomResourceDefinitions (InferenceService, ServingRuntime,
    /// ClusterServingRuntime, LocalModelCache) as YAML, ready for `kubectl apply -f -`.
    Crd,
    /// Check InferenceService and ServingRuntime manifests offline, with the same rules the
    /// admission webhook uses. Exits non-zero when any document is invalid.
    Validate {
        /// Manifest files, or directories searched for *.yaml and *.yml.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Run the whole platform on this machine: controller, activator, autoscaler and one
    /// queue-proxy + runtime process pair per replica.
    Dev(dev::DevArgs),
    /// Serve a model directory over KServe V1, Open Inference Protocol V2 and OpenAI.
    Runtime(Box<serval_runtimes::Config>),
    /// The per-pod sidecar: concurrency limit, stats, readiness and drain.
    QueueProxy(Box<serval_queue_proxy::Config>),
    /// The gateway: routing, buffering at zero, canary split, balancing (on Kubernetes:
    /// InferenceService routes, EndpointSlice pods).
    Activator(Box<activator::ActivatorArgs>),
    /// Scale revisions on concurrency, rps, tokens, GPU and queue depth (on Kubernetes:
    /// revision Deployments through their /scale subresource).
    Autoscaler(autoscaler::AutoscalerArgs),
    /// Reconcile InferenceServices into revisions, pods and routes on Kubernetes.
    Controller(Box<controller::ControllerArgs>),
    /// Fetch models named by storage URIs (S3, GCS, Azure, HTTP(S), Hugging Face, PVC,
    /// local) into directories, or into the node model cache: KServe's storage initializer.
    StorageInit(Box<storage_init::StorageInitArgs>),
    /// Replay a request trace through the autoscaler and compare scaling policies.
    Simulate(Box<serval_simulations::SimulateArgs>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            print!("{}", serval_api::crd::crds_yaml());
            ExitCode::SUCCESS
        }
        Command::Validate { paths } => validate::run(&paths),
        Command::Dev(args) => serve("dev", dev::run(args)),
        Command::Runtime(config) => {
            serve("runtime", serval_runtimes::run(*config, signal::shutdown()))
        }
        Command::QueueProxy(config) => {
            let threads = config.worker_threads.max(1);
            serve_on(
                threads,
                "queue-proxy",
                serval_queue_proxy::run(*config, signal::shutdown()),
            )
        }
        Command::Activator(args) => serve("activator", activator::run(*args)),
        Command::Autoscaler(args) => serve("autoscaler", autoscaler::run(args)),
        Command::Controller(args) => serve("controller", controller::run(*args)),
        Command::StorageInit(args) => serve("storage-init", storage_init::run(*args)),
        Command::Simulate(args) => match serval_simulations::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("serval simulate: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
