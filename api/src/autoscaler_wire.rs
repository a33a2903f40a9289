//! What an activator sends the autoscaler's HTTP API (`POST /poke`, `POST /report`); both
//! sides use these types, so the wire shape is written once.

use serde::{Deserialize, Serialize};

use crate::Stat;

/// A request is waiting for `revision`, which has no ready pod: decide now.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Poke {
    pub revision: String,
}

/// What an activator observed for one revision over a window, and what it holds now.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ActivatorReport {
    pub revision: String,
    /// Requests the activator holds for the revision right now.
    #[serde(default)]
    pub queued: u32,
    pub stat: Stat,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_without_queued_reads_as_zero_and_round_trips() {
        let report: ActivatorReport = serde_json::from_str(
            r#"{"revision": "default/r-1", "stat": {"podName": "a",
                "timestampMs": 1, "windowMs": 1000, "averageConcurrency": 2.0,
                "averageProxiedConcurrency": 2.0, "requestCount": 3, "proxiedRequestCount": 3}}"#,
        )
        .unwrap();
        assert_eq!((report.queued, report.stat.request_count), (0, 3));
        let text = serde_json::to_string(&report).unwrap();
        assert_eq!(
            serde_json::from_str::<ActivatorReport>(&text).unwrap(),
            report
        );
        let poke: Poke = serde_json::from_str(r#"{"revision": "r"}"#).unwrap();
        assert_eq!(poke.revision, "r");
    }
}
