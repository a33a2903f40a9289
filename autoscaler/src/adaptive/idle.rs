//! What a revision's idle times say about scaling to zero: the gaps between its busy
//! periods and the requests each gap was followed by, and from them the cheapest
//! keep-alive and pre-warm that keep cold starts from zero within a share of requests.
//! "Serverless in the Wild" (Shahrad et al., ATC '20) picks its windows from percentiles
//! of the idle-time histogram; here they are picked by cost under the user's budget.

use std::collections::VecDeque;

/// Gaps remembered; older ones are forgotten, so the plan follows a service that changes.
const GAPS_KEPT: usize = 256;
/// Idle "gaps" shorter than this are the 1 s reports of one busy period landing apart.
const FLICKER_S: f64 = 3.0;
/// Fewer gaps than this tell nothing yet.
pub(crate) const GAPS_NEEDED: usize = 3;
/// Without a budget a plan is judged on each half of the history, and each half needs
/// [`GAPS_NEEDED`].
pub(crate) const GAPS_NEEDED_AGAINST_KPA: usize = 2 * GAPS_NEEDED;
/// The longest a replica is kept idle, and the longest gap a pre-warm waits for.
pub(crate) const MAX_KEEP_ALIVE_S: f64 = 3600.0;
/// The keep-alive while there is too little history: about what the KPA gives by default
/// (a 60 s stable window, then a 30 s grace period).
pub(crate) const LEARNING_KEEP_ALIVE_S: f64 = 90.0;
/// Candidate windows tried per plan (quantiles of the gaps), to bound the work per gap.
const CANDIDATES: usize = 48;

/// One idle gap and the busy period that followed it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Gap {
    seconds: f64,
    /// Requests that arrived in the busy period the gap ended.
    requests: f64,
}

/// How the revision leaves and comes back to zero, counted from the moment it went idle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ZeroPlan {
    /// Start one replica this many seconds into an idle period (none is held before that);
    /// `None` keeps the replica from the start.
    pub prewarm_at_s: Option<f64>,
    /// Release the last replica this many seconds into an idle period.
    pub keep_alive_s: f64,
    /// Share of requests that would have met a cold start from zero under this plan, over
    /// the remembered gaps; `None` while learning.
    pub predicted_cold_share: Option<f64>,
}

impl ZeroPlan {
    pub(crate) fn learning() -> Self {
        Self::keeping(LEARNING_KEEP_ALIVE_S)
    }

    /// Keeps the last replica `keep_alive_s` into an idle period, with nothing learned.
    pub(crate) fn keeping(keep_alive_s: f64) -> Self {
        Self {
            prewarm_at_s: None,
            keep_alive_s,
            predicted_cold_share: None,
        }
    }

    /// Replicas this plan holds `idle_s` seconds into an idle period: 1 or 0.
    pub fn replicas_at(&self, idle_s: f64) -> u32 {
        let started = self.prewarm_at_s.is_none_or(|at| idle_s >= at);
        u32::from(started && idle_s < self.keep_alive_s)
    }
}

/// The remembered idle gaps of one revision.
#[derive(Debug, Clone, Default)]
pub(crate) struct IdleHistory {
    gaps: VecDeque<Gap>,
    /// The gap that ended the busy period now in progress, with its requests so far.
    open: Option<Gap>,
}

impl IdleHistory {
    /// A busy period began after `gap_s` seconds idle.
    pub(crate) fn busy_after(&mut self, gap_s: f64) {
        if gap_s < FLICKER_S {
            // One busy period seen in two halves (reports landing in different seconds):
            // it goes on.
            if self.open.is_none() {
                self.open = self.gaps.pop_back();
            }
            return;
        }
        self.close();
        self.open = Some(Gap {
            seconds: gap_s,
            requests: 0.0,
        });
    }

    /// Requests arrived in the busy period in progress.
    pub(crate) fn requests(&mut self, count: f64) {
        if let Some(open) = &mut self.open {
            open.requests += count.max(0.0);
        }
    }

