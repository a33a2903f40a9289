//! `serval simulate`: its flags, and the run from reading the trace to printing the table,
//! the JSON and the plots.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use serval_api::duration::parse_go_duration;

use crate::engine::SimConfig;
use crate::error::SimError;
use crate::evaluate::{evaluate, fold_table, halves, Dataset};
use crate::policy::PolicyKind;
use crate::report::table;
use crate::run::{compare, RunOptions};
use crate::trace::{load, Format, FunctionsSelection, LoadOptions, ServiceModel, Trace};

/// Replay a request trace through the autoscaler and compare scaling policies.
#[derive(clap::Args, Debug, Clone)]
pub struct SimulateArgs {
    /// The trace file; with --evaluate, give it once per trace.
    #[arg(long, required = true)]
    pub trace: Vec<PathBuf>,
    /// Choose each policy's settings on part of the data and report on the rest: each LLM
    /// trace held out while tuning on the other LLM traces, and the functions of an Azure
    /// Functions trace split in two halves by --seed, each held out in turn.
    #[arg(long)]
    pub evaluate: bool,
    /// The trace format; guessed from the file name when left out.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Policies to compare, comma-separated: kpa, serval, keepalive, hybrid, peak. All when
    /// left out.
    #[arg(long, value_delimiter = ',')]
    pub policy: Vec<String>,
    /// Print a JSON array, one object per policy, instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Seed of the random draws (arrivals within a minute, function run times).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Time from a replica being asked for to it serving (Go duration).
    #[arg(long, default_value = "10s")]
    pub cold_start: String,
    /// Requests one replica serves at once (containerConcurrency). Default: 8 for LLM
    /// traces, 1 otherwise.
    #[arg(long)]
    pub concurrency: Option<u32>,
    /// Requests the activator holds at most; more are dropped.
    #[arg(long, default_value_t = 10_000)]
    pub queue_limit: usize,
    /// LLM traces: prompt tokens per second of prefill.
    #[arg(long, default_value_t = 4000.0)]
    pub prefill_tps: f64,
    /// LLM traces: output tokens per second each sequence decodes.
    #[arg(long, default_value_t = 40.0)]
    pub decode_tps: f64,
    /// Service time of a request in traces without one (csv; functions without run times).
    #[arg(long, default_value = "500ms")]
    pub service_time: String,
    /// Only the first part of the trace (Go duration, e.g. 2h).
    #[arg(long)]
    pub duration: Option<String>,
    /// Azure Functions: how many functions, spread over the ranking by invocations.
    #[arg(long, default_value_t = 20)]
    pub functions: usize,
    /// Azure Functions: the busiest functions instead of a spread.
    #[arg(long)]
    pub busiest: bool,
    /// The `serval` policy's cold-start budget, as `serving.serval.dev/cold-start-budget`
    /// takes it: a share of requests between 0.1% and 50%, like 5% or 0.05. Default: none,
    /// as for a revision that only names the class. Not with --evaluate, which sweeps it.
    #[arg(long)]
    pub cold_start_budget: Option<String>,
    /// Write PNG plots here.
    #[arg(long)]
    pub plots: Option<PathBuf>,
}

fn seconds(flag: &str, value: &str) -> Result<f64, SimError> {
    parse_go_duration(value)
        .map(|d| d.as_secs_f64())
        .map_err(|e| SimError::Usage(format!("--{flag}: {e}")))
}

fn policies(names: &[String]) -> Result<Vec<PolicyKind>, SimError> {
    if names.is_empty() {
        return Ok(PolicyKind::ALL.to_vec());
    }
    let mut out = Vec::new();
    for name in names {
        let kind: PolicyKind = name.parse().map_err(SimError::Usage)?;
        if !out.contains(&kind) {
            out.push(kind);
        }
    }
    Ok(out)
}

fn cold_start_budget(args: &SimulateArgs) -> Result<Option<f64>, SimError> {
    let Some(value) = &args.cold_start_budget else {
        return Ok(None);
    };
    if args.evaluate {
        return Err(SimError::Usage(
            "--cold-start-budget: --evaluate sweeps the budget; leave it out".into(),
        ));
    }
    serval_api::annotations::parse_share(value.trim()).ok_or_else(|| {
        SimError::Usage(format!(
            "--cold-start-budget: expected a share between 0.1% and 50%, like 5% or 0.05, got {value:?}"
        ))
    })
    .map(Some)
}

fn model(args: &SimulateArgs) -> Result<ServiceModel, SimError> {
    Ok(ServiceModel {
        prefill_tps: positive("prefill-tps", args.prefill_tps)?,
        decode_tps: positive("decode-tps", args.decode_tps)?,
        fixed_s: seconds("service-time", &args.service_time)?,
    })
}

