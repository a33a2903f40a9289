//! When a revision that wants no pods may actually lose its last one, following the KPA:
//! only after it has been active for a stable window (so a new or just-woken revision is
//! not dropped at once), and then only after it has been idle for the longer of the
//! scale-to-zero grace period (the activator's time to get back in the path) and the pod
//! retention period.

use std::time::{Duration, Instant};

use crate::spec::ScalingSpec;

#[derive(Debug, Clone, Default)]
pub(crate) struct ZeroGate {
    /// Since when the revision has had a ready pod, counted from the last time it was at zero.
    active_since: Option<Instant>,
    /// Since when the revision has wanted zero pods while active long enough.
    idle_since: Option<Instant>,
}

/// What the gate made of a wish for zero pods.
pub(crate) struct Gated {
    pub(crate) desired: u32,
    /// Why zero was refused or allowed, when it was asked for.
    pub(crate) reason: Option<String>,
}

impl ZeroGate {
    /// A gate for a revision that is already running (an autoscaler restart): it counts as
    /// active from now.
    pub(crate) fn active_from(now: Instant) -> Self {
        Self {
            active_since: Some(now),
            idle_since: None,
        }
    }

    /// Passes `desired` through, except that a wish for zero from a revision that still has
    /// (or was asked for) pods becomes one pod until the KPA's conditions hold.
    /// `current` is the last count decided.
    pub(crate) fn gate(
        &mut self,
        now: Instant,
        spec: &ScalingSpec,
        desired: u32,
        ready_pods: u32,
        current: u32,
    ) -> Gated {
        if ready_pods > 0 && self.active_since.is_none() {
            self.active_since = Some(now);
        }
        if desired > 0 {
            self.idle_since = None;
            return Gated {
                desired,
                reason: None,
            };
        }
        if current == 0 {
            self.active_since = None;
            self.idle_since = None;
            return Gated {
                desired: 0,
                reason: None,
            };
        }
        let Some(active_since) = self.active_since else {
            return hold("pods are starting; not scaling to zero before one is ready".into());
        };
        let active_for = now.saturating_duration_since(active_since);
        if active_for < spec.stable_window {
            self.idle_since = None;
            let left = spec.stable_window - active_for;
            return hold(format!(
                "idle, keeping one pod: active for less than the stable window ({} left)",
                seconds(left)
            ));
        }
        let idle_since = *self.idle_since.get_or_insert(now);
        let wait = spec
            .scale_to_zero_grace_period
            .max(spec.scale_to_zero_pod_retention_period);
        let idle_for = now.saturating_duration_since(idle_since);
        if idle_for < wait {
            return hold(format!(
                "idle, keeping one pod: scale to zero in {}",
                seconds(wait - idle_for)
            ));
        }
        self.active_since = None;
        self.idle_since = None;
        Gated {
            desired: 0,
            reason: Some(format!(
                "idle for a stable window and {}: scaling to zero",
                seconds(wait)
            )),
        }
    }
}

fn hold(reason: String) -> Gated {
    Gated {
        desired: 1,
        reason: Some(reason),
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.0}s", d.as_secs_f64().ceil())
}
