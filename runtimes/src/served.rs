//! The served model and what every protocol does with a request once it is parsed:
//! check the model name, conform the inputs, predict (batched or not), pick the outputs,
//! and time each phase under KServe's metric names.

use std::sync::Arc;

use serval_proxy::trace_context;
use tokio::time::Instant;
use tracing::Instrument;

use crate::batcher::Batcher;
use crate::config::Config;
use crate::error::InferError;
use crate::metrics::Metrics;
use crate::model::{conform, Model};
use crate::tensor::Tensor;

/// Shared by the REST and gRPC servers.
#[derive(Debug)]
pub struct Served {
    pub name: String,
    pub model: Arc<dyn Model>,
    pub metrics: Arc<Metrics>,
    pub max_body_bytes: usize,
    batcher: Option<Batcher>,
}

impl Served {
    /// Wraps a loaded model; starts the batcher (on the current Tokio runtime) when
    /// `config` asks for batching and the model's inputs allow it.
    pub fn new(config: &Config, model: Arc<dyn Model>) -> Self {
        let metrics = Arc::new(Metrics::new(&config.model_name));
        let batcher = (config.batching() && model.batchable()).then(|| {
            Batcher::start(
                model.clone(),
                config.max_batch_size,
                config.max_latency(),
                metrics.clone(),
            )
        });
        if config.batching() && batcher.is_none() {
            tracing::warn!("batching is off: the model's inputs have a fixed first dimension");
        }
        Self {
            name: config.model_name.clone(),
            model,
            metrics,
            max_body_bytes: config.max_body_bytes,
            batcher,
        }
    }

    /// 404 unless `name` is the served model.
    pub fn check_name(&self, name: &str) -> Result<(), InferError> {
        if name == self.name {
            Ok(())
        } else {
            Err(InferError::ModelNotFound(name.to_owned()))
        }
    }

    /// 400 unless every requested output is one of the model's.
    pub fn check_outputs<'a>(
        &self,
        mut requested: impl Iterator<Item = &'a str>,
    ) -> Result<(), InferError> {
        let outputs = self.model.outputs();
        match requested.find(|name| !outputs.iter().any(|o| o.name == *name)) {
            None => Ok(()),
            Some(name) => Err(InferError::UnknownOutput {
                name: name.to_owned(),
                available: outputs
                    .iter()
                    .map(|o| o.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// Runs the model on parsed inputs. `received` is when parsing began, so the
    /// preprocess histogram covers parsing and validation.
    pub async fn infer(
        &self,
        inputs: Vec<Tensor>,
        received: Instant,
    ) -> Result<Vec<Tensor>, InferError> {
        let inputs = conform(self.model.inputs(), inputs)?;
        let started = Instant::now();
        self.metrics
            .preprocess
            .observe((started - received).as_secs_f64());
        let span = if trace_context::enabled() {
            tracing::info_span!("runtime.inference", serval.batched = self.batcher.is_some())
        } else {
            tracing::Span::none()
        };
        let outputs = match &self.batcher {
            Some(batcher) => batcher.predict(inputs).instrument(span).await,
            // Tabular models answer in microseconds: running them here costs less than
            // handing them to another thread.
            None => span.in_scope(|| self.model.predict(inputs)),
        }?;
        self.metrics
            .predict
            .observe(started.elapsed().as_secs_f64());
        Ok(outputs)
    }
}

/// Keeps the `requested` outputs, in the requested order; all of them when none are named.
pub(crate) fn select_outputs(outputs: Vec<Tensor>, requested: &[&str]) -> Vec<Tensor> {
    if requested.is_empty() {
        return outputs;
    }
    let mut outputs: Vec<Option<Tensor>> = outputs.into_iter().map(Some).collect();
    requested
        .iter()
        .filter_map(|name| {
            outputs
                .iter_mut()
                .find(|o| o.as_ref().is_some_and(|o| o.name == *name))
                .and_then(Option::take)
        })
        .collect()
}