    /// The busy period in progress ended.
    pub(crate) fn close(&mut self) {
        if let Some(mut gap) = self.open.take() {
            // The request that ended the gap counts even if the report missed it.
            gap.requests = gap.requests.max(1.0);
            self.gaps.push_back(gap);
            if self.gaps.len() > GAPS_KEPT {
                self.gaps.pop_front();
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.gaps.len()
    }

    fn requests_after_gaps(&self) -> f64 {
        self.gaps.iter().map(|g| g.requests).sum()
    }

    /// Without a budget: the plan that beats the KPA's own scale to zero (its stable window
    /// and grace period after the last request, `kpa_keep_alive_s`) by the most, scored by the worse of its relative savings in
    /// idle replica-seconds and in cold starts, in the older and the newer half of the
    /// remembered gaps alike. Only a plan that saves on both counts in both halves replaces
    /// the KPA's: a cold start that the history never shows is no evidence that it will
    /// not come, and a pattern seen in one half only may be gone.
    pub(crate) fn plan_against_kpa(&self, cold_start_s: f64, kpa_keep_alive_s: f64) -> ZeroPlan {
        if self.gaps.len() < GAPS_NEEDED_AGAINST_KPA {
            return ZeroPlan::keeping(kpa_keep_alive_s);
        }
        let ordered: Vec<f64> = self.gaps.iter().map(|g| g.seconds).collect();
        let (older, newer) = ordered.split_at(ordered.len() / 2);
        let halves = [sorted(older.iter().copied()), sorted(newer.iter().copied())];
        let halves: Vec<(GapCosts, Candidate)> = halves
            .iter()
            .map(|gaps| {
                let costs = GapCosts::new(gaps, cold_start_s);
                let kpa = costs.evaluate(None, kpa_keep_alive_s);
                (costs, kpa)
            })
            .collect();
        let gaps = sorted(ordered.iter().copied());
        let costs = GapCosts::new(&gaps, cold_start_s);
        let requests = self.requests_after_gaps();
        let plan = |prewarm_at_s: Option<f64>, keep_alive_s: f64| {
            let candidate = costs.evaluate(prewarm_at_s, keep_alive_s);
            let plan = ZeroPlan {
                prewarm_at_s,
                keep_alive_s,
                predicted_cold_share: Some(candidate.cold / requests),
            };
            (candidate, plan)
        };

        let mut best = (0.0, plan(None, kpa_keep_alive_s));
        for (prewarm_at_s, keep_alive_s) in candidate_plans(&gaps, cold_start_s) {
            let score = halves
                .iter()
                .map(|(costs, kpa)| costs.evaluate(prewarm_at_s, keep_alive_s).saving_over(kpa))
                .fold(f64::INFINITY, f64::min);
            if score <= 0.0 || score < best.0 {
                continue;
            }
            let (candidate, plan) = plan(prewarm_at_s, keep_alive_s);
            if score > best.0 || candidate.replica_seconds < best.1 .0.replica_seconds {
                best = (score, (candidate, plan));
            }
        }
        best.1 .1
    }

    /// The plan with the fewest idle replica-seconds whose cold starts from zero stay
    /// within `budget` (a share of requests), for replicas that take `cold_start_s` to
    /// serve. When none does, a budget out of reach is not chased at any price: the one
    /// with the fewest cold starts among those that cost no more than the learning
    /// keep-alive would.
    pub(crate) fn plan(&self, budget: f64, cold_start_s: f64) -> ZeroPlan {
        if self.gaps.len() < GAPS_NEEDED {
            return ZeroPlan::learning();
        }
        let gaps = sorted(self.gaps.iter().map(|g| g.seconds));
        let requests = self.requests_after_gaps();
        let costs = GapCosts::new(&gaps, cold_start_s);
        let allowed = budget * requests;

        let mut best: Option<(Candidate, ZeroPlan)> = None;
        let mut capped: Option<(Candidate, ZeroPlan)> = None;
        let cap = costs.evaluate(None, LEARNING_KEEP_ALIVE_S).replica_seconds;
        for (prewarm_at_s, keep_alive_s) in candidate_plans(&gaps, cold_start_s) {
            let candidate = costs.evaluate(prewarm_at_s, keep_alive_s);
            let plan = ZeroPlan {
                prewarm_at_s,
                keep_alive_s,
                predicted_cold_share: Some(candidate.cold / requests),
            };
            let better = match &best {
                None => true,
                Some((current, _)) => candidate.better_than(current, allowed),
            };
            if better {
                best = Some((candidate, plan));
            }
            if candidate.replica_seconds <= cap {
                let better = match &capped {
                    None => true,
                    Some((current, _)) => candidate.fewer_cold_than(current),
                };
                if better {
                    capped = Some((candidate, plan));
                }
            }
        }
        match (best, capped) {
            (Some((b, plan)), _) if b.cold <= allowed => plan,
            (_, Some((_, plan))) => plan,
            (best, None) => best.map_or_else(ZeroPlan::learning, |(_, plan)| plan),
        }
    }
}

/// The plans worth pricing for sorted `gaps`: keep-alives just past the gaps (and none),
/// each alone or with a pre-warm a cold start before a gap. Windows are fitted with slack
/// around the gaps: idle periods measured after a cold call and after a warm one differ,
/// and a replica's start varies around the measured cold start.
fn candidate_plans(gaps: &[f64], cold_start_s: f64) -> Vec<(Option<f64>, f64)> {
    let margin = |gap: f64| 2.0 + 0.02 * gap + 0.5 * cold_start_s;
    let mut keep_alives: Vec<f64> = quantiles(gaps).map(|g| g + margin(g)).collect();
    keep_alives.push(0.0);
    // Started a cold start before the gap it is for, and a little more for longer gaps.
    let prewarms: Vec<f64> = quantiles(gaps)
        .map(|g| g - cold_start_s - margin(g))
        .filter(|start| *start > 0.0)
        .collect();
    let mut plans = Vec::new();
    for keep in keep_alives {
        let keep = keep.min(MAX_KEEP_ALIVE_S);
        plans.push((None, keep));
        plans.extend(
            prewarms
                .iter()
                .filter(|p| **p < keep)
                .map(|p| (Some(*p), keep)),
        );
    }
    plans
}

fn sorted(values: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    values
}

/// Up to [`CANDIDATES`] values spread over sorted `gaps`, each once.
fn quantiles(gaps: &[f64]) -> impl Iterator<Item = f64> + '_ {
    let n = gaps.len();
    let picks = n.min(CANDIDATES);
    let mut last = None;
    (0..picks).filter_map(move |i| {
        let index = if picks == n {
            i
        } else {
            i * (n - 1) / (picks - 1).max(1)
        };
        let value = gaps[index];
        (last.replace(value) != Some(value)).then_some(value)
    })
}

/// A plan's idle cost and cold starts over the remembered gaps.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    replica_seconds: f64,
    cold: f64,
}

