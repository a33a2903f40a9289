//! The rules the KPA reconciler applies on top of the decider's count: an activator poke
//! wakes a revision, a new revision starts at its initial scale, min/max scale bound the
//! result, and the last pod goes only when the scale-to-zero conditions hold.

use std::time::Instant;

use crate::decision::Decision;
use crate::spec::ScalingSpec;
use crate::zero::ZeroGate;

/// What the loop knows about a revision's pods at one tick.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PodCounts {
    pub(crate) ready: u32,
    /// Requests the activators hold for the revision.
    pub(crate) activator_queued: u32,
    /// The count decided at the previous tick (the ready count before the first).
    pub(crate) current: u32,
}

#[derive(Debug, Clone)]
pub(crate) struct RevisionRules {
    /// Whether the revision has reached its initial scale once.
    initialized: bool,
    zero_gate: ZeroGate,
}

impl RevisionRules {
    pub(crate) fn new(spec: &ScalingSpec) -> Self {
        Self {
            initialized: spec.initial_scale == 0,
            zero_gate: ZeroGate::default(),
        }
    }

    /// For a revision already running at `current_scale`: no initial scale, and active
    /// from `now` when it has pods.
    pub(crate) fn resumed(now: Instant, current_scale: u32) -> Self {
        Self {
            initialized: true,
            zero_gate: if current_scale > 0 {
                ZeroGate::active_from(now)
            } else {
                ZeroGate::default()
            },
        }
    }

    pub(crate) fn apply(
        &mut self,
        now: Instant,
        spec: &ScalingSpec,
        decision: &mut Decision,
        pods: PodCounts,
    ) {
        let mut desired = decision.desired;
        let wake_to = spec.activation_scale.max(1);
        if pods.activator_queued > 0 && desired < wake_to {
            desired = wake_to;
            decision.reason = format!(
                "activator holds {} requests: scaling to at least {desired}",
                pods.activator_queued
            );
        }
        if !self.initialized {
            if desired < spec.initial_scale {
                desired = spec.initial_scale;
                decision.reason = format!("new revision: initial scale {desired}");
            }
            self.initialized = pods.ready >= spec.initial_scale;
        }
        let bounded = bound(spec.floor(), spec.max_scale, desired);
        if bounded != desired {
            decision
                .reason
                .push_str(&format!(", bounded to {bounded} by min/max scale"));
            desired = bounded;
        }
        let gated = self
            .zero_gate
            .gate(now, spec, desired, pods.ready, pods.current);
        if let Some(reason) = gated.reason {
            decision.reason = reason;
        }
        decision.desired = gated.desired;
    }
}

/// Knative's bounds: `min` first, then `max` unless it is 0 (no bound).
fn bound(min: u32, max: u32, desired: u32) -> u32 {
    let at_least_min = desired.max(min);
    if max != 0 {
        at_least_min.min(max)
    } else {
        at_least_min
    }
}
