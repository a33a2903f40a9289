//! Counts the tokens of OpenAI-style completions as the response streams by, so the
//! autoscaler can scale language models on tokens per second. Output tokens: streamed
//! (`text/event-stream`) responses count one token per content chunk as it passes and are
//! corrected by a final `usage` object when the server sends one; plain JSON responses count
//! `usage.completion_tokens`. Prompt tokens (the prefill work) come only from `usage`, once per
//! response: a stream that asked for no usage reports none.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use http::{Request, Response};
use serde_json::Value;
use serval_proxy::body::{observe_response, BodyObserver, ProxyBody, RequestBody};
use tower::{Layer, Service};

use crate::layers::stats::StatsRecorder;
use crate::layers::ResponseFuture;

/// A JSON completion larger than this is passed through uncounted rather than buffered.
const MAX_JSON_BYTES: usize = 4 << 20;
/// An SSE line longer than this is skipped rather than buffered.
const MAX_EVENT_BYTES: usize = 1 << 20;

#[derive(Clone, Debug)]
pub(crate) struct TokenCountLayer {
    recorder: Arc<StatsRecorder>,
}

impl TokenCountLayer {
    pub(crate) fn new(recorder: Arc<StatsRecorder>) -> Self {
        Self { recorder }
    }
}

impl<S> Layer<S> for TokenCountLayer {
    type Service = TokenCount<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TokenCount {
            inner,
            recorder: self.recorder.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct TokenCount<S> {
    inner: S,
    recorder: Arc<StatsRecorder>,
}

impl<S> Service<Request<RequestBody>> for TokenCount<S>
where
    S: Service<
            Request<RequestBody>,
            Response = Response<ProxyBody>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    type Response = Response<ProxyBody>;
    type Error = std::convert::Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<RequestBody>) -> Self::Future {
        let completion = request.uri().path().ends_with("/completions");
        let response = self.inner.clone().call(request);
        if !completion {
            return Box::pin(response);
        }
        let recorder = self.recorder.clone();
        Box::pin(response.map(move |r| r.map(|response| count_tokens(response, recorder))))
    }
}

fn count_tokens(
    response: Response<ProxyBody>,
    recorder: Arc<StatsRecorder>,
) -> Response<ProxyBody> {
    if !response.status().is_success() {
        return response;
    }
    let streamed = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    observe_response(response, TokenCounter::new(recorder, streamed))
}

/// Watches one completion response.
pub(crate) struct TokenCounter {
    recorder: Arc<StatsRecorder>,
    streamed: bool,
    buffer: BytesMut,
    /// Tokens already added to the recorder for this response.
    counted: u64,
    prompt_counted: bool,
    overflowed: bool,
}

impl TokenCounter {
    fn new(recorder: Arc<StatsRecorder>, streamed: bool) -> Self {
        Self {
            recorder,
            streamed,
            buffer: BytesMut::new(),
            counted: 0,
            prompt_counted: false,
            overflowed: false,
        }
    }

    fn add(&mut self, n: u64) {
        self.counted += n;
        self.recorder.add_output_tokens(n);
    }

    fn add_prompt(&mut self, body: &Value) {
        if self.prompt_counted {
            return;
        }
        if let Some(n) = usage_prompt_tokens(body) {
            self.prompt_counted = true;
            self.recorder.add_prompt_tokens(n);
        }
    }

    fn on_event(&mut self, data: &[u8]) {
        let Ok(event) = serde_json::from_slice::<Value>(data) else {
            return; // `[DONE]` and anything else that is not a chunk
        };
        self.add_prompt(&event);
        if let Some(total) = usage_completion_tokens(&event) {
            // The server's own count is authoritative: move ours to it.
            if total > self.counted {
                self.add(total - self.counted);
            }
            return;
        }
        let chunks = event["choices"]
            .as_array()
            .map(|choices| choices.iter().filter(|c| has_content(c)).count())
            .unwrap_or(0);
        self.add(chunks as u64);
    }
}

fn usage_completion_tokens(v: &Value) -> Option<u64> {
    v.get("usage")?.get("completion_tokens")?.as_u64()
}

