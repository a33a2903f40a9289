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
            } => {
                let budget = match cold_start_budget {
                    Some(budget) => format!("budget {}%", budget * 100.0),
                    None => "no budget".to_string(),
                };
                match window_s {
                    Some(window_s) => format!("{budget}, window {window_s}s"),
                    None => budget,
                }
            }
        }
    }

    fn build(&self, context: &PolicyContext) -> DeciderPolicy {
        match *self {
            Self::Kpa {
                window_s,
                grace_s,
                utilisation_percent,
            } => DeciderPolicy::with_settings(
                context,
                &[
                    ("autoscaling.knative.dev/window", format!("{window_s}s")),
                    (
                        "autoscaling.knative.dev/target-utilization-percentage",
                        utilisation_percent.to_string(),
                    ),
                ],
                &[("scale-to-zero-grace-period", format!("{grace_s}s"))],
            ),
            Self::Serval {
                cold_start_budget,
                window_s,
            } => DeciderPolicy::serval_with(
                context,
                cold_start_budget,
                &window_s
                    .map(|w| ("autoscaling.knative.dev/window", format!("{w}s")))
                    .into_iter()
                    .collect::<Vec<_>>(),
            ),
        }
    }
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
/// at longer ones.
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
        "{:<14} {:<36} {:>12} {:>8} {:>10} {:>10} {:>9} {:>10}\n",
        "policy", "settings", "replica-s", "cold%", "p99 wait", "replica-s", "cold", "beats kpa"
    ));
    out.push_str(&format!(
        "{:<14} {:<36} {:>12} {:>8} {:>10} {:>10} {:>9} {:>10}\n",
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
            "{:<14} {:<36} {:>12.0} {:>7.2}% {:>8.0}ms {:>10.3} {:>9.3} {:>10}\n",
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

/// Whether each budget's point lies below the KPA's frontier: no KPA setting has both
/// fewer replica-seconds and fewer cold starts.
pub fn frontier_verdict(kpa: &[Compared], serval: &[Compared]) -> String {
    let dominated: Vec<String> = serval
        .iter()
        .filter(|s| {
            kpa.iter().any(|k| {
                k.summary.replica_seconds <= s.summary.replica_seconds
                    && k.summary.cold_starts <= s.summary.cold_starts
                    && (k.summary.replica_seconds < s.summary.replica_seconds
                        || k.summary.cold_starts < s.summary.cold_starts)
            })
        })
        .map(|s| s.candidate.label())
        .collect();
    if dominated.is_empty() {
        format!(
            "no KPA setting beats any of serval's {} settings on both cost and cold starts",
            serval.len()
        )
    } else {
        format!(
            "a KPA setting beats serval on both counts at {} of {} settings ({})",
            dominated.len(),
            serval.len(),
            dominated.join("; ")
        )
    }
}
