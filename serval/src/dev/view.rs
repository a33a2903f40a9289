//! What `serval dev` shows while it runs: per InferenceService its URL, replicas, load and
//! the autoscaler's last decision. Redrawn in place on a terminal; one line per change
//! otherwise.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};

use serval_autoscaler::live::RevisionView;

/// One revision's row: each revision that takes traffic, and one that is rolling out.
#[derive(Clone, Debug)]
pub(crate) struct ServiceRow {
    pub(crate) service: String,
    pub(crate) url: String,
    pub(crate) revision: String,
    /// Its share of its component's traffic (`None` while it rolls out).
    pub(crate) percent: Option<i64>,
    pub(crate) replicas: usize,
    pub(crate) ready: usize,
    pub(crate) queued: usize,
    pub(crate) decision: Option<RevisionView>,
}

pub(crate) struct LiveView {
    terminal: bool,
    last: BTreeMap<String, String>,
}

impl LiveView {
    pub(crate) fn new() -> Self {
        Self {
            terminal: std::io::stdout().is_terminal(),
            last: BTreeMap::new(),
        }
    }

    fn line(row: &ServiceRow) -> String {
        let (desired, panic, reason, load) = match &row.decision {
            Some(d) => (
                d.desired.map_or("-".to_string(), |n| n.to_string()),
                if d.in_panic { " PANIC" } else { "" },
                d.reason.as_str(),
                format!(
                    "conc {:.1} rps {:.1} tok/s {:.0} prompt tok/s {:.0}",
                    d.observed.concurrency,
                    d.observed.requests_per_second,
                    d.observed.tokens_per_second,
                    d.observed.prompt_tokens_per_second
                ),
            ),
            None => ("-".to_string(), "", "", String::new()),
        };
        let share = row
            .percent
            .map_or_else(|| "new".to_string(), |p| format!("{p}%"));
        format!(
            "{:<28} {:<34} {share:>4} ready {}/{} (desired {desired}{panic}) held {:<5} {load} {} | {reason}",
            row.service, row.revision, row.ready, row.replicas, row.queued, row.url
        )
    }

    pub(crate) fn show(&mut self, rows: &[ServiceRow]) {
        let mut out = std::io::stdout().lock();
        if self.terminal {
            // Home the cursor and clear below: a table that updates in place.
            let _ = write!(out, "\x1b[H\x1b[J");
            let _ = writeln!(out, "serval dev — Ctrl-C stops everything\n");
            for row in rows {
                let _ = writeln!(out, "{}", Self::line(row));
            }
        } else {
            for row in rows {
                let line = Self::line(row);
                let key = format!("{} {}", row.service, row.revision);
                if self.last.get(&key) != Some(&line) {
                    let _ = writeln!(out, "{line}");
                    self.last.insert(key, line);
                }
            }
        }
        let _ = out.flush();
    }
}