fn usage_prompt_tokens(v: &Value) -> Option<u64> {
    v.get("usage")?.get("prompt_tokens")?.as_u64()
}

/// Whether a streamed choice carries output: `text` (completions) or `delta.content`.
fn has_content(choice: &Value) -> bool {
    let non_empty = |v: &Value| v.as_str().is_some_and(|s| !s.is_empty());
    non_empty(&choice["text"])
        || non_empty(&choice["delta"]["content"])
        || choice["delta"]["tool_calls"].is_array()
}

impl BodyObserver for TokenCounter {
    fn on_data(&mut self, data: &Bytes) {
        if self.overflowed {
            return;
        }
        self.buffer.extend_from_slice(data);
        if !self.streamed {
            if self.buffer.len() > MAX_JSON_BYTES {
                self.overflowed = true;
                self.buffer = BytesMut::new();
            }
            return;
        }
        while let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
            let line = self.buffer.split_to(end + 1);
            let line = line.strip_suffix(b"\n").unwrap_or(&line);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if let Some(data) = line.strip_prefix(b"data:") {
                self.on_event(data.trim_ascii_start());
            }
        }
        if self.buffer.len() > MAX_EVENT_BYTES {
            self.buffer.clear();
        }
    }
}

impl Drop for TokenCounter {
    fn drop(&mut self) {
        if !self.streamed && !self.overflowed {
            if let Ok(body) = serde_json::from_slice::<Value>(&self.buffer) {
                if let Some(total) = usage_completion_tokens(&body) {
                    self.add(total);
                }
                self.add_prompt(&body);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn feed(streamed: bool, chunks: &[&str]) -> u64 {
        feed_both(streamed, chunks).0
    }

    /// (output tokens, prompt tokens) counted from one response.
    fn feed_both(streamed: bool, chunks: &[&str]) -> (u64, u64) {
        let recorder = Arc::new(StatsRecorder::new(Instant::now()));
        let mut counter = TokenCounter::new(recorder.clone(), streamed);
        for chunk in chunks {
            counter.on_data(&Bytes::copy_from_slice(chunk.as_bytes()));
        }
        drop(counter);
        let totals = recorder.totals();
        (totals.output_tokens, totals.prompt_tokens)
    }

    #[test]
    fn counts_streamed_chunks_split_anywhere() {
        let stream = concat!(
            "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\r\n\r\n",
            "data: {\"choices\":[{\"text\":\" world\"}]}\n\n",
            "data: [DONE]\n\n"
        );
        assert_eq!(feed(true, &[stream]), 3);
        // The same bytes split at awkward places count the same.
        let (a, b) = stream.split_at(77);
        let (b, c) = b.split_at(5);
        assert_eq!(feed(true, &[a, b, c]), 3);
        // No usage in the stream: no prompt tokens are made up.
        assert_eq!(feed_both(true, &[stream]), (3, 0));
    }

    #[test]
    fn final_usage_corrects_the_streamed_count() {
        let stream = concat!(
            "data: {\"choices\":[{\"delta\":{\"content\":\"Hello world\"}}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}}\n\n",
            "data: [DONE]\n\n"
        );
        assert_eq!(feed_both(true, &[stream]), (2, 5));
    }

    #[test]
    fn prompt_tokens_count_once_per_response() {
        // Some servers repeat the usage object in more than one chunk.
        let stream = concat!(
            "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":{\"prompt_tokens\":40,\"completion_tokens\":1}}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":40,\"completion_tokens\":2}}\n\n",
            "data: [DONE]\n\n"
        );
        assert_eq!(feed_both(true, &[stream]), (2, 40));
    }

    #[test]
    fn plain_json_counts_usage() {
        let body = r#"{"id":"x","choices":[{"text":"hi"}],"usage":{"prompt_tokens":3,"completion_tokens":17,"total_tokens":20}}"#;
        let (a, b) = body.split_at(30);
        assert_eq!(feed_both(false, &[a, b]), (17, 3));
        assert_eq!(feed_both(false, &["{not json"]), (0, 0));
    }
}
