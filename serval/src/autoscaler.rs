//! `serval autoscaler`: the autoscaler process on Kubernetes.

use std::net::SocketAddr;
use std::path::PathBuf;

use serval_autoscaler::kubernetes::{self, ConfigSource, Options};

#[derive(clap::Args, Debug)]
pub(crate) struct AutoscalerArgs {
    /// The HTTP API: activators' pokes and reports, `/revisions`, `/metrics`, `/healthz`.
    #[arg(long, env = "SERVAL_AUTOSCALER_LISTEN", default_value = "0.0.0.0:8090")]
    listen: SocketAddr,
    /// Watch revisions in this namespace only (default: all namespaces).
    #[arg(long, env = "SERVAL_WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// A YAML map of `config-autoscaler` keys; replaces reading the ConfigMap.
    #[arg(long, env = "SERVAL_AUTOSCALER_CONFIG")]
    config: Option<PathBuf>,
    /// The ConfigMap holding `config-autoscaler` keys, in `--system-namespace`.
    #[arg(long, default_value = "config-autoscaler")]
    config_map: String,
    /// Where Serval itself runs (the ConfigMap's namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "serval-system")]
    system_namespace: String,
}

pub(crate) async fn run(args: AutoscalerArgs) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(path) => ConfigSource::Given(crate::dev::autoscaler_config(Some(path))?),
        None => ConfigSource::ConfigMap {
            namespace: args.system_namespace,
            name: args.config_map,
        },
    };
    let options = Options {
        listen: args.listen,
        namespace: args.namespace,
        config,
    };
    kubernetes::run(options, serval::signal::shutdown()).await?;
    Ok(())
}
