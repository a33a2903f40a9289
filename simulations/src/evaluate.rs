//! `serval simulate --evaluate`: settings chosen on some data, results reported on other
//! data. Each LLM trace is held out in turn while the settings are chosen on the other LLM
//! traces (leave one trace out); the functions of an Azure Functions trace are split in two
//! halves by a fixed seed, each held out while the other is used for tuning.
//!
//! Tuned on the tuning data, by the same rule for both: the KPA's best window, grace period
//! and target among a grid, and the `serval` class's best cold-start budget among a sweep.
//! The rule is the goal as a number: the worst, over the tuning data, of the
//! relative savings in replica-seconds and in cold starts against the KPA's defaults (a
//! setting that raises p99 wait by more than 100 ms scores below any that does not).
//! Reported, on held-out data only: the KPA with its defaults, the KPA with its tuned
//! settings, `serval` as a revision that names the class gets it (no budget; no run here
//! chose that) and `serval` with the tuned budget (or none); and both sweeps in full, for
//! the cost/cold-start frontier.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

use crate::engine::{simulate, Outcome, SimConfig};
use crate::policy::{DeciderPolicy, PolicyContext};
use crate::report::{summarise, Summary};
use crate::rng::SplitMix64;
use crate::trace::Trace;

/// One body of data a fold can tune on or hold out.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub name: String,
    /// Datasets of one kind tune each other (LLM traces; halves of a functions trace).
    pub kind: String,
    pub trace: Trace,
    pub config: SimConfig,
    pub llm: bool,
    pub decode_tps: f64,
    pub prefill_tps: f64,
}

/// A policy with fixed settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "policy", rename_all = "lowercase")]
pub enum Candidate {
    Kpa {
        window_s: u32,
        grace_s: u32,
        utilisation_percent: u32,
    },
    Serval {
        /// `None`: the class's default, no budget stated.
        cold_start_budget: Option<f64>,
        /// The stable window, when not the class's default.
        window_s: Option<u32>,
        /// The scale-to-zero grace period, when not the default.
        grace_s: Option<u32>,
        /// The target utilisation, when not the default.
        utilisation_percent: Option<u32>,
    },
}

/// Knative's defaults.
pub const KPA_DEFAULTS: Candidate = Candidate::Kpa {
    window_s: 60,
    grace_s: 30,
    utilisation_percent: 70,
};

impl Candidate {
    pub fn label(&self) -> String {
        match self {
            Self::Kpa {
                window_s,
                grace_s,
                utilisation_percent,
            } => format!("window {window_s}s, grace {grace_s}s, target {utilisation_percent}%"),
            Self::Serval {
                cold_start_budget,
                window_s,
                grace_s,
                utilisation_percent,
            } => {
                let mut label = match cold_start_budget {
                    Some(budget) => format!("budget {}%", budget * 100.0),
                    None => "no budget".to_string(),
                };
                if let Some(window_s) = window_s {
                    label.push_str(&format!(", window {window_s}s"));
                }
                if let Some(grace_s) = grace_s {
                    label.push_str(&format!(", grace {grace_s}s"));
                }
                if let Some(percent) = utilisation_percent {
                    label.push_str(&format!(", target {percent}%"));
                }
                label
            }
        }
    }

    fn build(&self, context: &PolicyContext) -> DeciderPolicy {
        match *self {
            Self::Kpa {
                window_s,
                grace_s,
                utilisation_percent,
            } => {
                let (annotations, config) =
                    knobs(Some(window_s), Some(grace_s), Some(utilisation_percent));
                DeciderPolicy::with_settings(context, &annotations, &config)
            }
            Self::Serval {
                cold_start_budget,
                window_s,
                grace_s,
                utilisation_percent,
            } => {
                let (annotations, config) = knobs(window_s, grace_s, utilisation_percent);
                DeciderPolicy::serval_with(context, cold_start_budget, &annotations, &config)
            }
        }
    }
}

