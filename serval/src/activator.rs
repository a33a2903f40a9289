//! `serval activator`: the gateway process on Kubernetes.

use serval_activator::kubernetes::{self, Options};

#[derive(clap::Args, Debug)]
pub(crate) struct ActivatorArgs {
    #[command(flatten)]
    config: serval_activator::Config,
    /// The autoscaler's HTTP API, for pokes and reports.
    #[arg(
        long,
        env = "SERVAL_AUTOSCALER_URL",
        default_value = "http://serval-autoscaler.serval-system.svc:8090"
    )]
    autoscaler_url: String,
    /// Serve InferenceServices in this namespace only (default: all namespaces).
    #[arg(long, env = "SERVAL_WATCH_NAMESPACE")]
    namespace: Option<String>,
}

pub(crate) async fn run(args: ActivatorArgs) -> anyhow::Result<()> {
    let options = Options {
        config: args.config,
        autoscaler_url: args.autoscaler_url,
        namespace: args.namespace,
    };
    kubernetes::run(options, serval::signal::shutdown()).await?;
    Ok(())
}
