//! OpenAI's REST endpoints over the engine, at `/v1/...` and under KServe's `/openai`
//! prefix, plus the health and metadata routes probes use.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::engine::{Engine, Event, Generation, LanguageModel};
use super::metrics::LlmMetrics;
use super::openai::{self, ApiError, FinishReason, Generate, Usage};
use super::text::TextAssembler;
use crate::error::InferError;

/// What every handler shares.
#[derive(Debug)]
pub(crate) struct LlmState {
    pub(crate) name: String,
    pub(crate) model: LanguageModel,
    pub(crate) engine: Engine,
    pub(crate) metrics: Arc<LlmMetrics>,
    pub(crate) max_body_bytes: usize,
    pub(crate) created: u64,
}

type AppState = Arc<LlmState>;

fn openai_routes() -> Router<AppState> {
    Router::new()
        .route("/v1/models", get(list_models))
        .route("/v1/models/{name}", get(model))
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat_completions))
}

/// Every route of the language-model server.
pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .merge(openai_routes())
        .nest("/openai", openai_routes())
        .route("/", get(|| async { Json(json!({ "status": "alive" })) }))
        .route("/metrics", get(metrics))
        .route(
            "/v2/health/live",
            get(|| async { Json(json!({ "live": true })) }),
        )
        .route(
            "/v2/health/ready",
            get(|| async { Json(json!({ "ready": true })) }),
        )
        .fallback(|uri: Uri| async move { ApiError::route_not_found(uri.path()) })
        .with_state(state)
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

fn model_card(state: &LlmState) -> Value {
    json!({
        "id": state.name,
        "object": "model",
        "created": state.created,
        "owned_by": "serval",
        "max_model_len": state.engine.limits().max_model_len,
    })
}

async fn list_models(State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "object": "list", "data": [model_card(&state)] }))
}

/// OpenAI's model retrieval, which also answers KServe V1's model-ready check.
async fn model(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    if name != state.name {
        return ApiError::model_not_found(&name).into_response();
    }
    let mut card = model_card(&state);
    card["name"] = json!(state.name);
    card["ready"] = json!(true);
    Json(card).into_response()
}

async fn parse<T: DeserializeOwned>(
    state: &LlmState,
    headers: &HeaderMap,
    body: Body,
) -> Result<T, ApiError> {
    let bytes = crate::http::read_body(headers, body, state.max_body_bytes)
        .await
        .map_err(|e| match e {
            InferError::TooLarge { limit } => ApiError::too_large(limit),
            other => ApiError::malformed(other.to_string()),
        })?;
    let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() || path == "." {
            ApiError::malformed(format!(
                "the body is not valid JSON for this endpoint: {inner}"
            ))
        } else {
            ApiError::malformed(format!("{path}: {inner}"))
        }
    })
}

