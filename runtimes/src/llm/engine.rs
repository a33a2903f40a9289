//! The llama.cpp engine: one thread owns the context and runs continuous batching. Each
//! step decodes one token for every running sequence together with the whole prompt of
//! each sequence that just joined; a request joins at the next step when a slot and room
//! in the KV cache are free, and a sequence whose client went away is freed before the
//! next step.

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::mpsc;

use super::metrics::LlmMetrics;
use super::openai::{ApiError, FinishReason, Message, Sampling};
use super::slots::Slots;

/// What the engine sends a request, in order: tokens, then one `Finished` or `Failed`.
#[derive(Debug)]
pub(crate) enum Event {
    /// One generated token's bytes (not always a whole character).
    Token(Vec<u8>),
    Finished(FinishReason),
    Failed(String),
}

/// One request for the engine.
#[derive(Debug)]
pub(crate) struct Generation {
    pub(crate) prompt: Vec<LlamaToken>,
    pub(crate) max_tokens: u32,
    pub(crate) sampling: Sampling,
    pub(crate) ignore_eos: bool,
    pub(crate) arrived: Instant,
    /// Unbounded, but the engine sends at most `max_tokens + 1` events.
    pub(crate) events: mpsc::UnboundedSender<Event>,
}

/// Engine limits, from the runtime's flags.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_sequences: usize,
    pub(crate) max_model_len: usize,
    pub(crate) max_waiting: usize,
    pub(crate) threads: i32,
}

/// Why the model could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct LoadError(String);

/// llama.cpp's process-wide state: initialised once, whatever number of models.
fn backend() -> Result<&'static LlamaBackend, LoadError> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            // llama.cpp's own log lines go through `tracing` at debug level.
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| LoadError(format!("llama.cpp backend: {e}")))
}

/// The loaded model: tokenizer and chat template, shared by the handlers.
#[derive(Debug)]
pub(crate) struct LanguageModel {
    model: Arc<LlamaModel>,
    chat_template: Option<llama_cpp_2::model::LlamaChatTemplate>,
}

impl LanguageModel {
    pub(crate) fn load(file: &Path, gpu_layers: u32) -> Result<Self, LoadError> {
        let backend = backend()?;
        let params = LlamaModelParams::default().with_n_gpu_layers(gpu_layers);
        let model = LlamaModel::load_from_file(backend, file, &params)
            .map_err(|e| LoadError(format!("{}: {e}", file.display())))?;
        let chat_template = model.chat_template(None).ok();
        Ok(Self {
            model: Arc::new(model),
            chat_template,
        })
    }

    /// The context length the model was trained with.
    pub(crate) fn trained_context(&self) -> usize {
        self.model.n_ctx_train() as usize
    }

    pub(crate) fn tokenize(&self, text: &str) -> Vec<LlamaToken> {
        // Special tokens in the text (a chat template's markers) become those tokens.
        self.model.vocab().tokenize(text.as_bytes(), true, true)
    }

