//! The metrics Serval can scale on.

use serde::{Deserialize, Serialize};

/// Metrics a component can scale on. The first four are KServe's; the rest are Serval's.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "kubernetes", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum ScaleMetric {
    /// Requests in flight per replica (Knative's default).
    Concurrency,
    /// Requests per second per replica.
    Rps,
    /// CPU utilisation (KServe raw deployments).
    Cpu,
    /// Memory utilisation (KServe raw deployments).
    Memory,
    /// Output tokens per second per replica (language models).
    Tokens,
    /// GPU utilisation percent.
    Gpu,
    /// The runtime's own queue depth per replica.
    Queue,
}

impl ScaleMetric {
    pub const ALL: [ScaleMetric; 7] = [
        Self::Concurrency,
        Self::Rps,
        Self::Cpu,
        Self::Memory,
        Self::Tokens,
        Self::Gpu,
        Self::Queue,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Concurrency => "concurrency",
            Self::Rps => "rps",
            Self::Cpu => "cpu",
            Self::Memory => "memory",
            Self::Tokens => "tokens",
            Self::Gpu => "gpu",
            Self::Queue => "queue",
        }
    }

    /// Parses a metric name as written in `scaleMetric` or the autoscaling annotations.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == name)
    }
}

impl std::fmt::Display for ScaleMetric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
