//! Serval's autoscaler class: the KPA decider, with what Knative fixes as constants learned
//! per revision from the traffic it sees. The user may state one thing, the share of
//! requests allowed to wait for a replica (`serving.serval.dev/cold-start-budget`); half of
//! it goes to cold starts from zero, half to waits while scaling up.
//!
//! - Scale to zero: the idle gaps between busy periods give the cheapest keep-alive and
//!   pre-warm whose cold starts fit the budget; without a budget, the plan that does better
//!   than the KPA's own keep-alive on both counts, if the history shows one ([`idle`]).
//! - Target: with a budget, the load's mean and spread give the headroom that leaves the
//!   budget's share of the spread uncovered ([`target`]); without one, the KPA's target.
//! - Cold start: measured from asking for a replica at zero to one being ready; it sets
//!   the pre-warm lead and the growth horizon, and with a budget the scale-down delay.
//! - Held requests: sized as a backlog by the learned service time ([`backlog`]).
//!
//! Pure, like the decider: time comes in as `now`.

mod backlog;
mod idle;
mod target;
#[cfg(test)]
mod tests;

use std::time::{Duration, Instant};

use serval_api::component::ScaleMetric;

use crate::decision::Decision;
use crate::metrics::MetricWindows;
use crate::rules::PodCounts;
use crate::spec::{AdaptiveSettings, ScalingSpec};

pub use idle::ZeroPlan;
pub use target::TargetChoice;

use backlog::ServiceTime;
use idle::IdleHistory;
use target::TargetSteer;

/// The part of the budget spent on cold starts from zero; the rest goes to scale-ups.
const ZERO_SHARE: f64 = 0.5;
/// The cold start assumed before one has been measured.
const ASSUMED_COLD_START_S: f64 = 10.0;
/// The scale-down delay is this many cold starts: a replica needed again sooner than that
/// costs more to restart than to keep.
const DELAY_COLD_STARTS: f64 = 2.0;
const MAX_DELAY_S: f64 = 60.0;

/// What the class predicted at one decision, for the reason, the live view and `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    /// `None` when the user stated none.
    pub cold_start_budget: Option<f64>,
    pub plan: ZeroPlan,
    pub target: TargetChoice,
    /// Seconds from asking for a replica at zero to it being ready (measured, or assumed).
    pub cold_start_s: f64,
    /// Mean seconds a request spends in service, once enough were served without a
    /// backlog; it sizes the replicas a backlog of held requests asks for.
    pub service_time_s: Option<f64>,
    /// Idle gaps the plan was learned from.
    pub idle_gaps: usize,
    /// Seconds the revision has been idle, when it is.
    pub idle_for_s: Option<f64>,
}

impl Prediction {
    fn summary(&self) -> String {
        let budget = match self.cold_start_budget {
            Some(budget) => format!("budget {:.2}%", budget * 100.0),
            None => "no budget".to_string(),
        };
        let mut out = match self.target.utilisation {
            Some(utilisation) => format!("serval class: target {:.0}%", utilisation * 100.0),
            None => "serval class: the KPA's target".to_string(),
        };
        if let Some(share) = self.target.held_share {
            out.push_str(&format!(
                ", {:.2}% of requests held ({budget})",
                share * 100.0
            ));
        }
        if self.target.load > 0.0 {
            out.push_str(&format!(
                " (load {:.2} ± {:.2})",
                self.target.load, self.target.spread
            ));
        }
        out.push_str(&format!(", cold start {:.0}s", self.cold_start_s));
        if let Some(service) = self.service_time_s {
            out.push_str(&format!(", service {service:.2}s"));
        }
        match self.plan.prewarm_at_s {
            Some(at) => out.push_str(&format!(
                ", pre-warm {at:.0}s into an idle period, keep-alive {:.0}s",
                self.plan.keep_alive_s
            )),
            None => out.push_str(&format!(", keep-alive {:.0}s", self.plan.keep_alive_s)),
        }
        match self.plan.predicted_cold_share {
            Some(share) => out.push_str(&format!(
                ", predicted {:.2}% of requests cold from zero ({} idle gaps, {budget})",
                share * 100.0,
                self.idle_gaps
            )),
            None => out.push_str(&format!(
                ", learning idle times ({} of {} gaps)",
                self.idle_gaps,
                match self.cold_start_budget {
                    Some(_) => idle::GAPS_NEEDED,
                    None => idle::GAPS_NEEDED_AGAINST_KPA,
                }
            )),
        }
        out
    }
}

/// Seconds since the last tick, 1 before the first, at most 5 (a stalled loop).
fn elapsed_or_one(last_tick: Option<Instant>, now: Instant) -> f64 {
    last_tick.map_or(1.0, |t| {
        now.saturating_duration_since(t).as_secs_f64().min(5.0)
    })
}

