//! The target utilisation: room above the load for its fluctuation, as much as the budget
//! asks for. While a revision is busy, the mean and the standard deviation of its
//! per-second load (requests in flight) are learned; the capacity to hold is
//! `mean + z * sd`, where `z` leaves above it only the budget's share of a normal
//! distribution (the square-root staffing rule of call centres: busier revisions need
//! relatively less headroom). The utilisation is `mean / capacity`, within bounds a user
//! can read in the live view. The share of requests the activators report waiting is
//! measured beside it, for the view.

use std::time::Instant;

/// The target never goes below this (no more than double the load)...
pub(crate) const MIN_UTILISATION: f64 = 0.5;
/// ...nor above this (some headroom always).
pub(crate) const MAX_UTILISATION: f64 = 0.9;
/// Knative's default, until the load has been seen for a while.
pub(crate) const START_UTILISATION: f64 = 0.7;
/// Busy seconds seen before the learned target is used.
const SECONDS_NEEDED: u32 = 60;
/// Seconds over which an observation's weight halves (the load's statistics).
const LOAD_HALF_LIFE_S: f64 = 300.0;
/// Seconds over which a held request's weight halves (the measured share).
const SHARE_HALF_LIFE_S: f64 = 1800.0;

/// The learned target, and what it came from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TargetChoice {
    /// `None` without a budget: the configured target stands.
    pub utilisation: Option<f64>,
    /// Mean requests in flight while busy.
    pub load: f64,
    /// Their standard deviation, second to second.
    pub spread: f64,
    /// Share of requests that waited for a replica, decaying; `None` before any request.
    pub held_share: Option<f64>,
}

#[derive(Debug, Clone)]
pub(crate) struct TargetSteer {
    /// Standard deviations of headroom; `None` without a budget to size it by.
    z: Option<f64>,
    sum: f64,
    sum_squares: f64,
    weight: f64,
    seconds: u32,
    held: f64,
    requests: f64,
    last: Option<Instant>,
}

impl TargetSteer {
    /// For a revision that may keep `tail` of requests waiting while it scales up; with
    /// none, only the load and the waits are measured.
    pub(crate) fn new(tail: Option<f64>) -> Self {
        Self {
            z: tail.map(upper_quantile),
            sum: 0.0,
            sum_squares: 0.0,
            weight: 0.0,
            seconds: 0,
            held: 0.0,
            requests: 0.0,
            last: None,
        }
    }

    /// One busy second's load.
    pub(crate) fn observe_load(&mut self, load: f64) {
        let keep = 0.5f64.powf(1.0 / LOAD_HALF_LIFE_S);
        self.sum = self.sum * keep + load;
        self.sum_squares = self.sum_squares * keep + load * load;
        self.weight = self.weight * keep + 1.0;
        self.seconds = self.seconds.saturating_add(1);
    }

    /// `held` of `requests` arriving since the last call waited for a replica.
    pub(crate) fn observe_held(&mut self, now: Instant, held: f64, requests: f64) {
        let elapsed = self
            .last
            .map_or(0.0, |t| now.saturating_duration_since(t).as_secs_f64());
        self.last = Some(now);
        let keep = 0.5f64.powf(elapsed / SHARE_HALF_LIFE_S);
        self.held = self.held * keep + held.max(0.0);
        self.requests = self.requests * keep + requests.max(held).max(0.0);
    }

    pub(crate) fn choice(&self) -> TargetChoice {
        let held_share = (self.requests > 0.0).then(|| self.held / self.requests);
        if self.seconds < SECONDS_NEEDED || self.weight <= 0.0 {
            return TargetChoice {
                utilisation: self.z.map(|_| START_UTILISATION),
                load: 0.0,
                spread: 0.0,
                held_share,
            };
        }
        let load = self.sum / self.weight;
        let spread = (self.sum_squares / self.weight - load * load)
            .max(0.0)
            .sqrt();
        let utilisation = self.z.map(|z| {
            if load > 0.0 {
                (load / (load + z * spread)).clamp(MIN_UTILISATION, MAX_UTILISATION)
            } else {
                START_UTILISATION
            }
        });
        TargetChoice {
            utilisation,
            load,
            spread,
            held_share,
        }
    }
}

/// The standard normal quantile for `1 - tail`: how many standard deviations leave `tail`
/// of the mass above. Acklam's rational approximation (relative error below 1.2e-9).
pub(crate) fn upper_quantile(tail: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let p = (1.0 - tail).clamp(1e-12, 1.0 - 1e-12);
    let tail_part = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    const LOW: f64 = 0.02425;
    if p < LOW {
        tail_part((-2.0 * p.ln()).sqrt())
    } else if p <= 1.0 - LOW {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -tail_part((-2.0 * (1.0 - p).ln()).sqrt())
    }
}
