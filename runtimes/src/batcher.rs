//! Adaptive batching: requests that arrive while the model is busy, or within
//! `max_latency` of the first, are stacked into one model call, and each caller gets back
//! exactly its own rows. The queue is bounded; past it callers get 503 at once.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::error::InferError;
use crate::metrics::Metrics;
use crate::model::Model;
use crate::tensor::{Tensor, TensorData};

type Reply = oneshot::Sender<Result<Vec<Tensor>, InferError>>;

#[derive(Debug)]
struct Job {
    inputs: Vec<Tensor>,
    rows: usize,
    reply: Reply,
}

/// The sending side; the collecting task ends when the last `Batcher` is dropped.
#[derive(Debug, Clone)]
pub(crate) struct Batcher {
    jobs: mpsc::Sender<Job>,
    capacity: usize,
}

impl Batcher {
    /// Starts the collecting task on the current Tokio runtime.
    pub(crate) fn start(
        model: Arc<dyn Model>,
        max_rows: usize,
        max_latency: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        // Enough waiting requests for several full batches; more would only add latency.
        let capacity = max_rows.saturating_mul(8).max(64);
        let (jobs, rx) = mpsc::channel(capacity);
        tokio::spawn(collect(rx, model, max_rows, max_latency, metrics));
        Self { jobs, capacity }
    }

    /// Predicts `inputs` (already conformed to the model) as part of a batch.
    pub(crate) async fn predict(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, InferError> {
        let rows = inputs.first().map_or(1, Tensor::rows);
        let (reply, answer) = oneshot::channel();
        self.jobs
            .try_send(Job {
                inputs,
                rows,
                reply,
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => InferError::Overloaded(self.capacity),
                mpsc::error::TrySendError::Closed(_) => {
                    InferError::Model("the batcher stopped".into())
                }
            })?;
        answer
            .await
            .map_err(|_| InferError::Model("the batch was dropped".into()))?
    }
}

async fn collect(
    mut rx: mpsc::Receiver<Job>,
    model: Arc<dyn Model>,
    max_rows: usize,
    max_latency: Duration,
    metrics: Arc<Metrics>,
) {
    let mut carried: Option<Job> = None;
    loop {
        let first = match carried.take() {
            Some(job) => job,
            None => match rx.recv().await {
                Some(job) => job,
                None => return,
            },
        };
        let deadline = Instant::now() + max_latency;
        let mut rows = first.rows;
        let mut batch = vec![first];
        while rows < max_rows {
            let job = match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(job)) => job,
                Ok(None) | Err(_) => break,
            };
            // A job that does not fit starts the next batch instead.
            if rows + job.rows > max_rows || !stackable(&batch[0].inputs, &job.inputs) {
                carried = Some(job);
                break;
            }
            rows += job.rows;
            batch.push(job);
        }
        metrics.batch_requests.observe(batch.len() as f64);
        // The model call is CPU work on this task: while it runs, the next batch queues up
        // in the channel, which is what makes the batch size adapt to the load.
        run(&*model, batch);
    }
}

/// Whether two requests' inputs can be stacked: same datatypes and the same shape after
/// the first dimension.
fn stackable(a: &[Tensor], b: &[Tensor]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.data.datatype() == y.data.datatype() && x.shape.get(1..) == y.shape.get(1..)
        })
}

fn run(model: &dyn Model, mut batch: Vec<Job>) {
    if batch.len() == 1 {
        if let Some(job) = batch.pop() {
            let _ = job.reply.send(model.predict(job.inputs));
        }
        return;
    }
    let rows: Vec<usize> = batch.iter().map(|j| j.rows).collect();
    let stacked = stack(&batch);
    match model
        .predict(stacked)
        .and_then(|outputs| split(outputs, &rows))
    {
        Ok(per_job) => {
            for (job, outputs) in batch.into_iter().zip(per_job) {
                let _ = job.reply.send(Ok(outputs));
            }
        }
        // One request's data can fail the whole call (e.g. text the model cannot take):
        // run each alone, so only that caller sees the error.
        Err(_) => {
            for job in batch {
                let _ = job.reply.send(model.predict(job.inputs));
            }
        }
    }
}

fn stack(batch: &[Job]) -> Vec<Tensor> {
    let total: usize = batch.iter().map(|j| j.rows).sum();
    (0..batch[0].inputs.len())
        .map(|k| {
            let first = &batch[0].inputs[k];
            let mut shape = first.shape.clone();
            if let Some(rows) = shape.first_mut() {
                *rows = total;
            }
            let elements = batch.iter().map(|j| j.inputs[k].data.len()).sum();
            let mut data = TensorData::with_capacity(first.data.datatype(), elements)
                .unwrap_or_else(|| first.data.clone());
            for job in batch {
                data.extend_from(&job.inputs[k].data);
            }
            Tensor {
                name: first.name.clone(),
                shape,
                data,
            }
        })
        .collect()
}

