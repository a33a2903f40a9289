//! The Azure Functions 2019 trace: per-minute invocation counts of each function
//! (`*_inv.csv`: `HashFunction,HashApp,HashOwner,minute_1..minute_1440`) and run-time
//! percentiles (`*_run.csv` beside it). Each minute's invocations are spread over the minute
//! evenly with a seeded jitter; each run time is drawn from the function's percentiles.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{LoadOptions, Request, ServiceTrace};
use crate::error::SimError;
use crate::rng::SplitMix64;

/// Which functions of the (1,000-function) trace to simulate, each as its own service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FunctionsSelection {
    /// How many functions.
    pub count: usize,
    /// The busiest `count`; otherwise `count` functions spread evenly over the ranking by
    /// invocations (busy, medium and rare ones alike).
    pub busiest: bool,
}

impl Default for FunctionsSelection {
    fn default() -> Self {
        Self {
            count: 20,
            busiest: false,
        }
    }
}

/// The run-time percentiles of `percentile_Average_{0,1,25,50,75,99,100}`, in seconds.
type RunTimes = [(f64, f64); 7];
const PERCENTILES: [f64; 7] = [0.0, 1.0, 25.0, 50.0, 75.0, 99.0, 100.0];

struct Function {
    name: String,
    counts: Vec<u32>,
    total: u64,
}

pub(super) fn read(
    path: &Path,
    text: &str,
    options: &LoadOptions,
) -> Result<(Vec<ServiceTrace>, f64), SimError> {
    let mut functions = Vec::new();
    let mut minutes = 0usize;
    for (index, line) in text.lines().enumerate() {
        if index == 0 || line.trim().is_empty() {
            continue;
        }
        let mut fields = line.split(',');
        let name = fields.next().unwrap_or("").trim().to_string();
        let counts = fields
            .skip(2)
            .map(|c| c.trim().parse::<u32>())
            .collect::<Result<Vec<u32>, _>>()
            .map_err(|e| SimError::parse(path, index + 1, format!("bad count: {e}")))?;
        if counts.is_empty() {
            return Err(SimError::parse(path, index + 1, "no minute columns"));
        }
        minutes = minutes.max(counts.len());
        let total = counts.iter().map(|&c| u64::from(c)).sum();
        functions.push(Function {
            name,
            counts,
            total,
        });
    }
    let run_times = read_run_times(&run_file(path))?;
    let chosen = select(functions, options.functions);
    let fixed = [(0.0, options.model.fixed_s); 7];
    let services = chosen
        .into_iter()
        .enumerate()
        .map(|(i, f)| {
            let runs = run_times.get(&f.name).unwrap_or(&fixed);
            let mut rng = SplitMix64::derive(options.seed, i as u64 + 1);
            let mut requests = Vec::with_capacity(f.total as usize);
            for (minute, &n) in f.counts.iter().enumerate() {
                for k in 0..n {
                    let offset = (f64::from(k) + rng.next_f64()) * 60.0 / f64::from(n);
                    let service_s = draw(runs, rng.next_f64() * 100.0).max(0.001);
                    requests.push(Request {
                        at: minute as f64 * 60.0 + offset,
                        service_s,
                        first_token_s: 0.0,
                        output_tokens: 0,
                        prompt_tokens: 0,
                    });
                }
            }
            let short: String = f.name.chars().take(8).collect();
            ServiceTrace {
                name: format!("fn-{short}"),
                requests,
            }
        })
        .collect();
    Ok((services, minutes as f64 * 60.0))
}

/// `x_inv.csv` -> `x_run.csv` in the same folder.
fn run_file(inv: &Path) -> PathBuf {
    let name = inv
        .file_name()
        .map(|n| n.to_string_lossy().replace("_inv", "_run"))
        .unwrap_or_default();
    inv.with_file_name(name)
}

fn select(mut functions: Vec<Function>, selection: FunctionsSelection) -> Vec<Function> {
    functions.retain(|f| f.total > 0);
    // Stable order: most invocations first, then by name.
    functions.sort_by(|a, b| b.total.cmp(&a.total).then_with(|| a.name.cmp(&b.name)));
    let n = functions.len();
    let count = selection.count.min(n);
    if selection.busiest || count == n || count == 0 {
        functions.truncate(count);
        return functions;
    }
    let picks: Vec<usize> = (0..count)
        .map(|i| i * (n - 1) / (count - 1).max(1))
        .collect();
    functions
        .into_iter()
        .enumerate()
        .filter(|(i, _)| picks.contains(i))
        .map(|(_, f)| f)
        .collect()
}

/// Run-time percentiles by function; a missing file means fixed service times.
fn read_run_times(path: &Path) -> Result<HashMap<String, RunTimes>, SimError> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(HashMap::new());
    };
    let mut out = HashMap::new();
    let mut lines = text.lines().enumerate();
    let Some((_, header)) = lines.next() else {
        return Ok(out);
    };
    let columns: Vec<&str> = header.split(',').map(str::trim).collect();
    let at = |name: String| columns.iter().position(|c| *c == name);
    let Some(indices) = PERCENTILES
        .iter()
        .map(|p| at(format!("percentile_Average_{p}")))
        .collect::<Option<Vec<usize>>>()
    else {
        return Err(SimError::parse(
            path,
            1,
            "missing percentile_Average_* columns",
        ));
    };
    for (index, line) in lines {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let mut runs = [(0.0, 0.0); 7];
        for (slot, (&column, &p)) in indices.iter().zip(PERCENTILES.iter()).enumerate() {
            let ms: f64 = fields
                .get(column)
                .and_then(|v| v.parse().ok())
                .filter(|v: &f64| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| SimError::parse(path, index + 1, "bad run-time percentile"))?;
            runs[slot] = (p, ms / 1000.0);
        }
        out.insert(fields[0].to_string(), runs);
    }
    Ok(out)
}

/// The run time at percentile `p`, interpolated linearly between the known points.
fn draw(runs: &RunTimes, p: f64) -> f64 {
    for pair in runs.windows(2) {
        let ((p0, v0), (p1, v1)) = (pair[0], pair[1]);
        if p <= p1 {
            let f = if p1 > p0 { (p - p0) / (p1 - p0) } else { 1.0 };
            return v0 + f * (v1 - v0);
        }
    }
    runs[6].1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate() {
        let runs = [
            (0.0, 0.0),
            (1.0, 1.0),
            (25.0, 1.0),
            (50.0, 2.0),
            (75.0, 3.0),
            (99.0, 4.0),
            (100.0, 10.0),
        ];
        assert_eq!(draw(&runs, 37.5), 1.5);
        assert_eq!(draw(&runs, 99.5), 7.0);
        assert_eq!(
            run_file(Path::new("/a/1000_inv.csv")),
            Path::new("/a/1000_run.csv")
        );
    }
}
