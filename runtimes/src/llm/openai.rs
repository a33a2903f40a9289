//! OpenAI's wire types for completions and chat completions, what this server accepts of
//! them, and OpenAI's error shape `{"error": {"message", "type", "param", "code"}}`.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Most stop sequences a request may give, as OpenAI allows.
const MAX_STOP_SEQUENCES: usize = 4;

/// Why a request got no completion, with the status and OpenAI's `type`, `param`, `code`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
    pub(crate) param: Option<&'static str>,
    pub(crate) code: Option<&'static str>,
}

impl ApiError {
    pub(crate) fn invalid(param: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            param: Some(param),
            code: None,
        }
    }

    pub(crate) fn malformed(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            param: None,
            code: None,
        }
    }

    pub(crate) fn context_length(param: &'static str, message: impl Into<String>) -> Self {
        Self {
            code: Some("context_length_exceeded"),
            ..Self::invalid(param, message)
        }
    }

    pub(crate) fn model_not_found(model: &str) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: format!("The model `{model}` does not exist."),
            param: Some("model"),
            code: Some("model_not_found"),
        }
    }

    pub(crate) fn route_not_found(path: &str) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: format!("no route for {path}"),
            param: None,
            code: None,
        }
    }

    pub(crate) fn too_large(limit: usize) -> Self {
        Self {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: format!("request body is over the limit of {limit} bytes"),
            param: None,
            code: None,
        }
    }

    pub(crate) fn overloaded(waiting: usize) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: format!(
                "overloaded: {waiting} requests are already waiting for the model; retry later"
            ),
            param: None,
            code: None,
        }
    }

    pub(crate) fn engine(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
            param: None,
            code: None,
        }
    }

    fn kind(&self) -> &'static str {
        match self.status {
            StatusCode::NOT_FOUND | StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => {
                "invalid_request_error"
            }
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => "server_overloaded",
            _ => "server_error",
        }
    }

    pub(crate) fn body(&self) -> Value {
        serde_json::json!({
            "error": {
                "message": self.message,
                "type": self.kind(),
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static("1"),
            );
        }
        response
    }
}

/// Fields both endpoints share. Unknown fields are ignored, as OpenAI's servers do.
#[derive(Debug, Deserialize)]
pub(crate) struct Common {
    pub(crate) model: String,
    #[serde(default)]
    pub(crate) stream: bool,
    pub(crate) stream_options: Option<StreamOptions>,
    pub(crate) max_tokens: Option<i64>,
    pub(crate) max_completion_tokens: Option<i64>,
    pub(crate) temperature: Option<f64>,
    pub(crate) top_p: Option<f64>,
    pub(crate) stop: Option<Stop>,
    pub(crate) seed: Option<i64>,
    pub(crate) n: Option<i64>,
    pub(crate) logprobs: Option<Value>,
    pub(crate) top_logprobs: Option<Value>,
    pub(crate) best_of: Option<i64>,
    pub(crate) echo: Option<bool>,
    /// vLLM's extension: generate `max_tokens` even past the end-of-sequence token.
    #[serde(default)]
    pub(crate) ignore_eos: bool,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct StreamOptions {
    #[serde(default)]
    pub(crate) include_usage: bool,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Stop {
    One(String),
    Many(Vec<String>),
}

/// `POST /v1/completions`
#[derive(Debug, Deserialize)]
pub(crate) struct CompletionRequest {
    pub(crate) prompt: Value,
    #[serde(flatten)]
    pub(crate) common: Common,
}

/// `POST /v1/chat/completions`
#[derive(Debug, Deserialize)]
pub(crate) struct ChatRequest {
    pub(crate) messages: Value,
    #[serde(flatten)]
    pub(crate) common: Common,
}

/// One chat message, its content flattened to text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Message {
    pub(crate) role: String,
    pub(crate) content: String,
}

/// How tokens are drawn, checked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Sampling {
    /// 0 is greedy.
    pub(crate) temperature: f32,
    pub(crate) top_p: f32,
    pub(crate) seed: Option<u32>,
}

/// What both endpoints ask of the engine once checked.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Generate {
    pub(crate) max_tokens: Option<u32>,
    pub(crate) sampling: Sampling,
    pub(crate) stop: Vec<String>,
    pub(crate) stream: bool,
    pub(crate) include_usage: bool,
    pub(crate) ignore_eos: bool,
}