/// Cuts each output back into the callers' rows.
fn split(outputs: Vec<Tensor>, rows: &[usize]) -> Result<Vec<Vec<Tensor>>, InferError> {
    let total: usize = rows.iter().sum();
    let mut per_job: Vec<Vec<Tensor>> = rows
        .iter()
        .map(|_| Vec::with_capacity(outputs.len()))
        .collect();
    for output in outputs {
        if output.rows() != total || output.shape.is_empty() {
            return Err(InferError::Model(format!(
                "output {} has shape {:?}, not {total} rows: it cannot be split per request",
                output.name, output.shape
            )));
        }
        let stride = output.data.len() / total.max(1);
        let mut start = 0;
        for (job, &n) in per_job.iter_mut().zip(rows) {
            let mut shape = output.shape.clone();
            shape[0] = n;
            let data = output.data.slice(start * stride, (start + n) * stride);
            job.push(Tensor {
                name: output.name.clone(),
                shape,
                data,
            });
            start += n;
        }
    }
    Ok(per_job)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TensorSpec;
    use crate::tensor::Datatype;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Doubles each value and counts calls.
    #[derive(Debug)]
    struct Doubler {
        calls: AtomicUsize,
        specs: Vec<TensorSpec>,
    }

    impl Model for Doubler {
        fn platform(&self) -> &'static str {
            "test"
        }
        fn inputs(&self) -> &[TensorSpec] {
            &self.specs
        }
        fn outputs(&self) -> &[TensorSpec] {
            &self.specs
        }
        fn predict(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, InferError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let mut t = inputs
                .into_iter()
                .next()
                .ok_or(InferError::Model("none".into()))?;
            if let TensorData::Fp64(v) = &mut t.data {
                v.iter_mut().for_each(|x| *x *= 2.0);
            }
            Ok(vec![t])
        }
    }

    fn rows(values: &[f64], width: usize) -> Vec<Tensor> {
        vec![Tensor {
            name: "x".into(),
            shape: vec![values.len() / width, width],
            data: TensorData::Fp64(values.to_vec()),
        }]
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_a_call_and_get_their_own_rows() {
        let spec = TensorSpec {
            name: "x".into(),
            datatype: Datatype::Fp64,
            shape: vec![-1, 2],
        };
        let model = Arc::new(Doubler {
            calls: AtomicUsize::new(0),
            specs: vec![spec],
        });
        let metrics = Arc::new(Metrics::new("m"));
        let batcher = Batcher::start(model.clone(), 16, Duration::from_millis(10), metrics);
        let calls: Vec<_> = (0..5)
            .map(|i| {
                let batcher = batcher.clone();
                let base = f64::from(i) * 10.0;
                tokio::spawn(async move {
                    let n = (i as usize % 2) + 1;
                    let values: Vec<f64> = (0..n * 2).map(|k| base + k as f64).collect();
                    let out = batcher.predict(rows(&values, 2)).await.unwrap();
                    (values, out)
                })
            })
            .collect();
        for call in calls {
            let (values, out) = call.await.unwrap();
            let doubled: Vec<f64> = values.iter().map(|v| v * 2.0).collect();
            assert_eq!(out[0].shape, vec![values.len() / 2, 2]);
            assert_eq!(out[0].data, TensorData::Fp64(doubled));
        }
        assert_eq!(
            model.calls.load(Ordering::SeqCst),
            1,
            "all five merged into one call"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_batch_goes_without_waiting_and_the_rest_follows() {
        let spec = TensorSpec {
            name: "x".into(),
            datatype: Datatype::Fp64,
            shape: vec![-1, 1],
        };
        let model = Arc::new(Doubler {
            calls: AtomicUsize::new(0),
            specs: vec![spec],
        });
        let batcher = Batcher::start(
            model.clone(),
            2,
            Duration::from_secs(3600),
            Arc::new(Metrics::new("m")),
        );
        let calls: Vec<_> = (0..3)
            .map(|i| {
                let batcher = batcher.clone();
                tokio::spawn(async move { batcher.predict(rows(&[f64::from(i)], 1)).await })
            })
            .collect();
        for (i, call) in calls.into_iter().enumerate() {
            let out = call.await.unwrap().unwrap();
            assert_eq!(out[0].data, TensorData::Fp64(vec![i as f64 * 2.0]));
        }
        assert_eq!(model.calls.load(Ordering::SeqCst), 2);
    }
}
