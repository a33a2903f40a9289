//! The activator's one configuration struct: flags, each also read from an environment
//! variable, with defaults and `validate()`.

use std::net::SocketAddr;
use std::time::Duration;

/// More serving threads than this is a typo, not a machine.
const MAX_SERVE_THREADS: usize = 1024;

/// How `serval activator` is configured.
#[derive(clap::Args, Clone, Debug)]
pub struct Config {
    /// Address that receives user traffic (HTTP/1.1 and HTTP/2 cleartext).
    #[arg(long, env = "SERVAL_ACTIVATOR_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Domain of service hosts: `<isvc>.<namespace>.<domain>` (KServe's default).
    #[arg(long, env = "SERVAL_ACTIVATOR_DOMAIN", default_value = "example.com")]
    pub domain: String,
    /// Requests one revision may hold waiting for a pod before 503s (unless the revision
    /// sets its own bound).
    #[arg(long, env = "SERVAL_ACTIVATOR_QUEUE_BOUND", default_value_t = 10_000)]
    pub queue_bound: usize,
    /// Requests all revisions together may hold before 503s.
    #[arg(
        long,
        env = "SERVAL_ACTIVATOR_TOTAL_QUEUE_BOUND",
        default_value_t = 100_000
    )]
    pub total_queue_bound: usize,
    /// How often a pod that is not (or no longer) healthy is probed.
    #[arg(long, env = "SERVAL_ACTIVATOR_PROBE_PERIOD", default_value = "200ms", value_parser = parse_duration)]
    pub probe_period: Duration,
    /// How often a healthy pod is probed again (a draining pod fails its probe).
    #[arg(long, env = "SERVAL_ACTIVATOR_HEALTHY_PROBE_PERIOD", default_value = "1s", value_parser = parse_duration)]
    pub healthy_probe_period: Duration,
    /// How often each revision's stats go to the autoscaler.
    #[arg(long, env = "SERVAL_ACTIVATOR_REPORT_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub report_interval: Duration,
    /// Concurrent HTTP/2 streams a client connection may open.
    #[arg(
        long,
        env = "SERVAL_ACTIVATOR_MAX_CONCURRENT_STREAMS",
        default_value_t = 16_384
    )]
    pub max_concurrent_streams: u32,
    /// How many times a request that never left is tried on another pod.
    #[arg(long, env = "SERVAL_ACTIVATOR_MAX_RETRIES", default_value_t = 3)]
    pub max_retries: u32,
    /// After SIGTERM, how long to finish what is in flight before giving up on it.
    #[arg(long, env = "SERVAL_ACTIVATOR_DRAIN_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// Threads that serve connections, each with a single-threaded runtime and forwarding
    /// pool of its own; 0 is one per core. One HTTP/2 connection is served by one thread.
    #[arg(long, env = "SERVAL_ACTIVATOR_SERVE_THREADS", default_value_t = 0)]
    pub serve_threads: usize,
    /// Name this activator reports its stats under.
    #[arg(long, env = "POD_NAME", default_value = "activator")]
    pub name: String,
    /// A directory where pods on this machine also listen on a Unix socket, `<port>.sock`
    /// for the pod on loopback port `<port>`; they are reached through it instead of over
    /// loopback TCP (`serval dev` sets it). Unset: TCP only.
    #[arg(long, env = "SERVAL_ACTIVATOR_LOCAL_SOCKETS")]
    pub local_sockets: Option<std::path::PathBuf>,
}

impl Config {
    /// Defaults, listening on `listen`; for embedding (`serval dev`) and tests.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            domain: "example.com".into(),
            queue_bound: 10_000,
            total_queue_bound: 100_000,
            probe_period: Duration::from_millis(200),
            healthy_probe_period: Duration::from_secs(1),
            report_interval: Duration::from_secs(1),
            max_concurrent_streams: 16_384,
            max_retries: 3,
            drain_timeout: Duration::from_secs(30),
            serve_threads: 0,
            name: "activator".into(),
            local_sockets: None,
        }
    }

    /// Rejects settings the activator cannot run with, naming the flag.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("--probe-period", self.probe_period),
            ("--healthy-probe-period", self.healthy_probe_period),
            ("--report-interval", self.report_interval),
        ];
        if let Some((flag, _)) = positive.iter().find(|(_, d)| d.is_zero()) {
            return Err(format!("{flag} must be more than 0"));
        }
        if self.domain.is_empty() || self.domain.starts_with('.') {
            return Err(format!("--domain {:?} is not a domain", self.domain));
        }
        if self.serve_threads > MAX_SERVE_THREADS {
            return Err(format!(
                "--serve-threads {} is more than {MAX_SERVE_THREADS}",
                self.serve_threads
            ));
        }
        if self.max_concurrent_streams == 0 {
            return Err("--max-concurrent-streams must be at least 1".into());
        }
        Ok(())
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    serval_api::duration::parse_go_duration(s).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        config: Config,
    }

    #[test]
    fn flag_defaults_match_the_embedding_defaults() {
        let parsed = Cli::try_parse_from(["activator"]).unwrap().config;
        let embedded = Config::new(parsed.listen);
        assert_eq!(format!("{parsed:?}"), format!("{embedded:?}"));
        assert_eq!(parsed.validate(), Ok(()));
        let bad = Config {
            probe_period: Duration::ZERO,
            ..embedded
        };
        assert!(bad.validate().unwrap_err().contains("--probe-period"));
        let bad = Config {
            serve_threads: 100_000,
            ..Config::new(parsed.listen)
        };
        assert!(bad.validate().unwrap_err().contains("--serve-threads"));
    }
}