impl Common {
    /// Checks the shared fields against the served model's name.
    pub(crate) fn check(&self, served: &str) -> Result<Generate, ApiError> {
        if self.model != served {
            return Err(ApiError::model_not_found(&self.model));
        }
        if self.n.is_some_and(|n| n != 1) {
            return Err(ApiError::invalid("n", "only n = 1 is supported"));
        }
        if self.best_of.is_some_and(|n| n != 1) {
            return Err(ApiError::invalid(
                "best_of",
                "only best_of = 1 is supported",
            ));
        }
        let asks = |v: &Option<Value>| {
            v.as_ref()
                .is_some_and(|v| !v.is_null() && v != &Value::Bool(false))
        };
        if asks(&self.logprobs) || asks(&self.top_logprobs) {
            return Err(ApiError::invalid(
                "logprobs",
                "logprobs are not supported by this server",
            ));
        }
        if self.echo == Some(true) {
            return Err(ApiError::invalid(
                "echo",
                "echo is not supported by this server",
            ));
        }
        let max_tokens = match (self.max_completion_tokens, self.max_tokens) {
            (Some(n), _) => Some(("max_completion_tokens", n)),
            (None, Some(n)) => Some(("max_tokens", n)),
            (None, None) => None,
        };
        let max_tokens = match max_tokens {
            None => None,
            Some((param, n)) if n < 1 => {
                return Err(ApiError::invalid(
                    param,
                    format!("{param} must be at least 1, got {n}"),
                ))
            }
            Some((_, n)) => Some(u32::try_from(n).unwrap_or(u32::MAX)),
        };
        let temperature = self.temperature.unwrap_or(1.0);
        if !(0.0..=2.0).contains(&temperature) {
            return Err(ApiError::invalid(
                "temperature",
                format!("temperature must be between 0 and 2, got {temperature}"),
            ));
        }
        let top_p = self.top_p.unwrap_or(1.0);
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(ApiError::invalid(
                "top_p",
                format!("top_p must be above 0 and at most 1, got {top_p}"),
            ));
        }
        let stop = match &self.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s.clone()],
            Some(Stop::Many(v)) => v.clone(),
        };
        if stop.len() > MAX_STOP_SEQUENCES || stop.iter().any(String::is_empty) {
            return Err(ApiError::invalid(
                "stop",
                format!("stop takes at most {MAX_STOP_SEQUENCES} non-empty strings"),
            ));
        }
        if self.stream_options.is_some() && !self.stream {
            return Err(ApiError::invalid(
                "stream_options",
                "stream_options is only allowed when stream is true",
            ));
        }
        Ok(Generate {
            max_tokens,
            sampling: Sampling {
                temperature: temperature as f32,
                top_p: top_p as f32,
                // Seeds are 32-bit in the engine; wider ones are folded, so equal seeds
                // still give equal draws.
                seed: self.seed.map(|s| (s as u64 ^ (s as u64 >> 32)) as u32),
            },
            stop,
            stream: self.stream,
            include_usage: self
                .stream_options
                .as_ref()
                .is_some_and(|o| o.include_usage),
            ignore_eos: self.ignore_eos,
        })
    }
}

/// The completion prompt as one string: a string, or a list holding one string.
pub(crate) fn prompt_text(prompt: &Value) -> Result<String, ApiError> {
    match prompt {
        Value::String(s) => Ok(s.clone()),
        Value::Array(items) if items.len() == 1 && items[0].is_string() => {
            Ok(items[0].as_str().unwrap_or_default().to_owned())
        }
        Value::Array(_) => Err(ApiError::invalid(
            "prompt",
            "prompt must be a string or a list of one string (batches and token ids are not supported)",
        )),
        _ => Err(ApiError::invalid("prompt", "prompt must be a string")),
    }
}

/// The chat messages, each content as text (a string, or a list of text parts).
pub(crate) fn messages(messages: &Value) -> Result<Vec<Message>, ApiError> {
    let list = messages
        .as_array()
        .filter(|l| !l.is_empty())
        .ok_or_else(|| ApiError::invalid("messages", "messages must be a non-empty list"))?;
    list.iter()
        .enumerate()
        .map(|(i, message)| {
            let bad = |what: &str| ApiError::invalid("messages", format!("messages[{i}]: {what}"));
            let role = message["role"]
                .as_str()
                .ok_or_else(|| bad("role must be a string"))?;
            let role = match role {
                "system" | "user" | "assistant" => role,
                // OpenAI's newer name for the system role.
                "developer" => "system",
                other => {
                    return Err(bad(&format!(
                        "role {other:?} is not supported (system, developer, user, assistant)"
                    )))
                }
            };
            let content = match &message["content"] {
                Value::String(s) => s.clone(),
                Value::Array(parts) => parts
                    .iter()
                    .map(
                        |part| match (part["type"].as_str(), part["text"].as_str()) {
                            (Some("text"), Some(text)) => Ok(text),
                            _ => Err(bad("only text content parts are supported")),
                        },
                    )
                    .collect::<Result<Vec<_>, _>>()?
                    .concat(),
                Value::Null if role == "assistant" => String::new(),
                _ => return Err(bad("content must be a string or a list of text parts")),
            };
            Ok(Message {
                role: role.to_owned(),
                content,
            })
        })
        .collect()
}

