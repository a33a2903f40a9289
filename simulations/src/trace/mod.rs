//! Request traces: what arrives when, and how long each request keeps a replica busy.
//! Readers turn each file format into [`Trace`]s of [`Request`]s sorted by arrival; the
//! service model ([`ServiceModel`]) gives every request its service and first-token time.

mod arrivals;
mod functions;
mod llm;

use std::path::Path;

pub use functions::FunctionsSelection;

use crate::error::SimError;

/// One request of a trace, with its service time already drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Request {
    /// Seconds from the start of the trace.
    pub at: f64,
    /// Seconds a replica slot is busy with it.
    pub service_s: f64,
    /// Seconds from the start of service to the first output token (prefill).
    pub first_token_s: f64,
    /// Output tokens it produces (0 when the trace has none).
    pub output_tokens: u32,
    /// Prompt tokens it prefills (0 when the trace has none).
    pub prompt_tokens: u32,
}

/// The requests of one service (a model or a function), sorted by arrival.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceTrace {
    pub name: String,
    pub requests: Vec<Request>,
}

/// Which reader to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Azure LLM inference trace 2023: `TIMESTAMP,ContextTokens,GeneratedTokens`.
    AzureLlm,
    /// Azure Functions 2019: `*_inv.csv` per-minute counts, run times from `*_run.csv`.
    AzureFunctions,
    /// Mooncake JSONL: `timestamp` (ms), `input_length`, `output_length`.
    Mooncake,
    /// One arrival time in seconds per line (an optional header and further columns are
    /// ignored).
    Csv,
}

impl Format {
    /// Guesses the format from the file name.
    pub fn detect(path: &Path) -> Self {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        if name.ends_with(".jsonl") {
            Self::Mooncake
        } else if name.contains("_inv") {
            Self::AzureFunctions
        } else if name.contains("llm") || name.contains("azurellm") {
            Self::AzureLlm
        } else {
            Self::Csv
        }
    }

    /// Whether requests carry tokens (time to first token and the tokens metric apply).
    pub fn is_llm(self) -> bool {
        matches!(self, Self::AzureLlm | Self::Mooncake)
    }
}

/// How long requests take. LLM requests: prefill at `prefill_tps` prompt tokens/s, then
/// decoding at `decode_tps` tokens/s per sequence (a batching engine keeps per-sequence
/// speed roughly constant up to its concurrency limit). Other traces without run times:
/// `fixed_s` per request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServiceModel {
    pub prefill_tps: f64,
    pub decode_tps: f64,
    pub fixed_s: f64,
}

impl Default for ServiceModel {
    fn default() -> Self {
        Self {
            prefill_tps: 4000.0,
            decode_tps: 40.0,
            fixed_s: 0.5,
        }
    }
}

impl ServiceModel {
    pub(crate) fn llm(&self, prompt: u32, output: u32, at: f64) -> Request {
        let first_token_s = f64::from(prompt) / self.prefill_tps.max(1e-9);
        let decode_s = f64::from(output) / self.decode_tps.max(1e-9);
        Request {
            at,
            service_s: (first_token_s + decode_s).max(0.001),
            first_token_s,
            output_tokens: output,
            prompt_tokens: prompt,
        }
    }
}

/// What to read and how.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadOptions {
    pub format: Format,
    pub model: ServiceModel,
    pub seed: u64,
    /// Keep only arrivals before this many seconds from the start of the trace.
    pub duration_s: Option<f64>,
    pub functions: FunctionsSelection,
}

/// A loaded trace: one or more services and the span they cover.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    pub services: Vec<ServiceTrace>,
    /// Seconds the trace covers; cost is counted at least this long.
    pub span_s: f64,
}

impl Trace {
    pub fn requests(&self) -> usize {
        self.services.iter().map(|s| s.requests.len()).sum()
    }
}

/// Reads `path` in `options.format`.
pub fn load(path: &Path, options: &LoadOptions) -> Result<Trace, SimError> {
    let text = std::fs::read_to_string(path).map_err(|e| SimError::io(path, e))?;
    let (mut services, mut span_s) = match options.format {
        Format::AzureLlm => llm::azure(path, &text, &options.model)?,
        Format::Mooncake => llm::mooncake(path, &text, &options.model)?,
        Format::Csv => arrivals::read(path, &text, &options.model)?,
        Format::AzureFunctions => functions::read(path, &text, options)?,
    };
    if let Some(limit) = options.duration_s {
        for service in &mut services {
            service.requests.retain(|r| r.at < limit);
        }
        span_s = span_s.min(limit);
    }
    services.retain(|s| !s.requests.is_empty());
    for service in &mut services {
        service.requests.sort_by(|a, b| a.at.total_cmp(&b.at));
    }
    if services.is_empty() {
        return Err(SimError::EmptyTrace {
            path: path.to_path_buf(),
        });
    }
    Ok(Trace { services, span_s })
}

/// The span of requests starting at 0: the last arrival, rounded up to a whole second.
pub(crate) fn span_of(requests: &[Request]) -> f64 {
    requests.iter().map(|r| r.at).fold(0.0, f64::max).floor() + 1.0
}