/// The learned state of one revision of Serval's class.
#[derive(Debug, Clone)]
pub(crate) struct Adaptive {
    settings: AdaptiveSettings,
    idle: IdleHistory,
    plan: ZeroPlan,
    /// When the revision last went idle; `None` while busy.
    idle_since: Option<Instant>,
    seen_busy: bool,
    /// The last tick whose per-second load was taken in (pokes between ticks add none).
    last_tick: Option<Instant>,
    /// When a replica was asked for while none was ready.
    waiting_since: Option<Instant>,
    cold_start_s: Option<f64>,
    target: TargetSteer,
    service: ServiceTime,
    /// Requests per second arriving, the larger of the stable and panic windows' averages.
    arrival_rate: Option<f64>,
    /// The last time requests were held: until it leaves the stable window, the windows'
    /// concurrency counts their wait.
    held_at: Option<Instant>,
}

/// The share of requests the target may keep waiting while scaling up, when there is a
/// budget.
fn scale_up_share(settings: AdaptiveSettings) -> Option<f64> {
    settings
        .cold_start_budget
        .map(|budget| budget * (1.0 - ZERO_SHARE))
}

impl Adaptive {
    /// For a revision of `spec`: without a budget the class keeps the KPA's scale to zero
    /// until it learns better.
    pub(crate) fn new(settings: AdaptiveSettings, spec: &ScalingSpec) -> Self {
        Self {
            settings,
            idle: IdleHistory::default(),
            plan: match settings.cold_start_budget {
                Some(_) => ZeroPlan::learning(),
                None => ZeroPlan::keeping(spec.kpa_keep_alive().as_secs_f64()),
            },
            idle_since: None,
            seen_busy: false,
            last_tick: None,
            waiting_since: None,
            cold_start_s: None,
            target: TargetSteer::new(scale_up_share(settings)),
            service: ServiceTime::default(),
            arrival_rate: None,
            held_at: None,
        }
    }

    pub(crate) fn update(&mut self, settings: AdaptiveSettings) {
        if settings != self.settings {
            self.target = TargetSteer::new(scale_up_share(settings));
        }
        self.settings = settings;
    }

    fn cold_start(&self) -> f64 {
        self.cold_start_s.unwrap_or(ASSUMED_COLD_START_S)
    }

    /// Takes in what the windows hold for this second; call before deciding.
    pub(crate) fn observe(
        &mut self,
        now: Instant,
        spec: &ScalingSpec,
        metrics: &MetricWindows,
        ready: u32,
        queued: u32,
    ) {
        if ready > 0 {
            if let Some(since) = self.waiting_since.take() {
                let measured = now.saturating_duration_since(since).as_secs_f64();
                self.cold_start_s = Some(match self.cold_start_s {
                    Some(known) => 0.7 * known + 0.3 * measured,
                    None => measured,
                });
            }
        }
        let load = metrics
            .this_second(now, ScaleMetric::Concurrency)
            .unwrap_or(0.0);
        let rate = metrics.this_second(now, ScaleMetric::Rps).unwrap_or(0.0);
        self.arrival_rate = metrics
            .averages(now, ScaleMetric::Rps)
            .map(|a| a.stable.max(a.panic));
        let busy = load > 0.0 || rate > 0.0 || queued > 0;
        let elapsed = elapsed_or_one(self.last_tick, now);
        let new_second = self.last_tick.is_none() || elapsed >= 1.0;
        // Pokes between ticks see the tick's second again: its requests count once.
        let requests = if new_second { rate * elapsed } else { 0.0 };
        // Every request that waited counts against the budget, from zero or not.
        let held = if new_second {
            metrics.held_this_second(now)
        } else {
            0.0
        };
        self.target.observe_held(now, held, requests);
        if queued > 0 || metrics.held_this_second(now) > 0.0 {
            self.held_at = Some(now);
        }
        if new_second {
            self.last_tick = Some(now);
        }
        if busy {
            if let Some(since) = self.idle_since.take() {
                if self.seen_busy {
                    self.idle
                        .busy_after(now.saturating_duration_since(since).as_secs_f64());
                }
            }
            self.seen_busy = true;
            self.idle.requests(requests);
            // A backlog measures the wait, not how the arrivals vary: while requests are
            // held the load says nothing about the headroom needed.
            if new_second && queued == 0 && metrics.held_this_second(now) == 0.0 {
                self.target.observe_load(load);
                self.service.observe(load, rate);
            }
        } else if self.idle_since.is_none() && self.seen_busy {
            self.idle_since = Some(now);
            self.idle.close();
            self.plan = match self.settings.cold_start_budget {
                Some(budget) => self.idle.plan(budget * ZERO_SHARE, self.cold_start()),
                None => self
                    .idle
                    .plan_against_kpa(self.cold_start(), spec.kpa_keep_alive().as_secs_f64()),
            };
        }
    }

    /// The target utilisation for request and throughput metrics.
    pub(crate) fn target(&self) -> TargetChoice {
        self.target.choice()
    }