/// Why generation ended, in OpenAI's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FinishReason {
    Stop,
    Length,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct Usage {
    pub(crate) prompt_tokens: u32,
    pub(crate) completion_tokens: u32,
    pub(crate) total_tokens: u32,
}

impl Usage {
    pub(crate) fn new(prompt_tokens: u32, completion_tokens: u32) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn common(json: Value) -> Result<Generate, ApiError> {
        let mut json = json;
        json["model"] = "m".into();
        serde_json::from_value::<Common>(json).unwrap().check("m")
    }

    #[test]
    fn defaults_are_openai_defaults() {
        let g = common(serde_json::json!({})).unwrap();
        assert_eq!(g.max_tokens, None);
        assert_eq!(g.sampling.temperature, 1.0);
        assert_eq!(g.sampling.top_p, 1.0);
        assert!(!g.stream && !g.include_usage && g.stop.is_empty());
    }

    #[test]
    fn each_bad_field_is_named() {
        for (json, param) in [
            (serde_json::json!({"n": 2}), "n"),
            (serde_json::json!({"logprobs": true}), "logprobs"),
            (serde_json::json!({"logprobs": 3}), "logprobs"),
            (serde_json::json!({"max_tokens": 0}), "max_tokens"),
            (
                serde_json::json!({"max_completion_tokens": -1}),
                "max_completion_tokens",
            ),
            (serde_json::json!({"temperature": 2.5}), "temperature"),
            (serde_json::json!({"top_p": 0}), "top_p"),
            (
                serde_json::json!({"stop": ["a", "b", "c", "d", "e"]}),
                "stop",
            ),
            (serde_json::json!({"stop": ""}), "stop"),
            (
                serde_json::json!({"stream_options": {"include_usage": true}}),
                "stream_options",
            ),
        ] {
            let err = common(json.clone()).unwrap_err();
            assert_eq!(err.status, StatusCode::BAD_REQUEST, "{json}");
            assert_eq!(err.param, Some(param), "{json}: {err}");
        }
        assert!(common(serde_json::json!({"logprobs": false})).is_ok());
    }

    #[test]
    fn unknown_model_is_404_with_openai_code() {
        let err = serde_json::from_value::<Common>(serde_json::json!({"model": "x"}))
            .unwrap()
            .check("m")
            .unwrap_err();
        assert_eq!(err.status, StatusCode::NOT_FOUND);
        assert_eq!(err.body()["error"]["code"], "model_not_found");
        assert_eq!(err.body()["error"]["type"], "invalid_request_error");
    }

    #[test]
    fn max_completion_tokens_wins() {
        let g = common(serde_json::json!({"max_tokens": 5, "max_completion_tokens": 7})).unwrap();
        assert_eq!(g.max_tokens, Some(7));
    }

    #[test]
    fn messages_take_text_parts_and_name_the_bad_one() {
        let m = messages(&serde_json::json!([
            {"role": "developer", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hi "}, {"type": "text", "text": "there"}]},
        ]))
        .unwrap();
        assert_eq!(m[0].role, "system");
        assert_eq!(m[1].content, "hi there");
        let err = messages(&serde_json::json!([{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}])).unwrap_err();
        assert_eq!(err.param, Some("messages"));
        assert!(err.message.contains("messages[1]"), "{err}");
        assert!(messages(&serde_json::json!([])).is_err());
        assert!(messages(&serde_json::json!("hi")).is_err());
        assert!(messages(&serde_json::json!([{"role": "user"}])).is_err());
    }

    #[test]
    fn prompts_are_one_string() {
        assert_eq!(prompt_text(&serde_json::json!(["a"])).unwrap(), "a");
        assert!(prompt_text(&serde_json::json!(["a", "b"])).is_err());
        assert!(prompt_text(&serde_json::json!([1, 2])).is_err());
    }
}