async fn completions(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let request = match parse::<openai::CompletionRequest>(&state, &headers, body).await {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let prepared = request
        .common
        .check(&state.name)
        .and_then(|generate| {
            let prompt = openai::prompt_text(&request.prompt)?;
            Ok((generate, prompt))
        })
        .and_then(|(generate, prompt)| prepare(&state, Kind::Text, generate, &prompt, "prompt"));
    match prepared {
        Ok(p) => respond(state, p).await,
        Err(e) => e.into_response(),
    }
}

async fn chat_completions(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let request = match parse::<openai::ChatRequest>(&state, &headers, body).await {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let prepared = request
        .common
        .check(&state.name)
        .and_then(|generate| {
            let messages = openai::messages(&request.messages)?;
            Ok((generate, state.model.chat_prompt(&messages)?))
        })
        .and_then(|(generate, prompt)| prepare(&state, Kind::Chat, generate, &prompt, "messages"));
    match prepared {
        Ok(p) => respond(state, p).await,
        Err(e) => e.into_response(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Chat,
}

/// A checked request, tokenized, ready for the engine.
#[derive(Debug)]
struct Prepared {
    kind: Kind,
    id: String,
    generate: Generate,
    prompt: Vec<llama_cpp_2::token::LlamaToken>,
    max_tokens: u32,
}

fn prepare(
    state: &LlmState,
    kind: Kind,
    generate: Generate,
    prompt: &str,
    prompt_param: &'static str,
) -> Result<Prepared, ApiError> {
    let tokens = state.model.tokenize(prompt);
    let context = state.engine.limits().max_model_len;
    if tokens.is_empty() {
        return Err(ApiError::invalid(prompt_param, "the prompt is empty"));
    }
    if tokens.len() >= context {
        return Err(ApiError::context_length(
            prompt_param,
            format!(
                "This model's maximum context length is {context} tokens. However, your prompt has {} tokens, leaving none to generate.",
                tokens.len()
            ),
        ));
    }
    let room = (context - tokens.len()) as u32;
    let max_tokens = match generate.max_tokens {
        None => room,
        Some(n) if n <= room => n,
        Some(n) => {
            return Err(ApiError::context_length(
                "max_tokens",
                format!(
                    "This model's maximum context length is {context} tokens. However, you requested {} tokens ({} in the {prompt_param}, {n} in the completion).",
                    tokens.len() as u64 + u64::from(n),
                    tokens.len()
                ),
            ))
        }
    };
    static NEXT_ID: AtomicU64 = AtomicU64::new(0);
    let prefix = match kind {
        Kind::Text => "cmpl",
        Kind::Chat => "chatcmpl",
    };
    Ok(Prepared {
        kind,
        id: format!(
            "{prefix}-{:x}{:08x}",
            state.created,
            NEXT_ID.fetch_add(1, Ordering::Relaxed)
        ),
        generate,
        prompt: tokens,
        max_tokens,
    })
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn respond(state: AppState, prepared: Prepared) -> Response {
    let (events_tx, events) = mpsc::unbounded_channel();
    let prompt_tokens = prepared.prompt.len() as u32;
    let generation = Generation {
        prompt: prepared.prompt,
        max_tokens: prepared.max_tokens,
        sampling: prepared.generate.sampling,
        ignore_eos: prepared.generate.ignore_eos,
        arrived: Instant::now(),
        events: events_tx,
    };
    if let Err(e) = state.engine.submit(generation) {
        return e.into_response();
    }
    let reply = Reply {
        kind: prepared.kind,
        id: prepared.id,
        model: state.name.clone(),
        created: unix_now(),
        prompt_tokens,
        completion_tokens: 0,
        assembler: TextAssembler::new(prepared.generate.stop.clone()),
        events,
    };
    if prepared.generate.stream {
        stream(reply, prepared.generate.include_usage)
    } else {
        collect(reply).await
    }
}

/// One request's answer in the making.
struct Reply {
    kind: Kind,
    id: String,
    model: String,
    created: u64,
    prompt_tokens: u32,
    completion_tokens: u32,
    assembler: TextAssembler,
    events: mpsc::UnboundedReceiver<Event>,
}

/// What the next engine event means for the client.
enum Step {
    Text(String),
    Done(String, FinishReason),
    Failed(String),
}

impl Reply {
    async fn next(&mut self) -> Step {
        match self.events.recv().await {
            Some(Event::Token(piece)) => {
                self.completion_tokens += 1;
                let delta = self.assembler.push(&piece);
                if delta.stopped {
                    // Dropping the receiver when the reply ends frees the sequence.
                    Step::Done(delta.text, FinishReason::Stop)
                } else {
                    Step::Text(delta.text)
                }
            }
            Some(Event::Finished(reason)) => Step::Done(self.assembler.finish(), reason),
            Some(Event::Failed(message)) => Step::Failed(message),
            None => Step::Failed("the engine stopped".into()),
        }
    }

    fn usage(&self) -> Usage {
        Usage::new(self.prompt_tokens, self.completion_tokens)
    }

    fn object(&self, chunk: bool) -> &'static str {
        match (self.kind, chunk) {
            (Kind::Text, false) => "text_completion",
            (Kind::Text, true) => "text_completion",
            (Kind::Chat, false) => "chat.completion",
            (Kind::Chat, true) => "chat.completion.chunk",
        }
    }

    fn envelope(&self, chunk: bool, choices: Value) -> Value {
        json!({
            "id": self.id,
            "object": self.object(chunk),
            "created": self.created,
            "model": self.model,
            "choices": choices,
        })
    }

    fn choice(&self, text: Option<String>, finish: Option<FinishReason>, delta: bool) -> Value {
        match (self.kind, delta) {
            (Kind::Text, _) => json!({
                "index": 0, "text": text.unwrap_or_default(), "logprobs": null, "finish_reason": finish,
            }),
            (Kind::Chat, false) => json!({
                "index": 0,
                "message": {"role": "assistant", "content": text.unwrap_or_default()},
                "logprobs": null,
                "finish_reason": finish,
            }),
            (Kind::Chat, true) => {
                let delta = match text {
                    Some(content) => json!({ "content": content }),
                    None => json!({}),
                };
                json!({ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish })
            }
        }
    }
}

async fn collect(mut reply: Reply) -> Response {
    let mut text = String::new();
    let finish = loop {
        match reply.next().await {
            Step::Text(t) => text.push_str(&t),
            Step::Done(t, reason) => {
                text.push_str(&t);
                break reason;
            }
            Step::Failed(message) => return ApiError::engine(message).into_response(),
        }
    };
    let choice = reply.choice(Some(text), Some(finish), false);
    let mut body = reply.envelope(false, json!([choice]));
    body["usage"] = json!(reply.usage());
    Json(body).into_response()
}

fn sse(value: &Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

/// Server-sent events, one chunk per token with text, OpenAI's way. Dropping the body
/// (the client went away) drops the event receiver, which frees the sequence.
fn stream(reply: Reply, include_usage: bool) -> Response {
    struct State {
        reply: Reply,
        frames: VecDeque<Bytes>,
        over: bool,
        include_usage: bool,
    }
    impl State {
        fn chunk(&mut self, text: Option<String>, finish: Option<FinishReason>) {
            let choice = self.reply.choice(text, finish, true);
            let mut chunk = self.reply.envelope(true, json!([choice]));
            if self.include_usage {
                chunk["usage"] = Value::Null;
            }
            self.frames.push_back(sse(&chunk));
        }
    }
    let mut state = State {
        reply,
        frames: VecDeque::new(),
        over: false,
        include_usage,
    };
    if state.reply.kind == Kind::Chat {
        let choice = json!({"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null});
        let mut first = state.reply.envelope(true, json!([choice]));
        if include_usage {
            first["usage"] = Value::Null;
        }
        state.frames.push_back(sse(&first));
    }
    let body = futures_util::stream::unfold(state, |mut state| async move {
        loop {
            if let Some(frame) = state.frames.pop_front() {
                return Some((Ok::<_, Infallible>(frame), state));
            }
            if state.over {
                return None;
            }
            match state.reply.next().await {
                Step::Text(t) if t.is_empty() => {}
                Step::Text(t) => state.chunk(Some(t), None),
                Step::Done(t, reason) => {
                    if !t.is_empty() {
                        state.chunk(Some(t), None);
                    }
                    let empty = match state.reply.kind {
                        Kind::Text => Some(String::new()),
                        Kind::Chat => None,
                    };
                    state.chunk(empty, Some(reason));
                    if state.include_usage {
                        let mut last = state.reply.envelope(true, json!([]));
                        last["usage"] = json!(state.reply.usage());
                        state.frames.push_back(sse(&last));
                    }
                    state
                        .frames
                        .push_back(Bytes::from_static(b"data: [DONE]\n\n"));
                    state.over = true;
                }
                Step::Failed(message) => {
                    // Headers are gone: the error travels as an event, as OpenAI's does.
                    state
                        .frames
                        .push_back(sse(&ApiError::engine(message).body()));
                    state
                        .frames
                        .push_back(Bytes::from_static(b"data: [DONE]\n\n"));
                    state.over = true;
                }
            }
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(body))
        .unwrap_or_else(|e| ApiError::engine(e.to_string()).into_response())
}