    /// The scale-down delay the measured cold start asks for. Without a budget none: a
    /// delay buys fewer cold starts with replica-seconds, a trade the user did not state.
    pub(crate) fn scale_down_delay(&self) -> Duration {
        if self.settings.cold_start_budget.is_none() {
            return Duration::ZERO;
        }
        Duration::from_secs_f64((DELAY_COLD_STARTS * self.cold_start()).clamp(0.0, MAX_DELAY_S))
            .max(Duration::from_secs(1))
    }

    /// In an idle period with a pre-warm planned, when the replica is to start (which may
    /// be now or past, until the keep-alive ends).
    pub(crate) fn planned_start(&self, now: Instant) -> Option<Instant> {
        let since = self.idle_since?;
        let at = since + Duration::from_secs_f64(self.plan.prewarm_at_s?);
        let until = since + Duration::from_secs_f64(self.plan.keep_alive_s);
        (now < until).then_some(at)
    }

    fn prediction(&self, now: Instant) -> Prediction {
        Prediction {
            cold_start_budget: self.settings.cold_start_budget,
            plan: self.plan,
            target: self.target(),
            cold_start_s: self.cold_start(),
            service_time_s: self.service.seconds(),
            idle_gaps: self.idle.len(),
            idle_for_s: self
                .idle_since
                .map(|since| now.saturating_duration_since(since).as_secs_f64()),
        }
    }

    /// Limits a scale-up on concurrency, while the windows still hold the wait of held
    /// requests, to what the arrivals and the held requests need (see [`backlog`]); never
    /// below `current`, the count already asked for. Without held requests the KPA's count
    /// stands: a service time that grows with load shows in concurrency first.
    fn limit_backlog(
        &self,
        now: Instant,
        spec: &ScalingSpec,
        decision: &mut Decision,
        current: u32,
        queued: u32,
    ) {
        let waits_counted = self
            .held_at
            .is_some_and(|at| now.saturating_duration_since(at) <= spec.stable_window);
        if !waits_counted
            || decision.desired <= current
            || decision.winner != Some(ScaleMetric::Concurrency)
        {
            return;
        }
        let (Some(service_s), Some(rate)) = (self.service.seconds(), self.arrival_rate) else {
            return;
        };
        let Some(view) = decision.winning_metric() else {
            return;
        };
        let slots = spec
            .metrics
            .iter()
            .find(|m| m.metric == ScaleMetric::Concurrency)
            .map_or(1.0, |m| m.total);
        let needed = backlog::replicas_for(
            rate,
            service_s,
            view.target,
            f64::from(queued),
            slots,
            self.cold_start(),
        );
        let limit = needed.max(current);
        if decision.desired > limit {
            decision.desired = limit;
            decision.reason = format!(
                "{}; {rate:.2} req/s of {service_s:.2}s each and {queued} held need {needed}: \
                 limited to {limit}",
                decision.reason
            );
        }
    }

    /// Replaces the KPA's scale-to-zero timing with the learned plan while the revision is
    /// idle, limits scale-ups that count held requests as load, and says what was
    /// predicted. Runs after the KPA's rules.
    pub(crate) fn shape(
        &mut self,
        now: Instant,
        spec: &ScalingSpec,
        decision: &mut Decision,
        pods: PodCounts,
    ) {
        let (ready, queued) = (pods.ready, pods.activator_queued);
        self.limit_backlog(now, spec, decision, pods.current, queued);
        let prediction = self.prediction(now);
        if let (Some(idle_for), 0) = (prediction.idle_for_s, queued) {
            let wanted = self.plan.replicas_at(idle_for);
            if wanted == 0 && spec.floor() == 0 && decision.desired > 0 {
                decision.desired = 0;
                decision.reason = match self.plan.prewarm_at_s {
                    Some(at) if idle_for < at => {
                        format!("idle {idle_for:.0}s: released until the pre-warm at {at:.0}s")
                    }
                    _ => format!(
                        "idle {idle_for:.0}s, past the {:.0}s keep-alive: scaling to zero",
                        self.plan.keep_alive_s
                    ),
                };
            } else if wanted == 1 && decision.desired == 0 {
                decision.desired = 1;
                decision.reason = match self.plan.prewarm_at_s {
                    Some(at) => format!(
                        "idle {idle_for:.0}s: pre-warmed at {at:.0}s for the next request, kept until {:.0}s",
                        self.plan.keep_alive_s
                    ),
                    None => format!(
                        "idle {idle_for:.0}s: keeping one replica until {:.0}s",
                        self.plan.keep_alive_s
                    ),
                };
            }
        }
        if decision.desired > 0 && ready == 0 {
            self.waiting_since.get_or_insert(now);
        } else if decision.desired == 0 {
            self.waiting_since = None;
        }
        decision.reason = format!("{}; {}", decision.reason, prediction.summary());
        decision.prediction = Some(prediction);
    }
}