type Settings = Vec<(&'static str, String)>;

/// The KPA's knobs that are set, as a revision's annotations and the autoscaler's config.
fn knobs(
    window_s: Option<u32>,
    grace_s: Option<u32>,
    utilisation_percent: Option<u32>,
) -> (Settings, Settings) {
    let mut annotations = Vec::new();
    if let Some(window_s) = window_s {
        annotations.push(("autoscaling.knative.dev/window", format!("{window_s}s")));
    }
    if let Some(percent) = utilisation_percent {
        annotations.push((
            "autoscaling.knative.dev/target-utilization-percentage",
            percent.to_string(),
        ));
    }
    let config = grace_s
        .map(|grace_s| ("scale-to-zero-grace-period", format!("{grace_s}s")))
        .into_iter()
        .collect();
    (annotations, config)
}

/// The KPA's grid: its stable window, scale-to-zero grace period and target utilisation.
pub fn kpa_grid() -> Vec<Candidate> {
    let mut grid = Vec::new();
    for window_s in [30, 60, 120, 240] {
        for grace_s in [10, 30, 120] {
            for utilisation_percent in [60, 70, 80] {
                grid.push(Candidate::Kpa {
                    window_s,
                    grace_s,
                    utilisation_percent,
                });
            }
        }
    }
    grid
}

/// The budgets `serval` is swept over (none, its default, first), at its default window and
/// at longer ones, then no budget at each setting of the KPA's grid.
pub fn serval_sweep() -> Vec<Candidate> {
    let mut sweep = Vec::new();
    for window_s in [None, Some(120), Some(240)] {
        for cold_start_budget in [
            None,
            Some(0.005),
            Some(0.01),
            Some(0.02),
            Some(0.05),
            Some(0.1),
            Some(0.2),
        ] {
            sweep.push(Candidate::Serval {
                cold_start_budget,
                window_s,
                grace_s: None,
                utilisation_percent: None,
            });
        }
    }
    // Without a budget the class takes the KPA's settings, so it is swept over the KPA's
    // whole grid too: its frontier is then drawn over at least the knobs the KPA's is.
    for candidate in kpa_grid() {
        if let Candidate::Kpa {
            window_s,
            grace_s,
            utilisation_percent,
        } = candidate
        {
            sweep.push(Candidate::Serval {
                cold_start_budget: None,
                window_s: Some(window_s),
                grace_s: Some(grace_s),
                utilisation_percent: Some(utilisation_percent),
            });
        }
    }
    sweep
}

/// Splits a trace's services in two halves, the same for the same seed.
pub fn halves(trace: &Trace, seed: u64) -> (Trace, Trace) {
    let mut order: Vec<usize> = (0..trace.services.len()).collect();
    let mut rng = SplitMix64::derive(seed, SPLIT_STREAM);
    for i in (1..order.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    let half = order.len() / 2;
    let pick = |indices: &[usize]| {
        let mut indices = indices.to_vec();
        indices.sort_unstable();
        Trace {
            services: indices.iter().map(|&i| trace.services[i].clone()).collect(),
            span_s: trace.span_s,
        }
    };
    (pick(&order[..half]), pick(&order[half..]))
}

/// The random stream of the split, apart from the streams the trace readers use.
const SPLIT_STREAM: u64 = 0x5eed_4a1f;

/// One candidate's results on one dataset.
fn run_one(dataset: &Dataset, candidate: &Candidate) -> Summary {
    let context = PolicyContext {
        base: Instant::now(),
        config: dataset.config,
        llm: dataset.llm,
        decode_tps: dataset.decode_tps,
        prefill_tps: dataset.prefill_tps,
        // Each candidate carries its own budget.
        cold_start_budget: None,
    };
    let outcomes: Vec<Outcome> = dataset
        .trace
        .services
        .iter()
        .map(|service| {
            let mut policy = candidate.build(&context);
            simulate(
                &service.requests,
                dataset.trace.span_s,
                &dataset.config,
                &mut policy,
                &mut |_| {},
            )
        })
        .collect();
    summarise(&candidate.label(), &outcomes, dataset.llm)
}

/// Every candidate on every dataset, on all cores; `progress` gets runs done.
fn run_matrix(
    datasets: &[Dataset],
    candidates: &[Candidate],
    progress: &(dyn Fn(usize) + Sync),
) -> Vec<Vec<Summary>> {
    let jobs: Vec<(usize, usize)> = (0..datasets.len())
        .flat_map(|d| (0..candidates.len()).map(move |c| (d, c)))
        .collect();
    let results: Mutex<Vec<Vec<Option<Summary>>>> =
        Mutex::new(vec![vec![None; candidates.len()]; datasets.len()]);
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(d, c)) = jobs.get(i) else {
                    break;
                };
                let summary = run_one(&datasets[d], &candidates[c]);
                results.lock().unwrap_or_else(|e| e.into_inner())[d][c] = Some(summary);
                progress(done.fetch_add(1, Ordering::Relaxed) + 1);
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .map(|row| row.into_iter().flatten().collect())
        .collect()
}

/// How far `summary` improves on `baseline` on both counts at once: the smaller of the
/// relative savings in replica-seconds and in cold starts; 100 ms more p99 wait costs 1.
fn margin(summary: &Summary, baseline: &Summary) -> f64 {
    let saved = |ours: f64, theirs: f64| {
        if theirs <= 0.0 {
            if ours <= 0.0 {
                0.0
            } else {
                -1.0
            }
        } else {
            1.0 - ours / theirs
        }
    };
    let cost = saved(summary.replica_seconds, baseline.replica_seconds);
    let cold = saved(summary.cold_starts as f64, baseline.cold_starts as f64);
    let p99_penalty = if summary.p99_wait_ms > baseline.p99_wait_ms + 100.0 {
        1.0
    } else {
        0.0
    };
    cost.min(cold) - p99_penalty
}

/// One candidate beside the KPA's defaults on the same data.
#[derive(Debug, Clone, Serialize)]
pub struct Compared {
    pub candidate: Candidate,
    pub summary: Summary,
    pub replica_seconds_ratio: f64,
    pub cold_starts_ratio: f64,
    /// Fewer cold starts, p99 wait no higher, replica-seconds no higher.
    pub beats_kpa_defaults: bool,
}

impl Compared {
    fn new(candidate: Candidate, summary: &Summary, kpa: &Summary) -> Self {
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
        Self {
            candidate,
            replica_seconds_ratio: ratio(summary.replica_seconds, kpa.replica_seconds),
            cold_starts_ratio: ratio(summary.cold_starts as f64, kpa.cold_starts as f64),
            beats_kpa_defaults: summary.cold_starts < kpa.cold_starts
                && summary.p99_wait_ms <= kpa.p99_wait_ms
                && summary.replica_seconds <= kpa.replica_seconds,
            summary: summary.clone(),
        }
    }
}

/// What one fold reports, all on its held-out data.
#[derive(Debug, Clone, Serialize)]
pub struct FoldResult {
    pub held_out: String,
    pub tuned_on: Vec<String>,
    pub kpa_defaults: Compared,
    pub kpa_tuned: Compared,
    pub serval_default: Compared,
    pub serval_tuned: Compared,
    /// Every KPA setting of the grid and every budget of the sweep.
    pub kpa_grid: Vec<Compared>,
    pub serval_sweep: Vec<Compared>,
}

/// Runs the protocol. Each dataset is held out once, tuned on the others of its kind;
/// a dataset alone of its kind is an error the caller reports.
pub fn evaluate(datasets: &[Dataset], progress: &(dyn Fn(usize, usize) + Sync)) -> Vec<FoldResult> {
    let kpa = kpa_grid();
    let serval = serval_sweep();
    let default_serval = Candidate::Serval {
        cold_start_budget: None,
        window_s: None,
        grace_s: None,
        utilisation_percent: None,
    };
    let mut candidates = kpa.clone();
    candidates.extend(serval.iter().copied());
    if !candidates.contains(&default_serval) {
        candidates.push(default_serval);
    }
    let total = datasets.len() * candidates.len();
    let matrix = run_matrix(datasets, &candidates, &|done| progress(done, total));
    let index = |c: &Candidate| {
        candidates
            .iter()
            .position(|x| x == c)
            .expect("every candidate ran")
    };
    let kpa_default_at = index(&KPA_DEFAULTS);
    let mut kpa_defaults_first = vec![KPA_DEFAULTS];
    kpa_defaults_first.extend(kpa.iter().filter(|c| **c != KPA_DEFAULTS));

    let mut folds = Vec::new();
    for (held, dataset) in datasets.iter().enumerate() {
        let tuning: Vec<usize> = (0..datasets.len())
            .filter(|&d| d != held && datasets[d].kind == dataset.kind)
            .collect();
        if tuning.is_empty() {
            continue;
        }
        let tuned = |family: &[Candidate]| -> Candidate {
            let score = |c: &Candidate| {
                tuning
                    .iter()
                    .map(|&d| margin(&matrix[d][index(c)], &matrix[d][kpa_default_at]))
                    .fold(f64::INFINITY, f64::min)
            };
            // The first of equals wins, so a setting that changes nothing is not reported
            // as a tuned one when the default is among them.
            let mut best = family[0];
            let mut best_score = score(&best);
            for candidate in &family[1..] {
                let candidate_score = score(candidate);
                if candidate_score > best_score {
                    best = *candidate;
                    best_score = candidate_score;
                }
            }
            best
        };
        let row = &matrix[held];
        let baseline = &row[kpa_default_at];
        let compared = |c: Candidate| Compared::new(c, &row[index(&c)], baseline);
        folds.push(FoldResult {
            held_out: dataset.name.clone(),
            tuned_on: tuning.iter().map(|&d| datasets[d].name.clone()).collect(),
            kpa_defaults: compared(KPA_DEFAULTS),
            kpa_tuned: compared(tuned(&kpa_defaults_first)),
            serval_default: compared(default_serval),
            serval_tuned: compared(tuned(&serval)),
            kpa_grid: kpa.iter().map(|&c| compared(c)).collect(),
            serval_sweep: serval.iter().map(|&c| compared(c)).collect(),
        });
    }
    folds
}

/// The table of one fold.
pub fn fold_table(fold: &FoldResult) -> String {
    let mut out = format!(
        "held out: {} (tuned on {})\n",
        fold.held_out,
        fold.tuned_on.join(", ")
    );
    out.push_str(&format!(
        "{:<14} {:<44} {:>12} {:>8} {:>10} {:>10} {:>9} {:>10}\n",
        "policy", "settings", "replica-s", "cold%", "p99 wait", "replica-s", "cold", "beats kpa"
    ));
    out.push_str(&format!(
        "{:<14} {:<44} {:>12} {:>8} {:>10} {:>10} {:>9} {:>10}\n",
        "", "", "", "", "", "vs kpa", "vs kpa", "defaults"
    ));
    let rows = [
        ("kpa", &fold.kpa_defaults),
        ("kpa-tuned", &fold.kpa_tuned),
        ("serval", &fold.serval_default),
        ("serval-tuned", &fold.serval_tuned),
    ];
    for (name, c) in rows {
        out.push_str(&format!(
            "{:<14} {:<44} {:>12.0} {:>7.2}% {:>8.0}ms {:>10.3} {:>9.3} {:>10}\n",
            name,
            c.candidate.label(),
            c.summary.replica_seconds,
            c.summary.cold_start_share * 100.0,
            c.summary.p99_wait_ms,
            c.replica_seconds_ratio,
            c.cold_starts_ratio,
            if name == "kpa" {
                "-"
            } else if c.beats_kpa_defaults {
                "yes"
            } else {
                "no"
            }
        ));
    }
    out.push_str(&format!(
        "frontier: {}\n",
        frontier_verdict(&fold.kpa_grid, &fold.serval_sweep)
    ));
    out
}

/// Whether each of serval's points lies below the KPA's frontier (no KPA setting has both
/// fewer replica-seconds and fewer cold starts), then the goal read frontier against
/// frontier: each family's frontier joined by straight lines, as the plots draw them, and
/// serval's cost on its line at the cold starts of each point of the KPA's.
pub fn frontier_verdict(kpa: &[Compared], serval: &[Compared]) -> String {
    let beats = |a: &Compared, b: &Compared| {
        a.summary.replica_seconds <= b.summary.replica_seconds
            && a.summary.cold_starts <= b.summary.cold_starts
            && (a.summary.replica_seconds < b.summary.replica_seconds
                || a.summary.cold_starts < b.summary.cold_starts)
    };
    let dominated: Vec<String> = serval
        .iter()
        .filter(|s| kpa.iter().any(|k| beats(k, s)))
        .map(|s| s.candidate.label())
        .collect();
    let mut verdict = if dominated.is_empty() {
        format!(
            "no KPA setting beats any of serval's {} settings on both cost and cold starts",
            serval.len()
        )
    } else {
        const NAMED: usize = 4;
        let mut named = dominated[..dominated.len().min(NAMED)].join("; ");
        if dominated.len() > NAMED {
            named.push_str(&format!("; {} more", dominated.len() - NAMED));
        }
        format!(
            "a KPA setting beats serval on both counts at {} of {} settings ({named})",
            dominated.len(),
            serval.len(),
        )
    };
    verdict.push('\n');
    let point = |c: &Compared| (c.summary.cold_starts as f64, c.summary.replica_seconds);
    verdict.push_str(&frontier_against_frontier(
        &kpa.iter().map(point).collect::<Vec<_>>(),
        &serval.iter().map(point).collect::<Vec<_>>(),
    ));
    verdict
}

/// Points are (cold starts, replica-seconds).
fn frontier_against_frontier(kpa: &[(f64, f64)], serval: &[(f64, f64)]) -> String {
    let kpa_line = pareto(kpa);
    let serval_line = pareto(serval);
    let ratios: Vec<Option<f64>> = kpa_line
        .iter()
        .map(|&(cold, cost)| cost_on(&serval_line, cold).map(|c| c / cost))
        .collect();
    let reached: Vec<f64> = ratios.iter().flatten().copied().collect();
    let out_of_reach = ratios.len() - reached.len();
    let above = reached.iter().filter(|&&r| r > 1.0).count();
    let matched = kpa_line
        .iter()
        .filter(|&&(cold, cost)| serval_line.iter().any(|&(c, r)| c <= cold && r <= cost))
        .count();
    let worst = reached.iter().copied().fold(f64::NAN, f64::max);
    let mut line = format!(
        "frontier against frontier (as the plots join them): at the KPA's {} points, ",
        kpa_line.len()
    );
    let same = "the KPA's replica-seconds at the same cold starts";
    if reached.is_empty() {
        line.push_str("each has fewer cold starts than any serval setting");
    } else {
        if above == 0 {
            let at = if out_of_reach == 0 {
                "all of them".to_string()
            } else {
                format!("the {} it reaches", reached.len())
            };
            line.push_str(&format!(
                "serval's lies on or below at {at}, at most {worst:.4}x {same}"
            ));
        } else {
            line.push_str(&format!(
                "serval's lies above at {above}, up to {worst:.4}x {same}"
            ));
        }
        if out_of_reach > 0 {
            line.push_str(&format!(
                ", and {out_of_reach} have fewer cold starts than any serval setting"
            ));
        }
    }
    line.push_str(&format!(
        "; single serval settings match or beat {matched} of them on both counts"
    ));
    line
}

/// The points no other point beats on both coordinates (lower is better), by x.
pub(crate) fn pareto(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut sorted = points.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    let mut frontier: Vec<(f64, f64)> = Vec::new();
    for p in sorted {
        if frontier.last().is_none_or(|last| p.1 < last.1) {
            frontier.push(p);
        }
    }
    frontier
}

/// The y of `frontier` (as [`pareto`] gives it) joined by straight lines at `x`: past its
/// last point, that point's (it holds there); before its first, `None`.
fn cost_on(frontier: &[(f64, f64)], x: f64) -> Option<f64> {
    let first = frontier.first()?;
    if x < first.0 {
        return None;
    }
    for pair in frontier.windows(2) {
        let ((x0, y0), (x1, y1)) = (pair[0], pair[1]);
        if x <= x1 {
            return Some(y0 + (y1 - y0) * (x - x0) / (x1 - x0));
        }
    }
    frontier.last().map(|p| p.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frontier_keeps_only_the_points_nothing_beats_on_both_counts() {
        let points = [
            (5.0, 10.0),
            (1.0, 30.0),
            (3.0, 20.0),
            (3.0, 25.0),
            (6.0, 12.0),
        ];
        assert_eq!(pareto(&points), vec![(1.0, 30.0), (3.0, 20.0), (5.0, 10.0)]);
    }

    #[test]
    fn the_cost_on_a_frontier_is_read_along_its_joining_lines() {
        let line = [(1.0, 30.0), (3.0, 20.0), (5.0, 10.0)];
        assert_eq!(cost_on(&line, 0.5), None);
        assert_eq!(cost_on(&line, 1.0), Some(30.0));
        assert_eq!(cost_on(&line, 2.0), Some(25.0));
        assert_eq!(cost_on(&line, 4.5), Some(12.5));
        assert_eq!(cost_on(&line, 9.0), Some(10.0));
    }

    #[test]
    fn a_frontier_between_the_others_points_can_lie_below_without_matching_any() {
        let kpa = [(2.0, 30.0), (4.0, 20.0)];
        // Never at the KPA's points on both counts, but below its line at their cold starts.
        let serval = [(1.0, 31.0), (3.0, 21.0), (5.0, 15.0)];
        assert_eq!(
            frontier_against_frontier(&kpa, &serval),
            "frontier against frontier (as the plots join them): at the KPA's 2 points, \
             serval's lies on or below at all of them, at most 0.9000x the KPA's replica-seconds \
             at the same cold starts; single serval settings match or beat 0 of them on both counts"
        );
        let above = [(3.0, 19.0), (5.0, 21.0)];
        assert_eq!(
            frontier_against_frontier(&kpa, &above),
            "frontier against frontier (as the plots join them): at the KPA's 2 points, \
             serval's lies on or below at the 1 it reaches, at most 0.9500x the KPA's \
             replica-seconds at the same cold starts, and 1 have fewer cold starts than any \
             serval setting; single serval settings match or beat 1 of them on both counts"
        );
        let costlier = [(2.0, 33.0), (4.0, 21.0)];
        assert_eq!(
            frontier_against_frontier(&kpa, &costlier),
            "frontier against frontier (as the plots join them): at the KPA's 2 points, \
             serval's lies above at 2, up to 1.1000x the KPA's replica-seconds at the same cold \
             starts; single serval settings match or beat 0 of them on both counts"
        );
    }
}