    /// The prompt for chat messages, through the model's chat template.
    pub(crate) fn chat_prompt(&self, messages: &[Message]) -> Result<String, ApiError> {
        let template = self.chat_template.as_ref().ok_or_else(|| {
            ApiError::invalid(
                "messages",
                "this model has no chat template: use /v1/completions",
            )
        })?;
        let messages = messages
            .iter()
            .map(|m| LlamaChatMessage::new(m.role.clone(), m.content.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| ApiError::invalid("messages", "message content contains a NUL byte"))?;
        self.model
            .apply_chat_template(template, &messages, true)
            .map_err(|e| ApiError::invalid("messages", format!("chat template failed: {e}")))
    }
}

/// The handlers' side of the engine: submit a request, or be told the queue is full.
#[derive(Debug, Clone)]
pub(crate) struct Engine {
    queue: mpsc::Sender<Generation>,
    metrics: Arc<LlmMetrics>,
    limits: Limits,
}

impl Engine {
    /// Creates the context and starts the engine thread. It stops when every `Engine`
    /// clone is dropped and the running sequences are done.
    pub(crate) fn start(
        model: &LanguageModel,
        limits: Limits,
        metrics: Arc<LlmMetrics>,
    ) -> Result<Self, LoadError> {
        let (queue, waiting) = mpsc::channel(limits.max_waiting.max(1));
        let model = model.model.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread_metrics = metrics.clone();
        std::thread::Builder::new()
            .name("llm-engine".into())
            .spawn(move || {
                // One KV cache per sequence (not one shared): a sequence's cells are laid
                // out as if it ran alone, so batching does not change its tokens.
                let kv_tokens = limits.max_model_len * limits.max_sequences;
                let params = LlamaContextParams::default()
                    .with_n_ctx(NonZeroU32::new(kv_tokens as u32))
                    .with_n_batch((limits.max_model_len + limits.max_sequences) as u32)
                    .with_n_seq_max(limits.max_sequences as u32)
                    .with_kv_unified(false)
                    // As llama-cpp-python: exact attention, and the same numbers whatever
                    // the batch holds.
                    .with_flash_attention_policy(llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_DISABLED)
                    .with_n_threads(limits.threads)
                    .with_n_threads_batch(limits.threads);
                let context = match backend().and_then(|b| {
                    model
                        .new_context(b, params)
                        .map_err(|e| LoadError(e.to_string()))
                }) {
                    Ok(context) => {
                        let _ = ready_tx.send(Ok(()));
                        context
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                Stepper::new(&model, context, limits, thread_metrics).run(waiting);
            })
            .map_err(|e| LoadError(format!("cannot start the engine thread: {e}")))?;
        ready_rx
            .recv()
            .map_err(|_| LoadError("the engine thread stopped while starting".into()))??;
        Ok(Self {
            queue,
            metrics,
            limits,
        })
    }

    pub(crate) fn limits(&self) -> Limits {
        self.limits
    }

    /// Queues a request; 503 when `max_waiting` are already waiting.
    pub(crate) fn submit(&self, generation: Generation) -> Result<(), ApiError> {
        self.metrics.waiting.inc();
        self.queue.try_send(generation).map_err(|e| {
            self.metrics.waiting.dec();
            match e {
                mpsc::error::TrySendError::Full(_) => ApiError::overloaded(self.limits.max_waiting),
                mpsc::error::TrySendError::Closed(_) => ApiError::engine("the engine has stopped"),
            }
        })
    }
}

/// A sequence in the running batch.
struct Sequence {
    id: i32,
    generation: Generation,
    sampler: LlamaSampler,
    /// Tokens of this sequence in the KV cache.
    cached: usize,
    /// The token to feed next: the last one sampled; `None` until the prompt is in.
    next: Option<LlamaToken>,
    generated: u32,
    last_token_at: Instant,
    /// Where this sequence's logits are in the batch just decoded.
    logits_at: Option<i32>,
    done: bool,
}

impl Sequence {
    fn send(&mut self, event: Event) {
        let last = !matches!(event, Event::Token(_));
        if self.generation.events.send(event).is_err() || last {
            self.done = true;
        }
    }
}

fn sampler(sampling: Sampling) -> LlamaSampler {
    if sampling.temperature <= 0.0 {
        return LlamaSampler::greedy();
    }
    let seed = sampling.seed.unwrap_or_else(|| {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0);
        h.finish() as u32
    });
    LlamaSampler::chain_simple([
        LlamaSampler::top_p(sampling.top_p, 1),
        LlamaSampler::temp(sampling.temperature),
        LlamaSampler::dist(seed),
    ])
}

/// The engine thread's state.
struct Stepper<'m> {
    model: &'m LlamaModel,
    context: llama_cpp_2::context::LlamaContext<'m>,
    limits: Limits,
    metrics: Arc<LlmMetrics>,
    slots: Slots,
    running: Vec<Sequence>,
    batch: LlamaBatch<'static>,
}

impl<'m> Stepper<'m> {
    fn new(
        model: &'m LlamaModel,
        context: llama_cpp_2::context::LlamaContext<'m>,
        limits: Limits,
        metrics: Arc<LlmMetrics>,
    ) -> Self {
        Self {
            model,
            context,
            slots: Slots::new(limits.max_sequences),
            batch: LlamaBatch::new(
                limits.max_model_len + limits.max_sequences,
                limits.max_sequences as i32,
            ),
            limits,
            metrics,
            running: Vec::new(),
        }
    }

    fn run(mut self, mut queue: mpsc::Receiver<Generation>) {
        loop {
            if !self.admit(&mut queue) {
                return;
            }
            self.step();
            self.retire();
        }
    }