/// Reads one trace as the flags say, with its platform settings.
fn load_trace(
    args: &SimulateArgs,
    path: &Path,
    format: Format,
) -> Result<(Trace, SimConfig), SimError> {
    let duration_s = args
        .duration
        .as_deref()
        .map(|d| seconds("duration", d))
        .transpose()?;
    let concurrency = args
        .concurrency
        .unwrap_or(if format.is_llm() { 8 } else { 1 });
    if concurrency == 0 {
        return Err(SimError::Usage("--concurrency must be at least 1".into()));
    }
    let trace = load(
        path,
        &LoadOptions {
            format,
            model: model(args)?,
            seed: args.seed,
            duration_s,
            functions: FunctionsSelection {
                count: args.functions,
                busiest: args.busiest,
            },
        },
    )?;
    let config = SimConfig {
        cold_start_s: seconds("cold-start", &args.cold_start)?,
        concurrency,
        queue_limit: args.queue_limit,
    };
    Ok((trace, config))
}

/// Runs `serval simulate` and prints the results on stdout.
pub fn run(args: &SimulateArgs) -> Result<(), SimError> {
    let cold_start_budget = cold_start_budget(args)?;
    if args.evaluate {
        return run_evaluation(args);
    }
    let [path] = args.trace.as_slice() else {
        return Err(SimError::Usage(
            "give one --trace, or several with --evaluate".into(),
        ));
    };
    let format = args.format.unwrap_or_else(|| Format::detect(path));
    let model = model(args)?;
    let policies = policies(&args.policy)?;
    let (trace, config) = load_trace(args, path, format)?;
    let concurrency = config.concurrency;
    let options = RunOptions {
        config,
        policies,
        llm: format.is_llm(),
        decode_tps: model.decode_tps,
        prefill_tps: model.prefill_tps,
        cold_start_budget,
    };
    let total = trace.requests() as u64 * options.policies.len() as u64;
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} requests {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let runs = compare(&trace, &options, &mut |done| {
        if let Some(bar) = &bar {
            bar.set_position(done);
        }
    });
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if let Some(dir) = &args.plots {
        crate::plot::write_all(dir, &runs)?;
    }
    let summaries: Vec<_> = runs.into_iter().map(|r| r.summary).collect();
    if args.json {
        let json = serde_json::to_string_pretty(&summaries)
            .map_err(|e| SimError::Usage(format!("cannot encode JSON: {e}")))?;
        println!("{json}");
    } else {
        let budget = match cold_start_budget {
            _ if !options.policies.contains(&PolicyKind::Serval) => String::new(),
            // Rounded to hundredths of a percent: 0.07 * 100 is not exactly 7.
            Some(budget) => format!(
                "; serval's cold-start budget {}%",
                (budget * 1e4).round() / 1e2
            ),
            None => "; serval without a cold-start budget".to_string(),
        };
        println!(
            "{} requests over {:.0} s in {} service(s); cold start {}, concurrency {}{budget}",
            trace.requests(),
            trace.span_s,
            trace.services.len(),
            args.cold_start,
            concurrency
        );
        print!("{}", table(&summaries));
    }
    Ok(())
}

/// `--evaluate`: loads the traces into datasets, runs the protocol, prints each fold.
fn run_evaluation(args: &SimulateArgs) -> Result<(), SimError> {
    let mut datasets = Vec::new();
    for path in &args.trace {
        let format = args.format.unwrap_or_else(|| Format::detect(path));
        let (trace, config) = load_trace(args, path, format)?;
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into(),
        );
        let dataset = |name: String, kind: String, trace: Trace| Dataset {
            name,
            kind,
            trace,
            config,
            llm: format.is_llm(),
            decode_tps: args.decode_tps,
            prefill_tps: args.prefill_tps,
        };
        if format.is_llm() {
            datasets.push(dataset(name, "llm".into(), trace));
        } else {
            if trace.services.len() < 2 {
                return Err(SimError::Usage(format!(
                    "--evaluate: {name} has one service; it cannot be split in two halves"
                )));
            }
            let (first, second) = halves(&trace, args.seed);
            datasets.push(dataset(format!("{name} (half A)"), name.clone(), first));
            datasets.push(dataset(format!("{name} (half B)"), name.clone(), second));
        }
    }
    let llm_traces = datasets.iter().filter(|d| d.kind == "llm").count();
    if llm_traces == 1 {
        return Err(SimError::Usage(
            "--evaluate: an LLM trace is held out while tuning on the others: give at least two"
                .into(),
        ));
    }
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} runs {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let folds = evaluate(&datasets, &|done, total| {
        if let Some(bar) = &bar {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        }
    });
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if let Some(dir) = &args.plots {
        for (i, fold) in folds.iter().enumerate() {
            crate::plot::write_frontier(&dir.join(format!("frontier-{}.png", i + 1)), fold)?;
        }
    }
    if args.json {
        let json = serde_json::to_string_pretty(&folds)
            .map_err(|e| SimError::Usage(format!("cannot encode JSON: {e}")))?;
        println!("{json}");
    } else {
        println!(
            "cold start {}; settings chosen on the tuning data, results on held-out data only",
            args.cold_start
        );
        for fold in &folds {
            println!();
            print!("{}", fold_table(fold));
        }
    }
    Ok(())
}

fn positive(flag: &str, value: f64) -> Result<f64, SimError> {
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(SimError::Usage(format!(
            "--{flag} must be a positive number"
        )))
    }
}