impl Candidate {
    fn better_than(&self, other: &Candidate, allowed: f64) -> bool {
        let fits = |c: &Candidate| c.cold <= allowed;
        match (fits(self), fits(other)) {
            (true, false) => true,
            (false, true) => false,
            (true, true) => self.replica_seconds < other.replica_seconds,
            (false, false) => self.fewer_cold_than(other),
        }
    }

    /// The worse of the two relative savings over `other`: in replica-seconds and in cold
    /// starts. Negative when this costs more on either count.
    fn saving_over(&self, other: &Candidate) -> f64 {
        let saving = |ours: f64, theirs: f64| {
            if theirs > 0.0 {
                (theirs - ours) / theirs
            } else if ours > 0.0 {
                f64::NEG_INFINITY
            } else {
                0.0
            }
        };
        saving(self.replica_seconds, other.replica_seconds).min(saving(self.cold, other.cold))
    }

    /// Fewer cold starts, or as many for fewer replica-seconds.
    fn fewer_cold_than(&self, other: &Candidate) -> bool {
        self.cold < other.cold
            || (self.cold == other.cold && self.replica_seconds < other.replica_seconds)
    }
}

/// Sorted gaps with prefix sums, so a plan is priced in O(log n).
struct GapCosts<'a> {
    gaps: &'a [f64],
    /// `prefix[i]` is the sum of the first `i` gaps.
    prefix: Vec<f64>,
    cold_start_s: f64,
}

impl<'a> GapCosts<'a> {
    fn new(gaps: &'a [f64], cold_start_s: f64) -> Self {
        let mut prefix = Vec::with_capacity(gaps.len() + 1);
        prefix.push(0.0);
        for g in gaps {
            prefix.push(prefix.last().copied().unwrap_or(0.0) + g);
        }
        Self {
            gaps,
            prefix,
            cold_start_s,
        }
    }

    /// Gaps below `value`.
    fn below(&self, value: f64) -> usize {
        self.gaps.partition_point(|g| *g < value)
    }

    /// Sum of `min(g, cap) - from` over the gaps `g >= from`.
    fn held_between(&self, from: f64, cap: f64) -> f64 {
        let start = self.below(from);
        let capped = self.below(cap).max(start);
        let under_cap = self.prefix[capped] - self.prefix[start];
        let over_cap = (self.gaps.len() - capped) as f64 * cap;
        under_cap + over_cap - (self.gaps.len() - start) as f64 * from
    }

    /// Without a pre-warm the replica is held from the start of each gap until the
    /// keep-alive; with one it is started at `prewarm_at_s` and held until the keep-alive.
    /// A request before the pre-warmed replica is ready or after the keep-alive meets a
    /// cold start, which also costs the cold start's replica-seconds.
    fn evaluate(&self, prewarm_at_s: Option<f64>, keep_alive_s: f64) -> Candidate {
        let after_keep = self.gaps.len() - self.gaps.partition_point(|g| *g <= keep_alive_s);
        let (start, early) = match prewarm_at_s {
            None => (0.0, 0),
            Some(start) => (start, self.below(start + self.cold_start_s)),
        };
        let cold = (after_keep + early) as f64;
        let held = if keep_alive_s > start {
            self.held_between(start, keep_alive_s)
        } else {
            0.0
        };
        Candidate {
            replica_seconds: held + cold * self.cold_start_s,
            cold,
        }
    }
}