    /// Moves waiting requests into the batch while they fit. Blocks while nothing runs;
    /// false once the queue is closed and nothing is left to do.
    fn admit(&mut self, queue: &mut mpsc::Receiver<Generation>) -> bool {
        loop {
            // The slot first: a request stays in the queue, where it counts against
            // `max_waiting`, until there is a slot for it.
            let Some(id) = self.slots.admit() else {
                return true;
            };
            let received = if self.running.is_empty() {
                queue.blocking_recv()
            } else {
                queue.try_recv().ok()
            };
            let Some(generation) = received else {
                self.slots.release(id);
                // Nothing waits: step what runs. Closed with nothing running: done.
                return !self.running.is_empty();
            };
            if generation.events.is_closed() {
                self.slots.release(id);
                self.metrics.waiting.dec();
                continue;
            }
            self.metrics.waiting.dec();
            self.metrics
                .prompt_tokens
                .inc_by(generation.prompt.len() as u64);
            self.running.push(Sequence {
                id,
                sampler: sampler(generation.sampling),
                generation,
                cached: 0,
                next: None,
                generated: 0,
                last_token_at: Instant::now(),
                logits_at: None,
                done: false,
            });
            self.metrics.running.set(self.running.len() as i64);
        }
    }

    /// One decode: a token for each running sequence, whole prompts for new ones.
    fn step(&mut self) {
        self.batch.clear();
        let capacity = self.limits.max_model_len + self.limits.max_sequences;
        let mut used = 0;
        for seq in &mut self.running {
            seq.logits_at = None;
            if let Some(token) = seq.next {
                if self
                    .batch
                    .add(token, seq.cached as i32, &[seq.id], true)
                    .is_ok()
                {
                    seq.logits_at = Some(self.batch.n_tokens() - 1);
                    used += 1;
                }
            }
        }
        for seq in &mut self.running {
            let prompt = &seq.generation.prompt;
            if seq.next.is_some() || seq.done || used + prompt.len() > capacity {
                continue;
            }
            if self.batch.add_sequence(prompt, seq.id, false).is_ok() {
                seq.logits_at = Some(self.batch.n_tokens() - 1);
                used += prompt.len();
            }
        }
        if used == 0 {
            return;
        }
        if let Err(e) = self.context.decode(&mut self.batch) {
            // Each sequence's cache holds `--max-model-len` tokens, checked before it
            // queues, so this is unexpected; fail what was in the batch rather than retry
            // it forever.
            for seq in self.running.iter_mut().filter(|s| s.logits_at.is_some()) {
                seq.send(Event::Failed(format!("llama.cpp decode failed: {e}")));
            }
            return;
        }
        let now = Instant::now();
        let vocab = self.model.vocab();
        for seq in &mut self.running {
            let Some(at) = seq.logits_at else { continue };
            seq.cached += match seq.next {
                Some(_) => 1,
                None => seq.generation.prompt.len(),
            };
            let token = seq.sampler.sample(&self.context, at);
            if seq.generated == 0 {
                self.metrics
                    .time_to_first_token
                    .observe((now - seq.generation.arrived).as_secs_f64());
            } else {
                self.metrics
                    .time_per_output_token
                    .observe((now - seq.last_token_at).as_secs_f64());
            }
            seq.last_token_at = now;
            seq.next = Some(token);
            if vocab.is_eog(token) && !seq.generation.ignore_eos {
                seq.send(Event::Finished(FinishReason::Stop));
                continue;
            }
            seq.generated += 1;
            self.metrics.generation_tokens.inc();
            seq.send(Event::Token(vocab.token_to_piece(token, false, None)));
            if seq.generated >= seq.generation.max_tokens {
                seq.send(Event::Finished(FinishReason::Length));
            }
        }
    }

    /// Frees the sequences that finished or whose client went away.
    fn retire(&mut self) {
        let mut i = 0;
        while i < self.running.len() {
            let seq = &self.running[i];
            if seq.done || seq.generation.events.is_closed() {
                let seq = self.running.swap_remove(i);
                let _ = self
                    .context
                    .clear_kv_cache_seq(Some(seq.id as u32), None, None);
                self.slots.release(seq.id);
                self.metrics
                    .e2e_latency
                    .observe(seq.generation.arrived.elapsed().as_secs_f64());
            } else {
                i += 1;
            }
        }
        let cached: usize = self.running.iter().map(|s| s.cached).sum();
        self.metrics
            .kv_cache_usage
            .set(cached as f64 / (self.limits.max_model_len * self.limits.max_sequences) as f64);
        self.metrics.running.set(self.running.len() as i64);
    }
}
