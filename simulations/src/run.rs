//! Runs every chosen policy over every service of a trace and collects the results.

use std::time::Instant;

use crate::engine::{simulate, Outcome, SimConfig};
use crate::policy::{build, PolicyContext, PolicyKind};
use crate::report::{summarise, Summary};
use crate::trace::Trace;

/// How to run a comparison.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub config: SimConfig,
    pub policies: Vec<PolicyKind>,
    pub llm: bool,
    pub decode_tps: f64,
    pub prefill_tps: f64,
    /// The cold-start budget `serval` runs with.
    pub cold_start_budget: Option<f64>,
}

/// One policy's results: the summary and, per second, replicas and load over all services.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyRun {
    pub kind: PolicyKind,
    pub summary: Summary,
    pub timeline: Vec<(u32, u32)>,
}

/// Runs each policy over each service. `progress` gets requests done so far (all policies).
pub fn compare(
    trace: &Trace,
    options: &RunOptions,
    progress: &mut dyn FnMut(u64),
) -> Vec<PolicyRun> {
    let context = PolicyContext {
        base: Instant::now(),
        config: options.config,
        llm: options.llm,
        decode_tps: options.decode_tps,
        prefill_tps: options.prefill_tps,
        cold_start_budget: options.cold_start_budget,
    };
    let mut done = 0u64;
    options
        .policies
        .iter()
        .map(|&kind| {
            let outcomes: Vec<Outcome> = trace
                .services
                .iter()
                .map(|service| {
                    let mut policy = build(kind, &service.requests, &context);
                    let outcome = simulate(
                        &service.requests,
                        trace.span_s,
                        &options.config,
                        policy.as_mut(),
                        &mut |n| progress(done + n as u64),
                    );
                    done += service.requests.len() as u64;
                    outcome
                })
                .collect();
            let mut timeline: Vec<(u32, u32)> = Vec::new();
            for outcome in &outcomes {
                if timeline.len() < outcome.timeline.len() {
                    timeline.resize(outcome.timeline.len(), (0, 0));
                }
                for (sum, point) in timeline.iter_mut().zip(&outcome.timeline) {
                    sum.0 += point.0;
                    sum.1 += point.1;
                }
            }
            PolicyRun {
                kind,
                summary: summarise(kind.as_str(), &outcomes, options.llm),
                timeline,
            }
        })
        .collect()
}
